"""mrcnn_lite.evaluation.interpret: the sentences notebook 07 prints follow the numbers they are given, and
the ground-truth evidence matches hand-computed values on a tiny data set."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_lite.evaluation import interpret


def _coco(objects: list[tuple[int, int, int, int]], h: int = 100, w: int = 120) -> COCO:
    """One image; each object a filled rectangle (x, y, w, h) drawn in order (later ones in front)."""
    owner = np.full((h, w), -1)
    for i, (x, y, bw, bh) in enumerate(objects):
        owner[y : y + bh, x : x + bw] = i
    anns = []
    for i, (x, y, bw, bh) in enumerate(objects):
        m = np.asfortranarray((owner == i).astype(np.uint8))
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": rle,
                     "area": float(m.sum()), "bbox": [float(x), float(y), float(bw), float(bh)],
                     "iscrowd": 0})  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": h, "width": w}], "annotations": anns,
                    "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_size_of_uses_coco_ranges():
    assert [interpret.size_of(a) for a in (10, 1023, 1024, 9215, 9216)] == [
        "small", "small", "medium", "medium", "large"
    ]  # fmt: skip


def test_ground_truth_evidence_by_hand():
    # a 100x60 rectangle (large once occluded: 6000 - 400 = 5600 px is medium) with a 20x20 one in front
    coco = _coco([(10, 20, 100, 60), (40, 40, 20, 20)])
    ev = interpret.ground_truth_evidence(coco, coco, 28)
    assert ev["medium"].val_objects == 1 and ev["small"].val_objects == 1 and ev["large"].val_objects == 0
    assert ev["medium"].box_clutter == pytest.approx(400 / 6000)  # the small square covers its box
    assert ev["small"].box_clutter == 0.0
    assert ev["small"].median_side == pytest.approx(20.0)
    assert ev["small"].train_share == pytest.approx(0.5)
    assert ev["small"].mask_ceiling == pytest.approx(1.0)  # a rectangle on pixel edges survives 28x28
    assert 0.9 < ev["medium"].mask_ceiling < 1.0  # the hole is resampled, not exact


def test_outcomes_by_size_counts_objects_and_confusions():
    coco = _coco([(0, 0, 10, 10), (20, 0, 10, 10), (0, 20, 60, 60)])  # small, small, medium
    outs = [
        SimpleNamespace(kind="tp", gt_id=1, iou=0.8),
        SimpleNamespace(kind="missed", gt_id=2, iou=0.0),
        SimpleNamespace(kind="wrong_class", gt_id=2, iou=0.7),
        SimpleNamespace(kind="missed", gt_id=3, iou=0.2),
        SimpleNamespace(kind="background", gt_id=None, iou=0.0),
    ]
    by = interpret.outcomes_by_size(outs, coco)
    assert by["small"].objects == 2 and by["small"].recall == 0.5 and by["small"].matched_iou == 0.8
    assert by["small"].wrong_class == 0.5
    assert by["medium"].recall == 0.0 and np.isnan(by["medium"].matched_iou)


def test_describe_failures_names_the_largest_false_positive_type():
    counts = {"duplicate": 3, "wrong_class": 50, "poor_localization": 10, "background": 20, "missed": 40}
    text = interpret.describe_failures(counts, "box", 25)
    assert "most frequent type is wrong class (50, 60%)" in text and "then background (20, 24%)" in text
    assert "40 objects are missed; 25 of them (62%)" in text
    counts["background"] = 80
    assert "most frequent type is background" in interpret.describe_failures(counts, "mask", 0)
    assert "no false positive" in interpret.describe_failures({"missed": 4}, "mask", 0)


def test_compare_box_mask_follows_the_values():
    box = {"AP": 0.30, "AP50": 0.50, "AP75": 0.30}
    lines = interpret.compare_box_mask(box, {"AP": 0.20, "AP50": 0.40, "AP75": 0.10})
    assert lines[0].startswith("box AP 30.0 is above mask AP 20.0, the paper's order")
    assert "= 30.0 points" in lines[2]
    flipped = interpret.compare_box_mask({"AP": 0.1, "AP50": 0.2, "AP75": 0.1}, box)
    assert "below" in flipped[0] and "unlike the paper" in flipped[0]


def _evidence(train: dict[str, int], ceiling: float = 0.98) -> dict:
    return {s: interpret.SizeEvidence(s, 10, train[s], train[s] / sum(train.values()), 20.0, 0.2, ceiling)
            for s in interpret.SIZES}  # fmt: skip


def _outcomes(recall: dict[str, float]) -> dict:
    return {s: interpret.SizeOutcomes(s, 10, recall[s], 0.8, 0.1) for s in interpret.SIZES}


def test_explain_sizes_states_the_order_and_the_evidence():
    ev = _evidence({"small": 300, "medium": 400, "large": 100})
    oc = _outcomes({"small": 0.6, "medium": 0.5, "large": 0.4})
    lines = interpret.explain_sizes({"APs": 0.2, "APm": 0.2, "APl": 0.1}, ev, oc)
    assert len(lines) == 3
    assert "small objects score above large ones, the reverse of the paper" in lines[0]
    assert "fewer in training (100 vs 300 objects)" in lines[1] and "recall 40% vs 60%" in lines[1]
    assert "it costs every size little" in lines[2]
    lines = interpret.explain_sizes({"APs": 0.1, "APm": 0.2, "APl": 0.3}, ev, oc)
    assert "below large ones, the same order as the paper" in lines[0]
    assert "worse on none" in lines[1]  # small objects are not fewer, nor found less often, here
    assert len(interpret.size_table(ev, oc)) == 9


def test_explain_sizes_calls_a_small_difference_a_tie():
    ev = _evidence({"small": 300, "medium": 400, "large": 100})
    oc = _outcomes({"small": 0.6, "medium": 0.5, "large": 0.59})
    lines = interpret.explain_sizes({"APs": 0.300, "APm": 0.2, "APl": 0.301}, ev, oc, "box")
    assert "about the same" in lines[0] and len(lines) == 1  # no reasons for a tie, no mask line for boxes


def test_describe_failures_without_a_runner_up():
    text = interpret.describe_failures({"wrong_class": 7, "missed": 2}, "mask", 2)
    assert "wrong class (7, 100%)." in text and "then" not in text
