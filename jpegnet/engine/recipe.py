"""timm's recipe pieces for `jpegnet train`: MixUp, CutMix (on whole blocks for DCT input), model EMA.

Every random draw is a pure function of (seed, global step), like the data pipeline's augmentation, so a
resumed run replays the same mixes. Gradient clipping and accumulation live in the trainer's step.

CutMix on DCT input cuts whole 16×16-pixel MCUs: 2×2 luma blocks and the one 4:2:0 chroma block under them,
so luma and chroma cut the same region and each 8×8 block is taken whole from one image. Since the inverse
DCT works block by block, the pixels of a block-wise cut-mixed input are exactly the cut-mixed pixels.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ..data.augment import uniforms

#: Salt of the mix draws (the data pipeline's draws use the epoch where this uses the step).
_MIX_SALT = 0x6D69786D


def _rng(seed: int, step: int, draws: int) -> np.ndarray:
    return uniforms(seed ^ _MIX_SALT, step, [0], draws)[0]


def _beta(alpha: float, u1: float, u2: float) -> float:
    """A Beta(alpha, alpha) draw from two uniforms (through two Gamma draws of a seeded numpy generator)."""
    rng = np.random.Generator(np.random.PCG64(int(u1 * 2**53) ^ (int(u2 * 2**53) << 11)))
    return float(rng.beta(alpha, alpha))


def cut_box(lam: float, height: int, width: int, unit: int, u_y: float, u_x: float) -> tuple[int, int, int, int]:
    """timm's rand_bbox on a grid of `unit`-sized cells: a box of about (1 − lam) of the area, its centre
    uniform, clipped to the image; returns (top, bottom, left, right) in cells."""
    rows, cols = height // unit, width // unit
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(round(rows * cut)), int(round(cols * cut))
    cy, cx = int(u_y * rows), int(u_x * cols)
    top, bottom = max(cy - ch // 2, 0), min(cy + ch - ch // 2, rows)
    left, right = max(cx - cw // 2, 0), min(cx + cw - cw // 2, cols)
    return top, bottom, left, right


def soft_targets(targets: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.0,
                 perm: torch.Tensor | None = None) -> torch.Tensor:
    """lam · onehot(t) + (1 − lam) · onehot(t[perm]), each smoothed like CrossEntropyLoss's label_smoothing."""
    def smooth(t):
        return nn.functional.one_hot(t, num_classes).float() * (1.0 - smoothing) + smoothing / num_classes
    out = smooth(targets)
    if perm is not None and lam < 1.0:
        out = lam * out + (1.0 - lam) * smooth(targets[perm])
    return out


class MixUpCutMix:
    """Batch-level MixUp / CutMix as timm's Mixup: with both on, each batch takes one of them (switch_prob
    0.5); the batch is mixed with its reversal (timm's 'batch' mode uses the flipped batch too).

    representation 'dct': inputs (y, cbcr); CutMix boxes are whole MCUs (see module docstring).
    Returns (inputs, soft targets (N, num_classes), lam actually used)."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int, representation: str,
                 smoothing: float = 0.0, seed: int = 0, switch_prob: float = 0.5):
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup and cutmix alphas must be >= 0 (0 turns one off)")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.num_classes, self.representation = int(num_classes), representation
        self.smoothing, self.seed, self.switch_prob = float(smoothing), int(seed), float(switch_prob)

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor, step: int):
        inputs, lam, perm = self.mix_inputs(inputs, step)
        return inputs, soft_targets(targets, self.num_classes, lam, self.smoothing, perm), lam

    def mix_inputs(self, inputs: tuple[torch.Tensor, ...], step: int):
        """The mixed inputs alone: (inputs, lam, perm). Distillation needs no labels: the teacher, shown the
        same mixed input, gives the targets (function matching)."""
        u = _rng(self.seed, step, 5)
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or u[0] < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = _beta(alpha, u[1], u[2])
        perm = torch.arange(inputs[0].shape[0] - 1, -1, -1, device=inputs[0].device)
        if use_cutmix:
            inputs, lam = self.cutmix(inputs, perm, lam, u[3], u[4])
        else:
            inputs = tuple(lam * x + (1.0 - lam) * x[perm] for x in inputs)
        return inputs, lam, perm

    def cutmix(self, inputs, perm, lam: float, u_y: float, u_x: float):
        if self.representation == "dct":
            y, cbcr = inputs
            # cells of one MCU: 2×2 luma blocks, 1 chroma block
            top, bottom, left, right = cut_box(lam, cbcr.shape[2], cbcr.shape[3], 1, u_y, u_x)
            y, cbcr = y.clone(), cbcr.clone()
            y[:, :, 2 * top:2 * bottom, 2 * left:2 * right] = y[perm][:, :, 2 * top:2 * bottom, 2 * left:2 * right]
            cbcr[:, :, top:bottom, left:right] = cbcr[perm][:, :, top:bottom, left:right]
            area = (bottom - top) * (right - left) / (cbcr.shape[2] * cbcr.shape[3])
            return (y, cbcr), 1.0 - area
        (x,) = inputs
        top, bottom, left, right = cut_box(lam, x.shape[2], x.shape[3], 1, u_y, u_x)
        x = x.clone()
        x[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
        return (x,), 1.0 - (bottom - top) * (right - left) / (x.shape[2] * x.shape[3])


def soft_cross_entropy(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    return torch.sum(-soft * torch.log_softmax(logits, dim=-1), dim=-1).mean()


class ModelEma:
    """An exponential moving average of a model's weights (timm's ModelEmaV2): after each optimizer step,
    ema = decay · ema + (1 − decay) · weights; buffers (BatchNorm statistics) are copied. Evaluation and the
    best checkpoint use the EMA weights when it is on."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._averaged = {name for name, p in self.module.named_parameters() if p.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        own = self.module.state_dict()
        for key, value in model.state_dict().items():
            if key in self._averaged:
                own[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                own[key].copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


__all__ = ["MixUpCutMix", "ModelEma", "cut_box", "soft_cross_entropy", "soft_targets"]
