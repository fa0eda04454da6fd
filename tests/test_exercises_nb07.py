"""Notebook 07's exercise checks: each passes on a correct solution and fails on the stub and on the usual
wrong answers, with a message that names the mistake."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_lite.exercises import ExerciseError, nb07


def stub(*args, **kwargs):
    raise NotImplementedError()


# ----------------------------------------------------------------------------- AP50


def ap50_right(e):
    t = int(np.argmin(np.abs(e.params.iouThrs - 0.5)))
    s = e.eval["precision"][t, :, :, 0, -1]
    return float(s[s > -1].mean())


def ap50_with_minus_ones(e):  # averages the -1 of a class without ground truth too
    return float(e.eval["precision"][0, :, :, 0, -1].mean())


def ap50_one_detection(e):  # maxDets index 0: one detection per image
    s = e.eval["precision"][0, :, :, 0, 0]
    return float(s[s > -1].mean())


def ap_all_thresholds(e):  # AP, not AP50
    s = e.eval["precision"][:, :, :, 0, -1]
    return float(s[s > -1].mean())


def test_ap50_passes_on_the_solution():
    nb07.check_ap50_from_eval(ap50_right)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (stub, "not written yet"),
        (ap50_with_minus_ones, "class without any ground truth"),
        (ap50_one_detection, "COCOeval's AP50"),
        (ap_all_thresholds, "COCOeval's AP50"),
    ],
)
def test_ap50_fails(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb07.check_ap50_from_eval(fn)


def test_synthetic_data_has_a_class_without_ground_truth():
    """The edge case of Your turn 1 exists: -1 entries in the precision array, for class 3 only."""
    e = nb07.cocoeval_bbox(*nb07._synthetic(2, 30, True))
    p = e.eval["precision"][0, :, :, 0, -1]
    assert (p[:, 2] == -1).all() and (p[:, :2] > -1).all()


# ----------------------------------------------------------------------------- mask IoU


def _decode(a, b):
    return mask_utils.decode(a).astype(bool), mask_utils.decode(b).astype(bool)


def iou_right(a, b, crowd=False):
    x, y = _decode(a, b)
    union = x.sum() if crowd else (x | y).sum()
    return float((x & y).sum() / union) if union else 0.0


def iou_ignores_crowd(a, b, crowd=False):
    x, y = _decode(a, b)
    union = (x | y).sum()
    return float((x & y).sum() / union) if union else 0.0


def iou_uint8_sum(a, b, crowd=False):  # adds the 0/1 uint8 masks: intersection = pixels where the sum is 2
    x, y = mask_utils.decode(a), mask_utils.decode(b)
    s = x + y
    union = x.sum() if crowd else (s > 0).sum()
    return float((s == 2).sum() / union) if union else 0.0


def iou_divides_by_zero(a, b, crowd=False):
    x, y = _decode(a, b)
    union = x.sum() if crowd else (x | y).sum()
    return (x & y).sum() / int(union)


def iou_of_boxes(a, b, crowd=False):  # the boxes' IoU instead of the masks'
    return float(mask_utils.iou([mask_utils.toBbox(a)], [mask_utils.toBbox(b)], [int(crowd)])[0, 0])


def test_mask_iou_passes_on_the_solution():
    nb07.check_mask_iou(iou_right)
    nb07.check_mask_iou(iou_uint8_sum)  # a correct variant


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (stub, "not written yet"),
        (iou_ignores_crowd, "area of rle_a alone"),
        (iou_divides_by_zero, "ZeroDivisionError|return 0|pycocotools"),
        (iou_of_boxes, "pycocotools"),
    ],
)
def test_mask_iou_fails(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb07.check_mask_iou(fn)


# ----------------------------------------------------------------------------- interpolated AP


def _curve(is_tp, num_gt):
    tp = np.cumsum(is_tp)
    fp = np.cumsum(np.logical_not(is_tp))
    return tp / num_gt, tp / np.maximum(tp + fp, 1)


def ap_right(is_tp, num_gt):
    rc, pr = _curve(is_tp, num_gt)
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, np.linspace(0, 1, 101), side="left")
    return float(np.mean([pr[i] if i < len(pr) else 0.0 for i in idx]))


def ap_not_interpolated(is_tp, num_gt):
    rc, pr = _curve(is_tp, num_gt)
    idx = np.searchsorted(rc, np.linspace(0, 1, 101), side="left")
    return float(np.mean([pr[i] if i < len(pr) else 0.0 for i in idx]))


def ap_voc11(is_tp, num_gt):
    rc, pr = _curve(is_tp, num_gt)
    return float(np.mean([max(pr[rc >= r], default=0.0) for r in np.linspace(0, 1, 11)]))


def ap_area(is_tp, num_gt):  # sum of precision x recall step (scikit-learn's average_precision_score)
    rc, pr = _curve(is_tp, num_gt)
    return float(np.sum(np.diff(np.concatenate([[0.0], rc])) * pr))


def test_interpolated_ap_passes_on_the_solution():
    nb07.check_interpolated_ap(ap_right)


@pytest.mark.parametrize("fn", [ap_not_interpolated, ap_voc11, ap_area])
def test_interpolated_ap_fails_on_wrong_answers(fn):
    with pytest.raises(ExerciseError, match="COCOeval"):
        nb07.check_interpolated_ap(fn)


def test_interpolated_ap_fails_on_the_stub():
    with pytest.raises(ExerciseError, match="not written yet"):
        nb07.check_interpolated_ap(stub)


def test_reference_ranking_values():
    """The check's COCOeval reference on rankings whose AP is known by hand."""
    assert nb07.cocoeval_ap50_of_ranking([True] * 3, 3) == pytest.approx(1.0)
    assert nb07.cocoeval_ap50_of_ranking([False] * 3, 2) == pytest.approx(0.0)
    # one object, found second: precision 1/2 at every recall point
    assert nb07.cocoeval_ap50_of_ranking([False, True], 1) == pytest.approx(0.5)
