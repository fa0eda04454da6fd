"""The engine: lr schedule (hand-computed), checkpoints, deterministic resumable training, inference."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tiny_run  # tests/ is on sys.path (pytest prepends it)
import torch
from torch import nn

from mrcnn_lite.config import TrainConfig, get_config, scaled_lr, to_dict
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.loader import build_dataloader
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine import (
    CheckpointError,
    build_optimizer,
    evaluate_model,
    load_checkpoint,
    lr_at,
    predict_dataset,
    save_checkpoint,
    train,
)
from mrcnn_lite.engine.checkpoint import get_rng_state, set_rng_state
from mrcnn_lite.engine.inference import STAGES
from mrcnn_lite.engine.trainer import batches, train_step
from mrcnn_lite.evaluation.coco_eval import to_coco_results
from mrcnn_lite.modeling.build import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


#: the shared tiny run (:mod:`tiny_run`), checkpointing at iterations 3 and 6 of its 6
tiny_config = partial(tiny_run.tiny_config, checkpoint_period=3)


# ------------------------------------------------------------------------------------------- schedule


def test_lr_warmup_and_steps_hand_computed() -> None:
    # paper recipe at 8 images: 0.02 * 8 / 16 = 0.01; warm-up from 0.01/3 over 500 iterations
    t = TrainConfig(images_per_batch=8, base_lr=0.02, reference_batch_size=16, warmup_iters=500,
                    warmup_factor=1 / 3, steps=(120_000,), max_iter=160_000)  # fmt: skip
    assert lr_at(0, t) == pytest.approx(0.01 / 3)
    assert lr_at(250, t) == pytest.approx(0.01 * (1 / 6 + 1 / 2))  # halfway: (1/3 + 1) / 2
    assert lr_at(400, t) == pytest.approx(0.01 * (1 / 3 * 0.2 + 0.8))
    assert lr_at(500, t) == pytest.approx(0.01)
    assert lr_at(119_999, t) == pytest.approx(0.01)
    assert lr_at(120_000, t) == pytest.approx(0.001)
    assert lr_at(159_999, t) == pytest.approx(0.001)


def test_lr_several_steps_without_warmup_and_unscaled() -> None:
    t = TrainConfig(images_per_batch=2, base_lr=0.5, reference_batch_size=None, warmup_iters=0,
                    steps=(10, 20), max_iter=30)  # fmt: skip
    assert [lr_at(i, t) for i in (0, 9, 10, 19, 20, 29)] == pytest.approx(
        [0.5, 0.5, 0.05, 0.05, 0.005, 0.005]
    )
    # a step during warm-up multiplies the warm-up lr
    t = TrainConfig(base_lr=1.0, reference_batch_size=None, warmup_iters=10, warmup_factor=0.5, steps=(5,))
    assert lr_at(5, t) == pytest.approx(0.1 * (0.5 * 0.5 + 0.5))


def test_build_optimizer_sgd_settings_and_trainable_params_only() -> None:
    cfg = get_config("coco_r50_fpn", ["train.images_per_batch=4"])
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD)
    (group,) = opt.param_groups
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
    assert group["lr"] == pytest.approx(0.02 * 4 / 16 / 3)  # iteration 0 of the warm-up
    assert {id(p) for p in group["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}


def test_cosine_schedule_matches_torch_cosine_annealing() -> None:
    cfg = get_config(
        "classroom_fpn", ["train.lr_schedule=cosine", "train.warmup_iters=0", "train.max_iter=50"]
    )
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr_at(0, cfg))
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.0)
    for it in range(50):
        assert lr_at(it, cfg) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        ref.step()
    warm = get_config("classroom_fpn", ["train.lr_schedule=cosine", "train.max_iter=1000"])
    w = warm.train.warmup_iters
    assert lr_at(0, warm) == pytest.approx(scaled_lr(warm) * warm.train.warmup_factor * 0.5 * (1 + 1))
    assert lr_at(w, warm) == pytest.approx(scaled_lr(warm) * 0.5 * (1 + math.cos(math.pi * w / 1000)))


def test_build_optimizer_adamw_matches_torch_adamw_step() -> None:
    cfg = get_config(
        "coco_r50_fpn",
        [
            "train.optimizer=adamw",
            "train.base_lr=0.001",
            "train.reference_batch_size=none",
            "train.warmup_iters=0",
        ],
    )
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    opt = build_optimizer(model, cfg)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.001, betas=(0.9, 0.999), weight_decay=1e-4)
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (ref, ref_opt)):
        m(x).square().sum().backward()
        o.step()
    assert isinstance(opt, torch.optim.AdamW)
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)


# ------------------------------------------------------------------------------------------ checkpoint


def test_checkpoint_roundtrip_weights_only_and_atomic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = get_config("classroom_fpn")
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pth", model, opt, 7, get_rng_state(), cfg, class_names=["bg", "a"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["iteration"] == 7 and raw["config"] == to_dict(cfg) and raw["class_names"] == ["bg", "a"]

    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    state = load_checkpoint(path, other, other_opt)
    assert state["iteration"] == 7
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    buf = other_opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])


def test_checkpoint_mismatch_names_keys_and_file(tmp_path: Path) -> None:
    cfg = get_config("classroom_fpn")
    path = save_checkpoint(
        tmp_path / "a.pth", nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), None, 0, None, cfg
    )
    wrong = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, wrong)
    msg = str(info.value)
    assert str(path) in msg
    assert "missing (2): 2.weight, 2.bias" in msg
    assert "0.weight (checkpoint (4, 3), model (5, 3))" in msg and "1.weight" in msg
    assert "unexpected" not in msg
    with pytest.raises(CheckpointError, match="unexpected \\(2\\): 1.weight, 1.bias"):
        load_checkpoint(path, nn.Sequential(nn.Linear(3, 4)))


def test_rng_state_roundtrip_restores_all_generators() -> None:
    state = get_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]


# ------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def runs(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted 6-iteration run, and one killed during iteration 5 then resumed.

    The kill is simulated faithfully: the run stops at 4 (writing model_0000004.pth and its log lines),
    then the iteration-4 checkpoint is deleted and ``last_checkpoint`` points back to iteration 3, as if
    the process had died before saving it; the log keeps the line for iteration 4.
    """
    cfg = tiny_config(shapes_small)
    full = tmp_path_factory.mktemp("full")
    resumed = tmp_path_factory.mktemp("resumed")
    result = train(cfg, full, progress=False, device="cpu")
    stopped = train(cfg, resumed, max_iter=4, progress=False, device="cpu")
    files_at_stop = sorted(p.name for p in resumed.iterdir())
    (resumed / "model_0000004.pth").unlink()
    (resumed / "last_checkpoint").write_text("model_0000003.pth\n")
    train(cfg, resumed, resume=True, progress=False, device="cpu")
    return {"cfg": cfg, "full": full, "resumed": resumed, "result": result, "stopped": stopped,
            "files_at_stop": files_at_stop}  # fmt: skip


def test_interrupted_and_resumed_run_is_bit_identical(runs: dict) -> None:
    assert runs["stopped"]["iteration"] == 4
    assert runs["files_at_stop"] == [
        "last_checkpoint", "metrics.jsonl", "model_0000003.pth", "model_0000004.pth", "run.json"
    ]  # fmt: skip
    a = torch.load(runs["full"] / "model_final.pth", weights_only=True)
    b = torch.load(runs["resumed"] / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    start = torch.load(runs["full"] / "model_0000003.pth", weights_only=True)["model"]
    assert any(not torch.equal(start[k], a["model"][k]) for k in a["model"])  # it did train after 3


def test_batches_resume_mid_epoch_and_reshuffle_each_epoch(shapes_small: Path) -> None:
    cfg = tiny_config(shapes_small, extra=("seed=3",))
    ds = CocoDetection(shapes_small, "train2017", train=True)
    assert len(ds) == 11  # 5 batches of 2 per epoch, one image left out (a different one each epoch)

    def ids(start: int, n: int) -> list[tuple[int, ...]]:
        it = batches(ds, cfg, start)
        return [tuple(t["image_id"] for t in next(it)[1]) for _ in range(n)]

    from_zero = ids(0, 12)
    assert ids(3, 9) == from_zero[3:]  # resuming mid-epoch, in the next epoch, at an epoch's start
    assert ids(7, 5) == from_zero[7:]
    assert ids(10, 2) == from_zero[10:]
    epoch0, epoch1 = sum(from_zero[:5], ()), sum(from_zero[5:10], ())
    assert len(set(epoch0)) == len(set(epoch1)) == 10 and set(epoch0) | set(epoch1) <= set(ds.ids)
    assert epoch0 != epoch1  # in a new order


def test_resume_with_a_changed_config_warns_naming_the_keys(runs: dict, tmp_path: Path) -> None:
    import shutil

    out = shutil.copytree(runs["resumed"], tmp_path / "run")
    (out / "last_checkpoint").write_text("model_final.pth\n")
    longer = replace(runs["cfg"], train=replace(runs["cfg"].train, max_iter=6, log_period=2))
    with pytest.warns(UserWarning, match=r"model_final.pth with a changed config: train.log_period: 1 -> 2"):
        result = train(longer, out, resume=True, progress=False, device="cpu")
    assert result["iteration"] == 6  # nothing left to do


def test_training_outputs(runs: dict) -> None:
    out, cfg = runs["full"], runs["cfg"]
    assert sorted(p.name for p in out.iterdir()) == [
        "last_checkpoint", "metrics.jsonl", "model_0000003.pth", "model_final.pth", "run.json"
    ]  # fmt: skip
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4, 5, 6]
    # linear warm-up over W iterations from f * lr: lr at 0-based iteration i is lr * (f + (1 - f) * i / W)
    lr, f, w = cfg.train.base_lr, cfg.train.warmup_factor, cfg.train.warmup_iters
    assert w > 6 and cfg.train.reference_batch_size is None  # the first 6 iterations are all in the warm-up
    assert [x["lr"] for x in lines] == pytest.approx([lr * (f + (1 - f) * i / w) for i in range(6)])
    losses = {"loss_rpn_objectness", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask", "total_loss"}
    assert losses <= set(lines[0])
    assert lines[-1] == {k: v for k, v in runs["result"]["losses"].items()}
    resumed = [json.loads(x) for x in (runs["resumed"] / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in x.items() if k != "time"} for x in lines]
    assert [{k: v for k, v in x.items() if k != "time"} for x in resumed] == strip
    run = json.loads((out / "run.json").read_text())
    assert run["config"] == to_dict(cfg) and run["seed"] == 0
    assert run["class_names"][0] == "__background__" and len(run["class_names"]) > 1
    assert {"version", "torch", "git_commit", "start_time"} <= set(run)


def test_checkpoint_of_another_preset_is_rejected(runs: dict, shapes_small: Path) -> None:
    other = build_model(tiny_config(shapes_small, "classroom_fpn"), 4)
    path = runs["full"] / "model_final.pth"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other)
    msg = str(info.value)
    assert str(path) in msg and "missing (" in msg and "unexpected (" in msg
    assert "backbone.fpn" in msg or "roi_heads.box_head.fc" in msg


def test_cpu_amp_runs_the_network_in_bfloat16_and_keeps_float32_weights(shapes_small: Path) -> None:
    """``train.amp`` on the CPU: bfloat16 autocast, no loss scaling. The convolutions then compute in
    bfloat16 (their outputs are bfloat16), the weights and gradients stay float32, and the losses agree
    with the float32 step's to bfloat16's precision (8-bit mantissa) plus the proposals that change."""
    cfg = tiny_config(shapes_small, "classroom_fpn")
    d = cfg.data
    # resized as the trainer does: at the shapes' own sizes (up to 256 px) this 8-channel trunk hits a oneDNN
    # crash (segfault in the backward of a 1x1 stride-2 conv with 8 input channels, channels-last, on an
    # AVX-512 CPU with torch 2.14.1), in float32 as well; the presets' trunks have 32 channels or more
    transforms = build_transforms(True, d.min_size, d.max_size)
    ds = CocoDetection(shapes_small, "train2017", train=True, transforms=transforms)
    torch.manual_seed(0)  # the flips
    images, targets = next(batches(ds, cfg, 0))
    steps = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg, len(ds.class_names)).train()
        dtypes: list[torch.dtype] = []
        model.backbone.body.conv1.register_forward_hook(lambda m, i, o, d=dtypes: d.append(o.dtype))
        opt = build_optimizer(model, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        torch.manual_seed(1)
        steps[amp] = train_step(model, opt, scaler, images, targets, amp=amp)
        assert dtypes == [torch.bfloat16 if amp else torch.float32]
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    # The RPN's losses see the same sampled anchors, so they differ by rounding only. The RoI heads' losses
    # see proposals ranked by bfloat16 objectness, a different set at random init: compared loosely.
    for key in ("loss_rpn_objectness", "loss_rpn_box"):
        assert steps[True][key] == pytest.approx(steps[False][key], rel=0.01), key
    for key in ("loss_cls", "loss_mask"):
        assert steps[True][key] == pytest.approx(steps[False][key], rel=0.05), key
    assert math.isfinite(steps[True]["loss_box"])
    assert steps[True] != steps[False]  # it did compute in lower precision


# ------------------------------------------------------------------------------------------ inference


@pytest.fixture(scope="module")
def trained(runs: dict, shapes_small: Path) -> tuple:
    cfg = runs["cfg"]
    d = cfg.data
    val = CocoDetection(shapes_small, "val2017", transforms=build_transforms(False, d.min_size, d.max_size))
    model = build_model(cfg, len(val.class_names))
    load_checkpoint(runs["full"] / "model_final.pth", model)
    return model.eval(), val


def forward_results(model: nn.Module, val: CocoDetection, batch_size: int) -> list[dict]:
    """The reference: ``model(images, orig_sizes=...)`` in one call, converted with ``to_coco_results``."""
    expected = []
    with torch.no_grad():
        for images, targets in build_dataloader(val, batch_size, train=False):
            sizes = [t["orig_size"] for t in targets]
            outs = model([im.as_subclass(torch.Tensor) for im in images], orig_sizes=sizes)
            for t, o in zip(targets, outs, strict=True):
                expected += to_coco_results(t["image_id"], o, val.label_to_cat_id)
    return expected


def assert_same_results(results: list[dict], expected: list[dict]) -> None:
    assert len(results) == len(expected) > 0
    for r, e in zip(results, expected, strict=True):
        assert r["image_id"] == e["image_id"] and r["category_id"] == e["category_id"]
        assert r["bbox"] == pytest.approx(e["bbox"]) and r["score"] == pytest.approx(e["score"])
        assert r.get("segmentation") == e.get("segmentation")


def test_predict_dataset_equals_model_forward(trained: tuple) -> None:
    model, val = trained
    results, timing = predict_dataset(model, val, batch_size=2)
    assert_same_results(results, forward_results(model, val, 2))
    assert set(timing) == {*STAGES, "total"}
    assert all(v >= 0 for v in timing.values()) and timing["mask_head"] > 0
    assert timing["total"] == pytest.approx(sum(timing[s] for s in STAGES))


@pytest.mark.parametrize(("preset", "with_mask"), [("classroom_fpn", "true"), ("classroom_c5", "false")])
def test_predict_dataset_fpn_and_faster_rcnn(shapes_small: Path, preset: str, with_mask: str) -> None:
    """Untrained models (their random scores still clear the 0.05 threshold): the mask pooler path (FPN)
    is timed as the mask head; without a mask branch (Faster R-CNN) the mask head takes no time."""
    torch.manual_seed(0)
    cfg = tiny_config(shapes_small, preset, (f"model.with_mask={with_mask}", "model.detections_per_image=3"))
    d = cfg.data
    val = CocoDetection(shapes_small, "val2017", transforms=build_transforms(False, d.min_size, d.max_size))
    model = build_model(cfg, len(val.class_names)).eval()
    results, timing = predict_dataset(model, val)
    assert_same_results(results, forward_results(model, val, 1))
    if with_mask == "true":
        assert timing["mask_head"] > 0 and "segmentation" in results[0]
    else:
        assert timing["mask_head"] == 0 and "segmentation" not in results[0]
        assert set(evaluate_model(model, val)) == {"bbox", "timing"}


@pytest.mark.parametrize("preset", ["classroom_fpn", "classroom_c4"])
def test_stage_timing_attributes_known_delays(
    shapes_small: Path, preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delays injected into the box pooler (20 ms per call) and the mask head (100 ms) are attributed to
    their stages and to no other (score_thresh 0, so every image has detections and runs the mask branch).
    C4 runs the box pooler a second time for the mask branch (res5 on the detections): its mask stage holds
    120 ms. The stages read a fake clock that only the injected delays advance, so the attribution is
    checked exactly, on any machine and under any load (real durations belong in benchmarks/)."""
    from mrcnn_lite.engine import inference

    clock = [0.0]

    def advance(seconds: float):  # noqa: ANN202 - a forward pre-hook
        return lambda *_: clock.__setitem__(0, clock[0] + seconds)

    monkeypatch.setattr(inference.time, "perf_counter", lambda: clock[0])
    torch.manual_seed(0)
    cfg = tiny_config(shapes_small, preset, ("model.detections_per_image=3", "model.score_thresh=0"))
    d = cfg.data
    val = CocoDetection(shapes_small, "val2017", transforms=build_transforms(False, d.min_size, d.max_size))
    model = build_model(cfg, len(val.class_names)).eval()
    heads = model.roi_heads
    heads.box_pooler.register_forward_pre_hook(advance(0.02))
    heads.mask_head.register_forward_pre_hook(advance(0.1))
    _, timing = predict_dataset(model, val)
    mask_delay = 120 if preset == "classroom_c4" else 100
    assert timing["box_head"] == pytest.approx(20)
    assert timing["mask_head"] == pytest.approx(mask_delay)
    assert all(timing[s] == 0 for s in STAGES if s not in ("box_head", "mask_head")), timing
    assert timing["total"] == pytest.approx(20 + mask_delay)


def test_evaluate_model_reports_box_and_mask_ap(trained: tuple) -> None:
    model, val = trained
    metrics = evaluate_model(model, val)
    assert set(metrics) == {"bbox", "segm", "timing"}
    for kind in ("bbox", "segm"):
        assert all(
            isinstance(v, float) and (0.0 <= v <= 1.0 or v == -1.0) for v in metrics[kind].stats.values()
        )
