"""COCO's results format, both ways: a model's detections as result dicts (the *original* category id, an
``[x, y, w, h]`` box and, for masks, compressed RLE) that ``COCOeval`` reads, and result dicts back as
tensors, to draw what was evaluated."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mrcnn_lite.data.masks import decode, encode


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
