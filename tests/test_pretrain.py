"""The classification pretraining task and its trainer (Table 2 v2's neutral trunk: engine/pretrain.py)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mrcnn_lite.config import get_config
from mrcnn_lite.data.classification import NUM_CLASSES, ShapesClassification, make_classification_image
from mrcnn_lite.data.shapes import make_image
from mrcnn_lite.engine.pretrain import Classifier, PretrainConfig, evaluate_accuracy, lr_at, pretrain
from mrcnn_lite.modeling.build import build_model

TINY = PretrainConfig(width=8, image_size=32, batch_size=4, iters=4, warmup_iters=2, val_images=6,
                      eval_period=2, checkpoint_period=2)


def test_images_are_deterministic_and_streams_disjoint() -> None:
    a, la = make_classification_image(0, 0, 5)
    b, lb = make_classification_image(0, 0, 5)
    assert la == lb and np.array_equal(a, b)
    assert not np.array_equal(a, make_classification_image(1, 0, 5)[0])  # another seed
    assert not np.array_equal(a, make_classification_image(0, 1, 5)[0])  # the val split
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8


def test_no_detection_image_reappears() -> None:
    """The classification stream is not the detection generator's: image i never equals a shapes image."""
    det = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(__import__("io").BytesIO(
        make_image(0, 0, 3)[0])))
    cls, _ = make_classification_image(0, 0, 3, size=max(det.shape[:2]))
    assert det.shape != cls.shape or not np.array_equal(det, cls)


def test_labels_cover_every_class_evenly() -> None:
    counts = Counter(make_classification_image(0, 0, i, size=32)[1] for i in range(600))
    assert set(counts) == set(range(NUM_CLASSES))
    expected = 600 / NUM_CLASSES  # binomial sd about 9: 4 sd either side
    assert all(abs(c - expected) < 40 for c in counts.values()), counts


def test_dataset_items_and_errors() -> None:
    ds = ShapesClassification(3, size=40)
    image, label = ds[2]
    assert image.shape == (3, 40, 40) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    ref, ref_label = make_classification_image(0, 0, 2, size=40)
    assert label == ref_label and torch.equal(image, torch.from_numpy(ref).permute(2, 0, 1).float() / 255)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(ValueError, match="num_images"):
        ShapesClassification(0)


def test_lr_schedule_by_hand() -> None:
    cfg = PretrainConfig(base_lr=0.1, warmup_iters=10, iters=110)
    assert lr_at(0, cfg) == pytest.approx(0.01) and lr_at(9, cfg) == pytest.approx(0.1)
    assert lr_at(10, cfg) == pytest.approx(0.1)  # the cosine starts at its top
    assert lr_at(60, cfg) == pytest.approx(0.05)  # half way: cos(pi/2) = 0
    assert lr_at(110, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(35, cfg) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.25)))


def test_accuracy_counts_correct_predictions() -> None:
    torch.manual_seed(0)
    model = Classifier("resnet18", 8)
    cfg = replace(TINY, val_images=10)
    data = ShapesClassification(10, split_index=1, seed=0, size=cfg.image_size)
    model.eval()
    with torch.no_grad():
        by_hand = sum(int(model(img[None]).argmax(1)) == lab for img, lab in (data[i] for i in range(10)))
    assert evaluate_accuracy(model, cfg, batch_size=3) == pytest.approx(by_hand / 10)


@pytest.mark.slow
def test_resumed_pretraining_equals_a_straight_run(tmp_path: Path) -> None:
    straight = pretrain(TINY, tmp_path / "straight", progress=False)
    half = replace(TINY, iters=2)
    # an interrupted run: its checkpoint at iteration 2, then resumed with the full schedule
    pretrain(half, tmp_path / "resumed", progress=False)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=False)
    ckpt["config"] = {**ckpt["config"], "iters": TINY.iters}  # what the full run had saved at iteration 2
    torch.save(ckpt, tmp_path / "resumed" / "checkpoint.pth")
    resumed = pretrain(TINY, tmp_path / "resumed", progress=False)
    a = torch.load(tmp_path / "straight" / "trunk.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "trunk.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["trunk_sha256"] == resumed["trunk_sha256"]
    assert [c["iteration"] for c in straight["curve"]] == [2, 4]
    with pytest.raises(ValueError, match="differs from the requested"):
        pretrain(replace(TINY, base_lr=0.5), tmp_path / "straight", progress=False)


@pytest.mark.slow
def test_the_trunk_loads_into_a_detector(tmp_path: Path) -> None:
    pretrain(TINY, tmp_path, progress=False)
    trunk = torch.load(tmp_path / "trunk.pth", weights_only=True)
    cfg = get_config("classroom_fpn", ["model.width=8", f"model.weights_path={tmp_path / 'trunk.pth'}",
                                       "model.frozen_bn=true", "model.freeze_at=2"])
    model = build_model(cfg, num_classes=NUM_CLASSES + 1)
    state = model.backbone.body.state_dict()
    for key, value in trunk.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(state[key], value), key
