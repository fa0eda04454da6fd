"""DataLoader for detection: variable-size images stay a list; seeded, reproducible shuffling."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def collate_detection(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict]]:
    """``[(image, target), ...]`` -> ``([images], [targets])``.

    Images differ in size, so they are not stacked here; the model pads them
    into one batch tensor itself (as torchvision's ``GeneralizedRCNNTransform`` does).
    """
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed (base seed + worker id).

    torch already seeds its own generator per worker (v2 transforms draw from it);
    this covers code that uses numpy or the standard library.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (the legacy global state is what third-party code draws from)
    random.seed(seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader that shuffles (when ``train``) in an order fixed by ``seed``.

    ``drop_last`` defaults to ``train``: full batches in training, every image
    in evaluation. ``sampler`` replaces the built-in shuffling (e.g. a
    ``DistributedSampler`` later); the seeded generator then only seeds workers.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        drop_last=train if drop_last is None else drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        persistent_workers=num_workers > 0,
    )
