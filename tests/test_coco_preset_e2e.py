"""The paper's COCO preset end to end on real COCO 2017 files (../shared/realdata/tiny_coco): train a few
iterations, predict and evaluate, at a reduced image size so that it fits CI on a CPU."""

from __future__ import annotations

import json

import pytest
import torch

from mrcnn_lite.config import get_config
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.inference import evaluate_model
from mrcnn_lite.engine.trainer import train


@pytest.mark.slow
@pytest.mark.realdata
def test_coco_r50_fpn_trains_predicts_and_evaluates_on_real_coco(tiny_coco, tmp_path) -> None:
    cfg = get_config(
        "coco_r50_fpn",
        [
            f"data.root={tiny_coco}",
            "data.min_size=256",
            "data.max_size=384",
            "train.images_per_batch=2",
            "train.max_iter=2",
            "train.checkpoint_period=2",
            "train.log_period=1",
            "data.num_workers=0",
            "model.rpn_pre_nms_top_n_test=200",
            "model.rpn_post_nms_top_n_test=100",
        ],
    )
    threads = torch.get_num_threads()
    try:
        out = train(cfg, tmp_path, progress=False)
        model = out["model"].eval()
        lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert [x["iteration"] for x in lines] == [1, 2]
        assert all(torch.isfinite(torch.tensor(x["total_loss"])) for x in lines)
        run = json.loads((tmp_path / "run.json").read_text())
        assert len(run["class_names"]) == 81  # COCO's 80 classes + background, ids up to 90
        assert (tmp_path / "model_final.pth").is_file()

        val = CocoDetection(tiny_coco, "val2017", transforms=build_transforms(False, 256, 384))
        assert len(val) == 50
        metrics = evaluate_model(model, val)
    finally:
        torch.set_num_threads(threads)
    for iou_type in ("bbox", "segm"):
        stats = metrics[iou_type].stats
        assert set(stats) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(-1.0 <= v <= 1.0 for v in stats.values())  # -1: no GT of that size (COCOeval)
    assert {"backbone", "rpn", "box_head", "mask_head", "mask_paste"} <= set(metrics["timing"])
