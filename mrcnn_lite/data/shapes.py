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

Usage: ``python -m mrcnn_lite.data.shapes --out data/shapes --seed 0``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mrcnn_lite.atomic import write_bytes
from mrcnn_lite.data import masks

GENERATOR_VERSION = 2
DEFAULT_NUM_TRAIN = 2000
DEFAULT_NUM_VAL = 300
SPLITS = ("train2017", "val2017")
CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "circle", "supercategory": "round"},
    {"id": 3, "name": "square", "supercategory": "polygon"},
    {"id": 4, "name": "triangle", "supercategory": "polygon"},
    {"id": 7, "name": "star", "supercategory": "polygon"},
    {"id": 10, "name": "ring", "supercategory": "round"},
    {"id": 13, "name": "cross", "supercategory": "polygon"},
]

IMAGE_SIZE_RANGE = (160, 256)  # inclusive range of widths and of heights
MAX_INSTANCES = 8
MIN_AREA = 16  # visible pixels below which an instance is dropped
RLE_FRACTION = 0.3  # share of ordinary instances stored as compressed RLE instead of polygons
# Target areas: log-uniform inside COCO's small / medium / large ranges, chosen with SIZE_PROBS
# (large ones are favoured because occlusion shrinks their visible part most).
SIZE_BINS = ((60.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 26000.0))
SIZE_PROBS = (0.34, 0.31, 0.35)
EMPTY_EVERY, EMPTY_AT = 20, 3  # image i has no objects when i % 20 == 3 (5% of images)
CROWD_EVERY, CROWD_AT = 10, 5  # image i holds a crowd region when i % 10 == 5 (10% of images)
VAL_ID_OFFSET = 500_000_000  # val image ids start here; train ids start at 1
MAX_IMAGES_PER_SPLIT = 100_000_000  # keeps ids of the two splits apart and file names at 12 digits
JPEG_QUALITY = 90
_OUR_IMAGE_FILE = re.compile(r"^(\d{12}\.jpg|\.\d{12}\.jpg\.\d+\.tmp)$")  # images and their temp files


# ----------------------------------------------------------------------------- shapes


def _unit_outline(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Outline(s) of a shape of circumradius 1 centred at 0: ``[outer]`` or ``[outer, hole]``."""
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "circle":
        return [circle]
    if name == "ring":
        return [circle, circle * rng.uniform(0.45, 0.65)]
    if name in ("square", "triangle"):
        k = 4 if name == "square" else 3
        a = np.pi / 2 + 2 * np.pi * np.arange(k) / k
        return [np.stack([np.cos(a), np.sin(a)], axis=1)]
    if name == "star":
        a = -np.pi / 2 + np.pi * np.arange(10) / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return [np.stack([r * np.cos(a), r * np.sin(a)], axis=1)]
    if name == "cross":
        s = 0.3  # half-width of the arms
        pts = [(s, 1), (s, s), (1, s), (1, -s), (s, -s), (s, -1), (-s, -1), (-s, -s), (-1, -s), (-1, s)]
        return [np.array(pts + [(-s, s), (-s, 1)], dtype=np.float64)]
    raise ValueError(f"unknown shape {name!r}")


def _polygon_area(xy: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _shape_mask(
    name: str, target_area: float, centre: tuple[float, float], rng: np.random.Generator, h: int, w: int
) -> np.ndarray:
    """Rasterise one randomly rotated shape of about ``target_area`` pixels into an ``(h, w)`` bool mask."""
    outlines = _unit_outline(name, rng)
    unit_area = _polygon_area(outlines[0]) - sum(_polygon_area(o) for o in outlines[1:])
    radius = math.sqrt(target_area / unit_area)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for i, outline in enumerate(outlines):  # outer boundary filled with 1, holes punched with 0
        xy = outline @ rot.T * radius + np.asarray(centre)
        draw.polygon([tuple(p) for p in xy.tolist()], fill=1 if i == 0 else 0)
    return np.asarray(canvas, dtype=bool)


def _sample_area(rng: np.random.Generator, h: int, w: int) -> float:
    """Pick a size bin (small/medium/large), then a log-uniform target area inside it."""
    lo, hi = SIZE_BINS[rng.choice(3, p=SIZE_PROBS)]
    hi = min(hi, 0.55 * h * w)
    return float(np.exp(rng.uniform(np.log(lo), np.log(max(lo, hi)))))


def _sample_centre(rng: np.random.Generator, area: float, h: int, w: int) -> tuple[float, float]:
    """Centre such that at most about a third of the shape's radius can stick out of the image."""
    margin = 0.7 * math.sqrt(area / np.pi)
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))
    return cx, cy


def _sample_objects(rng: np.random.Generator, h: int, w: int, n: int, crowd: bool) -> list[dict[str, Any]]:
    """Sample ``n`` shapes (plus one crowd region if ``crowd``) in back-to-front drawing order.

    Each object is ``{"category_id", "iscrowd", "parts": [(mask, rgb), ...]}``; a crowd has many parts.
    """
    objects = []
    for _ in range(n):
        cat = CATEGORIES[rng.integers(len(CATEGORIES))]
        area = _sample_area(rng, h, w)
        mask = _shape_mask(cat["name"], area, _sample_centre(rng, area, h, w), rng, h, w)
        depth = -math.log(area) + rng.normal(0, 1.0)  # big shapes tend to lie behind small ones
        objects.append({"category_id": cat["id"], "iscrowd": 0, "parts": [(mask, _colour(rng))], "z": depth})
    if crowd:
        objects.append(_sample_crowd(rng, h, w))
    objects.sort(key=lambda o: o["z"])
    return objects


def _sample_crowd(rng: np.random.Generator, h: int, w: int) -> dict[str, Any]:
    """A cluster of 8-20 tiny shapes of one class, annotated as a single ``iscrowd=1`` region."""
    cat = CATEGORIES[rng.integers(len(CATEGORIES))]
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    spread = rng.uniform(10, 30)
    parts = []
    for _ in range(rng.integers(8, 21)):
        centre = (cx + rng.normal(0, spread), cy + rng.normal(0, spread))
        parts.append((_shape_mask(cat["name"], rng.uniform(25, 120), centre, rng, h, w), _colour(rng)))
    return {"category_id": cat["id"], "iscrowd": 1, "parts": parts, "z": rng.normal(-6.0, 1.0)}


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour (deliberately unrelated to the class)."""
    return rng.uniform(0, 255, size=3)


# ----------------------------------------------------------------------------- pixels


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Float ``(h, w, 3)`` background: colour gradient + low-frequency texture + unannotated clutter."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    t = xx * math.cos(theta) + yy * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    img = c0 + (c1 - c0) * t[..., None]
    coarse = rng.uniform(0, 255, size=(rng.integers(3, 9), rng.integers(3, 9), 3)).astype(np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    img += (texture - 127.5) * rng.uniform(0.1, 0.4)
    for _ in range(rng.integers(1, 5)):
        alpha = _stripe(rng, xx, yy) if rng.random() < 0.5 else _blob(rng, xx, yy)
        img += alpha[..., None] * (rng.uniform(0, 255, size=3).astype(np.float32) - img)
    return img


def _stripe(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Opacity map of a straight band with soft edges across the whole image."""
    theta = rng.uniform(0, np.pi)
    d = (xx - rng.uniform()) * math.cos(theta) + (yy - rng.uniform()) * math.sin(theta)
    half_width = rng.uniform(0.01, 0.06)
    return rng.uniform(0.3, 0.8) * np.clip(1.0 - np.abs(d) / half_width, 0.0, 1.0) ** 0.5


def _blob(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Opacity map of a soft Gaussian spot (no hard edge, so it does not look like a shape)."""
    d2 = (xx - rng.uniform()) ** 2 + (yy - rng.uniform()) ** 2
    return rng.uniform(0.3, 0.8) * np.exp(-d2 / (2 * rng.uniform(0.03, 0.15) ** 2))


def _paint(img: np.ndarray, mask: np.ndarray, rgb: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``mask`` with ``rgb`` under a random linear shading, in place."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    shade = (xs * rng.normal(0, 0.3) + ys * rng.normal(0, 0.3)).astype(np.float32)
    img[ys, xs] = rgb + (shade - shade.mean())[:, None]


def _to_jpeg(img: np.ndarray) -> bytes:
    """Encode a float RGB image as JPEG bytes (fixed quality, no metadata: deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


# ----------------------------------------------------------------------------- annotations


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of 0s."""
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _drop_collinear(polygon: list[float]) -> list[float]:
    """Remove vertices that lie on the straight line through their neighbours (same outline, fewer points).

    ``masks.to_polygons`` puts a vertex on every pixel edge; coordinates are multiples of 0.5, so the
    collinearity test is exact.
    """
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    before, after = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    kept = xy[turn != 0]
    return kept.reshape(-1).tolist() if len(kept) >= 3 else []


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one pixel (3x3 square), with numpy shifts."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def _polygons_if_faithful(mask: np.ndarray) -> list[list[float]] | None:
    """Polygons of ``mask``, or None where they would misrepresent it.

    Polygons cannot hold holes (a ring's hole, or the place where a smaller shape sits on top of a
    bigger one), and thin slivers can vanish when rasterised; such masks are kept as RLE. Accepted
    polygons decode to the mask up to pixels along its boundary.
    """
    polygons = [p for p in map(_drop_collinear, masks.to_polygons(mask)) if p]
    if not polygons:
        return None
    decoded = masks.decode(polygons, *mask.shape).astype(bool)
    if np.any(decoded & ~_dilate(mask)) or np.count_nonzero(decoded & mask) < 0.8 * mask.sum():
        return None
    return polygons


def _annotation(
    visible: np.ndarray, obj: dict[str, Any], rng: np.random.Generator, ann_id: int, image_id: int
) -> dict[str, Any]:
    """COCO annotation of one visible mask; area and bbox are read back from the stored segmentation."""
    h, w = visible.shape
    want_rle = rng.random() < RLE_FRACTION
    if obj["iscrowd"]:
        segm: Any = _uncompressed_rle(visible)
    else:
        segm = None if want_rle else _polygons_if_faithful(visible)
        if segm is None:
            segm = masks.encode(visible)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category_id"],
        "segmentation": segm,
        "area": float(masks.area(segm, h, w)),
        "bbox": masks.bbox(segm, h, w),
        "iscrowd": obj["iscrowd"],
    }


def image_id_for(split_index: int, index: int) -> int:
    """Sparse, split-disjoint image ids: train 1, 4, 7, ...; val 500000001, 500000004, ..."""
    return split_index * VAL_ID_OFFSET + 3 * index + 1


def make_image(seed: int, split_index: int, index: int) -> tuple[bytes, dict[str, Any], list[dict[str, Any]]]:
    """Generate image ``index`` of a split: ``(jpeg_bytes, image_record, annotations)``.

    Depends only on its arguments (its own ``SeedSequence``), so images are independent of each other.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_index, index]))
    w, h = (int(v) for v in rng.integers(IMAGE_SIZE_RANGE[0], IMAGE_SIZE_RANGE[1] + 1, size=2))
    image_id = image_id_for(split_index, index)
    img = _background(rng, h, w)
    n = 0 if index % EMPTY_EVERY == EMPTY_AT else int(rng.integers(1, MAX_INSTANCES + 1))
    objects = _sample_objects(rng, h, w, n, crowd=n > 0 and index % CROWD_EVERY == CROWD_AT)
    for obj in objects:
        for mask, rgb in obj["parts"]:
            _paint(img, mask, rgb, rng)
    img += rng.normal(0, rng.uniform(2, 10), size=img.shape).astype(np.float32)

    annotations, covered = [], np.zeros((h, w), dtype=bool)
    for obj in reversed(objects):  # front to back: what later shapes cover is hidden
        full = np.logical_or.reduce([m for m, _ in obj["parts"]])
        visible = full & ~covered
        covered |= full
        if visible.sum() >= MIN_AREA:
            annotations.append((obj, visible))
    annotations.reverse()  # list annotations back to front, the drawing order
    anns = [_annotation(v, o, rng, image_id * 100 + k, image_id) for k, (o, v) in enumerate(annotations)]
    record = {
        "id": image_id,
        "file_name": f"{image_id:012d}.jpg",
        "width": w,
        "height": h,
        "license": 1,
        "date_captured": "2017-01-01 00:00:00",
    }
    return _to_jpeg(img), record, anns


# ----------------------------------------------------------------------------- files


def _check_count(name: str, value: Any) -> int:
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
