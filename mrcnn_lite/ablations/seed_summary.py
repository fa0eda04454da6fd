"""The committed report's per-seed summary (:func:`paired`) and claim verdicts (:func:`verdict`): mean,
sample std, standard error and a two-sided paired t-test at 95% with tabulated critical values (3
decimals, as ``results/table2.md`` was made). :mod:`.stats` and :mod:`.verdicts` hold the exact t
distribution, Holm's correction and TOST that issue #20's claim table (:mod:`.claims`) uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

APPROX_TOL = 1.0  # AP points: the paper's own "about equal" differences are at most 0.6
#: two-sided 95% critical values of Student's t by degrees of freedom (1.96 beyond 30)
T_CRIT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
          10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
          18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
          26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}  # fmt: skip


def t_crit(df: int) -> float:
    """The tabulated t(0.975, df) of :data:`T_CRIT` (1.96 beyond 30 degrees of freedom)."""
    return T_CRIT.get(df, 1.96)


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (ddof=1), standard error over ``n`` seeds, and the paired t-test's verdict."""

    mean: float
    std: float
    se: float
    n: int
    beyond_noise: bool


def paired(values_by_seed: dict[int, float]) -> Stat:
    """Summarise one per-seed quantity: beyond noise when |mean| > t_{0.975, n-1} * se (never for n < 2)."""
    v = np.asarray(list(values_by_seed.values()), dtype=float)
    n = len(v)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, False)
    mean = float(v.mean())
    if n == 1:
        return Stat(mean, math.nan, math.nan, 1, False)
    std = float(v.std(ddof=1))
    se = std / math.sqrt(n)
    return Stat(mean, std, se, n, abs(mean) > t_crit(n - 1) * se)


def verdict(kind: str, stat: Stat) -> str:
    """The claim's verdict from our Q (see the "How to read" text of :mod:`.writers`)."""
    if stat.n == 0:
        return "not run"
    if kind == "approx":
        if abs(stat.mean) < APPROX_TOL:
            return "holds"
        return "differs" if stat.beyond_noise else "unclear (noisy)"
    if stat.mean > 0:
        return "holds" if stat.beyond_noise else "same direction, within noise"
    return "contradicted" if stat.beyond_noise else "opposite, within noise"
