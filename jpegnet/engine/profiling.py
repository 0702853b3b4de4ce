"""Per-stage cost profile of a model: parameters, FLOPs, CIO and activation memory (`jpegnet profile`).

Stages are the model's top-level child modules in forward order (stems, stages, neck, head). FLOPs use
torch.utils.flop_counter (1 multiply-add = 2 FLOPs) and CIO `jpegnet.profile.count_cio`'s definition (conv
input + output elements). Activation memory is the sum of the output sizes of every leaf module in one
forward pass at batch 1: an estimate of what training keeps for the backward pass per image (autograd may
keep a little more, e.g. pooling indices, or less, for in-place activations).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..profile import count_params


def profile_model(model: nn.Module, size: int | tuple[int, int] | None = None) -> dict:
    """{'stages': [rows], 'total': row, 'input': description}; a row has name, params, flops, cio,
    activation_bytes (all per image, batch 1, float32)."""
    inputs = model.example_inputs(1, size)
    children = list(model.named_children())
    leaf_to_stage = {}
    for stage_name, child in children:
        for module in child.modules():
            leaf_to_stage[module] = stage_name
    order: list[str] = []
    acts: dict[str, int] = {}
    cio: dict[str, int] = {}

    def hook(module, args, output):
        stage = leaf_to_stage.get(module, "<root>")
        if stage not in order:
            order.append(stage)
        if not any(True for _ in module.children()):
            outs = output if isinstance(output, (tuple, list)) else (output,)
            acts[stage] = acts.get(stage, 0) + sum(o.numel() * o.element_size() for o in outs
                                                   if isinstance(o, torch.Tensor))
        if isinstance(module, nn.Conv2d):
            cio[stage] = cio.get(stage, 0) + args[0].numel() + output.numel()

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
    flop_counts = counter.get_flop_counts()
    prefix = type(model).__name__
    rows = []
    for stage_name, child in children:
        if stage_name not in order and count_params(child) == 0:
            continue
        flops = sum(flop_counts.get(f"{prefix}.{stage_name}", {}).values())
        rows.append({"name": stage_name, "params": count_params(child), "flops": int(flops),
                     "cio": cio.get(stage_name, 0), "activation_bytes": acts.get(stage_name, 0)})
    rank = {name: i for i, name in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r["name"], len(rank)))
    total = {"name": "total", "params": count_params(model), "flops": int(counter.get_total_flops()),
             "cio": sum(cio.values()), "activation_bytes": sum(acts.values())}
    shapes = " + ".join("x".join(str(d) for d in x.shape[1:]) for x in inputs)
    return {"stages": rows, "total": total, "input": shapes}
