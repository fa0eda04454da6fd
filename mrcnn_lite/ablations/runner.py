"""Run the Table 2 grid with papermill, resumably, and assemble the table (``python -m mrcnn_lite table2``).

Every (run, seed) executes ``notebooks/experiments/ablation_run.ipynb`` through papermill with the run's
preset, overrides, seed and schedule as parameters; the executed notebook (``run.ipynb``), the training
outputs and ``metrics.json`` stay in ``<out>/<run>/seed<k>/``. The order is fixed: the shared trunks
first (when the grid preset has them: ResNet-18 in ``_trunk/``, ResNet-34 for 2a in
``_trunk_resnet34/``), then seed 0 of every run, seed 1 of every run, ... so that an interrupted
reproduction already holds whole tables for its first seeds.

- **Resumable**: a (run, seed) whose ``metrics.json`` records the same parameters, and the config they
  resolve to now (:func:`finished`), is skipped; an interrupted one resumes from its last checkpoint (the
  notebook calls ``train_or_resume``).
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

from mrcnn_lite.ablations.grid import FPN_OVERRIDES, GRID_PRESETS, GridPreset, Run, run_overrides, select
from mrcnn_lite.atomic import atomic_path, write_json
from mrcnn_lite.workbook import kernel_manager_config, repo_root

TEMPLATE = Path("notebooks") / "experiments" / "ablation_run.ipynb"
TRUNK_PRESET = "classroom_fpn"
TRUNK_SEED = 0


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


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (``metrics.json``, ``trunk.json``), or None when the file is missing,
    unreadable, cut short, not UTF-8 or not a JSON object: a damaged record counts as no record, so what it
    recorded is redone instead of the grid stopping on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: json.JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


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
    """Train (or reuse) the grid's shared trunk of ``backbone``: ``classroom_fpn`` with that ResNet (seed 0,
    ``grid.trunk_iters`` iterations, with the grid's ``overrides``), its ResNet saved as
    ``trunk_folder(out, backbone)/trunk.pth`` (a torchvision-layout state_dict that ``model.weights_path``
    loads). Also evaluates that FPN model, so the table says how good the trunk is. Returns
    ``trunk.json``'s content (path, sha256, config, AP, seconds), or None without a shared trunk."""
    if not grid.shared_trunk:
        return None

    from mrcnn_lite.config import to_dict
    from mrcnn_lite.engine.inference import eval_dataset, evaluate_model, stats_to_dict
    from mrcnn_lite.engine.trainer import git_commit
    from mrcnn_lite.workbook import notebook_config, train_or_resume

    folder = trunk_folder(out, backbone)
    overrides = [*FPN_OVERRIDES, *(overrides or []), f"model.backbone={backbone}"]
    cfg = notebook_config(TRUNK_PRESET, overrides, grid.trunk_iters, seed=TRUNK_SEED, checkpoints=4)
    info_path, weights = folder / "trunk.json", folder / "trunk.pth"
    config = json.loads(json.dumps(to_dict(cfg)))
    info = read_record(info_path)  # a damaged trunk.json counts as none: the trunk is trained (resumed) again
    if info is not None and weights.is_file():
        if info.get("config") == config and info.get("sha256") == sha256(weights):
            return info
    tic = time.perf_counter()
    result = train_or_resume(cfg, folder / "train", progress=progress)
    seconds = time.perf_counter() - tic
    model = result["model"].eval()
    save_weights(model.backbone.body.state_dict(), weights)
    tic = time.perf_counter()
    metrics = stats_to_dict(evaluate_model(model, eval_dataset(cfg, max_images=grid.max_val_images)))
    info = {
        "path": str(weights.resolve()), "sha256": sha256(weights), "preset": TRUNK_PRESET, "seed": TRUNK_SEED,
        "backbone": backbone,
        "iterations": cfg.train.max_iter, "train_seconds": seconds, "eval_seconds": time.perf_counter() - tic,
        "bbox": metrics["bbox"], "segm": metrics.get("segm"), "config": config, "git_commit": git_commit(),
    }  # fmt: skip
    write_json(info_path, info)
    _log(out, run=folder.name, seed=TRUNK_SEED, status="done", wall_seconds=seconds + info["eval_seconds"])
    return info


def run_params(
    run: Run, seed: int, grid: GridPreset, trunks: dict[str, dict[str, Any]] | None, overrides: list[str]
) -> dict[str, Any]:
    """The papermill parameters of one (run, seed); ``metrics.json`` records them to decide skipping.
    ``trunks``: the shared trunk of each backbone (:func:`shared_trunk`'s result), or None."""
    trunk = (trunks or {}).get(run.backbone)
    if trunks and run.stage == "heads" and trunk is None:
        raise ValueError(f"run {run.key!r} needs the {run.backbone} trunk; trunks given: {', '.join(trunks)}")
    own, iters = run_overrides(run, grid, trunk["path"] if trunk else None)
    return {
        "RUN": run.key, "PRESET": run.preset, "OVERRIDES": [*own, *overrides], "SEED": seed,
        "MAX_ITER": iters, "MAX_VAL_IMAGES": grid.max_val_images, "GRID_PRESET": grid.name,
        "TRUNK_SHA256": trunk["sha256"] if trunk and run.stage == "heads" else None,
    }  # fmt: skip


#: config fields that do not change what a run trains: the trunk file's path (``TRUNK_SHA256`` names its
#: content) and how often it checkpoints
_NOT_COMPARED = {"model": ("weights_path",), "train": ("checkpoint_period",)}


def _resolved(params: dict[str, Any]) -> dict[str, Any]:
    """The config the experiment notebook builds from ``params`` (its ``notebook_config`` call), as JSON,
    without the fields in ``_NOT_COMPARED``."""
    from mrcnn_lite.config import to_dict
    from mrcnn_lite.workbook import notebook_config

    cfg = notebook_config(params["PRESET"], params["OVERRIDES"], params["MAX_ITER"], params["SEED"])
    return _comparable(json.loads(json.dumps(to_dict(cfg))))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {
        section: {k: v for k, v in fields.items() if k not in _NOT_COMPARED.get(section, ())}
        if isinstance(fields, dict) else fields
        for section, fields in config.items()
    }  # fmt: skip


def finished(run_dir: Path, params: dict[str, Any]) -> bool:
    """True when ``run_dir`` holds a ``metrics.json`` of the run ``params`` asks for.

    Every parameter but ``OVERRIDES`` must be equal; the overrides are compared by the config they resolve
    to today (recorded in ``metrics.json``), not as strings: a preset that changed since the run makes it
    stale even with the same overrides, and overrides spelled differently (reordered, a value pinned to
    what the preset already has, the trunk at another path with the same checksum) keep it valid. A
    ``metrics.json`` without a recorded config needs the very same parameters. Config fields added after a
    run was recorded count as their defaults (:func:`_with_new_fields`)."""
    recorded = read_record(run_dir / "metrics.json")
    if recorded is None:  # none, or cut short / corrupted (e.g. by a crash): the run is redone
        return False
    wanted = json.loads(json.dumps(params))
    had = recorded.get("params")
    if not isinstance(had, dict) or not isinstance(recorded.get("config"), dict):
        return had == wanted
    others = lambda p: {k: v for k, v in p.items() if k != "OVERRIDES"}  # noqa: E731
    if others(had) != others(wanted):
        return False
    try:
        return _comparable(_with_new_fields(recorded["config"])) == _resolved(params)
    except Exception:  # noqa: BLE001 - overrides that no longer resolve: not this run, retrain (and report)
        return False


def _with_new_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config completed with the fields the config classes gained since, at their defaults.

    A field added to a config class defaults to what the code did before it existed, so a run recorded
    without it trained with that default: it stays finished where today's config leaves the field at its
    default, and is stale where a preset or an override sets another value."""
    from mrcnn_lite.config import Config, to_dict

    defaults = json.loads(json.dumps(to_dict(Config())))
    return {
        section: {**defaults[section], **fields}
        if isinstance(fields, dict) and isinstance(defaults.get(section), dict) else fields
        for section, fields in config.items()
    }  # fmt: skip


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
    from mrcnn_lite.config import ConfigError, get_config, rescale_schedule

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
        cfg = get_config(p["PRESET"], [o for o in p["OVERRIDES"] if not o.startswith("model.weights_path=")])
        if p["MAX_ITER"] is not None:
            rescale_schedule(cfg, p["MAX_ITER"])

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
