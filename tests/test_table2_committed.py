"""The committed Table 2 (``results/table2.md``, 45 runs at commit d7bf688) still resolves: the runner's
skip rule counts every recorded run as finished, the shared trunks' configs are unchanged, and the
``table2_*`` presets are exactly the recipe those runs trained with.

The runs folder is not committed, so ``tests/data/table2_recorded.json`` holds what the runs'
``metrics.json`` and ``trunk.json`` recorded (params and config), reconstructed by running the runner and
the experiment notebook's config code of d7bf688.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from mrcnn_lite.ablations import grid as table2_grid
from mrcnn_lite.ablations.grid import GRID_PRESETS, RUN_BY_KEY, RUNS
from mrcnn_lite.ablations.records import same_config
from mrcnn_lite.ablations.runner import TRUNK_PRESET, TRUNK_SEED, finished, run_params
from mrcnn_lite.config import Config, get_config, rescale_schedule, to_dict

REPO = Path(__file__).resolve().parents[1]
RECORDED = json.loads((REPO / "tests" / "data" / "table2_recorded.json").read_text())
SEEDS = 3
TRUNK_CHECKPOINTS = 4  # the runner's checkpoints along a trunk (checkpoint_period = 3000 / 4)
#: the Table 2 preset each architecture's runs start from
TABLE2_PRESET = {"c4": "table2_c4", "c5": "table2_c5", "fpn": "table2_fpn"}


def recorded_runs() -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(run, seed, its metrics.json's params and config) for the 45 committed runs."""
    for seed in range(SEEDS):
        for key, rec in RECORDED["runs"].items():
            yield (
                key,
                seed,
                {"params": {**rec["params"], "SEED": seed}, "config": {**rec["config"], "seed": seed}},
            )


def test_the_committed_runs_count_as_finished(tmp_path: Path) -> None:
    assert set(RECORDED["runs"]) == {r.key for r in RUNS}
    grid = GRID_PRESETS["cpu"]
    trunks = {b: {"path": f"/moved/{b}.pth", "sha256": f"sha-{b}"} for b in ("resnet18", "resnet34")}
    stale = []
    for key, seed, record in recorded_runs():
        run_dir = tmp_path / key / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps(record))
        if not finished(run_dir, run_params(RUN_BY_KEY[key], seed, grid, trunks, [])):
            stale.append(f"{key}/seed{seed}")
    assert not stale, f"{len(stale)} of {len(RUNS) * SEEDS} committed runs would be retrained: {stale}"


def _schedule(cfg: Config, max_iter: int | None, checkpoints: int) -> Config:
    """What the runner and the experiment notebook do to a preset's schedule (``run_config``)."""
    cfg = rescale_schedule(cfg, max_iter) if max_iter is not None else cfg
    period = -(-cfg.train.max_iter // checkpoints)
    return replace(cfg, train=replace(cfg.train, checkpoint_period=period))


def _plain(cfg: Config) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(cfg)))


def test_the_shared_trunks_keep_their_recorded_configs() -> None:
    """``trunk.json``'s config is compared whole (its ``name`` aside once the trunks run as
    ``table2_trunk``), as the runner does: the trunks' config must not change, not even by a new field away
    from its default (a field added at its default, such as ``model.mask_fc_dim``, is what the code did
    before the field existed)."""
    grid = GRID_PRESETS["cpu"]
    pinned = [] if TRUNK_PRESET.startswith("table2_") else list(table2_grid.FPN_OVERRIDES)
    for backbone, recorded in RECORDED["trunks"].items():
        for preset, overrides in ((TRUNK_PRESET, pinned), ("table2_trunk", [])):
            cfg = get_config(preset, [*overrides, f"model.backbone={backbone}", f"seed={TRUNK_SEED}"])
            now = _plain(_schedule(cfg, grid.trunk_iters, TRUNK_CHECKPOINTS))
            assert same_config(recorded, now, whole=True), (backbone, preset)
            changed = {**now, "model": {**now["model"], "mask_fc_dim": 512}}
            assert not same_config(recorded, changed, whole=True)


def test_the_runs_are_their_table2_preset_plus_their_variant() -> None:
    """Each run is its architecture's Table 2 preset plus only the overrides that make its row's variant,
    and that preset is its classroom preset with the override tuples the committed runs carried (the
    grid's deprecated ``COMMON_OVERRIDES``, ``C4_OVERRIDES``, ``FPN_OVERRIDES``)."""
    pinned = {
        "c4": (*table2_grid.COMMON_OVERRIDES, *table2_grid.C4_OVERRIDES),
        "c5": table2_grid.COMMON_OVERRIDES,
        "fpn": (*table2_grid.COMMON_OVERRIDES, *table2_grid.FPN_OVERRIDES),
    }
    for run in RUNS:
        assert run.preset == TABLE2_PRESET[run.arch], run.key
        assert not set(run.overrides) & set(pinned[run.arch]), run.key
        via_preset = get_config(run.preset, list(run.overrides))
        via_overrides = get_config(f"classroom_{run.arch}", [*pinned[run.arch], *run.overrides])
        assert replace(via_overrides, name=via_preset.name) == via_preset, run.key
