"""The tar-shard reader on damaged tars (what the fuzz target in tests/fuzz_tar.py found, as readable cases):
numeric header fields that are not numbers, sizes no file reaches, broken pax records, an index that is not a
JSON object. Each ends the read with a TruncatedShard after the members before it; none raises anything else,
loops, or asks the stream for more than a bounded read at once."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from jpegnet.data.shard_format import (TAR_BLOCK, ShardError, ShardIndex, TruncatedShard, _READ_BUFFER,
                                       iter_tar)

from .fuzz_tar import _member, _set_field, _tar


def _names(data: bytes, **options):
    """(names of the members read, the error that ended the read or None)."""
    names = []
    try:
        for m in iter_tar(io.BytesIO(data), **options):
            names.append(m.name)
    except ShardError as e:
        return names, e
    return names, None


TWO_SAMPLES = [("s0.jpg", b"\xff\xd8jpeg0"), ("s0.cls", b"1"), ("s1.jpg", b"\xff\xd8jpeg1"), ("s1.cls", b"0")]


@pytest.mark.parametrize("field", [b"-1", b"9x9", b"0o17", b"\xff" * 12, b"1_0"])
def test_a_size_field_that_is_no_size_is_a_damaged_header(field):
    data = _tar(TWO_SAMPLES)
    third = 4 * TAR_BLOCK  # the header of s1.jpg: each member is a header and one data block
    for read_data, seekable in ((True, False), (False, True)):
        names, error = _names(_set_field(data, third, 124, field), read_data=read_data, seekable=seekable)
        assert names == ["s0.jpg", "s0.cls"]
        assert isinstance(error, TruncatedShard) and f"damaged tar header at offset {third}" in str(error)


def test_a_checksum_that_is_not_octal_is_a_damaged_header():
    names, error = _names(_set_field(_tar(TWO_SAMPLES), 0, 148, b"zz", fix_checksum=False))
    assert names == [] and isinstance(error, TruncatedShard) and "damaged tar header at offset 0" in str(error)


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.largest = 0

    def read(self, n=-1):
        self.largest = max(self.largest, n)
        return super().read(n)


@pytest.mark.parametrize("field", [b"77777777777", b"\x80" + (2**40).to_bytes(11, "big")])
def test_a_huge_size_costs_only_the_bytes_there(field):
    """A header claiming 8 GiB or 1 TiB on a short stream (a pipe: shard): bounded reads, then the cut is named."""
    stream = _CountingStream(_set_field(_tar(TWO_SAMPLES), 0, 124, field))
    with pytest.raises(TruncatedShard) as info:
        list(iter_tar(stream))
    assert info.value.member == "s0.jpg"
    assert stream.largest <= _READ_BUFFER


def test_a_size_beyond_any_file_is_a_damaged_header():
    """2^62 bytes and more: the offsets after it would not fit a 64-bit seek."""
    data = _set_field(_tar(TWO_SAMPLES), 0, 124, b"\x80" + (2**62).to_bytes(11, "big"))
    names, error = _names(data, read_data=False, seekable=True)
    assert names == [] and "damaged tar header at offset 0" in str(error)


@pytest.mark.parametrize("record", [b"0 mtime=1\n11 path=sx\n", b"x path=y\n", b"999 path=z\n", b"-5 path=w\n",
                                    b"12path=v\n", b"21 hdrcharset=BINARY\n134\"path=q\n", b"8 path=xy\n"])
def test_a_broken_pax_record_is_a_damaged_header(record):
    names, error = _names(_member("././@PaxHeader", record, tarfile.XHDTYPE) + _tar(TWO_SAMPLES))
    assert names == []
    assert isinstance(error, TruncatedShard) and "damaged pax header at offset 0" in str(error)


def test_a_well_formed_pax_path_still_names_the_member():
    names, error = _names(_member("././@PaxHeader", b"11 path=sx\n", tarfile.XHDTYPE) + _tar(TWO_SAMPLES))
    assert names == ["sx", "s0.cls", "s1.jpg", "s1.cls"] and error is None


@pytest.mark.parametrize("text", [b"[]", b"[" * 100000 + b"]" * 100000, b'"format"', b"null"])
def test_an_index_that_is_not_a_json_object_is_a_shard_error(text):
    with pytest.raises(ShardError, match="is not a jpegnet shard index"):
        ShardIndex.from_json(text, "x.idx.json")


@pytest.mark.parametrize("start", [-5, 2**70, 1.5, "12", True, float("inf")])
def test_an_index_start_that_is_no_position_is_a_shard_error(start):
    doc = {"format": "jpegnet-shard-index/1", "tar_bytes": 2048, "samples": [["s0", start, [["jpg", 512, 5]]]]}
    text = json.dumps(doc).encode()
    with pytest.raises(ShardError, match="is not a jpegnet shard index"):
        ShardIndex.from_json(text, "x.idx.json")


def test_an_index_tar_size_that_is_no_number_is_a_shard_error():
    doc = {"format": "jpegnet-shard-index/1", "tar_bytes": "big", "samples": []}
    with pytest.raises(ShardError, match="is not a jpegnet shard index"):
        ShardIndex.from_json(json.dumps(doc).encode(), "x.idx.json")
