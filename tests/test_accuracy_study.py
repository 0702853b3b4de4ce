"""The accuracy study's runner (benchmarks/accuracy.py): a tiny end-to-end pass and its bookkeeping."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "accuracy.py"
IMAGENETTE = Path(os.environ.get("JPEGNET_SHARED_DATA", REPO.parent / "shared" / "data")) / "imagenette-224"


def load_study():
    spec = importlib.util.spec_from_file_location("accuracy_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_twins_and_epochs_to_reach():
    study = load_study()
    history = [{"epoch": 1, "val_top1": 30.0}, {"epoch": 2, "val_top1": 55.0}, {"epoch": 3, "val_top1": 61.0}]
    assert study.epochs_to_reach(history, 0.9 * 60.0) == 2
    assert study.epochs_to_reach(history, 70.0) is None
    runs = study.study_runs()
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids))
    # the order of priority: the main pair with two seeds, then the serving candidates
    assert ids[:4] == ["resnet50_s0", "dct_late_concat_rfa_thinner_s0", "resnet50_s1", "dct_late_concat_rfa_thinner_s1"]
    assert [r for r in runs if not r.dct_stats] == [study.Run("dct_late_concat_rfa_thinner_nostats",
                                                             "dct_late_concat_rfa_thinner", 0, dct_stats=False)]
    for run in runs:  # every DCT model has its RGB twin in the study
        if run.representation == "dct":
            assert study.TWIN[run.model] in {r.model for r in runs if r.representation == "rgb"}
    cpu = study.PROFILES["cpu"]
    assert cpu.size >= 96 and cpu.epochs >= 12
    # twins share their width: a DCT ResNet gets the same multiplier as resnet50
    assert cpu.model_kwargs("dct_late_concat_rfa") == cpu.model_kwargs("resnet50") == {"width_multiplier": 0.25}
    assert cpu.model_kwargs("dct_efficientnet_b0") == cpu.model_kwargs("efficientnet_b0")


def _tiny_split(root: Path, train: int, val: int) -> Path:
    for split, count in (("train", train), ("val", val)):
        for class_dir in sorted((IMAGENETTE / split).iterdir())[:3]:
            out = root / split / class_dir.name
            out.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:count]:
                os.symlink(f, out / f.name)
    return root


@pytest.mark.slow
def test_study_end_to_end_and_resume(tmp_path):
    data = _tiny_split(tmp_path / "data", 6, 3)
    runs, results = tmp_path / "runs", tmp_path / "results"
    cmd = [sys.executable, str(SCRIPT), "--profile", "cpu", "--data", str(data), "--out", str(runs),
           "--results", str(results), "--epochs", "2", "--size", "32", "--batch-size", "6", "--jobs", "2", "--train-steps", "1",
           "--infer-batches", "1", "--runs", "resnet50_s0", "dct_late_concat_rfa_thinner_s0", "--all"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(results / "summary.csv", newline="") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"resnet50_s0", "dct_late_concat_rfa_thinner_s0"}
    rgb, dct = rows["resnet50_s0"], rows["dct_late_concat_rfa_thinner_s0"]
    assert dct["rgb_twin"] == "resnet50" and float(dct["twin_top1"]) == float(rgb["val_top1"])
    assert float(dct["gap_to_twin"]) == pytest.approx(float(dct["val_top1"]) - float(rgb["val_top1"]), abs=0.011)
    for r in rows.values():
        assert 0.0 <= float(r["val_top1"]) <= float(r["val_top5"]) <= 100.0
        assert float(r["train_images_per_s"]) > 0 and float(r["inference_images_per_s"]) > 0
        with open(results / "epochs" / f"{r['run']}.csv", newline="") as f:
            assert [int(e["epoch"]) for e in csv.DictReader(f)] == [1, 2]
    for png in ("pareto_train.png", "pareto_inference.png"):
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((results / "meta.json").read_text())["command"].startswith("python benchmarks/accuracy.py")
    stats = json.loads((results / "dct_stats.json").read_text())
    assert stats["input_size"] == 32 and len(stats["dct_std"]) == 192

    # A finished run is skipped; an unfinished one (here: one more epoch asked for) resumes from its last
    # checkpoint instead of starting again.
    finished = (runs / "resnet50_s0" / "result.json").stat().st_mtime_ns
    (runs / "dct_late_concat_rfa_thinner_s0" / "result.json").unlink()
    longer = [("3" if prev == "--epochs" else a) for prev, a in zip([None] + cmd[:-2], cmd[:-1])]
    again = subprocess.run(longer, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (runs / "resnet50_s0" / "result.json").stat().st_mtime_ns == finished
    assert "started resnet50_s0" not in again.stdout
    log = (runs / "dct_late_concat_rfa_thinner_s0.log").read_text()
    assert "epoch 3/3" in log and "epoch 1/3" not in log and "epoch 2/3" not in log
    resumed = json.loads((runs / "dct_late_concat_rfa_thinner_s0" / "result.json").read_text())
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]


def test_help_documents_the_recipe():
    done = subprocess.run([sys.executable, str(SCRIPT), "--profile", "cpu", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0
    for words in ("96 px", "12 epochs", "AdamW", "label smoothing", "imagenette"):
        assert words in done.stdout
