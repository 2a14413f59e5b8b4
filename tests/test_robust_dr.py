"""Doubly-robust Callaway-Sant'Anna (Sant'Anna and Zhao 2020) in leapresearch.estimation.

Checked against the known truth of a simulation in which students are picked on a dip of
their recent attendance (the unconditional estimator is then biased), and against an
independent computation of one cell with statsmodels (logit + least squares, the
estimating equations of ``DRDID::drdid_panel``) and a bootstrap of that computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from leapresearch.estimation.drdid import dr_did_panel, fit_logit
from leapresearch.estimation.robust import (
    callaway_santanna,
    group_time_effects,
    pre_trajectory_covariates,
)

N_MONTHS = 36
COHORT_POS = np.array([12, 16, 20, 24])


def month_index(i: np.ndarray | int) -> np.ndarray:
    """School-month index (10 * start_year + position) of the i-th month from Sep 2019."""
    i = np.asarray(i)
    return 10 * (2019 + i // 10) + i % 10


def tau(k: np.ndarray, e: np.ndarray) -> np.ndarray:
    """True effect of cohort number ``k`` at event time ``e`` (0 before the event)."""
    e = np.asarray(e, dtype=float)
    return np.where(e >= 0, (2.0 + 0.5 * np.asarray(k)) * np.minimum(1 + e, 4) / 4, 0.0)


def simulate_dip(seed: int, *, n: int = 4000, share: float = 0.3) -> pd.DataFrame:
    """Students picked for a visit when their attendance dips, older students more often.

    Untreated attendance: student level + older students' downward trend + common month
    effects + AR(1) shocks. Each student is eligible for one cohort's event month ``g``
    (at random) or never; an eligible student is picked with a logit probability rising
    with how far month ``g - 1`` fell below the student's mean of the 12 months up to it
    and with being older, so visited students are in a low spell at the base month and
    rebound. Eligible students not picked are left out, so never-visited students are a
    random sample and selection is on the pre-trajectory only (conditional parallel
    trends hold given it).
    """
    rng = np.random.default_rng(seed)
    level = rng.normal(90, 4, n)
    older = (rng.random(n) < 0.4).astype(float)
    u = np.zeros((n, N_MONTHS))
    u[:, 0] = rng.normal(0, 3, n)
    for m in range(1, N_MONTHS):
        u[:, m] = 0.6 * u[:, m - 1] + rng.normal(0, 3 * np.sqrt(1 - 0.36), n)
    pos = np.arange(N_MONTHS)
    y0 = level[:, None] - 0.15 * older[:, None] * pos + 2 * np.sin(pos / 4) + u
    k_elig = rng.choice(COHORT_POS.size + 1, n, p=[share / COHORT_POS.size] * 4 + [1 - share])
    g_elig = COHORT_POS[np.minimum(k_elig, COHORT_POS.size - 1)]
    rows = np.arange(n)
    dip = y0[rows[:, None], g_elig[:, None] - np.arange(1, 13)].mean(axis=1) - y0[rows, g_elig - 1]
    picked = rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.5 * dip + 0.8 * older)))
    never = k_elig == COHORT_POS.size
    keep_student = never | picked
    cohort = np.where(never, -1, k_elig)
    g_pos = np.where(never, 10_000, g_elig)
    y = y0 + np.where(~never[:, None], tau(cohort[:, None], pos - g_pos[:, None]), 0)
    event = pd.array(np.where(never, 0, month_index(np.minimum(g_pos, 40))), dtype="Int64")
    event[never] = pd.NA
    sid = np.repeat(np.arange(n), N_MONTHS)
    df = pd.DataFrame(
        {
            "student": 50_000 + sid,
            "time": np.tile(month_index(pos), n).astype(np.int64),
            "event_time": event[sid],
            "attendance_pp": y.ravel(),
        }
    )
    df = df.loc[keep_student[sid]].reset_index(drop=True)
    kept = 50_000 + np.flatnonzero(keep_student)
    df.attrs["older"] = pd.DataFrame({"older": older[keep_student]}, index=kept)
    return df


def true_dynamic(res) -> pd.Series:
    """theta(e): cohort-size-weighted true effects over the cohorts estimated at each e."""
    gt = res.group_time
    k = np.searchsorted(month_index(COHORT_POS), gt["group"].to_numpy())
    eff = pd.Series(tau(k, gt["rel_time"].to_numpy()) * gt["group_size"].to_numpy())
    size = pd.Series(gt["group_size"].to_numpy(dtype=float))
    e = gt["rel_time"].to_numpy()
    return (eff.groupby(e).sum() / size.groupby(e).sum()).reindex(res.estimates.index)


DR = {
    "control_group": "nevertreated",
    "base_period": "universal",
    "est_method": "dr",
    "pre_trajectory": (1, 3, 12),
}


# --------------------------------------------------------------------------------------
# known truth


def test_dr_recovers_the_effect_when_students_are_picked_on_a_dip():
    df = simulate_dip(1)
    cov = df.attrs["older"]
    dr = callaway_santanna(df, window=(-6, 8), covariates=cov, **DR)
    un = callaway_santanna(
        df, window=(-6, 8), control_group="nevertreated", base_period="universal"
    )
    post = list(range(0, 9))
    z_dr = (dr.estimates[post] - true_dynamic(dr)[post]) / dr.std_errors[post]
    z_un = (un.estimates[post] - true_dynamic(un)[post]) / un.std_errors[post]
    assert np.all(np.abs(z_dr) < 3.5), z_dr
    # ignoring the dip, the rebound of visited students is counted as an effect
    assert np.all(z_un > 4), z_un
    # placebo rows before the base month are near zero once the trajectory is conditioned on
    pre = [-6, -5, -4, -3, -2]
    z_pre = dr.estimates[pre] / dr.std_errors[pre]
    assert np.all(np.abs(z_pre) < 3.5), z_pre
    # months -3 and -2 are two of the three the 3-month trajectory covariate averages: the
    # outcome regression fits the sum of their changes exactly, so the two estimates are
    # opposite and their joint test is not defined (no statistic from a singular matrix)
    assert dr.estimates[-3] == pytest.approx(-dr.estimates[-2], abs=1e-10)
    with pytest.raises(ValueError, match=r"singular \(rank 4\)"):
        dr.pretrend_test()
    assert un.pretrend_test().p_value < 1e-6
    assert dr.reference == -1 and dr.est_method == "dr"
    assert "propensity-score logit" in dr.se_method


def test_dr_standard_errors_are_calibrated():
    zs = []
    for seed in range(40):
        df = simulate_dip(200 + seed, n=2000)
        res = callaway_santanna(df, window=(0, 6), covariates=df.attrs["older"], **DR)
        zs.append(((res.estimates - true_dynamic(res)) / res.std_errors).to_numpy())
    z = np.concatenate(zs)
    assert 0.8 < z.std() < 1.25, z.std()
    assert abs(z.mean()) < 0.4, z.mean()
    assert np.mean(np.abs(z) < 1.96) >= 0.88


def test_dr_without_covariates_is_the_unconditional_estimator():
    df = simulate_dip(2, n=1500)
    kw = {"window": (-3, 5), "control_group": "nevertreated", "base_period": "universal"}
    un = callaway_santanna(df, **kw)
    dr = callaway_santanna(df, est_method="dr", **kw)
    np.testing.assert_allclose(dr.estimates, un.estimates, atol=1e-10)
    np.testing.assert_allclose(dr.std_errors, un.std_errors, rtol=1e-8)


# --------------------------------------------------------------------------------------
# independent computation of one cell


def _hand_dr(dy: np.ndarray, d: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """DR DiD ATT and its influence-function standard error, nuisances by statsmodels."""
    xc = sm.add_constant(x, has_constant="add")
    n = d.size
    logit = sm.Logit(d, xc).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    ps = np.minimum(logit.predict(xc), 1 - 1e-6)
    ols = sm.WLS(dy, xc, weights=1.0 - d).fit()
    m = xc @ ols.params
    w1, w0 = d, ps * (1 - d) / (1 - ps)
    eta1 = np.sum(w1 * (dy - m)) / np.sum(w1)
    eta0 = np.sum(w0 * (dy - m)) / np.sum(w0)
    # linear representations: OLS on comparisons, logit via its inverse information
    l_ols = ((1 - d) * (dy - m))[:, None] * xc @ np.linalg.inv(xc.T @ ((1 - d)[:, None] * xc) / n)
    l_ps = ((d - ps)[:, None] * xc) @ (np.asarray(logit.cov_params()) * n)
    inf1 = (w1 * (dy - m - eta1) - l_ols @ (w1[:, None] * xc).mean(0)) / w1.mean()
    m2 = ((w0 * (dy - m - eta0))[:, None] * xc).mean(0)
    inf0 = (w0 * (dy - m - eta0) + l_ps @ m2 - l_ols @ (w0[:, None] * xc).mean(0)) / w0.mean()
    psi = inf1 - inf0
    return float(eta1 - eta0), float(np.sqrt(np.sum(psi**2)) / n)


def _cell_data(df: pd.DataFrame, g: int, t: int, lengths=(1, 3, 12)):
    """The students of cell (g, t) with pre-trajectory means computed with pandas."""
    wide = df.pivot(index="student", columns="time", values="attendance_pp")
    cohort = df.groupby("student")["event_time"].first().reindex(wide.index)
    months = sorted(df["time"].unique())
    base = months[months.index(g) - 1]
    window = [m for m in months if m <= base][-max(lengths) :]
    feats = {}
    for k in lengths:  # mean of the last k observed months of the window
        feats[f"last{k}"] = wide[window].apply(
            lambda r, k=k: r.dropna().iloc[-k:].mean() if r.notna().any() else np.nan, axis=1
        )
    x = pd.DataFrame(feats).join(df.attrs["older"])
    dy = wide[t] - wide[base]
    keep = (cohort.eq(g).fillna(False) | cohort.isna()) & dy.notna() & x.notna().all(axis=1)
    d = cohort[keep].eq(g).fillna(False).to_numpy(dtype=float)
    return dy[keep].to_numpy(), d, x[keep].to_numpy()


def test_one_cell_against_statsmodels_and_a_bootstrap():
    df = simulate_dip(3, n=1500, share=0.1)
    gt = group_time_effects(df, window=None, covariates=df.attrs["older"], **DR)
    g = int(month_index(COHORT_POS[1]))
    t = int(month_index(COHORT_POS[1] + 3))
    row = gt.set_index(["group", "time"]).loc[(g, t)]
    dy, d, x = _cell_data(df, g, t)
    att, se = _hand_dr(dy, d, x)
    assert row["n_treated"] == d.sum() and row["n_comparison"] == (1 - d).sum()
    assert row["att"] == pytest.approx(att, abs=1e-8)
    assert row["std_error"] == pytest.approx(se, rel=1e-6)
    # nonparametric bootstrap of the statsmodels computation (students resampled)
    rng = np.random.default_rng(7)
    boots = []
    for _ in range(300):
        i = rng.integers(0, d.size, d.size)
        boots.append(_hand_dr(dy[i], d[i], x[i])[0])
    assert np.std(boots, ddof=1) == pytest.approx(se, rel=0.15)


def test_pre_trajectory_covariates_take_the_last_observed_months_up_to_the_base():
    periods = np.array([1, 2, 3, 4, 5, 6])
    y = np.array(
        [
            [1.0, np.nan, np.nan],
            [2.0, 10.0, np.nan],
            [3.0, np.nan, np.nan],
            [4.0, 20.0, np.nan],
            [5.0, 30.0, np.nan],
            [99.0, 99.0, 99.0],  # after the base month: never used
        ]
    )
    out = pre_trajectory_covariates(y, periods, base=5, lengths=(1, 2, 4))
    np.testing.assert_allclose(out[0], [5.0, 4.5, 3.5])
    np.testing.assert_allclose(out[1], [30.0, 25.0, 20.0])
    assert np.isnan(out[2]).all()


# --------------------------------------------------------------------------------------
# numerical safeguards and bad input


def test_separation_is_refitted_with_a_ridge_and_reported():
    df = simulate_dip(4, n=1500, share=0.1)
    g = int(month_index(COHORT_POS[0]))
    first = df.groupby("student")["event_time"].first()
    # a covariate that is 1 exactly for the first cohort: perfect separation
    sep = pd.DataFrame({"flag": first.eq(g).fillna(False).astype(float)})
    res = callaway_santanna(df, window=(0, 3), covariates=sep, **DR)
    assert np.isfinite(res.estimates).all() and np.isfinite(res.std_errors).all()
    assert any("ridge" in note for note in res.notes)
    beta, _, ok = fit_logit(
        np.column_stack([np.ones(4), [0.0, 0.0, 1.0, 1.0]]), np.array([0.0, 0.0, 1.0, 1.0])
    )
    assert not ok


def test_extreme_scores_are_trimmed_and_reported():
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 1))
    d = (rng.random(n) < 1 / (1 + np.exp(-(4 * x[:, 0] - 1)))).astype(float)
    dy = x[:, 0] + rng.normal(size=n)
    cell = dr_did_panel(dy, d, x, trim=0.9)
    assert cell.n_trimmed > 0 and np.isfinite(cell.att)
    assert cell.influence.shape == (n,) and abs(cell.influence.mean()) < 1e-8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"est_method": "ipw"}, "est_method"),
        ({"pre_trajectory": (0,)}, "pre_trajectory"),
        ({"trim": 0.2}, "trim"),
        ({"covariates": pd.DataFrame({"a": ["x"]})}, "numeric"),
        ({"covariates": pd.DataFrame({"a": [1.0]}, index=[50_000])}, "complete row"),
    ],
)
def test_invalid_dr_arguments_raise(kwargs, match):
    df = simulate_dip(5, n=300)
    with pytest.raises(ValueError, match=match):
        callaway_santanna(df, **kwargs)


# --------------------------------------------------------------------------------------
# what a reader sees: the sentence and the figure follow the numbers


def _robust_table(dr6: float, un6: float, un_pre: float) -> pd.DataFrame:
    rows = []
    for est, comp, v6, pre in (
        ("dr", "never_visited", dr6, 0.2),
        ("unconditional", "not_yet_visited", un6, un_pre),
    ):
        for r, v in ((-2, pre), (-1, 0.0), (6, v6)):
            rows.append((est, comp, r, v, np.nan if r == -1 else 0.5))
    d = pd.DataFrame(rows, columns=["estimator", "comparison", "rel_time", "estimate", "std_error"])
    d.insert(0, "group", "all")
    return d.assign(ci_lower=d["estimate"] - 1, ci_upper=d["estimate"] + 1)


MATCHED = pd.DataFrame(
    {"group": ["all"], "rel_time": [6], "estimate": [13.8], "std_error": [0.5]}
).assign(ci_lower=12.8, ci_upper=14.8)


def test_describe_robust_says_why_the_estimators_differ():
    from leapresearch.publish.narrative import describe_robust

    agree = describe_robust(_robust_table(13.5, 22.6, -11.3), MATCHED)
    assert "gives +13.5 pp" in agree and "against +13.8 pp" in agree
    assert "The difference, -0.3 pp, is within sampling error" in agree
    # the unconditional estimate is far above, and its pre-visit rows show the dip
    assert "gives +22.6 pp" in agree and "larger than sampling error" in agree
    assert "11.3 pp below its comparison students 2 months before" in agree
    assert "rebound" in agree
    # contradicting numbers: the doubly-robust estimate departs from the matched one and
    # the unconditional one agrees with it, with no pre-visit dip
    other = describe_robust(_robust_table(18.0, 18.3, 0.1), MATCHED)
    assert "The difference from the matched estimate, +4.2 pp, is larger than sampling" in other
    assert "pre-visit rows are all within sampling error of zero" in other
    assert "+0.3 pp, is within sampling error" in other
    assert "rebound" not in other
    # a pre-visit rise rather than a dip
    rise = describe_robust(_robust_table(13.5, 4.0, 6.0), MATCHED)
    assert "6.0 pp above its comparison students" in rise and "reversal" in rise
    # tables written before the row sets existed still read
    old = _robust_table(13.5, 22.6, -11.3).query("estimator == 'unconditional'")
    assert "gives +22.6 pp" in describe_robust(old.drop(columns=["estimator"]), MATCHED)


def test_designs_figure_shows_each_robust_row_set():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leapresearch.publish import plots

    naive = MATCHED[["group", "rel_time", "estimate"]].assign(estimate=18.0)
    tidy = plots.tidy_designs(naive, MATCHED, _robust_table(13.5, 22.6, -11.3))
    designs = list(dict.fromkeys(tidy["design"]))
    assert designs == [
        "Naive before/after",
        "Matched comparison (main)",
        "Callaway-Sant'Anna doubly robust (never visited, same pre-visit attendance)",
        "Callaway-Sant'Anna unconditional (visited later; intervals in the table)",
    ]
    unc = tidy.loc[tidy["design"] == designs[3]]
    assert unc["ci_lower"].isna().all() and unc["estimate"].notna().all()
    fig, ax = plt.subplots()
    plots.plot_designs(tidy, ax=ax)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == designs
    assert legend.get_title().get_text() == "Design (comparison students)"
    plt.close(fig)


def test_a_cell_whose_comparisons_are_all_trimmed_has_no_estimate():
    # four treated, one comparison, nothing to tell them apart: every score is 0.8
    d = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    cell = dr_did_panel(np.arange(5.0), d, np.ones((5, 1)), trim=0.75)
    assert np.isnan(cell.att) and cell.n_trimmed == 1
    kept = dr_did_panel(np.arange(5.0), d, np.ones((5, 1)), trim=0.85)
    assert kept.att == pytest.approx(1.5 - 4.0) and kept.n_trimmed == 0


def _influence_by_matrices(dy, d, x, *, trim, ridge=0.0):
    """The influence function as the n-by-k linear representations write it (eq. 3.4).

    Sant'Anna and Zhao (2020): the OLS and logit linear representations formed row by
    row, then multiplied by the means M1, M2 and M3; the logit is the package's fit.
    """
    from leapresearch.estimation.drdid import PS_CAP, _standardise

    n = dy.size
    z = _standardise(x)
    beta, ps, _ = fit_logit(z, d, ridge=ridge, max_iter=200)
    ps = np.minimum(ps, PS_CAP)
    keep = (d == 1) | (ps < trim)
    ctrl = d == 0
    coef = np.linalg.lstsq(z[ctrl], dy[ctrl], rcond=None)[0]
    resid = dy - z @ coef
    w1, w0 = d, keep * ps * (1 - d) / (1 - ps)
    eta1 = (w1 * resid).mean() / w1.mean()
    eta0 = (w0 * resid).mean() / w0.mean()
    lin_ols = ((ctrl * resid)[:, None] * z) @ np.linalg.pinv(z[ctrl].T @ z[ctrl] / n)
    pen = np.full(z.shape[1], ridge)
    pen[0] = 0.0
    hess = (z * (ps * (1 - ps))[:, None]).T @ z / n + np.diag(pen)
    lin_ps = ((d - ps)[:, None] * z - pen * beta) @ np.linalg.pinv(hess)
    m1 = (w1[:, None] * z).mean(axis=0)
    m2 = ((w0 * (resid - eta0))[:, None] * z).mean(axis=0)
    m3 = (w0[:, None] * z).mean(axis=0)
    inf_treat = (w1 * (resid - eta1) - lin_ols @ m1) / w1.mean()
    inf_cont = (w0 * (resid - eta0) + lin_ps @ m2 - lin_ols @ m3) / w0.mean()
    return eta1 - eta0, inf_treat - inf_cont


@pytest.mark.parametrize("case", ["overlap", "trimmed", "separated"])
def test_the_influence_function_is_the_n_by_k_formula_applied_to_vectors(case):
    # dr_did_panel applies each linear representation to a k-vector instead of forming
    # it as an n-by-k matrix: the same influence function as the textbook form, in a
    # plain cell, one with trimmed comparisons and one whose logit needs the ridge
    from leapresearch.estimation.drdid import RIDGE

    rng = np.random.default_rng({"overlap": 11, "trimmed": 12, "separated": 13}[case])
    n = 3000
    x = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.2] + [0.0, 5.0, -1.0]
    slope = 4.0 if case == "trimmed" else 0.8
    d = (rng.random(n) < 1 / (1 + np.exp(-(slope * x[:, 0] - 1.5)))).astype(float)
    if case == "separated":
        # a covariate above 1 for exactly the treated: complete separation
        x = np.column_stack([x, d + 0.9 * rng.random(n)])
    dy = x[:, 0] - 0.3 * x[:, 1] + 2.0 * d + rng.normal(size=n)
    cell = dr_did_panel(dy, d, x, trim=0.95)
    assert cell.ridge == (case == "separated")
    assert (cell.n_trimmed > 0) == (case == "trimmed")
    att, influence = _influence_by_matrices(dy, d, x, trim=0.95, ridge=RIDGE if cell.ridge else 0.0)
    assert cell.att == pytest.approx(att, rel=1e-9)
    np.testing.assert_allclose(cell.influence, influence, rtol=1e-9, atol=1e-12)


def test_standardised_covariates_are_the_columns_scaled_to_mean_0_and_sd_1():
    # computed on the covariates as rows (numpy reduces a tall, narrow array slowly);
    # constant columns, whatever their level, are dropped
    from leapresearch.estimation.drdid import _standardise

    rng = np.random.default_rng(5)
    x = np.column_stack(
        [rng.normal(3.0, 2.0, 500), np.full(500, 7.5), rng.random(500), np.zeros(500)]
    )
    z = _standardise(x)
    expected = (x[:, [0, 2]] - x[:, [0, 2]].mean(axis=0)) / x[:, [0, 2]].std(axis=0)
    assert z.shape == (500, 3) and (z[:, 0] == 1.0).all()
    np.testing.assert_allclose(z[:, 1:], expected, rtol=1e-12, atol=1e-12)
    assert _standardise(np.zeros((4, 0))).shape == (4, 1)
