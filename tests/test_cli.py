"""``python -m mrcnn_lite``: help texts, a tiny train -> evaluate -> predict, and user errors."""

from __future__ import annotations

import json
import os
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


# ------------------------------------------------------------------------- bad input: one paragraph each


@pytest.fixture(scope="module")
def run_dir(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """A 2-iteration classroom_c4 run (run.json, model_final.pth), trained once for this module."""
    out = tmp_path_factory.mktemp("cli_run")
    args = ["--config", "classroom_c4", *sets(shapes_small), "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(["train", *args]) == 0
    return out


def error_of(capsys, code: int, argv: list[str], expected_code: int = 2) -> str:
    """Run ``main(argv)``; check the exit code and that stderr is one ``error:`` paragraph, no traceback."""
    assert code == expected_code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("python -m mrcnn_lite: error: ") and err.count("error:") == 1, err
    return err


def test_predict_reports_each_bad_image_and_draws_the_others(
    run_dir: Path, shapes_small: Path, tmp_path: Path, capsys
) -> None:
    good = sorted((shapes_small / "val2017").iterdir())[:2]
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good[0].read_bytes()[:200])
    missing, folder = tmp_path / "missing.jpg", tmp_path
    out = tmp_path / "pred"
    images = [good[0], text, missing, truncated, folder, good[1]]
    code = main(["predict", *map(str, images), "--checkpoint", str(run_dir / "model_final.pth"), "--out",
                 str(out), "--score-thresh", "0", "--device", "cpu"])  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    pred, expected = (
        "python -m mrcnn_lite predict: error: ",
        "expected an image file (PNG, JPEG, BMP, TIFF, ...)",
    )
    assert lines[:4] == [
        f"{pred}{text}: not an image that PIL can read; {expected}",
        f"{pred}{missing}: no such file; {expected}",
        lines[2],  # the damaged file: PIL's own words in the middle
        f"{pred}{folder}: is a folder; {expected}",
    ]
    assert lines[2].startswith(f"{pred}{truncated}: a damaged or unreadable image (")
    assert lines[2].endswith(expected)
    assert lines[4] == f"{pred}4 of 6 images could not be read (above); the others were drawn"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{g.stem}.png" for g in good)  # both, in order
    assert [ln.split(":")[0] for ln in captured.out.splitlines()] == [str(g) for g in good]


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "state_dict", "folder"])
def test_evaluate_names_a_file_that_is_not_a_checkpoint(
    kind: str, run_dir: Path, tmp_path: Path, capsys
) -> None:
    import torch

    path = tmp_path / "model.pth"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = (run_dir / "model_final.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "state_dict":
        torch.save({"conv1.weight": torch.zeros(1)}, path)
    else:
        path.mkdir()
    err = error_of(capsys, main(["evaluate", "--checkpoint", str(path), "--device", "cpu"]), [])
    reason = {
        "text": "not a checkpoint (not a PyTorch file)",
        "empty": "not a checkpoint (the file is empty)",
        "truncated": "not a checkpoint (a damaged or truncated PyTorch archive: was it copied completely?)",
        "state_dict": "not a checkpoint of this library (it holds a state dict without the trainer's entries",
        "folder": "is a folder, not a checkpoint",
    }[kind]
    assert err.startswith(f"python -m mrcnn_lite: error: {path}: {reason}")
    assert "expected a model_*.pth file that `python -m mrcnn_lite train` wrote into its --out folder" in err


def test_bad_file_errors_in_a_subprocess_have_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "model_final.pth"
    bad.write_text("not a checkpoint\n")
    env = {k: v for k, v in os.environ.items() if k != "MRCNN_LITE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "mrcnn_lite", "evaluate", "--checkpoint", str(bad)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"python -m mrcnn_lite: error: {bad}: not a checkpoint (not a PyTorch file); expected a model_*.pth "
        "file that `python -m mrcnn_lite train` wrote into its --out folder\n"
    )


def test_evaluate_checks_out_and_the_run_record_before_evaluating(
    run_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrcnn_lite.cli.evaluate as cli_evaluate  # the evaluate command's module

    monkeypatch.setattr(
        cli_evaluate, "evaluate_model", lambda *a, **k: pytest.fail("evaluated despite a bad --out")
    )
    ckpt = str(run_dir / "model_final.pth")
    err = error_of(capsys, main(["evaluate", "--checkpoint", ckpt, "--out", str(tmp_path)]), [])
    assert f"--out {tmp_path}: is a folder; expected a file name for the metrics (JSON)" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = error_of(
        capsys, main(["evaluate", "--checkpoint", ckpt, "--out", str(blocker / "metrics.json")]), []
    )
    assert (
        f"--out {blocker / 'metrics.json'}: cannot write the metrics (JSON) there ({blocker} is a file" in err
    )
    # a damaged run.json beside the checkpoint is named (it holds the config)
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "model_final.pth").write_bytes((run_dir / "model_final.pth").read_bytes())
    (copy / "run.json").write_text('{"config": {')
    err = error_of(capsys, main(["evaluate", "--checkpoint", str(copy / "model_final.pth")]), [])
    assert f"{copy / 'run.json'}: not valid JSON" in err and "--config NAME" in err
    # a split without an annotation file names the file it looked for
    err = error_of(capsys, main(["evaluate", "--checkpoint", ckpt, "--split", "val2099"]), [])
    assert "instances_val2099.json" in err and "not found" in err


def test_evaluate_writes_metrics_atomically(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out goes through mrcnn_lite.atomic: a failure while writing leaves the old file whole."""
    import mrcnn_lite.atomic as atomic

    target = tmp_path / "metrics.json"
    target.write_text("old\n")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)
    ckpt = str(run_dir / "model_final.pth")
    assert main(["evaluate", "--checkpoint", ckpt, "--out", str(target), "--quiet", "--device", "cpu"]) == 2
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_nonfinite_checkpoint_is_refused(run_dir: Path, tmp_path: Path, capsys) -> None:
    import torch

    ckpt = torch.load(run_dir / "model_final.pth", weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = torch.full_like(ckpt["model"][key], float("nan"))
    path = tmp_path / "model_nan.pth"
    torch.save(ckpt, path)
    (tmp_path / "run.json").write_text((run_dir / "run.json").read_text())
    err = error_of(capsys, main(["evaluate", "--checkpoint", str(path), "--device", "cpu"]), [])
    assert f"{path}: 1 of its weight tensors hold NaN or inf (e.g. {key})" in err


def test_predict_with_weights_that_overflow_names_the_checkpoint(
    run_dir: Path, shapes_small: Path, tmp_path: Path, capsys
) -> None:
    """Finite weights so large that the RPN's deltas overflow (a checkpoint of a run diverging)."""
    import torch

    ckpt = torch.load(run_dir / "model_final.pth", weights_only=True)
    ckpt["model"]["rpn.head.bbox_pred.weight"] *= 1e38
    path = tmp_path / "model_huge.pth"
    torch.save(ckpt, path)
    (tmp_path / "run.json").write_text((run_dir / "run.json").read_text())
    image = sorted((shapes_small / "val2017").iterdir())[0]
    argv = ["predict", str(image), "--checkpoint", str(path), "--out", str(tmp_path / "p"), "--device", "cpu"]
    err = error_of(capsys, main(argv), [])
    assert err.startswith(
        f"python -m mrcnn_lite: error: {path}: on {image}, the model computes non-finite values (NaN or inf) "
        "in the rpn proposals: box_deltas: "
    )
    assert err.endswith("use an earlier checkpoint of the run\n")


def test_train_bad_out_resume_and_values(shapes_small: Path, run_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--config", "classroom_c4", *sets(shapes_small), "--quiet", "--device", "cpu"]
    blocker = tmp_path / "afile"
    blocker.write_text("")
    err = error_of(capsys, main([*base, "--out", str(blocker)]), [])
    assert (
        f"--out {blocker}: is a file, not a folder; expected a folder for the run's checkpoints and logs"
        in err
    )
    err = error_of(capsys, main([*base, "--out", str(blocker / "run")]), [])
    assert f"--out {blocker / 'run'}: cannot write the run's checkpoints and logs there (" in err

    empty = tmp_path / "empty"
    err = error_of(capsys, main([*base, "--out", str(empty), "--resume"]), [])
    assert f"--resume: nothing to resume in {empty} (it has no last_checkpoint file" in err

    # last_checkpoint naming a file that is gone, then a damaged checkpoint
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_0000001.pth").write_bytes((run_dir / "model_final.pth").read_bytes()[:100])
    (run / "last_checkpoint").write_text("model_0000002.pth\n")
    err = error_of(capsys, main([*base, "--out", str(run), "--resume"]), [])
    assert (
        f"cannot resume: {run / 'last_checkpoint'} names 'model_0000002.pth', which is not a checkpoint"
        in err
    )
    assert "the checkpoints there are model_0000001.pth" in err
    (run / "last_checkpoint").write_text("model_0000001.pth\n")
    err = error_of(capsys, main([*base, "--out", str(run), "--resume"]), [])
    assert f"{run / 'model_0000001.pth'}: not a checkpoint (a damaged or truncated PyTorch archive" in err

    out = ["--out", str(tmp_path / "x")]
    err = error_of(capsys, main([*base, *out, "--set", "train.base_lr=fast"]), [])
    assert "bad value for train.base_lr: 'fast' (expected" in err
    err = error_of(capsys, main([*base, *out, "--set", "train.base_lr"]), [])
    assert "override 'train.base_lr' is not of the form key=value" in err
    err = error_of(capsys, main([*base, *out, "--max-iter", "0"]), [])
    assert "--max-iter 0: expected an iteration number of at least 1" in err
    err = error_of(capsys, main([*base, *out, "--device", "gpu"]), [])
    assert "--device 'gpu' is not a device; expected cpu, cuda or cuda:N" in err
    with pytest.raises(SystemExit) as info:  # argparse's own one-line error for an unknown preset
        main(["train", "--config", "classroom_fnp"])
    assert info.value.code == 2 and "invalid choice: 'classroom_fnp'" in capsys.readouterr().err


def test_resume_skips_a_metrics_line_cut_short(shapes_small: Path, tmp_path: Path) -> None:
    """A run killed while writing metrics.jsonl leaves half a line; --resume drops it (it used to crash in
    json.loads) and the log ends as an uninterrupted run's."""
    run = tmp_path / "run"
    base = ["train", "--config", "classroom_c4", *sets(shapes_small), "--out", str(run), "--quiet"]
    assert main([*base, "--max-iter", "1"]) == 0
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 2, "lr": 0.0')
    assert main([*base, "--resume"]) == 0
    assert [json.loads(x)["iteration"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_predict_and_table2_check_their_options(run_dir: Path, tmp_path: Path, capsys) -> None:
    ckpt = str(run_dir / "model_final.pth")
    image = str(tmp_path / "x.png")
    err = error_of(capsys, main(["predict", image, "--checkpoint", ckpt, "--score-thresh", "2"]), [])
    assert "--score-thresh 2.0: expected a score in [0, 1]" in err
    blocker = tmp_path / "afile"
    blocker.write_text("")
    err = error_of(capsys, main(["predict", image, "--checkpoint", ckpt, "--out", str(blocker)]), [])
    assert f"--out {blocker}: is a file, not a folder; expected a folder for the overlays" in err
    err = error_of(capsys, main(["table2", "--rows", "z", "--out", str(tmp_path / "t2"), "--results",
                                 str(tmp_path / "r"), "--figures", str(tmp_path / "f")]), [])  # fmt: skip
    assert "unknown table(s) z" in err
    err = error_of(capsys, main(["table2", "--seeds", "0", "--out", str(tmp_path / "t2"), "--results",
                                 str(tmp_path / "r"), "--figures", str(tmp_path / "f")]), [])  # fmt: skip
    assert "seeds must be at least 1, got 0" in err
    err = error_of(capsys, main(["table2", "--results", str(blocker), "--out", str(tmp_path / "t2")]), [])
    assert f"--results {blocker}: is a file, not a folder" in err


def test_debug_env_reraises_and_ctrl_c_is_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrcnn_lite.cli as cli
    from mrcnn_lite.engine.checkpoint import CheckpointError

    missing = tmp_path / "model.pth"
    monkeypatch.setenv("MRCNN_LITE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--checkpoint", str(missing)])
    tmp_path.joinpath("bad.pth").write_text("x")
    with pytest.raises(CheckpointError):
        main(["evaluate", "--checkpoint", str(tmp_path / "bad.pth")])
    monkeypatch.delenv("MRCNN_LITE_DEBUG")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "evaluate", interrupted)
    assert main(["evaluate", "--checkpoint", str(missing)]) == 130
    assert capsys.readouterr().err == (
        "python -m mrcnn_lite: interrupted; the files written so far are complete (continue a training run "
        "with --resume)\n"
    )

    def bug(args):
        raise TypeError("a programming error")

    monkeypatch.setitem(cli.COMMANDS, "evaluate", bug)
    with pytest.raises(TypeError):  # never turned into a user error
        main(["evaluate", "--checkpoint", str(missing)])
