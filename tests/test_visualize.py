"""Visualization: kernel grids, feature maps and adjacent-layer similarity, drawn to PNG files."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from jpegnet.layers import HetConv2d
from jpegnet.models import create_model
from jpegnet.errors import JpegnetError
from jpegnet.visualize import (LayerError, NotAConvolutionError, default_kernel_layers, feature_similarity,
                               kernel_grid, layer_kernels, plot_features, plot_kernels, tile_grid)


def test_tile_grid_layout():
    tiles = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    grid = tile_grid(tiles, cols=2, pad=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1)  # 3 rows of 2-px tiles, 2 cols of 3-px tiles, 1-px gaps
    np.testing.assert_array_equal(grid[1:3, 5:8], tiles[1])  # tile 1: row 0, col 1
    np.testing.assert_array_equal(grid[7:9, 1:4], tiles[4])  # tile 4: row 2, col 0
    assert np.isnan(grid[7:9, 5:8]).all()  # the empty sixth slot
    assert np.isnan(grid[0]).all() and np.isnan(grid[:, 4]).all()


def test_kernel_grids_dense_and_depthwise():
    dense = nn.Conv2d(3, 5, 3)
    w, dw = layer_kernels(dense)
    mosaic, grid = kernel_grid(w, dw)
    assert not dw and grid == (5, 3) and mosaic.shape == (5 * 4 + 1, 3 * 4 + 1)
    depthwise = nn.Conv2d(10, 10, 3, groups=10)
    w, dw = layer_kernels(depthwise)
    mosaic, grid = kernel_grid(w, dw)
    assert dw and grid == (3, 4)  # 10 kernels in a near-square grid
    # each kernel is scaled to its own max |value|: the largest tap of every tile is exactly ±1
    tiles = [mosaic[1 + r * 4:4 + r * 4, 1 + c * 4:4 + c * 4] for r in range(3) for c in range(4)][:10]
    assert all(np.nanmax(np.abs(t)) == pytest.approx(1.0) for t in tiles)
    het = HetConv2d(8, 8, 3, part=4)
    w, dw = layer_kernels(het)
    assert not dw and w.shape == (8, 8, 3, 3)


def test_plot_kernels_png(tmp_path):
    model = create_model("vgnetf_1_5mp")
    out = tmp_path / "kernels.png"
    info = plot_kernels(model, ["stem.conv", "stage2.blocks.1.dw.0", "stage2.blocks.0.downsample"], out)
    assert [i["grid"] for i in info] == [(32, 3), (8, 8), (8, 8)]
    assert [i["depthwise"] for i in info] == [False, True, True]
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    # three panels, the tall dense one first: taller than wide, and not blank
    assert pixels.shape[0] > pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    with pytest.raises(LayerError, match="no such layer") as missing:
        plot_kernels(model, ["stage9"], out)
    with pytest.raises(NotAConvolutionError) as not_conv:
        plot_kernels(model, ["stage1"], out)
    # typed for the command's one-line report, and still the builtins library callers catch
    assert isinstance(missing.value, (JpegnetError, ValueError)) and isinstance(not_conv.value, TypeError)
    assert isinstance(not_conv.value, JpegnetError)


def test_default_kernel_layers_prefers_spatial_kernels():
    assert default_kernel_layers(create_model("resnet50")) == ["conv1", "layer1.0.conv2"]
    only_pointwise = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    assert default_kernel_layers(only_pointwise, count=5) == ["0", "2"]
    with pytest.raises(LayerError, match="has no convolution layer to draw"):
        default_kernel_layers(nn.Sequential(nn.Linear(2, 2)))


def test_similarity_on_constructed_maps():
    torch.manual_seed(0)
    a = torch.randn(6, 8, 8)
    s = feature_similarity(a, a.clone())
    torch.testing.assert_close(torch.diagonal(s), torch.ones(6))  # identical maps: similarity 1
    assert s.shape == (6, 6)
    # scaled and negated copies: +1 and −1; a map that is orthogonal: 0
    b = torch.stack([3 * a[0], -a[1], torch.zeros(8, 8)])
    s = feature_similarity(a, b)
    assert s[0, 0] == pytest.approx(1.0, abs=1e-6) and s[1, 1] == pytest.approx(-1.0, abs=1e-6)
    assert (s[:, 2] == 0).all()
    x = torch.zeros(1, 8, 8)
    x[0, :4] = 1
    y = torch.zeros(1, 8, 8)
    y[0, 4:] = 1
    assert feature_similarity(x, y).item() == pytest.approx(0.0)
    # different resolutions: the larger map is average-pooled to the smaller one
    big = a.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    torch.testing.assert_close(torch.diagonal(feature_similarity(big, a)), torch.ones(6))
    with pytest.raises(ValueError):
        feature_similarity(torch.randn(2, 3, 4, 4), a)


class _Repeat(nn.Module):
    """conv, then two identities: adjacent identical layers must show similarity 1 in plot_features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.same1 = nn.Identity()
        self.same2 = nn.Identity()

    def forward(self, x):
        return self.same2(self.same1(self.conv(x)))


def test_plot_features_single_png(tmp_path):
    out = tmp_path / "features.png"
    result = plot_features(_Repeat(), torch.randn(1, 3, 16, 16), out, layers=["conv", "same1", "same2"])
    assert result["files"] == [str(out)]
    assert len(result["similarity"]) == 2
    for s in result["similarity"]:
        torch.testing.assert_close(torch.diagonal(s), torch.ones(4))
    assert result["mean_best_match"] == [pytest.approx(1.0), pytest.approx(1.0)]
    with Image.open(out) as image:
        image.load()
        assert image.size[0] > 200 and image.size[1] > 200


def test_plot_features_directory_on_vgnet(tmp_path):
    model = create_model("vgnetg_1_0mp")
    layers = [f"stage3.blocks.{i}" for i in range(3)]
    result = plot_features(model, torch.randn(1, 3, 64, 64), tmp_path / "maps", layers=layers, max_channels=9)
    names = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert names == ["features_00_stage3_blocks_0.png", "features_01_stage3_blocks_1.png",
                     "features_02_stage3_blocks_2.png", "similarity.png"]
    assert result["shapes"]["stage3.blocks.1"] == (1, 224, 4, 4)  # the block's pair, concatenated
    # a HalfIdentityBlock hands its input's second half on unchanged: those 112 channels of block i
    # reappear as the first 112 channels of block i+1, so their similarity is exactly 1
    s = result["similarity"][0]
    torch.testing.assert_close(torch.diagonal(s[112:, :112]), torch.ones(112))
    for path in names:
        with Image.open(tmp_path / "maps" / path) as image:
            image.load()
            assert image.format == "PNG"


def test_plot_features_dct_model_default_layers(tmp_path):
    model = create_model("dct_vgnetg_1_0mp")
    result = plot_features(model, model.example_inputs(1, 64), tmp_path / "dct.png")
    assert result["layers"] == ["stem", "backbone.stage3", "backbone.final_conv"]
