"""`write_shards`: a folder of class folders → WebDataset tar shards, their indexes and classes.json.

Each sample is `KEY.jpg` (the file's bytes, untouched) and `KEY.cls` (its class index, ASCII), KEY being
the file's path under the folder without its extension (dots made underscores: WebDataset splits key and
extension at the first dot). Samples go in a shuffled order drawn from the shuffle seed, so a shard is a
random slice of the dataset and a reader's shuffle buffer only has to mix across a few shards. Every file is
checked first (`check_images`: by default a full coefficient read in strict mode, as training reads it; with
verify='header' its header alone) and the files that fail are reported and left out, so no epoch meets them.
Each shard and its index are written to temporary names and renamed when complete: an interrupted run leaves
whole shards only.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile

import numpy as np

from ..codec import DEFAULT_MAX_PIXELS, JpegError
from ..codec.reader import default_threads
from .folder import JPEG_EXTENSIONS, JpegFolder
from .image_check import VERIFY_MODES, check_images
from .shard_format import CLASSES_FILE, INDEX_SUFFIX, TAR_BLOCK, ShardError, ShardIndex

# tar's per-member overhead (header, padding) and its end: margins so a shard stays under max_size
_MEMBER_OVERHEAD = 3 * TAR_BLOCK
_TAR_END = 2 * TAR_BLOCK + tarfile.RECORDSIZE
_FILE_MODE = 0o644  # mkstemp's 0600 would keep the shards from the other users of a shared filesystem


def parse_size(text) -> int:
    """'1GB', '500MB', '64KiB', '1e9' or a number of bytes → bytes (KB/MB/GB powers of 1000, KiB... of 1024)."""
    if isinstance(text, (int, np.integer)):
        value = int(text)
    else:
        t = str(text).strip().upper().replace(" ", "")
        units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
                 "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12, "K": 10 ** 3, "M": 10 ** 6,
                 "G": 10 ** 9, "B": 1}
        factor = 1
        for unit, f in units.items():
            if t.endswith(unit):
                t, factor = t[:-len(unit)], f
                break
        try:
            value = int(float(t) * factor)
        except ValueError:
            raise ShardError(f"not a size: {text!r} (examples: 1GB, 500MB, 64KiB)") from None
    if value < 1:
        raise ShardError(f"size must be positive, got {text!r}")
    return value


def sample_key(relative_path: str) -> str:
    """A WebDataset key from a file's path under the dataset folder: no extension, no other dots."""
    stem = os.path.splitext(relative_path.replace(os.sep, "/"))[0]
    return stem.replace(".", "_")


def _check_pattern(pattern: str) -> None:
    try:
        names = {pattern % 0, pattern % 1}
    except (TypeError, ValueError):
        raise ShardError(f"--out needs one printf number field, e.g. OUT/train-%06d.tar; got {pattern!r}") from None
    if len(names) != 2 or not pattern.endswith(".tar"):
        raise ShardError(f"--out must number the shards and end in .tar, e.g. OUT/train-%06d.tar; got {pattern!r}")


def write_classes(folder: str, classes: list[str]) -> str:
    """classes.json in `folder`; an existing one must name the same classes (train and val shards share it)."""
    path = os.path.join(folder, CLASSES_FILE)
    if os.path.exists(path):
        with open(path, "rb") as f:
            try:
                existing = json.load(f).get("classes")
            except ValueError:
                existing = None
        if existing != list(classes):
            raise ShardError(f"{path} exists with other classes ({(existing or [])[:3]}...); write these shards "
                             f"to another folder or remove it")
        return path
    _atomic_write(path, json.dumps({"classes": list(classes)}, indent=1).encode())
    return path


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _ShardFile:
    """One shard being written: the tar under a temporary name, the index of what went in."""

    def __init__(self, path: str):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.")
        self._file = os.fdopen(fd, "wb")
        self.tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self.index = ShardIndex([], [], [])

    def add(self, key: str, members: dict[str, bytes]) -> None:
        start = self.tar.offset
        parts = {}
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444  # reproducible bytes
            self.tar.addfile(info, io.BytesIO(data))
            parts[ext] = (self.tar.offset - -(-len(data) // TAR_BLOCK) * TAR_BLOCK, len(data))
        self.index.keys.append(key)
        self.index.starts.append(start)
        self.index.members.append(parts)

    @property
    def size(self) -> int:
        return self.tar.offset

    def finish(self) -> int:
        self.tar.close()
        self._file.close()
        size = os.path.getsize(self.tmp)
        self.index.tar_bytes = size
        os.chmod(self.tmp, _FILE_MODE)
        os.replace(self.tmp, self.path)
        _atomic_write(self.path[:-len(".tar")] + INDEX_SUFFIX, self.index.to_json())
        return size

    def discard(self) -> None:
        self.tar.close()
        self._file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def write_shards(folder, pattern: str, *, max_size=10 ** 9, max_count: int | None = None, shuffle_seed: int = 0,
                 threads: int | None = None, verify: str = "full", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 log=None) -> dict:
    """Write the class folders under `folder` (a path, or its FolderScan) as shards named pattern % 0, pattern % 1, ... (e.g.
    'out/train-%06d.tar'), each at most max_size bytes (and max_count samples), plus classes.json beside them.

    verify: 'full' (default) writes only the files whose coefficients read in strict mode (within max_pixels,
    the training reader's limit); 'header' checks their headers alone (cheaper; a corrupt or truncated scan is
    then written and skipped by every epoch). threads: the reader's C threads for the checks.
    Returns {'shards': [paths], 'samples', 'bytes', 'bad': [(path, reason)] (every file left out),
    'bad_headers' and 'bad_data' (how many of them had an unreadable header, and how many a header that reads
    but data that does not), 'pattern': a brace pattern of the shards, 'classes'}.
    """
    pattern = os.fspath(pattern)
    _check_pattern(pattern)
    if verify not in VERIFY_MODES:
        raise ShardError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    max_size = parse_size(max_size)
    if max_count is not None and int(max_count) < 1:
        raise ShardError(f"max_count must be >= 1, got {max_count!r}")
    dataset = JpegFolder(folder, "dct", train=False, extensions=JPEG_EXTENSIONS)
    out_dir = os.path.dirname(pattern) or "."
    os.makedirs(out_dir, exist_ok=True)
    write_classes(out_dir, dataset.classes)
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(shuffle_seed)]))).permutation(
        len(dataset.samples))
    threads = threads or default_threads()
    shards, bad, total, written = [], [], 0, 0
    bad_stages = {"header": 0, "data": 0}
    current: _ShardFile | None = None
    keys_seen: set = set()
    chunk = 256
    try:
        for start in range(0, len(order), chunk):
            items = [dataset.samples[i] for i in order[start:start + chunk]]
            blobs = []
            for path, _ in items:
                try:
                    with open(path, "rb") as f:
                        blobs.append(f.read())
                except OSError as e:
                    blobs.append(JpegError(f"cannot read file: {e.strerror or e}", path, "io"))
            checks = check_images(blobs, verify, threads=threads, max_pixels=max_pixels)
            for (path, target), blob, check in zip(items, blobs, checks):
                if check is not None:
                    stage, reason = check
                    bad_stages[stage] += 1
                    bad.append((path, reason))
                    if log is not None:
                        log(f"skipping {path}: {reason}")
                    continue
                key = sample_key(os.path.relpath(path, dataset.root))
                while key in keys_seen:  # a.b.jpg and a_b.jpg, or a.jpg and a.jpeg, in one class folder
                    key += "_"
                keys_seen.add(key)
                members = {"jpg": blob, "cls": str(target).encode()}
                need = sum(len(v) for v in members.values()) + _MEMBER_OVERHEAD * len(members)
                if current is not None and (current.size + need + _TAR_END > max_size
                                            or (max_count is not None and len(current.index) >= max_count)):
                    total += current.finish()
                    shards.append(current.path)
                    current = None
                if current is None:
                    current = _ShardFile(pattern % len(shards))
                current.add(key, members)
                written += 1
        if current is not None:
            total += current.finish()
            shards.append(current.path)
            current = None
    finally:
        if current is not None:
            current.discard()
    return {"shards": shards, "samples": written, "bytes": total, "bad": bad, "bad_headers": bad_stages["header"],
            "bad_data": bad_stages["data"], "classes": dataset.classes, "pattern": brace_pattern(pattern, len(shards))}


def brace_pattern(pattern: str, count: int) -> str:
    """The brace pattern that names shards 0 .. count-1 of a printf pattern: 'train-{000000..000146}.tar'."""
    if count <= 1:
        return pattern % 0
    first, last = pattern % 0, pattern % (count - 1)
    i = 0
    while first[i] == last[i]:
        i += 1
    j = 0
    while first[-1 - j] == last[-1 - j]:
        j += 1
    # widen to the whole number field (digits on either side of the differing part)
    while i > 0 and first[i - 1].isdigit():
        i -= 1
    while j > 0 and first[-j].isdigit():
        j -= 1
    return f"{first[:i]}{{{first[i:len(first) - j]}..{last[i:len(last) - j]}}}{first[len(first) - j:]}"


__all__ = ["brace_pattern", "parse_size", "sample_key", "write_classes", "write_shards"]
