"""One image of the shapes data set, with its annotations: sizes, sparse ids, empty and crowd images, and
occlusion (each annotation is the visible part of its shape; see :mod:`mrcnn_lite.data.shapes`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mrcnn_lite.data.shapes_annotations import _annotation
from mrcnn_lite.data.shapes_objects import _sample_objects
from mrcnn_lite.data.shapes_pixels import _background, _paint, _to_jpeg

IMAGE_SIZE_RANGE = (160, 256)  # inclusive range of widths and of heights
MAX_INSTANCES = 8
MIN_AREA = 16  # visible pixels below which an instance is dropped
EMPTY_EVERY, EMPTY_AT = 20, 3  # image i has no objects when i % 20 == 3 (5% of images)
CROWD_EVERY, CROWD_AT = 10, 5  # image i holds a crowd region when i % 10 == 5 (10% of images)
VAL_ID_OFFSET = 500_000_000  # val image ids start here; train ids start at 1


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
