"""`jpegnet convert` benchmark: convert a pretrained teacher (timed), then measure teacher and student on
labelled ImageNet images that the conversion never saw.

    python benchmarks/convert.py --teacher timm:tf_efficientnet_lite0 --weights LITE0.pth \
        --data ../shared/data/imagenette-224/train --eval-data /work/imagenet-sample --profile cpu
    python benchmarks/convert.py ... --checkpoint runs/convert-lite0/best.pt   # evaluate an existing conversion

Conversion: `jpegnet.engine.convert.convert` with the profile's recipe (overrides: --epochs, --input-size,
--batch-size, --entry-kwargs), into --out (resumes when run again). Its wall time is the recipe's cost.

Evaluation (--eval-data: a folder of class folders, or a flat folder of ImageNet files named
`nXXXXXXXX_*.JPEG` whose label is the wnid's index in sorted order, as EliSchwartz/imagenet-sample-images):
  teacher_top1        the RGB teacher with its own timm evaluation transform (Pillow resize with its
                      interpolation, centre crop, mean / std): the number its model card quotes
  teacher_dct_top1    the same teacher shown the pixels rebuilt from the DCT evaluation batch: the ceiling a
                      converted model starts under (the DCT pipeline's resize filter is not Pillow's)
  student_top1 / top5 the converted model (`jpegnet eval`)
  agreement           student top-1 == teacher top-1 on the same coefficients (%)
  rgb_agreement       student top-1 == the RGB teacher's top-1 with its own transform (%): what a user
                      replacing the RGB model sees (for an exact `--entry pixels` conversion `agreement` is
                      100 by construction and this is the number that says something)
  student_img_s, teacher_img_s  end-to-end images/s from JPEG files, batch 32 (only meaningful on a quiet
                      machine; note the load when reporting)
Evaluation photos that also lie in the conversion's training folders (--data, or the data of the checkpoint's
run and of the runs it was initialized from, as far as those folders exist here) are left out first, found by
benchmarks/overlap.py (imagenette-224 train holds 8 of EliSchwartz's 1,000); the row gives their number as
eval_excluded. --keep-shared evaluates them too (as the rows with no eval_excluded value did).
One row per run is appended to benchmarks/results/convert.csv (with the recipe, wall minutes, machine).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "convert.csv"


def labelled_files(folder: Path, limit: int | None) -> tuple[list[Path], list[int]]:
    """(files, labels): class folders (label = the folder's index among the teacher's sorted ImageNet wnids),
    or a flat folder of `wnid_*.JPEG` files (label = the wnid's index)."""
    from timm.data import ImageNetInfo

    wnids = list(ImageNetInfo().label_names())
    index = {w: i for i, w in enumerate(wnids)}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    pairs = [(f, index.get(f.parent.name, index.get(f.name[:9]))) for f in files]
    pairs = [(f, i) for f, i in pairs if i is not None]
    if limit:
        pairs = pairs[:: max(1, len(pairs) // limit)][:limit]  # spread over the classes
    if not pairs:
        raise SystemExit(f"{folder}: no JPEG named or filed by an ImageNet wnid")
    return [f for f, _ in pairs], [i for _, i in pairs]


def measure_student(checkpoint: str, spec: str, weights: str, files: list[Path], labels: list[int],
                    input_size: int | None, batch_size: int = 32, timing: bool = True) -> tuple[dict, "torch.Tensor"]:
    """One pass over the files through the DCT evaluation pipeline: the student's top-1 / top-5, the
    teacher's top-1 on the pixels rebuilt from the same coefficients, agreement, and the student's own
    end-to-end images/s (timed in a second, student-only pass, unless not timing); and the student's top-1
    classes."""
    import torch

    from jpegnet.dct.rebuild import coefficients_to_rgb
    from jpegnet.engine import load_checkpoint
    from jpegnet.engine.checkpoint import model_from_checkpoint
    from jpegnet.engine.inputs import build_data
    from jpegnet.input_config import normalization
    from jpegnet.models.cut import teacher_preprocessing
    from jpegnet.models.teacher import load_teacher

    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint).eval()
    cfg = model.input_config.with_size(input_size) if input_size else model.input_config
    teacher = load_teacher(spec, weights)
    prep = teacher_preprocessing(teacher.model)
    mean = torch.tensor(prep["mean"]).reshape(1, 3, 1, 1)
    std = torch.tensor(prep["std"]).reshape(1, 3, 1, 1)
    dct_mean, dct_std = normalization(cfg, "dct")
    _, loader = build_data([str(f) for f in files], cfg, train=False, batch_size=batch_size, on_error="raise")
    target = torch.tensor(labels)
    s_all, t_all = [], []
    with torch.no_grad():
        for inputs, _ in loader:
            s_all.append(model(*inputs))
            t_all.append(teacher.model((coefficients_to_rgb(*inputs, dct_mean, dct_std) - mean) / std))
        img_s = float("nan")
        if timing:
            start = time.perf_counter()
            _, timed = build_data([str(f) for f in files], cfg, train=False, batch_size=batch_size,
                                  on_error="raise")
            for inputs, _ in timed:
                model(*inputs)
            img_s = len(files) / (time.perf_counter() - start)
    s, t = torch.cat(s_all), torch.cat(t_all)
    top5 = s.topk(5, dim=1).indices
    return {"input_size": cfg.input_size[0], "images": len(files),
            "student_top1": 100.0 * float((s.argmax(1) == target).float().mean()),
            "student_top5": 100.0 * float((top5 == target[:, None]).any(1).float().mean()),
            "teacher_dct_top1": 100.0 * float((t.argmax(1) == target).float().mean()),
            "agreement": 100.0 * float((s.argmax(1) == t.argmax(1)).float().mean()),
            "student_img_s": img_s}, s.argmax(1)


def teacher_top1_timm(spec: str, weights: str, files: list[Path], labels: list[int],
                      batch_size: int = 32) -> tuple[float, float, list[int]]:
    """(top-1 %, images/s, top-1 classes) of the RGB teacher with timm's evaluation transform, end to end from
    files. The transform's settings are the teacher's own (`teacher_preprocessing`: a jpegnet model's input
    config, a timm model's pretrained_cfg): timm's `resolve_data_config` knows only the latter and gives a
    jpegnet teacher timm's defaults (224 px, ImageNet mean / std), which cost Lite2 9 points."""
    import torch
    from PIL import Image
    from timm.data import create_transform

    from jpegnet.models.cut import teacher_preprocessing
    from jpegnet.models.teacher import load_teacher

    teacher = load_teacher(spec, weights)
    prep = teacher_preprocessing(teacher.model)
    transform = create_transform(input_size=(3, *prep["input_size"]), interpolation=prep["interpolation"],
                                 mean=prep["mean"], std=prep["std"], crop_pct=prep["crop_pct"], crop_mode="center")
    correct, start, classes = 0, time.perf_counter(), []
    with torch.no_grad():
        for k in range(0, len(files), batch_size):
            x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[k:k + batch_size]])
            pred = teacher.model(x).argmax(1)
            classes += pred.tolist()
            correct += sum(int(p) == t for p, t in zip(pred, labels[k:k + batch_size]))
    return 100.0 * correct / len(files), len(files) / (time.perf_counter() - start), classes


def training_folders(checkpoint: str, data: str | None) -> list[Path]:
    """The JPEG folders a conversion learned from: `data`, and the `data` of the checkpoint's run and of every
    run it was initialized from (`init_from`), those that are folders on this machine (shards are skipped)."""
    from jpegnet.engine import load_checkpoint

    folders, seen, path = [data] if data else [], set(), checkpoint
    while path and path not in seen and Path(path).is_file():
        seen.add(path)
        config = load_checkpoint(path).get("train_config") or {}
        folders.append(config.get("data"))
        path = config.get("init_from")
    return list(dict.fromkeys(Path(f) for f in folders if f and Path(f).is_dir()))


def without_shared(files: list[Path], labels: list[int], eval_dir: Path,
                   folders: list[Path]) -> tuple[list[Path], list[int], list[str]]:
    """files and labels less the photos benchmarks/overlap.py finds in any of `folders` (their files taken once,
    however many folders or links lead to them), and those left out."""
    from overlap import jpeg_files, shared_eval_files

    train = list({path.resolve(): path for folder in folders for path in jpeg_files(folder)}.values())
    shared = shared_eval_files(train, files, 0.99)
    kept = [(f, label) for f, label in zip(files, labels) if f not in shared]
    return [f for f, _ in kept], [label for _, label in kept], sorted(str(f.relative_to(eval_dir)) for f in shared)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--data", help="unlabeled JPEGs to convert on (not needed with --checkpoint)")
    p.add_argument("--eval-data", required=True)
    p.add_argument("--out", default=None, help="conversion run folder (default runs/convert-<teacher>)")
    p.add_argument("--checkpoint", default=None, help="evaluate this conversion instead of running one")
    p.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--entry-kwargs", type=json.loads, default=None, help='JSON, e.g. {"entry_depth": 4}')
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N labelled images only")
    p.add_argument("--eval-size", type=int, default=None, help="evaluation input size (default: the checkpoint's)")
    p.add_argument("--no-teacher", action="store_true", help="skip the RGB teacher's own pass")
    p.add_argument("--note", default="", help="free text for the results row (e.g. the machine's load)")
    p.add_argument("--no-timing", action="store_true", help="skip the student's timed pass (a loaded machine)")
    p.add_argument("--keep-shared", action="store_true",
                   help="evaluate photos the conversion's training folders hold too (default: left out)")
    args = p.parse_args()

    from jpegnet.engine.convert import convert

    wall = None
    checkpoint = args.checkpoint
    if checkpoint is None:
        if not args.data:
            raise SystemExit("--data is needed to convert (or give --checkpoint)")
        out = args.out or f"runs/convert-{args.teacher.replace(':', '-')}"
        start = time.perf_counter()
        summary = convert(args.teacher, args.data, out, weights=args.weights, profile=args.profile, resume=True,
                          epochs=args.epochs, input_size=args.input_size, batch_size=args.batch_size,
                          finetune_epochs=args.finetune_epochs, model_kwargs=args.entry_kwargs, progress=False)
        wall = (time.perf_counter() - start) / 60.0
        checkpoint = summary["checkpoint"]
    files, labels = labelled_files(Path(args.eval_data), args.limit)
    excluded = []
    if not args.keep_shared:
        files, labels, excluded = without_shared(files, labels, Path(args.eval_data),
                                                 training_folders(str(checkpoint), args.data))
        print(f"left out {len(excluded)} evaluation photos the training folders hold: {excluded}", file=sys.stderr)
    student, student_classes = measure_student(str(checkpoint), args.teacher, args.weights, files, labels,
                                               args.eval_size, timing=not args.no_timing)
    teacher_top1, teacher_img_s, teacher_classes = (teacher_top1_timm(args.teacher, args.weights, files, labels)
                                                    if not args.no_teacher else (float("nan"), float("nan"), None))
    rgb_agreement = (100.0 * sum(int(a) == b for a, b in zip(student_classes, teacher_classes)) / len(files)
                     if teacher_classes is not None else float("nan"))
    from jpegnet.engine import load_checkpoint
    state = load_checkpoint(checkpoint)
    train_config = state.get("train_config")  # an exact conversion trained nothing
    recipe = ({k: train_config.get(k) for k in ("epochs", "batch_size", "input_size", "lr", "optimizer",
                                                "distill_features", "distill_kl", "distill_late", "train_remainder",
                                                "init_from", "mixup", "cutmix")}
              if train_config else {"entry": "pixels (exact, no training)"})
    row = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"), "teacher": args.teacher,
           "checkpoint": str(checkpoint), "step": state.get("global_step"),
           "model_kwargs": json.dumps(state.get("model_kwargs")),
           "recipe": json.dumps(recipe),
           "teacher_top1": round(teacher_top1, 2),
           **{k: round(v, 2) if isinstance(v, float) else v for k, v in student.items()},
           "rgb_agreement": round(rgb_agreement, 2),
           "teacher_img_s": round(teacher_img_s, 1),
           "convert_wall_min": round(wall, 1) if wall is not None else "",
           "eval_excluded": "" if args.keep_shared else len(excluded),
           "machine": f"{platform.machine()} {os.cpu_count()} cores", "note": args.note}
    print(json.dumps(row, indent=1))
    append_row(RESULTS, row)


def append_row(path: Path, row: dict) -> None:
    """Append to the CSV, rewriting it with the union of the columns when this row brings new ones (older
    rows get empty cells there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(path, newline=""))) if path.exists() else []
    fields = list(rows[0]) if rows else []
    fields += [k for k in row if k not in fields]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows + [row])
    tmp.replace(path)


if __name__ == "__main__":
    main()
