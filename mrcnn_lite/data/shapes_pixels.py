"""How a shapes image looks: a background of gradient, texture and unannotated clutter, shaded shapes
painted over it, and deterministic JPEG encoding (see :mod:`mrcnn_lite.data.shapes`)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

JPEG_QUALITY = 90


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
