"""Reading a COCO instances JSON and failing early on what no reader can work around: a missing field, an
image size that is not a positive integer, an annotation whose image or category is not listed
(:func:`validate_coco`). Every ``CocoFormatError`` names the file, the field and the entry; a missing file
says how to get the data set. Unusable geometry is no format error: see
:mod:`mrcnn_lite.data.coco_annotations`.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

REQUIRED_TOP = ("images", "annotations", "categories")
REQUIRED_IMAGE = ("id", "file_name", "height", "width")
REQUIRED_CATEGORY = ("id", "name")
REQUIRED_ANN = ("id", "image_id", "category_id", "bbox", "segmentation", "area")


class CocoFormatError(ValueError):
    """The annotation file is not valid COCO instances JSON; the message names the file and the culprit."""


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
    """A hint, for a missing annotation file under ``root``, at how to get the data set."""
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
