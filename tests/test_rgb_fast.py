"""The RGB twin's `fast` decode (scaled IDCT + one resample of the window) against its `plain` one (torchvision on a
full-size Pillow decode): the same windows, the same tensors within a stated PSNR, the same failures.

PSNR is over [0, 1] pixel values (the normalization undone). Measured over the whole corpus (2026-12-05), by
the reduction the window allows: none: 54-80 dB (only float rounding of the window's start differs); 1/2 and 1/4
at 224 / crop 0.875: 33-48 dB (the IDCT's box filter against Pillow's triangle); at 128 / crop 1.0, where 1/2
reaches ~500x375 originals: 34-45 dB but for one file, n03873416_paddle (27.9 dB: a fine texture the two filters
alias differently); 2592-pixel photos (benchmarks/rgb_decode.py): 47-52 dB. The bound: 30 dB, 27 dB for the paddle.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from jpegnet.data import JpegFolder
from jpegnet.data.augment import center_crop_windows
from jpegnet.data.rgb import dct_scale, load_rgb
from jpegnet.input_config import IMAGENET_MEAN, IMAGENET_STD

from .conftest import BAD, CORPUS, corpus_manifest, requires_shared

PSNR_DB = 30.0
WORST_FILE, WORST_PSNR_DB = "n03873416_paddle.JPEG", 27.0
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((((a - b) * STD) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def both(files, *, train: bool, size: int = 224, crop_pct: float = 0.875, seed: int = 0):
    """[(plain output, fast output)] per file: tensors, or the exception each path returned."""
    pairs = []
    for mode in ("plain", "fast"):
        ds = JpegFolder.from_files(files, "rgb", train=train, input_size=size, crop_pct=crop_pct, rgb_decode=mode)
        pairs.append([load_rgb((ds, i, ds.samples[i][0], seed, 3, IMAGENET_MEAN, IMAGENET_STD))
                      for i in range(len(files))])
    return list(zip(*pairs))


def scale_of(path, size: int, crop_pct: float) -> int:
    w, h = Image.open(path).size
    _, _, win_w, win_h = center_crop_windows([w], [h], (size, size), crop_pct)[0]
    return dct_scale(win_w, win_h, size, size)


def originals(sampling: str, count: int):
    rows = [r for r in corpus_manifest() if r["note"] == "original file" and r["sampling"] == sampling]
    return [str(CORPUS / r["file"]) for r in rows[:count]]


def test_dct_scale_never_goes_below_the_output():
    assert dct_scale(224, 224, 224, 224) == 1
    assert dct_scale(447, 600, 224, 224) == 1   # 447 / 2 < 224
    assert dct_scale(448, 600, 224, 224) == 2
    assert dct_scale(1792, 1792, 224, 224) == 8
    assert dct_scale(5000, 900, 224, 224) == 4  # the shorter side decides


@requires_shared
@pytest.mark.parametrize("train", [False, True])
def test_fast_matches_plain_on_real_photos(train):
    files = (originals("4:4:4", 3) + originals("4:2:0", 3) + originals("4:2:2", 2) + originals("4:4:0", 1)
             + originals("gray", 2) + [str(CORPUS / "n02104029_kuvasz_cmyk.jpg"),  # CMYK: converted as Pillow does
                                       str(CORPUS / "n02123394_Persian_cat_x4.jpg"),  # 1704x2000: 1/4 IDCT
                                       str(CORPUS / "n03843555_oil_filter.JPEG"),  # 1836x1377 4:4:4
                                       str(CORPUS / "n03594945_jeep.JPEG"),  # 1280x960: 1/2 IDCT
                                       str(CORPUS / "n01740131_night_snake_progressive.jpg")])
    assert scale_of(CORPUS / "n02123394_Persian_cat_x4.jpg", 224, 0.875) == 4  # the test covers scaled decodes
    assert scale_of(CORPUS / "n03594945_jeep.JPEG", 224, 0.875) == 2
    for f, (plain, fast) in zip(files, both(files, train=train)):
        assert isinstance(plain, torch.Tensor) and isinstance(fast, torch.Tensor), f
        assert fast.shape == plain.shape == (3, 224, 224) and fast.dtype == torch.float32
        assert psnr(fast, plain) >= PSNR_DB, (f, psnr(fast, plain))


@requires_shared
def test_fast_matches_plain_where_half_scale_applies_to_originals():
    """At 128 px with crop_pct 1.0 a ~500x375 original's window spans 375 >= 2 x 128 pixels: 1/2 IDCT."""
    files = originals("4:2:0", 4) + originals("4:4:4", 4) + [str(CORPUS / WORST_FILE)]
    scales = [scale_of(f, 128, 1.0) for f in files]
    assert max(scales) >= 2 and scales[-1] == 2
    for f, (plain, fast) in zip(files, both(files, train=False, size=128, crop_pct=1.0)):
        bound = WORST_PSNR_DB if f.endswith(WORST_FILE) else PSNR_DB
        assert psnr(fast, plain) >= bound, (f, psnr(fast, plain))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_turns_images_upright_as_plain_does(tmp_path, orientation):
    """EXIF orientations on a photo whose sides are not multiples of the 1/8 reduction (so a reversed axis
    starts mid-pixel), with a gradient and a bright corner that a wrong turn or shift would move (measured:
    53.8 dB for every orientation, evaluation window; 50-54 dB for a training window)."""
    yy, xx = np.mgrid[0:1003, 0:1365]
    pixels = np.stack([xx * 255 // 1365, yy * 255 // 1003, (xx + yy) * 255 // 2368], -1).astype(np.uint8)
    pixels[:200, :150] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(pixels).save(path, quality=92, subsampling=2, exif=exif.tobytes())
    assert scale_of(path, 112, 1.0) == 8
    for train in (False, True):
        (plain, fast), = both([str(path)], train=train, size=112, crop_pct=1.0, seed=5)
        assert psnr(fast, plain) >= 45.0, (train, psnr(fast, plain))


@requires_shared
def test_fast_fails_where_plain_fails():
    files = sorted(str(p) for p in BAD.iterdir() if p.is_file())
    for f, (plain, fast) in zip(files, both(files, train=False)):
        assert isinstance(fast, Exception) == isinstance(plain, Exception), f
        if isinstance(plain, Exception):
            assert type(fast) is type(plain), (f, plain, fast)


def test_fast_from_bytes_and_max_pixels():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    ds = JpegFolder.from_files([buf.getvalue()], "rgb", input_size=64, rgb_decode="fast", max_pixels=1000)
    assert isinstance(load_rgb((ds, 0, ds.samples[0][0], 0, 0, IMAGENET_MEAN, IMAGENET_STD)), ValueError)


def test_rgb_decode_is_checked():
    with pytest.raises(ValueError, match="rgb_decode"):
        JpegFolder.from_files([b""], "rgb", rgb_decode="turbo")


@requires_shared
def test_server_preprocessing_uses_the_chosen_decode():
    from jpegnet import create_model
    from jpegnet.engine.errors import ConfigError
    from jpegnet.serve.preprocess import decode_upload
    from jpegnet.serve.server import ServeConfig

    assert ServeConfig().rgb_decode == "fast"  # the strongest RGB baseline is what the server runs
    with pytest.raises(ConfigError, match="rgb_decode"):
        ServeConfig(rgb_decode="turbo")
    cfg = create_model("vgnetg_1_0mp", num_classes=3).input_config
    body = (CORPUS / "n02123394_Persian_cat_x4.jpg").read_bytes()
    (plain,), _ = decode_upload(body, cfg, max_pixels=None, rgb_decode="plain")
    (fast,), _ = decode_upload(body, cfg, max_pixels=None, rgb_decode="fast")
    assert fast.shape == plain.shape and 30.0 <= psnr(fast[0], plain[0]) < math.inf


def test_commands_take_rgb_decode():
    from jpegnet.cli import build_parser

    parser = build_parser()
    for command in (["serve", "--onnx", "m.onnx"], ["predict", "a.jpg", "--checkpoint", "c.pt"],
                    ["eval", "--data", "d", "--checkpoint", "c.pt"], ["bench"]):
        assert parser.parse_args(command).rgb_decode == "fast"
        assert parser.parse_args(command + ["--rgb-decode", "plain"]).rgb_decode == "plain"
