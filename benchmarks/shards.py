"""Tar shards vs the same files as a folder: training batches per core, DCT and RGB, warm and cold.

The same images (a strided subset of imagenette-224 train, `--images`) are read as a folder of files
(JpegFolder + create_loader) and as WebDataset shards written from that folder (JpegShards + ShardLoader),
through the training transform (random-resized-crop 224, flip, normalize, batches of 64):
  - warm: every file in the page cache;
  - cold: the page cache of every file involved (the JPEGs, or the shards and their indexes) dropped with
    posix_fadvise(DONTNEED) before the epoch; the bytes then read from the disk are shown (/proc/self/io).
Rates are images per CPU second of the process (all its threads), i.e. per core: less sensitive to other jobs
on the machine than wall time (shown too). Folder and shards runs alternate, `--rounds` times, best kept.

A last table times reading alone (no decoding), per sample: opening and reading each file of the folder, the
shard reader of jpegnet.data, and the `webdataset` library (`WebDataset(urls).to_tuple('jpg', 'cls')`) when
it is importable: the measurement behind the choice of an own tar reader.

    python benchmarks/shards.py [--images 2048] [--rounds 2] [--threads N]

`--verify` measures instead what `jpegnet shards` pays to check the files before writing them (images/s, wall
and per core, page cache warm, best of --rounds): the check alone (`check_images`, 'header' and 'full': one
strict coefficient read per image) and whole `write_shards` runs with each, the difference being the cost of
`--verify full` over `--verify header`:

    python benchmarks/shards.py --verify [--images 2048] [--rounds 3] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jpegnet.codec.reader import default_threads  # noqa: E402
from jpegnet.data import JpegFolder, JpegShards, create_loader, write_shards  # noqa: E402
from jpegnet.data.image_check import VERIFY_MODES, check_images  # noqa: E402

SHARED = Path(os.environ.get("JPEGNET_SHARED_DATA", REPO.parent / "shared" / "data"))


def cpu_seconds() -> float:
    return time.process_time()  # every thread of the process, nanosecond clock


def disk_read_bytes() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])


def drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages (shards just written) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def folder_of(files: list[Path], root: Path) -> Path:
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(f, root / f.parent.name / f.name)
    return root


def epoch(dataset, threads: int, cold_files=None) -> dict:
    loader = create_loader(dataset, 64, shuffle=True, num_threads=threads, seed=0)
    loader.set_epoch(1)
    if cold_files is not None:
        drop_cache(cold_files)
    disk0, cpu0, start = disk_read_bytes(), cpu_seconds(), time.perf_counter()
    n = sum(t.shape[0] for _, t in loader)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return {"images": n, "per_core": n / cpu, "wall": n / wall, "disk_mb": (disk_read_bytes() - disk0) / 1e6}


def read_only(files, shards_ds, urls, rounds: int) -> dict:
    """CPU µs per sample of reading the bytes alone: folder files, our shard reader, webdataset."""
    def folder_read():
        for f in files:
            with open(f, "rb") as fh:
                fh.read()

    def ours():
        for shard, index in enumerate(shards_ds.indexes):
            for _ in shards_ds.read_samples(shard, range(len(index))):
                pass

    runs = {"folder files": folder_read, "jpegnet shard reader": ours}
    try:
        import webdataset as wds

        def webdataset_read():
            for _ in wds.WebDataset(urls, shardshuffle=False).to_tuple("jpg", "cls"):
                pass
        runs["webdataset 1.0 library"] = webdataset_read
    except ImportError:
        pass
    out = {}
    for name, fn in runs.items():
        best = float("inf")
        for _ in range(rounds):
            c0 = cpu_seconds()
            fn()
            best = min(best, cpu_seconds() - c0)
        out[name] = best / len(files) * 1e6
    return out


def timed(fn, rounds: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of the process) of `rounds` calls."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(rounds):
        c0, t0 = cpu_seconds(), time.perf_counter()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, cpu_seconds() - c0)
    return wall, cpu


def verify_cost(files: list[Path], threads: int, rounds: int) -> int:
    """Images/s of the shard writer's checks: alone, and in whole write_shards runs."""
    blobs = [f.read_bytes() for f in files]
    print(f"{len(files)} imagenette-224 train files ({sum(map(len, blobs)) / 1e6:.1f} MB), {threads} decode "
          f"threads; {platform.processor() or ''} {os.cpu_count()} CPUs; page cache warm, best of {rounds}",
          flush=True)
    rows = []
    for mode in VERIFY_MODES:
        found = check_images(blobs, mode, threads=threads)
        wall, cpu = timed(lambda: check_images(blobs, mode, threads=threads), rounds)
        rows.append((f"check_images('{mode}')", mode, wall, cpu, sum(r is not None for r in found)))
    with tempfile.TemporaryDirectory() as tmp:
        root = folder_of(files, Path(tmp) / "folder")
        for mode in VERIFY_MODES:
            runs = iter(range(rounds))
            written = {}

            def write():
                written.update(write_shards(root, str(Path(tmp) / f"{mode}{next(runs)}" / "t-%06d.tar"),
                                            max_size="64MB", verify=mode, threads=threads))
            wall, cpu = timed(write, rounds)
            rows.append((f"write_shards(verify='{mode}')", mode, wall, cpu, len(written["bad"])))
    print("\n| what | images/s (wall) | images/s per core | CPU µs / image | left out |\n|---|---|---|---|---|")
    for name, _, wall, cpu, bad in rows:
        print(f"| {name} | {len(files) / wall:,.0f} | {len(files) / cpu:,.0f} | {cpu / len(files) * 1e6:.0f} | "
              f"{bad} |")
    by = {name: (wall, cpu) for name, _, wall, cpu, _ in rows}
    full, header = by["write_shards(verify='full')"], by["write_shards(verify='header')"]
    print(f"--verify full costs {(full[1] - header[1]) / len(files) * 1e6:.0f} µs of CPU per image more than "
          f"--verify header; write_shards wall time {full[0] / header[0]:.2f}x")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--representations", nargs="+", default=["dct", "rgb"])
    p.add_argument("--verify", action="store_true", help="time the writer's checks (--verify full / header) instead")
    args = p.parse_args(argv)

    files = sorted((SHARED / "imagenette-224" / "train").glob("*/*.JPEG"))
    files = files[::max(1, len(files) // args.images)][:args.images]
    if args.verify:
        return verify_cost(files, args.threads, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        root = folder_of(files, Path(tmp) / "folder")
        written = write_shards(root, str(Path(tmp) / "shards" / "train-%06d.tar"), max_size="8MB")
        shard_files = written["shards"] + [s[:-4] + ".idx.json" for s in written["shards"]]
        print(f"{len(files)} imagenette-224 train files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) "
              f"-> {len(written['shards'])} shards; {args.threads} decode threads; {platform.processor() or ''}"
              f" {os.cpu_count()} CPUs", flush=True)
        rows = []
        for rep in args.representations:
            folder = JpegFolder(root, rep, train=True, input_size=224)
            shards = JpegShards(written["pattern"], rep, train=True, input_size=224)
            for cache in ("warm", "cold"):
                best = {}
                for _ in range(args.rounds):
                    for name, ds, cold in (("folder", folder, files), ("shards", shards, shard_files)):
                        if cache == "warm":
                            epoch(ds, args.threads)  # fill the page cache
                        r = epoch(ds, args.threads, cold if cache == "cold" else None)
                        if name not in best or r["per_core"] > best[name]["per_core"]:
                            best[name] = r
                f, s = best["folder"], best["shards"]
                rows.append((rep, cache, f, s))
                print(f"{rep} {cache}: folder {f['per_core']:.0f} img/s/core ({f['wall']:.0f} img/s wall, "
                      f"{f['disk_mb']:.1f} MB from disk), shards {s['per_core']:.0f} img/s/core "
                      f"({s['wall']:.0f} wall, {s['disk_mb']:.1f} MB), shards/folder "
                      f"{s['per_core'] / f['per_core']:.2f}x", flush=True)
        print("\n| pipeline | cache | folder img/s/core | shards img/s/core | shards / folder | "
              "folder img/s (wall) | shards img/s (wall) | read from disk, folder / shards |")
        print("|---|---|---|---|---|---|---|---|")
        for rep, cache, f, s in rows:
            print(f"| {rep} | {cache} | {f['per_core']:,.0f} | {s['per_core']:,.0f} | "
                  f"**{s['per_core'] / f['per_core']:.2f}×** | {f['wall']:,.0f} | {s['wall']:,.0f} | "
                  f"{f['disk_mb']:.1f} / {s['disk_mb']:.1f} MB |")
        by = {(r, c): (f, s) for r, c, f, s in rows}
        for cache in ("warm", "cold"):
            if ("dct", cache) in by and ("rgb", cache) in by:
                (fd, sd), (fr, sr) = by[("dct", cache)], by[("rgb", cache)]
                print(f"DCT / RGB per core, {cache}: folder {fd['per_core'] / fr['per_core']:.2f}x, "
                      f"shards {sd['per_core'] / sr['per_core']:.2f}x")

        reads = read_only(files, JpegShards(written["pattern"], "dct", train=True), written["shards"],
                          args.rounds + 1)
        print("\n| reading the bytes alone (page cache) | CPU µs / image |\n|---|---|")
        for name, us in reads.items():
            print(f"| {name} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
