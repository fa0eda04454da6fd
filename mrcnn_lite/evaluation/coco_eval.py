"""COCO evaluation through pycocotools' ``COCOeval``: the numbers every table of the paper reports.

AP is averaged over IoU thresholds 0.50:0.05:0.95; AP50 and AP75 at one threshold; APs, APm, APl over
objects of area < 32², 32²..96², > 96² (paper §4, "Instance Segmentation"). ``iou_type="segm"`` is mask AP
(Table 1, Table 2), ``"bbox"`` box AP (Table 3). Crowd regions come from the ground-truth file: a detection
on a crowd region is neither a true nor a false positive.

Predictions are converted to COCO's results format: one dict per detection with the *original* category
id, an ``[x, y, w, h]`` box and, for masks, compressed RLE.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.data.masks import decode, encode

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")


@dataclass
class CocoStats:
    """The twelve ``COCOeval.stats`` by name, and pycocotools' printed summary."""

    iou_type: str
    stats: dict[str, float]
    summary: str

    def __getitem__(self, name: str) -> float:
        return self.stats[name]


def load_ground_truth(ann_file: str | Path) -> COCO:
    """A pycocotools ``COCO`` for an instances JSON, without its progress prints."""
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO ground truth not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _empty_results(coco_gt: COCO) -> COCO:
    """A results ``COCO`` with no detections (pycocotools' ``loadRes`` rejects an empty list)."""
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def run_cocoeval(
    gt: COCO | str | Path,
    results: list[dict[str, Any]] | str | Path,
    iou_type: str,
    img_ids: list[int] | None = None,
) -> COCOeval:
    """pycocotools' ``COCOeval`` after ``evaluate()`` and ``accumulate()``, without its prints.

    Everything the analysis of :mod:`mrcnn_lite.evaluation.analysis` reads lives in the returned object:
    ``eval["precision"]`` ([T, R, K, A, M]: IoU thresholds, the 101 recall points, categories, area
    ranges, max detections), ``eval["recall"]``, ``eval["scores"]``, the per-image ``evalImgs`` and the
    IoU matrices ``ious``. :func:`summarize` turns it into :class:`CocoStats`. Arguments as
    :func:`evaluate`'s; an empty result list is evaluated as "no detections" (precision and recall 0).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    coco_gt = gt if isinstance(gt, COCO) else load_ground_truth(gt)
    if isinstance(results, (str, Path)) and not Path(results).is_file():
        raise FileNotFoundError(f"COCO results file not found: {results}")
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(results, list) and not results:
            coco_dt = _empty_results(coco_gt)
        else:
            coco_dt = coco_gt.loadRes(str(results) if isinstance(results, Path) else results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            evaluator.params.imgIds = sorted(img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def summarize(evaluator: COCOeval) -> CocoStats:
    """``COCOeval.summarize()`` on an accumulated evaluator: the twelve stats by name and the summary text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        evaluator.summarize()
    summary = "\n".join(line for line in out.getvalue().splitlines() if line.startswith(" Average"))
    iou_type = evaluator.params.iouType
    return CocoStats(iou_type, dict(zip(STAT_NAMES, map(float, evaluator.stats), strict=True)), summary)


def evaluate(
    gt: COCO | str | Path,
    results: list[dict[str, Any]] | str | Path,
    iou_type: str,
    img_ids: list[int] | None = None,
) -> CocoStats:
    """Run ``COCOeval`` (evaluate, accumulate, summarize) and return its stats by name.

    ``results`` is a list of result dicts or a results JSON file; ``img_ids`` restricts the images
    (default: every image of the ground truth, so images without detections count as misses).
    An empty result list gives zeros, not pycocotools' error.
    """
    evaluator = run_cocoeval(gt, results, iou_type, img_ids)  # checks the arguments
    if isinstance(results, list) and not results:  # COCOeval's summary would read -1 (no detections)
        return CocoStats(iou_type, dict.fromkeys(STAT_NAMES, 0.0), "no detections")
    return summarize(evaluator)


def to_coco_results(
    image_id: int, prediction: dict[str, torch.Tensor], label_to_cat_id: dict[int, int]
) -> list[dict[str, Any]]:
    """One image's detections (``boxes`` XYXY, ``scores``, ``labels``, optional ``masks`` [D, 1, H, W]) as
    COCO result dicts with the original category ids; masks become compressed RLE."""
    boxes = prediction["boxes"].detach().cpu().to(torch.float64)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = prediction["scores"].detach().cpu().tolist()
    labels = prediction["labels"].detach().cpu().tolist()
    masks = prediction.get("masks")
    rles = (
        [encode(np.asarray(m[0].cpu().numpy(), dtype=np.uint8)) for m in masks] if masks is not None else None
    )
    results = []
    for i, (box, score, label) in enumerate(zip(xywh, scores, labels, strict=True)):
        item = {"image_id": int(image_id), "category_id": label_to_cat_id[int(label)], "bbox": box,
                "score": float(score)}  # fmt: skip
        if rles is not None:
            item["segmentation"] = rles[i]
        results.append(item)
    return results


def from_coco_results(
    results: list[dict[str, Any]],
    image_id: int,
    cat_id_to_label: dict[int, int],
    height: int,
    width: int,
    score_thresh: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_coco_results` for one image, to draw what was evaluated: the detections of
    ``image_id`` with score ≥ ``score_thresh``, highest score first, as ``boxes`` (XYXY, float32),
    ``labels`` (contiguous), ``scores`` and, when the results have RLE masks (or there are no detections),
    ``masks`` [D, H, W] (bool)."""
    mine = sorted(
        (r for r in results if r["image_id"] == image_id and r["score"] >= score_thresh),
        key=lambda r: -r["score"],
    )
    xywh = torch.tensor([r["bbox"] for r in mine], dtype=torch.float32).reshape(-1, 4)
    out = {
        "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
        "labels": torch.tensor([cat_id_to_label[r["category_id"]] for r in mine], dtype=torch.int64),
        "scores": torch.tensor([r["score"] for r in mine], dtype=torch.float32),
    }
    if mine and isinstance(
        mine[0].get("segmentation"), dict
    ):  # RLE (loadRes gives box-only results polygons)
        out["masks"] = torch.from_numpy(
            np.stack([decode(r["segmentation"], height, width) for r in mine]).astype(bool)
        )
    elif not mine:
        out["masks"] = torch.zeros((0, height, width), dtype=torch.bool)
    return out
