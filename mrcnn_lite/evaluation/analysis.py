"""Reading a finished ``COCOeval``: AP per class and per size, precision-recall curves, and per-image
matches with their failure types.

Everything here reads what pycocotools already computed (:func:`~mrcnn_lite.evaluation.coco_eval.
run_cocoeval` returns a ``COCOeval`` after ``evaluate()`` and ``accumulate()``); nothing re-implements the
COCO protocol. Three modules, whose names all import from here as well:

- :mod:`~mrcnn_lite.evaluation.cocoeval_index`: the layout of ``eval["precision"]`` ([T, R, K, A, M]) and
  ``evalImgs``, and the indexing helpers;
- :mod:`~mrcnn_lite.evaluation.ap_tables`: :func:`per_class_ap`, :func:`per_area_ap` (paper §4: AP, AP50,
  AP75, APS, APM, APL) and :func:`pr_curve`;
- :mod:`~mrcnn_lite.evaluation.failures`: :func:`match_outcomes`, :func:`failure_cases` and
  :func:`image_summaries`, with the failure types of Hoiem et al. (ECCV 2012): ``tp``, ``duplicate``,
  ``wrong_class``, ``poor_localization``, ``background``, ``missed``.
"""

from __future__ import annotations

from mrcnn_lite.evaluation.ap_tables import AreaAP, ClassAP, PRCurve, per_area_ap, per_class_ap, pr_curve
from mrcnn_lite.evaluation.cocoeval_index import _area_index as _area_index
from mrcnn_lite.evaluation.cocoeval_index import _cat_index as _cat_index
from mrcnn_lite.evaluation.cocoeval_index import _check as _check
from mrcnn_lite.evaluation.cocoeval_index import _iou_index as _iou_index
from mrcnn_lite.evaluation.cocoeval_index import _max_det_index as _max_det_index
from mrcnn_lite.evaluation.cocoeval_index import _mean_valid as _mean_valid
from mrcnn_lite.evaluation.cocoeval_index import _num_gt as _num_gt
from mrcnn_lite.evaluation.failures import (
    FAILURE_KINDS,
    LOC_MIN_IOU,
    OUTCOME_KINDS,
    ImageSummary,
    Outcome,
    failure_cases,
    image_summaries,
    match_outcomes,
)
from mrcnn_lite.evaluation.failures import _best_other_class as _best_other_class
from mrcnn_lite.evaluation.failures import _geometry as _geometry

__all__ = [
    "FAILURE_KINDS",
    "LOC_MIN_IOU",
    "OUTCOME_KINDS",
    "AreaAP",
    "ClassAP",
    "ImageSummary",
    "Outcome",
    "PRCurve",
    "failure_cases",
    "image_summaries",
    "match_outcomes",
    "per_area_ap",
    "per_class_ap",
    "pr_curve",
]
