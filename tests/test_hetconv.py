"""HetConv2d: equality with a dense conv of the het pattern, exact FLOPs, and the HetConv model family."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from jpegnet.layers import HetConv2d
from jpegnet.models import create_model
from jpegnet.profile import count_flops, count_params


def het_reference_weight(layer: HetConv2d) -> torch.Tensor:
    """Built independently of the layer's own helpers: K×K kernels where i ≡ n (mod P), else 1×1."""
    n_out, n_in, k, p = layer.out_channels, layer.in_channels, layer.kernel_size, layer.part
    dense = torch.zeros(n_out, n_in, k, k)
    for n in range(n_out):
        kxk = [i for i in range(n_in) if i % p == n % p]
        one = [i for g in range(p) for i in range(g, n_in, p) if g != n % p]  # grouped order, own group left out
        for j, i in enumerate(kxk):
            dense[n, i] = layer.weight_kxk[n, j]
        for j, i in enumerate(one):
            dense[n, i, k // 2, k // 2] = layer.weight_1x1[n, j]
    return dense


@pytest.mark.parametrize("part,stride,k", [(1, 1, 3), (2, 1, 3), (4, 2, 3), (8, 1, 3), (4, 1, 5), (16, 2, 3)])
def test_equals_dense_conv_with_het_pattern(part, stride, k):
    torch.manual_seed(part)
    layer = HetConv2d(16, 32, k, part=part, stride=stride)
    x = torch.randn(2, 16, 11, 11, requires_grad=True)
    weight = het_reference_weight(layer) if part > 1 else layer.weight_kxk.detach()
    expected = F.conv2d(x, weight, None, stride, k // 2)
    out = layer(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.dense_weight(), weight)
    # The pattern itself: exactly M/P full kernels per filter, shifted by one channel per filter.
    if part > 1:
        full = (weight.flatten(2).ne(0).sum(-1) > 1)
        assert full.sum(1).eq(16 // part).all()
        assert full[0, 0] and full[1, 1 % part] and not full[1, 0]
    # gradients flow to both parameter tensors
    out.square().sum().backward()
    assert layer.weight_kxk.grad.abs().sum() > 0 and x.grad is not None
    if part > 1:
        assert layer.weight_1x1.grad.abs().sum() > 0


@pytest.mark.parametrize("part", [1, 2, 4, 8, 16, 32, 64])
def test_flops_and_params_match_formula(part):
    m, n, k, d = 64, 128, 3, 14
    layer = HetConv2d(m, n, k, part=part)
    with FlopCounterMode(display=False) as counter:
        layer(torch.randn(1, m, d, d))
    macs = d * d * n * (m // part * k * k + m - m // part)
    # flop_counter counts one multiply-add as 2 FLOPs
    assert counter.get_total_flops() == 2 * macs
    assert count_params(layer) == n * (m // part * k * k + m - m // part)


def test_stride_flops_use_output_size():
    layer = HetConv2d(32, 32, 3, part=4, stride=2)
    with FlopCounterMode(display=False) as counter:
        layer(torch.randn(1, 32, 16, 16))
    assert counter.get_total_flops() == 2 * 8 * 8 * 32 * (8 * 9 + 32 - 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        HetConv2d(10, 16, 3, part=4)
    with pytest.raises(ValueError, match="odd"):
        HetConv2d(16, 16, 2, part=2)
    with pytest.raises(ValueError):
        HetConv2d(16, 16, 3, part=0)
    with pytest.raises(ValueError):
        HetConv2d(16, 16, 3, part=2)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="part"):
        create_model("hetconv_vgg16_cifar", part=3)


# The paper's VGG-16 / CIFAR-10 FLOPs (as quoted in papers.md), millions of multiply-adds.
PAPER_VGG16_CIFAR = {1: 313.74, 2: 175.23, 4: 105.98, 8: 71.35, 16: 54.04, 32: 45.38, 64: 41.05}


@pytest.mark.parametrize("part", sorted(PAPER_VGG16_CIFAR))
def test_vgg16_cifar_flops_match_paper(part):
    model = create_model("hetconv_vgg16_cifar", num_classes=10, part=part)
    mflops = count_flops(model) / 2e6
    assert abs(mflops - PAPER_VGG16_CIFAR[part]) / PAPER_VGG16_CIFAR[part] < 0.003


def test_resnet50_counts():
    plain = create_model("hetconv_resnet50", part=1)
    assert count_params(plain) == 25_557_032  # torchvision resnet50
    het = create_model("hetconv_resnet50", part=4)
    # 3×3 convs (width w, 16 of them): 9·w² → w²·(9/4 + 3/4)
    widths = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    assert count_params(plain) - count_params(het) == sum(w * w * 6 for w in widths)


def test_resnet50_matches_torchvision_at_part1():
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet50().eval()
    ours = create_model("hetconv_resnet50", part=1).eval()
    ours.load_state_dict(ref.state_dict())  # P = 1 is a plain ResNet-50 with torchvision's key names
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,size", [("hetconv_vgg16_cifar", 32), ("hetconv_resnet50", 64)])
def test_interface_with_hetconv_layers(name, size):
    # test_all_models covers every model at its default part = 1 (plain convolutions); here part = 8
    model = create_model(name, num_classes=5, part=8)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    ref = model(x)
    cl = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.to(memory_format=torch.channels_last)), ref, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16


def test_dct_entry_resnet50():
    from jpegnet.models.dct_adapter import DctAdapter
    model = DctAdapter(create_model("hetconv_resnet50", num_classes=4, part=4))
    y, cbcr = model.example_inputs(1, 64)
    assert model(y, cbcr).shape == (1, 4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_compile_and_onnx(tmp_path):
    # A small HetConv stack: compile/export time grows with the number of slice convolutions, and the
    # layer is what is new here (the VGG/ResNet around it are ordinary modules).
    onnx = pytest.importorskip("onnx")
    model = torch.nn.Sequential(HetConv2d(16, 32, 3, part=4), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                                HetConv2d(32, 32, 3, part=4, stride=2)).eval()
    x = torch.randn(1, 16, 16, 16)
    ref = model(x)
    # aot_eager: the graph capture every backend shares; inductor's code generation is checked once (test_vgnet)
    torch.testing.assert_close(torch.compile(model, backend="aot_eager")(x), ref, atol=1e-4, rtol=1e-4)
    path = tmp_path / "het.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
