"""CSPNet: golden sizes (timm's layout for CSPResNet-50 / CSPResNeXt-50 / CSPDarknet-53), timm weight parity,
the partial dense block and its three fusion layouts, the feature table, the DCT variant, torch.compile (aot_eager) and
the ONNX graph's convolutions. (Forward / backward, the classifier interface, features_only maps, ONNX export of
every model: test_all_models.py.)"""
import io

import pytest
import torch
from torch import nn

from jpegnet.models import create_model, import_weights, list_models
from jpegnet.models.cspnet import CspDenseNet, PartialDenseStage
from jpegnet.models.weights import WeightImportError
from jpegnet.profile import cio_by_module, count_flops, count_params

# (params, FLOPs at 256×256 with torch.utils.flop_counter, 2 FLOPs per MAC). Params equal timm's exactly;
# timm's own table says 4.54 / 4.05 / 6.57 GMACs, which also counts non-conv ops.
CSP_GOLDEN = {
    "cspresnet50": (21_616_168, 9_034_481_664),
    "cspresnext50": (20_569_896, 8_029_896_704),
    "cspdarknet53": (27_642_184, 13_067_304_960),
}
# our own design (no external reference exists): params, FLOPs at 224×224 (cspdensenet201: 8,387,333,120),
# and FLOPs at 64×64 (what the test runs, to stay fast)
CSPDENSENET_GOLDEN = {"cspdensenet201": (19_185_224, 686_443_520), "cspdensenet_small": (698_621, 50_157_784)}


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name", sorted(CSP_GOLDEN))
def test_csp_golden_params_and_flops(name):
    model = create_model(name)
    params, flops = CSP_GOLDEN[name]
    assert count_params(model) == params
    assert model.input_config.input_size == (256, 256)
    assert count_flops(model) == flops


@pytest.mark.parametrize("name", sorted(CSPDENSENET_GOLDEN))
def test_cspdensenet_golden_params_and_flops(name):
    model = create_model(name)
    params, flops = CSPDENSENET_GOLDEN[name]
    assert count_params(model) == params
    assert count_flops(model, size=64) == flops


@pytest.mark.parametrize("name", sorted(CSP_GOLDEN))
def test_timm_import_gives_timm_outputs(name):
    timm = pytest.importorskip("timm")
    theirs = _randomize_bn(timm.create_model(name, pretrained=False))
    ours = import_weights(create_model(name), theirs.state_dict(), "timm").eval()
    assert count_params(ours) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-2
    assert (got - expected).abs().max().item() <= 1e-4


def test_timm_import_refuses_other_models():
    timm = pytest.importorskip("timm")
    with pytest.raises(WeightImportError):
        import_weights(create_model("cspresnet50"), timm.create_model("cspresnext50").state_dict(), "timm")
    with pytest.raises(WeightImportError):
        import_weights(create_model("cspresnet50"), {"head.weight": torch.zeros(1)}, "timm")
    with pytest.raises(WeightImportError):
        import_weights(create_model("cspdensenet_small"), {}, "timm")


def test_tiny_cspdensenet_params_by_hand():
    """One stage, c=8 (4 cross, 4 through), 2 dense layers with growth 4 and bn_size 2, 3 classes."""
    def tiny(fusion):
        return CspDenseNet(block_layers=(2,), growth_rate=4, stem_channels=8, bn_size=2, fusion=fusion,
                           num_classes=3)
    stem = 3 * 8 * 49 + 2 * 8
    dense = (2 * 4 + 4 * 8 + 2 * 8 + 8 * 4 * 9) + (2 * 8 + 8 * 8 + 2 * 8 + 8 * 4 * 9)  # dense out: 4 + 2·4 = 12
    transition_b = 2 * 12 + 12 * 6                      # 12 → 6 (compression 0.5)
    # both: concat 4 + 6 = 10 → 0.5·(4 + 12) = 8; first: concat 4 + 12 = 16 → 8; last: output 4 + 6 = 10
    assert count_params(tiny("both")) == stem + dense + transition_b + (2 * 10 + 10 * 8) + 2 * 8 + 8 * 3 + 3
    assert count_params(tiny("first")) == stem + dense + (2 * 16 + 16 * 8) + 2 * 8 + 8 * 3 + 3
    assert count_params(tiny("last")) == stem + dense + transition_b + 2 * 10 + 10 * 3 + 3


def test_full_ratio_fusion_first_is_densenet201_plus_one_transition():
    """part_ratio=1 leaves nothing to cross and fusion 'first' is DenseNet's transition: the model is then
    torchvision's DenseNet-201 plus a 1×1 transition (1920 → 960) after the last dense block."""
    torchvision = pytest.importorskip("torchvision")
    ours = create_model("cspdensenet", part_ratio=1.0, fusion="first")
    dn201 = count_params(torchvision.models.densenet201(weights=None))
    extra_transition = 2 * 1920 + 1920 * 960
    head_change = (2 * 960 - 2 * 1920) + (960 - 1920) * 1000  # norm and fc on 960 instead of 1920 channels
    assert count_params(ours) == dn201 + extra_transition + head_change


def test_partial_dense_block_saves_cio_of_half_the_base():
    """Same base, same fusion: the dense block's CIO drops by exactly m · c/2 · h · w (the channels that
    no longer enter each of the m layers' first convs), the paper's point about memory traffic."""
    kw = dict(block_layers=(3, 4), growth_rate=8, fusion="first", num_classes=0)
    full, partial = CspDenseNet(part_ratio=1.0, **kw), CspDenseNet(part_ratio=0.5, **kw)
    x = torch.randn(1, 3, 64, 64)
    cio_full, cio_partial = cio_by_module(full, (x,), depth=3), cio_by_module(partial, (x,), depth=3)
    base, hw = 64, 16 * 16  # stage 0: the 64-channel stem output at 1/4 resolution
    assert cio_full["stages.0.dense"] - cio_partial["stages.0.dense"] == 3 * (base // 2) * hw
    base, hw = full.stages[0].out_channels, 8 * 8
    assert base == partial.stages[0].out_channels
    assert cio_full["stages.1.dense"] - cio_partial["stages.1.dense"] == 4 * (base // 2) * hw
    assert sum(cio_partial.values()) < sum(cio_full.values())


def test_fusion_layouts_wire_the_transitions():
    x = torch.randn(1, 16, 8, 8)
    both = PartialDenseStage(16, 2, 4, 4, 0.5, "both", 0.5, downsample=False)
    first = PartialDenseStage(16, 2, 4, 4, 0.5, "first", 0.5, downsample=False)
    last = PartialDenseStage(16, 2, 4, 4, 0.5, "last", 0.5, downsample=False)
    assert isinstance(first.transition_b, nn.Identity) and isinstance(last.transition, nn.Identity)
    assert [s(x).shape[1] for s in (both, first, last)] == [both.out_channels, first.out_channels,
                                                          last.out_channels] == [12, 12, 8 + 8]
    # fusion last: the crossing half is passed through untouched, the output's first channels are x0′
    assert torch.equal(last.eval()(x)[:, :8], x[:, :8])
    with pytest.raises(ValueError, match="fusion"):
        CspDenseNet(fusion="middle")
    with pytest.raises(ValueError, match="part_ratio"):
        CspDenseNet(part_ratio=0.0)


@pytest.mark.parametrize("name,chs,reds", [
    ("cspresnet50", [64, 128, 256, 512, 1024], [2, 4, 8, 16, 32]),
    ("cspresnext50", [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    ("cspdarknet53", [32, 64, 128, 256, 512, 1024], [1, 2, 4, 8, 16, 32]),
    # stage widths 0.5 · (c + m·k): 0.5·(32+3·16)=40, 0.5·(40+6·16)=68, 0.5·(68+12·16)=130, 0.5·(130+8·16)=129
    ("cspdensenet_small", [32, 40, 68, 130, 129], [2, 4, 8, 16, 32]),
])
def test_feature_table(name, chs, reds):
    # that the maps have these shapes is test_all_models' check; these are the family's channel tables
    with torch.device("meta"):
        features = create_model(name, features_only=True)
    assert [i["num_chs"] for i in features.feature_info] == chs
    assert [i["reduction"] for i in features.feature_info] == reds
    with pytest.raises(ValueError):
        create_model("cspresnet50", num_classes=-3)


def test_dct_cspresnet50_enters_at_stride_8():
    assert "dct_cspresnet50" in list_models("dct_csp*")
    model = create_model("dct_cspresnet50", num_classes=6)
    y, cbcr = model.example_inputs(2, 64)
    assert model(y, cbcr).shape == (2, 6)
    assert model.stem.conv.out_channels == 256
    rgb = create_model("cspresnet50", num_classes=6)
    dropped = sum(p.numel() for n, p in rgb.named_parameters() if n.startswith(("stem.", "stages.0.", "stages.1.")))
    assert count_params(model) == count_params(rgb) - dropped + count_params(model.stem)
    feats = create_model("dct_cspresnet50", features_only=True)(y[:1], cbcr[:1])
    assert [(f.shape[1], 64 // f.shape[-1]) for f in feats] == [(256, 8), (512, 16), (1024, 32)]
    with pytest.raises(RuntimeError, match="stride 8"):
        model.backbone.forward_features(torch.randn(1, 3, 64, 64))


def test_torch_compile_matches_eager():
    # a two-stage CSPDenseNet: the split / dense concat / transition paths, with a graph small enough to
    # compile quickly (cspdensenet_small's 29 dense layers take minutes on CPU)
    model = CspDenseNet(block_layers=(2, 2), growth_rate=8, stem_channels=16, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        # aot_eager: dynamo's graph capture and AOTAutograd, what every backend shares; inductor's C++ code
        # generation is tested once, on VGNet (tests/test_vgnet.py), as it costs ~25 s a model on a cold cache
        assert torch.allclose(torch.compile(model, backend="aot_eager")(x), model(x), atol=1e-4)


def test_onnx_export_checks():
    onnx = pytest.importorskip("onnx")
    model = create_model("cspresnet50", num_classes=10).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), buf, dynamo=False, input_names=["x"])
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    assert sum(n.op_type == "Conv" for n in proto.graph.node) == sum(
        isinstance(m, nn.Conv2d) for m in model.modules())
