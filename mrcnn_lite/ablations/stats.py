"""The statistics behind Table 2's verdicts, in plain Python (no SciPy): Student's t, paired differences
over seeds, Holm's correction for many claims at once, and equivalence tests (TOST) for "≈" claims.

Every test here compares two rows seed by seed: with seed k both rows start from the same seed, so the
difference Δ_k = b_k − a_k removes what the seed does to both, and the n differences are treated as n
independent draws of one Δ. The t distribution with n − 1 degrees of freedom then says how far their mean
can stray from the true Δ by chance (Student 1908; any statistics text, e.g. Wasserman, *All of Statistics*,
§10). With 3 seeds that is 2 degrees of freedom: t(0.975, 2) = 4.30, against 1.96 for the normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-16  # the continued fraction stops when a step changes it by less than this (relative)
_TINY = 1e-300  # keeps Lentz's continued fraction away from dividing by zero
_MAX_TERMS = 100_000


# ------------------------------------------------------------------------------ Student's t distribution
def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4).
    It converges quickly for x < (a + 1) / (a + b + 2); :func:`incomplete_beta` swaps a and b otherwise."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def _log_gamma_ratio(a: float, b: float) -> float:
    """log Γ(a + b) − log Γ(a). For b = ½ and large a (the t distribution at large df) by its asymptotic
    series ½ log a − 1/(8a) + 1/(192a³) − 1/(640a⁵), since the difference of two huge ``lgamma`` values
    would lose ~1e-16 · log Γ(a) to rounding (1e-6 at a = 1e9)."""
    if b == 0.5 and a > 1e4:
        return 0.5 * math.log(a) - 1 / (8 * a) + 1 / (192 * a**3) - 1 / (640 * a**5)
    return math.lgamma(a + b) - math.lgamma(a)


def incomplete_beta(x: float, a: float, b: float, one_minus_x: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b) = P(X ≤ x) for X ~ Beta(a, b).

    ``one_minus_x``: 1 − x when the caller knows it more exactly than ``1 - x`` (the t tails do)."""
    y = 1.0 - x if one_minus_x is None else one_minus_x
    if not (0.0 <= x <= 1.0 and a > 0 and b > 0):
        raise ValueError(f"incomplete_beta needs 0 <= x <= 1 and a, b > 0; got x={x}, a={a}, b={b}")
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)  # a * log(x) is large when a is: keep log(x) exact
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = _log_gamma_ratio(a, b) - math.lgamma(b) + a * log_x + b * log_y
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(y, b, a) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom: ½ I_x(df/2, ½), x = df / (df + t²), in the
    tail, from the incomplete beta function; symmetric, P(T ≤ −t) = 1 − P(T ≤ t)."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if t == 0.0:
        return 0.5
    t2 = t * t
    tail = 0.5 * incomplete_beta(df / (df + t2), df / 2.0, 0.5, one_minus_x=t2 / (df + t2))
    return 1.0 - tail if t > 0 else tail


def t_sf(t: float, df: float) -> float:
    """P(T ≥ t) = P(T ≤ −t), computed without the cancellation of ``1 - t_cdf(t)``."""
    return t_cdf(-t, df)


def t_ppf(p: float, df: float) -> float:
    """The quantile t(p, df): the t with P(T ≤ t) = p (e.g. t(0.975, 2) = 4.3027). Bisection on
    :func:`t_cdf`, then a Newton step. Accurate to ~1e-14 for the df of a seed study (checked against
    40-digit values), ~1e-11 at df = 1e4 and ~1e-10 at 1e7 (the continued fraction's rounding grows)."""
    if not 0.0 <= p <= 1.0 or df <= 0:
        raise ValueError(f"t_ppf needs 0 <= p <= 1 and df > 0, got p={p}, df={df}")
    if p in (0.0, 1.0):
        return math.inf if p == 1.0 else -math.inf
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    q = 1.0 - p  # the upper tail, searched as t_sf(t) = q for accuracy far out
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_sf(mid, df) > q else (lo, mid)
    t = 0.5 * (lo + hi)
    density = t_pdf(t, df)
    return t + (t_cdf(t, df) - p) / -density if density > 0 else t


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t with ``df`` degrees of freedom."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def normal_cdf(z: float) -> float:
    """P(Z ≤ z) for the standard normal (the t distribution's limit as df grows)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


# ---------------------------------------------------------------------------------- paired differences
@dataclass(frozen=True)
class PairedDifference:
    """The paired Δ over seeds and its one-sample t-test against 0.

    ``ci_low``/``ci_high``: the t interval mean ± t(1 − α/2, n − 1) · se, which covers the true Δ in 95%
    of repeated experiments; ``p_two_sided``: the chance of a |t| this large if the true Δ were 0;
    ``p_greater`` (``p_less``): the one-sided p for "Δ > 0" ("Δ < 0"). ``note`` says when a test is
    undefined (one seed: NaN CI and p) or degenerate (zero spread: the CI is a point and t is infinite)."""

    deltas: tuple[float, ...]
    n: int
    mean: float
    sd: float
    se: float
    t: float
    ci_low: float
    ci_high: float
    p_two_sided: float
    p_greater: float
    p_less: float
    confidence: float = 0.95
    note: str = ""


def _t_statistic(mean: float, se: float, mu0: float) -> float:
    """(mean − mu0) / se, with zero spread made explicit: ±inf when mean ≠ mu0, 0 when they are equal."""
    if mean == mu0:
        return 0.0
    if se == 0.0:
        return math.copysign(math.inf, mean - mu0)
    return (mean - mu0) / se


def one_sample(deltas: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """The t-test of per-seed differences ``deltas`` against 0, with a ``confidence`` t interval.

    n = 0: everything NaN; n = 1: the mean only (no spread, so no CI and no p: NaN, said in ``note``);
    zero spread with n ≥ 2: the CI is the single point, p is 0 (or 1 when the mean is exactly 0)."""
    d = tuple(float(x) for x in deltas)
    n, nan = len(d), math.nan
    if n == 0:
        return PairedDifference(d, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan, confidence, "no seeds")
    mean = math.fsum(d) / n
    if n == 1:
        note = "one seed: no spread, so no confidence interval and no test"
        return PairedDifference(d, 1, mean, nan, nan, nan, nan, nan, nan, nan, nan, confidence, note)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    se, df = sd / math.sqrt(n), n - 1
    t = _t_statistic(mean, se, 0.0)
    half = t_ppf(0.5 + confidence / 2, df) * se
    note = "zero spread over seeds: the interval is a point and t is infinite" if se == 0.0 else ""
    p_greater, p_less = t_sf(t, df), t_cdf(t, df)
    p_two = min(1.0, 2.0 * min(p_greater, p_less))
    return PairedDifference(d, n, mean, sd, se, t, mean - half, mean + half, p_two, p_greater, p_less,
                            confidence, note)  # fmt: skip


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """The paired difference Δ_k = b_k − a_k of two rows seed by seed (``a[k]`` and ``b[k]`` share seed
    k; "row minus baseline" is ``paired_difference(baseline, row)``), tested against 0 by
    :func:`one_sample`: a positive Δ means b is higher."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs one value per seed in each row; got {len(a)} and {len(b)}")
    return one_sample([y - x for x, y in zip(a, b, strict=True)], confidence)


# ------------------------------------------------------------------------------------- many claims
@dataclass(frozen=True)
class Holm:
    """Holm–Bonferroni adjusted p-values, in the input's order, and which hypotheses are rejected."""

    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]
    alpha: float


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> Holm:
    """Holm's step-down correction (Holm 1979) for testing m claims at once with at most ``alpha``
    chance of any false "beyond noise": sort the p-values, multiply the i-th smallest by m − i + 1 (the
    smallest by m, the largest by 1), keep the running maximum so the order never flips, cap at 1; a claim
    is rejected (beyond noise) when its adjusted p ≤ alpha. A NaN p (a test that could not be run, e.g. one
    seed) still counts in m (conservative), sorts last, stays NaN and is never rejected."""
    p = [float(x) for x in pvalues]
    m = len(p)
    order = sorted(range(m), key=lambda i: (math.isnan(p[i]), p[i]))
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        if math.isnan(p[i]):
            break
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return Holm(tuple(adjusted), tuple(not math.isnan(x) and x <= alpha for x in adjusted), alpha)


# ---------------------------------------------------------------------------------------- equivalence
@dataclass(frozen=True)
class Tost:
    """Two one-sided tests of "−margin < Δ < margin". ``p = max(p_lower, p_upper)``; ``ci_low``/``ci_high``
    is the (1 − 2α) t interval (90% for α = 0.05), inside (−margin, margin) exactly when p < α."""

    n: int
    mean: float
    margin: float
    p_lower: float
    p_upper: float
    p: float
    ci_low: float
    ci_high: float
    equivalent: bool
    alpha: float


def tost(deltas: Sequence[float], margin: float, alpha: float = 0.05) -> Tost:
    """Schuirmann's two one-sided tests (TOST) for equivalence of paired rows within ±``margin``.

    A t-test cannot show that two rows are equal, only fail to show they differ; TOST reverses the
    question: it rejects "Δ ≤ −margin" (p_lower) and "Δ ≥ +margin" (p_upper), each one-sided at α, and
    calls the rows equivalent when both are rejected, i.e. p = max(p_lower, p_upper) < α. One seed: NaN."""
    if not margin > 0:
        raise ValueError(f"tost needs a positive margin, got {margin}")
    s = one_sample(deltas)
    if s.n < 2:
        return Tost(s.n, s.mean, margin, math.nan, math.nan, math.nan, math.nan, math.nan, False, alpha)
    df = s.n - 1
    p_lower = t_sf(_t_statistic(s.mean, s.se, -margin), df)  # H0: Δ ≤ −margin
    p_upper = t_cdf(_t_statistic(s.mean, s.se, margin), df)  # H0: Δ ≥ +margin
    p = max(p_lower, p_upper)
    half = t_ppf(1.0 - alpha, df) * s.se
    return Tost(s.n, s.mean, margin, p_lower, p_upper, p, s.mean - half, s.mean + half, p < alpha, alpha)
