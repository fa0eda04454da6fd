"""The command line: ``python -m mrcnn_lite {train,evaluate,predict,table2}``.

- ``train``: a preset plus ``--set`` overrides, into ``--out`` (see :func:`mrcnn_lite.engine.train`);
- ``evaluate``: COCO box and mask AP of a checkpoint (paper Tables 1-3) and the time per stage (§4);
- ``predict``: overlays of the detections (masks, boxes, class and score) on your own images;
- ``table2``: the paper's ablations (Table 2, Table 3's box AP) rerun with papermill, several seeds each
  (see :mod:`mrcnn_lite.ablations`).

Run ``python -m mrcnn_lite COMMAND --help`` for each command's options.

``train`` and ``evaluate`` also run in several processes: ``torchrun --nproc_per_node=N -m mrcnn_lite
train ...`` (DistributedDataParallel; NCCL on GPUs, gloo on the CPU; ``train.images_per_batch`` is the
global batch). Rank 0 prints and writes the outputs.

Errors a user can cause (a missing or unreadable file, a file that is not a checkpoint or an image, a bad
preset, key or value, an ``--out`` that cannot be written, nothing to ``--resume``, a diverged training
run) print one paragraph, ``python -m mrcnn_lite: error: ...``, to stderr and exit with 2 (1 for a
diverged run, and for ``predict`` when some images could not be read); no traceback. Everything else (a
bug) raises as usual. ``MRCNN_LITE_DEBUG=1`` re-raises the user errors too, with their traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import torch

from mrcnn_lite.atomic import atomic_path, write_json
from mrcnn_lite.config import (
    PRESETS,
    Config,
    ConfigError,
    add_config_args,
    apply_overrides,
    from_dict,
    get_config,
)
from mrcnn_lite.data.coco import CocoDetection, CocoFormatError
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.checkpoint import CheckpointError, check_state_dict, read_checkpoint
from mrcnn_lite.engine.distributed import cleanup, init_distributed, is_main_process
from mrcnn_lite.engine.inference import evaluate_model, stats_to_dict
from mrcnn_lite.engine.run import run_config
from mrcnn_lite.engine.trainer import LAST, train
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError

PROG = "python -m mrcnn_lite"
EPILOG = f"""examples:
  python -m mrcnn_lite.data.shapes --out data/shapes          # make the synthetic data set first
  {PROG} train --config classroom_fpn --out runs/classroom_fpn
  {PROG} train --config classroom_fpn --out runs/classroom_fpn --resume
  {PROG} train --config classroom_c4 --set train.max_iter=200 --set model.roi_op=roi_pool \\
      --set model.roi_mode=max --out runs/c4_roipool
  {PROG} evaluate --checkpoint runs/classroom_fpn/model_final.pth --out runs/classroom_fpn/metrics.json
  {PROG} predict my_image.png --checkpoint runs/classroom_fpn/model_final.pth --out predictions/
  torchrun --nproc_per_node=2 -m mrcnn_lite train --config classroom_fpn --out runs/fpn_2proc
  {PROG} table2 --rows c,d --seeds 3                          # Table 2c and 2d, 3 seeds each

errors:
  A bad file, option or value prints one paragraph to stderr, no traceback, and exits with 2; a diverged
  training run exits with 1 (its checkpoints are kept). MRCNN_LITE_DEBUG=1 shows the traceback.
"""
DEBUG_ENV = "MRCNN_LITE_DEBUG"


class UsageError(ValueError):
    """A bad command-line value (an option, a path); the message names it and says what was expected."""


# What a user's input or environment can cause: reported in one paragraph, without a traceback.
USER_ERRORS = (OSError, ConfigError, CheckpointError, CocoFormatError, UsageError, NonFiniteError)


def _text(paragraph: str) -> str:
    return textwrap.fill(paragraph, 100)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value (repeatable), e.g. --set data.min_size=256",
    )  # fmt: skip


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default cuda when available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser with the three subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=fmt, epilog=EPILOG,
        description="Mask R-CNN (He et al., ICCV 2017), small enough to read: train, evaluate, predict.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train", help="train a model from a preset config", formatter_class=fmt,
        description=_text(
            "Train Mask R-CNN with the preset's optimizer (train.optimizer: AdamW in the classroom presets, "
            "the paper's SGD in the coco_* ones), linear warm-up and the step schedule of §3.1 "
            "(train.lr_schedule=cosine for a cosine decay). Writes run.json "
            "(config, seed, versions), metrics.jsonl (losses and lr), model_{iter}.pth checkpoints, "
            "model_final.pth and last_checkpoint into --out. A diverging run (a NaN or infinite proposal, "
            "box, loss or weight) stops with exit code 1 and a message naming the iteration, the term and "
            "the last good checkpoint, which is kept; nothing non-finite is ever saved."
        ),
        epilog=f"examples:\n  {PROG} train --config classroom_fpn --out runs/classroom_fpn\n"
        f"  {PROG} train --config classroom_fpn --out runs/classroom_fpn --resume\n"
        f"  {PROG} train --config classroom_c4 --set train.max_iter=200 --out runs/c4_short\n",
    )  # fmt: skip
    add_config_args(p)
    p.add_argument("--out", type=Path, help="output folder (default runs/<config name>)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue from the checkpoint that last_checkpoint in --out names (an error if there is none)",
    )  # fmt: skip
    p.add_argument(
        "--max-iter", type=int, metavar="N",
        help="stop after iteration N (a checkpoint is saved) keeping the schedule of train.max_iter; "
        "continue later with --resume",
    )  # fmt: skip
    _add_common(p)

    p = sub.add_parser(
        "evaluate", help="COCO box and mask AP of a checkpoint, and the time per stage", formatter_class=fmt,
        description=_text(
            "Evaluate a checkpoint on a split with COCO's AP (box and mask, as in the paper's tables) and "
            "print the mean inference time per image of each stage (§4 'Timing'). The config comes from "
            "--config if given, else from run.json next to the checkpoint, else from the checkpoint "
            "itself; --set overrides it (e.g. data.root)."
        ),
        epilog=f"example:\n  {PROG} evaluate --checkpoint runs/classroom_fpn/model_final.pth "
        "--split val2017 --out runs/classroom_fpn/metrics.json\n",
    )  # fmt: skip
    p.add_argument("--checkpoint", type=Path, required=True, help="a model_*.pth file written by train")
    p.add_argument(
        "--config", choices=list(PRESETS), metavar="NAME",
        help=f"preset instead of the run's own config: {', '.join(PRESETS)}",
    )  # fmt: skip
    _add_set(p)
    p.add_argument("--split", help="split to evaluate, e.g. val2017 (default the config's data.val_split)")
    p.add_argument("--out", type=Path, help="also write the metrics as JSON to this file, e.g. metrics.json")
    _add_common(p)

    p = sub.add_parser(
        "predict", help="draw detections on images", formatter_class=fmt,
        description=_text(
            "Run a checkpoint on image files and write one PNG overlay per image (masks, boxes, class "
            "names and scores) into --out, named after the image. Class names and the config come from "
            "the checkpoint. A file that is missing or not an image is reported on stderr and skipped; the "
            "others are still drawn, and the exit code is then 1."
        ),
        epilog=f"example:\n  {PROG} predict a.jpg b.jpg --checkpoint runs/classroom_fpn/model_final.pth "
        "--out predictions/ --score-thresh 0.7\n",
    )  # fmt: skip
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a model_*.pth file written by train")
    p.add_argument(
        "--out", type=Path, default=Path("predictions"), help="output folder (default predictions/)"
    )
    p.add_argument(
        "--score-thresh", type=float, default=0.5,
        help="draw detections scoring at least this, in [0, 1] (default 0.5)",
    )  # fmt: skip
    _add_set(p)
    _add_common(p)

    from mrcnn_lite.ablations.grid import GRID_PRESETS, TABLES

    grids = "".join(f"  {g.name:<6} {_text(g.description)}\n" for g in GRID_PRESETS.values())
    p = sub.add_parser(
        "table2", help="rerun the paper's Table 2 ablations (and Table 3's box AP)", formatter_class=fmt,
        description=_text(
            "Train every run the chosen sub-tables need, once per seed, by executing "
            "notebooks/experiments/ablation_run.ipynb with papermill, then assemble results/table2.md, "
            "results/table2.csv and figures/table2.png: mean and std over seeds, the paper's numbers beside "
            "ours, and a verdict on each of the paper's claims. Finished runs are skipped (an interrupted "
            "reproduction resumes); a failed run is recorded (error.json) and the others go on."
        ),
        epilog=f"grid presets:\n{grids}"
        f"\nexamples:\n  {PROG} table2                       # the whole grid (about 2 h on 2 CPU cores)\n"
        f"  {PROG} table2 --rows c,d --seeds 1\n"
        f"  {PROG} table2 --preset smoke --out /tmp/t2 --results /tmp/t2\n",
    )  # fmt: skip
    p.add_argument(
        "--rows", metavar="T,T", type=lambda s: [t for t in s.split(",") if t.strip()],
        help=f"comma-separated sub-tables: {', '.join(TABLES)} (a..e accepted for 2a..2e; default all)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 per run (default the preset's: 3)")
    p.add_argument("--preset", default="cpu", choices=list(GRID_PRESETS), help="grid preset (default cpu)")
    p.add_argument("--out", type=Path, help="the runs' folder (default runs/table2/<preset>)")
    p.add_argument("--results", type=Path, default=Path("results"), help="tables go here (default results/)")
    p.add_argument(
        "--figures", type=Path, default=Path("figures"), help="the figure goes here (default figures/)"
    )
    p.add_argument("--jobs", type=int, metavar="N", help="runs at once, sharing the cores")
    _add_set(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check_device(name: str | None) -> str | None:
    """``--device`` as given (None: the default), after checking it names a device this machine has."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(
                f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}); use cpu"
            )
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return name


def _device(name: str | None) -> torch.device:
    _check_device(name)
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _writable_folder(path: Path, option: str, what: str) -> Path:
    """Create ``path`` if needed and check a file can be written in it; errors name ``option``."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; expected a folder for {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write {what} there ({e.strerror or e})") from e
    return path


def _writable_file(path: Path, option: str, what: str) -> Path:
    """Check that ``path`` can be written (atomically, beside itself) before any long computation."""
    if path.is_dir():
        raise UsageError(
            f"{option} {path}: is a folder; expected a file name for {what}, e.g. {path}/metrics.json"
        )
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{option} {path}: cannot write {what} there ({parent} is a file, not a folder)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write {what} there ({e.strerror or e})") from e
    return path


def _run_info(checkpoint: Path) -> dict[str, Any]:
    """``run.json`` next to the checkpoint, or {}; a damaged one is an error naming it."""
    path = checkpoint.parent / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e}); it is the run's record of its config, written by train. Pass "
            "--config NAME to evaluate with a preset instead"
        ) from e
    if not isinstance(info, dict):
        raise ConfigError(f"{path}: expected a JSON object (the run's record), got {type(info).__name__}")
    return info


def _config_for(checkpoint: Path, ckpt: dict[str, Any], preset: str | None, overrides: list[str]) -> Config:
    """``preset``, else run.json's config beside the checkpoint, else the checkpoint's; then overrides."""
    if preset is not None:
        return get_config(preset, overrides)
    run = _run_info(checkpoint)
    if run.get("config"):
        source, config = checkpoint.parent / "run.json", run["config"]
    else:
        source, config = checkpoint, ckpt.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{checkpoint}: no config in the checkpoint nor in a run.json beside it; pass --config NAME"
        )
    try:
        cfg = from_dict(config)
    except ConfigError as e:
        raise ConfigError(f"{source}: the run's config is not valid here: {e}") from e
    return apply_overrides(cfg, overrides)


def _load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: Path) -> None:
    """Load an already read checkpoint's weights, with :func:`check_state_dict`'s errors; a checkpoint with
    NaN or infinite weights (saved by a diverged run before this library refused to) is an error too."""
    check_state_dict(model, ckpt["model"], path)
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of its weight tensors hold NaN or inf (e.g. {bad[0]}): the run had diverged "
            "when it was saved; use an earlier checkpoint of the run"
        )
    model.load_state_dict(ckpt["model"])


def cmd_train(args: argparse.Namespace) -> int:
    cfg = run_config(args.config, args.overrides)
    out = args.out or Path("runs") / cfg.name
    _check_device(args.device)
    if args.max_iter is not None and args.max_iter < 1:
        raise UsageError(f"--max-iter {args.max_iter}: expected an iteration number of at least 1")
    if args.resume and not (out / LAST).is_file():
        raise UsageError(
            f"--resume: nothing to resume in {out} (it has no {LAST} file, which a run writes with its first "
            "checkpoint); give the --out folder of the run to continue, or leave out --resume to start one"
        )
    _writable_folder(out, "--out", "the run's checkpoints and logs")
    result = train(
        cfg, out, resume=args.resume, max_iter=args.max_iter, progress=not args.quiet, device=args.device
    )
    if is_main_process():
        print(f"trained to iteration {result['iteration']}; checkpoint {result['checkpoint']}")
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """The AP table (one row per IoU type) and the timing per stage."""
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    rows = [f"{'':6}" + "".join(f"{n:>8}" for n in names)]
    for kind in ("bbox", "segm"):
        if kind in metrics:
            rows.append(f"{kind:6}" + "".join(f"{100 * metrics[kind][n]:8.1f}" for n in names))
    rows.append("")
    rows.append("time per image (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in metrics["timing"].items()))
    return "\n".join(rows)


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = _device(args.device)
    if args.out is not None:
        _writable_file(args.out, "--out", "the metrics (JSON)")
    ckpt = read_checkpoint(args.checkpoint)
    cfg = _config_for(args.checkpoint, ckpt, args.config, args.overrides)
    d = cfg.data
    dataset = CocoDetection(
        d.root,
        args.split or d.val_split,
        train=False,
        transforms=build_transforms(False, d.min_size, d.max_size),
    )
    model = build_model(cfg, len(dataset.class_names)).to(device)
    _load_weights(model, ckpt, args.checkpoint)
    try:
        metrics = evaluate_model(model, dataset, progress=not args.quiet)
    except NonFiniteError as e:
        raise _diverged_model(args.checkpoint, e, f"the {dataset.split} images") from e
    if not is_main_process():
        return 0
    print(format_metrics(metrics))
    if args.out is not None:
        plain = {**stats_to_dict(metrics), "checkpoint": str(args.checkpoint), "split": dataset.split}
        write_json(args.out, plain)
        print(f"wrote {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure  # no pyplot: no global figure state, any backend
    from torchvision.transforms import v2

    from mrcnn_lite.viz import draw_instances

    if not 0.0 <= args.score_thresh <= 1.0:
        raise UsageError(f"--score-thresh {args.score_thresh}: expected a score in [0, 1]")
    device = _device(args.device)
    _writable_folder(args.out, "--out", "the overlays")
    ckpt = read_checkpoint(args.checkpoint)
    cfg = _config_for(args.checkpoint, ckpt, None, args.overrides)
    names = ckpt.get("class_names") or _run_info(args.checkpoint).get("class_names")
    if names is None:
        raise CheckpointError(f"{args.checkpoint}: no class_names in the checkpoint or run.json beside it")
    model = build_model(cfg, len(names)).to(device).eval()
    _load_weights(model, ckpt, args.checkpoint)
    sizes = (cfg.data.min_size,) if isinstance(cfg.data.min_size, int) else cfg.data.min_size
    resize = v2.Resize(max(sizes), max_size=cfg.data.max_size)
    failed = 0
    for path in args.images:
        try:
            image = _read_image(path)
        except UsageError as e:
            print(f"{PROG} predict: error: {e}", file=sys.stderr)
            failed += 1
            continue
        h, w = image.shape[-2:]
        try:
            with torch.no_grad():
                pred = model([resize(image).float().div(255).to(device)], orig_sizes=[(h, w)])[0]
        except NonFiniteError as e:
            raise _diverged_model(args.checkpoint, e, str(path)) from e
        keep = pred["scores"] >= args.score_thresh
        pred = {k: v[keep].cpu() for k, v in pred.items()}
        fig = Figure(figsize=(w / 100, h / 100), dpi=100)  # the overlay has the image's size
        ax = fig.add_axes((0, 0, 1, 1))
        masks = pred["masks"][:, 0] if "masks" in pred else None
        draw_instances(ax, image, pred["boxes"], masks, pred["labels"], names, pred["scores"])
        target = args.out / f"{path.stem}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        print(f"{path}: {int(keep.sum())} detections -> {target}")
    if failed:
        print(
            f"{PROG} predict: error: {failed} of {len(args.images)} images could not be read (above); "
            "the others were drawn",
            file=sys.stderr,
        )
        return 1
    return 0


def _diverged_model(checkpoint: Path, error: NonFiniteError, where: str) -> CheckpointError:
    """The error for a checkpoint whose finite weights still compute NaN or inf (a run diverging)."""
    return CheckpointError(
        f"{checkpoint}: on {where}, the model computes {error}; the run was probably diverging when this "
        "checkpoint was saved: use an earlier checkpoint of the run"
    )


def _read_image(path: Path) -> torch.Tensor:
    """The RGB ``uint8 [3, H, W]`` pixels of an image file; :class:`UsageError` naming it otherwise."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    expected = "expected an image file (PNG, JPEG, BMP, TIFF, ...)"
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; {expected}")
    if not path.is_file():
        raise UsageError(f"{path}: no such file; {expected}")
    try:
        with Image.open(path) as pil:
            return pil_to_tensor(pil.convert("RGB"))
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image that PIL can read; {expected}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # damaged or huge files
        raise UsageError(f"{path}: a damaged or unreadable image ({e}); {expected}") from None


def cmd_table2(args: argparse.Namespace) -> int:
    from mrcnn_lite.ablations.runner import run_grid

    if args.out is not None:
        _writable_folder(args.out, "--out", "the runs")
    _writable_folder(args.results, "--results", "the tables")
    _writable_folder(args.figures, "--figures", "the figure")
    try:
        result = run_grid(
            args.rows, args.seeds, args.preset, args.out, args.results, args.figures, args.overrides,
            progress=not args.quiet, jobs=args.jobs,
        )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from e
    counts = {s: list(result.statuses.values()).count(s) for s in ("done", "skipped", "failed")}
    print(f"runs: {counts['done']} trained, {counts['skipped']} already done, {counts['failed']} failed")
    for path in result.files:
        print(f"wrote {path}")
    return 1 if counts["failed"] else 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "table2": cmd_table2}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command. User errors (:data:`USER_ERRORS`) print ``error: ...`` (one
    paragraph, no traceback) and return 2, or 1 for a diverged run (:class:`NonFiniteError`); with
    ``MRCNN_LITE_DEBUG=1`` they are raised instead. Any other exception (a bug) propagates."""
    args = build_parser().parse_args(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        init_distributed()  # under torchrun (WORLD_SIZE > 1); a no-op otherwise
        return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 1 if isinstance(e, NonFiniteError) else 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            f"{PROG}: interrupted; the files written so far are complete (continue a training run with "
            "--resume)",
            file=sys.stderr,
        )
        return 130
    finally:
        cleanup()


def _message(e: BaseException) -> str:
    """The error's text; an ``OSError`` without a message of its own gets its file name and reason."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)
