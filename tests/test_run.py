"""The run helpers (:mod:`mrcnn_lite.engine.run`): one config resolution, one seeding function, one
train-evaluate-record path for the experiment notebook and the Table 2 runner; and the layering rule that
no library module imports the notebook helpers (:mod:`mrcnn_lite.workbook`)."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from tiny_run import tiny_overrides  # tests/ is on sys.path (pytest prepends it)

import mrcnn_lite
from mrcnn_lite import provenance, workbook
from mrcnn_lite.ablations import records, runner
from mrcnn_lite.config import Config, get_config, rescale_schedule
from mrcnn_lite.engine import run, trainer
from mrcnn_lite.engine.run import plain_config, run_config, train_and_evaluate, train_or_resume

PACKAGE = Path(mrcnn_lite.__file__).resolve().parent
REPO = PACKAGE.parent
NOTEBOOK_HELPERS = "mrcnn_lite.workbook"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module that ``source`` (the code of ``module``) imports, anywhere (function bodies too), as
    absolute dotted names: ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule)."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_workbook(source: str, module: str) -> bool:
    return any(
        name == NOTEBOOK_HELPERS or name.startswith(NOTEBOOK_HELPERS + ".")
        for name in imported_modules(source, module)
    )


def library_modules() -> list[tuple[str, Path]]:
    return sorted((_module_name(p), p) for p in PACKAGE.rglob("*.py"))


def test_no_library_module_imports_the_notebook_helpers() -> None:
    """The notebook helpers import the library, never the reverse: no module under ``mrcnn_lite/`` but
    ``workbook`` itself imports it, at the top or inside a function."""
    modules = library_modules()
    assert len(modules) > 30 and ("mrcnn_lite.engine.run", PACKAGE / "engine" / "run.py") in modules
    offenders = [
        name for name, path in modules
        if name != NOTEBOOK_HELPERS and imports_workbook(path.read_text(encoding="utf-8"), name)
    ]  # fmt: skip
    assert offenders == [], f"library modules importing {NOTEBOOK_HELPERS}: {offenders}"


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import mrcnn_lite.workbook", "mrcnn_lite.cli"),
        ("import mrcnn_lite.workbook as wb", "mrcnn_lite.cli"),
        ("from mrcnn_lite import workbook", "mrcnn_lite.cli"),
        ("from mrcnn_lite.workbook import repo_root", "mrcnn_lite.ablations.runner"),
        ("def f():\n    from mrcnn_lite.workbook import notebook_config\n", "mrcnn_lite.ablations.runner"),
        ("from .. import workbook", "mrcnn_lite.ablations.runner"),
        ("from ..workbook import quick_mode", "mrcnn_lite.engine.run"),
        ("from . import workbook", "mrcnn_lite.cli"),
    ],
)
def test_the_import_check_sees_every_spelling(source: str, module: str) -> None:
    assert imports_workbook(source, module)


def test_the_import_check_passes_other_imports() -> None:
    ok = "import mrcnn_lite.engine.run\nfrom mrcnn_lite.provenance import repo_root\nfrom . import kernels\n"
    assert not imports_workbook(ok, "mrcnn_lite.cli")
    assert not imports_workbook('"""python -m mrcnn_lite.workbook"""', "mrcnn_lite.cli")  # a docstring


def test_importing_the_library_loads_no_notebook_helper() -> None:
    """Every library module (as ``pkgutil`` finds them) imported in a fresh interpreter: the notebook
    helpers stay unloaded."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import mrcnn_lite\n"
        "names = [m.name for m in pkgutil.walk_packages(mrcnn_lite.__path__, 'mrcnn_lite.')]\n"
        f"names = [n for n in names if n not in ({NOTEBOOK_HELPERS!r}, 'mrcnn_lite.__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in sys.modules if m.startswith('mrcnn_lite.workbook')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    count, loaded = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 30 and loaded == "[]"


def test_one_seeding_function_everywhere() -> None:
    assert workbook.seed_everything is run.seed_everything is provenance.seed_everything
    assert trainer.seed_everything is provenance.seed_everything and not hasattr(trainer, "seed_all")
    assert workbook.repo_root is run.repo_root is provenance.repo_root
    assert trainer.git_commit is run.git_commit is provenance.git_commit

    def draws(seed: int) -> tuple:
        g = provenance.seed_everything(seed)
        return (
            random.random(),
            np.random.rand(),  # noqa: NPY002 - the legacy global state is what is seeded
            torch.rand(2).tolist(),
            torch.rand(2, generator=g).tolist(),
        )  # noqa: NPY002

    assert draws(3) == draws(3) != draws(4)
    assert draws(3)[3] == torch.rand(2, generator=torch.Generator().manual_seed(3)).tolist()


def test_repo_root_and_git_commit() -> None:
    assert provenance.repo_root() == REPO
    sha = provenance.git_commit()
    assert sha == "unknown" or len(sha) == 40
    dirty = provenance.git_commit(dirty=True)
    assert dirty.startswith(sha) and dirty.removeprefix(sha) in ("", "+dirty")


def test_run_config_is_preset_overrides_seed_schedule_and_checkpoints() -> None:
    overrides = ["model.roi_op=roi_pool", "model.roi_mode=max"]
    assert run_config("classroom_c5") == get_config("classroom_c5")  # the CLI's: the preset as it is
    assert run_config("classroom_c5", overrides) == get_config("classroom_c5", overrides)
    expected = rescale_schedule(get_config("classroom_c5", [*overrides, "seed=1"]), 40)
    cfg = run_config("classroom_c5", overrides, max_iter=40, seed=1, checkpoints=3)
    assert cfg.seed == 1 and cfg.train.max_iter == 40 and cfg.train.checkpoint_period == 14  # ceil(40 / 3)
    assert cfg.train.steps == expected.train.steps and cfg.model == expected.model
    # the notebooks' name for it keeps their defaults: seed 0, four checkpoints
    assert workbook.notebook_config("classroom_fpn", [], 100) == run_config("classroom_fpn", [], 100, 0, 4)


def test_the_experiment_notebook_and_the_skip_rule_resolve_the_same_config(tmp_path: Path) -> None:
    """The runner's skip rule and the experiment notebook call the same function for a run's config, and
    the notebook trains, evaluates and records through :mod:`mrcnn_lite.engine.run`. The skip rule compares
    ``PRESET`` by the config it resolves to, ``name`` aside: another preset holding the same values keeps a
    recorded run finished, one holding other values makes it stale."""
    params = {
        "RUN": "c5_roialign", "PRESET": "classroom_c5", "OVERRIDES": ["model.roi_op=roi_align"], "SEED": 2,
        "MAX_ITER": 40, "MAX_VAL_IMAGES": 8, "GRID_PRESET": "smoke", "TRUNK_SHA256": None,
    }  # fmt: skip
    cfg = records.experiment_config(params)
    assert runner.experiment_config is records.experiment_config and runner.finished is records.finished
    assert cfg == run_config("classroom_c5", params["OVERRIDES"], 40, 2, records.RUN_CHECKPOINTS)
    (tmp_path / "metrics.json").write_text(json.dumps({"params": params, "config": plain_config(cfg)}))
    assert records.finished(tmp_path, params)
    table2 = {**params, "PRESET": "table2_c5"}  # classroom_c5 with 20 detections per image
    assert not records.finished(tmp_path, table2)
    undo = f"model.detections_per_image={get_config('classroom_c5').model.detections_per_image}"
    assert records.finished(tmp_path, {**table2, "OVERRIDES": [undo, *params["OVERRIDES"]]})

    nb = nbformat.read(REPO / runner.TEMPLATE, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "cfg = experiment_config(params)" in code
    assert "from mrcnn_lite.engine.run import evaluate_run, repo_root, run_record, train_or_resume" in code
    assert "workbook" not in code and "notebook_config" not in code


TINY = tiny_overrides(max_iter=3)


@pytest.mark.usefixtures("one_thread")
def test_train_and_evaluate_records_a_run_and_trains_like_train(shapes_small: Path, tmp_path: Path) -> None:
    """``train_and_evaluate``: the same weights as ``train``; the record ``metrics.json`` and ``trunk.json``
    hold; a second call resumes nothing (the run is complete); another config clears the folder."""
    cfg = run_config("classroom_c4", [*TINY, f"data.root={shapes_small}"], seed=1, checkpoints=1)
    model, record = train_and_evaluate(cfg, tmp_path / "run", max_val_images=2, progress=False)
    assert not model.training
    assert set(record) == {
        "iterations", "train_seconds", "eval_seconds", "val_images", "bbox", "segm", "timing_ms", "config",
        "git_commit", "version",
    }  # fmt: skip
    assert record["iterations"] == 3 and record["val_images"] == 2 and 0.0 <= record["segm"]["AP"] <= 1.0
    assert record["config"] == plain_config(cfg) == json.loads(json.dumps(record))["config"]
    assert record["git_commit"] == provenance.git_commit() and record["version"] == mrcnn_lite.__version__

    direct = trainer.train(cfg, tmp_path / "direct", progress=False)["model"].state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, direct[key]), key

    final = tmp_path / "run" / "model_final.pth"
    stamp = final.stat().st_mtime_ns
    again = train_or_resume(cfg, tmp_path / "run", progress=False)
    assert again["iteration"] == 3 and final.stat().st_mtime_ns == stamp  # complete: nothing retrained
    other = run_config("classroom_c4", [*TINY, f"data.root={shapes_small}", "train.max_iter=2"], seed=1)
    train_or_resume(other, tmp_path / "run", progress=False)
    # another config's run was cleared and trained afresh, not resumed from iteration 3
    assert torch.load(final, weights_only=True)["iteration"] == 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"] == plain_config(other)


def test_same_config_leaves_out_the_name_and_what_it_is_told_to() -> None:
    """Configs are compared as plain JSON with ``name`` aside; ``ignore`` drops fields per section; a
    field a record lacks (added to the config classes since) counts as its default."""
    cfg = plain_config(run_config("classroom_c5", ["model.detections_per_image=20"]))
    table2 = plain_config(run_config("table2_c5"))  # classroom_c5 with 20 detections per image
    assert cfg["name"] != table2["name"] and run.same_config(cfg, table2)
    assert not run.same_config(plain_config(run_config("classroom_c5")), table2)
    period = {**cfg, "train": {**cfg["train"], "checkpoint_period": 7}}
    assert not run.same_config(period, cfg)
    assert run.same_config(period, cfg, ignore={"train": ("checkpoint_period",)})
    default = plain_config(Config())["model"]
    older = {**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "roi_mode"}}
    assert cfg["model"]["roi_mode"] == default["roi_mode"] and run.same_config(older, cfg)
    changed = {**cfg, "model": {**cfg["model"], "roi_mode": "max"}}
    assert not run.same_config(older, changed)


@pytest.mark.usefixtures("one_thread")
def test_train_or_resume_resumes_a_run_whose_preset_was_renamed(shapes_small: Path, tmp_path: Path) -> None:
    """An interrupted run resumes under another preset name holding the same values (a ``classroom_*``
    run continued as its frozen ``table2_*`` copy): only ``name`` differs, so ``train_or_resume`` goes on
    from the checkpoint instead of clearing the folder, and ends with the weights of an uninterrupted
    run."""
    overrides = [*tiny_overrides(max_iter=3), f"data.root={shapes_small}"]
    cfg = run_config("classroom_c5", overrides, seed=1, checkpoints=3)
    renamed = run_config("table2_c5", overrides, seed=1, checkpoints=3)
    assert cfg.name != renamed.name and run.same_config(plain_config(cfg), plain_config(renamed))
    trainer.train(cfg, tmp_path / "run", max_iter=2, progress=False)  # interrupted after iteration 2
    with pytest.warns(UserWarning, match="name: 'classroom_c5' -> 'table2_c5'"):  # the trainer's note
        result = train_or_resume(renamed, tmp_path / "run", progress=False)
    assert result["iteration"] == 3
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed_from"] == 2
    direct = trainer.train(cfg, tmp_path / "direct", progress=False)["model"].state_dict()
    for key, value in result["model"].state_dict().items():
        assert torch.equal(value, direct[key]), key
