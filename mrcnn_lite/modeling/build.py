"""Build a :class:`~mrcnn_lite.modeling.mask_rcnn.MaskRCNN` from a :class:`~mrcnn_lite.config.Config`.

Every Table 2 ablation is a config choice: the trunk and C4/C5/FPN (2a), the mask loss (2b), the RoI
operator and pooling (2c, 2d), the mask head (2e), class-specific or class-agnostic masks, and the mask
branch itself (Table 3: ``with_mask=False`` is Faster R-CNN).
"""

from __future__ import annotations

from torch import nn

from mrcnn_lite.config import Config, ModelConfig, validate
from mrcnn_lite.modeling.anchors import AnchorGenerator
from mrcnn_lite.modeling.backbone import Backbone, build_backbone
from mrcnn_lite.modeling.box_head import Res5BoxHead, TwoFCBoxHead
from mrcnn_lite.modeling.mask_head import C4MaskHead, FCNMaskHead, MLPMaskHead
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.modeling.roi_heads import RoIHeads
from mrcnn_lite.modeling.rpn import RegionProposalNetwork, RPNHead

BOX_RESOLUTION = 7  # box head input (Figure 4); C4 pools 14x14 and res5 halves it to 7x7
MASK_ROI_RESOLUTION = 14  # mask head input for C5/FPN (Figure 4 right)


def build_rpn(m: ModelConfig, backbone: Backbone) -> RegionProposalNetwork:
    """Anchors (C4/C5: all sizes on one map; FPN: one size per level) and the RPN (Faster R-CNN §3.1)."""
    n_maps = len(backbone.strides)
    if n_maps == 1:
        sizes, ratios = (tuple(m.anchor_sizes),), (tuple(m.aspect_ratios),)
    else:
        sizes = tuple((s,) for s in m.anchor_sizes)
        ratios = (tuple(m.aspect_ratios),) * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors,
        head,
        fg_iou_thresh=m.rpn_fg_iou,
        bg_iou_thresh=m.rpn_bg_iou,
        batch_size_per_image=m.rpn_batch_size_per_image,
        positive_fraction=m.rpn_positive_fraction,
        pre_nms_top_n={"training": m.rpn_pre_nms_top_n_train, "testing": m.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": m.rpn_post_nms_top_n_train, "testing": m.rpn_post_nms_top_n_test},
        nms_thresh=m.rpn_nms_thresh,
    )


def _pooler(m: ModelConfig, backbone: Backbone, resolution: int) -> RoIFeatureExtractor:
    names = [n for n in backbone.strides if n != "p6"]  # P6 serves the RPN only (FPN §4.1)
    return RoIFeatureExtractor(
        names,
        [backbone.strides[n] for n in names],
        resolution,
        op=m.roi_op,
        mode=m.roi_mode,
        sampling_ratio=m.roi_sampling_ratio,
        aligned=m.roi_aligned,
        k0=m.fpn_k0,
        canonical_size=m.fpn_canonical_size,
    )


def build_roi_heads(m: ModelConfig, backbone: Backbone, num_classes: int) -> RoIHeads:
    """Box head (res5 for C4, 2fc otherwise) and mask head (C4 deconv, FCN, or Table 2e's MLPs)."""
    if m.box_head == "res5":
        box_pooler = _pooler(m, backbone, 2 * BOX_RESOLUTION)
        box_head: nn.Module = Res5BoxHead(backbone.res5, backbone.res5_out_channels, num_classes)
    else:
        box_pooler = _pooler(m, backbone, BOX_RESOLUTION)
        box_head = TwoFCBoxHead(backbone.out_channels, BOX_RESOLUTION, m.box_fc_dim, num_classes)

    mask_pooler, mask_head = None, None
    if m.with_mask:
        agnostic = m.class_agnostic_masks
        if m.box_head == "res5":  # Figure 4 left: the mask head reads res5's output, no second pooling
            mask_head = C4MaskHead(backbone.res5_out_channels, num_classes, agnostic, m.mask_conv_dim)
        else:
            mask_pooler = _pooler(m, backbone, MASK_ROI_RESOLUTION)
            c = backbone.out_channels
            if m.mask_head == "fcn":
                mask_head = FCNMaskHead(c, m.mask_conv_dim, m.mask_num_convs, num_classes, agnostic)
            else:
                hidden = (1024,) if m.mask_head == "mlp1" else (1024, 1024)
                mask_head = MLPMaskHead(
                    c, MASK_ROI_RESOLUTION, hidden, num_classes, m.mask_resolution, agnostic
                )
    return RoIHeads(
        box_pooler,
        box_head,
        mask_pooler,
        mask_head,
        fg_iou_thresh=m.roi_fg_iou,
        batch_size_per_image=m.roi_batch_size_per_image,
        positive_fraction=m.roi_positive_fraction,
        score_thresh=m.score_thresh,
        nms_thresh=m.nms_thresh,
        detections_per_image=m.detections_per_image,
        mask_resolution=m.mask_resolution,
        mask_loss=m.mask_loss,
        class_agnostic_masks=m.class_agnostic_masks,
    )


def build_model(cfg: Config, num_classes: int | None = None) -> MaskRCNN:
    """The model a config describes; ``num_classes`` (with background) overrides ``cfg.model.num_classes``."""
    validate(cfg)
    m = cfg.model
    num_classes = num_classes if num_classes is not None else m.num_classes
    if num_classes is None:
        raise ValueError("num_classes is unknown: set model.num_classes or pass the dataset's class count")
    backbone = build_backbone(
        m.backbone, m.arch, m.width, m.frozen_bn, m.freeze_at, m.fpn_channels, m.weights_path
    )
    return MaskRCNN(backbone, build_rpn(m, backbone), build_roi_heads(m, backbone, num_classes))
