"""Two gloo processes on the CPU (``torch.distributed``): DDP training and sharded evaluation.

One ``torch.multiprocessing.spawn`` of 2 ranks trains the tiny config for 3 iterations with a global batch
of 2 (one image per rank), then evaluates the result on shapes_small's val images split between the ranks.
Checked against one process: the same images per iteration, the same rank-averaged losses, parameters
identical on both ranks, files written by rank 0 only, and the gathered evaluation equal to a one-process
evaluation. Also: a resumed 2-rank run is bit-exact, ``torchrun -m mrcnn_lite train`` works, and a NaN loss
on one rank stops both.

The training images are square (192 x 192, shapes generated like shapes_small otherwise): one process pads
a batch to its largest image, so with images of different sizes its features near the borders and its
anchors (padding included) differ from one image alone, and the box losses move by up to ~30%.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mrcnn_lite.config import Config, ConfigError, apply_overrides, get_config
from mrcnn_lite.data import shapes, shapes_image
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine import evaluate_model, predict_dataset, train
from mrcnn_lite.engine.distributed import cleanup, init_distributed, shard_batches
from mrcnn_lite.engine.inference import stats_to_dict
from mrcnn_lite.engine.trainer import batches, train_step
from mrcnn_lite.modeling.build import build_model

# The equality config: frozen BN (no batch statistics, which gloo cannot synchronise), no flips, and
# samplers that keep every candidate (RPN: all labelled anchors; RoI heads: all proposals, at most 32 per
# image), so no random draw changes what either run computes.
TINY = [
    "model.width=8",
    "model.frozen_bn=true",
    "train.max_iter=3",
    "train.checkpoint_period=2",
    "train.log_period=1",
    "data.min_size=128",
    "data.max_size=160",
    "data.flip_prob=0",
    "train.images_per_batch=2",
    "model.rpn_batch_size_per_image=100000",
    "model.rpn_post_nms_top_n_train=32",
    "model.roi_batch_size_per_image=100000",
    "model.detections_per_image=10",
]
# The resume check wants random draws (sampled anchors and RoIs, flips) that each rank must restore.
SAMPLED = ["model.rpn_batch_size_per_image=64", "model.roi_batch_size_per_image=8"]


def tiny_config(root: Path) -> Config:
    return get_config("classroom_c4", [*TINY, f"data.root={root}"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: Config, out: Path, shared: Path, val_root: Path) -> None:
    """One rank: train into ``out``, save its parameters, evaluate sharded; rank 0 saves the stats."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )  # fmt: skip
    torch.set_num_threads(1)
    assert init_distributed()
    try:
        result = train(cfg, out, progress=False, device="cpu")
        model = result["model"]
        torch.save(model.state_dict(), shared / f"params_rank{rank}.pth")
        # with random draws (flips, anchor and RoI sampling): uninterrupted, and stopped at 2 then resumed
        rand = apply_overrides(cfg, ["data.flip_prob=0.5", *SAMPLED])
        full = train(rand, out.with_name(out.name + "_rand"), progress=False, device="cpu")["model"]
        torch.save(full.state_dict(), shared / f"rand_rank{rank}.pth")
        resumed = out.with_name(out.name + "_resumed")
        train(rand, resumed, max_iter=2, progress=False, device="cpu")
        again = train(rand, resumed, resume=True, progress=False, device="cpu")["model"]
        torch.save(again.state_dict(), shared / f"resumed_rank{rank}.pth")
        d = cfg.data
        val = CocoDetection(val_root, d.val_split, transforms=build_transforms(False, d.min_size, d.max_size))
        metrics = evaluate_model(model, val)
        results, _ = predict_dataset(model, val)  # gathered on every rank
        (shared / f"results_rank{rank}.json").write_text(json.dumps(results))
        if rank == 0:
            (shared / "eval.json").write_text(json.dumps(stats_to_dict(metrics)))
        else:
            assert set(metrics) == {"timing"}
    finally:
        cleanup()


@pytest.fixture(scope="module")
def square_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train and 2 val shapes images, all 192 x 192."""
    out = tmp_path_factory.mktemp("square_shapes")
    with pytest.MonkeyPatch.context() as mpatch:  # where make_image reads it (data/shapes_image.py)
        mpatch.setattr(shapes_image, "IMAGE_SIZE_RANGE", (192, 192))
        shapes.generate(out, seed=0, num_train=6, num_val=2)
    sizes = {(im["width"], im["height"]) for split in ("train2017", "val2017")
             for im in json.loads((out / "annotations" / f"instances_{split}.json").read_text())["images"]}
    assert sizes == {(192, 192)}, f"the size patch did not reach the generator: {sizes}"  # fmt: skip
    return out


@pytest.fixture(scope="module")
def runs(square_shapes: Path, shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cfg = tiny_config(square_shapes)
    two, one, shared = (tmp_path_factory.mktemp(n) for n in ("two", "one", "shared"))
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the spawned ranks
        mp.spawn(_worker, args=(2, free_port(), cfg, two, shared, shapes_small), nprocs=2, join=True)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, one, progress=False, device="cpu")
    finally:
        torch.set_num_threads(n)
    return {"cfg": cfg, "two": two, "one": one, "shared": shared}


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_parameters_identical_on_both_ranks(runs: dict) -> None:
    a = torch.load(runs["shared"] / "params_rank0.pth", weights_only=True)
    b = torch.load(runs["shared"] / "params_rank1.pth", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    final = torch.load(runs["two"] / "model_final.pth", weights_only=True)
    assert all(torch.equal(final["model"][k], a[k]) for k in a)
    assert len(final["rng_per_rank"]) == 2


def test_resumed_run_equals_uninterrupted_run(runs: dict) -> None:
    """Each rank restores its own RNG state (``rng_per_rank``): resuming on 2 ranks is bit-exact."""
    for rank in (0, 1):
        a = torch.load(runs["shared"] / f"rand_rank{rank}.pth", weights_only=True)
        b = torch.load(runs["shared"] / f"resumed_rank{rank}.pth", weights_only=True)
        for k in a:
            assert torch.equal(a[k], b[k]), (rank, k)


def test_only_rank0_writes(runs: dict) -> None:
    assert sorted(p.name for p in runs["two"].iterdir()) == [
        "last_checkpoint", "metrics.jsonl", "model_0000002.pth", "model_final.pth", "run.json"
    ]  # fmt: skip
    assert [x["iteration"] for x in metrics(runs["two"])] == [1, 2, 3]  # one line each, not two
    assert json.loads((runs["two"] / "run.json").read_text())["world_size"] == 2


# Relative tolerances. Both runs compute the same per-image terms (same weights at iteration 0, same images,
# no random draws); they differ in normalisation only: each rank's loss is a mean over its own image's
# samples and DDP averages the two, whereas one process takes one mean over both images' samples. For the
# objectness, classification and mask losses (means of per-sample terms of similar size over per-image
# counts within a few percent of each other) that moves them by < 5e-4 (measured); 2e-3 leaves room for
# later iterations, whose weights differ by as much. The box losses are sums over the positives divided by
# all samples, and the images' positive counts differ several-fold: a mean of two ratios vs one ratio of
# sums, measured up to 6% (they are also small: ~1% of the total). Total: measured < 7e-3.
RTOL = {"loss_rpn_objectness": 2e-3, "loss_cls": 2e-3, "loss_mask": 2e-3, "loss_rpn_box": 0.15,
        "loss_box": 0.15, "total_loss": 2e-2}  # fmt: skip


def test_losses_match_one_process_with_the_same_global_batch(runs: dict) -> None:
    two, one = metrics(runs["two"]), metrics(runs["one"])
    assert len(two) == len(one) == 3
    for i, (a, b) in enumerate(zip(two, one, strict=True)):
        assert a["lr"] == b["lr"]
        for k, rtol in RTOL.items():
            assert a[k] == pytest.approx(b[k], rel=rtol), (i, k, a[k], b[k])


def test_gathered_evaluation_equals_one_process(runs: dict, shapes_small: Path) -> None:
    """shapes_small's 6 val images, 3 per rank; all images evaluated, as one process evaluates them."""
    cfg = runs["cfg"]
    d = cfg.data
    val = CocoDetection(shapes_small, d.val_split, transforms=build_transforms(False, d.min_size, d.max_size))
    model = build_model(cfg, len(val.class_names))
    model.load_state_dict(torch.load(runs["two"] / "model_final.pth", weights_only=True)["model"])
    results, _ = predict_dataset(model.eval(), val)
    assert len({r["image_id"] for r in results}) == len(val) == 6  # every image has detections
    for rank in (0, 1):  # the same results, in the same order, to float precision
        gathered = json.loads((runs["shared"] / f"results_rank{rank}.json").read_text())
        assert [(r["image_id"], r["category_id"]) for r in gathered] == [
            (r["image_id"], r["category_id"]) for r in results
        ]
        for r, e in zip(gathered, results, strict=True):
            assert r["bbox"] == pytest.approx(e["bbox"]) and r["score"] == pytest.approx(e["score"])
            assert r["segmentation"] == e["segmentation"]
    expected = stats_to_dict(evaluate_model(model, val))
    got = json.loads((runs["shared"] / "eval.json").read_text())
    assert got.keys() == expected.keys() == {"bbox", "segm", "timing"}
    for kind in ("bbox", "segm"):
        assert got[kind] == pytest.approx(expected[kind], abs=1e-9), kind


def test_each_rank_takes_its_slice_of_the_one_process_batches(shapes_small: Path) -> None:
    """Global batch 4 on 2 ranks: rank 0's 2 images then rank 1's are the one-process batch."""
    cfg = get_config("classroom_c4", [*TINY, "train.images_per_batch=4", f"data.root={shapes_small}"])
    ds = CocoDetection(shapes_small, "train2017", train=True)

    def ids(rank: int, world: int, start: int) -> list[tuple[int, ...]]:
        it = batches(ds, cfg, start, rank, world)
        return [tuple(t["image_id"] for t in next(it)[1]) for _ in range(5)]

    for start in (0, 1, 3):
        whole = ids(0, 1, start)
        r0, r1 = ids(0, 2, start), ids(1, 2, start)
        assert [a + b for a, b in zip(r0, r1, strict=True)] == whole
    assert shard_batches(list(range(8)), 4, 1, 2) == [2, 3, 6, 7]
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        shard_batches(list(range(6)), 3, 0, 2)


def test_torchrun_cli(square_shapes: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2 -m mrcnn_lite train``: rank 0 prints and writes; an indivisible global
    batch is a user error on every rank."""
    import subprocess
    import sys

    def torchrun(*args: str) -> subprocess.CompletedProcess:
        sets = [a for kv in [*TINY, f"data.root={square_shapes}", "train.max_iter=1"] for a in ("--set", kv)]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "-m", "mrcnn_lite", "train", "--config", "classroom_c4",
               *sets, "--quiet", *args]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    done = torchrun("--out", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to iteration 1") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "last_checkpoint", "metrics.jsonl", "model_final.pth", "run.json"
    ]  # fmt: skip
    bad = torchrun("--out", "bad", "--set", "train.images_per_batch=3")
    assert bad.returncode != 0
    assert "must be divisible by the number of processes (2)" in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        return {"loss": (self.w * images[0]).sum()}


def _nan_worker(rank: int, port: int, shared: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    init_distributed()
    try:
        net = torch.nn.parallel.DistributedDataParallel(_Toy())
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        image = torch.tensor([1.0, float("nan") if rank == 1 else 2.0])
        try:
            train_step(net, opt, scaler, [image], [{}])
        except FloatingPointError as e:
            (shared / f"nan_rank{rank}.txt").write_text(str(e))
    finally:
        cleanup()


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """Rank 1's loss is NaN: both ranks raise (rank 0 would otherwise wait in backward's all-reduce)."""
    ctx = mp.spawn(_nan_worker, args=(free_port(), tmp_path), nprocs=2, join=False)
    deadline = time.monotonic() + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the ranks hang after a non-finite loss on one of them")
    for rank in (0, 1):
        assert (
            "the loss is not finite (on this rank or another)"
            in (tmp_path / f"nan_rank{rank}.txt").read_text()
        )
