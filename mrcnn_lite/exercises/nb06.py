"""Checks for notebook 06's exercises (training): the learning-rate schedule, the losses of a model that
has learned nothing yet, and gradient-norm clipping.

Each ``check_*`` builds its own inputs, compares the student's function with the library
(:func:`~mrcnn_lite.engine.schedule.lr_at`, :mod:`~mrcnn_lite.modeling.losses` and a freshly built model,
``torch.nn.utils.clip_grad_norm_``), raises :class:`~mrcnn_lite.exercises.ExerciseError` with a hint when
they differ, and prints one line when they agree.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mrcnn_lite.exercises import ExerciseError, call_student, check_close, passed

__all__ = ["check_chance_losses", "check_clip_gradients", "check_lr_schedule"]

# (label, base_lr, warmup_iters, warmup_factor, steps, max_iter): the classroom run, the paper's (sampled),
# two steps, no warm-up, and a step that falls inside the warm-up
_SCHEDULES = (
    ("notebook 06's schedule", 1e-3, 80, 0.01, (960,), 1200),
    ("the paper's schedule", 0.02, 500, 1 / 3, (120_000,), 160_000),
    ("two steps", 0.1, 4, 0.25, (6, 9), 12),
    ("no warm-up", 0.5, 0, 0.01, (3,), 6),
    ("a step inside the warm-up", 1.0, 5, 0.5, (2,), 8),
)


def _lr_hint(it: int, warmup_iters: int, warmup_factor: float, steps: tuple[int, ...]) -> str:
    """Where the usual mistakes show: in the warm-up, exactly at a step, or after it."""
    if it in steps:
        n = bisect_right(list(steps), it)
        return (
            f"iteration {it} is step {n} of {steps}: from this iteration on (not the next one) the lr is "
            f"x0.1**{n}, one factor 0.1 per step passed, this one included (bisect.bisect_right(steps, "
            "iteration) counts them)"
        )
    if it < warmup_iters:
        return (
            f"warm-up: lr = base_lr * (f + (1 - f) * it / W) with f = warmup_factor = {warmup_factor:g} "
            f"and W = warmup_iters = {warmup_iters}; at iteration 0 it is f * base_lr, not 0"
        )
    if any(it > s for s in steps):
        return "after the step(s): multiply by 0.1 once per step already passed (0.1 ** number_of_steps)"
    return "between the warm-up and the first step the lr is base_lr itself"


def check_lr_schedule(fn: Callable[..., Any]) -> None:
    """``fn(iteration, base_lr, warmup_iters, warmup_factor, steps)`` against ``lr_at`` (§3.1's step
    schedule with Goyal et al.'s linear warm-up) at every iteration of small schedules and at the warm-up's
    and steps' edges of long ones."""
    from mrcnn_lite.config import TrainConfig
    from mrcnn_lite.engine.schedule import lr_at

    for label, lr, w, f, steps, max_iter in _SCHEDULES:
        cfg = TrainConfig(
            base_lr=lr,
            reference_batch_size=None,
            warmup_iters=w,
            warmup_factor=f,
            steps=steps,
            max_iter=max_iter,
        )
        edges = {
            0,
            1,
            w - 1,
            w,
            w + 1,
            max_iter - 1,
            *steps,
            *(s - 1 for s in steps),
            *(s + 1 for s in steps),
        }
        its = range(max_iter) if max_iter <= 2000 else sorted(i for i in edges if 0 <= i < max_iter)
        for it in its:
            got = call_student(fn, it, lr, w, f, steps, name="lr_schedule")
            try:
                got = float(got)
            except (TypeError, ValueError) as err:
                raise ExerciseError(f"lr_schedule returned {type(got).__name__}, expected a float") from err
            want = lr_at(it, cfg)
            if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
                raise ExerciseError(
                    f"{label} (base_lr={lr:g}, warmup_iters={w}, warmup_factor={f:g}, steps={steps}): at "
                    f"iteration {it} yours is {got:.6g}, lr_at gives {want:.6g}. "
                    f"Hint: {_lr_hint(it, w, f, steps)}"
                )
    passed("Your turn 1: the learning-rate schedule", f"{len(_SCHEDULES)} schedules, every iteration checked")


def _fresh_model_losses(num_classes: int, seed: int = 0) -> dict[str, float]:
    """The losses of a freshly initialised classroom model (``classroom_fpn``) on one synthetic image."""
    from mrcnn_lite.config import get_config
    from mrcnn_lite.modeling.build import build_model

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(get_config("classroom_fpn"), num_classes).train()
        image = torch.rand(3, 160, 192, generator=gen)
        masks = torch.zeros(2, 160, 192, dtype=torch.uint8)
        masks[0, 30:100, 20:90] = 1
        masks[1, 80:150, 100:180] = 1
        target = {
            "boxes": torch.tensor([[20.0, 30, 90, 100], [100, 80, 180, 150]]),
            "labels": torch.tensor([1, num_classes - 1]),
            "masks": masks,
        }
        return {k: v.item() for k, v in model([image], [target]).items()}


def _zero_logit_losses(num_classes: int, mask_kind: str) -> dict[str, float]:
    """The library's losses when every logit is 0 (a network that prefers nothing), random labels."""
    from mrcnn_lite.modeling.losses import fast_rcnn_loss, mask_loss

    gen = torch.Generator().manual_seed(num_classes)
    labels = torch.randint(0, num_classes, (64,), generator=gen)
    cls, _ = fast_rcnn_loss(
        torch.zeros(64, num_classes), torch.zeros(64, 4 * num_classes), labels, torch.zeros(64, 4)
    )
    pos = torch.randint(1, num_classes, (8,), generator=gen)
    targets = (torch.rand(8, 28, 28, generator=gen) > 0.5).float()
    mask = mask_loss(torch.zeros(8, num_classes, 28, 28), targets, pos, kind=mask_kind)
    objectness = F.binary_cross_entropy_with_logits(
        torch.zeros(256), (torch.rand(256, generator=gen) > 0.9).float()
    )
    return {"loss_cls": cls.item(), "loss_mask": mask.item(), "loss_rpn_objectness": objectness.item()}


def _chance_hint(key: str, mask_kind: str) -> str:
    if key == "loss_cls":
        return (
            "L_cls is a softmax over num_classes outputs, background included: equal logits give "
            "probability 1/num_classes to the true class, and cross-entropy -ln(1/num_classes)"
        )
    if key == "loss_mask" and mask_kind == "softmax":
        return (
            "Table 2b's softmax mask loss: each pixel is a softmax over all num_classes channels, so a "
            "uniform guess costs ln(num_classes), not the sigmoid's ln 2"
        )
    return (
        "a sigmoid of 0 is 0.5 whatever the target: binary cross-entropy -ln(0.5) = ln 2, for every pixel "
        "(the sigmoid mask loss) and every anchor (the RPN's objectness)"
    )


def check_chance_losses(fn: Callable[..., Any]) -> None:
    """``fn(num_classes, mask_kind)`` (a dict: loss_cls, loss_mask, loss_rpn_objectness) against the
    library's losses on all-zero logits (exact), and, for ``classroom_fpn``, a freshly built model's."""
    keys = ("loss_cls", "loss_mask", "loss_rpn_objectness")
    cases = [
        (k, kind, _zero_logit_losses(k, kind), 1e-5, "all-zero logits")
        for k, kind in ((2, "sigmoid"), (7, "sigmoid"), (81, "sigmoid"), (7, "softmax"), (81, "softmax"))
    ]
    cases.append((7, "sigmoid", _fresh_model_losses(7), 0.15, "a freshly initialised classroom_fpn"))
    for k, kind, want, atol, where in cases:
        got = call_student(fn, k, kind, name="chance_losses")
        if not isinstance(got, dict) or set(keys) - set(got):
            raise ExerciseError(
                f"chance_losses({k}, {kind!r}) must return a dict with the keys {keys}, got {got!r}"
            )
        for key in keys:
            try:
                value = float(got[key])
            except (TypeError, ValueError) as err:
                raise ExerciseError(f"chance_losses: {key} must be a number, got {got[key]!r}") from err
            if not abs(value - want[key]) <= atol:
                raise ExerciseError(
                    f"{key} for num_classes={k}, mask_kind={kind!r}: yours {value:.4f}, the library gives "
                    f"{want[key]:.4f} on {where}. Hint: {_chance_hint(key, kind)}"
                )
    passed(
        "Your turn 2: the losses of a model that knows nothing",
        f"num_classes = 7: ln 7 = {math.log(7):.3f} and ln 2 = {math.log(2):.3f}",
    )


def _grad_cases() -> list[tuple[str, list[torch.Tensor | None], float]]:
    """(label, the gradients (None: a parameter without one), max_norm)."""
    gen = torch.Generator().manual_seed(6)
    big = [
        torch.randn(4, 3, generator=gen) * 10,
        torch.randn(5, generator=gen) * 10,
        torch.randn(2, 2, 3, generator=gen),
    ]
    small = [torch.randn(3, generator=gen) * 0.01, torch.randn(2, 2, generator=gen) * 0.01]
    one_big = [torch.full((3,), 0.1), torch.tensor([30.0, -40.0])]  # one tensor holds almost all the norm
    return [
        ("large gradients (clipped)", big, 10.0),
        ("small gradients (left alone)", small, 10.0),
        ("one large tensor among small ones", one_big, 1.0),
        ("a parameter without a gradient", [big[0].clone(), None, small[0].clone()], 2.0),
        ("all-zero gradients", [torch.zeros(3), torch.zeros(2, 2)], 1.0),
    ]


def _params(grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
    out = []
    for g in grads:
        p = torch.zeros(g.shape if g is not None else (2,), requires_grad=True)
        p.grad = None if g is None else g.clone()
        out.append(p)
    return out


def check_clip_gradients(fn: Callable[..., Any]) -> None:
    """``fn(parameters, max_norm)`` (in place; returns the total norm before clipping) against
    ``torch.nn.utils.clip_grad_norm_`` on clipped, unclipped, partly gradient-less and all-zero cases."""
    for label, grads, max_norm in _grad_cases():
        ours, theirs = _params(grads), _params(grads)
        want_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm).item()
        got_norm = call_student(fn, ours, max_norm, name="clip_gradients")
        hint_norm = (
            "return the norm of all the gradients together, measured before clipping: "
            "sqrt(sum over tensors of (g ** 2).sum()), skipping parameters whose .grad is None"
        )
        try:
            got_norm = float(got_norm)
        except (TypeError, ValueError) as err:
            raise ExerciseError(
                f"{label}: clip_gradients returned {type(got_norm).__name__}, expected the total "
                f"norm as a float (or a 0-d tensor). Hint: {hint_norm}"
            ) from err
        check_close(got_norm, want_norm, rtol=1e-5, what=f"{label}: the returned total norm", hint=hint_norm)
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            if q.grad is None:
                if p.grad is not None:
                    raise ExerciseError(f"{label}: parameter {i} had no gradient and must keep none")
                continue
            check_close(
                p.grad,
                q.grad,
                rtol=1e-5,
                atol=1e-7,
                what=f"{label}: parameter {i}'s gradient after clipping",
                hint="scale every gradient by the same factor max_norm / (total_norm + 1e-6), and only when "
                "that factor is below 1 (one norm over all tensors, not one per tensor); modify p.grad "
                "in place (p.grad.mul_(...))",
            )
    passed(
        "Your turn 3: gradient-norm clipping", "the same norm and gradients as torch.nn.utils.clip_grad_norm_"
    )
