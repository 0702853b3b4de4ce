"""The one scanner of ImageFolder-layout directories (root/<class>/**/<image>), used by JpegFolder and by the
engine's folder checks, so that both always agree on the classes and the files.

Rules: entries whose name starts with '.' (.ipynb_checkpoints, .DS_Store, .git ...) are skipped at every level;
symlinks are followed, but each real directory is visited once per class (a link back up, such as
`ln -s . loop`, would otherwise list every file again and again until the OS's link limit).

A folder is scanned once per run: `FolderScan` holds the result and stands for the folder's path (it is
path-like), so the engine's checks and the JpegFolder built after them share one listing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def list_classes(root: str | os.PathLike) -> list[str]:
    """The sorted names of root's visible subdirectories (symlinks to directories count)."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if not _is_hidden(e.name) and e.is_dir())


def list_class_files(folder: str | os.PathLike, extensions=JPEG_EXTENSIONS) -> list[str]:
    """Paths of the visible files with one of `extensions` (case-insensitive) under folder, at any depth.

    Ordered as sorted(os.walk(folder)) with sorted file names: directories by path, files by name."""
    exts = tuple(e.lower() for e in extensions)
    folder = os.fspath(folder)
    visited: set[tuple[int, int]] = set()
    found: list[tuple[str, list[str]]] = []
    pending = [folder]
    while pending:
        path = pending.pop()
        try:
            st = os.stat(path)  # follows links: the identity of the real directory
        except OSError:
            continue  # a dangling link or a folder removed meanwhile
        key = (st.st_dev, st.st_ino)
        if key in visited:
            continue
        visited.add(key)
        files: list[str] = []
        try:
            with os.scandir(path) as entries:
                for e in entries:
                    if _is_hidden(e.name):
                        continue
                    try:
                        if e.is_dir():
                            pending.append(e.path)
                        elif e.name.lower().endswith(exts):
                            # not only regular files: a FIFO or a dangling link named *.jpg is listed, and the
                            # reader reports it as unreadable (never blocking on it) instead of it vanishing
                            files.append(e.name)
                    except OSError:
                        continue
        except OSError:
            continue  # unreadable folder: as os.walk, which skips it
        found.append((path, sorted(files)))
    found.sort(key=lambda item: item[0])
    return [os.path.join(path, name) for path, names in found for name in names]


def scan_image_folder(root: str | os.PathLike,
                      extensions=JPEG_EXTENSIONS) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, samples): the class names and every (path, class index), by the rules above."""
    classes = list_classes(root)
    samples = [(path, index) for index, name in enumerate(classes)
               for path in list_class_files(os.path.join(os.fspath(root), name), extensions)]
    return classes, samples


@dataclass(frozen=True)
class FolderScan:
    """One scan of root/<class>/**/<image>: what `scan_image_folder` found, kept so that nothing lists the
    folder again. os.fspath(scan) is root: a scan can go wherever the folder's path goes."""

    root: str
    extensions: tuple[str, ...]
    classes: list[str]
    samples: list[tuple[str, int]]

    @classmethod
    def of(cls, root: str | os.PathLike, extensions=JPEG_EXTENSIONS) -> "FolderScan":
        exts = tuple(e.lower() for e in extensions)
        root = os.fspath(root)
        classes, samples = scan_image_folder(root, exts)
        return cls(root, exts, classes, samples)

    def __fspath__(self) -> str:
        return self.root

    def __str__(self) -> str:
        return self.root

    def empty_classes(self) -> list[str]:
        """Class folders without any image (an empty class would silently shift every label after it)."""
        used = {target for _, target in self.samples}
        return [name for index, name in enumerate(self.classes) if index not in used]


__all__ = ["FolderScan", "JPEG_EXTENSIONS", "list_class_files", "list_classes", "scan_image_folder"]
