"""Checks on an ImageFolder-style data folder, made before any work so that mistakes fail fast and clearly.

The checks read the data pipeline's own scan (`jpegnet.data.FolderScan`: hidden entries skipped, symlink loops
visited once) and hand it on: the JpegFolder built from a checked folder uses that scan instead of listing the
folder again, so the check and the data can never disagree on the classes.
"""
from __future__ import annotations

from pathlib import Path

from ..data.scan import FolderScan
from .errors import DataFolderError


def _check_dir(root: Path, role: str) -> None:
    if not root.exists():
        raise DataFolderError(f"{role} folder not found: {root}")
    if not root.is_dir():
        raise DataFolderError(f"{role} folder is not a directory: {root}")


def scan_checked_folder(root: str | Path, role: str = "data") -> FolderScan:
    """The scan of `root` (one subfolder per class), checked; DataFolderError if unusable.

    Unusable: missing, not a folder, no class subfolder, or a class subfolder without any JPEG file
    (an empty class would silently shift every label after it).
    """
    root = Path(root)
    _check_dir(root, role)
    scan = FolderScan.of(root)
    if not scan.classes:
        raise DataFolderError(f"{role} folder {root} has no class subfolders (expected {root}/<class>/*.jpg)")
    empty = scan.empty_classes()
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise DataFolderError(f"{role} folder {root} has {len(empty)} class folder(s) without JPEG files: {shown}")
    return scan


def check_image_folder(root: str | Path, role: str = "data") -> list[str]:
    """The sorted class names of `root`, checked as `scan_checked_folder` does."""
    return scan_checked_folder(root, role).classes


def check_train_val_folder(root: str | Path) -> tuple[FolderScan, FolderScan, list[str]]:
    """`root/train` and `root/val` checked, with the same classes; returns (train scan, val scan, classes). The
    scans are path-like (os.fspath gives the folder) and go to the datasets as they are (no second listing)."""
    root = Path(root)
    _check_dir(root, "data")
    train_dir, val_dir = root / "train", root / "val"
    for sub in (train_dir, val_dir):
        if not sub.is_dir():
            raise DataFolderError(f"data folder {root} lacks {sub.name}/ (expected {root}/train/<class>/*.jpg "
                                  f"and {root}/val/<class>/*.jpg)")
    train = scan_checked_folder(train_dir, "training")
    val = scan_checked_folder(val_dir, "validation")
    if val.classes != train.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataFolderError(f"train/ and val/ of {root} have different classes (only in train: "
                              f"{only_train[:5]}, only in val: {only_val[:5]})")
    return train, val, train.classes
