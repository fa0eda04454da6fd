"""Feature Pyramid Network (Lin et al., CVPR 2017), the FPN backbone of Mask R-CNN (§3.1, Figure 4 right).

From the trunk's C2..C5 (strides 4..32) the pyramid builds P5..P2 top-down::

    P5 = conv3x3(lateral1x1(C5))
    Pi = conv3x3(lateral1x1(Ci) + upsample_nearest(Pi+1 before its 3x3))   for i = 4, 3, 2
    P6 = subsample(P5, stride 2)                                              (RPN anchors only)

every map with ``out_channels`` (256 in the paper). The layers are torchvision's
``FeaturePyramidNetwork`` with ``LastLevelMaxPool`` (a 1x1 max pool with stride 2, i.e. subsampling);
this module only renames the outputs to the paper's P2..P6.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

__all__ = ["FPN"]


class FPN(nn.Module):
    """Top-down pyramid with lateral connections: ``{"c2".."c5"}`` -> ``{"p2".."p6"}`` (Lin et al. 2017).

    ``in_channels`` are C2..C5's channel counts. The weights live in ``self.fpn``, a
    ``torchvision.ops.FeaturePyramidNetwork`` (laterals ``inner_blocks``, 3x3 convs ``layer_blocks``,
    initialised with ``kaiming_uniform_(a=1)`` and zero bias as in Detectron).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"FPN takes C2..C5, so 4 channel counts, got {in_channels}")
        if out_channels <= 0:
            raise ValueError(f"fpn out_channels must be positive, got {out_channels}")
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.strides = {f"p{i}": 2**i for i in range(2, 7)}

    def forward(self, features: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        names = list(features)
        if names != ["c2", "c3", "c4", "c5"]:
            raise ValueError(f"FPN expects features c2, c3, c4, c5 in that order, got {names}")
        pyramid = self.fpn(features)  # keys c2..c5, then "pool" (P6)
        return OrderedDict((f"p{i + 2}", v) for i, v in enumerate(pyramid.values()))
