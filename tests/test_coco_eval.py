"""COCO evaluation: pycocotools' own known answer, perfect predictions, and a hand-computed perturbation."""

from __future__ import annotations

import json

import pytest
import torch

from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.evaluation.coco_eval import STAT_NAMES, evaluate, load_ground_truth, to_coco_results


@pytest.mark.parametrize("iou_type,name", [("bbox", "fakebbox"), ("segm", "fakesegm")])
def test_official_fake_results_give_the_published_numbers(cocoapi_fake100, iou_type: str, name: str) -> None:
    expected = json.loads((cocoapi_fake100 / "expected_stats.json").read_text())
    gt = load_ground_truth(cocoapi_fake100 / "instances_val2014_100.json")
    stats = evaluate(gt, cocoapi_fake100 / f"instances_val2014_{name}100_results.json", iou_type,
                     img_ids=sorted(gt.getImgIds())[:100])  # fmt: skip
    got = [stats[k] for k in STAT_NAMES]
    assert got == pytest.approx(expected["full_precision"][iou_type], abs=1e-12)
    assert [round(v, 3) for v in got] == pytest.approx(expected["official_3dp"][iou_type], abs=1e-9)
    first = f"= {expected['official_3dp'][iou_type][0]:.3f}"
    assert stats.summary.splitlines()[0].endswith(first), stats.summary


def _ground_truth_as_predictions(ds: CocoDetection, shift: float = 0.0) -> list[dict]:
    results = []
    for i in range(len(ds)):
        _, t = ds[i]
        boxes = t["boxes"].as_subclass(torch.Tensor).double().clone()
        boxes[:, [0, 2]] += shift * (boxes[:, 2] - boxes[:, 0])[:, None]
        pred = {
            "boxes": boxes,
            "scores": torch.ones(len(boxes)),
            "labels": t["labels"],
            "masks": t["masks"][:, None],
        }
        results += to_coco_results(t["image_id"], pred, ds.label_to_cat_id)
    return results


def test_ground_truth_scores_ap_one_and_a_known_shift_scores_as_computed(shapes_small) -> None:
    ds = CocoDetection(shapes_small, "val2017")
    gt = ds.coco
    perfect = _ground_truth_as_predictions(ds)
    assert {r["category_id"] for r in perfect} <= set(ds.cat_ids)  # original (non-contiguous) ids
    for iou_type in ("bbox", "segm"):
        stats = evaluate(gt, perfect, iou_type)
        assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0), iou_type
    # Shifting every box right by a fifth of its width: IoU = (4/5) / (6/5) = 2/3, a true positive at the
    # thresholds 0.50, 0.55, 0.60, 0.65 and a miss at 0.70 ... 0.95, so AP = 4/10, AP50 = 1, AP75 = 0.
    shifted = evaluate(gt, _ground_truth_as_predictions(ds, shift=0.2), "bbox")
    assert shifted["AP"] == pytest.approx(0.4) and shifted["AP50"] == pytest.approx(1.0)
    assert shifted["AP75"] == pytest.approx(0.0)


def test_empty_results_and_bad_inputs(shapes_small, tmp_path) -> None:
    gt = load_ground_truth(shapes_small / "annotations" / "instances_val2017.json")
    assert set(evaluate(gt, [], "segm").stats.values()) == {0.0}
    with pytest.raises(ValueError, match="iou_type must be one of"):
        evaluate(gt, [], "keypoints")
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_ground_truth(tmp_path / "nothere.json")
    with pytest.raises(FileNotFoundError, match="results file not found: .*missing.json"):
        evaluate(gt, tmp_path / "missing.json", "bbox")
