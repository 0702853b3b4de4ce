"""SingleImage (jpegnet.data.single): one upload's inputs, exactly build_batch's, without its batch machinery."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from jpegnet.data import JpegFolder, build_batch
from jpegnet.data.single import SingleImage
from jpegnet.input_config import InputConfig
from jpegnet.serve.preprocess import UploadError, decode_upload, stack_inputs

from .test_exif_orientation import tagged_files

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jpeg-corpus"
# every file of the corpus, the damaged ones of bad/ included: baseline, progressive, arithmetic, restart
# markers, 4:4:4 / 4:2:0 / 4:2:2 / greyscale / CMYK / Adobe RGB, truncated, not JPEG at all
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
STATS = tuple(np.linspace(-2.0, 2.0, 192)), tuple(np.linspace(1.0, 9.0, 192))
CONFIGS = {
    "dct-bicubic": InputConfig("dct", (224, 224), crop_pct=0.875, interpolation="bicubic"),
    "dct-stats": InputConfig("dct", (160, 128), crop_pct=1.0, dct_mean=STATS[0], dct_std=STATS[1]),
    "rgb": InputConfig("rgb", (96, 128), crop_pct=0.9, interpolation="bicubic"),
}


def batch_path(body: bytes, config: InputConfig, **options):
    """What build_batch makes of one file: (inputs, None) or (None, reason)."""
    ds = JpegFolder.for_model([body], config, train=False, **options)
    batch, bad = build_batch(ds, [0], seed=0, epoch=0, num_threads=1)
    return (None, bad[0][1]) if bad else (batch[0], None)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_same_tensors_and_failures_as_build_batch_on_every_corpus_file(name):
    config = CONFIGS[name]
    options = dict(max_pixels=50_000_000, rgb_decode="fast")
    single = SingleImage(JpegFolder.for_model([], config, train=False, **options))
    failed = 0
    assert len(FILES) > 100
    for path in FILES:
        body = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a corrupt-data warning is asserted elsewhere, not here
            expected, reason = batch_path(body, config, **options)
            got, failure = single(body)
        if reason is not None:
            failed += 1
            assert got is None and failure[0] == reason, path.name
            continue
        assert failure is None, (path.name, failure)
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            assert a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b), path.name
    assert failed >= 5  # the bad/ files (and CMYK on the DCT path) fail the same way on both paths


def test_exif_orientations_take_the_batch_path_and_come_out_upright(tmp_path):
    config = CONFIGS["dct-bicubic"]
    single = SingleImage(JpegFolder.for_model([], config, train=False))
    for orientation, path in tagged_files(tmp_path, 200, 136).items():
        body = path.read_bytes()
        expected, _ = batch_path(body, config)
        got, failure = single(body)
        assert failure is None and all(torch.equal(a, b) for a, b in zip(expected, got)), orientation
    # the upright size decides the window: a 90-degree tag and its untagged twin differ
    assert not torch.equal(single(tagged_files(tmp_path, 200, 136)[6].read_bytes())[0][0],
                           single(tagged_files(tmp_path, 200, 136)[1].read_bytes())[0][0])


def test_windows_are_cached_per_image_size_and_read_only():
    single = SingleImage(JpegFolder.for_model([], CONFIGS["dct-bicubic"], train=False))
    for path in FILES[:40]:
        single(path.read_bytes())
    info = single._geometry.cache_info()
    assert info.hits + info.misses >= 30 and info.hits > 0  # the corpus repeats sizes (500x375...)
    window, area = single._geometry(500, 375, (8, 8))
    assert not window.flags.writeable and len(area) == 4
    with pytest.raises(ValueError):
        window[0, 0] = 1.0


def test_training_datasets_are_refused():
    with pytest.raises(ValueError, match="train=False"):
        SingleImage(JpegFolder.for_model([], CONFIGS["dct-bicubic"], train=True))


def test_decode_upload_classifies_failures_as_before():
    config = CONFIGS["dct-bicubic"]
    body = (CORPUS / "bad" / "truncated_half.jpg").read_bytes()
    with pytest.raises(UploadError) as caught:
        decode_upload(body, config, max_pixels=None)
    assert caught.value.kind in ("truncated", "corrupt") and caught.value.status == 400
    cmyk = [p for p in FILES if "cmyk" in p.name.lower()]
    assert cmyk
    with pytest.raises(UploadError) as caught:
        decode_upload(cmyk[0].read_bytes(), config, max_pixels=None)
    assert caught.value.kind == "unsupported" and caught.value.status == 415


def test_stack_inputs_makes_one_contiguous_batch_from_channels_last_items():
    items = []
    for path in [p for p in FILES if p.suffix == ".JPEG"][:6]:
        inputs, _ = decode_upload(path.read_bytes(), CONFIGS["dct-stats"], max_pixels=None)
        assert inputs[0].is_contiguous(memory_format=torch.channels_last)
        items.append(inputs)
    stacked = stack_inputs(items)
    for j, x in enumerate(stacked):
        assert x.is_contiguous() and torch.equal(x, torch.cat([it[j] for it in items]))
