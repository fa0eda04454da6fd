"""Per-detection outcomes of a finished ``COCOeval`` and their failure types.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.evaluation.cocoeval_index import _area_index, _check, _iou_index

FAILURE_KINDS = ("duplicate", "wrong_class", "poor_localization", "background", "missed")
OUTCOME_KINDS = ("tp", *FAILURE_KINDS)
LOC_MIN_IOU = 0.1  # Hoiem et al.'s lower bound for a localisation error


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
    t, a = _iou_index(evaluator, iou_thr), _area_index(evaluator, "all")
    per_image = _entries_by_image(evaluator, a)
    outcomes: list[Outcome] = []
    for image_id in map(int, evaluator.params.imgIds):  # evaluate() made them numpy ints
        outcomes += _image_outcomes(evaluator, image_id, per_image.get(image_id, []), t, score_thresh)
    return outcomes


def _entries_by_image(evaluator: COCOeval, a: int) -> dict[int, list[dict]]:
    """Image id -> its ``evalImgs`` entries in area range ``a`` (one per class that has any)."""
    p = evaluator.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    per_image: dict[int, list[dict]] = defaultdict(list)
    for k in range(len(p.catIds)):
        for e in evaluator.evalImgs[k * n_area * n_img + a * n_img : k * n_area * n_img + (a + 1) * n_img]:
            if e is not None:
                per_image[e["image_id"]].append(e)
    return per_image


#: the non-crowd ground truth of one image, every evaluated class: (ids, boxes or masks, classes)
_Ground = tuple[list[int], list, list[int]]
#: (IoU, ground-truth id, its class) of the ground truth a detection is charged to
_Hit = tuple[float, int | None, int | None]


def _image_outcomes(
    evaluator: COCOeval, image_id: int, entries: list[dict], t: int, score_thresh: float
) -> list[Outcome]:
    """The outcomes of one image, class by class (its ``entries``): each class's detections in score
    order, then its missed ground truths."""
    gt_coco, iou_type = evaluator.cocoGt, evaluator.params.iouType
    # the image's non-crowd ground truth of every evaluated class, for the IoUs across classes
    gts = [int(g) for e in entries for g, ig in zip(e["gtIds"], e["gtIgnore"], strict=True) if not ig]
    gt_geo = [_geometry(gt_coco.anns[g], gt_coco, iou_type) for g in gts]
    gt_cat = [int(gt_coco.anns[g]["category_id"]) for g in gts]
    ground = (gts, gt_geo, gt_cat)
    return [o for e in entries for o in _class_outcomes(evaluator, image_id, e, t, score_thresh, ground)]


def _class_outcomes(
    evaluator: COCOeval, image_id: int, e: dict, t: int, score_thresh: float, ground: _Ground
) -> list[Outcome]:
    """The outcomes of one image's ``evalImgs`` entry ``e`` (one class) at IoU threshold index ``t``."""
    p = evaluator.params
    thr = float(p.iouThrs[t])
    dt_coco = evaluator.cocoDt
    cat = int(e["category_id"])
    ious = np.asarray(evaluator.ious[(image_id, cat)])  # [D, G]: score order x _gts order
    column = {g["id"]: j for j, g in enumerate(evaluator._gts[image_id, cat])}
    own = [(int(g), column[g]) for g, ig in zip(e["gtIds"], e["gtIgnore"], strict=True) if not ig]
    rows = [r for r, s in enumerate(e["dtScores"]) if s >= score_thresh]
    taken = set()
    outcomes: list[Outcome] = []
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
        other = partial(_best_other_class, dt_coco.anns[dt_id], dt_coco, p.iouType, *ground)
        kind, hit = _false_positive_kind(same, other, thr)
        outcomes.append(Outcome(kind, image_id, cat, score, hit[0], dt_id, hit[1], hit[2]))
    for g, j in own:
        if g not in taken:
            best = max((float(ious[r, j]) for r in rows), default=0.0)
            outcomes.append(Outcome("missed", image_id, cat, math.nan, best, None, g, cat))
    return outcomes


def _false_positive_kind(same: _Hit, other_class: Callable[[], _Hit], thr: float) -> tuple[str, _Hit]:
    """The kind of an unmatched detection and the ground truth it is charged to, from its best overlap
    ``same`` with its own class and (computed only when needed) ``other_class()`` with another class."""
    if same[0] >= thr:  # its object was taken by a higher-scoring detection of the class
        return "duplicate", same
    other = other_class()
    if other[0] >= thr:
        return "wrong_class", other
    if same[0] >= LOC_MIN_IOU:
        return "poor_localization", same
    hit = max(same, other, key=lambda x: x[0])  # the ground truth it overlaps most, if any
    return "background", hit if hit[0] > 0 else (0.0, None, None)


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
