"""Every registered model, whatever its family. Each distinct architecture (`distinct_architectures`: every family
and variant, sizes and aliases that only change widths or depths of the same code left to their first member):
forward and backward on a small input in channels_last, the classifier head (pre-logits features,
reset_classifier), features_only maps that match feature_info, ONNX export, channels_last / bf16 agreement and
torch.compile in one graph (fullgraph). Every size variant besides: built and run on the meta device (shapes of
the logits and of every features_only map against feature_info, no arithmetic), so a width or depth that breaks a
shape is still caught.
Families registered later are covered without changes here; the family test files keep only what is particular
to their family."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from jpegnet import create_model, list_models
from jpegnet.models import JpegNetModel

SMALL = 64


def small_size(model) -> int:
    h, w = model.input_config.input_size
    return min(SMALL, h, w)


def distinct_architectures() -> list[str]:
    """Every distinct architecture once: sizes and aliases that only change widths or depths of the same code
    (VGNet sizes, EfficientNet B1–B7 and Lite1–4, named Oct-ResNet α points, ResNet-50 width/depth/compound
    points) are left to their first member; `test_size_variants_on_meta` checks the shapes of the others."""
    import re

    skip = re.compile(r"^(dct_)?vgnet[cgef]_(1_5|2_0|2_5|5_0)mp|^efficientnet_b[1-7]$|"
                      r"^(dct_)?efficientnet_lite[1-4]$|^octresnet50_a|^resnet50_(thin|short|compound)")
    return [n for n in list_models() if not skip.match(n)]


def size_variants() -> list[str]:
    distinct = set(distinct_architectures())
    return [n for n in list_models() if n not in distinct]


def check_registered_model(name: str, model) -> None:
    """What every registered model promises, whatever its family: a JpegNetModel with the classes asked for,
    pooled features, an input representation, and a feature_info whose modules exist. (Between them,
    test_forward_backward_and_features and test_size_variants_on_meta call this for every name list_models gives.)"""
    assert isinstance(model, JpegNetModel), name
    assert model.num_classes == 3 and model.num_features > 0, name
    assert model.input_config.representation in ("rgb", "dct"), name
    modules = dict(model.named_modules())
    for info in model.feature_info:
        assert info["module"] in modules and info["num_chs"] > 0 and info["reduction"] >= 1, (name, info)
    assert isinstance(modules[model.feature_info[-1]["module"]], nn.Module)


def test_every_registered_model_is_checked():
    """The two parametrizations below that call check_registered_model cover list_models() exactly."""
    assert sorted(distinct_architectures() + size_variants()) == list_models()


@pytest.mark.parametrize("name", size_variants())
def test_size_variants_on_meta(name):
    """A size variant runs the code of its family's first member with other widths and depths: built and run on
    the meta device, its logits and every features_only map must have the shapes feature_info promises."""
    # eval and no_grad: shapes are the same as in training, and the meta kernels of training-mode BatchNorm
    # (Python decompositions) and autograd's bookkeeping made this test ~2x slower for no extra check
    with torch.device("meta"), torch.no_grad():
        model = create_model(name, num_classes=3).eval()
        check_registered_model(name, model)
        size = small_size(model)
        inputs = model.example_inputs(2, size)
        assert model(*inputs).shape == (2, 3)
        pooled = model.forward_head(model.forward_features(*inputs), pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        features = create_model(name, num_classes=3, features_only=True).eval()
        maps = features(*inputs)
    assert len(maps) == len(features.feature_info)
    for fmap, info in zip(maps, features.feature_info):
        assert fmap.shape[1] == info["num_chs"], (info, fmap.shape)
        assert fmap.shape[-1] in (-(-size // info["reduction"]), size // info["reduction"]), (info, fmap.shape)


@pytest.mark.parametrize("name", distinct_architectures())
def test_forward_backward_and_features(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).to(memory_format=torch.channels_last)
    check_registered_model(name, model)
    size = small_size(model)
    inputs = [x.contiguous(memory_format=torch.channels_last) for x in model.example_inputs(2, size)]
    for x in inputs:
        x.requires_grad_(True)
    out = model(*inputs)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.square().mean().backward()
    for x in inputs:  # gradients reach the input: nothing detached on the way
        assert x.grad is not None and x.grad.abs().sum() > 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)  # every parameter is used
    assert sum(bool(p.grad.abs().sum() > 0) for p in trainable) >= 0.9 * len(trainable)

    # the classifier head: pre-logits features, then a fresh classifier of another size, then none
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(*inputs)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        model.reset_classifier(5)
        assert model.num_classes == 5 and model(*inputs).shape == (2, 5)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(*inputs), pooled)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        model.reset_classifier(2.5)
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        model.reset_classifier(-1)

    features = create_model(name, num_classes=3, features_only=True).eval()
    with torch.no_grad():
        maps = features(*[x.detach() for x in inputs])
    assert len(maps) == len(features.feature_info)
    for fmap, info in zip(maps, features.feature_info):
        assert fmap.shape[1] == info["num_chs"], (info, fmap.shape)
        assert fmap.shape[-1] == -(-size // info["reduction"]) or fmap.shape[-1] == size // info["reduction"], (
            info, fmap.shape)


def export_size(model) -> int:
    """Small inputs, except where a fixed-size adaptive pooling (VGG's 7×7) needs the model's own size to
    export: ONNX has no adaptive pooling, only the pooling it reduces to when sizes divide."""
    fixed_pool = any(isinstance(m, torch.nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))
                     for m in model.modules())
    return model.input_config.input_size[0] if fixed_pool else small_size(model)


@pytest.mark.parametrize("name", distinct_architectures())
def test_onnx_export(name):
    import io
    import warnings

    import onnx

    model = create_model(name, num_classes=3).eval()
    inputs = model.example_inputs(1, export_size(model))
    # The graph is what is checked here; a VGG-16 classifier's 120 M weights made a 537 MB proto that took ~10 s
    # to write and check (tests/test_serve_export.py exports weights and compares ONNX Runtime's logits).
    with_weights = sum(p.numel() for p in model.parameters()) < 50_000_000
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(model, inputs, buffer, dynamo=False, export_params=with_weights,
                          input_names=["x"] if len(inputs) == 1 else ["y", "cbcr"], output_names=["logits"])
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input][: len(inputs)] == (["x"] if len(inputs) == 1 else ["y", "cbcr"])
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert len(dims) == 2 and dims[1].dim_value == 3  # (batch, classes); some graphs keep the batch symbolic


@pytest.mark.parametrize("name", distinct_architectures())
def test_channels_last_and_bf16_autocast_agree_with_float32(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    inputs = model.example_inputs(1, small_size(model))
    with torch.no_grad():
        ref = model(*inputs)
        model = model.to(memory_format=torch.channels_last)
        cl = model(*[x.contiguous(memory_format=torch.channels_last) for x in inputs])
        torch.testing.assert_close(cl, ref, atol=1e-4 * max(1.0, ref.abs().max().item()), rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(*inputs)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() <= 0.1 * max(ref.abs().max().item(), 1e-3)


# VGNet's letters are two independent choices, downsampling (C: depthwise convolution; E, F, G: fixed blur)
# and depthwise kernels (C, G learned; E edge; F edge + Gaussian), each with or without SE: these four (and one
# DCT entry) trace every value of each choice, and SE on and off, once. The other four combinations trace the
# same layers in other pairings (~7 s each on the 2-core AVX2 VM); their forward, backward and ONNX export are
# still checked above.
VGNET_COMPILE_SKIPPED = ("vgnetc_1_0mp", "vgnete_1_0mp_se", "vgnetf_1_0mp", "vgnetg_1_0mp_se",
                         "dct_vgnetg_1_0mp_se")


def compile_representatives() -> list[str]:
    """The distinct architectures, less the CSPDenseNet depths (cspdensenet, cspdensenet201: the dense blocks of
    cspdensenet_small repeated), whose dynamo tracing took ~11 s each and traces no other code, and less the
    VGNet pairings above."""
    return [n for n in distinct_architectures()
            if n not in ("cspdensenet", "cspdensenet201") and n not in VGNET_COMPILE_SKIPPED]


def test_vgnet_compile_representatives_cover_every_choice():
    from jpegnet.models.vgnet import VGNET_FAMILIES

    kept = [n for n in compile_representatives() if n.startswith("vgnet")]
    choices = [VGNET_FAMILIES[n[len("vgnet")]] for n in kept]
    assert {d for d, _ in choices} == {d for d, _ in VGNET_FAMILIES.values()}
    assert {k for _, k in choices} == {k for _, k in VGNET_FAMILIES.values()}
    assert {n.endswith("_se") for n in kept} == {True, False}
    assert any(n.startswith("dct_vgnet") for n in compile_representatives())
    assert set(VGNET_COMPILE_SKIPPED) <= set(distinct_architectures())  # names that still exist


@pytest.mark.parametrize("name", compile_representatives())
def test_torch_compile_traces_and_agrees(name):
    """torch.compile (dynamo + AOTAutograd through the aot_eager backend: the graph capture every backend
    shares, without inductor's minute-long C++ build per model on this machine) gives the eager outputs, in one
    graph (fullgraph: a graph break in model code fails here)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    inputs = model.example_inputs(1, small_size(model))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    try:
        with torch.no_grad():
            torch.testing.assert_close(compiled(*inputs), model(*inputs), atol=1e-5, rtol=1e-5)
    finally:
        torch._dynamo.reset()
