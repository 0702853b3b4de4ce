"""The Exact Fusion Model neck: shapes, which scales feed which outputs, Maxout, gradients, errors."""
import pytest
import torch

from jpegnet.models import create_model
from jpegnet.models.efm import EFM, Maxout


def _pyramid(batch=2, size=64, chs=(40, 112, 320), reductions=(8, 16, 32), requires_grad=False):
    return [torch.randn(batch, c, size // r, size // r, requires_grad=requires_grad)
            for c, r in zip(chs, reductions)]


def test_output_shapes_follow_each_scale():
    efm = EFM([40, 112, 320], out_channels=64)
    outs = efm(_pyramid())
    assert [tuple(o.shape) for o in outs] == [(2, 64, 8, 8), (2, 64, 4, 4), (2, 64, 2, 2)]
    # scale s fuses s-1, s, s+1: the edges have one neighbour
    assert [m.conv.in_channels for m in efm.fuse] == [40 + 112, 40 + 112 + 320, 112 + 320]
    assert [m.conv.out_channels for m in efm.fuse] == [128, 128, 128]  # 2 Maxout pieces per channel


def test_each_output_depends_on_exactly_its_neighbouring_scales():
    efm = EFM([8, 16, 32], out_channels=4).eval()
    feats = _pyramid(1, 64, (8, 16, 32), (4, 8, 16), requires_grad=True)
    outs = efm(feats)
    for s, out in enumerate(outs):
        grads = torch.autograd.grad(out.sum(), feats, allow_unused=True)
        used = [g is not None and g.abs().sum().item() > 0 for g in grads]
        assert used == [abs(j - s) <= 1 for j in range(3)], f"scale {s}"


def test_gradients_reach_every_input_and_parameter():
    efm = EFM([8, 16, 32], out_channels=4)
    feats = _pyramid(2, 64, (8, 16, 32), (4, 8, 16), requires_grad=True)
    sum(o.square().sum() for o in efm(feats)).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in efm.parameters())


def test_maxout_takes_the_max_of_its_pieces():
    m = Maxout(3, 2, pieces=3).eval()
    x = torch.randn(1, 3, 4, 4)
    pre = m.bn(m.conv(x))  # channels [c0p0, c0p1, c0p2, c1p0, c1p1, c1p2]
    expected = torch.stack([pre[:, 0:3].amax(1), pre[:, 3:6].amax(1)], dim=1)
    assert torch.equal(m(x), expected)
    with pytest.raises(ValueError):
        Maxout(3, 2, pieces=1)


def test_neck_over_a_features_only_backbone():
    backbone = create_model("cspresnet50", features_only=True, out_indices=(2, 3, 4))
    efm = EFM.from_backbone(backbone, out_channels=32)
    assert efm.in_channels == [256, 512, 1024]
    x = torch.randn(1, 3, 64, 64)
    outs = efm(backbone(x))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 8), (1, 32, 4, 4), (1, 32, 2, 2)]
    sum(o.sum() for o in outs).backward()
    assert backbone.model.stem.conv1.conv.weight.grad.abs().sum() > 0


def test_odd_sizes_are_resized_exactly():
    efm = EFM([4, 4, 4], out_channels=2)
    outs = efm([torch.randn(1, 4, 13, 13), torch.randn(1, 4, 7, 7), torch.randn(1, 4, 4, 4)])
    assert [o.shape[-1] for o in outs] == [13, 7, 4]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="two scales"):
        EFM([8])
    efm = EFM([8, 16, 32])
    with pytest.raises(ValueError, match="3 scales"):
        efm(_pyramid(1, 64, (8, 16), (4, 8)))
    with pytest.raises(ValueError, match="scale 1"):
        efm(_pyramid(1, 64, (8, 15, 32), (4, 8, 16)))
