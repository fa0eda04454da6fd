"""Validation: :func:`validate` lists every problem of a config, one small check per part of the model.

Each ``_check_*`` returns its problems as messages that name the key and the fix; the combinations it
rejects are those the model cannot build (for instance a res5 box head without the C4 backbone, §3).
"""

from __future__ import annotations

from collections.abc import Callable

from mrcnn_lite.config.schema import SECTIONS, Config, ConfigError, DataConfig, ModelConfig, TrainConfig
from mrcnn_lite.config.typed import coerce, hints, type_name


def _check_types(cfg: Config) -> list[str]:
    """Types and choices (a Config built in code bypasses the parser)."""
    problems = []
    typed = [(f"{s}.", getattr(cfg, s)) for s in SECTIONS] + [("", cfg)]
    for prefix, obj in typed:
        for name, tp in hints(type(obj)).items():
            if prefix == "" and name in SECTIONS:
                continue
            value = getattr(obj, name)
            try:
                ok = coerce(value, tp) == value
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"{prefix}{name}={value!r} is not {type_name(tp)}")
    return problems


def _check_backbone(m: ModelConfig) -> list[str]:
    """The trunk (§3 "Network Architecture"). A ``weights_path`` of another width is checked on loading."""
    problems = []
    if m.width <= 0:
        problems.append(f"model.width must be positive, got {m.width}")
    if m.backbone == "resnext101_32x8d" and m.width % 8 != 0:
        problems.append(f"model.width for resnext101_32x8d must be a multiple of 8, got {m.width}")
    if not 0 <= m.freeze_at <= 5:
        problems.append(f"model.freeze_at must be in 0..5 (1 stem, 2 stem+res2, ...), got {m.freeze_at}")
    if m.fpn_channels <= 0:
        problems.append(f"model.fpn_channels must be positive, got {m.fpn_channels}")
    if not (m.num_classes is None or m.num_classes >= 2):
        problems.append(
            f"model.num_classes counts the background, so it must be >= 2 (or None), got {m.num_classes}"
        )
    return problems


def _check_rpn(m: ModelConfig) -> list[str]:
    """Anchors, IoU thresholds, sampling fractions and proposal counts (§3.1, Faster R-CNN's RPN)."""
    problems = []
    if m.arch == "fpn" and len(m.anchor_sizes) != 5:
        problems.append(
            f"model.anchor_sizes needs one size per FPN level P2..P6 (5) with arch='fpn', "
            f"got {m.anchor_sizes}"
        )
    if not (len(m.anchor_sizes) > 0 and min(m.anchor_sizes) > 0):
        problems.append(f"model.anchor_sizes must be positive: {m.anchor_sizes}")
    if not (len(m.aspect_ratios) > 0 and min(m.aspect_ratios) > 0):
        problems.append(f"model.aspect_ratios must be positive: {m.aspect_ratios}")
    for key in ("rpn_fg_iou", "rpn_bg_iou", "roi_fg_iou", "rpn_nms_thresh", "nms_thresh", "score_thresh"):
        if not 0.0 <= getattr(m, key) <= 1.0:
            problems.append(f"model.{key} must be in [0, 1], got {getattr(m, key)}")
    if not m.rpn_bg_iou <= m.rpn_fg_iou:
        problems.append(
            f"model.rpn_bg_iou ({m.rpn_bg_iou}) must not exceed model.rpn_fg_iou ({m.rpn_fg_iou})"
        )
    for key in ("rpn_positive_fraction", "roi_positive_fraction"):
        if not 0.0 < getattr(m, key) <= 1.0:
            problems.append(f"model.{key} must be in (0, 1], got {getattr(m, key)}")
    for split in ("train", "test"):
        pre, post = getattr(m, f"rpn_pre_nms_top_n_{split}"), getattr(m, f"rpn_post_nms_top_n_{split}")
        if not (pre > 0 and post > 0):
            problems.append(f"model.rpn_*_nms_top_n_{split} must be positive, got {pre}, {post}")
        if m.arch != "fpn" and post > pre:  # FPN's pre-NMS count is per level, so the total may exceed post
            problems.append(
                f"model.rpn_post_nms_top_n_{split} ({post}) cannot exceed rpn_pre_nms_top_n_{split} ({pre})"
            )
    for key in ("rpn_batch_size_per_image", "roi_batch_size_per_image", "box_fc_dim", "detections_per_image"):
        if getattr(m, key) <= 0:
            problems.append(f"model.{key} must be positive, got {getattr(m, key)}")
    return problems


def _check_roi_op(m: ModelConfig) -> list[str]:
    """The RoI feature extractor (Table 2c: RoIPool is max pooling; avg exists for RoIWarp and RoIAlign)."""
    problems = []
    if m.roi_op == "roi_pool" and m.roi_mode != "max":
        problems.append(
            "model.roi_op='roi_pool' is max pooling by definition; set model.roi_mode=max "
            "(avg exists only for roi_warp and roi_align, Table 2c)"
        )
    if m.roi_sampling_ratio < 0:
        problems.append(f"model.roi_sampling_ratio must be >= 0 (0 = adaptive), got {m.roi_sampling_ratio}")
    return problems


def _check_box_head(m: ModelConfig) -> list[str]:
    """C4's box head is res5 and only C4's (Figure 4)."""
    problems = []
    if m.box_head == "res5" and m.arch != "c4":
        problems.append(
            f"model.box_head='res5' needs model.arch='c4' (res5 runs on the RoIs only in C4; with "
            f"arch={m.arch!r} it already ran on the image): use box_head='2fc'"
        )
    if m.arch == "c4" and m.box_head != "res5":
        problems.append(
            "model.arch='c4' needs model.box_head='res5' (Figure 4 left; a 2fc head would leave res5 unused)"
        )
    return problems


def _check_mask_head(m: ModelConfig) -> list[str]:
    """The mask branch (Figure 4, Table 2b and 2e); nothing to check without one (Faster R-CNN)."""
    if not m.with_mask:
        return []
    problems = []
    if m.arch == "c4":
        if m.mask_head != "fcn":
            problems.append(
                f"model.mask_head={m.mask_head!r} is Table 2e's MLP head on FPN RoI features; with "
                "arch='c4' the mask head is the fcn on res5's output (Figure 4 left)"
            )
        if m.mask_resolution != 14:
            problems.append(
                f"model.mask_resolution must be 14 with arch='c4' (res5's 7x7 output, one 2x deconv; "
                f"Figure 4 left), got {m.mask_resolution}"
            )
    elif m.mask_head == "fcn" and not (m.mask_resolution > 0 and m.mask_resolution % 2 == 0):
        problems.append(
            f"model.mask_resolution must be even with mask_head='fcn' (RoI features of m/2, one 2x "
            f"deconv), got {m.mask_resolution}"
        )
    if m.mask_resolution <= 0:
        problems.append(f"model.mask_resolution must be positive, got {m.mask_resolution}")
    if not (m.mask_conv_dim > 0 and m.mask_num_convs >= 0):
        problems.append(
            f"model.mask_conv_dim must be positive and mask_num_convs >= 0, got {m.mask_conv_dim}, "
            f"{m.mask_num_convs}"
        )
    if m.mask_decode == "argmax" and m.mask_loss != "softmax":
        problems.append(
            "model.mask_decode='argmax' picks the winning class among the mask channels, which only the "
            f"softmax mask loss trains to compete; with mask_loss={m.mask_loss!r} use mask_decode='threshold'"
        )
    if m.mask_fc_dim <= 0:
        problems.append(f"model.mask_fc_dim must be positive, got {m.mask_fc_dim}")
    if m.class_agnostic_masks and m.mask_loss == "softmax":
        problems.append(
            "model.mask_loss='softmax' competes the classes' masks per pixel, so it needs per-class masks "
            "(class_agnostic_masks=false)"
        )
    return problems


def _check_fpn_levels(m: ModelConfig) -> list[str]:
    """The FPN level of a RoI (FPN paper, Eq. 1)."""
    if m.fpn_k0 >= 2 and m.fpn_canonical_size > 0:
        return []
    return ["model.fpn_k0 must be >= 2, fpn_canonical_size > 0"]


def _check_data(d: DataConfig) -> list[str]:
    """Image sizes (the shorter side, capped by ``max_size``), flipping and loader workers."""
    problems = []
    sizes = (d.min_size,) if isinstance(d.min_size, int) else d.min_size
    if not (len(sizes) > 0 and min(sizes) > 0):
        problems.append(f"data.min_size must be positive, got {d.min_size}")
    if len(sizes) > 0 and d.max_size < max(sizes):
        problems.append(f"data.max_size ({d.max_size}) must be >= data.min_size ({d.min_size})")
    if not 0.0 <= d.flip_prob <= 1.0:
        problems.append(f"data.flip_prob must be in [0, 1], got {d.flip_prob}")
    if d.num_workers < 0:
        problems.append(f"data.num_workers must be >= 0, got {d.num_workers}")
    return problems


def _check_train(t: TrainConfig) -> list[str]:
    """The optimizer and the schedule (§3.1 "Training")."""
    problems = []
    if t.images_per_batch < 1:
        problems.append(f"train.images_per_batch must be >= 1, got {t.images_per_batch}")
    if not t.base_lr > 0:
        problems.append(f"train.base_lr must be positive, got {t.base_lr}")
    if not (t.reference_batch_size is None or t.reference_batch_size >= 1):
        problems.append(f"train.reference_batch_size must be >= 1 or None, got {t.reference_batch_size}")
    if t.max_iter < 0:
        problems.append(f"train.max_iter must be >= 0, got {t.max_iter}")
    if list(t.steps) != sorted(t.steps):
        problems.append(f"train.steps must be increasing, got {t.steps}")
    if t.warmup_iters < 0:
        problems.append(f"train.warmup_iters must be >= 0, got {t.warmup_iters}")
    if not 0.0 < t.warmup_factor <= 1.0:
        problems.append(f"train.warmup_factor must be in (0, 1], got {t.warmup_factor}")
    if not (t.clip_grad_norm is None or t.clip_grad_norm > 0):
        problems.append(f"train.clip_grad_norm must be positive or None, got {t.clip_grad_norm}")
    for key in ("checkpoint_period", "eval_period", "log_period"):
        if getattr(t, key) < 1:
            problems.append(f"train.{key} must be >= 1, got {getattr(t, key)}")
    return problems


_MODEL_CHECKS: tuple[Callable[[ModelConfig], list[str]], ...] = (
    _check_backbone, _check_rpn, _check_roi_op, _check_box_head, _check_mask_head, _check_fpn_levels,
)  # fmt: skip


def problems(cfg: Config) -> list[str]:
    """Every problem of ``cfg``, as messages (empty when valid); types first, then ranges and combinations."""
    typed = _check_types(cfg)
    if typed:  # the range checks below would compare values of the wrong type
        return typed
    found = [p for check in _MODEL_CHECKS for p in check(cfg.model)]
    return found + _check_data(cfg.data) + _check_train(cfg.train)


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` listing every problem: bad choices, out-of-range values, combinations."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
