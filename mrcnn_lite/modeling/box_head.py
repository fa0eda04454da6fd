"""Box heads: RoI feature -> class scores and class-specific box deltas (Mask R-CNN §3.1, Figure 4).

"For the network head we closely follow architectures presented in previous work": Figure 4 shows two.

- **C4** (Figure 4 left, ``Res5BoxHead``): the RoI features are 14x14 cuts of res4 (stride 16). The whole
  res5 stage of the ResNet runs *per RoI* (its first block has stride 2: 14x14 -> 7x7, 2048 channels for
  ResNet-50), then global average pooling gives one vector per RoI. The mask branch of Figure 4 left runs
  on the same res5 output: ``run_res5`` and ``predict`` split the head so that the C4 RoI heads run res5
  once for both.
- **C5 / FPN** (Figure 4 right, ``TwoFCBoxHead``): 7x7 RoI features, flattened, through two hidden fully
  connected layers of 1024 with ReLU (FPN paper §4.2's "2fc" head).

Both return ``(class_logits, box_deltas)`` from the Fast R-CNN predictor (``BoxPredictor``): a linear
layer to ``num_classes`` logits (softmax over K classes, background being label 0) and a linear layer to
``4 * num_classes`` deltas, one box per class ("class-specific" boxes, Fast R-CNN §2.2). Initialisation
as in Detectron: N(0, 0.01²) for the class scores, N(0, 0.001²) for the deltas, zero biases; the hidden
fully connected layers use Caffe2's "XavierFill" (detectron2's ``c2_xavier_fill``).
"""

from __future__ import annotations

from torch import Tensor, nn


def c2_xavier_fill(layer: nn.Module) -> None:
    """Caffe2's XavierFill as detectron2 writes it: uniform with bound sqrt(3 / fan_in), zero bias."""
    nn.init.kaiming_uniform_(layer.weight, a=1)
    nn.init.zeros_(layer.bias)


class BoxPredictor(nn.Module):
    """Fast R-CNN's sibling outputs: ``cls_score`` -> ``[R, num_classes]`` logits and ``bbox_pred`` ->
    ``[R, 4 * num_classes]`` class-specific deltas (Fast R-CNN §2.2; Mask R-CNN §3)."""

    def __init__(self, in_channels: int, *, num_classes: int) -> None:
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

    ``forward`` returns ``(class_logits, box_deltas)``. The C4 mask branch reads res5's output too: the RoI
    heads (:class:`~mrcnn_lite.modeling.roi_heads.Res5RoIHeads`) call :meth:`run_res5` once and hand its
    output to both :meth:`predict` and the mask head.
    """

    def __init__(self, res5: nn.Module, *, res5_out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.res5 = res5
        self.predictor = BoxPredictor(res5_out_channels, num_classes=num_classes)

    def run_res5(self, x: Tensor) -> Tensor:
        """res5 on the pooled RoI features: ``[R, C4, 14, 14]`` -> ``[R, C5, 7, 7]``."""
        return self.res5(x)

    def predict(self, res5_features: Tensor) -> tuple[Tensor, Tensor]:
        """Global average pooling of res5's output, then the predictor: ``(class_logits, box_deltas)``."""
        return self.predictor(res5_features.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.predict(self.run_res5(x))


class TwoFCBoxHead(nn.Module):
    """C5 / FPN box head (Figure 4 right): flatten ``[R, C, resolution, resolution]`` -> fc ``fc_dim`` ->
    ReLU -> fc ``fc_dim`` -> ReLU -> predictor. ``forward`` returns ``(class_logits, box_deltas)``."""

    def __init__(
        self, in_channels: int, *, num_classes: int, resolution: int = 7, fc_dim: int = 1024
    ) -> None:
        super().__init__()
        self.resolution, self.fc_dim = resolution, fc_dim
        self.fc6 = nn.Linear(in_channels * resolution * resolution, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        for layer in (self.fc6, self.fc7):
            c2_xavier_fill(layer)
        self.predictor = BoxPredictor(fc_dim, num_classes=num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.fc7(self.fc6(x.flatten(1)).relu()).relu()
        return self.predictor(x)
