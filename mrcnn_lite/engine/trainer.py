"""The training loop (He et al. 2017, §3.1 "Training"): deterministic, logged, checkpointed, resumable.

``train(cfg, out_dir)`` writes into ``out_dir``:

- ``run.json``: the resolved config (``to_dict``), seed, class names, library and torch versions, the git
  commit of the checkout ("unknown" outside one) and the start time;
- ``metrics.jsonl``: one JSON line every ``train.log_period`` iterations (iteration, lr, each loss, total
  loss, and the seconds that iteration took, data loading included);
- ``model_{iter:07d}.pth`` every ``train.checkpoint_period`` iterations, ``model_final.pth`` at
  ``train.max_iter``, and ``last_checkpoint`` holding the newest one's file name.

Determinism: Python, numpy and torch are seeded from ``cfg.seed``; epoch ``e`` visits the images in a
permutation drawn from ``seed + e``, so the batch of every iteration is a function of the seed and the
iteration alone. ``resume=True`` restores the model, optimizer, iteration and all RNG states from the
last checkpoint and skips the batches already seen, so an interrupted run resumed to the end gives the
same parameters, bit for bit, as an uninterrupted one (on the CPU, with ``data.num_workers=0``).

Several processes (``torchrun --nproc_per_node=N``, after :func:`~mrcnn_lite.engine.distributed.
init_distributed`): ``train.images_per_batch`` stays the global batch; each rank takes its contiguous
``images_per_batch / N`` images of every global batch (the one-process order above, so the N ranks see
exactly the images of a one-process run, iteration by iteration). The model runs in
``DistributedDataParallel``, which averages the gradients over the ranks. Only rank 0 writes ``run.json``,
``metrics.jsonl`` (losses averaged over the ranks), the checkpoints and the progress bar; every rank loads
the checkpoint on resume. Checkpoints hold every rank's RNG state (``rng_per_rank``), so a resume with
the same number of processes continues each rank's random stream.

Differences from one process with the same global batch, all small: (1) each loss is normalised per rank
(e.g. the mask loss is a mean over the rank's positive RoIs), so the averaged loss is a mean of per-rank
means, not one mean over the whole batch; (2) the random draws (flips, RPN and RoI sampling) come from
each rank's own generator (rank r > 0 reseeds with ``seed + r`` after building the model); (3) BatchNorm
normalises with each rank's own batch statistics: on CUDA the BN layers are converted to
``SyncBatchNorm`` (statistics over the global batch, as in one process); on the CPU (gloo) SyncBatchNorm
is not supported and BN stays per rank (``model.frozen_bn=true`` has no batch statistics at all); (4) one
process pads its batch to the largest image, a rank only its own images, which changes the features near
the borders and the anchors (those over the padding) when the images differ in size.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import mrcnn_lite
from mrcnn_lite.atomic import write_json, write_text
from mrcnn_lite.config import Config, TrainConfig, to_dict
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.batches import batches
from mrcnn_lite.engine.checkpoint import get_rng_state, save_checkpoint
from mrcnn_lite.engine.distributed import (
    all_gather_object,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
    local_batch_size,
    mean_over_ranks,
)
from mrcnn_lite.engine.divergence import (
    TrainingDivergedError,
    check_finite_state,
    diverged,
    divergence_message,
    nonfinite_state,
)
from mrcnn_lite.engine.metrics_log import METRICS, MetricsLog, prepare_log
from mrcnn_lite.engine.resume import LAST, config_changes, restore
from mrcnn_lite.engine.schedule import build_optimizer, lr_at, set_lr
from mrcnn_lite.engine.step import to_device, train_step
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError
from mrcnn_lite.provenance import git_commit, seed_everything

# Names other modules, notebooks and tests import from here (they moved to the modules above).
__all__ = [
    "LAST",
    "TrainingDivergedError",
    "batches",
    "config_changes",
    "divergence_message",
    "git_commit",
    "nonfinite_state",
    "seed_everything",
    "train",
    "train_step",
]


@dataclass
class _Run:
    """What the loop and the checkpoints of one :func:`train` call share."""

    cfg: Config
    out: Path
    device: torch.device
    model: torch.nn.Module  # unwrapped (the checkpoints' state dicts)
    net: torch.nn.Module  # ``model``, or ``model`` in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    extra: dict[str, Any]  # saved in every checkpoint: class names, category ids
    world: int
    main: bool


def _training_set(cfg: Config) -> CocoDetection:
    d = cfg.data
    return CocoDetection(
        d.root,
        d.train_split,
        train=True,
        transforms=build_transforms(True, d.min_size, d.max_size, d.flip_prob),
    )


def _model(
    cfg: Config, num_classes: int, device: torch.device, world: int, main: bool
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """The model in training mode on ``device`` (SyncBatchNorm on several GPUs), its optimizer, its scaler."""
    model = build_model(cfg, num_classes)
    if cfg.model.frozen_bn and cfg.model.weights_path is None and main:
        warnings.warn(
            f"{cfg.name}: model.frozen_bn=true but model.weights_path is not set, so the trunk starts from "
            "random weights with frozen (identity) BatchNorm; the COCO presets expect ImageNet weights: "
            "--set model.weights_path=FILE (see notebook 09)",
            stacklevel=3,  # train's caller
        )
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN over the global batch
    model = model.to(device).train()
    use_amp = cfg.train.amp and device.type == "cuda"  # float16 with loss scaling; CPU bfloat16 needs none
    return model, build_optimizer(model, cfg), torch.amp.GradScaler("cuda", enabled=use_amp)


def _distributed(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when there are several processes, else ``model``."""
    if world == 1:
        return model
    cuda = device.type == "cuda"
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids,
        find_unused_parameters=False,  # every head runs each step (the mask head on 0 RoIs too)
    )  # fmt: skip


def _write_run_record(
    out: Path, cfg: Config, dataset: CocoDetection, start: int, device: torch.device, world: int
) -> None:
    """``run.json``: the resolved config, seed, class names, versions, git commit, start time, device."""
    write_json(out / "run.json", {
        "config": to_dict(cfg), "seed": cfg.seed, "class_names": dataset.class_names,
        "label_to_cat_id": {str(k): v for k, v in dataset.label_to_cat_id.items()},
        "version": mrcnn_lite.__version__, "torch": torch.__version__, "git_commit": git_commit(),
        "start_time": datetime.now(UTC).isoformat(timespec="seconds"), "resumed_from": start,
        "device": str(device), "world_size": world,
    })  # fmt: skip


def _checkpoint(run: _Run, name: str, iteration: int) -> Path:
    """Rank 0 writes (every rank must call it: the RNG states are gathered); never a non-finite model."""
    when = f"after the update of iteration {iteration}; {name} was not written"
    check_finite_state(run.model, run.optimizer, when)
    path = run.out / name
    more = {"rng_per_rank": all_gather_object(get_rng_state())} if run.world > 1 else {}
    if run.main:
        rng = get_rng_state()
        save_checkpoint(path, run.model, run.optimizer, iteration, rng, run.cfg, **run.extra, **more)
        write_text(run.out / LAST, name + "\n")
    return path


def _checkpoint_due(done: int, stop: int, t: TrainConfig) -> str | None:
    """The checkpoint file to write after iteration ``done``, if one is due."""
    if done == t.max_iter:
        return "model_final.pth"
    if done % t.checkpoint_period == 0 or done == stop:
        return f"model_{done:07d}.pth"
    return None


def _progress_bar(cfg: Config, start: int, stop: int, enabled: bool) -> tqdm:
    # mininterval: a redraw every 2 s at most. In Jupyter each redraw is a few widget messages, and a kernel
    # flooding its output channel past ZMQ's high-water mark (1000) drops messages, which made nbval and
    # papermill miss the end of a long training cell.
    return tqdm(
        range(start, stop), initial=start, total=cfg.train.max_iter, disable=not enabled, desc=cfg.name,
        mininterval=2.0,
    )  # fmt: skip


def _loop(
    run: _Run, data: Iterator[tuple[list, list]], start: int, stop: int, progress: bool
) -> tuple[dict[str, float], Path | None]:
    """Iterations ``start`` to ``stop``: step, log, checkpoint. Returns the last logged values and the last
    checkpoint; a non-finite value raises :class:`TrainingDivergedError`."""
    t = run.cfg.train
    last = run.out / LAST
    ckpt_path = run.out / last.read_text().strip() if last.is_file() and start > 0 else None
    ckpt_iter, done, logged = start, start, {}
    bar = _progress_bar(run.cfg, start, stop, progress and run.main)
    tic = time.perf_counter()
    with MetricsLog(run.out / METRICS, run.main) as log, contextlib.closing(bar):
        try:
            for it in bar:
                done = it + 1
                lr = lr_at(it, run.cfg)
                set_lr(run.optimizer, lr)
                batch = to_device(*next(data), run.device)
                values = train_step(run.net, run.optimizer, run.scaler, *batch, t.clip_grad_norm, amp=t.amp)
                values = mean_over_ranks(values)
                shown = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items()}
                bar.set_postfix(shown, refresh=False)
                if done % t.log_period == 0:
                    logged = {"iteration": done, "lr": lr, **values, "time": time.perf_counter() - tic}
                    log.write(logged)
                tic = time.perf_counter()
                name = _checkpoint_due(done, stop, t)
                if name is not None:
                    ckpt_path, ckpt_iter = _checkpoint(run, name, done), done
        except NonFiniteError as e:
            raise diverged(e, done, run.cfg, ckpt_path, ckpt_iter, stop) from e
    return logged, ckpt_path


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    max_iter: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir``; returns ``{"iteration", "checkpoint", "losses"}`` (last logged,
    averaged over the ranks) and ``"model"`` (the trained module, unwrapped from DDP).

    ``max_iter`` stops the loop early at that iteration (a checkpoint is saved there) while the schedule
    stays ``cfg.train.max_iter``'s: ``train(cfg, out, max_iter=3)`` then ``train(cfg, out, resume=True)``
    is an interrupted run, continued. ``resume=True`` without a checkpoint in ``out_dir`` starts afresh.
    ``device`` defaults to CUDA when available (CUDA kernels with atomic adds, e.g. RoIAlign's backward,
    are not bit-reproducible; the CPU is).

    A diverging run stops at the first non-finite proposal, box, loss or weight with a
    :class:`TrainingDivergedError` (one paragraph: the iteration, the term, the last good checkpoint,
    the remedies). A checkpoint is only written when every weight and optimizer value is finite, so
    ``last_checkpoint`` keeps naming the last good one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stop = cfg.train.max_iter if max_iter is None else min(max_iter, cfg.train.max_iter)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg.seed)
    dataset = _training_set(cfg)
    rank, world, main = get_rank(), get_world_size(), is_main_process()
    local_batch_size(cfg.train.images_per_batch, world)  # a global batch the ranks share, before any output
    model, optimizer, scaler = _model(cfg, len(dataset.class_names), device, world, main)
    if rank > 0:
        seed_everything(cfg.seed + rank)  # the same initial weights everywhere, each rank's own random draws
    resumed = resume and (out / LAST).is_file()
    start = restore(out, model, optimizer, cfg, rank, world, warn=main, stacklevel=2) if resumed else 0
    if main:
        prepare_log(out / METRICS, start if resumed else None)
    net = _distributed(model, device, world)
    extra = {"class_names": dataset.class_names, "label_to_cat_id": dataset.label_to_cat_id}
    if main:
        _write_run_record(out, cfg, dataset, start, device, world)
    run = _Run(cfg, out, device, model, net, optimizer, scaler, extra, world, main)
    logged, ckpt_path = _loop(run, batches(dataset, cfg, start, rank, world), start, stop, progress)
    if is_distributed():
        torch.distributed.barrier()  # rank 0's files are complete when train returns on any rank
    return {"iteration": max(start, stop), "checkpoint": ckpt_path, "losses": logged, "model": model}
