"""The Table 2 report: our ablation grid's AP beside the paper's, with per-seed paired statistics.

He, Gkioxari, Dollar, Girshick, *Mask R-CNN* (ICCV 2017), Table 2 (a-e), the class-agnostic remark of
§4.2 and Table 3 (Faster R-CNN vs Mask R-CNN box AP). :mod:`.grid` defines the runs, rows and claims;
each finished run leaves ``<runs_root>/<run>/seed<k>/metrics.json`` (pycocotools stats as fractions).

Every quantity (a row's AP, a row minus its table's baseline, a claim's Q) is computed per seed over the
seeds that all the runs involved have, then summarised by :func:`paired`: mean, sample std, standard
error and a two-sided paired t-test at 95%. Everything is reported in percent AP, like the paper.

:func:`build` writes it all; the parts live in modules of one concept each, and every name is importable
from here as before:

- :mod:`.run_metrics`: reading a runs tree (:func:`load_runs`, :func:`load_failures`, :func:`per_seed`);
- :mod:`.seed_summary`: :func:`paired` and the committed claim :func:`verdict`;
- :mod:`.tables`: the rows and claims of the report (:func:`assemble`);
- :mod:`.writers`: ``table2.md`` and the CSVs; :mod:`.plots`: ``table2.png``;
- :mod:`.claims`: issue #20's per-claim table over the schedule (CIs, Holm, TOST; :mod:`.stats`,
  :mod:`.verdicts`), not yet part of :func:`build`'s output.
"""

from __future__ import annotations

from pathlib import Path

from mrcnn_lite.ablations.grid import (  # noqa: F401 - importable from here, as before the split
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
from mrcnn_lite.ablations.plots import plot
from mrcnn_lite.ablations.run_metrics import (  # noqa: F401
    Runs,
    Terms,
    _seed_dirs,
    load_failures,
    load_runs,
    metric_value,
    per_seed,
)
from mrcnn_lite.ablations.seed_summary import APPROX_TOL, T_CRIT, Stat, paired, t_crit, verdict  # noqa: F401
from mrcnn_lite.ablations.tables import (  # noqa: F401
    METRICS,
    PRIMARY,
    ClaimResult,
    Delta,
    Report,
    RowResult,
    _note,
    _paper_q,
    _sign,
    assemble,
)
from mrcnn_lite.ablations.writers import (  # noqa: F401
    HOW_TO_READ,
    _cell,
    _csv,
    _md_row,
    _mean_std,
    _num,
    _our_delta,
    _paper_ap,
    _per_metric,
    _yn,
    write_csv,
    write_markdown,
)


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
