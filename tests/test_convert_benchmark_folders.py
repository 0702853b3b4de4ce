"""benchmarks/convert.py finds every folder a conversion learned from, along its chain of --init-from runs, so
the evaluation leaves out the photos any of them holds."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from jpegnet.engine import save_checkpoint
from jpegnet.models import InputConfig

REPO = Path(__file__).resolve().parents[1]


def load_script():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling overlap.py, as when run
    try:
        spec = importlib.util.spec_from_file_location("convert_benchmark", REPO / "benchmarks" / "convert.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_training_folders_follow_init_from_and_skip_what_is_not_a_folder(tmp_path):
    first, second, given = (tmp_path / name for name in ("photos-a", "photos-b", "given"))
    for folder in (first, second, given):
        folder.mkdir()

    def run(name: str, data: str, init_from: str | None) -> str:
        path = tmp_path / f"{name}.pt"
        save_checkpoint({"model_name": "converted", "model": {}, "num_classes": 2,
                         "input_config": InputConfig(representation="dct").to_dict(),
                         "train_config": {"data": data, "init_from": init_from}}, path)
        return str(path)

    a = run("a", str(first), None)
    b = run("b", "shards/train-{000000..000003}.tar", a)  # shards: not a folder here, skipped
    c = run("c", str(second), b)
    script = load_script()
    assert script.training_folders(c, str(given)) == [given, second, first]
    assert script.training_folders(a, None) == [first]
    loop = run("loop", str(second), str(tmp_path / "loop.pt"))  # a run naming itself does not hang
    assert script.training_folders(loop, None) == [second]
