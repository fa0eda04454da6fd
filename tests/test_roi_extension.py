"""The compiled kernels (mrcnn_lite._C, mrcnn_lite/csrc) against the references and torchvision.

Skipped, with the reason from ``mrcnn_lite.ops.backend()``, where the extension is not built (a pure-Python
install), except ``test_extension_is_built``: CI always builds it, so there its absence is a failure unless
``MRCNN_LITE_NO_EXT=1`` says it was skipped on purpose.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch
import torchvision

from mrcnn_lite import ops
from mrcnn_lite.ops import reference as ref

BACKEND = ops.backend()
needs_ext = pytest.mark.skipif(not BACKEND["cpu"], reason=f"no compiled RoI kernels: {BACKEND['reason']}")
needs_cuda = pytest.mark.skipif(
    not (BACKEND["cuda"] and torch.cuda.is_available()),
    reason=f"needs the CUDA kernels and a GPU (torch.cuda.is_available()={torch.cuda.is_available()}; "
    f"{BACKEND['reason']})",
)


def random_case(seed: int, dtype=torch.float32, n=3, c=4, h=20, w=24, k=16, scale=1 / 8, inside=False):
    """Features [n, c, h, w] and k boxes (image pixels) of varied sizes; ``inside``: samples off the edges."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    size = torch.tensor([w, h], dtype=dtype) / scale
    if inside:
        xy1 = 1 / scale + (0.1 + 0.5 * torch.rand(k, 2, generator=g, dtype=dtype)) * (size - 2 / scale)
        wh = (0.1 + 0.4 * torch.rand(k, 2, generator=g, dtype=dtype)) * (size - 2 / scale)
    else:
        xy1 = (torch.rand(k, 2, generator=g, dtype=dtype) * 1.2 - 0.1) * size
        wh = torch.rand(k, 2, generator=g, dtype=dtype) * size * 0.6
    batch = torch.randint(0, n, (k, 1), generator=g).to(dtype)
    return x, torch.cat([batch, xy1, xy1 + wh], 1)


def fwd_grad(fn, x, rois, *args):
    """fn(x, rois, *args) and its gradient w.r.t. x for a fixed random output gradient."""
    x = x.detach().requires_grad_()
    out = fn(x, rois, *args)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype).to(out.device)
    (gx,) = torch.autograd.grad(out, x, g)
    return out, gx


def test_extension_is_built():
    if os.environ.get("MRCNN_LITE_NO_EXT", "") not in ("", "0"):
        pytest.skip("MRCNN_LITE_NO_EXT is set: the extension is skipped on purpose")
    assert BACKEND["cpu"], f"mrcnn_lite._C did not load: {BACKEND['reason']}"
    assert BACKEND["extension"] == "mrcnn_lite._C"


# ---------------------------------------------------------------- parity (float32, 1e-5)


@needs_ext
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 4])
def test_roi_align_matches_torchvision_and_reference(aligned, sampling_ratio):
    for size, scale in ((7, 1 / 4), (14, 1 / 16), (7, 1 / 32)):
        x, rois = random_case(seed=sampling_ratio, scale=scale)
        args = (size, scale, sampling_ratio, aligned)
        out, gx = fwd_grad(ops.roi_align, x, rois, *args)
        out_tv, gx_tv = fwd_grad(torchvision.ops.roi_align, x, rois, *args)
        out_ref, gx_ref = fwd_grad(ref.roi_align, x, rois, *args)
        for a, b in ((out, out_tv), (out, out_ref), (gx, gx_tv), (gx, gx_ref)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@needs_ext
@pytest.mark.parametrize("op", ["align", "warp"])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [True, False])
def test_modes_match_reference(op, mode, aligned):
    fast, slow = (ops.roi_align, ref.roi_align) if op == "align" else (ops.roi_warp, ref.roi_warp)
    for sampling_ratio, size in ((0, 7), (2, 14), (4, (3, 5))):
        x, rois = random_case(seed=sampling_ratio + 10)
        args = (size, 1 / 8, sampling_ratio, aligned, mode)
        out, gx = fwd_grad(fast, x, rois, *args)
        out_ref, gx_ref = fwd_grad(slow, x, rois, *args)
        torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)


@needs_ext
@pytest.mark.parametrize("size", [7, 14, (2, 5)])
def test_roi_pool_equals_torchvision(size):
    for scale in (1 / 4, 1 / 16, 1 / 32):
        x, rois = random_case(seed=5, scale=scale)
        out, gx = fwd_grad(ops.roi_pool, x, rois, size, scale)
        out_tv, gx_tv = fwd_grad(torchvision.ops.roi_pool, x, rois, size, scale)
        assert torch.equal(out, out_tv)
        torch.testing.assert_close(gx, gx_tv, atol=1e-5, rtol=1e-5)


@needs_ext
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous_inputs(layout):
    x, rois = random_case(seed=6)
    if layout == "channels_last":
        xs = x.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        xs = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, H and W strides swapped
    else:
        xs = torch.cat([x, x], 1)[:, ::2]  # every other channel of a bigger tensor
        x = xs.contiguous()
    assert not xs.is_contiguous()
    boxes = rois.t().contiguous().t()  # non-contiguous (column-major) boxes too
    assert not boxes.is_contiguous()
    for fn in (ops.roi_align, ops.roi_warp, ops.roi_pool):
        out, gx = fwd_grad(lambda t, r, fn=fn: fn(t, r, 7, 1 / 8), xs, boxes)
        out_c, gx_c = fwd_grad(lambda t, r, fn=fn: fn(t, r, 7, 1 / 8), x, rois)
        torch.testing.assert_close(out, out_c, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(gx, gx_c, atol=1e-6, rtol=1e-6)


@needs_ext
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
def test_cpu_dtypes(dtype, tol):
    x, rois = random_case(seed=8)
    for mode in ("avg", "max"):
        out = ops.roi_align(x.to(dtype), rois.to(dtype), 7, 1 / 8, 2, True, mode)
        assert out.dtype == dtype
        expected = ref.roi_align(x.double(), rois.double(), 7, 1 / 8, 2, True, mode)
        if dtype != torch.float64:  # compare with boxes rounded as the kernel saw them
            expected = ref.roi_align(x.to(dtype).double(), rois.to(dtype).double(), 7, 1 / 8, 2, True, mode)
        torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)


@needs_ext
def test_threads_do_not_change_results():
    x, rois = random_case(seed=9, c=8)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(fwd_grad(lambda t, r: ops.roi_align(t, r, 7, 1 / 8, 2, True), x, rois))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)  # the backward has no atomics: bitwise deterministic


# ---------------------------------------------------------------- gradcheck (float64)

EXT_CASES = [
    ("align avg", lambda x, r: ops.roi_align(x, r, 3, 1 / 8, 2, True)),
    ("align avg adaptive", lambda x, r: ops.roi_align(x, r, (2, 3), 1 / 8, 0, False)),
    ("align max", lambda x, r: ops.roi_align(x, r, 3, 1 / 8, 2, True, "max")),
    ("warp avg", lambda x, r: ops.roi_warp(x, r, 3, 1 / 8, 2, False)),
    ("warp max", lambda x, r: ops.roi_warp(x, r, 3, 1 / 8, 0, True, "max")),
    ("pool", lambda x, r: ops.roi_pool(x, r, 3, 1 / 8)),
]


@needs_ext
@pytest.mark.parametrize("name,fn", EXT_CASES, ids=[c[0] for c in EXT_CASES])
def test_extension_gradcheck(name, fn):
    x, rois = random_case(seed=11, dtype=torch.float64, n=2, c=2, h=8, w=9, k=4, inside=True)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fn(t, rois), (x,))


# ---------------------------------------------------------------- custom-op machinery


def _opcheck_cases():
    x, rois = random_case(seed=12, dtype=torch.float64, n=2, c=2, h=8, w=9, k=5)
    xg = x.clone().requires_grad_()
    cases = []
    for max_mode in (False, True):
        for quantize_box in (False, True):
            args = (1 / 8, 3, 2, 2, True, max_mode, quantize_box)
            cases.append(("roi_align", (xg, rois, *args)))
            out, argmax = torch.ops.mrcnn_lite.roi_align(x, rois, *args)
            grad = torch.randn_like(out)
            bargs = (grad, rois, argmax, 1 / 8, 3, 2, 2, 2, 8, 9, 2, True, max_mode, quantize_box)
            cases.append(("roi_align_backward", bargs))
    cases.append(("roi_align", (xg, rois, 1.0, 2, 2, 0, False, False, False)))
    cases.append(("roi_pool", (xg, rois, 1 / 8, 3, 2)))
    out, argmax = torch.ops.mrcnn_lite.roi_pool(x, rois, 1 / 8, 3, 2)
    cases.append(("roi_pool_backward", (torch.randn_like(out), rois, argmax, 1 / 8, 3, 2, 2, 2, 8, 9)))
    return cases


@needs_ext
def test_opcheck():
    for name, args in _opcheck_cases():
        torch.library.opcheck(getattr(torch.ops.mrcnn_lite, name).default, args)


@needs_ext
def test_torch_compile_fullgraph():
    x, rois = random_case(seed=13)

    def fn(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        a = ops.roi_align(t, r, 7, 1 / 8, 2, True)
        w = ops.roi_warp(t, r, 7, 1 / 8, 2, True, "max")
        p = ops.roi_pool(t, r, 7, 1 / 8)
        return a * 2 + w - p

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    expected, gx_expected = fwd_grad(fn, x, rois)
    got, gx = fwd_grad(compiled, x, rois)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gx, gx_expected, atol=1e-6, rtol=1e-6)


@needs_ext
def test_op_input_checks():
    """The C++ checks (they also guard direct torch.ops calls and torch.compile, where Python's are skipped):
    the exception types of the Python front end (ValueError; TypeError for a non-floating-point input)."""
    x, rois = random_case(seed=14)
    op = torch.ops.mrcnn_lite.roi_align
    with pytest.raises(ValueError, match="4-D"):
        op(x[0], rois, 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(ValueError, match=r"Tensor\[K, 5\]"):
        op(x, rois[:, :4], 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(ValueError, match="output size must be positive"):
        op(x, rois, 1.0, 0, 2, 2, True, False, False)
    with pytest.raises(ValueError, match="same dtype"):
        op(x, rois.double(), 1.0, 2, 2, 2, True, False, False)
    bad = rois.clone()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match="batch index out of range"):
        op(x, bad, 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(ValueError, match="batch index out of range"):
        torch.ops.mrcnn_lite.roi_pool(x, bad, 1.0, 2, 2)


# ---------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)],
)
@pytest.mark.parametrize("op", ["align", "warp", "pool"])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_cuda_matches_cpu(dtype, tol, op, mode):
    if op == "pool" and mode == "avg":
        pytest.skip("RoIPool is max only")
    fn = {
        "align": lambda t, r, s, a: ops.roi_align(t, r, 7, 1 / 8, s, a, mode),
        "warp": lambda t, r, s, a: ops.roi_warp(t, r, 7, 1 / 8, s, a, mode),
        "pool": lambda t, r, s, a: ops.roi_pool(t, r, 7, 1 / 8),
    }[op]
    for sampling_ratio, aligned in ((0, True), (2, False)):
        x, rois = random_case(seed=15, dtype=dtype, inside=(mode == "max"))
        cpu_x, cpu_r = (x.float(), rois.float()) if dtype in (torch.float16, torch.bfloat16) else (x, rois)
        out, gx = fwd_grad(fn, x.cuda(), rois.cuda(), sampling_ratio, aligned)
        out_cpu, gx_cpu = fwd_grad(fn, cpu_x, cpu_r, sampling_ratio, aligned)
        assert out.dtype == gx.dtype == dtype
        torch.testing.assert_close(out.cpu().to(out_cpu.dtype), out_cpu, atol=tol, rtol=tol)
        torch.testing.assert_close(gx.cpu().to(gx_cpu.dtype), gx_cpu, atol=tol, rtol=tol)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)],
)
def test_cuda_matches_torchvision(dtype, tol):
    """RoIAlign (avg) and RoIPool against torchvision's CUDA kernels, forward and backward, per dtype.
    torchvision has no bfloat16 kernel and accumulates half in half, so for half and bfloat16 the reference is
    torchvision in float32 on the same (already rounded) values; ours accumulates in float."""
    x, rois = random_case(seed=16, dtype=dtype)
    x, rois = x.cuda(), rois.cuda()
    low = dtype in (torch.float16, torch.bfloat16)
    xr, rr = (x.float(), rois.float()) if low else (x, rois)

    def both(ours, theirs, *args):
        t, tr = x.detach().requires_grad_(), xr.detach().requires_grad_()
        out, out_tv = ours(t, rois, *args), theirs(tr, rr, *args)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out.device, dtype)
        (gx,) = torch.autograd.grad(out, t, g)
        (gx_tv,) = torch.autograd.grad(out_tv, tr, g.to(out_tv.dtype))  # the same upstream gradient
        assert out.dtype == gx.dtype == dtype
        torch.testing.assert_close(out.to(out_tv.dtype), out_tv, atol=tol, rtol=tol)
        torch.testing.assert_close(gx.to(gx_tv.dtype), gx_tv, atol=tol, rtol=tol)

    for sampling_ratio, aligned in ((0, True), (2, False)):
        both(ops.roi_align, torchvision.ops.roi_align, 14, 1 / 8, sampling_ratio, aligned)
    both(ops.roi_pool, torchvision.ops.roi_pool, 7, 1 / 8)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name,fn", EXT_CASES, ids=[c[0] for c in EXT_CASES])
def test_cuda_gradcheck(name, fn):
    """float64 gradcheck; the backward's atomics reorder the sums, hence nondet_tol."""
    xs, rs = random_case(seed=11, dtype=torch.float64, n=2, c=2, h=8, w=9, k=4, inside=True)
    xs, rs = xs.cuda().requires_grad_(), rs.cuda()
    assert torch.autograd.gradcheck(lambda t: fn(t, rs), (xs,), nondet_tol=1e-10)
    assert ops.roi_align(xs, rs[:0], 7).shape == (0, 2, 7, 7)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("op", ["align", "pool"])
def test_cuda_deterministic_mode_alerts(op):
    """The CUDA backward uses atomics: torch.use_deterministic_algorithms(True) makes it raise (warn with
    warn_only=True), as torchvision's does; the forward is deterministic and runs."""
    x, rois = random_case(seed=21)
    x, rois = x.cuda().requires_grad_(), rois.cuda()
    fn = (
        (lambda: ops.roi_align(x, rois, 7, 1 / 8, 2, True))
        if op == "align"
        else (lambda: ops.roi_pool(x, rois, 7, 1 / 8))
    )
    name = (
        "mrcnn_lite::roi_align_backward (CUDA)" if op == "align" else "mrcnn_lite::roi_pool_backward (CUDA)"
    )
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        out = fn()
        with pytest.raises(RuntimeError, match=re.escape(name)):
            out.sum().backward()
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match=re.escape(name)):
            fn().sum().backward()
    finally:
        torch.use_deterministic_algorithms(before)


@pytest.mark.cuda
@needs_cuda
def test_cuda_bad_values_match_cpu():
    """Inf / NaN / -Inf features (zero-weight taps not read; max = torch.max over samples), huge and negative
    boxes, H = 0, channels_last and sliced maps: the CUDA kernels give the CPU kernels' outputs."""
    cases = []
    x, rois = random_case(seed=22, c=3)
    x[0, :, 0, 0] = float("inf")
    x[1, :, 3, 4] = float("nan")
    x[2, 1] = float("-inf")
    huge = torch.tensor([[0, -1e30, -1e30, 1e30, 1e30], [1, 8.0, 7.0, 1.0, 2.0], [2, -40.0, -40.0, 9.0, 9.0]])
    cases.append((x, torch.cat([rois, huge])))
    cases.append((x.contiguous(memory_format=torch.channels_last), rois))
    cases.append((torch.cat([x, x], 3)[..., ::2], rois))
    cases.append((x[:, :, :0], rois))
    for xc, rc in cases:
        for fn in (ops.roi_align, ops.roi_warp):
            for mode in ("avg", "max"):
                for sampling_ratio, aligned in ((0, True), (2, False)):
                    args = (5, 1 / 8, sampling_ratio, aligned, mode)
                    out, gx = fwd_grad(fn, xc.cuda(), rc.cuda(), *args)
                    out_cpu, gx_cpu = fwd_grad(fn, xc, rc, *args)
                    torch.testing.assert_close(out.cpu(), out_cpu, atol=1e-5, rtol=1e-5, equal_nan=True)
                    torch.testing.assert_close(gx.cpu(), gx_cpu, atol=1e-5, rtol=1e-5, equal_nan=True)
        out, gx = fwd_grad(ops.roi_pool, xc.cuda(), rc.cuda(), 5, 1 / 8)
        out_cpu, gx_cpu = fwd_grad(ops.roi_pool, xc, rc, 5, 1 / 8)
        torch.testing.assert_close(out.cpu(), out_cpu, equal_nan=True)
        torch.testing.assert_close(gx.cpu(), gx_cpu, equal_nan=True)


@pytest.mark.cuda
@needs_cuda
def test_cuda_bad_rois_raise_like_cpu():
    """Out-of-range / non-integral batch index, NaN coordinate: the same ValueError as on the CPU (it wrote
    zeros before), from the op itself, so also under torch.compile; the backward op checks its devices."""
    x, rois = random_case(seed=23, n=2)
    x, rois = x.cuda(), rois.cuda()
    bad_rows = [
        ([2, 1, 1, 3, 8], "batch index out of range"),
        ([0.5, 1, 1, 3, 8], "must be an integer"),
        ([0, 1, 1, float("nan"), 8], "is not finite"),
    ]
    for row, match in bad_rows:
        bad = torch.cat([rois, torch.tensor([row], device="cuda")])
        for fn in (ops.roi_align, ops.roi_pool):
            with pytest.raises(ValueError, match=match):
                fn(x, bad, 7, 1 / 8)
        torch._dynamo.reset()
        compiled = torch.compile(lambda t, r: ops.roi_align(t, r, 7, 1 / 8), backend="aot_eager")
        with pytest.raises(ValueError, match=match):
            compiled(x, bad)
    out, argmax = torch.ops.mrcnn_lite.roi_align(x, rois, 1 / 8, 2, 2, 2, True, True, False)
    args = (1 / 8, 2, 2, 3, 4, 20, 24, 2, True, True, False)
    bwd = torch.ops.mrcnn_lite.roi_align_backward
    with pytest.raises(ValueError, match="argmax must be on grad's device"):
        bwd(torch.ones_like(out), rois, argmax.cpu(), *args)
    with pytest.raises(TypeError, match="argmax must be int32"):
        bwd(torch.ones_like(out), rois, argmax.long(), *args)


@pytest.mark.cuda
@needs_cuda
def test_cuda_graph_capture_guards_in_the_kernel():
    """While a CUDA graph is captured the value check (a sync) is skipped; the kernels guard instead: a bad
    batch index gives zeros, a NaN coordinate puts every RoIAlign sample outside the map (zeros); the other
    rows are unaffected."""
    x, rois = random_case(seed=25, n=2)
    x, rois = x.cuda(), rois.cuda()
    bad = rois.clone()
    bad[0, 0] = 5
    bad[1, 3] = float("nan")
    expected = ops.roi_align(x, rois, 7, 1 / 8, 2, True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch.cuda.graph asks
        ops.roi_align(x, rois, 7, 1 / 8, 2, True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.roi_align(x, bad, 7, 1 / 8, 2, True)
    graph.replay()
    torch.cuda.synchronize()
    assert not out[:2].any()
    torch.testing.assert_close(out[2:], expected[2:])


@pytest.mark.cuda
@needs_cuda
def test_cuda_forward_syncs_once():
    """The value check costs one device-to-host sync per call (it was two in Python's to_rois)."""
    import warnings

    x, rois = random_case(seed=24)
    x, rois = x.cuda(), rois.cuda()
    ops.roi_align(x, rois, 7, 1 / 8)  # warm-up (lazy init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ops.roi_align(x, rois, 7, 1 / 8)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in caught]


# ---------------------------------------------------------------- bad values, edge shapes (issue #18)

OPS_BY_NAME = {
    "align": (ops.roi_align, ref.roi_align),
    "warp": (ops.roi_warp, ref.roi_warp),
}


def inf_corner_map() -> torch.Tensor:
    """A 4x4 map of zeros but f[0, 0] = +Inf: a sample outside the map reads f[0, 0] with weight 0."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("inf")
    return x


@needs_ext
@pytest.mark.parametrize("op", ["align", "warp"])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("impl", ["ext", "ref"])
def test_zero_weight_taps_are_not_read(op, mode, impl):
    """0 * Inf = NaN: a tap of weight 0 must not be read. The box (-3, -3)-(1, 1) with 2x2 bins of one
    sample puts the top-left sample at (-2, -2), outside the map (reads 0, by hand), and the bottom-right
    one at (0, 0), which reads the Inf with weight 1. The reference multiplied every tap (NaN, not 0)."""
    fn = OPS_BY_NAME[op][0 if impl == "ext" else 1]
    out = fn(inf_corner_map(), torch.tensor([[0, -3.0, -3.0, 1.0, 1.0]]), 2, 1.0, 1, False, mode)[0, 0]
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[1, 0] == 0  # outside samples: exactly 0, not NaN
    assert out[1, 1] == float("inf")


@needs_ext
@pytest.mark.parametrize("op", ["align", "warp"])
@pytest.mark.parametrize("impl", ["ext", "ref"])
def test_max_mode_is_torch_max_over_samples(op, impl):
    """Max mode = torch.max over a bin's samples: all -Inf gives -Inf (the CPU kernel gave 0), a NaN sample
    propagates (the CPU kernel skipped it), ties go to the first sample. Hand-checked against torch.max of
    the samples, which the average mode with one sample per bin reads one at a time."""
    fn = OPS_BY_NAME[op][0 if impl == "ext" else 1]
    box = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]])  # aligned: [-0.5, 3.5] -> 1x1 bin, 2x2 samples at 0.5, 2.5
    x = torch.full((1, 1, 4, 4), float("-inf"))
    assert fn(x, box, 1, 1.0, 2, True, "max").item() == float("-inf")
    x = torch.arange(16.0).view(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")  # read by the first sample only
    assert torch.isnan(fn(x, box, 1, 1.0, 2, True, "max")).all()
    # the samples one by one (2x2 bins, one sample each, the same positions), then their max by torch.max
    samples = fn(x, box, 2, 1.0, 1, True, "avg")
    assert torch.isnan(samples[0, 0, 0, 0]) and not torch.isnan(samples[0, 0, 1, 1])
    x[0, 0, 0, 0] = 0.0  # finite: the max is the largest sample, the bottom-right one, 4 * 2.5 + 2.5
    samples = fn(x, box, 2, 1.0, 1, True, "avg")
    assert fn(x, box, 1, 1.0, 2, True, "max").item() == 12.5 == samples.flatten().max()


@needs_ext
def test_max_mode_nan_gradient_goes_to_the_first_nan_sample():
    x = torch.arange(16.0, dtype=torch.float64).view(1, 1, 4, 4)
    x[0, 0, 3, 3] = float("nan")
    box = torch.tensor([[0, 0.5, 0.5, 3.5, 3.5]], dtype=torch.float64)
    _, g = fwd_grad(lambda t, r: ops.roi_align(t, r, 1, 1.0, 2, True, "max"), x, box)
    _, g_ref = fwd_grad(lambda t, r: ref.roi_align(t, r, 1, 1.0, 2, True, "max"), x, box)
    torch.testing.assert_close(g, g_ref, equal_nan=True)


@needs_ext
@pytest.mark.parametrize("fn", [ops.roi_align, ops.roi_warp, ops.roi_pool, ref.roi_align, ref.roi_pool])
def test_empty_feature_map_gives_zeros(fn):
    """H or W = 0: every sample lies outside the map (reads 0); the kernels read before the buffer before."""
    for shape in ((2, 3, 0, 6), (2, 3, 5, 0)):
        x = torch.randn(shape, requires_grad=True)
        out = fn(x, torch.tensor([[1, 0.0, 0.0, 4.0, 4.0]]), 3)
        assert out.shape == (1, 3, 3, 3) and not out.any()
        out.sum().backward()
        assert x.grad.shape == x.shape
    out, argmax = torch.ops.mrcnn_lite.roi_align(
        x, torch.tensor([[1, 0.0, 0, 4, 4]]), 1.0, 2, 2, 2, True, True, False
    )
    assert not out.any() and (argmax == -1).all()


@needs_ext
@pytest.mark.parametrize("impl", ["ext", "ref"])
def test_adaptive_grid_is_capped(impl):
    """sampling_ratio <= 0 on a huge box: the grid is min(ceil(roi / bin), 256) per axis, i.e. the same as an
    explicit sampling_ratio of 256 (it was ceil(1e6 / 2) = 500000 per axis: 2.5e11 samples per bin)."""
    fn = ops.roi_align if impl == "ext" else ref.roi_align
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    box = torch.tensor([[0, -2e5, -3e5, 1e6, 1e6]], dtype=torch.float64)
    for mode in ("avg", "max"):
        torch.testing.assert_close(fn(x, box, 2, 1.0, 0, True, mode), fn(x, box, 2, 1.0, 256, True, mode))
    with pytest.raises(ValueError, match="sampling_ratio must be at most 256"):
        fn(x, box, 2, 1.0, 257, True)


@needs_ext
def test_kernel_matches_reference_on_huge_and_negative_boxes():
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    rois = torch.tensor(
        [
            [0, -1e30, -1e30, 1e30, 1e30],
            [1, 1e30, 5.0, -1e30, 6.0],
            [0, 8.0, 7.0, 1.0, 2.0],
            [1, 3e8, 2.0, 4e8, 9.0],
        ],
        dtype=torch.float64,
    )
    for sampling_ratio in (0, 2):
        for aligned in (True, False):
            for mode in ("avg", "max"):
                for fast, slow in OPS_BY_NAME.values():
                    args = (3, 0.5, sampling_ratio, aligned, mode)
                    torch.testing.assert_close(fast(x, rois, *args), slow(x, rois, *args))
    assert torch.equal(ops.roi_pool(x, rois, 3, 0.5), ref.roi_pool(x, rois, 3, 0.5))


@needs_ext
@pytest.mark.parametrize(
    "row,match",
    [
        ([0, 1, 1, float("nan"), 8], r"rois\[16\] = \(0, 1, 1, nan, 8\) is not finite"),
        ([0, 1, float("inf"), 3, 8], "is not finite"),
        ([0.5, 1, 1, 3, 8], r"batch index rois\[16, 0\] = 0.5 must be an integer"),
        ([2, 1, 1, 3, 8], r"batch index out of range: rois\[16, 0\] = 2 must lie in \[0, 1\]"),
        ([-1, 1, 1, 3, 8], "batch index out of range"),
    ],
)
def test_bad_roi_values_raise_in_cpp(row, match):
    """Checked in C++ (so also for direct op calls and under torch.compile), forward and backward."""
    x, rois = random_case(seed=17, n=2)
    bad = torch.cat([rois, torch.tensor([row])])
    for fn in (ops.roi_align, ops.roi_warp, ops.roi_pool):
        with pytest.raises(ValueError, match=match):
            fn(x, bad, 7, 1 / 8)
    with pytest.raises(ValueError, match=match):
        torch.ops.mrcnn_lite.roi_align(x, bad, 1 / 8, 2, 2, 0, True, True, False)
    grad = torch.ones(bad.size(0), 4, 2, 2)
    with pytest.raises(ValueError, match=match):
        torch.ops.mrcnn_lite.roi_align_backward(
            grad, bad, grad.int() - 1, 1 / 8, 2, 2, 2, 4, 20, 24, 0, True, True, False
        )
    with pytest.raises(ValueError, match=match.replace("rois", "boxes")):  # the reference: one Python check
        ref.roi_align(x, bad, 7, 1 / 8)
    torch._dynamo.reset()
    compiled = torch.compile(lambda t, r: ops.roi_align(t, r, 7, 1 / 8), fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match=match):
        compiled(x, bad)


@needs_ext
def test_bad_scalar_arguments():
    x, rois = random_case(seed=18)
    for fn in (ops.roi_align, ref.roi_align, ops.roi_pool, ref.roi_pool):
        for scale in (float("nan"), -1.0, 0.0, float("inf")):
            with pytest.raises(ValueError, match="spatial_scale must be a positive finite number"):
                fn(x, rois, 7, scale)
        with pytest.raises(TypeError, match="output_size must be an int"):
            fn(x, rois, 7.5)
    for bad in (2.5, "2"):
        with pytest.raises(TypeError, match="sampling_ratio must be an int"):
            ops.roi_align(x, rois, 7, 1.0, bad)
    with pytest.raises(ValueError, match="spatial_scale"):
        torch.ops.mrcnn_lite.roi_pool(x, rois, float("nan"), 2, 2)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        ops.roi_align(x.long(), rois.long(), 7)
    assert ops.roi_align(x, rois, (7.0, 7.0)).shape[-2:] == (7, 7)  # integral floats still pass


@needs_ext
def test_backward_op_argument_checks():
    x, rois = random_case(seed=19)
    out, argmax = torch.ops.mrcnn_lite.roi_align(x, rois, 1 / 8, 2, 2, 2, True, True, False)
    grad = torch.ones_like(out)
    args = (1 / 8, 2, 2, 3, 4, 20, 24, 2, True, True, False)
    bwd = torch.ops.mrcnn_lite.roi_align_backward
    with pytest.raises(TypeError, match="argmax must be int32"):
        bwd(grad, rois, argmax.long(), *args)
    with pytest.raises(ValueError, match="argmax must have grad's shape"):
        bwd(grad, rois, argmax[:1], *args)
    with pytest.raises(ValueError, match=r"argmax\[0, \d, 0, 0\] = 5 is not a sample of its bin"):
        bwd(grad, rois, torch.full_like(argmax, 5), *args)  # 2x2 samples per bin: 0..3
    with pytest.raises(ValueError, match=r"rois must be a Tensor\[K, 5\]"):
        bwd(grad, rois[:, :4], argmax, *args)
    with pytest.raises(ValueError, match="grad and rois must have the same dtype"):
        bwd(grad, rois.double(), argmax, *args)
    with pytest.raises(ValueError, match="must be non-negative"):
        bwd(grad, rois, argmax, 1 / 8, 2, 2, 3, 4, -1, 24, 2, True, True, False)
    assert torch.equal(bwd(grad, rois, argmax, *args), bwd(grad, rois, argmax, *args))


@needs_ext
def test_cpu_backward_under_deterministic_mode():
    """The CPU backward has no atomics: deterministic mode lets it run, and it is bitwise reproducible."""
    x, rois = random_case(seed=20)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a = fwd_grad(lambda t, r: ops.roi_align(t, r, 7, 1 / 8, 0, True), x, rois)
        b = fwd_grad(lambda t, r: ops.roi_align(t, r, 7, 1 / 8, 0, True), x, rois)
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.equal(a[1], b[1])


def _load_setup():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "setup.py"
    spec = importlib.util.spec_from_file_location("mrcnn_lite_setup", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclass
    spec.loader.exec_module(module)  # __name__ is not "__main__": setup() does not run
    return module


def test_setup_cuda_build_plan():
    """setup.py's decision (fake versions): CPU-only with a warning on a toolkit/torch major mismatch (torch's
    own check would fail the whole install); a user's TORCH_CUDA_ARCH_LIST stands; a visible GPU is left to
    torch's detection; without a GPU a short list ending in +PTX (the old "8.0;9.0" had no PTX: V100, T4 and
    Blackwell got "no kernel image is available")."""
    plan = _load_setup().cuda_build_plan
    base = dict(no_cuda=False, torch_cuda="13.0", cuda_home="/usr/local/cuda", nvcc_version="13.0")
    p = plan(**base, gpu_visible=False, user_arch_list=None)
    assert p.with_cuda and p.arch_list == "7.5;8.0;9.0+PTX" and p.warning is None
    p = plan(**base, gpu_visible=True, user_arch_list=None)
    assert p.with_cuda and p.arch_list is None
    p = plan(**base, gpu_visible=False, user_arch_list="7.0")
    assert p.with_cuda and p.arch_list is None
    p = plan(**{**base, "nvcc_version": "12.8"}, gpu_visible=False, user_arch_list=None)
    assert not p.with_cuda and "12.8" in p.warning and "13.0" in p.warning and "CPU kernels only" in p.warning
    p = plan(**{**base, "nvcc_version": "13.1"}, gpu_visible=False, user_arch_list=None)  # minor: fine
    assert p.with_cuda
    p = plan(**{**base, "torch_cuda": "12.6", "nvcc_version": "12.4"}, gpu_visible=False, user_arch_list="")
    assert p.with_cuda and p.arch_list.startswith("7.0;") and p.arch_list.endswith("+PTX")
    p = plan(**{**base, "nvcc_version": None}, gpu_visible=False, user_arch_list=None)
    assert not p.with_cuda and "nvcc" in p.warning
    assert not plan(**{**base, "torch_cuda": None}, gpu_visible=False, user_arch_list=None).with_cuda
    assert not plan(**{**base, "no_cuda": True}, gpu_visible=True, user_arch_list=None).with_cuda


@needs_ext
@pytest.mark.parametrize(
    "fn,box",
    [
        (ops.roi_pool, [0, 2.0, 2.0, 3.0, 3.0]),  # cells 2..3: the max is f[3, 3]
        (lambda x, r, s: ops.roi_align(x, r, s, 1.0, 1, False, "max"), [0, 2.5, 2.5, 3.5, 3.5]),  # one sample
    ],
    ids=["pool", "align"],
)
def test_max_backward_skips_zero_weight_taps(fn, box):
    """An Inf upstream gradient reaches the winning cell as Inf and nowhere else: RoIPool's unused second tap
    and the sample at the map's edge (3, 3), whose upper taps have weight 0, gave 0 * Inf = NaN in the CPU
    max backward."""
    x = torch.arange(16.0).view(1, 1, 4, 4).requires_grad_()
    (g,) = torch.autograd.grad(fn(x, torch.tensor([box]), 1), x, torch.full((1, 1, 1, 1), float("inf")))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 3, 3] = float("inf")
    assert torch.equal(g, expected)
