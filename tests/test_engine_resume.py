"""Exact resume: a real `jpegnet train` process killed with SIGKILL mid-epoch and resumed ends with the very
weights (bit for bit, --deterministic on the CPU) of a run that was never interrupted.

Run as a script, this file is the training process itself: `python tests/test_engine_resume.py SLOW ARGS...`
is `jpegnet train ARGS...` with each optimizer step stretched by SLOW seconds, so that the test can kill it at
a known point of its run instead of racing a process that finishes in a second.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


def make_tiny_dataset(root: Path, classes: int = 3, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """train/ and val/ class folders linking the built-in CC0 samples (no copies)."""
    from jpegnet.samples import SAMPLES_DIR, sample_classes

    for split, part in (("train", slice(0, train_per_class)),
                        ("val", slice(train_per_class - val_per_class, train_per_class))):
        for name in sample_classes()[:classes]:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((SAMPLES_DIR / name).glob("*.jpg"))[part]:
                os.symlink(f, folder / f.name)
    return root


COMMON_ARGS = ["--input-size", "32", "--epochs", "2", "--batch-size", "2", "--lr", "0.02", "--deterministic",
               "--threads", "1", "--log-every", "1", "--no-progress"]
MODELS = {  # one per input pipeline: pixels (torchvision twin) and DCT coefficients
    "rgb": ["--model", "resnet50", "--model-kwargs", "width_multiplier=0.125,depth_multiplier=0.25"],
    "dct": ["--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125"],
}


def _run(args, slow: float = 0.0, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(HERE), str(slow), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _position(path: Path):
    try:
        state = torch.load(path, weights_only=True)
    except Exception:
        return None
    return state["epoch"], state["batch"], state["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_killed_and_resumed_run_is_bit_identical(tmp_path, kind):
    TRAIN_ARGS = MODELS[kind] + COMMON_ARGS
    data = make_tiny_dataset(tmp_path / "data")  # 12 train images: 6 steps per epoch of 2, 12 steps in all
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    reference = _run(["--data", str(data), "--out", str(straight), *TRAIN_ARGS])
    # Checkpoints by time (every 0.2 s) and not by step: what a preempted cluster job actually relies on.
    victim = _run(["--data", str(data), "--out", str(killed), "--save-every-minutes", "0.003", *TRAIN_ARGS],
                  slow=0.25)

    deadline = time.monotonic() + 180
    position = None
    while time.monotonic() < deadline and victim.poll() is None:
        position = _position(killed / "last.pt")
        if position is not None and position[0] == 1 and position[1] >= 2:  # mid-way through epoch 2
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the slowed run finished before it could be killed:\n" + victim.stdout.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    victim.stdout.close()
    assert victim.returncode == -signal.SIGKILL
    _finish(reference)

    saved = _position(killed / "last.pt")  # the newest complete checkpoint (never a torn file)
    assert saved is not None and saved[0] == 1 and 0 < saved[1] < 6, saved

    out = _finish(_run(["--resume", str(killed / "last.pt")]))
    assert f"resuming at epoch 2, batch {saved[1]}/6" in out
    assert not list(killed.glob(".*.tmp")), "a temporary file of the killed run's last write was left behind"

    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert (a["epoch"], a["batch"], a["global_step"]) == (b["epoch"], b["batch"], b["global_step"]) == (2, 0, 12)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]
    timing = {"train_images_per_s", "val_images_per_s", "epoch_seconds"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    # The resumed run rewrote the CSV from the checkpoint's history: one row per epoch, no duplicates.
    rows = (killed / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("1,6,") and rows[2].startswith("2,12,")
    # The sanity check that makes the equality meaningful: training changed the weights.
    first = torch.load(straight / "best.pt", weights_only=True)
    assert any(not torch.equal(first["model"][k], a["model"][k]) for k in a["model"]
               if a["model"][k].is_floating_point()) or first["epoch"] == 2


if __name__ == "__main__":
    slow = float(sys.argv[1])
    if slow > 0:
        import jpegnet.engine.trainer as trainer

        original_step = trainer.TrainingRun._step

        def slowed_step(self, inputs, targets):
            time.sleep(slow)  # touches no random stream: the computation is unchanged
            return original_step(self, inputs, targets)

        trainer.TrainingRun._step = slowed_step
    from jpegnet.cli import main

    sys.exit(main(["train", *sys.argv[2:]]))
