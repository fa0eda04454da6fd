"""Run configuration: dataclasses, named presets, dotted-key overrides and validation.

A :class:`Config` holds everything a run needs: ``model`` (:class:`ModelConfig`), ``data``
(:class:`DataConfig`), ``train`` (:class:`TrainConfig`), ``seed`` and ``name``. Configs are frozen; every
change makes a new one (``dataclasses.replace``)::

    cfg = get_config("classroom_fpn", ["model.roi_op=roi_pool", "model.roi_mode=max", "train.max_iter=200"])
    cfg = get_config("coco_r50_fpn", {"data.min_size": (640, 800)})   # papermill passes Python values
    json.dump(to_dict(cfg), f)                                          # from_dict(...) reads it back

Presets (``PRESETS``, ``get_preset``):

- ``classroom_fpn`` (the default), ``classroom_c4``, ``classroom_c5``: a narrow ResNet-18 trained from
  scratch on the synthetic shapes data on a laptop CPU (see each preset's docstring).
- ``coco_r50_c4``, ``coco_r50_fpn``, ``coco_r101_fpn``, ``coco_x101_fpn``: the paper's COCO recipe
  (He et al. 2017, §3.1 "Implementation Details"; values cited at each preset).

Override strings are parsed by each field's declared type: ``bool`` ("true/false/1/0/yes/no"), ``int``,
``float``, tuples ("(192,224)", "192,224" or "[192, 224]"), ``None`` ("none"/"null") where allowed, and
choices (``Literal``) checked against their options. :func:`validate` then rejects combinations the
model cannot build (for instance a res5 box head without the C4 backbone).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Union

__all__ = [
    "PRESETS",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "add_config_args",
    "apply_overrides",
    "config_from_args",
    "from_dict",
    "get_config",
    "get_preset",
    "rescale_schedule",
    "scaled_lr",
    "eval_size",
    "to_dict",
    "validate",
]

BackboneName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d"]
Arch = Literal["c4", "c5", "fpn"]
RoIOp = Literal["roi_pool", "roi_warp", "roi_align"]
RoIMode = Literal["max", "avg"]
BoxHead = Literal["res5", "2fc"]
MaskHead = Literal["fcn", "mlp1", "mlp2"]
MaskLoss = Literal["sigmoid", "softmax"]
Optimizer = Literal["sgd", "adamw"]
LRSchedule = Literal["step", "cosine"]


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
    (fc 1024 -> 1024 -> K*m^2 and 1024 -> 1024 -> 1024 -> K*m^2). ``mask_loss`` "sigmoid" is the paper's
    per-class binary loss, "softmax" the multinomial one it is compared with (Table 2b).
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
    class_agnostic_masks: bool = False
    mask_loss: MaskLoss = "sigmoid"
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
    """SGD with momentum, step schedule and linear warm-up (§3.1 "Training").

    ``base_lr`` is the learning rate for ``reference_batch_size`` images; the trainer uses
    :func:`scaled_lr` (the linear scaling rule, Goyal et al. 2017). ``reference_batch_size=None`` means
    ``base_lr`` is used as is. ``steps`` are the iterations where the lr is multiplied by 0.1 (steps at or
    after ``max_iter`` never fire); ``lr_schedule="cosine"`` instead decays the lr along a half cosine to
    0 at ``max_iter`` (Loshchilov & Hutter 2017; ``steps`` unused). ``optimizer`` is the paper's "sgd"
    (with ``momentum``) or "adamw" (Loshchilov & Hutter 2019; ``momentum`` is then Adam's beta1), which
    the classroom presets use because it trains a network from scratch much faster in a few thousand
    iterations (see :func:`classroom_fpn`). ``amp``: mixed precision, float16 autocast with loss scaling on
    CUDA, bfloat16 autocast on the CPU (a speed-up where the CPU has bfloat16 instructions, AVX512-BF16
    or AMX); the weights, the optimizer and the RoI operators stay float32.
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


@dataclass(frozen=True)
class Config:
    """A whole run: ``model``, ``data``, ``train``, the random ``seed`` and a ``name`` for its outputs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    name: str = "run"


SECTIONS = ("model", "data", "train")


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


def rescale_schedule(cfg: Config, max_iter: int) -> Config:
    """``cfg`` with its schedule stretched or shrunk to ``max_iter`` iterations: the lr steps and the warm-up
    keep their fractions of the run (as Detectron's schedule multipliers "1x", "2x" do, the other way
    round). ``rescale_schedule(get_config("classroom_fpn"), 1000)`` is a shorter classroom run."""
    if not isinstance(max_iter, int) or max_iter <= 0:
        raise ConfigError(f"max_iter must be a positive int, got {max_iter!r}")
    t = cfg.train
    f = max_iter / t.max_iter
    train = replace(
        t,
        max_iter=max_iter,
        steps=tuple(max(1, round(s * f)) for s in t.steps),
        warmup_iters=round(t.warmup_iters * f),
    )
    out = replace(cfg, train=train)
    validate(out)
    return out


# ----------------------------------------------------------------------------------------------- presets


def classroom_fpn() -> Config:
    """ResNet-18-FPN at width 32 (1/2 of the standard channels) on the shapes data, from scratch on a CPU.

    Shapes images are 160-256 px with objects 8-160 px across, so the images are resized to a 224 px
    shorter side (multi-scale 192-256 in training) and the anchors are 16..256 (one per P2..P6). The heads
    are narrowed further than the trunk (64-channel FPN, 256-d box fcs, two 64-channel mask convs) and the
    RoI and proposal counts cut to what 2 small images need (128 RoIs per image). BatchNorm
    stays ordinary BN trained with the network (``frozen_bn=False``, ``freeze_at=0``): there are no
    pretrained statistics to freeze.

    The schedule is the paper's shape (warm-up, one x0.1 step at 80%) with AdamW instead of SGD, and is
    sized to train in about 10 minutes on 2 CPU cores (``benchmarks/classroom_ap.py`` measured 11.2 on an AMD
    EPYC and 12.6 on an "Intel Xeon Processor"; the previous recipe took 7.8 on the first machine, 12.75 on
    the EPYC). Why
    these choices, measured on the shapes val set (2 threads; the README has the final numbers):

    - AdamW (lr 1e-3) vs the paper's SGD (lr 0.02, momentum 0.9; 0.06 diverged): after ~2000 iterations
      box AP 0.31 vs 0.09. From scratch and in a few thousand steps, Adam's per-parameter step sizes win.
    - The narrow heads (64-channel FPN and mask convs, 2 of them, instead of 128 and 4): the mask head ran
      4x3x3 convolutions of 128 channels on up to 64 RoIs a batch and cost more than the trunk; narrowing
      took a step from 0.23 s to 0.12 s, and more iterations in 10 minutes beat wider heads.
    - 128 RoIs per image, not 64: 64 saves a quarter of each step once the RPN finds the objects (fewer
      positive RoIs through the mask head), but trained worse per minute (3400 iterations with 64: box AP
      0.39, mask AP 0.35 in 500 s; with 128 the AP at 3600 iterations, before the lr step, was already
      0.44 / 0.40).
    - 300 training proposals per image from the 300 best anchors per level, not 500 from 1000 (testing
      keeps 300 from 500): the 128 RoIs sampled from them hold fewer easy background boxes, and the RPN's
      NMS has less to do. Same seed, 3000 iterations on 2 threads: box AP 0.518 vs 0.486, mask AP 0.462 vs
      0.429, in 11.2 vs 12.75 minutes (AMD EPYC). At 1200 iterations: 0.234 (300/300), 0.222 (150/150),
      0.212 (1000/500).
    - Tried at 1200 iterations (seed 0, one thread; box AP of the 1000/500 recipe there: 0.212) and not
      taken: AdamW lr 2e-3 (0.042) or 5e-4 (0.201), a cosine schedule (0.104), 50% positive RoIs (0.169),
      a weight EMA with decay 0.995 (0.196), GroupNorm in the FPN and mask head (0.140).
    - Also measured and not taken (seed 0): 4 images a batch for 1500 iterations (the same 6000 images; one
      thread) box / mask AP 0.491 / 0.426 with lr 1e-3 (2 images x 3000: 0.506 / 0.449) and 0.343 / 0.314
      with 2e-3; 1 image x 6000 iterations (bfloat16) 0.327 / 0.275; bfloat16 autocast (``train.amp``)
      1.17x faster steps but 0.05 AP lower at 3000 iterations; two gloo processes of one thread each
      (``torchrun``) step no faster than one process of two threads (0.41 vs 0.39 s for 4 images);
      BatchNorm statistics recomputed on 200 training images after training (+0.002); at test time a
      score threshold of 0, 100 detections, NMS at 0.6, 288 px or 1000 proposals (all within 0.005).
    - Where a step's time goes (Intel Xeon, 2 threads, after 400 iterations; 248 ms in all): forward 80 ms
      (trunk 23, FPN 7, RPN 22 of which the head 7, RoI heads 27 of which the mask head 13), backward 141,
      optimizer 18, data 9. Torch's fused AdamW takes 5 ms instead of 18, but its runs trained to lower AP
      twice (3000 iterations: 0.484 / 0.428 against 0.506 / 0.451 on the same machine; notebook 06's 1200:
      0.173 / 0.129 against 0.214 / 0.158; one seed, the same update up to rounding), so it is not used.
      Convolutions are about 55% of the step and run near the machine's peak; the mask head's 3x3
      convolutions on ~60 positive RoIs at 14x14 are about 30% of its FLOPs. So smaller inputs buy little:
      a fixed 160 px side 0.217 s a step, 256 px 0.262, the multi-scale default 0.248; a width-24 trunk was
      no faster; without the mask branch 0.187.
    """
    model = ModelConfig(
        backbone="resnet18",
        arch="fpn",
        width=32,
        fpn_channels=64,
        anchor_sizes=(16, 32, 64, 128, 256),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        roi_batch_size_per_image=128,
        box_fc_dim=256,
        mask_conv_dim=64,
        mask_num_convs=2,
        mask_resolution=28,
        detections_per_image=50,
        roi_aligned=True,
    )
    data = DataConfig(root="data/shapes", min_size=(192, 224, 256), max_size=320, num_workers=0)
    train = TrainConfig(
        images_per_batch=2,
        optimizer="adamw",
        base_lr=0.001,
        reference_batch_size=None,
        max_iter=3000,
        steps=(2400,),
        warmup_iters=200,
        warmup_factor=0.01,
        clip_grad_norm=10.0,
        checkpoint_period=750,
        eval_period=750,
        log_period=20,
    )
    return Config(model=model, data=data, train=train, name="classroom_fpn")


def classroom_c4() -> Config:
    """ResNet-18-C4 at width 32: res4 features (stride 16) for the RPN and RoIs, res5 as the box head.

    The paper's C4 choices, scaled down: 64 RoIs per image, fewer proposals, mask 14x14 from the res5
    head's 7x7 output (Figure 4 left). Otherwise as ``classroom_fpn``.
    """
    base = classroom_fpn()
    model = replace(
        base.model,
        arch="c4",
        box_head="res5",
        mask_resolution=14,
        roi_batch_size_per_image=64,
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=150,
    )
    return replace(base, model=model, name="classroom_c4")


def classroom_c5() -> Config:
    """ResNet-18-C5 at width 32: everything on res5 (stride 32), 2-fc box head (Table 2d's setting)."""
    base = classroom_fpn()
    model = replace(
        base.model,
        arch="c5",
        box_head="2fc",
        mask_resolution=28,
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=300,
    )
    return replace(base, model=model, name="classroom_c5")


def _coco(backbone: BackboneName, arch: Arch, name: str) -> Config:
    """The paper's COCO recipe (He et al. 2017, §3.1 "Implementation Details").

    - Images: shorter side 800 px (longer side at most 1333, Detectron's cap).
    - Training: 16 images per batch (8 GPUs x 2), lr 0.02, 160k iterations, lr x0.1 at 120k, weight decay
      1e-4, momentum 0.9. ``reference_batch_size=16``: with fewer images per batch :func:`scaled_lr`
      scales the lr down linearly (Goyal et al.). Warm-up (500 iterations from lr/3) is Detectron's; the
      paper does not list it.
    - ImageNet-pretrained trunk with frozen BN and the stem + res2 frozen (Detectron's ``FREEZE_AT: 2``).
    - RPN: 5 scales (32..512) x 3 aspect ratios; proposals at test: 300 for C4, 1000 for FPN.
    - RoIs per image: 64 for C4, 512 for FPN, 1:3 positive to negative (fraction 0.25).
    - RoIAlign, average, 2x2 samples per bin (the paper's "four regular locations"). ``roi_aligned=False``
      is the paper's (Detectron's) RoIAlign, without detectron2's half-pixel offset, so the published
      numbers are what it reproduces; override ``model.roi_aligned=true`` for detectron2's variant.
    - Mask: 28x28 (FPN, 4 convs of 256 then deconv) or 14x14 (C4, deconv on res5); sigmoid per class.
    - Inference: NMS 0.5, 100 detections per image; masks for the detected boxes only.

    Set ``model.weights_path`` to a local torchvision ImageNet ``state_dict`` file (nothing is downloaded).
    """
    c4 = arch == "c4"
    model = ModelConfig(
        backbone=backbone,
        arch=arch,
        width=64,
        frozen_bn=True,
        freeze_at=2,
        fpn_channels=256,
        anchor_sizes=(32, 64, 128, 256, 512),
        aspect_ratios=(0.5, 1.0, 2.0),
        # Detectron: C4 12000/2000 proposals (train), 6000 -> 300 (test); FPN 2000 per level -> 2000
        # (train), 1000 per level -> 1000 (test)
        rpn_pre_nms_top_n_train=12000 if c4 else 2000,
        rpn_post_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=6000 if c4 else 1000,
        rpn_post_nms_top_n_test=300 if c4 else 1000,
        roi_batch_size_per_image=64 if c4 else 512,
        roi_positive_fraction=0.25,
        roi_op="roi_align",
        roi_mode="avg",
        roi_sampling_ratio=2,
        roi_aligned=False,
        box_head="res5" if c4 else "2fc",
        box_fc_dim=1024,
        mask_head="fcn",
        mask_resolution=14 if c4 else 28,
        mask_conv_dim=256,
        mask_num_convs=4,
        num_classes=81,
    )
    data = DataConfig(root="data/coco", min_size=800, max_size=1333, flip_prob=0.5, num_workers=4)
    train = TrainConfig(
        images_per_batch=16,
        base_lr=0.02,
        reference_batch_size=16,
        max_iter=160_000,
        steps=(120_000,),
        warmup_iters=500,
        warmup_factor=1.0 / 3,
        checkpoint_period=20_000,
        eval_period=20_000,
    )
    return Config(model=model, data=data, train=train, name=name)


def coco_r50_c4() -> Config:
    """ResNet-50-C4 Mask R-CNN on COCO, the paper's ablation backbone (Table 2a-2c, 2e)."""
    return _coco("resnet50", "c4", "coco_r50_c4")


def coco_r50_fpn() -> Config:
    """ResNet-50-FPN Mask R-CNN on COCO (Tables 1, 2a, 2e)."""
    return _coco("resnet50", "fpn", "coco_r50_fpn")


def coco_r101_fpn() -> Config:
    """ResNet-101-FPN Mask R-CNN on COCO (Table 1)."""
    return _coco("resnet101", "fpn", "coco_r101_fpn")


def coco_x101_fpn() -> Config:
    """ResNeXt-101-FPN (32x8d) Mask R-CNN on COCO (Table 1).

    The paper trains ResNeXt "with 1 image per GPU and the same number of iterations, with a starting
    learning rate of 0.01": 8 images per batch, which the linear scaling rule turns into lr 0.01.
    """
    cfg = _coco("resnext101_32x8d", "fpn", "coco_x101_fpn")
    return replace(cfg, train=replace(cfg.train, images_per_batch=8))


PRESETS: dict[str, Callable[[], Config]] = {
    "classroom_fpn": classroom_fpn,
    "classroom_c4": classroom_c4,
    "classroom_c5": classroom_c5,
    "coco_r50_c4": coco_r50_c4,
    "coco_r50_fpn": coco_r50_fpn,
    "coco_r101_fpn": coco_r101_fpn,
    "coco_x101_fpn": coco_x101_fpn,
}
DEFAULT_PRESET = "classroom_fpn"


def get_preset(name: str) -> Config:
    """The named preset (validated)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; valid: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    validate(cfg)
    return cfg


# ------------------------------------------------------------------------------------- typed values


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"tuple[{_type_name(typing.get_args(tp)[0])}, ...]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` (a string from the command line, or a Python value) as type ``tp``; ValueError if not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and _is_none(value))):
            return None
        errors = []
        for a in sorted(
            (a for a in args if a is not type(None)), key=lambda a: typing.get_origin(a) is tuple
        ):
            try:
                return _coerce(value, a)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is tuple:
        elem = args[0]
        if isinstance(value, str):
            text = value.strip()
            if text[:1] in "([" and text[-1:] in ")]":
                text = text[1:-1]
            parts = [p.strip() for p in text.split(",")]
            value = [p for p in parts if p] if parts != [""] else []
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(v, elem) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not a bool (true/false/1/0)")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an int")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not an int")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a float")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not a str")
    raise TypeError(f"unsupported config field type {tp!r}")


def _is_none(text: str) -> bool:
    return text.strip().lower() in ("none", "null")


# ------------------------------------------------------------------------------------------ overrides


def _all_keys() -> list[str]:
    keys = [f"{s}.{f.name}" for s in SECTIONS for f in fields(_section_type(s))]
    return keys + [f.name for f in fields(Config) if f.name not in SECTIONS]


def _section_type(section: str) -> type:
    return {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}[section]


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, _all_keys(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; keys look like model.arch, train.base_lr"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _set(cfg: Config, key: str, value: Any) -> Config:
    """``cfg`` with ``key`` ("model.roi_op", "seed") set to ``value`` parsed by the field's type."""
    parts = key.strip().split(".")
    if len(parts) == 2 and parts[0] in SECTIONS:
        owner, name = getattr(cfg, parts[0]), parts[1]
    elif len(parts) == 1 and parts[0] not in SECTIONS:
        owner, name = cfg, parts[0]
    else:
        raise _unknown_key(key)
    hints = _hints(type(owner))
    if name not in hints:
        raise _unknown_key(key)
    try:
        parsed = _coerce(value, hints[name])
    except ValueError as e:
        raise ConfigError(f"bad value for {key}: {value!r} (expected {_type_name(hints[name])})") from e
    if owner is cfg:
        return replace(cfg, **{name: parsed})
    return replace(cfg, **{parts[0]: replace(owner, **{name: parsed})})


def _pairs(overrides: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    if isinstance(overrides, str):
        raise ConfigError(
            f"overrides must be a list of 'key=value' strings or a dict, got the string {overrides!r}"
        )
    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. model.roi_op=roi_pool)")
        pairs.append((key.strip(), value.strip()))
    return pairs


def apply_overrides(cfg: Config, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
    """A new config with ``overrides`` applied, then validated.

    ``overrides`` is either ``["model.roi_op=roi_pool", "data.min_size=(192,224)"]`` (strings from the
    command line, parsed by each field's type) or a dict ``{"model.roi_op": "roi_pool", "seed": 1}``
    (papermill parameters: Python values, checked and converted, lists becoming tuples; string values
    are parsed like command-line ones). Validation runs once after all of them, so that several keys
    can change together (e.g. ``model.arch`` with ``model.box_head``).
    """
    for key, value in _pairs(overrides):
        cfg = _set(cfg, key, value)
    validate(cfg)
    return cfg


def get_config(name: str = DEFAULT_PRESET, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Config:
    """Preset ``name`` with ``overrides`` applied (see :func:`apply_overrides`)."""
    return apply_overrides(get_preset(name), overrides)


# ------------------------------------------------------------------------------------------ validation


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` listing every problem: bad choices, out-of-range values, combinations."""
    problems = []
    # types and choices first (a Config built in code bypasses the parser)
    typed = [(f"{s}.", getattr(cfg, s)) for s in SECTIONS] + [("", cfg)]
    for prefix, obj in typed:
        for name, tp in _hints(type(obj)).items():
            if prefix == "" and name in SECTIONS:
                continue
            value = getattr(obj, name)
            try:
                ok = _coerce(value, tp) == value
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"{prefix}{name}={value!r} is not {_type_name(tp)}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))

    m, d, t = cfg.model, cfg.data, cfg.train

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    # backbone
    need(m.width > 0, f"model.width must be positive, got {m.width}")
    if m.backbone == "resnext101_32x8d":
        need(m.width % 8 == 0, f"model.width for resnext101_32x8d must be a multiple of 8, got {m.width}")
    # model.weights_path with a width other than 64: checked when the file is read (it names the file's
    # width); the Table 2 grid loads width-32 trunks saved by this library
    need(
        0 <= m.freeze_at <= 5,
        f"model.freeze_at must be in 0..5 (1 stem, 2 stem+res2, ...), got {m.freeze_at}",
    )
    need(m.fpn_channels > 0, f"model.fpn_channels must be positive, got {m.fpn_channels}")
    need(
        m.num_classes is None or m.num_classes >= 2,
        f"model.num_classes counts the background, so it must be >= 2 (or None), got {m.num_classes}",
    )
    # anchors and RPN
    if m.arch == "fpn":
        need(
            len(m.anchor_sizes) == 5,
            f"model.anchor_sizes needs one size per FPN level P2..P6 (5) with arch='fpn', "
            f"got {m.anchor_sizes}",
        )
    need(
        len(m.anchor_sizes) > 0 and min(m.anchor_sizes) > 0,
        f"model.anchor_sizes must be positive: {m.anchor_sizes}",
    )
    need(
        len(m.aspect_ratios) > 0 and min(m.aspect_ratios) > 0,
        f"model.aspect_ratios must be positive: {m.aspect_ratios}",
    )
    for key in ("rpn_fg_iou", "rpn_bg_iou", "roi_fg_iou", "rpn_nms_thresh", "nms_thresh", "score_thresh"):
        need(0.0 <= getattr(m, key) <= 1.0, f"model.{key} must be in [0, 1], got {getattr(m, key)}")
    need(
        m.rpn_bg_iou <= m.rpn_fg_iou,
        f"model.rpn_bg_iou ({m.rpn_bg_iou}) must not exceed model.rpn_fg_iou ({m.rpn_fg_iou})",
    )
    for key in ("rpn_positive_fraction", "roi_positive_fraction"):
        need(0.0 < getattr(m, key) <= 1.0, f"model.{key} must be in (0, 1], got {getattr(m, key)}")
    for split in ("train", "test"):
        pre, post = getattr(m, f"rpn_pre_nms_top_n_{split}"), getattr(m, f"rpn_post_nms_top_n_{split}")
        need(pre > 0 and post > 0, f"model.rpn_*_nms_top_n_{split} must be positive, got {pre}, {post}")
        if m.arch != "fpn":  # FPN's pre-NMS count is per level, so the total may exceed post
            need(
                post <= pre,
                f"model.rpn_post_nms_top_n_{split} ({post}) cannot exceed rpn_pre_nms_top_n_{split} ({pre})",
            )
    for key in ("rpn_batch_size_per_image", "roi_batch_size_per_image", "box_fc_dim", "detections_per_image"):
        need(getattr(m, key) > 0, f"model.{key} must be positive, got {getattr(m, key)}")
    # RoI operator
    need(
        not (m.roi_op == "roi_pool" and m.roi_mode != "max"),
        "model.roi_op='roi_pool' is max pooling by definition; set model.roi_mode=max "
        "(avg exists only for roi_warp and roi_align, Table 2c)",
    )
    need(
        m.roi_sampling_ratio >= 0,
        f"model.roi_sampling_ratio must be >= 0 (0 = adaptive), got {m.roi_sampling_ratio}",
    )
    # heads
    need(
        not (m.box_head == "res5" and m.arch != "c4"),
        f"model.box_head='res5' needs model.arch='c4' (res5 runs on the RoIs only in C4; with "
        f"arch={m.arch!r} it already ran on the image): use box_head='2fc'",
    )
    need(
        not (m.arch == "c4" and m.box_head != "res5"),
        "model.arch='c4' needs model.box_head='res5' (Figure 4 left; a 2fc head would leave res5 unused)",
    )
    if m.with_mask:
        if m.arch == "c4":
            need(
                m.mask_head == "fcn",
                f"model.mask_head={m.mask_head!r} is Table 2e's MLP head on FPN RoI features; with "
                "arch='c4' the mask head is the fcn on res5's output (Figure 4 left)",
            )
            need(
                m.mask_resolution == 14,
                f"model.mask_resolution must be 14 with arch='c4' (res5's 7x7 output, one 2x deconv; "
                f"Figure 4 left), got {m.mask_resolution}",
            )
        elif m.mask_head == "fcn":
            need(
                m.mask_resolution > 0 and m.mask_resolution % 2 == 0,
                f"model.mask_resolution must be even with mask_head='fcn' (RoI features of m/2, one 2x "
                f"deconv), got {m.mask_resolution}",
            )
        need(m.mask_resolution > 0, f"model.mask_resolution must be positive, got {m.mask_resolution}")
        need(
            m.mask_conv_dim > 0 and m.mask_num_convs >= 0,
            f"model.mask_conv_dim must be positive and mask_num_convs >= 0, got {m.mask_conv_dim}, "
            f"{m.mask_num_convs}",
        )
        need(
            not (m.class_agnostic_masks and m.mask_loss == "softmax"),
            "model.mask_loss='softmax' competes the classes' masks per pixel, so it needs per-class masks "
            "(class_agnostic_masks=false)",
        )
    need(m.fpn_k0 >= 2 and m.fpn_canonical_size > 0, "model.fpn_k0 must be >= 2, fpn_canonical_size > 0")
    # data
    sizes = (d.min_size,) if isinstance(d.min_size, int) else d.min_size
    need(len(sizes) > 0 and min(sizes) > 0, f"data.min_size must be positive, got {d.min_size}")
    need(
        len(sizes) == 0 or d.max_size >= max(sizes),
        f"data.max_size ({d.max_size}) must be >= data.min_size ({d.min_size})",
    )
    need(0.0 <= d.flip_prob <= 1.0, f"data.flip_prob must be in [0, 1], got {d.flip_prob}")
    need(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")
    # training
    need(t.images_per_batch >= 1, f"train.images_per_batch must be >= 1, got {t.images_per_batch}")
    need(t.base_lr > 0, f"train.base_lr must be positive, got {t.base_lr}")
    need(
        t.reference_batch_size is None or t.reference_batch_size >= 1,
        f"train.reference_batch_size must be >= 1 or None, got {t.reference_batch_size}",
    )
    need(t.max_iter >= 0, f"train.max_iter must be >= 0, got {t.max_iter}")
    need(list(t.steps) == sorted(t.steps), f"train.steps must be increasing, got {t.steps}")
    need(t.warmup_iters >= 0, f"train.warmup_iters must be >= 0, got {t.warmup_iters}")
    need(0.0 < t.warmup_factor <= 1.0, f"train.warmup_factor must be in (0, 1], got {t.warmup_factor}")
    need(
        t.clip_grad_norm is None or t.clip_grad_norm > 0,
        f"train.clip_grad_norm must be positive or None, got {t.clip_grad_norm}",
    )
    for key in ("checkpoint_period", "eval_period", "log_period"):
        need(getattr(t, key) >= 1, f"train.{key} must be >= 1, got {getattr(t, key)}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------- (de)serialise


def to_dict(cfg: Config) -> dict[str, Any]:
    """A JSON-serialisable nested dict (tuples become lists); :func:`from_dict` reads it back."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    out = dataclasses.asdict(cfg)
    return {k: ({n: plain(x) for n, x in v.items()} if isinstance(v, dict) else v) for k, v in out.items()}


def from_dict(d: Mapping[str, Any]) -> Config:
    """The :class:`Config` that :func:`to_dict` wrote (missing keys take their defaults); validated."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {key!r} must be a dict, got {type(value).__name__}")
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    cfg = Config()
    for key, value in flat.items():
        cfg = _set(cfg, key, value)
    validate(cfg)
    return cfg


# ------------------------------------------------------------------------------------------- argparse


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config NAME`` (a preset) and repeated ``--set key=value`` to ``parser``."""
    parser.add_argument(
        "--config",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        metavar="NAME",
        help=f"preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.roi_op=roi_pool --set data.min_size=(192,224)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The config chosen by :func:`add_config_args`'s options."""
    return get_config(args.config, args.overrides)
