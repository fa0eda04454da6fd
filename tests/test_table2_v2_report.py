"""Table 2 v2's report (``ablations/report_v2.py``) on synthetic run records with known effects."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mrcnn_lite.ablations import report_v2
from mrcnn_lite.ablations.grid_v2 import RUNS_V2

POINTS = (150, 300, 450, 600)
#: mask AP (fraction) at the end of the schedule; RoIAlign beats RoIPool by 5 AP, everything else 30
FINAL = {"c4_align": 0.35, "c4_pool": 0.30}


def _stats(ap: float) -> dict:
    return {"AP": ap, "AP50": ap + 0.2, "AP75": ap, "APs": ap, "APm": ap, "APl": ap}


def _write(results: Path, runs: list[str], seeds: int = 3) -> None:
    for run in runs:
        for seed in range(seeds):
            jitter = 0.0005 * ((seed * 7 + len(run)) % 5 - 2)
            schedule = []
            for i, it in enumerate(POINTS):
                ap = (FINAL.get(run, 0.30) + jitter) * (i + 1) / len(POINTS)
                entry = {"iteration": it, "bbox": _stats(ap), "segm": _stats(ap)}
                if run == "c4_softmax":
                    entry["segm_p05"] = _stats(ap / 10)
                schedule.append(entry)
            decodings = {"p05": "threshold"} if run == "c4_softmax" else {}
            path = results / "runs" / run / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"params": {"decodings": decodings}, "schedule": schedule}))


def test_report_from_records(tmp_path: Path) -> None:
    _write(tmp_path, [r.key for r in RUNS_V2])
    files = report_v2.build(tmp_path, tmp_path / "out", tmp_path / "fig")
    assert all(f.is_file() for f in files)
    md = files[0].read_text()
    assert "softmax (p(k) > 0.5, second line)" in md and "Runs without a record" not in md
    claims = {r["claim"]: r for r in csv.DictReader(files[2].open())}
    align = claims["align_gt_pool"]
    assert float(align["delta_mean"]) == pytest.approx(5.0, abs=0.3)
    assert align["final_verdict"] == "holds"
    assert [align[f"verdict_{p}"] for p in POINTS][-2:] == ["holds", "holds"]
    rows = list(csv.DictReader(files[1].open()))
    p05 = [r for r in rows if r["run"] == "c4_softmax@p05" and r["iteration"] == "600"][0]
    assert float(p05["mask_AP_mean"]) == pytest.approx(3.0, abs=0.1)
    assert int(p05["n_seeds"]) == 3


def test_missing_runs_are_named_and_no_records_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Table 2 v2 records"):
        report_v2.build(tmp_path, tmp_path / "out", tmp_path / "fig")
    _write(tmp_path, ["c4_align", "c4_pool"])
    md = report_v2.build(tmp_path, tmp_path / "out", tmp_path / "fig")[0].read_text()
    assert "Runs without a record yet: c5_align" in md
