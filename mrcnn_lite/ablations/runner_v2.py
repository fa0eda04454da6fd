"""Run Table 2 v2 (:mod:`.grid_v2`) in resumable parts whose small results are committed.

- **Trunks** (:func:`ensure_trunk`): each pretrained once (:func:`mrcnn_lite.engine.pretrain.pretrain`,
  resumable in ``runs/table2_v2/trunks/<key>/``); the trunk's weights and its record (accuracy along the
  schedule, cost) go to ``results/table2_v2/trunks/<key>.{pth,json}``, committed: every later part, on
  any machine, fine-tunes from the very same weights.
- **Runs** (:func:`run_one`): each (run, seed) trains in its own child process (a crash or a divergence
  loses that run only) in ``runs/table2_v2/<run>/seed<k>/`` (checkpoints: ignored, resumable), stopping at
  each of ``EVAL_POINTS`` to evaluate COCO AP on the val images; its record,
  ``results/table2_v2/runs/<run>/seed<k>.json`` (the AP curve, the cost, the config), is written when the
  run is done and is what the skip rule reads (:func:`finished`), so a part that stops (``max_hours``, a
  killed job) resumes from the committed records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mrcnn_lite.ablations.grid_v2 import (
    EVAL_POINTS,
    GRIDS_V2,
    RUN_BY_KEY_V2,
    RUNS_V2,
    GridV2,
    RunV2,
    Trunk,
    trunk_for,
)
from mrcnn_lite.ablations.records import read_record
from mrcnn_lite.atomic import write_json
from mrcnn_lite.provenance import cpu_name, repo_root

RESULTS = Path("results") / "table2_v2"


def default_results(grid_name: str) -> Path:
    """Where a grid's run records go: ``results/table2_v2`` (committed) for the ``cpu`` grid, an ignored
    ``build/table2_v2_<grid>`` for the lab and CI grids (their shorter runs are other runs)."""
    return RESULTS if grid_name == "cpu" else Path("build") / f"table2_v2_{grid_name}"
WORK = Path("runs") / "table2_v2"


def trunk_files(trunk: Trunk, results: Path) -> tuple[Path, Path]:
    """``(weights, record)`` of a trunk under ``results/trunks``."""
    base = results / "trunks" / trunk.key
    return base.with_suffix(".pth"), base.with_suffix(".json")


def committed_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The trunk as committed: floating tensors in float16 (half the bytes in git; the fine-tuned model loads
    them into float32 parameters, so every run on every machine starts from exactly these values), integer
    buffers (BatchNorm's step counter) as they are."""
    import torch

    return {k: v.half() if torch.is_floating_point(v) else v for k, v in state.items()}


def ensure_trunk(trunk: Trunk, results: Path, work: Path, progress: bool = True) -> dict[str, Any]:
    """The trunk's record, pretraining it first (resumably) unless its committed files match its config."""
    import torch

    from mrcnn_lite.engine.pretrain import pretrain, state_sha256, trunk_path

    weights, record_path = trunk_files(trunk, results)
    record = read_record(record_path)
    if record and record.get("config") == asdict(trunk.config) and weights.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if state_sha256(state) == record.get("weights_sha256"):
            return record
    record = pretrain(trunk.config, work / "trunks" / trunk.key, progress=progress)
    state = torch.load(trunk_path(work / "trunks" / trunk.key), map_location="cpu", weights_only=True)
    from mrcnn_lite.ablations.runner import save_weights

    state = committed_weights(state)
    save_weights(state, weights)
    record = {**record, "weights": str(weights), "weights_sha256": state_sha256(state)}
    write_json(record_path, record)
    return record


def run_params(run: RunV2, seed: int, grid: GridV2, trunk: dict[str, Any]) -> dict[str, Any]:
    """What one (run, seed) is: the skip rule compares a record's ``params`` with these."""
    return {
        "run": run.key, "seed": seed, "preset": run.preset, "overrides": list(run.overrides),
        "trunk": trunk["config"], "trunk_sha256": trunk["weights_sha256"], "max_iter": grid.max_iter,
        "max_val_images": grid.max_val_images, "eval_points": list(EVAL_POINTS),
        "decodings": dict(run.decodings),
    }  # fmt: skip


def run_config(params: dict[str, Any], weights: Path, extra: tuple[str, ...] = ()):  # noqa: ANN201
    """The :class:`~mrcnn_lite.config.Config` a record's ``params`` train (``extra``: test-time overrides)."""
    from mrcnn_lite.config import get_config, rescale_schedule

    cfg = get_config(params["preset"], [*params["overrides"], *extra, f"model.weights_path={weights}",
                                        f"seed={params['seed']}"])  # fmt: skip
    if params["max_iter"] is not None:
        cfg = rescale_schedule(cfg, params["max_iter"])
    return cfg


def result_path(results: Path, run: str, seed: int) -> Path:
    return results / "runs" / run / f"seed{seed}.json"


def finished(path: Path, params: dict[str, Any]) -> bool:
    """A committed record of the same ``params`` with an evaluation at every point."""
    record = read_record(path)
    return bool(record) and record.get("params") == params and len(record.get("schedule", [])) == len(
        params["eval_points"]
    )


def _points(max_iter: int) -> list[int]:
    return sorted({max(1, round(f * max_iter)) for f in EVAL_POINTS})


def _prepare(work: Path, params: dict[str, Any]) -> None:
    """A work folder holding another run's checkpoints (other ``params``) is cleared first."""
    import shutil

    if work.exists() and read_record(work / "params.json") != params:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / "params.json", params)


def train_and_record(params: dict[str, Any], weights: Path, work: Path, out: Path) -> dict[str, Any]:
    """Train one (run, seed) in ``work``, stopping at each evaluation point to evaluate (each evaluation
    cached in ``work``, so a killed run resumes where it was), then write its record to ``out``."""
    from mrcnn_lite.engine.run import evaluate_run, plain_config
    from mrcnn_lite.engine.trainer import train
    from mrcnn_lite.provenance import git_commit

    _prepare(work, params)
    cfg = run_config(params, weights)
    schedule: list[dict[str, Any]] = []
    for point in _points(cfg.train.max_iter):
        path = work / f"eval_{point:07d}.json"
        entry = read_record(path)
        if entry is None:
            t0, c0 = time.perf_counter(), time.process_time()
            model = train(cfg, work, resume=True, max_iter=point, progress=False)["model"].eval()
            seconds = {
                "train_seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - c0
            }
            entry = {"iteration": point, **seconds, **evaluate_run(cfg, model, params["max_val_images"])}
            for name, decode in params["decodings"].items():
                model.roi_heads.mask_decode = decode  # the same weights, another decision rule
                entry[f"segm_{name}"] = evaluate_run(cfg, model, params["max_val_images"])["segm"]
                model.roi_heads.mask_decode = cfg.model.mask_decode
            write_json(path, entry)
        schedule.append(entry)
    record = {
        "params": params, "schedule": schedule, "config": plain_config(cfg),
        "train_seconds": sum(e["train_seconds"] for e in schedule),
        "train_cpu_seconds": sum(e["train_cpu_seconds"] for e in schedule),
        "eval_seconds": sum(e["eval_seconds"] for e in schedule),
        "threads": _threads(), "cpu": cpu_name(), "commit": git_commit(),
    }  # fmt: skip
    write_json(out, record)
    return record


def _threads() -> int:
    import torch

    return torch.get_num_threads()



def run_one(params: dict[str, Any], weights: Path, work: Path, out: Path, threads: int) -> str:
    """One (run, seed) in a child process with ``threads`` torch threads: "done", "skipped" or "failed"
    (the child's last lines of output then go to ``work/error.log``; the grid carries on)."""
    if finished(out, params):
        return "skipped"
    work.mkdir(parents=True, exist_ok=True)
    job = {"params": params, "weights": str(weights), "work": str(work), "out": str(out)}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "mrcnn_lite.ablations.runner_v2", "--one", json.dumps(job)],
                          env=env, capture_output=True, text=True, cwd=repo_root())  # fmt: skip
    if proc.returncode == 0 and finished(out, params):
        (work / "error.log").unlink(missing_ok=True)
        return "done"
    (work / "error.log").write_text(f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return "failed"


def todo(grid: GridV2, runs: list[str] | None, seeds: int | None) -> list[tuple[RunV2, int]]:
    """The grid's (run, seed) pairs in order: seed 0 of every run first, so a part that stops early has
    whole tables for its first seeds. ``runs`` (keys) and ``seeds`` narrow the grid preset's."""
    keys = runs or grid.runs or [r.key for r in RUNS_V2]
    unknown = [k for k in keys if k not in RUN_BY_KEY_V2]
    if unknown:
        raise ValueError(f"unknown run(s) {', '.join(unknown)}; valid: {', '.join(RUN_BY_KEY_V2)}")
    n = grid.seeds if seeds is None else seeds
    return [(RUN_BY_KEY_V2[k], s) for s in range(n) for k in keys]


def run_grid(grid_name: str = "cpu", runs: list[str] | None = None, seeds: int | None = None,
             max_hours: float | None = None, jobs: int = 2, results: Path | None = None,
             work: Path = WORK, trunks_dir: Path = RESULTS,
             progress: bool = True) -> dict[tuple[str, int], str]:  # fmt: skip
    """Run what is not finished of ``grid_name`` (``GRIDS_V2``), ``jobs`` runs at a time, each with
    ``cores // jobs`` threads; no new run starts after ``max_hours`` (the part's budget). Run records go
    to ``results`` (default :func:`default_results`), trunks to ``trunks_dir/trunks`` (every grid shares
    them). Returns every (run, seed)'s status: "done", "skipped" (finished before), "failed" or "not
    started"."""
    from concurrent.futures import ThreadPoolExecutor

    grid = GRIDS_V2[grid_name]
    results = Path(results) if results is not None else default_results(grid_name)
    work_root, trunks_dir = Path(work), Path(trunks_dir)
    work = work_root / grid_name
    pairs = todo(grid, runs, seeds)
    start = time.monotonic()
    trunks: dict[Trunk, dict[str, Any]] = {}
    for t in dict.fromkeys(trunk_for(r.backbone, s) for r, s in pairs):
        trunks[t] = ensure_trunk(t, trunks_dir, work_root, progress)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    statuses: dict[tuple[str, int], str] = {}

    def one(run: RunV2, seed: int) -> None:
        if max_hours is not None and time.monotonic() - start > max_hours * 3600:
            statuses[(run.key, seed)] = "not started"
            return
        trunk = trunk_for(run.backbone, seed)
        params = run_params(run, seed, grid, trunks[trunk])
        weights = trunk_files(trunk, trunks_dir)[0]
        tic = time.perf_counter()
        status = run_one(params, weights, work / run.key / f"seed{seed}",
                         result_path(results, run.key, seed), threads)  # fmt: skip
        statuses[(run.key, seed)] = status
        if progress:
            print(f"[table2 v2 {grid_name}] {run.key} seed {seed}: {status} "
                  f"({time.perf_counter() - tic:.0f} s)", flush=True)  # fmt: skip

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda p: one(*p), pairs))
    return {(r.key, s): statuses[(r.key, s)] for r, s in pairs}


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m mrcnn_lite.ablations.runner_v2")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--grid", default="cpu", choices=list(GRIDS_V2))
    p.add_argument("--runs", help="comma-separated run keys (default: the grid's)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--max-hours", type=float, help="start no run after this many hours (a part's budget)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if args.one:
        job = json.loads(args.one)
        train_and_record(job["params"], Path(job["weights"]), Path(job["work"]), Path(job["out"]))
        return
    runs = args.runs.split(",") if args.runs else None
    statuses = run_grid(args.grid, runs, args.seeds, args.max_hours, args.jobs)
    counts = {s: sum(v == s for v in statuses.values()) for s in set(statuses.values())}
    print(f"[table2 v2 {args.grid}] " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    from mrcnn_lite.ablations import report_v2

    results = default_results(args.grid)
    name = "table2_v2" if args.grid == "cpu" else f"table2_v2_{args.grid}"
    figures = Path("figures") if args.grid == "cpu" else results
    files = report_v2.build(results, results.parent if args.grid == "cpu" else results, figures, name=name)
    print("wrote " + ", ".join(map(str, files)))


if __name__ == "__main__":
    main()
