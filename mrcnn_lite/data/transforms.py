"""Training and evaluation transforms that move image, boxes and masks together (torchvision.transforms.v2).

Mask R-CNN (He et al., 2017, Sec. 3.1) resizes images so the shorter side is
800 px with the longer side capped at 1333, and flips horizontally in training;
Detectron's multi-scale variant draws the shorter side per image from a set
(Sec. 4, "Multi-scale train"). We do the same with configurable sizes: on CPU
we train at much smaller sizes (a few hundred pixels), which only changes the
defaults the caller passes.

Because ``CocoDetection`` returns ``tv_tensors`` (``Image``, ``BoundingBoxes``,
``Mask``), every v2 transform updates all of them consistently; masks are
resized with nearest interpolation automatically. Plain values (``image_id``,
``orig_size``, ``area``) pass through untouched: ``orig_size`` must remain the
original size so predictions can be pasted back, and ``area`` stays COCO's area
in original pixels (COCOeval's area ranges are defined on it).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

INSTANCE_FIELDS = ("labels", "area", "iscrowd")  # per-instance tensors filtered together with the boxes


def build_transforms(
    train: bool,
    min_size: int | tuple[int, ...] = 800,
    max_size: int = 1333,
    flip_prob: float = 0.5,
) -> v2.Compose:
    """Resize (shorter side ``min_size``, longer <= ``max_size``), flip if training, float image, sanitize.

    A tuple ``min_size`` draws one size per image in training (multi-scale) and
    uses the largest in evaluation. We use ``v2.Resize`` inside ``v2.RandomChoice``
    rather than ``v2.RandomShortestSize``, which truncates the scaled sides and can
    give a shorter side one pixel short of the requested size (799 for 800).
    """
    sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    if train:
        resizes = [v2.Resize(s, max_size=max_size) for s in sizes]
        steps = [
            resizes[0] if len(resizes) == 1 else v2.RandomChoice(resizes),
            v2.RandomHorizontalFlip(flip_prob),
        ]
    else:
        steps = [v2.Resize(max(sizes), max_size=max_size)]
    steps += [
        v2.ClampBoundingBoxes(),  # COCO boxes can overshoot the image by a fraction of a pixel
        SanitizeInstances(),
        v2.ToDtype(torch.float32, scale=True),  # a plain dtype converts images only; masks stay uint8
    ]
    return v2.Compose(steps)


class SanitizeInstances(v2.Transform):
    """``v2.SanitizeBoundingBoxes`` on the instances of a detection target, crowd boxes left aside.

    Boxes smaller than ``min_size`` are removed together with their mask and
    their ``labels``/``area``/``iscrowd`` entries. The stock transform assumes a
    single ``BoundingBoxes`` per sample and would also index ``crowd_boxes`` with
    the instances' keep-mask whenever the counts happen to match, so we hide them
    from it.
    """

    def __init__(self, min_size: float = 1.0) -> None:
        super().__init__()
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=instance_fields)

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        aside = {k: target[k] for k in ("crowd_boxes",) if k in target}
        image, target = self.sanitize(image, {k: v for k, v in target.items() if k not in aside})
        return image, {**target, **aside}


def instance_fields(inputs: tuple[Any, dict[str, Any]]) -> tuple[torch.Tensor, ...]:
    """``labels_getter`` for ``v2.SanitizeBoundingBoxes``: the per-instance tensors present in the target.

    The stock default finds only ``labels``; masks are filtered anyway (any
    ``Mask`` with one entry per box), but ``area`` and ``iscrowd`` would be left
    out of sync. A module-level function, so that DataLoader workers can pickle it.
    """
    target = inputs[1]
    return tuple(target[k] for k in INSTANCE_FIELDS if k in target)
