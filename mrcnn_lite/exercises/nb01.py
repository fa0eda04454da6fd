"""Checks for notebook 01's exercises (the COCO format): each compares the student's function with
pycocotools (through :mod:`mrcnn_lite.data.masks`) on masks it builds itself, edge cases included.

- ``check_rle_decode``: "Your turn 1", COCO's uncompressed RLE counts -> the binary mask.
- ``check_mask_to_bbox``: "Your turn 2", a binary mask -> its COCO box ``[x, y, w, h]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mrcnn_lite.data import masks
from mrcnn_lite.exercises import ExerciseError, call_student, passed

__all__ = ["check_mask_to_bbox", "check_rle_decode", "exercise_masks"]

RLE_HINT = (
    "Hints: the runs alternate 0s and 1s and the first run counts 0s (it may have length 0, when the "
    "top-left pixel is 1); they fill the mask column by column, down the first column, then the second "
    "(reshape with order='F'; the default order='C' fills row by row)"
)
BBOX_HINT = (
    "COCO boxes are [x, y, width, height] with x = the first column (not row) that holds a pixel, and a "
    "width that counts pixels: a mask in columns 3..5 is 3 pixels wide (xmax - xmin + 1, which "
    "torchvision's masks_to_boxes leaves out); an empty mask has the box [0, 0, 0, 0]"
)


def exercise_masks() -> dict[str, np.ndarray]:
    """The masks the checks use, by name: small, readable, and each one an edge case of its own."""
    rng = np.random.default_rng(0)
    tiny = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.uint8)
    corner = np.zeros((4, 6), dtype=np.uint8)
    corner[0, 0] = corner[1, 0] = corner[3, 5] = 1  # starts with a 1, ends with a 1
    rect = np.zeros((7, 9), dtype=np.uint8)
    rect[2:5, 3:8] = 1  # 3 rows x 5 columns: not square, so swapping x and y shows
    pieces = np.zeros((8, 10), dtype=np.uint8)
    pieces[1:3, 1:3] = pieces[5:8, 6:10] = 1  # two pieces, the second touching the bottom-right corner
    return {
        "the 4x5 mask of the notebook": tiny,
        "a 4x6 mask whose top-left pixel is 1": corner,
        "a 3x5 rectangle in a 7x9 mask": rect,
        "two pieces in an 8x10 mask": pieces,
        "a single pixel": np.pad(np.ones((1, 1), dtype=np.uint8), ((2, 1), (4, 0))),
        "an empty 3x4 mask": np.zeros((3, 4), dtype=np.uint8),
        "a full 3x4 mask": np.ones((3, 4), dtype=np.uint8),
        "a random 6x9 mask": (rng.random((6, 9)) < 0.5).astype(np.uint8),
    }


def check_rle_decode(rle_decode: Callable[[list[int], int, int], np.ndarray]) -> None:
    """"Your turn 1": ``rle_decode(counts, height, width)`` must give the mask that pycocotools decodes
    from the uncompressed RLE ``{"size": [height, width], "counts": counts}``, for every test mask."""
    for name, mask in exercise_masks().items():
        h, w = mask.shape
        counts = masks.rle_runs(masks.encode(mask))
        expected = masks.decode({"size": [h, w], "counts": counts}, h, w)
        what = f"rle_decode({counts}, {h}, {w}) ({name})"
        got = call_student(rle_decode, list(counts), h, w)
        try:
            got = np.asarray(got)
        except (TypeError, ValueError) as err:
            raise ExerciseError(f"{what}: expected an array, got {type(got).__name__}") from err
        if got.shape != expected.shape:
            raise ExerciseError(f"{what}: shape {got.shape}, expected {expected.shape} (height, width)")
        if not np.array_equal(got.astype(np.uint8), expected):
            raise ExerciseError(f"{what}: {int((got.astype(np.uint8) != expected).sum())} pixels differ.\n"
                                f"yours:\n{got.astype(np.uint8)}\npycocotools:\n{expected}\n{RLE_HINT}")
    passed("Your turn 1: decode RLE by hand", f"{len(exercise_masks())} masks, same as pycocotools")


def check_mask_to_bbox(mask_to_bbox: Callable[[np.ndarray], list[float]]) -> None:
    """"Your turn 2": ``mask_to_bbox(mask)`` must equal pycocotools' ``toBbox`` (COCO's ``[x, y, w, h]``)
    for every test mask, the empty one included."""
    for name, mask in exercise_masks().items():
        h, w = mask.shape
        got = call_student(mask_to_bbox, mask.copy())
        try:
            box = [float(v) for v in got]
        except (TypeError, ValueError) as err:
            raise ExerciseError(f"mask_to_bbox({name}): expected 4 numbers, got {got!r}") from err
        expected = masks.bbox(masks.encode(mask), h, w)
        if len(box) != 4 or not np.allclose(box, expected):
            raise ExerciseError(f"mask_to_bbox({name}): yours {box}, pycocotools {expected}. The mask:\n"
                                f"{mask}\n{BBOX_HINT}")
    passed("Your turn 2: a mask's COCO box", f"{len(exercise_masks())} masks, same as toBbox")
