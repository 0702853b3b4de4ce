"""CIO (the CSPNet paper's memory traffic): exact counts on hand-computable networks and the paper's
dense-block formulas, plus sanity on real models."""
import pytest
import torch
from torch import nn

from jpegnet.models import create_model
from jpegnet.profile import cio_by_module, count_cio


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)  # not a conv: no traffic counted
        self.b = nn.Conv2d(4, 2, 1, stride=2)

    def forward(self, x):
        return self.b(self.pool(torch.relu(self.a(x))))


class PlainDenseBlock(nn.Module):
    """m single 3×3 conv layers of growth d, each fed everything before it: the paper's CIO model."""

    def __init__(self, c, m, d, partial=False):
        super().__init__()
        self.partial = partial
        base = c // 2 if partial else c
        self.layers = nn.ModuleList(nn.Conv2d(base + i * d, d, 3, padding=1) for i in range(m))

    def forward(self, x):
        if self.partial:  # x0′ crosses, x0″ goes through the dense block
            _, x = x.chunk(2, dim=1)
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def test_tiny_network_by_hand():
    x = torch.randn(1, 3, 8, 8)
    # a: in 3·8·8 + out 4·8·8; b: in 4·4·4 (after the pool) + out 2·2·2
    assert count_cio(Tiny(), (x,)) == (192 + 256) + (64 + 8)
    assert cio_by_module(Tiny(), (x,)) == {"a": 448, "b": 72}


@pytest.mark.parametrize("c,m,d", [(64, 6, 32), (16, 4, 8)])
def test_paper_dense_block_formulas(c, m, d):
    h = w = 4
    x = torch.randn(1, c, h, w)
    dense = count_cio(PlainDenseBlock(c, m, d), (x,))
    partial = count_cio(PlainDenseBlock(c, m, d, partial=True), (x,))
    assert dense == (c * m + (m * m + m) * d // 2) * h * w           # CSPNet paper: (c×m) + ((m²+m)×d)/2
    assert 2 * partial == (c * m + (m * m + m) * d) * h * w           # ((c×m) + (m²+m)×d)/2
    assert partial < dense


def test_conv_called_twice_counts_twice_and_batch_must_be_one():
    conv = nn.Conv2d(2, 2, 1)
    net = nn.Sequential(conv, conv)
    assert count_cio(net, (torch.randn(1, 2, 3, 3),)) == 2 * (18 + 18)
    with pytest.raises(ValueError, match="batch"):
        count_cio(net, (torch.randn(2, 2, 3, 3),))
    with pytest.raises(ValueError, match="depth"):
        cio_by_module(net, (torch.randn(1, 2, 3, 3),), depth=0)


def test_real_models():
    csp = create_model("cspresnet50")
    total = count_cio(csp, size=64)
    stages = cio_by_module(csp, size=64)
    assert sum(stages.values()) == total and list(stages) == ["stem", "stages"]
    per_stage = cio_by_module(csp, size=64, depth=2)
    assert list(per_stage) == ["stem.conv1", "stages.0", "stages.1", "stages.2", "stages.3"]
    # a 1/4 smaller input side means 1/16 of the traffic (all convs keep their stride pattern)
    assert count_cio(csp, size=256) == 16 * total
    # the stem conv alone: 3·64·64 in + 64·32·32 out
    assert per_stage["stem.conv1"] == 3 * 64 * 64 + 64 * 32 * 32
    # defaults to the model's own input size, and the DCT variant skips the full-resolution layers
    assert count_cio(create_model("dct_cspresnet50"), size=64) < total
