"""The committed report's figure: our Δ AP against the paper's, one panel per sub-table
(``figures/table2.png``).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mrcnn_lite.ablations.grid import TABLES, paper_numbers
from mrcnn_lite.ablations.seed_summary import t_crit
from mrcnn_lite.ablations.tables import PRIMARY, Report
from mrcnn_lite.atomic import atomic_path


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
