"""Writing the committed report: ``results/table2.md`` (a header, one table per sub-table, the claims,
"How to read") and ``results/table2.csv`` with the claims beside it (``table2_claims.csv``).
"""

from __future__ import annotations

import csv
import datetime
import math
from dataclasses import astuple
from pathlib import Path

from mrcnn_lite.ablations.grid import GRID_PRESETS, GridPreset, paper_numbers
from mrcnn_lite.ablations.seed_summary import APPROX_TOL, Stat
from mrcnn_lite.ablations.tables import METRICS, Delta, Report, RowResult
from mrcnn_lite.atomic import atomic_path, write_text


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
