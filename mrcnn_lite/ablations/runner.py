"""Run the Table 2 grid with papermill, resumably, and assemble the table (``python -m mrcnn_lite table2``).

Every (run, seed) executes ``notebooks/experiments/ablation_run.ipynb`` through papermill with the run's
preset, overrides, seed and schedule as parameters; the executed notebook (``run.ipynb``), the training
outputs and ``metrics.json`` stay in ``<out>/<run>/seed<k>/``. The order is fixed: the shared trunks
first (when the grid preset has them: ResNet-18 in ``_trunk/``, ResNet-34 for 2a in
``_trunk_resnet34/``), then seed 0 of every run, seed 1 of every run, ... so that an interrupted
reproduction already holds whole tables for its first seeds.

- **Resumable**: a (run, seed) whose ``metrics.json`` records the same parameters, and the config they
  resolve to now, is skipped (:func:`~mrcnn_lite.ablations.records.finished`, which resolves them with
  the notebook's own :func:`~mrcnn_lite.ablations.records.experiment_config`); an interrupted one resumes
  from its last checkpoint. The notebook and the shared trunks train, evaluate and record through the
  same :mod:`mrcnn_lite.engine.run` functions (``train_or_resume``, ``evaluate_run``, ``run_record``).
- **Failures are kept, not fatal**: a run that raises leaves ``error.json`` (the error and the executed
  notebook's traceback stay in ``run.ipynb``) and the grid carries on; a later invocation retries it.
- ``log.jsonl`` in ``<out>`` gets one line per attempt (run, seed, status, wall seconds), from which the
  report takes the grid's wall time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mrcnn_lite.ablations.grid import GRID_PRESETS, TRUNK_PRESET, GridPreset, Run, select
from mrcnn_lite.ablations.records import experiment_config, finished, read_record, run_params, same_config
from mrcnn_lite.atomic import atomic_path, write_json
from mrcnn_lite.kernels import kernel_manager_config
from mrcnn_lite.provenance import repo_root

__all__ = [  # the skip rule's names stay importable from here
    "GridResult", "experiment_config", "finished", "read_record", "run_grid", "run_one", "run_params",
    "save_weights", "shared_trunk",
]  # fmt: skip

TEMPLATE = Path("notebooks") / "experiments" / "ablation_run.ipynb"
TRUNK_SEED = 0
TRUNK_CHECKPOINTS = 4  # checkpoints along the trunk's run (its resume points)


def save_weights(state_dict: dict[str, Any], path: Path) -> None:
    """``torch.save`` atomically, and so that the same weights give the same bytes (and sha256) wherever
    they are saved: through a file object, since torch names the archive inside the file after a path
    it is given (here a random temp name)."""
    import torch

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(state_dict, f)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log(out: Path, **entry: Any) -> None:
    entry["time"] = datetime.now(UTC).isoformat(timespec="seconds")
    entry["end"] = time.time()
    with (out / "log.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def trunk_folder(out: Path, backbone: str) -> Path:
    """Where the shared trunk of ``backbone`` lives: ``<out>/_trunk`` (ResNet-18), ``<out>/_trunk_<name>``."""
    return out / ("_trunk" if backbone == "resnet18" else f"_trunk_{backbone}")


def shared_trunk(
    grid: GridPreset,
    out: Path,
    overrides: list[str] | None = None,
    progress: bool = True,
    backbone: str = "resnet18",
) -> dict[str, Any] | None:
    """Train (or reuse) the grid's shared trunk of ``backbone``: ``table2_trunk`` with that ResNet (seed 0,
    ``grid.trunk_iters`` iterations, with the grid's ``overrides``), its ResNet saved as
    ``trunk_folder(out, backbone)/trunk.pth`` (a torchvision-layout state_dict that ``model.weights_path``
    loads). Also evaluates that FPN model, so the table says how good the trunk is. Returns
    ``trunk.json``'s content (path, sha256, config, AP, seconds), or None without a shared trunk."""
    if not grid.shared_trunk:
        return None

    from mrcnn_lite.engine.run import plain_config, run_config, train_and_evaluate

    folder = trunk_folder(out, backbone)
    overrides = [*(overrides or []), f"model.backbone={backbone}"]
    cfg = run_config(TRUNK_PRESET, overrides, grid.trunk_iters, TRUNK_SEED, TRUNK_CHECKPOINTS)
    info_path, weights = folder / "trunk.json", folder / "trunk.pth"
    info = read_record(info_path)  # a damaged trunk.json counts as none: the trunk is trained (resumed) again
    if info is not None and weights.is_file():
        recorded = info.get("config")
        same = isinstance(recorded, dict) and same_config(recorded, plain_config(cfg), whole=True)
        if same and info.get("sha256") == sha256(weights):
            return info
    model, record = train_and_evaluate(cfg, folder / "train", grid.max_val_images, progress)
    save_weights(model.backbone.body.state_dict(), weights)
    info = {
        "path": str(weights.resolve()), "sha256": sha256(weights), "preset": TRUNK_PRESET, "seed": TRUNK_SEED,
        "backbone": backbone, **record,
    }  # fmt: skip
    write_json(info_path, info)
    wall = info["train_seconds"] + info["eval_seconds"]
    _log(out, run=folder.name, seed=TRUNK_SEED, status="done", wall_seconds=wall)
    return info


_kernel_starts = threading.Lock()
_last_start = [0.0]
KERNEL_START_GAP = 8.0  # seconds between two kernel starts (jupyter_client's port choice races otherwise)


def _stagger() -> None:
    """Space kernel starts: two kernels started at once can pick the same free port and one dies."""
    with _kernel_starts:
        wait = _last_start[0] + KERNEL_START_GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _last_start[0] = time.monotonic()


def run_one(
    params: dict[str, Any], run_dir: Path, kernel: str = "python3", threads: int | None = None
) -> str:
    """Execute the experiment notebook for one (run, seed) into ``run_dir``; "done", "skipped" or "failed".
    ``threads``: torch's intra-op threads in the kernel (None: torch's default)."""
    import papermill

    if finished(run_dir, params):
        return "skipped"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)
    if read_record(run_dir / "metrics.json") is None:  # a damaged one must not outlive a failed redo (the
        (run_dir / "metrics.json").unlink(missing_ok=True)  # report reads every metrics.json it finds)
    try:
        _stagger()
        papermill.execute_notebook(
            str(repo_root() / TEMPLATE), str(run_dir / "run.ipynb"),
            parameters={**params, "RUN_DIR": str(run_dir.resolve()), "THREADS": threads}, kernel_name=kernel,
            progress_bar=False, log_output=False,  # no cwd: papermill's chdir is process-wide, not per thread
            config=kernel_manager_config(),  # encrypted kernel channels: no "TCP without encryption" alarm
        )  # fmt: skip
        if not finished(run_dir, params):
            raise RuntimeError(f"{run_dir / 'run.ipynb'} ran but wrote no matching metrics.json")
        return "done"
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the grid
        write_json(run_dir / "error.json", {
            "run": params["RUN"], "seed": params["SEED"], "error": f"{type(e).__name__}: {e}"[:4000],
            "traceback": traceback.format_exc()[-4000:], "notebook": str(run_dir / "run.ipynb"),
        })  # fmt: skip
        return "failed"


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (the committed tables name no home folders)."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def trunk_summary(trunk: dict[str, Any] | None) -> str | None:
    """One line on a shared trunk for the table's header."""
    if trunk is None:
        return None
    ap = lambda task: f"{100 * trunk[task]['AP']:.1f}" if trunk.get(task) else "–"  # noqa: E731
    log = Path(trunk["path"]).parent / "train" / "metrics.jsonl"  # the trunk may have been resumed: its
    steps = [json.loads(line)["time"] for line in log.read_text().splitlines()] if log.is_file() else []
    seconds = sum(steps) / len(steps) * trunk["iterations"] if steps else trunk["train_seconds"]
    return (
        f"{trunk.get('backbone', 'resnet18')}: {trunk['preset']} seed {trunk['seed']}, "
        f"{trunk['iterations']} iterations (about {seconds / 60:.0f} "
        f"min of training steps); that FPN model's val AP: box {ap('bbox')}, mask {ap('segm')}; "
        f"ResNet weights {_shown(Path(trunk['path']))} (sha256 {trunk['sha256'][:12]}), frozen in the runs"
    )


def wall_time_summary(out: Path) -> str | None:
    """The runs' wall time from ``log.jsonl``: the time covered by the last finished attempt of every
    (run, seed) (runs that overlapped, with ``jobs`` > 1, count once; pauses between two invocations do
    not count). The shared trunk's training is not included (:func:`trunk_summary` gives it)."""
    path = out / "log.jsonl"
    if not path.is_file():
        return None
    last: dict[tuple[str, int], tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if e["status"] == "done" and "end" in e and not e["run"].startswith("_trunk"):
            last[(e["run"], e["seed"])] = (e["end"] - e["wall_seconds"], e["end"])
    covered, reach = 0.0, -math.inf
    for a, b in sorted(last.values()):  # the length of the union of the runs' intervals
        covered += max(0.0, b - max(a, reach))
        reach = max(reach, b)
    return f"{covered / 3600:.2f} h for {len(last)} runs, on {os.cpu_count()} CPU cores (plus the trunk)"


@dataclass
class GridResult:
    """What :func:`run_grid` did: the status of every (run, seed), and the files it wrote."""

    statuses: dict[tuple[str, int], str]
    trunks: dict[str, dict[str, Any]]
    files: list[Path]


def run_grid(
    tables: list[str] | None = None,
    seeds: int | None = None,
    preset: str = "cpu",
    out: str | Path | None = None,
    results: str | Path = "results",
    figures: str | Path = "figures",
    overrides: list[str] | None = None,
    progress: bool = True,
    kernel: str = "python3",
    jobs: int | None = None,
) -> GridResult:
    """Train every (run, seed) the chosen sub-tables need that is not done yet, then assemble the table.

    ``tables``: e.g. ``["2c", "2d"]`` (None = all); ``seeds``: how many (seeds 0..n-1; default the grid
    preset's); ``preset``: a key of ``GRID_PRESETS``; ``out``: the runs' folder (default
    ``runs/table2/<preset>``); ``results``/``figures``: where ``table2[_<preset>].md/.csv/.png`` go
    (the ``cpu`` preset writes ``table2.*``); ``overrides``: ``key=value`` applied to every run and the
    trunk; ``jobs``: runs executed at once (default the grid preset's), each with ``cores // jobs``
    torch threads."""
    from tqdm.auto import tqdm

    from mrcnn_lite.ablations import report
    from mrcnn_lite.config import ConfigError

    if preset not in GRID_PRESETS:
        raise ConfigError(f"unknown grid preset {preset!r}; valid: {', '.join(GRID_PRESETS)}")
    grid = GRID_PRESETS[preset]
    n_seeds = grid.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {n_seeds}")
    rows, runs = select(tables)
    out = Path(out) if out is not None else repo_root() / "runs" / "table2" / preset
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    jobs = grid.jobs if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, (os.cpu_count() or 1) // jobs)

    # the trunks the chosen runs load, ResNet-18 first
    backbones = sorted({r.backbone for r in runs if r.stage == "heads"}) if grid.shared_trunk else []
    placeholders = {b: {"path": "trunk.pth", "sha256": None} for b in backbones}
    for run in runs:  # every config is valid before hours of training start (bad keys fail here)
        p = run_params(run, 0, grid, placeholders or None, overrides)
        experiment_config(
            {**p, "OVERRIDES": [o for o in p["OVERRIDES"] if not o.startswith("model.weights_path=")]}
        )

    trunks = {b: shared_trunk(grid, out, overrides, progress, backbone=b) for b in backbones}
    todo = [(run, seed) for seed in range(n_seeds) for run in runs]
    statuses: dict[tuple[str, int], str] = {}
    bar = tqdm(total=len(todo), desc=f"table2 [{preset}]", unit="run", disable=not progress)

    def one(run: Run, seed: int) -> tuple[tuple[str, int], str]:
        params = run_params(run, seed, grid, trunks or None, overrides)
        tic = time.perf_counter()
        status = run_one(params, out / run.key / f"seed{seed}", kernel, threads)
        if status != "skipped":
            _log(out, run=run.key, seed=seed, status=status, wall_seconds=time.perf_counter() - tic)
        return (run.key, seed), status

    # jobs > 1: that many kernels at once, each with its share of the cores (the papermill calls wait on
    # their kernels, so threads suffice here); completion order varies, results do not
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(one, run, seed) for run, seed in todo]):
            key, status = future.result()
            statuses[key] = status
            bar.set_postfix_str(f"{key[0]} seed {key[1]}: {status}")
            bar.update()
    bar.close()
    statuses = {(r.key, s): statuses[(r.key, s)] for r, s in todo}

    name = "table2" if preset == "cpu" else f"table2_{preset}"
    header = {
        "grid": grid, "seeds": n_seeds, "trunk": "; ".join(map(trunk_summary, trunks.values())) or None,
        "grid wall time": wall_time_summary(out), "runs": _shown(out),
    }  # fmt: skip
    built = report.build(out, Path(results), Path(figures), name=name, header=header, rows=rows)
    files = [Path(results) / f"{name}.md", Path(results) / f"{name}.csv", Path(figures) / f"{name}.png"]
    failed = [k for k, s in statuses.items() if s == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed (see error.json in each): {failed}")
    del built
    return GridResult(statuses, trunks, files)
