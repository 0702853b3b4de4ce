"""Every input the coverage-guided fuzzer (make fuzz-cov) ever flagged, replayed through the same harness in the
normal build: each must now read or raise a typed error, with the harness's checks holding."""
from __future__ import annotations

from pathlib import Path

import pytest

from .fuzz_cov import one_input

REGRESSIONS = sorted(p for p in (Path(__file__).parent / "fuzz_regressions").iterdir() if p.name != "README.md")


def test_regression_files_are_kept():
    assert REGRESSIONS, "tests/fuzz_regressions/ must keep every crash found"


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regression_replays_cleanly(path: Path):
    one_input(path.read_bytes())
