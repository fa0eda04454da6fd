"""Benchmark: box and mask AP of the classroom preset after <= 10 min of CPU training, ours vs torchvision.

Issue #7's target: the default classroom preset (``classroom_fpn``) reaches mask AP >= 0.60 and box
AP >= 0.65 on the shapes val set after at most 10 minutes of training on 2 CPU cores, and at least the AP
of torchvision's ``MaskRCNN`` built the same way and trained for the same wall time.

The two models (same seed, same process, one after the other):

- **ours**: ``mrcnn_lite.engine.trainer.train`` on the preset, its whole schedule; the wall time ``T`` of the
  training loop is measured.
- **torchvision**: ``torchvision.models.detection.MaskRCNN`` around the *same trunk* in torchvision's own
  ``BackboneWithFPN`` with ``LastLevelMaxPool`` (what ``resnet_fpn_backbone`` builds; we build it directly
  because ``resnet_fpn_backbone`` fixes 256 FPN channels and torchvision's ResNet-18 has no width option,
  so it gets our width-32 ResNet-18), with the preset's anchors, image
  sizes, proposal and RoI counts, head widths and inference settings, and *every weight copied from our
  initial model* (trunk, FPN, RPN head, box head, mask head: same initialisation). It trains on the same
  batches (our data loader, same seed: same images, order, scales and flips; its internal resize is the
  identity in training), with the same optimizer, lr schedule, gradient clipping and precision
  (``train.amp``: bfloat16 autocast for both), for the same wall
  time ``T``, with the schedule followed by time: at a fraction f of ``T`` it uses our lr at iteration
  f * max_iter, so its warm-up and lr step fall at the same share of the time as ours.

Both are evaluated by the same pycocotools path on the full val set at the preset's test size. The one
architectural difference torchvision cannot express: its ``MultiScaleRoIAlign`` has no ``aligned`` switch
(it samples with the legacy half-pixel offset), while the classroom preset uses ``roi_aligned=True``.

    .venv/bin/python benchmarks/classroom_ap.py [--preset classroom_fpn] [--threads 2] [--seed 0]
    .venv/bin/python benchmarks/classroom_ap.py --reuse-ours   # rerun only torchvision against the last run
    .venv/bin/python benchmarks/classroom_ap.py --set train.amp=true --iters 6000 --skip-torchvision --tag x
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import io
import json
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.transforms import v2

import mrcnn_lite
from mrcnn_lite.atomic import write_json
from mrcnn_lite.config import Config, eval_size, get_config, rescale_schedule, to_dict
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.inference import evaluate_model
from mrcnn_lite.engine.run import git_commit, repo_root, seed_everything
from mrcnn_lite.engine.schedule import build_optimizer, lr_at, set_lr
from mrcnn_lite.engine.trainer import batches, train
from mrcnn_lite.evaluation.coco_eval import evaluate, to_coco_results
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.provenance import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"box_AP": 0.65, "mask_AP": 0.60, "minutes": 10.0}
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def torchvision_twin(ours: nn.Module, cfg: Config, num_classes: int) -> MaskRCNN:
    """torchvision's MaskRCNN with our trunk and the preset's settings, every weight copied from ``ours``."""
    m = cfg.model
    if m.arch != "fpn" or m.mask_head != "fcn" or m.box_head != "2fc":
        raise SystemExit(f"the torchvision twin needs an FPN preset with 2fc/fcn heads, got {cfg.name}")
    trunk = copy.deepcopy(ours.backbone.body)
    # what resnet_fpn_backbone builds (its _resnet_fpn_extractor fixes 256 FPN channels; we need the preset's)
    c2 = trunk.out_channels["c2"]
    backbone = BackboneWithFPN(
        trunk, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}, [c2, 2 * c2, 4 * c2, 8 * c2],
        m.fpn_channels, extra_blocks=LastLevelMaxPool(),
    )  # fmt: skip
    anchors = AnchorGenerator(
        tuple((s,) for s in m.anchor_sizes), (tuple(m.aspect_ratios),) * len(m.anchor_sizes)
    )
    c, r = m.fpn_channels, 7
    twin = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=eval_size(cfg),
        max_size=cfg.data.max_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=m.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=m.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=m.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=m.rpn_post_nms_top_n_test,
        rpn_nms_thresh=m.rpn_nms_thresh,
        rpn_fg_iou_thresh=m.rpn_fg_iou,
        rpn_bg_iou_thresh=m.rpn_bg_iou,
        rpn_batch_size_per_image=m.rpn_batch_size_per_image,
        rpn_positive_fraction=m.rpn_positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], r, m.roi_sampling_ratio),
        box_head=TwoMLPHead(c * r * r, m.box_fc_dim),
        box_predictor=FastRCNNPredictor(m.box_fc_dim, num_classes),
        box_score_thresh=m.score_thresh,
        box_nms_thresh=m.nms_thresh,
        box_detections_per_img=m.detections_per_image,
        box_fg_iou_thresh=m.roi_fg_iou,
        box_bg_iou_thresh=m.roi_fg_iou,
        box_batch_size_per_image=m.roi_batch_size_per_image,
        box_positive_fraction=m.roi_positive_fraction,
        mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], m.mask_resolution // 2, m.roi_sampling_ratio),
        mask_head=MaskRCNNHeads(c, [m.mask_conv_dim] * m.mask_num_convs, 1),
        mask_predictor=MaskRCNNPredictor(m.mask_conv_dim, m.mask_conv_dim, num_classes),
    )
    copy_weights(ours, twin)
    return twin


def copy_weights(ours: nn.Module, twin: MaskRCNN) -> None:
    """Copy every parameter and buffer of ``ours`` into ``twin``, part by part, in order (shapes checked)."""
    pairs = [
        (ours.backbone, twin.backbone),
        (ours.rpn.head, twin.rpn.head),
        (ours.roi_heads.box_head, nn.ModuleList([twin.roi_heads.box_head, twin.roi_heads.box_predictor])),
        (ours.roi_heads.mask_head, nn.ModuleList([twin.roi_heads.mask_head, twin.roi_heads.mask_predictor])),
    ]
    for a, b in pairs:
        sa, sb = a.state_dict(), b.state_dict()
        if len(sa) != len(sb):
            raise RuntimeError(f"{type(a).__name__}: {len(sa)} tensors vs torchvision's {len(sb)}")
        with torch.no_grad():
            for (ka, va), (kb, vb) in zip(sa.items(), sb.items(), strict=True):
                if va.shape != vb.shape:
                    raise RuntimeError(
                        f"shape mismatch: ours {ka} {tuple(va.shape)} vs {kb} {tuple(vb.shape)}"
                    )
                vb.copy_(va)


def train_torchvision(twin: MaskRCNN, cfg: Config, dataset: CocoDetection, budget_s: float) -> dict:
    """Train ``twin`` for ``budget_s`` seconds on our batches, with our optimizer and our schedule in time.

    The schedule is followed by wall-clock fraction, not by iteration: at a fraction ``f`` of the budget
    the lr is ours at iteration ``f * max_iter``, so the warm-up and the lr step fall at the same share of
    the time whatever speed torchvision runs at (a per-iteration stretch, planned from the first steps,
    cut torchvision's run before its lr step because its steps slow down as the RPN finds objects)."""
    twin.train()
    twin.transform.resize = lambda image, target=None: (image, target)  # our transforms already resized
    seed_everything(cfg.seed)
    data = batches(dataset, cfg, 0)
    optimizer = build_optimizer(twin, cfg)
    t = cfg.train
    it, tic = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - tic) < budget_s:
        set_lr(optimizer, lr_at(min(int(elapsed / budget_s * t.max_iter), t.max_iter - 1), cfg))
        images, targets = next(data)
        images = [im.as_subclass(torch.Tensor) for im in images]
        targets = [
            {k: targets[i][k].as_subclass(torch.Tensor) for k in ("boxes", "labels", "masks")}
            for i in range(len(images))
        ]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.amp):  # the preset's precision, as ours
            loss = sum(twin(images, targets).values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"torchvision's loss is not finite at iteration {it}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(twin.parameters(), t.clip_grad_norm)
        optimizer.step()
        it += 1
    return {"iterations": it, "train_s": time.perf_counter() - tic}


@torch.no_grad()
def evaluate_torchvision(twin: MaskRCNN, cfg: Config) -> dict:
    twin.eval()
    twin.transform.resize = type(twin.transform).resize.__get__(twin.transform)  # its own resize at test
    with contextlib.redirect_stdout(io.StringIO()):
        val = CocoDetection(
            cfg.data.root, cfg.data.val_split, transforms=v2.ToDtype(torch.float32, scale=True)
        )
    results = []
    for i in range(len(val)):
        image, target = val[i]
        (out,) = twin([image.as_subclass(torch.Tensor)])
        out["masks"] = (out["masks"] >= 0.5).to(torch.uint8)  # [N, 1, H, W] probabilities -> binary
        results += to_coco_results(target["image_id"], out, val.label_to_cat_id)
    return {"bbox": evaluate(val.coco, results, "bbox"), "segm": evaluate(val.coco, results, "segm")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="classroom_fpn")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--iters",
        type=int,
        default=None,
        help="train this many iterations, the schedule rescaled (warm-up and lr step keep their shares)",
    )
    ap.add_argument(
        "--tag",
        default="",
        help="suffix for the result file (classroom_ap_cpu_PRESET_TAG.json) and the default run folder",
    )
    ap.add_argument("--out", default=None, help="run folder (default runs/bench_classroom_ap[_TAG])")
    ap.add_argument("--skip-torchvision", action="store_true")
    ap.add_argument(
        "--reuse-ours",
        action="store_true",
        help="take ours from a finished run in --out (rerun torchvision only)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config(args.preset, [*args.set, f"seed={args.seed}"])
    if args.iters is not None:
        cfg = rescale_schedule(cfg, args.iters)
    suffix = f"_{args.tag}" if args.tag else ""
    root = repo_root() / (args.out or f"runs/bench_classroom_ap{suffix}")
    reuse = args.reuse_ours and (root / "ours" / "result.json").is_file()
    if (root / "ours").exists() and not reuse:
        import shutil

        shutil.rmtree(root / "ours")

    with contextlib.redirect_stdout(io.StringIO()):
        val = CocoDetection(
            cfg.data.root,
            cfg.data.val_split,
            transforms=build_transforms(False, eval_size(cfg), cfg.data.max_size),
        )
    if reuse:  # a finished run of ours (same --out): its timing and AP as measured then
        rows = {"mrcnn_lite": json.loads((root / "ours" / "result.json").read_text())}
    else:  # ours: the preset's whole schedule, timed
        tic = time.perf_counter()
        out = train(cfg, root / "ours", progress=True, device="cpu")
        ours_s = time.perf_counter() - tic
        metrics = evaluate_model(out["model"].eval(), val)
        rows = {
            "mrcnn_lite": {
                "iterations": out["iteration"],
                "train_s": ours_s,
                "box": metrics["bbox"].stats,
                "mask": metrics["segm"].stats,
                "inference_ms": metrics["timing"]["total"],
            }
        }
        write_json(root / "ours" / "result.json", rows["mrcnn_lite"])
    ours_row = rows["mrcnn_lite"]
    ours_s = ours_row["train_s"]
    print(
        f"ours: {ours_row['iterations']} iterations in {ours_s:.0f} s: "
        f"box AP {ours_row['box']['AP']:.3f}, mask AP {ours_row['mask']['AP']:.3f}",
        flush=True,
    )

    if not args.skip_torchvision:
        seed_everything(cfg.seed)
        with contextlib.redirect_stdout(io.StringIO()):
            train_set = CocoDetection(
                cfg.data.root,
                cfg.data.train_split,
                train=True,
                transforms=build_transforms(True, cfg.data.min_size, cfg.data.max_size, cfg.data.flip_prob),
            )
        init = build_model(cfg, len(train_set.class_names))  # the same initial weights as ours (same seed)
        twin = torchvision_twin(init, cfg, len(train_set.class_names))
        tv = train_torchvision(twin, cfg, train_set, ours_s)
        (root / "torchvision").mkdir(parents=True, exist_ok=True)
        torch.save(twin.state_dict(), root / "torchvision" / "model_final.pth")  # kept if evaluation fails
        write_json(root / "torchvision" / "train.json", tv)
        tv_metrics = evaluate_torchvision(twin, cfg)
        rows["torchvision"] = {**tv, "box": tv_metrics["bbox"].stats, "mask": tv_metrics["segm"].stats}
        print(f"torchvision: {tv['iterations']} iterations in {tv['train_s']:.0f} s", flush=True)

    print(f"\n{cfg.name}, shapes val ({len(val)} images), CPU {args.threads} threads, seed {args.seed}\n")
    print(
        "| model | iterations | train (min) | "
        + " | ".join(f"box {s}" for s in STATS[:3])
        + " | "
        + " | ".join(f"mask {s}" for s in STATS[:3])
        + " |"
    )
    print("|---" * 9 + "|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['iterations']} | {r['train_s'] / 60:.1f} | "
            + " | ".join(f"{r['box'][s]:.3f}" for s in STATS[:3])
            + " | "
            + " | ".join(f"{r['mask'][s]:.3f}" for s in STATS[:3])
            + " |"
        )
    verdict = {
        "box_AP": ours_row["box"]["AP"] >= TARGETS["box_AP"],
        "mask_AP": ours_row["mask"]["AP"] >= TARGETS["mask_AP"],
        "minutes": ours_s / 60 <= TARGETS["minutes"],
    }
    if "torchvision" in rows:
        theirs = rows["torchvision"]
        verdict["beats_torchvision"] = all(ours_row[k]["AP"] >= theirs[k]["AP"] for k in ("box", "mask"))
    print("\ntargets:", ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in verdict.items()))
    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mrcnn_lite": mrcnn_lite.__version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": args.threads,
        "cpu_model": cpu_name(),
        "seed": args.seed,
        "config": to_dict(cfg),
        "rows": rows,
        "targets": TARGETS,
        "verdict": verdict,
    }
    path = write_json(RESULTS / f"classroom_ap_cpu_{cfg.name}{suffix}.json", info)
    print(f"wrote {path.relative_to(repo_root())}")


if __name__ == "__main__":
    main()
