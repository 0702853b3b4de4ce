"""End-to-end training throughput from full-size JPEG files: is the GPU fed, or does decoding starve it?

One run measures images/s of training steps (forward, backward, SGD) fed by four inputs:

  (0) random tensors (the model step alone: the ceiling), ResNet-50 and dct_late_concat_rfa_thinner;
  (1) RGB ResNet-50 fed by the torchvision DataLoader (Pillow decode, RandomResizedCrop, flip, ToTensor,
      Normalize), one worker process per core, pinned memory;
  (2) RGB ResNet-50 fed by nvJPEG on the GPU (`torchvision.io.decode_jpeg(device='cuda')`, batched) plus a
      per-image random-resized-crop and flip on the GPU; file reading on a background thread;
  (3) dct_late_concat_rfa_thinner fed by the jpegnet pipeline (coefficients read on C threads, crop / resize /
      flip in the DCT domain, batches prefetched on a thread while the GPU trains).

Files: the ImageNet originals of ../shared/data/jpeg-corpus (full-size, mostly 4:4:4), repeated to --images.
On a CUDA machine the defaults are the issue's setting (224 px, batch 256, bf16, channels_last); without one
the script runs a reduced CPU form (--size 64, batch 8, quarter-width models, 10 steps) and prints
row (2) as skipped: it needs CUDA. Target on one GPU: (3) >= 4x (1) and >= 2x (2).

    python benchmarks/train_throughput.py [--steps 30] [--batch-size 256] [--images 2048]
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from jpegnet.data import JpegFolder, create_loader
from jpegnet.input_config import IMAGENET_MEAN, IMAGENET_STD
from jpegnet.models import create_model

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jpeg-corpus"


def repeated_folder(files: list[Path], images: int, root: Path, classes: int = 10) -> Path:
    """root/cNN/iNNNNN.jpg links cycling through `files` until `images` links exist."""
    for i in range(images):
        folder = root / f"c{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(files[i % len(files)], folder / f"i{i:06d}.jpg")
    return root


class Trainer:
    """One model's training step: autocast, channels_last on CUDA, SGD with momentum."""

    def __init__(self, name: str, device: torch.device, width: float, num_classes: int = 1000):
        kwargs = {} if width == 1.0 else {"width_multiplier": width}
        self.model = create_model(name, num_classes=num_classes, **kwargs).to(device).train()
        self.device = device
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.dtype = torch.bfloat16 if device.type == "cuda" else None

    def step(self, inputs, targets) -> None:
        if self.device.type == "cuda":
            inputs = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.loss(self.model(*inputs).float(), targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def measure(trainer: Trainer, batches, steps: int, warmup: int, batch_size: int) -> float:
    """Images/s over `steps` steps after `warmup` steps, drawing (inputs, targets) from the iterator."""
    it = iter(batches)
    for _ in range(warmup):
        trainer.step(*next(it))
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(*next(it))
    sync(trainer.device)
    return steps * batch_size / (time.perf_counter() - start)


def measure_pipeline(batches, steps: int, warmup: int, batch_size: int, device: torch.device) -> float:
    """Images/s of the input pipeline alone (batches on the device, no training step)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def endless(make_iter):
    while True:
        yield from make_iter()


def random_batches(trainer: Trainer, batch: int, size: int):
    inputs = trainer.model.example_inputs(batch, size, device=trainer.device)
    targets = torch.randint(0, 1000, (batch,), device=trainer.device)
    while True:
        yield inputs, targets


def torchvision_batches(root: Path, batch: int, size: int, workers: int, device: torch.device):
    import torchvision
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = torchvision.datasets.ImageFolder(str(root), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=workers > 0)
    for x, t in endless(lambda: loader):
        yield (x.to(device, non_blocking=True),), t.to(device, non_blocking=True)


def nvjpeg_batches(root: Path, batch: int, size: int, device: torch.device):
    """File bytes read on a thread; decode, crop, resize, flip and normalize on the GPU."""
    import torchvision
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms.v2 import functional as F

    files = sorted(root.glob("*/*.jpg"))
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    q: queue.Queue = queue.Queue(maxsize=4)

    def reader():
        rng = random.Random(0)
        while True:
            chosen = rng.sample(files, batch)
            q.put(([torchvision.io.read_file(str(f)) for f in chosen], torch.randint(0, 1000, (batch,))))

    threading.Thread(target=reader, daemon=True).start()
    while True:
        datas, targets = q.get()
        images = torchvision.io.decode_jpeg(datas, device=device, mode=torchvision.io.ImageReadMode.RGB)
        out = []
        for img in images:
            i, j, h, w = RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
            crop = F.resized_crop(img, i, j, h, w, [size, size], antialias=True)
            out.append(crop.flip(-1) if random.random() < 0.5 else crop)
        x = (torch.stack(out).float() - mean) / std
        yield (x,), targets.to(device, non_blocking=True)


def jpegnet_batches(root: Path, trainer: Trainer, batch: int, size: int, threads: int | None, prefetch: int):
    ds = JpegFolder(root, "dct", train=True, input_size=size)
    loader = create_loader(ds, batch, shuffle=True, drop_last=True, device=trainer.device, num_threads=threads,
                           input_config=trainer.model.input_config, prefetch=prefetch)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224 if cuda else 64)
    p.add_argument("--batch-size", type=int, default=256 if cuda else 8)
    p.add_argument("--steps", type=int, default=30 if cuda else 10)
    p.add_argument("--warmup", type=int, default=5 if cuda else 3)
    p.add_argument("--images", type=int, default=2048 if cuda else 64)
    p.add_argument("--width", type=float, default=1.0 if cuda else 0.25,
                   help="width multiplier of both models (1.0 on GPU; smaller makes the CPU form quick)")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--threads", type=int, default=None, help="jpegnet decode threads (default: all cores)")
    p.add_argument("--prefetch", type=int, default=2 if cuda else 0,
                   help="batches the jpegnet loader prepares ahead on a thread (default 2 on CUDA, 0 on CPU: on "
                        "a small CPU the prefetch thread's tensor ops and the training step fight over the same "
                        "cores, measured 95 against 167 img/s on 2 cores)")
    p.add_argument("--data", type=Path, default=CORPUS)
    args = p.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    files = sorted(f for f in args.data.glob("*.JPEG"))  # the ImageNet originals (the variants are .jpg)
    if not files:
        p.error(f"no *.JPEG originals in {args.data}")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores (reduced form)"
    print(f"{where}: {len(files)} originals repeated to {args.images}, {args.size} px, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup}, width {args.width}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = repeated_folder(files, args.images, Path(tmp))
        rgb = Trainer("resnet50", device, args.width)
        dct = Trainer("dct_late_concat_rfa_thinner", device, args.width)
        n, s, b = args.steps, args.warmup, args.batch_size

        def row(label, fn):
            try:
                value = fn()
            except Exception as exc:  # one failing pipeline must not hide the others' numbers
                results.append((label, None, f"failed: {type(exc).__name__}: {exc}"))
            else:
                results.append((label, value, ""))
            print(f"  {label}: {results[-1][1] or results[-1][2]}", flush=True)

        row("(0) ResNet-50 step alone (random tensors)", lambda: measure(rgb, random_batches(rgb, b, args.size), n, s, b))
        row("(0) DCT thinner step alone (random tensors)", lambda: measure(dct, random_batches(dct, b, args.size), n, s, b))
        row(f"(1) ResNet-50 + torchvision DataLoader, {args.workers} workers",
            lambda: measure(rgb, torchvision_batches(root, b, args.size, args.workers, device), n, s, b))
        row("(1) pipeline alone: torchvision DataLoader",
            lambda: measure_pipeline(torchvision_batches(root, b, args.size, args.workers, device), n, s, b, device))
        row("(3) pipeline alone: jpegnet DCT",
            lambda: measure_pipeline(jpegnet_batches(root, dct, b, args.size, args.threads, args.prefetch), n, s, b, device))
        if cuda:
            row("(2) pipeline alone: nvJPEG + GPU crop",
                lambda: measure_pipeline(nvjpeg_batches(root, b, args.size, device), n, s, b, device))
            row("(2) ResNet-50 + nvJPEG decode + crop on the GPU",
                lambda: measure(rgb, nvjpeg_batches(root, b, args.size, device), n, s, b))
        else:
            results.append(("(2) ResNet-50 + nvJPEG decode + crop on the GPU", None, "skipped: needs CUDA"))
        row("(3) dct_late_concat_rfa_thinner + jpegnet pipeline",
            lambda: measure(dct, jpegnet_batches(root, dct, b, args.size, args.threads, args.prefetch), n, s, b))

    print("\n| pipeline | images/s | note |\n|---|---|---|")
    for label, value, note in results:
        print(f"| {label} | {'' if value is None else f'{value:,.1f}'} | {note} |")
    values = {label[:3]: value for label, value, _ in results if value is not None and "alone" not in label}
    if "(3)" in values and "(1)" in values:
        line = f"\n(3) / (1) = {values['(3)'] / values['(1)']:.2f}x (target >= 4x)"
        if "(2)" in values:
            line += f"; (3) / (2) = {values['(3)'] / values['(2)']:.2f}x (target >= 2x)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
