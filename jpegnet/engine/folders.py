"""Checks on an ImageFolder-style data folder, made before any work so that mistakes fail fast and clearly."""
from __future__ import annotations

from pathlib import Path

from ..data.scan import JPEG_EXTENSIONS, list_class_files, list_classes
from .errors import DataFolderError

JPEG_SUFFIXES = set(JPEG_EXTENSIONS)


def check_image_folder(root: str | Path, role: str = "data") -> list[str]:
    """The sorted class names of `root` (one subfolder per class); DataFolderError if unusable.

    Unusable: missing, not a folder, no class subfolder, or a class subfolder without any JPEG file
    (an empty class would silently shift every label after it).
    """
    root = Path(root)
    if not root.exists():
        raise DataFolderError(f"{role} folder not found: {root}")
    if not root.is_dir():
        raise DataFolderError(f"{role} folder is not a directory: {root}")
    # The data pipeline's own scan (jpegnet.data.scan): hidden entries skipped, symlink loops visited once.
    classes = list_classes(root)
    if not classes:
        raise DataFolderError(f"{role} folder {root} has no class subfolders (expected {root}/<class>/*.jpg)")
    empty = [c for c in classes if not list_class_files(root / c, first_only=True)]
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise DataFolderError(f"{role} folder {root} has {len(empty)} class folder(s) without JPEG files: {shown}")
    return classes


def check_train_val_folder(root: str | Path) -> tuple[Path, Path, list[str]]:
    """`root/train` and `root/val` checked, with the same classes; returns (train_dir, val_dir, classes)."""
    root = Path(root)
    if not root.exists():
        raise DataFolderError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataFolderError(f"data folder is not a directory: {root}")
    train_dir, val_dir = root / "train", root / "val"
    for sub in (train_dir, val_dir):
        if not sub.is_dir():
            raise DataFolderError(f"data folder {root} lacks {sub.name}/ (expected {root}/train/<class>/*.jpg "
                                  f"and {root}/val/<class>/*.jpg)")
    classes = check_image_folder(train_dir, "training")
    val_classes = check_image_folder(val_dir, "validation")
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise DataFolderError(f"train/ and val/ of {root} have different classes (only in train: "
                              f"{only_train[:5]}, only in val: {only_val[:5]})")
    return train_dir, val_dir, classes
