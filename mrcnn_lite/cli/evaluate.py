"""``python -m mrcnn_lite evaluate``: COCO box and mask AP of a checkpoint (the metric of the paper's
Tables 1-3) and the mean inference time per image of each stage (He et al. 2017, §4 "Timing")."""

from __future__ import annotations

import argparse
from typing import Any

from mrcnn_lite.atomic import write_json
from mrcnn_lite.cli.checks import device_of, writable_file
from mrcnn_lite.cli.runs import config_for, diverged_model, load_weights
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.checkpoint import read_checkpoint
from mrcnn_lite.engine.distributed import is_main_process
from mrcnn_lite.engine.inference import evaluate_model, stats_to_dict
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError


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
    """Check ``--out`` first, evaluate the checkpoint on the split, print the table, write ``--out``."""
    device = device_of(args.device)
    if args.out is not None:
        writable_file(args.out, "--out", "the metrics (JSON)")
    ckpt = read_checkpoint(args.checkpoint)
    cfg = config_for(args.checkpoint, ckpt, args.config, args.overrides)
    d = cfg.data
    dataset = CocoDetection(
        d.root,
        args.split or d.val_split,
        train=False,
        transforms=build_transforms(False, d.min_size, d.max_size),
    )
    model = build_model(cfg, len(dataset.class_names)).to(device)
    load_weights(model, ckpt, args.checkpoint)
    try:
        metrics = evaluate_model(model, dataset, progress=not args.quiet)
    except NonFiniteError as e:
        raise diverged_model(args.checkpoint, e, f"the {dataset.split} images") from e
    if not is_main_process():
        return 0
    print(format_metrics(metrics))
    if args.out is not None:
        plain = {**stats_to_dict(metrics), "checkpoint": str(args.checkpoint), "split": dataset.split}
        write_json(args.out, plain)
        print(f"wrote {args.out}")
    return 0
