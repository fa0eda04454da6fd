"""Table 2 v2's grid (``ablations/grid_v2.py``) and its resumable runner (``ablations/runner_v2.py``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mrcnn_lite.ablations import grid_v2, runner_v2
from mrcnn_lite.ablations.grid_v2 import CLAIMS_V2, GRIDS_V2, ROWS_V2, RUN_BY_KEY_V2, RUNS_V2, trunk_for
from mrcnn_lite.config import get_config

REPO = Path(__file__).resolve().parents[1]


def test_rows_and_claims_name_existing_runs() -> None:
    for row in ROWS_V2:
        assert row.run in RUN_BY_KEY_V2, row
    for claim in CLAIMS_V2:
        for run, metric in (*claim.plus, *claim.minus):
            assert run in RUN_BY_KEY_V2 and metric.split("_")[0] in ("mask", "box"), claim.key
    assert len({r.key for r in RUNS_V2}) == len(RUNS_V2) == 16
    for grid in GRIDS_V2.values():
        assert all(k in RUN_BY_KEY_V2 for k in grid.runs or ())


def test_every_run_resolves_to_the_papers_settings() -> None:
    """C4: 64 RoIs, 300 test proposals; RoIAlign aligned=False except the extra row; FCN 4 convs of the
    head width and MLPs 4x as wide; frozen BN, stem and res2 frozen; one schedule for every run."""
    schedules = set()
    for run in RUNS_V2:
        m = get_config(run.preset, list(run.overrides)).model
        t = get_config(run.preset, list(run.overrides)).train
        schedules.add((t.max_iter, t.steps, t.base_lr, t.optimizer, t.warmup_iters))
        assert m.frozen_bn and m.freeze_at == 2, run.key
        assert m.roi_aligned == (run.key == "c4_align_aligned"), run.key
        assert m.mask_num_convs == 4 and m.mask_fc_dim == 4 * m.mask_conv_dim, run.key
        if run.arch == "c4":
            assert m.roi_batch_size_per_image == 64 and m.rpn_post_nms_top_n_test == 300, run.key
        assert m.backbone == run.backbone
    assert len(schedules) == 1
    softmax = get_config("table2v2_c4", list(RUN_BY_KEY_V2["c4_softmax"].overrides)).model
    assert softmax.mask_loss == "softmax" and softmax.mask_decode == "argmax"
    assert dict(RUN_BY_KEY_V2["c4_softmax"].decodings) == {"p05": "threshold"}


def test_fine_tuning_seeds_alternate_between_two_trunks_per_depth() -> None:
    assert [trunk_for("resnet18", s).seed for s in range(4)] == [0, 1, 0, 1]
    assert {t.key for t in grid_v2.TRUNKS} == {"r18_seed0", "r18_seed1", "r34_seed0", "r34_seed1"}


def test_the_quick_lab_trains_exactly_the_cpu_grids_runs() -> None:
    """`make table2-quick` is a slice of the committed grid: the same params for each (run, seed), so a
    class's numbers can be set beside the committed records of the same runs."""
    trunk = {"config": {"depth": "resnet18"}, "weights_sha256": "x"}
    quick, cpu = GRIDS_V2["quick"], GRIDS_V2["cpu"]
    assert quick.seeds <= cpu.seeds
    for run, seed in runner_v2.todo(quick, None, None):
        assert runner_v2.run_params(run, seed, quick, trunk) == runner_v2.run_params(run, seed, cpu, trunk)


def test_todo_is_seed_major_and_rejects_unknown_runs() -> None:
    pairs = runner_v2.todo(GRIDS_V2["quick"], None, 2)
    expected = [("c5_align", 0), ("c5_pool", 0), ("c5_align", 1), ("c5_pool", 1)]
    assert [(r.key, s) for r, s in pairs] == expected
    with pytest.raises(ValueError, match="unknown run"):
        runner_v2.todo(GRIDS_V2["cpu"], ["c4_nope"], 1)


def _params(seed: int = 0) -> dict:
    trunk = {"config": {"depth": "resnet18"}, "weights_sha256": "abc"}
    return runner_v2.run_params(RUN_BY_KEY_V2["c4_softmax"], seed, GRIDS_V2["smoke"], trunk)


def test_skip_rule_needs_the_same_params_and_every_point(tmp_path: Path) -> None:
    path = tmp_path / "seed0.json"
    params = _params()
    assert not runner_v2.finished(path, params)
    points = [{"iteration": i} for i in (2, 3, 4)]
    path.write_text(json.dumps({"params": params, "schedule": points}))
    assert runner_v2.finished(path, params)
    assert not runner_v2.finished(path, _params(seed=1))
    path.write_text(json.dumps({"params": params, "schedule": points[:2]}))  # a part cut short
    assert not runner_v2.finished(path, params)
    path.write_text('{"params": ')  # damaged: redone
    assert not runner_v2.finished(path, params)


@pytest.mark.slow
def test_smoke_grid_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny trunk, then one (run, seed) through the child process: a record with AP at 3 points, the
    softmax run's p > 0.5 line beside its argmax one, and a second invocation that skips it."""
    tiny = replace(grid_v2.Trunk("resnet18", 0).config, iters=2, batch_size=2, image_size=32,
                   val_images=4, eval_period=2, checkpoint_period=2, warmup_iters=1)  # fmt: skip
    monkeypatch.setattr(grid_v2.Trunk, "config", property(lambda self: replace(tiny, seed=self.seed)))
    results, work = tmp_path / "results", tmp_path / "work"
    statuses = runner_v2.run_grid("smoke", ["c4_softmax"], 1, jobs=1, results=results, work=work,
                                  trunks_dir=results, progress=False)  # fmt: skip
    log = work / "smoke" / "c4_softmax" / "seed0" / "error.log"
    assert statuses == {("c4_softmax", 0): "done"}, log.read_text() if log.is_file() else statuses
    record = json.loads((results / "runs" / "c4_softmax" / "seed0.json").read_text())
    assert [e["iteration"] for e in record["schedule"]] == [2, 3, 4]  # ½, ¾ and the end of 4
    assert all("segm" in e and "segm_p05" in e and "bbox" in e for e in record["schedule"])
    assert record["config"]["model"]["weights_path"].endswith("r18_seed0.pth")
    trunk = json.loads((results / "trunks" / "r18_seed0.json").read_text())
    assert trunk["config"]["iters"] == 2 and trunk["weights_sha256"]
    assert (work / "trunks" / "r18_seed0" / "checkpoint.pth").is_file()  # pretrained under the work root
    import torch

    committed = torch.load(results / "trunks" / "r18_seed0.pth", weights_only=True)
    trained = torch.load(work / "trunks" / "r18_seed0" / "trunk.pth", weights_only=True)
    assert committed["conv1.weight"].dtype == torch.float16  # float16 in git, exactly the trained values
    for key, value in trained.items():
        assert torch.equal(committed[key], value.half() if value.is_floating_point() else value), key
    again = runner_v2.run_grid("smoke", ["c4_softmax"], 1, jobs=1, results=results, work=work,
                               trunks_dir=results, progress=False)  # fmt: skip
    assert again == {("c4_softmax", 0): "skipped"}
