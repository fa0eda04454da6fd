"""Fuzzing the RoI operators with bad input, crash-safe: the cases run in a child process.

Every operator (``roi_align``, ``roi_warp``, ``roi_pool``; modes avg/max; aligned True/False; forward and
backward; the compiled kernels, the pure-PyTorch references and the raw ``torch.ops.mrcnn_lite`` ops) is fed
seeded random invalid or extreme input: NaN / Inf / huge (1e30, 3e38) coordinates, negative-size boxes,
batch indices out of range or not integral, H or W = 0, N = 0, C = 0, K = 0, mixed dtypes and devices,
non-contiguous and channels_last maps, half / bfloat16, bad ``output_size`` / ``spatial_scale`` /
``sampling_ratio`` / ``mode``, huge adaptive grids, garbage ``argmax`` for the backward ops. Each case must
either return an output of the right shape and dtype (a defined output) or raise an error whose message names
the offending argument (a clean error). A segfault or a hang kills only the child: the parent records the
case as a crash and restarts the child after it.

    .venv/bin/python tests/roi_fuzz.py [--cases 1500] [--seed 0]      # prints the counts as JSON

``run_fuzz()`` is what tests/test_roi_fuzz.py calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# An error message must name one of these (the Python front end's or the C++ schema's argument names).
ARG_NAMES = (
    "input",
    "boxes",
    "rois",
    "output_size",
    "output size",
    "spatial_scale",
    "sampling_ratio",
    "mode",
    "grad",
    "argmax",
    "batch index",
    "batch_size",
)


# ---------------------------------------------------------------- child side


def _make_case(rng: random.Random):
    """One random case: ``(description, thunk)``; the thunk runs the operator (and its backward)."""
    import torch

    from mrcnn_lite import ops
    from mrcnn_lite.ops import reference as ref

    dtype = rng.choice([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16])
    n, c = rng.choice([1, 2, 3, 1, 2, 3, 0]), rng.choice([1, 2, 3, 1, 2, 3, 0])
    h, w = rng.choice([5, 8, 1, 5, 8, 0]), rng.choice([6, 8, 1, 6, 8, 0])
    k = rng.choice([0, 1, 2, 4])
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    x = torch.randn(n, c, h, w, generator=g).to(dtype)
    xy1 = torch.rand(k, 2, generator=g) * 40
    wh = torch.rand(k, 2, generator=g) * 40
    batch = torch.randint(0, max(n, 1), (k, 1), generator=g).float()
    rois = torch.cat([batch, xy1, xy1 + wh], 1).to(dtype)
    output_size: object = rng.choice([1, 2, 3, (2, 3), 7])
    scale: object = rng.choice([1.0, 0.5, 0.125])
    ratio: object = rng.choice([-1, 0, 1, 2])
    aligned = rng.random() < 0.5
    mode: object = rng.choice(["avg", "max"])
    boxes: object = rois
    desc = []

    def coord(v):  # one coordinate of one box
        if k:
            rois[rng.randrange(k), rng.randrange(1, 5)] = v

    mutations = [
        ("nan coordinate", lambda: coord(float("nan"))),
        ("+inf coordinate", lambda: coord(float("inf"))),
        ("-inf coordinate", lambda: coord(float("-inf"))),
        ("huge coordinate 1e30", lambda: coord(rng.choice([1e30, -1e30]))),
        ("huge coordinate 3e38", lambda: coord(rng.choice([3e38, -3e38]))),
        ("huge box", lambda: rois[:, 1:].copy_(torch.tensor([-1e30, -1e30, 1e30, 1e30]))),
        ("negative-size box", lambda: rois[:, 1:].copy_(rois[:, [3, 4, 1, 2]])),
        ("batch index out of range", lambda: coord_b(rng.choice([n, n + 5, -1, 1e9]))),
        ("batch index not integral", lambda: coord_b(0.5)),
        ("batch index nan", lambda: coord_b(float("nan"))),
        ("inf features", lambda: x.view(-1)[: max(x.numel() // 3, 0)].fill_(float("inf"))),
        ("nan features", lambda: x.view(-1)[: max(x.numel() // 3, 0)].fill_(float("nan"))),
        ("-inf features", lambda: x.fill_(float("-inf"))),
        ("output_size 0", lambda: set_("output_size", rng.choice([0, -1, (0, 3), (2, -5)]))),
        ("output_size not int", lambda: set_("output_size", rng.choice([7.5, "7", (1, 2, 3), float("nan")]))),
        ("spatial_scale bad", lambda: set_("scale", rng.choice([0.0, -1.0, float("nan"), float("inf")]))),
        ("spatial_scale extreme", lambda: set_("scale", rng.choice([1e30, 1e-30]))),
        ("sampling_ratio bad", lambda: set_("ratio", rng.choice([300, 10**9, 2.5, -(10**9)]))),
        ("adaptive huge box", lambda: (set_("ratio", 0), coord(1e9))),
        ("mode bad", lambda: set_("mode", rng.choice(["sum", None, "MAX"]))),
        (
            "rois dtype",
            lambda: set_("boxes", rois.to(rng.choice([torch.float64, torch.int64, torch.float16]))),
        ),
        ("rois device", lambda: set_("boxes", rois.to("meta"))),
        ("rois shape", lambda: set_("boxes", rng.choice([rois[:, :4], rois[:, 0], rois[None]]))),
        ("boxes list", lambda: set_("boxes", [rois[:, 1:]] * rng.choice([1, n, n + 1]))),
        ("boxes list bad", lambda: set_("boxes", [rois[:, 2:]])),
        ("boxes not a tensor", lambda: set_("boxes", rois.tolist())),
        ("non-contiguous rois", lambda: set_("boxes", rois.t().contiguous().t())),
    ]
    state = {"output_size": output_size, "scale": scale, "ratio": ratio, "mode": mode, "boxes": boxes}

    def set_(key, v):
        state[key] = v

    def coord_b(v):
        if k:
            rois[rng.randrange(k), 0] = v

    for _ in range(rng.choice([1, 1, 1, 2])):
        name, fn = rng.choice(mutations)
        desc.append(name)
        fn()
    layout = rng.choice(["contiguous"] * 3 + ["channels_last"] * 2 + ["sliced"] * 2 + ["3-D", "int"])
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.cat([x, x], 3)[..., ::2]
    elif layout == "3-D":
        x = x[0] if n else x.view(-1)
    elif layout == "int":
        x = x.nan_to_num(0, 0, 0).long()
    desc.append(f"{layout} {dtype} N={n} C={c} H={h} W={w} K={k}")
    op = rng.choice(["align", "warp", "pool", "raw_fwd", "raw_bwd"])
    impl = rng.choice(["ext", "ref", "both"]) if op in ("align", "warp", "pool") else "ext"
    desc.append(f"{op}/{impl}/{state['mode']}/aligned={aligned}")
    fns = {
        ("align", "ext"): ops.roi_align,
        ("align", "ref"): ref.roi_align,
        ("warp", "ext"): ops.roi_warp,
        ("warp", "ref"): ref.roi_warp,
    }

    def backward(out, inp):
        if inp.is_floating_point() and inp.requires_grad:
            out.float().sum().backward()
            assert inp.grad is not None and inp.grad.shape == inp.shape, "gradient of the wrong shape"

    def call(which, inp, boxes):
        ps = state
        if op == "pool":
            fn = ops.roi_pool if which == "ext" else ref.roi_pool
            return fn(inp, boxes, ps["output_size"], ps["scale"])
        return fns[op, which](inp, boxes, ps["output_size"], ps["scale"], ps["ratio"], aligned, ps["mode"])

    def both():
        """The kernel and the reference (in float32 for half/bfloat16, whose kernels accumulate in float)
        must agree: both raise, or both give the same output and gradient."""
        results = []
        for which in ("ext", "ref"):
            low = which == "ref" and x.dtype in (torch.float16, torch.bfloat16)
            inp = (x.float() if low else x).detach().requires_grad_() if x.is_floating_point() else x
            boxes = state["boxes"]
            if low and isinstance(boxes, torch.Tensor) and boxes.dtype == x.dtype:
                boxes = boxes.float()
            try:
                out = call(which, inp, boxes)
                (gx,) = torch.autograd.grad(out.float().sum(), inp) if inp.is_floating_point() else (None,)
                results.append((out, gx))
            except Exception as exc:  # noqa: BLE001
                results.append(exc)
        (a, b) = results
        if isinstance(a, Exception) or isinstance(b, Exception):
            if isinstance(a, Exception) and isinstance(b, Exception):
                raise a
            raise AssertionError(f"kernel and reference disagree: {a!r} vs {b!r}")
        tol = {torch.float64: 1e-7, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}[x.dtype]
        for u, v in zip(a, b, strict=True):
            if u is not None:
                torch.testing.assert_close(u.float(), v.float(), atol=tol, rtol=tol, equal_nan=True)

    def run():
        inp = x.detach().requires_grad_() if x.is_floating_point() else x
        ps = state
        if impl == "both":
            return both()
        if op in ("align", "warp", "pool"):
            out = call(impl, inp, ps["boxes"])
        elif op == "raw_fwd":  # the schema ops directly: no Python checks at all
            size = ps["output_size"] if isinstance(ps["output_size"], tuple) else (ps["output_size"],) * 2
            out, _ = torch.ops.mrcnn_lite.roi_align(
                inp, ps["boxes"], ps["scale"], size[0], size[-1], ps["ratio"], aligned,
                ps["mode"] == "max", rng.random() < 0.5,
            )  # fmt: skip
        else:  # raw backward with a (possibly garbage) argmax
            return raw_backward(ps)
        if isinstance(out, torch.Tensor) and isinstance(ps["boxes"], torch.Tensor) and inp.dim() == 4:
            size = ps["output_size"] if isinstance(ps["output_size"], tuple) else (ps["output_size"],) * 2
            expected = (ps["boxes"].shape[0], inp.shape[1], int(size[0]), int(size[-1]))
            assert tuple(out.shape) == expected, f"output shape {tuple(out.shape)}, expected {expected}"
            assert out.dtype == inp.dtype, f"output dtype {out.dtype}, expected {inp.dtype}"
        backward(out, inp)

    def raw_backward(ps):
        size = ps["output_size"] if isinstance(ps["output_size"], tuple) else (ps["output_size"],) * 2
        r = ps["boxes"]
        kk = r.shape[0] if isinstance(r, torch.Tensor) and r.dim() else 0
        ph, pw = (size[0], size[-1]) if all(isinstance(v, int) and v > 0 for v in size) else (1, 1)
        grad = torch.randn(kk, max(c, 0), ph, pw, generator=g).to(x.dtype if x.is_floating_point() else dtype)
        argmax = torch.randint(-3, 70000, grad.shape, generator=g, dtype=torch.int32)
        if rng.random() < 0.2:
            argmax = argmax.long()
        if rng.random() < 0.2:
            grad = grad[:, :, :1]
        shape = (n, c, h, w)
        if rng.random() < 0.2:
            shape = (n, c, rng.choice([-1, 0]), w)
        if rng.random() < 0.3:
            out = torch.ops.mrcnn_lite.roi_pool_backward(grad, r, argmax, ps["scale"], ph, pw, *shape)
        else:
            out = torch.ops.mrcnn_lite.roi_align_backward(
                grad, r, argmax, ps["scale"], ph, pw, *shape, ps["ratio"], aligned, ps["mode"] == "max",
                rng.random() < 0.5,
            )  # fmt: skip
        assert tuple(out.shape) == shape, f"gradient shape {tuple(out.shape)}, expected {shape}"

    return "; ".join(desc), run


def _child(seed: int, start: int, cases: int) -> None:
    """Run cases ``start .. cases - 1``; one JSON line per case (the parent reads them as they come)."""
    import warnings

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    segfault_at = int(os.environ.get("ROI_FUZZ_SEGFAULT_AT", "-1"))  # tests the parent's crash handling
    for i in range(start, cases):
        rng = random.Random(f"{seed}-{i}")
        if i == segfault_at:
            print(json.dumps({"i": i, "start": "self-test segfault"}), flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        desc, run = _make_case(rng)
        print(json.dumps({"i": i, "start": desc}), flush=True)
        try:
            run()
            result = {"i": i, "kind": "ok"}
        except Exception as exc:  # noqa: BLE001  (classified below)
            msg = f"{type(exc).__name__}: {exc}".split("\n")[0][:300]
            named = any(a in str(exc) for a in ARG_NAMES)
            result = {"i": i, "kind": "error" if named else "unclear", "msg": msg}
        print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- named cases: ours vs torchvision

# (case, library call as Python source with x = randn(2, 3, 10, 12) and nan/inf/box helpers in scope)
NAMED_CASES = [
    ("NaN coordinate", "roi_align(x, box(0, 1, 1, nan, 8), 7, 1.0, 2, True)"),
    ("+Inf coordinate", "roi_align(x, box(0, 1, 1, inf, 8), 7, 1.0, 2, True)"),
    (
        "huge box (+-1e30), sampling_ratio 2",
        "roi_align(x, box(0, -1e30, -1e30, 1e30, 1e30), 7, 1.0, 2, True)",
    ),
    (
        "huge box (+-1e30), adaptive sampling",
        "roi_align(x, box(0, -1e30, -1e30, 1e30, 1e30), 7, 1.0, 0, True)",
    ),
    ("box 1e6 px, adaptive sampling", "roi_align(x, box(0, 0, 0, 1e6, 1e6), 7, 1.0, 0, True)"),
    ("explicit sampling_ratio 10**6", "roi_align(x, box(0, 1, 1, 8, 8), 7, 1.0, 10**6, True)"),
    ("negative-size box", "roi_align(x, box(0, 8, 8, 1, 1), 7, 1.0, 2, True)"),
    ("batch index out of range (5, N = 2)", "roi_align(x, box(5, 1, 1, 8, 8), 7, 1.0, 2, True)"),
    ("batch index -1", "roi_align(x, box(-1, 1, 1, 8, 8), 7, 1.0, 2, True)"),
    ("batch index 0.5", "roi_align(x, box(0.5, 1, 1, 8, 8), 7, 1.0, 2, True)"),
    ("batch index NaN", "roi_align(x, box(nan, 1, 1, 8, 8), 7, 1.0, 2, True)"),
    ("feature map with H = 0", "roi_align(x[:, :, :0], box(0, 1, 1, 8, 8), 7, 1.0, 2, True)"),
    ("zero boxes (K = 0)", "roi_align(x, box(0, 1, 1, 8, 8)[:0], 7, 1.0, 2, True)"),
    ("boxes float64, features float32", "roi_align(x, box(0, 1, 1, 8, 8).double(), 7, 1.0, 2, True)"),
    ("boxes on another device (meta)", "roi_align(x, box(0, 1, 1, 8, 8).to('meta'), 7, 1.0, 2, True)"),
    ("integer features", "roi_align(x.long(), box(0, 1, 1, 8, 8).long(), 7, 1.0, 2, True)"),
    ("float16 features (CPU)", "roi_align(x.half(), box(0, 1, 1, 8, 8).half(), 7, 1.0, 2, True)"),
    ("bfloat16 features (CPU)", "roi_align(x.bfloat16(), box(0, 1, 1, 8, 8).bfloat16(), 7, 1.0, 2, True)"),
    (
        "channels_last features",
        "roi_align(x.contiguous(memory_format=torch.channels_last), box(0, 1, 1, 8, 8), 7)",
    ),
    ("output_size 0", "roi_align(x, box(0, 1, 1, 8, 8), 0, 1.0, 2, True)"),
    ("spatial_scale NaN", "roi_align(x, box(0, 1, 1, 8, 8), 7, nan, 2, True)"),
    ("spatial_scale -1", "roi_align(x, box(0, 1, 1, 8, 8), 7, -1.0, 2, True)"),
    (
        "Inf feature next to an outside sample",
        "roi_align(inf_corner, box(0, -3, -3, 1, 1), 2, 1.0, 1, False)",
    ),
    ("roi_pool: NaN coordinate", "roi_pool(x, box(0, 1, 1, nan, 8), 7, 1.0)"),
    ("roi_pool: huge box (+-1e30)", "roi_pool(x, box(0, -1e30, -1e30, 1e30, 1e30), 7, 1.0)"),
    ("roi_pool: batch index out of range", "roi_pool(x, box(5, 1, 1, 8, 8), 7, 1.0)"),
]


def _run_named(lib: str, src: str) -> None:
    """Child: run one named case with ``lib`` ("ours" or "torchvision"); print a one-line description."""
    import warnings

    import torch

    warnings.simplefilter("ignore")
    if lib == "ours":
        from mrcnn_lite.ops import roi_align, roi_pool  # noqa: F401
    else:
        from torchvision.ops import roi_align, roi_pool  # noqa: F401
    x = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(0)).requires_grad_()
    inf_corner = torch.zeros(1, 1, 4, 4)
    inf_corner[0, 0, 0, 0] = float("inf")
    nan, inf = float("nan"), float("inf")

    def box(*v):
        return torch.tensor([list(map(float, v))])

    names = {"torch": torch, "x": x, "inf_corner": inf_corner, "nan": nan, "inf": inf, "box": box}
    names |= {"roi_align": roi_align, "roi_pool": roi_pool}
    try:
        out = eval(src, names)  # noqa: S307  (our own fixed case list)
        if out.requires_grad:
            out.float().sum().backward()
        o = out.detach().float()
        if o.numel() == 0:
            what = f"empty output {list(out.shape)}"
        elif torch.isnan(o).any():
            what = f"{int(torch.isnan(o).sum())} of {o.numel()} outputs NaN"
        elif not torch.isfinite(o).all():
            what = "Inf where the Inf is read, no NaN"
        elif not o.any():
            what = "zeros"
        else:
            what = "finite output"
        print(what)
    except Exception as exc:  # noqa: BLE001
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0][:110]}")


def named_table(timeout: float = 30.0) -> list[tuple[str, str, str]]:
    """``(case, ours, torchvision)`` for every NAMED_CASES entry, each call in its own subprocess."""
    import signal as sig

    rows = []
    for name, src in NAMED_CASES:
        row = [name]
        for lib in ("ours", "torchvision"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--named", lib, src]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
                if p.returncode < 0:
                    row.append(f"**crash** ({sig.Signals(-p.returncode).name})")
                else:
                    row.append(p.stdout.strip() or f"exit code {p.returncode}")
            except subprocess.TimeoutExpired:
                row.append(f"**hang** (killed after {timeout:.0f} s)")
        rows.append(tuple(row))
    return rows


# ---------------------------------------------------------------- parent side


def run_fuzz(
    cases: int = 1500,
    seed: int = 0,
    case_timeout: float = 20.0,
    max_crashes: int = 10,
    env: dict | None = None,
) -> dict:
    """Run the cases in child processes; a case that kills the child (signal) or runs past ``case_timeout``
    seconds is a crash, and a fresh child resumes after it. Returns the counts and examples as a dict."""
    counts = {"cases": 0, "ok": 0, "error": 0, "unclear": 0, "crash": 0}
    examples: dict[str, list] = {"error": [], "unclear": [], "crash": []}
    child_exit_codes = []
    by_mutation: dict[str, dict[str, int]] = {}
    start = 0
    t0 = time.time()
    while start < cases and counts["crash"] < max_crashes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--seed", str(seed)]
        cmd += ["--start", str(start), "--cases", str(cases)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env
        )
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current, current_desc, hung = None, None, False
        while True:
            if not sel.select(timeout=case_timeout):
                hung = True
                proc.kill()
                break
            line = proc.stdout.readline()
            if not line:
                break
            rec = json.loads(line)
            if "start" in rec:
                current, current_desc = rec["i"], rec["start"]
                continue
            current = None
            counts["cases"] += 1
            counts[rec["kind"]] += 1
            for m in current_desc.split("; ")[:-2]:  # the mutations (the last two parts: shapes, operator)
                by_mutation.setdefault(m, {"ok": 0, "error": 0, "unclear": 0})[rec["kind"]] += 1
            if rec["kind"] != "ok" and len(examples[rec["kind"]]) < 40:
                examples[rec["kind"]].append(f"{current_desc} -> {rec['msg']}")
            start = rec["i"] + 1
        rc = proc.wait()
        child_exit_codes.append(rc)
        if current is not None:  # the child died (or hung) inside this case
            counts["cases"] += 1
            counts["crash"] += 1
            why = "hang" if hung else f"exit code {rc}"
            examples["crash"].append(f"case {current}: {current_desc} -> {why}")
            start = current + 1
        elif rc != 0:
            counts["crash"] += 1
            examples["crash"].append(f"child exited {rc} between cases")
            break
    return {
        "counts": counts,
        "child_exit_codes": child_exit_codes,
        "seconds": round(time.time() - t0, 1),
        "by_mutation": dict(sorted(by_mutation.items())),
        "examples": examples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--named", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--table", action="store_true", help="ours vs torchvision on NAMED_CASES, as markdown")
    args = p.parse_args()
    if args.named:
        _run_named(*args.named)
        return
    if args.table:
        print("| Bad input | mrcnn_lite | torchvision 0.29.1 |\n|---|---|---|")
        for row in named_table():
            print("| " + " | ".join(row) + " |")
        return
    if args.child:
        _child(args.seed, args.start, args.cases)
        return
    print(json.dumps(run_fuzz(args.cases, args.seed), indent=1))


if __name__ == "__main__":
    main()
