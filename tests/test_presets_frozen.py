"""Presets are frozen once a committed result uses them, and the README's preset table is generated.

Each preset's resolved config is compared with its snapshot in ``tests/data/presets/<name>.json``: a
retuned recipe must be a new preset (as ``table2_trunk`` keeps what ``classroom_fpn`` was when Table 2
trained with it), so every committed result still names what it ran.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from mrcnn_lite.config import ALL_PRESETS, PRESETS, TABLE2_PRESETS, Config, get_preset, presets_table, to_dict
from mrcnn_lite.config.schema import SECTIONS
from mrcnn_lite.config.table import readme_section, replace_readme_section

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = REPO / "tests" / "data" / "presets"


def _defaults() -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(Config())))


def snapshot_differences(snapshot: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a preset's ``snapshot`` and its config ``now``: changed or removed fields; a
    field added to the config classes since the snapshot may appear only at its default (the value the
    code had before the field existed, as the Table 2 runner's skip rule assumes)."""
    defaults, diffs = _defaults(), []
    for section in (*SECTIONS, *(f.name for f in fields(Config) if f.name not in SECTIONS)):
        old, new, default = snapshot.get(section), now.get(section), defaults.get(section)
        if not isinstance(new, dict):
            if old != new:
                diffs.append(f"{section}: {old!r} -> {new!r}")
            continue
        for key in sorted({*old, *new}):
            if key not in new:
                diffs.append(f"{section}.{key} removed (was {old[key]!r})")
            elif key not in old:
                if new[key] != default[key]:
                    diffs.append(
                        f"{section}.{key} added at {new[key]!r}, not at its default {default[key]!r}"
                    )
            elif old[key] != new[key]:
                diffs.append(f"{section}.{key}: {old[key]!r} -> {new[key]!r}")
    return diffs


@pytest.mark.parametrize("name", list(ALL_PRESETS))
def test_presets_match_their_frozen_snapshots(name: str) -> None:
    path = SNAPSHOTS / f"{name}.json"
    assert path.is_file(), (
        f"preset {name!r} has no snapshot: write it with "
        f"`python -m mrcnn_lite.config --dump {name} > tests/data/presets/{name}.json` and commit it"
    )
    now = json.loads(json.dumps(to_dict(get_preset(name))))
    diffs = snapshot_differences(json.loads(path.read_text()), now)
    assert not diffs, (
        f"preset {name!r} changed since its snapshot {path.relative_to(REPO)}:\n  "
        + "\n  ".join(diffs)
        + "\n"
        "Presets are frozen once a committed result uses them: make a new preset (e.g. "
        f"{name}_v2) instead of retuning this one, and point new work at it."
    )


def test_every_snapshot_is_a_preset() -> None:
    stale = sorted(p.stem for p in SNAPSHOTS.glob("*.json") if p.stem not in ALL_PRESETS)
    assert not stale, (
        f"snapshots of presets that no longer exist (removing a used preset breaks its runs): {stale}"
    )


def test_snapshot_comparison_catches_retunes_and_allows_new_fields_at_defaults() -> None:
    snap = json.loads((SNAPSHOTS / "classroom_fpn.json").read_text())
    retuned = json.loads(json.dumps(snap))
    retuned["model"]["rpn_post_nms_top_n_train"] = 500
    assert snapshot_differences(snap, retuned) == ["model.rpn_post_nms_top_n_train: 300 -> 500"]
    older = json.loads(json.dumps(snap))  # a snapshot taken before a field existed
    del older["train"]["amp"]
    assert snapshot_differences(older, snap) == []
    snap_amp = json.loads(json.dumps(snap))
    snap_amp["train"]["amp"] = True
    assert snapshot_differences(older, snap_amp) == ["train.amp added at True, not at its default False"]


def test_table2_presets_are_resolvable_but_not_offered_as_starting_points() -> None:
    assert set(TABLE2_PRESETS).isdisjoint(PRESETS)
    trunk, fpn, c4 = get_preset("table2_trunk"), get_preset("table2_fpn"), get_preset("table2_c4")
    m = trunk.model
    assert (m.rpn_pre_nms_top_n_train, m.rpn_post_nms_top_n_train) == (1000, 500)
    classroom = get_preset("classroom_fpn")
    assert trunk.train == classroom.train and trunk.data == classroom.data
    assert fpn.model.detections_per_image == 20 and c4.model.roi_batch_size_per_image == 32


def test_readme_preset_table_is_generated_from_the_presets() -> None:
    readme = (REPO / "README.md").read_text()
    assert replace_readme_section(readme, readme_section(readme)) == readme  # what --write does, in place
    assert readme_section(readme) == presets_table(), (
        "README.md's preset table (between <!-- presets:begin --> and <!-- presets:end -->) differs from "
        "the presets: regenerate it with `python -m mrcnn_lite.config --table --write README.md`"
    )


def test_dump_writes_a_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    from mrcnn_lite.config.__main__ import main

    main(["--dump", "table2_c4"])
    dumped = json.loads(capsys.readouterr().out)
    assert dumped == json.loads(json.dumps(to_dict(get_preset("table2_c4"))))
    assert snapshot_differences(json.loads((SNAPSHOTS / "table2_c4.json").read_text()), dumped) == []


def test_committed_benchmark_configs_resolve_to_their_presets() -> None:
    """``benchmarks/results/*.json`` record configs: each reads back (``from_dict``) to what it recorded,
    and names a preset that still holds its recipe (the schedule aside: ``--iterations`` rescales it).
    Fields added to the config classes since a record count at their defaults (``same_config``)."""
    from mrcnn_lite.config import from_dict
    from mrcnn_lite.engine.run import same_config

    schedule = {"max_iter", "steps", "warmup_iters", "checkpoint_period", "eval_period"}
    results = [json.loads(p.read_text()) for p in sorted((REPO / "benchmarks" / "results").glob("*.json"))]
    configs = [r["config"] for r in results if isinstance(r.get("config"), dict)]
    assert configs, "no committed benchmark result records a config"
    for recorded in configs:
        cfg = from_dict(recorded)
        assert same_config(recorded, json.loads(json.dumps(to_dict(cfg)))) and cfg.name == recorded["name"]
        preset = json.loads(json.dumps(to_dict(get_preset(cfg.name))))
        ignore = {"train": tuple(schedule)}
        assert same_config(recorded, preset, ignore=ignore), cfg.name
        assert not same_config(recorded, {**preset, "seed": preset["seed"] + 1}, ignore=ignore)
