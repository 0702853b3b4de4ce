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


requires_shared = pytest.mark.skipif(not CORPUS.exists(), reason="../shared/data is not beside the checkout")
