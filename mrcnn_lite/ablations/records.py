"""What a Table 2 run records and when it counts as done: its papermill parameters (:func:`run_params`),
the config they resolve to (:func:`experiment_config`, which the experiment notebook calls too), and the
runner's skip rule (:func:`finished`), which compares a recorded ``metrics.json`` with both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrcnn_lite.ablations.grid import GridPreset, Run, run_overrides

if TYPE_CHECKING:
    from mrcnn_lite.config import Config

RUN_CHECKPOINTS = 2  # checkpoints along each (run, seed): its resume points


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (``metrics.json``, ``trunk.json``), or None when the file is missing,
    unreadable, cut short, not UTF-8 or not a JSON object: a damaged record counts as no record, so what it
    recorded is redone instead of the grid stopping on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: json.JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def run_params(
    run: Run, seed: int, grid: GridPreset, trunks: dict[str, dict[str, Any]] | None, overrides: list[str]
) -> dict[str, Any]:
    """The papermill parameters of one (run, seed); ``metrics.json`` records them to decide skipping.
    ``trunks``: the shared trunk of each backbone (:func:`mrcnn_lite.ablations.runner.shared_trunk`'s
    result), or None."""
    trunk = (trunks or {}).get(run.backbone)
    if trunks and run.stage == "heads" and trunk is None:
        raise ValueError(f"run {run.key!r} needs the {run.backbone} trunk; trunks given: {', '.join(trunks)}")
    own, iters = run_overrides(run, grid, trunk["path"] if trunk else None)
    return {
        "RUN": run.key, "PRESET": run.preset, "OVERRIDES": [*own, *overrides], "SEED": seed,
        "MAX_ITER": iters, "MAX_VAL_IMAGES": grid.max_val_images, "GRID_PRESET": grid.name,
        "TRUNK_SHA256": trunk["sha256"] if trunk and run.stage == "heads" else None,
    }  # fmt: skip


#: config fields that do not change what a (run, seed) trains: the trunk file's path (``TRUNK_SHA256``
#: names its content) and how often it checkpoints. A config's ``name`` is never compared: the committed
#: Table 2 ran as ``classroom_*`` presets plus overrides, and the same configs are now ``table2_*`` presets
_NOT_COMPARED = {"model": ("weights_path",), "train": ("checkpoint_period",)}


def experiment_config(params: dict[str, Any]) -> Config:
    """The config of one (run, seed) from its papermill parameters (:func:`run_params`): what the
    experiment notebook trains, and what :func:`finished` compares a recorded run with."""
    from mrcnn_lite.engine.run import run_config

    return run_config(
        params["PRESET"], params["OVERRIDES"], params["MAX_ITER"], params["SEED"], RUN_CHECKPOINTS
    )


def same_config(recorded: dict[str, Any], now: dict[str, Any], *, whole: bool = False) -> bool:
    """Whether a recorded config (plain JSON) trains what ``now`` does: the rule of
    :func:`mrcnn_lite.engine.run.same_config` (equal but for ``name``; fields added to the config classes
    since the record at their defaults), also leaving out, unless ``whole`` (a shared trunk's record), the
    fields in ``_NOT_COMPARED``."""
    from mrcnn_lite.engine.run import same_config as same_run_config

    return same_run_config(recorded, now, ignore=None if whole else _NOT_COMPARED)


def finished(run_dir: Path, params: dict[str, Any]) -> bool:
    """True when ``run_dir`` holds a ``metrics.json`` of the run ``params`` asks for.

    Every parameter but ``PRESET`` and ``OVERRIDES`` must be equal; those two are compared by the config
    they resolve to today (:func:`experiment_config`) with the one ``metrics.json`` recorded
    (:func:`same_config`), not as strings: a preset that changed since the run makes it stale even with the
    same overrides, and the same recipe spelled differently (reordered overrides, a value pinned to what
    the preset already has, another preset holding the same values, the trunk at another path with the
    same checksum) keeps it valid. A ``metrics.json`` without a recorded config needs the very same
    parameters."""
    from mrcnn_lite.engine.run import plain_config

    recorded = read_record(run_dir / "metrics.json")
    if recorded is None:  # none, or cut short / corrupted (e.g. by a crash): the run is redone
        return False
    wanted = json.loads(json.dumps(params))
    had = recorded.get("params")
    if not isinstance(had, dict) or not isinstance(recorded.get("config"), dict):
        return had == wanted
    others = lambda p: {k: v for k, v in p.items() if k not in ("PRESET", "OVERRIDES")}  # noqa: E731
    if others(had) != others(wanted):
        return False
    try:
        return same_config(recorded["config"], plain_config(experiment_config(params)))
    except Exception:  # noqa: BLE001 - overrides that no longer resolve: not this run, retrain (and report)
        return False
