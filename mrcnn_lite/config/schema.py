"""The config schema: one frozen dataclass per section (model, data, train) and the whole-run :class:`Config`.

Field choices are ``Literal`` types, so the parser (:mod:`.typed`) and :func:`~.validation.validate` know
the legal values. Every field's default is what the code did before the field existed: a config recorded
without it (an older run) still means the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BackboneName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d"]
Arch = Literal["c4", "c5", "fpn"]
RoIOp = Literal["roi_pool", "roi_warp", "roi_warp_mnc", "roi_align"]
RoIMode = Literal["max", "avg"]
BoxHead = Literal["res5", "2fc"]
MaskHead = Literal["fcn", "mlp1", "mlp2"]
MaskLoss = Literal["sigmoid", "softmax"]
MaskDecode = Literal["threshold", "argmax"]
Optimizer = Literal["sgd", "adamw"]
LRSchedule = Literal["step", "cosine"]

#: Adam's second-moment decay: fixed at torch's default (not a config field)
ADAM_BETA2 = 0.999


class ConfigError(ValueError):
    """A bad preset name, key, value or combination of values."""


@dataclass(frozen=True)
class ModelConfig:
    """The network (§3 and §3.1 of the paper): backbone, RPN, RoI heads, inference.

    Anchors: ``anchor_sizes`` are square-root areas in input pixels. For C4/C5 all of them sit on the one
    feature map (the paper: 5 scales x 3 aspect ratios); for FPN there is exactly one size per level
    P2..P6 (so 5). ``aspect_ratios`` are height/width.

    RoI heads: ``roi_op`` and ``roi_mode`` are Table 2c's RoIPool / RoIWarp / RoIAlign and max / avg
    (RoIPool is max pooling by definition). ``box_head`` is Figure 4's res5 head (C4) or the 2-fc head
    (C5, FPN). ``mask_head`` "fcn" is Figure 4's convolutional head (C4: deconv on res5's 7x7 output; FPN:
    ``mask_num_convs`` 3x3 convs of ``mask_conv_dim`` then a deconv), "mlp1"/"mlp2" Table 2e's fc heads
    (fc 1024 -> 1024 -> K*m^2 and 1024 -> 1024 -> 1024 -> K*m^2; ``mask_fc_dim`` is the hidden width: the
    paper's 1024 is 4x its 256 mask conv channels). ``mask_loss`` "sigmoid" is the paper's per-class binary
    loss, "softmax" the multinomial one it is compared with (Table 2b).
    ``class_agnostic_masks`` predicts one mask for all classes (Table 2b's last rows, §4.2).

    FPN RoI level: ``k = floor(fpn_k0 + log2(sqrt(w*h) / fpn_canonical_size))`` (FPN paper, Eq. 1).
    """

    backbone: BackboneName = "resnet50"
    arch: Arch = "fpn"
    width: int = 64
    frozen_bn: bool = False
    freeze_at: int = 0
    weights_path: str | None = None
    fpn_channels: int = 256
    num_classes: int | None = None  # including background; None = from the dataset
    # anchors
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # RPN
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 2000  # FPN: per level
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    # RoI heads
    roi_fg_iou: float = 0.5
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_op: RoIOp = "roi_align"
    roi_mode: RoIMode = "avg"
    roi_sampling_ratio: int = 2
    roi_aligned: bool = False
    box_head: BoxHead = "2fc"
    box_fc_dim: int = 1024
    mask_head: MaskHead = "fcn"
    mask_resolution: int = 28
    mask_conv_dim: int = 256
    mask_num_convs: int = 4
    mask_fc_dim: int = 1024  # Table 2e's MLP heads: width of each hidden fc layer
    class_agnostic_masks: bool = False
    mask_loss: MaskLoss = "sigmoid"
    mask_decode: MaskDecode = "threshold"  # softmax masks: "argmax" over the K+1 channels (Table 2b v2)
    with_mask: bool = True  # False: Faster R-CNN (Table 3)
    # inference
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    # FPN level assignment of RoIs
    fpn_k0: int = 4
    fpn_canonical_size: int = 224


@dataclass(frozen=True)
class DataConfig:
    """Data set location and the resize/flip transform (``mrcnn_lite.data.transforms.build_transforms``).

    A tuple ``min_size`` draws one shorter-side size per training image (multi-scale training); testing
    uses the largest.
    """

    root: str = "data/shapes"
    train_split: str = "train2017"
    val_split: str = "val2017"
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    flip_prob: float = 0.5
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """The optimizer and schedule: the paper's SGD, step schedule and linear warm-up (§3.1 "Training").

    ``base_lr`` is the rate for ``reference_batch_size`` images (:func:`scaled_lr`, the linear scaling rule
    of Goyal et al. 2017; None: ``base_lr`` as is). ``steps``: iterations where the lr is multiplied by 0.1
    (steps at or after ``max_iter`` never fire); ``lr_schedule="cosine"`` decays it along a half cosine to
    0 at ``max_iter`` instead. ``optimizer``: the paper's "sgd" or "adamw" (Loshchilov & Hutter 2019),
    which the classroom presets use to train from scratch in a few thousand steps.

    ``momentum`` is SGD's momentum and, with ``optimizer="adamw"``, Adam's beta1 (the decay of its first
    moment; beta2 is :data:`ADAM_BETA2`): both are the averaging of past gradients, and one field keeps the
    recorded configs of earlier runs valid. :attr:`adam_betas` names the pair the optimizer gets.

    ``amp``: mixed precision, float16 autocast with loss scaling on CUDA, bfloat16 autocast on the CPU;
    the weights, the optimizer and the RoI operators stay float32.
    """

    images_per_batch: int = 16
    optimizer: Optimizer = "sgd"
    base_lr: float = 0.02
    reference_batch_size: int | None = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    max_iter: int = 160_000
    lr_schedule: LRSchedule = "step"
    steps: tuple[int, ...] = (120_000,)
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3
    clip_grad_norm: float | None = None
    amp: bool = False
    checkpoint_period: int = 20_000
    eval_period: int = 20_000
    log_period: int = 20

    @property
    def adam_betas(self) -> tuple[float, float]:
        """AdamW's ``betas``: ``(momentum, ADAM_BETA2)`` (``momentum`` doubles as beta1, see above)."""
        return (self.momentum, ADAM_BETA2)


@dataclass(frozen=True)
class Config:
    """A whole run: ``model``, ``data``, ``train``, the random ``seed`` and a ``name`` for its outputs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    name: str = "run"


#: the nested sections of :class:`Config`, in order
SECTIONS = ("model", "data", "train")


def section_type(section: str) -> type:
    """The dataclass of ``section`` ("model", "data" or "train")."""
    return {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}[section]


def scaled_lr(cfg: Config) -> float:
    """Linear scaling rule: ``base_lr * images_per_batch / reference_batch_size`` (``base_lr`` if None)."""
    t = cfg.train
    if t.reference_batch_size is None:
        return t.base_lr
    return t.base_lr * t.images_per_batch / t.reference_batch_size


def eval_size(cfg: Config) -> int:
    """The shorter side images are resized to for testing: ``data.min_size``, or its largest value."""
    s = cfg.data.min_size
    return s if isinstance(s, int) else max(s)
