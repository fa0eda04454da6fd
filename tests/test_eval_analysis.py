"""Reading a finished COCOeval (mrcnn_lite.evaluation.analysis) against independent references.

- per-class AP: a COCOeval run restricted to that class (``params.catIds = [c]``);
- per-size AP50: a COCOeval run with the one IoU threshold 0.5 (its ``stats`` APs/APm/APl);
- the means over classes: ``stats`` (COCO's AP is the mean of the per-class APs);
- a precision-recall curve computed by hand on a three-detection example;
- matches: the ground truth fed back as predictions, and known perturbations that must show up as exactly
  the expected failure type; COCOeval's own recall per class.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.evaluation.analysis import (
    FAILURE_KINDS,
    failure_cases,
    image_summaries,
    match_outcomes,
    per_area_ap,
    per_class_ap,
    pr_curve,
)
from mrcnn_lite.evaluation.coco_eval import (
    from_coco_results,
    load_ground_truth,
    run_cocoeval,
    summarize,
    to_coco_results,
)

IOU_TYPES = ("bbox", "segm")


# ------------------------------------------------------------------------------ pycocotools' fake100


@pytest.fixture(scope="module")
def fake100(cocoapi_fake100) -> dict:
    """Per IoU type: the ground truth, the official fake results and the accumulated COCOeval."""
    out = {}
    for iou_type, name in (("bbox", "fakebbox"), ("segm", "fakesegm")):
        gt = load_ground_truth(cocoapi_fake100 / "instances_val2014_100.json")
        results = json.loads((cocoapi_fake100 / f"instances_val2014_{name}100_results.json").read_text())
        img_ids = sorted(gt.getImgIds())[:100]
        evaluator = run_cocoeval(gt, copy.deepcopy(results), iou_type, img_ids=img_ids)
        out[iou_type] = {"gt": gt, "results": results, "img_ids": img_ids, "eval": evaluator}
    return out


def _cocoeval(gt: COCO, results: list[dict], iou_type: str, img_ids: list[int], **params) -> COCOeval:
    """A plain COCOeval run (evaluate, accumulate, summarize) with some params changed: the reference."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.params.imgIds = img_ids
        for key, value in params.items():
            setattr(evaluator.params, key, value)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_per_class_ap_equals_cocoeval_restricted_to_the_class(fake100, iou_type: str) -> None:
    f = fake100[iou_type]
    rows = {r.cat_id: r for r in per_class_ap(f["eval"])}
    assert list(rows) == sorted(f["gt"].getCatIds())
    with_gt = {f["gt"].anns[a]["category_id"] for a in f["gt"].getAnnIds(imgIds=f["img_ids"], iscrowd=False)}
    # every class with ground truth, and a few without (AP -1 in both)
    checked = sorted(with_gt) + sorted(set(rows) - with_gt)[:3]
    for cat in checked:
        ref = _cocoeval(f["gt"], f["results"], iou_type, f["img_ids"], catIds=[cat])
        got = rows[cat]
        assert (got.ap, got.ap50, got.ap75) == pytest.approx(tuple(ref.stats[:3]), abs=1e-12), cat
        assert (got.ap == -1) == (cat not in with_gt)
        assert got.name == f["gt"].cats[cat]["name"]


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_means_of_per_class_ap_are_the_overall_stats(fake100, iou_type: str) -> None:
    evaluator = fake100[iou_type]["eval"]
    stats = summarize(evaluator).stats
    rows = per_class_ap(evaluator)
    for field, name in (("ap", "AP"), ("ap50", "AP50"), ("ap75", "AP75")):
        values = np.array([getattr(r, field) for r in rows])
        assert values[values > -1].mean() == pytest.approx(stats[name], abs=1e-12), name
    # a class without ground truth (-1) is left out of the mean, as COCO does
    assert any(r.ap == -1 for r in rows)


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_per_area_ap_equals_stats_and_a_single_threshold_cocoeval(fake100, iou_type: str) -> None:
    f = fake100[iou_type]
    stats = summarize(f["eval"]).stats
    rows = {r.area: r for r in per_area_ap(f["eval"])}
    assert list(rows) == ["all", "small", "medium", "large"]
    assert rows["all"].ap == pytest.approx(stats["AP"], abs=1e-12)
    assert rows["all"].ar == pytest.approx(stats["AR100"], abs=1e-12)
    for area, suffix in (("small", "s"), ("medium", "m"), ("large", "l")):
        assert rows[area].ap == pytest.approx(stats[f"AP{suffix}"], abs=1e-12), area
        assert rows[area].ar == pytest.approx(stats[f"AR{suffix}"], abs=1e-12), area
    # AP50 and AP75 per size are not in stats: a COCOeval with that one IoU threshold gives them as APs/m/l
    for thr, field in ((0.5, "ap50"), (0.75, "ap75")):
        ref = _cocoeval(f["gt"], f["results"], iou_type, f["img_ids"], iouThrs=np.array([thr]))
        got = [getattr(rows[a], field) for a in ("all", "small", "medium", "large")]
        assert got == pytest.approx([ref.stats[0], *ref.stats[3:6]], abs=1e-12), field
    # the ground truth counted per size, straight from the annotations (crowds excluded)
    anns = [f["gt"].anns[a] for a in f["gt"].getAnnIds(imgIds=f["img_ids"])]
    for r in rows.values():
        lo, hi = r.range
        assert r.num_gt == sum(1 for a in anns if not a["iscrowd"] and lo <= a["area"] <= hi), r.area


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_pr_curves_are_the_precision_array(fake100, iou_type: str) -> None:
    evaluator = fake100[iou_type]["eval"]
    precision = evaluator.eval["precision"]
    stats = summarize(evaluator).stats
    by_cat = {r.cat_id: r for r in per_class_ap(evaluator)}
    cat = max(by_cat, key=lambda c: by_cat[c].num_gt)  # the class with the most objects (person)
    k = list(evaluator.params.catIds).index(cat)
    for t, thr in ((0, 0.5), (5, 0.75)):
        curve = pr_curve(evaluator, thr, cat_id=cat)
        np.testing.assert_array_equal(curve.precision, precision[t, :, k, 0, 2])
        np.testing.assert_array_equal(curve.scores, evaluator.eval["scores"][t, :, k, 0, 2])
        np.testing.assert_allclose(curve.recall, np.linspace(0, 1, 101))
        assert curve.ap == pytest.approx(by_cat[cat].ap50 if thr == 0.5 else by_cat[cat].ap75, abs=1e-12)
        assert (np.diff(curve.precision) <= 0).all()  # interpolated: never rises with recall
    # the mean curve over classes: its area is AP50 / AP75; small objects: their slice
    assert pr_curve(evaluator, 0.5).ap == pytest.approx(stats["AP50"], abs=1e-12)
    assert pr_curve(evaluator, 0.75).ap == pytest.approx(stats["AP75"], abs=1e-12)
    small = pr_curve(evaluator, 0.5, cat_id=cat, area="small", max_det=10)
    np.testing.assert_array_equal(small.precision, precision[0, :, k, 1, 1])
    with pytest.raises(ValueError, match="not one of params.iouThrs"):
        pr_curve(evaluator, 0.52)
    with pytest.raises(ValueError, match="area must be one of"):
        pr_curve(evaluator, 0.5, area="tiny")
    with pytest.raises(ValueError, match="max_det must be one of"):
        pr_curve(evaluator, 0.5, max_det=50)
    no_gt = next(r.cat_id for r in by_cat.values() if r.ap == -1)
    with pytest.raises(ValueError, match="no ground truth"):
        pr_curve(evaluator, 0.5, cat_id=no_gt)


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_true_positives_per_class_give_cocoevals_recall(fake100, iou_type: str) -> None:
    evaluator = fake100[iou_type]["eval"]
    outcomes = match_outcomes(evaluator, iou_thr=0.75)
    tp = Counter(o.category_id for o in outcomes if o.kind == "tp")
    rows = per_class_ap(evaluator)
    t = list(np.round(evaluator.params.iouThrs, 2)).index(0.75)
    for k, r in enumerate(rows):
        if r.num_gt:
            assert tp[r.cat_id] / r.num_gt == pytest.approx(evaluator.eval["recall"][t, k, 0, 2], abs=1e-12)
    summaries = image_summaries(evaluator, iou_thr=0.75)
    assert sum(s.num_gt for s in summaries) == per_area_ap(evaluator)[0].num_gt
    assert [s.image_id for s in summaries] == list(evaluator.params.imgIds)
    assert {o.kind for o in outcomes} <= {"tp", *FAILURE_KINDS}


@pytest.mark.realdata
@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_a_score_threshold_equals_evaluating_the_thresholded_detections(fake100, iou_type: str) -> None:
    f = fake100[iou_type]
    kept = [r for r in f["results"] if r["score"] >= 0.5]
    assert 0 < len(kept) < len(f["results"])
    ref = run_cocoeval(f["gt"], copy.deepcopy(kept), iou_type, img_ids=f["img_ids"])
    got = image_summaries(f["eval"], score_thresh=0.5)
    want = image_summaries(ref)
    assert [(s.image_id, s.num_gt, s.num_dt, s.tp, s.fp, s.fn, s.failures) for s in got] == [
        (s.image_id, s.num_gt, s.num_dt, s.tp, s.fp, s.fn, s.failures) for s in want
    ]
    np.testing.assert_allclose([s.mean_iou for s in got], [s.mean_iou for s in want], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- a hand-computed curve


def _in_memory(images: list[dict], anns: list[dict], cats: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_pr_curve_of_a_hand_computed_example() -> None:
    """Two objects; detections TP (0.9), FP (0.8), TP (0.7). Cumulative (recall, precision): (1/2, 1),
    (1/2, 1/2), (1, 2/3). Interpolated: precision 1 up to recall 0.5 (51 of COCO's 101 recall points),
    2/3 from 0.51 to 1 (50 points); AP50 = (51 + 50 * 2/3) / 101."""
    boxes = [[10, 10, 20, 20], [50, 50, 20, 20]]
    gt = _in_memory(
        [{"id": 1, "width": 100, "height": 100}],
        [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 400, "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],  # fmt: skip
        [{"id": 1, "name": "thing"}],
    )
    results = [
        {"image_id": 1, "category_id": 1, "bbox": boxes[0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [80, 5, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": boxes[1], "score": 0.7},
    ]
    evaluator = run_cocoeval(gt, results, "bbox")
    curve = pr_curve(evaluator, 0.5, cat_id=1)
    expected = np.where(np.arange(101) <= 50, 1.0, 2 / 3)
    np.testing.assert_allclose(curve.precision, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.scores, np.where(np.arange(101) <= 50, 0.9, 0.7))
    assert curve.ap == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert curve.max_recall == 1.0
    assert per_class_ap(evaluator)[0].ap50 == pytest.approx(curve.ap)
    assert [(o.kind, o.score) for o in match_outcomes(evaluator)] == [
        ("tp", 0.9), ("background", 0.8), ("tp", 0.7)
    ]  # fmt: skip
    (summary,) = image_summaries(evaluator)
    assert (summary.tp, summary.fp, summary.fn, summary.f1) == (2, 1, 0, pytest.approx(0.8))


# ----------------------------------------------------------------------- ground truth and perturbations


@pytest.fixture()
def shapes_gt(shapes_small) -> COCO:
    """A fresh ground truth per test (COCOeval converts its segmentations in place)."""
    return load_ground_truth(shapes_small / "annotations" / "instances_val2017.json")


def _gt_as_results(gt: COCO) -> list[dict]:
    """Every ground-truth object as a detection, with distinct scores (first annotation highest)."""
    anns = [gt.anns[a] for a in sorted(gt.anns)]
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
         "segmentation": copy.deepcopy(a["segmentation"]), "score": 0.99 - 0.001 * i, "gt": a["id"]}
        for i, a in enumerate(anns)
    ]  # fmt: skip


def _failures(gt: COCO, results: list[dict], iou_type: str = "bbox", **kwargs) -> list[tuple]:
    evaluator = run_cocoeval(gt, results, iou_type)
    return [(o.kind, o.gt_id, o.category_id, o.gt_category_id) for o in failure_cases(evaluator, **kwargs)]


@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_ground_truth_as_predictions_is_all_true_positives(shapes_gt, iou_type: str) -> None:
    evaluator = run_cocoeval(shapes_gt, _gt_as_results(shapes_gt), iou_type)
    summaries = image_summaries(evaluator)
    assert len(summaries) == len(shapes_gt.imgs) == 6
    for s in summaries:
        n = len(shapes_gt.getAnnIds(imgIds=[s.image_id], iscrowd=False))
        assert (s.num_gt, s.num_dt, s.tp, s.fp, s.fn) == (n, n, n, 0, 0)
        assert s.f1 == 1.0
        assert s.mean_iou == pytest.approx(1.0) if n else math.isnan(s.mean_iou)  # nan: nothing matched
        assert set(s.failures.values()) == {0}
    assert failure_cases(evaluator) == []
    outcomes = match_outcomes(evaluator)
    assert all(o.kind == "tp" and o.iou == pytest.approx(1.0) for o in outcomes)
    # every object matched once; the crowd regions' "detections" are ignored (neither TP nor FP)
    assert sorted(o.gt_id for o in outcomes) == sorted(shapes_gt.getAnnIds(iscrowd=False))
    assert len(shapes_gt.getAnnIds(iscrowd=True)) > 0
    assert all(r.ap == pytest.approx(1.0) for r in per_class_ap(evaluator))


def test_each_perturbation_is_its_failure_type(shapes_gt) -> None:
    base = _gt_as_results(shapes_gt)
    cats = sorted(shapes_gt.cats)
    target = base[3]  # one object, its ground-truth id in target["gt"]
    obj, cat = target["gt"], target["category_id"]

    dropped = [r for r in base if r is not target]
    assert _failures(shapes_gt, copy.deepcopy(dropped)) == [("missed", obj, cat, cat)]

    relabelled = copy.deepcopy(base)
    other = next(c for c in cats if c != cat)
    relabelled[3]["category_id"] = other
    assert _failures(shapes_gt, relabelled) == [("wrong_class", obj, other, cat), ("missed", obj, cat, cat)]

    duplicated = [*copy.deepcopy(base), {**copy.deepcopy(target), "score": 0.5}]
    assert _failures(shapes_gt, duplicated) == [("duplicate", obj, cat, cat)]
    # ... below a score threshold the duplicate is not counted at all
    assert _failures(shapes_gt, copy.deepcopy(duplicated), score_thresh=0.6) == []

    # shift one box right by half its width: IoU = (1/2) / (3/2) = 1/3, in [0.1, 0.5)
    shifted = copy.deepcopy(base)
    x, y, w, h = shifted[3]["bbox"]
    shifted[3]["bbox"] = [x + w / 2, y, w, h]
    evaluator = run_cocoeval(shapes_gt, shifted, "bbox")
    fails = failure_cases(evaluator)
    assert [(o.kind, o.gt_id) for o in fails] == [("poor_localization", obj), ("missed", obj)]
    assert fails[0].iou == pytest.approx(1 / 3) and fails[1].iou == pytest.approx(1 / 3)

    # a fifth of its width: IoU = (4/5) / (6/5) = 2/3, a hit at 0.5 but poor localization at 0.75
    nudged = copy.deepcopy(base)
    nudged[3]["bbox"] = [x + w / 5, y, w, h]
    evaluator = run_cocoeval(shapes_gt, nudged, "bbox")
    assert failure_cases(evaluator, iou_thr=0.5) == []
    image = next(s for s in image_summaries(evaluator) if s.image_id == target["image_id"])
    assert image.mean_iou == pytest.approx((image.tp - 1 + 2 / 3) / image.tp)
    fails = failure_cases(evaluator, iou_thr=0.75)
    assert [(o.kind, o.gt_id) for o in fails] == [("poor_localization", obj), ("missed", obj)]
    assert fails[0].iou == pytest.approx(2 / 3)

    # a small box where no object is: background, IoU 0
    img = shapes_gt.imgs[target["image_id"]]
    boxes = [shapes_gt.anns[a]["bbox"] for a in shapes_gt.getAnnIds(imgIds=[img["id"]])]
    free = next(
        [float(x0), float(y0), 6.0, 6.0]
        for y0 in range(0, img["height"] - 6, 3) for x0 in range(0, img["width"] - 6, 3)
        if all(x0 + 6 <= bx or bx + bw <= x0 or y0 + 6 <= by or by + bh <= y0 for bx, by, bw, bh in boxes)
    )  # fmt: skip
    stray = {"image_id": img["id"], "category_id": cat, "bbox": free, "score": 0.5}
    evaluator = run_cocoeval(shapes_gt, [*copy.deepcopy(base), stray], "bbox")
    (fail,) = failure_cases(evaluator)
    assert (fail.kind, fail.iou, fail.gt_id, fail.score) == ("background", 0.0, None, 0.5)


def test_a_relabelled_mask_is_a_wrong_class_in_mask_ap_too(shapes_gt) -> None:
    base = _gt_as_results(shapes_gt)
    cat = base[0]["category_id"]
    other = next(c for c in sorted(shapes_gt.cats) if c != cat)
    base[0]["category_id"] = other
    evaluator = run_cocoeval(shapes_gt, base, "segm")
    fails = failure_cases(evaluator)
    assert [(o.kind, o.gt_id) for o in fails] == [("wrong_class", base[0]["gt"]), ("missed", base[0]["gt"])]
    assert fails[0].iou == pytest.approx(1.0) and fails[0].gt_category_id == cat
    s = next(s for s in image_summaries(evaluator) if s.image_id == base[0]["image_id"])
    assert (s.fp, s.fn, s.failures["wrong_class"], s.failures["missed"]) == (1, 1, 1, 1)


def test_no_detections_and_bad_inputs(shapes_gt) -> None:
    evaluator = run_cocoeval(shapes_gt, [], "segm")
    assert summarize(evaluator)["AP"] == 0.0
    assert all(r.ap == 0.0 for r in per_class_ap(evaluator))
    summaries = image_summaries(evaluator)
    assert all(s.tp == 0 and s.fn == s.num_gt and math.isnan(s.mean_iou) for s in summaries)
    assert {o.kind for o in failure_cases(evaluator)} == {"missed"}
    assert failure_cases(evaluator, kinds=("duplicate",)) == []
    with pytest.raises(ValueError, match="unknown failure kinds"):
        failure_cases(evaluator, kinds=("typo",))
    fresh = COCOeval(shapes_gt, iouType="bbox")
    with pytest.raises(ValueError, match="not been accumulated"):
        per_class_ap(fresh)


def test_from_coco_results_inverts_to_coco_results() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand((3, 1, 20, 30), generator=gen) > 0.5
    xy = torch.rand((3, 2), generator=gen) * 10
    pred = {
        "boxes": torch.cat([xy, xy + 5 + torch.rand((3, 2), generator=gen) * 10], dim=1),
        "scores": torch.tensor([0.3, 0.9, 0.6]),
        "labels": torch.tensor([1, 2, 1]),
        "masks": masks,
    }
    label_to_cat = {1: 5, 2: 9}
    results = to_coco_results(7, pred, label_to_cat) + to_coco_results(8, pred, label_to_cat)
    back = from_coco_results(results, 7, {5: 1, 9: 2}, 20, 30, score_thresh=0.5)
    order = [1, 2]  # scores 0.9, 0.6: highest first, 0.3 below the threshold
    torch.testing.assert_close(back["boxes"], pred["boxes"][order])
    assert torch.equal(back["labels"], pred["labels"][order]) and torch.equal(
        back["scores"], pred["scores"][order]
    )
    assert torch.equal(back["masks"], masks[order, 0])
    empty = from_coco_results(results, 99, {5: 1, 9: 2}, 20, 30)
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 20, 30)
