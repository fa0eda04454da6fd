"""Build a :class:`~mrcnn_lite.modeling.mask_rcnn.MaskRCNN` from a :class:`~mrcnn_lite.config.Config`.

Every Table 2 ablation is a config choice: the trunk and C4/C5/FPN (2a), the mask loss (2b), the RoI
operator and pooling (2c, 2d), the mask head (2e), class-specific or class-agnostic masks, and the mask
branch itself (Table 3: ``with_mask=False`` is Faster R-CNN).
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from mrcnn_lite.config import Config, ModelConfig, validate
from mrcnn_lite.modeling.anchors import AnchorGenerator
from mrcnn_lite.modeling.backbone import Backbone, build_backbone
from mrcnn_lite.modeling.box_head import Res5BoxHead, TwoFCBoxHead
from mrcnn_lite.modeling.mask_head import C4MaskHead, FCNMaskHead, MLPMaskHead
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.modeling.roi_heads import Res5RoIHeads, RoIHeads, StandardRoIHeads
from mrcnn_lite.modeling.rpn import RegionProposalNetwork, RPNHead

BOX_RESOLUTION = 7  # box head input (Figure 4); C4 pools 14x14 and res5 halves it to 7x7
MASK_ROI_RESOLUTION = 14  # mask head input for C5/FPN (Figure 4 right)
#: Table 2e's MLP mask heads: how many hidden fully connected layers (each ``mask_fc_dim`` wide) come
#: before the K·m² output layer
MLP_LAYERS: dict[str, int] = {"mlp1": 1, "mlp2": 2}
MaskHeadKind = Literal["c4", "fcn", "mlp1", "mlp2"]


def build_rpn(model_cfg: ModelConfig, backbone: Backbone) -> RegionProposalNetwork:
    """Anchors (C4/C5: all sizes on one map; FPN: one size per level) and the RPN (Faster R-CNN §3.1)."""
    n_maps = len(backbone.strides)
    if n_maps == 1:
        sizes, ratios = (tuple(model_cfg.anchor_sizes),), (tuple(model_cfg.aspect_ratios),)
    else:
        sizes = tuple((s,) for s in model_cfg.anchor_sizes)
        ratios = (tuple(model_cfg.aspect_ratios),) * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors,
        head,
        fg_iou_thresh=model_cfg.rpn_fg_iou,
        bg_iou_thresh=model_cfg.rpn_bg_iou,
        batch_size_per_image=model_cfg.rpn_batch_size_per_image,
        positive_fraction=model_cfg.rpn_positive_fraction,
        pre_nms_top_n={
            "training": model_cfg.rpn_pre_nms_top_n_train,
            "testing": model_cfg.rpn_pre_nms_top_n_test,
        },
        post_nms_top_n={
            "training": model_cfg.rpn_post_nms_top_n_train,
            "testing": model_cfg.rpn_post_nms_top_n_test,
        },
        nms_thresh=model_cfg.rpn_nms_thresh,
    )


def _pooler(model_cfg: ModelConfig, backbone: Backbone, output_size: int) -> RoIFeatureExtractor:
    """RoI features from every map of the backbone but P6, by the config's operator (Table 2c, 2d)."""
    names = [n for n in backbone.strides if n != "p6"]  # P6 serves the RPN only (FPN §4.1)
    return RoIFeatureExtractor(
        names,
        [backbone.strides[n] for n in names],
        output_size,
        op=model_cfg.roi_op,
        mode=model_cfg.roi_mode,
        sampling_ratio=model_cfg.roi_sampling_ratio,
        aligned=model_cfg.roi_aligned,
        k0=model_cfg.fpn_k0,
        canonical_size=model_cfg.fpn_canonical_size,
    )


def mask_head_kind(model_cfg: ModelConfig) -> MaskHeadKind:
    """Which mask head the config names: ``"c4"``, ``"fcn"``, ``"mlp1"`` or ``"mlp2"``.

    The config's ``model.mask_head`` says *fully convolutional* (``"fcn"``) or Table 2e's MLPs; what the
    convolutional head is depends on the box head (Figure 4): with the res5 box head (``arch="c4"``),
    ``"fcn"`` means the C4 head, a deconvolution on res5's 7×7 output (:class:`C4MaskHead`); otherwise the
    FPN head of 3×3 convolutions on its own 14×14 RoI features (:class:`FCNMaskHead`). The MLP heads
    need pooled features, so they exist for C5 and FPN only (``validate`` refuses them with C4).
    """
    if model_cfg.box_head == "res5":
        if model_cfg.mask_head != "fcn":
            raise ValueError(f"the C4 heads have no {model_cfg.mask_head!r} mask head (only 'fcn')")
        return "c4"
    return model_cfg.mask_head


def _res5_roi_heads(model_cfg: ModelConfig, backbone: Backbone, num_classes: int) -> Res5RoIHeads:
    """C4 (Figure 4 left): one 14×14 pooler on res4; res5 feeds the box predictor and the C4 mask head."""
    if backbone.res5 is None or backbone.res5_out_channels is None:
        raise ValueError(f"the res5 box head needs a C4 backbone, got arch={backbone.arch!r}")
    pooler = _pooler(model_cfg, backbone, 2 * BOX_RESOLUTION)
    box_head = Res5BoxHead(
        backbone.res5, res5_out_channels=backbone.res5_out_channels, num_classes=num_classes
    )
    mask_head = None
    if model_cfg.with_mask:  # on res5's output, not on pooled features: no second pooler
        mask_head = _mask_head(mask_head_kind(model_cfg), backbone.res5_out_channels, model_cfg, num_classes)
    return Res5RoIHeads(box_pooler=pooler, box_head=box_head, mask_head=mask_head, **_roi_settings(model_cfg))


def _mask_head(kind: MaskHeadKind, in_channels: int, model_cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The mask head of ``kind`` (:func:`mask_head_kind`): C4's deconv on res5's output, or Figure 4
    right's FCN or Table 2e's MLPs on 14×14 RoI features; class-specific or class-agnostic."""
    agnostic = model_cfg.class_agnostic_masks
    if kind == "c4":
        return C4MaskHead(
            in_channels, num_classes=num_classes, conv_dim=model_cfg.mask_conv_dim, class_agnostic=agnostic
        )
    if kind == "fcn":
        return FCNMaskHead(
            in_channels,
            num_classes=num_classes,
            conv_dim=model_cfg.mask_conv_dim,
            num_convs=model_cfg.mask_num_convs,
            class_agnostic=agnostic,
        )
    return MLPMaskHead(
        in_channels,
        num_classes=num_classes,
        resolution=MASK_ROI_RESOLUTION,
        hidden=(model_cfg.mask_fc_dim,) * MLP_LAYERS[kind],
        mask_size=model_cfg.mask_resolution,
        class_agnostic=agnostic,
    )


def _standard_roi_heads(model_cfg: ModelConfig, backbone: Backbone, num_classes: int) -> StandardRoIHeads:
    """C5 and FPN (Figure 4 right): 7×7 features for the 2fc box head, 14×14 ones for the mask head."""
    box_pooler = _pooler(model_cfg, backbone, BOX_RESOLUTION)
    box_head = TwoFCBoxHead(
        backbone.out_channels,
        num_classes=num_classes,
        resolution=BOX_RESOLUTION,
        fc_dim=model_cfg.box_fc_dim,
    )
    mask_pooler, mask_head = None, None
    if model_cfg.with_mask:
        mask_pooler = _pooler(model_cfg, backbone, MASK_ROI_RESOLUTION)
        mask_head = _mask_head(mask_head_kind(model_cfg), backbone.out_channels, model_cfg, num_classes)
    return StandardRoIHeads(
        box_pooler=box_pooler,
        box_head=box_head,
        mask_pooler=mask_pooler,
        mask_head=mask_head,
        **_roi_settings(model_cfg),
    )


def _roi_settings(model_cfg: ModelConfig) -> dict[str, Any]:
    """The RoI heads' sampling, inference and mask-loss settings (§3.1)."""
    return {
        "fg_iou_thresh": model_cfg.roi_fg_iou,
        "batch_size_per_image": model_cfg.roi_batch_size_per_image,
        "positive_fraction": model_cfg.roi_positive_fraction,
        "score_thresh": model_cfg.score_thresh,
        "nms_thresh": model_cfg.nms_thresh,
        "detections_per_image": model_cfg.detections_per_image,
        "mask_size": model_cfg.mask_resolution,
        "mask_loss": model_cfg.mask_loss,
        "class_agnostic_masks": model_cfg.class_agnostic_masks,
        "mask_decode": model_cfg.mask_decode,
    }


def build_roi_heads(model_cfg: ModelConfig, backbone: Backbone, num_classes: int) -> RoIHeads:
    """The RoI heads the config names: :class:`Res5RoIHeads` for the res5 box head (C4), else
    :class:`StandardRoIHeads` (2fc box head; FCN or Table 2e's MLP mask head)."""
    if model_cfg.box_head == "res5":
        return _res5_roi_heads(model_cfg, backbone, num_classes)
    return _standard_roi_heads(model_cfg, backbone, num_classes)


def build_model(cfg: Config, num_classes: int | None = None) -> MaskRCNN:
    """The model a config describes; ``num_classes`` (with background) overrides ``cfg.model.num_classes``."""
    validate(cfg)
    model_cfg = cfg.model
    num_classes = num_classes if num_classes is not None else model_cfg.num_classes
    if num_classes is None:
        raise ValueError("num_classes is unknown: set model.num_classes or pass the dataset's class count")
    backbone = build_backbone(
        model_cfg.backbone,
        model_cfg.arch,
        model_cfg.width,
        model_cfg.frozen_bn,
        model_cfg.freeze_at,
        model_cfg.fpn_channels,
        model_cfg.weights_path,
    )
    rpn = build_rpn(model_cfg, backbone)  # before the RoI heads: the order their weights are drawn in
    return MaskRCNN(backbone, rpn, build_roi_heads(model_cfg, backbone, num_classes))
