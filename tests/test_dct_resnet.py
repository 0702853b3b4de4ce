"""The seven DCT ResNets of Gueguen et al. 2018: golden sizes, shapes at any multiple of 16, interface,
and taking shared blocks from an RGB ResNet-50."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from jpegnet.layers import fuse_bn
from jpegnet.models import create_model, list_models
from jpegnet.models.dct_resnet import DCT_RESNET_VARIANTS, load_shared_from_resnet50
from jpegnet.models.pretrained import init_from
from jpegnet.models.resnet import Bottleneck
from jpegnet.profile import count_flops, count_params

# Measured with jpegnet.profile at 224×224 (y 28×28, cbcr 14×14), 1000 classes; FLOPs in flop_counter's
# convention (1 multiply-add = 2 FLOPs). Late-Concat-RFA equals the reference prototype's 27,342,184
# parameters / 5.23 GMACs (anchors.md). The Thinner's prototype (25,737,576 / 3.97) built its luma CB3 without
# the ConvBlock's projection; with it: 25,885,800 / 4.09, as anchors.md and the hand count below say.
GOLDEN = {
    "dct_upsampling": (25_291_112, 6_388_088_832),
    "dct_upsampling_rfa": (28_308_840, 11_102_224_384),
    "dct_deconvolution_rfa": (28_341_608, 11_115_069_440),
    "dct_downsampling": (25_479_912, 4_930_174_976),
    "dct_late_concat": (27_927_912, 11_070_111_744),
    "dct_late_concat_rfa": (27_342_184, 10_453_549_056),
    "dct_late_concat_rfa_thinner": (25_885_800, 8_179_974_144),
}

SMALL = dict(width_multiplier=0.125)


def small_model(name: str, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, **SMALL)


def inputs(batch: int, h: int, w: int, requires_grad: bool = False):
    y = torch.randn(batch, 64, h // 8, w // 8, requires_grad=requires_grad)
    cbcr = torch.randn(batch, 128, h // 16, w // 16, requires_grad=requires_grad)
    return y, cbcr


def test_all_seven_registered():
    assert set(DCT_RESNET_VARIANTS) <= set(list_models("dct_*"))
    assert len(DCT_RESNET_VARIANTS) == 7


@pytest.mark.parametrize("name", DCT_RESNET_VARIANTS)
def test_golden_params_and_flops(name):
    # Shapes alone fix both numbers, so the model is built on the meta device (no memory, no compute).
    with torch.device("meta"):
        model = create_model(name)
        example = model.example_inputs(1, 224)
    params, flops = GOLDEN[name]
    assert count_params(model) == params
    assert count_flops(model, example) == flops
    assert model.input_config.representation == "dct"


# Figure S1, block by block: the blocks it marks CB (ConvBlock: projection shortcut, even when the shape is
# kept); every other Bottleneck is an IB. Post-merge stages as in ResNet-50 (CB3/CB4/CB5 + IBs).
FIGURE_CONV_BLOCKS = {
    "dct_upsampling": ["layer2.0", "layer3.0", "layer4.0"],                      # CB3 (s=1), CB4, CB5
    "dct_upsampling_rfa": ["rfa_stage.0", "layer2.0", "layer3.0", "layer4.0"],   # CB4 (k=1, s=1) first
    "dct_deconvolution_rfa": ["rfa_stage.0", "layer2.0", "layer3.0", "layer4.0"],
    "dct_downsampling": ["layer2.0", "layer3.0", "layer4.0"],                    # CB3 (s=1), CB4 (s=1), CB5
    # luma CB4 (s=1) + 3 IB, CB4; chroma CB4 (k=1, s=1); after the concat stage 4's IBs, CB5
    "dct_late_concat": ["y_stage2.0", "y_stage3.0", "cbcr_stage.0", "layer4.0"],
    # luma CB4 (k=1, s=1), IB(k=2), IB, CB3 (s=1) + 3 IB, CB4; chroma CB4 (k=1, s=1)
    "dct_late_concat_rfa": ["y_stage1.0", "y_stage2.0", "y_stage3.0", "cbcr_stage.0", "layer4.0"],
    "dct_late_concat_rfa_thinner": ["y_stage1.0", "y_stage2.0", "y_stage3.0", "cbcr_stage.0", "layer4.0"],
}


@pytest.mark.parametrize("name", DCT_RESNET_VARIANTS)
def test_conv_blocks_are_where_the_figure_puts_them(name):
    with torch.device("meta"):
        model = create_model(name)
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, Bottleneck)}
    assert sorted(n for n, b in blocks.items() if b.downsample is not None) == sorted(FIGURE_CONV_BLOCKS[name])
    for n, b in blocks.items():  # an IB adds its input unchanged, so it must keep the shape
        if b.downsample is None:
            assert b.conv1.in_channels == b.conv3.out_channels and b.conv2.stride == (1, 1), n


def bottleneck_cost(cin: int, width: int, cout: int, size: int, kernel: int = 3, stride: int = 1,
                    projection: bool = False) -> tuple[int, int]:
    """(parameters, multiply-adds) of a bottleneck on a size×size input, counted from its layers: 1×1
    reduce at the input size, k×k (stride) and 1×1 expand at the output size, optional 1×1 projection (stride);
    each conv bias-free with a BN (2 parameters per channel)."""
    out = size // stride
    params = cin * width + width * width * kernel * kernel + width * cout + 2 * (width + width + cout)
    macs = cin * width * size * size + (width * width * kernel * kernel + width * cout) * out * out
    if projection:
        params += cin * cout + 2 * cout
        macs += cin * cout * out * out
    return params, macs


def total(*costs: tuple[int, int]) -> tuple[int, int]:
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def resnet50_tail(classes: int = 1000) -> list[tuple[int, int]]:
    """ResNet-50's stage-4 IdentityBlocks 1..5 at 14×14, stage 5 (CB s=2 + 2 IB), and the fc."""
    return ([bottleneck_cost(1024, 256, 1024, 14)] * 5
            + [bottleneck_cost(1024, 512, 2048, 14, stride=2, projection=True)]
            + [bottleneck_cost(2048, 512, 2048, 7)] * 2
            + [(2048 * classes + classes, 2048 * classes)])


def test_hand_count_of_resnet50_and_the_thinner():
    """Independent of the model code: parameters and MACs added up from the blocks the figure lists."""
    stem = (64 * 3 * 49 + 2 * 64, 64 * 3 * 49 * 112 * 112)  # 7×7 s2 conv + BN
    resnet50 = total(stem, bottleneck_cost(64, 64, 256, 56, projection=True), *[bottleneck_cost(256, 64, 256, 56)] * 2,
                     bottleneck_cost(256, 128, 512, 56, stride=2, projection=True),
                     *[bottleneck_cost(512, 128, 512, 28)] * 3,
                     bottleneck_cost(512, 256, 1024, 28, stride=2, projection=True), *resnet50_tail())
    assert resnet50[0] == 25_557_032  # torchvision's count: the helper counts right
    thinner = total(
        (2 * 64, 0), (2 * 128, 0),                                                   # BN on y and on cbcr
        bottleneck_cost(64, 256, 384, 28, kernel=1, projection=True),                # CB4 (k=1, s=1)
        bottleneck_cost(384, 256, 384, 28, kernel=2), bottleneck_cost(384, 256, 384, 28),  # IB(k=2), IB
        bottleneck_cost(384, 128, 384, 28, projection=True),                         # CB3 (s=1): 384 -> 384
        *[bottleneck_cost(384, 128, 384, 28)] * 3,                                   # 3 IB
        bottleneck_cost(384, 128, 768, 28, stride=2, projection=True),               # CB4 (s=2) -> 768
        bottleneck_cost(128, 128, 256, 14, kernel=1, projection=True),               # chroma CB4 (k=1) -> 256
        *resnet50_tail())
    assert thinner[0] == 25_885_800 and round(thinner[1] / 1e9, 2) == 4.09  # the independent count
    # the CB3 projection is the whole difference to the prototype's 25,737,576 / 3.97 GMACs
    assert thinner[0] - (384 * 384 + 2 * 384) == 25_737_576
    assert round((thinner[1] - 384 * 384 * 28 * 28) / 1e9, 2) == 3.97
    with torch.device("meta"):
        for name, (params, macs) in (("resnet50", resnet50), ("dct_late_concat_rfa_thinner", thinner)):
            model = create_model(name)
            assert count_params(model) == params
            assert count_flops(model, model.example_inputs(1, 224)) == 2 * macs


def test_depth_multiplier_scales_the_block_groups():
    model = create_model("dct_late_concat_rfa", depth_multiplier=1.5, width_multiplier=0.125)
    # RFA group 3 -> 5 (kernels 1, 2 lead), y_stage2 4 -> 6, stage 4: 6 -> 9 = y_stage3's CB + 8 IB, stage 5 3 -> 5
    assert [b.conv2.kernel_size[0] for b in model.y_stage1] == [1, 2, 3, 3, 3]
    assert [len(model.y_stage2), len(model.y_stage3), len(model.layer3), len(model.layer4)] == [6, 1, 8, 5]
    assert [k for k, _ in model.layer3.named_children()] == [str(i) for i in range(1, 9)]
    assert model.layer3[0].downsample is None and model.y_stage2[0].downsample is not None
    small = create_model("dct_upsampling_rfa", depth_multiplier=0.25, width_multiplier=0.125)
    assert [b.conv2.kernel_size[0] for b in small.rfa_stage] == [1]
    assert [len(small.layer2), len(small.layer3), len(small.layer4)] == [1, 2, 1]
    assert create_model("dct_upsampling", depth_multiplier=1.0).depth_multiplier == 1.0
    with pytest.raises(ValueError):
        create_model("dct_downsampling", depth_multiplier=0)


def test_thinner_channel_table():
    model = create_model("dct_late_concat_rfa_thinner")
    assert [model.y_stage1[-1].conv3.out_channels, model.y_stage2[-1].conv3.out_channels,
            model.y_stage3[-1].conv3.out_channels, model.cbcr_stage[-1].conv3.out_channels] == [384, 384, 768, 256]
    rfa = create_model("dct_late_concat_rfa")
    assert [rfa.y_stage1[-1].conv3.out_channels, rfa.y_stage2[-1].conv3.out_channels,
            rfa.y_stage3[-1].conv3.out_channels, rfa.cbcr_stage[-1].conv3.out_channels] == [1024, 512, 512, 512]
    # receptive-field-aware blocks: middle kernels 1, 2, 3
    assert [b.conv2.kernel_size for b in rfa.y_stage1] == [(1, 1), (2, 2), (3, 3)]
    assert [b.conv2.kernel_size for b in create_model("dct_upsampling_rfa").rfa_stage] == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize("name", DCT_RESNET_VARIANTS)
def test_forward_backward_and_features_any_multiple_of_16(name):
    model = small_model(name)
    for h, w in ((64, 64), (64, 96)):
        y, cbcr = inputs(2, h, w, requires_grad=True)
        out = model(y, cbcr)
        assert out.shape == (2, 10)
        out.square().mean().backward()
        assert y.grad.abs().sum() > 0 and cbcr.grad.abs().sum() > 0  # both inputs reach the output
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    extractor = create_model(name, features_only=True, **SMALL)
    y, cbcr = inputs(1, 64, 96)
    feats = extractor(y, cbcr)
    assert len(feats) == len(extractor.feature_info) >= 3
    for f, info in zip(feats, extractor.feature_info):
        assert f.shape == (1, info["num_chs"], 64 // info["reduction"], 96 // info["reduction"])
    assert extractor.feature_info[-1]["reduction"] == 32


def test_bad_inputs_raise_value_error():
    model = small_model("dct_late_concat_rfa").eval()
    y, cbcr = inputs(1, 64, 64)
    with pytest.raises(ValueError, match="half"):
        model(y, torch.randn(1, 128, 8, 8))
    with pytest.raises(ValueError, match="expected y"):
        model(torch.randn(1, 3, 8, 8), cbcr)
    with pytest.raises(ValueError, match="multiple of 16"):
        model.example_inputs(1, 72)
    with pytest.raises(ValueError):
        create_model("dct_upsampling", width_multiplier=0)


def test_reset_classifier_and_pre_logits():
    model = small_model("dct_upsampling").eval()
    y, cbcr = inputs(1, 32, 32)
    assert model.forward_head(model.forward_features(y, cbcr), pre_logits=True).shape == (1, 256)
    model.reset_classifier(3)
    assert model(y, cbcr).shape == (1, 3)
    model.reset_classifier(0)
    assert model(y, cbcr).shape == (1, 256)


def test_channels_last_and_autocast():
    model = small_model("dct_deconvolution_rfa").eval()
    y, cbcr = inputs(2, 32, 48)
    with torch.no_grad():
        ref = model(y, cbcr)
        model = model.to(memory_format=torch.channels_last)
        cl = [t.to(memory_format=torch.channels_last) for t in (y, cbcr)]
        feats = model.forward_features(*cl)
        assert feats.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(model.forward_head(feats), ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(*cl)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.1 * ref.abs().max().item())


def test_onnx_export():
    onnx = pytest.importorskip("onnx")
    model = small_model("dct_late_concat_rfa_thinner").eval()  # has the k=2 (padded) and k=1 blocks
    y, cbcr = inputs(1, 32, 32)
    buffer = io.BytesIO()
    torch.onnx.export(model, (y, cbcr), dynamo=True, input_names=["y", "cbcr"]).save(buffer)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["y", "cbcr"]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 10]


def test_fuse_bn_on_dct_model():
    model = small_model("dct_late_concat_rfa")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    fused = fuse_bn(model)
    # Only the BNs on the raw inputs stay (they precede, not follow, a conv).
    assert sorted(n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)) == ["bn_cbcr", "bn_y"]
    y, cbcr = inputs(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(y, cbcr), model(y, cbcr), atol=1e-4, rtol=1e-4)


def test_load_shared_from_resnet50():
    torch.manual_seed(3)
    rgb = create_model("resnet50").state_dict()
    model = create_model("dct_late_concat_rfa")
    loaded = load_shared_from_resnet50(model, rgb)
    own = model.state_dict()
    blocks = sorted({".".join(k.split(".")[:2]) if k.split(".")[1].isdigit() else k.split(".")[0] for k in loaded})
    # layer3 blocks 1-5, all of layer4, fc, and y_stage2's identity blocks (ResNet-50's layer2.1-3)
    assert blocks == (["fc"] + [f"layer3.{i}" for i in range(1, 6)] + [f"layer4.{i}" for i in range(3)]
                      + [f"y_stage2.{i}" for i in range(1, 4)])
    assert torch.equal(own["layer4.0.downsample.0.weight"], rgb["layer4.0.downsample.0.weight"])
    assert torch.equal(own["y_stage2.2.conv2.weight"], rgb["layer2.2.conv2.weight"])
    assert torch.equal(own["layer3.5.bn3.running_var"], rgb["layer3.5.bn3.running_var"])
    # y_stage2.0 takes 1024 channels (ResNet-50's layer2.0 takes 256): left as initialised, not half-loaded
    assert not any(k.startswith("y_stage2.0.") for k in loaded)
    assert not torch.equal(own["y_stage2.0.conv2.weight"], rgb["layer2.0.conv2.weight"])

    up = create_model("dct_upsampling", num_classes=10)
    loaded_up = load_shared_from_resnet50(up, rgb, include_fc=True)
    assert "layer3.0.conv1.weight" in loaded_up and "layer2.1.conv1.weight" in loaded_up
    assert not any(k.startswith(("layer2.0.", "fc.", "stem.")) for k in loaded_up)  # 192-ch input; 10 classes
    down = create_model("dct_downsampling")
    assert "fc.weight" not in load_shared_from_resnet50(down, rgb, include_fc=False)


def test_thinner_takes_resnet50_weights(tmp_path):
    """The Thinner's new CB3 projection changes no shared block: it still takes ResNet-50's stage-4 IBs,
    stage 5 and fc, and its own luma / chroma blocks (y_stage2.0 with its projection included) stay new."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(4)
    rgb = torchvision.models.resnet50().state_dict()
    model = create_model("dct_late_concat_rfa_thinner")
    assert "y_stage2.0.downsample.0.weight" in model.state_dict()  # named as every other projection
    assert tuple(model.state_dict()["y_stage2.0.downsample.0.weight"].shape) == (384, 384, 1, 1)
    loaded = load_shared_from_resnet50(model, rgb)
    assert {k.rsplit(".", 1)[0].split(".")[0] for k in loaded} == {"layer3", "layer4", "fc"}
    assert torch.equal(model.state_dict()["layer3.1.conv1.weight"], rgb["layer3.1.conv1.weight"])
    # through the `--init-from` path, from a torchvision state dict file
    path = tmp_path / "resnet50.pth"
    torch.save(rgb, path)
    fresh = create_model("dct_late_concat_rfa_thinner", num_classes=10)
    report = init_from(fresh, str(path), "dct_late_concat_rfa_thinner")
    assert "layer4.0.downsample.0.weight" in report.loaded and "y_stage2.0.downsample.0.weight" in report.new
    assert torch.equal(fresh.state_dict()["layer4.2.conv3.weight"], rgb["layer4.2.conv3.weight"])
