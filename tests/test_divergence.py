"""A diverging run stops cleanly (issue #18, item 3): non-finite proposals, boxes, losses and weights are
caught before the RoI operators see them and before a checkpoint is written; the trainer and the CLI
report the iteration, the term and the last good checkpoint in one paragraph."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import TINY, tiny_config  # tests/ is on sys.path (pytest prepends it)

import mrcnn_lite.engine.trainer as trainer_module
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.schedule import build_optimizer
from mrcnn_lite.engine.trainer import LAST, TrainingDivergedError, batches, train, train_step
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.finite import NonFiniteError, where_if_finite

REPO = Path(__file__).resolve().parents[1]
# AdamW at lr 1e6 without warm-up or clipping: weights of about 1e6 after one step, and BatchNorm's running
# variance overflows float32 in the update of iteration 3 (found by hand, seed 0)
HUGE_LR = [
    "train.base_lr=1e6",
    "train.warmup_iters=0",
    "train.clip_grad_norm=none",
    "train.checkpoint_period=1",
]

pytestmark = pytest.mark.usefixtures("one_thread")


def record_saves(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """The model state each checkpoint file received, copied at save time, by file name."""
    saved: dict[str, dict[str, torch.Tensor]] = {}
    original = trainer_module.save_checkpoint

    def spy(path, model, *args, **kwargs):
        saved[Path(path).name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return original(path, model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", spy)
    return saved


def assert_intact(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """The file holds finite weights, bit-identical to ``expected``."""
    state = torch.load(path, weights_only=True)["model"]
    assert state.keys() == expected.keys()
    for k, v in state.items():
        assert torch.equal(v, expected[k]), k
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k


def nan_hook(after_calls: int = 0, everywhere: bool = False):
    """A forward hook that puts NaN into the module's output from its ``after_calls + 1``-th call on: one
    value (the first), or every value."""
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        if calls[0] > after_calls:
            output = output.clone()
            if everywhere:
                output.fill_(float("nan"))
            else:
                output[(0,) * output.dim()] = float("nan")
            return output
        return None

    return hook


# ---------------------------------------------------------------------------------------------- guards


def test_where_if_finite_hand_computed() -> None:
    mask = torch.tensor([True, False, True, False])
    assert where_if_finite(mask, torch.tensor(True)).tolist() == [0, 2]
    assert where_if_finite(mask, None).tolist() == [0, 2]
    assert where_if_finite(mask, torch.tensor(False)) is None
    assert where_if_finite(torch.zeros(4, dtype=torch.bool), torch.tensor(False)) is None
    assert where_if_finite(torch.ones(3, dtype=torch.bool), torch.tensor(True)).tolist() == [0, 1, 2]
    empty = torch.zeros(0, dtype=torch.bool)
    assert where_if_finite(empty, torch.tensor(False)) is None
    assert where_if_finite(empty, torch.tensor(True)).tolist() == []


def test_nonfinite_state_names_weights_or_optimizer_state() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.AdamW(model.parameters())
    assert trainer_module.nonfinite_state(model, opt) is None  # no optimizer state yet
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    assert trainer_module.nonfinite_state(model, opt) is None
    opt.state[model[0].weight]["exp_avg_sq"][0, 0] = float("inf")  # Adam's second moment overflowed
    assert trainer_module.nonfinite_state(model, opt) == "optimizer state"
    model[1].running_var[1] = float("nan")  # a buffer, not a parameter
    assert trainer_module.nonfinite_state(model, opt) == "model weights"


@pytest.fixture(scope="module")
def batch(shapes_small: Path) -> tuple[list, list, int]:
    cfg = tiny_config(shapes_small)
    d = cfg.data
    ds = CocoDetection(
        shapes_small, "train2017", train=True, transforms=build_transforms(True, d.min_size, d.max_size)
    )
    torch.manual_seed(0)
    images, targets = next(batches(ds, cfg, 0))
    images = [im.as_subclass(torch.Tensor) for im in images]
    targets = [
        {k: v.as_subclass(torch.Tensor) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets
    ]
    return images, targets, len(ds.class_names)


@pytest.mark.parametrize("training", [True, False])
def test_one_nan_rpn_delta_stops_the_model_before_roi_pooling(
    shapes_small: Path, batch: tuple, training: bool
) -> None:
    """One NaN among the RPN's box deltas: without the guard, NMS and the size filter drop that proposal
    and the model goes on as if nothing happened. With it, the forward raises, naming the RPN, and the RoI
    pooler is never called."""
    images, targets, num_classes = batch
    torch.manual_seed(0)
    model = build_model(tiny_config(shapes_small), num_classes).train(training)
    model.rpn.head.bbox_pred.register_forward_hook(nan_hook())
    pooled = []
    model.roi_heads.box_pooler.register_forward_pre_hook(lambda *_: pooled.append(1))
    with pytest.raises(NonFiniteError) as info, torch.no_grad():
        model(images, targets if training else None)
    assert info.value.term == "rpn proposals"
    assert "box_deltas: 1 of" in str(info.value)
    assert "objectness: all finite" in str(info.value)
    assert pooled == []


def test_nan_box_deltas_stop_inference_before_mask_pooling(shapes_small: Path, batch: tuple) -> None:
    images, _, num_classes = batch
    torch.manual_seed(0)
    model = build_model(tiny_config(shapes_small, "classroom_fpn"), num_classes).eval()
    model.roi_heads.box_head.predictor.bbox_pred.register_forward_hook(nan_hook())
    pooled = []
    model.roi_heads.mask_pooler.register_forward_pre_hook(lambda *_: pooled.append(1))
    with pytest.raises(NonFiniteError) as info, torch.no_grad():
        model(images)
    assert info.value.term == "box head deltas" and pooled == []


def test_nan_mask_loss_is_named_and_no_weight_changes(shapes_small: Path, batch: tuple) -> None:
    images, targets, num_classes = batch
    cfg = tiny_config(shapes_small)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes).train()
    model.roi_heads.mask_head.register_forward_hook(nan_hook(everywhere=True))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = build_optimizer(model, cfg)
    with pytest.raises(NonFiniteError) as info:
        train_step(model, opt, torch.amp.GradScaler("cuda", enabled=False), images, targets)
    assert info.value.term == "loss_mask"
    assert "'loss_mask': nan" in str(info.value) and "'loss_cls': nan" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())  # no update


# --------------------------------------------------------------------------------------------- trainer


def test_training_stops_at_nan_rpn_deltas_and_keeps_the_last_good_checkpoint(
    shapes_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN deltas from the RPN head in iteration 3 (its third forward); checkpoints every 2 iterations."""
    cfg = tiny_config(shapes_small, extra=("train.checkpoint_period=2",))
    build = trainer_module.build_model

    def build_with_nan(cfg, num_classes):
        model = build(cfg, num_classes)
        model.rpn.head.bbox_pred.register_forward_hook(nan_hook(after_calls=2, everywhere=True))
        return model

    monkeypatch.setattr(trainer_module, "build_model", build_with_nan)
    saved = record_saves(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        train(cfg, out, progress=False, device="cpu")
    e = info.value
    assert (e.iteration, e.term, e.checkpoint, e.checkpoint_iteration) == (
        3,
        "rpn proposals",
        out / "model_0000002.pth",
        2,
    )
    msg = str(e)
    assert msg.startswith(
        "training diverged at iteration 3 of 6: non-finite values (NaN or inf) in the rpn proposals"
    )
    assert f"the last good checkpoint is {out / 'model_0000002.pth'} (iteration 2)" in msg
    assert "--set train.base_lr=0.0001, now 0.001" in msg
    assert "--set train.warmup_iters=400, now 200" in msg and "--set train.clip_grad_norm=5, now 10" in msg
    assert "\n" not in msg
    assert (out / LAST).read_text().strip() == "model_0000002.pth"
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000002.pth"]
    assert_intact(out / "model_0000002.pth", saved["model_0000002.pth"])
    # the run continues from there, once the cause is gone
    monkeypatch.setattr(trainer_module, "build_model", build)
    assert train(cfg, out, resume=True, progress=False, device="cpu")["iteration"] == 6


def test_huge_lr_diverges_without_writing_a_nonfinite_checkpoint(
    shapes_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints every iteration: the update of iteration 3 leaves BatchNorm's running variance infinite,
    and that checkpoint is refused (before the guard it was written, and iteration 5 then raised)."""
    saved = record_saves(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        train(tiny_config(shapes_small, extra=tuple(HUGE_LR)), out, progress=False, device="cpu")
    e = info.value
    assert (e.iteration, e.term, e.checkpoint_iteration) == (3, "model weights", 2)
    assert "running_var" in str(e) and "model_0000003.pth was not written" in str(e)
    assert "--set train.clip_grad_norm=10, now off" in str(
        e
    ) and "--set train.warmup_iters=100, now 0" in str(e)
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_0000002.pth"]
    assert (out / LAST).read_text().strip() == "model_0000002.pth"
    for name in ("model_0000001.pth", "model_0000002.pth"):
        assert_intact(out / name, saved[name])


def test_cli_reports_divergence_in_one_paragraph(shapes_small: Path, tmp_path: Path) -> None:
    """The huge-lr run through ``python -m mrcnn_lite train`` in a subprocess: exit code 1, one error line
    naming the iteration, the term and the kept checkpoint, no traceback; the checkpoints are bit-identical
    to those of the same run in this process (an independent run of the same seed)."""
    ref = tmp_path / "ref"
    with pytest.raises(TrainingDivergedError) as info:
        train(tiny_config(shapes_small, extra=tuple(HUGE_LR)), ref, progress=False, device="cpu")
    out = tmp_path / "cli"
    sets = [a for kv in [*TINY, *HUGE_LR, f"data.root={shapes_small}"] for a in ("--set", kv)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MRCNN_LITE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mrcnn_lite", "train", "--config", "classroom_c4", *sets, "--out", str(out),
         "--quiet", "--device", "cpu"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("python -m mrcnn_lite: error: training diverged at iteration 3 of 6: ")
    assert (
        "model weights" in errors[0]
        and f"the last good checkpoint is {out / 'model_0000002.pth'}" in errors[0]
    )
    assert str(info.value).replace(str(ref), str(out)) in errors[0]
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_0000002.pth"]
    for name in ("model_0000001.pth", "model_0000002.pth"):
        assert_intact(out / name, torch.load(ref / name, weights_only=True)["model"])
