"""GPU check (issue #18): everything a first session with a CUDA GPU should run, in one command.

``make gpu-check`` runs this script; each stage runs in its own process with its own time budget, so that
one failing (or crashing, or hanging) stage still leaves the others' results:

1. ``env``: the GPU, driver, torch / torchvision / CUDA versions, nvcc.
2. ``build``: builds ``mrcnn_lite._C`` in place for the visible GPU (``setup.py build_ext --inplace``;
   ``TORCH_CUDA_ARCH_LIST`` is unset, so torch picks the GPU's architecture) unless its CUDA kernels
   already run on this GPU (``--rebuild`` forces it); records the architectures in the library.
3. ``cuda_tests``: pytest ``-m cuda`` over every test file that has CUDA-marked tests (parity with the CPU
   kernel and torchvision in float, double, half and bfloat16, float64 gradcheck, deterministic mode).
   A CUDA test skipped for want of a GPU or of the CUDA kernels fails the stage on a GPU machine.
4. ``roi_bench``: RoIAlign, ours against torchvision's CUDA kernel, on an FPN P2 map (2, 256, 200, 272)
   float32 (an 800x1088 image at stride 4), 512 and 4096 boxes, 7x7 and 14x14, forward and
   forward+backward; CUDA-event timing after warm-up, median of N. Target: ours / torchvision <= 1.
5. ``train_amp``: a few mixed-precision training iterations of ``classroom_fpn`` and of ``coco_r50_fpn`` at
   a reduced size (512 px), through the trainer (``engine.trainer.train``) on a small shapes data set
   generated in a temporary folder; random initial weights (so coco_r50_fpn trains its BatchNorm, as a
   from-scratch run must). Every loss must be finite.
6. ``r50_800``: ``coco_r50_fpn`` as the paper runs it (frozen BN, 800x1333 images, 2 per GPU, 512 RoIs per
   image, 2000 proposals), random weights: peak memory (``torch.cuda.max_memory_allocated``) and images/s
   in training (``engine.trainer.train_step``, float32 and float16 AMP, lr 0 so that random weights under
   frozen BN cannot diverge) and in inference (float32, as ``engine.inference`` runs it).

Results: ``benchmarks/results/gpu_check_<gpu>.json`` (written after every stage, atomically), a copy in
``--out`` with the log, and one summary table printed last. Exit status 0 when every stage passed, 1 when
one failed, and 0 with a message when no GPU is visible.

``--dry-run`` runs the same stages on the CPU at tiny sizes (2 iterations of each model at 128 px, RoIAlign
with 8 boxes, no compilation), so that CI (``tests/test_gpu_check.py``) keeps this script working.

    make gpu-check [GPU_CHECK_OUT=dir] [GPU_CHECK_PYTHON=python3] [GPU_CHECK_ARGS="--stages env,roi_bench"]
    .venv/bin/python benchmarks/gpu_check.py --dry-run [--results /tmp/x]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the checkout's mrcnn_lite first
    sys.path.insert(0, str(ROOT))

from mrcnn_lite.atomic import write_json  # noqa: E402  (after the sys.path line above)
from mrcnn_lite.provenance import git_commit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LOGS = ROOT / "build" / "gpu-check"  # ignored; the log is also copied to --out

#: (stage, seconds it may take on the GPU machine). The whole run stays within ``--budget``; a stage that
#: finishes early passes its unused seconds on to the next ones.
STAGES: dict[str, float] = {
    "env": 30,
    "build": 180,
    "cuda_tests": 90,
    "roi_bench": 45,
    "train_amp": 60,
    "r50_800": 75,
}
DEFAULT_BUDGET = 450.0  # seconds for all stages (make gpu-check must end within 8 minutes)

# Sizes: (GPU, dry run).
ROI_FEATURES = ((2, 256, 200, 272), (2, 16, 25, 34))  # FPN P2 of an 800x1088 image (stride 4)
ROI_BOXES = ((512, 4096), (8,))
TRAIN_SIZE = (512, 128)  # shorter side of coco_r50_fpn's images in train_amp
TRAIN_ITERS = (6, 2)
R50_SIZE = ((800, 1333), (128, 213))
R50_STEPS = ((3, 10), (0, 1))  # (warm-up, timed)
# Dry run only: fewer proposals and RoIs, so that the CPU's heads (which dominate at 128 px) stay cheap.
DRY_HEADS = [
    "model.rpn_pre_nms_top_n_train=100",
    "model.rpn_post_nms_top_n_train=100",
    "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=50",
    "model.roi_batch_size_per_image=32",
]
TARGET_ROI_RATIO = 1.0  # ours / torchvision time
REFERENCE_MEMORY_GB = (5.0, 9.0)  # maskrcnn-benchmark's MODEL_ZOO.md, R50-FPN, 2 images a GPU


# ------------------------------------------------------------------------------------------ helpers


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unknown"


def run_cmd(cmd: list[str], timeout: float, env: dict | None = None, cwd: Path = ROOT) -> tuple[int, str]:
    """Run ``cmd`` (its own process group, killed whole at ``timeout``); returns (exit code, output).
    Exit code 124 means it was killed at the time limit."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return 124, out + f"\n[killed after {timeout:.0f} s]"


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Clock:
    """Times calls on one device: CUDA events around the call on a GPU, the host clock on the CPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def once(self, fn) -> float:
        """Seconds one call of ``fn`` takes."""
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        tic = time.perf_counter()
        fn()
        return time.perf_counter() - tic

    def median(self, fn, warmup: int, reps: int, deadline: float) -> tuple[float, int]:
        """(median seconds per call, calls timed) after ``warmup`` calls; stops early at ``deadline``
        (``time.monotonic()``) once 3 calls are timed."""
        for _ in range(warmup):
            fn()
        self.sync()
        times: list[float] = []
        for _ in range(reps):
            times.append(self.once(fn))
            if len(times) >= 3 and time.monotonic() > deadline:
                break
        return statistics.median(times), len(times)


def shapes_dataset(folder: Path, num_train: int) -> Path:
    """A small synthetic COCO-format set (our generator) in ``folder``."""
    from mrcnn_lite.data.shapes import generate

    generate(folder, seed=0, num_train=num_train, num_val=1)
    return folder


# ------------------------------------------------------------------------------------------- stages
# Each stage runs in a child process: ``stage_<name>(ctx) -> dict`` with at least "status" ("ok"/"fail").


def stage_env(ctx: dict) -> dict:
    import torch
    import torchvision

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torchvision": torchvision.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "commit": git_commit(dirty=True),
    }
    nvcc = shutil.which("nvcc") or (
        str(Path(os.environ["CUDA_HOME"], "bin", "nvcc")) if os.environ.get("CUDA_HOME") else None
    )
    if nvcc and Path(nvcc).exists():
        code, out = run_cmd([nvcc, "--version"], 20)
        info["nvcc"] = (
            out.strip().splitlines()[-1] if code == 0 and out.strip() else f"failed: {tail(out, 3)}"
        )
    else:
        info["nvcc"] = None
    if shutil.which("nvidia-smi"):
        code, out = run_cmd(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 20
        )
        info["nvidia_smi"] = out.strip()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            device=p.name,
            capability=f"{p.major}.{p.minor}",
            multiprocessors=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 1),
            arch_list_torch=torch.cuda.get_arch_list(),
        )
    ok = info["cuda_available"] or ctx["dry_run"]
    summary = info.get("device", "CPU (dry run)") + f", torch {info['torch']}"
    return {"status": "ok" if ok else "fail", "summary": summary, **info}


_PROBE = """
import json, torch, torchvision
import mrcnn_lite.ops as ops
b = ops.backend()
device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.randn(2, 8, 20, 24, device=device)
rois = torch.tensor([[0, 2.5, 3.0, 60.0, 70.5], [1, 10.0, 8.0, 150.0, 140.0]], device=device)
ours = ops.roi_align(x, rois, 7, 1 / 8, 2, True)
err = (ours - torchvision.ops.roi_align(x, rois, 7, 1 / 8, 2, True)).abs().max().item()
kernels = b["cuda_device"] if device == "cuda" else b["cpu"]
print("PROBE " + json.dumps({"backend": b, "device": device, "max_abs_diff": err, "kernels": kernels}))
"""


def _probe(env: dict, timeout: float) -> dict:
    """Does the compiled extension load, and do its kernels run on this device and agree with torchvision?
    (A fresh process: the library may have just been rebuilt.)"""
    code, out = run_cmd([sys.executable, "-c", _PROBE], timeout, env)
    found = [ln for ln in out.splitlines() if ln.startswith("PROBE ")]
    if code != 0 or not found:
        return {"ok": False, "error": tail(out, 15)}
    res = json.loads(found[-1][len("PROBE ") :])
    res["ok"] = bool(res["kernels"]) and res["max_abs_diff"] < 1e-4
    return res


def _library_archs() -> list[str]:
    """GPU architectures compiled into ``mrcnn_lite/_C*.so`` (``cuobjdump``; empty if it is absent)."""
    libs = sorted((ROOT / "mrcnn_lite").glob("_C*.so"))
    tool = shutil.which("cuobjdump") or (
        str(Path(os.environ["CUDA_HOME"], "bin", "cuobjdump")) if os.environ.get("CUDA_HOME") else None
    )
    if not libs or not tool or not Path(tool).exists():
        return []
    found: set[str] = set()
    for flag in ("--list-elf", "--list-ptx"):
        _, out = run_cmd([tool, flag, str(libs[-1])], 30)
        kind = "ptx" if flag == "--list-ptx" else "sass"
        found |= {f"{kind}:{m}" for m in re.findall(r"sm_\d+a?", out)}
    return sorted(found)


def stage_build(ctx: dict) -> dict:
    env = dict(os.environ)
    env.pop("TORCH_CUDA_ARCH_LIST", None)  # torch builds for the visible GPU
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    if env.get("CUDA_HOME") and not Path(env["CUDA_HOME"], "bin", "nvcc").exists():
        env.pop("CUDA_HOME")  # a stale default (the Makefile's /usr/local/cuda): let torch find nvcc
    res: dict[str, Any] = {"cuda_home": env.get("CUDA_HOME")}
    before = _probe(env, 120)
    res["before"] = {k: before.get(k) for k in ("ok", "backend", "max_abs_diff", "error")}
    cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
    res["command"] = " ".join(["python", *cmd[1:]])
    if ctx["dry_run"]:  # no compilation on the CPU: the extension `make` built must load and agree
        res.update(built=False, status="ok" if before["ok"] else "fail")
        res["summary"] = f"dry run, not compiled; extension loads: {before['ok']}"
        return res
    if before["ok"] and not ctx["rebuild"]:
        res.update(built=False, archs=_library_archs(), status="ok")
        res["summary"] = f"already built, CUDA kernels run ({', '.join(res['archs']) or 'archs unknown'})"
        return res
    tic = time.monotonic()
    code, out = run_cmd(cmd, ctx["deadline"] - time.monotonic() - 60, env)
    res.update(built=code == 0, build_seconds=round(time.monotonic() - tic, 1), build_exit=code)
    if code != 0:
        res.update(status="fail", error=tail(out, 30), summary=f"build failed (exit {code})")
        return res
    after = _probe(env, 120)
    res["after"] = {k: after.get(k) for k in ("ok", "backend", "max_abs_diff", "error")}
    res["archs"] = _library_archs()
    res["status"] = "ok" if after["ok"] else "fail"
    res["summary"] = (
        f"built in {res['build_seconds']:.0f} s ({', '.join(res['archs']) or 'archs unknown'}); "
        + ("CUDA kernels run" if after["ok"] else f"kernels do not run: {after.get('error') or after}")
    )
    return res


def _cuda_test_files() -> list[str]:
    """Every test module with a ``@pytest.mark.cuda`` test, relative to the checkout."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if re.search(r"(pytest\.)?mark\.cuda\b", p.read_text(encoding="utf-8"))
    )


def stage_cuda_tests(ctx: dict) -> dict:
    import xml.etree.ElementTree as ET

    files = _cuda_test_files()
    if not files:
        return {"status": "fail", "summary": "no test file has CUDA-marked tests", "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "cuda",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *files,
        ]
        code, out = run_cmd(cmd, ctx["deadline"] - time.monotonic() - 5)
        if not junit.is_file():
            return {
                "status": "fail",
                "files": files,
                "exit": code,
                "error": tail(out, 30),
                "summary": f"pytest wrote no report (exit {code})",
            }
        cases = ET.parse(junit).getroot().iter("testcase")
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failed, skipped = [], []
        for case in cases:
            name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                counts["failed"] += 1
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                failed.append({"test": name, "message": (bad.get("message") or "")[:300]})
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
                skipped.append({"test": name, "message": (case.find("skipped").get("message") or "")[:200]})
            else:
                counts["passed"] += 1
    total = sum(counts.values())
    # A skip that names the GPU or CUDA (the tests' "needs the CUDA kernels and a GPU") means a CUDA test
    # did not run: on a GPU machine that fails the stage; in the dry run (no GPU) every test skips so.
    # Other skips (a parameter combination that does not apply, e.g. "RoIPool is max only") are fine.
    no_gpu = [x for x in skipped if re.search(r"gpu|cuda", x["message"], re.IGNORECASE)]
    counts["skipped_for_no_gpu"] = len(no_gpu)
    ok = total > 0 and counts["failed"] == 0 and code == 0
    if not ctx["dry_run"]:
        ok = ok and not no_gpu and counts["passed"] > 0
    summary = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if no_gpu:
        summary += f" ({len(no_gpu)} for want of a GPU or CUDA kernels)"
    return {
        "status": "ok" if ok else "fail",
        "summary": summary,
        "files": files,
        "exit": code,
        **counts,
        "failures": failed,
        "skips": (no_gpu or skipped)[:10],
        "output_tail": tail(out, 40) if not ok else "",
    }


def _roi_inputs(shape: tuple[int, ...], k: int, device: str, seed: int = 0):
    """Features of ``shape`` (one FPN level, stride 4) and ``k`` boxes of realistic sizes in the image."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n, _, h, w = shape
    stride = 4
    img = torch.tensor([w * stride, h * stride], dtype=torch.float32)
    feats = torch.randn(shape, generator=g)
    centre = torch.rand(k, 2, generator=g) * img
    size = torch.exp(torch.empty(k, 2).uniform_(2.8, 6.0, generator=g))  # ~16 to ~400 px, log-uniform
    xy1 = torch.minimum(torch.maximum(centre - size / 2, torch.zeros(2)), img)
    xy2 = torch.minimum(torch.maximum(centre + size / 2, torch.zeros(2)), img)
    batch = torch.randint(0, n, (k, 1), generator=g).float()
    return feats.to(device), torch.cat([batch, xy1, xy2], 1).to(device), 1 / stride


def stage_roi_bench(ctx: dict) -> dict:
    import torch
    import torchvision

    import mrcnn_lite.ops as ops

    device, i = ctx["device"], ctx["size_index"]
    clock = Clock(device)
    shape = ROI_FEATURES[i]
    reps, warmup = (50, 5) if device == "cuda" else (3, 1)
    cases = [(k, s, p) for k in ROI_BOXES[i] for s in (7, 14) for p in ("fwd", "fwd+bwd")]
    rows = []
    for n, (k, size, kind) in enumerate(cases):
        # each case gets an equal share of the time left (minus a margin for the report)
        share = (ctx["deadline"] - time.monotonic() - 5) / (len(cases) - n)
        feats, rois, scale = _roi_inputs(shape, k, device, seed=n)
        impls = {
            "ours": lambda x, s=size, r=rois, sc=scale: ops.roi_align(x, r, s, sc, 2, True),
            "torchvision": lambda x, s=size, r=rois, sc=scale: torchvision.ops.roi_align(
                x, r, s, sc, 2, True
            ),
        }
        row: dict[str, Any] = {"boxes": k, "size": size, "pass": kind}
        outs = {}
        for name, impl in impls.items():
            if kind == "fwd":

                def fn(impl=impl, x=feats):
                    with torch.no_grad():
                        return impl(x)

                outs[name] = fn()
            else:
                x = feats.clone().requires_grad_()
                grad = torch.randn(k, shape[1], size, size, device=device, generator=None)

                def fn(impl=impl, x=x, grad=grad):
                    x.grad = None
                    impl(x).backward(grad)

            deadline = time.monotonic() + share / 2
            sec, timed = clock.median(fn, warmup, reps, deadline)
            row[f"ms_{name}"] = sec * 1e3
            row[f"timed_{name}"] = timed
        if outs:
            row["max_abs_diff"] = (outs["ours"] - outs["torchvision"]).abs().max().item()
        row["ratio"] = row["ms_ours"] / row["ms_torchvision"]
        row["target_met"] = row["ratio"] <= TARGET_ROI_RATIO
        rows.append(row)
        print(
            f"  roi_align {size}x{size} {kind} {k} boxes: ours {row['ms_ours']:.3f} ms, "
            f"torchvision {row['ms_torchvision']:.3f} ms",
            flush=True,
        )
    bad = [r for r in rows if r.get("max_abs_diff", 0) > 1e-4]
    met = sum(r["target_met"] for r in rows)
    worst = max(r["ratio"] for r in rows)
    summary = f"ours/torchvision <= {TARGET_ROI_RATIO:g} in {met} of {len(rows)} cases (worst {worst:.2f})"
    if bad:
        summary += f"; {len(bad)} forward outputs differ from torchvision by > 1e-4"
    return {
        "status": "fail" if bad else "ok",
        "summary": summary,
        "features": list(shape),
        "sampling_ratio": 2,
        "aligned": True,
        "backend": ops.backend(),
        "rows": rows,
    }


def stage_train_amp(ctx: dict) -> dict:
    import torch

    from mrcnn_lite.config import get_config
    from mrcnn_lite.engine.trainer import train

    device, i = ctx["device"], ctx["size_index"]
    iters = TRAIN_ITERS[i]
    side = TRAIN_SIZE[i]
    # coco_r50_fpn from random weights trains its BatchNorm (as torchvision builds it without pretrained
    # weights; benchmarks/train_step.py does the same): the preset's frozen BN presumes ImageNet statistics,
    # and with random weights its loss_cls rose from 7.6 to 39 in 2 iterations (CPU dry run).
    scratch = ["model.frozen_bn=false", "model.freeze_at=0"]
    runs = {
        "classroom_fpn": [],  # its own image sizes (192-256 px): already small
        "coco_r50_fpn": [*scratch, f"data.min_size={side}", f"data.max_size={round(side * 1333 / 800)}"],
    }
    if ctx["dry_run"]:
        runs["classroom_fpn"] = ["data.min_size=128", "data.max_size=160"]
        runs["coco_r50_fpn"] += DRY_HEADS
    out: dict[str, Any] = {"status": "ok", "iterations": iters, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = shapes_dataset(Path(tmp) / "shapes", num_train=2 * iters)
        for name, extra in runs.items():
            overrides = [
                f"data.root={data}",
                "data.num_workers=0",
                "train.amp=true",
                "train.images_per_batch=2",
                f"train.max_iter={iters}",
                "train.warmup_iters=0",
                "train.log_period=1",
                f"train.checkpoint_period={iters}",
                *extra,
            ]
            cfg = get_config(name, overrides)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            tic = time.monotonic()
            try:
                result = train(cfg, Path(tmp) / name, progress=False, device=device)
                log = [json.loads(x) for x in (Path(tmp) / name / "metrics.jsonl").read_text().splitlines()]
                losses = [row["total_loss"] for row in log]
                finite = len(losses) == iters and all(v == v and abs(v) != float("inf") for v in losses)
                run = {
                    "status": "ok" if finite else "fail",
                    "total_loss": losses,
                    "last": result["losses"],
                    "seconds_per_iter": [round(row["time"], 4) for row in log],
                    "seconds": round(time.monotonic() - tic, 1),
                    "overrides": overrides,
                }
                if device == "cuda":
                    run["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                del result  # the trained model: freed before the next run is measured
            except Exception as exc:  # noqa: BLE001 - one model failing still reports the other
                run = {
                    "status": "fail",
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            out["runs"][name] = run
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            print(f"  {name}: {run['status']} {run.get('total_loss', run.get('error'))}", flush=True)
    failed = [n for n, r in out["runs"].items() if r["status"] != "ok"]
    out["status"] = "fail" if failed else "ok"
    parts = []
    for name, run in out["runs"].items():
        if run["status"] == "ok":
            parts.append(f"{name} loss {run['total_loss'][0]:.2f} -> {run['total_loss'][-1]:.2f}")
        else:
            parts.append(f"{name} FAILED")
    out["summary"] = f"{iters} AMP iterations: " + "; ".join(parts)
    return out


def _r50_batch(hw: tuple[int, int], device: str):
    """Two shapes images (those with objects) resized to ``hw``, with boxes and masks scaled to match."""
    import torch
    import torch.nn.functional as F

    from mrcnn_lite.data.coco import CocoDetection

    with tempfile.TemporaryDirectory() as tmp:
        ds = CocoDetection(shapes_dataset(Path(tmp), num_train=6), "train2017", train=True)
        images, targets = [], []
        for idx in range(len(ds)):
            image, t = ds[idx]
            if len(t["labels"]) == 0:
                continue
            image = image.as_subclass(torch.Tensor).float()[None] / 255
            h0, w0 = image.shape[-2:]
            image = F.interpolate(image, size=hw, mode="bilinear", align_corners=False)[0]
            masks = F.interpolate(t["masks"].as_subclass(torch.Tensor)[None].float(), size=hw)[0]
            sy, sx = hw[0] / h0, hw[1] / w0
            boxes = t["boxes"].as_subclass(torch.Tensor) * torch.tensor([sx, sy, sx, sy])
            images.append(image.contiguous().to(device))
            targets.append(
                {
                    "boxes": boxes.to(device),
                    "labels": t["labels"].to(device),
                    "masks": masks.to(torch.uint8).to(device),
                }
            )
            if len(images) == 2:
                return images, targets
    raise RuntimeError("fewer than 2 shapes images with objects")


def measure_inference(model, images: list, clock: Clock, warmup: int, reps: int, deadline: float) -> dict:
    """Images/s and peak memory of ``model(images)`` in eval mode, without gradients."""
    import torch

    cuda = images[0].is_cuda
    model.eval()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def infer():
        with torch.no_grad():
            return model(images)

    dets = infer()
    seconds, timed = clock.median(infer, warmup, reps, deadline)
    res = {
        "inference_batch_s": seconds,
        "inference_images_per_s": len(images) / seconds,
        "inference_batches_timed": timed,
        "detections_per_image": [len(d["boxes"]) for d in dets],
    }
    if cuda:
        res["inference_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def stage_r50_800(ctx: dict) -> dict:
    import torch

    from mrcnn_lite.config import get_config
    from mrcnn_lite.engine.schedule import build_optimizer, set_lr
    from mrcnn_lite.engine.trainer import train_step
    from mrcnn_lite.modeling.build import build_model

    device, i = ctx["device"], ctx["size_index"]
    hw = R50_SIZE[i]
    warmup, reps = R50_STEPS[i]
    cuda = device == "cuda"
    clock = Clock(device)
    images, targets = _r50_batch(hw, device)
    out: dict[str, Any] = {"image_size": list(hw), "images_per_batch": 2, "status": "ok", "modes": {}}
    out["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    modes = ("fp32", "amp")
    for n, mode in enumerate(modes):
        share = (ctx["deadline"] - time.monotonic() - 5) / (len(modes) - n)
        deadline = time.monotonic() + share
        try:
            torch.manual_seed(0)
            overrides = ["train.images_per_batch=2", *(DRY_HEADS if ctx["dry_run"] else [])]
            cfg = get_config("coco_r50_fpn", overrides)  # the paper's model, 2 images a GPU
            model = build_model(cfg, 81).to(device)
            optimizer = build_optimizer(model, cfg)
            # lr 0: the weights keep their random initial values, so every timed step computes the same
            # finite losses (random weights under the preset's frozen BN diverge within a few SGD steps);
            # the work of a step does not depend on the lr.
            set_lr(optimizer, 0.0)
            amp = mode == "amp"
            scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)  # the trainer's choice
            losses: list[float] = []

            clip = cfg.train.clip_grad_norm

            def step(model=model, optimizer=optimizer, scaler=scaler, amp=amp, losses=losses, clip=clip):
                values = train_step(model, optimizer, scaler, images, targets, clip, amp)
                losses.append(values["total_loss"])

            model.train()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            train_s, train_n = clock.median(step, warmup, reps, deadline - share / 3)
            res: dict[str, Any] = {
                "train_step_s": train_s,
                "train_images_per_s": 2 / train_s,
                "train_steps_timed": train_n,
                "losses_finite": all(v == v and abs(v) != float("inf") for v in losses),
                "first_last_loss": [losses[0], losses[-1]],
            }
            if cuda:
                res["train_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
                res["train_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            optimizer.zero_grad(set_to_none=True)
            if mode == "fp32":  # inference as the library runs it (engine.inference: no autocast)
                res.update(measure_inference(model, images, clock, warmup, reps, deadline))
            res["status"] = "ok" if res["losses_finite"] else "fail"
        except Exception as exc:  # noqa: BLE001 - fp32 failing (say, out of memory) still measures AMP
            res = {"status": "fail", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        out["modes"][mode] = res
        # free this mode's model and optimizer state before the next one is built and measured
        model = optimizer = scaler = step = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        print(
            f"  r50 {mode}: {res.get('status')} {res.get('train_images_per_s', res.get('error'))}", flush=True
        )
    failed = [m for m, r in out["modes"].items() if r["status"] != "ok"]
    out["status"] = "fail" if failed else "ok"
    parts = []
    for mode, r in out["modes"].items():
        if r["status"] != "ok":
            parts.append(f"{mode} FAILED")
            continue
        mem = f", peak {r['train_peak_allocated_gib']:.1f} GiB" if "train_peak_allocated_gib" in r else ""
        infer = f", infer {r['inference_images_per_s']:.1f} img/s" if "inference_images_per_s" in r else ""
        parts.append(f"{mode}: train {r['train_images_per_s']:.1f} img/s{mem}{infer}")
    out["summary"] = "; ".join(parts)
    out["reference_memory_gb"] = list(REFERENCE_MEMORY_GB)
    return out


STAGE_FUNCS = {
    "env": stage_env,
    "build": stage_build,
    "cuda_tests": stage_cuda_tests,
    "roi_bench": stage_roi_bench,
    "train_amp": stage_train_amp,
    "r50_800": stage_r50_800,
}


def child(args: argparse.Namespace) -> None:
    """Run one stage (``--stage``) and write its result to ``--result``; never raises."""
    ctx = {
        "dry_run": args.dry_run,
        "device": "cpu" if args.dry_run else "cuda",
        "size_index": 1 if args.dry_run else 0,
        "deadline": args.deadline,
        "rebuild": args.rebuild,
    }
    fault = os.environ.get("MRCNN_LITE_GPU_CHECK_FAULT", "")  # tests only: "crash:STAGE" or "hang:STAGE"
    if fault == f"crash:{args.stage}":
        os._exit(3)
    if fault == f"hang:{args.stage}":
        time.sleep(3600)
    try:
        if args.dry_run:
            import torch

            # one thread: on a busy 2-core CI machine two OpenMP threads ran R50 steps 3x slower than one
            torch.set_num_threads(1)
        result = STAGE_FUNCS[args.stage](ctx)
    except Exception as exc:  # noqa: BLE001 - the report says what broke
        traceback.print_exc()
        result = {
            "status": "fail",
            "summary": f"{type(exc).__name__}: {exc}"[:300],
            "error": traceback.format_exc(),
        }
    write_json(args.result, result)


# ---------------------------------------------------------------------------------------- the driver


def _row_text(name: str, res: dict) -> list[tuple[str, str, str, str]]:
    """Summary-table rows (stage, check, status, result) for one stage."""
    status, secs = res.get("status", "?"), res.get("seconds")
    took = f"{secs:.0f} s" if isinstance(secs, int | float) else "-"
    rows = [(name, took, status.upper() if status != "ok" else "ok", res.get("summary", ""))]
    if name == "roi_bench" and res.get("rows"):
        for r in res["rows"]:
            verdict = "ok" if r["target_met"] else "slower"
            text = (
                f"ours {r['ms_ours']:.3f} ms, torchvision {r['ms_torchvision']:.3f} ms, "
                f"ratio {r['ratio']:.2f}"
            )
            rows.append(("", f"{r['size']}x{r['size']} {r['pass']} {r['boxes']} boxes", verdict, text))
    if name == "r50_800" and res.get("modes"):
        for mode, r in res["modes"].items():
            if r.get("status") != "ok":
                rows.append(("", mode, "FAIL", str(r.get("error", ""))[:120]))
                continue
            mem = r.get("train_peak_allocated_gib")
            rows.append(
                (
                    "",
                    f"{mode} train",
                    "ok",
                    f"{r['train_images_per_s']:.1f} img/s ({r['train_step_s'] * 1e3:.0f} ms/step)"
                    + (
                        f", peak {mem:.2f} GiB allocated, {r['train_peak_reserved_gib']:.2f} reserved"
                        if mem is not None
                        else ""
                    ),
                )
            )
            if "inference_images_per_s" not in r:
                continue
            imem = r.get("inference_peak_allocated_gib")
            rows.append(
                (
                    "",
                    f"{mode} inference",
                    "ok",
                    f"{r['inference_images_per_s']:.1f} img/s"
                    + (f", peak {imem:.2f} GiB" if imem is not None else ""),
                )
            )
    if name == "train_amp" and res.get("runs"):
        for model, r in res["runs"].items():
            if r.get("status") == "ok":
                text = "losses " + ", ".join(f"{v:.3f}" for v in r["total_loss"])
                if "peak_memory_gib" in r:
                    text += f"; peak {r['peak_memory_gib']:.2f} GiB"
            else:
                text = str(r.get("error", ""))[:120]
            rows.append(("", model, r.get("status", "?") if r.get("status") == "ok" else "FAIL", text))
    if name == "cuda_tests" and res.get("failures"):
        rows += [("", f["test"][:40], "FAIL", f["message"][:100]) for f in res["failures"][:8]]
    return rows


def print_table(report: dict) -> None:
    title = "GPU check" + (" (DRY RUN on the CPU, tiny sizes)" if report["dry_run"] else "")
    print(
        f"\n{title}: {report['device']}, torch {report['torch']}, commit {report['commit']}, "
        f"{report['total_seconds']:.0f} s of {report['budget_seconds']:.0f}\n"
    )
    print("| stage | time / case | status | result |")
    print("|---|---|---|---|")
    for name, res in report["stages"].items():
        for row in _row_text(name, res):
            print("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |")
    bad = [n for n, r in report["stages"].items() if r.get("status") != "ok"]
    print(
        f"\n{len(report['stages']) - len(bad)} of {len(report['stages'])} stages passed"
        + (f"; failed: {', '.join(bad)}" if bad else ""),
        flush=True,
    )


def install_wheels(folder: Path) -> tuple[str | None, list[str] | str]:
    """Install the wheels in ``folder`` (what this Python lacks, e.g. pycocotools on a GPU machine without a
    package registry) under ``build/gpu-check/site``; returns (that folder or None, the wheels or the
    error)."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return None, []
    site = LOGS / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
           "--upgrade", "--target", str(site), *map(str, wheels)]  # fmt: skip
    code, out = run_cmd(cmd, 300)
    if code != 0:
        print(
            f"gpu-check: installing {folder}/*.whl failed (exit {code}); going on without them:\n{tail(out)}"
        )
        return None, f"failed: {tail(out, 5)}"
    return str(site), [w.name for w in wheels]


def driver(args: argparse.Namespace) -> int:
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA GPU is visible (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda}): nothing to check here. On a machine with a GPU run `make gpu-check`; "
            "`python benchmarks/gpu_check.py --dry-run` runs the same stages on the CPU at tiny sizes."
        )
        return 0
    stages = list(STAGES) if not args.stages else args.stages.split(",")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    device = "cpu" if args.dry_run else torch.cuda.get_device_name(0)
    name = "gpu_check_dryrun_cpu.json" if args.dry_run else f"gpu_check_{slug(device)}.json"
    results_dir = Path(args.results)
    out_dir = Path(args.out) if args.out else None
    log_dir = out_dir or LOGS
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "gpu_check.log"
    log_path.write_text("")
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "device": device,
        "torch": torch.__version__,
        "commit": git_commit(dirty=True),
        "budget_seconds": args.budget,
        "stages": {},
    }
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    if args.wheels:
        site, installed = install_wheels(Path(args.wheels))
        report["wheels"] = installed
        paths[1:1] = [site] if site else []
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path even where a GPU exists
    start = time.monotonic()
    budget = max(1.0, args.budget)  # make passes what is left of its 8 minutes; each stage gets >= 10 s
    report["budget_seconds"] = budget
    end = start + budget
    scale = budget / sum(STAGES[s] for s in stages)  # the stages' budgets, scaled to --budget
    for n, stage in enumerate(stages):
        # this stage may run until its scheduled end: what earlier stages left unused passes on to it
        scheduled_end = start + scale * sum(STAGES[s] for s in stages[: n + 1])
        limit = min(max(10.0, scheduled_end - time.monotonic()), max(10.0, end - time.monotonic()))
        print(f"gpu-check: {stage} (up to {limit:.0f} s)", flush=True)
        tic = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            result_file = Path(tmp) / "result.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--stage",
                stage,
                "--result",
                str(result_file),
                "--deadline",
                str(time.monotonic() + limit - 3),
            ]
            cmd += ["--dry-run"] * args.dry_run + ["--rebuild"] * args.rebuild
            code, output = run_cmd(cmd, limit, env)
            with log_path.open("a") as log:
                log.write(f"===== {stage} (exit {code}, {time.monotonic() - tic:.1f} s)\n{output}\n")
            if result_file.is_file():
                res = json.loads(result_file.read_text())
            elif code == 124:
                res = {
                    "status": "timeout",
                    "summary": f"killed at its {limit:.0f} s budget",
                    "output_tail": tail(output, 20),
                }
            else:
                res = {
                    "status": "crashed",
                    "summary": f"exit {code} without a result: {tail(output, 1)[:200]}",
                    "output_tail": tail(output, 40),
                }
        res["seconds"] = round(time.monotonic() - tic, 1)
        res["budget_s"] = round(limit, 1)
        report["stages"][stage] = res
        report["total_seconds"] = round(time.monotonic() - start, 1)
        print(
            f"gpu-check: {stage} {res['status']} in {res['seconds']:.0f} s: {res.get('summary', '')}",
            flush=True,
        )
        if res["status"] != "ok":
            print(tail(output, 25), flush=True)
        for folder in (results_dir, out_dir):  # after every stage: a run killed later keeps what it measured
            if folder:
                write_json(folder / name, report)
    print_table(report)
    paths = dict.fromkeys(
        str(p) for p in (results_dir / name, *([out_dir / name] if out_dir else []), log_path)
    )
    print("wrote " + ", ".join(paths))
    return 0 if all(r.get("status") == "ok" for r in report["stages"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the CPU path at tiny sizes (what CI runs)")
    ap.add_argument("--out", help="also write the JSON and the log here (the device's $OUT)")
    ap.add_argument(
        "--results", default=str(RESULTS), help="folder for the JSON (default benchmarks/results)"
    )
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all stages")
    ap.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--rebuild", action="store_true", help="compile the extension even if it already works")
    ap.add_argument("--wheels", help="install these wheels (a folder of .whl files) for the stages first")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        child(args)
        return 0
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
