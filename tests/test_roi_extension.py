"""The compiled kernels (mrcnn_lite._C, mrcnn_lite/csrc) against the references and torchvision.

Skipped, with the reason from ``mrcnn_lite.ops.backend()``, where the extension is not built (a pure-Python
install), except ``test_extension_is_built``: CI always builds it, so there its absence is a failure unless
``MRCNN_LITE_NO_EXT=1`` says it was skipped on purpose.
"""

from __future__ import annotations

import os

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
    x, rois = random_case(seed=14)
    op = torch.ops.mrcnn_lite.roi_align
    with pytest.raises(RuntimeError, match="4-D"):
        op(x[0], rois, 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(RuntimeError, match=r"Tensor\[K, 5\]"):
        op(x, rois[:, :4], 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(RuntimeError, match="output size must be positive"):
        op(x, rois, 1.0, 0, 2, 2, True, False, False)
    with pytest.raises(RuntimeError, match="same dtype"):
        op(x, rois.double(), 1.0, 2, 2, 2, True, False, False)
    bad = rois.clone()
    bad[0, 0] = 3
    with pytest.raises(RuntimeError, match="batch index out of range"):
        op(x, bad, 1.0, 2, 2, 2, True, False, False)
    with pytest.raises(RuntimeError, match="batch index out of range"):
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
def test_cuda_matches_torchvision_and_gradcheck():
    x, rois = random_case(seed=16)
    x, rois = x.cuda(), rois.cuda()
    out, gx = fwd_grad(lambda t, r: ops.roi_align(t, r, 14, 1 / 8, 0, True), x, rois)
    out_tv, gx_tv = fwd_grad(lambda t, r: torchvision.ops.roi_align(t, r, 14, 1 / 8, 0, True), x, rois)
    torch.testing.assert_close(out, out_tv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gx_tv, atol=1e-5, rtol=1e-5)
    xs, rs = random_case(seed=11, dtype=torch.float64, n=2, c=2, h=8, w=9, k=4, inside=True)
    xs, rs = xs.cuda().requires_grad_(), rs.cuda()
    for name, fn in EXT_CASES:
        assert torch.autograd.gradcheck(lambda t, fn=fn: fn(t, rs), (xs,)), name
    assert ops.roi_align(xs, rs[:0], 7).shape == (0, 2, 7, 7)
