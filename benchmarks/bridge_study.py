"""A stride-8 DCT entry learned through stride 4: does it learn like the stride-4 cut and serve like the
stride-8 one? (issue 19; the study behind README "Results", runs H-J).

    python benchmarks/convert_study.py cache --cut blocks.1 --next-cut blocks.2 --data ... --out study/s4_train.pt
    python benchmarks/convert_study.py train --cut blocks.1 --depth 2 --batch-size 16 ... --out study/E
    python benchmarks/bridge_study.py bridge --train study/s4_train.pt --val study/s4_val.pt --out study/H
    python benchmarks/bridge_study.py compose --train ... --val ... --entry study/E.pt --bridge study/H.pt --out study/J
    python benchmarks/bridge_study.py time --bridge-width 144 --bridge-depth 1

Why: at stride 4 (`blocks.1`) a small entry learns EfficientNet-Lite0's features several times faster than at
stride 8 (`blocks.2`), but the remainder after stride 4 still runs `blocks.2` at 56x56, so the converted model
serves only 1.1-1.3x faster than the teacher (cut_cost.py). Here the entry ends at stride 4 and a small learned
*bridge* (space-to-depth of the stride-4 map, then inverted-residual blocks at 28x28) replaces the teacher's
`blocks.2`; the teacher's remainder after stride 8 follows.

bridge: the bridge alone, from the teacher's cached stride-4 features to its stride-8 ones (per-channel
normalized MSE): how well a cheap bridge can stand in for `blocks.2` (relative error, and agreement of the
teacher's stride-8 remainder fed the bridge's output on the labelled set).
compose: a stride-4 entry (convert_study.py train --cut blocks.1 weights) + a bridge, trained together:
normalized MSE at stride 8 + --aux x normalized MSE at stride 4; agreement through the frozen stride-8 remainder.
time: ONNX Runtime ms per image (batch 8, 2 threads, median of interleaved rounds), side by side: the whole
teacher, converted stride-8 models with learned entries of the stride-4 entry's depth (and with the bridge's
depth added), the composed model, and the converted stride-4 model (the teacher's own blocks.2).
Every evaluation is one JSON line in OUT.jsonl; weights in OUT.pt.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from convert_study import (TEACHER, cosine_lr, normalized_mse, relative_error, student,  # noqa: E402
                           teacher_and_cut)

CUT4, CUT8 = "blocks.1", "blocks.2"


class InvertedResidual(nn.Module):
    """1x1 expand, ReLU6, k x k depthwise, ReLU6, 1x1 project (+ x when the widths match): Lite0's own block."""

    def __init__(self, inputs: int, outputs: int, width: int, kernel: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(inplace=True),
            nn.Conv2d(width, width, kernel, padding=kernel // 2, groups=width, bias=False), nn.BatchNorm2d(width),
            nn.ReLU6(inplace=True), nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.residual = inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class Bridge(nn.Module):
    """Stride-4 features (c4 channels, 2H x 2W) -> stride-8 features (c8 channels, H x W): space-to-depth (no
    information lost, 4 c4 channels), then `depth` inverted-residual blocks at H x W."""

    def __init__(self, c4: int, c8: int, width: int, depth: int, kernel: int):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.blocks = nn.Sequential(InvertedResidual(4 * c4, c8, width, kernel),
                                    *[InvertedResidual(c8, c8, width, kernel) for _ in range(depth - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.unshuffle(x))


class ViaStride4(nn.Module):
    """Coefficients -> stride-4 entry -> bridge -> the teacher's remainder after stride 8 (frozen, eval)."""

    def __init__(self, entry: nn.Module, bridge: Bridge, remainder8: nn.Module):
        super().__init__()
        self.entry, self.bridge, self.remainder8 = entry, bridge, remainder8
        for p in remainder8.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.remainder8.eval()  # the teacher's BatchNorm statistics, always
        return self

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor, features: bool = False):
        f4 = self.entry(y, cbcr)
        f8 = self.bridge(f4)
        return (f4, f8) if features else self.remainder8(f8)


def make_bridge(args) -> Bridge:
    return Bridge(24, 40, args.bridge_width, args.bridge_depth, args.bridge_kernel)


def load_caches(args):
    data, val = torch.load(args.train), torch.load(args.val)
    for name, cache in (("train", data), ("val", val)):
        if cache["cut"] != CUT4 or cache.get("next_cut") != CUT8:
            raise SystemExit(f"the {name} cache must be made with --cut {CUT4} --next-cut {CUT8}")
    held = torch.arange(len(data["y"])) % 37 == 0  # as convert_study.py: ~2.7 % held out
    return data, val, torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


@torch.no_grad()
def agreement(logits_of, val) -> dict:
    agree = correct = 0
    n = len(val["labels"])
    for i in range(0, n, 100):
        s = logits_of(slice(i, i + 100)).argmax(1)
        agree += int((s == val["logits"][i:i + 100].float().argmax(1)).sum())
        correct += int((s == val["labels"][i:i + 100]).sum())
    return {"agreement": 100 * agree / n, "top1": 100 * correct / n}


def run_loop(args, modules: list[nn.Module], step_loss, evaluate, extra: dict) -> None:
    """Time-budgeted AdamW with a cosine schedule over --minutes; evaluate every --eval-every minutes."""
    torch.manual_seed(args.seed)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    total = args.minutes * 60
    log = open(f"{args.out}.jsonl", "a")
    start, step, seen, next_eval, loss_avg = time.perf_counter(), 0, 0, 0.0, None
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= total:
            for m in modules:
                m.eval()
            row = evaluate()
            for m in modules:
                m.train()
            row.update(minutes=round(elapsed / 60, 1), step=step, images=seen,
                       images_per_s=round(seen / max(elapsed, 1e-9), 1), train_loss=loss_avg, lr=args.lr,
                       batch_size=args.batch_size, bridge_width=args.bridge_width, bridge_depth=args.bridge_depth,
                       bridge_kernel=args.bridge_kernel, **extra)
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            torch.save({k: m.state_dict() for k, m in zip(("first", "second"), modules)}
                       if len(modules) > 1 else modules[0].state_dict(), f"{args.out}.pt")
            next_eval += args.eval_every * 60
            if elapsed >= total:
                break
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, elapsed, total)
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step, seen = step + 1, seen + args.batch_size
        loss_avg = float(loss.detach()) if loss_avg is None else 0.98 * loss_avg + 0.02 * float(loss.detach())


def bridge(args) -> None:
    data, val, rows, held_out = load_caches(args)
    _, remainder8 = teacher_and_cut(CUT8)
    net = make_bridge(args)
    if args.init:
        net.load_state_dict(torch.load(args.init))

    def step_loss():
        batch = rows[torch.randint(len(rows), (args.batch_size,))]
        return normalized_mse(net(data["features"][batch].float()), data["next_features"][batch].float())

    @torch.no_grad()
    def evaluate():
        error = relative_error((net(data["features"][held_out[i:i + 64]].float()),
                                data["next_features"][held_out[i:i + 64]].float())
                               for i in range(0, len(held_out), 64))
        val_error = relative_error((net(val["features"][i:i + 100].float()), val["next_features"][i:i + 100].float())
                                   for i in range(0, len(val["labels"]), 100))
        row = {"held_out_s8_error": error, "val_s8_error": val_error}
        row.update(agreement(lambda s: remainder8(net(val["features"][s].float())), val))
        return row

    run_loop(args, [net], step_loss, evaluate, {"stage": "bridge", "init": args.init})


def compose(args) -> None:
    data, val, rows, held_out = load_caches(args)
    _, remainder4 = teacher_and_cut(CUT4)
    _, remainder8 = teacher_and_cut(CUT8)
    entry = student(CUT4, args.entry_width, args.entry_depth, 3, remainder4, args.entry).entry
    net = make_bridge(args)
    if args.bridge:
        net.load_state_dict(torch.load(args.bridge))
    model = ViaStride4(entry, net, remainder8)
    if args.init:
        state = torch.load(args.init)
        entry.load_state_dict(state["first"])
        net.load_state_dict(state["second"])

    def step_loss():
        batch = rows[torch.randint(len(rows), (args.batch_size,))]
        f4, f8 = model(data["y"][batch].float(), data["cbcr"][batch].float(), features=True)
        loss = normalized_mse(f8, data["next_features"][batch].float())
        if args.aux:
            loss = loss + args.aux * normalized_mse(f4, data["features"][batch].float())
        return loss

    @torch.no_grad()
    def evaluate():
        pairs4, pairs8 = [], []
        for i in range(0, len(held_out), 64):
            r = held_out[i:i + 64]
            f4, f8 = model(data["y"][r].float(), data["cbcr"][r].float(), features=True)
            pairs4.append((f4, data["features"][r].float()))
            pairs8.append((f8, data["next_features"][r].float()))
        row = {"held_out_s4_error": relative_error(pairs4), "held_out_s8_error": relative_error(pairs8)}
        row.update(agreement(lambda s: model(val["y"][s].float(), val["cbcr"][s].float()), val))
        return row

    model.train()
    run_loop(args, [entry, net], step_loss, evaluate,
             {"stage": "compose", "entry": args.entry, "bridge": args.bridge, "aux": args.aux,
              "entry_width": args.entry_width, "entry_depth": args.entry_depth})
    model.train()


def timing(args) -> None:
    import statistics

    from cut_cost import onnx_session
    from jpegnet.input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS
    from jpegnet.models import create_model
    from jpegnet.models.cut import build_teacher_architecture, cut_teacher

    torch.set_num_threads(args.threads)
    x = (torch.randn(args.batch, 3, 224, 224),)
    coefficients = (torch.randn(args.batch, DCT_Y_CHANNELS, 28, 28),
                    torch.randn(args.batch, DCT_CBCR_CHANNELS, 14, 14))
    _, remainder8, _ = cut_teacher(build_teacher_architecture(TEACHER).eval(), CUT8)
    width = args.entry_width

    def converted(cut: str, depth: int):
        return create_model("converted", teacher=TEACHER, cut=cut, entry_width=width, entry_depth=depth)

    rows = [("whole teacher (pixels in)", build_teacher_architecture(TEACHER), x)]
    for depth in sorted({args.entry_depth, args.entry_depth + args.bridge_depth, 4}):
        rows.append((f"converted, stride-8 entry (width {width}, depth {depth})", converted(CUT8, depth),
                     coefficients))
    rows.append((f"stride-4 entry (width {width}, depth {args.entry_depth}) + bridge (width {args.bridge_width}, "
                 f"depth {args.bridge_depth}) + stride-8 remainder",
                 ViaStride4(converted(CUT4, args.entry_depth).entry, make_bridge(args), remainder8), coefficients))
    rows.append((f"converted, stride-4 entry (width {width}, depth {args.entry_depth}) + the teacher's blocks.2",
                 converted(CUT4, args.entry_depth), coefficients))
    sessions = [(name, *onnx_session(module, inputs, args.threads)) for name, module, inputs in rows]
    times = {name: [] for name, _, _ in sessions}
    for _ in range(args.repeats):  # rounds interleaved, so the VM's drift hits every model alike
        for name, session, feed in sessions:
            session.run(None, feed)
            start = time.perf_counter()
            for _ in range(args.iters):
                session.run(None, feed)
            times[name].append((time.perf_counter() - start) / args.iters / args.batch * 1000)
    base = statistics.median(times[sessions[0][0]])
    print(f"batch {args.batch}, {args.threads} threads, median of {args.repeats} rounds of {args.iters} runs")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{ms:6.2f} ms/image ({min(values):.2f}-{max(values):.2f})  {base / ms:4.2f}x  {name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("bridge", "compose", "time"):
        p = sub.add_parser(name)
        p.add_argument("--bridge-width", type=int, default=144)
        p.add_argument("--bridge-depth", type=int, default=1)
        p.add_argument("--bridge-kernel", type=int, default=3)
        p.add_argument("--entry-depth", type=int, default=2)
        p.add_argument("--entry-width", type=float, default=1.0, help="times the 192 coefficient channels")
        if name == "time":
            p.add_argument("--batch", type=int, default=8)
            p.add_argument("--threads", type=int, default=2)
            p.add_argument("--iters", type=int, default=10)
            p.add_argument("--repeats", type=int, default=15)
            continue
        p.add_argument("--train", required=True)
        p.add_argument("--val", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--minutes", type=float, default=10.0)
        p.add_argument("--eval-every", type=float, default=3.0)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--init", default=None, help="this stage's own earlier weights (OUT.pt)")
        p.add_argument("--seed", type=int, default=0)
        if name == "compose":
            p.add_argument("--entry", required=True, help="a stride-4 entry: convert_study.py train --cut blocks.1")
            p.add_argument("--bridge", default=None, help="bridge weights (bridge_study.py bridge OUT.pt)")
            p.add_argument("--aux", type=float, default=1.0, help="weight of the stride-4 feature loss")
    args = parser.parse_args()
    {"bridge": bridge, "compose": compose, "time": timing}[args.command](args)


if __name__ == "__main__":
    main()
