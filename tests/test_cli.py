"""The `jpegnet` command: one short real training run, then eval / predict / plot / stats / profile / models on
its outputs, and the error paths (one line on stderr, exit 1, nothing half-written)."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from jpegnet.cli import main, parse_kwargs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402

TINY = ["--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125", "--input-size", "32",
        "--batch-size", "4", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch DCT run on 3 sample classes: (data folder, run folder)."""
    root = tmp_path_factory.mktemp("cli")
    data = make_tiny_dataset(root / "data")
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--opt", "adamw", *TINY]) == 0
    return data, run


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("jpegnet: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines  # one line, the last, no traceback
    return errors[0]


def test_train_outputs(trained):
    _, run = trained
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and rows[0]["step"] == "3"  # 12 images / 4
    assert 0.0 <= float(rows[0]["val_top1"]) <= 100.0
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["class_names"] == ["dress", "hat", "longsleeve"]
    assert state["input_config"]["representation"] == "dct" and state["input_config"]["input_size"] == [32, 32]
    assert state["train_config"]["optimizer"] == "adamw" and "exp_avg" in next(iter(state["optimizer"]["state"].values()))
    assert (run / "best.pt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_predict_match(trained, capsys, tmp_path):
    data, run = trained
    png = tmp_path / "cm.png"
    assert main(["eval", "--data", str(data), "--checkpoint", str(run / "last.pt"), "--confusion", str(png)]) == 0
    out = capsys.readouterr().out
    top1 = float(out.split("top-1 ")[1].split("%")[0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The eval top-1 equals the last epoch's validation top-1 (same transform, same weights).
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert top1 == pytest.approx(float(rows[-1]["val_top1"]), abs=0.01)

    files = sorted((data / "val").glob("*/*.jpg"))
    assert main(["predict", *map(str, files), "--checkpoint", str(run / "last.pt"), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files)
    hits = sum(line.split(": ")[1].split(" ")[0] == Path(line.split(":")[0]).parent.name for line in lines)
    assert hits / len(files) * 100 == pytest.approx(top1, abs=0.01)  # predict agrees with eval


def test_resume_finished_run_with_more_epochs(trained, capsys, tmp_path):
    data, run = trained
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["train", "--resume", str(copy / "last.pt"), "--epochs", "2", "--out", str(copy)]) == 0
    rows = list(csv.DictReader(open(copy / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["step"] == "6"
    assert "resuming at epoch 2, batch 0/3" in capsys.readouterr().err


def test_plot_stats_profile_models(trained, capsys, tmp_path):
    data, run = trained
    results = tmp_path / "results.csv"
    results.write_text("model,top1,images_per_s\nresnet50,80,100\ndct_late_concat_rfa_thinner,79.5,170\n"
                       "dct_late_concat,78,120\n")
    assert main(["plot", str(results), "--out", str(tmp_path / "p.png")]) == 0
    assert "Pareto front: resnet50, dct_late_concat_rfa_thinner" in capsys.readouterr().out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    stats = tmp_path / "stats.json"
    assert main(["stats", str(data), "--out", str(stats), "--max-images", "4", "--size", "32"]) == 0
    saved = json.loads(stats.read_text())
    assert len(saved["dct_mean"]) == len(saved["dct_std"]) == 192 and saved["folder"].endswith("train")
    assert saved["dct_std"][0] > 0 and saved["input_size"] == 32
    capsys.readouterr()
    # The train command accepts the file: the statistics land in the checkpoint's input config.
    out = tmp_path / "run_stats"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--dct-stats", str(stats),
                 "--precision", "bf16", *TINY]) == 0  # bf16 autocast runs on the CPU too
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["train_config"]["precision"] == "bf16"
    cfg = state["input_config"]
    assert cfg["dct_mean"] == pytest.approx(saved["dct_mean"]) and cfg["dct_std"] == pytest.approx(saved["dct_std"])

    assert main(["profile", "resnet50", "--size", "64", "--num-classes", "10",
                 "--model-kwargs", "width_multiplier=0.125,depth_multiplier=0.25"]) == 0
    out = capsys.readouterr().out
    assert "layer4" in out and out.splitlines()[-2].startswith("total")

    assert main(["models", "resnet50", "--flops"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("resnet50 "))
    assert "rgb 224x224" in line and "25.56" in line and "8.18" in line  # torchvision's 25,557,032; 8.18 GFLOPs


def test_errors_are_one_line_and_leave_nothing(trained, capsys, tmp_path):
    data, run = trained
    out = tmp_path / "out"
    assert "data folder not found" in _error(capsys, ["train", "--data", str(tmp_path / "nope"), "--out", str(out),
                                                      *TINY])
    empty = make_tiny_dataset(tmp_path / "emptyclass", classes=2)
    (empty / "train" / "zzz_empty").mkdir()
    (empty / "val" / "zzz_empty").mkdir()
    assert "without JPEG files: zzz_empty" in _error(capsys, ["train", "--data", str(empty), "--out", str(out),
                                                              *TINY])
    err = _error(capsys, ["train", "--data", str(data), "--out", str(out), *TINY[2:], "--model", "dct_late_concat_rfa_thiner"])
    assert "unknown model 'dct_late_concat_rfa_thiner'" in err and "dct_late_concat_rfa_thinner" in err
    # A checkpoint of other classes does not evaluate another folder.
    other = make_tiny_dataset(tmp_path / "other", classes=2)
    assert "was trained on classes" in _error(capsys, ["eval", "--data", str(other), "--checkpoint",
                                                       str(run / "last.pt")])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert "not a jpegnet checkpoint" in _error(capsys, ["predict", str(foreign), "--checkpoint", str(foreign)])
    # Resuming with another model is refused before anything is written.
    assert "was trained with model=" in _error(capsys, ["train", "--resume", str(run / "last.pt"), "--model",
                                                        "resnet50", "--out", str(out)])
    assert not out.exists()  # none of the failed runs left a folder, CSV or checkpoint behind


def test_out_of_memory_is_reported(trained, capsys, tmp_path, monkeypatch):
    data, _ = trained
    import jpegnet.engine.trainer as trainer

    def no_memory(self, inputs, targets):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(trainer.TrainingRun, "_step", no_memory)
    out = tmp_path / "oom"
    err = _error(capsys, ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY])
    assert "out of GPU memory with 4 images per process; lower --batch-size" in err
    assert not (out / "last.pt").exists() and not (out / "log.csv").exists()
    assert not list(out.glob("**/events.out.tfevents.*")) if out.exists() else True


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x"])
    assert exc.value.code == 2 and "--model" in capsys.readouterr().err
    for command in (["train"], ["eval", "--data", "x", "--checkpoint", "y"], ["predict", "a.jpg", "--checkpoint", "y"],
                    ["bench"], ["serve", "--onnx", "m.onnx"]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--device", "gpu"])
        assert exc.value.code == 2 and "expected cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err
    assert parse_kwargs("width_multiplier=0.5, depth_multiplier=1,name=abc") == {
        "width_multiplier": 0.5, "depth_multiplier": 1, "name": "abc"}


def test_visualize_kernels_and_features(trained, capsys, tmp_path):
    _, run = trained
    kernels = tmp_path / "k.png"
    assert main(["visualize", "kernels", "--checkpoint", str(run / "last.pt"), "--out", str(kernels)]) == 0
    assert kernels.read_bytes()[:4] == b"\x89PNG" and f"wrote {kernels}" in capsys.readouterr().out
    features = tmp_path / "f.png"
    assert main(["visualize", "features", "--checkpoint", str(run / "last.pt"), "--out", str(features)]) == 0
    assert features.read_bytes()[:4] == b"\x89PNG"
    assert "no such layer" in _error(capsys, ["visualize", "kernels", "--checkpoint", str(run / "last.pt"),
                                              "--layers", "nope", "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_bench_small(capsys, tmp_path):
    table = tmp_path / "bench.csv"
    assert main(["bench", "--models", "resnet50", "dct_late_concat_rfa_thinner", "--size", "32", "--max-images", "4",
                 "--batch-size", "2", "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert "4 images from" in out and "rgb 32x32" in out and "dct 32x32" in out
    rows = list(csv.DictReader(open(table)))
    assert [r["model"] for r in rows] == ["resnet50", "dct_late_concat_rfa_thinner"]
    for r in rows:
        assert int(r["images"]) == 4 and float(r["decode_ms"]) > 0 and float(r["model_ms"]) > 0
        assert float(r["images_per_s"]) == pytest.approx(1000 / float(r["end_to_end_ms"]), rel=1e-6)
    assert float(rows[0]["speedup"]) == 1.0
    assert "multiple of 16" in _error(capsys, ["bench", "--size", "40"])


def test_predict_keeps_order_and_reports_bad_files_alone(trained, tmp_path):
    from jpegnet.engine.inference import predict_files

    data, run = trained
    good = sorted((data / "val").glob("*/*.jpg"))[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    missing = tmp_path / "missing.jpg"
    files = [good[0], broken, good[1], missing, good[2], good[0]]
    out = predict_files(files, run / "last.pt", topk=2)
    assert [r["file"] for r in out] == [str(f) for f in files]
    assert "error" in out[1] and "error" in out[3] and out[3]["error"] == "no such file"
    clean = predict_files(good, run / "last.pt", topk=2)
    for got, want in zip([out[0], out[2], out[4]], clean):
        assert [name for name, _ in got["top"]] == [name for name, _ in want["top"]]
        assert [p for _, p in got["top"]] == pytest.approx([p for _, p in want["top"]], abs=1e-5)
    assert out[5]["top"] == out[0]["top"]  # the same file twice: the same answer


def _run_models_as(monkeypatch, fn) -> int:
    """main(['models']) with the command's function replaced by `fn`."""
    import jpegnet.cli as cli

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["models"].set_defaults(func=fn)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    return cli.main(["models"])


def _raiser(exc: BaseException):
    def command(args):
        raise exc
    return command


@pytest.mark.parametrize("bug", [TypeError("unsupported operand type(s) for +: 'int' and 'str'"), KeyError("rows"),
                                 ValueError("too many values to unpack"), RuntimeError("shape mismatch"),
                                 AttributeError("'NoneType' object has no attribute 'shape'"),
                                 ModuleNotFoundError("No module named 'jpegnet.nope'", name="jpegnet.nope")])
def test_a_bug_inside_a_command_keeps_its_traceback(monkeypatch, capsys, bug):
    with pytest.raises(type(bug)) as info:
        _run_models_as(monkeypatch, _raiser(bug))
    assert info.value is bug
    assert "jpegnet: error" not in capsys.readouterr().err


def test_typed_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    from jpegnet.data.shard_format import ShardError
    from jpegnet.engine import ConfigError, DeviceError
    from jpegnet.models import UnknownModelError
    from jpegnet.visualize import LayerError

    for exc, line in ((ConfigError("lr must be positive, got -1.0"), "lr must be positive, got -1.0"),
                      (DeviceError("no CUDA GPU is visible"), "no CUDA GPU is visible"),
                      (ShardError("shards/a.tar: not a tar file"), "shards/a.tar: not a tar file"),
                      (LayerError("no such layer(s) in Net: ['x']"), "no such layer(s) in Net: ['x']"),
                      (UnknownModelError("unknown model 'x'"), "unknown model 'x'"),
                      (FileNotFoundError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
                      (ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"),
                       "No module named 'onnxruntime' (an optional dependency of this command)")):
        assert _run_models_as(monkeypatch, _raiser(exc)) == 1
        assert capsys.readouterr().err.splitlines() == [f"jpegnet: error: {line}"]


def test_user_mistakes_that_used_to_be_bare_builtins(trained, capsys, tmp_path, monkeypatch):
    """Each of these surfaced as a ValueError / TypeError: now a typed error, one line each."""
    data, run = trained
    assert "resnet50 takes no keyword argument 'bogus'" in _error(
        capsys, ["profile", "resnet50", "--model-kwargs", "bogus=1"])
    # a renamed keyword: one line that names the new name
    assert "efficientnet_b0 takes no keyword argument 'width' (EfficientNet's 'width' is now 'width_multiplier'" \
        in _error(capsys, ["profile", "efficientnet_b0", "--model-kwargs", "width=0.5"])
    assert "cannot build resnet50 with {'width_multiplier': 0}: width_multiplier must be a positive" in _error(
        capsys, ["profile", "resnet50", "--model-kwargs", "width_multiplier=0"])
    assert "model_kwargs: features_only builds a feature backbone" in _error(
        capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY[:2], "--model-kwargs",
                 "features_only=True"])
    assert "lr must be a finite number, got nan" in _error(
        capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--lr", "nan"])
    # a layer without a convolution weight: a TypeError with a traceback before
    assert "BatchNorm2d has no 4-D convolution weight to draw" in _error(
        capsys, ["visualize", "kernels", "--model", "resnet50", "--layers", "bn1", "--out", str(tmp_path / "k.png")])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        for argv in (["bench", "--device", device, "--size", "32"],
                     ["eval", "--data", str(data), "--checkpoint", str(run / "last.pt"), "--device", device]):
            assert _error(capsys, argv) == f"jpegnet: error: --device {device} was asked for but no CUDA GPU is visible"
    assert not (tmp_path / "r").exists() and not (tmp_path / "k.png").exists()


def test_every_public_error_type_derives_from_jpegnet_error():
    """The CLI's one-line report rests on this: a user-facing error type outside JpegnetError would come out
    as a traceback. Private classes (control flow inside one module) and warnings are exempt."""
    import importlib
    import inspect
    import pkgutil

    import jpegnet
    from jpegnet.errors import JpegnetError

    found = {}
    for module_info in pkgutil.walk_packages(jpegnet.__path__, "jpegnet."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning) \
                    and obj.__module__ == module.__name__ and not name.startswith("_"):
                found[f"{module.__name__}.{name}"] = obj
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, JpegnetError))
    assert outside == []
    assert len(found) >= 20  # the scan saw the package's error types (engine, codec, models, data, serve, ...)


def test_the_command_line_offers_the_resolver_precisions():
    import jpegnet.cli as cli
    from jpegnet.engine.device import PRECISIONS

    assert cli.PRECISIONS == PRECISIONS
