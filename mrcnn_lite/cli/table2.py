"""``python -m mrcnn_lite table2``: the paper's ablations (He et al. 2017, Table 2; Table 3's box AP) rerun
with papermill, several seeds each (:mod:`mrcnn_lite.ablations`)."""

from __future__ import annotations

import argparse

from mrcnn_lite.cli.checks import writable_folder
from mrcnn_lite.config import ConfigError


def cmd_table2(args: argparse.Namespace) -> int:
    """Run (or skip, when finished) every run of the chosen rows; exit code 1 when one failed."""
    from mrcnn_lite.ablations.runner import run_grid

    if args.out is not None:
        writable_folder(args.out, "--out", "the runs")
    writable_folder(args.results, "--results", "the tables")
    writable_folder(args.figures, "--figures", "the figure")
    try:
        result = run_grid(
            args.rows, args.seeds, args.preset, args.out, args.results, args.figures, args.overrides,
            progress=not args.quiet, jobs=args.jobs,
        )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from e
    counts = {s: list(result.statuses.values()).count(s) for s in ("done", "skipped", "failed")}
    print(f"runs: {counts['done']} trained, {counts['skipped']} already done, {counts['failed']} failed")
    for path in result.files:
        print(f"wrote {path}")
    return 1 if counts["failed"] else 0
