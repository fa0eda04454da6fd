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
