"""Model cost accounting: parameters, FLOPs (torch.utils.flop_counter), CIO, activation memory, per stage.

FLOPs follow torch.utils.flop_counter's convention: one multiply-add counts as 2 FLOPs, so ResNet-50 at
224×224 is ~8.2 GFLOPs (4.1 GMACs, the figure papers usually quote as "FLOPs"). `profile_model` puts all four
side by side for each stage (what `jpegnet profile` prints).
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


def _scope_flops(flop_counts: dict, scope: str) -> int:
    """FLOPs counted inside module `scope` (a FlopCounterMode name). The counter names a module only when it is
    called, and a container a model iterates over itself (`for stage in self.blocks`) never is: then its
    children carry the counts. Sum the outermost names at or under `scope` (an inner name's FLOPs are already
    in its caller's)."""
    names = [n for n in flop_counts if n == scope or n.startswith(scope + ".")]
    outermost = [n for n in names if not any(n.startswith(other + ".") for other in names)]
    return int(sum(sum(flop_counts[n].values()) for n in outermost))


def profile_model(model: nn.Module, size: int | tuple[int, int] | None = None) -> dict:
    """{'stages': [rows], 'total': row, 'input': description}; a row has name, params, flops, cio,
    activation_bytes (all per image, batch 1, float32).

    Stages are the model's top-level child modules in forward order (stems, stages, neck, head). CIO is
    `count_cio`'s, grouped by stage (`cio_by_module` at depth 1). Activation memory is the sum of the output
    sizes of every leaf module in one forward pass: an estimate of what training keeps for the backward pass
    per image (autograd may keep a little more, e.g. pooling indices, or less, for in-place activations)."""
    inputs = model.example_inputs(1, size)
    children = list(model.named_children())
    leaf_to_stage = {module: stage_name for stage_name, child in children for module in child.modules()}
    order: list[str] = []
    acts: dict[str, int] = {}

    def hook(module, args, output):
        stage = leaf_to_stage.get(module, "<root>")
        if stage not in order:
            order.append(stage)
        if not any(True for _ in module.children()):
            outs = output if isinstance(output, (tuple, list)) else (output,)
            acts[stage] = acts.get(stage, 0) + sum(o.numel() * o.element_size() for o in outs
                                                   if isinstance(o, torch.Tensor))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    cio = cio_by_module(model, inputs, depth=1)
    flop_counts = counter.get_flop_counts()
    prefix = type(model).__name__
    rows = []
    for stage_name, child in children:
        if stage_name not in order and count_params(child) == 0:
            continue
        flops = _scope_flops(flop_counts, f"{prefix}.{stage_name}")
        rows.append({"name": stage_name, "params": count_params(child), "flops": int(flops),
                     "cio": cio.get(stage_name, 0), "activation_bytes": acts.get(stage_name, 0)})
    rank = {name: i for i, name in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r["name"], len(rank)))
    total = {"name": "total", "params": count_params(model), "flops": int(counter.get_total_flops()),
             "cio": sum(cio.values()), "activation_bytes": sum(acts.values())}
    shapes = " + ".join("x".join(str(d) for d in x.shape[1:]) for x in inputs)
    return {"stages": rows, "total": total, "input": shapes}
