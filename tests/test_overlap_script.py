"""benchmarks/overlap.py finds an evaluation photo hidden in a training set as a resized, re-encoded copy, and
nothing else: the check behind "never seen in training" in the README's conversion results."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("JPEGNET_SHARED_DATA", REPO.parent / "shared" / "data")) / "jpeg-corpus"


def load_script():
    spec = importlib.util.spec_from_file_location("overlap_script", REPO / "benchmarks" / "overlap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_resized_reencoded_copy_is_found_and_different_photos_are_not(tmp_path):
    originals = sorted(CORPUS.glob("n*.JPEG"))[:6]
    train, evals = tmp_path / "train" / "class", tmp_path / "eval"
    train.mkdir(parents=True)
    evals.mkdir()
    for path in originals[:4]:
        (evals / path.name).write_bytes(path.read_bytes())
    with Image.open(originals[2]) as photo:  # what imagenette-224 did to ImageNet photos: shorter side 224, q 90
        scale = 224 / min(photo.size)
        copy = photo.convert("RGB").resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        copy.save(train / "copy.jpg", quality=90)
        copy.transpose(Image.FLIP_LEFT_RIGHT).save(train / "mirrored.jpg", quality=90)  # not the same photo
    for path in originals[4:]:
        (train / path.name).write_bytes(path.read_bytes())
    (train / "noise.jpg").write_bytes(b"not a jpeg")
    found = load_script().overlap(tmp_path / "train", evals, threshold=0.99)
    assert [(p["train"], p["eval"]) for p in found["pairs"]] == [("class/copy.jpg", originals[2].name)]
    assert found["pairs"][0]["correlation"] > 0.999
    assert found["shared_photos"] == 1 and found["identical_bytes"] == 0
    assert found["unreadable"] == {"train": 1, "eval": 0}
    assert found["train_files"] == 4 and found["eval_files"] == 4
    assert all(p["correlation"] < 0.99 for p in found["closest_below_threshold"])
    script = load_script()  # what benchmarks/convert.py calls: the shared eval files themselves
    eval_files = sorted(evals.iterdir())
    shared = script.shared_eval_files(script.jpeg_files(tmp_path / "train"), eval_files, 0.99)
    assert shared == {evals / originals[2].name}


def test_identical_files_count_as_identical_bytes(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(pixels).save(tmp_path / folder / "same.jpg", quality=95)
    found = load_script().overlap(tmp_path / "a", tmp_path / "b", threshold=0.99)
    assert found["identical_bytes"] == 1 and found["shared_photos"] == 1
