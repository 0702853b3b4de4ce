"""The recipe pieces: colour jitter on DCT coefficients equals the same jitter on pixels, CutMix on whole MCUs
equals CutMix on pixels, MixUp targets, model EMA, gradient accumulation and clipping in the trainer."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jpegnet.codec import read_coefficients
from jpegnet.data.jitter import jitter_dct, jitter_dct_normalized, jitter_rgb
from jpegnet.dct.pixels import dct_basis, reconstruct
from jpegnet.engine.recipe import MixUpCutMix, ModelEma, cut_box, soft_targets

SAMPLES = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "jpegnet/samples/**/*.jpg"), recursive=True))


def maps(path):
    """Raw dequantized (y (1, 64, h, w), cbcr (1, 128, h/2, w/2)) of a 4:2:0 JPEG, and the JpegCoefficients."""
    c = read_coefficients(path)
    assert c.sampling[0] == (2, 2)
    planes = [torch.from_numpy(np.ascontiguousarray(c.dequantized(k))).double() for k in range(3)]
    to_map = lambda p: p.reshape(*p.shape[:2], 64).permute(2, 0, 1)[None]  # noqa: E731  (bh, bw, 8, 8) → (1, 64, bh, bw)
    hb, wb = c.height // 16 * 2, c.width // 16 * 2  # whole MCUs
    y = to_map(planes[0])[:, :, :hb, :wb]
    cbcr = torch.cat([to_map(planes[1]), to_map(planes[2])], 1)[:, :, :hb // 2, :wb // 2]
    return y, cbcr, c


def to_rgb(y, cbcr) -> np.ndarray:
    """Pixels (H, W, 3) of raw maps: blockwise IDCT, chroma upsampled by repetition (unclipped)."""
    basis = dct_basis()

    def plane(m):
        b = m[0].numpy().reshape(8, 8, *m.shape[2:]).transpose(2, 3, 0, 1)
        px = np.einsum("ux,hwuv,vy->hwxy", basis, b, basis)
        return px.transpose(0, 2, 1, 3).reshape(8 * m.shape[2], 8 * m.shape[3]) + 128.0

    lum = plane(y)
    cb, cr = (np.repeat(np.repeat(plane(cbcr[:, 64 * k:64 * k + 64]), 2, 0), 2, 1) for k in range(2))
    return np.stack([lum + 1.402 * (cr - 128), lum - 0.344136286 * (cb - 128) - 0.714136286 * (cr - 128),
                     lum + 1.772 * (cb - 128)], -1)


def two_image_batch():
    """Raw maps of two sample JPEGs cut to a common size, as one batch of 2: (y, cbcr)."""
    (y1, c1, _), (y2, c2, _) = maps(SAMPLES[0]), maps(SAMPLES[2])
    h, w = min(y1.shape[2], y2.shape[2]), min(y1.shape[3], y2.shape[3])
    y = torch.cat([y1[..., :h, :w], y2[..., :h, :w]])
    cbcr = torch.cat([c1[..., :h // 2, :w // 2], c2[..., :h // 2, :w // 2]])
    return y, cbcr


@pytest.mark.parametrize("b, c, s", [(0.1, 1.0, 1.0), (0.0, 0.6, 1.0), (0.0, 1.0, 0.3), (-0.05, 1.3, 1.4)])
def test_dct_jitter_equals_pixel_jitter(b, c, s):
    y, cbcr, coefs = maps(SAMPLES[0])
    pixels = to_rgb(y, cbcr)
    # the test's pixel reconstruction agrees with the library's (where chroma upsampling does not matter)
    ref = reconstruct(coefs, as_float=True)[: pixels.shape[0], : pixels.shape[1]]
    assert np.abs(ref[..., 0] - ref[..., 1] - (pixels[..., 0] - pixels[..., 1])).mean() < 8
    jy, jc = jitter_dct(y, cbcr, b, c, s)
    want = jitter_rgb(torch.from_numpy(pixels / 255.0).permute(2, 0, 1)[None], b, c, s)[0].permute(1, 2, 0)
    assert np.abs(to_rgb(jy, jc) / 255.0 - want.numpy()).max() < 1e-9


def test_normalized_jitter_is_the_raw_jitter_normalized():
    y, cbcr, _ = maps(SAMPLES[1])
    mean, std = torch.randn(192).double(), torch.rand(192).double() + 0.5
    ny, nc = (y - mean[:64].view(1, 64, 1, 1)) / std[:64].view(1, 64, 1, 1), \
        (cbcr - mean[64:].view(1, 128, 1, 1)) / std[64:].view(1, 128, 1, 1)
    jy, jc = jitter_dct(y, cbcr, 0.1, 0.8, 1.2)
    gy, gc = jitter_dct_normalized(ny, nc, mean, std, 0.1, 0.8, 1.2)
    assert torch.allclose(gy * std[:64].view(1, 64, 1, 1) + mean[:64].view(1, 64, 1, 1), jy, atol=1e-9)
    assert torch.allclose(gc * std[64:].view(1, 128, 1, 1) + mean[64:].view(1, 128, 1, 1), jc, atol=1e-9)


def test_cutmix_on_whole_mcus_equals_pixel_cutmix():
    y, cbcr = two_image_batch()
    mixer = MixUpCutMix(0.0, 1.0, num_classes=3, representation="dct", seed=3)
    (my, mc), soft, lam = mixer((y, cbcr), torch.tensor([0, 2]), step=5)
    # the box the mixer drew, in MCUs (same draws), and lam = 1 - its area
    top, bottom, left, right = cut_box(*_drawn(mixer, 5), cbcr.shape[2], cbcr.shape[3], 1, *_drawn_pos(mixer, 5))
    assert lam == pytest.approx(1 - (bottom - top) * (right - left) / (cbcr.shape[2] * cbcr.shape[3]))
    assert 0 < lam < 1
    px = [to_rgb(y[i:i + 1], cbcr[i:i + 1]) for i in range(2)]
    want = px[0].copy()
    want[16 * top:16 * bottom, 16 * left:16 * right] = px[1][16 * top:16 * bottom, 16 * left:16 * right]
    assert np.abs(to_rgb(my[:1], mc[:1]) - want).max() < 1e-9
    assert soft[0].tolist() == pytest.approx([lam, 0.0, 1 - lam])


def _drawn(mixer, step):
    from jpegnet.engine.recipe import _beta, _rng
    u = _rng(mixer.seed, step, 5)
    return (_beta(mixer.cutmix_alpha, u[1], u[2]),)


def _drawn_pos(mixer, step):
    from jpegnet.engine.recipe import _rng
    u = _rng(mixer.seed, step, 5)
    return u[3], u[4]


def test_mixup_on_coefficients_is_mixup_on_pixels_and_mix_inputs_is_the_mixers_input_half():
    """What lets distillation mix unlabeled photos (function matching): the pixels of mixed coefficients are
    the mixed pixels, so the teacher shown them answers for exactly the student's input."""
    y, cbcr = two_image_batch()
    mixer = MixUpCutMix(1.0, 0.0, num_classes=3, representation="dct", seed=1)
    (my, mc), lam, perm = mixer.mix_inputs((y, cbcr), step=4)
    assert 0 < lam < 1 and perm.tolist() == [1, 0]
    px = [to_rgb(y[i:i + 1], cbcr[i:i + 1]) for i in range(2)]
    assert np.abs(to_rgb(my[:1], mc[:1]) - (lam * px[0] + (1 - lam) * px[1])).max() < 1e-9
    (cy, cc), _, lam2 = mixer((y, cbcr), torch.tensor([0, 2]), step=4)  # the labelled path mixes the same way
    assert lam2 == lam and torch.equal(cy, my) and torch.equal(cc, mc)


def test_mixup_is_deterministic_and_mixes_targets():
    x = torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 1, 2, 3])
    mixer = MixUpCutMix(0.4, 0.0, num_classes=4, representation="rgb", smoothing=0.1, seed=0)
    (a,), soft, lam = mixer((x,), t, step=7)
    (b,), _, lam2 = mixer((x,), t, step=7)
    assert torch.equal(a, b) and lam == lam2
    assert torch.allclose(a, lam * x + (1 - lam) * x.flip(0))
    assert torch.allclose(soft, soft_targets(t, 4, lam, 0.1, torch.arange(3, -1, -1)))
    assert torch.allclose(soft.sum(1), torch.ones(4))


def test_model_ema():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, 0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].running_mean.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 0.9 * start + 0.1 * (start + 1.0))
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))  # buffers copied


def _step_gradients(accum: int, clip: float = 0.0):
    """The trainer's _step on a BatchNorm-free model; returns the gradient it applied."""
    from types import SimpleNamespace

    from jpegnet.engine.trainer import TrainingRun

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    run = TrainingRun.__new__(TrainingRun)
    run.config = SimpleNamespace(channels_last=False, grad_accum_steps=accum, clip_grad=clip, precision="fp32",
                                 brightness=0, contrast=0, saturation=0)
    run.model = run.train_model = model
    run.device = torch.device("cpu")
    run.mixer, run.ema, run.global_step = None, None, 0
    run.min_batch, run.bn_values_per_image = None, None  # no BatchNorm here: no batch is too small for it
    run.optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda _: 1.0)
    run.scaler = torch.amp.GradScaler("cpu", enabled=False)
    run.criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x, t = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    loss, logits, _ = run._step((x,), t)
    return model[1].weight.grad.clone(), loss, logits


def test_gradient_accumulation_gives_the_same_update():
    g1, l1, o1 = _step_gradients(1)
    g3, l3, o3 = _step_gradients(3)
    assert torch.allclose(g1, g3, atol=1e-6) and torch.allclose(l1, l3, atol=1e-6) and torch.allclose(o1, o3)


def test_gradient_clipping():
    g, _, _ = _step_gradients(1)
    clipped, _, _ = _step_gradients(1, clip=0.01)
    assert torch.linalg.vector_norm(clipped) <= 0.01 + 1e-6  # the weight is part of the clipped total
    assert torch.allclose(clipped / torch.linalg.vector_norm(clipped), g / torch.linalg.vector_norm(g), atol=1e-5)


def test_train_with_every_recipe_piece_resumes_exactly(tmp_path, capsys):
    """Short DCT runs with MixUp + CutMix, EMA, clipping, accumulation and colour jitter: 2 epochs straight equal
    1 epoch then --resume (draws depend on (seed, step), the EMA is in the checkpoint), and `eval` measures the
    EMA weights, as the run's validation did."""
    import csv
    import sys as _sys

    from jpegnet.cli import main
    _sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_engine_resume import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data", classes=2, val_per_class=1)  # 2 steps and 1 val batch an epoch
    args = ["--data", str(data), "--model", "dct_late_concat_rfa_thinner", "--model-kwargs", "width_multiplier=0.125",
            "--input-size", "32", "--batch-size", "4", "--threads", "1", "--no-progress", "--no-tensorboard",
            "--deterministic", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "0.5", "--clip-grad", "1.0",
            "--grad-accum-steps", "2", "--brightness", "0.2", "--contrast", "0.2", "--saturation", "0.2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *args, "--out", str(straight), "--epochs", "2"]) == 0
    # the same run stopped (Ctrl-C) when its second epoch starts, after epoch 1's checkpoint, then resumed
    from jpegnet.engine.trainer import TrainingRun
    original, calls = TrainingRun._train_epoch, []

    def stop_at_second_epoch(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self)

    TrainingRun._train_epoch = stop_at_second_epoch
    try:
        assert main(["train", *args, "--out", str(split), "--epochs", "2"]) == 130
    finally:
        TrainingRun._train_epoch = original
    assert torch.load(split / "last.pt", weights_only=True)["epoch"] == 1
    assert main(["train", "--resume", str(split / "last.pt")]) == 0
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["train_config"]["grad_accum_steps"] == 2 and "ema" in a
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert any(not torch.equal(a["ema"][k], a["model"][k]) for k in a["model"]
               if a["model"][k].dtype.is_floating_point)
    capsys.readouterr()
    assert main(["eval", "--data", str(data), "--checkpoint", str(straight / "last.pt")]) == 0
    top1 = float(capsys.readouterr().out.split("top-1 ")[1].split("%")[0])
    assert top1 == pytest.approx(float(list(csv.DictReader(open(straight / "log.csv")))[-1]["val_top1"]), abs=0.01)
