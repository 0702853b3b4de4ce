"""VGNet: reference parameter counts, block semantics, fixed kernels, the feature table, the DCT variant and an
inductor compile. (Forward / backward, the classifier interface, channels_last / bf16, features_only maps and
ONNX export of every model: test_all_models.py.)"""
import io

import pytest
import torch
from torch import nn

from jpegnet.layers.fixed_kernels import (EDGE_GAUSSIAN_KERNELS, EDGE_KERNELS, FixedDepthwiseConv2d,
                                          gaussian_kernel2d)
from jpegnet.models import create_model, list_models
from jpegnet.models.vgnet import DownsamplingBlock, HalfIdentityBlock, REFERENCE_MODELS
from jpegnet.profile import count_params

# ffiirree/cv-models results.md (the reference implementation): params in millions, as printed there.
REFERENCE_PARAMS = {
    "vgnetg_1_0mp": 1.000, "vgnetg_1_0mp_se": 1.146, "vgnetg_1_5mp": 1.506, "vgnetg_1_5mp_se": 1.706,
    "vgnetg_2_0mp": 2.01, "vgnetg_2_0mp_se": 2.349, "vgnetg_2_5mp": 2.497, "vgnetg_2_5mp_se": 2.927,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_param_count_matches_reference(name):
    params = count_params(create_model(name))
    assert abs(params / 1e6 - REFERENCE_PARAMS[name]) / REFERENCE_PARAMS[name] < 0.01
    # Our own exact count (rounds to the reference's printed figure to its last digit).
    assert round(params / 1e6, 3 if name != "vgnetg_2_0mp" else 2) == REFERENCE_PARAMS[name]


def test_exact_counts_and_fixed_kernel_savings():
    # Exact values pin the architecture; E/F differ from G only by the fixed (buffer) depthwise kernels
    # of the HalfIdentity blocks and head, replaced by BN (2 params per channel instead of 9).
    assert count_params(create_model("vgnetg_1_0mp")) == 1_000_256
    g = create_model("vgnetg_1_5mp")
    e = create_model("vgnete_1_5mp")
    fixed_channels = sum(m.weight.shape[0] for m in e.modules() if isinstance(m, FixedDepthwiseConv2d)
                         and m.stride == 1)
    assert count_params(g) - count_params(e) == fixed_channels * (9 - 2)
    c = create_model("vgnetc_1_5mp")  # learned 3×3 depthwise downsampling: 9 params per input channel
    assert count_params(c) - count_params(g) == 9 * (32 + 64 + 128 + 256)


def test_registry_names():
    names = set(list_models("vgnet*"))
    for family in "cgef":
        for size in ("1_0", "1_5", "2_0", "2_5", "5_0"):
            assert f"vgnet{family}_{size}mp" in names and f"vgnet{family}_{size}mp_se" in names
    assert set(REFERENCE_MODELS) <= names
    assert {"dct_vgnetg_1_0mp", "dct_vgnetg_2_5mp_se"} <= set(list_models("dct_vgnet*"))


def test_half_identity_passes_half_through():
    block = HalfIdentityBlock(8).eval()
    x0, x1 = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    out0, out1 = block([x0, x1])
    assert out0 is x1  # the identity half
    expected = block.pw(torch.cat([x0, block.dw(x1)], 1))
    torch.testing.assert_close(out1, expected)
    # The new half depends on x0 only through the 1×1 conv: changing x0 changes out1, never out0.
    assert not torch.allclose(block([x0 + 1, x1])[1], out1)


def test_downsampling_block_keeps_blurred_channels():
    block = DownsamplingBlock(8, 12, stride=2, method="blur").eval()
    x = torch.randn(1, 8, 8, 8)
    kept, made = block(x)
    blurred = torch.nn.functional.conv2d(x, gaussian_kernel2d(3, 1.0).expand(8, 1, 3, 3), None, 2, 1, 1, 8)
    torch.testing.assert_close(kept, blurred[:, 2:])  # min(12/2, 8) = 6 last channels kept
    assert made.shape == (1, 6, 4, 4)
    # out > 2·in: concatenation re-split into two equal halves
    wide = DownsamplingBlock(4, 12, method="blur")
    halves = wide(torch.randn(1, 4, 8, 8))
    assert [t.shape[1] for t in halves] == [6, 6]


def test_fixed_kernels_are_exact_buffers():
    torch.testing.assert_close(gaussian_kernel2d(3, 1.1),
                               torch.tensor([[0.0811, 0.1226, 0.0811], [0.1226, 0.1853, 0.1226],
                                             [0.0811, 0.1226, 0.0811]]), atol=6e-5, rtol=0)
    torch.testing.assert_close(gaussian_kernel2d(3, 0.6)[1], torch.tensor([0.1110, 0.4452, 0.1110]),
                               atol=6e-5, rtol=0)
    assert EDGE_KERNELS.shape == (4, 3, 3) and EDGE_GAUSSIAN_KERNELS.shape == (8, 3, 3)
    torch.testing.assert_close(EDGE_KERNELS[0], torch.tensor([[-.5, -1., -.5], [0., 0., 0.], [.5, 1., .5]]))
    layer = FixedDepthwiseConv2d(10, EDGE_KERNELS)
    assert torch.equal(layer.weight[5, 0], EDGE_KERNELS[1])  # tiled: channel c gets kernel c mod 4
    assert list(layer.parameters()) == [] and "weight" in dict(layer.named_buffers())


def test_fixed_kernels_survive_training_with_weight_decay():
    model = create_model("vgnetf_1_5mp", num_classes=5)
    fixed = {n: b.clone() for n, b in model.named_buffers() if n.endswith("weight") and b.dim() == 4}
    assert len(fixed) > 20  # blurs in every downsampling block, edge/gaussian banks in every block + head
    param_names = {n for n, _ in model.named_parameters()}
    assert not param_names & set(fixed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    x = torch.randn(2, 3, 64, 64)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.tensor([0, 3])).backward()
        opt.step()
    for name, before in fixed.items():
        assert torch.equal(dict(model.named_buffers())[name], before), name
    # ...and they are saved with the model
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    assert set(fixed) <= set(torch.load(io.BytesIO(buf.getvalue())).keys())


@pytest.mark.parametrize("name", ["vgnetg_1_0mp", "vgnetc_1_0mp_se", "vgnete_1_5mp", "vgnetf_1_5mp"])
def test_features_follow_the_channel_table(name):
    # that the maps have these shapes is test_all_models' check; here: feature_info is the size's table
    with torch.device("meta"):
        model = create_model(name)
        features = create_model(name, features_only=True)
    assert [i["num_chs"] for i in features.feature_info] == list(model.channels)
    assert [i["reduction"] for i in features.feature_info] == [2, 4, 8, 16, 32]
    assert model.num_features == model.channels[-1]


def test_dct_variant():
    model = create_model("dct_vgnetg_1_0mp", num_classes=4)
    y, cbcr = model.example_inputs(2, 64)
    out = model(y, cbcr)
    assert out.shape == (2, 4)
    out.sum().backward()
    # the RGB layers before stride 8 are gone: stem, stage1, stage2 hold nothing
    rgb = create_model("vgnetg_1_0mp", num_classes=4)
    before = sum(p.numel() for n, p in rgb.named_parameters() if n.split(".")[0] in ("stem", "stage1", "stage2"))
    assert count_params(model) == count_params(rgb) - before + count_params(model.stem)
    feats = create_model("dct_vgnetg_1_0mp", features_only=True).eval()(y, cbcr)
    assert [f.shape[1] for f in feats] == [112, 224, 368]  # the stem is the stride-8 feature


def test_bad_arguments():
    with pytest.raises(ValueError):
        DownsamplingBlock(8, 16, method="maxpool2")
    with pytest.raises(ValueError):
        create_model("vgnetg_1_0mp", se_ratio=2.0)
    with pytest.raises(ValueError):
        FixedDepthwiseConv2d(4, torch.zeros(2, 2, 2))


def test_inductor_compile():
    # VGNetF's blocks (fixed Gaussian downsampling, fixed edge/Gaussian depthwise kernels, half-identity pairs)
    # at an eighth of the 1.5 MP widths and two blocks a stage: the same layers through inductor, but each
    # distinct tensor shape is one C++ kernel build on a cold cache (vgnetf_1_5mp's 26 blocks took minutes).
    model = create_model("vgnetf_1_5mp", num_classes=10, channels=(16, 32, 64, 128, 256), layers=(2, 2, 2, 2)).eval()
    x = torch.randn(1, 3, 64, 64)
    ref = model(x)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), ref, atol=1e-4, rtol=1e-4)
