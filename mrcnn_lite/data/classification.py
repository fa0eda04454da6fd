"""A classification task from the shapes generator: the stand-in for ImageNet pretraining (Table 2 v2).

The paper fine-tunes every Mask R-CNN from a ResNet pretrained on ImageNet classification (§3.1,
"Network Architecture"; §4, "Implementation Details"): the trunk has learned general features, and none of
the options Table 2 compares (RoI operator, FPN or C4, mask head) took part in learning them. We have no
ImageNet, so the trunk learns to name the shape in small images drawn with the same primitives as the
shapes data set (:mod:`mrcnn_lite.data.shapes`): one labelled shape over the same textured backgrounds,
with up to two smaller unlabelled distractor shapes behind it. No boxes, masks, RoIs or FPN are involved.

Images are generated on the fly, each from its own seed sequence ``[seed, STREAM, split_index, index]``,
so image ``i`` is the same on every call and the split is disjoint from the detection data's streams
(``[seed, split_index, index]``): pretraining never sees a detection image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from mrcnn_lite.data.shapes import CATEGORIES, _background, _colour, _paint, _shape_mask

__all__ = ["NUM_CLASSES", "STREAM", "ShapesClassification", "make_classification_image"]

#: the classification stream's tag in the seed sequence (the detection data uses none)
STREAM = 7_000_001
NUM_CLASSES = len(CATEGORIES)
#: the labelled shape's area as a fraction of the image, log-uniform in this range
MAIN_AREA = (0.04, 0.45)
MAX_DISTRACTORS = 2
#: a distractor's area relative to the labelled shape's, uniform in this range
DISTRACTOR_AREA = (0.08, 0.35)


def make_classification_image(
    seed: int, split_index: int, index: int, size: int = 96
) -> tuple[np.ndarray, int]:
    """Image ``index`` of a split: ``(uint8 (size, size, 3) array, class index 0..5)``.

    The labelled shape is drawn last (in front), near the centre; the distractors are of other classes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM, split_index, index]))
    label = int(rng.integers(NUM_CLASSES))
    img = _background(rng, size, size)
    area = size * size * float(np.exp(rng.uniform(math.log(MAIN_AREA[0]), math.log(MAIN_AREA[1]))))
    others = [k for k in range(NUM_CLASSES) if k != label]
    for _ in range(int(rng.integers(MAX_DISTRACTORS + 1))):
        k = others[int(rng.integers(len(others)))]
        a = area * rng.uniform(*DISTRACTOR_AREA)
        centre = (rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size)
        _paint(img, _shape_mask(CATEGORIES[k]["name"], a, centre, rng, size, size), _colour(rng), rng)
    jitter = 0.15 * size
    centre = (size / 2 + rng.uniform(-jitter, jitter), size / 2 + rng.uniform(-jitter, jitter))
    mask = _shape_mask(CATEGORIES[label]["name"], area, centre, rng, size, size)
    _paint(img, mask, _colour(rng), rng)
    img += rng.normal(0, rng.uniform(2, 10), size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), label


class ShapesClassification(Dataset):
    """``num_images`` generated images of one split (0: train, 1: val) as ``(float (3, S, S) in [0, 1],
    label)``. Horizontal flips (train only) are drawn from the same per-image seed: deterministic."""

    def __init__(self, num_images: int, split_index: int = 0, seed: int = 0, size: int = 96,
                 flip: bool = False) -> None:
        if num_images <= 0 or size < 32:
            raise ValueError(f"num_images must be > 0 and size >= 32, got {num_images} and {size}")
        self.num_images, self.split_index, self.seed = num_images, split_index, seed
        self.size, self.flip = size, flip

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        pixels, label = make_classification_image(self.seed, self.split_index, index, self.size)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        if self.flip and index % 2 == 1:  # half the images mirrored: shapes are mirror-symmetric classes
            image = image.flip(-1)
        return image, label
