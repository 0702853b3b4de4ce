"""Decoded coefficients → one normalized DCT batch, with every image's crop window, resize and mirror.

Each image's window (x, y, w, h in luma pixels) is resized to the output size by banded operators on
coefficient blocks (`jpegnet.dct.transforms`), which also mirror it and bring any chroma sampling to the
4:2:0 grid; only the blocks under the window and the frequencies the resize keeps are read. The resize filter
is the model's (`interpolation`: antialiased 'bilinear' or 'bicubic', as torchvision / Pillow).

On an accelerator the host's share per image is a copy of the window's int16 block rows into one pinned
buffer; frequency selection, dequantization, both resampling passes and normalization run there as batched
torch ops. On the CPU one fused C kernel (`jpegnet/dct/_resample.c`, GIL released, `threads` pthreads) builds
each plane's operators, dequantizes the kept coefficients of the blocks under the window, applies both passes
and writes every output block normalized into its slot of the batch: no intermediate array the size of an
image. The torch path also runs on the CPU (`cpu_kernel='torch'`) where the extension is not built; tests
hold both against one dense reference (jpegnet.dct.pixels.reference_resample).

Output: y (N, 64, H/8, W/8) and cbcr (N, 128, H/16, W/16) float32, channels_last: the reader's
(blocks_h, blocks_w, 64) layout kept throughout, channel = 8·u + v, Cb's 64 then Cr's 64.

Colour spaces: 'ycbcr' as is; 'gray' gets zero chroma (neutral grey before normalization); 'rgb' JPEGs
(Adobe transform 0) are mixed to YCbCr on their coefficients (the JFIF matrix is linear on level-shifted
samples, so it commutes with the DCT); 'cmyk' and 'ycck' are refused with `UnsupportedImage`: their
conversion to RGB multiplies channels by K, which no linear operator on coefficients can do, and converting
through pixels would put a pixel round trip on the DCT path for a format ImageNet-style datasets hardly use.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import JpegnetError
from ..dct.transforms import (BLOCK, BandOperator, apply_resample, check_interpolation, frequencies_kept,
                              resample_operator)
from ..input_config import DCT_CHANNELS, DCT_Y_CHANNELS, DEFAULT_DCT_SCALE

try:  # the fused C kernel of the CPU path (jpegnet/dct/_resample.c)
    from ..dct import _resample
except ImportError:  # pragma: no cover - a source checkout whose extension is not built yet
    _resample = None

#: CPU kernels: 'fused' runs crop, resize, mirror, dequantization and normalization per plane in one C pass
#: (jpegnet.dct._resample) straight into the batch tensors; 'torch' runs the accelerator's torch ops on the
#: CPU. None: 'fused' when the extension is built, else 'torch'.
CPU_KERNELS = ("fused", "torch")

# JFIF RGB → YCbCr on level-shifted samples (rows: Y, Cb, Cr); rows sum to 1, 0, 0, so no offsets remain.
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]])


class UnsupportedImage(JpegnetError, ValueError):
    """A JPEG that decodes but cannot become DCT input (CMYK / YCCK, unusual component layouts)."""


@dataclass
class _Plane:
    coefs: np.ndarray        # int16 (blocks_h, blocks_w, 64)
    quant: np.ndarray        # (64,) quantization steps
    fx: float                # plane pixels per luma pixel, horizontally
    fy: float
    width: int               # plane size in pixels
    height: int


def image_planes(c) -> list[_Plane]:
    """The Y (and Cb, Cr) planes of a JpegCoefficients, with their scale relative to the luma grid.
    Raises UnsupportedImage for colour spaces the DCT path does not take."""
    if c.colorspace in ("cmyk", "ycck"):
        raise UnsupportedImage(f"{c.colorspace.upper()} JPEG: the DCT pipeline takes YCbCr, RGB and greyscale "
                               "files (CMYK to RGB is not linear in the DCT domain); convert the file to RGB")
    n = len(c.planes)
    if not ((c.colorspace == "gray" and n == 1) or (c.colorspace in ("ycbcr", "rgb") and n == 3)):
        raise UnsupportedImage(f"unsupported JPEG layout: colorspace {c.colorspace!r} with {n} components")
    hmax = max(h for h, _ in c.sampling)
    vmax = max(v for _, v in c.sampling)
    planes = [c.planes[i] for i in range(n)]
    quants = [c.quant_tables[i] for i in range(n)]
    if c.colorspace == "rgb":
        if len(set(map(tuple, c.sampling))) != 1:
            raise UnsupportedImage(f"RGB JPEG with unequal sampling {c.sampling}: cannot mix to YCbCr per block")
        deq = np.stack([p.astype(np.float32) * q.astype(np.float32) for p, q in zip(planes, quants)])
        ycc = np.einsum("oc,chwk->ohwk", _RGB_TO_YCC.astype(np.float32), deq)
        planes = [np.clip(np.rint(p), -32768, 32767).astype(np.int16) for p in ycc]
        quants = [np.ones(64, dtype=np.uint16)] * 3
    out = []
    for (h, v), p, q in zip(c.sampling, planes, quants):
        fx, fy = h / hmax, v / vmax
        out.append(_Plane(p, q, fx, fy, -(-c.width * h // hmax), -(-c.height * v // vmax)))
    return out


def decode_crops(windows: np.ndarray, widths, heights, mcu_sizes) -> np.ndarray:
    """The MCU-aligned area (x, y, width, height) in pixels to decode for each window (x, y, w, h in luma
    pixels, floats) of an image of that size: every sample the resampling of any plane can read lies in
    [floor(x), ceil(x + w)) × [floor(y), ceil(y + h)) (`resample_support` clips its taps to the window), so the
    area is that box widened to whole MCUs (`mcu_sizes`: (width, height) per image) and clipped to the image.
    Returns int64 (N, 4), a valid `crop` for the reader (whole MCUs except at the right / bottom edges)."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    widths = np.asarray(widths, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.int64)
    mcu = np.asarray(mcu_sizes, dtype=np.int64).reshape(-1, 2)
    mw, mh = mcu[:, 0], mcu[:, 1]
    x0 = np.clip(np.floor(windows[:, 0]).astype(np.int64), 0, widths - 1) // mw * mw
    y0 = np.clip(np.floor(windows[:, 1]).astype(np.int64), 0, heights - 1) // mh * mh
    x1 = np.minimum(-(-np.ceil(windows[:, 0] + windows[:, 2]).astype(np.int64) // mw) * mw, widths)
    y1 = np.minimum(-(-np.ceil(windows[:, 1] + windows[:, 3]).astype(np.int64) // mh) * mh, heights)
    x1 = np.maximum(x1, np.minimum(x0 + mw, widths))
    y1 = np.maximum(y1, np.minimum(y0 + mh, heights))
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def build_dct_batch(images: list, windows: np.ndarray, flips: np.ndarray, out_size: tuple[int, int], *,
                    device="cpu", mean=None, std=None, k_margin: float | None = 1.0,
                    pin_memory: bool | None = None, cpu_kernel: str | None = None, threads: int = 1,
                    interpolation: str = "bilinear"):
    """(y, cbcr) for decoded images (JpegCoefficients), each cut from its window (x, y, w, h in luma pixels,
    floats) resized to out_size (H, W, multiples of 16) and mirrored where flips[i].

    mean / std: 192 values (64 Y, 128 CbCr) or None for mean 0, std DEFAULT_DCT_SCALE; pass mean=0, std=1
    tensors for raw dequantized coefficients. k_margin: a downscale by r reads the ceil(8·r·k_margin) lowest
    frequencies per axis (1.0: those below the new Nyquist limit; None: all 8, the exact composition
    IDCT → resize → DCT). cpu_kernel: 'fused' or 'torch' (see CPU_KERNELS; None picks 'fused' when built);
    threads: C threads of the fused kernel (the plane jobs of the batch are shared among them).
    interpolation: the resize filter, 'bilinear' (antialiased triangle, torchvision's BILINEAR with
    antialias=True) or 'bicubic' (antialiased Keys cubic, a = -0.5: Pillow's BICUBIC, torchvision's BICUBIC
    with antialias=True) — the one the model was trained with (InputConfig.interpolation).
    """
    if cpu_kernel is not None and cpu_kernel not in CPU_KERNELS:
        raise ValueError(f"cpu_kernel must be one of {CPU_KERNELS} or None, got {cpu_kernel!r}")
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    check_interpolation(interpolation)
    out_h, out_w = int(out_size[0]), int(out_size[1])
    if out_h % 16 or out_w % 16 or out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive multiples of 16, got {out_size!r}")
    device = torch.device(device)
    if pin_memory is None:
        pin_memory = device.type == "cuda"
    n = len(images)
    # items may come as the plane lists of image_planes (the loader checks colour spaces before building)
    per_image = [c if isinstance(c, list) else image_planes(c) for c in images]
    windows = np.asarray(windows, dtype=np.float64).reshape(n, 4)
    flips = np.asarray(flips, dtype=bool).reshape(n)
    colour = [i for i, p in enumerate(per_image) if len(p) == 3]

    # normalized = raw · (1/std) − mean/std, written once into the final channels_last layout
    inv, bias = _scale_and_bias(mean, std, device)
    hb, wb = out_h // 8, out_w // 8
    if device.type == "cpu" and cpu_kernel != "torch":
        if _resample is not None:
            return _fused_cpu_batch(per_image, windows, flips, (hb, wb), inv, bias, k_margin, int(threads),
                                    interpolation)
        if cpu_kernel == "fused":
            raise RuntimeError("the fused CPU kernel jpegnet.dct._resample is not built "
                               "(python setup.py build_ext --inplace)")
    y = torch.empty((n, hb, wb, 8, 8), dtype=torch.float32, device=device)
    _resample_into(y, (np.arange(n),), [p[0] for p in per_image], windows, flips, (hb, wb),
                   inv[:DCT_Y_CHANNELS].view(1, 1, 1, 8, 8), bias[:DCT_Y_CHANNELS].view(1, 1, 1, 8, 8), device,
                   k_margin, pin_memory, interpolation)
    cbcr = torch.empty((n, hb // 2, wb // 2, 2, 8, 8), dtype=torch.float32, device=device)
    grey = [i for i in range(n) if len(per_image[i]) == 1]
    if grey:  # zero chroma (neutral grey), normalized like any other image
        cbcr[torch.as_tensor(grey, device=device)] = bias[64:].view(2, 8, 8)
    if colour:
        image_ids = np.repeat(np.asarray(colour), 2)
        component_ids = np.tile(np.arange(2), len(colour))
        chroma_planes = [p for i in colour for p in per_image[i][1:]]
        inv_c = inv[64:].view(2, 1, 1, 8, 8)[torch.from_numpy(component_ids).to(device)]
        bias_c = bias[64:].view(2, 1, 1, 8, 8)[torch.from_numpy(component_ids).to(device)]
        _resample_into(cbcr.permute(0, 3, 1, 2, 4, 5), (image_ids, component_ids), chroma_planes,
                       windows[image_ids], flips[image_ids], (hb // 2, wb // 2), inv_c, bias_c, device,
                       k_margin, pin_memory, interpolation)
    # (N, h, w, C) memory viewed as (N, C, h, w): channels_last without a copy
    return (y.view(n, hb, wb, 64).permute(0, 3, 1, 2),
            cbcr.view(n, hb // 2, wb // 2, 128).permute(0, 3, 1, 2))


def _scale_and_bias(mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/std, −mean/std) as float32 tensors on device (mean None: the default normalization). The usual
    arguments (tuples of floats, as `normalization` gives them, on the CPU) come from a small cache: building
    them costs ~0.1 ms, a tenth of a served image's preprocessing. The cached tensors are shared: read only."""
    if mean is None:
        mean, std = (0.0,) * DCT_CHANNELS, (DEFAULT_DCT_SCALE,) * DCT_CHANNELS
    if isinstance(mean, tuple) and isinstance(std, tuple):
        inv, bias = _cached_scale_and_bias(mean, std)
        return (inv, bias) if device.type == "cpu" else (inv.to(device), bias.to(device))
    mean = torch.as_tensor(mean, dtype=torch.float32).to(device)
    inv = 1.0 / torch.as_tensor(std, dtype=torch.float32).to(device)
    return inv, -mean * inv


@functools.lru_cache(maxsize=16)
def _cached_scale_and_bias(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.tensor(mean, dtype=torch.float32)
    inv = 1.0 / torch.tensor(std, dtype=torch.float32)
    return inv, -mean_t * inv


def _fused_cpu_batch(per_image: list, windows: np.ndarray, flips: np.ndarray, out_blocks: tuple[int, int],
                     inv: torch.Tensor, bias: torch.Tensor, k_margin, threads: int, interpolation: str):
    """The CPU batch through the fused C kernel: each plane's blocks under its window go straight from the
    reader's int16 planes into their slots of y / cbcr, normalized (see jpegnet/dct/_resample.c)."""
    n = len(per_image)
    hb, wb = out_blocks
    y = torch.empty((n, hb, wb, 64), dtype=torch.float32)
    cbcr = torch.empty((n, hb // 2, wb // 2, 128), dtype=torch.float32)
    scale_np = np.ascontiguousarray(inv.numpy(), dtype=np.float32)
    bias_np = np.ascontiguousarray(bias.numpy(), dtype=np.float32)
    jobs = []
    for i, planes in enumerate(per_image):
        if len(planes) == 1:  # greyscale: zero chroma (neutral grey), normalized like any other image
            cbcr[i] = torch.from_numpy(bias_np[64:])
        for component, p in enumerate(planes):
            jobs.append((p.coefs, p.quant, i, component, p.fx, p.fy, p.width, p.height))
    _resample.resample_planes(jobs, windows, flips, y.numpy(), cbcr.numpy(), scale_np, bias_np,
                              -1.0 if k_margin is None else float(k_margin), threads, interpolation)
    # (N, h, w, C) memory viewed as (N, C, h, w): channels_last without a copy
    return y.permute(0, 3, 1, 2), cbcr.permute(0, 3, 1, 2)


def _resample_into(target: torch.Tensor, ids: tuple, planes: list[_Plane], windows, flips, out_blocks,
                   scale: torch.Tensor, bias: torch.Tensor, device, k_margin, pin_memory,
                   interpolation: str = "bilinear") -> None:
    """Resample planes into target[ids] (target indexed by the arrays in ids gives (P, Ov, Oh, 8, 8)),
    normalized with per-plane scale / bias (broadcastable to (P, 1, 1, 8, 8)).

    Planes are processed in groups of equal kept-frequency count k, so a batch that mixes small crops
    (upscaled: all 8 frequencies, short bands) with large ones (downscaled: few frequencies, long bands)
    does not pad every image to the worst of both.
    """
    fx = np.array([p.fx for p in planes])
    fy = np.array([p.fy for p in planes])
    x0, y0 = windows[:, 0] * fx, windows[:, 1] * fy
    ww, wh = windows[:, 2] * fx, windows[:, 3] * fy
    ov, oh = out_blocks
    if k_margin is None:
        ks = np.full(len(planes), BLOCK)
    else:
        ratio = np.maximum(ov * BLOCK / wh, oh * BLOCK / ww)
        ks = np.array([frequencies_kept(float(r), k_margin) for r in ratio])
    groups = [np.flatnonzero(ks == k) for k in np.unique(ks)]
    for group in groups:
        k = int(ks[group[0]])
        pw = np.array([planes[i].width for i in group])
        ph = np.array([planes[i].height for i in group])
        # Cb and Cr of an image usually share their geometry, hence their operators: build each once
        key = np.stack([x0[group], y0[group], ww[group], wh[group], pw, ph, flips[group]], axis=1)
        uniq, first_of, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        u = group[first_of]
        vert = _expand(resample_operator(y0[u], wh[u], ov, ph[first_of], None, k, device, interpolation), inverse,
                       len(uniq))
        horiz = _expand(resample_operator(x0[u], ww[u], oh, pw[first_of], flips[u], k, device, interpolation),
                        inverse, len(uniq))
        raw = _resample_group(planes=[planes[i] for i in group], vert=vert, horiz=horiz, k=k, device=device,
                              pin_memory=pin_memory)
        group_t = torch.from_numpy(group).to(device)
        s = scale if scale.shape[0] == 1 else scale[group_t]
        b = bias if bias.shape[0] == 1 else bias[group_t]
        if len(group) == len(planes) and len(ids) == 1:  # the whole batch in order: write in place
            torch.addcmul(b, raw, s, out=target)
        else:
            target[tuple(torch.from_numpy(i[group]).to(device) for i in ids)] = torch.addcmul(b, raw, s)


def _expand(op: BandOperator, inverse: np.ndarray, n_unique: int) -> BandOperator:
    """The operator of each plane from the operators of the distinct geometries (inverse: plane → geometry)."""
    inverse = inverse.reshape(-1)
    if n_unique == len(inverse) and np.array_equal(inverse, np.arange(n_unique)):
        return op
    idx = torch.from_numpy(inverse).to(op.weights.device)
    return BandOperator(op.weights[idx], op.start[idx], op.first_block[inverse], op.stop_block[inverse])


def _resample_group(planes: list[_Plane], vert, horiz, k: int, device, pin_memory):
    P = len(planes)
    rows = vert.stop_block - vert.first_block
    cols = horiz.stop_block - horiz.first_block
    R, C = int(rows.max()), int(cols.max())
    # Only the blocks under each window are copied (taps past a plane's stored blocks have zero weight, so
    # the copy stops there). Rows past a plane's own are never read; columns past its own only need to be
    # finite (see apply_resample).
    spans = []
    for i, p in enumerate(planes):
        r0, c0 = int(vert.first_block[i]), int(horiz.first_block[i])
        r1, c1 = min(r0 + int(rows[i]), p.coefs.shape[0]), min(c0 + int(cols[i]), p.coefs.shape[1])
        spans.append((r0, r1, c0, c1))
    # The host only copies whole int16 block rows into a (pinned, for an accelerator) buffer; frequency
    # selection, dequantization and the layout change run on the device.
    buf = torch.empty((P, R, C, 64), dtype=torch.int16, pin_memory=pin_memory)
    quant = torch.empty((P, 64), dtype=torch.int32, pin_memory=pin_memory)
    buf_np, quant_np = buf.numpy(), quant.numpy()
    for i, (p, (r0, r1, c0, c1)) in enumerate(zip(planes, spans)):
        buf_np[i, :r1 - r0, :c1 - c0] = p.coefs[r0:r1, c0:c1]
        quant_np[i] = p.quant
    non_blocking = pin_memory and device.type == "cuda"
    buf = buf.to(device, non_blocking=non_blocking).view(P, R, C, BLOCK, BLOCK)[:, :, :, :k, :k]
    quant = quant.to(device, non_blocking=non_blocking).view(P, 1, BLOCK, 1, BLOCK)[:, :, :k, :, :k]
    # int16 padding is always finite; float32 from here
    x = buf.permute(0, 1, 3, 2, 4).to(torch.float32) * quant.to(torch.float32)
    return apply_resample(x, vert, horiz)
