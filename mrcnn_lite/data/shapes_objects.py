"""What the shapes data set draws: six categories with gapped ids and the random shapes of one image.

A shape is an outline of circumradius 1 (a ring has a hole) scaled to a target area drawn log-uniformly
inside COCO's small / medium / large ranges, rotated, and rasterised into a bool mask. An image's objects
are a few such shapes, in back-to-front drawing order, and sometimes a crowd: a cluster of tiny shapes of
one class that is annotated as one ``iscrowd=1`` region (see :mod:`mrcnn_lite.data.shapes`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "circle", "supercategory": "round"},
    {"id": 3, "name": "square", "supercategory": "polygon"},
    {"id": 4, "name": "triangle", "supercategory": "polygon"},
    {"id": 7, "name": "star", "supercategory": "polygon"},
    {"id": 10, "name": "ring", "supercategory": "round"},
    {"id": 13, "name": "cross", "supercategory": "polygon"},
]

# (large ones are favoured because occlusion shrinks their visible part most).
SIZE_BINS = ((60.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 26000.0))
SIZE_PROBS = (0.34, 0.31, 0.35)


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
