"""The model registry: names and patterns, unknown names, generated variants, features_only, InputConfig.
(reset_classifier, the head and what every registered model promises: test_all_models.py.)"""
from __future__ import annotations

import pytest
import torch

import jpegnet
from jpegnet.models import (FeatureExtractor, InputConfig, JpegNetModel, UnknownModelError, create_model,
                            example_inputs, is_model, list_models, model_builder, register_model, register_variant)
from jpegnet.models import registry

TINY = dict(width_multiplier=0.125, depth_multiplier=0.25)


def test_list_models_patterns():
    everything = list_models()
    assert everything == sorted(everything) and len(everything) == len(set(everything))
    assert "resnet50" in everything and "dct_late_concat_rfa_thinner" in everything
    dct = list_models("dct_*")
    assert dct and all(n.startswith("dct_") for n in dct)
    assert "dct_resnet50" in dct  # registered through the generic adapter
    assert list_models("resnet50") == ["resnet50"]  # a pattern without wildcards matches exactly
    assert set(list_models("dct_late_concat*")) == {"dct_late_concat", "dct_late_concat_rfa",
                                                    "dct_late_concat_rfa_thinner"}
    assert list_models("no_such_family_*") == []
    assert list_models("RESNET50") == []  # case-sensitive, like the names
    assert jpegnet.list_models("dct_*") == dct  # the top-level face


def test_unknown_name_suggests_the_closest_names():
    with pytest.raises(UnknownModelError, match="resnet50") as info:
        create_model("resnet5")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert "unknown model 'resnet5'" in str(info.value)
    with pytest.raises(UnknownModelError, match="dct_late_concat_rfa"):
        create_model("dct_late_concat_rfa_thiner")
    with pytest.raises(UnknownModelError, match="list_models"):
        create_model("zzzzzzzz")
    assert is_model("resnet50") and not is_model("resnet5")


def test_register_twice_is_an_error():
    def resnet50(num_classes=1000, **kwargs):  # same name as a registered model
        raise AssertionError("never built")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(resnet50)


def test_register_variant_presets_keywords_the_caller_can_override(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the real registry untouched
    calls = []

    def build(num_classes, **kwargs):
        calls.append(dict(kwargs, num_classes=num_classes))
        return create_model("resnet50", num_classes=num_classes, **TINY)

    builder = register_variant("toy_wide", build, "A toy variant.", width=2, se=True)
    assert model_builder("toy_wide") is builder and builder.__name__ == "toy_wide"
    assert builder.__doc__ == "A toy variant." and builder.preset == {"width": 2, "se": True}
    assert isinstance(create_model("toy_wide", num_classes=3), JpegNetModel)
    create_model("toy_wide", se=False, depth=3)
    assert calls == [dict(width=2, se=True, num_classes=3), dict(width=2, se=False, depth=3, num_classes=1000)]
    with pytest.raises(ValueError, match="registered twice"):
        register_variant("toy_wide", build, "again")
    with pytest.raises(UnknownModelError, match="toy_wide"):
        model_builder("toy_wid")
    # the generated names of the families come from it too
    for name in ("dct_resnet50", "vgnetg_1_0mp_se", "octresnet50_a25"):
        assert hasattr(model_builder(name), "preset"), name
    assert model_builder("vgnetg_1_0mp_se").preset["se_ratio"] == 0.25


@pytest.mark.parametrize("name, size, expected", [
    ("resnet50", (64, 96), [(8, 2), (32, 4), (64, 8), (128, 16), (256, 32)]),
    ("dct_late_concat_rfa_thinner", (64, 96), [(48, 8), (48, 8), (128, 16), (256, 32)]),
    ("dct_downsampling", (32, 64), [(64, 16), (128, 16), (256, 32)]),
])
def test_features_only_shapes_and_reductions(name, size, expected):
    kwargs = TINY if name == "resnet50" else dict(width_multiplier=0.125)
    extractor = create_model(name, features_only=True, **kwargs)
    assert isinstance(extractor, FeatureExtractor)
    assert [(i["num_chs"], i["reduction"]) for i in extractor.feature_info] == expected
    h, w = size
    with torch.no_grad():
        feats = extractor(*extractor.example_inputs(2, size))
    assert [tuple(f.shape) for f in feats] == [(2, c, h // r, w // r) for c, r in expected]
    picked = create_model(name, features_only=True, out_indices=(0, -1), **kwargs)
    assert [(i["num_chs"], i["reduction"]) for i in picked.feature_info] == [expected[0], expected[-1]]
    with torch.no_grad():
        assert len(picked(*picked.example_inputs(1, size))) == 2
    assert picked.input_config == extractor.model.input_config


def test_features_only_rejects_unknown_modules():
    model = create_model("resnet50", **TINY)
    model.feature_info = [dict(module="layer9", num_chs=1, reduction=64)]
    with pytest.raises(ValueError, match="layer9"):
        FeatureExtractor(model)


def test_input_config():
    rgb = create_model("resnet50", **TINY).input_config
    assert rgb.representation == "rgb" and rgb.input_size == (224, 224)
    assert rgb.mean == (0.485, 0.456, 0.406) and rgb.std == (0.229, 0.224, 0.225)
    dct = create_model("dct_late_concat_rfa", width_multiplier=0.125).input_config
    assert dct.representation == "dct" and dct.dct_mean is None
    assert create_model("dct_resnet50", **TINY).input_config.representation == "dct"
    assert dct.with_size(320).input_size == (320, 320) and dct.with_size((256, 192)).input_size == (256, 192)
    assert InputConfig.from_dict(dct.to_dict()) == dct
    stats = InputConfig(representation="dct", dct_mean=(0.0,) * 192, dct_std=(1.0,) * 192)
    assert InputConfig.from_dict(stats.to_dict()) == stats
    with pytest.raises(ValueError, match="representation"):
        InputConfig(representation="yuv")


def test_example_inputs_kinds_and_errors():
    (x,) = example_inputs(InputConfig(), 2, 48)
    assert x.shape == (2, 3, 48, 48)
    y, cbcr = example_inputs(InputConfig(representation="dct"), 3, (64, 96))
    assert y.shape == (3, 64, 8, 12) and cbcr.shape == (3, 128, 4, 6)
    y, cbcr = example_inputs(InputConfig(representation="dct"), 1)  # default size
    assert y.shape == (1, 64, 28, 28) and cbcr.shape == (1, 128, 14, 14)
    with pytest.raises(ValueError, match="multiple of 16"):
        example_inputs(InputConfig(representation="dct"), 1, (64, 72))

