"""ResNet-50 and its RGB variants: golden sizes, torchvision / timm parity, multipliers, the channels_last layout,
the dynamo ONNX exporter, BN folding, the stride-8 entry. (Forward / backward, the classifier interface,
channels_last / bf16 agreement and fullgraph torch.compile of every model: test_all_models.py; features_only
with out_indices on a non-square input: test_registry.py.)"""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from jpegnet.layers import Conv2dSame, fuse_bn
from jpegnet.models import create_model, import_weights, list_models
from jpegnet.models.resnet import Bottleneck, ResNet, make_stage, scale_channels, scale_depth
from jpegnet.models.weights import WeightImportError
from jpegnet.profile import count_flops, count_params

torchvision = pytest.importorskip("torchvision")

# Measured with jpegnet.profile (torch.utils.flop_counter: 1 multiply-add = 2 FLOPs), 1000 classes, 224×224.
GOLDEN = {
    "resnet50": (25_557_032, 8_178_368_512),
    "resnet50_thin0_75": (14_771_992, 4_645_355_520),
    "resnet50_thin0_5": (6_917_640, 2_104_623_104),
    "resnet50_short": (18_509_608, 5_994_708_992),
    "resnet50_shorter": (17_112_360, 5_121_245_184),
    "dct_resnet50": (24_211_816, 4_705_386_496),
}

TINY = dict(width_multiplier=0.125, depth_multiplier=0.25)  # what the fast CPU training tests use


def tiny_resnet(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet50", num_classes=num_classes, **TINY)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_params_and_flops(name):
    # Shapes alone fix both numbers, so the model is built on the meta device (no memory, no compute).
    with torch.device("meta"):
        model = create_model(name)
        example = model.example_inputs(1, 224)
    params, flops = GOLDEN[name]
    assert count_params(model) == params
    assert count_flops(model, example) == flops


def test_resnet50_matches_torchvision_param_count_and_keys():
    ours = create_model("resnet50")
    theirs = torchvision.models.resnet50(weights=None)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert count_params(ours) == count_params(theirs) == 25_557_032


def test_torchvision_weights_give_torchvision_outputs():
    torch.manual_seed(1)
    theirs = torchvision.models.resnet50(weights=None)
    # Randomise BN statistics too, so the check covers them, not just an identity BN.
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    theirs.eval()
    ours = import_weights(create_model("resnet50"), theirs.state_dict(), "torchvision").eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff <= 1e-4


def test_timm_weights_give_timm_outputs():
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    theirs = timm.create_model("resnet50", pretrained=False).eval()
    ours = import_weights(create_model("resnet50"), theirs.state_dict(), "timm").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-4


def test_import_weights_rejects_foreign_shapes_and_sources():
    model = create_model("resnet50", num_classes=10)
    with pytest.raises(WeightImportError, match="shape"):
        import_weights(model, torchvision.models.resnet50(weights=None).state_dict(), "torchvision")
    sd = create_model("resnet50").state_dict()
    del sd["layer4.2.conv3.weight"]
    with pytest.raises(WeightImportError, match="missing"):
        import_weights(create_model("resnet50"), sd, "torchvision")
    with pytest.raises(WeightImportError, match="unknown weight source"):
        import_weights(model, {}, "caffe")


def test_width_and_depth_multipliers():
    model = create_model("resnet50", width_multiplier=0.5, depth_multiplier=0.5)
    assert model.blocks == (2, 2, 3, 2)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 3, 2]
    assert [info["num_chs"] for info in model.feature_info] == [32, 128, 256, 512, 1024]
    assert model.num_features == 1024 and model.fc.in_features == 1024
    tiny = tiny_resnet()
    assert tiny.blocks == (1, 1, 2, 1)
    assert [info["num_chs"] for info in tiny.feature_info] == [8, 32, 64, 128, 256]
    assert scale_channels(64, 0.75) == 48 and scale_channels(64, 0.01) == 8 and scale_channels(100, 1.0) == 100
    assert scale_depth(3, 0.5) == 2 and scale_depth(6, 0.25) == 2 and scale_depth(3, 0.01) == 1
    # rounded up (EfficientNet's rule), and a float product just above a whole number stays on it
    assert scale_depth(3, 1.44) == 5 and scale_depth(10, 1.1) == 11 and scale_depth(4, 1.0) == 4


def test_named_points_take_further_multipliers():
    # a named point's multipliers times the caller's, so compound scaling can start from any of them
    half = create_model("resnet50_thin0_5", width_multiplier=0.5, depth_multiplier=0.5)
    assert half.width_multiplier == 0.25 and half.blocks == (2, 2, 3, 2)
    assert create_model("resnet50_short", depth_multiplier=1.5).blocks == (3, 4, 6, 3)
    with pytest.raises(ValueError):
        create_model("resnet50_thin0_75", width_multiplier=-1)


def test_conv_block_projects_even_when_the_shape_is_kept():
    cb = Bottleneck(384, 128, 384, conv_shortcut=True)
    assert cb.downsample is not None and cb.downsample[0].weight.shape == (384, 384, 1, 1)
    assert Bottleneck(384, 128, 384).downsample is None  # default: torchvision's rule (project on a change)
    assert Bottleneck(256, 64, 512).downsample is not None
    with pytest.raises(ValueError, match="IdentityBlock"):
        Bottleneck(256, 64, 512, conv_shortcut=False)
    x = torch.randn(1, 384, 4, 4)
    with torch.no_grad():  # the projection is on the shortcut: zeroing it leaves relu(residual branch)
        cb.downsample[0].weight.zero_()
        branch = cb.bn3(cb.conv3(cb.relu(cb.bn2(cb.conv2(cb.relu(cb.bn1(cb.conv1(x))))))))
        torch.testing.assert_close(cb(x), torch.relu(branch + cb.downsample[1](torch.zeros_like(x))))
    stage = make_stage(384, 128, 384, 3)
    assert [b.downsample is not None for b in stage] == [True, False, False]
    continued = make_stage(1024, 256, 1024, 2, first_index=1, conv_block_first=False)
    assert [k for k, _ in continued.named_children()] == ["1", "2"]
    assert all(b.downsample is None for b in continued)


@pytest.mark.parametrize("kwargs, error", [
    (dict(width_multiplier=0), ValueError),
    (dict(width_multiplier=-1.0), ValueError),
    (dict(depth_multiplier=float("nan")), ValueError),
    (dict(width_multiplier="1"), TypeError),
    (dict(num_classes=-1), ValueError),
    (dict(num_classes=2.5), TypeError),
    (dict(bogus=1), TypeError),
])
def test_bad_arguments_raise_typed_errors(kwargs, error):
    with pytest.raises(error):
        create_model("resnet50", **kwargs)


def test_channels_last_keeps_the_layout():
    # (that it gives the same outputs is test_all_models' check)
    model = tiny_resnet().eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last))
    assert feats.is_contiguous(memory_format=torch.channels_last)


def test_onnx_export():
    onnx = pytest.importorskip("onnx")
    model = tiny_resnet().eval()
    x = torch.randn(1, 3, 32, 32)
    buffer = io.BytesIO()
    program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["logits"])
    program.save(buffer)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["x"]
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 10]


def test_fuse_bn_keeps_outputs_and_removes_batchnorms():
    model = tiny_resnet()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    fused = fuse_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_even_kernel_conv_pads_bottom_right_like_same_padding():
    conv = Conv2dSame(4, 6, 2)
    reference = nn.Conv2d(4, 6, 2, padding="same", bias=False)
    reference.weight.data.copy_(conv.weight.data)
    x = torch.randn(1, 4, 5, 7)
    out = conv(x)
    assert out.shape == (1, 6, 5, 7)
    torch.testing.assert_close(out, reference(x))
    # The top-left output only sees the top-left 2×2 window: padding is at the bottom/right.
    torch.testing.assert_close(out[0, :, 0, 0], torch.einsum("oihw,ihw->o", conv.weight, x[0, :, :2, :2]))


def test_stride8_entry_protocol_and_dct_resnet50():
    rgb = ResNet(width_multiplier=0.125, depth_multiplier=0.25)
    assert rgb.stride8_channels == 64  # layer2 output at width 1/8
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stride8 = rgb.layer2(rgb.layer1(rgb.maxpool(rgb.relu(rgb.bn1(rgb.conv1(x))))))
        assert stride8.shape == (1, 64, 8, 8)
        torch.testing.assert_close(rgb.forward_from_stride8(stride8), rgb.forward_features(x))
    model = create_model("dct_resnet50", num_classes=7, **TINY)
    assert model.input_config.representation == "dct"
    assert isinstance(model.backbone.layer2, nn.Identity) and isinstance(model.backbone.conv1, nn.Identity)
    y, cbcr = model.example_inputs(2, (64, 96))
    assert model(y, cbcr).shape == (2, 7)
    feats = create_model("dct_resnet50", features_only=True, **TINY)(y, cbcr)
    assert [f.shape[1:] for f in feats] == [(64, 8, 12), (128, 4, 6), (256, 2, 3)]  # stem output first


def test_registered_resnet_names():
    assert {"resnet50", "resnet50_thin0_75", "resnet50_thin0_5", "resnet50_short", "resnet50_shorter",
            "resnet50_compound_phi2", "dct_resnet50"} <= set(list_models("*resnet50*"))


def test_fuse_bn_leaves_undeclared_pairs_alone():
    class PreActivation(nn.Module):  # bn1 runs before conv1: folding it after conv1 would be wrong
        def __init__(self):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(4)
            self.conv1 = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv1(self.bn1(x))

    model = PreActivation()
    fused = fuse_bn(model)
    assert isinstance(fused.bn1, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="channels"):
        from jpegnet.layers import fuse_conv_bn
        fuse_conv_bn(nn.Conv2d(3, 5, 1), nn.BatchNorm2d(4))
