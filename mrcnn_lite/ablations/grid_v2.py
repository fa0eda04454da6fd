"""Table 2 v2: the grid a reviewer of the paper would accept (issue #20).

What changes from the committed reproduction (:mod:`.grid`, ``results/table2.md``):

- **A neutral pretrained trunk**, as the paper's ImageNet one: ResNet-18 and ResNet-34 at the classroom
  width, pretrained on shape *classification* (:mod:`mrcnn_lite.engine.pretrain`; no boxes, RoIs or FPN),
  two trunk seeds per depth (``TRUNKS``). Fine-tuning seed ``s`` starts from trunk seed ``s % 2``, so the
  seeds' spread includes the trunk's.
- **Every run end to end** from that trunk with the same schedule (the ``table2v2_*`` presets: stem and
  res2 frozen, frozen BatchNorm, AdamW), evaluated at ½, ¾ and the end of the schedule (``EVAL_POINTS``).
- **The paper's settings**: C4 with 64 RoIs per image and 300 test proposals; the FCN mask head with 4 convs
  against MLPs 4x as wide (the paper's 1024 against 256); RoIAlign as the paper's (``aligned=False``), with
  detectron2's ``aligned=True`` as an extra row; RoIWarp as MNC defines it; 2b's softmax masks decoded by
  argmax over the K+1 classes (the rule fixed in advance), with p(k) > 0.5 as a second line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mrcnn_lite.ablations.grid import Claim, Row, _approx, _gt  # the same claim builders as v1
from mrcnn_lite.engine.pretrain import PretrainConfig

Arch = Literal["c4", "c5", "fpn"]

#: the preset each architecture's runs start from (``mrcnn_lite.config.table2``)
ARCH_PRESET_V2 = {"c4": "table2v2_c4", "c5": "table2v2_c5", "fpn": "table2v2_fpn"}
#: the fractions of the schedule where every run is evaluated (checkpoints of ``v2_schedule``). ¼ is left
#: out: there every row sits at the floor (C4 at 2.7 mask AP, ``docs/table2_v2_design.md``), and each C4
#: evaluation (300 test proposals through res5) costs a minute of a core per 100 images
EVAL_POINTS = (0.5, 0.75, 1.0)
TRUNK_SEEDS = (0, 1)
DEPTHS = ("resnet18", "resnet34")


@dataclass(frozen=True)
class Trunk:
    """One pretrained trunk: ``depth`` at the classroom width, pretraining seed ``seed``."""

    depth: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.depth.replace('resnet', 'r')}_seed{self.seed}"

    @property
    def config(self) -> PretrainConfig:
        return PretrainConfig(depth=self.depth, width=32, seed=self.seed, iters=PRETRAIN_ITERS)


#: pretraining iterations of 64 images (fresh generated images each: 96k images in all)
PRETRAIN_ITERS = 1500
TRUNKS: tuple[Trunk, ...] = tuple(Trunk(d, s) for d in DEPTHS for s in TRUNK_SEEDS)


def trunk_for(depth: str, seed: int) -> Trunk:
    """The trunk fine-tuning seed ``seed`` of a ``depth`` run starts from."""
    return Trunk(depth, TRUNK_SEEDS[seed % len(TRUNK_SEEDS)])


@dataclass(frozen=True)
class RunV2:
    """One fine-tuned model of the grid: ``table2v2_<arch>`` with ``overrides``, on a ``backbone`` trunk."""

    key: str
    arch: Arch
    overrides: tuple[str, ...]
    what: str
    backbone: str = "resnet18"
    #: extra evaluations of the same weights: (name, the RoI heads' ``mask_decode`` at test time)
    decodings: tuple[tuple[str, str], ...] = ()

    @property
    def preset(self) -> str:
        return ARCH_PRESET_V2[self.arch]


POOL = ("model.roi_op=roi_pool", "model.roi_mode=max")
WARP = ("model.roi_op=roi_warp_mnc",)


def _run(key: str, arch: Arch, what: str, *overrides: str, backbone: str = "resnet18", **kw) -> RunV2:
    depth = () if backbone == "resnet18" else (f"model.backbone={backbone}",)
    return RunV2(key, arch, (*depth, *overrides), what, backbone, **kw)


#: every run, in the order the runner trains them (decisive and cheap ones first)
RUNS_V2: tuple[RunV2, ...] = (
    _run("c4_align", "c4", "C4, RoIAlign (paper: aligned=False, average), sigmoid, class-specific"),
    _run("c4_pool", "c4", "C4, RoIPool (quantized, max)", *POOL),
    _run("c5_align", "c5", "C5 (stride 32), RoIAlign"),
    _run("c5_pool", "c5", "C5 (stride 32), RoIPool", *POOL),
    _run("fpn_fcn", "fpn", "FPN, FCN mask head (4 convs)"),
    _run("c4_align_max", "c4", "C4, RoIAlign (max)", "model.roi_mode=max"),
    _run("c4_warp_max", "c4", "C4, RoIWarp as MNC (max)", *WARP, "model.roi_mode=max"),
    _run("c4_warp_avg", "c4", "C4, RoIWarp as MNC (average)", *WARP, "model.roi_mode=avg"),
    _run("c4_align_aligned", "c4", "C4, RoIAlign with detectron2's aligned=True", "model.roi_aligned=true"),
    _run(
        "c4_softmax", "c4", "C4, softmax over classes; masks by argmax over the K+1 channels",
        "model.mask_loss=softmax", "model.mask_decode=argmax",
        decodings=(("p05", "threshold"),),
    ),  # fmt: skip
    _run("c4_agnostic", "c4", "C4, one class-agnostic mask", "model.class_agnostic_masks=true"),
    _run("fpn_mlp1", "fpn", "FPN, MLP mask head fc-fc-K*m*m (4x the conv width)", "model.mask_head=mlp1"),
    _run("fpn_mlp2", "fpn", "FPN, MLP mask head fc-fc-fc-K*m*m", "model.mask_head=mlp2"),
    _run("fpn_faster", "fpn", "FPN, Faster R-CNN: no mask branch", "model.with_mask=false"),
    _run("r34_c4", "c4", "ResNet-34-C4", backbone="resnet34"),
    _run("r34_fpn", "fpn", "ResNet-34-FPN", backbone="resnet34"),
)
RUN_BY_KEY_V2 = {r.key: r for r in RUNS_V2}

ROWS_V2: tuple[Row, ...] = (
    Row("2a", "R18-C4", "c4_align", "ResNet-50-C4", baseline=True),
    Row("2a", "R34-C4", "r34_c4", "ResNet-101-C4"),
    Row("2a", "R18-FPN", "fpn_fcn", "ResNet-50-FPN"),
    Row("2a", "R34-FPN", "r34_fpn", "ResNet-101-FPN"),
    Row("2b", "softmax (argmax)", "c4_softmax", "softmax", baseline=True),
    Row("2b", "sigmoid", "c4_align", "sigmoid"),
    Row("2c", "RoIPool (max)", "c4_pool", "RoIPool (max)", baseline=True),
    Row("2c", "RoIWarp (MNC, max)", "c4_warp_max", "RoIWarp (bilinear, max)"),
    Row("2c", "RoIWarp (MNC, avg)", "c4_warp_avg", "RoIWarp (bilinear, ave)"),
    Row("2c", "RoIAlign (max)", "c4_align_max", "RoIAlign (align, bilinear, max)"),
    Row("2c", "RoIAlign (avg)", "c4_align", "RoIAlign (align, bilinear, ave)"),
    Row("2c", "RoIAlign (avg, aligned=True)", "c4_align_aligned", "RoIAlign (align, bilinear, ave)"),
    Row("2d", "RoIPool", "c5_pool", "RoIPool", baseline=True),
    Row("2d", "RoIAlign", "c5_align", "RoIAlign"),
    Row("2e", "MLP fc-fc-K*28*28", "fpn_mlp1", "MLP fc: 1024-1024-80x28x28", baseline=True),
    Row("2e", "MLP fc-fc-fc-K*28*28", "fpn_mlp2", "MLP fc: 1024-1024-1024-80x28x28"),
    Row("2e", "FCN conv x4-deconv-K", "fpn_fcn", "FCN conv: 256-256-256-256-256-80"),
    Row("agnostic", "class-specific", "c4_align", "class-specific", baseline=True),
    Row("agnostic", "class-agnostic", "c4_agnostic", "class-agnostic"),
    Row("3", "Faster R-CNN, RoIAlign", "fpn_faster", "Faster R-CNN, RoIAlign", baseline=True),
    Row("3", "Mask R-CNN", "fpn_fcn", "Mask R-CNN"),
)


#: the paper's claims; the directional ones ("greater") form the Holm family of the verdicts
CLAIMS_V2: tuple[Claim, ...] = (
    _gt("align_gt_pool", "2c", "RoIAlign beats RoIPool (stride 16)", "c4_align", "c4_pool"),
    _gt("align_gt_warp", "2c", "RoIAlign beats RoIWarp", "c4_align", "c4_warp_avg"),
    Claim(
        "align_gain_ap75", "2c", "RoIAlign's gain over RoIPool is larger at AP75 than at AP50",
        (("c4_align", "mask_AP75"), ("c4_pool", "mask_AP50")),
        (("c4_pool", "mask_AP75"), ("c4_align", "mask_AP50")),
    ),  # fmt: skip
    _approx("warp_approx_pool", "2c", "RoIWarp is about RoIPool", "c4_warp_max", "c4_pool"),
    _approx("align_max_approx_avg", "2c", "max is about average (RoIAlign)", "c4_align_max", "c4_align"),
    _approx("warp_max_approx_avg", "2c", "max is about average (RoIWarp)", "c4_warp_max", "c4_warp_avg"),
    _gt("align_gt_pool_c5", "2d", "RoIAlign beats RoIPool at stride 32 (mask AP)", "c5_align", "c5_pool"),
    _gt(
        "align_gt_pool_c5_box", "2d", "RoIAlign beats RoIPool at stride 32 (box AP)", "c5_align", "c5_pool",
        "box_AP",
    ),  # fmt: skip
    Claim(
        "stride32_gap", "2d", "RoIAlign's gain over RoIPool is larger at stride 32 than at stride 16 (2c)",
        (("c5_align", "mask_AP"), ("c4_pool", "mask_AP")),
        (("c5_pool", "mask_AP"), ("c4_align", "mask_AP")),
    ),  # fmt: skip
    _gt("sigmoid_gt_softmax", "2b", "sigmoid (independent) masks beat softmax (multinomial)", "c4_align",
        "c4_softmax"),  # fmt: skip
    _gt("fcn_gt_mlp1", "2e", "the FCN mask head beats the MLP (fc-fc)", "fpn_fcn", "fpn_mlp1"),
    _gt("fcn_gt_mlp2", "2e", "the FCN mask head beats the MLP (fc-fc-fc)", "fpn_fcn", "fpn_mlp2"),
    _approx(
        "agnostic_approx_specific", "agnostic", "class-agnostic masks are about as good as class-specific",
        "c4_agnostic", "c4_align",
    ),  # fmt: skip
    _gt("deeper_c4", "2a", "deeper helps: R34-C4 beats R18-C4 (paper: R101 vs R50)", "r34_c4", "c4_align"),
    _gt("deeper_fpn", "2a", "deeper helps: R34-FPN beats R18-FPN", "r34_fpn", "fpn_fcn"),
    _gt("fpn_gt_c4_r18", "2a", "FPN helps: R18-FPN beats R18-C4", "fpn_fcn", "c4_align"),
    _gt("fpn_gt_c4_r34", "2a", "FPN helps: R34-FPN beats R34-C4", "r34_fpn", "r34_c4"),
    _gt("multitask_box", "3", "the mask branch improves box AP (Mask R-CNN vs Faster R-CNN)", "fpn_fcn",
        "fpn_faster", "box_AP"),  # fmt: skip
)


@dataclass(frozen=True)
class GridV2:
    """The schedule of one v2 reproduction: ``max_iter`` None keeps the presets' (800 iterations)."""

    name: str
    runs: tuple[str, ...] | None  # None: every run
    seeds: int
    max_iter: int | None
    max_val_images: int | None
    description: str


GRIDS_V2: dict[str, GridV2] = {
    g.name: g
    for g in (
        GridV2("cpu", None, 4, None, 100, "every run, 4 fine-tuning seeds (trunk seeds 0, 1, 0, 1), 800 "
               "iterations each, AP on the first 100 val images at 400, 600 and 800"),
        GridV2("quick", ("c5_align", "c5_pool"), 3, None, 100, "a class's lab (20 min on 2 CPU cores): "
               "RoIAlign against RoIPool at stride 32 (2d), seeds 0-2 of the cpu grid's C5 runs"),
        GridV2("smoke", ("c4_align", "c4_softmax", "fpn_fcn"), 1, 4, 8, "CI: a few iterations and 8 val "
               "images, to check the path end to end"),
    )
}  # fmt: skip
