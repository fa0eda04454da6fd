"""``python -m mrcnn_lite predict``: a checkpoint's detections (masks, boxes, class and score) drawn over
your own images, one PNG per image; an unreadable image is reported and skipped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mrcnn_lite.atomic import atomic_path
from mrcnn_lite.cli.checks import device_of, writable_folder
from mrcnn_lite.cli.errors import PROG, UsageError
from mrcnn_lite.cli.runs import config_for, diverged_model, load_weights, run_info
from mrcnn_lite.engine.checkpoint import CheckpointError, read_checkpoint
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError


def read_image(path: Path) -> torch.Tensor:
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


def save_overlay(image: torch.Tensor, pred: dict[str, torch.Tensor], names: list[str], target: Path) -> None:
    """Draw ``pred`` over ``image`` at the image's own size into the PNG ``target`` (written atomically)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, any backend

    from mrcnn_lite.viz import draw_instances

    h, w = image.shape[-2:]
    fig = Figure(figsize=(w / 100, h / 100), dpi=100)  # the overlay has the image's size
    ax = fig.add_axes((0, 0, 1, 1))
    masks = pred["masks"][:, 0] if "masks" in pred else None
    draw_instances(ax, image, pred["boxes"], masks, pred["labels"], names, pred["scores"])
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def cmd_predict(args: argparse.Namespace) -> int:
    """Draw each image's detections scoring at least ``--score-thresh``; exit code 1 if an image failed."""
    from torchvision.transforms import v2

    if not 0.0 <= args.score_thresh <= 1.0:
        raise UsageError(f"--score-thresh {args.score_thresh}: expected a score in [0, 1]")
    device = device_of(args.device)
    writable_folder(args.out, "--out", "the overlays")
    ckpt = read_checkpoint(args.checkpoint)
    cfg = config_for(args.checkpoint, ckpt, None, args.overrides)
    names = ckpt.get("class_names") or run_info(args.checkpoint).get("class_names")
    if names is None:
        raise CheckpointError(f"{args.checkpoint}: no class_names in the checkpoint or run.json beside it")
    model = build_model(cfg, len(names)).to(device).eval()
    load_weights(model, ckpt, args.checkpoint)
    sizes = (cfg.data.min_size,) if isinstance(cfg.data.min_size, int) else cfg.data.min_size
    resize = v2.Resize(max(sizes), max_size=cfg.data.max_size)
    failed = 0
    for path in args.images:
        try:
            image = read_image(path)
        except UsageError as e:
            print(f"{PROG} predict: error: {e}", file=sys.stderr)
            failed += 1
            continue
        h, w = image.shape[-2:]
        try:
            with torch.no_grad():
                pred = model([resize(image).float().div(255).to(device)], orig_sizes=[(h, w)])[0]
        except NonFiniteError as e:
            raise diverged_model(args.checkpoint, e, str(path)) from e
        keep = pred["scores"] >= args.score_thresh
        target = args.out / f"{path.stem}.png"
        save_overlay(image, {k: v[keep].cpu() for k, v in pred.items()}, names, target)
        print(f"{path}: {int(keep.sum())} detections -> {target}")
    if failed:
        print(
            f"{PROG} predict: error: {failed} of {len(args.images)} images could not be read (above); "
            "the others were drawn",
            file=sys.stderr,
        )
        return 1
    return 0
