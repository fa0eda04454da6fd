"""What runs a model, in one place: resolve a run's config, train (or resume) it, evaluate it, record it.

The command line, the Table 2 runner (its shared trunks and its skip rule), the experiment notebook
(``notebooks/experiments/ablation_run.ipynb``), the workbook's notebooks and the benchmarks call these, so
a config resolves, a run resumes and a result is recorded the same way wherever it happens:

- :func:`run_config`: a preset with overrides, a seed, a schedule shrunk to ``max_iter`` iterations and
  ``checkpoints`` checkpoints along it;
- :func:`train_or_resume`: finish (or skip, when complete) the run in a folder, clearing a folder that
  holds a run of another config (:func:`same_config`: the preset's ``name`` aside);
- :func:`evaluate_run`, :func:`train_and_evaluate`: COCO AP on the val split and the time per stage, as
  the plain-JSON record that ``metrics.json`` and ``trunk.json`` hold (:func:`run_record`);
- :func:`seed_everything`, :func:`git_commit`, :func:`repo_root` (from :mod:`mrcnn_lite.provenance`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import mrcnn_lite
from mrcnn_lite.config import Config, get_config, rescale_schedule, to_dict
from mrcnn_lite.engine.inference import eval_dataset, evaluate_model, stats_to_dict
from mrcnn_lite.engine.trainer import train
from mrcnn_lite.provenance import git_commit, repo_root, seed_everything

__all__ = [
    "evaluate_run",
    "git_commit",
    "plain_config",
    "repo_root",
    "run_config",
    "run_record",
    "same_config",
    "seed_everything",
    "train_and_evaluate",
    "train_or_resume",
]


def run_config(
    preset: str,
    overrides: Sequence[str] | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    checkpoints: int | None = None,
) -> Config:
    """Preset ``preset`` with ``overrides`` and then ``seed=<seed>`` (None keeps the preset's seed), its
    schedule shrunk to ``max_iter`` iterations (:func:`~mrcnn_lite.config.rescale_schedule`; None keeps
    the preset's) and ``checkpoints`` checkpoints along the run (None keeps ``train.checkpoint_period``)."""
    cfg = get_config(preset, [*(overrides or []), *([f"seed={seed}"] if seed is not None else [])])
    if max_iter is not None:
        cfg = rescale_schedule(cfg, max_iter)
    if checkpoints is None:
        return cfg
    period = -(-cfg.train.max_iter // checkpoints)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_period=period))


def plain_config(cfg: Config) -> dict[str, Any]:
    """``to_dict(cfg)`` as it reads back from JSON (tuples become lists): what records are compared by."""
    return json.loads(json.dumps(to_dict(cfg)))


def same_config(
    recorded: dict[str, Any], now: dict[str, Any], ignore: Mapping[str, Sequence[str]] | None = None
) -> bool:
    """Whether a recorded config (plain JSON: ``run.json``'s, ``metrics.json``'s) trains what ``now``
    (:func:`plain_config`) does: equal but for ``name`` and the fields ``ignore`` names per section
    (``{"train": ("checkpoint_period",)}``). The name is a label: a preset renamed, or another preset
    holding the same values, trains the same run. Fields added to the config classes since the record
    count as their defaults (:func:`_with_new_fields`)."""
    skip = ignore or {}
    return _comparable(_with_new_fields(recorded), skip) == _comparable(now, skip)


def _comparable(config: dict[str, Any], skip: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``config`` without ``name`` and without the fields ``skip`` names per section."""
    return {
        section: {k: v for k, v in fields.items() if k not in skip.get(section, ())}
        if isinstance(fields, dict) else fields
        for section, fields in config.items() if section != "name"
    }  # fmt: skip


def _with_new_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config completed with the fields the config classes gained since, at their defaults.

    A field added to a config class defaults to what the code did before it existed, so a run recorded
    without it trained with that default: it stays the same run where today's config leaves the field at
    its default, and is another where a preset or an override sets another value."""
    defaults = plain_config(Config())
    return {
        section: {**defaults[section], **fields}
        if isinstance(fields, dict) and isinstance(defaults.get(section), dict) else fields
        for section, fields in config.items()
    }  # fmt: skip


def train_or_resume(cfg: Config, run_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """``train(cfg, run_dir, resume=True)``: finish (or skip, when complete) the run in ``run_dir``.

    A ``run_dir`` holding a run of another config (its ``run.json``, compared by :func:`same_config`: a
    run recorded under another preset name with the same values is resumed), or no ``run.json`` at all,
    is cleared first, so a re-run with new parameters never resumes a different run."""
    run_dir = Path(run_dir)
    info = run_dir / "run.json"
    if run_dir.exists():
        old = json.loads(info.read_text())["config"] if info.is_file() else None
        if old is None or not same_config(old, plain_config(cfg)):
            shutil.rmtree(run_dir)
    return train(cfg, run_dir, resume=True, progress=progress)


def evaluate_run(
    cfg: Config, model: torch.nn.Module, max_val_images: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Evaluate ``model`` (put in eval mode) on ``cfg``'s val split (its first ``max_val_images`` images;
    None: all): ``{"eval_seconds", "val_images", "bbox", "segm", "timing_ms"}``, plain JSON."""
    tic = time.perf_counter()
    val = eval_dataset(cfg, max_images=max_val_images)
    metrics = stats_to_dict(evaluate_model(model.eval(), val, progress=progress))
    return {
        "eval_seconds": time.perf_counter() - tic, "val_images": len(val), "bbox": metrics["bbox"],
        "segm": metrics.get("segm"), "timing_ms": metrics["timing"],
    }  # fmt: skip


def run_record(cfg: Config, train_seconds: float, evaluation: dict[str, Any]) -> dict[str, Any]:
    """What a trained and evaluated run records (``metrics.json``, ``trunk.json``): its iterations and
    times, :func:`evaluate_run`'s metrics, the config (plain JSON), the git commit and the version."""
    return {
        "iterations": cfg.train.max_iter, "train_seconds": train_seconds, **evaluation,
        "config": plain_config(cfg), "git_commit": git_commit(), "version": mrcnn_lite.__version__,
    }  # fmt: skip


def train_and_evaluate(
    cfg: Config, run_dir: str | Path, max_val_images: int | None = None, progress: bool = True
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """:func:`train_or_resume` into ``run_dir``, then :func:`evaluate_run`: ``(model, record)``, the trained
    model in eval mode and its :func:`run_record`."""
    tic = time.perf_counter()
    result = train_or_resume(cfg, run_dir, progress=progress)
    train_seconds = time.perf_counter() - tic
    model = result["model"].eval()
    return model, run_record(cfg, train_seconds, evaluate_run(cfg, model, max_val_images))
