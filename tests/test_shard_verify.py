"""The shard writer decodes every image before writing it: files whose entropy data is corrupt or cut (their
header reads) are left out and reported like files with a bad header; `--verify header` keeps the cheap check."""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from jpegnet.codec import JpegError, read_coefficients, read_header
from jpegnet.data import write_shards
from jpegnet.data.image_check import check_images
from jpegnet.samples import SAMPLES_DIR, sample_classes

from .conftest import BAD, requires_shared

CORRUPT_TAIL = ["corrupt_entropy_data.jpg", "truncated_half.jpg"]  # headers read, data does not
BAD_HEADER = ["not_a_jpeg.jpg", "empty.jpg"]


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Two class folders of built-in samples; the first also holds the two corrupt-tail files and two files
    with a bad header."""
    root = tmp_path / "data"
    for name in sample_classes()[:2]:
        (root / name).mkdir(parents=True)
        for f in sorted((SAMPLES_DIR / name).glob("*.jpg"))[:3]:
            os.symlink(f, root / name / f.name)
    for name in CORRUPT_TAIL + BAD_HEADER:
        shutil.copy(BAD / name, root / sample_classes()[0] / name)
    return root


def _members(shards) -> dict:
    out = {}
    for shard in shards:
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                if m.name.endswith(".jpg"):
                    out[m.name[:-len(".jpg")]] = t.extractfile(m).read()
    return out


@requires_shared
def test_corrupt_tail_files_are_left_out_and_reported(folder, tmp_path):
    for name in CORRUPT_TAIL:  # the premise: a header check alone lets them through
        read_header(BAD / name)
    full = write_shards(folder, str(tmp_path / "full" / "t-%03d.tar"), max_count=4, threads=2)
    reasons = {Path(p).name: r for p, r in full["bad"]}
    assert sorted(reasons) == sorted(CORRUPT_TAIL + BAD_HEADER)
    assert (full["bad_headers"], full["bad_data"], full["samples"]) == (2, 2, 6)
    for name in CORRUPT_TAIL:  # in the reader's own words, as training would have met them
        with pytest.raises(JpegError) as e:
            read_coefficients(BAD / name)
        assert reasons[name] == e.value.message
    good = {f"{p.parent.name}/{p.stem}": p.read_bytes() for p in folder.rglob("*.jpg") if p.name not in reasons}
    assert _members(full["shards"]) == good  # every good file, bytes untouched; nothing else

    header = write_shards(folder, str(tmp_path / "header" / "t-%03d.tar"), verify="header", threads=2)
    assert sorted(Path(p).name for p, _ in header["bad"]) == sorted(BAD_HEADER)
    assert (header["bad_headers"], header["bad_data"], header["samples"]) == (2, 0, 8)
    written = _members(header["shards"])
    assert {k.split("/")[1] for k in written} >= {Path(n).stem for n in CORRUPT_TAIL}  # the old behaviour


@requires_shared
def test_check_images_stages_and_groups(monkeypatch):
    import jpegnet.data.image_check as image_check

    monkeypatch.setattr(image_check, "_GROUP_PIXELS", 1)  # one image per decode call: same answers
    good = sorted((SAMPLES_DIR / sample_classes()[0]).glob("*.jpg"))[:2]
    blobs = [p.read_bytes() for p in good] + [(BAD / n).read_bytes() for n in CORRUPT_TAIL + BAD_HEADER]
    blobs.append(OSError("cannot read file"))
    got = check_images(blobs, "full", threads=2)
    assert got[:2] == [None, None]
    assert [g[0] for g in got[2:]] == ["data", "data", "header", "header", "header"]
    assert check_images(blobs, "header", threads=1)[:4] == [None] * 4
    with pytest.raises(ValueError, match="verify must be one of full, header"):
        check_images(blobs, "deep")


@requires_shared
def test_shards_command_summary_counts_both_kinds(folder, tmp_path, capsys):
    from jpegnet.cli import main

    assert main(["shards", "--data", str(folder), "--split", ".", "--out", str(tmp_path / "o" / "t-%03d.tar"),
                 "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "wrote 6 images of 2 classes" in out
    assert "4 unreadable files left out (2 bad headers, 2 bad data)" in out
    assert all(f"skipping {folder / sample_classes()[0] / n}: " in err for n in CORRUPT_TAIL + BAD_HEADER)
    assert main(["shards", "--data", str(folder), "--split", ".", "--out", str(tmp_path / "h" / "t-%03d.tar"),
                 "--verify", "header"]) == 0
    assert "wrote 8 images of 2 classes" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: the choices are named
        main(["shards", "--data", str(folder), "--out", str(tmp_path / "x" / "t-%03d.tar"), "--verify", "nope"])
    assert "choose from 'full', 'header'" in capsys.readouterr().err
