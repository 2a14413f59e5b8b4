"""Subgroup tests: joint covariance across groups, Wald tests, Holm, empirical Bayes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.multiple_testing import (
    INFERENCE_F,
    INFERENCE_WILD,
    adjust_across_months,
    adjust_within_families,
    cluster_influence,
    empirical_bayes,
    equality_contrasts,
    holm,
    joint_estimates,
    subgroup_tests,
    wald_test,
    with_influence,
)
from tests.test_event_study import make_panel

WINDOW = (-3, 4)


def two_groups(seed: int) -> dict[str, pd.DataFrame]:
    """Visited students split by parity; both groups share every comparison unit."""
    df = make_panel(seed, treated_per_stack=8)
    tr = df["treated"] == 1
    return {
        "g:even": df.loc[~tr | (df["student"] % 2 == 0)].reset_index(drop=True),
        "g:odd": df.loc[~tr | (df["student"] % 2 == 1)].reset_index(drop=True),
    }


def fits_of(groups: dict[str, pd.DataFrame]) -> dict:
    out = {}
    for label, d in groups.items():
        res = event_study(d, window=WINDOW)
        out[label] = with_influence(res, cluster_influence(d, res))
    return out


def stacked_statsmodels(groups: dict[str, pd.DataFrame]):
    """One WLS on the groups' rows stacked, every regressor interacted with the group."""
    blocks, ev_names = [], []
    for gi, (_, d) in enumerate(groups.items()):
        rel = d["rel_time"].clip(*WINDOW)
        tr = d["treated"].to_numpy() == 1
        terms = [r for r in range(WINDOW[0], WINDOW[1] + 1) if r != -1]
        ev = pd.DataFrame({f"{gi}:{r}": (tr & (rel == r)).astype(float) for r in terms})
        ev_names += list(ev.columns)
        unit = pd.get_dummies(d["unit"].astype(str).radd(f"{gi}u"), dtype=float)
        st = d["stack"].astype(str) + "_" + d["time"].astype(str)
        cell = pd.get_dummies(st.radd(f"{gi}c"), dtype=float)
        first = st.groupby(d["stack"]).min().radd(f"{gi}c")
        cell = cell.drop(columns=first.to_numpy())
        blocks.append(
            pd.concat([ev, unit, cell], axis=1).assign(
                _y=d["attendance_pp"].to_numpy(),
                _w=d["weight"].to_numpy(),
                _c=d["student"].to_numpy(),
            )
        )
    data = pd.concat(blocks, ignore_index=True).fillna(0.0)
    x = data.drop(columns=["_y", "_w", "_c"])
    x = x[ev_names + [c for c in x.columns if c not in ev_names]]
    fit = sm.WLS(data["_y"], x, weights=data["_w"]).fit(
        cov_type="cluster", cov_kwds={"groups": data["_c"].astype(int), "use_correction": False}
    )
    return fit, ev_names


@pytest.mark.parametrize("seed", [1, 4])
def test_joint_covariance_and_wald_test_match_statsmodels_stacked_regression(seed):
    groups = two_groups(seed)
    fits = fits_of(groups)
    fit, names = stacked_statsmodels(groups)
    k = len(names) // 2
    b = np.r_[fits["g:even"].coefficients.to_numpy(), fits["g:odd"].coefficients.to_numpy()]
    np.testing.assert_allclose(fit.params[names].to_numpy(), b, atol=1e-7)
    # uncorrected joint covariance: influences without each group's small-sample factor
    raw = [fits[g].influence / np.sqrt(fits[g].ssc_factor) for g in ("g:even", "g:odd")]
    psi = pd.concat(raw, axis=1, join="outer").fillna(0.0).to_numpy()
    sm_cov = fit.cov_params().loc[names, names].to_numpy()
    np.testing.assert_allclose(psi.T @ psi, sm_cov, atol=1e-8)
    cross = sm_cov[:k, k:]
    assert np.abs(cross).max() > 1e-3  # the groups share comparison students: not independent
    # Wald test of equality at month 2, chi-square form, against statsmodels' wald_test
    j = names.index("0:2")
    r = np.zeros((1, len(names)))
    r[0, j], r[0, j + k] = 1.0, -1.0
    ours = wald_test(b, psi.T @ psi, r, df_denom=10)
    r_all = np.zeros((1, len(fit.params)))
    r_all[0, : len(names)] = r[0]
    theirs = fit.wald_test(r_all, use_f=False, scalar=True)
    np.testing.assert_allclose(ours["wald"], float(theirs.statistic), rtol=1e-7)


def test_influence_reproduces_each_groups_covariance_and_family_test_uses_it():
    fits = fits_of(two_groups(2))
    for fit in fits.values():
        np.testing.assert_allclose(fit.influence.T @ fit.influence, fit.cov, rtol=1e-8, atol=1e-10)
    b, cov, n_clusters = joint_estimates(fits, ["g:even", "g:odd"], 3)
    np.testing.assert_allclose(np.diag(cov), [fits[g].cov.loc[3, 3] for g in fits], rtol=1e-8)
    tests = subgroup_tests(fits, families=["g"], rel_times=[3])
    row = tests.iloc[0]
    assert row["contrast"] == "all equal" and row["df"] == 1
    assert row["df_denom"] == n_clusters - 1
    assert row["estimate"] == pytest.approx(b[0] - b[1])
    # ignoring the shared comparisons (a diagonal covariance) gives a different statistic
    naive = wald_test(b, np.diag(np.diag(cov)), equality_contrasts(2), df_denom=n_clusters - 1)
    assert abs(naive["statistic"] - row["statistic"]) > 1e-3


def test_cluster_influence_refuses_rows_of_another_fit():
    groups = two_groups(1)
    res = event_study(groups["g:even"], window=WINDOW)
    with pytest.raises(RuntimeError, match="not those of the fit"):
        cluster_influence(groups["g:odd"], res)


EQUALITY_DRAWS = 400


def test_equality_test_has_size_under_the_null():
    """Both halves share one true effect: the equality test rejects 5% of the draws.

    400 panels of four stacks of 15 visited students (two comparison units each), split
    by parity into two groups that share every comparison student, so the two estimates
    are correlated and the test needs their joint covariance. Binomial bounds: a 5% test
    rejects in ``[0.02, 0.09]`` of 400 draws with probability 0.998 (sd 0.011); a 15% test
    (sd 0.018) falls to 0.09 with probability 4e-4; p-values below 0.5 in 40-60% of the
    draws (sd 0.025 at one half).
    """
    p = []
    for seed in range(EQUALITY_DRAWS):
        df = make_panel(50_000 + seed, n_stacks=4, treated_per_stack=15, k=2)
        tr = df["treated"] == 1
        groups = {
            "g:even": df.loc[~tr | (df["student"] % 2 == 0)].reset_index(drop=True),
            "g:odd": df.loc[~tr | (df["student"] % 2 == 1)].reset_index(drop=True),
        }
        p.append(subgroup_tests(fits_of(groups), families=["g"], rel_times=[2])["p_value"].iloc[0])
    p = np.asarray(p)
    assert 0.02 <= np.mean(p < 0.05) <= 0.09, np.mean(p < 0.05)
    assert 0.4 <= np.mean(p < 0.5) <= 0.6, np.mean(p < 0.5)


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.2, 12)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    with_nan = np.r_[p[:3], np.nan]
    out = holm(with_nan)
    assert np.isnan(out[-1])
    np.testing.assert_allclose(out[:3], multipletests(p[:3], method="holm")[1])


def test_adjustment_is_within_family_and_month():
    table = pd.DataFrame(
        {
            "group": ["all", "d:a", "d:b", "d:a", "d:b", "v:x", "v:y"],
            "rel_time": [1, 1, 1, 3, 3, 1, 1],
            "p_value": [0.01, 0.01, 0.04, 0.02, 0.5, 0.03, 0.04],
        }
    )
    adj = adjust_within_families(table).to_numpy()
    np.testing.assert_allclose(adj, [0.01, 0.02, 0.04, 0.04, 0.5, 0.06, 0.06])


def test_unpublished_estimates_do_not_enter_the_family():
    table = pd.DataFrame(
        {
            "group": ["d:a", "d:b", "d:c"],
            "rel_time": [1, 1, 1],
            "p_value": [0.01, 0.04, 0.001],
            "n_treated": [50, 40, 5],  # d:c is suppressed (fewer than min_treated)
        }
    )
    adj = adjust_within_families(table, min_treated=20).to_numpy()
    np.testing.assert_allclose(adj[:2], [0.02, 0.04])
    assert np.isnan(adj[2])
    # without the threshold the third test counts and moves the others
    np.testing.assert_allclose(adjust_within_families(table).to_numpy(), [0.02, 0.04, 0.003])


def test_empirical_bayes_shrinks_noisy_estimates_towards_the_mean():
    b = np.array([10.0, 14.0, 30.0, -2.0])
    se = np.array([1.0, 1.0, 8.0, 8.0])
    eb = empirical_bayes(b, se)
    # hand check of the DerSimonian-Laird moment estimate
    w = 1 / se**2
    mu0 = np.sum(w * b) / np.sum(w)
    q = np.sum(w * (b - mu0) ** 2)
    tau2 = (q - 3) / (np.sum(w) - np.sum(w**2) / np.sum(w))
    assert eb["tau2"] == pytest.approx(tau2)
    moved = np.abs(eb["shrunken"] - b)
    assert moved[2] > moved[0] and moved[3] > moved[1]  # noisier estimates move further
    assert np.all(eb["posterior_sd"] < se)
    flat = empirical_bayes(np.array([5.0, 5.1, 4.9]), np.array([2.0, 2.0, 2.0]))
    assert flat["tau2"] == 0.0
    np.testing.assert_allclose(flat["shrunken"], flat["mu"])


def published_table() -> pd.DataFrame:
    rows = []
    for g, est, se in [
        ("district:A", 10.0, 1.0),
        ("district:B", 14.0, 1.0),
        ("district:C", 30.0, 8.0),
        ("district:D", np.nan, np.nan),  # suppressed
        ("grade_band:PK-5", 9.0, 1.0),
        ("grade_band:6-12", 15.0, 1.0),
    ]:
        rows.append(
            {
                "group": g,
                "rel_time": 9,
                "estimate": est,
                "std_error": se,
                "ci_lower": est - 2 * se,
                "ci_upper": est + 2 * se,
            }
        )
    return pd.DataFrame(rows)


def test_forest_tidy_leaves_out_suppressed_and_pooled_groups_and_shrinks():
    from leapresearch.publish.plots import forest_figure, tidy_forest, tidy_forest_families

    tab = published_table()
    tidy = tidy_forest(tab, families=["district"], rel_time=9, suppressed=False, shrink=True)
    assert set(tidy["level"]) == {"A", "B", "C"}
    assert list(tidy["kind"].value_counts().sort_index()) == [3, 3]
    raw = tidy[tidy["kind"] == "raw"].set_index("level")["estimate"]
    shr = tidy[tidy["kind"] == "shrunken"].set_index("level")["estimate"]
    assert abs(shr["C"] - raw["C"]) > abs(shr["A"] - raw["A"])  # the noisy one moves most
    grades = tidy_forest(tab, families=["grade_band"], rel_time=9, pooled=False)
    assert set(grades["level"]) == {"PK-5"}  # the pooled 6-12 is not a level of its own
    fig = forest_figure(tab, families=["district", "grade_band"], rel_time=9)
    assert len(fig.axes) == 2
    # nothing published at a month: one panel that says so (a notebook of tiny data)
    assert tidy_forest_families(tab, families=["district"], rel_time=99) == []
    empty = forest_figure(tab, families=["district"], rel_time=99)
    assert [t.get_text() for t in empty.axes[0].texts] == [
        "No published subgroup estimate at month 99"
    ]


def test_long_term_plot_of_nothing_published_says_so():
    import matplotlib.pyplot as plt

    from leapresearch.publish.plots import plot_long_term

    tidy = pd.DataFrame(columns=["outcome", "cohort", "years_after", "estimate", "ci_lower",
                                 "ci_upper"])  # fmt: skip
    ax = plot_long_term(tidy, ax=plt.subplots()[1], outcome="attendance_rate")
    assert ax.texts[0].get_text().startswith("No published long-term effect on attendance")
    plt.close("all")


def test_heterogeneity_narrative_reports_tests_not_extremes():
    from leapresearch.publish.narrative import describe_heterogeneity, describe_shrinkage

    tests = pd.DataFrame(
        {
            "family": ["district", "grade_band"],
            "rel_time": [9, 9],
            "contrast": ["all equal", "PK-5 vs 6-12"],
            "statistic": [3.3, 9.6],
            "df": [12, 1],
            "df_denom": [2718, 2826],
            "p_value": [0.2, 0.0019],
            "estimate": [np.nan, -7.19],
        }
    )
    text = describe_heterogeneity(tests, rel_time=9)
    assert (
        "district: no evidence that the effects differ (F(12, 2718) = 3.30, p = 0.200; "
        "Holm over the family's 1 test p = 0.200)"
    ) in text
    assert "PK-5 vs 6-12: the effects differ (difference -7.2 pp" in text
    shrink = describe_shrinkage(published_table(), family="district", rel_time=9)
    assert "3 published district estimates" in shrink
    assert "district:C" not in shrink and " C " not in shrink


def _family_months(p_lang, p_visits, *, inference=INFERENCE_F):
    months = [1, 3, 6, 9]
    rows = []
    for family, ps in (("home_language", p_lang), ("visits", p_visits)):
        for m, p in zip(months, ps, strict=True):
            rows.append(
                {
                    "family": family,
                    "rel_time": m,
                    "contrast": "all equal",
                    "statistic": 2.0,
                    "df": 1,
                    "df_denom": 279,
                    "p_value": p,
                    "inference": inference if np.isfinite(p) else "",
                    "estimate": 4.0,
                }
            )
    tests = pd.DataFrame(rows)
    tests["p_value_holm_family"] = adjust_across_months(tests)
    return tests


def test_holm_across_a_familys_months_matches_statsmodels_and_skips_untestable_rows():
    tests = _family_months([0.377, 0.647, 0.205, 0.029], [0.001, np.nan, 0.2, 0.04])
    lang = tests.loc[tests["family"] == "home_language", "p_value_holm_family"].to_numpy()
    ref = multipletests([0.377, 0.647, 0.205, 0.029], method="holm")[1]
    np.testing.assert_allclose(lang, ref, rtol=1e-12)
    assert lang[-1] == pytest.approx(0.116)
    vis = tests.loc[tests["family"] == "visits", "p_value_holm_family"].to_numpy()
    assert np.isnan(vis[1])  # not testable: no p-value, not counted
    np.testing.assert_allclose(
        vis[[0, 2, 3]], multipletests([0.001, 0.2, 0.04], method="holm")[1], rtol=1e-12
    )


def test_narrative_says_differ_only_when_the_family_adjusted_test_rejects():
    from leapresearch.publish.narrative import describe_heterogeneity

    tests = _family_months([0.377, 0.647, 0.205, 0.029], [0.6, 0.7, 0.8, 0.001])
    text = describe_heterogeneity(tests, rel_time=9)
    # p = 0.029 at month 9 alone, 0.116 after Holm over the four months: no difference
    assert "home language: no evidence that the effects differ" in text
    assert "p = 0.029; Holm over the family's 4 tests p = 0.116" in text
    assert "visits: the effects differ across groups" in text
    assert "Holm over the family's 4 tests p = 0.004" in text
    # an older table without the column: the same adjustment, computed from its rows
    assert describe_heterogeneity(tests.drop(columns="p_value_holm_family"), rel_time=9) == text
    wild = describe_heterogeneity(
        _family_months([0.5, 0.5, 0.5, 0.01], [0.6, 0.7, 0.8, 0.9], inference=INFERENCE_WILD),
        rel_time=9,
    )
    assert "wild cluster bootstrap p = 0.010" in wild
    assert "home language: the effects differ across groups" in wild  # 4 x 0.01 < 0.05
    assert "Holm over the family's 4 tests p = 0.040" in wild
