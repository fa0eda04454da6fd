"""collate_detection and build_dataloader: lists not stacks, seeded order, workers change nothing."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.loader import build_dataloader, collate_detection
from mrcnn_lite.data.transforms import build_transforms


class Ids(Dataset):
    """Stand-in dataset: item i is a tiny image and a target with image_id 1000 + i."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        return torch.zeros(3, 2 + i % 3, 4), {"image_id": 1000 + i}


class RandomDraws(Dataset):
    """Item i reports the numpy / random draws made in the process that loads it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        drawn = int(np.random.randint(1 << 30))  # noqa: NPY002 (the global state, on purpose)
        return torch.zeros(1), {"np": drawn, "py": random.random(), "worker": worker}


def epoch_ids(loader) -> list[int]:
    return [t["image_id"] for _, targets in loader for t in targets]


def test_collate_keeps_lists() -> None:
    batch = [Ids(5)[i] for i in (0, 1, 2)]
    images, targets = collate_detection(batch)
    assert isinstance(images, list) and isinstance(targets, list)
    assert [im.shape[1] for im in images] == [2, 3, 4]  # different sizes are not stacked
    assert all(a is b[0] for a, b in zip(images, batch, strict=True))
    assert [t["image_id"] for t in targets] == [1000, 1001, 1002]
    assert collate_detection([]) == ([], [])


def test_same_seed_same_order_different_seed_different_order() -> None:
    ds = Ids(50)
    first = epoch_ids(build_dataloader(ds, batch_size=4, train=True, seed=0))
    assert first == epoch_ids(build_dataloader(ds, batch_size=4, train=True, seed=0))
    assert first != epoch_ids(build_dataloader(ds, batch_size=4, train=True, seed=1))
    assert len(first) == 48 and len(set(first)) == 48  # drop_last in training: 12 full batches, no repeats
    assert first != sorted(first)
    loader = build_dataloader(ds, batch_size=4, train=True, seed=0)
    assert epoch_ids(loader) != epoch_ids(loader)  # a new shuffle each epoch, from the same seeded stream


def test_eval_keeps_order_and_every_item() -> None:
    loader = build_dataloader(Ids(10), batch_size=4, train=False)
    assert epoch_ids(loader) == list(range(1000, 1010))
    assert [len(images) for images, _ in loader] == [4, 4, 2]


def test_sampler_hook_replaces_shuffling() -> None:
    ds = Ids(9)
    loader = build_dataloader(ds, batch_size=3, train=True, sampler=SequentialSampler(ds))
    assert epoch_ids(loader) == list(range(1000, 1009))


@pytest.mark.realdata
def test_same_seed_same_order_on_real_coco(tiny_coco: Path) -> None:
    ds = CocoDetection(tiny_coco, "val2017", train=True)
    first = epoch_ids(build_dataloader(ds, batch_size=8, train=True, seed=3, drop_last=False))
    assert first == epoch_ids(build_dataloader(ds, batch_size=8, train=True, seed=3, drop_last=False))
    assert sorted(first) == ds.ids and first != ds.ids


@pytest.mark.realdata
def test_two_workers_give_the_same_eval_batches(tiny_coco: Path) -> None:
    ds = CocoDetection(
        tiny_coco, "val2017", transforms=build_transforms(train=False, min_size=96, max_size=160)
    )
    serial = list(build_dataloader(ds, batch_size=6, train=False, num_workers=0))
    loader = build_dataloader(ds, batch_size=6, train=False, num_workers=2)
    assert loader.persistent_workers
    parallel = list(loader)
    assert len(serial) == len(parallel) == 9
    for (images_a, targets_a), (images_b, targets_b) in zip(serial, parallel, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(images_a, images_b, strict=True))
        for a, b in zip(targets_a, targets_b, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]


def test_workers_seed_numpy_and_random_reproducibly() -> None:
    def draws(seed: int) -> list[dict]:
        loader = build_dataloader(RandomDraws(), batch_size=1, train=False, num_workers=2, seed=seed)
        return [targets[0] for _, targets in loader]

    first = draws(0)
    assert {d["worker"] for d in first} == {0, 1}
    assert first == draws(0)
    assert [d["np"] for d in first] != [d["np"] for d in draws(1)]
    by_worker = {w: [d["np"] for d in first if d["worker"] == w] for w in (0, 1)}
    assert by_worker[0] != by_worker[1]  # each worker has its own stream
