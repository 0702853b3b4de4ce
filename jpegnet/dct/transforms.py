"""Linear operators on JPEG coefficient blocks, as batched torch ops.

Conventions (those of the reader): a plane is (..., blocks_h, blocks_w, 64); entry 8·u + v of a block is the
coefficient of vertical frequency u and horizontal frequency v; JPEG's 8×8 DCT is the orthonormal DCT-II, so a
block of level-shifted samples f gives F = D f Dᵀ and f = Dᵀ F D with D = `dct_matrix()`.

Every geometric operation (crop, mirror, resize, chroma subsampling) is linear and separable, so it acts on
coefficients as `out = A_v · F · A_hᵀ` with one small matrix per axis; nothing here goes through pixels except
the explicit `block_idct` / `block_dct` (used by references and by callers who want pixels).

Resampling follows torchvision / PyTorch's antialiased resize (`interpolate(mode=..., antialias=True)`), with
one of two filters (`INTERPOLATIONS`): 'bilinear', a triangle of half-width 1, or 'bicubic', Keys' cubic
convolution with a = −0.5 and half-width 2 (Pillow's BICUBIC and PyTorch's antialiased bicubic both use
a = −0.5; PyTorch's non-antialiased bicubic uses −0.75). On a downscale by s the filter is stretched by s
(its support and its argument), as Pillow and PyTorch antialias; the taps are clipped at the window's edges
and each output sample's weights renormalized. Composed with the block IDCT before it and the block DCT after
it, it becomes a banded operator on coefficients:
`resample_operator` builds it in band form (each output block reads `band` consecutive input blocks), and
`apply_resample` applies the vertical then the horizontal operator as batched matrix products that read only
the blocks inside the window and, optionally, only the `k` lowest input frequencies (the ones a downscale
keeps; libjpeg's scaled IDCT rests on the same fact: a block's top-left k×k coefficients are its k/8 copy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..input_config import INTERPOLATIONS  # 'bilinear': the triangle; 'bicubic': Keys' cubic, a = -0.5
from .pixels import BLOCK, dct_basis


# ------------------------------------------------------------------------------------------------
# Bases, dequantization, block IDCT / DCT.

def dct_matrix(n: int = BLOCK, dtype=torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n×n): coefficients = D @ x, x = Dᵀ @ coefficients."""
    return torch.from_numpy(dct_basis(n)).to(dtype=dtype, device=device)


def dequantize(planes: torch.Tensor, quant: torch.Tensor) -> torch.Tensor:
    """float32 coefficients × quantization steps. planes (..., 64) integer; quant (64,) or broadcastable
    (e.g. (N, 1, 1, 64) for a batch of images with their own tables)."""
    if planes.shape[-1] != 64 or quant.shape[-1] != 64:
        raise ValueError(f"planes and quant must end in 64 coefficients, got {tuple(planes.shape)} and "
                         f"{tuple(quant.shape)}")
    return planes.to(torch.float32) * quant.to(device=planes.device, dtype=torch.float32)


def block_idct(coefs: torch.Tensor) -> torch.Tensor:
    """(..., bh, bw, 64) coefficients → (..., bh·8, bw·8) level-shifted samples (no +128)."""
    *lead, bh, bw, n = coefs.shape
    if n != 64:
        raise ValueError(f"expected 64 coefficients per block, got {n}")
    d = dct_matrix(dtype=coefs.dtype, device=coefs.device)
    blocks = coefs.reshape(*lead, bh, bw, BLOCK, BLOCK)
    pixels = torch.einsum("uy,...hwuv,vx->...hywx", d, blocks, d)
    return pixels.reshape(*lead, bh * BLOCK, bw * BLOCK)


def block_dct(pixels: torch.Tensor) -> torch.Tensor:
    """(..., H, W) level-shifted samples, H and W multiples of 8 → (..., H/8, W/8, 64) coefficients."""
    *lead, h, w = pixels.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"block_dct needs sizes that are multiples of 8, got {h}x{w}")
    d = dct_matrix(dtype=pixels.dtype, device=pixels.device)
    blocks = pixels.reshape(*lead, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    coefs = torch.einsum("uy,...hywx,vx->...hwuv", d, blocks, d)
    return coefs.reshape(*lead, h // BLOCK, w // BLOCK, 64)


def scaled_block_idct(coefs: torch.Tensor, k: int) -> torch.Tensor:
    """The k/8-scaled image of (..., bh, bw, 64) coefficients, as libjpeg's scaled IDCT computes it: each
    block's top-left k×k coefficients, times k/8, through a k-point inverse DCT → (..., bh·k, bw·k) samples."""
    if not 1 <= int(k) <= BLOCK:
        raise ValueError(f"k must be in 1..8, got {k!r}")
    k = int(k)
    *lead, bh, bw, _ = coefs.shape
    d = dct_matrix(k, dtype=coefs.dtype, device=coefs.device)
    low = coefs.reshape(*lead, bh, bw, BLOCK, BLOCK)[..., :k, :k] * (k / BLOCK)
    pixels = torch.einsum("uy,...hwuv,vx->...hywx", d, low, d)
    return pixels.reshape(*lead, bh * k, bw * k)


def low_frequency_index(k: int) -> torch.Tensor:
    """Indices 8·u + v (u, v < k) of the k×k lowest frequencies of a natural-order block, u-major."""
    u = torch.arange(k)
    return (u[:, None] * BLOCK + u[None, :]).reshape(-1)


# ------------------------------------------------------------------------------------------------
# Exact block-aligned operations.

def crop_blocks(planes: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A block-aligned crop (in blocks) of (..., bh, bw, 64): a view, exact."""
    bh, bw = planes.shape[-3], planes.shape[-2]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > bh or left + width > bw:
        raise ValueError(f"block crop (top={top}, left={left}, height={height}, width={width}) outside "
                         f"{bh}x{bw} blocks")
    return planes[..., top:top + height, left:left + width, :]


def _odd_horizontal_sign(dtype, device) -> torch.Tensor:
    v = torch.arange(64, device=device) % BLOCK
    return torch.where(v % 2 == 1, -1.0, 1.0).to(dtype)


def hflip_blocks(planes: torch.Tensor) -> torch.Tensor:
    """Mirror (..., bh, bw, 64) left-right, exactly: block columns reversed, odd horizontal frequencies negated
    (cos((2(7−x)+1)vπ/16) = (−1)^v cos((2x+1)vπ/16))."""
    return planes.flip(-2) * _odd_horizontal_sign(planes.dtype, planes.device)


def vflip_blocks(planes: torch.Tensor) -> torch.Tensor:
    """Mirror (..., bh, bw, 64) top-bottom: block rows reversed, odd vertical frequencies negated."""
    u = torch.arange(64, device=planes.device) // BLOCK
    return planes.flip(-3) * torch.where(u % 2 == 1, -1.0, 1.0).to(planes.dtype)


# ------------------------------------------------------------------------------------------------
# Chroma subsampling in the DCT domain.

def _box_halving_1d() -> np.ndarray:
    """(8, 16): two 8-sample blocks' coefficients → the coefficients of their 2:1 box average (libjpeg's
    encoder downsampling, without its rounding bias)."""
    d = dct_basis()
    avg = np.zeros((BLOCK, 2 * BLOCK))
    avg[np.arange(BLOCK), 2 * np.arange(BLOCK)] = 0.5
    avg[np.arange(BLOCK), 2 * np.arange(BLOCK) + 1] = 0.5
    idct2 = np.zeros((2 * BLOCK, 2 * BLOCK))
    idct2[:BLOCK, :BLOCK] = d.T
    idct2[BLOCK:, BLOCK:] = d.T
    return d @ avg @ idct2


def halve_blocks(planes: torch.Tensor, vertical: bool, horizontal: bool) -> torch.Tensor:
    """2:1 box downsampling of (..., bh, bw, 64) along the chosen axes, in the DCT domain (an exact linear
    operator on pairs of blocks; an odd last block is paired with its edge-replicated continuation, as
    encoders pad). Returns float32 (..., ceil(bh/2) or bh, ceil(bw/2) or bw, 64)."""
    x = planes.to(torch.float32)
    *lead, bh, bw, n = x.shape
    if n != 64:
        raise ValueError(f"expected 64 coefficients per block, got {n}")
    if not (vertical or horizontal):
        return x
    op = torch.from_numpy(_box_halving_1d()).to(dtype=torch.float32, device=x.device).reshape(BLOCK, 2, BLOCK)
    x = x.reshape(*lead, bh, bw, BLOCK, BLOCK)
    if vertical:
        x = _halve_rows(x, op)
    if horizontal:
        x = _halve_rows(x.transpose(-4, -3).transpose(-2, -1), op).transpose(-4, -3).transpose(-2, -1)
    return x.reshape(*x.shape[:-2], 64)


def _halve_rows(x: torch.Tensor, op: torch.Tensor) -> torch.Tensor:
    """x (..., h, w, u, v) → (..., ceil(h/2), w, u, v): block rows merged pairwise by op (out u, pair, in u)."""
    if x.shape[-4] % 2:
        x = torch.cat([x, _edge_block(x)], dim=-4)
    *lead, h, w, _, _ = x.shape
    pairs = x.reshape(*lead, h // 2, 2, w, BLOCK, BLOCK)
    return torch.einsum("opu,...hpwuv->...hwov", op, pairs)


def _edge_block(x: torch.Tensor) -> torch.Tensor:
    """The block row that continues the last one of x (..., h, w, u, v) by replicating its bottom sample row."""
    last = x.narrow(-4, x.shape[-4] - 1, 1)
    d = dct_matrix(dtype=x.dtype, device=x.device)
    # samples along u of the last block's last row: s[v'] = Σ_u D[u, 7] F[u, v] (still DCT along v)
    edge_row = torch.einsum("u,...uv->...v", d[:, BLOCK - 1], last)
    # a block whose 8 rows all equal edge_row: only frequency u = 0 is non-zero, with weight √8
    out = torch.zeros_like(last)
    out[..., 0, :] = edge_row * math.sqrt(BLOCK)
    return out


def chroma_to_420(plane: torch.Tensor, sampling: tuple[int, int], max_sampling: tuple[int, int]) -> torch.Tensor:
    """Bring a chroma plane of any standard sampling to 4:2:0 (half the luma resolution on both axes) in the
    DCT domain. sampling: the plane's (h, v) factors; max_sampling: the image's largest (h, v).
    4:2:0 planes come back as they are; 4:4:4 halves both axes, 4:2:2 the vertical one, 4:4:0 the horizontal."""
    h, v = sampling
    hmax, vmax = max_sampling
    if (hmax // h, vmax // v) not in ((1, 1), (2, 1), (1, 2), (2, 2)) or hmax % h or vmax % v:
        raise ValueError(f"cannot bring chroma sampling {sampling} (max {max_sampling}) to 4:2:0")
    # relative to luma, chroma has 1/(hmax/h) horizontal resolution; 4:2:0 wants 1/2.
    return halve_blocks(plane, vertical=(vmax // v == 1), horizontal=(hmax // h == 1))


# ------------------------------------------------------------------------------------------------
# Resampling: crop window + antialiased bilinear / bicubic resize + mirror, as banded coefficient operators.

@dataclass
class BandOperator:
    """A banded 1-D coefficient operator for a batch of P planes.

    weights: (P, out_blocks, 8, band, k) float32: output block o, output frequency f, from input block
        start[p, o] + b (relative to first_block[p]), input frequency < k.
    start: (P, out_blocks) int64 tensor.
    first_block, stop_block: (P,) int64 numpy: the input blocks [first, stop) the operator reads.
    """

    weights: torch.Tensor
    start: torch.Tensor
    first_block: np.ndarray
    stop_block: np.ndarray

    @property
    def band(self) -> int:
        return self.weights.shape[3]



#: Keys' cubic convolution parameter: Pillow's BICUBIC and PyTorch's antialiased bicubic both use -0.5.
CUBIC_A = -0.5

#: Half-width of each filter, in input pixels before stretching by the downscale factor.
_FILTER_RADIUS = {"bilinear": 1.0, "bicubic": 2.0}


def check_interpolation(interpolation: str) -> str:
    """interpolation itself, or ValueError naming the filters there are."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def resample_filter(x, interpolation: str = "bilinear"):
    """The filter's weight at distance x (in units of the stretched filter: input pixels · inv_support), for a
    numpy array or a torch tensor: max(0, 1 − |x|) for 'bilinear'; Keys' cubic for 'bicubic',
    (a+2)|x|³ − (a+3)|x|² + 1 on |x| < 1, a(|x|³ − 5|x|² + 8|x| − 4) on 1 <= |x| < 2, 0 beyond (a = CUBIC_A)."""
    check_interpolation(interpolation)
    is_torch = isinstance(x, torch.Tensor)
    x = x.abs() if is_torch else np.abs(x)
    if interpolation == "bilinear":
        return (1.0 - x).clamp(min=0.0) if is_torch else np.maximum(0.0, 1.0 - x)
    a = CUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    where = torch.where if is_torch else np.where
    zero = torch.zeros_like(x) if is_torch else 0.0
    return where(x < 1.0, near, where(x < 2.0, far, zero))


def resample_support(start, length, out_size: int, valid_stop, flip=None, interpolation: str = "bilinear"):
    """Where each output sample of an antialiased resize reads, for windows [start, start+length)
    (pixels of the plane, floats: a window may start between pixels, e.g. chroma of a luma window) resized to
    out_size samples, optionally mirrored. Inputs are clipped to the window and to [0, valid_stop).

    Returns (lo, hi, centre, inv_support) as numpy arrays ((P, out_size) ×3, (P,)): input pixel x contributes to
    output i iff lo <= x < hi, with weight resample_filter((x + ½ − centre)·inv_support), normalized over x —
    PyTorch's `interpolate(mode=interpolation, antialias=True)` kernel, with its xmin / xmax rounding. The
    filter is stretched by the downscale factor s = max(1, length / out_size): inv_support = 1 / s, and the
    taps reach radius · s pixels from the centre (radius 1 for the triangle, 2 for the cubic).
    """
    radius = _FILTER_RADIUS[check_interpolation(interpolation)]
    start = np.asarray(start, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    scale = length / out_size                             # input pixels per output pixel
    stretch = np.maximum(scale, 1.0)                      # the filter's stretch (antialiasing)
    support = radius * stretch                            # half-width of the taps, in input pixels
    i = np.arange(out_size, dtype=np.float64)[None, :]
    if flip is not None:
        i = np.where(np.asarray(flip, dtype=bool)[:, None], out_size - 1 - i, i)
    centre = start[:, None] + (i + 0.5) * scale[:, None]
    win_lo = np.floor(start + 1e-9)
    win_hi = np.minimum(np.ceil(start + length - 1e-9), np.asarray(valid_stop, dtype=np.float64))
    lo = np.maximum(np.floor(centre - support[:, None] + 0.5), win_lo[:, None])
    hi = np.minimum(np.floor(centre + support[:, None] + 0.5), win_hi[:, None])
    hi = np.maximum(hi, lo + 1)  # a window never maps to nothing
    return lo.astype(np.int64), hi.astype(np.int64), centre, 1.0 / stretch


def resample_operator(start, length, out_blocks: int, valid_stop, flip=None, k: int = BLOCK,
                      device=None, interpolation: str = "bilinear") -> BandOperator:
    """Banded DCT-domain operator along one axis for P planes: the window [start, start+length) (pixels of
    each plane, floats) resized to out_blocks·8 samples with the antialiased `interpolation` filter, optionally
    mirrored, composed with the block IDCT before and the block DCT after. Only input frequencies < k are read
    (k = 8: the exact composition). The support is found with numpy; the weights are computed on `device`."""
    if not 1 <= k <= BLOCK:
        raise ValueError(f"k must be in 1..8, got {k!r}")
    if out_blocks < 1:
        raise ValueError(f"out_blocks must be >= 1, got {out_blocks!r}")
    out_size = out_blocks * BLOCK
    lo, hi, centre, inv_support = resample_support(start, length, out_size, valid_stop, flip, interpolation)
    P = lo.shape[0]
    lo_b = lo.reshape(P, out_blocks, BLOCK)
    hi_b = hi.reshape(P, out_blocks, BLOCK)
    first = lo_b.min(axis=2) // BLOCK                     # (P, O) first input block of each output block
    last = (hi_b.max(axis=2) - 1) // BLOCK                # inclusive
    band = int((last - first).max()) + 1
    first_abs = first.min(axis=1)
    stop_abs = last.max(axis=1) + 1
    dev = torch.device(device) if device is not None else torch.device("cpu")
    start_rel = torch.from_numpy(first - first_abs[:, None]).to(dev)
    # positions relative to each output block's first input pixel stay small: float32 loses nothing
    rel_centre = (centre.reshape(P, out_blocks, BLOCK) - (first * BLOCK)[:, :, None]).astype(np.float32)
    rel_lo = (lo_b - (first * BLOCK)[:, :, None]).astype(np.float32)
    rel_hi = (hi_b - (first * BLOCK)[:, :, None]).astype(np.float32)
    return BandOperator(_band_weights(rel_centre, rel_lo, rel_hi, inv_support, band, k, dev, interpolation),
                        start_rel, first_abs, stop_abs)


def _band_weights(rel_centre, rel_lo, rel_hi, inv_support, band: int, k: int, dev, interpolation) -> torch.Tensor:
    """The banded weights of resample_operator, computed on `dev`: (P, O, 8, band, k)."""
    P, O, _ = rel_centre.shape
    f32 = dict(dtype=torch.float32, device=dev)
    taps = torch.arange(band * BLOCK, **f32)
    centre = torch.from_numpy(rel_centre).to(dev)[..., None]
    inv = torch.from_numpy(np.asarray(inv_support, dtype=np.float32)).to(dev)[:, None, None, None]
    w = resample_filter((taps + 0.5 - centre) * inv, interpolation)
    lo = torch.from_numpy(rel_lo).to(dev)[..., None]
    hi = torch.from_numpy(rel_hi).to(dev)[..., None]
    w = w * ((taps >= lo) & (taps < hi))
    # the cubic's lobes are negative, but a tap within half a pixel of the centre always stays (the centre
    # lies in the window) and outweighs them: sums are positive, the clamp only guards against 0
    w = w / w.sum(dim=-1, keepdim=True).clamp_(min=1e-30)
    d = dct_matrix(**f32)
    a = torch.matmul(w.view(P * O, BLOCK * band, BLOCK), d[:k].T)
    return torch.matmul(d, a.view(P * O, BLOCK, band * k)).view(P, O, BLOCK, band, k)


def apply_resample(x: torch.Tensor, vertical: BandOperator, horizontal: BandOperator) -> torch.Tensor:
    """Apply banded operators to dequantized planes x of shape (P, rows, k, cols, k) — the stored blocks from
    vertical.first_block / horizontal.first_block on, padded to common rows / cols, u-major: x[p, r, u, c, v].
    Padding is never read (gathers are clamped to each plane's own blocks) except as whole columns of the
    vertical pass whose results are dropped, so it only needs to hold finite numbers.
    Returns a (P, out_rows, out_cols, 8, 8) view (not contiguous; callers write it where it belongs).

    The path an accelerator runs (gathers and batched matrix products); on the CPU the data pipeline runs the
    fused C kernel instead (jpegnet/dct/_resample.c), which tests check against the same reference.
    """
    P, R, k, C, _ = x.shape
    Ov, Oh = vertical.start.shape[1], horizontal.start.shape[1]
    Bv, Bh = vertical.band, horizontal.band
    dev = x.device
    x = x.contiguous()
    n_rows = torch.from_numpy(vertical.stop_block - vertical.first_block).to(dev)
    n_cols = torch.from_numpy(horizontal.stop_block - horizontal.first_block).to(dev)
    rows = torch.minimum(vertical.start[:, :, None] + torch.arange(Bv, device=dev), (n_rows - 1)[:, None, None])
    rows = (rows + (torch.arange(P, device=dev) * R)[:, None, None]).view(-1)
    cols = torch.minimum(horizontal.start[:, :, None] + torch.arange(Bh, device=dev), (n_cols - 1)[:, None, None])
    cols = (cols + (torch.arange(P, device=dev) * C)[:, None, None]).view(-1)
    av = vertical.weights.view(P * Ov, BLOCK, Bv * k)
    ah = horizontal.weights.view(P * Oh, BLOCK, Bh * k)
    g = x.view(P * R, k * C * k).index_select(0, rows).view(P * Ov, Bv * k, C * k)
    t = torch.bmm(av, g)
    t = t.view(P, Ov * BLOCK, C, k).permute(0, 2, 3, 1).contiguous()
    g = t.view(P * C, k * Ov * BLOCK).index_select(0, cols).view(P * Oh, Bh * k, Ov * BLOCK)
    o = torch.bmm(g.transpose(1, 2), ah.transpose(1, 2))
    return o.view(P, Oh, Ov, BLOCK, BLOCK).permute(0, 2, 1, 3, 4)                       # (P, Ov, Oh, f_v, f_h)


def frequencies_kept(scale_out_over_in: float, margin: float = 1.0) -> int:
    """How many input frequencies per axis a resize by `scale_out_over_in` needs: a downscale by r keeps the
    ceil(8·r·margin) lowest (below 8·r is what survives under the new Nyquist limit; the rest only fed the
    antialias filter's aliasing); upscales keep all 8."""
    return int(min(BLOCK, max(1, math.ceil(BLOCK * scale_out_over_in * margin))))
