"""The Table 2 report (mrcnn_lite.ablations.report) on a hand-written runs tree with known numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from mrcnn_lite.ablations.claims import (
    claim_table,
    claim_table_markdown,
    schedule_from_runs,
    write_claim_table_csv,
)
from mrcnn_lite.ablations.grid import Claim
from mrcnn_lite.ablations.report import (
    Stat,
    assemble,
    build,
    load_failures,
    load_runs,
    metric_value,
    paired,
    per_seed,
    verdict,
)

# mask AP (fractions, as pycocotools writes them) per run and seed; AP50 / AP75 are derived below
MASK = {
    "c4_roipool": [0.30, 0.32, 0.31],
    "c4_roialign_avg": [0.40, 0.41, 0.45, 0.90],  # seed 3 exists only here: never paired
    "c4_roiwarp_avg": [0.50, 0.52, 0.51],
    "c4_roiwarp_max": [0.31, 0.31, 0.34],
    "c4_roialign_max": [0.405, 0.415, 0.455],
    "c4_softmax": [0.39, 0.42, 0.41],
    "c5_roialign": [0.30, 0.32, 0.50],
    "c5_roipool": [0.20, 0.21],  # seed 2 missing
    "fpn_fcn": [0.33, 0.34, 0.35],
    "fpn_mlp1": [0.34, 0.33, 0.37],
}
BOX = {"c5_roialign": [0.40, 0.42, 0.44], "c5_roipool": [0.38, 0.41], "fpn_fcn": [0.36, 0.38, 0.37]}


def _stats(ap: float) -> dict:
    return {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.02, "APs": -1.0, "AR1": 0.5}


def write_metrics(root: Path, run: str, seed: int, segm: float | None, bbox: float, **extra) -> None:
    folder = root / run / f"seed{seed}"
    folder.mkdir(parents=True)
    metrics = {
        "run": run,
        "seed": seed,
        "grid_preset": "cpu",
        "train_seconds": 100.0,
        "eval_seconds": 20.0,
        "git_commit": "abc123",
        "iterations": 1000,
        "bbox": _stats(bbox),
        "segm": None if segm is None else _stats(segm),
    } | extra
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for run, aps in MASK.items():
        for seed, ap in enumerate(aps):
            write_metrics(root, run, seed, ap, BOX.get(run, [0.5] * 4)[seed])
    for seed, ap in enumerate([0.35, 0.36, 0.37]):  # Faster R-CNN: no mask branch
        write_metrics(root, "fpn_faster", seed, None, ap, git_commit="def456")
    failed = root / "a_r34_c4" / "seed0"
    failed.mkdir(parents=True)
    error = {"run": "a_r34_c4", "seed": 0, "error": "CUDA out of memory\nTraceback (most recent call last)"}
    (failed / "error.json").write_text(json.dumps(error))
    # a retried run: the stale error.json beside a metrics.json is no failure
    write_metrics(root, "a_r18_fpn", 0, 0.2, 0.25)
    (root / "a_r18_fpn" / "seed0" / "error.json").write_text(json.dumps({"error": "old"}))
    return root


@pytest.fixture
def report(runs_root: Path):
    return assemble(runs_root)


def row(report, table: str, label: str):
    return next(r for r in report.rows if r.table == table and r.label == label)


def claim(report, key: str):
    return next(c for c in report.claims if c.key == key)


def test_metric_value_reads_percent_and_missing_tasks() -> None:
    metrics = {"bbox": {"AP": 0.41, "AP50": 0.6, "APs": -1.0}, "segm": None}
    assert metric_value(metrics, "box_AP") == pytest.approx(41.0)
    assert metric_value(metrics, "box_AP50") == pytest.approx(60.0)
    assert metric_value(metrics, "box_AP75") is None  # stat missing
    assert metric_value(metrics, "box_APs") is None  # pycocotools' -1: no objects of that size
    assert metric_value(metrics, "mask_AP") is None  # segm null (Faster R-CNN)


def test_load_runs_and_failures(runs_root: Path) -> None:
    runs = load_runs(runs_root)
    assert sorted(runs["c4_roialign_avg"]) == [0, 1, 2, 3]
    assert sorted(runs["c5_roipool"]) == [0, 1]
    assert "a_r34_c4" not in runs
    failures = load_failures(runs_root)
    assert [(f["run"], f["seed"]) for f in failures] == [("a_r34_c4", 0)]  # a_r18_fpn's stale error ignored


def test_paired_statistics_by_hand() -> None:
    s = paired({0: 10.0, 1: 9.0, 2: 14.0})  # mean 11; deviations -1, -2, 3: variance 14 / 2 = 7
    assert (s.mean, s.std, s.se, s.n) == pytest.approx((11.0, math.sqrt(7), math.sqrt(7 / 3), 3))
    assert s.beyond_noise  # 11 > 4.303 * 1.528 = 6.57


def test_t_test_uses_students_t_not_the_normal() -> None:
    # 3 seeds, std 1, se 1/sqrt(3) = 0.5774: the threshold is t(0.975, 2) = 4.303 -> 4.303 * 0.5774 = 2.484
    assert not paired({0: 1.4, 1: 2.4, 2: 3.4}).beyond_noise  # mean 2.4 < 2.484 (1.96 would call it)
    assert paired({0: 1.6, 1: 2.6, 2: 3.6}).beyond_noise  # mean 2.6 > 2.484
    # 2 seeds: t(0.975, 1) = 12.706; mean 2, se 1 -> within noise (it would pass with 4.303)
    assert not paired({0: 1.0, 1: 3.0}).beyond_noise
    one = paired({0: 5.0})
    assert one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.se) and not one.beyond_noise
    assert paired({}).n == 0 and not paired({}).beyond_noise


def test_per_seed_keeps_exact_ties_exact() -> None:
    # 100 * (0.1 + 0.2) = 30.000000000000004: without care, equal APs differ by the same 4e-15 on every seed,
    # std 0, and the t-test would call that dust "beyond noise"
    runs = {
        "x": {s: {"segm": {"AP": 0.1 + 0.2}} for s in range(3)},
        "y": {s: {"segm": {"AP": 0.3}} for s in range(3)},
    }
    q = per_seed(runs, (("x", "mask_AP"),), (("y", "mask_AP"),))
    assert q == {0: 0.0, 1: 0.0, 2: 0.0}
    assert verdict("greater", paired(q)) == "opposite, within noise"


def test_verdict_strings() -> None:
    def stat(mean: float, beyond: bool) -> Stat:
        return Stat(mean, 1.0, 0.5, 3, beyond)

    assert verdict("greater", stat(2.0, True)) == "holds"
    assert verdict("greater", stat(2.0, False)) == "same direction, within noise"
    assert verdict("greater", stat(-2.0, False)) == "opposite, within noise"
    assert verdict("greater", stat(-2.0, True)) == "contradicted"
    assert verdict("approx", stat(0.9, True)) == "holds"  # |Q| < 1 AP point, even if "significant"
    assert verdict("approx", stat(-1.5, True)) == "differs"
    assert verdict("approx", stat(1.5, False)) == "unclear (noisy)"
    assert verdict("greater", paired({})) == "not run"


def test_row_mean_and_std_in_percent(report) -> None:
    pool = row(report, "2c", "RoIPool (max)")
    assert pool.baseline and pool.n == 3 and pool.note == ""
    assert pool.ours["mask_AP"].mean == pytest.approx(31.0)
    assert pool.ours["mask_AP"].std == pytest.approx(1.0)
    assert pool.ours["mask_AP50"].mean == pytest.approx(51.0)
    assert pool.paper["mask_AP"] == 26.9 and pool.paper["mask_AP75"] == 26.4 and pool.paper["box_AP"] is None
    assert pool.deltas[0].ours is None and pool.deltas[0].direction_agrees is None  # the baseline
    align = row(report, "2c", "RoIAlign (bilinear, avg)")
    assert align.n == 4 and align.ours["mask_AP"].mean == pytest.approx((40 + 41 + 45 + 90) / 4)


def test_row_delta_paired_over_common_seeds(report) -> None:
    (d,) = row(report, "2c", "RoIAlign (bilinear, avg)").deltas
    assert d.metric == "mask_AP"
    assert d.paper == pytest.approx(30.3 - 26.9)  # 3.4
    # seeds 0-2 only (seed 3 has no RoIPool run): deltas 10, 9, 14
    assert (d.ours.mean, d.ours.se, d.ours.n) == pytest.approx((11.0, math.sqrt(7 / 3), 3))
    assert d.direction_agrees is True and d.ours.beyond_noise
    (w,) = row(report, "2c", "RoIWarp (bilinear, max)").deltas  # deltas 1, -1, 3: mean 1, se 2/sqrt(3)
    assert w.paper == pytest.approx(0.3)
    assert (w.ours.mean, w.ours.se) == pytest.approx((1.0, 2 / math.sqrt(3)))
    assert w.direction_agrees is True and not w.ours.beyond_noise  # 1 < 4.303 * 1.155


def test_2d_reports_mask_and_box_with_a_missing_seed(report) -> None:
    r = row(report, "2d", "RoIAlign")
    assert r.n == 3
    mask, box = r.deltas
    assert (mask.metric, box.metric) == ("mask_AP", "box_AP")
    assert (mask.paper, box.paper) == pytest.approx((30.9 - 23.6, 34.0 - 28.2))
    # C5 RoIPool has seeds 0, 1 only: mask deltas 10, 11 (se 0.5, t(1) = 12.706: 10.5 > 6.35)
    assert (mask.ours.mean, mask.ours.se, mask.ours.n) == pytest.approx((10.5, 0.5, 2))
    assert mask.ours.beyond_noise
    # box deltas 2, 1: mean 1.5, se 0.5 -> 1.5 < 12.706 * 0.5
    assert (box.ours.mean, box.ours.n) == pytest.approx((1.5, 2)) and not box.ours.beyond_noise


def test_faster_rcnn_without_masks(report) -> None:
    faster = row(report, "3", "Faster R-CNN, RoIAlign")
    assert (
        faster.n == 3 and faster.ours["mask_AP"].n == 0 and faster.ours["box_AP"].mean == pytest.approx(36.0)
    )
    (d,) = row(report, "3", "Mask R-CNN").deltas  # box deltas 1, 2, 0
    assert d.metric == "box_AP" and d.paper == pytest.approx(38.2 - 37.3)
    assert (d.ours.mean, d.ours.std) == pytest.approx((1.0, 1.0))
    assert d.direction_agrees is True
    assert claim(report, "multitask_box").verdict == "same direction, within noise"


def test_missing_and_failed_runs_are_listed(report) -> None:
    assert row(report, "2a", "R34-FPN").note == "not run"
    assert row(report, "2a", "R18-C4").n == 4  # the 2c RoIAlign (avg) run, shown in 2a too
    failed = row(report, "2a", "R34-C4")
    assert failed.note == "failed: CUDA out of memory" and failed.n == 0
    assert failed.deltas[0].ours.n == 0 and failed.deltas[0].direction_agrees is None
    assert row(report, "agnostic", "class-agnostic").note == "not run"
    assert claim(report, "deeper_c4").verdict == "not run"
    assert claim(report, "agnostic_approx_specific").verdict == "not run"


def test_claims_paper_q_by_hand(report) -> None:
    # (C5 RoIAlign - C5 RoIPool) - (C4 RoIAlign - C4 RoIPool) = (30.9 - 23.6) - (30.3 - 26.9)
    assert claim(report, "stride32_gap").paper_q == pytest.approx(3.9)
    # (AP75 gain) - (AP50 gain) = (31.5 - 26.4) - (51.2 - 48.8)
    assert claim(report, "align_gain_ap75").paper_q == pytest.approx(2.7)
    assert claim(report, "warp_approx_pool").paper_q == pytest.approx(0.3)
    assert claim(report, "multitask_box").paper_q == pytest.approx(0.9)


def test_claim_verdicts(report) -> None:
    assert claim(report, "align_gt_pool").verdict == "holds"  # 10, 9, 14
    assert claim(report, "align_gt_warp").verdict == "contradicted"  # -10, -11, -6: 9 > 4.303 * 1.528
    assert claim(report, "sigmoid_gt_softmax").verdict == "same direction, within noise"  # 1, -1, 4
    assert claim(report, "fcn_gt_mlp1").verdict == "opposite, within noise"  # -1, 1, -2
    assert claim(report, "align_max_approx_avg").verdict == "holds"  # 0.5 each
    assert claim(report, "warp_approx_pool").verdict == "unclear (noisy)"  # 1, -1, 3: |1| >= 1, noisy
    assert claim(report, "warp_max_approx_avg").verdict == "differs"  # -19, -21, -17
    gap = claim(report, "stride32_gap")  # seeds 0, 1: (10 - 10), (11 - 9)
    assert (gap.ours.mean, gap.ours.n) == pytest.approx((1.0, 2))
    # AP75 = AP - 2 and AP50 = AP + 20 points for every run: Q is exactly 0, and float dust must not make it
    # "significant" (a near-zero se would turn 1e-14 into "beyond noise")
    tie = claim(report, "align_gain_ap75")
    assert tie.ours.mean == 0.0 and not tie.ours.beyond_noise and tie.verdict == "opposite, within noise"


def test_build_writes_markdown_csv_and_figure(runs_root: Path, tmp_path: Path) -> None:
    results, figures = tmp_path / "results", tmp_path / "figures"
    build(runs_root, results, figures, header={"grid": "cpu", "date": "2025-01-01", "trunk": "r18 trunk"})
    assert sorted(p.name for p in results.iterdir()) == ["table2.csv", "table2.md", "table2_claims.csv"]
    md = (results / "table2.md").read_text()
    assert "| RoIPool (max) (baseline) | RoIPool (max) | 3 | 31.0 ± 1.0 |" in md
    assert "abc123, def456" in md and "2025-01-01" in md and "r18 trunk" in md
    assert "failed: CUDA out of memory" in md and "Table 2(c) RoIAlign (ResNet-50-C4)" in md
    assert "| +3.4 | +11.0 ± 1.5 | yes | yes |" in md
    assert "larger at stride 32 than at stride 16 (2c) | +3.9 | +1.0 ± 1.0 (2) | same direction" in md
    with open(results / "table2.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pool = next(r for r in rows if r["run"] == "c4_roipool")
    assert (pool["mask_AP_mean"], pool["mask_AP_std"], pool["n_seeds"]) == ("31.0", "1.0", "3")
    assert pool["paper_mask_AP"] == "26.9" and pool["our_delta"] == ""
    align = next(r for r in rows if r["table"] == "2c" and r["run"] == "c4_roialign_avg")
    assert float(align["our_delta"]) == pytest.approx(11.0) and float(align["paper_delta"]) == 3.4
    assert float(align["our_delta_se"]) == pytest.approx(math.sqrt(7 / 3), abs=1e-4)
    assert align["beyond_noise"] == "True"
    assert [r["primary_metric"] for r in rows if r["run"] == "c5_roialign"] == ["mask_AP", "box_AP"]
    with open(results / "table2_claims.csv", newline="") as f:
        claims = {c["claim"]: c for c in csv.DictReader(f)}
    assert float(claims["stride32_gap"]["paper_Q"]) == pytest.approx(3.9)
    assert claims["align_gt_warp"]["verdict"] == "contradicted"
    png = (figures / "table2.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_build_with_a_row_subset_and_the_runners_header(runs_root: Path, tmp_path: Path) -> None:
    from mrcnn_lite.ablations.grid import GRID_PRESETS, select

    rows, _ = select(["2c"])
    header = {"grid": GRID_PRESETS["smoke"], "seeds": 1, "trunk": {"path": "trunk.pth", "sha256": "f00"}}
    report = build(runs_root, tmp_path, tmp_path, name="t", header=header | {"log": None}, rows=rows)
    assert {r.table for r in report.rows} == {"2c"}
    md = (tmp_path / "t.md").read_text()
    assert (
        "grid preset: **smoke**: CI: a few iterations" in md
        and "shared trunk: path trunk.pth, sha256 f00" in md
    )
    assert "Table 2(b)" not in md and "- log:" not in md


# ------------------------------------------------------------------- issue #20's per-claim table
def _claim(key: str, a: str, b: str, kind: str = "greater") -> Claim:
    return Claim(key, "t", f"{a} vs {b}", ((a, "mask_AP"),), ((b, "mask_AP"),), kind)  # type: ignore[arg-type]


#: mask AP in percent per seed at two schedule points; the claims below are x > y, z > y, f1 > f2 (at the
#: floor), w ≈ x and u ≈ y
SCHEDULE_AP = {
    100: {"y": [10, 10, 10], "x": [12, 12.1, 11.9], "z": [20, 19, 24], "f1": [3, 4, 3.5], "f2": [1, 1.5, 1.2],
          "w": [12.1, 12.0, 12.2], "u": [13, 8, 15]},
    200: {"y": [20, 21, 22], "x": [22, 22, 25], "z": [30, 30, 36], "f1": [3, 4, 3.5], "f2": [1, 1.5, 1.2],
          "w": [22.1, 21.9, 25.3], "u": [23, 19, 27]},
}  # fmt: skip
TABLE_CLAIMS = (
    _claim("x_gt_y", "x", "y"),
    _claim("z_gt_y", "z", "y"),
    _claim("floor", "f1", "f2"),
    _claim("w_approx_x", "w", "x", "approx"),
    _claim("u_approx_y", "u", "y", "approx"),
    _claim("missing", "x", "nowhere"),
)


def _schedule() -> dict:
    return {
        point: {run: {s: {"segm": {"AP": ap / 100}} for s, ap in enumerate(aps)} for run, aps in runs.items()}
        for point, runs in SCHEDULE_AP.items()
    }


def _p2(t: float) -> float:
    """Two-sided p of a t on 2 degrees of freedom, in closed form: 1 - |t| / sqrt(2 + t^2)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_claim_table_by_hand() -> None:
    rows = {r.key: r for r in claim_table(_schedule(), TABLE_CLAIMS)}
    # end point (200): x - y = 2, 1, 3 (mean 2, sd 1); z - y = 10, 9, 14 (mean 11, sd sqrt 7);
    # f1 - f2 = 2, 2.5, 2.3
    a, b, c = rows["x_gt_y"], rows["z_gt_y"], rows["floor"]
    assert a.delta.deltas == pytest.approx((2, 1, 3)) and a.delta.mean == pytest.approx(2)
    half = 4.302652729749462 / math.sqrt(3)
    assert (a.delta.ci_low, a.delta.ci_high) == pytest.approx((2 - half, 2 + half))
    p_a, p_b = _p2(2 * math.sqrt(3)), _p2(11 / math.sqrt(7 / 3))  # 0.0742, 0.0187
    sd_c = math.sqrt(((2 - 6.8 / 3) ** 2 + (2.5 - 6.8 / 3) ** 2 + (2.3 - 6.8 / 3) ** 2) / 2)
    p_c = _p2((6.8 / 3) / (sd_c / math.sqrt(3)))  # 0.0041
    assert (a.delta.p_two_sided, b.delta.p_two_sided, c.delta.p_two_sided) == pytest.approx((p_a, p_b, p_c))
    # Holm over the 3 directional claims with seeds ("missing" has none): p_c * 3, p_b * 2, then p_a
    assert (c.p_holm, b.p_holm, a.p_holm) == pytest.approx((3 * p_c, 2 * p_b, p_a))
    assert a.family == "directional (Holm, m = 3)" and math.isnan(a.tost_p) and math.isnan(a.margin)
    # x > y: beyond noise at 100 (2, 2.1, 1.9: p = 0.0008, Holm 0.0025), not at 200: not settled
    assert a.verdicts == {100: "holds", 200: "not beyond noise"} and a.final == "not settled at this schedule"
    assert b.verdicts == {100: "holds", 200: "holds"} and b.final == "holds"
    assert c.final == "inconclusive (both rows at the floor)" and c.p_holm < 0.05  # below 5 AP: no verdict
    # w ≈ x: 0.1, -0.1, 0.3 at rows of 23.1 and 23.0 AP: margin max(1, 10% of 23.05) = 2.305
    w = rows["w_approx_x"]
    assert w.margin == pytest.approx(2.305) and w.family == "equivalence (TOST ±2.3 AP)"
    assert w.tost_p == pytest.approx(_p2((0.1 - 2.305) / (0.2 / math.sqrt(3))) / 2)
    assert math.isnan(w.p_holm) and w.final == "equivalent"
    # u ≈ y: 3, -2, 5 at 200 (margin max(1, 10% of 22) = 2.2): far from shown
    u = rows["u_approx_y"]
    assert u.margin == pytest.approx(2.2) and u.tost_p > 0.4 and u.final == "not shown equivalent"
    assert rows["missing"].final == "not run" and rows["missing"].delta.n == 0


def test_claim_table_markdown_and_csv(tmp_path: Path) -> None:
    rows = claim_table(_schedule(), TABLE_CLAIMS)
    md = claim_table_markdown(rows)
    header = md.splitlines()[0]
    assert header == (
        "| claim | family | n | Δ mean | 95% CI | p | p (Holm) | TOST p (margin) "
        "| verdict @ 100 | verdict @ 200 | final verdict |"
    )
    assert "| **t** x vs y | directional (Holm, m = 3) | 3 | +2.0 | [-0.5, +4.5] | 0.074 | 0.074 | – |" in md
    assert (
        "| **t** ≈ w vs x | equivalence (TOST ±2.3 AP) | 3 | +0.1 | [-0.4, +0.6] | 0.478 | – | 0.001 (±2.3) |"
        in md
    )
    path = write_claim_table_csv(rows, tmp_path / "claims.csv")
    with open(path, newline="") as f:
        table = {r["claim"]: r for r in csv.DictReader(f)}
    assert table["x_gt_y"]["verdict_100"] == "holds" and table["x_gt_y"]["final_verdict"].startswith(
        "not settled"
    )
    assert float(table["x_gt_y"]["ci95_low"]) == pytest.approx(-0.4841, abs=1e-4)
    assert table["x_gt_y"]["tost_p"] == "" and table["missing"]["p_raw"] == ""
    assert float(table["floor"]["p_raw"]) == pytest.approx(rows[2].delta.p_two_sided, rel=1e-3)


def test_schedule_from_runs_reads_evaluations_along_training() -> None:
    runs = {
        "x": {
            0: {
                "schedule": [{"iteration": 250, "segm": {"AP": 0.1}}, {"iteration": 500, "segm": {"AP": 0.2}}]
            }
        },
        "y": {0: {"schedule": [{"iteration": 500, "segm": {"AP": 0.3}}]}, 1: {}},
    }
    sched = schedule_from_runs(runs)
    assert list(sched) == [250, 500] and set(sched[250]) == {"x"}
    assert sched[500]["y"][0]["segm"]["AP"] == 0.3 and sched[500]["x"][0]["segm"]["AP"] == 0.2


def test_every_name_of_the_report_module_before_its_split_still_imports() -> None:
    from mrcnn_lite.ablations import report

    names = """APPROX_TOL CLAIMS Claim ClaimResult Delta GRID_PRESETS GridPreset HOW_TO_READ METRICS PRIMARY
    ROWS Report Row RowResult Runs Stat TABLES T_CRIT Terms _cell _csv _md_row _mean_std _note _num
    _our_delta _paper_ap _paper_q _per_metric _seed_dirs _sign _yn assemble build load_failures load_runs
    metric_value paired paper_numbers paper_value per_seed plot t_crit verdict write_csv write_markdown"""
    assert [n for n in names.split() if not hasattr(report, n)] == []
