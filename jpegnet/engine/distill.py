"""Distillation: the objective `jpegnet convert` plugs into the training loop (jpegnet.engine.trainer).

The student is a `converted` model (jpegnet.models.converted): a DCT entry + the teacher's remainder. The
teacher sees pixels rebuilt from the very coefficients the student reads (jpegnet.dct.rebuild: block IDCT,
box chroma upsampling, JFIF colours), so every augmentation of the DCT pipeline (crops, flips, resizing,
colour jitter) reaches both identically and no image is decoded twice. Per batch:

    loss = feature_weight · mean_c( ‖f_s,c − f_t,c‖² / var(f_t,c) )        at the cut (per-channel normalized)
         + late_weight · mean( ‖g_s − g_t‖² ) / mean_c( var(g_t,c) )       the remainder's last feature map
         + kl_weight · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))        on the logits

The first term asks the entry for the teacher's feature map, each channel on its own scale (plain MSE lets
the few large channels decide); the last asks for what matters in the end, the teacher's output through
the remainder, so errors the remainder ignores cost nothing and those it amplifies cost much. The middle one
(g: the feature map the remainder pools, e.g. Lite0's 7×7×1280) weighs the entry's errors by what the
remainder makes of them, like the KL term, but its target is a dense map rather than a distribution over
classes: on unlabeled photos of a few classes the KL term teaches those classes (README, "Results"), the late
map much less so. That map is normalized as a whole, not per channel: it comes after the last ReLU6, many of
its channels are zero on most images, and dividing by their near-zero variances made the term explode (a run
from a trained entry fell to 0.4 % agreement, README "Results"). The variances are the batch's own (a pure
function of the batch: exact resume needs no extra state). With kl_weight and late_weight 0 a training step
runs neither remainder (the teacher's front and the entry only: several times cheaper); its training top-1 is
then not measured (validation still is).

The learned entry's output keeps the teacher's spread (`match_spread`): before a fresh run's first step its
last BatchNorm's affine is set to the teacher's per-channel std / mean at the cut (measured on up to 256
held-out images) and frozen. A free entry minimizes the feature loss by shrinking its output towards the
conditional mean, and the remainder, fed such flat maps, answers one class for every image.

Top-1 in the run's log is agreement: the share of images on which the student's top class is the
teacher's. Validation adds the relative feature error ‖f_s − f_t‖ / ‖f_t‖ over the set.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .device import autocast_context
from .distributed import all_reduce_sum
from .errors import ConfigError

FEATURE_EPS = 1e-6
#: Images the teacher's feature statistics are measured on for the entry's output spread (match_spread).
SPREAD_IMAGES = 256


def _output_batchnorm(student: nn.Module):
    """The learned entry's last BatchNorm (whose affine sets its output's mean and spread), or None."""
    return getattr(getattr(student, "entry", None), "bn_out", None)


def _spread_parameters(student: nn.Module) -> list:
    bn = _output_batchnorm(student)
    return [] if bn is None else [bn.weight, bn.bias]


@torch.no_grad()
def set_entry_spread(student: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> bool:
    """The learned entry's output mean / std per channel: its last BatchNorm normalizes, so they are that
    BatchNorm's affine bias / weight. False (nothing set) for a student without one (an exact entry)."""
    bn = _output_batchnorm(student)
    if bn is None:
        return False
    bn.weight.copy_(std.to(bn.weight.dtype))
    bn.bias.copy_(mean.to(bn.bias.dtype))
    return True


class Distillation:
    """The teacher (front and remainder, frozen, eval mode) and the objective above, on `device`."""

    def __init__(self, teacher, cut: str | None, input_config, device, feature_weight: float = 1.0,
                 kl_weight: float = 1.0, temperature: float = 1.0, late_weight: float = 0.0):
        from ..input_config import normalization
        from ..models.cut import cut_teacher

        if input_config.representation != "dct":
            raise ConfigError("distillation trains a DCT student; the model takes RGB input")
        self.teacher = teacher
        self.front, self.remainder, self.point = cut_teacher(teacher.model, cut)
        self.front.to(device).eval()
        self.remainder.to(device).eval()
        for p in list(self.front.parameters()) + list(self.remainder.parameters()):
            p.requires_grad_(False)
        self.device = device
        self.dct_mean, self.dct_std = normalization(input_config, "dct")
        self.rgb_mean = torch.tensor(input_config.mean, device=device).reshape(1, 3, 1, 1)
        self.rgb_std = torch.tensor(input_config.std, device=device).reshape(1, 3, 1, 1)
        self.feature_weight, self.kl_weight, self.temperature = feature_weight, kl_weight, temperature
        self.late_weight = late_weight

    @property
    def runs_remainder(self) -> bool:
        """Whether the objective looks past the cut (a feature-only one does not: cheaper steps)."""
        return bool(self.kl_weight or self.late_weight)

    def init_student(self, student: nn.Module, train_remainder: bool) -> None:
        """The student's remainder takes the teacher's weights; frozen (BatchNorms in eval mode, no gradients)
        unless train_remainder (its BatchNorms still keep the teacher's statistics)."""
        own = student.remainder.state_dict()
        theirs = self.remainder.net.state_dict()
        missing = [k for k in own if k not in theirs or theirs[k].shape != own[k].shape]
        if missing:
            raise ConfigError(f"the student's remainder does not match the teacher's (first: {missing[0]}); "
                              f"were they built with the same teacher and cut?")
        student.remainder.load_state_dict({k: theirs[k] for k in own})
        self.freeze(student, train_remainder)

    @staticmethod
    def freeze(student: nn.Module, train_remainder: bool) -> None:
        """The remainder frozen (or trained, train_remainder) on the teacher's BatchNorm statistics, and the
        learned entry's output spread kept (see match_spread)."""
        student.remainder_frozen = True  # BatchNorm statistics: always the teacher's
        for p in student.remainder.parameters():
            p.requires_grad_(train_remainder)
        for p in _spread_parameters(student):
            p.requires_grad_(False)
        student.train(student.training)

    @torch.no_grad()
    def match_spread(self, student: nn.Module, loader, max_images: int = SPREAD_IMAGES) -> int:
        """Give the learned entry's output the teacher's per-channel mean and standard deviation at the cut,
        measured on up to max_images of `loader` (all ranks together), and keep them (freeze makes them
        constants). The entry ends in a BatchNorm, so its output's spread is that BatchNorm's affine weight:
        set to the teacher's std and frozen, the feature loss can then only be lowered by matching the
        teacher's features better, not by shrinking them towards their conditional mean. Shrunk features are
        what a free entry learns, and the teacher's remainder answers one class for every image on them
        (README, "Results": 0 % agreement after 15 minutes, 15 % after 3 with the spread kept). Returns the
        number of images measured on this rank (0: an exact entry, nothing to do)."""
        bn = _output_batchnorm(student)
        if bn is None:
            return 0
        # Σf, Σf², values per channel (the same in every column): one tensor, so one all-reduce
        sums = torch.zeros(3, bn.num_features, dtype=torch.float64, device=self.device)
        seen = 0
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(0)
        batches = iter(loader)
        try:
            for inputs, _ in batches:
                f = self.front(self.teacher_pixels(*inputs)).double()
                sums[0] += f.sum(dim=(0, 2, 3))
                sums[1] += (f * f).sum(dim=(0, 2, 3))
                sums[2] += f.shape[0] * f.shape[2] * f.shape[3]
                seen += f.shape[0]
                if seen >= max_images:
                    break
        finally:
            if hasattr(batches, "close"):
                batches.close()  # the loader's worker threads stop here, not at garbage collection
        sums = all_reduce_sum(sums)
        if float(sums[2][0]) == 0:
            raise ConfigError("no image could be read to measure the teacher's features on (match_spread)")
        mean = sums[0] / sums[2]
        set_entry_spread(student, mean, (sums[1] / sums[2] - mean * mean).clamp_min(0).sqrt())
        return seen

    def teacher_pixels(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        from ..dct.rebuild import coefficients_to_rgb

        rgb = coefficients_to_rgb(y, cbcr, self.dct_mean, self.dct_std)
        return (rgb - self.rgb_mean) / self.rgb_std

    @torch.no_grad()
    def teacher_outputs(self, y: torch.Tensor, cbcr: torch.Tensor) \
            -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features at the cut, logits, the remainder's last feature map) of the teacher."""
        features = self.front(self.teacher_pixels(y, cbcr))
        late = self.remainder.forward_features(features)
        return features, self.remainder.forward_head(late), late

    @staticmethod
    def feature_loss(student_features, teacher_features) -> torch.Tensor:
        fs, ft = student_features.float(), teacher_features.float()
        var = ft.var(dim=(0, 2, 3), unbiased=False).reshape(1, -1, 1, 1) + FEATURE_EPS
        return ((fs - ft) ** 2 / var).mean()

    @staticmethod
    def late_loss(student_late, teacher_late) -> torch.Tensor:
        """MSE on the remainder's last feature map relative to its mean per-channel variance (one scale for the
        whole map: sparse post-ReLU channels would otherwise get near-infinite weights)."""
        gs, gt = student_late.float(), teacher_late.float()
        return ((gs - gt) ** 2).mean() / (gt.var(dim=(0, 2, 3), unbiased=False).mean() + FEATURE_EPS)

    def loss(self, student_logits, student_features, teacher_logits, teacher_features, student_late=None,
             teacher_late=None) -> torch.Tensor:
        feature = self.feature_loss(student_features, teacher_features)
        t = self.temperature
        kl = nn.functional.kl_div(torch.log_softmax(student_logits.float() / t, dim=1),
                                  torch.log_softmax(teacher_logits.float() / t, dim=1), log_target=True,
                                  reduction="batchmean") * (t * t)
        loss = self.feature_weight * feature + self.kl_weight * kl
        if self.late_weight:
            loss = loss + self.late_weight * self.late_loss(student_late, teacher_late)
        return loss

    def step(self, train_model: nn.Module, inputs: tuple[torch.Tensor, ...], device, precision):
        """(loss, student logits, teacher's top-1 class): one micro-batch's forward and objective (logits and
        class None for a feature-only objective)."""
        if not self.runs_remainder:
            with autocast_context(device, precision), torch.no_grad():
                teacher_features = self.front(self.teacher_pixels(*inputs))
            with autocast_context(device, precision):
                _, features = train_model(*inputs, features_only=True)
            return self.feature_weight * self.feature_loss(features, teacher_features), None, None
        with autocast_context(device, precision):
            teacher_features, teacher_logits, teacher_late = self.teacher_outputs(*inputs)
            logits, features, late = train_model(*inputs, return_features=True, return_late=True)
        loss = self.loss(logits, features, teacher_logits, teacher_features, late, teacher_late)
        return loss, logits, teacher_logits.argmax(1)


@torch.no_grad()
def evaluate_distillation(model: nn.Module, distill: Distillation, loader, device, precision: str = "fp32",
                          on_batch=None) -> dict:
    """Over every batch of `loader`: loss (the objective), top1 (agreement with the teacher, %), top5 (the
    teacher's class among the student's top 5, %), feature_error (‖f_s − f_t‖ / ‖f_t‖ over the set), images,
    seconds, images_per_s (the student alone is not timed apart: the rate includes the teacher)."""
    from .metrics import topk_correct

    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # loss, top1, top5, images, diff², norm²
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    start, done = time.perf_counter(), 0
    try:
        for inputs, _ in loader:
            with autocast_context(device, precision):
                teacher_features, teacher_logits, teacher_late = distill.teacher_outputs(*inputs)
                logits, features, late = model(*inputs, return_features=True, return_late=True)
            n = logits.shape[0]
            loss = distill.loss(logits, features, teacher_logits, teacher_features, late, teacher_late)
            top1, top5 = topk_correct(logits.float(), teacher_logits.float().argmax(1))
            diff = float(((features.float() - teacher_features.float()) ** 2).sum())
            norm = float((teacher_features.float() ** 2).sum())
            sums += torch.tensor([float(loss) * n, float(top1), float(top5), n, diff, norm], dtype=torch.float64,
                                 device=device)
            done += 1
            if on_batch is not None:
                on_batch(done)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    sums = all_reduce_sum(sums)
    images = int(sums[3])
    n = max(images, 1)
    return {"loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "top5": 100.0 * float(sums[2]) / n,
            "feature_error": (float(sums[4]) / max(float(sums[5]), 1e-30)) ** 0.5, "images": images,
            "seconds": seconds, "images_per_s": images / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate_agreement(model, teacher_model: nn.Module, loader, input_config, teacher_mean, teacher_std,
                       device, precision: str = "fp32") -> dict:
    """Top-1 agreement (%) of a DCT `model` with an RGB teacher shown the pixels rebuilt from the same
    coefficients, and the teacher's own top-1 (%) on those pixels against the loader's labels (when it has
    them, else None): the ceiling a converted model works under."""
    from ..dct.rebuild import coefficients_to_rgb
    from ..input_config import normalization

    if input_config.representation != "dct":
        raise ConfigError("agreement with a teacher is measured for DCT models; this checkpoint takes RGB")
    dct_mean, dct_std = normalization(input_config, "dct")
    mean = torch.tensor(teacher_mean, device=device).reshape(1, 3, 1, 1)
    std = torch.tensor(teacher_std, device=device).reshape(1, 3, 1, 1)
    teacher_model.to(device).eval()
    sums = torch.zeros(4, dtype=torch.float64)  # agree, images, teacher correct, labelled images
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    for inputs, targets in loader:
        with autocast_context(torch.device(device), precision):
            student = model(*inputs)
            pixels = (coefficients_to_rgb(*inputs, dct_mean, dct_std) - mean) / std
            teacher = teacher_model(pixels)
        s, t = student.float().argmax(1).cpu(), teacher.float().argmax(1).cpu()
        targets = targets.cpu()
        labelled = targets >= 0
        sums += torch.tensor([float((s == t).sum()), len(s), float((t == targets)[labelled].sum()),
                              float(labelled.sum())], dtype=torch.float64)
    sums = all_reduce_sum(sums.to(device)).cpu()
    images = max(float(sums[1]), 1.0)
    return {"agreement": 100.0 * float(sums[0]) / images,
            "teacher_top1": 100.0 * float(sums[2]) / float(sums[3]) if float(sums[3]) else None}


__all__ = ["Distillation", "evaluate_agreement", "evaluate_distillation", "set_entry_spread"]
