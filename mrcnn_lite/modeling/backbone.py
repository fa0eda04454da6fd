"""ResNet / ResNeXt trunks and the three ways Mask R-CNN uses them: C4, C5 and FPN (§3.1, Figure 4).

The paper's "network-depth-features" names (§3.1, "Network Architecture") pick a trunk and where the
features come from:

- **C4** (ResNet-50-C4, Figure 4 left): features of res4 (stride 16) feed the RPN and the RoI operator.
  res5 is *not* run on the whole image: it is the box head, run on 14x14 RoI features (first block stride
  2, so 7x7 out), then average pooled. It is exposed as ``backbone.res5``.
- **C5**: features of res5 (stride 32) for everything (the RoIAlign-at-stride-32 study, Table 2d).
- **FPN** (Lin et al., CVPR 2017; Figure 4 right): a top-down pyramid with lateral connections over
  C2..C5 gives P2..P5 (stride 4..32, ``fpn_channels`` each); P6 is a stride-2 subsampling of P5, used by
  the RPN only.

The trunk is built from torchvision's own residual blocks (``BasicBlock``, ``Bottleneck``) with a
channel ``width`` setting: ``width=64`` is the standard network, and its ``state_dict`` keys and shapes
equal torchvision's ``resnet50()`` etc. (less ``fc``), so ImageNet weights load from a local file.
Smaller widths (16, 32) scale the stem and every stage proportionally for CPU-sized classroom models.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from .fpn import FPN

__all__ = [
    "ARCHS",
    "DEPTHS",
    "Backbone",
    "ResNet",
    "build_backbone",
    "build_resnet",
    "convert_frozen_batchnorm",
    "freeze_stages",
    "load_imagenet_weights",
]

# name -> (block, blocks per stage res2..res5, groups, width_per_group), as in torchvision.models.resnet
DEPTHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
}
ARCHS = ("c4", "c5", "fpn")
# what freeze_at counts, in torchvision's module names: stem, res2, res3, res4, res5
FREEZE_UNITS = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    groups: int,
    width_per_group: int,
) -> nn.Sequential:
    """One residual stage: ``blocks`` blocks, the first with ``stride`` and a 1x1 projection shortcut.

    Same modules and names as torchvision's ``ResNet._make_layer`` (stride on the 3x3 conv, "ResNet v1.5"),
    without its hard-coded 64-channel stem.
    """
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [block(inplanes, planes, stride, downsample, groups, width_per_group)]
    layers += [block(out, planes, groups=groups, base_width=width_per_group) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """A ResNet/ResNeXt trunk without its classifier: stem (conv1, bn1, relu, maxpool) and res2..res5.

    Module names follow torchvision (``conv1``, ``bn1``, ``layer1``..``layer4``) so that, at ``width=64``,
    ``state_dict()`` equals torchvision's minus ``fc.*``. ``width`` is the stem's channel count; stage ``i``
    has ``width * 2**i`` bottleneck channels (x ``block.expansion`` out). For ResNeXt the per-group width
    scales with it (32x8d at width 16 is 32 groups of 2).

    ``forward(x, last="c5")`` returns ``OrderedDict`` ``c2``..``last`` (strides 4, 8, 16, 32), running no
    stage past ``last``.
    """

    def __init__(self, depth: str = "resnet50", width: int = 64) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"unknown backbone depth {depth!r}; valid: {', '.join(DEPTHS)}")
        block, layers, groups, width_per_group = DEPTHS[depth]
        if not isinstance(width, int) or width <= 0:
            raise ValueError(f"width must be a positive int, got {width!r}")
        if (width * width_per_group) % 64:
            raise ValueError(
                f"{depth} needs width * {width_per_group} divisible by 64 (whole channels per group), "
                f"got width={width}"
            )
        self.depth, self.width = depth, width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes, self.out_channels = width, {}
        for i, n in enumerate(layers):
            planes = width * 2**i
            stage = _make_stage(block, inplanes, planes, n, 1 if i == 0 else 2, groups, width_per_group)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes * block.expansion
            self.out_channels[f"c{i + 2}"] = inplanes
        self.strides = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, last: str = "c5") -> OrderedDict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            out[f"c{i + 2}"] = x
            if f"c{i + 2}" == last:
                break
        return out


def _resolve(path: Path) -> Path:
    """A relative ``path`` that is not found from the working directory is taken from the checkout's top
    folder: presets name committed trunks that way (``results/table2_v2/trunks/...``), and notebooks run
    from ``notebooks/``."""
    if path.is_absolute() or path.is_file():
        return path
    from mrcnn_lite.provenance import repo_root

    try:
        return repo_root() / path
    except FileNotFoundError:
        return path


def load_imagenet_weights(trunk: ResNet, weights_path: str | Path) -> None:
    """Load a trunk ``state_dict`` file (torchvision's layout) into ``trunk``, dropping ``fc.*``.

    Usually torchvision's ImageNet checkpoint (width 64); any width loads when the file was saved from a
    trunk of that width (e.g. the shared trunk of the Table 2 ablations, :mod:`mrcnn_lite.ablations`).
    Strict otherwise: every trunk key must be present with the same shape. Only ever a local file; a
    relative path not found from the working directory is read from the checkout's top folder.
    """
    path = _resolve(Path(weights_path))
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file not found: {str(path)!r} (a torchvision {trunk.depth} state_dict saved "
            "with torch.save; nothing is downloaded)"
        )
    state = torch.load(path, weights_only=True, map_location="cpu")
    for wrapper in ("state_dict", "model"):  # checkpoints that wrap the state_dict
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    stem = state.get("conv1.weight")
    if stem is not None and stem.ndim == 4 and stem.shape[0] != trunk.width:
        raise ValueError(
            f"weights_path={str(path)!r} holds a width-{stem.shape[0]} network; it cannot load into width="
            f"{trunk.width} (set model.width={stem.shape[0]}, or weights_path=None to train from scratch)"
        )
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{str(path)!r} does not match a {trunk.depth} trunk: {e}") from e


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with the same statistics.

    Frozen BN is the per-channel affine map that an eval-mode BN computes, with no trainable parameters
    and no running-statistic updates: Detectron's choice for fine-tuning with 2 images per GPU.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = convert_frozen_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def freeze_stages(trunk: ResNet, freeze_at: int) -> None:
    """Detectron's ``FREEZE_AT``: 0 freezes nothing, 1 the stem, 2 stem + res2, ..., 5 the whole trunk.

    Frozen stages get ``requires_grad=False`` and, as in detectron2, their BN becomes frozen BN so that
    their running statistics do not drift either.
    """
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be in 0..5 (0 none, 1 stem, 2 stem+res2, ...), got {freeze_at}")
    for unit in FREEZE_UNITS[:freeze_at]:
        for name in unit:
            module = convert_frozen_batchnorm(getattr(trunk, name))
            module.requires_grad_(False)
            setattr(trunk, name, module)


class Backbone(nn.Module):
    """A ResNet trunk used as C4, C5 or FPN (§3.1, Figure 4); returns ``OrderedDict[str, Tensor]``.

    Attributes:
        body: the :class:`ResNet` trunk (torchvision state_dict layout).
        fpn: the :class:`~mrcnn_lite.modeling.fpn.FPN` over C2..C5 (FPN only, else None).
        out_channels: channels of every returned map.
        strides: feature name -> stride, e.g. ``{"p2": 4, ..., "p6": 64}``.
        res5: the trunk's res5 stage for the C4 box head (C4 only, else None). It stays registered under
            ``body.layer4``, so ImageNet weights load into it.
        res5_out_channels: channels res5 produces (C4 only, else None).
    """

    def __init__(self, body: ResNet, arch: str, fpn_channels: int = 256) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown backbone arch {arch!r}; valid: {', '.join(ARCHS)}")
        self.body, self.arch = body, arch
        self.fpn: FPN | None = None
        if arch == "fpn":
            self.fpn = FPN([body.out_channels[f"c{i}"] for i in range(2, 6)], fpn_channels)
            self.out_channels = fpn_channels
            self.strides = dict(self.fpn.strides)
        else:
            name = "c4" if arch == "c4" else "c5"
            self.out_channels = body.out_channels[name]
            self.strides = {name: body.strides[name]}
        self.res5_out_channels = body.out_channels["c5"] if arch == "c4" else None

    @property
    def res5(self) -> nn.Module | None:
        return self.body.layer4 if self.arch == "c4" else None

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if self.arch == "c4":
            return OrderedDict(c4=self.body(x, last="c4")["c4"])
        if self.arch == "c5":
            return OrderedDict(c5=self.body(x, last="c5")["c5"])
        return self.fpn(self.body(x, last="c5"))


def build_resnet(
    depth: str,
    width: int = 64,
    frozen_bn: bool = False,
    freeze_at: int = 0,
    weights_path: str | Path | None = None,
) -> ResNet:
    """The trunk alone: build, load weights (if a path is given), freeze BN, freeze the first stages."""
    trunk = ResNet(depth, width)
    if weights_path is not None:
        load_imagenet_weights(trunk, weights_path)
    if frozen_bn:
        convert_frozen_batchnorm(trunk)
    freeze_stages(trunk, freeze_at)
    return trunk


def build_backbone(
    depth: str,
    arch: str,
    width: int = 64,
    frozen_bn: bool = False,
    freeze_at: int = 0,
    fpn_channels: int = 256,
    weights_path: str | Path | None = None,
) -> Backbone:
    """``build_backbone("resnet50", "fpn")``: a trunk (``depth``) used as ``arch`` in {c4, c5, fpn}."""
    if arch not in ARCHS:  # checked before building a (possibly large) trunk
        raise ValueError(f"unknown backbone arch {arch!r}; valid: {', '.join(ARCHS)}")
    return Backbone(build_resnet(depth, width, frozen_bn, freeze_at, weights_path), arch, fpn_channels)
