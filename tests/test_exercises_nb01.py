"""Notebook 01's exercise checks fail on the release's stubs and on plausible wrong answers, and pass on
correct ones (the notebook's own solutions are run by tests/test_exercises.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_lite.exercises import ExerciseError, nb01


def rle_decode(counts: list[int], height: int, width: int, order: str = "F", first: int = 0) -> np.ndarray:
    values = np.repeat([(first + k) % 2 for k in range(len(counts))], counts)
    return values.reshape(height, width, order=order).astype(np.uint8)


def mask_to_bbox(mask: np.ndarray, plus_one: int = 1, swap: bool = False) -> list[float]:
    ys, xs = np.nonzero(mask)
    if swap:
        xs, ys = ys, xs
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = xs.min(), ys.min()
    return [float(x0), float(y0), float(xs.max() - x0 + plus_one), float(ys.max() - y0 + plus_one)]


def stub(*args: object) -> None:
    raise NotImplementedError()


def test_rle_decode_passes_when_right_and_fails_on_stub_and_mistakes(capsys: pytest.CaptureFixture) -> None:
    nb01.check_rle_decode(rle_decode)
    assert "✓ Your turn 1" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="not written yet"):
        nb01.check_rle_decode(stub)
    with pytest.raises(ExerciseError, match="order='F'"):  # filled row by row
        nb01.check_rle_decode(lambda c, h, w: rle_decode(c, h, w, order="C"))
    with pytest.raises(ExerciseError, match="pixels differ"):  # the first run taken as 1s
        nb01.check_rle_decode(lambda c, h, w: rle_decode(c, h, w, first=1))
    with pytest.raises(ExerciseError, match="shape"):  # height and width swapped
        nb01.check_rle_decode(lambda c, h, w: rle_decode(c, w, h))


def test_mask_to_bbox_passes_when_right_and_fails_on_stub_and_mistakes(capsys: pytest.CaptureFixture) -> None:
    nb01.check_mask_to_bbox(mask_to_bbox)
    assert "✓ Your turn 2" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="not written yet"):
        nb01.check_mask_to_bbox(stub)
    with pytest.raises(ExerciseError, match="xmax - xmin \\+ 1"):  # torchvision's masks_to_boxes widths
        nb01.check_mask_to_bbox(lambda m: mask_to_bbox(m, plus_one=0))
    with pytest.raises(ExerciseError, match="pycocotools"):  # rows taken as x
        nb01.check_mask_to_bbox(lambda m: mask_to_bbox(m, swap=True))
    with pytest.raises(ExerciseError, match="expected 4 numbers"):
        nb01.check_mask_to_bbox(lambda m: None)
