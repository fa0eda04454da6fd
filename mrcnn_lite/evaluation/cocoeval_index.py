"""Indexing a finished ``COCOeval``: the positions of an IoU threshold, an area range, a detection limit
and a category in its arrays, COCO's average over valid entries, and ground-truth counts.

Everything here reads what pycocotools already computed (:func:`~mrcnn_lite.evaluation.coco_eval.
run_cocoeval` returns a ``COCOeval`` after ``evaluate()`` and ``accumulate()``); nothing re-implements the
COCO protocol:

- ``eval["precision"]`` has shape [T, R, K, A, M]: T = 10 IoU thresholds 0.50:0.05:0.95, R = 101 recall
  points 0:0.01:1, K categories, A = 4 area ranges (all, small < 32², medium 32²..96², large > 96²) and
  M = 3 limits on detections per image (1, 10, 100). Each entry is the *interpolated* precision (the
  best precision at that recall or any higher one); -1 marks a category without ground truth in the area
  range. COCO's AP is the mean of the entries > -1 over T, R and K (paper §4: "AP (averaged over IoU
  thresholds)", AP50, AP75, APS, APM, APL); one category's AP is the same mean over T and R alone.
- ``evalImgs`` holds, per (category, area range, image), COCO's greedy matching at each IoU threshold:
  detections in decreasing score, each taking the best-overlapping still unmatched ground truth of its
  class with IoU ≥ the threshold. ``ious`` holds the IoU matrices it matched with.
"""

from __future__ import annotations

import numpy as np
from pycocotools.cocoeval import COCOeval


def _check(evaluator: COCOeval) -> None:
    """Fail unless ``evaluator`` is accumulated and per class (what every reader here needs)."""
    if not evaluator.eval:
        raise ValueError("the COCOeval has not been accumulated: call evaluate() and accumulate() first")
    if not evaluator.params.useCats:
        raise ValueError("per-class analysis needs params.useCats = 1 (COCO's default)")


def _iou_index(evaluator: COCOeval, iou_thr: float) -> int:
    """The index of IoU threshold ``iou_thr`` in ``params.iouThrs`` (T)."""
    thrs = evaluator.params.iouThrs
    hits = np.flatnonzero(np.isclose(thrs, iou_thr))
    if len(hits) != 1:
        raise ValueError(f"IoU threshold {iou_thr} is not one of params.iouThrs {np.round(thrs, 2).tolist()}")
    return int(hits[0])


def _area_index(evaluator: COCOeval, area: str) -> int:
    """The index of area range ``area`` ("all", "small", ...) in ``params.areaRngLbl`` (A)."""
    labels = list(evaluator.params.areaRngLbl)
    if area not in labels:
        raise ValueError(f"area must be one of {labels}, got {area!r}")
    return labels.index(area)


def _max_det_index(evaluator: COCOeval, max_det: int | None) -> int:
    """The index of ``max_det`` in ``params.maxDets`` (M); None: the largest."""
    dets = list(evaluator.params.maxDets)
    if max_det is None:
        return len(dets) - 1
    if max_det not in dets:
        raise ValueError(f"max_det must be one of params.maxDets {dets}, got {max_det}")
    return dets.index(max_det)


def _cat_index(evaluator: COCOeval, cat_id: int) -> int:
    """The index of category id ``cat_id`` in ``params.catIds`` (K)."""
    cats = list(evaluator.params.catIds)
    if cat_id not in cats:
        raise ValueError(f"category id {cat_id} is not among the evaluated params.catIds {cats}")
    return cats.index(cat_id)


def _mean_valid(x: np.ndarray) -> float:
    """COCO's average: the mean of the entries > -1, or -1 when there is none (no ground truth)."""
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else -1.0


def _num_gt(evaluator: COCOeval, k: int, a: int) -> int:
    """Non-ignored ground truths of category index ``k`` in area range ``a`` (crowds are ignored)."""
    n_img, n_area = len(evaluator.params.imgIds), len(evaluator.params.areaRng)
    start = k * n_area * n_img + a * n_img
    return sum(int((e["gtIgnore"] == 0).sum()) for e in evaluator.evalImgs[start : start + n_img] if e)
