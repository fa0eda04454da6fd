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
import json
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from tqdm.auto import tqdm

import mrcnn_lite
from mrcnn_lite.atomic import write_json, write_text
from mrcnn_lite.config import Config, to_dict
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.loader import build_dataloader
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from mrcnn_lite.engine.distributed import (
    all_gather_object,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
    local_batch_size,
    mean_over_ranks,
    shard_batches,
)
from mrcnn_lite.engine.schedule import build_optimizer, lr_at, set_lr
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError, all_finite
from mrcnn_lite.provenance import git_commit, seed_everything

LAST = "last_checkpoint"


class TrainingDivergedError(NonFiniteError):
    """Training stopped at the first non-finite proposal, box, loss or weight; the message is one paragraph
    naming the iteration, the term, the last good checkpoint and the usual remedies.

    ``iteration``: the (1-based) iteration that went wrong; ``term``: what was not finite (e.g. "rpn
    proposals", "loss_mask", "model weights"); ``checkpoint``: the last good checkpoint (None if the run
    wrote none) and ``checkpoint_iteration`` its iteration."""

    def __init__(
        self, message: str, term: str, iteration: int, checkpoint: Path | None, checkpoint_iteration: int
    ) -> None:
        FloatingPointError.__init__(self, message)
        self.term, self.detail = term, ""
        self.iteration, self.checkpoint, self.checkpoint_iteration = (
            iteration,
            checkpoint,
            checkpoint_iteration,
        )


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


def _to_device(images: list, targets: list, device: torch.device) -> tuple[list, list]:
    images = [im.as_subclass(torch.Tensor).to(device) for im in images]
    targets = [
        {
            k: v.as_subclass(torch.Tensor).to(device) if isinstance(v, torch.Tensor) else v
            for k, v in t.items()
        }
        for t in targets
    ]
    return images, targets


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    clip_grad_norm: float | None = None,
    amp: bool | None = None,
) -> dict[str, float]:
    """One optimizer step (SGD or AdamW, ``train.optimizer``) on the sum of the losses (the paper's
    multi-task loss L = Lcls + Lbox + Lmask, plus the RPN's, §3), gradients clipped to
    ``clip_grad_norm``. Returns each loss and ``total_loss`` as floats.

    Mixed precision (``amp``; default: ``scaler.is_enabled()``): on CUDA float16 autocast with the loss
    scaled by ``scaler``; on the CPU bfloat16 autocast, which has float32's exponent range and needs no
    scaling (``scaler`` disabled). The weights, the optimizer and the RoI operators stay float32.

    Raises :class:`~mrcnn_lite.modeling.finite.NonFiniteError` before any update when the model met
    non-finite proposals or boxes (its term, e.g. "rpn proposals") or a loss is not finite (the term names
    the losses, e.g. "loss_mask"). Under ``torch.distributed`` every rank raises when one rank does."""
    device_type = images[0].device.type
    amp = scaler.is_enabled() if amp is None else amp
    dtype = torch.bfloat16 if device_type == "cpu" else torch.float16
    failed: NonFiniteError | None = None
    try:
        with torch.autocast(device_type, dtype=dtype, enabled=amp):
            losses = model(images, targets)
    except NonFiniteError as e:
        if not is_distributed():
            raise
        failed, losses = e, {}  # tell the other ranks below, then raise
    total = sum(losses.values()) if losses else torch.zeros((), device=images[0].device)
    bad = ~torch.isfinite(total.detach()).reshape(1)  # the step's one host sync for the check
    if failed is not None:
        bad = torch.ones_like(bad)
    if is_distributed():  # every rank stops (not one, leaving the others waiting in backward's all-reduce)
        bad = bad.float()
        torch.distributed.all_reduce(bad)
    if bad.any():
        if failed is not None:
            raise failed
        where = " (on this rank or another)" if is_distributed() else ""
        values = {k: v.item() for k, v in losses.items()}
        terms = [k for k, v in values.items() if not np.isfinite(v)]
        term = ", ".join(terms) if terms else ("total loss" if not is_distributed() else "loss")
        raise NonFiniteError(term, f"the loss is not finite{where}: {values}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return {**{k: v.detach().item() for k, v in losses.items()}, "total_loss": total.detach().item()}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each dotted key whose value differs between two ``to_dict`` configs."""

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            out.update(
                {f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
            )
        return out

    a, b = flat(old), flat(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def nonfinite_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> str | None:
    """None when every floating-point value of the model's state dict (weights and buffers, e.g. BatchNorm
    statistics) and of the optimizer's state (momentum, Adam's moments) is finite, else which is not:
    "model weights" or "optimizer state". Under ``torch.distributed`` the ranks agree (a rank's verdict
    counts for all)."""
    weights = [t for t in model.state_dict().values() if t.is_floating_point()]
    moments = [
        v for st in (optimizer.state.values() if optimizer is not None else ()) for v in st.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]  # fmt: skip
    device = weights[0].device if weights else torch.device("cpu")
    flags = [
        all_finite(*ts).to(device) if ts else torch.ones((), dtype=torch.bool, device=device)
        for ts in (weights, moments)
    ]
    ok = torch.stack(flags).float()
    if is_distributed():
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    names = ("model weights", "optimizer state")
    return next((name for name, v in zip(names, ok.tolist(), strict=True) if v < 1), None)  # one host sync


def _nonfinite_names(module: torch.nn.Module, show: int = 3) -> str:
    """``"2 of 120 tensors, e.g. rpn.head.conv.weight, ..."`` for an error message."""
    state = {k: v for k, v in module.state_dict().items() if v.is_floating_point()}
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    more = ", ..." if len(bad) > show else ""
    return f"{len(bad)} of {len(state)} tensors, e.g. {', '.join(bad[:show])}{more}" if bad else "all finite"


def divergence_message(
    error: NonFiniteError,
    iteration: int,
    cfg: Config,
    checkpoint: Path | None,
    checkpoint_iteration: int,
    next_checkpoint: int,
) -> str:
    """The one-paragraph explanation of :class:`TrainingDivergedError`: where, what, what is kept, what to
    try (with the ``--set`` keys of :class:`~mrcnn_lite.config.TrainConfig`)."""
    t = cfg.train
    what = f"non-finite values (NaN or inf) in the {error.term}" + (
        f" ({error.detail})" if error.detail else ""
    )
    if checkpoint is not None:
        kept = (
            f"Nothing was saved from the diverged model: the last good checkpoint is {checkpoint} (iteration "
            f"{checkpoint_iteration}), and {checkpoint.parent / LAST} still names it."
        )
        restart = (
            "then start afresh, or continue from that checkpoint with --resume and the new --set options"
        )
    else:
        kept = (
            "Nothing was saved from the diverged model; the run wrote no checkpoint before it (the first "
            f"was due at iteration {next_checkpoint})."
        )
        restart = "then start the run again"
    clip = (
        f"--set train.clip_grad_norm={t.clip_grad_norm / 2:g}, now {t.clip_grad_norm:g}"
        if t.clip_grad_norm is not None
        else "--set train.clip_grad_norm=10, now off"
    )
    return (
        f"training diverged at iteration {iteration} of {t.max_iter}: {what}. {kept} The usual remedies: a "
        f"lower learning rate (--set train.base_lr={t.base_lr / 10:g}, now {t.base_lr:g}), a longer warm-up "
        f"(--set train.warmup_iters={max(2 * t.warmup_iters, 100)}, now {t.warmup_iters}) or gradient "
        f"clipping ({clip}); {restart}."
    )


def _resume_path(out: Path) -> Path:
    """The checkpoint ``out/last_checkpoint`` names, with an error naming both files when it is missing."""
    last = out / LAST
    name = last.read_text().strip()
    path = out / name
    if name and "/" not in name and path.is_file():
        return path
    found = sorted(p.name for p in out.glob("model_*.pth"))
    there = (
        f"the checkpoints there are {', '.join(found)}" if found else "there are no model_*.pth files there"
    )
    raise CheckpointError(
        f"cannot resume: {last} names {name!r}, which is not a checkpoint file in {out}; {there}. Write the "
        "name of the one to resume from into last_checkpoint, or run without --resume to start afresh."
    )


def _trim_metrics(path: Path, iteration: int) -> None:
    """Drop log lines after ``iteration`` (written by the interrupted run after its last checkpoint), and a
    line the interruption cut short (not JSON); the file is replaced atomically."""

    def up_to(line: str) -> bool:
        try:
            return json.loads(line)["iteration"] <= iteration
        except (json.JSONDecodeError, KeyError, TypeError):
            return False

    if path.is_file():
        kept = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if up_to(ln)]
        write_text(path, "".join(ln + "\n" for ln in kept))


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
    t = cfg.train
    stop = t.max_iter if max_iter is None else min(max_iter, t.max_iter)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_amp = t.amp and device.type == "cuda"  # float16 with loss scaling; the CPU's bfloat16 needs none

    seed_everything(cfg.seed)
    d = cfg.data
    dataset = CocoDetection(
        d.root,
        d.train_split,
        train=True,
        transforms=build_transforms(True, d.min_size, d.max_size, d.flip_prob),
    )
    rank, world = get_rank(), get_world_size()
    main = is_main_process()
    local_batch_size(t.images_per_batch, world)  # a global batch the ranks can share, before any output
    model = build_model(cfg, len(dataset.class_names))
    if cfg.model.frozen_bn and cfg.model.weights_path is None and main:
        warnings.warn(
            f"{cfg.name}: model.frozen_bn=true but model.weights_path is not set, so the trunk starts from "
            "random weights with frozen (identity) BatchNorm; the COCO presets expect ImageNet weights: "
            "--set model.weights_path=FILE (see notebook 09)",
            stacklevel=2,
        )
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN over the global batch
    model = model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if rank > 0:
        seed_everything(cfg.seed + rank)  # the same initial weights everywhere, each rank's own random draws

    start = 0
    last = out / LAST
    if resume and last.is_file():
        path = _resume_path(out)
        state = load_checkpoint(path, model, optimizer)
        start = state["iteration"]
        changed = config_changes(state["config"], to_dict(cfg))
        if changed and main:
            warnings.warn(f"resuming {path} with a changed config: {'; '.join(changed)}", stacklevel=2)
        per_rank = state.get("rng_per_rank")
        set_rng_state(per_rank[rank] if per_rank is not None and len(per_rank) == world else state["rng"])
        if main:
            _trim_metrics(out / "metrics.jsonl", start)
    elif main and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # a fresh run replaces the old log
    net: torch.nn.Module = model
    if world > 1:
        cuda = device.type == "cuda"
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else None
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids,
            find_unused_parameters=False,  # every head runs each step (the mask head on 0 RoIs too)
        )  # fmt: skip

    extra = {"class_names": dataset.class_names, "label_to_cat_id": dataset.label_to_cat_id}
    if main:
        write_json(out / "run.json", {
            "config": to_dict(cfg), "seed": cfg.seed, "class_names": dataset.class_names,
            "label_to_cat_id": {str(k): v for k, v in dataset.label_to_cat_id.items()},
            "version": mrcnn_lite.__version__, "torch": torch.__version__, "git_commit": git_commit(),
            "start_time": datetime.now(UTC).isoformat(timespec="seconds"), "resumed_from": start,
            "device": str(device), "world_size": world,
        })  # fmt: skip

    def checkpoint(name: str, iteration: int) -> Path:
        """Rank 0 writes (every rank must call it: the RNG states are gathered); never a non-finite model."""
        bad = nonfinite_state(model, optimizer)
        if bad is not None:
            which = f"{_nonfinite_names(model)}; " if bad == "model weights" else ""
            raise NonFiniteError(
                bad, f"{which}after the update of iteration {iteration}; {name} was not written"
            )
        path = out / name
        more = {"rng_per_rank": all_gather_object(get_rng_state())} if world > 1 else {}
        if main:
            save_checkpoint(path, model, optimizer, iteration, get_rng_state(), cfg, **extra, **more)
            write_text(last, name + "\n")
        return path

    logged: dict[str, float] = {}
    ckpt_path = out / last.read_text().strip() if last.is_file() and start > 0 else None
    ckpt_iter = start
    data = batches(dataset, cfg, start, rank, world)
    # mininterval: a redraw every 2 s at most. In Jupyter each redraw is a few widget messages, and a kernel
    # flooding its output channel past ZMQ's high-water mark (1000) drops messages, which made nbval and
    # papermill miss the end of a long training cell.
    bar = tqdm(
        range(start, stop), initial=start, total=t.max_iter, disable=not (progress and main), desc=cfg.name,
        mininterval=2.0,
    )  # fmt: skip
    tic = time.perf_counter()
    done = start
    with (
        (out / "metrics.jsonl").open("a") if main else contextlib.nullcontext() as log,
        contextlib.closing(bar),
    ):
        try:
            for it in bar:
                done = it + 1
                lr = lr_at(it, cfg)
                set_lr(optimizer, lr)
                values = train_step(
                    net, optimizer, scaler, *_to_device(*next(data), device), t.clip_grad_norm, amp=t.amp
                )
                values = mean_over_ranks(values)
                bar.set_postfix(
                    {k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items()}, refresh=False
                )
                if done % t.log_period == 0:
                    logged = {"iteration": done, "lr": lr, **values, "time": time.perf_counter() - tic}
                    if log is not None:
                        log.write(json.dumps(logged) + "\n")
                        log.flush()
                tic = time.perf_counter()
                if done == t.max_iter:
                    ckpt_path, ckpt_iter = checkpoint("model_final.pth", done), done
                elif done % t.checkpoint_period == 0 or done == stop:
                    ckpt_path, ckpt_iter = checkpoint(f"model_{done:07d}.pth", done), done
        except NonFiniteError as e:
            due = min(-(-done // t.checkpoint_period) * t.checkpoint_period, stop)
            message = divergence_message(e, done, cfg, ckpt_path, ckpt_iter, due)
            raise TrainingDivergedError(message, e.term, done, ckpt_path, ckpt_iter) from e
    if is_distributed():
        torch.distributed.barrier()  # rank 0's files are complete when train returns on any rank
    return {"iteration": max(start, stop), "checkpoint": ckpt_path, "losses": logged, "model": model}
