"""`jpegnet export` and the ONNX Runtime backend: a valid ONNX file with a dynamic batch and self-describing
metadata, whose ONNX Runtime logits equal PyTorch's (max abs diff <= 1e-4) for a representative of every
registered family. Export of every registered model is already checked by tests/test_all_models.py; here one
model per family goes the whole way through ONNX Runtime, at the same small sizes."""
from __future__ import annotations

import json

import pytest
import torch

from jpegnet import create_model
from jpegnet.cli import main
from jpegnet.engine import save_checkpoint
from jpegnet.engine.input_fold import fold_input_batchnorms
from jpegnet.serve import OnnxRuntimeBackend, TorchBackend, export_onnx, read_onnx_metadata
from tests.test_all_models import export_size

# one per family (module of jpegnet.models), plus the DCT ResNet variants whose input stems differ and the
# generic DCT adapter on each backbone it serves
REPRESENTATIVES = [
    "resnet50_shorter",                 # resnet
    "dct_late_concat_rfa_thinner",      # dct_resnet: late concatenation, receptive-field-aware stem
    "dct_deconvolution_rfa",            # dct_resnet: learned (transposed-conv) chroma upsampling
    "efficientnet_b0",                  # efficientnet
    "cspresnet50",                      # cspnet
    "vgnetg_1_0mp_se",                  # vgnet: fixed-kernel downsampling, SE
    "hetconv_vgg16_cifar",              # hetnet
    "octresnet50_a5",                   # octresnet
    "dct_vgnetg_1_0mp",                 # dct_adapter (on VGNet)
]

# The transposed convolution's float32 rounding differs between oneDNN and ONNX Runtime: 0.8–1.2e-4 measured
# on logits of about ±4, run to run (thread scheduling); everything else stays below 1e-4.
TOLERANCE = {"dct_deconvolution_rfa": 2e-4}


def real_inputs(model, size: int, count: int):
    """`count` built-in sample photos as the model's input at size×size, through jpegnet.data."""
    from jpegnet.data import JpegFolder, build_batch
    from jpegnet.samples import sample_files

    cfg = model.input_config.with_size(size)
    files = sample_files()[::4][:count]
    dataset = JpegFolder.from_files(files, cfg.representation, input_size=cfg.input_size, crop_pct=cfg.crop_pct)
    (inputs, _), bad = build_batch(dataset, range(len(files)), seed=0, epoch=0, input_config=cfg)
    assert not bad
    return tuple(x.contiguous() for x in inputs)


def calibrate_batchnorm(model, inputs):
    """BatchNorm statistics from real photos, as a trained model has: at random init, eval-mode BatchNorm
    normalizes nothing and some families' logits reach 1e5, where float32 itself differs by 1e-2."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average of the batches seen
    model.train()
    with torch.no_grad():
        model(*inputs)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_onnxruntime_logits_equal_torch(name):
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    # 1000 classes: the classifier's initialization scales with them, so the logits have a trained model's size
    model = create_model(name, num_classes=1000)
    size = export_size(model)
    photos = real_inputs(model, size, 10)
    calibrate_batchnorm(model, photos)
    labels = [f"class {i}" for i in range(1000)]
    data = export_onnx(model, class_names=labels, model_name=name, input_size=size)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    names = ["x"] if model.input_config.representation == "rgb" else ["y", "cbcr"]
    assert [i.name for i in proto.graph.input] == names
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    runtime = OnnxRuntimeBackend(data, threads=2)
    inputs = tuple(x[-3:] for x in photos)  # batch 3: the file was traced at batch 1
    with torch.no_grad():
        expected = model(*inputs)
    got = runtime(*inputs)
    assert got.shape == (3, 1000)
    assert (got - expected).abs().max().item() <= TOLERANCE.get(name, 1e-4)
    assert runtime.class_names == labels and runtime.model_name == name
    assert runtime.input_config.input_size == (size, size)


def test_metadata_carries_the_preprocessing(tmp_path):
    model = create_model("dct_vgnetg_1_0mp", num_classes=3)
    stats = dict(dct_mean=tuple(float(i) for i in range(192)), dct_std=tuple(1.0 + i for i in range(192)))
    from dataclasses import replace
    model.input_config = replace(model.input_config, crop_pct=0.9, **stats)
    ckpt = tmp_path / "dct.pt"
    save_checkpoint({"model_name": "dct_vgnetg_1_0mp", "num_classes": 3, "class_names": ["cat", "dog", "owl"],
                     "input_config": model.input_config.to_dict(), "model": model.state_dict()}, ckpt)
    out = tmp_path / "dct.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    info = read_onnx_metadata(out)
    assert info.model_name == "dct_vgnetg_1_0mp" and info.class_names == ["cat", "dog", "owl"]
    # representation, size, crop_pct, mean/std, and the DCT stats with the input BatchNorms folded in (for a fresh
    # model: each std times sqrt(1 + eps); jpegnet.engine.input_fold)
    fold_input_batchnorms(model.eval())
    assert info.input_config == model.input_config
    assert info.input_config.dct_std == pytest.approx(stats["dct_std"], rel=1e-4)
    assert info.input_names == ["y", "cbcr"] and info.precision == "fp32" and info.quantization is None
    import onnx
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["representation"]) == "dct" and json.loads(props["input_size"]) == [224, 224]
    assert json.loads(props["crop_pct"]) == 0.9 and len(json.loads(props["dct_std"])) == 192
    assert json.loads(props["precision"]) == "fp32"


def test_export_of_a_plain_state_dict_needs_the_model_name(tmp_path, capsys):
    model = create_model("vgnetg_1_0mp", num_classes=4)
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(weights), "--out", str(out)]) == 1
    assert "not a jpegnet checkpoint" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--checkpoint", str(weights), "--model", "vgnetg_1_0mp", "--out", str(out)]) == 0
    assert "inputs x (rgb 224x224, dynamic batch), 4 classes" in capsys.readouterr().out
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (OnnxRuntimeBackend(out)(x) - model.eval()(x)).abs().max() <= 1e-4
    # a checkpoint of another model than --model says
    assert main(["export", "--checkpoint", str(weights), "--model", "efficientnet_b0", "--out", str(out)]) == 1
    assert "does not fit the model" in capsys.readouterr().err


def test_a_foreign_onnx_file_is_refused(tmp_path):
    model = create_model("vgnetg_1_0mp", num_classes=2).eval()
    path = tmp_path / "plain.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, model.example_inputs(1), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"])
    with pytest.raises(ValueError, match="not an ONNX file written by `jpegnet export`"):
        OnnxRuntimeBackend(path)


def test_torch_backend_is_the_model():
    model = create_model("vgnetg_1_0mp", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(TorchBackend(model, device="cpu")(x), model(x))


def test_default_onnx_backend_is_openvino_where_installed(monkeypatch):
    import importlib.util

    from jpegnet.engine.backends import default_onnx_backend

    installed = importlib.util.find_spec("openvino") is not None
    assert default_onnx_backend() == ("openvino" if installed else "onnxruntime")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino"
                        else real_find_spec(name, *a))
    assert default_onnx_backend() == "onnxruntime"


def test_bytes_that_are_not_onnx_are_a_typed_error(tmp_path, capsys):
    from jpegnet.cli import main
    from jpegnet.engine.backends import default_onnx_backend
    from jpegnet.errors import JpegnetError

    with pytest.raises(JpegnetError, match="onnxruntime cannot load it"):
        OnnxRuntimeBackend(b"not an onnx model at all")
    path = tmp_path / "truncated.onnx"
    path.write_bytes(b"\x08\x07\x12\x04junk")
    with pytest.raises(JpegnetError, match=f"{path.name}: onnxruntime cannot load it"):
        OnnxRuntimeBackend(path)
    # through the command: one line and exit 1, not onnxruntime's traceback (the file is loaded before any
    # socket is opened)
    refusal = {"onnxruntime": "onnxruntime cannot load it", "openvino": "openvino cannot read it"}
    # no --backend: the default, openvino where it is installed (the test extra installs it)
    for backend in (["--backend", "onnxruntime"], []):
        assert main(["serve", "--onnx", str(path), "--port", "0", *backend]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        says = refusal[backend[1] if backend else default_onnx_backend()]
        assert err[-1].startswith("jpegnet: error: ") and says in err[-1], err
        assert "Traceback" not in "\n".join(err)
