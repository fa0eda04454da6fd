"""Configs: presets (the paper's COCO numbers, §3.1), typed overrides, validation, serialisation, argparse."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from mrcnn_lite.config import (
    ALL_PRESETS,
    Config,
    ConfigError,
    ModelConfig,
    add_config_args,
    apply_overrides,
    config_from_args,
    from_dict,
    get_config,
    get_preset,
    scaled_lr,
    to_dict,
    validate,
)
from mrcnn_lite.modeling.backbone import DEPTHS, build_backbone


@pytest.mark.parametrize("name", list(ALL_PRESETS))
def test_every_preset_validates_and_round_trips(name: str) -> None:
    cfg = get_preset(name)
    validate(cfg)
    assert cfg.name == name
    text = json.dumps(to_dict(cfg))  # JSON-serialisable
    assert from_dict(json.loads(text)) == cfg
    assert cfg.model.backbone in DEPTHS


@pytest.mark.parametrize("name", ["classroom_fpn", "classroom_c4", "classroom_c5"])
def test_classroom_presets_build_their_backbone(name: str) -> None:
    m = get_preset(name).model
    bb = build_backbone(m.backbone, m.arch, m.width, m.frozen_bn, m.freeze_at, m.fpn_channels, m.weights_path)
    assert bb.arch == m.arch and (bb.res5 is not None) == (m.box_head == "res5")
    assert all(p.requires_grad for p in bb.parameters())  # from scratch: nothing frozen


def test_coco_presets_carry_the_papers_numbers() -> None:
    c4, fpn = get_preset("coco_r50_c4"), get_preset("coco_r50_fpn")
    for cfg in (c4, fpn, get_preset("coco_r101_fpn")):
        t = cfg.train
        assert (t.base_lr, t.images_per_batch, t.reference_batch_size) == (0.02, 16, 16)
        assert (t.max_iter, t.steps, t.momentum, t.weight_decay) == (160_000, (120_000,), 0.9, 1e-4)
        assert scaled_lr(cfg) == 0.02
        assert (cfg.data.min_size, cfg.data.max_size) == (800, 1333)
        m = cfg.model
        assert (m.frozen_bn, m.freeze_at, m.width) == (True, 2, 64)
        assert (m.roi_op, m.roi_mode, m.roi_sampling_ratio, m.roi_positive_fraction) == (
            "roi_align",
            "avg",
            2,
            0.25,
        )
        assert m.anchor_sizes == (32, 64, 128, 256, 512) and m.aspect_ratios == (0.5, 1.0, 2.0)
        assert (m.mask_loss, m.with_mask, m.num_classes) == ("sigmoid", True, 81)
    assert (
        c4.model.rpn_post_nms_top_n_test,
        c4.model.roi_batch_size_per_image,
        c4.model.mask_resolution,
    ) == (
        300,
        64,
        14,
    )
    assert (
        fpn.model.rpn_post_nms_top_n_test,
        fpn.model.roi_batch_size_per_image,
        fpn.model.mask_resolution,
    ) == (
        1000,
        512,
        28,
    )
    assert (c4.model.arch, c4.model.box_head, fpn.model.box_head) == ("c4", "res5", "2fc")
    # ResNeXt: 1 image per GPU (8 in all) at lr 0.01, the same number of iterations
    x101 = get_preset("coco_x101_fpn")
    assert x101.model.backbone == "resnext101_32x8d" and x101.train.images_per_batch == 8
    assert scaled_lr(x101) == pytest.approx(0.01) and x101.train.max_iter == 160_000


def test_scaled_lr_is_the_linear_scaling_rule() -> None:
    assert scaled_lr(get_config("coco_r50_fpn", ["train.images_per_batch=2"])) == pytest.approx(0.0025)
    classroom = get_config("classroom_fpn", ["train.base_lr=0.03", "train.images_per_batch=4"])
    assert classroom.train.reference_batch_size is None and scaled_lr(classroom) == 0.03


def test_string_overrides_parse_by_declared_type() -> None:
    base = get_preset("classroom_fpn")
    cfg = apply_overrides(
        base,
        [
            "model.frozen_bn=true",  # bool
            "model.with_mask=0",
            "model.class_agnostic_masks=Yes",
            "train.max_iter=200",  # int
            "train.base_lr=1e-3",  # float
            "train.clip_grad_norm=none",  # float | None
            "model.num_classes=7",  # int | None
            "data.min_size=(192, 224)",  # int | tuple[int, ...]
            "model.aspect_ratios=0.5,1,2",  # tuple[float, ...]
            "train.steps=[100,150]",  # tuple[int, ...]
            "model.roi_op=roi_warp",  # choice
            "model.weights_path=None",  # str | None
            "data.root=/tmp/my shapes",  # str, spaces kept
            "seed=3",  # top level
            "name = ablation-1",
        ],
    )
    m, d, t = cfg.model, cfg.data, cfg.train
    assert (m.frozen_bn, m.with_mask, m.class_agnostic_masks) == (True, False, True)
    assert (t.max_iter, t.base_lr, t.clip_grad_norm, t.steps) == (200, 1e-3, None, (100, 150))
    assert m.num_classes == 7 and isinstance(m.num_classes, int)
    assert d.min_size == (192, 224) and m.aspect_ratios == (0.5, 1.0, 2.0)
    assert all(isinstance(a, float) for a in m.aspect_ratios)
    assert (m.roi_op, m.weights_path, d.root, cfg.seed, cfg.name) == (
        "roi_warp",
        None,
        "/tmp/my shapes",
        3,
        "ablation-1",
    )
    assert get_config("classroom_fpn", ["data.min_size=256"]).data.min_size == 256  # an int stays an int
    assert get_config("classroom_fpn", ["train.steps=()"]).train.steps == ()
    assert get_config("classroom_fpn", ["train.clip_grad_norm=5"]).train.clip_grad_norm == 5.0
    # immutability: the input config is unchanged, and configs cannot be edited in place
    assert base == get_preset("classroom_fpn") and base.train.max_iter != 200
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.max_iter = 1  # type: ignore[misc]


def test_papermill_style_dict_overrides() -> None:
    cfg = get_config(
        "classroom_c4",
        {
            "model.roi_op": "roi_pool",
            "model.roi_mode": "max",
            "train.max_iter": 200,
            "train.base_lr": 1,  # an int where a float is declared
            "data.min_size": [192, 224],  # a list where a tuple is declared
            "model.frozen_bn": True,
            "model.weights_path": None,
            "data.flip_prob": "0.25",  # a string is parsed like a command-line value
        },
    )
    assert (cfg.model.roi_op, cfg.train.max_iter, cfg.data.min_size, cfg.model.frozen_bn) == (
        "roi_pool",
        200,
        (192, 224),
        True,
    )
    assert cfg.train.base_lr == 1.0 and isinstance(cfg.train.base_lr, float)
    assert cfg.data.flip_prob == 0.25
    with pytest.raises(ConfigError, match=r"bad value for train.max_iter: True \(expected int\)"):
        get_config("classroom_fpn", {"train.max_iter": True})
    with pytest.raises(ConfigError, match=r"bad value for train.max_iter: 2.5 \(expected int\)"):
        get_config("classroom_fpn", {"train.max_iter": 2.5})


def test_unknown_preset_and_key() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown preset 'coco_r50'.*did you mean coco_r50_c4.*valid: classroom_fpn"
    ):
        get_preset("coco_r50")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.roi_opp'; did you mean model.roi_op"):
        get_config("classroom_fpn", ["model.roi_opp=roi_pool"])
    with pytest.raises(ConfigError, match=r"unknown config key 'base_lr'; did you mean train.base_lr"):
        get_config("classroom_fpn", {"base_lr": 0.1})
    with pytest.raises(ConfigError, match=r"unknown config key 'model'"):  # a section is not a value
        get_config("classroom_fpn", ["model=x"])
    with pytest.raises(ConfigError, match=r"'train.max_iter' is not of the form key=value"):
        get_config("classroom_fpn", ["train.max_iter"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_iter=1.5", r"bad value for train.max_iter: '1.5' \(expected int\)"),
        ("model.frozen_bn=maybe", r"bad value for model.frozen_bn: 'maybe' \(expected bool\)"),
        ("train.base_lr=fast", r"bad value for train.base_lr: 'fast' \(expected float\)"),
        (
            "data.min_size=(192,big)",
            r"bad value for data.min_size: '\(192,big\)' \(expected int \| tuple\[int, ...\]\)",
        ),
        (
            "model.roi_op=roialign",
            r"bad value for model.roi_op: 'roialign' \(expected 'roi_pool' \| 'roi_warp'",
        ),
        (
            "model.width=none",
            r"bad value for model.width: 'none' \(expected int\)",
        ),  # None only where allowed
    ],
)
def test_bad_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_config("classroom_fpn", [override])


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("classroom_fpn", ["model.box_head=res5"], r"box_head='res5' needs model.arch='c4'"),
        ("classroom_c4", ["model.box_head=2fc"], r"arch='c4' needs model.box_head='res5'"),
        ("classroom_c4", ["model.mask_head=mlp1"], r"mask_head='mlp1' is Table 2e's MLP head"),
        ("classroom_c4", ["model.mask_resolution=28"], r"mask_resolution must be 14 with arch='c4'"),
        ("classroom_fpn", ["model.mask_resolution=27"], r"mask_resolution must be even"),
        ("classroom_fpn", ["model.anchor_sizes=(32,64,128)"], r"one size per FPN level P2..P6"),
        (
            "classroom_fpn",
            ["model.roi_op=roi_pool"],
            r"roi_pool' is max pooling by definition; set model.roi_mode=max",
        ),
        (
            "classroom_fpn",
            ["model.rpn_bg_iou=0.8"],
            r"rpn_bg_iou \(0.8\) must not exceed model.rpn_fg_iou \(0.7\)",
        ),
        (
            "classroom_fpn",
            ["model.class_agnostic_masks=1", "model.mask_loss=softmax"],
            r"needs per-class masks",
        ),
        ("classroom_fpn", ["model.freeze_at=6"], r"freeze_at must be in 0..5"),
        ("classroom_fpn", ["data.max_size=200"], r"data.max_size \(200\) must be >= data.min_size"),
        ("classroom_fpn", ["train.steps=(900,300)"], r"train.steps must be increasing"),
        ("coco_x101_fpn", ["model.width=12"], r"multiple of 8"),
    ],
)
def test_incompatible_choices(preset: str, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_config(preset, overrides)


def test_validation_runs_after_all_overrides() -> None:
    """Switching C4 -> FPN needs several keys at once; no intermediate state is validated."""
    cfg = get_config("classroom_c4", ["model.arch=fpn", "model.box_head=2fc", "model.mask_resolution=28"])
    assert (cfg.model.arch, cfg.model.box_head) == ("fpn", "2fc")
    with pytest.raises(ConfigError) as info:  # every problem is listed, not only the first
        get_config("classroom_c4", ["model.arch=fpn"])
    assert "box_head='res5' needs" in str(info.value) and "roi_op" not in str(info.value)
    # and a Config built in code is type-checked by validate()
    with pytest.raises(ConfigError, match=r"model.arch='c6' is not 'c4' \| 'c5' \| 'fpn'"):
        validate(Config(model=ModelConfig(arch="c6")))  # type: ignore[arg-type]


def test_from_dict_fills_defaults_and_rejects_unknown_keys() -> None:
    cfg = from_dict({"model": {"arch": "c5"}, "seed": 5})
    assert cfg.model.arch == "c5" and cfg.seed == 5 and cfg.train == Config().train
    with pytest.raises(ConfigError, match=r"unknown config key 'model.depth'; did you mean model.width"):
        from_dict({"model": {"depth": "resnet50"}})


def test_argparse_integration() -> None:
    parser = add_config_args(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--config", "classroom_c4", "--set", "model.roi_op=roi_warp", "--set", "data.min_size=(160,192)"]
    )
    cfg = config_from_args(args)
    assert (cfg.name, cfg.model.roi_op, cfg.data.min_size) == ("classroom_c4", "roi_warp", (160, 192))
    default = config_from_args(parser.parse_args([]))
    assert default == get_preset("classroom_fpn")
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", "nope"])


def test_rescale_schedule_keeps_fractions_and_lr_curve_shape() -> None:
    from mrcnn_lite.config import rescale_schedule
    from mrcnn_lite.engine.schedule import lr_at

    cfg = get_config("coco_r50_fpn")  # 160k, step at 120k, warm-up 500
    short = rescale_schedule(cfg, 1600)
    assert short.train.max_iter == 1600 and short.train.steps == (1200,) and short.train.warmup_iters == 5
    assert short.model == cfg.model and short.data == cfg.data
    # the lr at the same fraction of the run is the same (away from the rounding of the warm-up)
    for frac in (0.25, 0.5, 0.74, 0.76, 0.99):
        assert lr_at(round(frac * 1600), short) == pytest.approx(lr_at(round(frac * 160_000), cfg))
    with pytest.raises(ConfigError, match="max_iter"):
        rescale_schedule(cfg, 0)


def test_momentum_is_adams_beta1() -> None:
    """``train.momentum`` is SGD's momentum and AdamW's beta1 (``adam_betas``), one field for both so that
    recorded configs stay valid; the classroom presets' AdamW gets (0.9, 0.999)."""
    import torch

    from mrcnn_lite.config import ADAM_BETA2
    from mrcnn_lite.engine.schedule import build_optimizer

    cfg = get_config("classroom_fpn", ["train.momentum=0.8"])
    assert cfg.train.optimizer == "adamw" and cfg.train.adam_betas == (0.8, ADAM_BETA2) == (0.8, 0.999)
    assert get_preset("classroom_fpn").train.adam_betas == (0.9, 0.999)
    assert "adam_betas" not in to_dict(cfg)["train"]  # a property, not a recorded field
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.8, 0.999)
