"""Input BatchNorms folded into the DCT normalization (jpegnet.engine.input_fold, applied by every export).

Three things must hold. The fold computes the same function: every DCT model in the registry (and converted
models with stride-8, stride-16 and stride-4 entries), with random input statistics and random BatchNorm
statistics, gives the same logits from raw coefficients normalized the old way and the folded model from the same
coefficients normalized the new way. Each model declares exactly the BatchNorms that read a raw input (found
here by hooks, not taken from the declaration). And it is worth doing: in an int8 file the first quantizer sees
unit-variance channels instead of raw coefficients under one scale, so the int8 logits of a DCT model stay
much closer to its fp32 ones with the fold than without it.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from jpegnet import create_model
from jpegnet.engine import save_checkpoint
from jpegnet.engine.export import export_checkpoint, export_onnx, read_onnx_metadata
from jpegnet.engine.inference import input_batches
from jpegnet.engine.input_fold import INPUT_CHANNELS, fold_input_batchnorms
from jpegnet.input_config import DCT_CHANNELS, normalization
from jpegnet.models import list_models
from tests.conftest import IMAGENETTE, requires_shared

SIZE = 64
#: Every stem a DCT model can have: the seven ResNet-50 variants (four stems between them) and the generic
#: adapter (`DctAdapter`, which every other dct_ model is: see the last test), for two of its families.
DCT_MODELS = ["dct_deconvolution_rfa", "dct_downsampling", "dct_efficientnet_b0", "dct_late_concat",
              "dct_late_concat_rfa", "dct_late_concat_rfa_thinner", "dct_resnet50", "dct_upsampling",
              "dct_upsampling_rfa", "dct_vgnetg_1_0mp"]
SMALL = {"width_multiplier": 0.25, "depth_multiplier": 0.25}  # the stems are the same at any width
CONVERTED = {  # converted models: the learned entry at each of its strides, and the exact entry (nothing to fold)
    "converted-stride8": dict(teacher="efficientnet_lite0", entry_depth=1),
    "converted-stride16": dict(teacher="efficientnet_lite0", entry_depth=1, entry_stride=16),
    "converted-cut4": dict(teacher="efficientnet_lite0", entry_depth=1, cut="blocks.1"),
    "converted-pixels": dict(teacher="efficientnet_lite0", entry="pixels"),
}


def build(name: str) -> nn.Module:
    if name in CONVERTED:
        return create_model("converted", num_classes=10, **CONVERTED[name])
    try:
        return create_model(name, num_classes=10, **SMALL)
    except TypeError:  # a family without multipliers (VGNet's sizes are its names)
        return create_model(name, num_classes=10)


def randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Random input statistics (as `jpegnet stats` would set them) and random BatchNorm statistics and affines,
    so that no fold is trivially the identity."""
    mean = tuple((torch.randn(DCT_CHANNELS, generator=generator) * 20).tolist())
    std = tuple((torch.rand(DCT_CHANNELS, generator=generator) * 200 + 1).tolist())
    model.input_config = replace(model.input_config, input_size=(SIZE, SIZE), dct_mean=mean, dct_std=std)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) * 4 + 0.05)
                m.weight.copy_(torch.randn(m.num_features, generator=generator) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


def raw_coefficients(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantized coefficients as the reader gives them before normalization: DC in the hundreds, AC smaller
    with frequency."""
    scale = torch.cat([torch.tensor([400.0]), torch.linspace(80, 2, 63)])
    y = torch.randn(2, 64, SIZE // 8, SIZE // 8, generator=generator) * scale[None, :, None, None]
    cbcr = torch.randn(2, 128, SIZE // 16, SIZE // 16, generator=generator) * scale.repeat(2)[None, :, None, None]
    return y, cbcr


def normalized(raw: tuple[torch.Tensor, torch.Tensor], config) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in normalization(config, "dct"))
    out = []
    for x, name in zip(raw, ("y", "cbcr")):
        first, stop = INPUT_CHANNELS[name]
        m, s = mean[first:stop, None, None], std[first:stop, None, None]
        out.append(((x.double() - m) / s).float())
    return tuple(out)


def batchnorms_reading_raw_inputs(model: nn.Module, inputs) -> set[str]:
    """Dotted paths of the BatchNorms whose input is one of `inputs` itself (found by hooks)."""
    found, handles = set(), []
    for path, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            def hook(module, args, path=path):
                if any(args[0] is x for x in inputs):
                    found.add(path)
            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return found


@pytest.mark.parametrize("name", DCT_MODELS + sorted(CONVERTED))
def test_the_fold_keeps_the_function_and_takes_exactly_the_input_batchnorms(name):
    generator = torch.Generator().manual_seed(0)
    model = build(name).eval()
    randomize(model, generator)
    raw = raw_coefficients(generator)
    before = normalized(raw, model.input_config)
    declared = {path for _, path in model.input_batchnorms}
    assert batchnorms_reading_raw_inputs(model, before) == declared
    with torch.no_grad():
        expected = model(*before)
    old_config = model.input_config
    folded = fold_input_batchnorms(model)
    assert set(folded) == declared
    if name == "converted-pixels":  # the exact entry undoes the normalization itself: nothing to fold
        assert folded == [] and model.input_config == old_config
    else:
        assert folded and model.input_config != old_config
    modules = dict(model.named_modules())
    for path in folded:  # only the affine is left
        bn = modules[path]
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
    with torch.no_grad():
        got = model(*normalized(raw, model.input_config))
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    assert fold_input_batchnorms(model) == folded or not folded  # a second fold changes nothing more
    with torch.no_grad():
        again = model(*normalized(raw, model.input_config))
    assert torch.allclose(again, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())


def test_the_fold_is_the_formula_and_skips_what_it_cannot_fold():
    model = create_model("dct_efficientnet_b0", num_classes=4, width_multiplier=0.25, depth_multiplier=0.25).eval()
    with torch.no_grad():
        model.stem.bn_y.running_mean.fill_(2.0)
        model.stem.bn_y.running_var.fill_(9.0 - model.stem.bn_y.eps)
        model.stem.bn_cbcr.running_var[5] = float("nan")  # a broken statistic: that BatchNorm is left alone
    assert fold_input_batchnorms(model) == ["stem.bn_y"]
    mean, std = model.input_config.dct_mean, model.input_config.dct_std
    # default normalization: mean 0, std 128 -> mean 0 + 128 * 2, std 128 * 3
    assert mean[:64] == pytest.approx([256.0] * 64) and std[:64] == pytest.approx([384.0] * 64)
    assert mean[64:] == pytest.approx([0.0] * 128) and std[64:] == pytest.approx([128.0] * 128)
    rgb = create_model("efficientnet_b0", num_classes=4, width_multiplier=0.25, depth_multiplier=0.25).eval()
    assert fold_input_batchnorms(rgb) == []
    assert not math.isnan(model.stem.bn_y.running_var[0])


@requires_shared
def test_an_export_carries_the_fold_and_serves_the_checkpoints_answers(tmp_path: Path):
    """`jpegnet export`'s file says the folded normalization; run on a real JPEG normalized by what the file
    says, it gives the checkpoint's logits on the same JPEG normalized by what the checkpoint says."""
    from jpegnet.engine.backends import OnnxRuntimeBackend

    generator = torch.Generator().manual_seed(1)
    model = create_model("dct_efficientnet_b0", num_classes=4, width_multiplier=0.25, depth_multiplier=0.25)
    randomize(model, generator)
    model.eval()
    checkpoint = tmp_path / "model.pt"
    save_checkpoint({"model_name": "dct_efficientnet_b0",
                     "model_kwargs": {"width_multiplier": 0.25, "depth_multiplier": 0.25}, "num_classes": 4,
                     "input_config": model.input_config.to_dict(), "model": model.state_dict()}, checkpoint)
    export_checkpoint(checkpoint, tmp_path / "model.onnx")
    info = read_onnx_metadata(tmp_path / "model.onnx")
    reference = create_model("dct_efficientnet_b0", num_classes=4, width_multiplier=0.25, depth_multiplier=0.25)
    reference.load_state_dict(model.state_dict())
    reference.input_config = model.input_config
    fold_input_batchnorms(reference.eval())
    assert info.input_config.dct_mean == pytest.approx(reference.input_config.dct_mean)
    assert info.input_config.dct_std == pytest.approx(reference.input_config.dct_std)
    files = sorted((IMAGENETTE / "val" / "n01440764").glob("*.JPEG"))[:4]
    (_, theirs, _), = input_batches(files, info.input_config, batch_size=4)
    (_, ours, _), = input_batches(files, model.input_config, batch_size=4)
    with torch.no_grad():
        expected = model(*ours)
    got = OnnxRuntimeBackend(tmp_path / "model.onnx")(*theirs)
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())


def _int8_error(model: nn.Module, calibration_files, test_files) -> float:
    """Relative error of the int8 file's logits against the fp32 model's on `test_files`."""
    from jpegnet.engine.backends import OnnxRuntimeBackend
    from jpegnet.engine.quantize import quantize_onnx

    fp32 = export_onnx(model)
    calibration = [inputs for _, inputs, _ in input_batches(calibration_files, model.input_config, batch_size=8)]
    int8 = OnnxRuntimeBackend(quantize_onnx(fp32, calibration, reduce_range=True))
    (_, test, _), = input_batches(test_files, model.input_config, batch_size=len(test_files))
    with torch.no_grad():
        expected = model(*test)
    return ((int8(*test) - expected).norm() / expected.norm()).item()


@requires_shared
def test_the_fold_keeps_an_int8_files_inputs_precise():
    """A DCT model whose input BatchNorms hold the real statistics of the coefficients (the state training
    leaves them in), quantized to int8 as `jpegnet export --int8` does: without the fold the one-scale input
    quantizer rounds the small coefficients away, with it the int8 logits stay close to fp32."""
    classes = sorted(p for p in (IMAGENETTE / "train").iterdir() if p.is_dir())
    calibration = [f for c in classes for f in sorted(c.glob("*.JPEG"))[:3]]
    test = [f for c in classes for f in sorted(c.glob("*.JPEG"))[3:5]]
    torch.manual_seed(0)
    model = create_model("dct_efficientnet_b0", num_classes=10, width_multiplier=0.25, depth_multiplier=0.25)
    model.input_config = model.input_config.with_size(SIZE * 2)
    model.eval()
    (_, (y, cbcr), _), = input_batches(calibration, model.input_config, batch_size=len(calibration))
    with torch.no_grad():  # the statistics a trained model's input BatchNorms hold: the data's own
        for bn, x in ((model.stem.bn_y, y), (model.stem.bn_cbcr, cbcr)):
            bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            bn.running_var.copy_(x.var(dim=(0, 2, 3)))
    unfolded = _int8_error(model, calibration, test)
    assert fold_input_batchnorms(model) == ["stem.bn_y", "stem.bn_cbcr"]
    folded = _int8_error(model, calibration, test)
    assert folded < 0.6 * unfolded, (folded, unfolded)  # measured: 0.09 against 0.21-0.26 (three seeds)


def test_every_other_dct_model_has_the_adapters_stem():
    """The models the exactness test leaves out all enter through `DctAdapter`, whose fold it checks."""
    from jpegnet.models.dct_adapter import DctAdapter

    others = sorted(set(n for n in list_models() if n.startswith("dct_")) - set(DCT_MODELS))
    assert others
    for name in others:
        model = build(name)
        assert isinstance(model, DctAdapter), name
        assert model.input_batchnorms == (("y", "stem.bn_y"), ("cbcr", "stem.bn_cbcr"))
