"""The tar-shard reader's fuzz target (`make fuzz-cov` runs it after the C extensions' target, see fuzz_cov.py).

One input is the bytes of a shard, handed to every reader of jpegnet.data.shard_format / shards:
  * `iter_tar` reading member data from a stream (as a `pipe:` shard is read), and reading the layout only,
    seeking over data (as a local shard without an index is scanned); `iter_samples` grouping the members;
  * the input as a local shard on disk: `JpegShards` scanning it (no index beside it) and `read_samples`
    reading all of its samples, then every other one from a seek;
  * the input as an index (`ShardIndex.from_json`), then as the index beside a well-formed shard, read through
    `JpegShards`; and as a `classes.json` (`load_classes`).

What must hold whatever the bytes: a member lies inside the tar (header and data blocks 512-aligned, data
after its header, offsets increasing, the data read is exactly the bytes at its offset); the layout-only scan
agrees with the full read on every member the full read returned; a shard read back gives one result (a
sample or a skipped sample) per index entry. The only exceptions allowed out are ShardError (TruncatedShard
included). A hang, a crash, any other exception or a failed check is a finding: it goes to
tests/fuzz_regressions/tar/ and tests/test_fuzz_regressions.py replays it through `one_tar_input`.

Seeds (`write_tar_seeds`): small tars made here covering what the reader must survive: ordinary samples,
GNU and PAX long names, ustar prefixes, PAX and global headers, non-UTF-8 names, links, devices, FIFOs and
directories among samples, members cut short, sizes far beyond the file (octal and GNU base-256), negative
and non-octal size fields, a damaged checksum, no end-of-archive blocks; an index (also with a start that is
negative, huge, off a header, past the end, and a tar_bytes that is text or infinite) and a classes.json.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from jpegnet.data import shard_format
from jpegnet.data import shards as _shards
from jpegnet.data.shard_format import TAR_BLOCK, ShardError, ShardIndex, TruncatedShard

CLASSES = ["a", "b", "c"]
_workdir: Path | None = None


def _scratch() -> Path:
    """A per-process folder (in memory where /dev/shm exists) that holds the input as a shard file."""
    global _workdir
    if _workdir is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _workdir = Path(tempfile.mkdtemp(prefix="jpegnet-fuzz-tar-", dir=base))
    return _workdir


def _members(data: bytes, **options):
    """(members, the ShardError that ended the read or None)."""
    out = []
    try:
        for m in shard_format.iter_tar(io.BytesIO(data), **options):
            out.append(m)
    except ShardError as e:
        return out, e
    return out, None


def _check_member(m, data: bytes, read_data: bool) -> None:
    assert m.header_offset % TAR_BLOCK == 0 and m.offset % TAR_BLOCK == 0, m
    assert 0 <= m.header_offset < m.offset, m
    assert m.size >= 0, m
    if read_data:
        assert m.offset + m.size <= len(data), (m.offset, m.size, len(data))
        assert m.data == data[m.offset:m.offset + m.size], m.name
    else:
        assert m.data is None


def _check_stream(data: bytes) -> None:
    full, full_error = _members(data, read_data=True)
    layout, layout_error = _members(data, read_data=False, seekable=True)
    for members, read_data in ((full, True), (layout, False)):
        for m in members:
            _check_member(m, data, read_data)
        for a, b in zip(members, members[1:]):
            assert b.header_offset >= a.offset + a.size, (a, b)
    # Seeking over data can only see more members than reading it (a cut member's data is not read).
    shape = [(m.name, m.header_offset, m.offset, m.size) for m in full]
    assert shape == [(m.name, m.header_offset, m.offset, m.size) for m in layout[:len(full)]], (shape, layout)
    if full_error is None:
        assert len(layout) == len(full) and layout_error is None, (full, layout, layout_error)
    # Grouping: every member is in the group of its key, in order, and the groups stop where the read did.
    grouped, group_error = [], None
    try:
        for key, start, group in shard_format.iter_samples(iter(full_and_raise(full, full_error))):
            assert all(shard_format.split_key(m.name)[0] == key for m in group.values()), key
            # a duplicate member (two KEY.jpg) replaces the first in the group; the sample starts at the first
            assert start <= min(m.header_offset for m in group.values()), key
            grouped.append(key)
    except TruncatedShard as e:
        group_error = e
    except ShardError:
        return
    assert (group_error is None) == (not isinstance(full_error, TruncatedShard)), (group_error, full_error)


def full_and_raise(members, error):
    yield from members
    if error is not None:
        raise error


def _check_shard_file(data: bytes) -> None:
    folder = _scratch()
    path = folder / "shard.tar"
    path.write_bytes(data)
    (folder / "shard.idx.json").unlink(missing_ok=True)
    try:
        ds = _shards.JpegShards(str(path), train=False, classes=CLASSES)
    except ShardError:
        return
    index = ds.indexes[0]
    assert len(index) == len(ds) > 0
    for wanted in (range(len(index)), range(1, len(index), 2)):
        results = list(ds.read_samples(0, wanted))
        assert [sid for sid, _ in results] == list(wanted), (list(wanted), [sid for sid, _ in results])
        for sid, item in results:
            if isinstance(item, _shards.ShardSample):
                assert 0 <= item.label < len(CLASSES)
                assert isinstance(item.data, bytes)
            else:
                assert isinstance(item, _shards.BadSample) and isinstance(item.error, ShardError), item


_indexed_tar: bytes | None = None


def _check_side_files(data: bytes) -> None:
    try:
        index = ShardIndex.from_json(data, "fuzz.idx.json")
    except ShardError:
        pass
    else:
        assert len(index.keys) == len(index.starts) == len(index.members)
        _check_index_over_a_good_tar(data)
    folder = _scratch()
    (folder / shard_format.CLASSES_FILE).write_bytes(data)
    try:
        classes = shard_format.load_classes(str(folder / "shard.tar"))
    except ShardError:
        return
    assert all(isinstance(c, str) for c in classes)


def _check_index_over_a_good_tar(index_json: bytes) -> None:
    """The input as the NAME.idx.json of a well-formed shard: whatever it says, reading gives one result per
    entry or a ShardError (an index that does not match its tar)."""
    global _indexed_tar
    if _indexed_tar is None:
        _indexed_tar = tar_seeds()["plain"]
    folder = _scratch() / "indexed"
    folder.mkdir(exist_ok=True)
    (folder / "shard.tar").write_bytes(_indexed_tar)
    (folder / "shard.idx.json").write_bytes(index_json)
    try:
        ds = _shards.JpegShards(str(folder / "shard.tar"), train=False, classes=CLASSES)
    except ShardError:
        return
    for wanted in (range(len(ds)), range(len(ds) - 1, len(ds))):  # all, and the last alone (a seek to its start)
        try:
            results = list(ds.read_samples(0, wanted))
        except ShardError:
            continue
        assert [sid for sid, _ in results] == list(wanted)


def one_tar_input(data: bytes) -> None:
    """One fuzz input as a shard; raises AssertionError (or another exception) on a finding."""
    _check_stream(data)
    _check_shard_file(data)
    _check_side_files(data)


# --- seeds ------------------------------------------------------------------------------------------------

def _tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 60)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def _tar(entries, fmt=tarfile.GNU_FORMAT, end: bool = True, pax_headers=None) -> bytes:
    """entries: (name, bytes) for files, or (name, None, TarInfo type[, linkname]) for other members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers or {},
                      encoding="utf-8", errors="surrogateescape") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if entry[1] is not None:
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
            else:
                info.type = entry[2]
                info.linkname = entry[3] if len(entry) > 3 else ""
                info.devmajor, info.devminor = 1, 3
                tar.addfile(info)
    out = buf.getvalue().rstrip(b"\0")  # tarfile pads to a 10 KiB record: keep blocks, not the record
    out += bytes(-len(out) % TAR_BLOCK)
    return out + bytes(2 * TAR_BLOCK) if end else out


def _member(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One member written block by block: a ustar header of type `kind`, then `data` padded to blocks."""
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % TAR_BLOCK)


def _set_field(data: bytes, header_at: int, start: int, value: bytes, fix_checksum: bool = True) -> bytes:
    """`data` with a header field replaced (and the header's checksum recomputed unless told not to)."""
    out = bytearray(data)
    field_len = {124: 12, 148: 8, 156: 1, 0: 100}[start]
    out[header_at + start:header_at + start + field_len] = value.ljust(field_len, b"\0")[:field_len]
    if fix_checksum:
        header = out[header_at:header_at + TAR_BLOCK]
        header[148:156] = b" " * 8
        out[header_at + 148:header_at + 156] = b"%06o\0 " % sum(header)
    return bytes(out)


def tar_seeds() -> dict[str, bytes]:
    jpg = _tiny_jpeg()
    sample = [("s0.jpg", jpg), ("s0.cls", b"1"), ("dir.v1/s1.jpeg", jpg), ("dir.v1/s1.cls", b"2\n")]
    plain = _tar(sample)
    seeds = {
        "plain": plain,
        "plain-no-end-blocks": _tar(sample, end=False),
        "empty": bytes(2 * TAR_BLOCK),
        "pax-format": _tar(sample, fmt=tarfile.PAX_FORMAT),
        "pax-global-header": _tar(sample, fmt=tarfile.PAX_FORMAT, pax_headers={"comment": "x" * 40}),
        "gnu-long-name": _tar([("d/" + "n" * 150 + ".jpg", jpg), ("d/" + "n" * 150 + ".cls", b"0")]),
        "pax-long-name": _tar([("d/" + "p" * 150 + ".jpg", jpg), ("d/" + "p" * 150 + ".cls", b"0")],
                              fmt=tarfile.PAX_FORMAT),
        "ustar-prefix": _tar([("u" * 80 + "/" + "v" * 60 + ".jpg", jpg), ("u" * 80 + "/" + "v" * 60 + ".cls", b"0")],
                             fmt=tarfile.USTAR_FORMAT),
        "non-utf8-names": _tar([("k\udcff\udcfe.jpg", jpg), ("k\udcff\udcfe.cls", b"0")]),
        "non-utf8-pax-name": _tar([("q\udce9" * 60 + ".jpg", jpg), ("q\udce9" * 60 + ".cls", b"0")],
                                  fmt=tarfile.PAX_FORMAT),
        "links-devices-fifo-dir": _tar([("dir", None, tarfile.DIRTYPE), ("s0.jpg", jpg),
                                        ("s0.lnk", None, tarfile.SYMTYPE, "s0.jpg"),
                                        ("s0.hard", None, tarfile.LNKTYPE, "s0.jpg"), ("s0.cls", b"0"),
                                        ("s1.jpg", None, tarfile.SYMTYPE, "/etc/passwd"), ("s1.cls", b"0"),
                                        ("s2.jpg", None, tarfile.CHRTYPE), ("s2.cls", None, tarfile.BLKTYPE),
                                        ("s3.jpg", None, tarfile.FIFOTYPE), ("s3.cls", b"1"),
                                        ("s4.jpg", None, tarfile.CONTTYPE), ("s4.cls", b"2")]),
        "bad-labels": _tar([("s0.jpg", jpg), ("s0.cls", b"-1"), ("s1.jpg", jpg), ("s1.cls", b"7"),
                            ("s2.jpg", jpg), ("s2.cls", b"\xff1"), ("s3.cls", b"0"), ("s4.jpg", jpg),
                            ("s5.jpg", jpg), ("s5.cls", b"9" * 50)]),
        "cut-in-data": plain[:TAR_BLOCK + len(jpg) // 2],
        "cut-in-header": plain[:TAR_BLOCK + 700],
        "cut-in-second-sample": plain[:5 * TAR_BLOCK + 100],
    }
    # Sizes in headers: far beyond the file in octal and in GNU base-256, negative, not octal, empty.
    for name, field in (("size-octal-max", b"77777777777"), ("size-base256-huge", b"\x80" + b"\xff" * 11),
                        ("size-base256-2e62", b"\x80" + (2**62).to_bytes(11, "big")),
                        ("size-negative", b"-1"), ("size-not-octal", b"9x9"), ("size-empty", b""),
                        ("size-spaces", b"   12   ")):
        seeds[name] = _set_field(plain, 0, 124, field)
    seeds["checksum-damaged"] = _set_field(plain, 0, 148, b"0000001", fix_checksum=False)
    seeds["checksum-not-octal"] = _set_field(plain, 0, 148, b"zz", fix_checksum=False)
    # PAX headers whose records are broken: a length that is 0, negative, not a number, past the header's end.
    for name, record in (("pax-record-zero-length", b"0 path=x\n"), ("pax-record-not-a-number", b"x path=y\n"),
                         ("pax-record-too-long", b"999 path=z\n"), ("pax-record-negative", b"-5 path=w\n"),
                         ("pax-record-no-space", b"12path=v\n"), ("pax-record-ok", b"11 path=sx\n"),
                         ("pax-record-zero-length-first", b"0 mtime=1\n11 path=sx\n")):
        seeds[name] = _member("././@PaxHeader", record, tarfile.XHDTYPE) + plain
    seeds["gnu-long-name-empty"] = _member("././@LongLink", b"", tarfile.GNUTYPE_LONGNAME) + plain
    # the index of "plain" as the writer makes it, and with a start that is negative, huge, off a header
    index = json.loads(ShardIndex([], [], [], len(plain)).to_json())
    offset = 0
    for key, parts in (("s0", ("jpg", "cls")), ("dir.v1/s1", ("jpeg", "cls"))):
        members = []
        for ext, size in zip(parts, (len(jpg), 1 if key == "s0" else 2)):
            members.append([ext, offset + TAR_BLOCK, size])
            offset += TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK
        index["samples"].append([key, members[0][1] - TAR_BLOCK, members])
    seeds["index-json"] = json.dumps(index).encode()
    for name, start in (("negative", -5), ("huge", 2**70), ("off-header", 7), ("past-end", 10**6)):
        bad = json.loads(seeds["index-json"])
        bad["samples"][1][1] = start
        seeds[f"index-json-start-{name}"] = json.dumps(bad).encode()
    seeds["index-json-tar-bytes-text"] = seeds["index-json"].replace(b'"tar_bytes": %d' % len(plain),
                                                                     b'"tar_bytes": "big"')
    seeds["index-json-infinity"] = seeds["index-json"].replace(b'"tar_bytes": %d' % len(plain),
                                                               b'"tar_bytes": Infinity')
    seeds["index-json-nested"] = b"[" * 200 + b"]" * 200
    seeds["classes-json"] = json.dumps({"classes": CLASSES}).encode()
    return seeds


def write_tar_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = tar_seeds()
    for name, data in seeds.items():
        (folder / f"tar_{name}").write_bytes(data)
    return len(seeds)
