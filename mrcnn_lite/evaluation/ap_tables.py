"""AP per class and per object size, and precision-recall curves, read from a finished ``COCOeval``'s
``eval["precision"]`` and ``eval["recall"]`` (see :mod:`mrcnn_lite.evaluation.cocoeval_index` for their
layout): nothing re-computes the COCO protocol, so the means agree with ``COCOeval.stats``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.evaluation.cocoeval_index import (
    _area_index,
    _cat_index,
    _check,
    _iou_index,
    _max_det_index,
    _mean_valid,
    _num_gt,
)


@dataclass(frozen=True)
class ClassAP:
    """One category's AP (mean over the 10 IoU thresholds), AP50 and AP75; -1 when it has no ground truth."""

    cat_id: int
    name: str
    num_gt: int
    ap: float
    ap50: float
    ap75: float


@dataclass(frozen=True)
class AreaAP:
    """AP, AP50, AP75 and AR (at ``max_det`` detections) over objects of one size range (COCO §4)."""

    area: str
    range: tuple[float, float]
    num_gt: int
    ap: float
    ap50: float
    ap75: float
    ar: float


def per_class_ap(evaluator: COCOeval, area: str = "all", max_det: int | None = None) -> list[ClassAP]:
    """AP, AP50 and AP75 of every evaluated category, from ``eval["precision"][:, :, k, area, max_det]``.

    The same numbers as a ``COCOeval`` run with ``params.catIds = [c]`` (accumulate treats categories
    independently), and their mean over categories with ground truth is ``stats[0]`` (AP), ``stats[1]``
    (AP50), ``stats[2]`` (AP75) -- COCO's AP *is* the mean of per-class APs.
    """
    _check(evaluator)
    precision = evaluator.eval["precision"]
    a, m = _area_index(evaluator, area), _max_det_index(evaluator, max_det)
    t50, t75 = _iou_index(evaluator, 0.5), _iou_index(evaluator, 0.75)
    rows = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, a, m]
        rows.append(ClassAP(
            cat_id=int(cat_id), name=str(evaluator.cocoGt.cats[cat_id]["name"]),
            num_gt=_num_gt(evaluator, k, a),
            ap=_mean_valid(p), ap50=_mean_valid(p[t50]), ap75=_mean_valid(p[t75]),
        ))  # fmt: skip
    return rows


def per_area_ap(evaluator: COCOeval, max_det: int | None = None) -> list[AreaAP]:
    """AP, AP50, AP75 and AR per object size (all, small, medium, large), from ``eval["precision"]`` and
    ``eval["recall"]``: AP and AR equal ``stats`` (APs/APm/APl = ``stats[3:6]``, ARs/ARm/ARl =
    ``stats[9:12]`` at 100 detections); AP50 and AP75 per size are not in ``stats``.

    The size is the ground truth's ``area`` (mask area for COCO, also for box AP); a detection outside
    the range that matches nothing is ignored (COCOeval's rule).
    """
    _check(evaluator)
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    m = _max_det_index(evaluator, max_det)
    t50, t75 = _iou_index(evaluator, 0.5), _iou_index(evaluator, 0.75)
    rows = []
    for a, (label, rng) in enumerate(zip(evaluator.params.areaRngLbl, evaluator.params.areaRng, strict=True)):
        p = precision[:, :, :, a, m]
        num_gt = sum(_num_gt(evaluator, k, a) for k in range(len(evaluator.params.catIds)))
        rows.append(AreaAP(
            area=str(label), range=(float(rng[0]), float(rng[1])), num_gt=num_gt,
            ap=_mean_valid(p), ap50=_mean_valid(p[t50]), ap75=_mean_valid(p[t75]),
            ar=_mean_valid(recall[:, :, a, m]),
        ))  # fmt: skip
    return rows


@dataclass(frozen=True)
class PRCurve:
    """Interpolated precision at COCO's 101 recall points (``params.recThrs``) for one IoU threshold.

    ``precision[r]`` is the best precision reached at recall ≥ ``recall[r]`` (0 beyond the highest recall
    the detections reach); its mean is the AP at that threshold (COCO's 101-point interpolated AP).
    ``scores[r]`` is the score threshold that reaches that point (one category only; None for the mean
    over categories).
    """

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray | None
    iou_thr: float
    cat_id: int | None
    area: str

    @property
    def ap(self) -> float:
        """The 101-point interpolated AP at this IoU threshold: the mean of ``precision``."""
        return float(self.precision.mean())

    @property
    def max_recall(self) -> float:
        """The highest recall point with non-zero precision (0 when there is none)."""
        hits = np.flatnonzero(self.precision > 0)
        return float(self.recall[hits[-1]]) if hits.size else 0.0


def pr_curve(
    evaluator: COCOeval,
    iou_thr: float = 0.5,
    cat_id: int | None = None,
    area: str = "all",
    max_det: int | None = None,
) -> PRCurve:
    """The precision-recall curve ``eval["precision"][t, :, k, area, max_det]`` of one category, or, with
    ``cat_id=None``, its mean over the categories that have ground truth (whose mean is AP50 for
    ``iou_thr=0.5``, AP75 for 0.75: ``stats[1]``, ``stats[2]``)."""
    _check(evaluator)
    t, a, m = _iou_index(evaluator, iou_thr), _area_index(evaluator, area), _max_det_index(evaluator, max_det)
    recall = np.asarray(evaluator.params.recThrs, dtype=float)
    precision = evaluator.eval["precision"][t, :, :, a, m]  # [R, K]
    if cat_id is None:
        valid = precision[:, (precision > -1).all(axis=0)]
        curve = valid.mean(axis=1) if valid.shape[1] else np.zeros_like(recall)
        scores = None
    else:
        k = _cat_index(evaluator, cat_id)
        if (precision[:, k] == -1).all():
            raise ValueError(f"category {cat_id} has no ground truth in area range {area!r}: no PR curve")
        curve, scores = precision[:, k].copy(), evaluator.eval["scores"][t, :, k, a, m].copy()
    return PRCurve(recall, np.asarray(curve, dtype=float), scores, float(evaluator.params.iouThrs[t]), cat_id,
                   area)  # fmt: skip
