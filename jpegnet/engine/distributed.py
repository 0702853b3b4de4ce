"""Distributed setup for `torchrun`: one process per GPU (or per CPU slot with gloo), DDP.

`torchrun --nproc_per_node=N -m jpegnet train ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `init_distributed()` reads them, picks NCCL on CUDA and gloo otherwise, and binds each process to
its local GPU. Without those variables everything runs in one process and the helpers here are no-ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import DeviceError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes CSV / TensorBoard and saves checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and choose this process's device.

    device: 'cpu', 'cuda', 'cuda:N' (one process only) or None (CUDA when available); see
    jpegnet.engine.device.resolve_device. backend: None picks NCCL for CUDA, gloo for CPU.
    """
    dev = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if dev.index is not None and world_size > 1:
            # torchrun gives every process its GPU (LOCAL_RANK); one index for all of them cannot be meant
            raise DeviceError(f"--device {dev} names one GPU, but torchrun runs {world_size} processes, one per "
                              f"GPU; use --device cuda")
        index = dev.index if dev.index is not None else local_rank
        dev = resolve_device(torch.device("cuda", index))  # LOCAL_RANK beyond the visible GPUs says so
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if dev.type == "cuda" else "gloo"),
                                rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (identity in a single process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a small Python object from rank `src` to every rank."""
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + W, rank + 2W, ... of a dataset: an evaluation shard without padding.

    Unlike DistributedSampler it repeats no sample, so counts summed over ranks are exact.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))

    def set_epoch(self, epoch: int) -> None:  # same order every epoch
        pass
