"""Reference reconstruction of pixels from coefficients, in numpy: the ground truth the DCT path is tested
against (and a way to look at what a model sees). Never used on the training or inference path, except
`dct_basis`, the one definition of the 8×8 DCT matrix (jpegnet.dct.transforms builds its torch ops on it).

dequantize → 8×8 inverse DCT (+128 level shift) → box upsampling of subsampled components → JFIF colour
conversion. With box upsampling this matches libjpeg-turbo's decode with do_fancy_upsampling=FALSE up to
the rounding of its integer IDCT.
"""
from __future__ import annotations

import numpy as np

BLOCK = 8


def dct_basis(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix D (n×n, float64): coefficients = D @ block @ D.T, block = D.T @ coefs @ D.

    JPEG's forward DCT, F(u,v) = ¼·C(u)·C(v)·Σ f(x,y)·cos((2x+1)uπ/16)·cos((2y+1)vπ/16), is exactly this
    orthonormal transform for n = 8.
    """
    k = np.arange(n)
    d = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def blocks_to_plane(dequantized: np.ndarray) -> np.ndarray:
    """(blocks_h, blocks_w, 64) dequantized coefficients → (blocks_h·8, blocks_w·8) float64 samples, level-shifted."""
    bh, bw, _ = dequantized.shape
    d = dct_basis()
    coefs = dequantized.reshape(bh, bw, BLOCK, BLOCK).astype(np.float64)
    # samples[y, x] = Σ_{v,u} D[v, y] · F[v, u] · D[u, x]
    samples = np.einsum("vy,hwvu,ux->hywx", d, coefs, d, optimize=True)
    return samples.reshape(bh * BLOCK, bw * BLOCK) + 128.0


def component_planes(coefs) -> list[np.ndarray]:
    """Each component's samples (float64) at full image resolution (box upsampled), cropped to width × height."""
    max_h = max(h for h, _ in coefs.sampling)
    max_v = max(v for _, v in coefs.sampling)
    out = []
    for c in range(len(coefs.planes)):
        h, v = coefs.sampling[c]
        samples = blocks_to_plane(coefs.dequantized(c))
        samples = np.repeat(np.repeat(samples, max_v // v, axis=0), max_h // h, axis=1)
        out.append(samples[: coefs.height, : coefs.width])
    return out


def ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """JFIF YCbCr → RGB (float, unclipped), the conversion libjpeg applies."""
    cb = cb - 128.0
    cr = cr - 128.0
    return np.stack([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], axis=-1)


def reconstruct(coefs, as_float: bool = False) -> np.ndarray:
    """Pixels (height, width, channels) of a JpegCoefficients: RGB for 'ycbcr' and 'rgb', one channel for
    'gray', CMYK for 'cmyk' and 'ycck' (as libjpeg outputs them). uint8 unless as_float (unrounded, unclipped).
    """
    planes = component_planes(coefs)
    if coefs.colorspace == "ycbcr":
        img = ycc_to_rgb(*planes)
    elif coefs.colorspace == "ycck":
        img = np.concatenate([255.0 - ycc_to_rgb(*planes[:3]), planes[3][..., None]], axis=-1)
    else:
        img = np.stack(planes, axis=-1)
    if as_float:
        return img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two images of the same shape (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))
