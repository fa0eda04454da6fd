"""Benchmark: one Mask R-CNN training step, ours vs torchvision's ``maskrcnn_resnet50_fpn``, on the CPU.

Same architecture and settings on both sides: ResNet-50-FPN trained from scratch (ordinary BatchNorm, every
layer trainable, as torchvision builds it without pretrained weights), 81 classes, the same two shapes images
resized to ``--size`` (square, so torchvision's internal resize is the identity), 256 RPN anchors and 512
RoIs per image, 2000 proposals, RoIAlign 7×7 / 14×14 with 2 samples, 28×28 masks. A step is forward,
backward and an SGD update; the median of ``--steps`` timed steps after warm-up is reported, and the
inference time per image. Target (issue #7): our step ≤ 0.7× torchvision's.

    .venv/bin/python benchmarks/train_step.py [--size 512] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn

import mrcnn_lite
from mrcnn_lite.atomic import write_json
from mrcnn_lite.config import get_config
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.engine.run import repo_root
from mrcnn_lite.modeling.build import build_model

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.7


def batch(size: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two shapes training images resized to size×size (float in [0, 1]) with plain-tensor targets."""
    ds = CocoDetection(repo_root() / "data" / "shapes", "train2017", train=True)
    images, targets = [], []
    for i in range(2):
        image, t = ds[i]
        image = image.as_subclass(torch.Tensor).float()[None] / 255
        image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear")[0]
        masks = torch.nn.functional.interpolate(t["masks"][None].float(), size=(size, size))[0].to(
            torch.uint8
        )
        sy, sx = size / t["masks"].shape[-2], size / t["masks"].shape[-1]
        boxes = t["boxes"].as_subclass(torch.Tensor) * torch.tensor([sx, sy, sx, sy])
        images.append(image.contiguous())
        targets.append({"boxes": boxes, "labels": t["labels"], "masks": masks})
    return images, targets


def ours(size: int) -> torch.nn.Module:
    cfg = get_config(
        "coco_r50_fpn",
        ["model.frozen_bn=false", "model.freeze_at=0", f"data.min_size={size}", f"data.max_size={size}"],
    )
    return build_model(cfg, 81)


def theirs(size: int) -> torch.nn.Module:
    return maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=size, max_size=size,
        rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000, box_batch_size_per_image=512,
    )  # fmt: skip


def time_train_step(model: torch.nn.Module, images, targets, steps: int) -> float:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    times = []
    for i in range(steps + 1):  # the first step warms up allocators and caches
        tic = time.perf_counter()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


@torch.no_grad()
def time_inference(model: torch.nn.Module, images, steps: int) -> float:
    model.eval()
    times = []
    for i in range(steps + 1):
        tic = time.perf_counter()
        model(images)
        if i:
            times.append((time.perf_counter() - tic) / len(images))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, targets = batch(args.size)
    rows = {}
    for name, build in (("mrcnn_lite", ours), ("torchvision", theirs)):
        torch.manual_seed(0)
        model = build(args.size)
        rows[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "train_step_s": time_train_step(model, images, targets, args.steps),
            "inference_ms_per_image": 1e3 * time_inference(model, images, args.steps),
        }
        print(f"  measured {name}", flush=True)
    ratio = rows["mrcnn_lite"]["train_step_s"] / rows["torchvision"]["train_step_s"]
    print(f"\nR50-FPN training step, 2 images {args.size}x{args.size}, CPU {args.threads} threads\n")
    print("| model | parameters | train step (s) | inference (ms/image) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        step, infer = r["train_step_s"], r["inference_ms_per_image"]
        print(f"| {name} | {r['params'] / 1e6:.2f}M | {step:.2f} | {infer:.0f} |")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"\nours / torchvision train step: {ratio:.2f} (target <= {TARGET}: {verdict})")
    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mrcnn_lite": mrcnn_lite.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": args.threads,
        "size": args.size,
        "steps": args.steps,
        "rows": rows,
        "ratio_train_step": ratio,
        "target": TARGET,
        "target_met": ratio <= TARGET,
    }
    write_json(RESULTS / f"train_step_cpu_{args.size}.json", info)


if __name__ == "__main__":
    main()
