"""Notebook-only helpers: where figures go and how they are saved, the CI ("quick") switch, and executing
the workbook's notebooks with papermill (``python -m mrcnn_lite.workbook``).

No library module imports this one; the library is imported here instead. What runs a model (a run's
config, train-or-resume, seeding, the checkout's folder) lives in :mod:`mrcnn_lite.engine.run`, and is
re-exported here under the names the notebooks use (``seed_everything``, ``repo_root``,
``train_or_resume``; ``notebook_config`` is :func:`~mrcnn_lite.engine.run.run_config` with the notebooks'
defaults).
"""

from __future__ import annotations

import os
from pathlib import Path

from mrcnn_lite.atomic import atomic_path
from mrcnn_lite.config import Config
from mrcnn_lite.engine.run import repo_root, run_config, seed_everything, train_or_resume
from mrcnn_lite.kernels import kernel_manager_config

__all__ = [
    "data_dir",
    "execute",
    "figures_dir",
    "kernel_manager_config",
    "notebook_config",
    "quick_mode",
    "refresh_progress_fallbacks",
    "repo_root",
    "save_figure",
    "seed_everything",
    "strip_volatile_metadata",
    "train_or_resume",
]

#: The one documented switch: ``MRCNN_LITE_QUICK=1`` makes long notebook runs use a CI-sized schedule.
QUICK_ENV = "MRCNN_LITE_QUICK"
#: Where :func:`save_figure` writes when set (a path; relative paths are taken from the checkout's top
#: folder). ``make test`` and ``make nbval`` point it at an ignored folder, so that only ``make workbook``
#: rewrites the committed ``figures/``.
FIGURES_ENV = "MRCNN_LITE_FIGURES_DIR"


def data_dir(name: str = "shapes") -> Path:
    """``data/<name>`` in the checkout: ``shapes`` (generated) or ``coco`` (real COCO 2017, user-provided)."""
    return repo_root() / "data" / name


def figures_dir() -> Path:
    """Where the notebooks save their figures: ``figures/`` in the checkout (committed, rewritten by
    ``make workbook``), or the folder ``MRCNN_LITE_FIGURES_DIR`` names (the test targets set it to
    ``build/test-output/figures``, an ignored folder, so a test run leaves ``figures/`` as it was)."""
    chosen = os.environ.get(FIGURES_ENV, "").strip()
    path = repo_root() / (Path(chosen).expanduser() if chosen else Path("figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def quick_mode() -> bool:
    """True when ``MRCNN_LITE_QUICK=1``: notebooks then shorten long runs so ``pytest --nbval`` fits CI."""
    return os.environ.get(QUICK_ENV, "0") not in ("", "0", "false", "False")


def save_figure(fig, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` atomically (temp file + rename) and return the path.

    PNG metadata is reduced to the software name so that the same figure gives the same bytes.
    """
    path = figures_dir() / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def notebook_config(
    name: str,
    overrides: list[str] | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    checkpoints: int = 4,
) -> Config:
    """:func:`~mrcnn_lite.engine.run.run_config` with the training notebooks' defaults (seed 0, four
    checkpoints). Notebooks 06 and 07 call it with the same parameters, so 07 evaluates exactly the run
    06 trained."""
    return run_config(name, overrides, max_iter, seed, checkpoints)


# --------------------------------------------------------------------------- executing the workbook
VOLATILE_CELL_KEYS = ("execution", "papermill")  # per-cell timestamps and durations


def _progress_text(nb, model_id: str) -> str | None:
    """The text of a tqdm progress bar widget as its saved state ends (``None`` for other widgets).

    tqdm.auto shows an HBox of (HTML prefix, FloatProgress, HTML suffix); its ``text/plain`` fallback is the
    bar when it was first displayed ("0/1200"), while the saved widget state holds the final one."""
    import html

    state = (
        nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    )
    box = state.get(model_id, {})
    kids = [
        state.get(str(k).removeprefix("IPY_MODEL_"), {}) for k in box.get("state", {}).get("children", [])
    ]
    names = [k.get("model_name") for k in kids]
    if box.get("model_name") != "HBoxModel" or names != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    prefix, bar, suffix = (k.get("state", {}) for k in kids)
    value, total = bar.get("value") or 0.0, bar.get("max") or 0.0
    filled = round(10 * value / total) if total else 0
    text = f"{prefix.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{suffix.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ")


def refresh_progress_fallbacks(nb) -> int:
    """Set the ``text/plain`` of every tqdm progress bar output to its final state (where widgets do not
    render, e.g. a terminal or a plain-text diff, a finished run should not read "0%"); returns how many."""
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            text = view and _progress_text(nb, view.get("model_id", ""))
            if text and output["data"].get("text/plain") != text:
                output["data"]["text/plain"] = text
                changed += 1
    return changed


def strip_volatile_metadata(path: Path) -> None:
    """Drop per-cell timestamps and run times that papermill writes, so a re-run changes only real outputs;
    progress bars' plain-text fallbacks show their final state (:func:`refresh_progress_fallbacks`)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    refresh_progress_fallbacks(nb)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))


def execute(paths: list[Path], kernel: str = "python3", timeout: int = 1800) -> dict[str, float]:
    """Execute notebooks in place with papermill, in the given order, from ``notebooks/``.

    Stops at the first failing notebook (papermill leaves the error in that notebook's outputs), so the
    notebooks before it keep their fresh outputs. Returns the seconds each notebook took.
    """
    import time

    import papermill

    times = {}
    for path in paths:
        path = Path(path).resolve()
        start = time.perf_counter()
        papermill.execute_notebook(
            str(path),
            str(path),
            kernel_name=kernel,
            cwd=str(path.parent),
            execution_timeout=timeout,
            progress_bar=False,
            config=kernel_manager_config(),
        )
        times[path.name] = time.perf_counter() - start
        strip_volatile_metadata(path)
        print(f"{path.name:<32} {times[path.name]:6.1f} s", flush=True)
    return times


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mrcnn_lite.workbook",
        description="Execute notebooks in place with papermill, in order, and strip volatile metadata.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute, in this order")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    execute(args.notebooks, args.kernel, args.timeout)


if __name__ == "__main__":
    main()
