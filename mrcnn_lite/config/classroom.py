"""The classroom presets: ResNet-18 Mask R-CNNs at width 32, from scratch on the shapes data, 2 CPU cores.

Why each value, and what was tried instead: ``docs/classroom_recipe.md``.
"""

from __future__ import annotations

from dataclasses import replace

from mrcnn_lite.config.schema import Config, DataConfig, ModelConfig, TrainConfig


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


#: the ResNet-18 trunk pretrained on shape classification (Table 2 v2's trunk seed 0; a path from the
#: checkout's top folder): the classroom stand-in for the paper's ImageNet initialisation
PRETRAINED_TRUNK = "results/table2_v2/trunks/r18_seed0.pth"


def classroom_fpn_pretrained() -> Config:
    """``classroom_fpn`` fine-tuned from :data:`PRETRAINED_TRUNK` as the paper fine-tunes from ImageNet
    (§3.1): the stem and res2 frozen (``freeze_at=2``) and BatchNorm frozen (Detectron's recipe).

    ``benchmarks/pretrained_vs_scratch.py`` measures it against ``classroom_fpn`` from scratch at equal CPU
    time (issue #20 item 6); notebook 06 trains it.
    """
    base = classroom_fpn()
    model = replace(base.model, weights_path=PRETRAINED_TRUNK, frozen_bn=True, freeze_at=2)
    return replace(base, model=model, name="classroom_fpn_pretrained")
