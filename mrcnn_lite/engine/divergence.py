"""Divergence: stop a run at the first non-finite proposal, box, loss or weight, and never save one.

:func:`nonfinite_state` checks the weights, buffers and optimizer state before each checkpoint (the ranks
agree); :class:`TrainingDivergedError` carries one paragraph (:func:`divergence_message`) naming the
iteration, the term, the last good checkpoint and the usual remedies (a lower learning rate, a longer
warm-up, gradient clipping: the knobs of the schedule of He et al. 2017, §3.1 "Training").
"""

from __future__ import annotations

from pathlib import Path

import torch

from mrcnn_lite.config import Config
from mrcnn_lite.engine.distributed import is_distributed
from mrcnn_lite.engine.resume import LAST
from mrcnn_lite.modeling.finite import NonFiniteError, all_finite


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


def nonfinite_names(module: torch.nn.Module, show: int = 3) -> str:
    """``"2 of 120 tensors, e.g. rpn.head.conv.weight, ..."`` for an error message."""
    state = {k: v for k, v in module.state_dict().items() if v.is_floating_point()}
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    more = ", ..." if len(bad) > show else ""
    return f"{len(bad)} of {len(state)} tensors, e.g. {', '.join(bad[:show])}{more}" if bad else "all finite"


def check_finite_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, when: str) -> None:
    """Raise :class:`NonFiniteError` (its detail: the bad tensors, then ``when``) unless
    :func:`nonfinite_state` finds everything finite; every rank must call it."""
    bad = nonfinite_state(model, optimizer)
    if bad is not None:
        which = f"{nonfinite_names(model)}; " if bad == "model weights" else ""
        raise NonFiniteError(bad, f"{which}{when}")


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


def diverged(
    error: NonFiniteError,
    iteration: int,
    cfg: Config,
    checkpoint: Path | None,
    checkpoint_iteration: int,
    stop: int,
) -> TrainingDivergedError:
    """The :class:`TrainingDivergedError` for ``error`` met in ``iteration`` of a run stopping at ``stop``."""
    period = cfg.train.checkpoint_period
    due = min(-(-iteration // period) * period, stop)
    message = divergence_message(error, iteration, cfg, checkpoint, checkpoint_iteration, due)
    return TrainingDivergedError(message, error.term, iteration, checkpoint, checkpoint_iteration)
