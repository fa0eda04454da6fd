"""The committed report's content: every table row (our AP beside the paper's, its Δ to the sub-table's
baseline) and every claim (its Q and verdict), read from a runs tree by :func:`assemble`.

Every quantity (a row's AP, a row minus its table's baseline, a claim's Q) is computed per seed over the
seeds that all the runs involved have (:func:`.run_metrics.per_seed`), then summarised by
:func:`.seed_summary.paired`. Everything is in percent AP, like the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mrcnn_lite.ablations.grid import CLAIMS, ROWS, Claim, Row, paper_value
from mrcnn_lite.ablations.run_metrics import Runs, load_failures, load_runs, per_seed
from mrcnn_lite.ablations.seed_summary import Stat, paired, verdict

METRICS = ("mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75")
PRIMARY = {"2d": ("mask_AP", "box_AP"), "3": ("box_AP",)}  # every other table: ("mask_AP",)


@dataclass
class Delta:
    """A row minus its table's baseline on one metric: the paper's and ours (None on the baseline row)."""

    metric: str
    paper: float | None = None
    ours: Stat | None = None
    direction_agrees: bool | None = None


@dataclass
class RowResult:
    """One line of a sub-table: our AP over seeds, the paper's, and the Δ to the table's baseline."""

    table: str
    label: str
    run: str
    paper_setting: str
    baseline: bool
    n: int
    ours: dict[str, Stat]  # metric -> mean/std over the run's seeds (percent)
    paper: dict[str, float | None]  # metric -> the paper's number
    deltas: list[Delta]  # one per primary metric of the table
    note: str = ""


@dataclass
class ClaimResult:
    """One claim: the paper's Q, ours over seeds, and the verdict."""

    key: str
    table: str
    text: str
    kind: str
    paper_q: float | None
    ours: Stat
    verdict: str


@dataclass
class Report:
    """Everything the report shows: rows, claims, and what the runs recorded about themselves."""

    rows: list[RowResult]
    claims: list[ClaimResult]
    git_commits: list[str] = field(default_factory=list)
    grid_presets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    total_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _paper_q(claim: Claim, rows: tuple[Row, ...]) -> float | None:
    total = 0.0
    for sign, terms in ((1, claim.plus), (-1, claim.minus)):
        for run, metric in terms:
            own = [r for r in rows if r.run == run and r.table == claim.table]
            row = (own or [r for r in rows if r.run == run] or [None])[0]
            value = None if row is None else paper_value(row.table, row.paper, metric)
            if value is None:
                return None
            total += sign * value
    return round(total, 6)


def _note(run: str, runs: Runs, failures: list[dict]) -> str:
    failed = [f for f in failures if f.get("run") == run]
    first = (str(failed[0].get("error", "")).strip().splitlines() or [""])[0] if failed else ""
    if run not in runs:
        return f"failed: {first}" if failed else "not run"
    if failed:
        return f"seed(s) {', '.join(str(f['seed']) for f in failed)} failed: {first}"
    return ""


def _row_result(row: Row, rows: tuple[Row, ...], runs: Runs, failures: list[dict]) -> RowResult:
    table_rows = [r for r in rows if r.table == row.table]
    base = next((r for r in table_rows if r.baseline), table_rows[0])
    seeds = runs.get(row.run, {})
    ours = {m: paired(per_seed({row.run: seeds}, ((row.run, m),))) for m in METRICS}
    paper = {m: paper_value(row.table, row.paper, m) for m in METRICS}
    deltas = []
    for m in PRIMARY.get(row.table, ("mask_AP",)):
        if row is base:
            deltas.append(Delta(m))
            continue
        p, b = paper[m], paper_value(base.table, base.paper, m)
        paper_delta = None if p is None or b is None else round(p - b, 6)
        stat = paired(per_seed(runs, ((row.run, m),), ((base.run, m),)))
        agrees = None if not paper_delta or stat.n == 0 else _sign(stat.mean) == _sign(paper_delta)
        deltas.append(Delta(m, paper_delta, stat, agrees))
    note = _note(row.run, runs, failures)
    return RowResult(
        row.table, row.label, row.run, row.paper, row is base, len(seeds), ours, paper, deltas, note
    )


def assemble(runs_root: Path, rows: tuple[Row, ...] = ROWS, claims: tuple[Claim, ...] = CLAIMS) -> Report:
    """Read the runs under ``runs_root`` and fill every table row and claim (missing runs stay listed)."""
    runs, failures = load_runs(runs_root), load_failures(runs_root)
    results = [_row_result(row, rows, runs, failures) for row in rows]
    claim_results = []
    for c in claims:
        stat = paired(per_seed(runs, c.plus, c.minus))
        missing = any(not runs.get(r) for r, _ in (*c.plus, *c.minus))
        v = "not run" if missing else verdict(c.kind, stat) if stat.n else "no common seeds"
        claim_results.append(ClaimResult(c.key, c.table, c.text, c.kind, _paper_q(c, rows), stat, v))
    every = [m for by_seed in runs.values() for m in by_seed.values()]
    seconds = [float(m.get(k) or 0) for m in every for k in ("train_seconds", "eval_seconds")]
    return Report(
        results,
        claim_results,
        git_commits=sorted({str(m["git_commit"]) for m in every if m.get("git_commit")}),
        grid_presets=sorted({str(m["grid_preset"]) for m in every if m.get("grid_preset")}),
        seeds=sorted({s for by_seed in runs.values() for s in by_seed}),
        total_seconds=sum(seconds),
        failures=failures,
    )
