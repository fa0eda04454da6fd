"""The Table 2 reproduction path: the grid's definitions, a smoke run through papermill end to end, and the
runner under faults (a SIGKILL in the middle of a run, damaged records) against that uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from mrcnn_lite.ablations import runner
from mrcnn_lite.ablations.grid import (
    CLAIMS,
    GRID_PRESETS,
    ROWS,
    RUN_BY_KEY,
    RUNS,
    TABLES,
    paper_numbers,
    paper_value,
    run_overrides,
    select,
)
from mrcnn_lite.ablations.runner import (
    GridResult,
    finished,
    read_record,
    run_grid,
    run_one,
    run_params,
    save_weights,
    sha256,
)
from mrcnn_lite.config import ConfigError, ModelConfig, TrainConfig, get_config, rescale_schedule
from mrcnn_lite.engine.checkpoint import read_checkpoint


def test_every_run_is_a_valid_config_with_the_variant_it_names() -> None:
    grid = GRID_PRESETS["cpu"]
    for run in RUNS:
        overrides, iters = run_overrides(run, grid, "trunk.pth")
        cfg = get_config(run.preset, [o for o in overrides if not o.startswith("model.weights_path")])
        rescale_schedule(cfg, iters)
        assert cfg.model.arch == run.arch
        if run.stage == "heads":
            assert "model.weights_path=trunk.pth" in overrides
            assert cfg.model.freeze_at == (4 if run.arch == "c4" else 5)
        else:
            assert cfg.model.freeze_at == 0 and not any("weights_path" in o for o in overrides)
    m = lambda key: get_config(RUN_BY_KEY[key].preset, list(RUN_BY_KEY[key].overrides)).model  # noqa: E731
    assert (m("c4_roipool").roi_op, m("c4_roipool").roi_mode) == ("roi_pool", "max")
    assert (m("c4_roiwarp_avg").roi_op, m("c4_roiwarp_avg").roi_mode) == ("roi_warp", "avg")
    assert (m("c4_roialign_max").roi_op, m("c4_roialign_max").roi_mode) == ("roi_align", "max")
    assert m("c4_softmax").mask_loss == "softmax" and m("c4_agnostic").class_agnostic_masks
    assert m("c5_roipool").arch == "c5" and m("fpn_mlp2").mask_head == "mlp2"
    assert not m("fpn_faster").with_mask and m("a_r34_fpn").backbone == "resnet34"
    assert (
        m("c4_roialign_avg").roi_batch_size_per_image == 32 and m("c4_roipool").rpn_post_nms_top_n_test == 50
    )
    # the FPN runs keep the proposal counts the committed table was trained with (classroom_fpn's are now
    # 300/300): 1000 per level before NMS, 500 per image after it
    fpn = [m(r.key) for r in RUNS if r.arch == "fpn"]
    fpn = [(c.rpn_pre_nms_top_n_train, c.rpn_post_nms_top_n_train) for c in fpn]
    assert fpn and set(fpn) == {(1000, 500)}
    assert get_config("classroom_fpn").model.rpn_post_nms_top_n_train == 300
    assert all(m(r.key).detections_per_image == 20 for r in RUNS)


def test_rows_claims_and_paper_numbers_agree() -> None:
    tables = paper_numbers()["tables"]
    for row in ROWS:
        assert row.run in RUN_BY_KEY, row
        assert row.paper in tables[row.table]["rows"], row
    for t in TABLES:
        assert sum(r.baseline for r in ROWS if r.table == t) == 1, t
    for claim in CLAIMS:
        for run, _ in (*claim.plus, *claim.minus):
            assert run in RUN_BY_KEY, claim.key
    # spot-check the transcription against the paper's printed values
    assert paper_value("2c", "RoIPool (max)", "mask_AP75") == 26.4
    assert paper_value("2d", "RoIAlign", "box_AP") == 34.0
    assert paper_value("3", "Mask R-CNN", "box_AP50") == 60.3
    assert paper_value("agnostic", "class-agnostic", "mask_AP50") is None


def test_select_by_table_names() -> None:
    rows, runs = select(["c", "2d"])
    assert {r.table for r in rows} == {"2c", "2d"}
    assert [r.key for r in runs] == [r.key for r in RUNS if r.key.startswith(("c4_roi", "c5_"))]
    assert [r.key for r in select(["t3"])[1]] == ["fpn_fcn", "fpn_faster"]
    with pytest.raises(ValueError, match="unknown table.*2z"):
        select(["2z"])


def test_run_grid_rejects_bad_input_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown grid preset 'fast'"):
        run_grid(preset="fast", out=tmp_path)
    with pytest.raises(ConfigError, match="model.roi_opp"):
        run_grid(["2d"], preset="smoke", out=tmp_path, overrides=["model.roi_opp=roi_pool"], progress=False)
    assert not (tmp_path / "_trunk").exists()


def test_trunk_files_of_equal_weights_are_byte_equal(tmp_path: Path) -> None:
    """The trunk's sha256 identifies its weights: saved twice (other folders and temp names), same bytes."""
    weights = {"conv1.weight": torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    save_weights(weights, tmp_path / "a" / "trunk.pth")
    save_weights(weights, tmp_path / "b" / "other.pth")
    assert sha256(tmp_path / "a" / "trunk.pth") == sha256(tmp_path / "b" / "other.pth")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "other.pth", "trunk.pth"]  # no temp left
    loaded = torch.load(tmp_path / "a" / "trunk.pth", weights_only=True)
    assert torch.equal(loaded["conv1.weight"], weights["conv1.weight"])


def test_2a_runs_load_the_trunk_of_their_depth() -> None:
    grid = GRID_PRESETS["cpu"]
    trunks = {b: {"path": f"{b}.pth", "sha256": b[-2:]} for b in ("resnet18", "resnet34")}
    rows = {r.label: r.run for r in select(["a"])[0]}
    assert (
        rows["R18-C4"] == "c4_roialign_avg" and rows["R18-FPN"] == "fpn_fcn"
    )  # trained once, shared with 2c/2e
    for label, depth in (("R18-C4", "resnet18"), ("R34-C4", "resnet34"), ("R34-FPN", "resnet34")):
        run = RUN_BY_KEY[rows[label]]
        params = run_params(run, 1, grid, trunks, [])
        assert (
            f"model.weights_path={depth}.pth" in params["OVERRIDES"] and params["TRUNK_SHA256"] == depth[-2:]
        )
        assert get_config(run.preset, list(run.overrides)).model.backbone == depth
    with pytest.raises(ValueError, match="a_r34_c4.*resnet34 trunk"):
        run_params(RUN_BY_KEY["a_r34_c4"], 0, grid, {"resnet18": trunks["resnet18"]}, [])
    # the e2e grid shares no trunk: every run trains from scratch with its preset's schedule
    e2e = run_params(RUN_BY_KEY["a_r34_c4"], 0, GRID_PRESETS["e2e"], None, [])
    assert not any("weights_path" in o for o in e2e["OVERRIDES"]) and e2e["MAX_ITER"] is None


def test_a_run_is_finished_when_its_recorded_config_is_what_its_parameters_resolve_to(tmp_path: Path) -> None:
    """The skip rule compares configs, not override strings: spelled differently, the same run is skipped;
    spelled the same after its preset changed, it is retrained; any other parameter must be equal."""
    from mrcnn_lite.ablations.runner import experiment_config
    from mrcnn_lite.config import to_dict

    params = {
        "RUN": "c5_roialign", "PRESET": "classroom_c5", "SEED": 1, "MAX_ITER": 40, "MAX_VAL_IMAGES": 8,
        "OVERRIDES": ["model.roi_op=roi_align", "model.weights_path=/old/trunk.pth", "model.freeze_at=5"],
        "GRID_PRESET": "smoke", "TRUNK_SHA256": "ab12",
    }  # fmt: skip
    config = to_dict(experiment_config(params))  # what the experiment notebook records

    def record(config: dict | None, params: dict = params) -> Path:
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps({"params": params, "config": config}))
        return run_dir

    run_dir = tmp_path / "run"
    assert not finished(run_dir, params)  # nothing there yet
    assert finished(record(config), params)
    preset_value = get_config("classroom_c5").model.roi_batch_size_per_image
    respelled = {
        **params, "OVERRIDES": ["model.freeze_at=5", f"model.roi_batch_size_per_image={preset_value}",
                                "model.weights_path=/new/trunk.pth", "model.roi_op=roi_align"],
    }  # fmt: skip
    assert finished(run_dir, respelled)  # reordered, a preset value pinned, the same trunk moved
    assert not finished(run_dir, {**params, "OVERRIDES": ["model.roi_op=roi_pool"]})
    assert not finished(run_dir, {**params, "TRUNK_SHA256": "cd34"})  # another trunk
    assert not finished(run_dir, {**params, "SEED": 2}) and not finished(run_dir, {**params, "MAX_ITER": 80})
    assert not finished(run_dir, {**params, "OVERRIDES": ["model.roi_op=no_such_op"]})  # does not resolve

    stale = json.loads(json.dumps(config))  # trained when the preset sampled another number of RoIs
    stale["model"]["roi_batch_size_per_image"] = preset_value + 1
    assert not finished(record(stale), params)

    # a field the config classes gained after the run: at its default it is what the run did, else stale
    older = json.loads(json.dumps(config))
    del older["model"]["roi_batch_size_per_image"], older["train"]["clip_grad_norm"]
    default_model, default_train = ModelConfig(), TrainConfig()
    at_defaults = [
        f"model.roi_batch_size_per_image={default_model.roi_batch_size_per_image}",
        f"train.clip_grad_norm={str(default_train.clip_grad_norm).lower()}",
    ]
    assert finished(record(older), {**params, "OVERRIDES": [*params["OVERRIDES"], *at_defaults]})
    assert not finished(run_dir, params)  # the preset sets the "new" field to a non-default value
    assert get_config("classroom_c5").model.roi_batch_size_per_image != default_model.roi_batch_size_per_image

    assert finished(record(None), params) and not finished(run_dir, respelled)  # no config: exact params
    (run_dir / "metrics.json").write_text('{"params": ')  # cut short
    assert not finished(run_dir, params)


REPO = Path(__file__).resolve().parents[1]
SMOKE_RUNS = ("c5_roipool", "c5_roialign")  # Table 2d: the smallest sub-table (two runs), in the grid's order
SMOKE_TABLES = ("table2_smoke.csv", "table2_smoke_claims.csv")
GRID_TIMEOUT = 600  # seconds for one smoke grid command (about 1 min on 2 idle cores)


@pytest.fixture(scope="module")
def smoke_2d(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GridResult]:
    """Table 2d x one seed with the smoke schedule, run straight through once for the module (two kernels
    at once): ``(root, result)`` with ``runs/``, ``results/`` and ``figures/`` under ``root``."""
    root = tmp_path_factory.mktemp("smoke_2d")
    res = run_grid(
        ["2d"], seeds=1, preset="smoke", progress=False, jobs=2, out=root / "runs", results=root / "results",
        figures=root / "figures", overrides=[f"data.root={shapes_small}"],
    )  # fmt: skip
    return root, res


@pytest.mark.slow
def test_smoke_grid_through_papermill(shapes_small: Path, smoke_2d: tuple[Path, GridResult]) -> None:
    """Two rows (Table 2d) x one seed with the smoke schedule: trunk, papermill runs, assembled table;
    a second call skips everything."""
    root, res = smoke_2d
    out, results, figures = root / "runs", root / "results", root / "figures"
    kwargs = dict(out=out, results=results, figures=figures, overrides=[f"data.root={shapes_small}"])
    assert res.statuses == {("c5_roipool", 0): "done", ("c5_roialign", 0): "done"}

    assert list(res.trunks) == ["resnet18"]  # 2d needs no ResNet-34 trunk
    trunk_model = res.trunks["resnet18"]["config"]["model"]  # trained with the committed table's proposals
    assert (trunk_model["rpn_pre_nms_top_n_train"], trunk_model["rpn_post_nms_top_n_train"]) == (1000, 500)
    trunk = torch.load(res.trunks["resnet18"]["path"], weights_only=True)
    for key in ("c5_roipool", "c5_roialign"):
        run_dir = out / key / "seed0"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["run"] == key and metrics["seed"] == 0 and metrics["iterations"] == 4
        assert metrics["val_images"] == 6  # max_val_images=8, the small set has 6
        assert 0.0 <= metrics["segm"]["AP"] <= 1.0 and 0.0 <= metrics["bbox"]["AP75"] <= 1.0
        assert metrics["config"]["model"]["freeze_at"] == 5
        nb = nbformat.read(run_dir / "run.ipynb", as_version=4)
        assert not [
            o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
        ]
        # the frozen trunk came from the shared trunk file and did not move
        body = {k.removeprefix("backbone.body."): v for k, v in read_checkpoint(run_dir / "model_final.pth")[
            "model"].items() if k.startswith("backbone.body.")}  # fmt: skip
        for name in ("conv1.weight", "layer4.1.conv2.weight", "layer3.0.bn1.running_mean"):
            torch.testing.assert_close(body[name], trunk[name], rtol=0, atol=0)

    md = (results / "table2_smoke.md").read_text()
    assert "RoIAlign" in md and "RoIPool" in md and "2(d)" in md
    assert "grid wall time: " in md and "trunk" in md and str(root) not in md.split("runs: ")[0]
    csv_text = (results / "table2_smoke.csv").read_text()
    assert "c5_roialign" in csv_text and "c5_roipool" in csv_text
    assert (figures / "table2_smoke.png").stat().st_size > 1000

    before = (out / "c5_roipool" / "seed0" / "metrics.json").stat().st_mtime_ns
    again = run_grid(["2d"], seeds=1, preset="smoke", progress=False, **kwargs)
    assert set(again.statuses.values()) == {"skipped"}
    assert (out / "c5_roipool" / "seed0" / "metrics.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_failed_run_is_recorded_with_its_error(tmp_path: Path) -> None:
    params = {
        "RUN": "broken", "PRESET": "classroom_c5", "OVERRIDES": ["model.roi_mode=median"], "SEED": 0,
        "MAX_ITER": 2, "MAX_VAL_IMAGES": 2, "GRID_PRESET": "smoke", "TRUNK_SHA256": None,
    }  # fmt: skip
    assert run_one(params, tmp_path / "broken") == "failed"
    error = json.loads((tmp_path / "broken" / "error.json").read_text())
    assert error["run"] == "broken" and "model.roi_mode" in error["error"] and "median" in error["error"]
    assert (tmp_path / "broken" / "run.ipynb").is_file() and not (
        tmp_path / "broken" / "metrics.json"
    ).exists()


def test_best_mask_iou_per_object_by_hand() -> None:
    """qualitative._best_ious: per ground-truth object, the best same-class mask IoU among detections above
    the score threshold (0 when none), checked against IoUs counted by hand."""
    import numpy as np
    import pycocotools.mask as mask_utils
    from pycocotools.coco import COCO

    from mrcnn_lite.ablations.qualitative import _best_ious

    coco = COCO()
    square = [[2, 2, 6, 2, 6, 6, 2, 6]]  # pixels 2..5 x 2..5: 16 pixels
    coco.dataset = {
        "images": [{"id": 1, "height": 10, "width": 10}],
        "categories": [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}],
        "annotations": [
            {"id": i, "image_id": 1, "category_id": c, "segmentation": square, "area": 16,
             "bbox": [2, 2, 4, 4], "iscrowd": 0}
            for i, c in ((1, 7), (2, 8))
        ],
    }  # fmt: skip
    coco.createIndex()

    def rle(y0: int, x0: int) -> dict:
        m = np.zeros((10, 10), dtype=np.uint8, order="F")
        m[y0 : y0 + 4, x0 : x0 + 4] = 1
        return mask_utils.encode(m)

    results = [
        {"image_id": 1, "category_id": 7, "score": 0.9, "segmentation": rle(3, 2)},  # shifted 1 row: 12 / 20
        {"image_id": 1, "category_id": 7, "score": 0.8, "segmentation": rle(2, 2)},  # exact, but below 0.85
        {"image_id": 1, "category_id": 8, "score": 0.2, "segmentation": rle(2, 2)},  # class 8, below 0.85
    ]
    ious = _best_ious(coco, results, score_thresh=0.85)
    assert ious == {1: pytest.approx(12 / 20), 2: 0.0}
    assert _best_ious(coco, results, score_thresh=0.1) == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


# ---------------------------------------------------------------- the runner under faults


def grid_command(root: Path, data: Path) -> list[str]:
    return [
        sys.executable, "-m", "mrcnn_lite", "table2", "--preset", "smoke", "--rows", "d", "--seeds", "1",
        "--jobs", "2", "--quiet", "--out", str(root / "runs"), "--results", str(root / "results"),
        "--figures", str(root / "figures"), "--set", f"data.root={data}",
    ]  # fmt: skip


def run_grid_command(root: Path, data: Path) -> str:
    proc = subprocess.run(
        grid_command(root, data), cwd=REPO, capture_output=True, text=True, timeout=GRID_TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def table_body(md: Path) -> str:
    """The markdown table without its header (wall time, paths and date differ from run to run)."""
    text = md.read_text()
    return text[text.index("\n## ") :]


def assert_same_grid(got: Path, ref: Path) -> None:
    """Same tables (byte for byte), same metrics and same trained weights in every run."""
    for name in SMOKE_TABLES:
        assert (got / "results" / name).read_bytes() == (ref / "results" / name).read_bytes(), name
    assert table_body(got / "results" / "table2_smoke.md") == table_body(ref / "results" / "table2_smoke.md")
    for run in SMOKE_RUNS:
        mine, theirs = (root / "runs" / run / "seed0" for root in (got, ref))
        a, b = read_record(mine / "metrics.json"), read_record(theirs / "metrics.json")
        assert a is not None and b is not None, run
        for key in ("bbox", "segm", "iterations", "val_images"):
            assert a[key] == b[key], (run, key)
        assert a["params"]["TRUNK_SHA256"] == b["params"]["TRUNK_SHA256"]
        # the AP of 4 iterations is 0 on both sides: the weights are what tells two trainings apart
        wa, wb = (read_checkpoint(d / "model_final.pth")["model"] for d in (mine, theirs))
        assert wa.keys() == wb.keys()
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0, msg=f"{run}: {name}")


def kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL the runner's process group and every process under it (papermill's kernels run in sessions
    of their own), as a power cut or the OOM killer would: frozen first, so nothing new starts meanwhile."""
    psutil = pytest.importorskip("psutil")  # installed with ipykernel
    os.killpg(proc.pid, signal.SIGSTOP)
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=30)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_run_then_the_same_command_gives_the_uninterrupted_grid(
    smoke_2d: tuple[Path, GridResult], shapes_small: Path, tmp_path: Path
) -> None:
    """``python -m mrcnn_lite table2`` killed (SIGKILL, runner and kernels) while the first run trains, then
    run again: the same tables byte for byte, the same metrics and the same weights as straight through."""
    uninterrupted = smoke_2d[0]
    # the trunk is done (a copy of the reference's, same bytes): the kill lands in the runs
    shutil.copytree(uninterrupted / "runs" / "_trunk", tmp_path / "runs" / "_trunk")
    first = tmp_path / "runs" / SMOKE_RUNS[0] / "seed0"
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            grid_command(tmp_path, shapes_small), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + GRID_TIMEOUT
        try:  # kill once the first run has written its mid-training checkpoint (iteration 2 of 4)
            while not (first / "model_0000002.pth").exists():
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "the first run never checkpointed"
                time.sleep(0.02)
        finally:
            kill_everything(proc)
    assert proc.returncode == -signal.SIGKILL
    # killed in the middle of training (a checkpoint, no final weights, no metrics), before any table;
    # the second run (started 8 s after the first: two kernels at once) is normally unfinished too
    assert not (first / "model_final.pth").exists() and not (first / "metrics.json").exists()
    assert not (tmp_path / "results" / SMOKE_TABLES[0]).exists()
    unfinished = [r for r in SMOKE_RUNS if not (tmp_path / "runs" / r / "seed0" / "metrics.json").exists()]

    out = run_grid_command(tmp_path, shapes_small)  # the same command again
    assert f"runs: {len(unfinished)} trained, {2 - len(unfinished)} already done, 0 failed" in out, out
    assert_same_grid(tmp_path, uninterrupted)


@pytest.mark.slow
def test_damaged_records_are_redone_and_the_table_is_the_uninterrupted_one(
    smoke_2d: tuple[Path, GridResult], shapes_small: Path, tmp_path: Path
) -> None:
    """A run's metrics.json cut short makes that run redo (the other is skipped); a trunk.json cut short
    makes the trunk be recomputed (from its final checkpoint: same weights, so no run is invalidated)."""
    uninterrupted, root = smoke_2d[0], tmp_path / "grid"
    shutil.copytree(uninterrupted, root)
    shutil.rmtree(root / "results")
    damaged = root / "runs" / SMOKE_RUNS[1] / "seed0" / "metrics.json"
    kept = root / "runs" / SMOKE_RUNS[0] / "seed0" / "metrics.json"
    for path in (damaged, root / "runs" / "_trunk" / "trunk.json"):
        text = path.read_text()
        path.write_text(text[: len(text) // 2])
    kept_mtime = kept.stat().st_mtime_ns

    out = run_grid_command(root, shapes_small)
    assert "runs: 1 trained, 1 already done, 0 failed" in out, out
    assert kept.stat().st_mtime_ns == kept_mtime  # the intact run was not touched
    assert read_record(root / "runs" / "_trunk" / "trunk.json") is not None
    assert_same_grid(root, uninterrupted)


@pytest.mark.parametrize(
    "content",
    [b'{"params": {"RUN": "c5_roi', b"", b"\xff\xfe\x00garbage", b"[1, 2]", b"null"],
    ids=["truncated", "empty", "not-utf8", "a-list", "null"],
)
def test_a_damaged_metrics_file_is_no_record_and_does_not_outlive_a_failed_redo(
    tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any damaged metrics.json means "not finished" (never an exception that would stop the grid); when the
    redo then fails, the damaged file is gone (the report reads every metrics.json) and error.json stays."""
    params = {
        "RUN": "c5_roialign", "PRESET": "classroom_c5", "OVERRIDES": [], "SEED": 0, "MAX_ITER": 2,
        "MAX_VAL_IMAGES": 2, "GRID_PRESET": "smoke", "TRUNK_SHA256": None,
    }  # fmt: skip
    monkeypatch.setattr(runner, "KERNEL_START_GAP", 0.0)  # no kernel starts here: no need to space them
    run_dir = tmp_path / "c5_roialign" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_bytes(content)
    assert read_record(run_dir / "metrics.json") is None
    assert not finished(run_dir, params)
    assert run_one(params, run_dir, kernel="no-such-kernel") == "failed"  # fails fast: no kernel starts
    assert not (run_dir / "metrics.json").exists()
    error = json.loads((run_dir / "error.json").read_text())
    assert error["run"] == "c5_roialign" and "no-such-kernel" in error["error"]

    from mrcnn_lite.ablations.report import load_failures, load_runs

    assert load_runs(tmp_path) == {} and [f["run"] for f in load_failures(tmp_path)] == ["c5_roialign"]
