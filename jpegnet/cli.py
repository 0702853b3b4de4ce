"""The `jpegnet` command: argument parsing and printing only; the work is done in `jpegnet.engine`.

    jpegnet train --data DIR --model NAME [options]     train (or --resume) a classifier from JPEG files
    jpegnet eval --data DIR --checkpoint CKPT           top-1 / top-5, val loss, images/s (--confusion PNG)
    jpegnet eval --data DIR --model NAME --weights FILE  the same for imported weights (e.g. ImageNet ones)
    jpegnet predict FILES... --checkpoint CKPT          top-k labels of JPEG files (--json); exit 1 if any failed
    jpegnet models [PATTERN] [--flops]                  the model zoo: input, params (catalog, no torch), GFLOPs
    jpegnet profile NAME                                params, FLOPs, CIO, activation memory per stage
    jpegnet bench [--data DIR]                          end-to-end images/s, JPEG bytes to logits
    jpegnet plot CSV... --out PNG                       speed / accuracy Pareto chart
    jpegnet stats DIR --out JSON                        DCT mean / std of a dataset, for --dct-stats
    jpegnet shards --data DIR --out OUT/train-%06d.tar  a split folder as WebDataset tar shards
    jpegnet visualize kernels|features ...              first-layer kernels, feature maps
    jpegnet export --checkpoint CKPT --out model.onnx   ONNX with its preprocessing in the metadata (--int8)
    jpegnet serve (--checkpoint CKPT | --onnx FILE)     HTTP classification server straight from JPEG bytes

Errors (missing folders, unknown models, unusable checkpoints, out of memory: jpegnet's typed errors, all
`jpegnet.errors.JpegnetError`, and files the OS refuses) print one line on stderr, prefixed `jpegnet: error:`,
and exit with status 1; bad usage exits with 2 (argparse), Ctrl-C with 130. Any other exception is a bug and
keeps its traceback. Set JPEGNET_DEBUG=1 to get the full traceback of an error too.

Output cut by a pipe (`jpegnet models | head -3`): the command stops quietly, with nothing on stderr, and exits
with status 141 (128 + SIGPIPE), the status a shell reports for a Unix tool stopped by a closed pipe, so that
`set -o pipefail` scripts still see that the output was not all read.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import sys

from .errors import JpegnetError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 128 + 13  # 128 + SIGPIPE, as a shell reports a tool that SIGPIPE stopped


def parse_kwargs(text: str) -> dict:
    """'width_multiplier=0.5,depth_multiplier=0.25' -> {'width_multiplier': 0.5, 'depth_multiplier': 0.25}.

    Values are Python literals (numbers, True/False/None, quoted strings, tuples); anything else is kept as a
    string.
    """
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if not key.isidentifier():
            raise argparse.ArgumentTypeError(f"{key!r} is not a valid keyword name")
        try:
            result[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            result[key] = value
    return result


# jpegnet.engine.device.PRECISIONS, jpegnet.engine.backends.BACKENDS and jpegnet.engine.quantize's
# CALIBRATION_METHODS, spelled out so that parsing the command line does not import torch
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnxruntime", "openvino")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def _device_name(text: str) -> str:
    """The form of a --device value; whether this machine has it is jpegnet.engine.device.resolve_device's."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def add_device_arguments(p, *, precision: bool = True, **defaults) -> None:
    p.add_argument("--device", type=_device_name, metavar="cpu|cuda[:N]",
                   help="default: cuda when a GPU is visible, else cpu", **defaults)
    if precision:
        p.add_argument("--precision", choices=PRECISIONS,
                       help="autocast precision (default bf16 on CUDA, fp32 on the CPU)", **defaults)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


# --- train -------------------------------------------------------------------------------------------------

def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a classifier from JPEG files (train/ and val/ class folders)",
                       description="Train a registered model on DIR/train, evaluating on DIR/val after every "
                                   "epoch. With --resume, every option not given again is taken from the "
                                   "checkpoint.", argument_default=argparse.SUPPRESS)
    p.add_argument("--data", help="folder with train/<class>/*.jpg and val/<class>/*.jpg, or training tar shards "
                                  "('shards/train-{000000..000146}.tar', 'pipe:CMD' URLs)")
    p.add_argument("--val-data", dest="val_data", help="validation tar shards, when --data names shards")
    p.add_argument("--model", help="registered model name (see `jpegnet models`)")
    p.add_argument("--model-kwargs", dest="model_kwargs", type=parse_kwargs,
                   help="builder keyword arguments, e.g. width_multiplier=0.5,depth_multiplier=0.5")
    p.add_argument("--out", dest="out_dir", help="run folder for log.csv, tensorboard/, last.pt, best.pt "
                                                 "(default runs/train)")
    p.add_argument("--epochs", type=_positive_int, help="default 90")
    p.add_argument("--batch-size", type=_positive_int, help="global batch size over all processes (default 256)")
    p.add_argument("--opt", dest="optimizer", choices=["sgd", "adamw"], help="default sgd")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1·B/256 for SGD, 1e-3·B/1024 AdamW)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--wd", dest="weight_decay", type=float,
                   help="weight decay on kernels, not biases or norms (default 1e-4 SGD, 0.05 AdamW)")
    p.add_argument("--warmup-epochs", type=float, help="linear warmup length, may be fractional (default 1)")
    p.add_argument("--min-lr-factor", type=float, help="final lr as a fraction of the peak (default 0)")
    p.add_argument("--label-smoothing", type=float, help="default 0.1")
    p.add_argument("--input-size", type=_positive_int, help="training/eval size in pixels (default: the model's); "
                                                            "DCT models take multiples of 16")
    p.add_argument("--dct-stats", help="JSON from `jpegnet stats`: DCT input normalization")
    add_device_arguments(p)  # no default: on --resume, an option not given again is the checkpoint's
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format (default on for CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: bit-identical reruns and resumes on the CPU")
    p.add_argument("--threads", dest="num_threads", type=_positive_int, help="JPEG decoding threads")
    p.add_argument("--save-every-minutes", type=float, help="also checkpoint every N minutes (default 10; 0 off)")
    p.add_argument("--save-every-steps", type=int, help="also checkpoint every N steps (default 0: off)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA + NCCL)")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard events")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="progress bar (default: only on a terminal)")
    p.add_argument("--log-every", type=_positive_int,
                   help="steps between loss / lr / images/s updates; without a terminal (or with --no-progress) "
                        "each is a log line, validation too (default 20)")
    p.add_argument("--resume", help="checkpoint (last.pt) of the run to continue")
    add_recipe_arguments(p)
    p.set_defaults(func=cmd_train)


def add_recipe_arguments(p) -> None:
    """Pretrained starts and timm's recipe pieces (jpegnet.models.pretrained, jpegnet.engine.recipe)."""
    p.add_argument("--init-from", dest="init_from", metavar="PATH|torchvision:NAME|timm:NAME",
                   help="start from these weights: RGB models take every layer that fits, DCT models the layers "
                        "they share with their RGB twin (the stages after the DCT entry); the header reports "
                        "what was loaded and what is new. Hub names need a network")
    p.add_argument("--mixup", type=float, metavar="ALPHA", help="MixUp Beta(alpha, alpha), e.g. 0.2 (default 0: off)")
    p.add_argument("--cutmix", type=float, metavar="ALPHA",
                   help="CutMix Beta(alpha, alpha), e.g. 1.0; on DCT input whole 16x16-pixel MCUs (default 0: off)")
    p.add_argument("--ema", dest="ema_decay", type=float, metavar="DECAY",
                   help="model EMA decay, e.g. 0.9998; evaluation and best weights use the EMA (default 0: off)")
    p.add_argument("--clip-grad", dest="clip_grad", type=float, metavar="NORM",
                   help="clip the global gradient norm (default 0: off)")
    p.add_argument("--grad-accum-steps", dest="grad_accum_steps", type=_positive_int, metavar="N",
                   help="split each batch into N micro-batches (same update, 1/N the memory; default 1)")
    p.add_argument("--brightness", type=float, help="brightness jitter range (offset of full scale; DCT: DC shift)")
    p.add_argument("--contrast", type=float, help="contrast jitter range (DCT: coefficient scaling around the mean)")
    p.add_argument("--saturation", type=float, help="saturation jitter range (DCT: chroma scaling)")
    p.add_argument("--no-exif-orientation", dest="exif_orientation", action="store_false",
                   help="ignore EXIF orientation tags (default: images are turned upright, in both pipelines)")


def cmd_train(args) -> int:
    from .engine import TrainConfig, load_checkpoint, train

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "resume")}
    resume = getattr(args, "resume", None)
    if resume is not None:
        saved = load_checkpoint(resume).get("train_config")
        if saved is None:
            from .engine import CheckpointError
            raise CheckpointError(f"{resume} holds weights only and cannot resume a run (no training state)")
        config = TrainConfig.from_dict({**saved, **given})
    else:
        missing = [f"--{k}" for k in ("data", "model") if k not in given]
        if missing:
            raise UsageError(f"train needs {' and '.join(missing)} (or --resume CHECKPOINT)")
        config = TrainConfig(**given)
    summary = train(config, resume=resume)
    final = summary["final"]
    if summary.get("complete"):
        return 0  # the run said it is complete
    if final and summary["is_main"]:
        print(f"done: val top-1 {final['val_top1']:.2f}% top-5 {final['val_top5']:.2f}% (best top-1 "
              f"{summary['best_top1']:.2f}%), checkpoint {summary['checkpoint']}")
    return 0


# --- convert -----------------------------------------------------------------------------------------------

def add_convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="turn a pretrained pixel CNN into a DCT-input model (exact entry, or learned from unlabeled JPEGs)",
                       description="Learn the DCT entry that replaces the teacher's front (up to its last "
                                   "stride-8 stage) so the whole model agrees with the teacher, on unlabeled "
                                   "JPEGs; optionally fine-tune the later stages on its soft labels. Each phase "
                                   "is a `jpegnet train` run (log.csv, last.pt / best.pt, --resume); top-1 in "
                                   "its log is agreement with the teacher. The result OUT/best.pt (or "
                                   "OUT/finetune/best.pt) works with eval, predict, serve, export and "
                                   "train --init-from. With --entry pixels nothing is trained: an exact entry "
                                   "rebuilds the teacher's pixels from the coefficients, the whole teacher "
                                   "follows with its weights, and OUT/best.pt is written at once.")
    p.add_argument("--teacher", required=True, help="a jpegnet model name (see `jpegnet models`) or timm:NAME")
    p.add_argument("--weights", default=None,
                   help="the teacher's weights: a jpegnet checkpoint, a timm / torchvision state dict (default: "
                        "the hub's, needs a network; 'random': untrained, for smoke tests)")
    p.add_argument("--entry", choices=["learned", "pixels"], default="learned",
                   help="learned: distil a DCT entry that replaces the teacher's front (default; needs --data); "
                        "pixels: an exact entry rebuilds the teacher's pixels from the coefficients and the whole "
                        "teacher follows, with its weights: no training, no data, OUT/best.pt at once")
    p.add_argument("--data", default=None, help="unlabeled JPEGs: a folder (any depth; class folders are "
                                                "ignored) or training tar shards (then --val-data is required); "
                                                "required by --entry learned, unused by --entry pixels")
    p.add_argument("--val-data", dest="val_data", default=None,
                   help="JPEGs to measure agreement on (default: 256 held-out files of --data)")
    p.add_argument("--out", dest="out_dir", required=True, help="run folder")
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu", help="recipe (default cpu)")
    p.add_argument("--cut", default=None, help="the teacher stage to cut after (default: its last stride-8 one, "
                                               "e.g. layer2, blocks.2)")
    p.add_argument("--entry-kwargs", dest="entry_kwargs", type=parse_kwargs, default=None,
                   help="the DCT entry's size, e.g. entry_width=1.0,entry_depth=4,entry_kernel=3 (width: times the 192 "
                        "coefficient channels, 384 at stride 16); entry_expand=6 makes the blocks "
                        "inverted residuals that many times wider inside; entry_stride=16 runs the entry at "
                        "stride 16 (each MCU's luma blocks folded into channels) and shuffles back to the cut's")
    p.add_argument("--epochs", type=_non_negative_int, default=None,
                   help="entry epochs (default: the profile's); 0 with --init-from and --finetune-epochs: no entry "
                        "phase, fine-tune that conversion's whole student (OUT/finetune/)")
    p.add_argument("--finetune-epochs", dest="finetune_epochs", type=_non_negative_int, default=0,
                   help="then fine-tune the whole student on the teacher's soft labels (default 0: off)")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--input-size", type=_positive_int, default=None, help="default: the teacher's")
    p.add_argument("--feature-weight", dest="distill_features", type=float, default=None,
                   help="weight of the normalized feature MSE at the cut (default 1)")
    p.add_argument("--kl-weight", dest="distill_kl", type=float, default=None,
                   help="weight of the KL divergence on the logits (default: 0 while the entry learns, the "
                        "teacher's features alone; 1 in --finetune-epochs)")
    p.add_argument("--temperature", dest="distill_temperature", type=float, default=None)
    p.add_argument("--late-weight", dest="distill_late", type=float, default=None,
                   help="weight of the normalized MSE on the remainder's last feature map (before pooling), "
                        "reached through the frozen remainder (default 0: off; steps cost about twice as much: "
                        "the remainder runs forward and backward)")
    p.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                   help="MixUp Beta(alpha, alpha) on the coefficients, e.g. 1.0 (default 0: off); the teacher is "
                        "shown the same mixed input (its pixels are the mixed pixels), so its outputs stay the "
                        "targets: more distinct inputs from the same photos")
    p.add_argument("--cutmix", type=float, default=None, metavar="ALPHA",
                   help="CutMix Beta(alpha, alpha) on whole 16x16 MCUs (default 0: off); the teacher sees the same "
                        "cut-mixed input")
    p.add_argument("--init-from", dest="init_from", default=None,
                   help="start the entry from a converted checkpoint (e.g. an earlier conversion's OUT/best.pt) "
                        "instead of a fresh one: a second entry phase with another objective (with --epochs 0: "
                        "the start of --finetune-epochs, no entry phase)")
    add_device_arguments(p, default=None)
    p.add_argument("--threads", dest="num_threads", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--save-every-minutes", type=float, default=None)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--log-every", type=_positive_int, default=None)
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    p.add_argument("--resume", action="store_true", help="go on from the run folder's last.pt files")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from .engine.convert import convert

    options = {k: v for k, v in vars(args).items()
               if k not in ("func", "command", "teacher", "data", "out_dir", "resume", "entry_kwargs", "entry")}
    if args.entry == "learned" and args.data is None:
        raise UsageError("convert --entry learned (the default) trains on JPEGs: give --data (--entry pixels "
                         "needs none)")
    if args.entry == "pixels":
        if args.resume:
            raise UsageError("--resume goes with --entry learned (--entry pixels trains nothing)")
    summary = convert(args.teacher, args.data, args.out_dir, resume=args.resume, entry=args.entry,
                      model_kwargs=args.entry_kwargs, **options)
    if "exact" in summary:
        exact = summary["exact"]
        print(f"done: {exact['teacher']} with an exact pixel entry, {exact['num_classes']} classes, "
              f"{exact['parameters'] / 1e6:.2f}M parameters, input {exact['input_size'][0]}x"
              f"{exact['input_size'][1]}, no training; checkpoint {summary['checkpoint']}")
        return 0
    last = summary["finetune"] or summary["entry"]
    if last and last.get("is_main") and last.get("final"):
        final = last["final"]
        print(f"done: agreement with the teacher {final['val_top1']:.2f}% (top-5 {final['val_top5']:.2f}%), "
              f"feature error {final.get('val_feature_error', float('nan')):.3f}, checkpoint "
              f"{summary['checkpoint']}")
    return 0


# --- eval / predict ----------------------------------------------------------------------------------------

def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5, images/s, confusion matrix",
                       description="Evaluate on DIR/val if it exists, else on DIR itself (class folders), with "
                                   "the model's own preprocessing (input size, crop, resize filter, "
                                   "normalization). A model with the ImageNet-1k classes (imported weights) "
                                   "takes folders named by wnid (all 1000 or some), or with --labels-from "
                                   "filenames a flat folder of files named <wnid>_*.JPEG.")
    p.add_argument("--data", required=True, help="folder with val/<class>/*.jpg, class folders directly, or tar "
                                                 "shards ('shards/val-{000000..000009}.tar', 'pipe:CMD')")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint of `jpegnet train`")
    which.add_argument("--model", dest="model_name", metavar="NAME",
                       help="a registered model, with its weights from --weights")
    p.add_argument("--weights", metavar="FILE",
                   help="with --model: a weights file (jpegnet, torchvision, timm or efficientnet_pytorch state "
                        "dict; loaded strictly, every tensor checked by name and shape)")
    p.add_argument("--model-kwargs", type=parse_kwargs, default=None, metavar="K=V,...",
                   help="with --model: builder keywords, e.g. padding=symmetric")
    p.add_argument("--labels-from", choices=("folders", "filenames"), default="folders",
                   help="folders: one subfolder per class (default); filenames: the label is each file name "
                        "up to its first '_' (ImageNet's n01440764_*.JPEG), files at any depth")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    add_device_arguments(p, default=None)
    p.add_argument("--threads", dest="num_threads", type=_positive_int, default=None)
    p.add_argument("--confusion", default=None,
                   help="also write the confusion matrix as this PNG (default: no file is written)")
    add_backend_argument(p)
    add_rgb_decode_argument(p)
    p.add_argument("--teacher", default=None, metavar="NAME|timm:NAME",
                   help="also report top-1 agreement with this RGB teacher, shown the pixels rebuilt from the same "
                        "coefficients (default with --teacher-weights: a converted model's own teacher)")
    p.add_argument("--teacher-weights", dest="teacher_weights", default=None,
                   help="the teacher's weights file (see `jpegnet convert --weights`)")
    p.set_defaults(func=cmd_eval)


def add_rgb_decode_argument(p) -> None:
    p.add_argument("--rgb-decode", choices=["fast", "plain"], default="fast",
                   help="RGB models' decode: fast = libjpeg-turbo's scaled IDCT where the image is large enough "
                        "+ one resample of the crop window; plain = torchvision on a full-size Pillow decode "
                        "(the same windows; default fast)")


def cmd_eval(args) -> int:
    from .engine import evaluate_checkpoint

    if (args.model_name is None) != (args.weights is None):
        raise UsageError("--model and --weights go together (or give --checkpoint)")
    if args.model_kwargs is not None and args.model_name is None:
        raise UsageError("--model-kwargs goes with --model (a checkpoint names its own)")
    result = evaluate_checkpoint(args.data, args.checkpoint, batch_size=args.batch_size, device=args.device,
                                 precision=args.precision, num_threads=args.num_threads,
                                 confusion_png=args.confusion, backend=args.backend, rgb_decode=args.rgb_decode,
                                 model_name=args.model_name, weights=args.weights, model_kwargs=args.model_kwargs,
                                 labels_from=args.labels_from,
                                 teacher=args.teacher, teacher_weights=args.teacher_weights)
    print(f"{result['model']} on {result['folder']}: {result['images']} images, top-1 {result['top1']:.2f}%, "
          f"top-5 {result['top5']:.2f}%, loss {result['loss']:.4f}, {result['images_per_s']:.1f} images/s")
    if "agreement" in result:
        ceiling = (f"; the teacher on the same pixels: top-1 {result['teacher_top1']:.2f}%"
                   if result["teacher_top1"] is not None else "")
        print(f"top-1 agreement with the teacher {result['agreement']:.2f}%{ceiling}")
    print(f"loss: {result['loss_kind']} (what the training log calls val_loss)")
    if "confusion_png" in result:
        print(f"confusion matrix: {result['confusion_png']}")
    return 0


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="top-k labels of JPEG files, straight from the files")
    p.add_argument("files", nargs="+", help="JPEG files")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--topk", type=_positive_int, default=5)
    add_device_arguments(p, precision=False, default=None)
    add_backend_argument(p)
    p.add_argument("--batch-size", type=_positive_int, default=32, help="files decoded and run together")
    add_rgb_decode_argument(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file on stdout (file, top: [[label, probability]...] or error)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    """Exit status 1 when any file failed; each failure is named and every other result still printed."""
    import json

    from .engine import predict_files

    failed = 0
    for item in predict_files(args.files, args.checkpoint, topk=args.topk, device=args.device,
                              batch_size=args.batch_size, backend=args.backend, rgb_decode=args.rgb_decode):
        failed += "error" in item
        if args.json:
            print(json.dumps(item), flush=True)
        elif "error" in item:
            print(f"{item['file']}: error: {item['error']}", file=sys.stderr)
        else:
            labels = ", ".join(f"{name} {100 * p:.1f}%" for name, p in item["top"])
            print(f"{item['file']}: {labels}")
    if failed:
        print(f"jpegnet: error: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
        return EXIT_ERROR
    return 0


# --- models / profile --------------------------------------------------------------------------------------

def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered models: input, params, GFLOPs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'dct_*'")
    p.add_argument("--flops", action="store_true",
                   help="also count GFLOPs at the model's input size (builds the models: about a second each)")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    if args.flops:  # counting FLOPs builds the models
        from .engine import model_table
        rows = model_table(args.pattern, flops=True)
    else:  # the catalog: no torch import, no model built (well under 2 s)
        from .catalog import catalog_rows
        rows = catalog_rows(args.pattern)
    if not rows:
        raise UsageError(f"no registered model matches {args.pattern!r}")
    header = ["name", "input", "params (M)"] + (["GFLOPs"] if args.flops else [])
    table = [[r["name"], r["input"], f"{r['params'] / 1e6:.2f}"]
             + ([f"{r['flops'] / 1e9:.2f}" if r["flops"] is not None else "n/a"] if args.flops else [])
             for r in rows]
    print_table(header, table)
    if args.flops:
        print("GFLOPs: one forward pass at batch 1, 1 multiply-add = 2 FLOPs")
    return 0


def add_profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="params, FLOPs, CIO and activation memory per stage of a model")
    p.add_argument("name")
    p.add_argument("--size", type=_positive_int, default=None, help="input size in pixels (default: the model's)")
    p.add_argument("--num-classes", type=_positive_int, default=1000)
    p.add_argument("--model-kwargs", type=parse_kwargs, default={})
    p.set_defaults(func=cmd_profile)


def cmd_profile(args) -> int:
    from .engine import build_model, profile_model

    model = build_model(args.name, args.num_classes, args.model_kwargs)
    size = args.size or model.input_config.input_size
    result = profile_model(model, size)
    print(f"{args.name}: {model.input_config.representation} input {result['input']} (batch 1)")
    rows = []
    for r in result["stages"] + [result["total"]]:
        rows.append([r["name"], f"{r['params'] / 1e6:.3f}", f"{r['flops'] / 1e9:.3f}", f"{r['cio'] / 1e6:.3f}",
                     f"{r['activation_bytes'] / 2**20:.2f}"])
    print_table(["stage", "params (M)", "GFLOPs", "CIO (M elem)", "activations (MiB)"], rows)
    print("FLOPs: 1 multiply-add = 2; CIO: conv inputs + outputs; activations: leaf-module outputs, fp32")
    return 0


# --- bench / plot / stats / visualize ---------------------------------------------------------------------

def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="end-to-end images/s from JPEG bytes to logits, RGB vs DCT models",
                       description="Times the decode (JPEG bytes to normalized model input), the model and "
                                   "the two together, for RGB ResNet-50 and the DCT models, on the built-in "
                                   "samples or --data DIR. Random weights: speed only.")
    p.add_argument("--data", default=None, help="folder of class folders (default: the built-in samples)")
    p.add_argument("--models", nargs="+", default=None, help="model names (default: resnet50 and DCT ResNets)")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--size", type=_positive_int, default=224)
    p.add_argument("--max-images", type=_positive_int, default=None)
    add_device_arguments(p, default=None)
    p.add_argument("--threads", dest="num_threads", type=_positive_int, default=None)
    p.add_argument("--repeat", type=_positive_int, default=1, help="best of N passes per timing")
    p.add_argument("--csv", default=None, help="also write the table as CSV")
    add_backend_argument(p)
    add_rgb_decode_argument(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from .engine import run_bench

    result = run_bench(data=args.data, models=args.models, batch_size=args.batch_size, size=args.size,
                       max_images=args.max_images, device=args.device, precision=args.precision,
                       num_threads=args.num_threads, csv_path=args.csv, log=lambda m: print(m, flush=True),
                       repeat=args.repeat, backend=args.backend, rgb_decode=args.rgb_decode)
    print(f"\n{result['images']} images from {result['folder']}, {result['size']}x{result['size']}, batch "
          f"{result['batch_size']}, {result['device']} ({result['precision']}), {result['threads']} threads, "
          f"{result['backend']} backend")
    rows = [[r["model"], r["input"], f"{r['decode_ms']:.2f}", f"{r['model_ms']:.2f}", f"{r['end_to_end_ms']:.2f}",
             f"{r['images_per_s']:.1f}", f"{r['speedup']:.2f}x"] for r in result["rows"]]
    print_table(["model", "input", "decode ms/img", "model ms/img", "end-to-end ms/img", "images/s",
                 "vs first"], rows)
    return 0


def add_plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="speed/accuracy Pareto chart (PNG) from result CSVs")
    p.add_argument("csvs", nargs="+", help="CSV files with a model column, an accuracy and a speed column")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--x", default=None, help="speed column (default: first of images_per_s, "
                                             "train_images_per_s, gflops)")
    p.add_argument("--y", default=None, help="accuracy column (default: first of val_top1, top1)")
    p.add_argument("--title", default="speed / accuracy")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from .engine import plot_pareto

    result = plot_pareto(args.csvs, args.out, x=args.x, y=args.y, title=args.title)
    print(f"{len(result['points'])} models, Pareto front: {', '.join(result['front'])}")
    print(f"wrote {result['png']}")
    return 0


def add_stats_parser(sub) -> None:
    p = sub.add_parser("stats", help="DCT mean/std of a dataset, saved as JSON for `train --dct-stats`")
    p.add_argument("data", help="folder of class folders (or one with train/), or training tar shards")
    p.add_argument("--out", default="dct_stats.json")
    p.add_argument("--max-images", type=_positive_int, default=None)
    p.add_argument("--size", type=_positive_int, default=224, help="the training input size (default 224)")
    p.set_defaults(func=cmd_stats)


def cmd_stats(args) -> int:
    from .engine import dataset_dct_stats

    result = dataset_dct_stats(args.data, args.out, max_images=args.max_images, input_size=args.size)
    print(f"DCT statistics of {result['folder']} ({result['images']} images): Y DC mean "
          f"{result['dct_mean'][0]:.2f} std {result['dct_std'][0]:.2f}; wrote {result['path']}")
    return 0


def add_visualize_parser(sub) -> None:
    p = sub.add_parser("visualize", help="first-layer kernels or feature maps of a model as PNG")
    p.add_argument("what", choices=["kernels", "features"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="registered model name (random weights)")
    src.add_argument("--checkpoint", help="trained checkpoint")
    p.add_argument("--layers", nargs="+", default=None, help="module names (default: the first conv layers)")
    p.add_argument("--image", default=None, help="JPEG file for `features` (default: a built-in sample)")
    p.add_argument("--out", required=True, help="output PNG (kernels) or folder (features)")
    p.set_defaults(func=cmd_visualize)


def cmd_visualize(args) -> int:
    from .engine import visualize

    written = visualize(args.what, model_name=args.model, checkpoint=args.checkpoint, layers=args.layers,
                        image=args.image, out=args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


def add_shards_parser(sub) -> None:
    p = sub.add_parser("shards", help="write a split's class folders as WebDataset tar shards",
                       description="Writes DIR/SPLIT/<class>/*.jpg as tar shards (KEY.jpg: the file's bytes, "
                                   "KEY.cls: its class index), each with an index NAME.idx.json, and classes.json "
                                   "beside them, in a shuffled order; every image is decoded first and the ones "
                                   "that do not read are reported, not written.")
    p.add_argument("--data", required=True, help="dataset folder (DIR/SPLIT/<class>/*.jpg)")
    p.add_argument("--split", default="train", help="subfolder to write (default train; '.' for DIR itself)")
    p.add_argument("--out", required=True, help="printf pattern of the shard names, e.g. OUT/train-%%06d.tar")
    p.add_argument("--max-size", default="1GB", help="largest shard size (default 1GB; e.g. 500MB, 64MiB)")
    p.add_argument("--max-count", type=_positive_int, default=None, help="also at most N images per shard")
    p.add_argument("--shuffle-seed", type=int, default=0, help="seed of the sample order (default 0)")
    p.add_argument("--verify", choices=["full", "header"], default="full",
                   help="full (default): decode every image's coefficients in strict mode, as training reads "
                        "them, and leave out those that fail (corrupt or truncated data too); header: check "
                        "the headers only (faster, for data known to be sound)")
    p.add_argument("--threads", dest="num_threads", type=_positive_int, default=None,
                   help="decode threads for the checks (default: the cores this process may use)")
    p.set_defaults(func=cmd_shards)


def cmd_shards(args) -> int:
    from .engine import write_split_shards

    result = write_split_shards(args.data, args.out, split=args.split, max_size=args.max_size,
                                shuffle_seed=args.shuffle_seed, max_count=args.max_count, verify=args.verify,
                                threads=args.num_threads, log=lambda m: print(m, file=sys.stderr))
    data = f"{result['bad_data']} bad data" if args.verify == "full" else "data not checked: --verify header"
    print(f"wrote {result['samples']} images of {len(result['classes'])} classes in {len(result['shards'])} "
          f"shards ({result['bytes'] / 1e6:.1f} MB), {len(result['bad'])} unreadable files left out "
          f"({result['bad_headers']} bad headers, {data})")
    print(f"shards: {result['pattern']}")
    return 0


# --- export / serve (jpegnet.serve) ------------------------------------------------------------------------

def add_backend_argument(p) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="inference backend: torch (eager, CPU or CUDA), onnxruntime (the model exported to ONNX in "
                        "memory; CUDA execution provider where installed) or openvino (the same export on "
                        "OpenVINO's CPU plugin; pip install 'jpegnet[openvino]'). Default torch")


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX, with its preprocessing in the metadata",
                       description="Write the checkpoint's model as ONNX: inputs y, cbcr (DCT) or x (RGB) with a "
                                   "dynamic batch dimension, output logits; representation, input size, crop_pct, "
                                   "resize filter (interpolation), normalization and class names in the file's "
                                   "metadata_props.")
    p.add_argument("--checkpoint", required=True, help="jpegnet checkpoint (or a plain state dict with --model)")
    p.add_argument("--model", default=None, help="registered model name: checked against the checkpoint, "
                                                  "required for a plain state dict")
    p.add_argument("--out", required=True, help="ONNX file to write (e.g. model.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="quantize to int8 (ONNX Runtime static quantization, QDQ, per-channel int8 weights, uint8 "
                        "activations) with ranges calibrated on --calibration; runs on onnxruntime and openvino")
    p.add_argument("--calibration", metavar="SRC", default=None,
                   help="with --int8: JPEG files that set the activation ranges, through the model's own "
                        "preprocessing: a folder (class folders or flat, any depth) or tar shards "
                        "('shards/train-{000000..000009}.tar'); use images like those the model will serve")
    p.add_argument("--calibration-images", type=_positive_int, default=None, metavar="N",
                   help="with --int8: calibrate on up to N images, spread evenly over the folder (default 256)")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=None,
                   help="with --int8: activation ranges by the entropy (KL) criterion (default: it kept the most "
                        "top-1 on every real model measured), each tensor's min / max, or its 99.999th percentile")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="with --int8: 7-bit weights, for x86 CPUs without VNNI (AVX2 only), whose int8 kernels "
                        "can saturate otherwise (default: decided from this CPU; give it when the file will be "
                        "served on another machine)")
    p.add_argument("--keep-float", dest="keep_float", action="append", default=None, metavar="MODULE",
                   help="with --int8: leave this submodule in float (repeatable; dotted names), e.g. `entry` for a "
                        "converted model's learned entry: buys a little accuracy, costs most of the speed-up (README, "
                        "'int8 without the input's rounding')")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .engine.export import export_checkpoint

    if args.int8:
        from .engine.quantize import DEFAULT_CALIBRATION_METHOD, export_int8

        r = export_int8(args.checkpoint, args.out, model_name=args.model, calibration=args.calibration,
                        calibration_images=args.calibration_images,
                        calibration_method=args.calibration_method or DEFAULT_CALIBRATION_METHOD,
                        reduce_range=args.reduce_range, keep_float=args.keep_float or ())
    elif args.calibration is not None or args.calibration_images is not None or args.reduce_range is not None or \
            args.calibration_method is not None or args.keep_float is not None:
        raise UsageError("--calibration, --calibration-images, --calibration-method, --reduce-range and "
                         "--keep-float go with --int8")
    else:
        r = export_checkpoint(args.checkpoint, args.out, model_name=args.model)
    h, w = r["input_size"]
    print(f"wrote {r['path']} ({r['bytes'] / 2**20:.1f} MiB): {r['model']} {r['precision']}, inputs "
          f"{', '.join(r['inputs'])} ({r['representation']} {h}x{w}, dynamic batch), {r['classes']} classes"
          + (", DCT statistics" if r["dct_stats"] else ""))
    if "calibration" in r:
        c = r["calibration"]
        print(f"calibrated ({c['method']}) on {c['images']} images of {c['source']}"
              + (f", {c['unreadable']} unreadable files skipped" if c["unreadable"] else "")
              + ("; 7-bit weights (--reduce-range)" if r.get("reduce_range") else "; 8-bit weights"))
    return 0


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="HTTP server: POST a JPEG to /v1/classify, get its top-k labels",
                       description="Classify JPEG uploads with dynamic batching. POST /v1/classify (body: one "
                                   "JPEG, or multipart with several), GET /healthz, GET /metrics (Prometheus). "
                                   "SIGTERM drains in-flight requests before exiting.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="jpegnet checkpoint")
    src.add_argument("--onnx", help="ONNX file from `jpegnet export`, fp32 or --int8 (onnxruntime or openvino "
                                    "backend)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (printed when ready)")
    p.add_argument("--max-batch", type=_positive_int, default=32, help="images per forward pass at most")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch's first image waits for more (default 5)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="default: for --onnx openvino where it is installed (faster here), else onnxruntime; "
                        "torch for --checkpoint; openvino and onnxruntime run either (a checkpoint is exported in "
                        "memory)")
    add_device_arguments(p, precision=False, default=None)
    p.add_argument("--max-queue", type=_positive_int, default=256,
                   help="images admitted at once (decoding, waiting, running); more get 503 (default 256)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request before 504 (default 30)")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest upload per image (default 16 MiB)")
    p.add_argument("--max-pixels", type=_positive_int, default=24_000_000,
                   help="largest image, width x height, refused from its header (default 24,000,000)")
    p.add_argument("--decode-threads", type=_positive_int, default=None, help="default: the cores available")
    add_rgb_decode_argument(p)
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="model threads (torch / ONNX Runtime / OpenVINO)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import torch

    from .engine.backends import default_onnx_backend, load_backend
    from .serve.server import ServeConfig, run_server

    backend = args.backend or (default_onnx_backend() if args.onnx else "torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                         max_queue=args.max_queue, timeout_s=args.timeout,
                         max_body_bytes=int(args.max_body_mb * 2**20), max_pixels=args.max_pixels,
                         log_level=args.log_level, rgb_decode=args.rgb_decode,
                         **({"decode_threads": args.decode_threads} if args.decode_threads else {}))
    runner = load_backend(backend, checkpoint=args.checkpoint, onnx=args.onnx, device=args.device,
                          threads=args.threads)
    cfg = runner.input_config

    def ready(host, port):
        print(f"jpegnet serve: {runner.model_name} ({cfg.representation} {cfg.input_size[0]}x{cfg.input_size[1]}, "
              f"{len(runner.class_names)} classes) on {runner.name} ({runner.precision}), listening on "
              f"http://{host}:{port}", flush=True)

    run_server(runner, config, on_ready=ready)
    print("jpegnet serve: stopped", flush=True)
    return 0


# --- plumbing ----------------------------------------------------------------------------------------------

class UsageError(JpegnetError, ValueError):
    """A bad combination of arguments that argparse cannot express: printed by argparse with the usage line
    (exit status 2), not as a one-line error."""


def print_table(header: list[str], rows: list[list[str]], file=None) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in rows:
        print(line(row), file=file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jpegnet", description="Train and run CNNs straight from JPEG DCT "
                                                                 "coefficients.")
    parser.add_argument("--version", action="version", version=f"jpegnet {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_train_parser, add_convert_parser, add_eval_parser, add_predict_parser, add_models_parser, add_profile_parser,
                add_bench_parser, add_plot_parser, add_stats_parser, add_visualize_parser, add_shards_parser,
                add_export_parser, add_serve_parser):
        add(sub)
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# What the command reports in one line: jpegnet's typed errors (every user-facing one derives from JpegnetError:
# EngineError and its ConfigError / DeviceError / CheckpointError..., UnknownModelError, JpegError, ShardError,
# LayerError, ...) and files the OS refuses. A bare ValueError / TypeError / KeyError / RuntimeError is a bug and
# keeps its traceback; so is a missing jpegnet module (see _missing_dependency).
_USER_ERRORS: tuple[type[BaseException], ...] = (JpegnetError, OSError)


def _missing_dependency(exc: ImportError) -> bool:
    """A third-party package that an optional feature needs is not installed (onnxruntime, matplotlib...)."""
    return isinstance(exc, ModuleNotFoundError) and bool(exc.name) and exc.name.split(".")[0] != "jpegnet"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (see the module docstring)."""
    try:
        try:
            return _main(argv)
        finally:
            # Written out here, where a closed pipe can still be handled, not at interpreter exit (where it
            # would print "Exception ignored ... BrokenPipeError" and exit with 120). Also after --help / usage
            # errors, which leave through SystemExit.
            sys.stdout.flush()
    except BrokenPipeError:
        _discard_output()
        return EXIT_PIPE_CLOSED


def _discard_output() -> None:
    """After the reader of stdout (or stderr) went away: point both at /dev/null, so that what is still buffered,
    and anything written until the process ends, goes nowhere instead of raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to redirect
            pass
    os.close(devnull)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .log import setup_console_logging  # console lines through `logging` (jpegnet.train)
    setup_console_logging()
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("jpegnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        parser.error(str(exc))  # exits with 2
    except MemoryError as exc:  # includes the engine's OutOfMemoryError
        print(f"jpegnet: error: {_one_line(exc) if str(exc) else 'out of memory; lower --batch-size'}",
              file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # an OSError, but not an error of the command: see main
        raise
    except ImportError as exc:
        if not _missing_dependency(exc) or os.environ.get("JPEGNET_DEBUG"):
            raise
        print(f"jpegnet: error: {_one_line(exc)} (an optional dependency of this command)", file=sys.stderr)
        return EXIT_ERROR
    except _USER_ERRORS as exc:
        # The message is the whole story; a traceback would only hide it.
        if os.environ.get("JPEGNET_DEBUG"):
            raise
        print(f"jpegnet: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
