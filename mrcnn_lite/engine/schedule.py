"""SGD with momentum and the step learning-rate schedule with linear warm-up (He et al. 2017, §3.1).

The paper trains with SGD, momentum 0.9, weight decay 1e-4, lr 0.02 for 16 images per batch, for 160k
iterations with the lr multiplied by 0.1 at 120k. The lr for another batch size follows the linear scaling
rule (Goyal et al. 2017, :func:`mrcnn_lite.config.scaled_lr`), and training starts with Goyal et al.'s
linear warm-up: the lr grows linearly from ``warmup_factor * lr`` at iteration 0 to ``lr`` at
``warmup_iters`` (Detectron's "linear" warm-up).
"""

from __future__ import annotations

import math
from bisect import bisect_right

import torch
from torch import nn

from mrcnn_lite.config import Config, TrainConfig, scaled_lr


def lr_at(iteration: int, cfg: Config | TrainConfig) -> float:
    """The learning rate for (0-based) ``iteration``: warm-up, then x0.1 at each of ``train.steps``
    (``lr_schedule="step"``, the paper's) or a half cosine from ``lr`` to 0 at ``max_iter`` ("cosine").

    ``lr * warmup(it) * 0.1 ** (number of steps <= it)`` with ``warmup(it) = f + (1 - f) * it / W`` for
    ``it < W = warmup_iters`` (``f = warmup_factor``) and 1 afterwards; ``lr = scaled_lr(cfg)``.
    """
    full = cfg if isinstance(cfg, Config) else Config(train=cfg)
    t = full.train
    lr = scaled_lr(full)
    if iteration < t.warmup_iters:
        alpha = iteration / t.warmup_iters
        lr *= t.warmup_factor * (1 - alpha) + alpha
    if t.lr_schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * min(iteration, t.max_iter) / t.max_iter))
    return lr * 0.1 ** bisect_right(list(t.steps), iteration)


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters, with ``momentum`` and ``weight_decay`` from ``cfg.train``.

    ``train.optimizer="sgd"`` (the paper's): SGD with momentum 0.9 and weight decay 1e-4. Weight decay
    applies to every trainable parameter, norm scales and biases included, as in the paper's Detectron setup
    (one ``WEIGHT_DECAY`` for all). ``"adamw"``: AdamW with ``betas=train.adam_betas`` (``momentum`` as
    beta1, 0.999) and decoupled weight decay ``weight_decay``. The lr set here is iteration 0's; the
    trainer sets each iteration's with :func:`lr_at`.
    """
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr_at(0, cfg), betas=t.adam_betas, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=lr_at(0, cfg), momentum=t.momentum, weight_decay=t.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
