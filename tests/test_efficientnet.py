"""EfficientNet B0–B7: golden sizes and BatchNorm settings against torchvision, the `bn` and multiplier
keywords, weight import parity with torchvision and timm, stochastic depth, the feature table and the DCT variant.
(Forward / backward, the classifier interface, features_only maps, ONNX export and fullgraph torch.compile of
every model: test_all_models.py.)"""
import math

import pytest
import torch
from torch import nn

from jpegnet.layers.drop_path import DropPath
from jpegnet.models import create_model, import_weights, list_models
from jpegnet.models.efficientnet import EfficientNet, MBConv, round_channels
from jpegnet.models.weights import WeightImportError
from jpegnet.profile import count_flops, count_params

torchvision = pytest.importorskip("torchvision")

# torchvision.models.efficientnet_bN(weights=None) parameter counts (checked live in the test below too)
TORCHVISION_PARAMS = {0: 5_288_548, 1: 7_794_184, 2: 9_109_994, 3: 12_233_232,
                      4: 19_341_616, 5: 30_389_784, 6: 43_040_704, 7: 66_347_960}
RESOLUTIONS = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
B0_FLOPS_224 = 771_629_504  # torch.utils.flop_counter, 2 FLOPs per MAC: 0.386 GMACs, the paper says 0.39B


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so parity tests exercise them (and eps)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("n", range(8))
def test_parameter_counts_equal_torchvision(n):
    ours = create_model(f"efficientnet_b{n}")
    theirs = getattr(torchvision.models, f"efficientnet_b{n}")(weights=None)
    assert count_params(ours) == count_params(theirs) == TORCHVISION_PARAMS[n]
    assert ours.input_config.input_size == (RESOLUTIONS[n], RESOLUTIONS[n])
    # BN settings are torchvision's per variant (the native reference), on every BatchNorm
    assert bn_settings(ours) == bn_settings(theirs) == {TORCHVISION_BN[n]}


def bn_settings(model: nn.Module) -> set[tuple[float, float]]:
    return {(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}


# torchvision 0.29: efficientnet_b0..b4 take nn.BatchNorm2d's defaults, b5..b7 eps 1e-3 / momentum 0.01
TORCHVISION_BN = {n: (1e-5, 0.1) if n <= 4 else (1e-3, 0.01) for n in range(8)}


@pytest.mark.parametrize("n", [0, 4, 7])
def test_bn_keyword_sets_every_batchnorm(n):
    """bn="paper": eps 1e-3 and TensorFlow momentum 0.99 (PyTorch 0.01) on every BatchNorm of any variant."""
    with torch.device("meta"):
        paper = create_model(f"efficientnet_b{n}", bn="paper")
        default = create_model(f"efficientnet_b{n}", bn="torchvision")
        explicit = create_model(f"efficientnet_b{n}", bn="paper", bn_eps=1e-4)
    assert bn_settings(paper) == {(1e-3, 0.01)}
    assert bn_settings(default) == {TORCHVISION_BN[n]}
    assert bn_settings(explicit) == {(1e-4, 0.01)}
    # stem, head, and per MBConv the expand (if any), depthwise and projection BNs: all of them were set
    expected = 2 + sum(2 + (not isinstance(b.conv_expand, nn.Identity)) for s in paper.blocks for b in s)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in paper.modules()) == expected
    with pytest.raises(ValueError, match="bn must be one of"):
        create_model("efficientnet_b0", bn="tf")


def test_multiplier_keywords_scale_the_variant():
    b2 = create_model("efficientnet_b2", width_multiplier=0.5, depth_multiplier=0.5)
    assert (b2.width_multiplier, b2.depth_multiplier) == (0.55, 0.6)
    assert b2.stem.conv.out_channels == round_channels(32 * 0.55)
    assert [len(s) for s in b2.blocks] == [math.ceil(r * 0.6) for r in (1, 2, 2, 3, 3, 4, 1)]
    with pytest.raises(TypeError, match="width_multiplier"):
        create_model("efficientnet_b0", width=0.5)  # the old keyword names the new one
    with pytest.raises(TypeError):
        create_model("efficientnet_b0", depth_multiplier="2")
    with pytest.raises(ValueError):
        create_model("efficientnet_b0", width_multiplier=0)


def test_compound_scaling_rules():
    assert [round_channels(c * 1.1) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == \
        [32, 16, 24, 48, 88, 120, 208, 352, 1408]
    b7 = create_model("efficientnet_b7")
    # depth 3.1: ceil(3.1 × repeats) blocks per stage; width 2.0: 2× channels
    assert [len(s) for s in b7.blocks] == [4, 7, 7, 10, 10, 13, 4]
    assert b7.num_features == 2560 and b7.stem.conv.out_channels == 64
    assert b7.head_drop.p == 0.5 and create_model("efficientnet_b0").head_drop.p == 0.2


def test_b0_golden_flops():
    model = create_model("efficientnet_b0")
    assert count_flops(model, size=224) == B0_FLOPS_224


def test_stochastic_depth_rises_linearly():
    model = create_model("efficientnet_b0")
    blocks = [b for stage in model.blocks for b in stage]
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for b in blocks]
    expected = [0.2 * i / 16 if b.has_residual else 0.0 for i, b in enumerate(blocks)]
    assert rates == pytest.approx(expected)
    assert max(rates) == pytest.approx(0.2 * 14 / 16)  # block 15 (192 -> 320) has no residual to drop


def test_drop_path_drops_whole_samples_in_training_only():
    dp = DropPath(0.5)
    x = torch.ones(400, 3, 2, 2)
    torch.manual_seed(0)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # survivors rescaled by 1 / keep
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # one decision per sample
    assert 120 < (per_sample[:, 0] == 0).sum() < 280
    assert torch.equal(dp.eval()(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def _parity(ours, theirs, source):
    import_weights(ours, theirs.state_dict(), source)
    ours.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-2  # not a degenerate comparison
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("n", [0, 2])
def test_torchvision_import_gives_torchvision_outputs(n):
    theirs = _randomize_bn(getattr(torchvision.models, f"efficientnet_b{n}")(weights=None))
    _parity(create_model(f"efficientnet_b{n}"), theirs, "torchvision")


def test_timm_import_gives_timm_outputs_b0():
    timm = pytest.importorskip("timm")
    theirs = _randomize_bn(timm.create_model("efficientnet_b0", pretrained=False))
    _parity(create_model("efficientnet_b0"), theirs, "timm")


def test_timm_import_sets_timm_bn_eps_on_b5():
    """timm's efficientnet_b5 uses BN eps 1e-5 where torchvision's (our native) uses 1e-3: the import must
    switch the model to timm's eps, or its outputs differ. Checked on the modules, not a 456-px run."""
    timm = pytest.importorskip("timm")
    theirs = timm.create_model("efficientnet_b5", pretrained=False)
    ours = create_model("efficientnet_b5")
    assert {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    import_weights(ours, theirs.state_dict(), "timm")
    assert {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}


def test_wrong_weights_are_refused():
    b0 = create_model("efficientnet_b0")
    b1_weights = torchvision.models.efficientnet_b1(weights=None).state_dict()
    with pytest.raises(WeightImportError):
        import_weights(b0, b1_weights, "torchvision")
    with pytest.raises(WeightImportError):
        import_weights(b0, {"conv_stem.weight": torch.zeros(1), "bogus.weight": torch.zeros(1)}, "timm")


def test_bad_multiplier_is_refused():
    # (forward / backward and the classifier interface of every model: test_all_models.py)
    with pytest.raises(ValueError):
        EfficientNet(width_multiplier=0)


def test_feature_table():
    # that the maps have these shapes is test_all_models' check; these are B0's and B3's channel tables
    model = create_model("efficientnet_b0", features_only=True)
    assert model.model.num_features == 1280
    assert [i["num_chs"] for i in model.feature_info] == [16, 24, 40, 112, 320]
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    b3 = create_model("efficientnet_b3", features_only=True, out_indices=(2, 3, 4))
    assert [i["num_chs"] for i in b3.feature_info] == [48, 136, 384]


def test_dct_variant_enters_at_stride_8():
    assert "dct_efficientnet_b0" in list_models("dct_efficientnet*")
    model = create_model("dct_efficientnet_b0", num_classes=5)
    y, cbcr = model.example_inputs(2, 64)
    assert model(y, cbcr).shape == (2, 5)
    assert model.stem.conv.out_channels == 40  # B0's stage-3 width, the stride-8 entry
    rgb = create_model("efficientnet_b0", num_classes=5)
    dropped = sum(p.numel() for n, p in rgb.named_parameters() if n.startswith(("stem.", "blocks.0.", "blocks.1.",
                                                                                "blocks.2.")))
    assert count_params(model) == count_params(rgb) - dropped + count_params(model.stem)
    feats = create_model("dct_efficientnet_b0", features_only=True)(y, cbcr)
    assert [(f.shape[1], 64 // f.shape[-1]) for f in feats] == [(40, 8), (112, 16), (320, 32)]


def test_dct_block_stem():
    """dct_stem='block': an inverted bottleneck at stride 8 (1x1 to 192, depthwise 3x3, 1x1 to the entry width)
    instead of one linear 1x1 squeezing 192 coefficient channels into B0's 40."""
    linear = create_model("dct_efficientnet_b0", num_classes=5)
    block = create_model("dct_efficientnet_b0", num_classes=5, dct_stem="block")
    hidden, out = 192, 40
    bn = lambda c: 2 * c  # noqa: E731 - affine weight and bias
    stem_params = (bn(64) + bn(128) + 192 * hidden + bn(hidden)       # input BNs, 1x1 fusion
                   + 9 * hidden + bn(hidden) + hidden * out + bn(out))  # depthwise 3x3, 1x1 projection
    assert count_params(block.stem) == stem_params
    assert count_params(block) - count_params(block.stem) == count_params(linear) - count_params(linear.stem)
    y, cbcr = block.example_inputs(2, 64)
    out_map = block.stem(y, cbcr)
    assert out_map.shape == (2, 40, 8, 8) and bool((out_map >= 0).all())
    assert block(y, cbcr).shape == (2, 5)
    with pytest.raises(ValueError, match="dct_stem"):
        create_model("dct_efficientnet_b0", dct_stem="wide")


def test_mbconv_residual_only_when_shape_is_kept():
    assert MBConv(16, 16, 3, 1, 6).has_residual
    assert not MBConv(16, 24, 3, 1, 6).has_residual and not MBConv(16, 16, 3, 2, 6).has_residual
    with pytest.raises(ValueError):
        MBConv(16, 16, 3, 3, 6)
