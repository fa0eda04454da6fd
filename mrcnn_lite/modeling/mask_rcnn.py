"""The whole model: backbone → RPN → RoI heads (He et al. 2017, §3), in torchvision's detection API.

``model(images, targets)`` in train mode returns a dict of losses (RPN objectness and box, Lcls, Lbox,
Lmask); ``model(images)`` in eval mode returns one dict per image with ``boxes``, ``labels``, ``scores``
and ``masks`` (``[D, 1, H, W]``, binarised at 0.5 as in the paper, §3.1 "Inference").

Images arrive already resized by the data transforms (``mrcnn_lite.data.transforms``), as float tensors
in [0, 1] of any size; the model normalises them with ImageNet's mean and std and pads the batch to a
multiple of 32 (the FPN's coarsest stride). Pass ``orig_sizes`` to get detections in the coordinates of
the images before resizing (boxes rescaled, masks pasted at that size), as COCO evaluation needs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from mrcnn_lite.modeling.postprocess import paste_masks
from mrcnn_lite.modeling.roi_heads import RoIHeads
from mrcnn_lite.modeling.rpn import RegionProposalNetwork

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batch_images(
    images: list[Tensor], divisor: int = 32, memory_format: torch.memory_format = torch.contiguous_format
) -> ImageList:
    """Zero-pad images ``[3, H_i, W_i]`` to one ``[N, 3, H, W]`` tensor with H, W multiples of ``divisor``,
    laid out in ``memory_format``."""
    h = max(im.shape[-2] for im in images)
    w = max(im.shape[-1] for im in images)
    h, w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    first = images[0]
    shape = (len(images), first.shape[0], h, w)
    batch = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=memory_format).zero_()
    for b, im in zip(batch, images, strict=True):
        b[:, : im.shape[-2], : im.shape[-1]].copy_(im)
    return ImageList(batch, [(int(im.shape[-2]), int(im.shape[-1])) for im in images])


class MaskRCNN(nn.Module):
    """Mask R-CNN (or Faster R-CNN when ``roi_heads`` has no mask head: the paper's Table 3)."""

    def __init__(
        self,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        mask_threshold: float = 0.5,
        size_divisor: int = 32,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        self.mask_threshold = mask_threshold
        self.size_divisor = size_divisor
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        # Channels-last (NHWC) images and conv weights: oneDNN's CPU convolutions then skip a layout
        # reorder before and after every layer (about 15-25% off a ResNet-50 training step here), and our
        # RoIAlign CPU kernel reads NHWC features without a copy. The numbers are the same up to float
        # rounding; state dicts are unchanged (load_state_dict copies into the NHWC weights).
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def preprocess(self, images: list[Tensor]) -> ImageList:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        normalised = [(im - self.pixel_mean) / self.pixel_std for im in images]
        return batch_images(normalised, self.size_divisor, layout)

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError(
                "MaskRCNN needs targets in training mode (a list of dicts: boxes, labels, masks)"
            )
        image_list = self.preprocess(images)
        features = self.backbone(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.postprocess(detections, image_list.image_sizes, orig_sizes)

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Rescale boxes to ``orig_sizes`` (if given) and paste each m×m mask into its box, binarised."""
        orig_sizes = orig_sizes or image_sizes
        for det, size, orig in zip(detections, image_sizes, orig_sizes, strict=True):
            if tuple(orig) != tuple(size):
                ratio_h, ratio_w = orig[0] / size[0], orig[1] / size[1]
                det["boxes"] = det["boxes"] * det["boxes"].new_tensor([ratio_w, ratio_h, ratio_w, ratio_h])
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"], det["boxes"], tuple(orig), self.mask_threshold)
        return detections
