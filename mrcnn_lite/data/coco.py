"""COCO-format instance segmentation dataset (real COCO 2017 and our synthetic shapes alike).

One sample is ``(image, target)`` in torchvision's detection convention: a uint8
``tv_tensors.Image`` and a dict with ``boxes`` (XYXY), ``labels`` (1..K, 0 is
background), per-instance binary ``masks`` and bookkeeping (``image_id``,
``area``, ``iscrowd``, ``orig_size``). Mask R-CNN (He et al., 2017, Sec. 3)
trains on exactly these: a class, a box and an m x m mask target per RoI.

Design:

- **Validation happens once, at construction**, on the parsed JSON: required
  fields (:func:`validate_coco`: a ``CocoFormatError`` naming the file, the
  field and the annotation), known categories and images, and degenerate
  annotations (:func:`check_annotation`: a box with zero or negative width or
  height or NaN, polygons with fewer than 3 points or an odd number of
  coordinates, an RLE with no foreground pixel or of the wrong size, a
  segmentation of another type, stated area <= 0 or not a number). Degenerate
  ones are skipped and reported in a single ``DegenerateAnnotationWarning`` per
  dataset. Evaluation keeps them as ignore regions instead
  (:mod:`mrcnn_lite.evaluation.coco_eval`). No polygon is
  rasterised here, so construction stays fast on train2017 (860k annotations).
  The one check that needs rasterising, a polygon that covers no pixel, happens
  at ``__getitem__``, which drops such a mask with its own warning.
- **Crowd regions** (``iscrowd=1``) are kept out of the training targets, as in
  the paper's Detectron setup; their boxes are exposed as ``crowd_boxes`` so a
  matcher may ignore proposals that fall on them. Evaluation does not read them
  from here: they are passed to evaluation as COCO does, through the original
  annotation JSON, whose crowd regions ``COCOeval`` treats itself.

The module holds the dataset; the file's reading and validation live in
:mod:`~mrcnn_lite.data.coco_format` and the judgement of one annotation in
:mod:`~mrcnn_lite.data.coco_annotations`. Every name of those imports from here as well.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mrcnn_lite.data.coco_annotations import (
    REASONS,
    AnnotationCheck,
    DegenerateAnnotationWarning,
    check_annotation,
    count_reasons,
)
from mrcnn_lite.data.coco_format import (
    REQUIRED_ANN,
    REQUIRED_CATEGORY,
    REQUIRED_IMAGE,
    REQUIRED_TOP,
    CocoFormatError,
    CocoGroundTruth,
    _load_json,
    read_ground_truth,
    validate_coco,
)
from mrcnn_lite.data.coco_format import _how_to_get as _how_to_get
from mrcnn_lite.data.coco_format import _key as _key
from mrcnn_lite.data.masks import decode

__all__ = [
    "REASONS",
    "REQUIRED_ANN",
    "REQUIRED_CATEGORY",
    "REQUIRED_IMAGE",
    "REQUIRED_TOP",
    "AnnotationCheck",
    "CocoDetection",
    "CocoFormatError",
    "CocoGroundTruth",
    "DegenerateAnnotationWarning",
    "check_annotation",
    "count_reasons",
    "read_ground_truth",
    "validate_coco",
]


class CocoDetection(Dataset):
    """Images and instance targets from ``root/annotations/instances_{split}.json`` and ``root/{split}/``.

    ``train=True`` drops images with no usable (non-crowd, non-degenerate)
    annotation, like torchvision's reference ``_coco_remove_images_without_annotations``;
    ``train=False`` keeps every image so evaluation sees the whole split.
    ``transforms`` is called as ``transforms(image, target)`` (see ``transforms.py``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val2017",
        train: bool = False,
        transforms: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        ann_file: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.train = train
        self.transforms = transforms
        self.ann_file = (
            Path(ann_file) if ann_file is not None else self.root / "annotations" / f"instances_{split}.json"
        )
        self.image_dir = Path(image_dir) if image_dir is not None else self.root / split

        dataset = _load_json(self.ann_file, self.root)
        validate_coco(dataset, self.ann_file)
        self.coco = CocoGroundTruth(dataset, self.ann_file)

        self.cat_ids: list[int] = sorted(self.coco.cats)
        self.cat_id_to_label: dict[int, int] = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i: c for c, i in self.cat_id_to_label.items()}
        self.class_names: list[str] = ["__background__"] + [self.coco.cats[c]["name"] for c in self.cat_ids]

        self._instances, self._crowds = self._sort_annotations(dataset["annotations"])
        self.ids: list[int] = sorted(self.coco.imgs)
        if train:
            self.ids = [i for i in self.ids if self._instances.get(i)]
            if not self.ids:
                raise CocoFormatError(
                    f"{self.ann_file}: no image has a usable (non-crowd, non-degenerate) annotation, "
                    "so there is nothing to train on"
                )

    def _sort_annotations(self, anns: list[dict]) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
        """Split annotations per image into instances and crowds, skipping and counting degenerate ones."""
        instances: dict[int, list[dict]] = {}
        crowds: dict[int, list[dict]] = {}
        skipped: Counter[str] = Counter()
        dropped_pieces = 0
        for ann in anns:
            img = self.coco.imgs[ann["image_id"]]  # validate_coco checked the references
            check = check_annotation(ann, img, rasterise=False)
            problem = check.box or check.segm or check.area
            if problem is None and isinstance(check.segmentation, list) and ann["area"] <= 0:
                problem = "empty mask"  # a polygon's stated area, instead of rasterising it
            if problem:
                skipped[problem] += 1
                continue
            dropped_pieces += check.dropped_pieces
            group = crowds if ann.get("iscrowd", 0) else instances
            group.setdefault(ann["image_id"], []).append(ann)
        news = []
        if skipped:
            parts = count_reasons(skipped)
            news.append(f"skipped {sum(skipped.values())} degenerate annotations ({parts})")
        if dropped_pieces:
            news.append(f"dropped {dropped_pieces} polygon pieces with <3 points from kept annotations")
        if news:
            warnings.warn(
                f"{self.ann_file.name}: {'; '.join(news)}", DegenerateAnnotationWarning, stacklevel=3
            )
        return instances, crowds

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        h, w = info["height"], info["width"]
        image = self._load_image(info)

        boxes, labels, masks, areas = [], [], [], []
        for ann in self._instances.get(img_id, []):
            mask = decode(ann["segmentation"], h, w)
            if not mask.any():
                warnings.warn(
                    f"{self.ann_file.name}: annotation {ann['id']} of image {img_id} decodes to an empty "
                    "mask; skipped",
                    DegenerateAnnotationWarning,
                    stacklevel=2,
                )
                continue
            boxes.append(_xywh_to_xyxy(ann["bbox"]))
            labels.append(self.cat_id_to_label[ann["category_id"]])
            masks.append(mask)
            areas.append(ann["area"])
        crowd_boxes = [_xywh_to_xyxy(a["bbox"]) for a in self._crowds.get(img_id, [])]

        n = len(labels)
        target = {
            "boxes": _boxes(boxes, (h, w)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": tv_tensors.Mask(
                torch.from_numpy(np.stack(masks) if n else np.zeros((0, h, w), np.uint8))
            ),
            "image_id": img_id,
            "area": torch.tensor(areas, dtype=torch.float32),  # COCO's area, in original-image pixels
            "iscrowd": torch.zeros(n, dtype=torch.int64),
            "orig_size": (h, w),
            "crowd_boxes": _boxes(crowd_boxes, (h, w)),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _load_image(self, info: dict) -> tv_tensors.Image:
        """The RGB pixels of image record ``info``; errors name the file and the annotation file."""
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: image file of image id {info['id']} (listed in {self.ann_file}) is missing"
            )
        with Image.open(path) as pil:  # EXIF orientation is ignored, as in COCO's own annotations
            pixels = np.array(pil.convert("RGB"))  # grayscale / RGBA / CMYK -> RGB
        if pixels.shape[:2] != (info["height"], info["width"]):
            raise CocoFormatError(
                f"{path}: image is {pixels.shape[:2]} (H, W) but {self.ann_file} says "
                f"{(info['height'], info['width'])}"
            )
        return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())

    def to_coco_category(self, labels: torch.Tensor) -> list[int]:
        """Map contiguous labels (1..K) back to the JSON's category ids, for writing results."""
        try:
            return [self.label_to_cat_id[int(label)] for label in labels.reshape(-1).tolist()]
        except KeyError as e:
            raise ValueError(f"label {e.args[0]} is not a class label (1..{len(self.cat_ids)})") from None

    def __repr__(self) -> str:
        n_inst = sum(len(self._instances.get(i, [])) for i in self.ids)
        n_crowd = sum(len(self._crowds.get(i, [])) for i in self.ids)
        return (
            f"{type(self).__name__}(split={self.split!r}, train={self.train}, images={len(self)}, "
            f"instances={n_inst}, crowd={n_crowd}, categories={len(self.cat_ids)}, ann_file='{self.ann_file}'"
            ")"
        )


def _xywh_to_xyxy(bbox: list[float]) -> list[float]:
    """COCO's ``[x, y, w, h]`` box as ``[x1, y1, x2, y2]``."""
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _boxes(boxes: list[list[float]], canvas_size: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    """XYXY boxes as a ``[N, 4]`` float32 ``BoundingBoxes`` on an image of ``canvas_size`` (H, W)."""
    data = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return tv_tensors.BoundingBoxes(data, format="XYXY", canvas_size=canvas_size)
