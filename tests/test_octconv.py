"""OctConv2d and Oct-ResNet-50: the four paths, parameter count = ResNet-50's, FLOPs ratio, feature table.
(Forward / backward, the classifier, channels_last / bf16 of every model: test_all_models.py.)"""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from jpegnet.layers import OctConv2d
from jpegnet.models import create_model, list_models
from jpegnet.profile import count_flops, count_params

RESNET50_PARAMS = 25_557_032  # torchvision resnet50


def test_four_paths_by_hand():
    torch.manual_seed(0)
    conv = OctConv2d(16, 8, 3, alpha_in=0.5, alpha_out=0.25)
    high, low = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)
    out_high, out_low = conv((high, low))
    assert out_high.shape == (1, 6, 8, 8) and out_low.shape == (1, 2, 4, 4)
    conv_ = lambda x, m: F.conv2d(x, m.weight, None, 1, 1)
    expected_high = conv_(high, conv.h2h) + F.interpolate(conv_(low, conv.l2h), scale_factor=2, mode="nearest")
    expected_low = conv_(low, conv.l2l) + conv_(F.avg_pool2d(high, 2), conv.h2l)
    torch.testing.assert_close(out_high, expected_high)
    torch.testing.assert_close(out_low, expected_low)


def test_stride2_and_edge_alphas():
    conv = OctConv2d(16, 16, 3, 0.5, 0.5, stride=2)
    h, l = conv((torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)))
    assert h.shape == (1, 8, 4, 4) and l.shape == (1, 8, 2, 2)
    first = OctConv2d(16, 16, 1, 0.0, 0.5)
    h, l = first(torch.randn(1, 16, 8, 8))  # a plain tensor is (high, None)
    assert first.l2h is None and first.l2l is None and l.shape == (1, 8, 4, 4)
    last = OctConv2d(16, 16, 1, 0.5, 0.0)
    h, l = last((torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)))
    assert l is None and h.shape == (1, 16, 8, 8)
    plain = OctConv2d(8, 4, 3, 0.0, 0.0)  # α = 0 is an ordinary conv
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(plain(x)[0], F.conv2d(x, plain.h2h.weight, None, 1, 1))


@pytest.mark.parametrize("alpha", [0.0, 0.125, 0.25, 0.5, 0.75])
def test_layer_params_and_flops_ratio(alpha):
    c, d = 64, 16
    conv = OctConv2d(c, c, 3, alpha, alpha)
    assert count_params(conv) == c * c * 9  # same as nn.Conv2d(c, c, 3, bias=False) for any α
    lo = int(alpha * c)
    x = (torch.randn(1, c - lo, d, d), torch.randn(1, lo, d // 2, d // 2) if lo else None)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    ratio = counter.get_total_flops() / (2 * c * c * 9 * d * d)
    assert ratio == pytest.approx(1 - 0.75 * alpha * (2 - alpha), rel=0.01)


@pytest.mark.parametrize("alpha,paper_gflops", [(0.125, 3.6), (0.25, 3.1), (0.5, 2.4), (0.75, 1.9)])
def test_octresnet50_params_and_flops(alpha, paper_gflops):
    model = create_model("octresnet50", alpha=alpha)
    assert count_params(model) == RESNET50_PARAMS
    gmacs = count_flops(model) / 2e9  # paper's "GFLOPs" are multiply-adds
    assert gmacs == pytest.approx(paper_gflops, abs=0.06)


def test_torchvision_reference_count_and_names():
    torchvision = pytest.importorskip("torchvision")
    assert count_params(torchvision.models.resnet50()) == RESNET50_PARAMS
    assert {"octresnet50", "octresnet50_a125", "octresnet50_a25", "octresnet50_a5", "octresnet50_a75"} <= set(
        list_models("octresnet50*"))
    assert create_model("octresnet50_a25").alpha == 0.25


def test_feature_table():
    # forward / backward, the classifier, channels_last / bf16 and that the maps match feature_info are
    # test_all_models' checks (octresnet50_a25 is registered); here: the maps are the high parts
    with torch.device("meta"):
        feats = create_model("octresnet50", alpha=0.25, features_only=True)
    assert [i["num_chs"] for i in feats.feature_info] == [64, 192, 384, 768, 2048]  # (1 − α)·C, stage 4 plain
    assert [i["reduction"] for i in feats.feature_info] == [2, 4, 8, 16, 32]


def test_bad_arguments():
    with pytest.raises(ValueError):
        OctConv2d(16, 16, 3, 1.5, 0.5)
    with pytest.raises(ValueError):
        OctConv2d(16, 16, 3, 0.5, 0.5, stride=3)
    with pytest.raises(ValueError):
        OctConv2d(16, 16, 3, 0.5, 0.5)((torch.randn(1, 16, 8, 8), None))
    with pytest.raises(TypeError):
        OctConv2d(16, 16, 3, 0.0, 0.5)("x")
    with pytest.raises(ValueError):
        create_model("octresnet50", alpha=1.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_compile_and_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from jpegnet.layers import OctBatchNorm2d, OctReLU

    class Tiny(torch.nn.Module):  # first / middle / last octave layers, the shapes a network chains
        def __init__(self):
            super().__init__()
            self.a = OctConv2d(8, 16, 3, 0.0, 0.5)
            self.bn = OctBatchNorm2d(16, 0.5)
            self.act = OctReLU()
            self.b = OctConv2d(16, 16, 3, 0.5, 0.5, stride=2)
            self.c = OctConv2d(16, 8, 1, 0.5, 0.0)

        def forward(self, x):
            return self.c(self.b(self.act(self.bn(self.a(x)))))[0]

    model = Tiny().eval()
    x = torch.randn(1, 8, 16, 16)
    ref = model(x)
    # aot_eager: the graph capture every backend shares; inductor's code generation is checked once (test_vgnet)
    torch.testing.assert_close(torch.compile(model, backend="aot_eager")(x), ref, atol=1e-4, rtol=1e-4)
    path = tmp_path / "oct.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
