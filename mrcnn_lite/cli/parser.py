"""The ``argparse`` parser of ``python -m mrcnn_lite``: one function per command's options and help."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from mrcnn_lite.cli.errors import PROG
from mrcnn_lite.config import PRESETS, add_config_args

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
_FMT = argparse.RawDescriptionHelpFormatter
_Subparsers = argparse._SubParsersAction


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


def _add_train(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "train", help="train a model from a preset config", formatter_class=_FMT,
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


def _add_evaluate(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "evaluate", help="COCO box and mask AP of a checkpoint, and the time per stage", formatter_class=_FMT,
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


def _add_predict(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "predict", help="draw detections on images", formatter_class=_FMT,
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


def _add_table2(sub: _Subparsers) -> None:
    from mrcnn_lite.ablations.grid import GRID_PRESETS, TABLES

    grids = "".join(f"  {g.name:<6} {_text(g.description)}\n" for g in GRID_PRESETS.values())
    p = sub.add_parser(
        "table2", help="rerun the paper's Table 2 ablations (and Table 3's box AP)", formatter_class=_FMT,
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


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser with the four subcommands: train, evaluate, predict, table2."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_FMT, epilog=EPILOG,
        description="Mask R-CNN (He et al., ICCV 2017), small enough to read: train, evaluate, predict.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_predict, _add_table2):
        add(sub)
    return parser
