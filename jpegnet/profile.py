"""Model cost accounting: parameters, FLOPs (torch.utils.flop_counter), per-stage figures.

FLOPs follow torch.utils.flop_counter's convention: one multiply-add counts as 2 FLOPs, so ResNet-50 at
224×224 is ~8.2 GFLOPs (4.1 GMACs, the figure papers usually quote as "FLOPs").
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as fixed kernels and BN statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None, size=None) -> int:
    """FLOPs of one forward pass at batch 1 (inputs default to the model's example inputs)."""
    if inputs is None:
        inputs = model.example_inputs(1, size)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _conv_traffic(model: nn.Module, inputs, size) -> list[tuple[str, int]]:
    """(conv module name, input + output elements) for every Conv2d call of one forward pass at batch 1."""
    if inputs is None:
        inputs = model.example_inputs(1, size)
    if inputs[0].shape[0] != 1:
        raise ValueError(f"CIO is defined per image: pass batch-1 inputs, got batch {inputs[0].shape[0]}")
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[str, int]] = []

    def hook(module, args, output):
        calls.append((names[module], args[0].numel() + output.numel()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls


def count_cio(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None, size=None) -> int:
    """CIO, the CSPNet paper's memory-traffic measure: the sum over convolution layers of the sizes of their
    input and output activations, in elements, for one image (bytes = CIO × element size).

    Counted with forward hooks on every `nn.Conv2d` call of one forward pass, so a conv applied twice counts
    twice, and pooling, normalization and concatenation count nothing. The paper's dense-block formula
    c·m + (m² + m)·d/2 (channels, per pixel) is this times h·w for a block of single convs.
    """
    return sum(n for _, n in _conv_traffic(model, inputs, size))


def cio_by_module(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None, size=None,
                  depth: int = 1) -> dict[str, int]:
    """CIO grouped by the first `depth` components of the conv modules' names (e.g. 'stem', 'stages.0' with
    depth=2), in forward order; the values add up to `count_cio`."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    out: dict[str, int] = {}
    for name, n in _conv_traffic(model, inputs, size):
        key = ".".join(name.split(".")[:depth]) or "<root>"
        out[key] = out.get(key, 0) + n
    return out
