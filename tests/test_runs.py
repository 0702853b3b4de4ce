"""Runs a user can trust: an existing run folder is never overwritten, config.json records the resolved run,
the header prints lr / optimizer / weight decay, best.safetensors sits beside best.pt, step and validation
lines without a terminal, `--resume` of a finished run says so, `eval` reports the training log's val loss
and writes files only when asked, `predict` is batched with --json and a non-zero exit on any failure, and
the CLI's error handler keeps tracebacks of bugs."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path

import pytest
import torch

from jpegnet.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402

TINY = ["--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125", "--input-size", "32",
        "--batch-size", "4", "--threads", "1", "--no-progress", "--log-every", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch DCT run: (data folder, run folder, its stderr)."""
    root = tmp_path_factory.mktemp("runs")
    data = make_tiny_dataset(root / "data")
    out = root / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--label-smoothing", "0.2",
                     *TINY]) == 0
    return data, out, err.getvalue()


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("jpegnet: error: "), lines
    return lines[-1]


def test_existing_run_folder_is_refused(run, capsys):
    data, out, _ = run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    err = _error(capsys, ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY])
    assert f"--out {out} already holds a run" in err and f"--resume {out / 'last.pt'}" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched


def test_config_json_and_header(run):
    _, out, err = run
    config = json.loads((out / "config.json").read_text())
    tc = config["train_config"]
    # every option after defaults: lr 0.1·B/256 for SGD with B = 4, wd 1e-4, precision resolved on the CPU
    assert tc["lr"] == pytest.approx(0.1 * 4 / 256) and tc["weight_decay"] == 1e-4 and tc["optimizer"] == "sgd"
    assert tc["precision"] == "fp32" and tc["label_smoothing"] == 0.2 and tc["epochs"] == 1
    assert config["input_config"]["input_size"] == [32, 32] and config["representation"] == "dct"
    assert config["versions"]["torch"] == torch.__version__ and config["classes"] == ["dress", "hat", "longsleeve"]
    assert "optimizer sgd: peak lr 0.001563, weight decay 0.0001, momentum 0.9" in err


def test_step_and_validation_lines_without_a_terminal(run):
    _, _, err = run
    steps = [line for line in err.splitlines() if " step " in line and "loss" in line]
    assert [s.split(" step ")[1].split(" ")[0] for s in steps] == ["1/3", "2/3", "3/3"]  # 12 images / 4
    assert all("images/s" in s and "lr " in s for s in steps)
    assert "epoch 1/1 validation: 2/2 batches" in err  # 6 val images, batches of 4


def test_best_safetensors_is_the_best_checkpoints_weights(run):
    from safetensors.torch import load_file

    from jpegnet.engine import load_checkpoint
    from jpegnet.models import create_model

    _, out, _ = run
    weights = load_file(out / "best.safetensors")
    state = load_checkpoint(out / "best.pt")
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)
    model = create_model("dct_late_concat_rfa_thinner", num_classes=3, width_multiplier=0.125,
                         checkpoint_path=str(out / "best.safetensors"))
    assert torch.equal(model.state_dict()["fc.weight"], state["model"]["fc.weight"])
    assert (out / "best.safetensors").stat().st_size < (out / "best.pt").stat().st_size / 2  # no optimizer


def test_resume_of_a_finished_run_says_complete(run, capsys):
    _, out, _ = run
    before = (out / "last.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(out / "last.pt")]) == 0
    assert "run complete: all 1 epochs" in capsys.readouterr().err
    assert (out / "last.pt").stat().st_mtime_ns == before


def test_eval_reports_the_val_loss_and_writes_only_when_asked(run, capsys, tmp_path):
    data, out, _ = run
    files_before = sorted(p.name for p in out.iterdir())
    assert main(["eval", "--data", str(data), "--checkpoint", str(out / "last.pt")]) == 0
    printed = capsys.readouterr().out
    loss = float(printed.split("loss ")[1].split(",")[0])
    rows = list(csv.DictReader(open(out / "log.csv")))
    # log.csv keeps 6 significant digits and eval prints 4 decimals: equal to the coarser of the two
    assert loss == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5, abs=1e-4)
    assert "cross-entropy with label smoothing 0.2 (what the training log calls val_loss)" in printed
    assert sorted(p.name for p in out.iterdir()) == files_before and "confusion matrix" not in printed
    png = tmp_path / "cm.png"
    assert main(["eval", "--data", str(data), "--checkpoint", str(out / "last.pt"), "--confusion", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_predict_json_batches_bytes_and_exit_status(run, capsys, tmp_path):
    from jpegnet.engine import predict_files

    data, out, _ = run
    files = sorted((data / "val").glob("*/*.jpg"))
    assert main(["predict", *map(str, files), "--checkpoint", str(out / "last.pt"), "--json", "--batch-size",
                 "4"]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [i["file"] for i in items] == list(map(str, files)) and all(len(i["top"]) == 3 for i in items)
    # batch size does not change a result; bytes give the same as their file
    one = predict_files(files, out / "last.pt", batch_size=1)
    from_bytes = predict_files([f.read_bytes() for f in files], out / "last.pt", batch_size=4)
    for a, b, c in zip(items, one, from_bytes):
        assert [x[0] for x in a["top"]] == [x[0] for x in b["top"]] == [x[0] for x in c["top"]]
        assert [x[1] for x in a["top"]] == pytest.approx([x[1] for x in c["top"]], abs=1e-5)
    assert from_bytes[0]["file"] == "<bytes 0>"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    assert main(["predict", str(files[0]), str(broken), str(tmp_path / "missing.jpg"), "--checkpoint",
                 str(out / "last.pt")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{files[0]}: ")  # the good result still printed
    assert f"{broken}: error:" in captured.err and "missing.jpg: error: no such file" in captured.err
    assert captured.err.strip().splitlines()[-1] == "jpegnet: error: 2 of 3 files could not be read"


def test_bugs_keep_their_traceback(monkeypatch, capsys):
    import jpegnet.cli as cli

    def buggy(args):
        raise TypeError("unsupported operand type(s)")

    def user_error(args):
        from jpegnet.errors import JpegnetError
        raise JpegnetError("a message for the user")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for kind, fn in (("bug", buggy), ("user", user_error)):
        monkeypatch.setattr(cli, "cmd_models", fn)
        parser._subparsers._group_actions[0].choices["models"].set_defaults(func=fn)
        if kind == "bug":
            with pytest.raises(TypeError):
                cli.main(["models"])
        else:
            assert cli.main(["models"]) == 1
            assert capsys.readouterr().err.strip() == "jpegnet: error: a message for the user"


def test_jpegnet_errors_share_one_base():
    from jpegnet.codec import JpegError
    from jpegnet.engine import CheckpointError, DataFolderError, EngineError
    from jpegnet.errors import JpegnetError
    from jpegnet.models import UnknownModelError
    from jpegnet.models.weights import WeightImportError

    for cls in (JpegError, CheckpointError, DataFolderError, EngineError, UnknownModelError, WeightImportError):
        assert issubclass(cls, JpegnetError)


def test_plot_draws_one_point_per_run_labelled_from_its_config(tmp_path, capsys):
    from jpegnet.engine.plot import read_points

    logs = []
    for name, model, rep, speeds in (("a", "resnet50", "rgb", (90, 100)), ("b", "dct_upsampling", "dct", (150, 160))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model": model, "representation": rep}))
        (folder / "log.csv").write_text("epoch,val_top1,train_images_per_s\n" + "".join(
            f"{e + 1},{60 + e},{s}\n" for e, s in enumerate(speeds)))
        logs.append(folder / "log.csv")
    points, x, y = read_points(logs)
    assert (x, y) == ("train_images_per_s", "val_top1")
    assert [(p["model"], p["x"], p["y"], p["representation"]) for p in points] == [
        ("resnet50 (rgb, a)", 100.0, 61.0, "rgb"), ("dct_upsampling (dct, b)", 160.0, 61.0, "dct")]
    png = tmp_path / "p.png"
    assert main(["plot", *map(str, logs), "--out", str(png)]) == 0
    assert "2 models" in capsys.readouterr().out and png.read_bytes()[:4] == b"\x89PNG"
    other = tmp_path / "other.csv"
    other.write_text("city,population\nParis,2100000\n")
    err = _error(capsys, ["plot", str(logs[0]), str(other), "--out", str(tmp_path / "q.png")])
    assert err.startswith(f"jpegnet: error: {other} is not a results CSV")
    assert not (tmp_path / "q.png").exists()


def test_run_folder_rules(tmp_path):
    from jpegnet.engine.runs import RunFolderError, check_run_folder

    check_run_folder(tmp_path / "new", None)  # a new folder
    (tmp_path / "empty").mkdir()
    check_run_folder(tmp_path / "empty", None)
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "config.json").write_text("{}")  # a run that failed before its first step
    (failed / ".last.pt.x1y2.tmp").write_bytes(b"torn")  # ... while writing its first checkpoint
    check_run_folder(failed, None)
    (failed / "log.csv").write_text("epoch\n1\n")
    with pytest.raises(RunFolderError, match="already holds a run \\(log.csv\\); choose a new --out or remove it"):
        check_run_folder(failed, None)
    check_run_folder(failed, "failed/last.pt")  # resuming writes into its own run
