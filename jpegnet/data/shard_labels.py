"""Which members of a shard sample hold its image and its label, how a label is read, and the classes of a shard
set that has no classes.json (shards written by other tools, e.g. `webdataset.TarWriter` / `ShardWriter`).

Conventions (docs/shards.md, "Shards from other tools"):
  - image: the `jpg` member, else `jpeg` (extensions compared in lower case, as WebDataset does);
  - label: the `cls` member (an integer in ASCII, e.g. b"3"), else the `json` member: a JSON integer, or an
    object whose "label" field (else its "cls" field) is an integer. Booleans, floats and strings are refused;
  - classes: classes.json beside the shards when there is one (label = index into its list); without one,
    the labels of every sample of the set are read (local shards, by random access through their index) and
    the classes are named by their index, '0' .. str(max label), i.e. max label + 1 classes. A sample without a
    usable label then stops the run (ShardLabelError naming it): a convention that does not fit the data is
    found before training, not by skipping every sample.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from .shard_format import CLASSES_FILE, PIPE, ShardError, ShardIndex, load_classes, sidecar_url

IMAGE_EXTENSIONS = ("jpg", "jpeg")
LABEL_EXTENSIONS = ("cls", "json")
JSON_LABEL_FIELDS = ("label", "cls")


class ShardLabelError(ShardError):
    """A shard sample without a usable label: no .cls or .json member, or a label that is not an integer."""


def image_extension(extensions) -> str | None:
    """The member holding a sample's JPEG among its extensions, or None."""
    return next((e for e in IMAGE_EXTENSIONS if e in extensions), None)


def label_extension(extensions) -> str | None:
    """The member holding a sample's label among its extensions, or None."""
    return next((e for e in LABEL_EXTENSIONS if e in extensions), None)


def parse_label(extension: str, data: bytes) -> int:
    """The integer label in a `cls` or `json` member's bytes; ShardLabelError (message: what is wrong) if none."""
    shown = data[:40] + (b"..." if len(data) > 40 else b"")
    if extension == "cls":
        text = data.strip()
        if not text.lstrip(b"-").isdigit():
            raise ShardLabelError(f"label {shown!r} in .cls is not an integer")
        return int(text)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ShardLabelError(f".json member {shown!r} is not JSON") from None
    if isinstance(value, dict):
        field = next((f for f in JSON_LABEL_FIELDS if f in value), None)
        if field is None:
            raise ShardLabelError(f".json member has no {' or '.join(repr(f) for f in JSON_LABEL_FIELDS)} field "
                                  f"(fields: {', '.join(map(repr, list(value)[:5])) or 'none'})")
        value = value[field]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ShardLabelError(f"label {value!r} in .json is not an integer")
    return value


def missing_label(extensions) -> ShardLabelError:
    """The error of a sample whose members (these extensions) hold no label."""
    return ShardLabelError(f"no label: neither .cls nor .json among its members "
                           f"({', '.join('.' + e for e in extensions) or 'none'})")


def has_classes_file(url: str) -> bool:
    """Whether classes.json lies beside a local shard (a pipe: shard is assumed to have one: it is fetched)."""
    return url.startswith(PIPE) or os.path.isfile(sidecar_url(url, CLASSES_FILE))


def _shard_labels(url: str, index: ShardIndex) -> tuple[list[int], list[str]]:
    """(labels, problems) of a local shard's samples, each label member read by its offset in the index."""
    labels, problems = [], []
    with open(url, "rb") as f:
        for key, parts in zip(index.keys, index.members):
            ext = label_extension(parts)
            try:
                if ext is None:
                    raise missing_label(parts)
                offset, size = parts[ext]
                f.seek(offset)
                label = parse_label(ext, f.read(size))
                if label < 0:
                    raise ShardLabelError(f"label {label} is negative")
                labels.append(label)
            except ShardLabelError as e:
                problems.append(f"{url}:{key}: {e}")
    return labels, problems


def infer_classes(urls: list[str], indexes: list[ShardIndex]) -> list[str]:
    """The classes of a shard set without classes.json: '0' .. str(max label), from every sample's label."""
    pipes = [u for u in urls if u.startswith(PIPE)]
    if pipes:
        raise ShardError(f"{pipes[0]}: pipe: shards need a {CLASSES_FILE} beside them (the labels of a streamed "
                         f"set are not read ahead to count its classes)")
    with ThreadPoolExecutor(min(16, len(urls))) as pool:
        results = list(pool.map(_shard_labels, urls, indexes))
    problems = [p for _, ps in results for p in ps]
    total = sum(len(ix) for ix in indexes)
    if problems:
        raise ShardLabelError(
            f"{len(problems)} of {total} samples have no usable label (first: {problems[0]}); without a "
            f"{CLASSES_FILE} beside the shards each sample needs KEY.cls (an integer) or KEY.json (an integer, or "
            f"an object with an integer \"label\" or \"cls\"); with a {CLASSES_FILE} such samples are skipped")
    labels = [label for ls, _ in results for label in ls]
    if not labels:
        raise ShardError(f"no samples in {len(urls)} shard(s) starting with {urls[0]}")
    return [str(i) for i in range(max(labels) + 1)]


def shard_set_classes(urls: list[str], indexes: list[ShardIndex]) -> list[str]:
    """classes.json beside the first shard, or (none there, local shards) the classes named by label index."""
    if has_classes_file(urls[0]):
        return load_classes(urls[0])
    return infer_classes(urls, indexes)


__all__ = ["IMAGE_EXTENSIONS", "JSON_LABEL_FIELDS", "LABEL_EXTENSIONS", "ShardLabelError", "has_classes_file",
           "image_extension", "infer_classes", "label_extension", "missing_label", "parse_label",
           "shard_set_classes"]
