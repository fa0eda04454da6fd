"""The workbook's notebook post-processing: volatile metadata stripped, progress-bar fallbacks refreshed."""

from __future__ import annotations

from pathlib import Path

import nbformat

from mrcnn_lite.workbook import refresh_progress_fallbacks, strip_volatile_metadata

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _notebook() -> nbformat.NotebookNode:
    """A tqdm bar (HBox of HTML, FloatProgress, HTML, as tqdm.auto lays it out) saved at 7 of 10 steps,
    whose plain-text fallback is the bar as first displayed, and an interact() VBox."""
    state = {
        "bar": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]),
        "left": _model("HTMLModel", value="train:\u200770%"),
        "progress": _model("FloatProgressModel", value=7.0, max=10.0),
        "right": _model("HTMLModel", value="\u20077/10\u2007[00:03&lt;00:01,\u2007loss=0.5]"),
        "box": _model("VBoxModel", children=["IPY_MODEL_left"]),
    }
    cell = nbformat.v4.new_code_cell("train()")
    shown = lambda model, text: {WIDGET_VIEW: {"model_id": model}, "text/plain": text}  # noqa: E731
    cell.outputs = [
        nbformat.v4.new_output("display_data", shown("bar", "train: 0%|")),
        nbformat.v4.new_output("display_data", shown("box", "interactive")),
    ]
    cell.metadata["papermill"] = {"duration": 1.5}
    cell.metadata["execution"] = {"iopub.execute_input": "2026-11-30T10:00:00Z"}
    cell.metadata["tags"] = ["keep"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    nb.metadata["papermill"] = {"duration": 3.0, "parameters": {"SEED": 0}}
    return nb


def test_a_progress_bar_falls_back_to_its_final_state_and_other_widgets_keep_theirs() -> None:
    nb = _notebook()
    assert refresh_progress_fallbacks(nb) == 1
    bar, box = nb.cells[0].outputs
    assert bar.data["text/plain"] == "train: 70%|███████   | 7/10 [00:03<00:01, loss=0.5]"  # 7 of 10 blocks
    assert box.data["text/plain"] == "interactive"
    assert refresh_progress_fallbacks(nb) == 0  # already current


def test_strip_volatile_metadata_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(), str(path))
    strip_volatile_metadata(path)
    nb = nbformat.read(str(path), as_version=4)
    cell = nb.cells[0]
    assert dict(cell.metadata) == {"tags": ["keep"]}
    assert dict(nb.metadata.papermill) == {"parameters": {"SEED": 0}}
    assert cell.outputs[0].data["text/plain"].startswith("train: 70%|███████   | 7/10")
    assert [p.name for p in tmp_path.iterdir()] == ["nb.ipynb"]  # written in place, no temp file left


# ------------------------------------------------------------------ where figures go, and the kernels


def test_figures_dir_defaults_to_figures_and_honours_the_env_var(tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn_lite import workbook

    monkeypatch.delenv(workbook.FIGURES_ENV, raising=False)
    assert workbook.figures_dir() == workbook.repo_root() / "figures"
    monkeypatch.setenv(workbook.FIGURES_ENV, "")  # what `make workbook` exports
    assert workbook.figures_dir() == workbook.repo_root() / "figures"
    monkeypatch.setenv(workbook.FIGURES_ENV, str(tmp_path / "test-output" / "figures"))
    fig, ax = plt.subplots(figsize=(1, 1))
    path = workbook.save_figure(fig, "line")
    plt.close(fig)
    assert path == tmp_path / "test-output" / "figures" / "line.png" and path.read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setenv(workbook.FIGURES_ENV, "build/x")  # relative: from the checkout, not the cwd
    assert workbook.figures_dir() == workbook.repo_root() / "build" / "x"
    (workbook.repo_root() / "build" / "x").rmdir()


def _kernel_stderr(config) -> str:
    """Start and stop the workbook's kernel under ``config``; returns what it printed on stderr."""
    import tempfile

    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryFile("w+") as err:
        km = KernelManager(kernel_name="python3", config=config)
        km.start_kernel(stderr=err)
        try:
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive("1 + 1", timeout=60)
            assert reply["content"]["status"] == "ok"
            kc.stop_channels()
        finally:
            km.shutdown_kernel(now=True)
        err.seek(0)
        return err.read()


def test_workbook_kernels_are_encrypted_so_no_tcp_warning_is_printed() -> None:
    from traitlets.config import Config

    from mrcnn_lite.workbook import kernel_manager_config

    warning = "Kernel is running over TCP without encryption"
    assert warning in _kernel_stderr(Config())  # the default: plain TCP, and ipykernel says so
    assert warning not in _kernel_stderr(kernel_manager_config())  # CurveZMQ keys provisioned
