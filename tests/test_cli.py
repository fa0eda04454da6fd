"""``python -m mrcnn_lite``: help texts, a tiny train -> evaluate -> predict, and user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mrcnn_lite.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.width=8",
    "train.max_iter=2",
    "train.log_period=1",
    "data.min_size=128",
    "data.max_size=160",
    "model.roi_batch_size_per_image=16",
    "model.detections_per_image=5",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def sets(root: Path, keys: list[str] = TINY) -> list[str]:
    return [arg for kv in [*keys, f"data.root={root}"] for arg in ("--set", kv)]


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("train", ["--config", "--set", "--out", "--resume", "--max-iter", "classroom_fpn"]),
        ("evaluate", ["--checkpoint", "--config", "--set", "--split", "--out", "run.json"]),
        ("predict", ["IMAGE", "--checkpoint", "--out", "--score-thresh"]),
    ],
)
def test_subcommand_help_mentions_options(command: str, options: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text, option
    assert "example" in text


def test_module_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mrcnn_lite", "--help"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    for word in ("train", "evaluate", "predict", "python -m mrcnn_lite.data.shapes"):
        assert word in out


def test_train_evaluate_predict(shapes_small: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["--config", "classroom_c4", *sets(shapes_small), "--out", str(run), "--quiet", "--device", "cpu"]
    assert main(["train", *args]) == 0
    ckpt = run / "model_final.pth"
    assert ckpt.is_file()
    assert [json.loads(x)["iteration"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    # no --config: the config comes from run.json beside the checkpoint
    metrics_file = tmp_path / "metrics.json"
    assert (
        main(
            ["evaluate", "--checkpoint", str(ckpt), "--out", str(metrics_file), "--quiet", "--device", "cpu"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "bbox" in printed and "segm" in printed and "backbone" in printed and "mask_paste" in printed
    metrics = json.loads(metrics_file.read_text())
    assert {"bbox", "segm", "timing"} <= set(metrics) and metrics["split"] == "val2017"
    for kind in ("bbox", "segm"):
        ap = metrics[kind]["AP"]
        assert isinstance(ap, float) and 0.0 <= ap <= 1.0

    images = sorted((shapes_small / "val2017").iterdir())[:2]
    out = tmp_path / "pred"
    assert main(["predict", *map(str, images), "--checkpoint", str(ckpt), "--out", str(out),
                 "--score-thresh", "0", "--device", "cpu"]) == 0  # fmt: skip
    for image in images:
        with Image.open(out / f"{image.stem}.png") as overlay, Image.open(image) as original:
            assert overlay.format == "PNG" and overlay.size == original.size


def test_missing_dataset_names_the_path_and_how_to_get_data(tmp_path: Path, capsys) -> None:
    root = tmp_path / "nowhere"
    code = main(["train", "--config", "classroom_c4", *sets(root), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(root / "annotations" / "instances_train2017.json") in err
    assert "python -m mrcnn_lite.data.shapes --out data/shapes" in err and "data/coco" in err


def test_missing_checkpoint_and_bad_override_are_errors(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "model_final.pth"
    assert main(["evaluate", "--checkpoint", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["train", "--set", "model.rio_op=roi_pool", "--out", str(tmp_path / "x")]) == 2
    assert "model.roi_op" in capsys.readouterr().err  # the did-you-mean hint
