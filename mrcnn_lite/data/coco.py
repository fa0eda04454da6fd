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
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mrcnn_lite.data.masks import decode, is_number, rle_runs, usable_polygons

REQUIRED_TOP = ("images", "annotations", "categories")
REQUIRED_IMAGE = ("id", "file_name", "height", "width")
REQUIRED_CATEGORY = ("id", "name")
REQUIRED_ANN = ("id", "image_id", "category_id", "bbox", "segmentation", "area")


class CocoFormatError(ValueError):
    """The annotation file is not valid COCO instances JSON; the message names the file and the culprit."""


class DegenerateAnnotationWarning(UserWarning):
    """Some annotations could not become training targets and were skipped."""


class CocoGroundTruth(COCO):
    """pycocotools' ``COCO`` over an already parsed instances JSON, without its prints, that remembers the
    file it came from (``ann_file``) so that messages about it can name it."""

    def __init__(self, dataset: dict, ann_file: str | Path | None = None) -> None:
        super().__init__()
        self.ann_file = Path(ann_file) if ann_file is not None else None
        self.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
            self.createIndex()


def read_ground_truth(ann_file: str | Path, **fields: Sequence[str]) -> CocoGroundTruth:
    """Parse and validate (:func:`validate_coco`, which ``fields`` are passed to) an instances JSON;
    ``CocoFormatError`` names the file."""
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO ground truth not found: {path}")
    dataset = _load_json(path, path.parent.parent)
    validate_coco(dataset, path, **fields)
    return CocoGroundTruth(dataset, path)


#: the plural of each reason :func:`check_annotation` gives, for the warnings' counts
REASONS = {
    "box that is not 4 finite numbers": "boxes that are not 4 finite numbers",
    "box with a negative width or height": "boxes with a negative width or height",
    "zero-area box": "zero-area boxes",
    "annotation without a segmentation": "annotations without a segmentation",
    "segmentation that is neither polygons nor RLE": "segmentations that are neither polygons nor RLE",
    "polygon with a coordinate that is not a finite number": (
        "polygons with a coordinate that is not a finite number"
    ),
    "polygon with an odd number of coordinates": "polygons with an odd number of coordinates",
    "polygon with <3 points": "polygons with <3 points",
    "polygon that covers no pixel": "polygons that cover no pixel",
    "empty mask": "empty masks",
    "RLE of another size than its image": "RLEs of another size than their image",
    "RLE that cannot be decoded": "RLEs that cannot be decoded",
    "empty RLE": "empty RLEs",
    "area that is not a finite number": "areas that are not a finite number",
}


def count_reasons(counts: Counter[str]) -> str:
    """``Counter({"zero-area box": 1, "polygon with <3 points": 3})`` -> "3 polygons with <3 points, 1
    zero-area box" (most frequent first)."""
    return ", ".join(f"{n} {why if n == 1 else REASONS.get(why, why)}" for why, n in counts.most_common())


@dataclass(frozen=True)
class AnnotationCheck:
    """What :func:`check_annotation` found: why the box, the segmentation and the stated area are
    unusable (None: usable), the usable segmentation (polygons without their pieces of < 3 points, or the
    RLE; None when unusable) and how many pieces were dropped."""

    box: str | None
    segm: str | None
    area: str | None
    segmentation: list[list[float]] | dict[str, Any] | None
    dropped_pieces: int = 0


def check_annotation(ann: dict, img: dict, rasterise: bool = True) -> AnnotationCheck:
    """Judge an annotation's box, segmentation and area on their own (each as a short reason or None).

    The box must be 4 finite numbers with a positive width and height. Polygons go through
    :func:`~mrcnn_lite.data.masks.usable_polygons` and, with ``rasterise``, must cover at least one pixel
    (training skips rasterising here: train2017 has 860k annotations). An RLE must have its image's size,
    run lengths that cover exactly height x width pixels and at least one foreground pixel. The area must
    be a finite number. Fields are assumed present (:func:`validate_coco`), except ``segmentation``.
    """
    h, w = img["height"], img["width"]
    box = ann["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
        box_problem: str | None = "box that is not 4 finite numbers"
    elif box[2] < 0 or box[3] < 0:
        box_problem = "box with a negative width or height"
    elif box[2] == 0 or box[3] == 0:
        box_problem = "zero-area box"
    else:
        box_problem = None
    area_problem = None if is_number(ann["area"]) else "area that is not a finite number"

    segm, segm_problem, dropped = ann.get("segmentation"), None, 0
    if "segmentation" not in ann:
        segm_problem = "annotation without a segmentation"
    elif isinstance(segm, list):
        segm_problem, pieces, dropped = usable_polygons(segm)
        segm = pieces
        if segm_problem is None and rasterise:
            if mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(pieces, h, w))) == 0:
                segm_problem = "polygon that covers no pixel"
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = segm["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            segm_problem = "RLE that cannot be decoded"
        elif list(size) != [h, w]:
            segm_problem = "RLE of another size than its image"
        else:
            try:
                runs = rle_runs(segm)
            except ValueError:
                runs = None
            if runs is None or sum(runs) != h * w:
                segm_problem = "RLE that cannot be decoded"
            elif sum(runs[1::2]) == 0:
                segm_problem = "empty RLE"
    else:
        segm_problem = "segmentation that is neither polygons nor RLE"
    usable = None if segm_problem else segm
    return AnnotationCheck(box_problem, segm_problem, area_problem, usable, 0 if segm_problem else dropped)


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
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _boxes(boxes: list[list[float]], canvas_size: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    data = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return tv_tensors.BoundingBoxes(data, format="XYXY", canvas_size=canvas_size)


def _load_json(path: Path, root: Path) -> dict:
    """Parse the annotation file; errors name the file and, for bad JSON, the position."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found.{_how_to_get(root)}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CocoFormatError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}, char {e.pos})"
        ) from e


def _how_to_get(root: Path) -> str:
    if "shapes" in root.name:
        return " Generate the synthetic dataset with `python -m mrcnn_lite.data.shapes --out data/shapes`."
    if "coco" in root.name:
        return (
            " Put real COCO 2017 under data/coco/ (annotations/instances_{train,val}2017.json, "
            "train2017/, val2017/) from https://cocodataset.org/#download."
        )
    return (
        " Data sets live under data/: generate the synthetic one with "
        "`python -m mrcnn_lite.data.shapes --out data/shapes`, or put real COCO 2017 under data/coco/."
    )


def validate_coco(
    dataset: Any,
    path: str | Path,
    image_fields: Sequence[str] = REQUIRED_IMAGE,
    category_fields: Sequence[str] = REQUIRED_CATEGORY,
    annotation_fields: Sequence[str] = REQUIRED_ANN,
) -> None:
    """Fail early, with a ``CocoFormatError`` naming the file, the field and the entry, on what no reader of
    the file can work around: a missing field, an image size that is not a positive integer, an annotation
    whose image or category is not listed. (Unusable geometry is not an error: see
    :func:`check_annotation`.)"""
    if not isinstance(dataset, dict):
        raise CocoFormatError(
            f"{path}: expected a JSON object at the top level, got {type(dataset).__name__}"
        )
    for key in REQUIRED_TOP:
        if not isinstance(dataset.get(key), list):
            raise CocoFormatError(f"{path}: missing required top-level field '{key}' (a list)")
    for key, fields in (
        ("images", image_fields),
        ("categories", category_fields),
        ("annotations", annotation_fields),
    ):
        for i, entry in enumerate(dataset[key]):
            if not isinstance(entry, dict):
                raise CocoFormatError(f"{path}: {key} entry at index {i} is not a JSON object")
            missing = [f for f in fields if f not in entry]
            if missing:
                name = f"id {entry['id']}" if "id" in entry else f"index {i}"
                raise CocoFormatError(f"{path}: {key} entry {name} is missing required field '{missing[0]}'")
    for img in dataset["images"]:
        for field in ("height", "width"):
            value = img[field]
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise CocoFormatError(
                    f"{path}: image {img['id']} has {field} {value!r}, expected a positive integer"
                )
    image_ids = {_key(img["id"]) for img in dataset["images"]}
    category_ids = {_key(cat["id"]) for cat in dataset["categories"]}
    for ann in dataset["annotations"]:
        if _key(ann["image_id"]) not in image_ids:
            raise CocoFormatError(
                f"{path}: annotation {ann['id']} refers to image id {ann['image_id']!r}, "
                "which is not in 'images'"
            )
        if _key(ann["category_id"]) not in category_ids:
            raise CocoFormatError(
                f"{path}: annotation {ann['id']} has category id {ann['category_id']!r}, "
                "which is not in 'categories'"
            )


def _key(value: Any) -> Any:
    """An id as a set member (an unhashable one, e.g. a list, matches nothing)."""
    return value if isinstance(value, (int, str, float)) else object()
