"""A training batch that skipped unreadable files left too small for the model's BatchNorm (one image, with
1x1 feature maps at 32 px) is skipped with one warning and counted, instead of stopping the run with
`ValueError: Expected more than 1 value per channel when training`; the schedule and resume stay exact."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from jpegnet.engine.batchnorm_size import batchnorm_values_per_image, smallest_trainable_batch
from jpegnet.engine.trainer import TrainConfig, train
from jpegnet.engine.zoo import build_model

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SAMPLES = SHARED / "clothing-cc0-samples"
BAD = SHARED / "jpeg-corpus" / "bad" / "not_a_jpeg.jpg"
MODEL = "dct_late_concat_rfa_thinner"
KWARGS = {"width_multiplier": 0.125}

pytestmark = pytest.mark.skipif(not (SAMPLES.is_dir() and BAD.is_file()), reason="needs ../shared/data")


def _samples(cls: str, part: slice) -> list[Path]:
    return sorted((SAMPLES / cls).glob("*.jpg"))[part]


def one_image_batch_dataset(root: Path) -> Path:
    """4 training files, one unreadable: with batches of 2, whatever the order, one batch keeps one image."""
    for split, cls, files in (("train", "dress", _samples("dress", slice(0, 2))),
                              ("train", "hat", _samples("hat", slice(0, 1)) + [BAD]),
                              ("val", "dress", _samples("dress", slice(2, 3))),
                              ("val", "hat", _samples("hat", slice(1, 2)))):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(f.resolve(), folder / f.name)
    return root


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    # lr: a step on 2 images normalizes each 1x1 channel over 2 values, whose gradients are huge; a small lr
    # keeps the weights finite so the run's end-of-epoch evaluation is about the skip, not about divergence.
    base = dict(data=str(data), model=MODEL, model_kwargs=dict(KWARGS), out_dir=str(out), input_size=32,
                batch_size=2, epochs=2, lr=1e-4, device="cpu", deterministic=True, num_threads=1,
                tensorboard=False, progress=False, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def test_last_feature_map_is_1x1_at_32_pixels():
    model = build_model(MODEL, num_classes=2, model_kwargs=dict(KWARGS))
    values = batchnorm_values_per_image(model, (torch.zeros(2, 64, 4, 4), torch.zeros(2, 128, 2, 2)))
    assert values == 1 and smallest_trainable_batch(values) == 2
    assert model.training  # the probe leaves the mode as it found it
    values = batchnorm_values_per_image(model, (torch.zeros(1, 64, 16, 16), torch.zeros(1, 128, 8, 8)))
    assert values > 1 and smallest_trainable_batch(values) == 1  # 128 px: every image alone is enough
    assert batchnorm_values_per_image(torch.nn.Linear(3, 2), (torch.zeros(1, 3),)) is None


@pytest.mark.parametrize("accum", [1, 2])
def test_one_image_batch_is_skipped_and_counted(tmp_path, capsys, accum):
    data = one_image_batch_dataset(tmp_path / "data")
    summary = train(_config(data, tmp_path / "run", grad_accum_steps=accum))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "skipped batch" in line]
    assert len(warnings) == 2, err  # once per epoch, one line each
    assert all(line.startswith("WARNING: epoch ") and "fewer than 2 images" in line and "1x1" in line
               for line in warnings)
    assert "Traceback" not in err and "Expected more than 1 value" not in err
    assert summary["skipped_batches"] == 2
    # A skipped batch is no step: 2 steps/epoch, one of them skipped each epoch.
    assert [row["step"] for row in summary["history"]] == [1, 2]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["global_step"] == 2 and state["scheduler"]["last_epoch"] == 2 and state["skipped_batches"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_resume_over_a_skipped_batch_is_bit_identical(tmp_path, capsys):
    data = one_image_batch_dataset(tmp_path / "data")
    whole = train(_config(data, tmp_path / "whole"))
    train(_config(data, tmp_path / "part", epochs=1))
    resumed = train(_config(data, tmp_path / "part", epochs=2), resume=tmp_path / "part" / "last.pt")
    assert resumed["skipped_batches"] == whole["skipped_batches"] == 2
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert a["global_step"] == b["global_step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_batch_of_one_per_process_is_refused_in_one_line(tmp_path, capsys):
    from jpegnet.cli import main

    data = one_image_batch_dataset(tmp_path / "data")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", MODEL, "--model-kwargs",
                 "width_multiplier=0.125", "--input-size", "32", "--batch-size", "1", "--epochs", "1",
                 "--threads", "1", "--no-progress", "--no-tensorboard"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("jpegnet: error: --batch-size 1 gives 1 image per process"), lines
    assert "BatchNorm" in lines[-1] and not any("Traceback" in line for line in lines)


@pytest.mark.slow
def test_two_processes_skip_the_same_step(tmp_path):
    """8 files, one unreadable, batches of 2 per process: the process that meets it holds 1 image in that
    step; both skip it (DDP would hang if only one did) and the run finishes."""
    import subprocess
    import sys

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    for split, cls, files in (("train", "dress", _samples("dress", slice(0, 3)) + _samples("pants", slice(0, 1))),
                              ("train", "hat", _samples("hat", slice(0, 3)) + [BAD]),
                              ("val", "dress", _samples("dress", slice(3, 4))),
                              ("val", "hat", _samples("hat", slice(3, 4)))):
        (data / split / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(f.resolve(), data / split / cls / f.name)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "jpegnet",
                           "train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", MODEL,
                           "--model-kwargs", "width_multiplier=0.125", "--input-size", "32", "--batch-size", "4",
                           "--epochs", "1", "--lr", "1e-4", "--device", "cpu", "--threads", "1", "--no-progress",
                           "--no-tensorboard"],
                          cwd=Path(__file__).resolve().parents[1], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("skipped batch") == 1  # rank 0 alone prints
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["world_size"] == 2 and state["global_step"] == 1 and state["skipped_batches"] == 1
