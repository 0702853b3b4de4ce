"""Every registered model trains and evaluates at its own default input size: RGB models at any size (the
EfficientNets B2 … B7 at 260 … 600 px), DCT models at multiples of 16, refused otherwise with the reason."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from jpegnet.catalog import CATALOG
from jpegnet.engine.inputs import build_data, resolve_input_config
from jpegnet.models import InputConfig, create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402


def test_every_default_size_is_accepted_by_the_input_logic():
    for name, (rep, size, _) in CATALOG.items():
        config = resolve_input_config(InputConfig(representation=rep, input_size=size))
        assert tuple(config.input_size) == size
        if rep == "dct":
            assert size[0] % 16 == 0 and size[1] % 16 == 0, name


@pytest.mark.parametrize("name, size", [("efficientnet_b2", 260), ("efficientnet_b3", 300), ("efficientnet_b4", 380),
                                        ("efficientnet_b5", 456), ("efficientnet_b6", 528), ("efficientnet_b7", 600)])
def test_efficientnets_run_at_their_default_size(tmp_path_factory, name, size):
    data = make_tiny_dataset(tmp_path_factory.mktemp("d"), classes=2, train_per_class=1, val_per_class=1)
    with torch.device("meta"):  # shapes only: the data pipeline's size and the model's forward at that size
        model = create_model(name, num_classes=2)
    config = resolve_input_config(model.input_config)
    assert config.input_size == (size, size)
    for train in (True, False):
        _, loader = build_data(data / "val", config, train=train, batch_size=2, num_threads=1, prefetch=0)
        (x,), _ = next(iter(loader))
        assert x.shape == (2, 3, size, size)
    logits = model(x.to("meta"))
    assert logits.shape == (2, 2)


def test_dct_sizes_must_be_multiples_of_16_and_say_so():
    with pytest.raises(ValueError, match="multiples of 16.*use --input-size 256"):
        resolve_input_config(InputConfig(representation="dct"), input_size=260)


def test_size_and_statistics_mismatches_warn_naming_both(tmp_path, caplog):
    import json
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"dct_mean": [0.0] * 192, "dct_std": [1.0] * 192, "input_size": 224}))
    logger = logging.getLogger("jpegnet.train")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="jpegnet.train"):
            resolve_input_config(InputConfig(representation="dct", input_size=(224, 224)), 160, str(stats))
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert "input size 160x160 differs from dct model's default 224x224" in text
    assert "computed at input size 224 but this run uses 160x160" in text


def test_rgb_model_trains_at_a_size_that_is_no_multiple_of_16(tmp_path):
    from jpegnet.cli import main
    data = make_tiny_dataset(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "resnet50", "--model-kwargs",
                 "width_multiplier=0.125,depth_multiplier=0.25", "--input-size", "36", "--epochs", "1",
                 "--batch-size", "2", "--threads", "1", "--no-progress", "--no-tensorboard"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["input_config"]["input_size"] == [36, 36]
