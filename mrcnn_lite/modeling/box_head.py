"""Box heads: RoI feature -> class scores and class-specific box deltas (Mask R-CNN §3.1, Figure 4).

"For the network head we closely follow architectures presented in previous work": Figure 4 shows two.

- **C4** (Figure 4 left, ``Res5BoxHead``): the RoI features are 14x14 cuts of res4 (stride 16). The whole
  res5 stage of the ResNet runs *per RoI* (its first block has stride 2: 14x14 -> 7x7, 2048 channels for
  ResNet-50), then global average pooling gives one vector per RoI. The mask branch of Figure 4 left runs
  on the same res5 output, so the head returns it for ``C4MaskHead`` to reuse.
- **C5 / FPN** (Figure 4 right, ``TwoFCBoxHead``): 7x7 RoI features, flattened, through two hidden fully
  connected layers of 1024 with ReLU (FPN paper §4.2's "2fc" head).

Both end in the Fast R-CNN predictor (``BoxPredictor``): a linear layer to ``num_classes`` logits (softmax
over K classes, background being label 0) and a linear layer to ``4 * num_classes`` deltas, one box per
class ("class-specific" boxes, Fast R-CNN §2.2). Initialisation as in Detectron: N(0, 0.01²) for the class
scores, N(0, 0.001²) for the deltas, zero biases; the hidden fully connected layers use Caffe2's
"XavierFill" (detectron2's ``c2_xavier_fill``).
"""

from __future__ import annotations

from torch import Tensor, nn


def c2_xavier_fill(layer: nn.Module) -> None:
    """Caffe2's XavierFill as detectron2 writes it: uniform with bound sqrt(3 / fan_in), zero bias."""
    nn.init.kaiming_uniform_(layer.weight, a=1)
    nn.init.zeros_(layer.bias)


def _required(num_classes: int | None) -> int:
    """``num_classes`` comes after arguments with defaults (the paper's sizes) yet has none of its own."""
    if num_classes is None:
        raise TypeError("num_classes is required (object classes + 1 for the background)")
    return num_classes


class BoxPredictor(nn.Module):
    """Fast R-CNN's sibling outputs: ``cls_score`` -> ``[R, num_classes]`` logits and ``bbox_pred`` ->
    ``[R, 4 * num_classes]`` class-specific deltas (Fast R-CNN §2.2; Mask R-CNN §3)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class Res5BoxHead(nn.Module):
    """C4 box head (Figure 4 left): ``[R, C4, 14, 14]`` -> res5 -> ``[R, C5, 7, 7]`` -> average pool ->
    predictor. ``res5`` is the backbone's res5 stage (e.g. ``backbone.res5`` or a torchvision ``layer4``),
    whose first block has stride 2; ``res5_out_channels`` is its output width (2048 for ResNet-50).

    ``forward`` returns ``(class_logits, box_deltas, res5_features)``: the mask branch reuses the features.
    """

    def __init__(self, res5: nn.Module, res5_out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.res5 = res5
        self.predictor = BoxPredictor(res5_out_channels, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features = self.res5(x)
        class_logits, box_deltas = self.predictor(features.mean(dim=(2, 3)))
        return class_logits, box_deltas, features


class TwoFCBoxHead(nn.Module):
    """C5 / FPN box head (Figure 4 right): flatten ``[R, C, resolution, resolution]`` -> fc ``fc_dim`` ->
    ReLU -> fc ``fc_dim`` -> ReLU -> predictor. ``forward`` returns ``(class_logits, box_deltas, None)``."""

    def __init__(
        self, in_channels: int, resolution: int = 7, fc_dim: int = 1024, num_classes: int | None = None
    ) -> None:
        super().__init__()
        num_classes = _required(num_classes)
        self.fc6 = nn.Linear(in_channels * resolution * resolution, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        for layer in (self.fc6, self.fc7):
            c2_xavier_fill(layer)
        self.predictor = BoxPredictor(fc_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        x = self.fc7(self.fc6(x.flatten(1)).relu()).relu()
        class_logits, box_deltas = self.predictor(x)
        return class_logits, box_deltas, None
