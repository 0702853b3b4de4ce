"""WebDataset tar shards at the byte level: shard URLs (brace patterns, `pipe:` commands), the tar stream
reader, the per-shard index and `classes.json`.

A shard is a plain tar whose consecutive members sharing a key form one sample (`KEY.jpg`: the original JPEG
bytes, `KEY.cls`: the class index in ASCII), the WebDataset convention. Beside each `NAME.tar` the writer puts
`NAME.idx.json` (every sample's key, the offset of its first header and each member's data offset and size),
so a shard can be split, resumed and read by random access without a scan; beside the shards, `classes.json`
names the classes. Shards from other tools (`.jpeg` images, `.json` labels, no classes.json, no index) are read
too: the label conventions are in `shard_labels`.

Why not the `webdataset` / `wids` libraries: the tar stream parser here is ~80 lines of standard library and
hands member bytes straight to the batch reader; webdataset's per-sample Python pipeline (a dict per sample,
pipeline stages) costs 4.5× its CPU per sample (54 against 12 µs, a quarter of a whole DCT batch's cost per
224 px image), and its order, rank split and resume are not a pure function of (seed, epoch, position)
(measured: benchmarks/shards.py, README "Shards vs folders").
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass

from ..errors import JpegnetError

TAR_BLOCK = 512
INDEX_SUFFIX = ".idx.json"
CLASSES_FILE = "classes.json"
INDEX_FORMAT = "jpegnet-shard-index/1"
PIPE = "pipe:"
logger = logging.getLogger("jpegnet.data")
_READ_BUFFER = 1 << 20


class ShardError(JpegnetError, ValueError):
    """A shard, its index or its classes.json that cannot be used (the message names it)."""


class ShardNotFoundError(ShardError, FileNotFoundError):
    """A shard (or its index / classes.json) that does not exist."""


class PipeCommandError(ShardError):
    """A `pipe:` command that exited with a non-zero status."""


# --- URLs ------------------------------------------------------------------------------------------------

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


def expand_braces(text: str) -> list[str]:
    """Shell-style brace expansion: 'train-{000000..000002}.tar' → three names (zero padding kept as
    written), 'a{x,y}b' → ['axb', 'ayb'], several groups multiply. Braces that are neither a range nor a
    comma list stay as they are."""
    pos = 0
    while True:
        m = _BRACE.search(text, pos)
        if m is None:
            return [text]
        body = m.group(1)
        r = _RANGE.fullmatch(body)
        if r is not None:
            lo, hi = int(r.group(1)), int(r.group(2))
            padded = any(g.lstrip("-").startswith("0") and len(g.lstrip("-")) > 1 for g in r.groups())
            width = max(len(r.group(1)), len(r.group(2))) if padded else 0
            step = 1 if hi >= lo else -1
            items = [str(i).zfill(width) for i in range(lo, hi + step, step)]
        elif "," in body:
            items = body.split(",")
        else:
            pos = m.end()
            continue
        head, tail = text[:m.start()], text[m.end():]
        return [out for item in items for out in expand_braces(head + item + tail)]


def expand_urls(urls) -> list[str]:
    """A brace pattern, or a list of them, → the list of shard URLs (local paths or `pipe:` commands)."""
    if isinstance(urls, (str, os.PathLike)):
        urls = [urls]
    out = [u for pattern in urls for u in expand_braces(os.fspath(pattern))]
    if not out:
        raise ShardError("no shard URLs given")
    return out


def is_shard_spec(text) -> bool:
    """Whether a --data value names tar shards (a .tar path or pattern, or a pipe: command) not a folder."""
    text = os.fspath(text)
    return text.startswith(PIPE) or bool(re.search(r"\.tar(\}|$)", text.strip()))


_TAR_TOKEN = re.compile(r"[^\s'\"]*\.tar(?=$|[\s'\"])")


def sidecar_url(url: str, name: str | None = None) -> str:
    """The URL of a file beside a shard: its index (name None: NAME.tar → NAME.idx.json) or `name` (e.g.
    classes.json) in the same folder. For a `pipe:` command, the first word ending in .tar is replaced, so
    'pipe:aws s3 cp s3://b/train-000000.tar -' gives 'pipe:aws s3 cp s3://b/train-000000.idx.json -'."""
    def replace(path: str) -> str:
        if name is None:
            return path[:-len(".tar")] + INDEX_SUFFIX
        return path[:path.rfind("/") + 1] + name

    if url.startswith(PIPE):
        m = _TAR_TOKEN.search(url, len(PIPE))
        if m is None:
            raise ShardError(f"cannot find the .tar name in {url!r} to locate its index and classes.json")
        return url[:m.start()] + replace(m.group(0)) + url[m.end():]
    if not url.endswith(".tar"):
        raise ShardError(f"shard names end in .tar, got {url!r}")
    if name is None:
        return replace(url)
    return os.path.join(os.path.dirname(url), name)


# --- opening a URL --------------------------------------------------------------------------------------

class PipeStream(io.RawIOBase):
    """The stdout of a `pipe:` command as a readable stream; close() checks its exit status (PipeCommandError
    naming the command and the end of its stderr) unless the reader stopped early on purpose (abort())."""

    def __init__(self, command: str):
        super().__init__()
        self.command = command
        self._proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL)
        self._stderr = bytearray()
        # drained on a thread so a chatty command cannot block on a full stderr pipe
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()
        self._aborted = False

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self._proc.stderr.read(4096), b""):
            self._stderr += chunk
            del self._stderr[:-4096]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._proc.stdout.readinto(buffer)

    def abort(self) -> None:
        """Stop the command: the reader does not need the rest of its output."""
        self._aborted = True
        if self._proc.poll() is None:
            self._proc.kill()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._proc.stdout.close()
        status = self._proc.wait()
        self._err_thread.join(timeout=5)
        if status != 0 and not self._aborted:
            tail = bytes(self._stderr).decode(errors="replace").strip().splitlines()
            detail = f": {tail[-1]}" if tail else ""
            raise PipeCommandError(f"pipe command exited with status {status}: {self.command}{detail}")


def open_url(url: str, what: str = "shard"):
    """A buffered binary stream over a local file or the output of a `pipe:` command."""
    if url.startswith(PIPE):
        return io.BufferedReader(PipeStream(url[len(PIPE):].strip()), _READ_BUFFER)
    try:
        return open(url, "rb", buffering=_READ_BUFFER)
    except FileNotFoundError:
        raise ShardNotFoundError(f"{what} not found: {url}") from None
    except OSError as e:
        raise ShardError(f"cannot open {what} {url}: {e.strerror or e}") from None


def read_url(url: str, what: str) -> bytes:
    stream = open_url(url, what)
    try:
        return stream.read()
    finally:
        stream.close()


# --- the tar stream ---------------------------------------------------------------------------------------

class TruncatedShard(ShardError):
    """The tar ends inside a member (or a header is damaged): what came before is usable. member: the name
    of the member being read when its data was cut (None when a header was)."""

    def __init__(self, message: str, member: str | None = None):
        super().__init__(message)
        self.member = member


@dataclass
class TarMember:
    name: str
    header_offset: int      # offset of its first header block (a pax / GNU long-name header if any)
    offset: int             # offset of its data
    size: int
    data: bytes | None      # None when only the layout was asked for


# A member size no file reaches: a header claiming more is damaged (and the offsets after it would not fit the
# 64-bit seek of the OS).
_MAX_MEMBER_SIZE = 2**62
_OCTAL = re.compile(rb"[0-7]+")


def _octal(field: bytes) -> int | None:
    """A numeric header field: octal digits (NUL / space padded) or GNU base-256; None if it is neither, or
    negative (base-256 with the sign bit)."""
    if field and field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return None if field[0] & 0x40 else int.from_bytes(bytes([field[0] & 0x3F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    return int(text, 8) if _OCTAL.fullmatch(text) else None


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156])
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def iter_tar(stream, *, read_data: bool = True, start: int = 0, seekable: bool = False):
    """Yield the regular-file members of a tar stream, in order. `start`: the offset the stream is at (a
    header boundary). Without read_data the data is skipped (seeked over when seekable). A stream that ends
    inside a member, or a header whose checksum is wrong, raises TruncatedShard after the members before it."""
    offset = start
    long_name: str | None = None
    header_offset: int | None = None

    def read_exact(n: int) -> bytes:
        # In bounded reads, so that a header claiming a huge size costs memory only for the bytes really there.
        chunks = []
        while n > 0:
            data = stream.read(min(n, _READ_BUFFER))
            if not data:
                break
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    while True:
        header = read_exact(TAR_BLOCK)
        if not header:
            return  # a tar without its end-of-archive blocks: accepted (no member is cut)
        if len(header) < TAR_BLOCK:
            raise TruncatedShard(f"tar ends inside a header at offset {offset}")
        if header == bytes(TAR_BLOCK):
            return  # end-of-archive marker
        if not _checksum_ok(header):
            raise TruncatedShard(f"damaged tar header at offset {offset}")
        if header_offset is None:
            header_offset = offset
        size = _octal(header[124:136])
        if size is None or size >= _MAX_MEMBER_SIZE:
            raise TruncatedShard(f"damaged tar header at offset {offset}: size field {header[124:136]!r}")
        kind = header[156:157]
        padded = -(-size // TAR_BLOCK) * TAR_BLOCK
        data_offset = offset + TAR_BLOCK
        wanted = read_data or kind in (b"x", b"L")
        if wanted:
            data = read_exact(size)
            if len(data) < size:
                raise TruncatedShard(f"tar ends inside member data at offset {data_offset}",
                                     long_name or _header_name(header))
            skip = padded - size
        else:
            data, skip = None, padded
        if skip:
            if seekable:
                stream.seek(skip, io.SEEK_CUR)
            elif len(read_exact(skip)) < skip and kind in (b"0", b"\0", b"7"):
                raise TruncatedShard(f"tar ends inside member data at offset {data_offset}",
                                     long_name or _header_name(header))
        offset = data_offset + padded
        if kind == b"x":  # pax extended header: "LEN path=VALUE\n" records
            long_name = _pax_path(data, offset - padded - TAR_BLOCK) or long_name
            continue
        if kind == b"L":  # GNU long name
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if kind not in (b"0", b"\0", b"7"):  # directories, links, global headers...: not samples
            long_name, header_offset = None, None
            continue
        yield TarMember(long_name or _header_name(header), header_offset, data_offset, size, data)
        long_name, header_offset = None, None


def _header_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    return prefix.decode("utf-8", "surrogateescape") + "/" + name if prefix else name


_PAX_LENGTH = re.compile(rb"[0-9]{1,20}")


def _pax_path(data: bytes, header_offset: int) -> str | None:
    """The path of a pax extended header's "LEN KEY=VALUE\n" records (LEN counts the whole record), if any. A
    record that does not parse is a damaged header (TruncatedShard), not a loop or a ValueError."""
    pos = 0
    while pos < len(data) and data[pos] != 0:  # NUL padding after the last record
        space = data.find(b" ", pos, pos + 21)
        end = pos + int(data[pos:space]) if space > pos and _PAX_LENGTH.fullmatch(data[pos:space]) else -1
        # a record holds its length, a space and a newline at least: each step moves on (end > space > pos)
        if end <= space + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise TruncatedShard(f"damaged pax header at offset {header_offset}: bad record at byte {pos}")
        key, _, value = data[space + 1:end - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        pos = end
    return None


def split_key(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first dot of the file name, the rest the extension."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:].lower()


def _has_key(name: str) -> bool:
    """Whether WebDataset gives a member a key: its file name has a dot after at least one character of the
    path (`README`, `.hidden` at the top are ignored by its reader, so here too)."""
    base = name[name.rfind("/") + 1:]
    return "." in base and bool(split_key(name)[0])


def iter_samples(members):
    """Group consecutive members with the same key: yields (key, start offset, {ext: TarMember}); members
    without a key (no dot in the file name) are passed over, as WebDataset does. When the tar is cut, the
    sample before the cut is still yielded unless the cut member belongs to it."""
    key, start, group = None, 0, {}
    try:
        for m in members:
            if not _has_key(m.name):
                continue
            k, ext = split_key(m.name)
            if k != key:
                if key is not None:
                    yield key, start, group
                key, start, group = k, m.header_offset, {}
            group[ext] = m
    except TruncatedShard as e:
        if key is not None and (e.member is None or split_key(e.member)[0] != key):
            yield key, start, group
        raise
    if key is not None:
        yield key, start, group


# --- the index and classes.json ---------------------------------------------------------------------------

def _position(value) -> int:
    """An offset or size of an index: a whole number a tar can hold (a negative or huge one would reach the seek
    of the OS as an OSError or OverflowError)."""
    if isinstance(value, bool) or int(value) != value or not 0 <= int(value) < _MAX_MEMBER_SIZE:
        raise ValueError(f"offset or size {value!r} is not a position in a tar")
    return int(value)


@dataclass
class ShardIndex:
    """Where each sample of one shard lies: keys[i], starts[i] (offset of its first header) and members[i]
    ({ext: (data offset, size)}); tar_bytes: the shard's size when the index was written."""
    keys: list
    starts: list
    members: list
    tar_bytes: int | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def to_json(self) -> bytes:
        samples = [[k, s, [[e, o, n] for e, (o, n) in m.items()]]
                   for k, s, m in zip(self.keys, self.starts, self.members)]
        return json.dumps({"format": INDEX_FORMAT, "tar_bytes": self.tar_bytes, "samples": samples},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "ShardIndex":
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
                found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
                raise ValueError(f"format {found!r}, expected {INDEX_FORMAT!r}")
            keys, starts, members = [], [], []
            for key, start, parts in doc["samples"]:
                keys.append(str(key))
                starts.append(_position(start))
                members.append({str(e): (_position(o), _position(n)) for e, o, n in parts})
            tar_bytes = doc.get("tar_bytes")
            return cls(keys, starts, members, None if tar_bytes is None else _position(tar_bytes))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as e:  # int(inf); JSON too deep
            raise ShardError(f"{where} is not a jpegnet shard index ({type(e).__name__}: {e})") from None

    @classmethod
    def scan(cls, path: str) -> "ShardIndex":
        """The index of a local tar from its headers alone (data seeked over): for shards written by other
        tools. A damaged tail ends the index at the last whole sample."""
        keys, starts, members = [], [], []
        with open(path, "rb") as f:
            try:
                for key, start, group in iter_samples(iter_tar(f, read_data=False, seekable=True)):
                    keys.append(key)
                    starts.append(start)
                    members.append({e: (m.offset, m.size) for e, m in group.items()})
            except TruncatedShard as e:
                cut = e
            else:
                cut = None
        size = os.path.getsize(path)
        # data is seeked over, so a member cut by the end of the file shows only here
        while members and max(o + n for o, n in members[-1].values()) > size:
            keys.pop(), starts.pop(), members.pop()
            cut = cut or TruncatedShard("the tar ends inside member data")
        if cut is not None:  # without an index, what follows the cut is unknown: it cannot be listed
            logger.warning("%s has no index and is cut after %d samples (%s): the rest is left out", path,
                           len(keys), cut)
        return cls(keys, starts, members, size)


def load_index(url: str) -> ShardIndex:
    """A shard's index from NAME.idx.json beside it; a local shard without one is scanned. A missing shard
    is a ShardNotFoundError."""
    index_url = sidecar_url(url)
    if not url.startswith(PIPE):
        if not os.path.isfile(url):
            raise ShardNotFoundError(f"shard not found: {url}")
        if not os.path.isfile(index_url):
            return ShardIndex.scan(url)
        index = ShardIndex.from_json(read_url(index_url, "shard index"), index_url)
        if index.tar_bytes is not None and os.path.getsize(url) > index.tar_bytes:
            raise ShardError(f"{index_url} was written for a smaller {os.path.basename(url)} "
                             f"({index.tar_bytes} bytes, now {os.path.getsize(url)}): rewrite the shards")
        return index
    try:
        return ShardIndex.from_json(read_url(index_url, "shard index"), index_url)
    except PipeCommandError as e:
        raise ShardError(f"the index of a pipe: shard is read through the same command with NAME.idx.json "
                         f"for NAME.tar, and that failed ({e}); write shards with `jpegnet shards`") from None


def load_classes(url: str) -> list[str]:
    """The class names in classes.json beside the shard `url`."""
    where = sidecar_url(url, CLASSES_FILE)
    data = read_url(where, CLASSES_FILE)
    try:
        classes = json.loads(data)["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise TypeError("'classes' must be a list of names")
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise ShardError(f"{where} is not a classes.json of jpegnet shards ({type(e).__name__}: {e})") from None
    return classes


__all__ = ["CLASSES_FILE", "INDEX_SUFFIX", "PipeCommandError", "ShardError", "ShardIndex", "ShardNotFoundError",
           "TruncatedShard", "expand_braces", "expand_urls", "is_shard_spec", "iter_samples", "iter_tar",
           "load_classes", "load_index", "open_url", "sidecar_url", "split_key"]
