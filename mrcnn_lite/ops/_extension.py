"""The compiled kernels (``mrcnn_lite._C``) as torch custom ops with autograd and fake kernels.

``mrcnn_lite/csrc/ops.cpp`` defines the schemas (``TORCH_LIBRARY(mrcnn_lite, m)``) and the CPU/CUDA
implementations. Here Python adds what makes them first-class PyTorch operators:

* ``torch.library.register_fake``: shapes and dtypes without data, for ``torch.compile`` and meta tensors;
* ``torch.library.register_autograd``: the backward, calling the ``*_backward`` ops (themselves custom ops,
  so a compiled graph keeps them opaque).

``available()`` says whether the library loaded; nothing here is imported when it did not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

EXTENSION = "mrcnn_lite._C"
_ERROR: str | None = None
_C: Any = None

if os.environ.get("MRCNN_LITE_NO_EXT", "").strip().lower() not in ("", "0", "false", "no"):
    _ERROR = "MRCNN_LITE_NO_EXT is set"
else:
    try:
        from .. import _C  # noqa: F811  (loading the library registers the ops)
    except ImportError as exc:  # a pure-Python install: the reference operators are used instead
        _ERROR = f"{EXTENSION} is not built ({exc}); build it with `pip install --no-build-isolation -e .`"


def available() -> bool:
    return _C is not None


def with_cuda() -> bool:
    return _C is not None and bool(_C.with_cuda)


def load_error() -> str | None:
    return _ERROR


def _arg_shape(input: Tensor, rois: Tensor, ph: int, pw: int, max_mode: bool) -> Sequence[int]:
    return (rois.size(0), input.size(1), ph, pw) if max_mode else (0,)


def _check_fake(op: str, input: Tensor, rois: Tensor, ph: int, pw: int) -> None:
    """The shape/dtype/device checks of ``check_roi_args`` (roi_ops.h) for the fake kernels (meta tensors,
    tracing), so a bad call fails there with the same message instead of an unpacking error."""
    if input.dim() != 4:
        raise ValueError(f"{op}: input must be a 4-D tensor [N, C, H, W], got shape {list(input.shape)}")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(
            f"{op}: rois must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape {list(rois.shape)}"
        )
    if not input.is_floating_point():
        raise TypeError(f"{op}: input must be a floating-point tensor, got {input.dtype}")
    if input.device != rois.device:
        raise ValueError(
            f"{op}: input and rois must be on the same device, got {input.device} and {rois.device}"
        )
    if input.dtype != rois.dtype:
        raise ValueError(f"{op}: input and rois must have the same dtype, got {input.dtype} and {rois.dtype}")
    if ph <= 0 or pw <= 0:
        raise ValueError(f"{op}: output size must be positive, got ({ph}, {pw})")


def _check_fake_backward(op: str, grad: Tensor, rois: Tensor, shape: tuple) -> None:
    if min(shape) < 0:
        raise ValueError(f"{op}: the input shape (batch_size, channels, height, width) must be non-negative, "
                         f"got {shape}")  # fmt: skip
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(f"{op}: rois must be a Tensor[K, 5], got shape {list(rois.shape)}")
    if grad.dim() != 4 or grad.size(0) != rois.size(0) or grad.size(1) != shape[1]:
        raise ValueError(f"{op}: grad must have shape [K, C, ph, pw], got {list(grad.shape)}")


if _C is not None:

    @torch.library.register_fake("mrcnn_lite::roi_align")
    def _roi_align_fake(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, max_mode, quantize_box):
        _check_fake("mrcnn_lite::roi_align", input, rois, ph, pw)
        out = input.new_empty((rois.size(0), input.size(1), ph, pw))
        return out, input.new_empty(_arg_shape(input, rois, ph, pw, max_mode), dtype=torch.int32)

    @torch.library.register_fake("mrcnn_lite::roi_align_backward")
    def _roi_align_backward_fake(grad, rois, argmax, spatial_scale, ph, pw, n, c, h, w, *flags):
        _check_fake_backward("mrcnn_lite::roi_align_backward", grad, rois, (n, c, h, w))
        return grad.new_empty((n, c, h, w))

    @torch.library.register_fake("mrcnn_lite::roi_pool")
    def _roi_pool_fake(input, rois, spatial_scale, ph, pw):
        _check_fake("mrcnn_lite::roi_pool", input, rois, ph, pw)
        out = input.new_empty((rois.size(0), input.size(1), ph, pw))
        return out, input.new_empty(_arg_shape(input, rois, ph, pw, True), dtype=torch.int32)

    @torch.library.register_fake("mrcnn_lite::roi_pool_backward")
    def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, ph, pw, n, c, h, w):
        _check_fake_backward("mrcnn_lite::roi_pool_backward", grad, rois, (n, c, h, w))
        return grad.new_empty((n, c, h, w))

    def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        input, rois, *params = inputs
        ctx.save_for_backward(rois, output[1])
        ctx.input_shape = tuple(input.shape)
        ctx.params = params

    def _roi_align_backward(ctx: Any, grad: Tensor, _grad_argmax: Tensor | None) -> tuple:
        rois, argmax = ctx.saved_tensors
        scale, ph, pw, sampling_ratio, aligned, max_mode, quantize_box = ctx.params
        n, c, h, w = ctx.input_shape
        gin = torch.ops.mrcnn_lite.roi_align_backward(
            grad.contiguous(), rois, argmax, scale, ph, pw, n, c, h, w, sampling_ratio, aligned, max_mode,
            quantize_box,
        )  # fmt: skip
        return (gin,) + (None,) * 8

    def _roi_pool_backward(ctx: Any, grad: Tensor, _grad_argmax: Tensor | None) -> tuple:
        rois, argmax = ctx.saved_tensors
        scale, ph, pw = ctx.params
        n, c, h, w = ctx.input_shape
        gin = torch.ops.mrcnn_lite.roi_pool_backward(
            grad.contiguous(), rois, argmax, scale, ph, pw, n, c, h, w
        )
        return (gin,) + (None,) * 4

    torch.library.register_autograd(
        "mrcnn_lite::roi_align", _roi_align_backward, setup_context=_setup_context
    )
    torch.library.register_autograd("mrcnn_lite::roi_pool", _roi_pool_backward, setup_context=_setup_context)
