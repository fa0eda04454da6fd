"""Pretrain a ResNet trunk on shape classification: our stand-in for the paper's ImageNet initialisation.

Mask R-CNN starts from "ImageNet-pretrained" ResNets (§3.1; §4 "Implementation Details"): a trunk trained
for image classification, then fine-tuned for detection with its stem and first stage frozen and its
BatchNorm statistics fixed (Detectron's ``FREEZE_AT=2`` and affine-only BN). Here the classification task is
:class:`~mrcnn_lite.data.classification.ShapesClassification` (fresh generated images every iteration, so
the trunk never sees an image twice and cannot overfit), the network our :class:`ResNet` with a global
average pool and one linear layer on ``c5`` (as torchvision's ResNet), trained with AdamW, a linear warm-up
and a cosine decay (SGD at lr 0.05, ImageNet's usual choice, stayed at chance for 300 iterations here and
was unstable on a small fixed set that AdamW fitted in 20 iterations). The trunk's ``state_dict`` (without
the classifier) is what :func:`~mrcnn_lite.modeling.backbone.load_imagenet_weights` loads through
``model.weights_path``.

A run is resumable: every ``checkpoint_period`` iterations it saves the trunk, the classifier and the
optimizer; a resumed run gives the same weights as an uninterrupted one (data depend only on the index).
Its record (``pretrain.json``) holds the config, validation accuracy along the schedule and the cost.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mrcnn_lite.atomic import atomic_path, write_json
from mrcnn_lite.data.classification import NUM_CLASSES, ShapesClassification
from mrcnn_lite.modeling.backbone import ResNet
from mrcnn_lite.modeling.mask_rcnn import IMAGENET_MEAN, IMAGENET_STD
from mrcnn_lite.provenance import cpu_name, git_commit, seed_everything

__all__ = ["PretrainConfig", "Classifier", "pretrain", "evaluate_accuracy", "state_sha256", "trunk_path"]


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run. ``seed`` draws the initial weights and the images (train split ``seed``)."""

    depth: str = "resnet18"
    width: int = 32
    seed: int = 0
    image_size: int = 96
    batch_size: int = 64
    iters: int = 1500
    base_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_iters: int = 100
    val_images: int = 1000
    eval_period: int = 500
    checkpoint_period: int = 250


class Classifier(nn.Module):
    """``ResNet`` trunk → global average pool of ``c5`` → linear layer; inputs in [0, 1], normalised here
    with the detector's ImageNet mean and std (:class:`~mrcnn_lite.modeling.mask_rcnn.MaskRCNN`)."""

    def __init__(self, depth: str, width: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.trunk = ResNet(depth, width)
        self.fc = nn.Linear(self.trunk.out_channels["c5"], num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.fc(self.trunk(x)["c5"].mean(dim=(2, 3)))


def lr_at(iteration: int, cfg: PretrainConfig) -> float:
    """Linear warm-up from 0 over ``warmup_iters``, then a cosine decay to 0 at ``iters``."""
    if iteration < cfg.warmup_iters:
        return cfg.base_lr * (iteration + 1) / cfg.warmup_iters
    t = (iteration - cfg.warmup_iters) / max(1, cfg.iters - cfg.warmup_iters)
    return 0.5 * cfg.base_lr * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate_accuracy(model: Classifier, cfg: PretrainConfig, batch_size: int = 125) -> float:
    """Top-1 accuracy on ``val_images`` images of the val split (split 1, seed 0: the same for every run)."""
    model.eval()
    data = ShapesClassification(cfg.val_images, split_index=1, seed=0, size=cfg.image_size)
    correct = 0
    for images, labels in DataLoader(data, batch_size=batch_size):
        correct += int((model(images).argmax(1) == labels).sum())
    model.train()
    return correct / cfg.val_images


def trunk_path(out: Path) -> Path:
    return Path(out) / "trunk.pth"


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of a state dict's names, dtypes, shapes and values (not of the file: ``torch.save``'s zip
    records the name of the file it wrote, which atomic writes make random)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _resume(
    out: Path, model: Classifier, opt: torch.optim.Optimizer, cfg: PretrainConfig
) -> tuple[int, dict[str, Any]]:
    """The iteration to start from and the record so far (0 and an empty record without a checkpoint)."""
    ckpt = out / "checkpoint.pth"
    if not ckpt.exists():
        return 0, {"curve": [], "wall_s": 0.0, "cpu_s": 0.0}
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if state["config"] != asdict(cfg):
        raise ValueError(f"{ckpt}: recorded config {state['config']} differs from the requested "
                         f"{asdict(cfg)}; use another --out folder or delete this one")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["iteration"]), state["record"]


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pretrain(cfg: PretrainConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one trunk into ``out``; returns the record written to ``out/pretrain.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    model = Classifier(cfg.depth, cfg.width).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    start, record = _resume(out, model, opt, cfg)
    data = ShapesClassification(cfg.iters * cfg.batch_size, split_index=0, seed=cfg.seed,
                                size=cfg.image_size)
    t0, c0, since = time.perf_counter(), _cpu_seconds(), start  # time and iteration of the last checkpoint
    model.train()
    loss_sum, loss_n = 0.0, 0
    for it in range(start, cfg.iters):
        batch = [data[i] for i in range(it * cfg.batch_size, (it + 1) * cfg.batch_size)]
        images = torch.stack([b[0] for b in batch])
        labels = torch.tensor([b[1] for b in batch])
        for group in opt.param_groups:
            group["lr"] = lr_at(it, cfg)
        loss = nn.functional.cross_entropy(model(images), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining diverged at iteration {it}: loss {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        done = it + 1
        if progress and done % 50 == 0:
            print(f"[pretrain {cfg.depth} seed {cfg.seed}] it {done}/{cfg.iters} loss {loss.item():.3f} "
                  f"({(time.perf_counter() - t0) / max(1, done - since):.2f} s/it)", flush=True)
        if done % cfg.eval_period == 0 or done == cfg.iters:
            acc = evaluate_accuracy(model, cfg)
            record["curve"].append({"iteration": done, "val_accuracy": acc, "train_loss": loss_sum / loss_n})
            if progress:
                print(f"[pretrain {cfg.depth} seed {cfg.seed}] it {done}/{cfg.iters} "
                      f"loss {loss_sum / loss_n:.3f} val acc {acc:.3f}", flush=True)
            loss_sum, loss_n = 0.0, 0
        if done % cfg.checkpoint_period == 0 or done == cfg.iters:
            rec = {**record, "wall_s": record["wall_s"] + time.perf_counter() - t0,
                   "cpu_s": record["cpu_s"] + _cpu_seconds() - c0}
            _save({"config": asdict(cfg), "iteration": done, "model": model.state_dict(),
                   "optimizer": opt.state_dict(), "record": rec}, out / "checkpoint.pth")
            record, t0, c0, since = rec, time.perf_counter(), _cpu_seconds(), done
    _save(model.trunk.state_dict(), trunk_path(out))
    final = {
        "config": asdict(cfg),
        "val_accuracy": record["curve"][-1]["val_accuracy"] if record["curve"] else None,
        "curve": record["curve"],
        "wall_s": round(record["wall_s"], 1),
        "cpu_s": round(record["cpu_s"], 1),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "trunk_sha256": state_sha256(model.trunk.state_dict()),
        "commit": git_commit(),
    }
    write_json(out / "pretrain.json", final)
    return final


def main(argv: list[str] | None = None) -> dict[str, Any]:
    doc = (__doc__ or "").split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m mrcnn_lite.engine.pretrain", description=doc)
    p.add_argument("--out", required=True, type=Path, help="run folder (resumed when it has a checkpoint)")
    for f, default in asdict(PretrainConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", dest=f, type=type(default), default=default)
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    return pretrain(replace(PretrainConfig(), **args), out)


if __name__ == "__main__":
    main()
