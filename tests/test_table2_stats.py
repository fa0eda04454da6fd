"""mrcnn_lite.ablations.stats and .verdicts against closed forms and hand-worked examples.

References: the t distribution's closed forms (df = 1: Cauchy; df = 2, 4: algebraic quantiles; any integer
df: Abramowitz & Stegun 26.7.3-4), quantiles computed to 50 digits with mpmath (df = 3, 4, 5, 9: the
values 2.2621571628540993 (df 9) and 2.015048372669157 (df 5) sometimes quoted are off by 6e-11 and
7e-10), and the textbook's 3-decimal table; Holm, TOST and paired t-tests worked out by hand below.
"""

from __future__ import annotations

import math
import random

import pytest

from mrcnn_lite.ablations.stats import (
    holm,
    incomplete_beta,
    normal_cdf,
    one_sample,
    paired_difference,
    t_cdf,
    t_ppf,
    t_sf,
    tost,
)
from mrcnn_lite.ablations.verdicts import (
    AT_FLOOR,
    CONTRADICTED,
    EQUIVALENT,
    HOLDS,
    NOT_BEYOND_NOISE,
    NOT_RUN,
    NOT_SETTLED,
    NOT_SHOWN_EQUIVALENT,
    EquivalenceMargin,
    PointEvidence,
    point_verdict,
    schedule_verdict,
    settle,
)

Z975 = 1.959963984540054  # the normal's 97.5% quantile


def as_cdf(t: float, df: int) -> float:
    """Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df): P(|T| <= t) as a finite series in
    theta = atan(t / sqrt(df)), turned into P(T <= t)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:
        series, term = 0.0, 1.0 * c  # cos + 2/3 cos^3 + 2*4/(3*5) cos^5 ...
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= (2 * k) / (2 * k + 1) * c * c
        a = 2 / math.pi * (theta + (s * series if df > 1 else 0.0))
    else:
        series, term = 0.0, 1.0  # 1 + 1/2 cos^2 + 1*3/(2*4) cos^4 ...
        for k in range(1, df // 2 + 1):
            series += term
            term *= (2 * k - 1) / (2 * k) * c * c
        a = s * series
    return 0.5 + 0.5 * a


def p_two_sided_df2(t: float) -> float:
    """df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2) (from F(t) = 1/2 + t / (2 sqrt(2 + t^2)))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def quantile_df2(p: float) -> float:
    return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))


# ----------------------------------------------------------------------------------- t distribution
@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, math.tan(math.pi * 0.475)),  # Cauchy: tan(pi (p - 1/2)) = 12.706204736174705
        (0.975, 2, quantile_df2(0.975)),  # 4.302652729749462
        (0.975, 4, 2.7764451051977943578),  # mpmath, 50 digits (and the closed form below)
        (0.975, 9, 2.2621571627982055426),  # mpmath, 50 digits
        (0.95, 5, 2.0150483733330242378),  # mpmath, 50 digits
        (0.995, 3, 5.8409093097333572607),  # mpmath, 50 digits
    ],
)
def test_t_quantiles_to_1e_12(p: float, df: int, expected: float) -> None:
    assert t_ppf(p, df) == pytest.approx(expected, rel=1e-13, abs=1e-12)
    assert t_ppf(1 - p, df) == pytest.approx(-expected, rel=1e-13, abs=1e-12)  # symmetry


def test_t_quantiles_match_the_printed_table() -> None:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 30: 2.042}
    for df, printed in table.items():
        assert round(t_ppf(0.975, df), 3) == printed


def test_t_quantile_df4_closed_form() -> None:
    for p in (0.6, 0.9, 0.975, 0.999):
        alpha = 4 * p * (1 - p)
        q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
        assert t_ppf(p, 4) == pytest.approx(2 * math.sqrt(q - 1), rel=1e-12)


@pytest.mark.parametrize("df", range(1, 11))
def test_t_cdf_against_abramowitz_stegun(df: int) -> None:
    for t in (-30.0, -4.3, -1.0, -0.2, 0.0, 0.05, 0.7, 2.0, 6.5, 40.0):
        assert t_cdf(t, df) == pytest.approx(as_cdf(t, df), rel=1e-12, abs=1e-15)
        assert t_cdf(-t, df) == pytest.approx(1 - t_cdf(t, df), abs=1e-15)  # symmetry
        assert t_sf(t, df) == pytest.approx(t_cdf(-t, df), abs=0)
    assert t_cdf(0.0, df) == 0.5 and t_cdf(math.inf, df) == 1.0 and t_cdf(-math.inf, df) == 0.0


def test_t_cdf_and_ppf_invert_each_other_and_the_far_tail_is_exact() -> None:
    for df in (1, 2, 3, 7, 29, 2.5):
        for p in (1e-9, 0.01, 0.3, 0.5, 0.8, 0.975, 1 - 1e-9):
            assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, rel=1e-10)
    # P(T > 1000) for df = 1 is about 1 / (1000 pi): 1 - cdf would lose it to rounding; sf keeps 13 digits
    assert t_sf(1000.0, 1) == pytest.approx(0.5 - math.atan(1000.0) / math.pi, rel=1e-12)


def test_large_df_tends_to_the_normal() -> None:
    assert normal_cdf(Z975) == pytest.approx(0.975, abs=1e-15)
    # Cornish-Fisher: t = z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2) + O(df^-3)
    df = 1e4
    cf = Z975 + (Z975**3 + Z975) / (4 * df) + (5 * Z975**5 + 16 * Z975**3 + 3 * Z975) / (96 * df**2)
    assert t_ppf(0.975, df) == pytest.approx(cf, abs=1e-10)
    quantiles = [t_ppf(0.975, df) for df in (30, 100, 1e3, 1e5, 1e6)]
    assert quantiles == sorted(quantiles, reverse=True)
    assert quantiles[-1] - Z975 == pytest.approx((Z975**3 + Z975) / 4e6, rel=1e-3)  # 2.37e-6
    assert t_cdf(1.5, 1e6) == pytest.approx(normal_cdf(1.5), abs=1e-6)


def test_incomplete_beta_special_cases() -> None:
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert incomplete_beta(x, 1, 1) == pytest.approx(x, abs=1e-15)
        assert incomplete_beta(x, 3.5, 1) == pytest.approx(x**3.5, abs=1e-15)
        assert incomplete_beta(x, 1, 2.5) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-15)
        assert incomplete_beta(x, 2.0, 7.0) == pytest.approx(1 - incomplete_beta(1 - x, 7.0, 2.0), abs=1e-14)
    with pytest.raises(ValueError):
        incomplete_beta(1.5, 1, 1)


# ------------------------------------------------------------------------------- paired differences
def test_paired_difference_by_hand() -> None:
    # deltas b - a = 2, 1, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3) on 2 df
    d = paired_difference([10.0, 20.0, 30.0], [12.0, 21.0, 33.0])
    assert d.deltas == (2.0, 1.0, 3.0) and d.n == 3
    assert (d.mean, d.sd, d.se, d.t) == pytest.approx((2.0, 1.0, 1 / math.sqrt(3), 2 * math.sqrt(3)))
    half = quantile_df2(0.975) / math.sqrt(3)  # 4.3027 / 1.7321 = 2.4841
    assert (d.ci_low, d.ci_high) == pytest.approx((2 - half, 2 + half), abs=1e-12)
    assert d.p_two_sided == pytest.approx(1 - math.sqrt(6 / 7), abs=1e-14)  # 0.07418
    assert d.p_greater == pytest.approx(d.p_two_sided / 2, abs=1e-14) and d.note == ""
    assert d.p_less == pytest.approx(1 - d.p_two_sided / 2, abs=1e-14)
    flipped = paired_difference([12.0, 21.0, 33.0], [10.0, 20.0, 30.0])  # a - b instead: the sign flips
    assert flipped.mean == -2.0 and flipped.p_less == pytest.approx(d.p_greater, abs=1e-15)
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_the_exact_t_test_agrees_with_the_committed_reports_table() -> None:
    # tests/test_table2_report.py: with 3 seeds and sd 1 the cut-off is |mean| = 4.303 / sqrt(3) = 2.484
    assert one_sample([1.4, 2.4, 3.4]).p_two_sided > 0.05 and one_sample([1.6, 2.6, 3.6]).p_two_sided < 0.05
    at_cut = one_sample([1.0, 2.0, 3.0]).se * t_ppf(0.975, 2)
    assert one_sample([x - 2 + at_cut for x in (1.0, 2.0, 3.0)]).p_two_sided == pytest.approx(0.05, abs=1e-12)


def test_one_seed_and_zero_spread_are_explicit() -> None:
    one = one_sample([3.0])
    assert one.n == 1 and one.mean == 3.0 and "one seed" in one.note
    undefined = (one.sd, one.se, one.ci_low, one.ci_high, one.p_two_sided, one.p_greater)
    assert all(math.isnan(x) for x in undefined)
    none = one_sample([])
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.p_two_sided)
    flat = one_sample([1.0, 1.0, 1.0])  # no division by zero: t is infinite, the interval a point
    assert flat.se == 0.0 and flat.t == math.inf and (flat.ci_low, flat.ci_high) == (1.0, 1.0)
    assert (flat.p_two_sided, flat.p_greater, flat.p_less) == (0.0, 0.0, 1.0) and "zero spread" in flat.note
    zero = one_sample([0.0, 0.0])
    assert zero.t == 0.0 and (zero.p_two_sided, zero.p_greater, zero.p_less) == (1.0, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------- Holm
def test_holm_hand_worked_example() -> None:
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> 0.06 (monotone)
    h = holm([0.01, 0.04, 0.03, 0.005])
    assert h.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert h.reject == (True, False, False, True)
    assert holm([0.5, 0.6]).adjusted == (1.0, 1.0)  # capped at 1
    assert holm([0.04], alpha=0.05).reject == (True,) and holm([]).adjusted == ()


def test_holm_is_between_raw_and_bonferroni_and_keeps_the_order() -> None:
    rng = random.Random(0)
    for _ in range(200):
        p = [rng.random() ** 3 for _ in range(rng.randint(1, 12))]
        adj = holm(p).adjusted
        for raw, a in zip(p, adj, strict=True):
            assert raw <= a <= min(1.0, len(p) * raw) + 1e-15
        ranked = sorted(range(len(p)), key=p.__getitem__)
        assert [adj[i] for i in ranked] == sorted(adj)


def test_holm_counts_an_untestable_claim_and_never_rejects_it() -> None:
    h = holm([0.01, math.nan, 0.02])  # m = 3: 0.01 * 3, 0.02 * 2
    assert h.adjusted[0] == pytest.approx(0.03) and h.adjusted[2] == pytest.approx(0.04)
    assert math.isnan(h.adjusted[1]) and h.reject == (True, False, True)


# ---------------------------------------------------------------------------------------------- TOST
def test_tost_by_hand() -> None:
    # deltas 0.1, -0.1, 0.3: mean 0.1, se 0.2 / sqrt(3); margin 1: t_upper = (0.1 - 1) / se = -7.794
    result = tost([0.1, -0.1, 0.3], margin=1.0)
    se = 0.2 / math.sqrt(3)
    assert result.p_upper == pytest.approx(p_two_sided_df2((0.1 - 1) / se) / 2, rel=1e-12)
    assert result.p_lower == pytest.approx(p_two_sided_df2((0.1 + 1) / se) / 2, rel=1e-12)
    assert result.p == result.p_upper and result.equivalent  # 0.0080 < 0.05
    half = quantile_df2(0.95) * se  # the 90% interval
    assert (result.ci_low, result.ci_high) == pytest.approx((0.1 - half, 0.1 + half))
    assert not tost([0.1, -0.1, 0.3], margin=0.3).equivalent
    assert not tost([2.0], margin=5.0).equivalent and math.isnan(tost([2.0], margin=5.0).p)
    with pytest.raises(ValueError):
        tost([0.1, 0.2], margin=0.0)


def test_tost_p_and_the_90_percent_interval_agree() -> None:
    rng = random.Random(1)
    seen = set()
    for _ in range(500):
        n, margin = rng.randint(2, 6), rng.choice([0.5, 1.0, 2.5])
        deltas = [rng.gauss(rng.uniform(-2, 2), rng.uniform(0.05, 1.5)) for _ in range(n)]
        r = tost(deltas, margin)
        if abs(r.p - 0.05) < 1e-9:
            continue
        inside = -margin < r.ci_low and r.ci_high < margin
        assert r.equivalent == inside == (r.p < 0.05)
        seen.add(r.equivalent)
    assert seen == {True, False}


# ------------------------------------------------------------------------------------------- verdicts
def test_equivalence_margin_rule() -> None:
    margin = EquivalenceMargin()  # max(1 AP, 10% of the rows' mean AP)
    assert margin((30.0, 34.0)) == pytest.approx(3.2)
    assert margin((5.0, 7.0)) == 1.0
    assert EquivalenceMargin(absolute=0.5, relative=0.05)((12.0, 12.0)) == pytest.approx(0.6)
    assert "10% of the rows' mean AP" in margin.describe()


def test_point_verdicts() -> None:
    rows = (20.0, 25.0)
    assert point_verdict(">", PointEvidence((2.0, 3.0, 4.0), rows, 0.01)) == HOLDS
    assert point_verdict("greater", PointEvidence((-2.0, -3.0, -4.0), rows, 0.01)) == CONTRADICTED
    assert point_verdict(">", PointEvidence((2.0, 3.0, 4.0), rows, 0.2)) == NOT_BEYOND_NOISE
    assert point_verdict(">", PointEvidence((2.0,), rows)) == NOT_BEYOND_NOISE  # one seed: no test
    assert point_verdict(">", PointEvidence((), ())) == NOT_RUN
    assert point_verdict(">", PointEvidence((2.0, 3.0, 4.0), (2.9, 4.6), 0.001)) == AT_FLOOR
    assert point_verdict(">", PointEvidence((2.0, 3.0, 4.0), (2.9, 4.6), 0.001), floor=2.0) == HOLDS
    assert point_verdict(">", PointEvidence((2.0, 3.0, 4.0), (2.9, 12.0), 0.001)) == HOLDS  # one row above
    # "≈": TOST within max(1, 10% of 22.5) = 2.25
    assert point_verdict("≈", PointEvidence((0.1, -0.1, 0.3), rows)) == EQUIVALENT
    assert point_verdict("approx", PointEvidence((2.0, -1.5, 3.5), rows)) == NOT_SHOWN_EQUIVALENT
    tight = EquivalenceMargin(absolute=0.2, relative=0.0)
    assert point_verdict("≈", PointEvidence((0.1, -0.1, 0.3), rows), margin=tight) == NOT_SHOWN_EQUIVALENT
    with pytest.raises(ValueError):
        point_verdict("less", PointEvidence((1.0, 2.0), rows))


def test_from_rows_pairs_seed_by_seed() -> None:
    e = PointEvidence.from_rows([10.0, 11.0, 12.0], [13.0, 12.0, 17.0], p_holm=0.03)
    assert e.deltas == (3.0, 1.0, 5.0) and e.row_aps == (11.0, 14.0) and e.p_holm == 0.03


def test_schedule_verdicts_need_the_last_two_points_to_agree() -> None:
    assert settle([NOT_BEYOND_NOISE, HOLDS, HOLDS]) == HOLDS
    assert settle([HOLDS, HOLDS, NOT_BEYOND_NOISE]) == NOT_SETTLED
    assert settle([HOLDS, NOT_BEYOND_NOISE, HOLDS]) == NOT_SETTLED
    assert settle([EQUIVALENT]) == EQUIVALENT and settle([]) == NOT_RUN
    quarter = PointEvidence((2.0, 3.0, 4.0), (20.0, 25.0), 0.2)
    half = PointEvidence((2.0, 3.0, 4.0), (20.0, 25.0), 0.01)
    end = PointEvidence((2.0, 3.1, 4.0), (20.0, 26.0), 0.02)
    assert schedule_verdict(">", [quarter, half, end]) == ([NOT_BEYOND_NOISE, HOLDS, HOLDS], HOLDS)
    assert schedule_verdict(">", [quarter, end, quarter])[1] == NOT_SETTLED
