"""Mask heads: RoI feature -> K m×m mask logits (Mask R-CNN §3 "Mask Representation", Figure 4, Table 2e).

"The mask branch has a Km²-dimensional output for each RoI, which encodes K binary masks of resolution
m × m, one for each of the K classes" (§3). The paper argues for a fully convolutional (FCN) mask branch,
which keeps the m × m spatial layout, over fully connected layers, which collapse it: Table 2e, with a
ResNet-50-FPN, measures MLP 1024→1024→K·m² at 31.5 mask AP, MLP 1024→1024→1024→K·m² at 31.5, and FCN at
33.6. The heads here:

- ``FCNMaskHead`` (Figure 4 right, FPN): four 3×3 convs of 256 + ReLU on 14×14 RoI features, a 2×2
  deconvolution of stride 2 + ReLU to 28×28, and a 1×1 conv to the K mask logits (m = 28).
- ``C4MaskHead`` (Figure 4 left): on the res5 output (7×7) that the C4 box head already computed, a 2×2
  deconvolution of stride 2 + ReLU to 14×14 and 256 channels, then a 1×1 conv (m = 14).
- ``MLPMaskHead`` (Table 2e): flatten, fully connected hidden layers with ReLU, a fully connected layer to
  K·m², reshaped to ``[R, K, m, m]``.

``class_agnostic=True`` predicts one mask for all classes (K_out = 1): Table 2b/§4.2 "Class-Agnostic
Masks" (29.7 vs 30.3 mask AP with ResNet-50-C4). Otherwise K_out = ``num_classes`` (background included,
its channel unused by the sigmoid loss and used as "background" by the softmax ablation of Table 2b).

Initialisation follows detectron2: "MSRA" fill (``kaiming_normal_(mode="fan_out", nonlinearity="relu")``)
for the convs and the deconv, N(0, 0.001²) for the mask predictor; Caffe2 "XavierFill" for hidden fc layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from .box_head import c2_xavier_fill


def msra_fill(layer: nn.Module) -> None:
    """Kaiming normal (fan_out, ReLU) weights and zero bias, as Detectron's MSRAFill and torchvision."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(layer.bias)


def _mask_predictor(in_channels: int, num_outputs: int) -> nn.Conv2d:
    predictor = nn.Conv2d(in_channels, num_outputs, kernel_size=1)
    nn.init.normal_(predictor.weight, std=0.001)
    nn.init.zeros_(predictor.bias)
    return predictor


class FCNMaskHead(nn.Module):
    """FPN mask head (Figure 4 right): ``[R, in_channels, 14, 14]`` -> ``num_convs`` × (3×3 conv ``conv_dim``
    + ReLU) -> 2×2 deconv stride 2 + ReLU -> 1×1 conv -> ``[R, K_out, 28, 28]`` logits."""

    def __init__(
        self,
        in_channels: int,
        *,
        num_classes: int,
        conv_dim: int = 256,
        num_convs: int = 4,
        class_agnostic: bool = False,
    ) -> None:
        super().__init__()
        self.num_outputs = 1 if class_agnostic else num_classes
        convs = []
        for i in range(num_convs):
            convs += [nn.Conv2d(in_channels if i == 0 else conv_dim, conv_dim, 3, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        self.deconv = nn.ConvTranspose2d(conv_dim if num_convs else in_channels, conv_dim, 2, stride=2)
        self.predictor = _mask_predictor(conv_dim, self.num_outputs)
        for layer in [*self.convs, self.deconv]:
            if not isinstance(layer, nn.ReLU):
                msra_fill(layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.deconv(self.convs(x)).relu())


class C4MaskHead(nn.Module):
    """C4 mask head (Figure 4 left): res5 output ``[R, in_channels, 7, 7]`` -> 2×2 deconv stride 2 to
    ``conv_dim`` (256) channels + ReLU -> 1×1 conv -> ``[R, K_out, 14, 14]`` logits. It pools nothing: the
    C4 RoI heads (:class:`~mrcnn_lite.modeling.roi_heads.Res5RoIHeads`) give it the box head's res5 output."""

    def __init__(
        self, in_channels: int, *, num_classes: int, conv_dim: int = 256, class_agnostic: bool = False
    ) -> None:
        super().__init__()
        self.num_outputs = 1 if class_agnostic else num_classes
        self.deconv = nn.ConvTranspose2d(in_channels, conv_dim, 2, stride=2)
        msra_fill(self.deconv)
        self.predictor = _mask_predictor(conv_dim, self.num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.deconv(x).relu())


class MLPMaskHead(nn.Module):
    """Fully connected mask head (Table 2e): flatten ``[R, in_channels, resolution, resolution]`` -> for each
    width in ``hidden``: fc + ReLU -> fc to ``K_out·m²`` (m = ``mask_size``) -> ``[R, K_out, m, m]`` logits.
    ``hidden=(1024,)`` is the table's "fc: 1024→1024→80·28²" and ``hidden=(1024, 1024)`` its
    "1024→1024→1024→80·28²"."""

    def __init__(
        self,
        in_channels: int,
        *,
        num_classes: int,
        resolution: int,
        hidden: tuple[int, ...] = (1024,),
        mask_size: int = 28,
        class_agnostic: bool = False,
    ) -> None:
        super().__init__()
        self.resolution, self.hidden, self.mask_size = resolution, tuple(hidden), mask_size
        self.num_outputs = 1 if class_agnostic else num_classes
        layers: list[nn.Module] = []
        width = in_channels * resolution * resolution
        for h in hidden:
            fc = nn.Linear(width, h)
            c2_xavier_fill(fc)
            layers += [fc, nn.ReLU()]
            width = h
        self.fcs = nn.Sequential(*layers)
        self.predictor = nn.Linear(width, self.num_outputs * mask_size * mask_size)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        m = self.mask_size
        return self.predictor(self.fcs(x.flatten(1))).view(-1, self.num_outputs, m, m)
