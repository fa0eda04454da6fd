"""One claim's verdict at each point of the training schedule, and over the whole schedule (issue #20).

A claim of the paper compares rows: "RoIAlign > RoIPool" (directional) or "max ≈ average" (equivalence).
At each schedule point (e.g. ¼, ½ and the end of training) the seeds give paired differences Δ; the
verdict there reads them with the right test:

- directional (``kind`` ``"greater"`` or ``">"``): the two-sided paired t-test's p, Holm-adjusted over the
  family of directional claims judged at that point (:func:`.stats.holm`): "holds" when Δ > 0 beyond noise,
  "contradicted" when Δ < 0 beyond noise, else "not beyond noise";
- equivalence (``kind`` ``"approx"`` or ``"≈"``): TOST within ±margin (:func:`.stats.tost`), the margin
  scaled to the rows' AP (:class:`EquivalenceMargin`): "equivalent" or "not shown equivalent";
- either: "inconclusive (both rows at the floor)" when every row involved sits below ``floor`` AP, where a
  model barely detects anything and differences say little about the operators compared.

Over the schedule, a verdict counts only when the last two points agree; otherwise the claim is "not
settled at this schedule" (:func:`schedule_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mrcnn_lite.ablations.stats import one_sample, tost

DIRECTIONAL = frozenset({"greater", ">"})
EQUIVALENCE = frozenset({"approx", "≈"})
#: mask/box AP (percent) below which a row counts as at the floor: the committed C5 rows sit at 2.9-4.6
FLOOR_AP = 5.0
ALPHA = 0.05

HOLDS, CONTRADICTED, NOT_BEYOND_NOISE = "holds", "contradicted", "not beyond noise"
EQUIVALENT, NOT_SHOWN_EQUIVALENT = "equivalent", "not shown equivalent"
AT_FLOOR = "inconclusive (both rows at the floor)"
NOT_SETTLED = "not settled at this schedule"
NOT_RUN = "not run"


@dataclass(frozen=True)
class EquivalenceMargin:
    """The TOST margin of an "≈" claim: ``max(absolute, relative × mean AP of the rows involved)``.

    Defaults: 1 AP point or 10% of the rows' mean AP, whichever is larger. The paper's own "about equal"
    rows differ by at most 0.6 points at ~30 AP (2%); our rows sit lower and vary more across seeds, so a
    fixed 1 point would be stricter for a 10-AP row than for a 40-AP one. ``margin(row_aps)`` gives it."""

    absolute: float = 1.0
    relative: float = 0.10

    def __call__(self, row_aps: Sequence[float]) -> float:
        finite = [a for a in row_aps if not math.isnan(a)]
        scale = sum(finite) / len(finite) if finite else 0.0
        return max(self.absolute, self.relative * scale)

    def describe(self) -> str:
        return f"max({self.absolute:g} AP, {100 * self.relative:g}% of the rows' mean AP)"


@dataclass(frozen=True)
class PointEvidence:
    """What one schedule point gives about one claim.

    ``deltas``: the claim's Q per seed (for two rows, b − a seed by seed, in AP points); ``row_aps``: each
    involved row's mean AP at that point (the floor and the margin read them); ``p_holm``: the directional
    test's Holm-adjusted p at that point (NaN for "≈" claims or where no test was possible)."""

    deltas: tuple[float, ...]
    row_aps: tuple[float, ...]
    p_holm: float = math.nan

    @classmethod
    def from_rows(cls, a: Sequence[float], b: Sequence[float], p_holm: float = math.nan) -> PointEvidence:
        """The evidence of "b vs a" from the two rows' AP per seed (``a[k]``, ``b[k]``: seed k)."""
        if len(a) != len(b):
            raise ValueError(f"one AP per seed in each row; got {len(a)} and {len(b)}")
        row_aps = tuple(sum(v) / len(v) if v else math.nan for v in (a, b))
        return cls(tuple(y - x for x, y in zip(a, b, strict=True)), row_aps, p_holm)


def is_directional(kind: str) -> bool:
    """True for a directional claim ("greater", ">"), False for an equivalence ("approx", "≈")."""
    if kind in DIRECTIONAL:
        return True
    if kind in EQUIVALENCE:
        return False
    raise ValueError(f"unknown claim kind {kind!r}; valid: {sorted(DIRECTIONAL | EQUIVALENCE)}")


def point_verdict(
    kind: str,
    evidence: PointEvidence,
    floor: float = FLOOR_AP,
    margin: EquivalenceMargin = EquivalenceMargin(),  # noqa: B008 - frozen, so a shared default is safe
    alpha: float = ALPHA,
) -> str:
    """The claim's verdict at one schedule point (see the module's docstring for the rules).

    "not run" when no seed has the claim's rows; one seed gives no test, hence "not beyond noise" or
    "not shown equivalent"."""
    directional = is_directional(kind)
    if not evidence.deltas:
        return NOT_RUN
    if evidence.row_aps and all(ap < floor for ap in evidence.row_aps):
        return AT_FLOOR
    if directional:
        if math.isnan(evidence.p_holm) or evidence.p_holm > alpha:
            return NOT_BEYOND_NOISE
        mean = one_sample(evidence.deltas).mean
        return HOLDS if mean > 0 else CONTRADICTED if mean < 0 else NOT_BEYOND_NOISE
    result = tost(evidence.deltas, margin(evidence.row_aps), alpha)
    return EQUIVALENT if result.equivalent else NOT_SHOWN_EQUIVALENT


def settle(verdicts: Sequence[str]) -> str:
    """The verdict over the schedule from the verdicts at its points, in schedule order: the last one
    when the last two agree (or when there is only one point), else "not settled at this schedule"."""
    if not verdicts:
        return NOT_RUN
    if len(verdicts) >= 2 and verdicts[-1] != verdicts[-2]:
        return NOT_SETTLED
    return verdicts[-1]


def schedule_verdict(
    kind: str,
    points: Sequence[PointEvidence],
    floor: float = FLOOR_AP,
    margin: EquivalenceMargin = EquivalenceMargin(),  # noqa: B008 - frozen, so a shared default is safe
    alpha: float = ALPHA,
) -> tuple[list[str], str]:
    """One claim over the schedule: its verdict at each point (``points`` in schedule order, e.g. ¼, ½,
    end) and the final verdict (:func:`settle`)."""
    each = [point_verdict(kind, p, floor, margin, alpha) for p in points]
    return each, settle(each)
