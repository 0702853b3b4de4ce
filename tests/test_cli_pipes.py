"""A command whose output is cut by a pipe (`jpegnet models | head -1`) ends quietly: nothing on stderr, exit
status 141 (128 + SIGPIPE, see jpegnet/cli.py), whichever command it is and wherever the write fails (in the
command, or when stdout is flushed at the end)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jpegnet import cli

from .test_engine_resume import make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "jpegnet.cli"]
PIPE_BYTES = 4096  # the pipe's capacity, set small so that a few KiB of output outrun the reader for certain
# A reader that takes one line, byte by byte so it takes no more, prints it and exits: its end of the pipe closes.
READ_ONE_LINE = ("import os, sys\n"
                 "line = b''\n"
                 "while not line.endswith(b'\\n'):\n"
                 "    byte = os.read(0, 1)\n"
                 "    if not byte:\n"
                 "        break\n"
                 "    line += byte\n"
                 "sys.stdout.buffer.write(line)\n")
TIMEOUT = 300

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes (F_SETPIPE_SZ)")


def _env() -> dict:
    env = dict(os.environ, JPEGNET_DEBUG="")  # a debug setting must not turn the quiet exit into a traceback
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _into_reader_of_one_line(args: list[str]):
    """`jpegnet ARGS | (read one line; exit)`: (jpegnet's status, its stderr, the line the reader got)."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    try:
        writer = subprocess.Popen(CLI + args, stdout=w, stderr=subprocess.PIPE, env=_env(), cwd=REPO)
        reader = subprocess.Popen([sys.executable, "-c", READ_ONE_LINE], stdin=r, stdout=subprocess.PIPE)
    finally:
        os.close(r)
        os.close(w)
    line = reader.communicate(timeout=TIMEOUT)[0]
    stderr = writer.communicate(timeout=TIMEOUT)[1]
    return writer.returncode, stderr.decode(errors="replace"), line.decode()


def _into_closed_pipe(args: list[str], stderr_too: bool = False):
    """`jpegnet ARGS` writing into a pipe whose reader has already gone: (status, stderr)."""
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(CLI + args, stdout=w, stderr=w if stderr_too else subprocess.PIPE, env=_env(),
                              cwd=REPO, timeout=TIMEOUT)
    finally:
        os.close(w)
    return done.returncode, (done.stderr or b"").decode(errors="replace")


def test_models_cut_after_one_line_ends_quietly(capsys):
    assert cli.main(["models"]) == 0
    full = capsys.readouterr().out
    # more than the pipe holds besides the first line: the reader closes while jpegnet still has output to write
    assert len(full.encode()) > PIPE_BYTES + 2 * len(full.splitlines()[0])
    status, stderr, line = _into_reader_of_one_line(["models"])
    assert line == full.splitlines(keepends=True)[0]
    assert stderr == ""
    assert status == cli.EXIT_PIPE_CLOSED == 141


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("pipes"), classes=2, train_per_class=2, val_per_class=1)


@pytest.mark.parametrize("argv", [["models"], ["models", "resnet*"], ["stats"]])
def test_commands_into_a_closed_pipe_end_quietly(argv, tiny, tmp_path):
    if argv == ["stats"]:  # a command that prints its one line after its work (the flush at the end fails)
        argv = ["stats", str(tiny / "train"), "--out", str(tmp_path / "stats.json"), "--size", "32"]
    status, stderr = _into_closed_pipe(argv)
    assert stderr == ""
    assert status == 141


def test_stderr_cut_too_ends_quietly(tiny, tmp_path):
    """`jpegnet shards ... 2>&1 | head -1`: its progress lines on stderr meet the closed pipe first."""
    status, _ = _into_closed_pipe(["shards", "--data", str(tiny), "--split", "train", "--out",
                                   str(tmp_path / "s" / "train-%06d.tar")], stderr_too=True)
    assert status == 141


def test_a_broken_pipe_inside_a_command_is_not_reported_as_an_error(monkeypatch, capsys):
    """In process: the BrokenPipeError (an OSError, which the CLI otherwise reports) gives 141 and no message."""
    def models(args):
        print("first line")
        raise BrokenPipeError(32, "Broken pipe")

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["models"].set_defaults(func=models)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["models"]) == 141
    assert capsys.readouterr().err == ""
