"""Notebook 06's exercise checks: each passes on the solution and fails (ExerciseError) on the stub and on
plausible wrong answers; the notebook's solution cells + check cells run on their own."""

from __future__ import annotations

import math
from bisect import bisect_right

import pytest
import torch
from notebook_cells import exercises, stubbed

from mrcnn_lite.exercises import ExerciseError, nb06

pytestmark = pytest.mark.usefixtures("one_thread")
NOTEBOOK = "06_train.ipynb"


# ----------------------------------------------------------------------------- the learning-rate schedule
def lr_solution(iteration, base_lr, warmup_iters, warmup_factor, steps):
    lr = base_lr
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        lr *= warmup_factor * (1 - alpha) + alpha
    return lr * 0.1 ** bisect_right(list(steps), iteration)


def lr_step_one_late(iteration, base_lr, warmup_iters, warmup_factor, steps):
    """x0.1 from the iteration after the step (steps < iteration instead of <=)."""
    lr = lr_solution(iteration, base_lr, warmup_iters, warmup_factor, ())
    return lr * 0.1 ** sum(iteration > s for s in steps)


def lr_warmup_from_zero(iteration, base_lr, warmup_iters, warmup_factor, steps):
    """Warm-up from 0 instead of warmup_factor * base_lr."""
    scale = iteration / warmup_iters if iteration < warmup_iters else 1.0
    return base_lr * scale * 0.1 ** bisect_right(list(steps), iteration)


def lr_one_step_only(iteration, base_lr, warmup_iters, warmup_factor, steps):
    """x0.1 once after any step, however many were passed."""
    lr = lr_solution(iteration, base_lr, warmup_iters, warmup_factor, ())
    return lr * (0.1 if any(iteration >= s for s in steps) else 1.0)


def lr_stub(iteration, base_lr, warmup_iters, warmup_factor, steps):
    raise NotImplementedError()


def test_lr_schedule_passes_on_the_solution(capsys):
    nb06.check_lr_schedule(lr_solution)
    assert "Your turn 1" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [lr_stub, lr_step_one_late, lr_warmup_from_zero, lr_one_step_only])
def test_lr_schedule_fails_on_wrong_answers(wrong):
    with pytest.raises(ExerciseError):
        nb06.check_lr_schedule(wrong)


def test_lr_schedule_hint_names_the_mistake():
    with pytest.raises(ExerciseError, match="not the next one"):
        nb06.check_lr_schedule(lr_step_one_late)
    with pytest.raises(ExerciseError, match="not 0"):
        nb06.check_lr_schedule(lr_warmup_from_zero)
    with pytest.raises(ExerciseError, match="not written yet"):
        nb06.check_lr_schedule(lr_stub)


# ----------------------------------------------------------------------------- the losses at chance
def chance_solution(num_classes, mask_kind="sigmoid"):
    return {
        "loss_cls": math.log(num_classes),
        "loss_mask": math.log(num_classes) if mask_kind == "softmax" else math.log(2),
        "loss_rpn_objectness": math.log(2),
    }


def chance_without_background(num_classes, mask_kind="sigmoid"):
    return {**chance_solution(num_classes, mask_kind), "loss_cls": math.log(num_classes - 1)}


def chance_sigmoid_always(num_classes, mask_kind="sigmoid"):
    return chance_solution(num_classes, "sigmoid")


def chance_probability_not_loss(num_classes, mask_kind="sigmoid"):
    return {k: math.exp(-v) for k, v in chance_solution(num_classes, mask_kind).items()}


def chance_stub(num_classes, mask_kind="sigmoid"):
    raise NotImplementedError()


def test_chance_losses_passes_on_the_solution(capsys):
    nb06.check_chance_losses(chance_solution)
    assert "Your turn 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong", [chance_stub, chance_without_background, chance_sigmoid_always, chance_probability_not_loss]
)
def test_chance_losses_fails_on_wrong_answers(wrong):
    with pytest.raises(ExerciseError):
        nb06.check_chance_losses(wrong)


def test_fresh_model_starts_near_chance():
    """The check's model case is meaningful: a fresh model's losses are near ln 7 and ln 2, and ln 6 (the
    classes without background) is outside the check's tolerance."""
    losses = nb06._fresh_model_losses(7)
    assert abs(losses["loss_cls"] - math.log(7)) < 0.15 < abs(losses["loss_cls"] - math.log(6))
    assert abs(losses["loss_mask"] - math.log(2)) < 0.02
    assert abs(losses["loss_rpn_objectness"] - math.log(2)) < 0.02


# ----------------------------------------------------------------------------- gradient clipping
def clip_solution(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return total


def clip_per_tensor(parameters, max_norm):
    """Each tensor clipped to its own norm."""
    total = torch.sqrt(sum((p.grad**2).sum() for p in parameters if p.grad is not None))
    for p in parameters:
        if p.grad is not None:
            norm = p.grad.norm()
            if norm > max_norm:
                p.grad.mul_(max_norm / (norm + 1e-6))
    return total


def clip_always(parameters, max_norm):
    """Rescales to max_norm even when the norm is below it."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    for g in grads:
        g.mul_(max_norm / (total + 1e-6))
    return total


def clip_returns_norm_after(parameters, max_norm):
    clip_solution(parameters, max_norm)
    return torch.sqrt(sum((p.grad**2).sum() for p in parameters if p.grad is not None))


def clip_not_in_place(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, float(max_norm / (total + 1e-6)))
    for g in grads:
        g = g * scale  # noqa: PLW2901 - the mistake under test: a new tensor, p.grad unchanged
    return total


def clip_stub(parameters, max_norm):
    raise NotImplementedError()


def test_clip_gradients_passes_on_the_solution(capsys):
    nb06.check_clip_gradients(clip_solution)
    assert "Your turn 3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong", [clip_stub, clip_per_tensor, clip_always, clip_returns_norm_after, clip_not_in_place]
)
def test_clip_gradients_fails_on_wrong_answers(wrong):
    with pytest.raises(ExerciseError):
        nb06.check_clip_gradients(wrong)


# ----------------------------------------------------------------------------- the notebook's cells
def _exercise_cells() -> list[tuple[str, str]]:
    """(solution source, check source) of each exercise in notebook 06, by nbgrader grade_id."""
    found = exercises(NOTEBOOK)
    return [(found[k]["solution"].source, found[k]["check"].source) for k in sorted(found)]


def test_notebook_has_the_exercises():
    assert len(_exercise_cells()) == 3


@pytest.mark.parametrize("index", range(3))
def test_notebook_solution_passes_and_stub_fails(index):
    solution, check = _exercise_cells()[index]
    exec(compile(solution + "\n" + check, f"nb06_ex{index + 1}", "exec"), {})  # noqa: S102
    with pytest.raises(ExerciseError, match="not written yet"):
        exec(compile(stubbed(solution) + "\n" + check, f"nb06_ex{index + 1}_stub", "exec"), {})  # noqa: S102
