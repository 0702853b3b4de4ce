"""Accuracy study: every DCT model against its RGB twin on imagenette-224, one recipe, resumable.

    python benchmarks/accuracy.py --profile cpu             # train every run not finished yet (resumes)
    python benchmarks/accuracy.py --profile cpu --throughput  # quiet-machine speed of every model in the study
    python benchmarks/accuracy.py --profile cpu --report      # results CSV, table and Pareto PNGs
    python benchmarks/accuracy.py --profile gpu --all         # on a GPU: train, measure, report in one call

The recipe (identical for every model of a profile):

  cpu  full imagenette-224 split (9,469 train / 3,925 val, 10 classes), 96 px input, 12 epochs, batch 64,
       AdamW lr 2e-3 (weight decay 0.05 on weights only), 1 warmup epoch then cosine to 0, label smoothing 0.1,
       RandomResizedCrop (torchvision's scale 0.08-1, ratio 3/4-4/3) + horizontal flip in training, resize +
       centre crop (crop_pct 0.875) for validation, fp32. Widths: the ResNet family at 0.25 (resnet50 and
       every DCT ResNet: same stages, so the twins stay twins), EfficientNet-B0 at width 0.5, VGNetG-1.0MP
       at its own width. Two runs at a time, one torch thread and one decode thread each (on 2 cores two
       single-threaded runs train ~15% more images/s than one two-threaded run).
       How it was sized: measured training steps at 96-112 px on this 2-core machine; full-width ResNet-50
       at 112 px trains ~130 img/s (~20 min per run of 12 epochs, 40 min for the two seeds alone); quarter width
       at 96 px trains ~4x faster, so the first two priorities take ~45 min of the machine and every DCT
       ResNet fits in ~75 min. 96 px is the smallest size the issue allows and keeps the DCT inputs at 12x12
       (luma) and 6x6 (chroma) blocks.
  gpu  same twins at full width (EfficientNet-B0 and every ResNet at width 1.0), 224 px, 12 epochs, batch 256,
       AdamW lr 4e-3, bf16 autocast, one run at a time; sized for ~12 minutes of one H200 in all
       (runs start by priority until minute 8, then the speed measurement and the report; a rerun resumes).

DCT models are normalized by per-coefficient statistics of the train split at the study's input size
(`jpegnet stats`: dct_stats.json); one extra Thinner run (`..._nostats`) uses the default scale (/128) instead.

Runs live in --out (default runs/accuracy-<profile>/<run_id>: checkpoints, log.csv). A finished run writes
result.json and is skipped next time; an unfinished one resumes from its last.pt. --report collects results
into benchmarks/results/accuracy-<profile>/: summary.csv (a row per run: top-1, top-5, train images/s from the
quiet measurement, wall minutes, epochs to reach 90% of the RGB twin's final top-1), epochs/<run>.csv (the
per-epoch log), throughput.csv, results.md, meta.json (date, machine, versions, commands), pareto_train.png and
pareto_inference.png (val top-1 against training and end-to-end inference images/s, as the paper's Figs 4-5).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
IMAGENETTE = REPO.parent / "shared" / "data" / "imagenette-224"
RESULTS = REPO / "benchmarks" / "results"

DCT_RESNETS = ("dct_late_concat_rfa_thinner", "dct_late_concat_rfa", "dct_downsampling", "dct_resnet50",
               "dct_upsampling", "dct_late_concat", "dct_upsampling_rfa", "dct_deconvolution_rfa")
# The RGB model each DCT model is compared with.
TWIN = {**{name: "resnet50" for name in DCT_RESNETS},
        "dct_efficientnet_b0": "efficientnet_b0", "dct_vgnetg_1_0mp": "vgnetg_1_0mp"}


@dataclass(frozen=True)
class Run:
    run_id: str
    model: str
    seed: int = 0
    dct_stats: bool = True  # DCT models only: normalize by the train split's statistics
    extra_kwargs: tuple = ()  # (name, value) pairs on top of the profile's model kwargs (ablations)

    @property
    def representation(self) -> str:
        return "dct" if self.model.startswith("dct_") else "rgb"

    @property
    def variant(self) -> str:
        """The architecture trained: the model name, with its extra kwargs if any (speed is per variant)."""
        return self.model + "".join(f"[{k}={v}]" for k, v in self.extra_kwargs)


def study_runs() -> list[Run]:
    """Every run of the study, in the issue's order of priority."""
    runs = [Run("resnet50_s0", "resnet50", 0), Run("dct_late_concat_rfa_thinner_s0", "dct_late_concat_rfa_thinner", 0),
            Run("resnet50_s1", "resnet50", 1), Run("dct_late_concat_rfa_thinner_s1", "dct_late_concat_rfa_thinner", 1),
            Run("efficientnet_b0", "efficientnet_b0"), Run("dct_efficientnet_b0", "dct_efficientnet_b0"),
            Run("vgnetg_1_0mp", "vgnetg_1_0mp"), Run("dct_vgnetg_1_0mp", "dct_vgnetg_1_0mp"),
            Run("dct_late_concat_rfa_thinner_nostats", "dct_late_concat_rfa_thinner", 0, dct_stats=False),
            # Ablation: the generic adapter's stem for narrow stride-8 entries (see jpegnet.models.dct_adapter)
            Run("dct_efficientnet_b0_blockstem", "dct_efficientnet_b0", extra_kwargs=(("dct_stem", "block"),)),
            Run("dct_vgnetg_1_0mp_blockstem", "dct_vgnetg_1_0mp", extra_kwargs=(("dct_stem", "block"),))]
    runs += [Run(name, name) for name in DCT_RESNETS[1:]]
    return runs


@dataclass
class Profile:
    size: int
    epochs: int
    batch_size: int
    lr: float
    resnet_width: float
    efficientnet_width: float
    jobs: int
    precision: str | None
    deadline_minutes: float | None
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    extra: dict = field(default_factory=dict)

    def model_kwargs(self, model: str) -> dict:
        base = model.removeprefix("dct_")
        if base.startswith("efficientnet"):
            return {} if self.efficientnet_width == 1.0 else {"width_multiplier": self.efficientnet_width}
        if base.startswith("vgnet"):
            return {}
        return {} if self.resnet_width == 1.0 else {"width_multiplier": self.resnet_width}


PROFILES = {
    "cpu": Profile(size=96, epochs=12, batch_size=64, lr=2e-3, resnet_width=0.25, efficientnet_width=0.5,
                   jobs=2, precision="fp32", deadline_minutes=None),
    "gpu": Profile(size=224, epochs=12, batch_size=256, lr=4e-3, resnet_width=1.0, efficientnet_width=1.0,
                   jobs=1, precision="bf16", deadline_minutes=8.0),
}


# --- training ---------------------------------------------------------------------------------------------

def run_kwargs(run: Run, prof: Profile) -> dict:
    return {**prof.model_kwargs(run.model), **dict(run.extra_kwargs)}


def stats_path(out: Path) -> Path:
    return out / "dct_stats.json"


def ensure_dct_stats(data: Path, out: Path, prof: Profile) -> Path:
    path = stats_path(out)
    if not path.exists():
        from jpegnet.engine import dataset_dct_stats

        start = time.perf_counter()
        dataset_dct_stats(data, path, max_images=None, input_size=prof.size)
        print(f"DCT statistics of {data}/train at {prof.size} px in {time.perf_counter() - start:.1f} s", flush=True)
    return path


def train_config(run: Run, prof: Profile, data: Path, out: Path, threads: int | None):
    from jpegnet.engine import TrainConfig

    use_stats = run.representation == "dct" and run.dct_stats
    return TrainConfig(data=str(data), model=run.model, model_kwargs=run_kwargs(run, prof),
                       out_dir=str(out / run.run_id), epochs=prof.epochs, batch_size=prof.batch_size,
                       optimizer=prof.optimizer, lr=prof.lr, warmup_epochs=prof.warmup_epochs,
                       label_smoothing=prof.label_smoothing, input_size=prof.size, precision=prof.precision,
                       dct_stats=str(stats_path(out)) if use_stats else None, seed=run.seed,
                       num_threads=threads, save_every_minutes=3.0, progress=False, tensorboard=False)


def train_one(run: Run, prof: Profile, data: Path, out: Path, threads: int | None) -> None:
    """Train (or resume) one run; result.json marks it finished."""
    from jpegnet.engine import atomic_write, train

    run_dir = out / run.run_id
    if (run_dir / "result.json").exists():
        return
    config = train_config(run, prof, data, out, threads)
    last = run_dir / "last.pt"
    summary = train(config, resume=last if last.exists() else None)
    history = summary["history"]
    val_images = sum(len(files) for _, _, files in os.walk(data / "val"))
    # Wall time from the log (training + validation of every epoch), so it survives interruptions.
    wall_seconds = sum(r["epoch_seconds"] + val_images / max(r["val_images_per_s"], 1e-9) for r in history)
    result = {"run": run.__dict__, "model_kwargs": config.model_kwargs, "config": config.to_dict(),
              "history": history, "best_top1": summary["best_top1"], "wall_minutes": wall_seconds / 60}
    text = json.dumps(result, indent=1).encode()
    atomic_write(run_dir / "result.json", lambda f: f.write(text))


def run_all(runs: list[Run], prof: Profile, data: Path, out: Path, profile: str, overrides: list[str], jobs: int,
            deadline_minutes: float | None) -> None:
    """Train the runs, `jobs` at a time, each in its own process with cores / jobs threads."""
    if any(r.representation == "dct" and r.dct_stats for r in runs):
        ensure_dct_stats(data, out, prof)
    pending = [r for r in runs if not (out / r.run_id / "result.json").exists()]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.monotonic()
    active: dict[str, subprocess.Popen] = {}
    failed = []
    while pending or active:
        late = deadline_minutes is not None and time.monotonic() - start > 60 * deadline_minutes
        while pending and len(active) < jobs and not late:
            run = pending.pop(0)
            cmd = [sys.executable, __file__, "--profile", profile, "--out", str(out), "--data", str(data),
                   "--train-one", run.run_id, "--threads", str(threads), *overrides]
            log = open(out / f"{run.run_id}.log", "a")
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            active[run.run_id] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f"[{time.strftime('%H:%M:%S')}] started {run.run_id}", flush=True)
        if late and pending:
            print(f"deadline of {deadline_minutes} min reached: not starting {[r.run_id for r in pending]}")
            pending = []
        time.sleep(2.0)
        for run_id, proc in list(active.items()):
            if proc.poll() is not None:
                del active[run_id]
                status = "finished" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                if proc.returncode:
                    failed.append(run_id)
                print(f"[{time.strftime('%H:%M:%S')}] {run_id} {status}", flush=True)
    if failed:
        raise SystemExit(f"runs failed: {failed} (see {out}/<run>.log); rerun to resume them")


# --- quiet throughput -----------------------------------------------------------------------------------

def cycle(loader):
    """The loader's batches epoch after epoch (a small split may hold fewer batches than a measurement)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def measure_throughput(runs: list[Run], prof: Profile, data: Path, out: Path, device: str,
                       train_steps: int, infer_batches: int) -> list[dict]:
    """Training images/s (loader + forward + backward + AdamW) and end-to-end inference images/s (JPEG files
    -> decode -> model -> logits), each model alone, with every core, batch = the profile's."""
    from jpegnet.data import JpegFolder, create_loader
    from jpegnet.engine.trainer import build_optimizer, load_dct_stats, loader_prefetch
    from jpegnet.models import create_model
    from jpegnet.profile import count_flops, count_params

    dev = torch.device(device)
    rows = []
    seen = set()
    for run in runs:
        if run.variant in seen:
            continue
        seen.add(run.variant)
        model = create_model(run.model, num_classes=10, **run_kwargs(run, prof))
        cfg = model.input_config.with_size(prof.size)
        if run.representation == "dct" and stats_path(out).exists():
            mean, std = load_dct_stats(stats_path(out))
            cfg = replace(cfg, dct_mean=mean, dct_std=std)
        params, flops = count_params(model), count_flops(model, size=prof.size)
        model.to(dev)
        channels_last = dev.type == "cuda"
        if channels_last:
            model.to(memory_format=torch.channels_last)
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prof.precision == "bf16")
        row = {"model": run.variant, "input": run.representation, "params_m": round(params / 1e6, 3),
               "gflops": round(flops / 1e9, 4)}
        for phase in ("train", "inference"):
            train = phase == "train"
            ds = JpegFolder.for_model(data / ("train" if train else "val"), cfg, train=train)
            batch = min(prof.batch_size, len(ds))
            loader = create_loader(ds, batch, shuffle=True, device=dev, seed=1,
                                   prefetch=loader_prefetch(dev), drop_last=True)
            steps = train_steps if train else infer_batches
            warmup = 2
            model.train(train)
            opt = build_optimizer(model, train_config(run, prof, data, out, None)) if train else None
            images, t0 = 0, None
            for i, (inputs, target) in enumerate(cycle(loader)):
                if i == warmup:
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t0, images = time.perf_counter(), 0
                if i == warmup + steps:
                    break
                with torch.set_grad_enabled(train), autocast:
                    logits = model(*inputs)
                    if train:
                        loss = torch.nn.functional.cross_entropy(logits.float(), target)
                if train:
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                images += target.shape[0]
            if dev.type == "cuda":
                torch.cuda.synchronize()
            row[f"{phase}_images_per_s"] = round(images / (time.perf_counter() - t0), 1)
        print(row, flush=True)
        rows.append(row)
        del model
    return rows


# --- report -----------------------------------------------------------------------------------------------

def final_top1(result: dict) -> float:
    return result["history"][-1]["val_top1"]


def epochs_to_reach(history: list[dict], target: float) -> int | None:
    return next((r["epoch"] for r in history if r["val_top1"] >= target), None)


def collect(runs: list[Run], out: Path, throughput: dict[str, dict]) -> list[dict]:
    results = {r.run_id: json.loads((out / r.run_id / "result.json").read_text())
               for r in runs if (out / r.run_id / "result.json").exists()}
    by_model: dict[str, list[float]] = {}
    for run in runs:
        if run.run_id in results and run.dct_stats:
            by_model.setdefault(run.model, []).append(final_top1(results[run.run_id]))
    rows = []
    for run in runs:
        if run.run_id not in results:
            continue
        res = results[run.run_id]
        last = res["history"][-1]
        twin = TWIN.get(run.model, run.model)
        twin_scores = by_model.get(twin)
        twin_top1 = sum(twin_scores) / len(twin_scores) if twin_scores else None
        speed = throughput.get(run.variant, {})
        rows.append({
            "run": run.run_id, "model": run.variant, "input": run.representation, "seed": run.seed,
            "dct_stats": run.dct_stats if run.representation == "dct" else "",
            "model_kwargs": json.dumps(res["model_kwargs"]), "params_m": speed.get("params_m", ""),
            "gflops": speed.get("gflops", ""),
            "val_top1": round(last["val_top1"], 2), "val_top5": round(last["val_top5"], 2),
            "best_top1": round(res["best_top1"], 2), "rgb_twin": twin,
            "twin_top1": round(twin_top1, 2) if twin_top1 is not None else "",
            "gap_to_twin": round(last["val_top1"] - twin_top1, 2) if twin_top1 is not None else "",
            "epochs_to_90pct_twin": (epochs_to_reach(res["history"], 0.9 * twin_top1) or "never")
            if twin_top1 is not None else "",
            "train_images_per_s": speed.get("train_images_per_s", ""),
            "inference_images_per_s": speed.get("inference_images_per_s", ""),
            "train_images_per_s_during_study": round(
                sum(r["train_images_per_s"] for r in res["history"][1:]) / max(1, len(res["history"]) - 1), 1),
            "wall_minutes": round(res["wall_minutes"], 1),
        })
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def pareto_png(rows: list[dict], x: str, path: Path, title: str) -> None:
    """Val top-1 against speed: one point per model (seeds averaged), each DCT model joined to its RGB twin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, dict] = {}
    for r in rows:
        if r[x] == "" or (r["input"] == "dct" and not r["dct_stats"]):
            continue
        p = points.setdefault(r["model"], {"x": float(r[x]), "ys": [], "input": r["input"]})
        p["ys"].append(float(r["val_top1"]))
    fig, ax = plt.subplots(figsize=(9, 6))
    for name, p in points.items():
        y = sum(p["ys"]) / len(p["ys"])
        twin = points.get(TWIN.get(name.split("[")[0], ""))
        if twin is not None:
            ax.plot([twin["x"], p["x"]], [sum(twin["ys"]) / len(twin["ys"]), y], color="0.8", lw=1, zorder=1)
        rgb = p["input"] == "rgb"
        ax.scatter([p["x"]], [y], marker="s" if rgb else "o", s=50, zorder=2,
                   color="tab:red" if rgb else "tab:blue")
        if len(p["ys"]) > 1:
            ax.vlines(p["x"], min(p["ys"]), max(p["ys"]), color="tab:red" if rgb else "tab:blue", lw=1)
        ax.annotate(name, (p["x"], y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.scatter([], [], marker="s", color="tab:red", label="RGB")
    ax.scatter([], [], marker="o", color="tab:blue", label="DCT (grey line: to its RGB twin)")
    ax.set_xscale("log")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| run | input | params (M) | GFLOPs | val top-1 | top-5 | gap to RGB twin | epochs to 90% of twin | "
             "train img/s | inference img/s | wall min |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['input']} | {r['params_m']} | {r['gflops']} | {r['val_top1']} | "
                     f"{r['val_top5']} | {r['gap_to_twin']} | {r['epochs_to_90pct_twin']} | "
                     f"{r['train_images_per_s']} | {r['inference_images_per_s']} | {r['wall_minutes']} |")
    return "\n".join(lines) + "\n"


def report(runs: list[Run], out: Path, results_dir: Path, profile: str, prof: Profile) -> None:
    throughput_csv = results_dir / "throughput.csv"
    throughput = {}
    if throughput_csv.exists():
        with open(throughput_csv, newline="") as f:
            throughput = {r["model"]: r for r in csv.DictReader(f)}
    rows = collect(runs, out, throughput)
    if not rows:
        raise SystemExit(f"no finished runs in {out}")
    write_csv(results_dir / "summary.csv", rows)
    for run in runs:
        result_json = out / run.run_id / "result.json"
        if result_json.exists():
            history = json.loads(result_json.read_text())["history"]
            write_csv(results_dir / "epochs" / f"{run.run_id}.csv", history)
    if stats_path(out).exists():
        shutil.copyfile(stats_path(out), results_dir / "dct_stats.json")
    recipe = (f"imagenette-224 ({profile} profile): {prof.size} px, {prof.epochs} epochs, batch {prof.batch_size}, "
              f"{prof.optimizer} lr {prof.lr},\nResNet width {prof.resnet_width}, EfficientNet width "
              f"{prof.efficientnet_width}")
    if throughput:
        pareto_png(rows, "train_images_per_s", results_dir / "pareto_train.png", f"{recipe}\nval top-1 vs training images/s")
        pareto_png(rows, "inference_images_per_s", results_dir / "pareto_inference.png",
                   f"{recipe}\nval top-1 vs inference images/s from JPEG files")
    text = f"{recipe}\n\n{markdown_table(rows)}"
    (results_dir / "results.md").write_text(text)
    print(text)


def meta(profile: str, argv: list[str], device: str) -> dict:
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "profile": profile,
            "machine": f"{cpu}, {os.cpu_count()} cores" + (f", {torch.cuda.get_device_name()}" if device == "cuda" else ""),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "commit": commit, "command": "python benchmarks/accuracy.py " + " ".join(argv)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", type=Path, default=IMAGENETTE, help="train/ and val/ class folders")
    parser.add_argument("--out", type=Path, default=None, help="run folders (default runs/accuracy-<profile>)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where --report writes (default benchmarks/results/accuracy-<profile>)")
    parser.add_argument("--runs", nargs="+", default=None, help="run ids to train (default: the whole study)")
    parser.add_argument("--jobs", type=int, default=None, help="runs trained at once (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (smoke tests)")
    parser.add_argument("--size", type=int, default=None, help="override the profile's input size (smoke tests)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the profile's batch (smoke tests)")
    parser.add_argument("--deadline-minutes", type=float, default=None, help="start no run after this")
    parser.add_argument("--throughput", action="store_true", help="measure speed (run it on a quiet machine)")
    parser.add_argument("--train-steps", type=int, default=20, help="--throughput: timed training steps")
    parser.add_argument("--infer-batches", type=int, default=20, help="--throughput: timed inference batches")
    parser.add_argument("--report", action="store_true", help="write CSVs, table and PNGs from finished runs")
    parser.add_argument("--all", action="store_true", help="train, then --throughput, then --report")
    parser.add_argument("--train-one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    prof = PROFILES[args.profile]
    overrides = []  # handed on to the training processes
    for option, key in (("epochs", "epochs"), ("size", "size"), ("batch_size", "batch_size")):
        value = getattr(args, option)
        if value:
            prof = replace(prof, **{key: value})
            overrides += [f"--{option.replace('_', '-')}", str(value)]
    out = args.out or REPO / "runs" / f"accuracy-{args.profile}"
    results_dir = args.results or RESULTS / f"accuracy-{args.profile}"
    out.mkdir(parents=True, exist_ok=True)
    runs = study_runs()
    if args.runs:
        known = {r.run_id for r in runs}
        unknown = [r for r in args.runs if r not in known]
        if unknown:
            parser.error(f"unknown run ids {unknown}; the study's are {sorted(known)}")
        runs = [r for r in runs if r.run_id in args.runs]
    device = "cuda" if torch.cuda.is_available() else "cpu"

    if args.train_one:
        torch.set_num_threads(args.threads or torch.get_num_threads())
        run = next(r for r in study_runs() if r.run_id == args.train_one)
        train_one(run, prof, args.data, out, args.threads)
        return 0

    do_train = args.all or not (args.throughput or args.report)
    if do_train:
        run_all(runs, prof, args.data, out, args.profile, overrides, args.jobs or prof.jobs,
                args.deadline_minutes if args.deadline_minutes is not None else prof.deadline_minutes)
    if args.throughput or args.all:
        if any(r.representation == "dct" for r in runs):
            ensure_dct_stats(args.data, out, prof)
        rows = measure_throughput(runs, prof, args.data, out, device, args.train_steps, args.infer_batches)
        write_csv(results_dir / "throughput.csv", rows)
    if args.report or args.all:
        report(runs, out, results_dir, args.profile, prof)
    record_command(results_dir, args.profile, argv, device)
    return 0


def record_command(results_dir: Path, profile: str, argv: list[str], device: str) -> None:
    """meta.json: date, machine, versions, and every command that trained, measured or reported, in order."""
    results_dir.mkdir(parents=True, exist_ok=True)
    info = meta(profile, argv, device)
    meta_path = results_dir / "meta.json"
    history = json.loads(meta_path.read_text()).get("commands", []) if meta_path.exists() else []
    info["commands"] = history + [f"{info['date']}  {info['command']}"]
    meta_path.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
