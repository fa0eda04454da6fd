"""COCO evaluation: pycocotools' own known answer, perfect predictions, a hand-computed perturbation, and
ground truth with unusable annotations against pycocotools on a hand-cleaned copy."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.config import get_config
from mrcnn_lite.data.coco import CocoDetection, CocoFormatError, DegenerateAnnotationWarning
from mrcnn_lite.data.masks import encode
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.inference import evaluate_model
from mrcnn_lite.evaluation.coco_eval import (
    STAT_NAMES,
    UnusableGroundTruthWarning,
    check_ground_truth,
    evaluate,
    load_ground_truth,
    to_coco_results,
)
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN


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


# ---------------------------------------------------------------- unusable ground truth (hand-written file)

DEGENERATE = Path(__file__).parent / "data" / "degenerate_gt"
GT_FILE = DEGENERATE / "instances_val2017.json"
SEGM_MESSAGE = (
    "10 annotations in {f} are unusable for segm evaluation (3 polygons with <3 points, 1 polygon with an "
    "odd number of coordinates, 1 empty RLE, 1 polygon with a coordinate that is not a finite number, 1 "
    "segmentation that is neither polygons nor RLE, 1 RLE of another size than its image, 1 area that is "
    "not a finite number, 1 polygon that covers no pixel); treated as ignore regions (iscrowd=1: a detection "
    "on one is neither a true nor a false positive); 1 polygon piece with <3 points in {f} dropped from "
    "otherwise usable segmentations"
)
BBOX_MESSAGE = (
    "4 annotations in {f} are unusable for bbox evaluation (1 zero-area box, 1 box with a negative width or "
    "height, 1 box that is not 4 finite numbers, 1 area that is not a finite number); treated as ignore "
    "regions (iscrowd=1: a detection on one is neither a true nor a false positive)"
)


def _rect(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((40, 50), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def _det(image_id: int, cat: int, x: int, y: int, w: int, h: int, score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": score,
            "segmentation": encode(_rect(x, y, w, h))}  # fmt: skip


# detections on the file's objects; "on N" = on annotation N (see each one's "note" in the file)
GOOD_DETECTIONS = [
    _det(1, 1, 5, 6, 10, 10, 0.9),  # on 1, exact
    _det(1, 1, 28, 5, 12, 12, 0.6),  # on 2, shifted by 3 px: IoU 0.6
    _det(1, 1, 18, 30, 6, 6, 0.85),  # background: a false positive
    _det(2, 2, 10, 10, 14, 14, 0.75),  # on 3
    _det(3, 1, 35, 25, 10, 10, 0.3),  # on 18
    _det(3, 2, 5, 20, 10, 10, 0.35),  # on 17 (its good piece)
]
ON_BAD_POLYGONS = [  # good boxes, unusable segmentations: true positives for bbox, ignored for segm
    _det(1, 1, 30, 25, 10, 8, 0.95),  # on 4
    _det(2, 2, 30, 28, 6, 6, 0.65),  # on 5
    _det(2, 1, 35, 5, 10, 10, 0.5),  # on 7
    _det(3, 1, 2, 2, 5, 5, 0.45),  # on 10
    _det(3, 1, 20, 20, 6, 6, 0.2),  # on 12
    _det(3, 2, 30, 5, 8, 8, 0.25),  # on 13
]
ON_BAD_BOXES = [  # good polygons, unusable boxes: true positives for segm, ignored for bbox
    _det(1, 2, 5, 25, 8, 10, 0.7),  # on 8
    _det(2, 1, 34, 20, 6, 6, 0.55),  # on 9
]
ON_IGNORED = [_det(1, 2, 40, 2, 8, 8, 0.8), _det(2, 2, 0, 30, 10, 8, 0.4)]  # on 14 (area NaN), on crowd 16


def _pycocotools_stats(gt_file: Path, results: list[dict], iou_type: str) -> list[float]:
    """The reference: pycocotools alone on a file, nothing of ours in between."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def _ours(gt: object, results: list[dict], iou_type: str) -> tuple[list[float], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = evaluate(gt, copy.deepcopy(results), iou_type)
    return [stats[k] for k in STAT_NAMES], [
        str(w.message) for w in caught if issubclass(w.category, UnusableGroundTruthWarning)
    ]


def test_raw_pycocotools_crashes_on_the_degenerate_file() -> None:
    """The bug this guards against: COCOeval dies on the file's 2-point polygon (read as a box)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT_FILE))
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(GOOD_DETECTIONS)), "segm")
        with pytest.raises((TypeError, IndexError, Exception)):
            evaluator.evaluate()


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_unusable_ground_truth_is_ignored_and_ap_equals_pycocotools_on_a_hand_cleaned_copy(
    iou_type: str,
) -> None:
    results = GOOD_DETECTIONS + ON_BAD_POLYGONS + ON_BAD_BOXES + ON_IGNORED
    got, messages = _ours(GT_FILE, results, iou_type)
    expected = _pycocotools_stats(DEGENERATE / f"cleaned_for_{iou_type}.json", results, iou_type)
    assert got == expected  # all twelve stats, exactly
    assert 0.2 < got[0] < 0.9  # not a degenerate comparison: some hits, some misses
    text = {"segm": SEGM_MESSAGE, "bbox": BBOX_MESSAGE}[iou_type].format(f=GT_FILE)
    assert messages == [text]


def test_a_detection_on_an_ignore_region_is_neither_true_nor_false_positive() -> None:
    """Independent of the cleaned copies: adding detections on the regions a type ignores changes no AP
    and no AR at 100 detections of that type, while for the other type the same detections are true
    positives (the object counts). (AR1 and AR10 may drop: COCOeval's per-image detection caps count
    ignored detections too, as they do on crowd regions.)"""
    uncapped = [k for k in STAT_NAMES if k not in ("AR1", "AR10")]

    def stats(results: list[dict], iou_type: str) -> dict[str, float]:
        return dict(zip(STAT_NAMES, _ours(GT_FILE, results, iou_type)[0], strict=True))

    base = GOOD_DETECTIONS
    segm = stats(base + ON_BAD_BOXES, "segm")
    more = stats(base + ON_BAD_BOXES + ON_BAD_POLYGONS + ON_IGNORED, "segm")
    assert [more[k] for k in uncapped] == [segm[k] for k in uncapped]
    bbox = stats(base + ON_BAD_POLYGONS, "bbox")
    more = stats(base + ON_BAD_POLYGONS + ON_BAD_BOXES + ON_IGNORED, "bbox")
    assert [more[k] for k in uncapped] == [bbox[k] for k in uncapped]
    # a good box with a bad polygon is still an object to find for box AP: finding it raises recall and AP
    assert bbox["AR100"] > stats(base, "bbox")["AR100"] and bbox["AP"] > stats(base, "bbox")["AP"]
    assert segm["AR100"] > stats(base, "segm")["AR100"]  # and a good polygon with a bad box for mask AP


def test_check_counts_only_the_evaluated_images_and_leaves_the_ground_truth_untouched() -> None:
    gt = load_ground_truth(GT_FILE)
    before = copy.deepcopy(gt.dataset["annotations"])
    check = check_ground_truth(gt, img_ids=[2])  # image 2: 5 (1 point), 6 (odd), 7 (empty), 9 (negative box)
    assert dict(check.unusable["segm"]) == {
        "polygon with <3 points": 2, "polygon with an odd number of coordinates": 1,
    }  # fmt: skip
    assert dict(check.unusable["bbox"]) == {"box with a negative width or height": 1}
    assert check.dropped_pieces == 0  # 17 is on image 3
    _ours(gt, GOOD_DETECTIONS + ON_BAD_POLYGONS, "segm")
    assert json.dumps(gt.dataset["annotations"]) == json.dumps(before)  # COCOeval got a copy to rewrite


def test_box_only_ground_truth_evaluates_box_ap_as_pycocotools(tmp_path: Path) -> None:
    """A detection data set has no segmentations: box AP as pycocotools gives it, no warning; mask AP has
    nothing to evaluate and says so."""
    data = json.loads((DEGENERATE / "cleaned_for_bbox.json").read_text())
    for ann in data["annotations"]:
        del ann["segmentation"]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    results = GOOD_DETECTIONS + ON_BAD_POLYGONS + ON_BAD_BOXES + ON_IGNORED
    got, messages = _ours(path, results, "bbox")
    assert got == _pycocotools_stats(path, results, "bbox") and messages == []
    got, messages = _ours(path, results, "segm")
    assert got[0] == -1.0 and messages == [
        f"17 annotations in {path} are unusable for segm evaluation (17 annotations without a segmentation); "
        "treated as ignore regions (iscrowd=1: a detection on one is neither a true nor a false positive)"
    ]


def _write(tmp_path: Path, edit: Callable[[dict], object]) -> Path:
    data = json.loads(GT_FILE.read_text())
    edit(data)
    path = tmp_path / "instances_val2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "edit,pattern",
    [
        (
            lambda d: d["annotations"][2].update(image_id=9),
            r"annotation 3 refers to image id 9, which is not",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=5),
            r"annotation 1 has category id 5, which is not",
        ),
        (
            lambda d: d["annotations"][4].pop("area"),
            r"annotations entry id 5 is missing required field 'area'",
        ),
        (lambda d: d.pop("categories"), r"missing required top-level field 'categories'"),
        (
            lambda d: d["images"][1].update(height="40"),
            r"image 2 has height '40', expected a positive integer",
        ),
        (lambda d: d["annotations"][6].update(id=1), r"annotation id 1 appears more than once"),
    ],
    ids=["image-id", "category-id", "missing-field", "missing-top-level", "image-size", "duplicate-id"],
)
def test_ground_truth_that_cannot_be_evaluated_names_file_field_and_id(
    tmp_path: Path, edit: Callable[[dict], object], pattern: str
) -> None:
    path = _write(tmp_path, edit)
    with pytest.raises(CocoFormatError, match=re.escape(str(path)) + ": " + pattern):
        evaluate(load_ground_truth(path) if "appears" in pattern else path, GOOD_DETECTIONS, "bbox")


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "instances_val2017.json"
    path.write_text(GT_FILE.read_text()[:300])
    with pytest.raises(CocoFormatError, match=re.escape(str(path)) + r": not valid JSON \(.* line \d+"):
        evaluate(path, GOOD_DETECTIONS, "segm")


def _dataset(tmp_path: Path, ann_file: Path) -> CocoDetection:
    (tmp_path / "val2017").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.full((40, 50, 3), 127, np.uint8)).save(tmp_path / "val2017" / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateAnnotationWarning)  # the training view's own summary
        return CocoDetection(tmp_path, ann_file=ann_file, transforms=build_transforms(False, (64,), 96))


@pytest.fixture(scope="module")
def tiny_model() -> MaskRCNN:
    cfg = get_config("classroom_fpn", ["model.width=8"])
    torch.manual_seed(0)
    return build_model(cfg, num_classes=3).eval()


def test_evaluate_model_checks_before_inference_and_completes(tmp_path: Path, tiny_model: MaskRCNN) -> None:
    """The path of ``python -m mrcnn_lite evaluate``: the warnings come before any image is predicted,
    a fatal problem raises before the model is called, and with the degenerate file evaluation completes."""
    dataset = _dataset(tmp_path, GT_FILE)
    calls: list[str] = []

    def refuse(*_: object) -> None:
        calls.append("preprocess")
        raise RuntimeError("the model was called")

    broken = copy.copy(tiny_model)
    broken.preprocess = refuse  # type: ignore[method-assign]
    with pytest.warns(UnusableGroundTruthWarning) as record, pytest.raises(RuntimeError, match="was called"):
        evaluate_model(broken, dataset)
    assert [str(w.message) for w in record if w.category is UnusableGroundTruthWarning] == [
        BBOX_MESSAGE.format(f=GT_FILE), SEGM_MESSAGE.format(f=GT_FILE)
    ]  # fmt: skip
    assert calls == ["preprocess"]

    fatal = _dataset(tmp_path / "dup", _write(tmp_path / "dup", lambda d: d["annotations"][6].update(id=1)))
    calls.clear()
    with pytest.raises(CocoFormatError, match=r"instances_val2017\.json: annotation id 1 appears more"):
        evaluate_model(broken, fatal)
    assert calls == []  # refused before any forward

    with pytest.warns(UnusableGroundTruthWarning):
        metrics = evaluate_model(tiny_model, dataset)
    assert set(metrics) == {"bbox", "segm", "timing"}
    for iou_type in ("bbox", "segm"):
        assert all(0.0 <= v <= 1.0 or v == -1.0 for v in metrics[iou_type].stats.values())


@pytest.mark.realdata
def test_real_coco_val_evaluates_without_warnings_and_as_raw_pycocotools(tiny_coco: Path) -> None:
    """tiny_coco's original annotations have nothing unusable: no warning, and the same stats as
    pycocotools alone on the unmodified file (perturbed ground truth as detections, crowds included)."""
    ann_file = tiny_coco / "annotations" / "instances_val2017.json"
    gt = load_ground_truth(ann_file)
    check = check_ground_truth(gt)
    assert not any(check.unusable.values()) and check.dropped_pieces == 0
    rng = np.random.default_rng(0)
    results = []
    for ann in gt.dataset["annotations"]:
        if rng.random() < 0.2:
            continue  # a miss
        x, y, w, h = ann["bbox"]
        dx = float(rng.uniform(-0.15, 0.15)) * w
        rle = gt.annToRLE(ann)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "bbox": [x + dx, y, w, h], "score": float(rng.random()),
                        "segmentation": {"size": rle["size"], "counts": rle["counts"]}})  # fmt: skip
    for iou_type in ("bbox", "segm"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = evaluate(ann_file, copy.deepcopy(results), iou_type)
        assert [got[k] for k in STAT_NAMES] == _pycocotools_stats(ann_file, results, iou_type), iou_type
