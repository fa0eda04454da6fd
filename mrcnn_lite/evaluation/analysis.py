"""Reading a finished ``COCOeval``: AP per class and per size, precision-recall curves, and per-image
matches with their failure types.

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

Failure types (after Hoiem et al., "Diagnosing Error in Object Detectors", ECCV 2012, and the error
analysis of the COCO API's ``analyze()``), at one IoU threshold t (default 0.5), for the detections with
score ≥ ``score_thresh``:

- ``tp``: matched to a ground truth of its class (IoU ≥ t);
- ``duplicate``: IoU ≥ t with a ground truth of its class that a higher-scoring detection already took;
- ``wrong_class``: IoU ≥ t with a ground truth of another class (the place is right, the label wrong);
- ``poor_localization``: the right class, but its best IoU with a ground truth of that class is in
  [0.1, t): it found the object and missed its extent;
- ``background``: none of these (it fired on nothing);
- ``missed``: a ground truth that no detection of its class matched (a false negative).

A detection is the first of these that applies, in this order. One bad detection can cost twice: a
wrong-class detection on an object is a false positive *and* leaves the object ``missed``, as COCO counts
it. Crowd regions follow COCOeval: a detection matched to one is ignored (neither true nor false
positive), and crowds are never ``missed``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

FAILURE_KINDS = ("duplicate", "wrong_class", "poor_localization", "background", "missed")
OUTCOME_KINDS = ("tp", *FAILURE_KINDS)
LOC_MIN_IOU = 0.1  # Hoiem et al.'s lower bound for a localisation error


# ------------------------------------------------------------------------------------------ indexing


def _check(evaluator: COCOeval) -> None:
    if not evaluator.eval:
        raise ValueError("the COCOeval has not been accumulated: call evaluate() and accumulate() first")
    if not evaluator.params.useCats:
        raise ValueError("per-class analysis needs params.useCats = 1 (COCO's default)")


def _iou_index(evaluator: COCOeval, iou_thr: float) -> int:
    thrs = evaluator.params.iouThrs
    hits = np.flatnonzero(np.isclose(thrs, iou_thr))
    if len(hits) != 1:
        raise ValueError(f"IoU threshold {iou_thr} is not one of params.iouThrs {np.round(thrs, 2).tolist()}")
    return int(hits[0])


def _area_index(evaluator: COCOeval, area: str) -> int:
    labels = list(evaluator.params.areaRngLbl)
    if area not in labels:
        raise ValueError(f"area must be one of {labels}, got {area!r}")
    return labels.index(area)


def _max_det_index(evaluator: COCOeval, max_det: int | None) -> int:
    dets = list(evaluator.params.maxDets)
    if max_det is None:
        return len(dets) - 1
    if max_det not in dets:
        raise ValueError(f"max_det must be one of params.maxDets {dets}, got {max_det}")
    return dets.index(max_det)


def _cat_index(evaluator: COCOeval, cat_id: int) -> int:
    cats = list(evaluator.params.catIds)
    if cat_id not in cats:
        raise ValueError(f"category id {cat_id} is not among the evaluated params.catIds {cats}")
    return cats.index(cat_id)


def _mean_valid(x: np.ndarray) -> float:
    """COCO's average: the mean of the entries > -1, or -1 when there is none (no ground truth)."""
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else -1.0


# ------------------------------------------------------------------------------------------ AP tables


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


def _num_gt(evaluator: COCOeval, k: int, a: int) -> int:
    """Non-ignored ground truths of category index ``k`` in area range ``a`` (crowds are ignored)."""
    n_img, n_area = len(evaluator.params.imgIds), len(evaluator.params.areaRng)
    start = k * n_area * n_img + a * n_img
    return sum(int((e["gtIgnore"] == 0).sum()) for e in evaluator.evalImgs[start : start + n_img] if e)


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


# ------------------------------------------------------------------------------------------ PR curves


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


# ------------------------------------------------------------------------------ matches and failures


@dataclass(frozen=True)
class Outcome:
    """What became of one detection (``tp`` or a false-positive kind) or one unmatched ground truth
    (``missed``); see the module docstring for the kinds.

    ``iou`` is: for ``tp`` the IoU with its match; ``duplicate`` and ``poor_localization`` the best IoU
    with a ground truth of its class (``gt_id``); ``wrong_class`` the IoU with the other class's ground
    truth (``gt_id``, of ``gt_category_id``); ``background`` the best IoU with any ground truth (0 and
    ``gt_id`` None when it touches none);
    ``missed`` the best IoU with a detection of its class (score ≥ the threshold; 0 if none).
    """

    kind: str
    image_id: int
    category_id: int  # the detection's class; for "missed", the ground truth's
    score: float  # the detection's score; nan for "missed"
    iou: float
    dt_id: int | None
    gt_id: int | None
    gt_category_id: int | None


@dataclass(frozen=True)
class ImageSummary:
    """One image's detections (score ≥ the threshold) against its ground truth at one IoU threshold."""

    image_id: int
    num_gt: int
    num_dt: int
    tp: int
    fp: int
    fn: int
    mean_iou: float  # mean IoU of the true positives with their matches; nan without any
    failures: dict[str, int] = field(default_factory=dict)  # count per failure kind

    @property
    def f1(self) -> float:
        """2·TP / (2·TP + FP + FN): 1 for a perfect image (also one with nothing to find and no detection)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0


def _geometry(ann: dict, coco: COCO, iou_type: str) -> list[float] | dict:
    """The box ``[x, y, w, h]`` or the mask RLE that COCOeval compares for ``iou_type``."""
    return ann["bbox"] if iou_type == "bbox" else coco.annToRLE(ann)


def _best_other_class(
    dt: dict, dt_coco: COCO, iou_type: str, gts: list[int], gt_geo: list, gt_cat: list[int]
) -> tuple[float, int | None, int | None]:
    """(IoU, id, class) of the ground truth of *another* class that overlaps detection ``dt`` most."""
    others = [j for j, c in enumerate(gt_cat) if c != dt["category_id"]]
    if not others:
        return 0.0, None, None
    cross = mask_utils.iou([_geometry(dt, dt_coco, iou_type)], [gt_geo[j] for j in others], [0] * len(others))
    j = others[int(np.argmax(cross[0]))]
    return float(np.max(cross[0])), gts[j], gt_cat[j]


def match_outcomes(evaluator: COCOeval, iou_thr: float = 0.5, score_thresh: float = 0.0) -> list[Outcome]:
    """Every non-ignored detection with score ≥ ``score_thresh`` and every unmatched ground truth, with
    its kind, from COCOeval's own matching at ``iou_thr`` (area range "all", the largest ``maxDets``),
    image by image in ``params.imgIds`` order.

    Matching is greedy in decreasing score, so keeping only the detections above a threshold changes no
    match among them: the outcomes equal those of a COCOeval run on the thresholded detections alone.
    Same-class IoUs come from ``evaluator.ious``; the IoU with ground truth of other classes (for
    ``wrong_class`` and ``background``) from ``pycocotools.mask.iou`` on the same boxes or masks.
    """
    _check(evaluator)
    p = evaluator.params
    t, a = _iou_index(evaluator, iou_thr), _area_index(evaluator, "all")
    thr = float(p.iouThrs[t])
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    gt_coco, dt_coco = evaluator.cocoGt, evaluator.cocoDt
    per_image: dict[int, list[dict]] = defaultdict(list)  # image id -> its evalImgs entries (one per class)
    for k in range(len(p.catIds)):
        for e in evaluator.evalImgs[k * n_area * n_img + a * n_img : k * n_area * n_img + (a + 1) * n_img]:
            if e is not None:
                per_image[e["image_id"]].append(e)

    outcomes: list[Outcome] = []
    for image_id in map(int, p.imgIds):  # evaluate() made them numpy ints
        entries = per_image.get(image_id, [])
        # the image's non-crowd ground truth of every evaluated class, for the IoUs across classes
        gts = [int(g) for e in entries for g, ig in zip(e["gtIds"], e["gtIgnore"], strict=True) if not ig]
        gt_geo = [_geometry(gt_coco.anns[g], gt_coco, p.iouType) for g in gts]
        gt_cat = [int(gt_coco.anns[g]["category_id"]) for g in gts]
        for e in entries:
            cat = int(e["category_id"])
            ious = np.asarray(evaluator.ious[(image_id, cat)])  # [D, G]: score order x _gts order
            column = {g["id"]: j for j, g in enumerate(evaluator._gts[image_id, cat])}
            own = [(int(g), column[g]) for g, ig in zip(e["gtIds"], e["gtIgnore"], strict=True) if not ig]
            rows = [r for r, s in enumerate(e["dtScores"]) if s >= score_thresh]
            taken = set()
            for r in rows:
                if e["dtIgnore"][t, r]:  # matched to a crowd region: neither true nor false positive
                    continue
                dt_id, score, matched = int(e["dtIds"][r]), float(e["dtScores"][r]), int(e["dtMatches"][t, r])
                if matched:  # dtMatches holds the matched ground truth's id, 0 for none
                    taken.add(matched)
                    iou = float(ious[r, column[matched]])
                    outcomes.append(Outcome("tp", image_id, cat, score, iou, dt_id, matched, cat))
                    continue
                # (IoU, ground-truth id, its class) of the best ground truth of the same / another class
                same = max(((float(ious[r, j]), g, cat) for g, j in own), default=(0.0, None, None))
                if same[0] >= thr:  # its object was taken by a higher-scoring detection of the class
                    kind, hit = "duplicate", same
                else:
                    other = _best_other_class(dt_coco.anns[dt_id], dt_coco, p.iouType, gts, gt_geo, gt_cat)
                    if other[0] >= thr:
                        kind, hit = "wrong_class", other
                    elif same[0] >= LOC_MIN_IOU:
                        kind, hit = "poor_localization", same
                    else:  # the ground truth it overlaps most, if any
                        kind, hit = "background", max(same, other, key=lambda x: x[0])
                        hit = hit if hit[0] > 0 else (0.0, None, None)
                outcomes.append(Outcome(kind, image_id, cat, score, hit[0], dt_id, hit[1], hit[2]))
            for g, j in own:
                if g not in taken:
                    best = max((float(ious[r, j]) for r in rows), default=0.0)
                    outcomes.append(Outcome("missed", image_id, cat, math.nan, best, None, g, cat))
    return outcomes


def failure_cases(
    evaluator: COCOeval,
    iou_thr: float = 0.5,
    score_thresh: float = 0.0,
    kinds: tuple[str, ...] = FAILURE_KINDS,
) -> list[Outcome]:
    """The failures among :func:`match_outcomes` (kinds in ``kinds``), the most confident first: false
    positives by decreasing score, then the missed objects by decreasing IoU of their best detection."""
    unknown = set(kinds) - set(FAILURE_KINDS)
    if unknown:
        raise ValueError(f"unknown failure kinds {sorted(unknown)}; choose from {FAILURE_KINDS}")
    fails = [o for o in match_outcomes(evaluator, iou_thr, score_thresh) if o.kind in kinds]
    return sorted(fails, key=lambda o: (o.kind == "missed", -(o.iou if o.kind == "missed" else o.score)))


def image_summaries(
    evaluator: COCOeval, iou_thr: float = 0.5, score_thresh: float = 0.0
) -> list[ImageSummary]:
    """Per image (``params.imgIds`` order): ground truths, detections (score ≥ ``score_thresh``), TP, FP,
    FN at ``iou_thr``, the mean IoU of the matches and the count of each failure kind.

    With the ground truth itself as the predictions: TP = number of ground truths, FP = FN = 0, mean IoU 1.
    """
    per_image: dict[int, list[Outcome]] = defaultdict(list)
    for o in match_outcomes(evaluator, iou_thr, score_thresh):
        per_image[o.image_id].append(o)
    rows = []
    for image_id in evaluator.params.imgIds:
        kinds = Counter(o.kind for o in per_image[image_id])
        tp_ious = [o.iou for o in per_image[image_id] if o.kind == "tp"]
        fp = sum(kinds[k] for k in FAILURE_KINDS if k != "missed")
        rows.append(ImageSummary(
            image_id=int(image_id), num_gt=kinds["tp"] + kinds["missed"], num_dt=kinds["tp"] + fp,
            tp=kinds["tp"], fp=fp, fn=kinds["missed"],
            mean_iou=float(np.mean(tp_ious)) if tp_ious else math.nan,
            failures={k: kinds[k] for k in FAILURE_KINDS},
        ))  # fmt: skip
    return rows
