"""Anchors: the reference boxes the RPN classifies and regresses (Faster R-CNN §3.1.1; FPN §4.1).

Faster R-CNN §3.1.1: "At each sliding-window location, we simultaneously predict multiple region proposals
... The k proposals are parameterized relative to k reference boxes, which we call anchors. An anchor is
centered at the sliding window in question, and is associated with a scale and aspect ratio." With one
feature map (Mask R-CNN's C4 and C5 backbones) every location carries all scales x ratios: here 5 scales
{32, 64, 128, 256, 512} x 3 ratios {1:2, 1:1, 2:1} = 15 anchors. FPN §4.1 instead assigns "anchors of a
single scale to each level": areas {32², 64², 128², 256², 512²} on {P2, P3, P4, P5, P6}, 3 ratios each, so
k = 3 per location and the pyramid, not the anchor set, covers the scales.

The layout follows torchvision's ``AnchorGenerator`` exactly (tests check equality): the aspect ratio is
height / width, a cell anchor of size ``s`` and ratio ``r`` is ``w = s / sqrt(r)``, ``h = s * sqrt(r)``,
centred at 0 and rounded to integers; the anchor of location ``(i, j)`` is shifted by ``(j * stride_x,
i * stride_y)`` (the top-left corner of the cell, as torchvision does, not its centre), with
``stride = image_size // feature_size`` from the padded batch. Anchors are ordered level by level, then
location by location (row-major), then anchor by anchor: the order of the RPN head's flattened outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList


def cell_anchors(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...]) -> Tensor:
    """Zero-centred anchors ``[len(ratios) * len(sizes), 4]`` (XYXY), ratio-major, rounded to integers."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)  # ratio = h / w and area = size², so h = size * sqrt(r), w = size / sqrt(r)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for a list of feature maps: ``len(sizes[i]) * len(aspect_ratios[i])`` per location of map i.

    ``sizes`` and ``aspect_ratios`` hold one tuple per feature map: ``((32, 64, 128, 256, 512),)`` and
    ``((0.5, 1.0, 2.0),)`` for a C4/C5 backbone; ``((32,), (64,), (128,), (256,), (512,))`` and
    ``((0.5, 1.0, 2.0),) * 5`` for FPN's P2-P6.
    """

    def __init__(
        self, sizes: tuple[tuple[int, ...], ...], aspect_ratios: tuple[tuple[float, ...], ...]
    ) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"one sizes tuple per feature map: got {len(sizes)} and {len(aspect_ratios)}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map location, one number per feature map (the RPN head's ``k``)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    def grid_anchors(
        self,
        grid_sizes: list[tuple[int, int]],
        strides: list[tuple[int, int]],
        dtype: torch.dtype,
        device: torch.device,
    ) -> list[Tensor]:
        """Anchors of each feature map ``[H * W * k, 4]``: every cell anchor shifted to every location."""
        if len(grid_sizes) != len(self.cell_anchors):
            raise ValueError(
                f"{len(grid_sizes)} feature maps but anchors were configured for {len(self.cell_anchors)}"
            )
        anchors = []
        for (gh, gw), (sh, sw), base in zip(grid_sizes, strides, self.cell_anchors, strict=True):
            base = base.to(dtype=dtype, device=device)
            shift_y, shift_x = torch.meshgrid(
                torch.arange(gh, device=device, dtype=dtype) * sh,
                torch.arange(gw, device=device, dtype=dtype) * sw,
                indexing="ij",
            )
            shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + base.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, image_list: ImageList, features: list[Tensor]) -> list[Tensor]:
        """Anchors per image ``[sum_l H_l * W_l * k_l, 4]``, levels concatenated (same for every image)."""
        image_h, image_w = image_list.tensors.shape[-2:]
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        strides = [(image_h // gh, image_w // gw) for gh, gw in grid_sizes]
        levels = self.grid_anchors(grid_sizes, strides, features[0].dtype, features[0].device)
        return [torch.cat(levels) for _ in image_list.image_sizes]
