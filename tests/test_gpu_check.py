"""benchmarks/gpu_check.py (``make gpu-check``) on the CPU: its dry run, so that the GPU check cannot rot
between the sessions that have a GPU, and its stage isolation (a crashed or hung stage is recorded and the
others still run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
STAGES = ["env", "build", "cuda_tests", "roi_bench", "train_amp", "r50_800"]


def run(tmp_path: Path, *args: str, fault: str = "", cuda: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "MRCNN_LITE_GPU_CHECK_FAULT": fault}
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--results",
        str(tmp_path / "results"),
        "--out",
        str(tmp_path / "out"),
    ]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def report(tmp_path: Path, name: str = "gpu_check_dryrun_cpu.json") -> dict:
    saved = json.loads((tmp_path / "results" / name).read_text())
    assert json.loads((tmp_path / "out" / name).read_text()) == saved  # the copy for the device's $OUT
    return saved


@pytest.mark.slow
def test_dry_run_passes_every_stage_and_prints_the_table(tmp_path: Path) -> None:
    result = run(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    r = report(tmp_path)
    assert r["dry_run"] is True and list(r["stages"]) == STAGES
    assert {s: v["status"] for s, v in r["stages"].items()} == dict.fromkeys(STAGES, "ok")
    st = r["stages"]
    assert st["build"]["before"]["ok"] is True  # the extension make built loads and agrees with torchvision
    assert st["cuda_tests"]["files"] and st["cuda_tests"]["skipped_for_no_gpu"] > 0  # found; no GPU here
    assert st["cuda_tests"]["passed"] == st["cuda_tests"]["failed"] == 0
    rows = st["roi_bench"]["rows"]
    assert {(r["size"], r["pass"]) for r in rows} == {
        (7, "fwd"),
        (7, "fwd+bwd"),
        (14, "fwd"),
        (14, "fwd+bwd"),
    }
    assert all(r["boxes"] == 8 and r["ms_ours"] > 0 and r["ms_torchvision"] > 0 for r in rows)
    assert all(r["max_abs_diff"] < 1e-4 for r in rows if r["pass"] == "fwd")
    for model in ("classroom_fpn", "coco_r50_fpn"):
        run_ = st["train_amp"]["runs"][model]
        assert len(run_["total_loss"]) == 2 and all(abs(v) < 1e4 for v in run_["total_loss"])
    modes = st["r50_800"]["modes"]
    assert modes["fp32"]["train_images_per_s"] > 0 and modes["fp32"]["inference_images_per_s"] > 0
    assert modes["amp"]["losses_finite"] is True
    table = result.stdout[result.stdout.index("| stage |") :]
    assert all(f"| {s} |" in table for s in STAGES) and "6 of 6 stages passed" in table
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("=====") == len(STAGES)


def test_a_crashed_stage_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    result = run(tmp_path, "--dry-run", "--stages", "env,build", fault="crash:env")
    assert result.returncode == 1
    st = report(tmp_path)["stages"]
    assert st["env"]["status"] == "crashed" and "exit 3" in st["env"]["summary"]
    assert st["build"]["status"] == "ok"
    assert "1 of 2 stages passed; failed: env" in result.stdout


def test_a_hung_stage_is_killed_at_its_budget(tmp_path: Path) -> None:
    result = run(tmp_path, "--dry-run", "--stages", "env", "--budget", "1", fault="hang:env")
    assert result.returncode == 1
    env = report(tmp_path)["stages"]["env"]
    assert env["status"] == "timeout" and 9 < env["seconds"] < 60  # at least 10 s are always allowed


def test_without_a_gpu_it_says_so_and_succeeds(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 0
    assert "no CUDA GPU is visible" in result.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "out").exists()  # nothing written
