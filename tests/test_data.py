"""jpegnet.data: folders of JPEGs → DCT (and RGB) batches. Checked against pixel-domain references (the
reconstruction of a transformed batch vs the same transform on libjpeg's own decode), for determinism from
(seed, epoch, index), resume, DistributedSampler, DataLoader use, bad files and statistics."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jpegnet import JpegError, read_coefficients, read_header
from jpegnet.codec import decode_pixels
from jpegnet.data import (DEFAULT_DCT_SCALE, JpegFolder, UnsupportedImage, build_dct_batch, center_crop_windows,
                          decode_crops,
                          compute_dct_stats, create_loader, random_resized_crop_windows, uniforms)
from jpegnet.dct import block_idct
from jpegnet.dct.pixels import psnr, ycc_to_rgb
from jpegnet.samples import sample_files

from .conftest import BAD, CORPUS, requires_shared

RAW = dict(mean=torch.zeros(192), std=torch.ones(192))


def rgb_of(y: torch.Tensor, cbcr: torch.Tensor) -> np.ndarray:
    """Pixels (H, W, 3) float of one un-normalized (y, cbcr) sample: IDCT, box-upsampled chroma, JFIF."""
    lum = block_idct(y.permute(1, 2, 0).double()).numpy() + 128
    chroma = [block_idct(cbcr[i * 64:(i + 1) * 64].permute(1, 2, 0).double()).numpy() + 128 for i in range(2)]
    chroma = [np.repeat(np.repeat(c, 2, 0), 2, 1) for c in chroma]
    return ycc_to_rgb(lum, *chroma)


def torch_resized_crop(img: np.ndarray, window, out_hw, flip=False) -> np.ndarray:
    """The reference transform on pixels: crop the window, antialiased bilinear resize (what torchvision's
    resized_crop does on tensors), mirror."""
    x, y, w, h = window
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64)).permute(2, 0, 1)[None]
    t = F.interpolate(t[..., y:y + h, x:x + w], size=out_hw, mode="bilinear", antialias=True)[0]
    if flip:
        t = t.flip(-1)
    return t.permute(1, 2, 0).numpy()


@pytest.fixture
def folder(tmp_path):
    """Three classes of the built-in samples (4:2:0, 400 px), two files each."""
    files = sample_files() if callable(sample_files) else list(sample_files)
    by_class: dict = {}
    for f in sorted(map(str, files)):
        by_class.setdefault(f.split("/")[-2], []).append(f)
    for cls in sorted(by_class)[:3]:
        (tmp_path / cls).mkdir()
        for f in by_class[cls][:2]:
            shutil.copy(f, tmp_path / cls)
    return tmp_path


# ------------------------------------------------------------------------------------------------
# Augmentation parameters

def test_uniforms_are_a_pure_function_of_seed_epoch_index():
    a = uniforms(0, 3, [5, 9, 11], 4)
    assert a.shape == (3, 4) and (a >= 0).all() and (a < 1).all()
    assert np.array_equal(a[1], uniforms(0, 3, [9], 4)[0])          # independent of batch composition
    assert not np.array_equal(a, uniforms(0, 4, [5, 9, 11], 4))      # epoch changes the draws
    assert not np.array_equal(a, uniforms(1, 3, [5, 9, 11], 4))      # seed too
    big = uniforms(7, 0, np.arange(20000), 1)
    assert abs(big.mean() - 0.5) < 0.01


def test_random_resized_crop_windows_follow_torchvision_ranges():
    n = 4000
    widths, heights = np.full(n, 500), np.full(n, 375)
    win, flips = random_resized_crop_windows(0, 0, np.arange(n), widths, heights)
    x, y, w, h = win.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 500).all() and (y + h <= 375).all()
    assert np.array_equal(win, np.round(win))  # whole pixels, as torchvision
    area = w * h / (500 * 375)
    assert area.min() >= 0.08 * 0.95 and area.max() <= 1.0
    aspect = w / h
    assert aspect.min() >= 0.75 * 0.97 and aspect.max() <= 4 / 3 * 1.03
    assert 0.45 < flips.mean() < 0.55
    # the same distribution as torchvision's own sampler (its RNG, as many draws): mean area and aspect
    import torchvision.transforms as T
    torch.manual_seed(0)
    img = torch.empty(1, 375, 500)
    tv = np.array([T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)])
    tv_area = tv[:, 2] * tv[:, 3] / (500 * 375)
    assert abs(area.mean() - tv_area.mean()) < 0.025
    assert abs(np.log(aspect).mean() - np.log(tv[:, 3] / tv[:, 2]).mean()) < 0.025
    # an extreme panorama falls back to the ratio-clamped centre crop
    win, _ = random_resized_crop_windows(0, 0, [0], [4000], [10], scale=(0.9, 1.0))
    assert tuple(win[0]) == (1993.0, 0.0, 13.0, 10.0)  # h = 10, w = round(10 · 4/3), centred


def test_center_crop_window_is_resize_then_centre_crop():
    win = center_crop_windows([500], [375], (224, 224), 0.875)[0]
    # Resize(256): 375 -> 256, 500 -> 341; CenterCrop(224): left round(58.5)=58, top 16
    sx, sy = 500 / 341, 375 / 256
    assert np.allclose(win, [58 * sx, 16 * sy, 224 * sx, 224 * sy])
    with pytest.raises(ValueError, match="crop_pct"):
        center_crop_windows([1], [1], (16, 16), 0)


# ------------------------------------------------------------------------------------------------
# Batches against pixel references

@requires_shared
@pytest.mark.parametrize("name", ["n02123159_tiger_cat.JPEG",                 # 4:4:4
                                  "n01740131_night_snake_progressive.jpg",     # 4:2:0 progressive
                                  "n04501370_turnstile_optimized.jpg",         # 4:2:2
                                  "n04562935_water_tower.JPEG"])
def test_transformed_batch_reconstructs_like_transformed_pixels(name):
    c = read_coefficients(CORPUS / name)
    ref_img = decode_pixels((CORPUS / name).read_bytes()).astype(np.float64)
    if ref_img.shape[2] == 1:
        ref_img = np.repeat(ref_img, 3, axis=2)
    windows = np.array([[0, 0, c.width, c.height], [37, 21, 301, 213], [101, 64, 57, 75]], dtype=np.float64)
    flips = np.array([False, True, False])
    y, cbcr = build_dct_batch([c] * 3, windows, flips, (64, 96), **RAW)
    assert y.shape == (3, 64, 8, 12) and cbcr.shape == (3, 128, 4, 6)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert cbcr.is_contiguous(memory_format=torch.channels_last)
    for i in range(3):
        ref = torch_resized_crop(ref_img, windows[i].astype(int), (64, 96), flips[i])
        assert psnr(np.clip(rgb_of(y[i], cbcr[i]), 0, 255), ref) >= 30, (name, i)


@requires_shared
def test_block_aligned_unscaled_crop_and_flip_are_exact():
    c = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg")  # 4:2:0: MCU 16 px
    crop = (32, 16, 96, 64)
    windows = np.array([crop, crop], dtype=np.float64)
    y, cbcr = build_dct_batch([c, c], windows, [False, True], (64, 96), **RAW)
    ref = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg", crop=crop)
    flipped = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg", crop=crop, hflip=True)
    for out, r in ((0, ref), (1, flipped)):
        assert np.abs(y[out].permute(1, 2, 0).numpy() - r.dequantized(0)).max() < 2e-3
        for comp in range(2):
            got = cbcr[out, comp * 64:(comp + 1) * 64].permute(1, 2, 0).numpy()
            assert np.abs(got - r.dequantized(comp + 1)).max() < 2e-3


@requires_shared
def test_grey_gets_neutral_chroma_and_cmyk_is_refused():
    grey = next(p for p in sorted(CORPUS.glob("*.JPEG")) if read_coefficients(p).colorspace == "gray")
    c = read_coefficients(grey)
    y, cbcr = build_dct_batch([c], [[0, 0, c.width, c.height]], [False], (32, 32))
    assert torch.all(cbcr == 0)  # zero chroma, default normalization has mean 0
    img = np.repeat(decode_pixels(grey.read_bytes()).astype(np.float64), 3, axis=2)
    raw = build_dct_batch([c], [[0, 0, c.width, c.height]], [False], (32, 32), **RAW)
    ref = torch_resized_crop(img, (0, 0, c.width, c.height), (32, 32))
    assert psnr(np.clip(rgb_of(raw[0][0], raw[1][0]), 0, 255), ref) >= 30
    with pytest.raises(UnsupportedImage, match="CMYK"):
        build_dct_batch([read_coefficients(CORPUS / "n02442845_mink_cmyk.jpg")], [[0, 0, 16, 16]], [False],
                        (16, 16))


def test_bad_output_size_is_rejected(folder):
    c = read_coefficients(next(folder.glob("*/*")))
    with pytest.raises(ValueError, match="multiples of 16"):
        build_dct_batch([c], [[0, 0, 16, 16]], [False], (24, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        JpegFolder(folder, "dct", train=True, input_size=100)


@requires_shared
def test_every_readable_corpus_file_goes_through_train_and_eval():
    files = [p for p in sorted(CORPUS.glob("*")) if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg")]
    images = []
    for p in files:
        c = read_coefficients(p)
        if c.colorspace not in ("cmyk", "ycck"):
            images.append(c)
    widths = np.array([c.width for c in images])
    heights = np.array([c.height for c in images])
    train, flips = random_resized_crop_windows(0, 0, np.arange(len(images)), widths, heights)
    evalw = center_crop_windows(widths, heights, (32, 48))
    for windows, fl in ((train, flips), (evalw, np.zeros(len(images), bool))):
        y, cbcr = build_dct_batch(images, windows, fl, (32, 48))
        assert torch.isfinite(y).all() and torch.isfinite(cbcr).all()
        # DC = 8 × the block's mean level-shifted sample: within the pixel range (±1024 / DEFAULT_DCT_SCALE),
        # give or take the overshoot of decoded samples past 0..255
        assert y[:, 0].abs().max() <= 1.05 * 1024 / DEFAULT_DCT_SCALE


# ------------------------------------------------------------------------------------------------
# Dataset and loader

def test_folder_layout_and_arguments(folder):
    ds = JpegFolder(folder, "dct", train=True)
    assert ds.classes == sorted(p.name for p in folder.iterdir())
    assert ds.class_to_idx == {c: i for i, c in enumerate(ds.classes)}
    assert len(ds) == 6 and all(t == ds.class_to_idx[p.split("/")[-2]] for p, t in ds.samples)
    with pytest.raises(ValueError, match="representation"):
        JpegFolder(folder, "yuv", train=True)
    with pytest.raises(ValueError, match="on_error"):
        JpegFolder(folder, "dct", train=True, on_error="ignore")
    with pytest.raises(FileNotFoundError):
        JpegFolder(folder / "missing", "dct", train=True)
    with pytest.raises(ValueError, match="scale"):
        JpegFolder(folder, "dct", train=True, scale=(0.5, 0.1))
    with pytest.raises(TypeError, match="input_size"):
        JpegFolder(folder, "dct", train=True, input_size="big")
    with pytest.raises(ValueError, match="batch_size"):
        create_loader(ds, 0)
    with pytest.raises(TypeError):
        create_loader([1, 2, 3], 2)


def test_loader_batches(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=(32, 48))
    loader = create_loader(ds, 4, shuffle=True, num_threads=2)
    assert len(loader) == 2
    batches = list(loader)
    assert [b[1].shape[0] for b in batches] == [4, 2]
    (y, cbcr), target = batches[0]
    assert y.shape == (4, 64, 4, 6) and cbcr.shape == (4, 128, 2, 3)
    assert y.dtype == cbcr.dtype == torch.float32 and target.dtype == torch.int64
    assert y.is_contiguous(memory_format=torch.channels_last)
    seen = sorted(int(t) for b in batches for t in b[1])
    assert seen == sorted(t for _, t in ds.samples)
    assert len(create_loader(ds, 4, drop_last=True)) == 1


def test_determinism_epochs_and_resume(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    a = create_loader(ds, 2, shuffle=True, seed=5)
    b = create_loader(ds, 2, shuffle=True, seed=5, num_threads=1, prefetch=0)
    a.set_epoch(3)
    b.set_epoch(3)
    first = list(a)
    second = list(b)
    for (xa, ta), (xb, tb) in zip(first, second):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])
    a.set_epoch(4)
    other = list(a)
    assert any(not torch.equal(x[0][0], y[0][0]) for x, y in zip(first, other))
    # resume mid-epoch: the tail of epoch 3, bit for bit
    b.set_epoch(3, start_batch=1)
    tail = list(b)
    assert len(tail) == len(first) - 1
    for (xa, ta), (xb, tb) in zip(first[1:], tail):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_position_counts_a_left_out_all_bad_batch(folder, prefetch):
    """A batch whose files are all unreadable is left out; the loader's position still counts it, so resuming
    at a position (what the trainer stores) gives exactly the rest of the epoch."""
    bad_class = folder / "aaa_broken"  # sorts first: with no shuffle, batch 0 holds both broken files
    bad_class.mkdir()
    (bad_class / "a.jpg").write_bytes(b"not a jpeg")
    (bad_class / "b.jpg").write_bytes(b"")
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    loader = create_loader(ds, 2, seed=1, prefetch=prefetch, num_threads=1)
    loader.set_epoch(0)
    positions, batches = [], []
    for batch in loader:
        positions.append(loader.position)
        batches.append(batch)
    assert positions == [2, 3, 4]  # batch 0 (both broken) left out, counted
    assert len(loader.skipped) == 2
    loader.set_epoch(0, start_batch=positions[0])  # resume after the first delivered batch
    tail = list(loader)
    assert len(tail) == 2
    for (xa, ta), (xb, tb) in zip(batches[1:], tail):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])


def test_distributed_sampler_splits_the_epoch(folder):
    ds = JpegFolder(folder, "dct", train=False, input_size=32)
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = create_loader(ds, 2, sampler=sampler)
        loader.set_epoch(1)
        assert sampler.epoch == 1 and len(loader) == 2
        seen.append([int(t) for _, t in loader for t in t])
        # each batch is the sampler's indices, in its order
        order = list(sampler)
        assert [ds.samples[i][1] for i in order] == seen[-1]
    assert sorted(seen[0] + seen[1]) == sorted(t for _, t in ds.samples)
    with pytest.raises(ValueError, match="exclusive"):
        create_loader(ds, 2, sampler=sampler, shuffle=True)


def test_works_with_torch_dataloader(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate)
    (y, cbcr), target = next(iter(loader))
    assert y.shape == (3, 64, 4, 4) and cbcr.shape == (3, 128, 2, 2)
    # item access draws the same augmentation as the batch loader for the same (seed, epoch, index)
    batch = create_loader(ds, 3, seed=ds.seed)
    batch.set_epoch(2)
    (yb, cb), tb = next(iter(batch))
    assert torch.equal(target, tb)
    assert torch.allclose(y, yb, atol=1e-5) and torch.allclose(cbcr, cb, atol=1e-5)
    # worker processes draw the same augmentation as the main process
    workers = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate, num_workers=2)
    (yw, cw), tw = next(iter(workers))
    assert torch.equal(tw, target) and torch.equal(yw, y) and torch.equal(cw, cbcr)


@requires_shared
def test_bad_files_are_skipped_logged_once_and_counted(tmp_path, folder, caplog):
    bad_dir = folder / sorted(p.name for p in folder.iterdir())[0]
    for p in sorted(BAD.iterdir()):
        shutil.copy(p, bad_dir / p.name)
    bad = []  # the files of bad/ that really fail (one has a misleading name and decodes)
    for p in sorted(BAD.iterdir()):
        try:
            read_coefficients(p)
        except JpegError:
            bad.append(p)
    assert len(bad) >= 5
    readable = len(list(BAD.iterdir())) - len(bad)
    shutil.copy(CORPUS / "n02442845_mink_cmyk.jpg", bad_dir)
    # windows of whole images (a full-area crop is only possible at the image's own ratio; otherwise the
    # fallback takes the whole image too): every window reaches each file's damage (see
    # test_damage_below_the_window_is_never_read for windows that stop above it)
    ds = JpegFolder(folder, "dct", train=True, input_size=32, scale=(1.0, 1.0), ratio=(0.01, 100.0))
    loader = create_loader(ds, 4)
    with caplog.at_level(logging.WARNING, logger="jpegnet.data"):
        n = sum(t.shape[0] for _, t in loader)
    assert n == 6 + readable
    assert len(loader.skipped) == len(bad) + 1
    reasons = dict(loader.skipped)
    assert "CMYK" in reasons[str(bad_dir / "n02442845_mink_cmyk.jpg")]
    logged = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert len(logged) == len(bad) + 1
    # next epoch: the count starts again, the log does not repeat
    caplog.clear()
    loader.set_epoch(1)
    assert loader.skipped == []
    with caplog.at_level(logging.WARNING, logger="jpegnet.data"):
        list(loader)
    assert len(loader.skipped) == len(bad) + 1
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]
    # on_error='raise': the first bad file stops the epoch
    strict = JpegFolder(folder, "dct", train=True, input_size=32, on_error="raise", scale=(1.0, 1.0),
                        ratio=(0.01, 100.0))
    with pytest.raises((JpegError, UnsupportedImage)):
        list(create_loader(strict, 4))
    # item access: None (skipped) or the error
    idx = next(i for i, (p, _) in enumerate(ds.samples) if p.endswith("truncated_half.jpg"))
    assert ds[idx] is None
    with pytest.raises(JpegError):
        strict[idx]
    # the RGB twin skips what Pillow cannot open (it takes CMYK, and the PNG named .jpg)
    from PIL import Image

    def pillow_opens(path):
        try:
            Image.open(path).convert("RGB")
            return True
        except Exception:
            return False
    rgb = create_loader(JpegFolder(folder, "rgb", train=True, input_size=32), 4)
    assert sum(t.shape[0] for _, t in rgb) == sum(pillow_opens(p) for p, _ in ds.samples)
    assert len(rgb.skipped) == sum(not pillow_opens(p) for p, _ in ds.samples) > 0


@requires_shared
def test_damage_below_the_window_is_never_read(tmp_path):
    """The loader decodes only the MCUs under each window and, in single-scan files, stops entropy decoding
    after the window's last MCU row: a file whose damage lies below the window is used (deterministically,
    since windows are a function of (seed, epoch, index)); one whose window reaches it is skipped."""
    (tmp_path / "a").mkdir()
    for r in range(24):
        shutil.copy(BAD / "truncated_half.jpg", tmp_path / "a" / f"{r:02d}.jpg")
    ds = JpegFolder(tmp_path, "dct", train=True, input_size=32, scale=(0.01, 0.04))  # the data ends at row 160
    header = read_header(BAD / "truncated_half.jpg")
    n = len(ds)
    windows, _ = ds.windows(range(n), [header.width] * n, [header.height] * n, 0, 0)
    crops = decode_crops(windows, [header.width] * n, [header.height] * n, [header.mcu_size] * n)
    reaches = {}
    for i in range(n):
        x, y, w, h = (int(v) for v in crops[i])
        try:
            read_coefficients(BAD / "truncated_half.jpg", crop=(x, y, w, h))
            reaches[ds.samples[i][0]] = False
        except JpegError:
            reaches[ds.samples[i][0]] = True
    assert 0 < sum(reaches.values()) < n  # both kinds occur among these windows
    loader = create_loader(ds, 8, seed=0)
    got = sum(t.shape[0] for _, t in loader)
    assert sorted(p for p, _ in loader.skipped) == sorted(p for p, r in reaches.items() if r)
    assert got == n - len(loader.skipped)
    loader.set_epoch(0)  # the same epoch skips the same files
    list(loader)
    assert sorted(p for p, _ in loader.skipped) == sorted(p for p, r in reaches.items() if r)


def test_decode_crops_cover_what_the_resampling_reads():
    """decode_crops: MCU-aligned, inside the image, whole MCUs except at the right / bottom edges, and
    covering [floor(x), ceil(x + w)) × [floor(y), ceil(y + h)) of every window."""
    rng = np.random.default_rng(0)
    widths = rng.integers(16, 900, 400)
    heights = rng.integers(16, 900, 400)
    mcu = rng.choice([8, 16], size=(400, 2))
    windows, _ = random_resized_crop_windows(3, 1, np.arange(400), widths, heights)
    windows[:50] = center_crop_windows(widths[:50], heights[:50], (224, 224))  # fractional windows
    crops = decode_crops(windows, widths, heights, mcu)
    x, y, w, h = crops.T
    assert (x % mcu[:, 0] == 0).all() and (y % mcu[:, 1] == 0).all()
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= widths).all() and (y + h <= heights).all()
    assert ((w % mcu[:, 0] == 0) | (x + w == widths)).all() and ((h % mcu[:, 1] == 0) | (y + h == heights)).all()
    assert (x <= np.floor(windows[:, 0])).all() and (y <= np.floor(windows[:, 1])).all()
    assert (x + w >= np.minimum(np.ceil(windows[:, 0] + windows[:, 2]), widths)).all()
    assert (y + h >= np.minimum(np.ceil(windows[:, 1] + windows[:, 3]), heights)).all()
    # not more than one MCU of margin on each side
    assert (np.floor(windows[:, 0]) - x < mcu[:, 0]).all()
    assert (x + w - np.ceil(windows[:, 0] + windows[:, 2]) < mcu[:, 0]).all()


def test_rgb_twin_is_the_torchvision_pipeline(folder):
    from PIL import Image
    import torchvision.transforms.functional as TF

    ds = JpegFolder(folder, "rgb", train=True, input_size=(32, 48), seed=3)
    loader = create_loader(ds, 3, seed=3)
    (x,), target = next(iter(loader))
    assert x.shape == (3, 3, 32, 48) and x.dtype == torch.float32
    path = ds.samples[1][0]
    img = Image.open(path).convert("RGB")
    win, flips = ds.windows([1], np.array([img.width]), np.array([img.height]), 3, 0)
    left, top, w, h = (int(v) for v in win[0])
    ref = TF.resized_crop(img, top, left, h, w, [32, 48], antialias=True)
    if flips[0]:
        ref = TF.hflip(ref)
    ref = TF.normalize(TF.to_tensor(ref), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(x[1], ref)


def test_dct_stats_normalize_the_data(folder):
    mean, std = compute_dct_stats(folder, input_size=(32, 32))
    assert len(mean) == len(std) == 192 and all(s > 0 for s in std)
    ds = JpegFolder(folder, "dct", train=False, input_size=32)
    raw = create_loader(ds, 6, input_config=type("Cfg", (), {"dct_mean": (0.0,) * 192, "dct_std": (1.0,) * 192}))
    (y, cbcr), _ = next(iter(raw))
    y64 = y.permute(0, 2, 3, 1).reshape(-1, 64).double()
    assert np.allclose(mean[:64], y64.mean(0).numpy(), rtol=1e-4, atol=1e-3)
    assert np.allclose(std[:64], y64.std(0, unbiased=False).numpy(), rtol=1e-3, atol=1e-3)
    cfg = type("Cfg", (), {"dct_mean": mean, "dct_std": std})
    (y, cbcr), _ = next(iter(create_loader(ds, 6, input_config=cfg)))
    flat = torch.cat([y.permute(0, 2, 3, 1).reshape(-1, 64).mean(0), cbcr.permute(0, 2, 3, 1).reshape(-1, 128).mean(0)])
    assert flat.abs().max() < 1e-3
    with pytest.raises(ValueError, match="192"):
        create_loader(ds, 2, input_config=type("Cfg", (), {"dct_mean": (0.0,), "dct_std": (1.0,)}))


@requires_shared
def test_torch_code_path_matches_numpy_cpu_path(monkeypatch):
    """The batch transforms run through numpy on the CPU and through torch ops elsewhere (CUDA); the torch path,
    run here on the CPU, gives the same batch, grey images and mixed frequency groups included."""
    import jpegnet.dct.transforms as transforms
    names = ["n02123159_tiger_cat.JPEG", "n01740131_night_snake_progressive.jpg", "n04501370_turnstile_optimized.jpg"]
    grey = next(p for p in sorted(CORPUS.glob("*.JPEG")) if read_coefficients(p).colorspace == "gray")
    images = [read_coefficients(CORPUS / n) for n in names] + [read_coefficients(grey)]
    widths = np.array([c.width for c in images])
    heights = np.array([c.height for c in images])
    windows, flips = random_resized_crop_windows(1, 0, np.arange(4), widths, heights)
    flips[:] = [True, False, True, False]
    fast = build_dct_batch(images, windows, flips, (48, 64))
    monkeypatch.setattr(transforms, "NUMPY_ON_CPU", False)
    slow = build_dct_batch(images, windows, flips, (48, 64))
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, atol=1e-4)


@requires_shared
def test_rgb_colorspace_jpeg_is_mixed_to_ycbcr():
    """An Adobe-RGB-transform-0 JPEG (components R, G, B) gives the batch of the same picture stored as YCbCr:
    built here from a 4:4:4 YCbCr file by the inverse JFIF matrix on its coefficients (unit quantization)."""
    from jpegnet import JpegCoefficients
    c = read_coefficients(CORPUS / "n02123159_tiger_cat.JPEG")
    ycc = np.stack([c.dequantized(i) for i in range(3)]).astype(np.float64)
    to_rgb = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136286, -0.714136286], [1.0, 1.772, 0.0]])
    rgb = np.einsum("oc,chwk->ohwk", to_rgb, ycc)
    planes = [np.rint(p).astype(np.int16) for p in rgb]
    ones = [np.ones(64, dtype=np.uint16)] * 3
    as_rgb = JpegCoefficients(c.width, c.height, "rgb", c.sampling, planes, ones, False, False, c.image_size)
    windows = np.array([[40, 30, 300, 250]] * 2, dtype=np.float64)
    y, cbcr = build_dct_batch([c, as_rgb], windows, [False, True], (32, 48), **RAW)
    ref = build_dct_batch([c], windows[:1], [True], (32, 48), **RAW)
    # rounding the mixed coefficients to integers moves each by at most 0.5 (twice): tiny against their range
    assert (y[1] - ref[0][0]).abs().max() < 2.0
    assert (cbcr[1] - ref[1][0]).abs().max() < 2.0
    assert (ref[0][0] - y[0]).abs().max() > 10  # the mirror does change the batch
