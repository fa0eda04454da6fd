"""Issue #20's per-claim table: each claim of the paper judged at several points of the schedule, with the
statistics a reviewer asks for.

Per claim: the paired Δ (its Q, seed by seed) at the last schedule point with its 95% t interval, the raw
two-sided p, the Holm-adjusted p within the family of directional claims tested at that point, the TOST p
and margin of an "≈" claim, the verdict at each point (:func:`.verdicts.point_verdict`) and the final
verdict, which counts only when the last two points agree (:func:`.verdicts.settle`).

Input: ``schedule``, schedule point (e.g. the iteration) -> run -> seed -> that point's metrics in the
``metrics.json`` format (``{"segm": {"AP": ...}, "bbox": {...}}``, fractions); :func:`schedule_from_runs`
builds it from runs that list their evaluations along training. Not yet part of :func:`.report.build`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mrcnn_lite.ablations.grid import CLAIMS, Claim
from mrcnn_lite.ablations.run_metrics import Runs, metric_value, per_seed
from mrcnn_lite.ablations.stats import PairedDifference, holm, one_sample, tost
from mrcnn_lite.ablations.verdicts import (
    ALPHA,
    FLOOR_AP,
    EquivalenceMargin,
    PointEvidence,
    is_directional,
    point_verdict,
    settle,
)
from mrcnn_lite.atomic import atomic_path

ScheduleRuns = dict[int, Runs]


@dataclass(frozen=True)
class ClaimRow:
    """One claim's line of the table. ``delta``, ``p_holm``, ``tost_p`` and ``margin`` are at the last
    schedule point; ``p_holm`` is NaN for "≈" claims, ``tost_p`` and ``margin`` for directional ones."""

    key: str
    table: str
    text: str
    kind: str
    family: str
    delta: PairedDifference
    p_holm: float
    tost_p: float
    margin: float
    verdicts: dict[int, str]
    final: str


def schedule_from_runs(runs: Runs, key: str = "schedule", point: str = "iteration") -> ScheduleRuns:
    """Point -> run -> seed -> metrics, from runs whose record lists its evaluations along training as
    ``record[key] = [{point: 250, "segm": {...}, "bbox": {...}}, ...]``."""
    out: ScheduleRuns = {}
    for run, seeds in runs.items():
        for seed, record in seeds.items():
            for entry in record.get(key) or []:
                out.setdefault(int(entry[point]), {}).setdefault(run, {})[seed] = entry
    return dict(sorted(out.items()))


def claim_evidence(runs: Runs, claim: Claim) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The claim's Q per seed (over the seeds every run involved has) and the mean AP of each (run, metric)
    term over those seeds, at one schedule point."""
    q = per_seed(runs, claim.plus, claim.minus)
    terms = dict.fromkeys((*claim.plus, *claim.minus))
    row_aps = []
    for run, metric in terms:
        values = [metric_value(runs[run][seed], metric) for seed in q]
        row_aps.append(math.fsum(values) / len(values) if values else math.nan)  # type: ignore[arg-type]
    return tuple(q.values()), tuple(row_aps)


def _judge_point(
    runs: Runs, claims: Sequence[Claim], floor: float, margin: EquivalenceMargin, alpha: float
) -> tuple[list[str], list[PointEvidence], int]:
    """Every claim's verdict and evidence at one point, with Holm over the directional claims tested
    there (those with two seeds or more); returns the family's size too."""
    raw = [claim_evidence(runs, c) for c in claims]
    tested = [i for i, c in enumerate(claims) if is_directional(c.kind) and len(raw[i][0]) >= 2]
    adjusted = holm([one_sample(raw[i][0]).p_two_sided for i in tested], alpha).adjusted
    p_holm = dict(zip(tested, adjusted, strict=True))
    evidence = [PointEvidence(d, aps, p_holm.get(i, math.nan)) for i, (d, aps) in enumerate(raw)]
    verdicts = [point_verdict(c.kind, e, floor, margin, alpha) for c, e in zip(claims, evidence, strict=True)]
    return verdicts, evidence, len(tested)


def claim_table(
    schedule: ScheduleRuns,
    claims: Sequence[Claim] = CLAIMS,
    floor: float = FLOOR_AP,
    margin: EquivalenceMargin = EquivalenceMargin(),  # noqa: B008 - frozen, so a shared default is safe
    alpha: float = ALPHA,
) -> list[ClaimRow]:
    """One :class:`ClaimRow` per claim from the runs at each schedule point (points in increasing order).

    Family of the Holm correction: the directional claims tested at a point; "≈" claims are each tested
    by TOST with ``margin`` (:class:`.verdicts.EquivalenceMargin`); rows below ``floor`` AP are at the
    floor."""
    points = sorted(schedule)
    if not points:
        raise ValueError("claim_table needs at least one schedule point")
    judged = {p: _judge_point(schedule[p], claims, floor, margin, alpha) for p in points}
    last_verdicts, last_evidence, family_size = judged[points[-1]]
    rows = []
    for i, c in enumerate(claims):
        ev = last_evidence[i]
        each = {p: judged[p][0][i] for p in points}
        if is_directional(c.kind):
            family, tost_p, m = f"directional (Holm, m = {family_size})", math.nan, math.nan
        else:
            m = margin(ev.row_aps)
            tost_p = tost(ev.deltas, m, alpha).p if ev.deltas else math.nan
            family = f"equivalence (TOST ±{m:.1f} AP)"
        delta, final = one_sample(ev.deltas), settle(list(each.values()))
        rows.append(
            ClaimRow(c.key, c.table, c.text, c.kind, family, delta, ev.p_holm, tost_p, m, each, final)
        )
    return rows


def _signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:+.1f}"


def _p(x: float) -> str:
    return "–" if math.isnan(x) else "<0.001" if x < 0.001 else f"{x:.3f}"


def claim_table_markdown(rows: Sequence[ClaimRow]) -> str:
    """The table as Markdown: Δ and its 95% CI in AP points, p-values to 3 decimals, a verdict per point."""
    points = list(rows[0].verdicts) if rows else []
    head = ["claim", "family", "n", "Δ mean", "95% CI", "p", "p (Holm)", "TOST p (margin)"]
    head += [f"verdict @ {p}" for p in points] + ["final verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        d = r.delta
        ci = "–" if math.isnan(d.ci_low) else f"[{_signed(d.ci_low)}, {_signed(d.ci_high)}]"
        tost_cell = "–" if math.isnan(r.margin) else f"{_p(r.tost_p)} (±{r.margin:.1f})"
        cells = [f"**{r.table}** " + ("" if is_directional(r.kind) else "≈ ") + r.text, r.family, str(d.n)]
        cells += [_signed(d.mean), ci, _p(d.p_two_sided), _p(r.p_holm), tost_cell]
        cells += [r.verdicts[p] for p in points] + [r.final]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _num(x: float, digits: int) -> str:
    return "" if math.isnan(x) else f"{x:.{digits}g}"


def write_claim_table_csv(rows: Sequence[ClaimRow], path: Path) -> Path:
    """The table as CSV: Δ and CI to 4 decimals, p-values to 4 significant digits (blank where undefined),
    one ``verdict_<point>`` column per schedule point."""
    points = list(rows[0].verdicts) if rows else []
    header = ["table", "claim", "text", "kind", "family", "n_seeds", "delta_mean", "ci95_low", "ci95_high"]
    header += ["p_raw", "p_holm", "tost_p", "margin"] + [f"verdict_{p}" for p in points] + ["final_verdict"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            d = r.delta
            stats = [round(x, 4) if not math.isnan(x) else "" for x in (d.mean, d.ci_low, d.ci_high)]
            ps = [_num(x, 4) for x in (d.p_two_sided, r.p_holm, r.tost_p, r.margin)]
            w.writerow(
                [r.table, r.key, r.text, r.kind, r.family, d.n, *stats, *ps, *r.verdicts.values(), r.final]
            )
    return Path(path)
