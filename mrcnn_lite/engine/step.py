"""One training step: the multi-task loss L = Lcls + Lbox + Lmask (He et al. 2017, §3), plus the RPN's,
checked for non-finite values before any update, back-propagated (mixed precision optional), clipped."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mrcnn_lite.engine.distributed import is_distributed
from mrcnn_lite.modeling.finite import NonFiniteError


def to_device(images: list, targets: list, device: torch.device) -> tuple[list, list]:
    """A batch's images and target tensors on ``device``, as plain tensors (no tv_tensors subclasses)."""
    images = [im.as_subclass(torch.Tensor).to(device) for im in images]
    targets = [
        {
            k: v.as_subclass(torch.Tensor).to(device) if isinstance(v, torch.Tensor) else v
            for k, v in t.items()
        }
        for t in targets
    ]
    return images, targets


def _check_losses(
    losses: dict[str, torch.Tensor], total: torch.Tensor, failed: NonFiniteError | None
) -> None:
    """Raise ``failed`` (the model's own error) or a :class:`NonFiniteError` naming the non-finite losses;
    under ``torch.distributed`` every rank raises when one rank does."""
    bad = ~torch.isfinite(total.detach()).reshape(1)  # the step's one host sync for the check
    if failed is not None:
        bad = torch.ones_like(bad)
    if is_distributed():  # every rank stops (not one, leaving the others waiting in backward's all-reduce)
        bad = bad.float()
        torch.distributed.all_reduce(bad)
    if not bad.any():
        return
    if failed is not None:
        raise failed
    where = " (on this rank or another)" if is_distributed() else ""
    values = {k: v.item() for k, v in losses.items()}
    terms = [k for k, v in values.items() if not np.isfinite(v)]
    term = ", ".join(terms) if terms else ("total loss" if not is_distributed() else "loss")
    raise NonFiniteError(term, f"the loss is not finite{where}: {values}")


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
    _check_losses(losses, total, failed)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return {**{k: v.detach().item() for k, v in losses.items()}, "total_loss": total.detach().item()}
