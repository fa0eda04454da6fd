"""Reading a Table 2 runs tree: each finished run leaves ``<runs_root>/<run>/seed<k>/metrics.json``
(pycocotools stats as fractions), each failed one an ``error.json``; :func:`per_seed` turns them into one
number per seed, in percent AP, for the seeds that every run involved has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

Terms = tuple[tuple[str, str], ...]
Runs = dict[str, dict[int, dict]]


def _seed_dirs(runs_root: Path, filename: str) -> Iterator[tuple[str, int, Path]]:
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
