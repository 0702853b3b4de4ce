"""The model pieces every family shares (jpegnet.layers and the DCT adapter's protocol): make_divisible, the
classifier head, the stride-8 entry protocol."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from jpegnet.layers import ClassifierHead, SqueezeExcite, make_divisible
from jpegnet.models import JpegNetModel, create_model, is_model, list_models
from jpegnet.models.dct_adapter import DctAdapter, Stride8Entry
from jpegnet.models.efficientnet import round_channels
from jpegnet.models.resnet import scale_channels


# -- make_divisible -------------------------------------------------------------------------------------

def test_make_divisible_rounds_to_the_nearest_multiple_never_10_percent_below():
    assert make_divisible(35.2) == 32 and make_divisible(36) == 40  # nearest multiple of 8 (ties go up)
    assert make_divisible(0.64) == 8 and make_divisible(3, min_value=16) == 16  # at least the minimum
    assert make_divisible(11) == 16  # 8 would be 27 % below: bumped up one step
    assert make_divisible(100, divisor=16) == 96 and make_divisible(1000, divisor=3) == 999
    for tenths in range(1, 20000, 7):
        value = tenths / 10
        out = make_divisible(value)
        assert out % 8 == 0 and out >= 8 and out >= 0.9 * value and out - value < 8, (value, out)
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10, divisor=0)


def test_every_family_rounds_channels_with_make_divisible():
    assert round_channels is make_divisible  # EfficientNet's name for it
    for channels in (16, 24, 40, 64, 100, 320):
        for multiplier in (0.125, 0.5, 0.75, 1.1, 1.4, 2.0):
            assert scale_channels(channels, multiplier) == make_divisible(channels * multiplier)
    assert scale_channels(100, 1.0) == 100  # ResNet's one difference: width 1 keeps every count as it is
    vgnet = create_model("vgnetg_1_0mp_se")
    gates = [m for m in vgnet.modules() if isinstance(m, SqueezeExcite)]  # VGNet's SE is layers.SqueezeExcite
    assert gates and all(g.reduce.out_channels == make_divisible(int(g.reduce.in_channels * 0.25)) for g in gates)


# -- the classifier head ---------------------------------------------------------------------------------

class _Tiny(ClassifierHead, JpegNetModel):
    classifier_attr = "logits"

    def __init__(self, num_classes=3, drop_rate=0.0, **head):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.init_head(6, num_classes, drop_rate, **head)

    def forward_features(self, x):
        return self.conv(x)


def test_head_pools_drops_and_classifies_under_the_family_name():
    model = _Tiny(num_classes=4, drop_rate=0.25)
    assert set(model.state_dict()) == {"conv.weight", "conv.bias", "logits.weight", "logits.bias"}
    assert isinstance(model.head_drop, nn.Dropout) and model.head_drop.p == 0.25
    assert isinstance(_Tiny().head_drop, nn.Identity)  # no dropout module to run at rate 0
    x = torch.randn(2, 3, 9, 9)
    model.eval()
    feats = model.forward_features(x)
    pooled = model.forward_head(feats, pre_logits=True)
    torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))
    torch.testing.assert_close(model(x), model.logits(pooled))
    ones = torch.ones(64, 6, 1, 1)
    kept = model.forward_head(ones)
    model.train()  # dropout before the linear layer, not on the pre-logits features
    torch.testing.assert_close(model.forward_head(ones, pre_logits=True), ones.flatten(1))
    assert not torch.allclose(model.forward_head(ones), kept)  # 384 features each dropped with p = 0.25


def test_head_with_a_pooling_and_hidden_layers():
    hidden = nn.Sequential(nn.Linear(6 * 4, 6), nn.ReLU())
    model = _Tiny(pool=nn.AdaptiveAvgPool2d(2), hidden=hidden).eval()
    x = torch.randn(1, 3, 10, 10)
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(pooled, hidden(nn.functional.adaptive_avg_pool2d(model.forward_features(x), 2)
                                              .flatten(1)))
    assert model(x).shape == (1, 3)


def test_reset_classifier_keeps_device_and_dtype_and_checks_sizes():
    model = _Tiny().to(torch.float64)
    model.reset_classifier(7)
    assert model.logits.weight.dtype == torch.float64 and model.logits.out_features == 7 and model.num_classes == 7
    with torch.device("meta"):
        meta = _Tiny()
    meta.reset_classifier(2)
    assert meta.logits.weight.is_meta
    model.reset_classifier(0)
    assert isinstance(model.logits, nn.Identity) and "logits.weight" not in model.state_dict()
    with pytest.raises(TypeError):
        _Tiny(num_classes=True)
    with pytest.raises(ValueError, match="drop_rate"):
        _Tiny(drop_rate=1.0)


@pytest.mark.parametrize("name, key", [
    ("resnet50", "fc"), ("octresnet50", "fc"), ("dct_upsampling", "fc"), ("hetconv_resnet50", "fc"),
    ("efficientnet_b0", "classifier"), ("cspresnet50", "fc"), ("cspdensenet_small", "fc"),
    ("vgnetg_1_0mp", "classifier"), ("hetconv_vgg16_cifar", "classifier"), ("dct_resnet50", "backbone.fc"),
])
def test_every_family_uses_the_shared_head_under_its_weight_names(name, key):
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    head = model.backbone if isinstance(model, DctAdapter) else model
    assert isinstance(head, ClassifierHead)
    state = model.state_dict()
    assert state[f"{key}.weight"].shape == (10, model.num_features) and f"{key}.bias" in state


# -- the stride-8 entry protocol ---------------------------------------------------------------------------

DCT_TWINNED = sorted(n[len("dct_"):] for n in list_models("dct_*") if is_model(n[len("dct_"):]))


@pytest.mark.parametrize("name", DCT_TWINNED)
def test_stride8_protocol_of_every_family_with_a_dct_twin(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    assert isinstance(model, Stride8Entry)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        entry = model.forward_to_stride8(x)
        assert entry.shape == (1, model.stride8_channels, 8, 8)
        reference = model.forward_features(x)
        prefix_params = sum(p.numel() for n in model.stride8_prefix for p in model.get_submodule(n).parameters())
        total = sum(p.numel() for p in model.parameters())
        model.drop_before_stride8()
        assert all(isinstance(model.get_submodule(n), nn.Identity) for n in model.stride8_prefix)
        assert sum(p.numel() for p in model.parameters()) == total - prefix_params > 0
        assert model.feature_info and all(info["reduction"] > 8 for info in model.feature_info)
        # what remains is the same network from the entry on
        torch.testing.assert_close(model.forward_from_stride8(entry), reference)
    with pytest.raises(RuntimeError, match="stride 8"):
        model.forward_features(x)


def test_the_adapter_needs_the_protocol():
    with torch.device("meta"):
        octave = create_model("octresnet50")
    with pytest.raises(TypeError, match="stride-8 entry protocol"):
        DctAdapter(octave)


# -- one keyword vocabulary ---------------------------------------------------------------------------------

def _model_classes():
    from jpegnet.models import cspnet, dct_resnet, efficientnet, hetnet, octresnet, resnet, vgnet

    return [resnet.ResNet, dct_resnet.EarlyMergeDctResNet, dct_resnet.DownSamplingDctResNet,
            dct_resnet.LateConcatDctResNet, octresnet.OctResNet, efficientnet.EfficientNet, cspnet.CspNet,
            cspnet.CspDenseNet, vgnet.VGNet, hetnet.HetVGG]


@pytest.mark.parametrize("cls", _model_classes(), ids=lambda c: c.__name__)
def test_every_family_speaks_the_same_keywords(cls):
    import inspect

    names = set(inspect.signature(cls.__init__).parameters)
    # the names other families (and timm) use for the same things: in_chans, drop_rate, *_multiplier
    assert not names & {"dropout", "in_channels", "width", "depth", "input_channels"}, names


@pytest.mark.parametrize("name", ["efficientnet_b0", "cspresnet50", "cspdensenet_small", "vgnetg_1_0mp"])
def test_in_chans_sets_the_input_channels(name):
    model = create_model(name, num_classes=3, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)
