"""Benchmark: mrcnn_lite's RoIAlign kernels vs torchvision.ops.roi_align vs the pure-PyTorch reference.

Features (2, 256, 50, 50) (an ~800 px image at stride 16), 512 seeded random boxes of realistic sizes,
output 7x7 and 14x14, sampling_ratio 2, aligned=True, forward and forward+backward. CPU runs with 2 threads;
CUDA (when present) with the same shapes. Prints a markdown table and writes
benchmarks/results/roi_ops_<device>.json.

    .venv/bin/python benchmarks/roi_ops.py [--device cpu|cuda] [--threads 2] [--min-run-time 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import torch
import torchvision
from torch.utils.benchmark import Timer

import mrcnn_lite.ops as ops
from mrcnn_lite.atomic import write_json
from mrcnn_lite.ops import reference
from mrcnn_lite.provenance import cpu_name, git_commit

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"fwd": 2.0, "fwd+bwd": 5.0}  # CPU speedup over torchvision to reach


def make_inputs(device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 256, 50, 50, generator=g)
    k = 512
    centre = torch.rand(k, 2, generator=g) * 800
    size = torch.exp(torch.empty(k, 2).uniform_(3.0, 6.0, generator=g))  # ~20 to ~400 px, log-uniform
    xy1 = (centre - size / 2).clamp(0, 800)
    xy2 = (centre + size / 2).clamp(0, 800)
    batch = torch.randint(0, 2, (k, 1), generator=g).float()
    return feats.to(device), torch.cat([batch, xy1, xy2], 1).to(device)


def time_ms(fn, device: str, min_run_time: float) -> float:
    """Median milliseconds per call (torch.utils.benchmark synchronises CUDA around the timed block)."""
    fn()  # warm-up
    fn()
    m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time
    )
    return m.median * 1e3



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-run-time", type=float, default=1.0)
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) reference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not ops.backend()["cpu"]:
        raise SystemExit(f"the extension is not available: {ops.backend()['reason']}")
    feats, rois = make_inputs(args.device)
    impls = {
        "ours": lambda x, s: ops.roi_align(x, rois, s, 1 / 16, 2, True),
        "torchvision": lambda x, s: torchvision.ops.roi_align(x, rois, s, 1 / 16, 2, True),
        "reference": lambda x, s: reference.roi_align(x, rois, s, 1 / 16, 2, True),
    }
    if args.no_reference:
        del impls["reference"]

    rows = []
    for size in (7, 14):
        for kind in ("fwd", "fwd+bwd"):
            row = {"op": "roi_align", "size": size, "pass": kind}
            for name, impl in impls.items():
                if kind == "fwd":
                    x = feats

                    def fn(impl=impl, x=x, size=size):
                        with torch.no_grad():
                            return impl(x, size)
                else:
                    x = feats.clone().requires_grad_()
                    grad = torch.randn(rois.size(0), 256, size, size, device=args.device)

                    def fn(impl=impl, x=x, grad=grad, size=size):
                        x.grad = None
                        impl(x, size).backward(grad)

                row[f"ms_{name}"] = time_ms(fn, args.device, args.min_run_time)
            row["speedup_vs_torchvision"] = row["ms_torchvision"] / row["ms_ours"]
            if args.device == "cpu":
                row["target"] = TARGETS[kind]
                row["target_met"] = row["speedup_vs_torchvision"] >= TARGETS[kind]
            rows.append(row)
            print(f"  measured roi_align {size}x{size} {kind}", flush=True)

    print(
        f"\nroi_align on {args.device} ({torch.get_num_threads()} threads), "
        "features (2, 256, 50, 50), 512 boxes, sampling_ratio 2\n"
    )
    print("| op | size | pass | ms ours | ms torchvision | ms reference | speedup vs torchvision | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = f"{r['ms_reference']:.1f}" if "ms_reference" in r else "-"
        target = (f"{r['target']:.0f}x: {'met' if r['target_met'] else 'NOT met'}") if "target" in r else "-"
        print(
            f"| {r['op']} | {r['size']}x{r['size']} | {r['pass']} | {r['ms_ours']:.2f} | "
            f"{r['ms_torchvision']:.2f} | {ref} | {r['speedup_vs_torchvision']:.1f}x | {target} |"
        )

    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(dirty=True),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else cpu_name(),
        "cpu_model": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "backend": ops.backend(),
        "shapes": {"features": [2, 256, 50, 50], "boxes": 512, "spatial_scale": 1 / 16, "sampling_ratio": 2},
        "rows": rows,
    }
    out = write_json(RESULTS / f"roi_ops_{args.device}.json", info)
    print(f"\nwrote {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
