"""Synthetic "shapes" dataset in COCO 2017 instance-segmentation format.

Real COCO is 20 GB and takes days to train on; this generator makes a small
dataset with the same file layout and the same awkward properties, so that the
loaders, the model and the evaluator can be developed and tested on a laptop and
then run unchanged on COCO::

    out/train2017/000000000001.jpg ...
    out/val2017/000500000001.jpg ...
    out/annotations/instances_train2017.json
    out/annotations/instances_val2017.json

Each design choice exercises one COCO property:

- Image sizes vary (width and height each in [160, 256]) and images are RGB
  JPEGs named by a zero-padded 12-digit id: no code may assume a fixed size or
  a lossless format. Image ids are sparse and the two splits never share one,
  so ids cannot be used as list indices.
- Category ids have gaps (1, 3, 4, 7, 10, 13), like COCO's 80 classes spread
  over 1..90: code must map ids to contiguous labels and back.
- Classes differ by form, not colour (colours are random), and backgrounds are
  gradients + low-frequency texture + noise + unannotated stripes and blobs.
- 1-8 instances per image, drawn in z-order so that they overlap and occlude;
  each annotation is the *visible* part of its shape, so visible masks are
  disjoint and an occluded object may fall apart into several pieces.
  Instances with fewer than ``MIN_AREA`` visible pixels are not annotated.
- Object areas spread over COCO's small (< 32^2), medium and large (> 96^2)
  ranges, for the size-stratified AP metrics.
- Segmentations come as polygons (possibly several per object), as compressed
  RLE (``counts`` a string) and, for ``iscrowd=1`` regions (a cluster of many
  tiny shapes of one class lumped into one region), as uncompressed RLE
  (``counts`` a list of ints), exactly the three spellings found in COCO. Rings
  have holes, which polygons cannot express, so a ring whose hole is visible is
  stored as RLE.
- ``area`` and ``bbox`` are computed by pycocotools from the stored
  segmentation, so they match what the COCO evaluator decodes.
- Some images have no annotations at all (COCO has about 1%).

Generation is deterministic: each image draws from its own generator seeded by
``(seed, split, index)``, and JSON is written with a fixed key order, so the same
seed gives byte-identical files. Every file is written to a temporary name and
moved into place, and the annotation files are written last (val last of all),
so an interrupted run never leaves a valid-looking dataset behind.

Modules: :mod:`~mrcnn_lite.data.shapes_objects` (categories, shapes, an image's objects),
:mod:`~mrcnn_lite.data.shapes_pixels` (background, painting, JPEG), :mod:`~mrcnn_lite.data.shapes_annotations`
(polygons or RLE, area, bbox), :mod:`~mrcnn_lite.data.shapes_image` (one image and its annotations) and this
one (the files, the command line); every name imports from here as well.

Usage: ``python -m mrcnn_lite.data.shapes --out data/shapes --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from mrcnn_lite.atomic import write_bytes
from mrcnn_lite.data.shapes_annotations import RLE_FRACTION
from mrcnn_lite.data.shapes_annotations import _annotation as _annotation
from mrcnn_lite.data.shapes_annotations import _dilate as _dilate
from mrcnn_lite.data.shapes_annotations import _drop_collinear as _drop_collinear
from mrcnn_lite.data.shapes_annotations import _polygons_if_faithful as _polygons_if_faithful
from mrcnn_lite.data.shapes_annotations import _uncompressed_rle as _uncompressed_rle
from mrcnn_lite.data.shapes_image import (
    CROWD_AT,
    CROWD_EVERY,
    EMPTY_AT,
    EMPTY_EVERY,
    IMAGE_SIZE_RANGE,
    MAX_INSTANCES,
    MIN_AREA,
    VAL_ID_OFFSET,
    image_id_for,
    make_image,
)
from mrcnn_lite.data.shapes_objects import CATEGORIES, SIZE_BINS, SIZE_PROBS
from mrcnn_lite.data.shapes_objects import _colour as _colour
from mrcnn_lite.data.shapes_objects import _polygon_area as _polygon_area
from mrcnn_lite.data.shapes_objects import _sample_area as _sample_area
from mrcnn_lite.data.shapes_objects import _sample_centre as _sample_centre
from mrcnn_lite.data.shapes_objects import _sample_crowd as _sample_crowd
from mrcnn_lite.data.shapes_objects import _sample_objects as _sample_objects
from mrcnn_lite.data.shapes_objects import _shape_mask as _shape_mask
from mrcnn_lite.data.shapes_objects import _unit_outline as _unit_outline
from mrcnn_lite.data.shapes_pixels import JPEG_QUALITY
from mrcnn_lite.data.shapes_pixels import _background as _background
from mrcnn_lite.data.shapes_pixels import _blob as _blob
from mrcnn_lite.data.shapes_pixels import _paint as _paint
from mrcnn_lite.data.shapes_pixels import _stripe as _stripe
from mrcnn_lite.data.shapes_pixels import _to_jpeg as _to_jpeg

__all__ = [
    "CATEGORIES",
    "CROWD_AT",
    "CROWD_EVERY",
    "DEFAULT_NUM_TRAIN",
    "DEFAULT_NUM_VAL",
    "EMPTY_AT",
    "EMPTY_EVERY",
    "GENERATOR_VERSION",
    "IMAGE_SIZE_RANGE",
    "JPEG_QUALITY",
    "MAX_IMAGES_PER_SPLIT",
    "MAX_INSTANCES",
    "MIN_AREA",
    "RLE_FRACTION",
    "SIZE_BINS",
    "SIZE_PROBS",
    "SPLITS",
    "VAL_ID_OFFSET",
    "format_summary",
    "generate",
    "image_id_for",
    "main",
    "make_image",
]

GENERATOR_VERSION = 2
DEFAULT_NUM_TRAIN = 2000
DEFAULT_NUM_VAL = 300
SPLITS = ("train2017", "val2017")
MAX_IMAGES_PER_SPLIT = 100_000_000  # keeps ids of the two splits apart and file names at 12 digits
_OUR_IMAGE_FILE = re.compile(r"^(\d{12}\.jpg|\.\d{12}\.jpg\.\d+\.tmp)$")  # images and their temp files


def _check_count(name: str, value: Any) -> int:
    """``value`` if it is an image count: a non-negative int of at most ``MAX_IMAGES_PER_SPLIT``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if value > MAX_IMAGES_PER_SPLIT:
        raise ValueError(f"{name} must be at most {MAX_IMAGES_PER_SPLIT}, got {value}")
    return value


def _dataset_json(split: str, seed: int, num_train: int, num_val: int, images: list, anns: list) -> bytes:
    """The COCO annotation file of one split, serialised with a fixed key order and separators."""
    info = {
        "description": f"mrcnn_lite synthetic shapes, {split}",
        "url": "",
        "version": str(GENERATOR_VERSION),
        "year": 2017,
        "contributor": "mrcnn_lite.data.shapes",
        "date_created": "2017-01-01 00:00:00",
        "generator": {
            "name": "mrcnn_lite.data.shapes",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "num_train": num_train,
            "num_val": num_val,
        },
    }
    licenses = [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]
    doc = {
        "info": info,
        "licenses": licenses,
        "images": images,
        "annotations": anns,
        "categories": CATEGORIES,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _split_summary(images: list[dict[str, Any]], anns: list[dict[str, Any]]) -> dict[str, int]:
    """Counts per split; polygon/rle/small/medium/large count non-crowd annotations only."""
    plain = [a for a in anns if not a["iscrowd"]]
    return {
        "images": len(images),
        "empty_images": len(images) - len({a["image_id"] for a in anns}),
        "annotations": len(anns),
        "crowd": len(anns) - len(plain),
        "polygon": sum(isinstance(a["segmentation"], list) for a in plain),
        "rle": sum(isinstance(a["segmentation"], dict) for a in plain),
        "small": sum(a["area"] < 32**2 for a in plain),
        "medium": sum(32**2 <= a["area"] < 96**2 for a in plain),
        "large": sum(a["area"] >= 96**2 for a in plain),
    }


def generate(
    out: str | Path,
    seed: int = 0,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    show_progress: bool = False,
) -> dict[str, dict[str, int]]:
    """Write the shapes dataset under ``out`` and return ``{split: counts}`` (see ``_split_summary``).

    Existing annotation files are removed first and written again last; images of an earlier,
    larger run that the new annotation files do not list are deleted.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    counts = (_check_count("num_train", num_train), _check_count("num_val", num_val))
    from tqdm.auto import tqdm

    out = Path(out)
    ann_dir = out / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:  # an interrupted run must not leave old annotations next to new images
        (ann_dir / f"instances_{split}.json").unlink(missing_ok=True)

    summary, files = {}, []
    for split_index, (split, count) in enumerate(zip(SPLITS, counts, strict=True)):
        img_dir = out / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in tqdm(range(count), desc=split, disable=not show_progress, unit="img"):
            jpeg, record, image_anns = make_image(seed, split_index, i)
            write_bytes(img_dir / record["file_name"], jpeg)
            images.append(record)
            anns.extend(image_anns)
        keep = {r["file_name"] for r in images}
        for stale in img_dir.iterdir():
            if _OUR_IMAGE_FILE.match(stale.name) and stale.name not in keep:
                stale.unlink()
        files.append((ann_dir / f"instances_{split}.json", _dataset_json(split, seed, *counts, images, anns)))
        summary[split] = _split_summary(images, anns)
    for path, data in files:  # val is written last: its presence marks a complete dataset
        write_bytes(path, data)
    return summary


def format_summary(summary: dict[str, dict[str, int]]) -> str:
    """A small fixed-width table of the counts, one row per split."""
    keys = list(next(iter(summary.values())).keys())
    rows = [["split", *keys]] + [[split, *map(str, c.values())] for split, c in summary.items()]
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(wd) for v, wd in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Command line entry point; prints the summary table and returns it."""
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn_lite.data.shapes",
        description="Generate the synthetic 'shapes' instance-segmentation dataset in COCO 2017 layout "
        "(train2017/, val2017/, annotations/instances_{train,val}2017.json). "
        "The same seed always gives byte-identical files.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/shapes")
    parser.add_argument("--seed", type=int, default=0, help="random seed, a non-negative int (default 0)")
    parser.add_argument(
        "--num-train", type=int, default=DEFAULT_NUM_TRAIN, help=f"train images (default {DEFAULT_NUM_TRAIN})"
    )
    parser.add_argument(
        "--num-val", type=int, default=DEFAULT_NUM_VAL, help=f"val images (default {DEFAULT_NUM_VAL})"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("seed", "num_train", "num_val"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    summary = generate(args.out, args.seed, args.num_train, args.num_val, show_progress=not args.quiet)
    print(f"wrote {args.out}")
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
