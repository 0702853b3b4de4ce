"""Issue 15, items 3-7 on the engine and the CLI: runs that diverge, datasets that cannot be read, folders with
hidden entries and symlink loops, untrusted checkpoints, full disks and loose options. Each ends in one
`jpegnet: error:` line and exit status 1, and never replaces a good checkpoint."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from jpegnet.cli import main
from jpegnet.data import JpegFolder
from jpegnet.data.scan import list_class_files, scan_image_folder
from jpegnet.engine import CheckpointError, check_image_folder, load_checkpoint, model_from_checkpoint
from jpegnet.engine import checkpoint as checkpoint_module
from jpegnet.engine.checkpoint import save_checkpoint, weights_digest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402

TINY = ["--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125", "--input-size", "32",
        "--threads", "1", "--no-progress", "--no-tensorboard"]


def _error(capsys, argv) -> str:
    """Run the CLI, which must fail with exactly one error line (the last line, no traceback)."""
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("jpegnet: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any("Traceback" in line for line in lines)
    return errors[0]


def _all_finite(path: Path) -> bool:
    state = torch.load(path, weights_only=True)
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.fixture(scope="module")
def awkward_data(tmp_path_factory) -> Path:
    """Sample classes plus what real folders hold: a notebook's hidden checkpoint folder in train/ and val/
    (with a JPEG in it), a hidden file, and a symlink loop inside a class folder."""
    data = make_tiny_dataset(tmp_path_factory.mktemp("awkward") / "data")
    sample = next((data / "train" / "dress").iterdir()).resolve()
    for split in ("train", "val"):
        hidden = data / split / ".ipynb_checkpoints"
        hidden.mkdir()
        os.symlink(sample, hidden / "copy.jpg")
        os.symlink(sample, data / split / "hat" / ".hidden.jpg")
    os.symlink(".", data / "train" / "dress" / "loop")
    return data


@pytest.fixture(scope="module")
def trained(awkward_data, tmp_path_factory):
    """One short epoch on the awkward folder: (data, run folder)."""
    run = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", str(awkward_data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                 "--save-every-steps", "1", *TINY]) == 0
    return awkward_data, run


# ------------------------------------------------------------------------------------------------
# Item 5: one scanner; hidden entries skipped everywhere; each real directory visited once.

def test_scanner_skips_hidden_entries_and_symlink_loops(awkward_data):
    train = awkward_data / "train"
    classes, samples = scan_image_folder(train)
    assert classes == ["dress", "hat", "longsleeve"]
    paths = [p for p, _ in samples]
    assert len(paths) == len(set(os.path.realpath(p) for p in paths)) == 12  # the loop adds nothing
    assert not any("/." in p for p in paths)
    assert check_image_folder(train) == classes
    ds = JpegFolder(train, train=True, input_size=32)
    assert ds.classes == classes and [p for p, _ in ds.samples] == paths


def test_scanner_keeps_the_old_order(tmp_path):
    for sub in ("b", "a/z", "a"):
        (tmp_path / "c" / sub).mkdir(parents=True, exist_ok=True)
    for name in ("c/b/2.jpg", "c/b/1.JPG", "c/a/z/0.jpg", "c/a/9.jpeg", "c/x.jpg", "c/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    expected = [os.path.join(d, f) for d, _, files in sorted(os.walk(tmp_path / "c")) for f in sorted(files)
                if not f.endswith(".txt")]
    assert list_class_files(tmp_path / "c") == expected


def test_training_and_eval_with_hidden_folders_and_a_loop(trained, capsys, tmp_path):
    data, run = trained
    assert torch.load(run / "last.pt", weights_only=True)["class_names"] == ["dress", "hat", "longsleeve"]
    # eval on val/ with .ipynb_checkpoints in it used to end in an IndexError
    assert main(["eval", "--data", str(data), "--checkpoint", str(run / "last.pt"),
                 "--confusion", str(tmp_path / "cm.png")]) == 0
    assert "6 images" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Item 3: non-finite runs and options.

@pytest.mark.parametrize("option", [["--lr", "inf"], ["--lr", "nan"], ["--wd", "nan"], ["--wd", "inf"],
                                    ["--warmup-epochs", "nan"], ["--momentum", "nan"], ["--min-lr-factor", "inf"],
                                    ["--label-smoothing", "nan"], ["--save-every-minutes", "nan"]])
def test_non_finite_options_are_refused_before_training(awkward_data, tmp_path, capsys, option):
    run = tmp_path / "run"
    line = _error(capsys, ["train", "--data", str(awkward_data), "--out", str(run), *TINY, *option])
    assert "finite" in line
    assert not run.exists()


@pytest.mark.parametrize("bad_std", [0.0, float("nan"), -1.0])
def test_dct_stats_with_unusable_std_are_refused(awkward_data, tmp_path, capsys, bad_std):
    stats = tmp_path / "stats.json"
    std = [1.0] * 192
    std[5] = bad_std
    stats.write_text(json.dumps({"dct_mean": [0.0] * 192, "dct_std": std}))
    line = _error(capsys, ["train", "--data", str(awkward_data), "--out", str(tmp_path / "run"), *TINY,
                           "--dct-stats", str(stats)])
    assert "dct_std" in line and "--lr" not in line


def test_diverging_run_never_writes_a_non_finite_checkpoint(trained, tmp_path, capsys):
    data, _ = trained
    run = tmp_path / "run"
    # The loss is looked at every 100 steps only, a checkpoint is due every step: before the fix a last.pt
    # full of nan was written (replacing a good one) before any error. (A run folder holding a checkpoint is
    # refused without --resume, so the run starts in a fresh folder and must leave no checkpoint behind.)
    line = _error(capsys, ["train", "--data", str(data), "--out", str(run), "--epochs", "2", "--batch-size", "2",
                           "--lr", "1e9", "--warmup-epochs", "0", "--save-every-steps", "1", "--log-every", "100",
                           *TINY])
    assert "diverged" in line or "became" in line
    assert not (run / "last.pt").exists() or _all_finite(run / "last.pt")
    assert not (run / "best.pt").exists()


def test_non_finite_validation_loss_is_an_error_not_done(trained, tmp_path, capsys, monkeypatch):
    from jpegnet.engine import trainer

    real = trainer.evaluate

    def nan_loss(*args, **kwargs):
        out = real(*args, **kwargs)
        out["loss"] = float("nan")
        return out

    monkeypatch.setattr(trainer, "evaluate", nan_loss)
    data, _ = trained
    run = tmp_path / "run"
    line = _error(capsys, ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                           *TINY])
    assert "validation loss became nan" in line
    assert not (run / "best.pt").exists() and not (run / "last.pt").exists()


# ------------------------------------------------------------------------------------------------
# Item 4: unreadable datasets.

def _zero_byte_dataset(root: Path, per_class_train: int = 12, per_class_val: int = 6) -> Path:
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                (root / split / c / f"{i}.jpg").write_bytes(b"")
    return root


def test_dataset_of_unreadable_files_is_an_error(tmp_path, capsys):
    data = _zero_byte_dataset(tmp_path / "data")  # 36 zero-byte files
    run = tmp_path / "run"
    line = _error(capsys, ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                           *TINY])
    assert "no usable training image" in line
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_large_unreadable_share_is_a_loud_warning(tmp_path, capsys):
    data = make_tiny_dataset(tmp_path / "data")
    for name in ("bad1.jpg", "bad2.jpg", "bad3.jpg"):
        (data / "train" / "hat" / name).write_bytes(b"")  # 3 of 15 files: 20%
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--batch-size", "5", "--opt", "adamw", *TINY]) == 0  # 3 batches: every file is tried once
    err = capsys.readouterr().err
    assert "WARNING: epoch 1: 3 of 15 training files (20%) could not be read" in err


def test_fifo_in_a_class_folder_is_an_unreadable_file_not_a_hang(tmp_path):
    import threading

    from jpegnet.data import create_loader

    data = make_tiny_dataset(tmp_path / "data")
    os.mkfifo(data / "train" / "hat" / "upload.jpg")
    ds = JpegFolder(data / "train", train=True, input_size=32)
    assert any(p.endswith("upload.jpg") for p, _ in ds.samples)  # listed, so the reader reports it
    loader = create_loader(ds, 13, num_threads=2, prefetch=0)
    result = {}
    # on a thread with a deadline: a regression (open() or read() blocking on the FIFO) fails, not hangs
    worker = threading.Thread(target=lambda: result.update(images=sum(len(t) for _, t in loader)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "reading a FIFO in the dataset blocked"
    assert result["images"] == 12
    assert [p for p, _ in loader.skipped] == [str(data / "train" / "hat" / "upload.jpg")]
    assert "not a regular file: a FIFO" in loader.skipped[0][1]


# ------------------------------------------------------------------------------------------------
# Item 6: untrusted checkpoints.

def test_flipped_byte_in_the_weights_is_detected(trained, tmp_path):
    _, run = trained
    state = load_checkpoint(run / "last.pt")
    assert state["model_sha256"] == weights_digest(state["model"])
    raw = bytearray((run / "last.pt").read_bytes())
    weight = max(state["model"].values(), key=lambda t: t.numel())
    at = bytes(raw).find(weight.numpy().tobytes()[:4096])
    assert at > 0
    raw[at + 100] ^= 0x01
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="do not match their SHA-256 digest"):
        load_checkpoint(bad)


def _tampered(run: Path, tmp_path: Path, **changes) -> Path:
    state = load_checkpoint(run / "last.pt")
    state.update(changes)
    path = tmp_path / "tampered.pt"
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "model_sha256")}, path)
    return path


def test_checkpoint_cannot_ask_for_a_huge_model(trained, tmp_path, capsys):
    _, run = trained
    path = _tampered(run, tmp_path, model_kwargs={"width_multiplier": 200})
    with pytest.raises(CheckpointError, match="width_multiplier=200 is out of range"):
        model_from_checkpoint(load_checkpoint(path), str(path))
    # within the bounds but not the file's model: refused from the shapes alone, before any real allocation
    path = _tampered(run, tmp_path, model_kwargs={"width_multiplier": 8})
    with pytest.raises(CheckpointError, match="does not fit the model"):
        model_from_checkpoint(load_checkpoint(path), str(path))
    path = _tampered(run, tmp_path, model_kwargs={"width_multiplier": 0.125, "features_only": True})
    with pytest.raises(CheckpointError, match="features_only"):
        model_from_checkpoint(load_checkpoint(path), str(path))
    # the resume path checks before building too
    path = _tampered(run, tmp_path, model_kwargs={"width_multiplier": 8},
                     train_config={**load_checkpoint(run / "last.pt")["train_config"],
                                   "model_kwargs": {"width_multiplier": 8}})
    line = _error(capsys, ["train", "--resume", str(path), "--out", str(tmp_path / "resumed")])
    assert "does not fit the model" in line


class Payload:
    """Any class: the safe unpickler refuses to rebuild it."""


def test_foreign_checkpoints_never_suggest_weights_only_false(tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")

    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "jpegnet-checkpoint", "obj": Payload()}, pickled)
    for path in (text, pickled):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert "weights_only" not in str(info.value)
        line = _error(capsys, ["predict", str(path), "--checkpoint", str(path)])
        assert "weights_only" not in line and "not a readable checkpoint" in line


# ------------------------------------------------------------------------------------------------
# Item 7: full disk, read-only run folder, features_only.

def test_full_disk_says_so_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    state = {"model_name": "x", "model": {"w": torch.ones(4096)}, "num_classes": 1, "input_config": {}}
    save_checkpoint(state, path)
    before = path.read_bytes()
    real_mkstemp = tempfile.mkstemp

    def mkstemp_on_a_full_disk(*args, **kwargs):  # the temporary file's writes go to /dev/full (ENOSPC)
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", mkstemp_on_a_full_disk)
    with pytest.raises(CheckpointError, match="no space left on device; the previous last.pt is kept"):
        save_checkpoint({**state, "model": {"w": torch.zeros(4096)}}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pt"]


def test_unwritable_run_folder_is_found_before_training(awkward_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _error(capsys, ["train", "--data", str(awkward_data), "--out", str(blocker / "run"), *TINY])
    assert "cannot write to the run folder" in line


def test_features_only_is_refused_with_a_message(awkward_data, tmp_path, capsys):
    line = _error(capsys, ["train", "--data", str(awkward_data), "--out", str(tmp_path / "run"), "--model",
                           "dct_late_concat_rfa_thinner", "--model-kwargs", "features_only=True"])
    assert "features_only" in line
    line = _error(capsys, ["profile", "resnet50", "--model-kwargs", "features_only=True"])
    assert "features_only" in line
