"""Checks for notebook 02's exercises (the RoI operators): each compares the student's one-box version
with the library's operator (:mod:`mrcnn_lite.ops`) and torchvision's, on inputs it builds itself.

- ``check_bilinear_sample``: "Your turn 1", one bilinear read at a pixel position (Mask R-CNN §3).
- ``check_roi_align_box``: "Your turn 2", RoIAlign (average, ``aligned=True``) of one box.
- ``check_roi_pool_box``: "Your turn 3", RoIPool (Fast R-CNN) of one box.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import Tensor

from mrcnn_lite import ops
from mrcnn_lite.exercises import ExerciseError, call_student, check_close, passed

__all__ = ["bilinear", "check_bilinear_sample", "check_roi_align_box", "check_roi_pool_box"]

BILINEAR_HINT = (
    "Hints: a cell's value sits at its centre, so pixel x is at x / stride - 0.5 in cell coordinates "
    "(forgetting the -0.5 reads half a cell to the right); the nearest corner gets the largest weight, "
    "(1 - lx) for the left one; on the last row or column there is no cell below or to the right"
)
ALIGN_HINT = (
    "Hints: RoIAlign rounds nothing: the box in cells is x1 / stride - 0.5 ... x2 / stride - 0.5 "
    "(aligned=True); bin j spans x1 + j·bin_w ... x1 + (j+1)·bin_w and its samples sit at "
    "x1 + j·bin_w + (k + 0.5)·bin_w / sampling_ratio; rounding the box corners gives RoIWarp instead; "
    "a bin's output is the mean of its sampling_ratio² samples"
)
POOL_HINT = (
    "Hints: RoIPool rounds each corner with C's round (halves away from zero: round(2.5) = 3, where "
    "Python's round(2.5) = 2), counts the last cell too (n = x2 - x1 + 1 cells), takes bin j over cells "
    "x1 + floor(j·n / out) up to x1 + ceil((j+1)·n / out) (exclusive), clips them to the map, and "
    "outputs the max over the bin's cells (0 for a bin with no cell)"
)


def bilinear(fmap: Tensor, y: float, x: float) -> Tensor:
    """The bilinear read of ``fmap [C, H, W]`` at cell-index coordinates ``(y, x)`` (cell ``(i, j)``'s
    value sits at ``(i, j)``), with torchvision's border rules: 0 beyond one cell outside the map, else
    the coordinates clamped to the map. Returns ``[C]``. Handed to the student's RoIAlign."""
    _, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return fmap.new_zeros(fmap.shape[0])
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def _features(c: int, h: int, w: int, seed: int) -> Tensor:
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed))


def _number(got: Any, what: str) -> float:
    try:
        return float(got)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseError(f"{what}: expected one number, got {got!r}") from err


def _run(fn: Callable[..., Any], *args: Any, what: str, hint: str) -> Any:
    """The student's call; an indexing error (a cell past the map's edge) becomes a message with a hint."""
    try:
        return call_student(fn, *args)
    except (IndexError, RuntimeError) as err:
        raise ExerciseError(f"{what} raised {type(err).__name__}: {err}. {hint}") from err


def check_bilinear_sample(bilinear_sample: Callable[[Tensor, float, float, int], float]) -> None:
    """"Your turn 1": ``bilinear_sample(fmap [H, W], x, y, stride)`` (x, y in image pixels, inside the
    square of cell centres) must equal a 1×1 RoIAlign with one sample at (x, y), torchvision's and ours."""
    cases = [  # (H, W, stride, x, y): a centre exactly, interior points, the last row and column
        (5, 6, 16, 8.0, 8.0),
        (5, 6, 16, 62.81, 62.5),
        (5, 6, 16, 30.0, 50.25),
        (5, 6, 16, 88.0, 33.0),
        (5, 6, 16, 88.0, 72.0),
        (4, 4, 32, 50.0, 100.0),
        (4, 4, 32, 112.0, 16.0),
    ]
    for k, (h, w, stride, x, y) in enumerate(cases):
        fmap = _features(1, h, w, seed=k)[0]
        what = f"bilinear_sample(fmap {h}x{w}, x={x}, y={y}, stride={stride})"
        got = _run(bilinear_sample, fmap.clone(), x, y, stride, what=what, hint=BILINEAR_HINT)
        roi = torch.tensor([[0.0, x - 1.0, y - 1.0, x + 1.0, y + 1.0]])  # one bin, its one sample at (x, y)
        for name, op in (("torchvision.ops.roi_align", torchvision.ops.roi_align),
                         ("mrcnn_lite.ops.roi_align", ops.roi_align)):
            expected = op(fmap[None, None], roi, 1, 1 / stride, 1, True).reshape(())
            check_close(_number(got, what), expected, what=f"{what} vs {name}", hint=BILINEAR_HINT,
                        rtol=1e-5, atol=1e-5)
    passed("Your turn 1: one bilinear sample", f"{len(cases)} points, same as torchvision's roi_align")


ALIGN_CASES = [  # (box x1, y1, x2, y2 in pixels, output size, sampling ratio, stride)
    ((22.5, 37.0, 87.0, 105.0), 2, 2, 16),
    ((10.0, 5.0, 150.0, 140.0), 7, 2, 16),
    ((-30.0, 100.0, 60.0, 200.0), 3, 1, 16),  # partly outside the map
    ((40.2, 40.2, 44.8, 47.1), 2, 2, 16),  # inside one cell
    ((13.0, 21.0, 70.0, 50.0), 4, 3, 8),
]


def check_roi_align_box(roi_align_box: Callable[..., Tensor]) -> None:
    """"Your turn 2": ``roi_align_box(fmap [C, H, W], box, out_size, stride, sampling_ratio, bilinear)``
    must equal RoIAlign (average, aligned=True) of that one box, the library's and torchvision's."""
    fmap = _features(3, 10, 12, seed=2)
    for box, out_size, sampling, stride in ALIGN_CASES:
        what = f"roi_align_box(box={box}, out_size={out_size}, stride={stride}, sampling_ratio={sampling})"
        got = _run(roi_align_box, fmap.clone(), box, out_size, stride, sampling, bilinear, what=what,
                   hint=ALIGN_HINT)
        roi = torch.tensor([[0.0, *box]])
        for name, op in (("mrcnn_lite.ops.roi_align", ops.roi_align),
                         ("torchvision.ops.roi_align", torchvision.ops.roi_align)):
            expected = op(fmap[None], roi, out_size, 1 / stride, sampling, True)[0]
            check_close(got, expected, what=f"{what} vs {name}", hint=ALIGN_HINT, rtol=1e-4, atol=1e-5)
    passed("Your turn 2: RoIAlign of one box", f"{len(ALIGN_CASES)} boxes, same as torchvision's roi_align")


POOL_CASES = [  # (box x1, y1, x2, y2 in pixels, output size, stride)
    ((22.5, 37.0, 87.0, 105.0), 2, 16),  # 5 cells into 2 bins: the bins share a column
    ((40.0, 8.0, 104.0, 72.0), 2, 16),  # every corner on a half cell: C's round and Python's differ
    ((10.0, 5.0, 150.0, 140.0), 7, 16),
    ((-40.0, -40.0, 60.0, 50.0), 3, 16),  # partly outside the map
    ((300.0, 300.0, 400.0, 400.0), 2, 16),  # beyond the map: every bin is empty
    ((20.0, 36.0, 92.0, 60.0), 3, 8),
]


def check_roi_pool_box(roi_pool_box: Callable[..., Tensor]) -> None:
    """"Your turn 3": ``roi_pool_box(fmap [C, H, W], box, out_size, stride)`` must equal RoIPool of that
    one box, the library's and torchvision's."""
    fmap = _features(3, 10, 12, seed=3)
    for box, out_size, stride in POOL_CASES:
        what = f"roi_pool_box(box={box}, out_size={out_size}, stride={stride})"
        got = _run(roi_pool_box, fmap.clone(), box, out_size, stride, what=what, hint=POOL_HINT)
        roi = torch.tensor([[0.0, *box]])
        for name, op in (("mrcnn_lite.ops.roi_pool", ops.roi_pool),
                         ("torchvision.ops.roi_pool", torchvision.ops.roi_pool)):
            expected = op(fmap[None], roi, out_size, 1 / stride)[0]
            check_close(got, expected, what=f"{what} vs {name}", hint=POOL_HINT)
    passed("Your turn 3: RoIPool of one box", f"{len(POOL_CASES)} boxes, same as torchvision's roi_pool")
