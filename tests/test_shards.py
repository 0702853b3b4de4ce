"""Tar shards: the writer and the reader agree byte for byte, the loader builds the very tensors a folder
gives, order / split / resume are pure functions of (seed, epoch, position), bad members are skipped and
reported, pipe: commands stream, and train / eval / stats take shards (also under torchrun with gloo).

Run as a script under torchrun, this file is one rank of the 2-process check (see
test_two_gloo_processes_split_the_shards).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from jpegnet import InputConfig, JpegError, read_header  # noqa: E402
from jpegnet.data import (JpegFolder, JpegShards, PipeCommandError, ShardError, ShardLoader,  # noqa: E402
                          ShardNotFoundError, create_loader, expand_braces, is_shard_spec, write_shards)
from jpegnet.data.shard_format import ShardIndex, iter_samples, iter_tar, sidecar_url  # noqa: E402
from jpegnet.data.shard_writer import brace_pattern, parse_size  # noqa: E402

from test_engine_resume import make_tiny_dataset  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 train / 6 val images of 3 classes (built-in samples), one unreadable file among the train ones,
    written as 3 train shards of at most 5 images and 1 val shard."""
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "folder", classes=3, train_per_class=4,
                             val_per_class=2)
    (root / "train" / sorted(os.listdir(root / "train"))[1] / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    out = tmp_path_factory.mktemp("shards")
    train = write_shards(root / "train", str(out / "train-%06d.tar"), max_count=5, shuffle_seed=3)
    val = write_shards(root / "val", str(out / "val-%06d.tar"))
    return root, out, train, val


def _file_bytes(root: Path, split: str) -> dict:
    """key → (bytes, label) of a split's readable files, keyed as the writer keys them."""
    ds = JpegFolder(root / split, "dct", train=False)
    return {os.path.relpath(p, root / split).rsplit(".", 1)[0]: (Path(p).read_bytes(), t) for p, t in ds.samples
            if not p.endswith("broken.jpg")}


def test_writer_reader_round_trip(data):
    root, out, train, val = data
    assert train["pattern"] == str(out / "train-{000000..000002}.tar")
    assert expand_braces(train["pattern"]) == train["shards"]
    assert train["samples"] == 12 and [Path(p).name for p, _ in train["bad"]] == ["broken.jpg"]
    assert json.loads((out / "classes.json").read_text())["classes"] == JpegFolder(root / "train", train=False).classes
    expected = _file_bytes(root, "train")
    seen = {}
    for shard in train["shards"]:
        index = ShardIndex.from_json(Path(sidecar_url(shard)).read_bytes(), shard)
        assert len(index) <= 5
        with open(shard, "rb") as f:
            samples = list(iter_samples(iter_tar(f)))
            assert [k for k, _, _ in samples] == index.keys
            for i, (key, start, group) in enumerate(samples):
                assert sorted(group) == ["cls", "jpg"] and start == index.starts[i]
                seen[key] = (group["jpg"].data, int(group["cls"].data))
                for ext, (offset, size) in index.members[i].items():  # random access by the index
                    f.seek(offset)
                    assert f.read(size) == group[ext].data
        # the standard library reads the shards too
        with tarfile.open(shard) as t:
            assert [m.name for m in t.getmembers()] == [f"{k}.{e}" for k, _, g in samples for e in g]
    assert seen == expected  # every image once, bytes identical, labels right
    order = [k for s in train["shards"] for k in ShardIndex.scan(s).keys]
    assert order != sorted(order)  # written in a shuffled order...
    again = write_shards(root / "train", str(out / "again" / "t-%d.tar"), max_count=5, shuffle_seed=3)
    assert [Path(a).read_bytes() for a in again["shards"]] == [Path(s).read_bytes() for s in train["shards"]]
    # another split with other classes cannot share the folder's classes.json
    other = root.parent / "other" / "only"
    other.mkdir(parents=True)
    os.symlink(next((root / "val").rglob("*.jpg")), other / "a.jpg")
    with pytest.raises(ShardError, match="classes.json exists with other classes"):
        write_shards(other.parent, str(out / "again" / "o-%d.tar"))
    assert not list((out / "again").glob("o-*"))


@pytest.mark.parametrize("representation", ["dct", "rgb"])
def test_shard_batches_equal_folder_batches(data, representation):
    """The same files through the folder path and the shard path give the same tensors (evaluation transform,
    and training windows drawn from the sample's number, which here is not the folder index)."""
    root, out, train, val = data
    cfg = InputConfig(representation=representation, input_size=(SIZE, SIZE), crop_pct=0.8)
    folder = JpegFolder.for_model(root / "val", cfg, train=False)
    shards = JpegShards.for_model(val["pattern"], cfg, train=False)
    assert (shards.representation, shards.input_size, shards.crop_pct, shards.input_config) == \
        (folder.representation, folder.input_size, folder.crop_pct, folder.input_config) == \
        (representation, (SIZE, SIZE), 0.8, cfg)
    key_to_index = {os.path.relpath(p, root / "val").rsplit(".", 1)[0]: i for i, (p, _) in enumerate(folder.samples)}
    loader = ShardLoader(shards, 4, num_threads=2, prefetch=0)
    order = [key_to_index[k] for _, k in loader.sample_order()]
    got = [b for b in loader]
    want = [b for b in create_loader(folder, 4, sampler=order, num_threads=2, prefetch=0)]
    with pytest.raises(ValueError, match="no sampler"):  # shards split themselves between processes
        create_loader(shards, 4, sampler=order)
    assert len(got) == len(want) == 2
    for (xs, ts), (xf, tf) in zip(got, want):
        assert torch.equal(ts, tf)
        for a, b in zip(xs, xf):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_brace_expansion_and_specs():
    assert expand_braces("s/t-{000008..000011}.tar") == [f"s/t-{i:06d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("pipe:awk '{print}' x-{0..1}.tar") == ["pipe:awk '{print}' x-0.tar",
                                                               "pipe:awk '{print}' x-1.tar"]
    assert brace_pattern("o/train-%06d.tar", 147) == "o/train-{000000..000146}.tar"
    assert brace_pattern("o/t%d.tar", 12) == "o/t{0..11}.tar"
    assert is_shard_spec("s/train-{0..3}.tar") and is_shard_spec("pipe:curl -s http://h/x") \
        and not is_shard_spec("/data/imagenet")
    assert sidecar_url("pipe:aws s3 cp s3://b/train-000001.tar -") == "pipe:aws s3 cp s3://b/train-000001.idx.json -"
    assert sidecar_url("pipe:aws s3 cp s3://b/train-000001.tar -", "classes.json") == \
        "pipe:aws s3 cp s3://b/classes.json -"
    assert parse_size("1GB") == 10 ** 9 and parse_size("64KiB") == 65536 and parse_size(1234) == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def _numbers(loader) -> list:
    index = {(u, k): i for u, ix in zip(loader.dataset.urls, loader.dataset.indexes) for i, k in enumerate(ix.keys)}
    return [int(loader.dataset.offsets[loader.dataset.urls.index(u)]) + index[(u, k)] for u, k in loader.sample_order()]


def test_order_split_and_resume_are_pure_functions(data):
    _, _, train, _ = data
    ds = JpegShards(train["pattern"], "dct", train=True, input_size=SIZE)
    assert len(ds) == 12

    def run(epoch, start=0, readers=2, prefetch=2):
        loader = ShardLoader(ds, 3, shuffle=True, shuffle_buffer=4, num_threads=1, seed=7, readers=readers,
                             prefetch=prefetch)
        loader.set_epoch(epoch, start)
        batches = [(tuple(x.clone() for x in xs), t.clone()) for xs, t in loader]
        return batches, loader

    full, loader = run(1)
    assert len(full) == len(loader) == 4 and loader.position == 4
    resumed, loader2 = run(1, start=2, readers=1, prefetch=0)
    assert len(resumed) == 2 and loader2.position == 4
    for (a, ta), (b, tb) in zip(full[2:], resumed):  # the resumed epoch continues at the right place
        assert torch.equal(ta, tb) and all(torch.equal(x, y) for x, y in zip(a, b))
    other, _ = run(2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(full, other))  # another epoch, another order
    assert sorted(_numbers(loader)) == list(range(12))

    # ranks: near-equal contiguous parts of the permuted shards, together the dataset, no sample twice
    for world in (2, 5, 13):  # 13: more ranks than samples
        parts = []
        for rank in range(world):
            part = ShardLoader(ds, 2, shuffle=True, rank=rank, world_size=world, seed=7)
            part.set_epoch(3)
            parts.append(_numbers(part))
        assert sorted(sum(parts, [])) == list(range(12))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        dropped = [ShardLoader(ds, 2, shuffle=True, rank=r, world_size=world, drop_last=True) for r in range(world)]
        assert len({len(d) for d in dropped}) == 1 == len({len(d.sample_order()) for d in dropped})


def _tar_bytes(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_bad_members_are_skipped_and_reported(data, tmp_path):
    root, out, train, _ = data
    good = sorted((root / "val").rglob("*.jpg"))
    # a shard from another tool (no index: scanned) with a broken JPEG, a sample without .cls, a bad label
    (tmp_path / "classes.json").write_text((out / "classes.json").read_text())
    (tmp_path / "odd-0.tar").write_bytes(_tar_bytes([
        ("a.jpg", good[0].read_bytes()), ("a.cls", b"0"),
        ("b.jpg", b"\xff\xd8\xff junk"), ("b.cls", b"1"),
        ("c.jpg", good[1].read_bytes()),
        ("d.jpg", good[2].read_bytes()), ("d.cls", b"7"),
        ("e.jpg", good[3].read_bytes()), ("e.cls", b"2")]))
    # one of the writer's shards, cut in the middle of a member
    first = Path(train["shards"][0])
    blob = first.read_bytes()
    cut_index = ShardIndex.from_json(Path(sidecar_url(str(first))).read_bytes(), "x")
    (tmp_path / "odd-1.tar").write_bytes(blob[:cut_index.members[3]["jpg"][0] + 100])
    Path(sidecar_url(str(tmp_path / "odd-1.tar"))).write_bytes(Path(sidecar_url(str(first))).read_bytes())

    ds = JpegShards(str(tmp_path / "odd-{0..1}.tar"), "dct", train=False, input_size=SIZE)
    assert len(ds) == 5 + len(cut_index)
    loader = ShardLoader(ds, 4, num_threads=2)
    got = sum(len(t) for _, t in loader)
    reasons = {name.split(":")[-1].split(".")[0]: reason for name, reason in loader.skipped}
    assert got == 2 + 3 and len(loader.skipped) == 3 + len(cut_index) - 3
    with pytest.raises(JpegError) as broken:  # reported in the reader's own words
        read_header(b"\xff\xd8\xff junk")
    assert reasons["b"] == broken.value.message
    assert reasons["c"] == "no label: neither .cls nor .json among its members (.jpg)"
    assert reasons["d"] == "label 7 is not a class index below 3"
    assert all(reasons[k].startswith("truncated shard") for k in cut_index.keys[3:])

    with pytest.raises(ShardError):
        list(ShardLoader(JpegShards(str(tmp_path / "odd-0.tar"), "dct", train=False, input_size=SIZE,
                                    on_error="raise"), 4))
    with pytest.raises(ShardNotFoundError, match=r"shard not found: .*train-000003\.tar"):
        JpegShards(str(out / "train-{000000..000007}.tar"), "dct", train=False)


def test_pipe_commands_stream_and_fail_loudly(data, tmp_path):
    _, out, train, _ = data
    local = JpegShards(train["pattern"], "dct", train=True, input_size=SIZE)
    piped = JpegShards([f"pipe:cat {s}" for s in train["shards"]], "dct", train=True, input_size=SIZE)
    assert piped.classes == local.classes and len(piped) == len(local)
    for shuffle_start in (0, 1):  # a resume reads and drops the samples already done
        a, b = (ShardLoader(d, 3, shuffle=True, world_size=2, rank=1, num_threads=1) for d in (local, piped))
        a.set_epoch(1, shuffle_start)
        b.set_epoch(1, shuffle_start)
        pairs = list(zip(a, b))
        assert len(pairs) == len(a) - shuffle_start > 0
        for (xa, ta), (xb, tb) in pairs:
            assert torch.equal(ta, tb) and all(torch.equal(x, y) for x, y in zip(xa, xb))

    script = tmp_path / "fetch.sh"  # fails on the shard itself, after some bytes, but serves the index
    script.write_text('case "$1" in *.tar) head -c 3000 "$1"; echo "bucket gone" >&2; exit 7;; '
                      '*) cat "$1";; esac\n')
    failing = JpegShards(f"pipe:sh {script} {train['shards'][0]}", "dct", train=False, input_size=SIZE)
    with pytest.raises(PipeCommandError, match=r"status 7: sh .*fetch.sh .*train-000000.tar: bucket gone"):
        list(ShardLoader(failing, 4))
    with pytest.raises(ShardError, match="idx.json"):
        JpegShards(f"pipe:cat {tmp_path}/nowhere-0.tar", "dct", train=False)


def test_train_eval_stats_commands_take_shards(data, tmp_path, capsys):
    from jpegnet.cli import main
    from test_distributed import register_test_model

    from jpegnet.models import is_model
    if not is_model("tiny_groupnorm_net"):
        register_test_model()
    root, out, train, val = data
    run = tmp_path / "run"
    assert main(["train", "--data", train["pattern"], "--val-data", val["pattern"], "--model", "tiny_groupnorm_net",
                 "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress", "--no-tensorboard",
                 "--out", str(run)]) == 0
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["global_step"] == 3 and state["history"][0]["val_top1"] >= 0  # 12 images, batches of 4
    capsys.readouterr()
    assert main(["eval", "--data", val["pattern"], "--checkpoint", str(run / "last.pt")]) == 0
    from_shards = capsys.readouterr().out
    assert main(["eval", "--data", str(root), "--checkpoint", str(run / "last.pt")]) == 0
    from_folder = capsys.readouterr().out
    top1 = lambda text: text.split("top-1 ")[1].split("%")[0]  # noqa: E731
    assert "6 images" in from_shards and top1(from_shards) == top1(from_folder)

    capsys.readouterr()
    assert main(["eval", "--data", str(out / "val-{000000..000003}.tar"), "--checkpoint", str(run / "last.pt")]) == 1
    assert capsys.readouterr().err == f"jpegnet: error: shard not found: {out}/val-000001.tar (and 2 more of 4)\n"

    assert main(["stats", train["pattern"], "--out", str(tmp_path / "s.json"), "--size", "32"]) == 0
    assert main(["stats", str(root), "--out", str(tmp_path / "f.json"), "--size", "32"]) == 0
    s, f = (json.loads((tmp_path / n).read_text()) for n in ("s.json", "f.json"))
    np.testing.assert_allclose(s["dct_mean"], f["dct_mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s["dct_std"], f["dct_std"], rtol=1e-6, atol=1e-9)

    assert main(["shards", "--data", str(root), "--split", "val", "--out", str(tmp_path / "v" / "val-%03d.tar"),
                 "--max-size", "64KB"]) == 0  # the files are 19 to 45 kB
    printed = capsys.readouterr().out
    assert "wrote 6 images of 3 classes" in printed and f"{tmp_path}/v/val-{{000..00" in printed
    sizes = [p.stat().st_size for p in (tmp_path / "v").glob("*.tar")]
    assert len(sizes) >= 3 and max(sizes) <= 64_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digests(loader) -> list[str]:
    out = []
    for (y, cbcr), t in loader:
        for i in range(len(t)):
            out.append(hashlib.sha1(y[i].contiguous().numpy().tobytes() + cbcr[i].contiguous().numpy().tobytes()
                                    + bytes([int(t[i])])).hexdigest())
    return out


@pytest.mark.slow
def test_two_gloo_processes_split_the_shards(data, tmp_path):
    """torchrun, 2 processes: the samples the ranks decode (training transform, epoch 1) are together the
    dataset's, none twice; then `jpegnet train` over the shards runs with DDP on both."""
    _, _, train, val = data
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(_free_port()), str(HERE), train["pattern"],
                           val["pattern"], str(tmp_path)], cwd=REPO, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = ShardLoader(JpegShards(train["pattern"], "dct", train=True, input_size=SIZE), 2, shuffle=True,
                         rank=0, world_size=1, num_threads=1, seed=5)
    single.set_epoch(1)
    everything = _digests(single)
    assert len(set(everything)) == 12
    assert sorted(ranks[0] + ranks[1]) == sorted(everything) and not set(ranks[0]) & set(ranks[1])
    assert abs(len(ranks[0]) - len(ranks[1])) <= 1
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 3  # 12 images, global batches of 4


if __name__ == "__main__":  # one rank under torchrun: TRAIN_PATTERN VAL_PATTERN OUT
    train_pattern, val_pattern, out_dir = sys.argv[1:4]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    loader = ShardLoader(JpegShards(train_pattern, "dct", train=True, input_size=SIZE), 2, shuffle=True, rank=rank,
                         world_size=world, num_threads=1, seed=5)
    loader.set_epoch(1)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(_digests(loader)))
    from test_distributed import register_test_model

    from jpegnet.cli import main
    register_test_model()
    sys.exit(main(["train", "--data", train_pattern, "--val-data", val_pattern, "--model", "tiny_groupnorm_net",
                   "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress", "--no-tensorboard",
                   "--out", str(Path(out_dir) / "run")]))
