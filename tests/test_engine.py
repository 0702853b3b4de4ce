"""Engine pieces: schedule, metrics, atomic weights-only checkpoints, RNG capture, Pareto front, CSV, profiling."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch

from jpegnet.engine import (CheckpointError, TrainConfig, WarmupCosineLR, atomic_write, capture_rng_state,
                            confusion_matrix, load_checkpoint, pareto_front, profile_model, restore_rng_state,
                            save_checkpoint, topk_correct, warmup_cosine_factor)
from jpegnet.engine.checkpoint import load_model_state
from jpegnet.engine.logger import write_csv
from jpegnet.engine.trainer import parameter_groups


def test_warmup_cosine_values():
    total, warmup = 10, 3
    factors = [warmup_cosine_factor(s, total, warmup) for s in range(total + 1)]
    assert factors[:3] == pytest.approx([1 / 4, 2 / 4, 3 / 4])
    assert factors[3] == pytest.approx(1.0)
    # Halfway through the 7 decay steps the cosine is at one half.
    assert warmup_cosine_factor(3 + 3.5, total, warmup) == pytest.approx(0.5)
    assert factors[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert warmup_cosine_factor(10, 10, 0, min_factor=0.1) == pytest.approx(0.1)


def test_scheduler_drives_optimizer_and_round_trips():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.4)
    sched = WarmupCosineLR(opt, total_steps=8, warmup_steps=2)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.4 * warmup_cosine_factor(s, 8, 2) for s in range(6)])
    opt2 = torch.optim.SGD([param], lr=0.4)
    sched2 = WarmupCosineLR(opt2, total_steps=8, warmup_steps=2)
    sched2.load_state_dict(sched.state_dict())
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineLR(opt, total_steps=4, warmup_steps=5)


def test_topk_and_confusion():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4]])
    targets = torch.tensor([1, 1, 0, 2])
    top1, top2 = topk_correct(logits, targets, ks=(1, 2))
    assert (int(top1), int(top2)) == (1, 3)  # row 0 right; rows 1 and 3 have their target second
    (top5,) = topk_correct(logits, targets, ks=(5,))  # k above the class count means "any"
    assert int(top5) == 4
    cm = confusion_matrix(logits.argmax(1), targets, 3)
    assert cm.tolist() == [[0, 0, 1], [1, 1, 0], [1, 0, 0]]  # row = true class


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    path = tmp_path / "ck.pt"
    model = torch.nn.Linear(3, 2)
    state = {"model_name": "x", "model": model.state_dict(), "num_classes": 2,
             "input_config": {"representation": "rgb"}, "class_names": ["a", "b"], "rng": capture_rng_state()}
    save_checkpoint(state, path)
    loaded = torch.load(path, weights_only=True)  # the safe unpickler accepts it
    assert loaded["format"] == "jpegnet-checkpoint" and torch.equal(loaded["model"]["weight"], model.weight)
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def failing(f):
        f.write(b"half a checkpoint")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(path, failing)
    assert path.read_bytes() == before  # the old file is intact ...
    assert os.listdir(tmp_path) == ["ck.pt"]  # ... and no temporary file is left


def test_load_checkpoint_rejects_foreign_and_mismatched_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a jpegnet checkpoint"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"1 of another shape \(e.g. weight: \(4, 3\) in file, \(2, 3\)"):
        load_model_state(torch.nn.Linear(3, 2), {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)})


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"model_name": "x", "model": {}, "num_classes": 1, "input_config": {},
                     "rng": capture_rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4} and len(decay["params"]) == 2
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias


def test_train_config_defaults_and_checks():
    cfg = TrainConfig(data="d", model="m", batch_size=512)
    assert cfg.resolved_lr() == pytest.approx(0.2) and cfg.resolved_weight_decay() == 1e-4
    adam = TrainConfig(data="d", model="m", batch_size=1024, optimizer="adamw")
    assert adam.resolved_lr() == pytest.approx(1e-3) and adam.resolved_weight_decay() == 0.05
    # input_size 40 is fine now (RGB models take any size; DCT models are checked once the model is known)
    TrainConfig(data="d", model="m", input_size=40).validate()
    for bad in ({"optimizer": "lamb"}, {"epochs": 0}, {"input_size": 4}, {"label_smoothing": 1.0},
                {"precision": "fp8"}, {"mixup": -1.0}, {"ema_decay": 1.0}, {"grad_accum_steps": 3},
                {"contrast": 1.5}):
        with pytest.raises(ValueError):
            TrainConfig(data="d", model="m", **bad).validate()
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_future_key": 1}) == cfg


def test_pareto_front():
    pts = [{"model": "a", "x": 100, "y": 70}, {"model": "b", "x": 200, "y": 69}, {"model": "c", "x": 150, "y": 60},
           {"model": "d", "x": 50, "y": 71}]
    assert [p["model"] for p in pareto_front(pts)] == ["d", "a", "b"]  # c is beaten by b on both axes
    assert [p["model"] for p in pareto_front(pts, x_higher_is_better=False)] == ["d"]


def test_csv_rewrite(tmp_path):
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    write_csv(tmp_path / "log.csv", rows)
    assert (tmp_path / "log.csv").read_text() == "epoch,loss\n1,0.5\n2,0.25\n"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "cspresnet50", "dct_efficientnet_lite0"])
def test_profile_stage_flops_when_the_model_iterates_its_own_container(name):
    # These forwards loop over `self.blocks` / `self.stages` instead of calling the container, so the FLOP
    # counter never names it: its FLOPs must come from its children, or the stage shows 0 and the rows do not
    # add up to the total (as `jpegnet profile` printed before: blocks 0.000 GFLOPs of Lite0's 0.770).
    from jpegnet.models import create_model

    result = profile_model(create_model(name, num_classes=10), 64)
    total = result["total"]["flops"]
    assert sum(s["flops"] for s in result["stages"]) == total
    main = next(s for s in result["stages"] if s["name"] in ("blocks", "stages", "backbone"))
    assert main["flops"] > total / 2  # the body of the network, not a rounding error


def test_profile_stages_add_up():
    from jpegnet.models import create_model
    import jpegnet.profile
    from jpegnet.profile import cio_by_module, count_cio, count_flops, count_params

    assert profile_model is jpegnet.profile.profile_model  # the engine re-exports the library's one

    model = create_model("resnet50", num_classes=10, width_multiplier=0.125, depth_multiplier=0.25)
    result = profile_model(model, 64)
    stages = result["stages"]
    assert [s["name"] for s in stages][:2] == ["conv1", "bn1"] and stages[-1]["name"] == "fc"
    assert sum(s["params"] for s in stages) == result["total"]["params"] == count_params(model)
    assert sum(s["flops"] for s in stages) == result["total"]["flops"] == count_flops(model, size=64)
    assert result["total"]["cio"] == count_cio(model, size=64)
    assert {s["name"]: s["cio"] for s in stages if s["cio"]} == cio_by_module(model, size=64, depth=1)
    assert stages[0]["cio"] == 3 * 64 * 64 + 8 * 32 * 32  # conv1: its input and output elements
    # conv1 output at 64 px: 8 channels (64 × 0.125) × 32 × 32, float32.
    assert stages[0]["activation_bytes"] == 8 * 32 * 32 * 4
    assert math.isclose(stages[0]["flops"], 2 * 8 * 3 * 49 * 32 * 32)
