"""What skipping a teacher's front would buy: the whole network against its front and its remainder at each
cut, timed in ONNX Runtime on the CPU (random weights: the cost does not depend on them).

    python benchmarks/cut_cost.py                                  # EfficientNet-Lite0, batch 8, 224 px
    python benchmarks/cut_cost.py --teacher resnet50 --batch 4
    python benchmarks/cut_cost.py --entry-depth 2                  # the converted model with that entry

Prints milliseconds per image for the whole model, and for each stage of its feature_info the front up to
there and the remainder after it (what a learned DCT entry replaces, and what runs after it unchanged); at the
stride-4 and stride-8 cuts also the whole `converted` model with a learned entry of --entry-width / -depth /
-kernel (coefficients in, logits out: the entry and the remainder, what a converted model costs to serve).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def onnx_session(module: torch.nn.Module, x, threads: int):
    """(ONNX Runtime CPU session of `module`, its input feed); x: one input tensor or a tuple of them (a
    converted model takes Y and CbCr)."""
    import onnxruntime as ort

    inputs = x if isinstance(x, tuple) else (x,)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        torch.onnx.export(module.eval(), inputs, path, opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}


def ms_per_image(module: torch.nn.Module, x, threads: int, iters: int) -> float:
    session, feed = onnx_session(module, x, threads)
    for _ in range(3):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(iters):
        session.run(None, feed)
    return (time.perf_counter() - start) / iters / next(iter(feed.values())).shape[0] * 1000


def main() -> None:
    from jpegnet.input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS
    from jpegnet.models import create_model
    from jpegnet.models.converted import ENTRY_REDUCTIONS, LEARNED_ENTRY_DEFAULTS
    from jpegnet.models.cut import TeacherError, _feature_info, build_teacher_architecture, cut_teacher

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--entry-width", type=float, default=LEARNED_ENTRY_DEFAULTS["entry_width"])
    p.add_argument("--entry-depth", type=int, default=LEARNED_ENTRY_DEFAULTS["entry_depth"])
    p.add_argument("--entry-kernel", type=int, default=LEARNED_ENTRY_DEFAULTS["entry_kernel"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net = build_teacher_architecture(args.teacher).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    whole = ms_per_image(net, x, args.threads, args.iters)
    print(f"{args.teacher}, batch {args.batch}, {args.size} px, {args.threads} threads: whole {whole:.2f} ms/image")
    for info in _feature_info(net)[:-1]:  # the last stage's remainder is only the head
        try:
            front, remainder, point = cut_teacher(copy.deepcopy(net), info["module"])
        except TeacherError:  # jpegnet models are cut up to stride 8 only
            continue
        with torch.no_grad():
            features = front(x)
        f, r = ms_per_image(front, x, args.threads, args.iters), ms_per_image(remainder, features, args.threads,
                                                                               args.iters)
        print(f"cut after {point.name} (stride {point.reduction}, {point.channels} channels): front {f:.2f} ms "
              f"({100 * f / whole:.0f}%), remainder {r:.2f} ms ({100 * r / whole:.0f}%)")
        if point.reduction in ENTRY_REDUCTIONS:
            converted = create_model("converted", teacher=args.teacher, cut=point.name, entry_width=args.entry_width,
                                     entry_depth=args.entry_depth, entry_kernel=args.entry_kernel)
            coefficients = (torch.randn(args.batch, DCT_Y_CHANNELS, args.size // 8, args.size // 8),
                            torch.randn(args.batch, DCT_CBCR_CHANNELS, args.size // 16, args.size // 16))
            c = ms_per_image(converted, coefficients, args.threads, args.iters)
            print(f"  converted with a learned entry there (width {args.entry_width}, depth {args.entry_depth}, "
                  f"kernel {args.entry_kernel}): {c:.2f} ms, whole / converted {whole / c:.2f}x")


if __name__ == "__main__":
    main()
