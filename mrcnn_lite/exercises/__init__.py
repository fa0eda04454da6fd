"""Checks for the workbook's exercises: a student's function against the library, with helpful messages.

Each notebook's exercises (notebooks 01-07, "Your turn" cells) ask for one small function, written from the
readable version the notebook has just built. The graded cell after it calls ``nbNN.check_<name>(fn)``: the
check builds its own inputs, runs the student's function and the library's, and raises
:class:`ExerciseError` (an ``AssertionError``, so nbgrader's autograder counts it as a failed test) with a
message that says what differed and where to look. A check never reads notebook state, so it can be tested
on its own (``tests/test_exercises.py``): it fails on the student release's stubs and passes on the
solutions.

This package is for notebooks only: no library module imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ExerciseError", "call_student", "check_close", "check_equal", "check_shape", "passed"]


class ExerciseError(AssertionError):
    """A check that failed, with a message meant for the student."""


def call_student(fn: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Call the student's ``fn``; a stub that still raises NotImplementedError gets a plain message."""
    if not callable(fn):
        raise ExerciseError(f"expected a function, got {type(fn).__name__}: pass the function itself, "
                            "without calling it (check_x(my_fn), not check_x(my_fn()))")
    label = name or getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise ExerciseError(f"{label} is not written yet: replace `raise NotImplementedError()` "
                            "in the cell above with your code, run that cell, then this one") from err


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseError(f"{what}: expected a tensor (or numbers), got {type(x).__name__}") from err


def check_shape(got: Any, shape: tuple[int, ...], *, what: str, hint: str = "") -> torch.Tensor:
    """``got`` as a tensor of exactly ``shape``; otherwise an ExerciseError naming both shapes."""
    t = _as_tensor(got, what)
    if tuple(t.shape) != tuple(shape):
        raise ExerciseError(f"{what}: shape {tuple(t.shape)}, expected {tuple(shape)}"
                            + (f". {hint}" if hint else ""))
    return t


def check_close(got: Any, expected: Any, *, what: str, hint: str = "", rtol: float = 1e-5,
                atol: float = 1e-6) -> None:
    """``got`` equals ``expected`` within tolerance; the message names the first and largest difference."""
    e = _as_tensor(expected, what).to(torch.float64)
    g = check_shape(got, tuple(e.shape), what=what, hint=hint).to(torch.float64)
    if torch.isnan(g).any() and not torch.isnan(e).any():
        idx = tuple(int(i) for i in torch.nonzero(torch.isnan(g))[0])
        raise ExerciseError(f"{what}: NaN at index {idx}" + (f". {hint}" if hint else ""))
    bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
        diff = (g - e).abs().nan_to_num(0.0)
        worst = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise ExerciseError(
            f"{what}: {int(bad.sum())} of {bad.numel()} values differ. First at index {first}: "
            f"yours {g[first].item():.6g}, expected {e[first].item():.6g}; largest difference "
            f"{diff.max().item():.3g} at {worst}" + (f". {hint}" if hint else ""))


def check_equal(got: Any, expected: Any, *, what: str, hint: str = "") -> None:
    """Exact equality (integers, booleans, indices); the message names the first mismatch."""
    e = _as_tensor(expected, what)
    g = check_shape(got, tuple(e.shape), what=what, hint=hint)
    if g.dtype == torch.bool or e.dtype == torch.bool:
        g, e = g.to(torch.int64), e.to(torch.int64)
    bad = g != e
    if bad.any():
        first = tuple(int(i) for i in torch.nonzero(bad)[0]) if bad.dim() else ()
        raise ExerciseError(f"{what}: {int(bad.sum())} of {bad.numel()} entries differ. First at index "
                            f"{first}: yours {g[first].item()}, expected {e[first].item()}"
                            + (f". {hint}" if hint else ""))


def passed(exercise: str, detail: str = "") -> None:
    """Print the one line a student sees when a check passes."""
    print(f"✓ {exercise}: correct" + (f" ({detail})" if detail else ""))
