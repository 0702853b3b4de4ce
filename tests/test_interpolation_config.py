"""Issue 19, item 4: the model's resize filter (InputConfig.interpolation, 'bilinear' or 'bicubic') decides how
DCT models resample, on every path that reads JPEGs for a model (JpegFolder / JpegShards.for_model, the
server's upload decode, predict), and it survives checkpoints and ONNX export (old files without it read as
'bilinear', the filter they were made with)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from jpegnet import InputConfig, create_model, read_coefficients
from jpegnet.data import JpegFolder, JpegShards, build_batch, build_dct_batch, center_crop_windows, write_shards
from jpegnet.engine import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from jpegnet.samples import sample_files

DCT = InputConfig(representation="dct", input_size=(64, 64))
BICUBIC = replace(DCT, interpolation="bicubic")


def files(count: int = 3) -> list:
    return [str(f) for f in sample_files()[::5][:count]]


def expected_batch(paths, cfg: InputConfig):
    """build_dct_batch straight on the files' coefficients, the evaluation windows and cfg's filter."""
    coefs = [read_coefficients(p) for p in paths]
    windows = center_crop_windows(np.array([c.width for c in coefs]), np.array([c.height for c in coefs]),
                                  cfg.input_size, cfg.crop_pct)
    return build_dct_batch(coefs, windows, np.zeros(len(coefs), bool), cfg.input_size,
                           interpolation=cfg.interpolation)


def assert_batches_equal(got, want, atol=1e-4):
    for a, b in zip(got, want):
        assert a.shape == b.shape and (a - b).abs().max() <= atol


def test_input_config_field_defaults_checks_and_round_trips():
    assert InputConfig().interpolation == "bilinear"
    assert list(InputConfig.__dataclass_fields__).index("interpolation") == \
        list(InputConfig.__dataclass_fields__).index("crop_pct") + 1
    with pytest.raises(ValueError, match="interpolation"):
        InputConfig(interpolation="lanczos")
    assert InputConfig.from_dict(BICUBIC.to_dict()) == BICUBIC
    old = {k: v for k, v in BICUBIC.to_dict().items() if k != "interpolation"}  # saved before the field
    assert InputConfig.from_dict(old).interpolation == "bilinear"


def test_for_model_resamples_with_the_configs_filter():
    paths = files()
    for cfg in (DCT, BICUBIC):
        ds = JpegFolder.for_model(paths, cfg, train=False)
        assert ds.interpolation == cfg.interpolation
        (inputs, _), bad = build_batch(ds, range(len(paths)), seed=0, epoch=0)
        assert not bad
        assert_batches_equal(inputs, expected_batch(paths, cfg))
    # the two filters do give different batches
    a = build_batch(JpegFolder.for_model(paths, DCT, train=False), [0], seed=0, epoch=0)[0][0][0]
    b = build_batch(JpegFolder.for_model(paths, BICUBIC, train=False), [0], seed=0, epoch=0)[0][0][0]
    assert (a - b).abs().max() > 1e-2
    with pytest.raises(ValueError, match="interpolation"):
        JpegFolder.from_files(paths, "dct", interpolation="cubic")


def test_shards_for_model_resample_with_the_configs_filter(tmp_path):
    root = tmp_path / "folder" / "cls"
    root.mkdir(parents=True)
    paths = files(2)
    for i, p in enumerate(paths):
        (root / f"{i}.jpg").write_bytes(open(p, "rb").read())
    written = write_shards(tmp_path / "folder", str(tmp_path / "val-%06d.tar"))
    ds = JpegShards.for_model(written["pattern"], BICUBIC, train=False)
    assert ds.interpolation == "bicubic"
    loader = ds.make_loader(2, shuffle=False)
    (inputs, _), = list(loader)
    assert_batches_equal(inputs, expected_batch([root / "0.jpg", root / "1.jpg"], BICUBIC))


def test_serving_and_predict_use_the_configs_filter():
    from jpegnet.engine.inference import input_batches
    from jpegnet.serve.preprocess import decode_upload

    path = files(1)[0]
    want = expected_batch([path], BICUBIC)
    got, _ = decode_upload(open(path, "rb").read(), BICUBIC, max_pixels=None)
    assert_batches_equal(got, want)
    (_, inputs, errors), = list(input_batches([path], BICUBIC))
    assert errors == [None]
    assert_batches_equal(inputs, want)


def _checkpoint(tmp_path, input_config: dict):
    model = create_model("dct_vgnetg_1_0mp", num_classes=2)
    path = tmp_path / "m.pt"
    save_checkpoint({"model_name": "dct_vgnetg_1_0mp", "num_classes": 2, "class_names": ["a", "b"],
                     "input_config": input_config, "model": model.state_dict()}, path)
    return path


def test_checkpoints_carry_the_filter_and_old_ones_read_as_bilinear(tmp_path):
    cfg = replace(create_model("dct_vgnetg_1_0mp", num_classes=2).input_config, interpolation="bicubic")
    path = _checkpoint(tmp_path, cfg.to_dict())
    assert model_from_checkpoint(load_checkpoint(path), str(path)).input_config == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "interpolation"}
    path = _checkpoint(tmp_path, old)
    assert model_from_checkpoint(load_checkpoint(path), str(path)).input_config.interpolation == "bilinear"
    path = _checkpoint(tmp_path, {**cfg.to_dict(), "interpolation": "sinc"})
    with pytest.raises(CheckpointError, match="interpolation"):
        model_from_checkpoint(load_checkpoint(path), str(path))


def test_onnx_metadata_carries_the_filter_and_old_files_read_as_bilinear(tmp_path):
    pytest.importorskip("onnx")
    from jpegnet.engine.export import parse_metadata
    from jpegnet.serve import OnnxRuntimeBackend, export_onnx, read_onnx_metadata

    model = create_model("dct_vgnetg_1_0mp", num_classes=2)
    model.input_config = replace(model.input_config, interpolation="bicubic")
    data = export_onnx(model, class_names=["a", "b"], model_name="dct_vgnetg_1_0mp")
    info = read_onnx_metadata(data)
    assert info.input_config == model.input_config
    # what `jpegnet serve --onnx` preprocesses with
    assert OnnxRuntimeBackend(data, threads=1).input_config.interpolation == "bicubic"
    import onnx
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert json.loads(props["interpolation"]) == "bicubic"
    del props["interpolation"]  # a file exported before the filter was recorded
    assert parse_metadata(props).input_config.interpolation == "bilinear"
    with pytest.raises(CheckpointError, match="interpolation"):
        parse_metadata({**props, "interpolation": json.dumps("area")})
