"""jpegnet.data.folder: JpegFolder's layout, arguments, for_model, item access through a plain DataLoader, and
the scan made once per run."""
from __future__ import annotations

import os

import pytest
import torch

from jpegnet.cli import main
from jpegnet.data import DEFAULT_DCT_SCALE, JpegFolder, create_loader, scan
from jpegnet.engine import check_train_val_folder
from jpegnet.input_config import IMAGENET_MEAN, IMAGENET_STD, InputConfig, normalization

from .data_helpers import folder  # noqa: F401  (folder: a fixture)
from .test_engine_resume import make_tiny_dataset


def test_folder_layout_and_arguments(folder):
    ds = JpegFolder(folder, "dct", train=True)
    assert ds.classes == sorted(p.name for p in folder.iterdir())
    assert ds.class_to_idx == {c: i for i, c in enumerate(ds.classes)}
    assert len(ds) == 6 and all(t == ds.class_to_idx[p.split("/")[-2]] for p, t in ds.samples)
    with pytest.raises(ValueError, match="representation"):
        JpegFolder(folder, "yuv", train=True)
    with pytest.raises(ValueError, match="on_error"):
        JpegFolder(folder, "dct", train=True, on_error="ignore")
    with pytest.raises(FileNotFoundError):
        JpegFolder(folder / "missing", "dct", train=True)
    with pytest.raises(ValueError, match="scale"):
        JpegFolder(folder, "dct", train=True, scale=(0.5, 0.1))
    with pytest.raises(TypeError, match="input_size"):
        JpegFolder(folder, "dct", train=True, input_size="big")
    with pytest.raises(ValueError, match="batch_size"):
        create_loader(ds, 0)
    with pytest.raises(TypeError):
        create_loader([1, 2, 3], 2)


def test_works_with_torch_dataloader(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate)
    (y, cbcr), target = next(iter(loader))
    assert y.shape == (3, 64, 4, 4) and cbcr.shape == (3, 128, 2, 2)
    # item access draws the same augmentation as the batch loader for the same (seed, epoch, index)
    batch = create_loader(ds, 3, seed=ds.seed)
    batch.set_epoch(2)
    (yb, cb), tb = next(iter(batch))
    assert torch.equal(target, tb)
    assert torch.allclose(y, yb, atol=1e-5) and torch.allclose(cbcr, cb, atol=1e-5)
    # worker processes draw the same augmentation as the main process
    workers = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate, num_workers=2)
    (yw, cw), tw = next(iter(workers))
    assert torch.equal(tw, target) and torch.equal(yw, y) and torch.equal(cw, cbcr)


# ------------------------------------------------------------------------------------------------
# A model's data config, resolved once

def test_for_model_takes_everything_from_the_input_config(folder):
    stats = (tuple(float(i) for i in range(192)), tuple(1.0 + i for i in range(192)))
    cfg = InputConfig(representation="dct", input_size=(48, 32), crop_pct=0.5, dct_mean=stats[0], dct_std=stats[1])
    ds = JpegFolder.for_model(folder, cfg, train=False, seed=4)
    keyword = JpegFolder(folder, "dct", train=False, input_size=(48, 32), crop_pct=0.5, input_config=cfg, seed=4)
    assert (ds.representation, ds.input_size, ds.crop_pct, ds.input_config, ds.seed) == ("dct", (48, 32), 0.5, cfg, 4)
    # the loader normalizes with the dataset's config unless told otherwise
    (y, cbcr), _ = next(iter(create_loader(ds, 6)))
    (y2, cbcr2), _ = next(iter(create_loader(keyword, 6, input_config=cfg)))
    assert torch.equal(y, y2) and torch.equal(cbcr, cbcr2)
    (y_default, _), _ = next(iter(create_loader(JpegFolder(folder, "dct", train=False, input_size=(48, 32),
                                                           crop_pct=0.5), 6)))
    assert torch.allclose(y * torch.tensor(stats[1][:64]).view(1, 64, 1, 1) + torch.tensor(stats[0][:64]).view(
        1, 64, 1, 1), y_default * DEFAULT_DCT_SCALE, atol=1e-2)
    # a list of files (or JPEG bytes) is a from_files dataset with the same transform
    files = [p for p, _ in ds.samples[:2]]
    listed = JpegFolder.for_model(files + [open(files[0], "rb").read()], cfg, train=False)
    assert listed.targets == [-1, -1, -1] and listed.input_size == (48, 32) and listed.input_config is cfg
    assert torch.equal(listed[0][0][0], ds[0][0][0]) and torch.equal(listed[2][0][0], ds[0][0][0])
    rgb = JpegFolder.for_model(folder, InputConfig(input_size=(40, 40)), train=True)
    assert rgb.representation == "rgb" and rgb.input_size == (40, 40) and rgb.train
    with pytest.raises(TypeError, match="InputConfig"):
        JpegFolder.for_model(folder, {"representation": "dct"}, train=False)


def test_input_config_checks_its_dct_statistics():
    with pytest.raises(ValueError, match="both or neither"):
        InputConfig(representation="dct", dct_mean=(0.0,) * 192)
    with pytest.raises(ValueError, match="192"):
        InputConfig(representation="dct", dct_mean=(0.0,) * 64, dct_std=(1.0,) * 64)
    with pytest.raises(ValueError, match="positive"):
        InputConfig(representation="dct", dct_mean=(0.0,) * 192, dct_std=(0.0,) * 192)
    with pytest.raises(ValueError, match="representation"):
        InputConfig(representation="yuv")
    assert normalization(None, "dct") == ((0.0,) * 192, (DEFAULT_DCT_SCALE,) * 192)
    assert normalization(InputConfig(), None) == (IMAGENET_MEAN, IMAGENET_STD)
    # the old import paths still name the one type and the one set of constants
    from jpegnet.data.folder import IMAGENET_MEAN as data_mean
    from jpegnet.models import InputConfig as models_config
    from jpegnet.models.registry import IMAGENET_STD as registry_std
    assert models_config is InputConfig and data_mean is IMAGENET_MEAN and registry_std is IMAGENET_STD


# ------------------------------------------------------------------------------------------------
# One scan per run

def test_a_training_run_scans_each_folder_once_and_ignores_hidden_entries(tmp_path, monkeypatch):
    """`.ipynb_checkpoints` (with a JPEG in it) under train/ and val/, and a hidden JPEG in a class folder, neither
    fail a training run's data setup nor change its classes; the engine's folder check and the datasets share
    one scan of each folder."""
    clean = make_tiny_dataset(tmp_path / "clean")
    data = make_tiny_dataset(tmp_path / "data")
    sample = next((data / "train").glob("*/*.jpg")).resolve()
    for split in ("train", "val"):
        (data / split / ".ipynb_checkpoints").mkdir()
        os.symlink(sample, data / split / ".ipynb_checkpoints" / "copy.jpg")
        first_class = sorted(p for p in (data / split).iterdir() if not p.name.startswith("."))[0]
        os.symlink(sample, first_class / ".hidden.jpg")
    listed = []
    real_list_classes = scan.list_classes
    monkeypatch.setattr(scan, "list_classes", lambda root: listed.append(os.fspath(root)) or real_list_classes(root))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                 "--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125",
                 "--input-size", "32", "--threads", "1", "--no-progress", "--no-tensorboard"]) == 0
    assert sorted(listed) == [str(data / "train"), str(data / "val")]  # each folder listed exactly once
    classes = torch.load(run / "last.pt", weights_only=True)["class_names"]
    assert classes == scan.list_classes(clean / "train") and len(classes) == 3
    # what the check hands on is what the dataset uses: no hidden file among the samples
    train, val, checked = check_train_val_folder(data)
    assert checked == classes and os.fspath(train) == str(data / "train")
    ds = JpegFolder.for_model(train, InputConfig(representation="dct", input_size=(32, 32)), train=True)
    assert ds.samples == train.samples and len(ds) == 12
    assert not any("/." in p for p, _ in ds.samples)
