"""Compound scaling (EfficientNet, eq. 3): the multipliers, scale_model on ResNet, DCT and EfficientNet models,
and the paper's Table 3 ResNet-50 case registered as `resnet50_compound_phi2`."""
from __future__ import annotations

import math

import pytest
import torch

import jpegnet
from jpegnet.models import compound_scale, create_model, scale_model
from jpegnet.models.scaling import scaled_size
from jpegnet.profile import count_flops, count_params

# EfficientNet Table 3, "Scale Up MobileNets and ResNet": FLOPS in billions of multiply-adds, one decimal.
TABLE3_RESNET50 = 4.1
TABLE3_RESNET50_COMPOUND = 16.7


def within_rounding(value: float, printed: float, decimals: int = 1) -> bool:
    """True when `value` prints as `printed` at `decimals` places: the table's own precision."""
    half = 0.5 * 10 ** -decimals
    return printed - half <= value < printed + half


def gmacs(model, size=None) -> float:
    """Multiply-adds in billions at `size` (default: the model's input size), on the model's device."""
    device = next(model.parameters()).device
    return count_flops(model, model.example_inputs(1, size, device=device)) / 2e9


def test_compound_scale_is_equation_3():
    d, w, r = compound_scale(1)
    assert (d, w, r) == (1.2, 1.1, 1.15)
    assert compound_scale(0) == (1.0, 1.0, 1.0)
    d, w, r = compound_scale(2)
    assert (d, w, r) == pytest.approx((1.44, 1.21, 1.3225))
    assert compound_scale(-1).depth == pytest.approx(1 / 1.2)
    assert compound_scale(3, alpha=1.0, beta=2.0, gamma=1.0) == (1.0, 8.0, 1.0)
    # the constraint α·β²·γ² ≈ 2: FLOPs roughly double per step of φ
    assert 1.2 * 1.1 ** 2 * 1.15 ** 2 == pytest.approx(1.92, abs=0.005)
    for bad in (dict(phi=float("nan")), dict(phi="1"), dict(phi=True)):
        with pytest.raises(TypeError):
            compound_scale(**bad)
    with pytest.raises(ValueError, match=">= 1"):
        compound_scale(1, beta=0.9)
    assert jpegnet.compound_scale is compound_scale and jpegnet.scale_model is scale_model


def test_scaled_size_rounds_to_multiples_of_16():
    assert scaled_size(224, 1.3225) == 304  # 296.2 -> 304
    assert scaled_size(224, 1.15) == 256    # 257.6 -> 256
    assert scaled_size(224, 0.01) == 16
    assert scaled_size(224, 1.0) == 224


def test_table3_resnet50_compound_scale():
    """ResNet-50 4.1B -> compound scale 16.7B FLOPS (multiply-adds), each within the table's rounding."""
    with torch.device("meta"):
        base = create_model("resnet50")
        model = create_model("resnet50_compound_phi2")
    assert within_rounding(gmacs(base, 224), TABLE3_RESNET50)
    assert model.input_config.input_size == (304, 304)
    assert model.blocks == (5, 6, 9, 5) and model.feature_info[-1]["num_chs"] == 616 * 4
    scaled = gmacs(model)  # at its default input size
    assert within_rounding(scaled, TABLE3_RESNET50_COMPOUND), scaled
    assert round(scaled, 2) == 16.73 and count_params(model) == 55_662_904
    # ≈ 2^φ, as eq. 3 intends (4.09 -> 16.73: 4.09×)
    assert scaled / gmacs(base, 224) == pytest.approx(2 ** 2, rel=0.05)


def test_scale_model_resnet_composes_with_given_multipliers():
    model = scale_model("resnet50", 1, num_classes=10, width_multiplier=0.125, depth_multiplier=0.25)
    assert model.width_multiplier == pytest.approx(0.1375) and model.depth_multiplier == pytest.approx(0.3)
    assert model.blocks == tuple(math.ceil(b * 0.3) for b in (3, 4, 6, 3))
    assert model.input_config.input_size == (256, 256) and model.fc.out_features == 10
    x = torch.randn(1, 3, 64, 64)
    assert model(x).shape == (1, 10)
    features = scale_model("resnet50", 1, features_only=True, out_indices=(-1,), width_multiplier=0.125,
                           depth_multiplier=0.25)
    assert features.input_config.input_size == (256, 256) and features(x)[0].shape[1] == model.num_features


def test_scale_model_dct_resnet():
    """A DCT ResNet scales in width, depth and resolution; its input stays a multiple of 16."""
    with torch.device("meta"):
        base = create_model("dct_late_concat_rfa_thinner")
        model = scale_model("dct_late_concat_rfa_thinner", 1)
    assert model.input_config.input_size == (256, 256) and model.input_config.representation == "dct"
    assert (model.width_multiplier, model.depth_multiplier) == pytest.approx((1.1, 1.2))
    assert [len(model.y_stage1), len(model.y_stage2), len(model.layer3), len(model.layer4)] == [4, 5, 7, 4]
    ratio = gmacs(model) / gmacs(base, 224)
    assert 1.6 < ratio < 2.4, ratio  # ≈ α·β²·γ² = 1.92, up to rounding of blocks, channels and pixels
    small = scale_model("dct_upsampling", 1, num_classes=4, width_multiplier=0.125, depth_multiplier=0.25)
    y, cbcr = small.example_inputs(2, 64)
    assert small(y, cbcr).shape == (2, 4)


def test_scale_model_efficientnet_and_its_dct_twin():
    b0 = create_model("efficientnet_b0")
    scaled = scale_model("efficientnet_b0", 1)
    assert (scaled.width_multiplier, scaled.depth_multiplier) == (1.1, 1.2)
    assert scaled.input_config.input_size == (256, 256)
    assert [len(s) for s in scaled.blocks] == [math.ceil(len(s) * 1.2) for s in b0.blocks]
    dct = scale_model("dct_efficientnet_b0", 1, num_classes=3)
    assert dct.input_config.input_size == scaled.input_config.input_size  # the same pixels for both twins
    assert dct.input_config.representation == "dct"


def test_scale_model_needs_multiplier_keywords():
    with pytest.raises(TypeError):
        scale_model("vgnetg_1_0mp", 1)
