"""The ImageNet-1k label set (ILSVRC2012): its 1,000 WordNet ids in the order every ImageNet classifier numbers
its outputs (sorted by wnid, as the class folders of the standard layout sort), with their human names.

The list is package data (`imagenet_classes.tsv`: wnid, tab, names), a public fact list generated from timm's
package data by `python -m jpegnet.imagenet --write` (timm installed) and checked against it by the tests.
A model whose weights were imported from torchvision, timm or efficientnet_pytorch carries these wnids as
its class names, so `jpegnet eval` can match ImageNet-labelled images to its outputs by wnid.

Neutral ground: imports nothing of jpegnet (the models, the engine and the CLI use it).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.tsv")
NUM_CLASSES = 1000
WNID_PATTERN = re.compile(r"n\d{8}")


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, str], ...]:
    rows = tuple(tuple(line.split("\t", 1)) for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(rows) != NUM_CLASSES or [w for w, _ in rows] != sorted(w for w, _ in rows):
        raise RuntimeError(f"{CLASSES_FILE} is damaged: expected {NUM_CLASSES} sorted wnids")
    return rows


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids; class index i of an ImageNet classifier is `imagenet_wnids()[i]`."""
    return [wnid for wnid, _ in _table()]


def imagenet_names() -> list[str]:
    """The human names of the 1,000 classes, in class-index order ('tench, Tinca tinca', ...)."""
    return [names for _, names in _table()]


def imagenet_label(wnid: str) -> str:
    """The short human name of a wnid (its first WordNet lemma: 'tench'); the wnid itself if it is not one of
    the 1,000."""
    return dict(_table()).get(wnid, wnid).split(",")[0]


def is_imagenet_classes(class_names) -> bool:
    """Whether a model's class names are the ImageNet-1k wnids in their order."""
    return class_names is not None and list(class_names) == imagenet_wnids()


def _write_from_timm() -> None:
    """Regenerate the TSV from timm's package data (imagenet_synsets.txt and imagenet_synset_to_lemma.txt)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = [info.index_to_label_name(i) for i in range(info.num_classes())]
    if len(wnids) != NUM_CLASSES or wnids != sorted(wnids):
        raise SystemExit(f"timm's imagenet-1k list is not {NUM_CLASSES} sorted wnids")
    lines = [f"{wnid}\t{info.label_name_to_description(wnid)}" for wnid in wnids]
    CLASSES_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {CLASSES_FILE} ({len(lines)} classes)")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m jpegnet.imagenet --write   (regenerates imagenet_classes.tsv from timm)")
    _write_from_timm()


__all__ = ["CLASSES_FILE", "NUM_CLASSES", "WNID_PATTERN", "imagenet_label", "imagenet_names", "imagenet_wnids",
           "is_imagenet_classes"]
