"""Named presets: the classroom models (ResNet-18 from scratch on the shapes data, 2 CPU cores), the paper's
COCO recipes (He et al. 2017, §3.1), and the recipes the committed Table 2 was trained with.

A preset is frozen once a committed result uses it (``tests/test_presets_frozen.py`` holds a snapshot of
each): a retuned recipe is a new preset, so every recorded run still names what it trained.
``PRESETS`` are the starting points offered to users (the CLI's ``--config``, the notebooks' tables);
``TABLE2_PRESETS`` are the grid's recipes, resolvable by name like any preset.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace

from mrcnn_lite.config.schema import (
    Arch,
    BackboneName,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from mrcnn_lite.config.validation import validate


def classroom_fpn() -> Config:
    """ResNet-18-FPN at width 32 on the shapes data, from scratch, in about 10 minutes on 2 CPU cores.

    Sized to the data (160-256 px images, objects 8-160 px: 224 px images, anchors 16..256) and to the
    budget: narrow heads, 128 RoIs and 300 proposals per image, AdamW (SGD trains too slowly from scratch
    in 3000 steps), ordinary BatchNorm trained with the network (no pretrained statistics to freeze).
    Why each value, and what was tried instead: ``docs/classroom_recipe.md``.
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
      1e-4, momentum 0.9; :func:`~mrcnn_lite.config.scaled_lr` scales the lr with fewer images per batch.
      Warm-up (500 iterations from lr/3) is Detectron's; the paper does not list it.
    - ImageNet-pretrained trunk with frozen BN and the stem + res2 frozen (Detectron's ``FREEZE_AT: 2``).
    - RPN: 5 scales (32..512) x 3 aspect ratios; proposals at test: 300 for C4, 1000 for FPN.
    - RoIs per image: 64 for C4, 512 for FPN, 1:3 positive to negative (fraction 0.25).
    - RoIAlign, average, 2x2 samples per bin; ``roi_aligned=False`` is the paper's (Detectron's) RoIAlign,
      without detectron2's half-pixel offset (override ``model.roi_aligned=true`` for detectron2's).
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


# ------------------------------------------------------------------------------- Table 2's recipes

#: every Table 2 run keeps at most 20 detections per image (the shapes val images hold 1 to 9 objects):
#: the mask branch and pycocotools do less work per image
TABLE2_DETECTIONS = 20


def _table2(base: Config, name: str, **model: int) -> Config:
    return replace(
        base, model=replace(base.model, detections_per_image=TABLE2_DETECTIONS, **model), name=name
    )


def table2_trunk() -> Config:
    """``classroom_fpn`` as the committed Table 2 trained its shared trunks (ResNet-18 and -34).

    1000 proposals per level before the RPN's NMS and 500 after it in training: ``classroom_fpn`` had these
    when the table was made and was retuned to 300/300 since (``docs/classroom_recipe.md``).
    """
    base = classroom_fpn()
    model = replace(base.model, rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500)
    return replace(base, model=model, name="table2_trunk")


def table2_fpn() -> Config:
    """Table 2's FPN runs (2a, 2e, Table 3): ``table2_trunk`` with at most 20 detections per image."""
    return _table2(table2_trunk(), "table2_fpn")


def table2_c4() -> Config:
    """Table 2's C4 runs (2a-2c, class-agnostic): ``classroom_c4`` with 32 RoIs and 50 test proposals.

    The paper uses 64 RoIs and 300 test proposals for C4 (§3.1): res5, C4's box head, runs on every RoI,
    which is its cost. On 2 CPU cores a step took 0.44 s with 64 RoIs and 0.26 s with 32, and with 150
    test proposals evaluation took longer than training.
    """
    return _table2(classroom_c4(), "table2_c4", roi_batch_size_per_image=32, rpn_post_nms_top_n_test=50)


def table2_c5() -> Config:
    """Table 2d's C5 runs: ``classroom_c5`` with at most 20 detections per image."""
    return _table2(classroom_c5(), "table2_c5")


PRESETS: dict[str, Callable[[], Config]] = {
    "classroom_fpn": classroom_fpn,
    "classroom_c4": classroom_c4,
    "classroom_c5": classroom_c5,
    "coco_r50_c4": coco_r50_c4,
    "coco_r50_fpn": coco_r50_fpn,
    "coco_r101_fpn": coco_r101_fpn,
    "coco_x101_fpn": coco_x101_fpn,
}
TABLE2_PRESETS: dict[str, Callable[[], Config]] = {
    "table2_trunk": table2_trunk,
    "table2_c4": table2_c4,
    "table2_c5": table2_c5,
    "table2_fpn": table2_fpn,
}
#: every preset ``get_preset`` resolves
ALL_PRESETS: dict[str, Callable[[], Config]] = {**PRESETS, **TABLE2_PRESETS}
DEFAULT_PRESET = "classroom_fpn"


def get_preset(name: str) -> Config:
    """The named preset (validated); a :class:`ConfigError` with close names for an unknown one."""
    if name not in ALL_PRESETS:
        close = difflib.get_close_matches(name, ALL_PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; valid: {', '.join(ALL_PRESETS)}")
    cfg = ALL_PRESETS[name]()
    validate(cfg)
    return cfg
