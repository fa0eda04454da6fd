"""The Table 2 grid: the runs, the table rows they fill, the claims they test, and the schedules.

Mask R-CNN's ablations (He et al. 2017, §4.2, Table 2 a-e, the class-agnostic remark, and Table 3's
Faster R-CNN vs Mask R-CNN box AP) rebuilt on the shapes data with the classroom ResNets:

- a **run** is one model configuration (``RUNS``): a Table 2 preset (``table2_c4``, ``_c5``, ``_fpn``:
  the classroom models as the committed table trained them, frozen) plus the overrides that make it the
  row's variant. Runs that two sub-tables share are trained once (the C4 RoIAlign-avg sigmoid
  class-specific model is the baseline of 2b, 2c and the class-agnostic comparison, as in the paper);
- a **table row** (``ROWS``) shows one run's AP next to the paper's number for the same setting;
- a **claim** (``CLAIMS``) is a qualitative statement of the paper (e.g. "RoIAlign beats RoIPool") as a
  signed sum of AP values whose sign the paper predicts, evaluated per seed (:mod:`.report`);
- a **grid preset** (``GRID_PRESETS``) sets the schedules: ``cpu`` (the committed reproduction: a shared
  trunk trained once, then per run only what the run changes), ``e2e`` (every run end to end with the
  classroom schedule: the GPU grid) and ``smoke`` (CI: a few iterations, a few val images).

The shared trunk (``stage="heads"`` runs): the paper fine-tunes from an ImageNet-pretrained ResNet; we have
no ImageNet, so the trunk is the ResNet-18 of one ``table2_trunk`` model trained on the shapes train set
(seed 0), saved once and loaded by every "heads" run with its stages frozen as Detectron freezes the
pretrained stem (``freeze_at``: C4 trains res5, its box head, from the trunk's weights; C5 and FPN
freeze the whole trunk). 2a compares trunks, as the paper does with its ImageNet-pretrained R50 and R101:
one trunk per depth, each the ResNet of a ``table2_trunk`` model trained the same way (ResNet-18: the
shared trunk; ResNet-34: a second one), then C4 and FPN heads on each with the schedule of every other row.
So R18-C4 is the 2c RoIAlign (avg) run and R18-FPN the 2e FCN run, trained once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

Stage = Literal["heads", "e2e"]
ClaimKind = Literal["greater", "approx"]

#: the preset each architecture's runs start from (``mrcnn_lite.config.presets``: the classroom presets
#: with 20 detections per image; C4 with 32 RoIs and 50 test proposals; FPN with the 1000/500 training
#: proposals ``classroom_fpn`` had when the committed table was made)
ARCH_PRESET = {"c4": "table2_c4", "c5": "table2_c5", "fpn": "table2_fpn"}
#: the preset of the shared trunks (``classroom_fpn`` as the committed table trained its trunks)
TRUNK_PRESET = "table2_trunk"

# Deprecated, kept importable: what the Table 2 presets hold beyond their classroom presets, as the
# override tuples the runs carried before those presets existed (notebook 08 prints them). The runs no
# longer carry them; new code names the presets above.
C4_OVERRIDES = ("model.roi_batch_size_per_image=32", "model.rpn_post_nms_top_n_test=50")
COMMON_OVERRIDES = ("model.detections_per_image=20",)
FPN_OVERRIDES = ("model.rpn_pre_nms_top_n_train=1000", "model.rpn_post_nms_top_n_train=500")


@dataclass(frozen=True)
class Run:
    """One trained model of the grid. ``key`` names its folder ``runs/table2/<preset>/<key>/seed<k>``."""

    key: str
    arch: Literal["c4", "c5", "fpn"]
    overrides: tuple[str, ...]
    stage: Stage
    what: str
    backbone: str = "resnet18"  # the ResNet, and so the shared trunk a "heads" run loads

    @property
    def preset(self) -> str:
        return ARCH_PRESET[self.arch]


@dataclass(frozen=True)
class Row:
    """One line of a sub-table: our ``label`` for run ``run``, beside the paper's row ``paper``."""

    table: str
    label: str
    run: str
    paper: str
    baseline: bool = False


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as ``Q = sum(plus) - sum(minus)`` over ``(run, metric)`` terms.

    ``kind="greater"``: the paper says Q > 0 (e.g. RoIAlign's mask AP minus RoIPool's). ``kind="approx"``:
    the paper says Q is about 0 (e.g. max vs average pooling). Metrics are ``mask_AP``, ``mask_AP75``,
    ``box_AP`` ...: the COCO stat name prefixed by the task."""

    key: str
    table: str
    text: str
    plus: tuple[tuple[str, str], ...]
    minus: tuple[tuple[str, str], ...]
    kind: ClaimKind = "greater"


@dataclass(frozen=True)
class GridPreset:
    """The schedules of one reproduction. ``None`` iterations keep the model preset's own schedule."""

    name: str
    shared_trunk: bool
    trunk_iters: int | None
    heads_iters: int | None
    e2e_iters: int | None
    seeds: int
    max_val_images: int | None
    jobs: int
    description: str


def _run(key: str, arch: str, stage: Stage, what: str, *overrides: str, backbone: str = "resnet18") -> Run:
    depth = () if backbone == "resnet18" else (f"model.backbone={backbone}",)
    return Run(key, arch, (*depth, *overrides), stage, what, backbone)  # type: ignore[arg-type]


POOL = ("model.roi_op=roi_pool", "model.roi_mode=max")
WARP = ("model.roi_op=roi_warp",)
ALIGN = ("model.roi_op=roi_align",)

#: every run, in the fixed order the runner trains them (cheap and decisive ones first)
RUNS: tuple[Run, ...] = (
    _run("c4_roialign_avg", "c4", "heads", "C4, RoIAlign (bilinear, average), sigmoid, class-specific"),
    _run("c4_roipool", "c4", "heads", "C4, RoIPool (quantized, max)", *POOL),
    _run(
        "c4_roiwarp_max", "c4", "heads", "C4, RoIWarp (quantized, bilinear, max)", *WARP, "model.roi_mode=max"
    ),
    _run(
        "c4_roiwarp_avg",
        "c4",
        "heads",
        "C4, RoIWarp (quantized, bilinear, average)",
        *WARP,
        "model.roi_mode=avg",
    ),
    _run("c4_roialign_max", "c4", "heads", "C4, RoIAlign (bilinear, max)", *ALIGN, "model.roi_mode=max"),
    _run(
        "c4_softmax", "c4", "heads", "C4, softmax over classes (multinomial masks)", "model.mask_loss=softmax"
    ),
    _run("c4_agnostic", "c4", "heads", "C4, one class-agnostic mask", "model.class_agnostic_masks=true"),
    _run("c5_roipool", "c5", "heads", "C5 (stride 32), RoIPool", *POOL),
    _run("c5_roialign", "c5", "heads", "C5 (stride 32), RoIAlign", *ALIGN),
    _run("fpn_fcn", "fpn", "heads", "FPN, FCN mask head (the default)"),
    _run("fpn_mlp1", "fpn", "heads", "FPN, MLP mask head fc-fc-K*m*m", "model.mask_head=mlp1"),
    _run("fpn_mlp2", "fpn", "heads", "FPN, MLP mask head fc-fc-fc-K*m*m", "model.mask_head=mlp2"),
    _run("fpn_faster", "fpn", "heads", "FPN, Faster R-CNN: no mask branch", "model.with_mask=false"),
    _run("a_r34_c4", "c4", "heads", "ResNet-34-C4 on the ResNet-34 trunk", backbone="resnet34"),
    _run("a_r34_fpn", "fpn", "heads", "ResNet-34-FPN on the ResNet-34 trunk", backbone="resnet34"),
)
RUN_BY_KEY = {r.key: r for r in RUNS}

#: the sub-tables in display order, with their rows (the first-listed baseline is what deltas subtract)
ROWS: tuple[Row, ...] = (
    Row("2a", "R18-C4", "c4_roialign_avg", "ResNet-50-C4", baseline=True),
    Row("2a", "R34-C4", "a_r34_c4", "ResNet-101-C4"),
    Row("2a", "R18-FPN", "fpn_fcn", "ResNet-50-FPN"),
    Row("2a", "R34-FPN", "a_r34_fpn", "ResNet-101-FPN"),
    Row("2b", "softmax", "c4_softmax", "softmax", baseline=True),
    Row("2b", "sigmoid", "c4_roialign_avg", "sigmoid"),
    Row("2c", "RoIPool (max)", "c4_roipool", "RoIPool (max)", baseline=True),
    Row("2c", "RoIWarp (bilinear, max)", "c4_roiwarp_max", "RoIWarp (bilinear, max)"),
    Row("2c", "RoIWarp (bilinear, avg)", "c4_roiwarp_avg", "RoIWarp (bilinear, ave)"),
    Row("2c", "RoIAlign (bilinear, max)", "c4_roialign_max", "RoIAlign (align, bilinear, max)"),
    Row("2c", "RoIAlign (bilinear, avg)", "c4_roialign_avg", "RoIAlign (align, bilinear, ave)"),
    Row("2d", "RoIPool", "c5_roipool", "RoIPool", baseline=True),
    Row("2d", "RoIAlign", "c5_roialign", "RoIAlign"),
    Row("2e", "MLP fc-fc-K*28*28", "fpn_mlp1", "MLP fc: 1024-1024-80x28x28", baseline=True),
    Row("2e", "MLP fc-fc-fc-K*28*28", "fpn_mlp2", "MLP fc: 1024-1024-1024-80x28x28"),
    Row("2e", "FCN conv-conv-deconv-K", "fpn_fcn", "FCN conv: 256-256-256-256-256-80"),
    Row("agnostic", "class-specific", "c4_roialign_avg", "class-specific", baseline=True),
    Row("agnostic", "class-agnostic", "c4_agnostic", "class-agnostic"),
    Row("3", "Faster R-CNN, RoIAlign", "fpn_faster", "Faster R-CNN, RoIAlign", baseline=True),
    Row("3", "Mask R-CNN", "fpn_fcn", "Mask R-CNN"),
)
TABLES: tuple[str, ...] = tuple(dict.fromkeys(r.table for r in ROWS))


def _gt(key: str, table: str, text: str, a: str, b: str, metric: str = "mask_AP") -> Claim:
    return Claim(key, table, text, ((a, metric),), ((b, metric),), "greater")


def _approx(key: str, table: str, text: str, a: str, b: str, metric: str = "mask_AP") -> Claim:
    return Claim(key, table, text, ((a, metric),), ((b, metric),), "approx")


#: the qualitative claims of Table 2 and Table 3 that the reproduction checks, in display order
CLAIMS: tuple[Claim, ...] = (
    _gt("align_gt_pool", "2c", "RoIAlign beats RoIPool (stride 16)", "c4_roialign_avg", "c4_roipool"),
    _gt("align_gt_warp", "2c", "RoIAlign beats RoIWarp", "c4_roialign_avg", "c4_roiwarp_avg"),
    Claim(
        "align_gain_ap75",
        "2c",
        "RoIAlign's gain over RoIPool is larger at AP75 than at AP50",
        (("c4_roialign_avg", "mask_AP75"), ("c4_roipool", "mask_AP50")),
        (("c4_roipool", "mask_AP75"), ("c4_roialign_avg", "mask_AP50")),
    ),  # fmt: skip
    _approx("warp_approx_pool", "2c", "RoIWarp is about RoIPool", "c4_roiwarp_max", "c4_roipool"),
    _approx(
        "align_max_approx_avg", "2c", "max is about average (RoIAlign)", "c4_roialign_max", "c4_roialign_avg"
    ),
    _approx(
        "warp_max_approx_avg", "2c", "max is about average (RoIWarp)", "c4_roiwarp_max", "c4_roiwarp_avg"
    ),
    _gt(
        "align_gt_pool_c5", "2d", "RoIAlign beats RoIPool at stride 32 (mask AP)", "c5_roialign", "c5_roipool"
    ),
    _gt(
        "align_gt_pool_c5_box",
        "2d",
        "RoIAlign beats RoIPool at stride 32 (box AP)",
        "c5_roialign",
        "c5_roipool",
        "box_AP",
    ),
    Claim(
        "stride32_gap",
        "2d",
        "RoIAlign's gain over RoIPool is larger at stride 32 than at stride 16 (2c)",
        (("c5_roialign", "mask_AP"), ("c4_roipool", "mask_AP")),
        (("c5_roipool", "mask_AP"), ("c4_roialign_avg", "mask_AP")),
    ),  # fmt: skip
    _gt(
        "sigmoid_gt_softmax",
        "2b",
        "sigmoid (independent) masks beat softmax (multinomial)",
        "c4_roialign_avg",
        "c4_softmax",
    ),
    _gt("fcn_gt_mlp1", "2e", "the FCN mask head beats the MLP (fc-fc)", "fpn_fcn", "fpn_mlp1"),
    _gt("fcn_gt_mlp2", "2e", "the FCN mask head beats the MLP (fc-fc-fc)", "fpn_fcn", "fpn_mlp2"),
    _approx(
        "agnostic_approx_specific",
        "agnostic",
        "class-agnostic masks are about as good as class-specific",
        "c4_agnostic",
        "c4_roialign_avg",
    ),
    _gt(
        "deeper_c4",
        "2a",
        "deeper helps: R34-C4 beats R18-C4 (paper: R101 vs R50)",
        "a_r34_c4",
        "c4_roialign_avg",
    ),
    _gt("deeper_fpn", "2a", "deeper helps: R34-FPN beats R18-FPN", "a_r34_fpn", "fpn_fcn"),
    _gt("fpn_gt_c4_r18", "2a", "FPN helps: R18-FPN beats R18-C4", "fpn_fcn", "c4_roialign_avg"),
    _gt("fpn_gt_c4_r34", "2a", "FPN helps: R34-FPN beats R34-C4", "a_r34_fpn", "a_r34_c4"),
    _gt(
        "multitask_box",
        "3",
        "the mask branch improves box AP (Mask R-CNN vs Faster R-CNN)",
        "fpn_fcn",
        "fpn_faster",
        "box_AP",
    ),
)

GRID_PRESETS: dict[str, GridPreset] = {
    p.name: p
    for p in (
        GridPreset(
            "cpu", shared_trunk=True, trunk_iters=None, heads_iters=500, e2e_iters=500, seeds=3,
            max_val_images=None, jobs=2,
            description="2 CPU cores: a shared ResNet-18 trunk (classroom_fpn's 3000 iterations; 2a adds a "
            "ResNet-34 one trained the same way), then 500 iterations per run of what the run changes "
            "(C4: res5 and the heads; C5, FPN: the heads); two runs at a time, one core each",
        ),
        GridPreset(
            "e2e", shared_trunk=False, trunk_iters=None, heads_iters=None, e2e_iters=None, seeds=3,
            max_val_images=None, jobs=1,
            description="every run end to end from scratch with its classroom preset's schedule (3000 "
            "iterations): the grid for a GPU",
        ),
        GridPreset(
            "smoke", shared_trunk=True, trunk_iters=4, heads_iters=4, e2e_iters=4, seeds=1, max_val_images=8,
            jobs=1,
            description="CI: a few iterations and 8 val images, to check the reproduction path end to end",
        ),
    )
}  # fmt: skip


def select(tables: list[str] | None = None) -> tuple[list[Row], list[Run]]:
    """The rows of the chosen sub-tables (``["2c", "d"]``: "2" may be omitted; None = all) and the runs they
    need, in ``RUNS`` order. Raises ``ValueError`` naming an unknown table."""
    if not tables:
        chosen = list(TABLES)
    else:
        names = {t.lower(): t for t in TABLES} | {t[1:].lower(): t for t in TABLES if t.startswith("2")}
        names |= {"t3": "3", "table3": "3"}
        unknown = [t for t in tables if t.strip().lower() not in names]
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; valid: {', '.join(TABLES)} (or a..e)")
        chosen = [names[t.strip().lower()] for t in tables]
    rows = [r for r in ROWS if r.table in chosen]
    needed = {r.run for r in rows}
    return rows, [r for r in RUNS if r.key in needed]


def run_overrides(run: Run, grid: GridPreset, trunk_path: str | Path | None) -> tuple[list[str], int | None]:
    """The config overrides and iteration count of ``run`` under ``grid``: the run's own overrides, plus
    the shared trunk (loaded, frozen) for "heads" runs when the grid shares one."""
    overrides = list(run.overrides)
    if run.stage == "heads" and grid.shared_trunk:
        if trunk_path is None:
            raise ValueError(f"run {run.key!r} needs the shared trunk, but no trunk path was given")
        freeze_at = 4 if run.arch == "c4" else 5  # C4's res5 is its box head and trains
        overrides += [f"model.weights_path={trunk_path}", f"model.freeze_at={freeze_at}"]
        return overrides, grid.heads_iters
    return overrides, grid.e2e_iters


@cache
def paper_numbers() -> dict:
    """The paper's numbers (``paper_table2.json``, cited table by table)."""
    return json.loads((Path(__file__).with_name("paper_table2.json")).read_text())


def paper_value(table: str, paper_row: str, metric: str) -> float | None:
    """The paper's AP (in percent) for ``metric`` (``mask_AP``, ``mask_AP50``, ``mask_AP75``, ``box_AP`` ...)
    in ``table``'s row ``paper_row``; None where the paper gives none."""
    task, stat = metric.split("_", 1)
    entry = paper_numbers()["tables"][table]["rows"][paper_row].get(task)
    index = {"AP": 0, "AP50": 1, "AP75": 2}.get(stat)
    return None if entry is None or index is None else entry[index]
