"""Mask codecs (mrcnn_lite.data.masks) against hand-computed masks and an independent RLE encoder."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_lite.data import masks


def _reference_uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE spelled out by hand: runs over column-major pixels, 0-run first."""
    counts, value = [], 0
    for v, run in itertools.groupby(mask.flatten(order="F").tolist()):
        if v != value:  # the first run must count zeros, even if there are none
            counts.append(0)
        counts.append(len(list(run)))
        value = 1 - v
    return {"counts": counts, "size": list(mask.shape)}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def _random_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [rng.random((h, w)) < p for h, w, p in [(7, 5, 0.5), (30, 41, 0.1), (64, 48, 0.9)]]
    corner = np.zeros((9, 11), bool)
    corner[0, 0] = True  # first pixel set: the RLE starts with an empty 0-run
    return [*out, corner, np.zeros((6, 4), bool), np.ones((6, 4), bool)]


@pytest.mark.parametrize("mask", _random_masks())
def test_rle_round_trip_is_exact(mask):
    rle = masks.encode(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
    decoded = masks.decode(rle, *mask.shape)
    assert decoded.dtype == np.uint8 and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8))
    assert masks.area(rle, *mask.shape) == int(mask.sum())


@pytest.mark.parametrize("mask", _random_masks())
def test_uncompressed_rle_decodes_like_compressed(mask):
    unc = _reference_uncompressed_rle(mask)
    assert sum(unc["counts"]) == mask.size
    h, w = mask.shape
    np.testing.assert_array_equal(masks.decode(unc, h, w), mask.astype(np.uint8))
    np.testing.assert_array_equal(masks.decode(unc, h, w), masks.decode(masks.encode(mask), h, w))
    assert masks.to_rle(unc, h, w)["counts"].decode() == masks.encode(mask)["counts"]
    assert masks.area(unc, h, w) == masks.area(masks.encode(mask), h, w) == int(mask.sum())


def test_rectangle_polygon_by_hand():
    # pycocotools fills the pixels whose centres (x + .5, y + .5) lie inside the polygon. With integer
    # corners x in [2, 9), y in [3, 7) that is columns 2..8 and rows 3..6: 7 * 4 = 28 = w * h pixels.
    h, w = 12, 15
    polygon = [[2, 3, 9, 3, 9, 7, 2, 7]]
    expected = np.zeros((h, w), np.uint8)
    expected[3:7, 2:9] = 1
    np.testing.assert_array_equal(masks.decode(polygon, h, w), expected)
    assert masks.area(polygon, h, w) == 28
    assert masks.bbox(polygon, h, w) == [2.0, 3.0, 7.0, 4.0]
    # Fractional corners: centres 2.5..9.5 lie in (1.7, 10.4) and 1.5..8.5 in (0.8, 9.3): 8 x 8 pixels.
    fractional = [[1.7, 0.8, 10.4, 0.8, 10.4, 9.3, 1.7, 9.3]]
    assert masks.area(fractional, h, w) == 64
    assert masks.bbox(fractional, h, w) == [2.0, 1.0, 8.0, 8.0]


def test_area_and_bbox_of_rle_rectangle():
    mask = np.zeros((20, 30), np.uint8)
    mask[4:15, 7:12] = 1  # 11 rows x 5 columns
    for segm in (masks.encode(mask), _reference_uncompressed_rle(mask)):
        assert masks.area(segm, 20, 30) == 55
        assert masks.bbox(segm, 20, 30) == [7.0, 4.0, 5.0, 11.0]


def _simple_shapes() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:64, 0:80]
    rect = (yy >= 10) & (yy < 40) & (xx >= 5) & (xx < 50)
    disc = (yy - 30) ** 2 + (xx - 40) ** 2 <= 20**2
    triangle = (yy >= 8) & (yy < 60) & (np.abs(xx - 40) <= (yy - 8) * 0.6)
    ellipse = ((yy - 32) / 12.0) ** 2 + ((xx - 30) / 25.0) ** 2 <= 1
    return [rect, disc, triangle, ellipse]


@pytest.mark.parametrize("mask", _simple_shapes())
def test_polygon_round_trip_keeps_iou_high(mask):
    h, w = mask.shape
    polygons = masks.to_polygons(mask)
    assert len(polygons) == 1 and len(polygons[0]) % 2 == 0 and len(polygons[0]) >= 6
    once = masks.decode(polygons, h, w)
    assert _iou(once, mask) > 0.9
    twice = masks.decode(masks.to_polygons(once), h, w)
    assert _iou(twice, mask) > 0.9
    assert _iou(twice, once) > 0.9


def test_axis_aligned_rectangle_traces_back_exactly():
    mask = np.zeros((12, 15), np.uint8)
    mask[3:7, 2:9] = 1
    polygons = masks.to_polygons(mask)
    xy = np.asarray(polygons[0]).reshape(-1, 2)
    # The outline runs along the pixel edges x = 2, 9 and y = 3, 7 (corners cut by half a pixel).
    assert xy[:, 0].min() == 2.0 and xy[:, 0].max() == 9.0
    assert xy[:, 1].min() == 3.0 and xy[:, 1].max() == 7.0
    np.testing.assert_array_equal(masks.decode(polygons, 12, 15), mask)


def test_to_polygons_drops_holes():
    # Documented: COCO polygons cannot hold holes, so a frame decodes back as a filled square.
    frame = np.zeros((40, 40), np.uint8)
    frame[5:35, 5:35] = 1
    frame[15:25, 15:25] = 0
    polygons = masks.to_polygons(frame)
    assert len(polygons) == 1
    filled = np.zeros_like(frame)
    filled[5:35, 5:35] = 1
    np.testing.assert_array_equal(masks.decode(polygons, 40, 40), filled)


def test_to_polygons_two_pieces():
    mask = np.zeros((30, 40), np.uint8)
    mask[2:10, 3:12] = 1
    mask[15:28, 20:37] = 1
    polygons = masks.to_polygons(mask)
    assert len(polygons) == 2
    pieces = [masks.decode([p], 30, 40) for p in polygons]
    assert sorted(int(p.sum()) for p in pieces) == [8 * 9, 13 * 17]
    assert not np.any(pieces[0] & pieces[1])
    np.testing.assert_array_equal(masks.decode(polygons, 30, 40), mask)


def test_to_polygons_of_empty_mask_is_empty():
    assert masks.to_polygons(np.zeros((5, 5), np.uint8)) == []


def test_compressed_rle_passes_through_unchanged():
    mask = np.eye(6, dtype=np.uint8)
    rle = masks.encode(mask)
    assert masks.to_rle(rle, 6, 6) is rle
    raw = mask_utils.encode(np.asfortranarray(mask))  # bytes counts, as pycocotools returns them
    np.testing.assert_array_equal(masks.decode(raw, 6, 6), mask)


@pytest.mark.parametrize("bad", [42, "abc", None, {"size": [4, 4]}, {"counts": 3, "size": [4, 4]}])
def test_invalid_segmentation_raises(bad):
    with pytest.raises(ValueError, match="segmentation"):
        masks.to_rle(bad, 4, 4)


def test_polygon_pieces_with_fewer_than_three_points_are_dropped_or_rejected() -> None:
    # pycocotools would read a first piece of 4 numbers as a box; we drop such pieces instead.
    square = [2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]
    assert masks.area([[1.0, 1.0, 3.0, 3.0], square], 10, 10) == masks.area([square], 10, 10) == 16
    with pytest.raises(ValueError, match="no piece with >= 3 points"):
        masks.to_rle([[1.0, 1.0, 3.0, 3.0]], 10, 10)
    with pytest.raises(ValueError, match="no piece with >= 3 points"):
        masks.to_rle([], 10, 10)
