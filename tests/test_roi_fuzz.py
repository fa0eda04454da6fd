"""Bad input never crashes the RoI operators: the fuzz harness of tests/roi_fuzz.py, run in a subprocess.

Each case must give a defined output (right shape and dtype; where both the kernel and the reference ran,
the same values and gradients) or an error naming the argument; a segfault or hang in the child is a crash.
``test_harness_reports_a_crash`` shows the parent does catch one (a child told to segfault itself); by hand,
the harness run against the previous, unchecked build (commit 4ecc6c8) recorded 10 crashes (SIGSEGV, SIGFPE)
in its first 134 cases, where it stops (``max_crashes``).
"""

from __future__ import annotations

import os

import pytest
import roi_fuzz

from mrcnn_lite import ops

BACKEND = ops.backend()
needs_ext = pytest.mark.skipif(not BACKEND["cpu"], reason=f"no compiled RoI kernels: {BACKEND['reason']}")
CASES = 5000


@needs_ext
def test_fuzz_bad_inputs_never_crash():
    report = roi_fuzz.run_fuzz(CASES, seed=0, case_timeout=60)
    counts = report["counts"]
    print(f"RoI fuzz: {counts} in {report['seconds']} s")
    assert counts["crash"] == 0, report["examples"]["crash"]
    assert counts["unclear"] == 0, report["examples"]["unclear"]  # every error names its argument
    assert report["child_exit_codes"] == [0]
    assert counts["cases"] == CASES
    assert counts["ok"] > CASES // 10 and counts["error"] > CASES // 10  # both outcomes are exercised
    # every kind of bad input was drawn, and the value cases gave a defined output at least once
    assert len(report["by_mutation"]) == 27
    for name in (
        "huge box",
        "negative-size box",
        "nan features",
        "adaptive huge box",
        "spatial_scale extreme",
    ):
        assert report["by_mutation"][name]["ok"] > 0, name


def test_harness_reports_a_crash():
    env = dict(os.environ, ROI_FUZZ_SEGFAULT_AT="3")
    report = roi_fuzz.run_fuzz(6, seed=0, env=env)
    assert report["counts"]["crash"] == 1
    assert report["counts"]["cases"] == 6  # the parent resumed after the crashing case
    assert report["child_exit_codes"][0] < 0  # killed by a signal
    assert report["examples"]["crash"][0].startswith("case 3:")
