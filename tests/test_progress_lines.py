"""Warnings during training on a terminal: each unreadable file is named once (`skipping PATH: reason`), the lines
go through the progress bar's writer (printed above the bar, not into it), and epochs are counted from 1 in every
console line, as the bar counts them."""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from jpegnet.cli import main
from jpegnet.data import JpegFolder, create_loader
from jpegnet.log import console_lines_through, setup_console_logging

from .test_engine_resume import make_tiny_dataset

# 64 px, not 32: a batch that a skip leaves with one image still has 2x2 values per channel for BatchNorm
TINY = ["--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125", "--input-size", "64",
        "--batch-size", "2", "--threads", "1", "--no-tensorboard"]


def _with_unreadable_files(root: Path) -> tuple[Path, list[Path]]:
    """The tiny dataset plus, in its first training class, a JPEG cut in half and a file that is no JPEG."""
    data = make_tiny_dataset(root, classes=2, train_per_class=2, val_per_class=1)
    folder = sorted((data / "train").iterdir())[0]
    good = sorted(folder.glob("*.jpg"))[0].resolve().read_bytes()
    cut, junk = folder / "zz_cut_in_half.jpg", folder / "zz_not_a_jpeg.jpg"
    cut.write_bytes(good[:len(good) // 2])
    junk.write_bytes(b"GIF89a" + bytes(200))
    return data, [cut, junk]


def test_the_loader_names_each_file_once_and_counts_epochs_from_1(tmp_path, caplog):
    data, bad = _with_unreadable_files(tmp_path / "data")
    loader = create_loader(JpegFolder(data / "train", "dct", train=True, input_size=32), 6, num_threads=1,
                           prefetch=0)
    loader.set_epoch(0)
    with caplog.at_level(logging.WARNING, logger="jpegnet.data"):
        for _ in loader:
            pass
    lines = [r.getMessage() for r in caplog.records]
    for path in bad:
        line = next(m for m in lines if m.startswith(f"skipping {path}: "))
        assert line.count(str(path)) == 1, line
        assert line.count(path.name) == 1, line
    assert "Premature end of JPEG file" in next(m for m in lines if str(bad[0]) in m)
    assert "epoch 1: skipped 2 unreadable files" in lines
    # the reasons kept for reports do not repeat the path either: they follow it
    assert sorted(p for p, _ in loader.skipped) == sorted(map(str, bad))
    assert all(str(p) not in reason for p, reason in loader.skipped)


def test_console_lines_go_through_the_writer_and_come_back(tmp_path):
    setup_console_logging()  # what the CLI does first: 'jpegnet.train' gets its stderr handler
    written = []
    root = logging.getLogger()
    before = (list(logging.getLogger("jpegnet.train").handlers), list(root.handlers), logging.lastResort)
    console = logging.StreamHandler(sys.stderr)  # an application's logging.basicConfig()
    root.addHandler(console)
    try:
        with console_lines_through(written.append):
            logging.getLogger("jpegnet.data").warning("skipping %s: %s", "a/b.jpg", "Premature end of JPEG file")
            logging.getLogger("jpegnet.train").info("epoch 1/2: a console line")
            logging.getLogger("someone.else").warning("a warning reaching the root's console handler")
        assert written[:2] == ["skipping a/b.jpg: Premature end of JPEG file", "epoch 1/2: a console line"]
        assert "a warning reaching the root's console handler" in written[2]
        assert len(written) == 3  # one copy each: the root's console handler was replaced, not joined
    finally:
        root.removeHandler(console)
    assert (logging.getLogger("jpegnet.train").handlers, root.handlers, logging.lastResort) == before


def _bar_text_before(line: str) -> str:
    """What a terminal shows left of `line`'s text on its row: tqdm redraws with carriage returns."""
    return line.rsplit("\r", 1)[-1]


def test_training_with_a_bar_prints_warnings_above_it(tmp_path, capsys, monkeypatch):
    data, bad = _with_unreadable_files(tmp_path / "data")
    # as in a `jpegnet` process: no handler on the root logger (pytest's own would take the warnings off stderr)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--progress",
                 *TINY]) == 0
    err = capsys.readouterr().err
    assert re.search(r"epoch 1/1: +\d+%\|", err), err  # the bar was drawn
    rows = [_bar_text_before(row) for row in err.split("\n")]
    for path in bad:
        row = next(r for r in rows if str(path) in r and "skipping" in r)
        # on a row of its own: with the bar cleared first, not glued to the end of the bar's text
        assert row.lstrip(" ").startswith(f"skipping {path}: "), repr(row)
        assert row.count(path.name) == 1, row
    summary = next(r for r in rows if "skipped 2 unreadable files" in r)
    assert summary.lstrip(" ").startswith("epoch 1: skipped"), repr(summary)
    assert "epoch 0" not in err
