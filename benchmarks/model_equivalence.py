"""Fingerprint every preset and Table 2 variant: seeded weights, fixed synthetic inputs, exact outputs.

A refactoring of ``mrcnn_lite/modeling`` must not change what the model computes (Mask R-CNN §3: the
losses L = L_cls + L_box + L_mask with the RPN's, and the detections of §3.1 "Inference"). This script
builds each model under ``torch.manual_seed(0)`` (so the initialisation order counts too), runs one
training-mode forward (losses) and one eval-mode forward (detections with pasted masks) on two fixed
synthetic images, and records:

- the state dict: its keys (checkpoints and trunks load by key), a hash of its values as built and one
  after the training forward (BatchNorm's running statistics);
- every loss, exactly (``float.hex``);
- per image, the number of detections and a SHA-256 of the boxes, scores, labels and masks.

The models are: every preset of :data:`mrcnn_lite.config.PRESETS`, every run of the Table 2 grid
(:data:`mrcnn_lite.ablations.grid.RUNS`), and a few extra combinations (``EXTRA``: the ``roi_aligned`` flag,
RoIPool/RoIWarp on FPN and C5, the MLP mask head on C5, softmax and class-agnostic masks on FPN).

Usage, comparing two commits (e.g. before and after a change of ``modeling/``)::

    git worktree add /tmp/before HEAD~1  # or: mkdir /tmp/before; git archive HEAD~1 | tar -x -C /tmp/before
    cp mrcnn_lite/_C*.so /tmp/before/mrcnn_lite/  # the compiled RoI operators, if built in place
    (cd /tmp/before && PYTHONPATH=. $PWD/.venv/bin/python $OLDPWD/benchmarks/model_equivalence.py \\
        --out /tmp/before.json)
    .venv/bin/python benchmarks/model_equivalence.py --out /tmp/after.json
    .venv/bin/python benchmarks/model_equivalence.py --compare /tmp/before.json /tmp/after.json

(run the script of the newer commit in both trees: it only uses ``get_config`` and ``build_model``).
``--only classroom`` keeps the models whose name contains the word; ``--threads`` sets torch's intra-op
threads (1 by default: the same reductions in the same order on every run). The whole list takes a few
minutes on one CPU core, most of it the ResNet-50-C4 preset (res5 on every RoI).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mrcnn_lite.config import PRESETS, get_config
from mrcnn_lite.modeling.build import build_model

#: (preset, overrides) combinations beyond the presets and the Table 2 grid
EXTRA: dict[str, tuple[str, tuple[str, ...]]] = {
    "x_c4_aligned": ("classroom_c4", ("model.roi_aligned=true",)),
    "x_c4_unaligned": ("classroom_c4", ("model.roi_aligned=false",)),
    "x_fpn_unaligned": ("classroom_fpn", ("model.roi_aligned=false",)),
    "x_fpn_roipool": ("classroom_fpn", ("model.roi_op=roi_pool", "model.roi_mode=max")),
    "x_fpn_roiwarp_avg": ("classroom_fpn", ("model.roi_op=roi_warp", "model.roi_mode=avg")),
    "x_fpn_softmax": ("classroom_fpn", ("model.mask_loss=softmax",)),
    "x_fpn_agnostic": ("classroom_fpn", ("model.class_agnostic_masks=true",)),
    "x_fpn_mlp1_agnostic": ("classroom_fpn", ("model.mask_head=mlp1", "model.class_agnostic_masks=true")),
    "x_c5_roiwarp_max": ("classroom_c5", ("model.roi_op=roi_warp", "model.roi_mode=max")),
    "x_c5_mlp2": ("classroom_c5", ("model.mask_head=mlp2",)),
    "x_c4_faster": ("classroom_c4", ("model.with_mask=false",)),
    "x_c4_sampling0": ("classroom_c4", ("model.roi_sampling_ratio=0",)),
}
NUM_CLASSES = 5  # when the preset leaves model.num_classes to the dataset


def models() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Name -> (preset, overrides): the presets, the Table 2 runs, then ``EXTRA``."""
    from mrcnn_lite.ablations.grid import RUNS

    out: dict[str, tuple[str, tuple[str, ...]]] = {f"preset_{p}": (p, ()) for p in PRESETS}
    out.update({f"table2_{r.key}": (r.preset, tuple(r.overrides)) for r in RUNS})
    out.update(EXTRA)
    return out


def inputs() -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Two images of different sizes with 3 and 2 objects (filled rectangles and ellipses), seeded."""
    g = torch.Generator().manual_seed(1234)
    images, targets = [], []
    for (h, w), n in (((96, 128), 3), ((80, 112), 2)):
        image = torch.rand(3, h, w, generator=g) * 0.3
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        boxes, masks = [], []
        for i in range(n):
            bw, bh = (
                20 + int(torch.randint(0, w // 2, (1,), generator=g)),
                20 + int(torch.randint(0, h // 2, (1,), generator=g)),
            )
            x0, y0 = (
                int(torch.randint(0, w - bw, (1,), generator=g)),
                int(torch.randint(0, h - bh, (1,), generator=g)),
            )
            if i % 2:  # ellipse inscribed in the box
                cx, cy = x0 + bw / 2, y0 + bh / 2
                mask = ((xx - cx) / (bw / 2)) ** 2 + ((yy - cy) / (bh / 2)) ** 2 <= 1
            else:
                mask = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
            image[:, mask] = torch.rand(3, 1, generator=g)
            boxes.append([x0, y0, x0 + bw, y0 + bh])
            masks.append(mask)
        labels = torch.randint(1, NUM_CLASSES, (n,), generator=g)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": labels,
                        "masks": torch.stack(masks).to(torch.uint8)})  # fmt: skip
    return images, targets


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(preset: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    """State-dict keys and hash, exact losses (train mode), detection hashes (eval mode) of one model."""
    cfg = get_config(preset, list(overrides))
    num_classes = cfg.model.num_classes or NUM_CLASSES
    torch.manual_seed(0)
    model = build_model(cfg, num_classes)
    state = model.state_dict()
    keys, weights = _digest_keys(state), _digest(*state.values())  # before BN statistics move
    images, targets = inputs()
    if num_classes != NUM_CLASSES:  # COCO presets: 81 classes; keep the labels valid either way
        targets = [{**t, "labels": t["labels"] % (num_classes - 1) + 1} for t in targets]
    torch.manual_seed(1)  # the samplers' draws
    with torch.no_grad():
        losses = model.train()(images, targets)
        model.eval()
        torch.manual_seed(2)
        detections = model(images, orig_sizes=[(2 * im.shape[-2], im.shape[-1]) for im in images])
    return {
        "state_keys": keys,
        "num_keys": len(state),
        "state_values": weights,
        "state_after_train_forward": _digest(*model.state_dict().values()),  # BN running statistics
        "losses": {k: float(v).hex() for k, v in sorted(losses.items())},
        "detections": [{"n": len(d["boxes"]), **{k: _digest(d[k]) for k in sorted(d)}} for d in detections],
    }


def _digest_keys(state: dict[str, Tensor]) -> str:
    return hashlib.sha256("\n".join(state).encode()).hexdigest()[:16]


def compare(before_path: Path, after_path: Path) -> int:
    """Print model by model whether two fingerprint files agree; 0 when every common model is identical."""
    before, after = (json.loads(Path(p).read_text())["models"] for p in (before_path, after_path))
    bad = 0
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            print(f"{name:<32} only in {'after' if name not in before else 'before'}")
            continue
        diff = [k for k in before[name] if before[name][k] != after[name].get(k)]
        bad += bool(diff)
        print(f"{name:<32} {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff)}")
    common = len(set(before) & set(after))
    print(f"{common - bad} of {common} models bit-identical")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints (JSON) here")
    parser.add_argument("--only", default="", help="keep models whose name contains this")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    torch.set_num_threads(args.threads)
    import mrcnn_lite

    where = Path(mrcnn_lite.__file__).parent
    print(f"mrcnn_lite from {where}, torch {torch.__version__}, {args.threads} thread(s)")
    results = {}
    for name, (preset, overrides) in models().items():
        if args.only not in name:
            continue
        start = time.perf_counter()
        results[name] = fingerprint(preset, overrides)
        r = results[name]
        dets = "/".join(str(d["n"]) for d in r["detections"])
        seconds = time.perf_counter() - start
        loss_mask = r["losses"].get("loss_mask", "-")
        line = f"keys {r['state_keys']} weights {r['state_values']} loss_mask {loss_mask} dets {dets}"
        print(f"{name:<32} {line} ({seconds:.1f} s)", flush=True)
    digest = hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()[:16]
    print(f"{len(results)} models, fingerprint {digest}")
    if args.out:
        args.out.write_text(json.dumps({"fingerprint": digest, "models": results}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
