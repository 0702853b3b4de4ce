"""Every input the coverage-guided fuzzer (make fuzz-cov) ever flagged, replayed through the same harness in the
normal build: each must now read or raise a typed error, with the harness's checks holding. Files directly in
tests/fuzz_regressions/ are inputs of the C extensions' target (fuzz_cov.one_input); files in its tar/ folder
are shards for the tar-shard reader's target (fuzz_tar.one_tar_input)."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .fuzz_cov import one_input
from .fuzz_tar import one_tar_input

FOLDER = Path(__file__).parent / "fuzz_regressions"
REGRESSIONS = sorted(p for p in FOLDER.iterdir() if p.is_file() and p.name != "README.md")
TAR_REGRESSIONS = sorted(p for p in (FOLDER / "tar").iterdir() if p.is_file())
# A hang is a finding too: the tar inputs that once looped forever fail after this long instead of hanging.
TAR_HANG_SECONDS = 60


def test_regression_files_are_kept():
    assert REGRESSIONS, "tests/fuzz_regressions/ must keep every crash found"
    assert TAR_REGRESSIONS, "tests/fuzz_regressions/tar/ must keep every tar-reader finding"


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regression_replays_cleanly(path: Path):
    one_input(path.read_bytes())


class _Hang(Exception):
    pass


@pytest.mark.parametrize("path", TAR_REGRESSIONS, ids=[p.name for p in TAR_REGRESSIONS])
def test_tar_fuzz_regression_replays_cleanly(path: Path):
    def hang(signum, frame):
        raise _Hang(f"{path.name} still running after {TAR_HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(TAR_HANG_SECONDS)
    try:
        one_tar_input(path.read_bytes())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
