"""The relative-magnitudes (Delta^RM) intervals against the R package HonestDiD.

``leapresearch.estimation.relative_magnitudes`` ports ``computeConditionalCS_DeltaRM``
(conditional least-favourable hybrid, ``method = "C-LF"``). The published numbers are
those of the package's README, "Example usage - Medicaid expansions"
(``createSensitivityResults_relativeMagnitudes(betahat, sigma, numPrePeriods = 5,
numPostPeriods = 2, Mbarvec = seq(0.5, 2, by = 0.5))``), with the betahat and sigma of
that regression kept in ``tests/test_identification.py`` (the smoothness check uses them).

Package versions: the intervals matched exactly (to the three printed digits) are those the
README printed from commit fa4ce02 (2022-09-14, HonestDiD 0.2.0) until commit 99e05c7
(2024-03-28), computed by today's algorithm (R/deltarm.R and R/arp-nuisance.R of 0.2.8
draw and test the same way). The README since 0.2.6 (99e05c7, unchanged through 0.2.8)
prints ends that are not on any +-20 sd grid of 1000 points, so that knit's inputs differed
slightly; those are matched to one R grid step. The breakdown value (README: "Mbar = 2")
is checked in both.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from leapresearch.estimation import relative_magnitudes as rm
from leapresearch.estimation.sensitivity import (
    EventCoefficients,
    bonferroni_rm_ci,
    relative_magnitudes_breakdown,
    relative_magnitudes_ci,
    sensitivity_bounds,
)
from tests.test_identification import MEDICAID_BETA, MEDICAID_SIGMA

# README as printed from commit fa4ce02 (2022-09-14, DESCRIPTION Version 0.2.0) until
# commit 99e05c7 (2024-03-28, Version 0.2.6) of asheshrambachan/HonestDiD: the code of
# today's R/deltarm.R and R/arp-nuisance.R (1000 draws after set.seed(0) for the
# least-favourable critical value, 1000 grid points over +-20 sd).
README_0_2_0 = {
    0.5: (0.0240, 0.0672),
    1.0: (0.0170, 0.0720),
    1.5: (0.00824, 0.0797),
    2.0: (-0.000916, 0.0881),
}
# README since 99e05c7 (Version 0.2.6 onwards, unchanged in 0.2.8): these ends are not
# values of the +-20 sd grid of that sigma, so that run's inputs differed slightly (the
# README does not print them); they are matched to one grid step.
README_0_2_6 = {
    0.5: (0.0241, 0.0673),
    1.0: (0.0171, 0.0720),
    1.5: (0.00859, 0.0796),
    2.0: (-0.00107, 0.0883),
}
SE_2014 = float(np.sqrt(MEDICAID_SIGMA[5, 5]))
R_GRID_STEP = 40 * SE_2014 / 999


def _half_unit(printed: float) -> float:
    """Half a unit of the third significant digit (the README prints three)."""
    return 0.5 * 10 ** (np.floor(np.log10(abs(printed))) - 2)


def medicaid() -> EventCoefficients:
    return EventCoefficients(MEDICAID_BETA, MEDICAID_SIGMA, n_pre=5, n_post=2, reference=-1)


def test_r_normal_draws_are_rs_rnorm():
    # R: set.seed(0); rnorm(5) and set.seed(42); rnorm(3) (R >= 3.6 default kinds)
    assert rm.r_normal_draws(5, 0) == pytest.approx(
        [1.2629543, -0.3262334, 1.3297993, 1.2724293, 0.4146414], abs=5e-8
    )
    assert rm.r_normal_draws(3, 42) == pytest.approx([1.3709584, -0.5646982, 0.3631284], abs=5e-8)


@pytest.mark.parametrize("mbar", sorted(README_0_2_0))
def test_grid_inversion_prints_the_readme_intervals(mbar):
    lb, ub = rm.hybrid_grid(MEDICAID_BETA, MEDICAID_SIGMA, 5, 2, 1, mbar)
    want_lb, want_ub = README_0_2_0[mbar]
    assert float(f"{lb:.3g}") == want_lb and abs(lb - want_lb) <= _half_unit(want_lb)
    assert float(f"{ub:.3g}") == want_ub and abs(ub - want_ub) <= _half_unit(want_ub)
    new_lb, new_ub = README_0_2_6[mbar]
    assert abs(lb - new_lb) <= R_GRID_STEP + _half_unit(new_lb)
    assert abs(ub - new_ub) <= R_GRID_STEP + _half_unit(new_ub)


def test_refined_interval_is_within_one_r_grid_step_and_wider_than_the_grids():
    for mbar in README_0_2_0:
        g_lb, g_ub = rm.hybrid_grid(MEDICAID_BETA, MEDICAID_SIGMA, 5, 2, 1, mbar)
        lo, hi = relative_magnitudes_ci(medicaid(), 0, mbar)
        assert g_lb - R_GRID_STEP < lo <= g_lb and g_ub <= hi < g_ub + R_GRID_STEP, mbar


def test_breakdown_is_the_readmes_two():
    # README: 'the "breakdown value" for a significant effect is Mbar = 2' (the interval
    # excludes zero at 1.5 and includes it at 2)
    brk = relative_magnitudes_breakdown(medicaid(), 0)
    assert 1.5 < brk <= 2.0
    assert relative_magnitudes_ci(medicaid(), 0, brk)[0] <= 0
    assert relative_magnitudes_ci(medicaid(), 0, brk - 1e-3)[0] > 0


def test_hybrid_is_narrower_than_the_bonferroni_projection():
    for mbar in (0.5, 1.0, 2.0):
        lo, hi = relative_magnitudes_ci(medicaid(), 0, mbar)
        b_lo, b_hi = bonferroni_rm_ci(medicaid(), 0, mbar)
        assert b_lo < lo and hi < b_hi


def test_dual_vertices_give_the_linear_programme_of_eta():
    # eta = min_nu max_j (y_j - X_j nu) / sd_j by HiGHS against the closed-form vertices
    rng = np.random.default_rng(5)
    n_pre, n_post = 3, 4
    a = rng.normal(size=(7, 7))
    sigma = a @ a.T + np.eye(7)
    for k in (1, 2, 4):
        for s, pos in ((0, True), (-2, False)):
            moments = rm.rm_moments(n_pre, n_post, 0.7, s, pos)
            sd = np.sqrt(np.diag(moments @ sigma @ moments.T))
            nuis = [j for j in range(n_post) if j != k - 1]
            x = moments[:, n_pre:][:, nuis]
            verts = rm._dual_vertices(sd, n_post, k)
            assert np.all(verts >= 0)
            assert np.allclose(verts @ sd, 1) and np.allclose(verts @ x, 0)
            for _ in range(5):
                y = rng.normal(size=len(sd)) * 3
                cost = np.r_[1.0, np.zeros(x.shape[1])]
                fit = optimize.linprog(
                    cost, A_ub=-np.column_stack([sd, x]), b_ub=-y,
                    bounds=[(None, None)] * len(cost), method="highs",
                )  # fmt: skip
                assert fit.status == 0
                assert (verts @ y).max() == pytest.approx(fit.fun, abs=1e-9)


def test_conditional_range_is_where_the_linear_programme_keeps_its_vertex():
    # [v_lo, v_up] from the closed-form vertices against HiGHS: along Y(c) = s + b c the
    # programme's value equals c (gamma optimal) just inside the range and exceeds it
    # just outside
    rng = np.random.default_rng(8)
    n_pre, n_post, k = 3, 3, 2
    a = rng.normal(size=(6, 6))
    sigma = a @ a.T + np.eye(6)
    moments = rm.rm_moments(n_pre, n_post, 0.5, -1, True)
    sig_y = moments @ sigma @ moments.T
    sd = np.sqrt(np.diag(sig_y))
    x = moments[:, n_pre:][:, [j for j in range(n_post) if j != k - 1]]
    verts = rm._dual_vertices(sd, n_post, k)
    q = verts @ sig_y @ verts.T

    def lp_eta(y: np.ndarray) -> float:
        cost = np.r_[1.0, np.zeros(x.shape[1])]
        fit = optimize.linprog(
            cost, A_ub=-np.column_stack([sd, x]), b_ub=-y,
            bounds=[(None, None)] * len(cost), method="highs",
        )  # fmt: skip
        assert fit.status == 0
        return fit.fun

    checked = 0
    for _ in range(200):
        y = rng.normal(size=len(sd)) * 2
        vals = verts @ y
        g = int(np.argmax(vals))
        lo, up = rm.conditional_range(q, vals[:, None], np.array([g]), vals[[g]])
        lo, up = float(lo[0]), float(up[0])
        if not (np.isfinite(lo) and np.isfinite(up)):
            continue
        b = sig_y @ verts[g] / q[g, g]
        s = y - b * vals[g]
        eps = 1e-4 * max(1.0, up - lo)
        for c in (lo + eps, 0.5 * (lo + up), up - eps):
            assert lp_eta(s + b * c) == pytest.approx(c, abs=1e-8)
        for c in (lo - eps, up + eps):
            assert lp_eta(s + b * c) > c + 1e-9
        checked += 1
    assert checked >= 5


def test_table_labels_the_method_and_falls_back_to_bonferroni():
    from leapresearch.estimation.event_study import event_study
    from tests.test_identification import _toy_panel

    res = event_study(_toy_panel(), window=None)
    tab = sensitivity_bounds(res, rel_times=(1, 3), mbar=(0, 1), m=(0,))
    rm_rows = tab.loc[tab["method"] == "relative_magnitudes"]
    assert set(rm_rows["inference"]) == {"C-LF"}
    assert set(tab.loc[tab["method"] == "smoothness", "inference"]) == {"FLCI"}
    # one post-period month: the package's no-nuisance test is not ported, Bonferroni
    one = sensitivity_bounds(res, rel_times=(0,), mbar=(0, 1), m=(0,))
    assert set(one.loc[one["method"] == "relative_magnitudes", "inference"]) == {"Bonferroni"}


def test_a_singular_covariance_is_refused_and_the_month_falls_back_to_bonferroni():
    """A cluster-robust covariance with fewer clusters than coefficients is singular: some
    moment then has a (rounding-)negative variance, whose square root was NaN and silently
    accepted every value. The hybrid refuses it; the month's rows are the labelled fallback."""
    import warnings

    from leapresearch.estimation.sensitivity import _rm_rows as relative_magnitudes_rows

    sigma = np.asarray(MEDICAID_SIGMA, np.float64)
    w, v = np.linalg.eigh(sigma)
    w[0] = -1e-13 * w[-1]  # rank-deficient up to rounding, as with few clusters
    singular = (v * w) @ v.T
    coef = EventCoefficients(MEDICAID_BETA, singular, n_pre=5, n_post=2, reference=-1)
    with pytest.raises(FloatingPointError, match="singular"):
        rm.HybridRM(MEDICAID_BETA, singular, 5, 2, 1, 1.0, 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NaN from a negative variance
        rows = relative_magnitudes_rows(
            coef, 0, (0.5, 1.0), alpha=0.05, df=None, estimate=0.05, n_treated=10
        )
    assert {r[2] for r in rows} == {"Bonferroni"}
    lo, hi = bonferroni_rm_ci(coef, 0, 1.0, alpha=0.05, df=None)
    assert (rows[1][5], rows[1][6]) == (lo, hi)
    # the full-rank covariance is still computed by the hybrid
    assert (
        relative_magnitudes_rows(
            medicaid(), 0, (1.0,), alpha=0.05, df=None, estimate=0.05, n_treated=10
        )[0][2]
        == "C-LF"
    )


def _published_sensitivity(brk_all: float, brk_pk5: float, how: str = "C-LF"):
    """A published sensitivity.csv: RM breakdowns as given, smoothness ones 1 larger."""
    import pandas as pd

    rows = [
        (g, month, method, inference, 0.5, 1.0, -1.0, 3.0, b + extra, 99)
        for g, b in (("all", brk_all), ("grade_band:PK-5", brk_pk5))
        for month in (6, 9)
        for method, inference, extra in (("relative_magnitudes", how, 0), ("smoothness", "FLCI", 1))
    ]
    cols = ["group", "rel_time", "method", "inference", "bound", "estimate", "ci_lower"]
    return pd.DataFrame(rows, columns=[*cols, "ci_upper", "breakdown", "n_treated"])


def test_front_page_states_the_breakdown_beside_each_bounded_estimate():
    import pandas as pd

    from leapresearch.publish.narrative import describe_headline_breakdowns
    from leapresearch.publish.tables import headline_html, headline_table

    es = pd.DataFrame(
        [
            (g, m, est, est - 2, est + 2, 100, 200)
            for g, est in (("all", 5.0), ("grade_band:PK-5", 4.0), ("grade_band:6-12", 6.0))
            for m in (6, 9)
        ],
        columns=[
            "group",
            "rel_time",
            "estimate",
            "ci_lower",
            "ci_upper",
            "n_treated",
            "n_comparison",
        ],
    )
    sens = _published_sensitivity(0.61, 0.2)
    head = headline_table(es, rel_times=(6, 9), sensitivity=sens)
    by = head.set_index("group")
    assert by.loc["all", "brk_9"] == 0.61 and by.loc["grade_band:PK-5", "brk_6"] == 0.2
    assert np.isnan(by.loc["grade_band:6-12", "brk_9"])  # not bounded: nothing printed
    page = headline_html(head, rel_times=(6, 9))
    assert page.count("breakdown Mbar 0.61") == 2 and page.count("breakdown Mbar 0.20") == 2
    assert "†" not in page
    words = describe_headline_breakdowns(sens, rel_times=(6, 9))
    assert "All visited students 0.61, Grades PK-5 0.20." in words
    assert "The smallest (0.20, Grades PK-5 at six months)" in words
    assert "20% of the largest" in words
    strong = describe_headline_breakdowns(_published_sensitivity(1.5, 1.2), rel_times=(6, 9))
    assert "Even the smallest (1.20, Grades PK-5 at six months) survives" in strong
    fallback = _published_sensitivity(0.61, 0.2, how="Bonferroni")
    assert "†" in headline_html(
        headline_table(es, rel_times=(6, 9), sensitivity=fallback), rel_times=(6, 9)
    )
    assert "Bonferroni" in describe_headline_breakdowns(fallback, rel_times=(6, 9))
    # without the table the headline is as before
    assert "brk_6" not in headline_table(es, rel_times=(6, 9)).columns


def test_a_group_without_a_pre_trend_fit_is_said_to_be_unbounded_not_printed_as_a_number():
    import pandas as pd

    from leapresearch.estimation.sensitivity import NO_PRETREND_FIT
    from leapresearch.publish.narrative import describe_headline_breakdowns, describe_sensitivity
    from leapresearch.publish.tables import headline_html, headline_table

    sens = _published_sensitivity(0.61, 0.2)
    pk5 = sens["group"] == "grade_band:PK-5"
    sens.loc[pk5, "inference"] = NO_PRETREND_FIT
    sens.loc[pk5, ["ci_lower", "ci_upper", "breakdown"]] = np.nan
    es = pd.DataFrame(
        [(g, m, 5.0, 3.0, 7.0, 100, 200) for g in ("all", "grade_band:PK-5") for m in (6, 9)],
        columns=["group", "rel_time", "estimate", "ci_lower", "ci_upper"]
        + ["n_treated", "n_comparison"],
    )
    page = headline_html(headline_table(es, rel_times=(6, 9), sensitivity=sens), rel_times=(6, 9))
    assert page.count("breakdown Mbar 0.61") == 2
    assert page.count(f"no bounds ({NO_PRETREND_FIT})") == 2
    assert "†" not in page and "shown for All visited students)" in page
    assert "Not bounded: Grades PK-5 (its untreated rows gave no pre-trend fit" in page
    words = describe_headline_breakdowns(sens, rel_times=(6, 9))
    assert f"All visited students 0.61, Grades PK-5 not bounded ({NO_PRETREND_FIT})." in words
    assert "The smallest (0.61, All visited students" in words
    assert describe_sensitivity(sens).startswith("Breakdown values for all visited students (")
    assert describe_sensitivity(sens, group="grade_band:PK-5") == (
        f"No published sensitivity bounds for Grades PK-5 ({NO_PRETREND_FIT})."
    )
