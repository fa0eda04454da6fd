"""The paper's COCO recipes (He et al. 2017, §3.1 "Implementation Details") for R50-C4, R50/R101/X101-FPN."""

from __future__ import annotations

from dataclasses import replace

from mrcnn_lite.config.schema import Arch, BackboneName, Config, DataConfig, ModelConfig, TrainConfig


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
