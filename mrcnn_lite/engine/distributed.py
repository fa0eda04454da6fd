"""Multi-process training and evaluation with ``torch.distributed`` (``torchrun --nproc_per_node=N``).

:func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group: NCCL when CUDA is available (each process
on GPU ``LOCAL_RANK``), gloo on the CPU. Without that environment (or with ``WORLD_SIZE=1``) it does
nothing and every helper answers as for one process, so single-process code paths are unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from mrcnn_lite.config import ConfigError


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; returns whether one is running.

    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. With NCCL the process's CUDA
    device is set to ``LOCAL_RANK``. A no-op (returning False) without ``WORLD_SIZE`` > 1.
    """
    if is_distributed():
        return True
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(
        backend=backend, init_method="env://", rank=int(os.environ["RANK"]), world_size=world
    )
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process); picklable objects."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (the same keys on every rank); unchanged in one process."""
    if not is_distributed():
        return values
    keys = list(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return dict(zip(keys, (t / get_world_size()).tolist(), strict=True))


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global ``train.images_per_batch``; a :class:`ConfigError` if not whole."""
    if batch_size % world_size:
        raise ConfigError(
            f"train.images_per_batch ({batch_size}) is the global batch and must be divisible by the "
            f"number of processes ({world_size})"
        )
    return batch_size // world_size


def shard_batches(order: list[int], batch_size: int, rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s part of a sequence of global batches: its contiguous slice of each batch.

    ``order`` is the one-process visiting order (whole batches of ``batch_size``); each rank takes
    ``batch_size // world_size`` images of every batch, so together the ranks see, iteration by
    iteration, exactly the batches one process would.
    """
    local = local_batch_size(batch_size, world_size)
    return [
        order[b + rank * local + j]
        for b in range(0, len(order) - batch_size + 1, batch_size)
        for j in range(local)
    ]


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
