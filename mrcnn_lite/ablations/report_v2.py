"""Table 2 v2's report from the committed run records (``results/table2_v2/runs/<run>/seed<k>.json``).

Writes ``results/table2_v2.md`` (the table at the end of the schedule beside the paper's numbers, then the
claims with their statistics and a verdict at every evaluation point, :mod:`.claims`),
``results/table2_v2.csv`` (every row at every point), ``results/table2_v2_claims.csv`` and
``figures/table2_v2_curves.png`` (mean mask AP along the schedule, per sub-table: the learning curves).

2b's softmax run is evaluated with two decision rules on the same weights: argmax over the K+1 channels
(the rule fixed in advance, its row and the claim) and p(k) > 0.5 (``<run>@p05``, a second line).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from mrcnn_lite.ablations.claims import claim_table, claim_table_markdown, write_claim_table_csv
from mrcnn_lite.ablations.grid import Row, paper_value
from mrcnn_lite.ablations.grid_v2 import CLAIMS_V2, ROWS_V2, RUN_BY_KEY_V2
from mrcnn_lite.ablations.run_metrics import Runs, metric_value
from mrcnn_lite.atomic import atomic_path, write_text

METRICS = ("mask_AP", "mask_AP50", "mask_AP75", "box_AP")


def load_records(results: Path) -> Runs:
    """run -> seed -> record, with each extra decoding as a run of its own (``c4_softmax@p05``) whose
    ``segm`` entries are that decoding's."""
    runs: Runs = {}
    for path in sorted(Path(results).glob("runs/*/seed*.json")):
        match = re.fullmatch(r"seed(\d+)\.json", path.name)
        if not match:
            continue
        record = json.loads(path.read_text())
        key, seed = path.parent.name, int(match.group(1))
        runs.setdefault(key, {})[seed] = record
        for name in (record.get("params") or {}).get("decodings") or {}:
            twin = {**record, "schedule": [{**e, "segm": e.get(f"segm_{name}")} for e in record["schedule"]]}
            runs.setdefault(f"{key}@{name}", {})[seed] = twin
    return runs


def schedule_of(runs: Runs) -> dict[int, Runs]:
    """Evaluation point -> run -> seed -> that point's metrics."""
    out: dict[int, Runs] = {}
    for run, seeds in runs.items():
        for seed, record in seeds.items():
            for entry in record.get("schedule", []):
                out.setdefault(int(entry["iteration"]), {}).setdefault(run, {})[seed] = entry
    return dict(sorted(out.items()))


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _cell(values: list[float]) -> str:
    mean, sd = _mean_sd(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:.1f}" + ("" if math.isnan(sd) else f" ± {sd:.1f}") + f" ({len(values)})"


def row_values(point: Runs, run: str, metric: str) -> list[float]:
    seeds = point.get(run, {})
    values = [metric_value(seeds[s], metric) for s in sorted(seeds)]
    return [v for v in values if v is not None]


def _rows() -> list[Row]:
    rows = list(ROWS_V2)
    i = next(k for k, r in enumerate(rows) if r.run == "c4_softmax")
    rows.insert(i + 1, Row("2b", "softmax (p(k) > 0.5, second line)", "c4_softmax@p05", "softmax"))
    return rows


def table_markdown(point: Runs, iteration: int) -> str:
    """The rows at ``iteration``: mean ± sd (seeds) of each metric, beside the paper's mask and box AP."""
    head = ["table", "row", "run", "paper mask AP", "paper box AP", *METRICS]
    lines = [f"Rows at iteration {iteration} (AP in %, mean ± sd over seeds, (n)):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for r in _rows():
        paper = [paper_value(r.table, r.paper, m) for m in ("mask_AP", "box_AP")]
        cells = [r.table, r.label, r.run, *("–" if v is None else f"{v:.1f}" for v in paper)]
        cells += [_cell(row_values(point, r.run, m)) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_rows_csv(schedule: dict[int, Runs], path: Path) -> None:
    """Every row at every point: mean and sd of each metric, and the number of seeds."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "table", "row", "run", "n_seeds"] + [f"{m}_{s}" for m in METRICS
                                                                      for s in ("mean", "sd")])  # fmt: skip
        for it, point in schedule.items():
            for r in _rows():
                stats = [_mean_sd(row_values(point, r.run, m)) for m in METRICS]
                n = len(row_values(point, r.run, "box_AP"))
                w.writerow([it, r.table, r.label, r.run, n,
                            *(("" if math.isnan(x) else round(x, 3)) for s in stats for x in s)])  # fmt: skip


def plot_curves(schedule: dict[int, Runs], path: Path) -> Path:
    """Mean mask AP (box AP for Table 3) against iteration, one panel per sub-table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn_lite.atomic import atomic_path as _atomic

    tables = list(dict.fromkeys(r.table for r in _rows()))
    fig, axes = plt.subplots(2, math.ceil(len(tables) / 2), figsize=(4 * math.ceil(len(tables) / 2), 6.5))
    for ax, table in zip(axes.flat, tables, strict=False):
        metric = "box_AP" if table == "3" else "mask_AP"
        for r in (r for r in _rows() if r.table == table):
            its = [it for it in schedule if row_values(schedule[it], r.run, metric)]
            means = [statistics.fmean(row_values(schedule[it], r.run, metric)) for it in its]
            ax.plot(its, means, marker="o", label=r.label)
        ax.set_title(f"Table {table}" if table != "agnostic" else "class-agnostic", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tables):]:
        ax.axis("off")
    fig.tight_layout()
    with _atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def build(
    results: Path, out_results: Path, figures: Path, header: dict[str, Any] | None = None,
    name: str = "table2_v2",
) -> list[Path]:
    """Write the v2 table, its CSVs and its figure from the records under ``results``; returns the files."""
    runs = load_records(results)
    if not runs:
        raise FileNotFoundError(f"no Table 2 v2 records under {results}/runs: run `make table2-v2` first")
    schedule = schedule_of(runs)
    last = max(schedule)
    claims = claim_table(schedule, CLAIMS_V2)
    md = [f"# {name.replace('_', ' ')}: Table 2 rerun (v2)", ""]
    md += [f"- **{k}**: {v}" for k, v in (header or {}).items()] + [""]
    md += [table_markdown(schedule[last], last), "", "## Claims", "", claim_table_markdown(claims)]
    missing = [k for k in RUN_BY_KEY_V2 if k not in runs]
    if missing:
        md += ["", f"Runs without a record yet: {', '.join(missing)}."]
    out = Path(out_results)
    files = [out / f"{name}.md", out / f"{name}.csv", out / f"{name}_claims.csv",
             Path(figures) / f"{name}_curves.png"]  # fmt: skip
    write_text(files[0], "\n".join(md) + "\n")
    write_rows_csv(schedule, files[1])
    write_claim_table_csv(claims, files[2])
    plot_curves(schedule, files[3])
    return files
