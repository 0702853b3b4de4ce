"""Interop with the WebDataset library, both ways.

(a) shards written by `webdataset.ShardWriter` / `TarWriter` (and a plain tar with its members in another order):
    keys with dots in directory names, .jpeg / .jpg images, integer .cls and .json labels, no classes.json,
    no index: jpegnet keys them as webdataset does, infers the classes from the labels ('0' .. max label),
    and `jpegnet train` / `jpegnet eval` run on them; a sample without a usable label is a ShardLabelError.
(b) shards `jpegnet shards` wrote, read by `webdataset.WebDataset(urls).decode()`: the same (image, label)
    pairs as the original files through Pillow and jpegnet's labels.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

webdataset = pytest.importorskip("webdataset")

from jpegnet.data import JpegFolder, JpegShards, ShardLabelError, ShardLoader, write_shards  # noqa: E402
from jpegnet.data.shard_format import ShardIndex  # noqa: E402
from jpegnet.data.shard_labels import parse_label  # noqa: E402
from jpegnet.samples import SAMPLES_DIR, sample_classes  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402


def _images(classes: int = 3, per_class: int = 4) -> list[tuple[Path, int]]:
    return [(f, label) for label, name in enumerate(sample_classes()[:classes])
            for f in sorted((SAMPLES_DIR / name).glob("*.jpg"))[:per_class]]


def _wds_sample(i: int, path: Path, label: int) -> dict:
    """Alternating conventions: .jpeg + .cls, .jpg + .json {"label"}, .jpeg + .json {"cls"} + .txt."""
    key = f"set.v1/class.{label}/{path.stem.replace('.', '_')}"  # dots in the directories, none in the name
    kind = i % 3
    if kind == 0:
        return {"__key__": key, "jpeg": path.read_bytes(), "cls": label}
    if kind == 1:
        return {"__key__": key, "jpg": path.read_bytes(), "json": {"label": label, "source": "samples"}}
    return {"__key__": key, "jpeg": path.read_bytes(), "json": {"cls": label}, "txt": "a caption"}


def _plain_tar(path: Path, members) -> None:
    with tarfile.open(path, "w") as t:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """12 training samples (the built-in samples of 3 classes) as 3 ShardWriter shards of 4
    (wds-train-000..002.tar), and 3 validation samples (one per class) in a plain tar whose members come
    label-first and image-first in turn (wds-val-000.tar)."""
    out = tmp_path_factory.mktemp("wds")
    train = _images(3, 4)
    val = train[::4]
    with webdataset.ShardWriter(str(out / "wds-train-%03d.tar"), maxcount=4, verbose=0) as sink:
        for i, (path, label) in enumerate(train):
            sink.write(_wds_sample(i, path, label))
    members = [("README", b"no key: ignored"), (".hidden.jpg", b"no key either")]  # as webdataset ignores them
    for i, (path, label) in enumerate(val):
        key = f"val.set/class.{label}/{path.stem.replace('.', '_')}"
        pair = [(f"{key}.jpg", path.read_bytes()), (f"{key}.cls", str(label).encode())]
        members += pair if i % 2 else pair[::-1]
    _plain_tar(out / "wds-val-000.tar", members)
    assert sorted(p.name for p in out.iterdir()) == ["wds-train-000.tar", "wds-train-001.tar",
                                                     "wds-train-002.tar", "wds-val-000.tar"]  # no sidecars
    return out, train, val


def test_foreign_shards_keys_labels_and_classes(foreign):
    out, train, _ = foreign
    urls = [str(out / f"wds-train-{i:03d}.tar") for i in range(3)]
    theirs = {s["__key__"]: s for s in webdataset.WebDataset(urls, shardshuffle=False).decode()}
    ds = JpegShards(str(out / "wds-train-{000..002}.tar"), "dct", train=False, input_size=32)
    assert ds.classes == ["0", "1", "2"] and len(ds) == 12
    ours = {}
    for shard in range(len(ds.urls)):
        for _, sample in ds.read_samples(shard, range(len(ds.indexes[shard]))):
            key = sample.name.split(":", 1)[1].rsplit(".", 1)[0]
            ours[key] = (sample.data, sample.label)
    assert sorted(ours) == sorted(theirs)  # keys split as webdataset splits them (dots in directories)
    assert all("." in k.split("/")[0] for k in ours)
    for key, sample in theirs.items():
        label = sample["cls"] if "cls" in sample else sample["json"].get("label", sample["json"].get("cls"))
        assert ours[key] == (sample.get("jpg") or sample.get("jpeg"), label)
    expected = {f"class.{label}/{p.stem}": (p.read_bytes(), label) for p, label in train}
    assert {k.split("/", 1)[1]: v for k, v in ours.items()} == expected


def test_train_and_eval_on_webdataset_shards(foreign, tmp_path, capsys):
    from test_distributed import register_test_model

    from jpegnet.cli import main
    from jpegnet.models import is_model

    if not is_model("tiny_groupnorm_net"):
        register_test_model()
    out, train, val = foreign
    run = tmp_path / "run"
    assert main(["train", "--data", str(out / "wds-train-{000..002}.tar"), "--val-data", str(out / "wds-val-000.tar"),
                 "--model", "tiny_groupnorm_net", "--epochs", "1", "--batch-size", "4", "--threads", "1",
                 "--no-progress", "--no-tensorboard", "--out", str(run)]) == 0
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["class_names"] == ["0", "1", "2"] and state["global_step"] == 3
    capsys.readouterr()
    assert main(["eval", "--data", str(out / "wds-val-000.tar"), "--checkpoint", str(run / "last.pt")]) == 0
    printed = capsys.readouterr().out
    assert f"{len(val)} images" in printed
    # the labels the loader hands the model are the ones written
    ds = JpegShards(str(out / "wds-val-000.tar"), "rgb", train=False, input_size=32, classes=["0", "1", "2"])
    loader = ShardLoader(ds, 2, num_threads=1)
    targets = torch.cat([t for _, t in loader]).tolist()
    assert targets == [label for _, label in val] and len(ds) == 3 and loader.skipped == []
    theirs = webdataset.WebDataset([str(out / "wds-val-000.tar")], shardshuffle=False).decode()
    assert [s["cls"] for s in theirs] == targets


def test_samples_without_a_usable_label_are_typed_errors(tmp_path, capsys):
    from jpegnet.cli import main

    jpg = _images(1, 1)[0][0].read_bytes()
    cases = {
        "nolabel": [("a.jpg", jpg), ("a.cls", b"0"), ("b.jpg", jpg), ("b.txt", b"cat")],
        "strlabel": [("a.jpg", jpg), ("a.json", b'{"label": "cat"}')],
        "nofield": [("a.jpg", jpg), ("a.json", b'{"target": 1}')],
        "floatcls": [("a.jpg", jpg), ("a.cls", b"1.5")],
    }
    messages = {}
    for name, members in cases.items():
        _plain_tar(tmp_path / f"{name}-0.tar", members)
        with pytest.raises(ShardLabelError) as e:
            JpegShards(str(tmp_path / f"{name}-0.tar"), "dct", train=False)
        messages[name] = str(e.value)
    assert f"1 of 2 samples have no usable label (first: {tmp_path}/nolabel-0.tar:b: no label: neither .cls " \
           f"nor .json among its members (.jpg, .txt))" in messages["nolabel"]
    assert "label 'cat' in .json is not an integer" in messages["strlabel"]
    assert ".json member has no 'label' or 'cls' field (fields: 'target')" in messages["nofield"]
    assert "label b'1.5' in .cls is not an integer" in messages["floatcls"]
    # the command line: one line, exit status 1
    assert main(["train", "--data", str(tmp_path / "nolabel-0.tar"), "--val-data", str(tmp_path / "nolabel-0.tar"),
                 "--model", "dct_late_concat_rfa_thinner", "--out", str(tmp_path / "run")]) == 1
    assert main(["stats", str(tmp_path / "strlabel-0.tar"), "--out", str(tmp_path / "s.json")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("jpegnet: error: ") for line in err), err
    assert "no usable label" in err[0] and "is not an integer" in err[1]
    # with a classes.json beside them the shards open, and the unlabeled sample is skipped and reported
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["x", "y"]}))
    loader = ShardLoader(JpegShards(str(tmp_path / "nolabel-0.tar"), "rgb", train=False, input_size=32), 2)
    assert sum(len(t) for _, t in loader) == 1 and "no label" in loader.skipped[0][1]


def test_parse_label_conventions():
    assert parse_label("cls", b" 7\n") == 7 and parse_label("json", b"3") == 3
    assert parse_label("json", b'{"label": 4, "cls": 9}') == 4 and parse_label("json", b'{"cls": 9}') == 9
    for ext, data in (("cls", b""), ("cls", b"+1"), ("json", b"true"), ("json", b'{"label": 2.0}'),
                      ("json", b"[1]"), ("json", b"\xff")):
        with pytest.raises(ShardLabelError):
            parse_label(ext, data)


def test_jpegnet_shards_read_by_webdataset(tmp_path):
    root = make_tiny_dataset(tmp_path / "folder", classes=3, train_per_class=4, val_per_class=2)
    dotted = root / "train" / sample_classes()[0] / "photo.v2.jpg"  # the writer makes its key photo_v2
    os.symlink(next((root / "val").rglob("*.jpg")), dotted)
    written = write_shards(root / "train", str(tmp_path / "shards" / "train-%03d.tar"), max_count=5)
    assert len(written["shards"]) == 3 and written["samples"] == 13
    folder = JpegFolder(root / "train", "dct", train=False)
    files = {os.path.relpath(p, root / "train").rsplit(".", 1)[0].replace(".", "_"): (Path(p), label)
             for p, label in folder.samples}

    raw = list(webdataset.WebDataset(written["shards"], shardshuffle=False).decode())
    decoded = list(webdataset.WebDataset(written["shards"], shardshuffle=False).decode("rgb8"))
    assert len(raw) == len(decoded) == 13
    assert sorted(s["__key__"] for s in raw) == sorted(files)
    ours = JpegShards(written["pattern"], "dct", train=False)
    our_labels = {s.name.split(":", 1)[1].rsplit(".", 1)[0]: s.label for shard, index in enumerate(ours.indexes)
                  for _, s in ours.read_samples(shard, range(len(index)))}
    for plain, image in zip(raw, decoded):
        path, label = files[plain["__key__"]]
        assert plain["jpg"] == path.read_bytes()  # the file's bytes, untouched
        assert plain["cls"] == label == our_labels[plain["__key__"]]  # an int, jpegnet's label
        with Image.open(path) as im:
            np.testing.assert_array_equal(image["jpg"], np.asarray(im.convert("RGB")))
    # the class names are only in classes.json, which webdataset does not read
    assert json.loads((tmp_path / "shards" / "classes.json").read_text())["classes"] == folder.classes
    assert all(len(ShardIndex.scan(s)) for s in written["shards"])
