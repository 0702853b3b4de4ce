#!/bin/sh
# The test suite's time on a cold machine, then warm, in this checkout's .venv (make venv first; PY= another python).
# Cold = every cache a previous run leaves behind is a fresh empty folder: inductor's compiled C++ kernels and
# FX graphs (TORCHINDUCTOR_CACHE_DIR, default /tmp/torchinductor_$USER), ~/.cache (XDG_CACHE_HOME: torch,
# matplotlib), Triton's cache and matplotlib's font list; __pycache__ folders of the checkout are removed.
# The second run reuses those folders: the warm time. Extra arguments go to pytest (e.g. a test file to smoke
# it). For a fresh machine's number, also drop the page cache first (as root: sync; echo 3 >/proc/sys/vm/drop_caches).
set -e
PY=${PY:-.venv/bin/python}  # or the python of another venv
cd "$(dirname "$0")/.."
CACHES=$(mktemp -d "${TMPDIR:-/tmp}/jpegnet-cold.XXXXXX")
mkdir -p "$CACHES/inductor" "$CACHES/xdg" "$CACHES/triton" "$CACHES/mpl"
export TORCHINDUCTOR_CACHE_DIR="$CACHES/inductor" XDG_CACHE_HOME="$CACHES/xdg" TRITON_CACHE_DIR="$CACHES/triton" \
    MPLCONFIGDIR="$CACHES/mpl"
find jpegnet tests -name __pycache__ -type d -prune -exec rm -rf {} +
for run in cold warm; do
    start=$(date +%s)
    "$PY" -m pytest -q -n auto --maxprocesses 4 -p no:cacheprovider --durations=20 "$@" | tail -n 25
    echo "$run: $(( $(date +%s) - start )) s"
done
rm -rf "$CACHES"
