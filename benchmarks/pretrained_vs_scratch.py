"""Benchmark (issue #20 item 6): ``classroom_fpn`` fine-tuned from the pretrained trunk against trained from
scratch, at equal CPU time, with and without counting the trunk's pretraining.

The paper starts every model from an ImageNet-pretrained ResNet (§3.1, "Implementation Details"); our
stand-in is the ResNet-18 pretrained on shape classification (``results/table2_v2/trunks``, 730 CPU-s).
Each variant trains ``classroom_fpn`` (its own full schedule of ``--iters`` iterations, seed 0) and is
evaluated on the val images at every quarter of it, recording the CPU seconds spent training:

- ``scratch``: the preset as notebook 06 trains it (random init, BatchNorm trained, nothing frozen);
- ``pretrained``: ``classroom_fpn_pretrained``, the same preset with ``model.weights_path`` set to the
  trunk, the stem and res2 frozen and BatchNorm frozen (the paper's fine-tuning recipe, as Table 2 v2's
  rows use).

Each variant runs in its own process with ``--threads`` threads (CPU seconds are that process's), resumably
in ``runs/pretrained_vs_scratch/<variant>_<iters>/``; its record goes to
``benchmarks/results/pretrained_vs_scratch_<variant>_<iters>.json``. ``--report`` prints the table of every
record there, with the trunk's pretraining CPU seconds added in a column of its own.

    .venv/bin/python benchmarks/pretrained_vs_scratch.py --variant pretrained --iters 1500 --threads 1
    .venv/bin/python benchmarks/pretrained_vs_scratch.py --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import torch

from mrcnn_lite.atomic import write_json
from mrcnn_lite.provenance import cpu_name, git_commit

RESULTS = Path(__file__).resolve().parent / "results"
TRUNK = Path("results/table2_v2/trunks/r18_seed0")
#: each variant's preset (``mrcnn_lite.config.classroom``)
VARIANTS = {"scratch": "classroom_fpn", "pretrained": "classroom_fpn_pretrained"}


def run_variant(variant: str, iters: int, threads: int, val_images: int | None, seed: int) -> dict[str, Any]:
    """Train ``classroom_fpn`` as ``variant`` for ``iters`` iterations, evaluating at every quarter."""
    from mrcnn_lite.ablations.records import read_record
    from mrcnn_lite.engine.run import evaluate_run, plain_config, run_config
    from mrcnn_lite.engine.trainer import train

    torch.set_num_threads(threads)
    cfg = run_config(VARIANTS[variant], None, iters, seed, checkpoints=4)
    work = Path("runs") / "pretrained_vs_scratch" / f"{variant}_{iters}"
    work.mkdir(parents=True, exist_ok=True)
    curve = []
    for point in sorted({round(f * iters) for f in (0.25, 0.5, 0.75, 1.0)}):
        cached = work / f"eval_{point:07d}.json"
        entry = read_record(cached)
        if entry is None or entry.get("config") != plain_config(cfg):
            t0, c0 = time.perf_counter(), time.process_time()
            model = train(cfg, work, resume=True, max_iter=point, progress=False)["model"].eval()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            ev = evaluate_run(cfg, model, val_images)
            entry = {
                "iteration": point, "train_seconds": wall, "train_cpu_seconds": cpu,
                "eval_seconds": ev["eval_seconds"], "box_AP": ev["bbox"]["AP"], "mask_AP": ev["segm"]["AP"],
                "config": plain_config(cfg),
            }  # fmt: skip
            write_json(cached, entry)
        curve.append({k: v for k, v in entry.items() if k != "config"})
        print(f"{variant} {point}/{iters}: box {100 * entry['box_AP']:.1f} mask {100 * entry['mask_AP']:.1f} "
              f"({entry['train_cpu_seconds']:.0f} CPU-s)", flush=True)  # fmt: skip
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "variant": variant, "iters": iters,
        "seed": seed, "threads": threads, "cpu_model": cpu_name(), "commit": git_commit(dirty=True),
        "preset": VARIANTS[variant], "val_images": val_images, "curve": curve,
        "train_cpu_seconds": sum(e["train_cpu_seconds"] for e in curve),
        "train_seconds": sum(e["train_seconds"] for e in curve), "config": plain_config(cfg),
    }  # fmt: skip
    write_json(RESULTS / f"pretrained_vs_scratch_{variant}_{iters}.json", record)
    return record


def report() -> str:
    """The markdown table of every record under ``benchmarks/results``."""
    trunk = json.loads(TRUNK.with_suffix(".json").read_text())
    pre = trunk["cpu_s"]
    lines = [
        f"trunk {TRUNK.name}: pretraining {pre:.0f} CPU-s ({trunk['cpu']}, {trunk['threads']} thread), val "
        f"accuracy {trunk['val_accuracy']:.3f}",
        "",
        "| variant | schedule | iteration | fine-tuning CPU-s | + pretraining CPU-s | box AP | mask AP |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("pretrained_vs_scratch_*.json")):
        rec = json.loads(path.read_text())
        cpu = 0.0
        for e in rec["curve"]:
            cpu += e["train_cpu_seconds"]
            total = cpu + (pre if rec["variant"] == "pretrained" else 0.0)
            row = (rec["variant"], rec["iters"], e["iteration"], f"{cpu:.0f}", f"{total:.0f}",
                   f"{100 * e['box_AP']:.1f}", f"{100 * e['mask_AP']:.1f}")  # fmt: skip
            lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=list(VARIANTS))
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-images", type=int, default=None, help="first N val images (default: all 300)")
    ap.add_argument("--report", action="store_true", help="print the table of the committed records")
    args = ap.parse_args()
    if args.variant:
        run_variant(args.variant, args.iters, args.threads, args.val_images, args.seed)
    if args.report or not args.variant:
        print(report())


if __name__ == "__main__":
    main()
