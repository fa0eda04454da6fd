"""Guards that keep non-finite numbers (NaN, ±inf) of a diverging model away from the RoI operators.

A diverging run first shows up as non-finite network outputs. The RPN's decoded proposals and the box
head's decoded detections are the coordinates the RoI operators (RoIPool / RoIWarp / RoIAlign) sample
at, so the model checks both before it pools (:class:`~mrcnn_lite.modeling.rpn.RegionProposalNetwork`,
:func:`~mrcnn_lite.modeling.postprocess.postprocess_detections`) and raises :class:`NonFiniteError`,
naming the stage, instead of handing NaN boxes on (where NMS and the size filter would silently drop
them, or a kernel would read out of bounds). The trainer turns it into a one-paragraph message.

Each check is one ``isfinite(...).all()`` reduction on the device, read on the host together with a
``torch.where`` the stage makes anyway (:func:`where_if_finite`), so it adds no device-to-host sync.
"""

from __future__ import annotations

import torch
from torch import Tensor


class NonFiniteError(FloatingPointError):
    """Non-finite values (NaN or ±inf) in ``term``: "rpn proposals", "box head outputs", "loss_mask",
    "model weights", ... ``detail`` says more (which tensor, how many values)."""

    def __init__(self, term: str, detail: str = "") -> None:
        self.term, self.detail = term, detail
        super().__init__(f"non-finite values (NaN or inf) in the {term}" + (f": {detail}" if detail else ""))


def all_finite(*tensors: Tensor) -> Tensor:
    """A 0-d bool tensor on the tensors' device: every value of every tensor is finite (no host sync)."""
    device = tensors[0].device if tensors else None
    flags = [torch.isfinite(t).all().to(device) for t in tensors if t.numel()]  # e.g. Adam's CPU steps
    if not flags:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.stack(flags).all() if len(flags) > 1 else flags[0]


def count_nonfinite(**tensors: Tensor) -> str:
    """``"deltas: 12 of 480 values not finite, logits: all finite"``, for an error message (syncs)."""
    parts = []
    for name, t in tensors.items():
        bad = int((~torch.isfinite(t)).sum())
        parts.append(f"{name}: {bad} of {t.numel()} values not finite" if bad else f"{name}: all finite")
    return ", ".join(parts)


def where_if_finite(mask: Tensor, finite: Tensor | None) -> Tensor | None:
    """``torch.where(mask)[0]`` for a 1-d bool ``mask``, or None when the 0-d bool ``finite`` is False.

    Both answers come from the one device-to-host transfer ``torch.where`` makes anyway (the number of
    selected positions): when not ``finite``, ``len(mask) + 1`` positions are selected, a count ``mask``
    alone cannot reach."""
    if finite is None:
        return torch.where(mask)[0]
    flagged = torch.cat([mask & finite, (~finite).expand(len(mask) + 1)])
    idx = torch.where(flagged)[0]
    return None if len(idx) > len(mask) else idx
