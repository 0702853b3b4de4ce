"""Shared test fixtures: the read-only data beside the checkout (../shared/data)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JPEGNET_SHARED_DATA", REPO.parent / "shared" / "data"))
CORPUS = SHARED_DATA / "jpeg-corpus"
BAD = CORPUS / "bad"
IMAGENETTE = SHARED_DATA / "imagenette-224"


def corpus_manifest() -> list[dict]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def corpus_files() -> list[Path]:
    return [CORPUS / row["file"] for row in corpus_manifest()]


def corpus_originals(tmp_path: Path) -> Path:
    """A folder of links to the corpus's 96 labelled ImageNet originals (`n<wnid>_<name>.JPEG`, not the
    variants); skips where ../shared/data is missing."""
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not found")
    folder = tmp_path / "originals"
    folder.mkdir()
    for f in sorted(CORPUS.glob("n*_*.JPEG")):
        os.symlink(f, folder / f.name)
    return folder


requires_shared = pytest.mark.skipif(not CORPUS.exists(), reason="../shared/data is not beside the checkout")


def pytest_configure(config):
    # Under pytest-xdist (`make test` runs two workers), each worker's torch computes on one thread: two workers
    # on two cores, not two workers each starting as many OpenMP threads as there are cores and fighting for them.
    # Tests that start their own processes set those processes' threads themselves.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
