"""Pretrained starts from local weights files (never a download): create_model(pretrained=, checkpoint_path=)
and `jpegnet train --init-from`, with torchvision state dicts saved from randomly initialised models."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision

from jpegnet.cli import main
from jpegnet.models import create_model
from jpegnet.models.pretrained import init_from
from jpegnet.models.weights import WeightImportError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="module")
def tv_resnet50(tmp_path_factory):
    torch.manual_seed(1)
    model = torchvision.models.resnet50()
    path = tmp_path_factory.mktemp("w") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_checkpoint_path_loads_torchvision_weights_strictly(tv_resnet50):
    path, sd = tv_resnet50
    model = create_model("resnet50", checkpoint_path=str(path)).eval()
    tv = torchvision.models.resnet50()
    tv.load_state_dict(sd)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model(x), tv.eval()(x), atol=1e-5)
    assert model.pretrained_report.loaded == sorted(sd)
    with pytest.raises(Exception, match="does not fit"):  # strict: another head size does not load
        create_model("resnet50", num_classes=10, checkpoint_path=str(path))


def test_pretrained_path_takes_what_fits(tv_resnet50):
    path, sd = tv_resnet50
    model = create_model("resnet50", num_classes=10, pretrained=str(path))
    report = model.pretrained_report
    assert report.new == ["fc.bias", "fc.weight"] and report.unused == ["fc.bias", "fc.weight"]
    assert torch.equal(model.state_dict()["layer4.2.conv3.weight"], sd["layer4.2.conv3.weight"])


@pytest.mark.parametrize("name, shared, new_prefix", [
    ("dct_resnet50", "backbone.layer3.0.conv1.weight", "stem."),           # generic stride-8 adapter
    ("dct_upsampling", "layer3.0.conv1.weight", "stem."),                  # the paper's DCT ResNets
    ("dct_late_concat_rfa", "layer4.2.conv3.weight", "y_stage1."),
])
def test_dct_models_take_the_stages_they_share(tv_resnet50, name, shared, new_prefix):
    path, sd = tv_resnet50
    model = create_model(name, num_classes=10)
    report = init_from(model, str(path), name)
    own = model.state_dict()
    assert shared in report.loaded and torch.equal(own[shared], sd[shared.removeprefix("backbone.")])
    assert any(k.startswith(new_prefix) for k in report.new)
    assert not any(k.endswith("fc.weight") for k in report.loaded)  # 10 classes: the head is new
    assert set(report.loaded).isdisjoint(report.new) and set(report.loaded) | set(report.new) == set(own)
    # a module is loaded whole: never a conv without its norm
    modules = {k.rsplit(".", 1)[0] for k in report.loaded}
    assert not any(k.rsplit(".", 1)[0] in modules for k in report.new)


def test_dct_efficientnet_through_the_torchvision_converter(tmp_path):
    torch.manual_seed(2)
    tv = torchvision.models.efficientnet_b0()
    path = tmp_path / "effnet.pth"
    torch.save(tv.state_dict(), path)
    rgb = create_model("efficientnet_b0", pretrained=str(path))
    assert rgb.pretrained_report.format == "torchvision" and rgb.pretrained_report.new == []
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(rgb.eval()(x), tv.eval()(x), atol=1e-4)
    dct = create_model("dct_efficientnet_b0", num_classes=5, pretrained=str(path))
    report = dct.pretrained_report
    assert report.format == "torchvision" and len(report.loaded) > 200
    key = "backbone.conv_head.conv.weight"
    assert key in report.loaded and torch.equal(dct.state_dict()[key], rgb.state_dict()[key.removeprefix("backbone.")])


def test_unknown_sources_fail_clearly(tmp_path):
    with pytest.raises(WeightImportError, match="no pretrained weights are known"):
        create_model("vgnetg_1_0mp", pretrained=True)
    junk = tmp_path / "junk.pth"
    torch.save({"x": torch.zeros(3)}, junk)
    with pytest.raises(WeightImportError, match="no tensor of the weights fits"):
        create_model("resnet50", pretrained=str(junk))


def test_train_init_from_reports_loaded_and_new(tmp_path, capsys):
    # a small ResNet in torchvision's key names (jpegnet's ResNet uses them), so the run stays short
    small = dict(width_multiplier=0.125, depth_multiplier=0.25)
    torch.manual_seed(3)
    sd = create_model("resnet50", **small).state_dict()
    path = tmp_path / "small_resnet.pth"
    torch.save(sd, path)
    data = make_tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "dct_resnet50", "--model-kwargs",
                 "width_multiplier=0.125,depth_multiplier=0.25", "--init-from", str(path), "--epochs", "1",
                 "--input-size", "32", "--batch-size", "4", "--threads", "1", "--no-progress", "--lr", "1e-9",
                 "--warmup-epochs", "0", "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert f"init from {path} (same key names weights): loaded" in err and "new (backbone.fc, stem)" in err
    state = torch.load(out / "last.pt", weights_only=True)
    # lr 1e-9 barely moves the weights: the run started from the file's
    assert torch.allclose(state["model"]["backbone.layer4.0.conv2.weight"], sd["layer4.0.conv2.weight"], atol=1e-6)
    import json
    assert json.loads((out / "config.json").read_text())["init_from"]["new"][0].startswith("backbone.fc")
