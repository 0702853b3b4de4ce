"""Which output of a model an evaluation image's label is: by class folder (the model's own classes, or any of
the ImageNet wnids for an ImageNet model), or by the file name's prefix (ImageNet's `n01440764_*.JPEG`).

`jpegnet eval` labels images one of two ways (`--labels-from`):
- `folders` (the default): one subfolder per class. A model trained here must see exactly its own classes; a
  model with the ImageNet-1k classes (imported weights, `jpegnet.imagenet`) takes any folder whose subfolders
  are ImageNet wnids (the standard validation layout, or a part of it), each mapped to its class index.
- `filenames`: a flat folder (searched at any depth) whose JPEG files are named `<class>_<anything>`, the class
  being one of the model's class names (for ImageNet, `n01440764_10026.JPEG`).
A label the model does not have is an error naming it, never an image silently dropped or mislabelled.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data.scan import list_class_files
from ..imagenet import is_imagenet_classes
from .errors import CheckpointError, DataFolderError

LABEL_SOURCES = ("folders", "filenames")


def _shown(items, n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def folder_targets(folder_classes: list[str], class_names, num_classes: int, where: str,
                   model: str = "the model") -> list[int] | None:
    """The model's class index of each class folder (None: the folders are the model's classes, in order).

    CheckpointError when the folders are not the model's classes (or, for an ImageNet model, not wnids of it)."""
    if class_names is not None and is_imagenet_classes(class_names) and folder_classes != list(class_names):
        index = {name: i for i, name in enumerate(class_names)}
        unknown = [c for c in folder_classes if c not in index]
        if unknown:
            raise CheckpointError(f"{where} has class folders that are not ImageNet-1k wnids ({model} has the "
                                  f"ImageNet-1k classes): "
                                  f"{_shown(unknown)}")
        return [index[c] for c in folder_classes]
    if class_names is not None and list(class_names) != folder_classes:
        raise CheckpointError(f"{model} was trained on classes {list(class_names)[:4]}... but {where} has "
                              f"{folder_classes[:4]}... ({len(class_names)} vs {len(folder_classes)} classes)")
    if len(folder_classes) != num_classes:
        raise CheckpointError(f"{model} predicts {num_classes} classes but {where} has {len(folder_classes)}")
    return None


def files_labelled_by_name(folder: str | os.PathLike, class_names) -> tuple[list[str], list[int]]:
    """(JPEG files under `folder`, the model's class index of each), the class being the file name up to its
    first '_'. DataFolderError for a missing or empty folder, a model without class names, or file names whose
    prefix is not one of the model's classes (all named, up to a few)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFolderError(f"evaluation folder not found: {folder}")
    if class_names is None:
        raise DataFolderError("--labels-from filenames needs a model with class names (a checkpoint trained here, "
                              "or ImageNet weights)")
    files = list_class_files(folder)
    if not files:
        raise DataFolderError(f"no JPEG files under {folder}")
    index = {name: i for i, name in enumerate(class_names)}
    targets, unknown = [], []
    for path in files:
        label = os.path.basename(path).split("_", 1)[0]
        if label in index:
            targets.append(index[label])
        else:
            unknown.append(os.path.basename(path))
    if unknown:
        what = "ImageNet-1k wnids" if is_imagenet_classes(class_names) else "classes of the model"
        raise DataFolderError(f"{len(unknown)} file(s) in {folder} are not named <class>_... with one of the "
                              f"{what}: {_shown(unknown)}")
    return files, targets


__all__ = ["LABEL_SOURCES", "files_labelled_by_name", "folder_targets"]
