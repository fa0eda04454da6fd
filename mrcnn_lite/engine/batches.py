"""Training batches (He et al. 2017, §3.1 "Training"): a function of the seed and the iteration alone.

Epoch ``e`` visits the images in a permutation drawn from ``seed + e``, so a resumed run skips exactly the
batches already seen; under ``torch.distributed`` each rank takes its contiguous share of every global
batch (:func:`~mrcnn_lite.engine.distributed.shard_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from mrcnn_lite.config import Config
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.loader import build_dataloader
from mrcnn_lite.engine.distributed import local_batch_size, shard_batches


class _Indices(Sampler[int]):
    """A fixed sequence of dataset indices."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def batches(
    dataset: CocoDetection, cfg: Config, start_iter: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[list, list]]:
    """Training batches from iteration ``start_iter`` on, forever; epoch ``e`` shuffles with ``seed + e``.

    With ``world_size`` > 1, rank ``rank``'s slice of each global batch (:func:`shard_batches`)."""
    bs = cfg.train.images_per_batch
    per_epoch = len(dataset) // bs
    if per_epoch == 0:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than one batch of {bs}")
    epoch, skip = divmod(start_iter, per_epoch)
    while True:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        order = order[: per_epoch * bs].tolist()[skip * bs :]
        if world_size > 1:
            order = shard_batches(order, bs, rank, world_size)
        loader = build_dataloader(
            dataset, local_batch_size(bs, world_size), train=True, num_workers=cfg.data.num_workers,
            seed=cfg.seed + epoch + 1000 * rank, sampler=_Indices(order),
        )  # fmt: skip
        yield from loader
        epoch, skip = epoch + 1, 0
