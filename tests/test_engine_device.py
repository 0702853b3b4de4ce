"""The one device / precision resolver (jpegnet.engine.device) and the commands that go through it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from jpegnet.engine import ConfigError, DeviceError, EngineError
from jpegnet.engine.device import (autocast_context, resolve_channels_last, resolve_device,
                                   resolve_precision)
from jpegnet.errors import JpegnetError

PACKAGE = Path(__file__).resolve().parent.parent / "jpegnet"


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    """What a machine with one GPU answers (only the answers: nothing here touches a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_default_is_cuda_when_visible_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")


def test_explicit_cpu_and_devices_pass_through(one_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "CPU0", ""])
def test_unknown_device_strings_are_typed_errors(text):
    with pytest.raises(DeviceError, match="unknown device") as info:
        resolve_device(text)
    assert isinstance(info.value, (ValueError, EngineError, JpegnetError))


@pytest.mark.parametrize("text", ["meta", "mps", "xpu:0"])
def test_devices_torch_knows_but_jpegnet_does_not_run_on(text):
    with pytest.raises(DeviceError, match="not supported: use 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(text)


@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_asked_for_but_absent(no_cuda, text):
    with pytest.raises(DeviceError, match=f"--device {text} was asked for but no CUDA GPU is visible"):
        resolve_device(text)


def test_a_gpu_index_beyond_the_visible_ones(one_gpu):
    with pytest.raises(DeviceError, match=r"--device cuda:1 .* only 1 CUDA GPU\(s\) are visible \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:1")


def test_precision_defaults_and_checks():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(None, cpu) == "fp32" and resolve_precision(None, cuda) == "bf16"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp16", cuda, training=True) == "fp16"
    assert resolve_precision("fp16", cpu) == "fp16"  # inference autocasts to fp16 on the CPU too
    with pytest.raises(ConfigError, match="fp16 autocast needs CUDA"):
        resolve_precision("fp16", cpu, training=True)
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp8", cpu)


def test_channels_last_and_autocast():
    assert resolve_channels_last(None, torch.device("cuda")) is True
    assert resolve_channels_last(None, torch.device("cpu")) is False
    assert resolve_channels_last(True, torch.device("cpu")) is True
    x = torch.randn(2, 3)
    with autocast_context(torch.device("cpu"), "bf16"):
        assert (x @ x.T).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "fp32"):
        assert (x @ x.T).dtype == torch.float32


def test_every_command_resolves_through_it(no_cuda, tmp_path):
    """train's process setup, bench and the torch serving backend refuse an absent GPU with the same error."""
    from jpegnet.engine import init_distributed, run_bench
    from jpegnet.models import create_model
    from jpegnet.engine.backends import TorchBackend

    calls = [lambda: init_distributed("cuda"), lambda: run_bench(device="cuda", models=["resnet50"], size=32),
             lambda: TorchBackend(create_model("vgnetg_1_0mp", num_classes=2), device="cuda")]
    for call in calls:
        with pytest.raises(DeviceError, match="--device cuda was asked for but no CUDA GPU is visible"):
            call()
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        init_distributed("gpu")
    assert init_distributed("cpu").device == torch.device("cpu")


def test_one_gpu_index_for_many_processes_is_refused(one_gpu, monkeypatch):
    from jpegnet.engine import init_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DeviceError, match="names one GPU, but torchrun runs 2 processes"):
        init_distributed("cuda:0")


def test_no_other_module_decides_the_device():
    """The resolver is the only place that asks whether CUDA is there in order to pick a device (the
    checkpoint's RNG capture asks too, to save the CUDA generators' state)."""
    asking = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "is_available" and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "cuda":
                asking.add(path.relative_to(PACKAGE).as_posix())
    assert asking == {"engine/device.py", "engine/checkpoint.py"}
