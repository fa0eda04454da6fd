"""What ``build_model`` should build for a config, checked module by module (§3.1, Figure 4, Table 2).

Shared by ``test_model_wiring.py`` (every preset and Table 2 variant, on the ``meta`` device, and
meta-tests that break ``build.py``) and ``test_mask_rcnn.py`` (the variants it trains and evaluates).

The ablations of Table 2 are config choices (the trunk's depth and C4/C5/FPN in 2a, the mask loss in 2b,
the RoI operator and its pooling in 2c and 2d, the mask head in 2e, class-agnostic masks), so a builder that
ignored one (always RoIAlign, say) would train the baseline under every row's name, and losses that are
merely finite would not notice. ``check_wiring`` reads the config and the built modules independently of
``build.py``'s own tables (the expected classes, sizes and widths are written out here), and the meta-tests
in ``test_model_wiring.py`` break ``build.py`` in one place at a time and require ``check_wiring`` to fail.

Models are built on the ``meta`` device (shapes, no memory, no arithmetic); the RoI operator is checked
by running the built pooler's operator on a small real feature map against :mod:`mrcnn_lite.ops.reference`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from mrcnn_lite import ops
from mrcnn_lite.ablations.grid import RUNS
from mrcnn_lite.ablations.grid_v2 import RUNS_V2
from mrcnn_lite.config import PRESETS, Config
from mrcnn_lite.modeling.box_head import Res5BoxHead, TwoFCBoxHead
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.mask_head import C4MaskHead, FCNMaskHead, MLPMaskHead
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.modeling.roi_heads import Res5RoIHeads, StandardRoIHeads
from mrcnn_lite.ops.reference import warp_mnc

NUM_CLASSES = 5
#: blocks per stage res2..res5 and the block type of each trunk (He et al. 2016, Table 1; ResNeXt)
TRUNKS = {
    "resnet18": ((2, 2, 2, 2), BasicBlock),
    "resnet34": ((3, 4, 6, 3), BasicBlock),
    "resnet50": ((3, 4, 6, 3), Bottleneck),
    "resnet101": ((3, 4, 23, 3), Bottleneck),
    "resnext101_32x8d": ((3, 4, 23, 3), Bottleneck),
}
#: Table 2e's MLP heads: how many hidden fc layers (each model.mask_fc_dim wide) before the K·m² layer
MLP_LAYERS = {"mlp1": 1, "mlp2": 2}
#: combinations beyond the presets and the grid: each flips one choice that the grid leaves fixed
EXTRA = {
    "c4 unaligned": ("classroom_c4", ("model.roi_aligned=false",)),
    "c4 sampling 0": ("classroom_c4", ("model.roi_sampling_ratio=0",)),
    "c4 faster": ("classroom_c4", ("model.with_mask=false",)),
    "fpn mlp2 fc256": ("classroom_fpn", ("model.mask_head=mlp2", "model.mask_fc_dim=256")),
    "c4 softmax argmax": ("classroom_c4", ("model.mask_loss=softmax", "model.mask_decode=argmax")),
    "c5 roi_warp max": ("classroom_c5", ("model.roi_op=roi_warp", "model.roi_mode=max")),
    "c5 mlp2 agnostic": ("classroom_c5", ("model.mask_head=mlp2", "model.class_agnostic_masks=true")),
    "fpn roi_pool": ("classroom_fpn", ("model.roi_op=roi_pool", "model.roi_mode=max")),
    "fpn softmax": ("classroom_fpn", ("model.mask_loss=softmax",)),
    "fpn agnostic unaligned": (
        "classroom_fpn",
        ("model.class_agnostic_masks=true", "model.roi_aligned=false"),
    ),
    "fpn widths": (
        "classroom_fpn",
        ("model.box_fc_dim=48", "model.mask_conv_dim=24", "model.mask_num_convs=2"),
    ),
    "fpn mlp1 m14": ("classroom_fpn", ("model.mask_head=mlp1", "model.mask_resolution=14")),
}
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"preset {name}": (name, ()) for name in PRESETS},
    **{f"table2 {run.key}": (run.preset, tuple(run.overrides)) for run in RUNS},
    **{f"table2 v2 {run.key}": (run.preset, tuple(run.overrides)) for run in RUNS_V2},
    **EXTRA,
}


def build_on_meta(cfg: Config) -> MaskRCNN:
    """The model of ``cfg`` with ``NUM_CLASSES`` classes on the ``meta`` device (no memory, no arithmetic)."""
    with torch.device("meta"):
        return build_model(cfg, NUM_CLASSES)


def _check_operator(pooler: RoIFeatureExtractor, m: Any) -> None:
    """The pooler's attributes and, run on a real map, its bound operator are the config's (Table 2c)."""
    assert (pooler.op, pooler.mode) == (m.roi_op, m.roi_mode)
    assert (pooler.sampling_ratio, pooler.aligned) == (m.roi_sampling_ratio, m.roi_aligned)
    gen = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 3, 12, 12, generator=gen)
    rois = torch.tensor([[0.0, 3.3, 5.1, 60.7, 41.2], [0.0, 10.6, 2.2, 33.9, 70.4]])
    size, scale = pooler.output_size, 1 / 8
    if m.roi_op == "roi_pool":
        expected = ops.reference.roi_pool(feature, rois, size, scale)
    elif m.roi_op == "roi_warp_mnc":  # MNC's own sample grid: no sampling ratio, no aligned flag
        expected = warp_mnc.roi_warp_mnc(feature, rois, size, scale, 0, m.roi_mode)
    else:
        op = getattr(ops.reference, m.roi_op)
        expected = op(feature, rois, size, scale, m.roi_sampling_ratio, m.roi_aligned, m.roi_mode)
    torch.testing.assert_close(pooler.pool(feature, rois, scale), expected, rtol=1e-5, atol=1e-6)


def _check_box_branch(model: MaskRCNN, m: Any, num_classes: int) -> None:
    """Figure 4: C4 pools 14×14 from res4 into the backbone's own res5; C5/FPN pool 7×7 into 2 fc."""
    heads, backbone = model.roi_heads, model.backbone
    maps = {"c4": ["c4"], "c5": ["c5"], "fpn": ["p2", "p3", "p4", "p5"]}[m.arch]
    assert heads.box_pooler.feature_names == maps
    if m.arch == "c4":
        assert type(heads) is Res5RoIHeads and not hasattr(heads, "mask_pooler")
        assert type(heads.box_head) is Res5BoxHead and heads.box_pooler.output_size == 14
        assert heads.box_head.res5 is backbone.body.layer4  # one res5: the trunk's weights, shared
        predictor_in = backbone.res5_out_channels
    else:
        assert type(heads) is StandardRoIHeads
        assert type(heads.box_head) is TwoFCBoxHead and heads.box_pooler.output_size == 7
        fc6, fc7 = heads.box_head.fc6, heads.box_head.fc7
        assert fc6.in_features == backbone.out_channels * 7 * 7
        assert fc6.out_features == fc7.in_features == fc7.out_features == m.box_fc_dim
        predictor_in = m.box_fc_dim
    predictor = heads.box_head.predictor
    assert predictor.cls_score.in_features == predictor.bbox_pred.in_features == predictor_in
    assert predictor.cls_score.out_features == num_classes
    assert predictor.bbox_pred.out_features == 4 * num_classes


def _check_mask_branch(model: MaskRCNN, m: Any, num_classes: int) -> None:
    """Figure 4 and Table 2e: the mask head kind, its widths, m, and one or K masks (Table 2b)."""
    heads, backbone = model.roi_heads, model.backbone
    if not m.with_mask:
        assert heads.mask_head is None and getattr(heads, "mask_pooler", None) is None
        return
    k_out = 1 if m.class_agnostic_masks else num_classes
    head = heads.mask_head
    if m.arch == "c4":  # Figure 4 left: deconv on res5's 7x7 output, no second pooler
        assert type(head) is C4MaskHead and m.mask_head == "fcn"
        assert head.deconv.in_channels == backbone.res5_out_channels
        assert head.deconv.out_channels == m.mask_conv_dim
        x = torch.zeros(2, backbone.res5_out_channels, 7, 7, device=head.predictor.weight.device)
    else:
        assert heads.mask_pooler.output_size == 14
        assert heads.mask_pooler.feature_names == heads.box_pooler.feature_names
        _check_operator(heads.mask_pooler, m)
        x = torch.zeros(2, backbone.out_channels, 14, 14, device=head.predictor.weight.device)
        if m.mask_head == "fcn":
            assert type(head) is FCNMaskHead
            convs = [c for c in head.convs if isinstance(c, nn.Conv2d)]
            assert len(convs) == m.mask_num_convs
            assert [c.out_channels for c in convs] == [m.mask_conv_dim] * m.mask_num_convs
        else:
            assert type(head) is MLPMaskHead
            widths = [fc.out_features for fc in head.fcs if isinstance(fc, nn.Linear)]
            assert tuple(widths) == (m.mask_fc_dim,) * MLP_LAYERS[m.mask_head]
    with torch.no_grad():
        assert head(x).shape == (2, k_out, m.mask_resolution, m.mask_resolution)
    assert heads.mask_size == m.mask_resolution
    assert heads.class_agnostic_masks == m.class_agnostic_masks
    assert heads.mask_loss_kind == m.mask_loss
    assert heads.mask_decode == m.mask_decode


def check_wiring(cfg: Config, model: MaskRCNN, num_classes: int = NUM_CLASSES) -> None:
    """Raise AssertionError where ``model`` is not the model ``cfg`` describes (with ``num_classes``)."""
    m = cfg.model
    blocks, block = TRUNKS[m.backbone]
    body = model.backbone.body
    stages = [body.layer1, body.layer2, body.layer3, body.layer4]
    assert tuple(len(s) for s in stages) == blocks and type(body.layer1[0]) is block
    assert body.conv1.out_channels == m.width and model.backbone.arch == m.arch
    _check_operator(model.roi_heads.box_pooler, m)
    _check_box_branch(model, m, num_classes)
    _check_mask_branch(model, m, num_classes)
    heads = model.roi_heads
    assert heads.sampler.batch_size_per_image == m.roi_batch_size_per_image
    assert heads.sampler.positive_fraction == m.roi_positive_fraction
    assert (heads.score_thresh, heads.nms_thresh) == (m.score_thresh, m.nms_thresh)
    assert heads.detections_per_image == m.detections_per_image
