"""pytest plugin: CPU seconds per test (this process, all its threads, plus reaped child processes), the
costliest 30 printed at the end, every row written to $CPUTIME_OUT (TSV) if set. CPU time, not wall time,
because a loaded machine stretches wall time; note that torch's OpenMP threads spin while they wait, so on a
loaded machine multithreaded tests still read higher than on a quiet one.

    PYTHONPATH=$PWD:benchmarks python -m pytest -q -p cputime_plugin tests/test_foo.py
"""
from __future__ import annotations

import os
import resource

import pytest

_rows: list[tuple[str, float, float]] = []


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own0, children0 = _cpu()
    yield
    own1, children1 = _cpu()
    _rows.append((item.nodeid, own1 - own0, children1 - children0))


def pytest_terminal_summary(terminalreporter):
    rows = sorted(_rows, key=lambda r: r[1] + r[2], reverse=True)
    terminalreporter.write_line(f"CPU seconds, costliest 30 of {len(rows)} (total {sum(r[1] + r[2] for r in rows):.1f}):")
    for nodeid, own, children in rows[:30]:
        terminalreporter.write_line(f"{own + children:8.2f}  {nodeid}")
    out = os.environ.get("CPUTIME_OUT")
    if out:
        with open(out, "w") as f:
            f.write("test\tcpu_self\tcpu_children\n")
            f.writelines(f"{n}\t{a:.2f}\t{b:.2f}\n" for n, a, b in _rows)
