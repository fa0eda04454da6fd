"""Checks for notebook 07's exercises (COCO evaluation), against pycocotools itself.

- Your turn 1, ``mask_iou(rle_a, rle_b, crowd)``: the IoU of two RLE masks, against ``pycocotools.mask.iou``,
  including COCO's rule for crowd regions and empty masks.
- Your turn 2, ``ap50_from_eval(evaluator)``: AP50 read from ``evaluator.eval["precision"]``, against
  ``COCOeval.summarize()``'s second number, on small synthetic data sets (one with a class that has no
  ground truth, whose -1 entries must be left out).
- Your turn 3, ``interpolated_ap(is_tp, num_gt)``: COCO's 101-point interpolated AP of one ranked list of
  detections, against the AP50 that ``COCOeval`` computes for the same detections.

The data sets are built here, in memory, so the checks need neither the shapes data nor a model.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.exercises import ExerciseError, call_student, passed

__all__ = ["check_ap50_from_eval", "check_interpolated_ap", "check_mask_iou", "cocoeval_bbox"]


def _coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def cocoeval_bbox(dataset: dict[str, Any], detections: list[dict[str, Any]]) -> COCOeval:
    """pycocotools' COCOeval on boxes after evaluate, accumulate and summarize, without its prints."""
    gt = _coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        e = COCOeval(gt, gt.loadRes(detections), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _synthetic(seed: int, n_images: int, empty_class: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth of 2 classes (3 with ``empty_class``: no object of class 3) and noisy detections."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "height": 200, "width": 200})
        for _ in range(rng.integers(1, 5)):
            x, y, w, h = (*rng.uniform(0, 120, 2), *rng.uniform(8, 80, 2))
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})  # fmt: skip
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object: misses and duplicates
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                wrong = rng.random() < 0.2
                dets.append({"image_id": i, "category_id": (3 - cat) if wrong else cat,
                             "bbox": [float(v) for v in np.array([x, y, w, h]) + jitter],
                             "score": float(rng.random())})  # fmt: skip
        for _ in range(rng.integers(0, 3)):  # background detections, some of the empty class
            x, y = rng.uniform(0, 150, 2)
            cat = int(rng.integers(1, 4 if empty_class else 3))
            dets.append({"image_id": i, "category_id": cat, "bbox": [x, y, 30.0, 30.0],
                         "score": float(rng.random())})  # fmt: skip
    cats = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)[: 3 if empty_class else 2]]
    return {"images": images, "annotations": anns, "categories": cats}, dets


# ----------------------------------------------------------------------------- Your turn 2


def check_ap50_from_eval(fn: Callable[[COCOeval], float]) -> None:
    """``fn(evaluator) -> float``: AP50 (area all, 100 detections) from ``eval["precision"]``, against
    ``COCOeval.stats[1]``."""
    cases = {
        "20 images, 2 classes": (1, 20, False),
        "30 images and a class without any ground truth (its precisions are -1)": (2, 30, True),
    }
    for what, (seed, n, empty) in cases.items():
        e = cocoeval_bbox(*_synthetic(seed, n, empty))
        expected = float(e.stats[1])
        got = call_student(fn, e, name="ap50_from_eval")
        try:
            got = float(got)
        except (TypeError, ValueError) as err:
            raise ExerciseError(f"{what}: expected a number, got {type(got).__name__}") from err
        if not math.isclose(got, expected, rel_tol=0, abs_tol=1e-9):
            raise ExerciseError(
                f"{what}: yours {got:.6f}, COCOeval's AP50 {expected:.6f}. Take the IoU index where "
                "params.iouThrs == 0.5, area index 0 ('all'), the last maxDets index (100), every recall "
                "point and class, and average only the entries > -1 (a class with no ground truth has -1)")
    passed("Your turn 2: AP50 from the precision array", "equals COCOeval's stats[1]")


# ----------------------------------------------------------------------------- Your turn 1


def _disc(h: int, w: int, cy: float, cx: float, r: float, hole: float = 0.0) -> dict[str, Any]:
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    m = (d2 <= r * r) & (d2 >= hole * hole)
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def check_mask_iou(fn: Callable[..., float]) -> None:
    """``fn(rle_a, rle_b, crowd=False) -> float`` against ``pycocotools.mask.iou([a], [b], [crowd])``: with
    ``crowd`` (``b`` a crowd region) COCO divides the intersection by the area of ``a``, the detection."""
    h, w = 60, 80
    a, b = _disc(h, w, 30, 30, 15), _disc(h, w, 30, 45, 15)
    ring = _disc(h, w, 30, 30, 20, hole=10)
    empty = mask_utils.encode(np.zeros((h, w), dtype=np.uint8, order="F"))
    cases = {
        "two overlapping discs": (a, b, False),
        "a disc and a ring around its centre (the ring's hole is not its area)": (a, ring, False),
        "a mask with itself": (ring, ring, False),
        "two disjoint masks": (_disc(h, w, 10, 10, 5), _disc(h, w, 50, 70, 5), False),
        "a detection against a crowd region": (a, b, True),
        "a detection inside a larger crowd region": (_disc(h, w, 30, 40, 6), _disc(h, w, 30, 40, 25), True),
        "two empty masks (COCO's convention: IoU 0)": (empty, empty, False),
    }
    for what, (x, y, crowd) in cases.items():
        expected = float(mask_utils.iou([x], [y], [int(crowd)])[0, 0])
        try:
            got = float(call_student(fn, dict(x), dict(y), crowd, name="mask_iou"))
        except (ZeroDivisionError, FloatingPointError) as err:
            raise ExerciseError(f"{what}: {type(err).__name__}. When the union is empty, return 0") from err
        if math.isnan(got) or not math.isclose(got, expected, rel_tol=0, abs_tol=1e-9):
            hint = ("with crowd=True the denominator is the area of rle_a alone (a detection inside a crowd "
                    "region is not penalised for the rest of the region)" if crowd else
                    "IoU = |A ∩ B| / |A ∪ B| on the decoded masks (mask_utils.decode gives H x W arrays of "
                    "0/1; cast to bool or int before multiplying or summing)")
            raise ExerciseError(f"{what}: yours {got:.6f}, pycocotools {expected:.6f}. {hint}")
    passed("Your turn 1: IoU of two RLE masks", "equals pycocotools.mask.iou, crowd regions included")


# ----------------------------------------------------------------------------- Your turn 3


def cocoeval_ap50_of_ranking(is_tp: Sequence[bool], num_gt: int) -> float:
    """AP50 that COCOeval gives a ranked list of detections: one image, ``num_gt`` separate boxes of one
    class; detection i (scores decreasing) is a copy of the next unmatched box if ``is_tp[i]``, else a
    box in an empty corner of the image."""
    if sum(is_tp) > num_gt or len(is_tp) > 100 or num_gt > 64:
        raise ValueError("at most num_gt true positives, 100 detections and 64 objects")
    boxes = [[40.0 * (g % 8), 40.0 * (g // 8), 20.0, 20.0] for g in range(num_gt)]
    anns = [{"id": g + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 400.0, "iscrowd": 0}
            for g, b in enumerate(boxes)]  # fmt: skip
    dataset = {"images": [{"id": 1, "height": 700, "width": 700}], "annotations": anns,
               "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    dets, next_gt = [], 0
    for i, tp in enumerate(is_tp):
        box = boxes[next_gt] if tp else [400.0 + 2 * (i % 10), 400.0 + 2 * (i // 10), 20.0, 20.0]
        next_gt += bool(tp)
        dets.append({"image_id": 1, "category_id": 1, "bbox": box, "score": 1.0 - i / 1000})
    e = cocoeval_bbox(dataset, dets)
    return float(e.eval["precision"][0, :, 0, 0, -1].mean())


def check_interpolated_ap(fn: Callable[[list[bool], int], float]) -> None:
    """``fn(is_tp, num_gt) -> float``: COCO's 101-point interpolated AP of one class's ranked detections,
    against COCOeval's AP50 for the same ranking."""
    cases = {
        "a mixed ranking": ([True, False, True, True, False, False, True], 5),
        "false positives first (interpolation raises the early precision)":
            ([False, False, True, True, True], 4),
        "every detection right, every object found": ([True] * 6, 6),
        "every detection right, half the objects never found": ([True] * 4, 8),
        "only false positives": ([False] * 5, 3),
        "a long ranking": ([bool(v) for v in np.random.default_rng(3).random(60) < 0.4], 40),
    }
    for what, (is_tp, num_gt) in cases.items():
        expected = cocoeval_ap50_of_ranking(is_tp, num_gt)
        got = call_student(fn, list(is_tp), num_gt, name="interpolated_ap")
        try:
            got = float(got)
        except (TypeError, ValueError) as err:
            raise ExerciseError(f"{what}: expected a number, got {type(got).__name__}") from err
        if math.isnan(got) or not math.isclose(got, expected, rel_tol=0, abs_tol=1e-9):
            raise ExerciseError(
                f"{what} ({''.join('T' if t else 'F' for t in is_tp)}, {num_gt} objects): yours {got:.6f}, "
                f"COCOeval {expected:.6f}. Cumulate TP and FP, precision = TP / (TP + FP), recall = TP / "
                "num_gt; make precision non-increasing from the right (p[i] = max(p[i:])); at each of the "
                "101 recall points r = 0, 0.01, ..., 1 take the precision of the first detection with recall "
                "≥ r (0 if none); average the 101 values. Not 11 points, not the area under the raw curve")
    passed("Your turn 3: COCO's 101-point interpolated AP", "equals COCOeval's AP50 on the same ranking")
