"""Notebook 02's exercise checks fail on the release's stubs and on plausible wrong answers (the -0.5
offset forgotten, the box rounded, Python's round for C's, floor for ceil), and pass on correct ones (the
notebook's own solutions are run by tests/test_exercises.py)."""

from __future__ import annotations

import math

import pytest
import torch

from mrcnn_lite.exercises import ExerciseError, nb02


def bilinear_sample(fmap: torch.Tensor, x: float, y: float, stride: int, offset: float = 0.5,
                    swap: bool = False) -> float:
    h, w = fmap.shape
    cx, cy = x / stride - offset, y / stride - offset
    x0, y0 = min(int(cx), w - 1), min(int(cy), h - 1)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    lx, ly = cx - x0, cy - y0
    if swap:  # each corner weighted by its own rectangle instead of the opposite one
        lx, ly = 1 - lx, 1 - ly
    return float((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x1]
                 + ly * (1 - lx) * fmap[y1, x0] + ly * lx * fmap[y1, x1])


def roi_align_box(fmap, box, out_size, stride, sampling_ratio, bilinear, offset=0.5, quantize=False,
                  reduce="mean"):
    corners = [v / stride for v in box]
    if quantize:
        corners = [float(math.floor(v + 0.5)) for v in corners]
    x1, y1, x2, y2 = (v - offset for v in corners)
    bin_w, bin_h = (x2 - x1) / out_size, (y2 - y1) / out_size
    out = torch.zeros(fmap.shape[0], out_size, out_size)
    for i in range(out_size):
        for j in range(out_size):
            samples = [
                bilinear(fmap, y1 + i * bin_h + (a + 0.5) * bin_h / sampling_ratio,
                         x1 + j * bin_w + (b + 0.5) * bin_w / sampling_ratio)
                for a in range(sampling_ratio) for b in range(sampling_ratio)
            ]
            stack = torch.stack(samples)
            out[:, i, j] = stack.mean(0) if reduce == "mean" else stack.max(0).values
    return out


def c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool_box(fmap, box, out_size, stride, rnd=c_round, end=math.ceil, plus_one=1):
    _, h, w = fmap.shape
    x1, y1, x2, y2 = (rnd(v / stride) for v in box)
    n_h, n_w = max(y2 - y1 + plus_one, 1), max(x2 - x1 + plus_one, 1)
    out = torch.zeros(fmap.shape[0], out_size, out_size)
    for i in range(out_size):
        r0 = min(max(math.floor(i * n_h / out_size) + y1, 0), h)
        r1 = min(max(end((i + 1) * n_h / out_size) + y1, 0), h)
        for j in range(out_size):
            c0 = min(max(math.floor(j * n_w / out_size) + x1, 0), w)
            c1 = min(max(end((j + 1) * n_w / out_size) + x1, 0), w)
            if r1 > r0 and c1 > c0:
                out[:, i, j] = fmap[:, r0:r1, c0:c1].amax(dim=(1, 2))
    return out


def stub(*args: object) -> None:
    raise NotImplementedError()


def test_bilinear_sample(capsys: pytest.CaptureFixture) -> None:
    nb02.check_bilinear_sample(bilinear_sample)
    assert "✓ Your turn 1" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="not written yet"):
        nb02.check_bilinear_sample(stub)
    with pytest.raises(ExerciseError, match="-0.5"):
        nb02.check_bilinear_sample(lambda f, x, y, s: bilinear_sample(f, x, y, s, offset=0.0))
    with pytest.raises(ExerciseError, match="nearest corner"):
        nb02.check_bilinear_sample(lambda f, x, y, s: bilinear_sample(f, x, y, s, swap=True))


def test_bilinear_sample_without_the_last_row_rule_gets_a_hint() -> None:
    def no_clamp(fmap, x, y, stride):
        cx, cy = x / stride - 0.5, y / stride - 0.5
        x0, y0 = int(cx), int(cy)
        lx, ly = cx - x0, cy - y0
        return float((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x0 + 1]
                     + ly * (1 - lx) * fmap[y0 + 1, x0] + ly * lx * fmap[y0 + 1, x0 + 1])

    with pytest.raises(ExerciseError, match="IndexError.*last row"):
        nb02.check_bilinear_sample(no_clamp)


def test_bilinear_matches_torchvision_on_and_off_the_map() -> None:
    import torchvision

    fmap = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    for y, x in [(0.0, 0.0), (2.3, 4.9), (4.0, 5.0), (-0.7, 2.2), (4.6, 5.8), (-1.5, 1.0), (3.0, 6.2)]:
        px, py = (x + 0.5) * 16, (y + 0.5) * 16
        roi = torch.tensor([[0.0, px - 1, py - 1, px + 1, py + 1]])
        ref = torchvision.ops.roi_align(fmap[None], roi, 1, 1 / 16, 1, True)[0, :, 0, 0]
        assert torch.allclose(nb02.bilinear(fmap, y, x), ref, atol=1e-5), (y, x)


def test_roi_align_box(capsys: pytest.CaptureFixture) -> None:
    nb02.check_roi_align_box(roi_align_box)
    assert "✓ Your turn 2" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="not written yet"):
        nb02.check_roi_align_box(stub)
    for mistake in (dict(offset=0.0), dict(quantize=True), dict(reduce="max")):
        with pytest.raises(ExerciseError, match="RoIAlign rounds nothing"):
            nb02.check_roi_align_box(lambda *a, m=mistake: roi_align_box(*a, **m))


def test_roi_pool_box(capsys: pytest.CaptureFixture) -> None:
    nb02.check_roi_pool_box(roi_pool_box)
    assert "✓ Your turn 3" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="not written yet"):
        nb02.check_roi_pool_box(stub)
    for mistake in (dict(rnd=round), dict(rnd=math.floor), dict(end=math.floor), dict(plus_one=0)):
        with pytest.raises(ExerciseError, match="C's round"):
            nb02.check_roi_pool_box(lambda *a, m=mistake: roi_pool_box(*a, **m))
