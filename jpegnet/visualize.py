"""Drawing what a network learned: kernel grids, feature maps and adjacent-layer similarity (VGNet's method).

VGNet ("Efficient CNN Architecture Design Guided by Visualization") was designed by looking at three things,
which this module draws as PNG files (matplotlib, Agg backend, no display needed):

- `plot_kernels(model, layers, out_png)`: the k×k kernels of chosen convolution layers as image grids. A
  dense layer draws one row per filter and one column per input channel; a depthwise layer draws its C
  kernels in a near-square grid. Many learned depthwise kernels look like blurs or edge detectors.
- `plot_features(model, inputs, out_png_or_dir, layers=None)`: the feature maps of one input, layer by layer,
  and the channel-to-channel similarity matrix between adjacent layers' feature maps.
- `feature_similarity(a, b)`: that matrix on its own: cosine similarity between every channel of one
  layer's map and every channel of the next (after average-pooling both to the smaller resolution).
  VGNet saw that about half of a layer's maps reappear almost unchanged in the next one, hence its
  "half identity" blocks.

Tiles are normalized one by one (each kernel or map to its own range) so that shapes, not gains, are compared.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import JpegnetError

__all__ = ["LayerError", "default_feature_layers", "default_kernel_layers", "feature_similarity", "kernel_grid",
           "layer_kernels", "plot_features", "plot_kernels", "tile_grid"]


class LayerError(JpegnetError, ValueError):
    """A layer name that the model does not have, or a layer with nothing to draw."""


class NotAConvolutionError(LayerError, TypeError):
    """A layer without a 4-D convolution weight asked to draw its kernels (a TypeError too, as before)."""


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)  # files only: never needs (or grabs) a display
    import matplotlib.pyplot as plt
    return plt


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------
def layer_kernels(module: nn.Module) -> tuple[torch.Tensor, bool]:
    """(weight of shape (out, in_per_group, k, k), is_depthwise) of a convolution-like module.

    Understands nn.Conv2d, jpegnet's HetConv2d (its equivalent dense weight), fixed-kernel layers (their
    weight buffer) and anything else with a 4-D `weight` tensor.
    """
    from .layers.fixed_kernels import FixedDepthwiseConv2d
    from .layers.hetconv import HetConv2d

    if isinstance(module, HetConv2d):
        return module.dense_weight().float().cpu(), False
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise NotAConvolutionError(f"{type(module).__name__} has no 4-D convolution weight to draw")
    if isinstance(module, FixedDepthwiseConv2d):
        depthwise = True
    else:
        groups = getattr(module, "groups", 1)
        depthwise = groups > 1 and weight.shape[1] == 1
    return weight.detach().float().cpu(), depthwise


def tile_grid(tiles: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """Lay (n, h, w) tiles out row-major in a grid of `cols` columns, separated by `pad` NaN pixels.

    The result has shape (rows·(h+pad)+pad, cols·(w+pad)+pad); NaN marks background (drawn as gaps).
    """
    if tiles.ndim != 3:
        raise ValueError(f"tiles must be (n, h, w), got shape {tiles.shape}")
    n, h, w = tiles.shape
    if n == 0 or cols < 1:
        raise ValueError("tile_grid needs at least one tile and one column")
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = tiles[i]
    return out


def _normalize_tiles(tiles: np.ndarray, symmetric: bool) -> np.ndarray:
    """Scale each tile to [-1, 1] (symmetric, for kernels) or [0, 1] (for feature maps)."""
    flat = tiles.reshape(len(tiles), -1)
    if symmetric:
        scale = np.abs(flat).max(axis=1)
        scale[scale == 0] = 1.0
        return tiles / scale[:, None, None]
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = hi - lo
    span[span == 0] = 1.0
    return (tiles - lo[:, None, None]) / span[:, None, None]


def kernel_grid(weight: torch.Tensor, depthwise: bool, max_filters: int = 32, max_inputs: int = 32,
                pad: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """The mosaic of one layer's kernels and its (rows, cols) of tiles.

    Dense: rows = filters (at most max_filters), cols = input channels (at most max_inputs).
    Depthwise: the first max_filters·max_inputs kernels in a near-square grid.
    """
    w = weight.detach().float().cpu().numpy()
    if depthwise:
        tiles = w[: max_filters * max_inputs, 0]
        cols = math.ceil(math.sqrt(len(tiles)))
    else:
        tiles = w[:max_filters, :max_inputs]
        cols = tiles.shape[1]
        tiles = tiles.reshape(-1, *w.shape[2:])
    mosaic = tile_grid(_normalize_tiles(tiles, symmetric=True), cols, pad)
    return mosaic, (math.ceil(len(tiles) / cols), cols)


def _named_layers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """{name: module} of the model's modules, with a LayerError naming any of `layers` it does not have."""
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise LayerError(f"no such layer(s) in {type(model).__name__}: {missing}")
    return modules


def default_kernel_layers(model: nn.Module, count: int = 2) -> list[str]:
    """The first `count` convolutions with spatial kernels (1×1 kernels draw as single pixels)."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
    if not names:
        names = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise LayerError(f"{type(model).__name__} has no convolution layer to draw")
    return names[:count]


def plot_kernels(model: nn.Module, layers: Sequence[str] | str, out_png: str | os.PathLike,
                 max_filters: int = 32, max_inputs: int = 32, tile_px: int = 12) -> list[dict]:
    """Draw the kernels of the named layers of `model` into one PNG, one panel per layer.

    layers: module names as in `model.named_modules()` (e.g. 'stage2.blocks.1.dw'); a single name is fine.
    Returns one dict per layer: name, shape (of the weight), depthwise, grid (rows, cols of tiles).
    Each kernel tap is drawn `tile_px` pixels wide; red positive, blue negative, each kernel to its own scale.
    """
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ValueError("plot_kernels needs at least one layer name")
    modules = _named_layers(model, layers)
    panels, info = [], []
    for name in layers:
        weight, depthwise = layer_kernels(modules[name])
        mosaic, grid = kernel_grid(weight, depthwise, max_filters, max_inputs)
        panels.append(mosaic)
        info.append(dict(name=name, shape=tuple(weight.shape), depthwise=depthwise, grid=grid))
    plt = _pyplot()
    import matplotlib
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")  # NaN gaps between tiles
    dpi = 100
    width = max(m.shape[1] for m in panels) * tile_px / dpi + 0.4
    heights = [m.shape[0] * tile_px / dpi + 0.4 for m in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(width, 3.0), sum(heights)), dpi=dpi, squeeze=False,
                             gridspec_kw=dict(height_ratios=heights))
    for ax, mosaic, meta in zip(axes[:, 0], panels, info):
        ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        kind = "depthwise" if meta["depthwise"] else "dense"
        ax.set_title(f"{meta['name']}  {kind} {tuple(meta['shape'])}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return info


# ---------------------------------------------------------------------------------------------------------
# Feature maps
# ---------------------------------------------------------------------------------------------------------
def feature_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every channel of map `a` and every channel of map `b`: shape (Ca, Cb).

    a, b: (C, H, W) or (1, C, H, W) feature maps of one image. The larger map is average-pooled to the
    smaller one's resolution first (adjacent layers may differ by a stride). Channels that are all zero
    have similarity 0 with everything.
    """
    a, b = _single_map(a), _single_map(b)
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if a.shape[-2:] != size:
        a = F.adaptive_avg_pool2d(a[None], size)[0]
    if b.shape[-2:] != size:
        b = F.adaptive_avg_pool2d(b[None], size)[0]
    a = F.normalize(a.flatten(1).double(), dim=1)
    b = F.normalize(b.flatten(1).double(), dim=1)
    return (a @ b.t()).float()


def _single_map(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"feature_similarity takes the map of one image, got batch {x.shape[0]}")
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"a feature map must be (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x.detach().float().cpu()


def _as_map(output) -> torch.Tensor | None:
    """A module output as one (N, C, H, W) tensor: pairs of equal size (VGNet) are concatenated, octave
    (high, low) pairs give their high part; anything else is not a feature map."""
    if isinstance(output, torch.Tensor):
        return output if output.dim() == 4 else None
    if isinstance(output, (list, tuple)) and output and all(isinstance(t, torch.Tensor) or t is None
                                                            for t in output):
        maps = [t for t in output if t is not None and t.dim() == 4]
        if maps and all(t.shape[-2:] == maps[0].shape[-2:] for t in maps):
            return torch.cat(maps, dim=1)
        return maps[0] if maps else None
    return None


def default_feature_layers(model: nn.Module) -> list[str]:
    """The model's feature taps (`feature_info`) if it has them, else every Conv2d."""
    info = getattr(model, "feature_info", None)
    if info:
        return [entry["module"] for entry in info]
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def collect_features(model: nn.Module, inputs, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """Run `model` once on `inputs` (a tensor or a tuple of tensors) and return the named layers' outputs."""
    layers = list(layers)
    modules = _named_layers(model, layers)
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        def hook(_m, _i, out, name=name):
            fmap = _as_map(out)
            if fmap is not None:
                store[name] = fmap[:1].detach().float().cpu()
        handles.append(modules[name].register_forward_hook(hook))
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    silent = [name for name in layers if name not in store]
    if silent:
        raise LayerError(f"layer(s) produced no feature map in this forward pass: {silent}")
    return {name: store[name] for name in layers}


def plot_features(model: nn.Module, inputs, out_png_or_dir: str | os.PathLike,
                  layers: Sequence[str] | None = None, max_channels: int = 16, tile_px: int = 2) -> dict:
    """Draw the feature maps of one input, layer by layer, and the adjacent-layer similarity matrices.

    inputs: what `model(...)` takes (a tensor, or a (y, cbcr) tuple for DCT models); only the first image of
    the batch is drawn. layers: module names (default: the model's feature taps). The first `max_channels`
    channels of each layer are drawn, each normalized to its own range.

    out_png_or_dir ending in '.png': one figure with a row per layer and the similarity matrices below;
    otherwise a directory receiving `features_NN_<layer>.png` per layer and `similarity.png`.
    Returns dict(layers, shapes, similarity (list of (Ca, Cb) tensors, one per adjacent pair),
    mean_best_match (per pair: mean over the later layer's channels of their best similarity), files).
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers) if layers is not None else default_feature_layers(model)
    if not layers:
        raise ValueError("plot_features needs at least one layer")
    if max_channels < 1:
        raise ValueError(f"max_channels must be >= 1, got {max_channels}")
    maps = collect_features(model, inputs, layers)
    similarity = [feature_similarity(maps[a], maps[b]) for a, b in zip(layers, layers[1:])]
    best = [float(s.max(dim=0).values.mean()) for s in similarity]
    grids = []
    for name in layers:
        fmap = maps[name][0, :max_channels].numpy()
        grids.append(tile_grid(_normalize_tiles(fmap, symmetric=False), math.ceil(math.sqrt(len(fmap)))))

    plt = _pyplot()
    out = Path(out_png_or_dir)
    files: list[str] = []
    if out.suffix.lower() == ".png":
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = len(layers) + (1 if similarity else 0)
        cols = max(1, len(similarity))
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        for i, (name, grid) in enumerate(zip(layers, grids)):
            _draw_features(axes[i, 0], grid, name, maps[name].shape)
        for j, (s, b) in enumerate(zip(similarity, best)):
            _draw_similarity(fig, axes[-1, j], s, layers[j], layers[j + 1], b)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        files.append(str(out))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, (name, grid) in enumerate(zip(layers, grids)):
            fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] * tile_px / 100 + 0.5),
                                            max(2.0, grid.shape[0] * tile_px / 100 + 0.7)))
            ax.set_axis_off()
            _draw_features(ax, grid, name, maps[name].shape)
            path = out / f"features_{i:02d}_{name.replace('.', '_')}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            files.append(str(path))
        if similarity:
            fig, axes = plt.subplots(1, len(similarity), figsize=(3.4 * len(similarity), 3.2), squeeze=False)
            for j, (s, b) in enumerate(zip(similarity, best)):
                _draw_similarity(fig, axes[0, j], s, layers[j], layers[j + 1], b)
            fig.tight_layout()
            path = out / "similarity.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            files.append(str(path))
    return dict(layers=layers, shapes={n: tuple(maps[n].shape) for n in layers}, similarity=similarity,
                mean_best_match=best, files=files)


def _draw_features(ax, grid: np.ndarray, name: str, shape) -> None:
    import matplotlib
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{name} {tuple(shape[1:])}", fontsize=7)


def _draw_similarity(fig, ax, s: torch.Tensor, a: str, b: str, best: float) -> None:
    ax.set_axis_on()
    image = ax.imshow(s.numpy(), cmap="magma", vmin=-1, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_xlabel(b, fontsize=7)
    ax.set_ylabel(a, fontsize=7)
    ax.set_title(f"cosine similarity (best match {best:.2f})", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
