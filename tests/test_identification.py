"""Checks of the identifying assumption: sensitivity bounds, Wald subsets, narrative.

The Rambachan-Roth intervals are checked on cases computable by hand (linear
extrapolation at ``M = 0``, the original interval at ``Mbar = 0``, the closed-form
relative-magnitudes bound) and, for ``M > 0``, against an independent computation of the
worst-case bias by linear programming.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.falsification import wald_terms
from leapresearch.estimation.sensitivity import (
    SENSITIVITY_DECIMALS,
    EventCoefficients,
    bonferroni_rm_breakdown,
    bonferroni_rm_ci,
    coefficients_for_bounds,
    cv_folded_normal,
    relative_magnitudes_ci,
    sensitivity_bounds,
    smoothness_breakdown,
    smoothness_ci,
)


def small_case() -> EventCoefficients:
    # periods -2, -1 (pre; reference -1 is period 0) and 1, 2, 3 (post)
    beta = np.array([0.4, 0.2, 1.0, 2.0, 3.0])
    return EventCoefficients(beta, np.eye(5) * 0.01, n_pre=2, n_post=3, reference=-1)


def test_smoothness_at_zero_is_the_linear_extrapolation_of_the_pre_trend():
    coef = small_case()
    lo, hi = smoothness_ci(coef, 2, 0.0)  # rel_time 2 = period 3
    # least-variance weights unbiased for a linear trend: w ∝ (2, 1) (periods -2, -1),
    # w't_pre = 3  =>  w = -3 (2, 1) / 5; slope through the origin -0.2, delta_3 = -0.6
    w = -3 * np.array([2.0, 1.0]) / 5
    centre = 3.0 - w @ coef.beta[:2]
    assert centre == pytest.approx(3.6)
    sd = np.sqrt(0.01 * (1 + w @ w))
    z = stats.norm.ppf(0.975)
    assert (lo, hi) == pytest.approx((centre - z * sd, centre + z * sd), abs=1e-9)


def test_bonferroni_fallback_at_zero_is_the_original_interval_and_grows_by_hand():
    coef = small_case()
    lo, hi = bonferroni_rm_ci(coef, 2, 0.0, df=50)
    t = stats.t.ppf(0.975, 50)
    assert (lo, hi) == pytest.approx((3.0 - t * 0.1, 3.0 + t * 0.1))
    # pre-period changes: delta_-1 - delta_-2 = -0.2 (se sqrt(0.02)), 0 - delta_-1 = -0.2
    # (se 0.1); Bonferroni over 2 changes at alpha / 10
    c = stats.t.ppf(1 - 0.005 / 4, 50)
    d_up = max(0.2 + c * np.sqrt(0.02), 0.2 + c * 0.1)
    z = stats.t.ppf(1 - 0.045 / 2, 50)
    lo, hi = bonferroni_rm_ci(coef, 2, 1.5, df=50)
    assert (lo, hi) == pytest.approx((3.0 - z * 0.1 - 3 * 1.5 * d_up, 3.0 + z * 0.1 + 4.5 * d_up))
    brk = bonferroni_rm_breakdown(coef, 2, df=50)
    assert brk == pytest.approx((3.0 - z * 0.1) / (3 * d_up))
    assert bonferroni_rm_ci(coef, 2, brk, df=50)[0] == pytest.approx(0.0, abs=1e-9)


def _worst_bias_lp(v: np.ndarray, n_pre: int, n_post: int, m: float) -> float:
    """Worst-case |v'delta| over |second differences| <= m, by linear programming."""
    times = [*range(-n_pre, 0), *range(1, n_post + 1)]
    pos = {t: i for i, t in enumerate(times)}
    rows = []
    for centre in range(-n_pre + 1, n_post):
        r = np.zeros(len(times))
        for t, c in ((centre - 1, 1), (centre, -2), (centre + 1, 1)):
            if t != 0:
                r[pos[t]] += c
        rows.append(r)
    a = np.vstack([rows, -np.array(rows)])
    b = np.full(len(a), m)
    free = [(None, None)] * len(times)
    worst = [-optimize.linprog(-s * v, A_ub=a, b_ub=b, bounds=free).fun for s in (1, -1)]
    return max(worst)


@pytest.mark.parametrize("m", [0.05, 0.3, 2.0])
def test_smoothness_flci_is_optimal_against_brute_force_bias(m):
    rng = np.random.default_rng(1)
    n_pre, n_post = 3, 3
    a = rng.normal(size=(6, 6))
    coef = EventCoefficients(rng.normal(size=6), a @ a.T * 0.01 + np.eye(6) * 0.02, 3, 3, -1)
    lo, hi = smoothness_ci(coef, 1, m)  # period 2
    ell = np.zeros(6)
    ell[n_pre + 1] = 1.0
    t_pre = np.arange(-n_pre, 0.0)
    null = np.linalg.svd(t_pre[None, :])[2][1:].T
    w0 = t_pre * 2.0 / (t_pre @ t_pre)  # w't_pre = l't_post = 2

    def half(xi):
        v = ell.copy()
        v[:n_pre] -= w0 + null @ xi
        sd = np.sqrt(v @ coef.sigma @ v)
        return sd * cv_folded_normal(_worst_bias_lp(v, n_pre, n_post, m) / sd, 0.05)

    best = min(
        optimize.minimize(
            half, x0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}
        ).fun
        for x0 in (np.zeros(2), np.ones(2))
    )
    assert (hi - lo) / 2 == pytest.approx(best, rel=1e-5)


def test_smoothness_flci_does_not_depend_on_last_bit_noise():
    # the same data up to last-bit noise (another BLAS kernel, row order) must give the
    # same interval up to the optimiser's tolerance, far below the 4 published decimals
    coef = EventCoefficients(MEDICAID_BETA, MEDICAID_SIGMA, n_pre=5, n_post=2, reference=-1)
    rng = np.random.default_rng(3)
    for _ in range(3):
        noise = rng.normal(size=MEDICAID_SIGMA.shape) * 1e-15
        sigma = MEDICAID_SIGMA * (1 + (noise + noise.T) / 2)
        other = EventCoefficients(MEDICAID_BETA, sigma, n_pre=5, n_post=2, reference=-1)
        for m in (0.01, 0.05, 0.5):
            for r in (0, 1):
                a, b = np.array(smoothness_ci(coef, r, m)), np.array(smoothness_ci(other, r, m))
                assert np.abs(a - b).max() <= 1e-7 * (a[1] - a[0]), (m, r)


def test_smoothness_flci_is_the_same_solved_cold_or_warm(monkeypatch):
    # the budget path of a problem is kept and reused (sensitivity._FlciPath): an interval
    # solved after many others of the same coefficients equals the one solved alone, and
    # reusing the active sets replaces most SLSQP solves
    import leapresearch.estimation.sensitivity as sens

    coef = EventCoefficients(MEDICAID_BETA, MEDICAID_SIGMA, n_pre=5, n_post=2, reference=-1)
    grid = (0.005, 0.01, 0.02, 0.05, 0.5)
    cold = {}
    for m in grid:
        sens._PATHS.clear()
        cold[m] = np.array(smoothness_ci(coef, 1, m))
    calls = []
    solve = sens._min_variance_weights
    monkeypatch.setattr(sens, "_min_variance_weights", lambda *a: calls.append(1) or solve(*a))
    sens._PATHS.clear()
    smoothness_breakdown(coef, 1)
    for m in grid:
        warm = np.array(smoothness_ci(coef, 1, m))
        assert np.abs(warm - cold[m]).max() <= 1e-9 * (cold[m][1] - cold[m][0]), m
    budgets = len(sens._flci_path(coef, 1).solved)
    assert budgets > 20 and len(calls) < budgets / 2


def test_intervals_widen_with_the_bound_and_breakdowns_cover_zero():
    coef = small_case()
    widths = [np.diff(smoothness_ci(coef, 2, m))[0] for m in (0, 0.05, 0.2, 1.0)]
    assert np.all(np.diff(widths) > 0)
    m_star = smoothness_breakdown(coef, 2)
    assert m_star > 0
    lo, hi = smoothness_ci(coef, 2, m_star)
    assert lo <= 0 <= hi
    lo, hi = smoothness_ci(coef, 2, 0.95 * m_star)
    assert not lo <= 0 <= hi


def test_cv_folded_normal():
    assert cv_folded_normal(0.0, 0.05) == pytest.approx(stats.norm.ppf(0.975))
    c = cv_folded_normal(1.3, 0.05)
    assert stats.norm.cdf(c - 1.3) - stats.norm.cdf(-c - 1.3) == pytest.approx(0.95)


def _toy_panel(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(200):
        treated = unit < 100
        for t in range(-8, 6):
            y = rng.normal() + (2.0 * (t >= 0) if treated else 0.0) + unit % 7
            rows.append((unit, 0, t, t, int(treated), unit, 1, y, 1.0))
    cols = ["unit", "stack", "time", "rel_time", "treated", "student", "school"]
    return pd.DataFrame(rows, columns=[*cols, "attendance_pp", "weight"])


def test_wald_subset_matches_the_full_pretrend_test_and_bounds_table():
    res = event_study(_toy_panel(), window=None)
    full = res.pretrend_test()
    sub = wald_terms(res, range(-8, -1))
    assert sub["statistic"] == pytest.approx(full.stat)
    assert sub["p_value"] == pytest.approx(full.p_value)
    assert sub["months"] == "-8..-2"
    assert np.isnan(wald_terms(res, [-30])["p_value"])
    tab = sensitivity_bounds(res, rel_times=(1, 3), mbar=(0, 1), m=(0, 1))
    assert set(tab["method"]) == {"relative_magnitudes", "smoothness"}
    orig = res.table().set_index("rel_time")
    first = tab.loc[(tab["method"] == "relative_magnitudes") & (tab["bound"] == 0)]
    # Delta^RM(0) is parallel trends after the event: the C-LF interval (rounded to
    # SENSITIVITY_DECIMALS in the table) is a test of delta_post = 0, close to the original
    # interval and around the estimate
    first = first.set_index("rel_time")
    coef = coefficients_for_bounds(res, max_rel_time=3)
    for r in (1, 3):
        lo, hi = relative_magnitudes_ci(coef, r, 0.0)
        assert first.loc[r, "ci_lower"] == round(lo, SENSITIVITY_DECIMALS)
        assert first.loc[r, "ci_upper"] == round(hi, SENSITIVITY_DECIMALS)
        assert lo < orig.loc[r, "estimate"] < hi
        width = orig.loc[r, "ci_upper"] - orig.loc[r, "ci_lower"]
        assert abs((hi - lo) / width - 1) < 0.1


def _unbalanced_panel(seed: int = 11) -> pd.DataFrame:
    """Visited and comparison units in 24 schools, entering and leaving at random months,
    with effects that differ across visited units (what moves the full fit's pre-period)."""
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(480):
        treated = unit % 2 == 0
        first, last = sorted(rng.integers(-8, 7, size=2))
        effect = rng.normal(3.0, 2.0)
        level = rng.normal(0, 3)
        for t in range(first, last + 1):
            y = level + rng.normal() + (effect * (t >= 0) if treated else 0.0)
            rows.append((unit, 0, t, t, int(treated), unit, unit % 24, y, 1.0))
    cols = ["unit", "stack", "time", "rel_time", "treated", "student", "school"]
    return pd.DataFrame(rows, columns=[*cols, "attendance_pp", "weight"])


def _fit_with_influence(panel: pd.DataFrame):
    from leapresearch.estimation.multiple_testing import cluster_influence, with_influence

    res = event_study(panel, window=None, cluster="school")
    return with_influence(res, cluster_influence(panel, res))


def test_bounds_take_the_untreated_fits_pre_period_with_the_joint_covariance_of_linearmodels():
    """The pre-period of the bounds from the untreated rows, the post-period from the full
    fit; their covariance against one linearmodels regression holding both fits."""
    from linearmodels.iv.absorbing import AbsorbingLS

    from leapresearch.analysis.identification import untreated_rows
    from leapresearch.estimation.sensitivity import joint_covariance

    panel = _unbalanced_panel()
    untreated = untreated_rows(panel, -1)
    full, pre = _fit_with_influence(panel), _fit_with_influence(untreated)
    pre_terms = [r for r in range(-8, -1)]
    post_terms = [r for r in range(0, 4)]
    coef = coefficients_for_bounds(full, max_rel_time=3, pretrend=pre)
    assert (coef.n_pre, coef.n_post) == (7, 4)
    np.testing.assert_array_equal(coef.beta[:7], pre.coefficients.loc[pre_terms].to_numpy())
    np.testing.assert_array_equal(coef.beta[7:], full.coefficients.loc[post_terms].to_numpy())
    # the diagonal blocks are the fits' own covariances
    np.testing.assert_allclose(coef.sigma[:7, :7], pre.cov.loc[pre_terms, pre_terms], rtol=1e-9)
    np.testing.assert_allclose(coef.sigma[7:, 7:], full.cov.loc[post_terms, post_terms], rtol=1e-9)
    # the two fits in one regression (every effect and term interacted with the copy),
    # clustered by school: the same coefficients, and the same correlations (each block's
    # small-sample factor differs, the correlations do not)
    both = pd.concat([panel.assign(copy=0), untreated.assign(copy=1)], ignore_index=True)
    treated, rel, copy = both["treated"] == 1, both["rel_time"], both["copy"]
    x = pd.DataFrame(
        {
            f"full_{r}": (treated & (rel == r) & (copy == 0)).astype(float)
            for r in range(-8, 7)
            if r != -1
        }
        | {f"pre_{r}": (treated & (rel == r) & (copy == 1)).astype(float) for r in pre_terms}
    )
    absorb = pd.DataFrame(
        {
            "unit": pd.Categorical(both["unit"] * 2 + copy),
            "month": pd.Categorical(both["time"] * 2 + copy),
        }
    )
    lib = AbsorbingLS(both["attendance_pp"], x, absorb=absorb).fit(
        cov_type="clustered", clusters=both["school"].to_numpy(), debiased=False
    )
    names = [f"pre_{r}" for r in pre_terms] + [f"full_{r}" for r in post_terms]
    np.testing.assert_allclose(lib.params[names].to_numpy(), coef.beta, atol=1e-6)
    lib_cov = lib.cov.loc[names, names].to_numpy()

    def corr(v):
        d = np.sqrt(np.diag(v))
        return v / np.outer(d, d)

    np.testing.assert_allclose(corr(coef.sigma), corr(lib_cov), atol=1e-6)
    assert np.abs(corr(coef.sigma)[:7, 7:]).max() > 0.05  # the cross block is not zero
    # without a fit's influence there is no joint covariance: an error, not a guess
    with pytest.raises(ValueError, match="cluster influence"):
        joint_covariance(
            event_study(untreated, window=None, cluster="school"), pre_terms, full, post_terms
        )
    tab = sensitivity_bounds(full, rel_times=(1, 3), mbar=(0, 1), m=(0,), pretrend=pre)
    own = sensitivity_bounds(full, rel_times=(1, 3), mbar=(0, 1), m=(0,))
    assert not tab[["ci_lower", "ci_upper"]].equals(own[["ci_lower", "ci_upper"]])


def test_mean_of_terms_is_the_average_with_its_covariance_and_a_single_term_its_own_row():
    from leapresearch.estimation.falsification import mean_of_terms

    res = event_study(_toy_panel(), window=None)
    post = [r for r in res.coefficients.index if r >= 0]
    got = mean_of_terms(res, post)
    v = res.cov.loc[post, post].to_numpy()
    assert got["estimate"] == pytest.approx(res.coefficients.loc[post].mean())
    assert got["std_error"] == pytest.approx(np.sqrt(v.sum()) / len(post))
    one = mean_of_terms(res, [post[0]])
    row = res.table().set_index("rel_time").loc[post[0]]
    for c in ("estimate", "std_error", "ci_lower", "ci_upper"):
        assert one[c] == pytest.approx(row[c])
    assert np.isnan(mean_of_terms(res, [99])["estimate"])


def test_a_capped_sample_drops_a_tie_at_the_cut_whole():
    from leapresearch.estimation.falsification import take_by_key

    keys = np.array(["d", "b", "c", "b", "a"], dtype=object)
    assert take_by_key(keys, 9).tolist() == [0, 1, 2, 3, 4]
    assert sorted(keys[take_by_key(keys, 3)]) == ["a", "b", "b"]
    # the cut after "a" and one "b" would pick one of two equal students: neither is taken
    assert keys[take_by_key(keys, 2)].tolist() == ["a"]
    assert take_by_key(np.array(["x", "x", "x"], dtype=object), 2).tolist() == []


# --------------------------------------------------------------------------------------
# sentences follow the numbers
# --------------------------------------------------------------------------------------


def _pretrends(p_value: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": ["all", "all"],
            "basis": ["adjusted", "unadjusted"],
            "months": ["<=-12..-2", "-24..-13"],
            "statistic": [1.0, 1.0],
            "df": [11, 12],
            "p_value": [0.6, p_value],
            "n_treated": [100, 100],
        }
    )


def test_pretrend_sentence_changes_with_the_test():
    # issue 23, item 4: each test carries its measured size; only calibrated tests (size
    # near nominal in the validation) are read as evidence that the paths differed
    from leapresearch.publish.calibration import load_calibration
    from leapresearch.publish.narrative import describe_pretrends
    from tests.test_calibration import (
        _rates,
        families_only_calibration,
        no_test_calibration,
        synthetic_calibration,
    )

    # the packaged record reads the unadjusted main-window test only (on the untreated rows,
    # sixth freeze: 4-7% at the demo's size, 0-2% at four times it); the adjusted one's size
    # grows to 32-54% at four times the demo
    assert load_calibration().calibrated() == ["pretrend_unadjusted_main"]
    # a record that reads no test never speaks of a calibrated one
    silent = describe_pretrends(_pretrends(0.001), brief=True, calibration=no_test_calibration())
    assert "calibrated test" not in silent and "0 calibrated" not in silent
    cal = families_only_calibration()
    assert cal.calibrated() == ["pretrend_adjusted_main"]  # what the texts below expect
    calm = describe_pretrends(_pretrends(0.7), calibration=cal)
    alarm = describe_pretrends(_pretrends(0.001), calibration=cal)
    assert "The calibrated test does not reject at the 5% level" in calm
    assert "None of the 1 tests whose size in the validation is not near nominal rejects" in calm
    assert "1 of the 1 tests whose size in the validation is not near nominal reject " in alarm
    assert "(unadjusted -24..-13); at that size a rejection is not evidence" in alarm
    assert "already differed" not in calm + alarm and "moved in parallel" not in calm + alarm
    far = cal.diagnostics["pretrend_unadjusted_far"].size.percent()
    main = cal.diagnostics["pretrend_adjusted_main"].size.percent()
    assert f"this test rejected in {far} of draws where the design is right" in alarm
    assert f"this test rejected in {main} of draws where the design is right" in alarm
    assert "its verdict is not read as evidence on the design" in alarm  # the far test
    assert "its size is near the nominal level" in alarm  # the main test
    brief = describe_pretrends(_pretrends(0.001), brief=True, calibration=cal)
    assert brief.startswith("The calibrated test does not reject") and "F =" not in brief
    assert "In the validation" not in brief
    # were the unadjusted far test calibrated, its rejection would be read as one
    both = synthetic_calibration(
        {
            "pretrend_adjusted_main": _rates((0.05, 0.05), 0.05, 0.05),
            "pretrend_unadjusted_far": _rates((0.04, 0.06), 0.5, 0.5),
        }
    )
    read = describe_pretrends(_pretrends(0.001), brief=True, calibration=both)
    assert read.startswith("1 of 2 calibrated tests reject (unadjusted -24..-13): visited")
    assert "already differed before the first visit" in read
    # a test the validation did not measure says so
    other = _pretrends(0.7).assign(group="grade_band:PK-5")
    text = describe_pretrends(other, group="grade_band:PK-5", calibration=both)
    assert "measured on the test of all visited students" in text


def _event_rows(estimates, half_width=1.0, start=0, **extra) -> pd.DataFrame:
    est = np.asarray(estimates, float)
    return pd.DataFrame(
        {
            "group": "all",
            "rel_time": np.arange(start, start + est.size),
            "estimate": est,
            "ci_lower": est - half_width,
            "ci_upper": est + half_width,
            **extra,
        }
    )


def _placebo_rows(post, p_value: float) -> pd.DataFrame:
    rows = _event_rows([0.1, -0.2, 0.3, 0.0, *post], start=-4, shift_months=18)
    rows = rows.loc[rows["rel_time"] != -1]
    return rows.assign(
        post_wald_statistic=5.0 if p_value < 0.05 else 0.5,
        post_wald_df=len(post),
        post_wald_p_value=p_value,
        n_visited=1000,
        n_visited_placebo=700,
    )


def test_placebo_sentence_follows_the_months_and_the_joint_test():
    from leapresearch.publish.calibration import load_calibration
    from leapresearch.publish.narrative import describe_placebo
    from tests.test_calibration import _rates, synthetic_calibration

    # the packaged validation: the placebo's size is far above nominal, so a rejection is
    # reported with it and not read as the design failing
    size = load_calibration().diagnostics["placebo_post"].size.percent()
    packaged = describe_placebo(_placebo_rows([-0.5, -2.8, -4.6, -6.4, -0.2, 0.3], 0.0001))
    assert "rejects at the 5% level" in packaged and "did not move together" not in packaged
    assert f"rejected in {size} of draws where the design is right" in packaged
    assert "not read as evidence on the design" in packaged
    # a calibrated placebo (made-up validation) carries the verdicts
    cal = synthetic_calibration({"placebo_post": _rates((0.04, 0.06), 0.5, 0.5)})
    good = describe_placebo(_placebo_rows([0.1, -0.2, 0.3, 0.0, 0.1, -0.1], 0.8), calibration=cal)
    bad = describe_placebo(
        _placebo_rows([-0.5, -2.8, -4.6, -6.4, -0.2, 0.3], 0.0001), calibration=cal
    )
    assert "rejected in 4-6% of draws where the design is right" in good + bad
    for text in (good, bad):
        assert "fake months 0 to 5 are months -18 to -13 from the real first visit" in text
        assert "It uses 700 of the 1,000 matched visited students" in text
    assert "0 of 6 fake post-month 'effects' have 95% intervals that exclude zero;" in good
    assert "does not reject at the 5% level (F = 0.50, p = 0.800)" in good
    assert "not evidence that the paths were parallel" in good
    assert "3 of 6" in bad and "months 1 (-2.8 pp), 2 (-4.6 pp), 3 (-6.4 pp)" in bad
    assert "rejects at the 5% level" in bad and "did not move together 13 to 18 months" in bad
    assert "average is -2.4 pp" in bad
    note = pd.DataFrame({"group": ["all"], "note": ["not estimable: not enough history: 0 of 9"]})
    assert "could not be estimated (not estimable: not enough history" in describe_placebo(note)


def _falsification_rows(post, *, mean, half_width, p_value) -> pd.DataFrame:
    months = _event_rows(post, start=0).assign(term="month")
    summary = pd.DataFrame(
        {
            "group": ["all"],
            "term": ["post_months"],
            "months": [f"0..{len(post) - 1}"],
            "estimate": [mean],
            "ci_lower": [mean - half_width],
            "ci_upper": [mean + half_width],
            "n_treated": [800],
            "statistic": [4.0 if p_value < 0.05 else 0.6],
            "df": [len(post)],
            "p_value": [p_value],
        }
    )
    return pd.concat([months, summary], ignore_index=True).astype({"rel_time": "Int64"})


def test_falsification_sentence_follows_the_mean_and_the_joint_test():
    from leapresearch.publish.calibration import load_calibration
    from leapresearch.publish.narrative import describe_falsification
    from tests.test_calibration import _rates, synthetic_calibration

    # the packaged validation: the falsification rejects where the design is right, so its
    # pseudo-effect is reported with that size, not as the design's bias
    size = load_calibration().diagnostics["falsification_post"].size.percent()
    packaged = describe_falsification(
        _falsification_rows([3.0, 4.0, 5.0, 0.5, 6.0], mean=3.7, half_width=1.5, p_value=0.001)
    )
    assert "rejects at the 5% level" in packaged and "overstates" not in packaged
    assert f"rejected in {size} of draws where the design is right" in packaged
    # a calibrated falsification (made-up validation) carries the verdicts
    cal = synthetic_calibration({"falsification_post": _rates((0.04, 0.06), 0.5, 0.5)})
    calm = describe_falsification(
        _falsification_rows([0.2, -0.3, 0.1, 0.4, -0.2], mean=0.04, half_width=1.1, p_value=0.7),
        calibration=cal,
    )
    # most monthly intervals exclude zero, but the joint test and the mean carry the verdict
    rebound = describe_falsification(
        _falsification_rows([3.0, 4.0, 5.0, 0.5, 6.0], mean=3.7, half_width=1.5, p_value=0.001),
        calibration=cal,
    )
    assert "its size is near the nominal level" in calm + rebound
    assert "mean pseudo-effect over months 0..4 +0.0 pp (95% CI -1.1 to 1.1)" in calm
    assert "does not reject at the 5% level (F = 0.60, p = 0.700)" in calm
    assert "0 of 5 monthly intervals exclude zero." in calm
    assert "outside -1.1 to 1.1 pp is ruled out" in calm and "overstates" not in calm
    assert "rejects at the 5% level" in rebound and "4 of 5 monthly intervals" in rebound
    assert "leaves a positive pseudo-effect" in rebound
    assert "overstates effects by about 3.7 pp" in rebound
    # an interval of the mean that excludes zero is a failure even if the joint test is not
    negative = describe_falsification(
        _falsification_rows([-0.5] * 12, mean=-1.0, half_width=0.8, p_value=0.2), calibration=cal
    )
    assert "negative pseudo-effect" in negative and "understates" in negative
    assert "80%" not in calm + rebound + negative


def test_sensitivity_and_pre_period_sentences_follow_the_numbers():
    from leapresearch.publish.narrative import describe_pre_period, describe_sensitivity

    def bounds(brk: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "group": "all",
                "rel_time": [9, 9],
                "method": ["relative_magnitudes", "smoothness"],
                "breakdown": [brk, 2 * brk],
            }
        )

    assert "does not survive" in describe_sensitivity(bounds(0.3))
    assert "survives" in describe_sensitivity(bounds(1.4))
    lean = describe_pre_period(_event_rows(np.linspace(0.6, 2.2, 11), start=-12))
    mixed = describe_pre_period(_event_rows([0.5, -0.4, 0.3, -0.2, 0.1, -0.6], start=-7))
    assert "11 are positive" in lean and "lean positive" in lean
    assert "3 are positive" in mixed and "do not lean" in mixed


def test_balance_sentence_follows_the_wwc_count():
    from leapresearch.publish.narrative import describe_balance

    def balance(es: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "covariate": ["a", "b"],
                "used_in_matching": True,
                "smd_before": [0.3, 0.2],
                "smd_after": [es, 0.01],
                "wwc_category": ["satisfies" if abs(es) <= 0.05 else "adjustment", "satisfies"],
            }
        )

    assert "for the other 1" in describe_balance(balance(0.2))
    assert "for the other" not in describe_balance(balance(0.02))
    hidden = balance(0.2).assign(suppressed=True, smd_before=np.nan, smd_after=np.nan)
    assert describe_balance(hidden).startswith("No matching covariate's balance is published")


def test_composition_sentence_of_a_suppressed_estimate_says_so():
    from leapresearch.publish.narrative import describe_composition

    rows = pd.DataFrame(
        {"sample": ["full", "balanced"], "rel_time": 9, "estimate": [4.0, 3.0],
         "n_treated": [120, 80]}
    )  # fmt: skip
    assert "a difference of +1.0 pp" in describe_composition(rows)
    hidden = rows.assign(estimate=np.nan, n_treated=pd.NA)
    assert "is not published" in describe_composition(hidden)


# --------------------------------------------------------------------------------------
# every run writes the identification tables
# --------------------------------------------------------------------------------------

IDENTIFICATION_TABLES = {
    "sensitivity": ["group", "rel_time", "method", "bound", "ci_lower", "ci_upper", "breakdown"],
    "falsification": ["group", "rel_time", "estimate", "std_error", "ci_lower", "ci_upper"],
    "specifications": [
        "specification",
        "group",
        "rel_time",
        "estimate",
        "std_error",
        "ci_lower",
        "ci_upper",
        "n_treated",
    ],
    "pretrend_event_study": ["group", "basis", "rel_time", "estimate", "n_treated"],
    "pretrend_tests": ["group", "basis", "months", "statistic", "df", "p_value"],
}


def test_a_run_writes_the_identification_tables_through_suppression(run_a):
    for name, cols in IDENTIFICATION_TABLES.items():
        table = pd.read_csv(run_a / "tables" / f"{name}.csv")
        assert set(cols) <= set(table.columns), name
        assert "suppressed" in table.columns, name
    tests = pd.read_csv(run_a / "tables" / "pretrend_tests.csv")
    assert {"adjusted", "unadjusted"} <= set(tests["basis"])
    assert "-24..-13" in set(tests["months"])
    spec = pd.read_csv(run_a / "tables" / "specifications.csv")
    assert {"main", "no_adjustment", "intent_to_treat", "ratio_1"} <= set(spec["specification"])
    assert (run_a / "figures" / "sensitivity_all.png").exists()
    assert (run_a / "figures" / "specifications_all.png").exists()


def test_specifications_are_consistent_with_the_main_fit(sim_data):
    from leapresearch.analysis.event_studies import estimate_event_studies
    from leapresearch.analysis.fitting import headline_weights
    from leapresearch.analysis.sample import prepare
    from leapresearch.analysis.specifications import estimate_specifications
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables

    config = load_config(
        "demo",
        data_dir=sim_data,
        overrides=[
            "identification.specifications=[no_adjustment, outside_caliper_drop, "
            "outside_caliper_only, trimmed_end_points, intent_to_treat]"
        ],
    )
    tables = read_raw_tables(sim_data)
    prepared = prepare(tables, config)
    spec = estimate_specifications(prepared, tables=tables)
    es, _ = estimate_event_studies(prepared, subgroups=())
    main = spec.loc[(spec["specification"] == "main") & (spec["group"] == "all")]
    ref = es.set_index("rel_time").loc[main["rel_time"], "estimate"].to_numpy()
    assert main["estimate"].to_numpy() == pytest.approx(ref)
    n = spec.loc[spec["group"] == "all"].pivot(
        index="rel_time", columns="specification", values="n_treated"
    )
    # out-of-caliper students and the rest partition the visited students
    far = prepared.outside_caliper
    assert len(far) > 0
    treated = prepared.units.loc[prepared.units["treated"] == 1]
    is_far = treated.merge(far.assign(f=1), on=["stack", "student"], how="left")["f"].notna()
    total = {}
    for keep in (treated.loc[is_far.to_numpy()], treated.loc[~is_far.to_numpy()]):
        for label, w in headline_weights(prepared, keep=keep):
            total[label] = total.get(label, 0) + w[treated["unit"].to_numpy()].sum()
    assert total["all"] == len(treated)
    assert {"outside_caliper_drop", "outside_caliper_only"} <= set(n.columns)
    # first contact of any status: at least every student with a completed visit
    assert (n["intent_to_treat"] >= n["main"]).all()
    adj = n.index.map(
        spec.loc[(spec["specification"] == "no_adjustment") & (spec["group"] == "all")].set_index(
            "rel_time"
        )["estimate"]
    ).to_numpy()
    assert not np.allclose(adj, main["estimate"].to_numpy())


def test_intent_to_treat_sentence_follows_the_estimates():
    from leapresearch.publish.narrative import describe_intent_to_treat

    def spec(itt: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "specification": ["main", "intent_to_treat"],
                "group": "all",
                "rel_time": 6,
                "estimate": [10.0, itt],
                "ci_lower": [8.0, itt - 2],
                "ci_upper": [12.0, itt + 2],
                "n_treated": [100, 120],
            }
        )

    assert "+5.0 pp" in describe_intent_to_treat(spec(5.0)) and "(50% of it)" in (
        describe_intent_to_treat(spec(5.0))
    )
    assert "(90% of it)" in describe_intent_to_treat(spec(9.0))


# The public example of the R package HonestDiD (README, "Example usage - Medicaid
# expansions"): the TWFE event study of ehec_data (Mixtape Sessions, Advanced-DID), years
# before 2016, the 2015 cohort dropped, 2014 cohort vs never treated, clustered by state.
# betahat and sigma below are our estimator's fit of that regression (fixest's CRV1 and
# small-sample correction); the intervals are those the README prints (3 significant
# digits).
MEDICAID_BETA = np.array(
    [-0.005285354533, -0.011297324648, -0.002675991812, -0.001419312252, 0.000339663519]
    + [0.04644685416, 0.069206175479]
)
MEDICAID_SIGMA = np.array(
    [
        [7.488483635898e-05, 6.039874095644e-05, 4.444619818461e-05, 3.385764706089e-05,
         4.328011254744e-05, 4.765880478778e-05, 2.425128699754e-05],
        [6.039874095644e-05, 7.266500616997e-05, 3.789330221288e-05, 2.866578025148e-05,
         4.543320628404e-05, 4.428850119318e-05, 2.824655042985e-05],
        [4.444619818461e-05, 3.789330221288e-05, 5.052051940163e-05, 2.673679432484e-05,
         2.778193567674e-05, 3.060644108906e-05, 9.637533882669e-06],
        [3.385764706089e-05, 2.866578025148e-05, 2.673679432484e-05, 4.003222026338e-05,
         2.412859975716e-05, 2.380868209074e-05, 2.923878143364e-06],
        [4.328011254744e-05, 4.543320628404e-05, 2.778193567674e-05, 2.412859975716e-05,
         5.462662207054e-05, 3.682531051743e-05, 9.722947502418e-06],
        [4.765880478778e-05, 4.428850119318e-05, 3.060644108906e-05, 2.380868209074e-05,
         3.682531051743e-05, 8.375668824678e-05, 6.321397962534e-05],
        [2.425128699754e-05, 2.824655042985e-05, 9.637533882669e-06, 2.923878143364e-06,
         9.722947502418e-06, 6.321397962534e-05, 1.071235230300e-04],
    ]
)  # fmt: skip
R_FLCI = {  # M: (lb, ub) of DeltaSD, first post-period (2014)
    0.00: (0.0259, 0.0607),
    0.01: (0.0132, 0.0787),
    0.02: (0.00286, 0.0907),
    0.03: (-0.00714, 0.101),
    0.04: (-0.0171, 0.111),
    0.05: (-0.0271, 0.121),
}
R_RM_HYBRID = {0.5: (0.0241, 0.0673), 1.0: (0.0171, 0.0720), 1.5: (0.00859, 0.0796)}


def test_smoothness_reproduces_the_r_package_example():
    coef = EventCoefficients(MEDICAID_BETA, MEDICAID_SIGMA, n_pre=5, n_post=2, reference=-1)

    def tol(printed: float) -> float:
        # half a unit of the third significant digit printed, plus 5e-5 for R's numerical
        # search of the sd bound h (bisection on numerical derivatives)
        return 0.5 * 10 ** (np.floor(np.log10(abs(printed))) - 2) + 5e-5

    for m, (lb, ub) in R_FLCI.items():
        lo, hi = smoothness_ci(coef, 0, m)
        assert lo == pytest.approx(lb, abs=tol(lb)), m
        assert hi == pytest.approx(ub, abs=tol(ub)), m


def test_bonferroni_fallback_contains_the_r_hybrid_interval():
    coef = EventCoefficients(MEDICAID_BETA, MEDICAID_SIGMA, n_pre=5, n_post=2, reference=-1)
    for mbar, (lb, ub) in R_RM_HYBRID.items():
        lo, hi = bonferroni_rm_ci(coef, 0, mbar)
        assert lo <= lb and hi >= ub, mbar  # valid and more conservative


def test_small_groups_lose_their_bounds_in_publication():
    from leapresearch.config import PrivacyConfig
    from leapresearch.publish.outputs import publishable

    table = pd.DataFrame(
        {
            "group": ["all", "tiny"],
            "rel_time": [9, 9],
            "method": "smoothness",
            "bound": 0.5,
            "estimate": [3.0, 4.0],
            "ci_lower": [1.0, 2.0],
            "ci_upper": [5.0, 6.0],
            "breakdown": [0.4, 0.7],
            "n_treated": [500, 8],
        }
    )
    out = publishable(table, "sensitivity", privacy=PrivacyConfig())
    tiny = out.loc[out["group"] == "tiny"].iloc[0]
    assert tiny[["estimate", "ci_lower", "ci_upper", "breakdown"]].isna().all()
    assert out.loc[out["group"] == "all", "breakdown"].iloc[0] == 0.4


def test_naive_sentence_follows_the_sign_of_the_gap():
    from leapresearch.publish.narrative import describe_naive

    def tables(naive: float, matched: float):
        n = pd.DataFrame({"group": ["all"], "rel_time": [6], "estimate": [naive]})
        return n, n.assign(estimate=matched)

    assert "matched comparison students also made" in describe_naive(*tables(20.0, 12.0))
    assert "the effect exceeds the raw change" in describe_naive(*tables(5.0, 8.0))
    assert "fell by 3.0 pp" in describe_naive(*tables(5.0, 8.0))


def test_falsification_can_fail_when_the_design_ignores_the_dip():
    """On the demo data, matching on the last month only, without the adjustment or
    demographics, leaves the rebound from the dip in the pseudo-event estimates (the
    full design covers zero in every month: see the demo run)."""
    from leapresearch.analysis.identification import estimate_falsification
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.paths import DEMO_DATA

    weak = load_config(
        "demo",
        overrides=[
            "matching.pre_months=1",
            "analysis.regression_adjustment=false",
            "matching.demographics=[]",
            "identification.groups=[all]",
        ],
    )
    table = estimate_falsification(prepare(read_raw_tables(DEMO_DATA), weak))
    post = table.loc[(table["term"] == "month") & (table["rel_time"] >= 0)]
    covers = (post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)
    assert covers.mean() < 0.8, post
    assert post["estimate"].mean() > 0
    # the published verdict: the joint test of the post months rejects, and the mean
    # pseudo-effect's interval lies above zero
    summary = table.loc[table["term"] == "post_months"].iloc[0]
    assert summary["p_value"] < 0.05, summary
    assert summary["ci_lower"] > 0, summary


@pytest.mark.parametrize(
    "update",
    [
        {"not_yet_visited": False},  # never_visited_pool
        {"include_attempted_only": False},  # attempted_only_excluded
        {"not_yet_visited": False, "include_attempted_only": False},
    ],
)
def test_a_narrower_pool_restricts_the_candidates_exactly_as_a_rebuild(sim_data, update):
    # the pool specifications drop comparisons from the run's candidates instead of
    # building them again (design.pool.restrict_candidates): the same frame, row for row
    import numpy as np

    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.panel import build_panel
    from leapresearch.design.pool import build_candidates, narrower_pool, restrict_candidates

    config = load_config("demo", data_dir=sim_data)
    panel = build_panel(read_raw_tables(sim_data))
    wide = config.comparison_pool
    assert wide.not_yet_visited and wide.include_attempted_only
    narrow = wide.model_copy(update=update)
    assert narrower_pool(wide, narrow) and not narrower_pool(narrow, wide)
    stacks = np.unique(panel.events["event_time"].to_numpy())
    built = build_candidates(panel, pool=wide, matching=config.matching, stacks=stacks)
    rebuilt = build_candidates(panel, pool=narrow, matching=config.matching, stacks=stacks)
    restricted = restrict_candidates(built, panel, narrow)
    assert len(rebuilt.frame) < len(built.frame)
    pd.testing.assert_frame_equal(restricted.frame, rebuilt.frame, check_exact=True)
    assert restricted.covariates == rebuilt.covariates
    assert restricted.extra == rebuilt.extra
    pd.testing.assert_frame_equal(restricted.excluded_treated, rebuilt.excluded_treated)


def test_sensitivity_fits_its_groups_when_not_given_them(sim_data):
    # notebook 03 asks for the bounds alone (`session.result(estimate_sensitivity)`):
    # fitting only the groups of `identification.groups` gives the run's table
    from leapresearch.analysis.event_studies import estimate_event_studies
    from leapresearch.analysis.identification import estimate_sensitivity, pretrend_fits
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.estimation.sensitivity import NO_PRETREND_FIT, sensitivity_table

    # two months and two values of each bound's parameter: the wiring does not need more
    cut = ["analysis.report_rel_times=[3, 9]", "identification.sensitivity_mbar=[0, 0.5]",
           "identification.sensitivity_m=[0, 0.5]"]  # fmt: skip
    config = load_config("demo", data_dir=sim_data, overrides=cut)
    tables = read_raw_tables(config.data_path, program_start=config.program_start)
    prepared = prepare(tables, config)
    _, every_group = estimate_event_studies(prepared)
    assert set(every_group) > set(config.identification.groups)
    pretrends = pretrend_fits(prepared)
    run_table = estimate_sensitivity(prepared, every_group, pretrends)
    assert set(run_table["group"]) == set(config.identification.groups)
    pd.testing.assert_frame_equal(estimate_sensitivity(prepared), run_table, check_exact=True)
    # the bounds' pre-period is the untreated-rows fit's (a group without it is an error)
    by_own_pre = sensitivity_table(
        every_group,
        groups=config.identification.groups,
        rel_times=config.analysis.report_rel_times,
        mbar=config.identification.sensitivity_mbar,
        m=config.identification.sensitivity_m,
    )
    assert not by_own_pre["ci_lower"].equals(run_table["ci_lower"])
    # a group whose untreated rows gave no fit keeps its rows, unbounded and saying why,
    # and never takes its own full fit's pre-period; the other groups keep their bounds
    only_all = estimate_sensitivity(prepared, every_group, {"all": pretrends["all"]})
    is_all = only_all["group"] == "all"
    pd.testing.assert_frame_equal(
        only_all.loc[is_all].reset_index(drop=True),
        run_table.loc[run_table["group"] == "all"].reset_index(drop=True),
        check_exact=True,
    )
    others = only_all.loc[~is_all]
    assert len(others) == (~(run_table["group"] == "all")).sum() > 0
    assert (others["inference"] == NO_PRETREND_FIT).all()
    assert others[["ci_lower", "ci_upper", "breakdown"]].isna().all().all()
    pd.testing.assert_series_equal(
        others["estimate"].reset_index(drop=True),
        run_table.loc[run_table["group"] != "all", "estimate"].reset_index(drop=True),
    )


def test_content_keys_hash_each_students_own_rows_as_text_missing_values_too(valid_fixture):
    import hashlib

    from leapresearch.data.contract.validate import read_raw_tables
    from leapresearch.data.panel import build_panel
    from leapresearch.estimation.falsification import ID_COLUMNS, MISSING_TEXT, content_keys

    panel = build_panel(read_raw_tables(valid_fixture), chronic_threshold=0.9)
    first = pd.DataFrame({"student": np.arange(panel.n_students), "event_time": 7})
    ros = panel.roster.sort_values(["student", "year"], kind="stable")
    attrs = [c for c in ros.columns if c not in ID_COLUMNS]
    assert ros[attrs].isna().any().any()  # a missing home language: keyed, not an error
    expected = []
    for student in range(panel.n_students):  # the definition, one student at a time
        rows = ros.loc[ros["student"] == student, attrs].astype(str).fillna(MISSING_TEXT)
        text = "\x1e".join("\x1f".join(row) for row in rows.itertuples(index=False))
        h = hashlib.sha256(b"5\x1d7\x1d")
        h.update(np.nan_to_num(panel.rates[student], nan=-1.0).astype("<f8").tobytes())
        h.update(text.encode())
        expected.append(h.hexdigest())
    assert content_keys(panel, first, seed=5).tolist() == expected


def test_untreated_rows_are_every_comparison_row_and_the_visited_rows_to_the_reference():
    from leapresearch.analysis.identification import untreated_rows

    panel = pd.DataFrame(
        {
            "treated": [1, 1, 1, 1, 1, 0, 0, 0],
            "rel_time": [-4, -3, -2, -1, 0, -2, 0, 5],
        }
    )
    assert untreated_rows(panel, -1).index.tolist() == [0, 1, 2, 3, 5, 6, 7]
    # an earlier reference (months of anticipation): the visited rows after it go too
    assert untreated_rows(panel, -3).index.tolist() == [0, 1, 5, 6, 7]


def _post_visit_shift(prepared, seed: int = 5):
    """``prepared`` whose visited students' post-visit outcomes move by a per-student amount.

    Effects that differ across students, in the post-visit rows only: nothing a pre-trend
    test may read.
    """
    import dataclasses

    st = prepared.stacked
    rng = np.random.default_rng(seed)
    students = st["student"].unique()
    effect = pd.Series(rng.normal(8.0, 10.0, len(students)), index=students)
    post = (st["treated"].to_numpy() == 1) & (st["rel_time"].to_numpy() >= 0)
    y = st["attendance_pp"].to_numpy(np.float64).copy()
    y[post] += effect.reindex(st["student"].to_numpy()[post]).to_numpy()
    return dataclasses.replace(prepared, stacked=st.assign(attendance_pp=y))


def test_pretrend_tests_do_not_read_the_post_visit_outcomes(sim_data):
    """Effects that differ across students leave every pre-trend table unchanged.

    The same shift moves the pre-period coefficients of the full stacked fit (the unit
    effects average the post-visit rows in the unbalanced panel), which the tests used
    before they were fitted on the untreated rows.
    """
    from leapresearch.analysis.fitting import fit_group
    from leapresearch.analysis.identification import pretrend_tables
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables

    config = load_config("demo", data_dir=sim_data)
    prepared = prepare(read_raw_tables(config.data_path), config)
    shifted = _post_visit_shift(prepared)
    es, tests = pretrend_tables(prepared)
    es_shifted, tests_shifted = pretrend_tables(shifted)
    assert (es["rel_time"] < config.analysis.reference).all()
    assert tests["p_value"].notna().sum() >= 5
    pd.testing.assert_frame_equal(es, es_shifted, check_exact=True)
    pd.testing.assert_frame_equal(tests, tests_shifted, check_exact=True)
    # the full fit's pre-period coefficients do move with the same shift
    weights = prepared.units["weight"].to_numpy(np.float64)
    full = fit_group(prepared, prepared.stacked, weights).coefficients
    full_shifted = fit_group(shifted, shifted.stacked, weights).coefficients
    pre = full.index < config.analysis.reference
    assert np.abs(full[pre] - full_shifted[pre]).max() > 0.05


def test_the_pretrend_fit_is_linearmodels_on_the_untreated_rows(sim_data):
    """The pre-trend fit against linearmodels' PanelOLS on the same untreated rows."""
    from leapresearch.analysis.fitting import fit_group
    from leapresearch.analysis.identification import pretrend_fits, untreated_rows
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.estimation.linear_models import linearmodels_event_study

    config = load_config("demo", data_dir=sim_data)
    prepared = prepare(read_raw_tables(config.data_path), config)
    ours = pretrend_fits(prepared, subgroups=())["all"]
    rows = untreated_rows(prepared.stacked, config.analysis.reference)
    weights = prepared.units["weight"].to_numpy(np.float64)
    lib = fit_group(prepared, rows, weights, estimator=linearmodels_event_study)
    assert (ours.coefficients.index < config.analysis.reference).all()
    np.testing.assert_allclose(ours.coefficients, lib.coefficients, atol=1e-7)
    np.testing.assert_allclose(ours.std_errors, lib.std_errors, rtol=1e-5)
