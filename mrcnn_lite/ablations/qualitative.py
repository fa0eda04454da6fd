"""RoIPool's masks next to RoIAlign's, object by object (He et al. 2017, §3 "RoIAlign", Table 2c).

Two trained runs of the grid (by default seed 0 of ``c4_roipool`` and ``c4_roialign_avg``: the same
model, only the RoI operator differs) predict on the val images; every ground-truth object gets, for each
model, the mask IoU of its best same-class detection scoring at least ``score_thresh`` (pycocotools'
``maskUtils.iou``; 0 when none; 0.05 keeps every detection COCO's AP scores). The figure shows the
distribution of the IoU gain over all objects (so the examples are not the whole story), then, among the
objects both models found (IoU >= ``min_iou`` for each, so misses do not pass for misalignment), those
where RoIAlign's mask gains most, cropped: the ground-truth outline (cyan) over each model's mask (white,
outlined in yellow).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pycocotools.mask as mask_utils
from matplotlib.figure import Figure
from PIL import Image

from mrcnn_lite.config import from_dict
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.engine.checkpoint import read_checkpoint
from mrcnn_lite.engine.inference import eval_dataset, predict_dataset
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN


@dataclass
class ObjectIoU:
    """One ground-truth object and the mask IoU each model reached on it."""

    image_id: int
    ann_id: int
    bbox: list[float]  # COCO XYWH
    iou_a: float
    iou_b: float


def load_run_model(run_dir: str | Path) -> tuple[MaskRCNN, object]:
    """The final model of a grid run (``model_final.pth``) and its config; the weights come from the
    checkpoint, so the shared trunk's file is not needed."""
    ckpt = read_checkpoint(Path(run_dir) / "model_final.pth")
    cfg = from_dict(ckpt["config"])
    cfg = replace(cfg, model=replace(cfg.model, weights_path=None))
    model = build_model(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg


def _best_ious(coco, results: list[dict], score_thresh: float) -> dict[int, float]:
    """ann id -> IoU of the best same-class detection's mask (0 when there is none)."""
    by_image: dict[tuple[int, int], list[dict]] = {}
    for r in results:
        if r["score"] >= score_thresh:
            by_image.setdefault((r["image_id"], r["category_id"]), []).append(r["segmentation"])
    out = {}
    for ann in coco.dataset["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        dets = by_image.get((ann["image_id"], ann["category_id"]), [])
        if not dets:
            out[ann["id"]] = 0.0
            continue
        gt = coco.annToRLE(ann)
        out[ann["id"]] = float(mask_utils.iou(dets, [gt], [0]).max())
    return out


def compare(
    run_a: str | Path, run_b: str | Path, max_images: int | None = None, score_thresh: float = 0.05
) -> tuple[list[ObjectIoU], dict[str, list[dict]], CocoDetection]:
    """Per-object mask IoUs of run ``a`` (e.g. RoIPool) and ``b`` (RoIAlign) on the val split, their COCO
    results, and the dataset."""
    results, dataset = {}, None
    for key, run in (("a", run_a), ("b", run_b)):
        model, cfg = load_run_model(run)
        dataset = eval_dataset(cfg, max_images=max_images)
        results[key], _ = predict_dataset(model, dataset)
    coco = dataset.coco
    keep = set(dataset.ids)
    iou_a, iou_b = (_best_ious(coco, results[k], score_thresh) for k in ("a", "b"))
    objects = [
        ObjectIoU(ann["image_id"], ann["id"], ann["bbox"], iou_a[ann["id"]], iou_b[ann["id"]])
        for ann in coco.dataset["annotations"]
        if ann["id"] in iou_a and ann["image_id"] in keep
    ]
    return objects, results, dataset


def _crop(bbox: list[float], shape: tuple[int, int], margin: float = 0.35) -> tuple[slice, slice]:
    x, y, w, h = bbox
    pad = margin * max(w, h) + 3
    x0, y0 = max(0, int(x - pad)), max(0, int(y - pad))
    x1, y1 = min(shape[1], int(np.ceil(x + w + pad))), min(shape[0], int(np.ceil(y + h + pad)))
    return slice(y0, y1), slice(x0, x1)


def _mask_of(results: list[dict], ann: dict, coco, score_thresh: float) -> np.ndarray:
    """The mask of ``ann``'s best same-class detection (by IoU), or an empty mask."""
    same = (ann["image_id"], ann["category_id"])
    keep = [r for r in results if (r["image_id"], r["category_id"]) == same and r["score"] >= score_thresh]
    cands = [r["segmentation"] for r in keep]
    if not cands:
        info = coco.imgs[ann["image_id"]]
        return np.zeros((info["height"], info["width"]), dtype=bool)
    best = int(np.argmax(mask_utils.iou(cands, [coco.annToRLE(ann)], [0])[:, 0]))
    return mask_utils.decode(cands[best]).astype(bool)


def figure(
    objects: list[ObjectIoU],
    results: dict[str, list[dict]],
    dataset: CocoDetection,
    names: tuple[str, str] = ("RoIPool", "RoIAlign"),
    n: int = 4,
    score_thresh: float = 0.05,
    min_iou: float = 0.3,
) -> Figure:
    """Histogram of the per-object IoU gain, then the ``n`` objects (found by both, IoU >= ``min_iou``)
    where ``b`` gains most over ``a``: image crop, ``a``'s and ``b``'s masks, the ground-truth outline."""
    coco = dataset.coco
    gains = np.array([o.iou_b - o.iou_a for o in objects])
    found = [o for o in objects if min(o.iou_a, o.iou_b) >= min_iou]
    top = sorted(found, key=lambda o: o.iou_b - o.iou_a, reverse=True)[:n]
    fig = plt.figure(figsize=(9, 2.4 * (n + 1)))
    grid = fig.add_gridspec(n + 1, 3)
    ax = fig.add_subplot(grid[0, :])
    ax.hist(gains, bins=np.linspace(-1, 1, 41), color="0.4")
    ax.axvline(0, color="k", lw=0.8)
    ax.set(
        xlabel=f"mask IoU ({names[1]}) - mask IoU ({names[0]}), per ground-truth object",
        ylabel="objects",
        title=f"{len(objects)} val objects, IoU of the best same-class mask (score >= {score_thresh}):\n"
        f"mean {names[0]} {np.mean([o.iou_a for o in objects]):.3f}, {names[1]} "
        f"{np.mean([o.iou_b for o in objects]):.3f}; {names[1]} better on {np.mean(gains > 0):.0%} of them, "
        f"worse on {np.mean(gains < 0):.0%}",
    )
    for row, obj in enumerate(top, start=1):
        ann = coco.anns[obj.ann_id]
        info = coco.imgs[obj.image_id]
        shape = (info["height"], info["width"])
        with Image.open(dataset.image_dir / info["file_name"]) as pil:
            image = np.asarray(pil.convert("RGB"))
        gt = coco.annToMask(ann).astype(bool)
        ys, xs = _crop(obj.bbox, shape)
        panels = [("image", None), (names[0], results["a"]), (names[1], results["b"])]
        for col, (title, res) in enumerate(panels):
            a = fig.add_subplot(grid[row, col])
            a.imshow(image[ys, xs], interpolation="nearest")
            if res is not None:
                m = _mask_of(res, ann, coco, score_thresh)[ys, xs]
                a.imshow(
                    np.ma.masked_where(~m, m), cmap="gray", vmin=0, vmax=1, alpha=0.6, interpolation="nearest"
                )
                if m.any():
                    a.contour(m, levels=[0.5], colors="yellow", linewidths=1.2)
                iou = obj.iou_a if col == 1 else obj.iou_b
                title = f"{title}: IoU {iou:.2f}"
            a.contour(gt[ys, xs], levels=[0.5], colors="cyan", linewidths=1.0)
            a.set_title(title if res is not None else f"{coco.cats[ann['category_id']]['name']} (GT outline)",
                        fontsize=8)  # fmt: skip
            a.set_axis_off()
    fig.tight_layout()
    return fig
