"""The Table 2 report: our ablation grid's AP beside the paper's, with per-seed paired statistics.

He, Gkioxari, Dollar, Girshick, *Mask R-CNN* (ICCV 2017), Table 2 (a-e), the class-agnostic remark of
§4.2 and Table 3 (Faster R-CNN vs Mask R-CNN box AP). :mod:`.grid` defines the runs, rows and claims;
each finished run leaves ``<runs_root>/<run>/seed<k>/metrics.json`` (pycocotools stats as fractions).

Every quantity (a row's AP, a row minus its table's baseline, a claim's Q) is computed per seed over the
seeds that all the runs involved have, then summarised by :func:`paired`: mean, sample std, standard
error and a two-sided paired t-test at 95%. Everything is reported in percent AP, like the paper.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
import textwrap
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mrcnn_lite.ablations.grid import (
    CLAIMS,
    GRID_PRESETS,
    ROWS,
    TABLES,
    Claim,
    GridPreset,
    Row,
    paper_numbers,
    paper_value,
)
from mrcnn_lite.atomic import atomic_path, write_text

METRICS = ("mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75")
PRIMARY = {"2d": ("mask_AP", "box_AP"), "3": ("box_AP",)}  # every other table: ("mask_AP",)
APPROX_TOL = 1.0  # AP points: the paper's own "about equal" differences are at most 0.6
#: two-sided 95% critical values of Student's t by degrees of freedom (1.96 beyond 30)
T_CRIT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
          10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
          18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
          26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}  # fmt: skip
Terms = tuple[tuple[str, str], ...]
Runs = dict[str, dict[int, dict]]


def t_crit(df: int) -> float:
    return T_CRIT.get(df, 1.96)


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (ddof=1), standard error over ``n`` seeds, and the paired t-test's verdict."""

    mean: float
    std: float
    se: float
    n: int
    beyond_noise: bool


def paired(values_by_seed: dict[int, float]) -> Stat:
    """Summarise one per-seed quantity: beyond noise when |mean| > t_{0.975, n-1} * se (never for n < 2)."""
    v = np.asarray(list(values_by_seed.values()), dtype=float)
    n = len(v)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, False)
    mean = float(v.mean())
    if n == 1:
        return Stat(mean, math.nan, math.nan, 1, False)
    std = float(v.std(ddof=1))
    se = std / math.sqrt(n)
    return Stat(mean, std, se, n, abs(mean) > t_crit(n - 1) * se)


@dataclass
class Delta:
    """A row minus its table's baseline on one metric: the paper's and ours (None on the baseline row)."""

    metric: str
    paper: float | None = None
    ours: Stat | None = None
    direction_agrees: bool | None = None


@dataclass
class RowResult:
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
    key: str
    table: str
    text: str
    kind: str
    paper_q: float | None
    ours: Stat
    verdict: str


@dataclass
class Report:
    rows: list[RowResult]
    claims: list[ClaimResult]
    git_commits: list[str] = field(default_factory=list)
    grid_presets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    total_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)


def _seed_dirs(runs_root: Path, filename: str):
    for path in sorted(Path(runs_root).glob(f"*/seed*/{filename}")):
        match = re.fullmatch(r"seed(\d+)", path.parent.name)
        if match:
            yield path.parent.parent.name, int(match.group(1)), path


def load_runs(runs_root: Path) -> Runs:
    """run key -> seed -> the run's ``metrics.json``."""
    runs: Runs = {}
    for key, seed, path in _seed_dirs(runs_root, "metrics.json"):
        runs.setdefault(key, {})[seed] = json.loads(path.read_text())
    return runs


def load_failures(runs_root: Path) -> list[dict]:
    """The ``error.json`` of every failed run (one with no ``metrics.json`` beside it)."""
    failures = []
    for key, seed, path in _seed_dirs(runs_root, "error.json"):
        if not path.with_name("metrics.json").exists():
            failures.append({"run": key, "seed": seed} | json.loads(path.read_text()))
    return failures


def metric_value(metrics: dict, metric: str) -> float | None:
    """``mask_AP75`` -> ``segm["AP75"]`` in percent; None where the task or stat is missing (or -1)."""
    task, stat = metric.split("_", 1)
    value = (metrics.get({"mask": "segm", "box": "bbox"}[task]) or {}).get(stat)
    return None if value is None or value < 0 else 100.0 * value


def per_seed(runs: Runs, plus: Terms, minus: Terms = ()) -> dict[int, float]:
    """``sum(plus) - sum(minus)`` for each seed that every run involved has (and the metrics exist)."""
    keys = {run for run, _ in (*plus, *minus)}
    seeds = set.intersection(*(set(runs.get(k, {})) for k in keys)) if keys else set()
    out = {}
    for seed in sorted(seeds):
        p = [metric_value(runs[r][seed], m) for r, m in plus]
        q = [metric_value(runs[r][seed], m) for r, m in minus]
        if None not in p and None not in q:
            out[seed] = round(sum(p) - sum(q), 9)  # type: ignore[arg-type]  # no float dust in exact ties
    return out


def verdict(kind: str, stat: Stat) -> str:
    """The claim's verdict from our Q (see the module's "How to read" text in :func:`write_markdown`)."""
    if stat.n == 0:
        return "not run"
    if kind == "approx":
        if abs(stat.mean) < APPROX_TOL:
            return "holds"
        return "differs" if stat.beyond_noise else "unclear (noisy)"
    if stat.mean > 0:
        return "holds" if stat.beyond_noise else "same direction, within noise"
    return "contradicted" if stat.beyond_noise else "opposite, within noise"


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


def assemble(runs_root: Path, rows: tuple[Row, ...] = ROWS, claims: tuple[Claim, ...] = CLAIMS) -> Report:
    """Read the runs under ``runs_root`` and fill every table row and claim (missing runs stay listed)."""
    runs, failures = load_runs(runs_root), load_failures(runs_root)
    results = []
    for row in rows:
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
        n = len(seeds)
        results.append(
            RowResult(row.table, row.label, row.run, row.paper, row is base, n, ours, paper, deltas, note)
        )
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


# ---------------------------------------------------------------------------------------------- output
def _num(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None or math.isnan(x) else format(x, fmt)


def _mean_std(s: Stat) -> str:
    return _num(s.mean) if s.n < 2 else f"{s.mean:.1f} ± {s.std:.1f}"


def _yn(x: bool | None) -> str:
    return "–" if x is None else "yes" if x else "no"


def _per_metric(row: RowResult, cell) -> str:
    """One cell for the row's deltas: ``cell(delta)``, or ``mask ...; box ...`` for 2d's two metrics."""
    if len(row.deltas) == 1:
        return cell(row.deltas[0])
    return "; ".join(f"{d.metric.split('_')[0]} {cell(d)}" for d in row.deltas)


def _our_delta(d: Delta) -> str:
    return "–" if not d.ours or d.ours.n == 0 else f"{d.ours.mean:+.1f} ± {_num(d.ours.se)}"


def _md_row(r: RowResult) -> str:
    setting = r.label + (" (baseline)" if r.baseline else "") + (f" — *{r.note}*" if r.note else "")
    cells = [setting, r.paper_setting, str(r.n)]
    cells += [_mean_std(r.ours[m]) for m in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP")]
    cells += [
        _paper_ap(r),
        _per_metric(r, lambda d: _num(d.paper, "+.1f")),
        _per_metric(r, _our_delta),
        _per_metric(r, lambda d: _yn(d.direction_agrees)),
        _per_metric(r, lambda d: _yn(d.ours.beyond_noise if d.ours and d.ours.n else None)),
    ]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _paper_ap(row: RowResult) -> str:
    def one(task: str) -> str:
        ap, ap50, ap75 = (row.paper[f"{task}_{s}"] for s in ("AP", "AP50", "AP75"))
        return _num(ap) if ap50 is None else f"{_num(ap)} ({_num(ap50)} / {_num(ap75)})"

    tasks = [d.metric.split("_")[0] for d in row.deltas]
    return one(tasks[0]) if len(tasks) == 1 else "; ".join(f"{t} {one(t)}" for t in tasks)


HOW_TO_READ = f"""\
## How to read

AP is in percent (COCO AP over IoU 0.5:0.95; AP50, AP75 at one IoU). `a ± b` is the mean ± sample
standard deviation over seeds (one number: one seed). Δ is a row minus its sub-table's first (baseline)
row, computed seed by seed over the seeds both runs have; `± se` is its standard error (std / √n).
"Beyond noise" is a two-sided paired t-test at 95%: |mean Δ| > t(0.975, n−1) · se (e.g. 4.303 for 3
seeds); with one seed nothing is beyond noise. "direction" says whether our Δ has the paper's sign.
A claim's Q is the signed sum of AP values whose sign the paper predicts; an "≈" claim holds when
|Q| < {APPROX_TOL:.1f} AP point (the paper's own "about equal" differences are at most 0.6 points),
"differs" when |Q| ≥ {APPROX_TOL:.1f} and beyond noise. The paper's numbers are single runs on COCO.
"""


def write_markdown(report: Report, path: Path, header: dict | None = None) -> Path:
    """``results/table2.md``: a header block, one table per sub-table, the claims, "How to read".

    ``header`` keys: ``grid`` (a preset name or :class:`GridPreset`), ``description``, ``seeds``, ``trunk``
    (text or a dict), ``date``; other keys are listed as they are, None values are left out."""
    h = {k: v for k, v in (header or {}).items() if v is not None}
    grid = h.pop("grid", None) or ", ".join(report.grid_presets) or "?"
    preset = grid if isinstance(grid, GridPreset) else GRID_PRESETS.get(grid)
    grid = preset.name if isinstance(grid, GridPreset) else grid
    desc = h.pop("description", None) or (preset.description if preset else "")
    seeds = h.pop("seeds", None) or ", ".join(map(str, report.seeds)) or "none"
    secs = report.total_seconds
    lines = [
        "# Mask R-CNN Table 2 ablations, reproduced",
        "",
        f"- grid preset: **{grid}**" + (f": {desc}" if desc else ""),
        f"- seeds: {seeds}",
        f"- git commit(s) of the runs: {', '.join(report.git_commits) or 'unknown'}",
        f"- total train + eval time: {secs / 3600:.2f} h ({secs:.0f} s)",
    ]
    if "trunk" in h:
        trunk = h.pop("trunk")
        trunk = ", ".join(f"{k} {v}" for k, v in trunk.items()) if isinstance(trunk, dict) else trunk
        lines.append(f"- shared trunk: {trunk}")
    date = h.pop("date", None) or datetime.date.today().isoformat()
    lines += [f"- {k}: {v}" for k, v in h.items()] + [f"- date: {date}"]
    if report.failures:
        failed = sorted({f"{f['run']}/seed{f['seed']}" for f in report.failures})
        lines.append(f"- failed runs: {', '.join(failed)}")
    cols = "setting | paper setting | n | mask AP | AP50 | AP75 | box AP | paper AP (AP50 / AP75) | paper Δ"
    cols += " | our Δ ± se | direction | beyond noise"
    for table in dict.fromkeys(r.table for r in report.rows):
        cite = paper_numbers()["tables"][table]["cite"]
        lines += ["", f"## {cite}", "", f"| {cols} |", "|" + "---|" * (cols.count("|") + 1)]
        lines += [_md_row(r) for r in report.rows if r.table == table]
    lines += ["", "## Claims", "", "| claim | paper Q | our Q ± se (n) | verdict |", "|---|---|---|---|"]
    for c in report.claims:
        ours = "–" if c.ours.n == 0 else f"{c.ours.mean:+.1f} ± {_num(c.ours.se)} ({c.ours.n})"
        text = f"**{c.table}** " + ("≈ " if c.kind == "approx" else "") + c.text
        lines.append(f"| {text} | {_num(c.paper_q, '+.1f')} | {ours} | {c.verdict} |")
    return write_text(path, "\n".join(lines) + "\n\n" + HOW_TO_READ)


def _cell(x):
    if isinstance(x, float):
        return "" if math.isnan(x) else round(x, 4)
    return "" if x is None else x


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([_cell(x) for x in row] for row in rows)
    return Path(path)


def write_csv(report: Report, path: Path) -> tuple[Path, Path]:
    """The rows as CSV (one line per row and primary metric: 2d's rows appear twice, mask and box) and the
    claims beside it as ``<stem>_claims.csv``."""
    path = Path(path)
    header = ["table", "setting", "run", "paper_setting", "n_seeds"]
    header += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")] + [f"paper_{m}" for m in METRICS]
    header += ["primary_metric", "paper_delta", "our_delta", "our_delta_se", "our_delta_n"]
    header += ["direction_agrees", "beyond_noise", "note"]
    lines = []
    for r in report.rows:
        base = [r.table, r.label, r.run, r.paper_setting, r.n]
        base += [x for m in METRICS for x in (r.ours[m].mean, r.ours[m].std)] + [r.paper[m] for m in METRICS]
        for d in r.deltas:
            s = d.ours if d.ours and d.ours.n else None
            ours = [s.mean, s.se, s.n] if s else [None, None, None]
            lines.append(base + [d.metric, d.paper, *ours, d.direction_agrees, s and s.beyond_noise, r.note])
    rows_path = _csv(path, header, lines)
    claims = [[c.table, c.key, c.text, c.kind, c.paper_q, *astuple(c.ours), c.verdict] for c in report.claims]
    claims_header = ["table", "claim", "text", "kind", "paper_Q"]
    claims_header += ["our_Q_mean", "our_Q_std", "our_Q_se", "n_seeds", "beyond_noise", "verdict"]
    return rows_path, _csv(path.with_name(f"{path.stem}_claims.csv"), claims_header, claims)


def plot(report: Report, path: Path | None = None) -> Figure:
    """Our Δ vs the paper's, one panel per sub-table; saved atomically as PNG when ``path`` is given."""
    tables = [t for t in TABLES if any(r.table == t for r in report.rows)]
    ncols = 4
    nrows = math.ceil(len(tables) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(tables) :]:
        ax.set_axis_off()
    for k, (ax, table) in enumerate(zip(axes, tables, strict=False)):
        rows = [r for r in report.rows if r.table == table and not r.baseline]
        metrics = PRIMARY.get(table, ("mask_AP",))
        width = 0.8 / len(metrics)
        for j, m in enumerate(metrics):
            x = np.arange(len(rows)) + (j - (len(metrics) - 1) / 2) * width
            ds = [next(d for d in r.deltas if d.metric == m) for r in rows]
            ours = [(i, d.ours) for i, d in enumerate(ds) if d.ours and d.ours.n > 0]
            have = [i for i, _ in ours]
            mean = [s.mean for _, s in ours]
            err = [t_crit(s.n - 1) * s.se if s.n > 1 else 0.0 for _, s in ours]  # no bar for one seed
            paper = [math.nan if d.paper is None else d.paper for d in ds]
            color = "tab:blue" if m.startswith("mask") else "tab:orange"
            bar_x = x[have] - width * 0.15
            ax.bar(bar_x, mean, width * 0.6, yerr=err, capsize=3, color=color, alpha=0.8, label=f"ours ({m})")
            ax.plot(x + width * 0.3, paper, "D", color=("black", "dimgray")[j], ms=6, label=f"paper ({m})")
            for i in sorted(set(range(len(rows))) - set(have)):
                kw = {"rotation": 90, "ha": "center", "va": "center", "fontsize": 7, "color": "gray"}
                ax.text(x[i], 0.5, "no paired seeds", transform=ax.get_xaxis_transform(), **kw)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_xticks(np.arange(len(rows)), [textwrap.fill(r.label, 14) for r in rows], fontsize=8)
        ax.set_title(textwrap.fill(paper_numbers()["tables"][table]["cite"], 48), fontsize=9)
        if k % ncols == 0:
            ax.set_ylabel("Δ AP (points): ours (bars, ± 95% t-interval), paper (◆)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Δ AP vs the sub-table's first row (baseline): our mean over seeds (bars) and the paper (◆)")
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    return fig


def build(
    runs_root: Path,
    results_dir: Path,
    figures_dir: Path,
    name: str = "table2",
    header: dict | None = None,
    rows: tuple[Row, ...] | list[Row] = ROWS,
    claims: tuple[Claim, ...] | list[Claim] = CLAIMS,
) -> Report:
    """Assemble the report (``rows``/``claims``: e.g. :func:`.grid.select`'s subset) and write
    ``<results_dir>/<name>.md``, ``.csv``, ``_claims.csv`` and ``<figures_dir>/<name>.png``."""
    report = assemble(Path(runs_root), tuple(rows), tuple(claims))
    write_markdown(report, Path(results_dir) / f"{name}.md", header)
    write_csv(report, Path(results_dir) / f"{name}.csv")
    plot(report, Path(figures_dir) / f"{name}.png")
    return report
