"""The restricted wild cluster bootstrap (Webb weights) of few-cluster joint tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from leapresearch.analysis.event_studies import pretrend_tests
from leapresearch.config import load_config
from leapresearch.estimation.event_study import clustered_wald, event_study
from leapresearch.estimation.multiple_testing import (
    INFERENCE_F,
    INFERENCE_WILD,
    cluster_influence_moments,
    joint_moments,
    subgroup_tests,
    wild_p_value,
    with_influence,
)
from leapresearch.estimation.wild_bootstrap import (
    WEBB,
    WildSettings,
    bootstrap_walds,
    moments_from_rows,
    webb_weights,
    wild_wald,
)
from tests.test_event_study import make_panel

WINDOW = (-3, 4)


def test_webb_weights_have_mean_zero_variance_one_and_six_points():
    assert WEBB.size == 6
    assert WEBB.mean() == pytest.approx(0.0, abs=1e-15)
    assert np.mean(WEBB**2) == pytest.approx(1.0, rel=1e-15)
    v = webb_weights(np.random.default_rng(0), 6000, 3)
    assert set(np.round(np.unique(v), 12)) == set(np.round(WEBB, 12))


def _partial_out(panel: pd.DataFrame, res) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent FWL: event dummies and outcome after explicit unit and cell dummies."""
    rel = panel["rel_time"].clip(*WINDOW).to_numpy()
    tr = panel["treated"].to_numpy() == 1
    terms = res.coefficients.index.to_numpy()
    x = np.column_stack([(tr & (rel == r)).astype(float) for r in terms])
    cell = panel["stack"].astype(str) + "_" + panel["time"].astype(str)
    d = pd.concat(
        [pd.get_dummies(panel["unit"], dtype=float), pd.get_dummies(cell, dtype=float)], axis=1
    ).to_numpy()
    w = panel["weight"].to_numpy(np.float64)
    sw = np.sqrt(w)[:, None]
    xy = np.column_stack([x, panel["attendance_pp"].to_numpy(np.float64)])
    coef = np.linalg.lstsq(d * sw, xy * sw, rcond=None)[0]
    resid = xy - d @ coef
    return resid[:, :-1], resid[:, -1], w


def _brute_force_wcr(x, y, w, cl, r, f, v):
    """W* by refitting the partialled regression on every bootstrap sample (row level)."""
    sw = np.sqrt(w)
    a_inv = np.linalg.inv((x * w[:, None]).T @ x)
    b = a_inv @ (x * w[:, None]).T @ y
    b_r = b - a_inv @ r.T @ np.linalg.solve(r @ a_inv @ r.T, r @ b)
    e_r = y - x @ b_r
    out = []
    for vb in v:
        ys = x @ b_r + vb[cl] * e_r
        bs = np.linalg.lstsq(x * sw[:, None], ys * sw, rcond=None)[0]
        es = ys - x @ bs
        sc = pd.DataFrame(x * (w * es)[:, None]).groupby(cl).sum().to_numpy()
        vs = f * a_inv @ sc.T @ sc @ a_inv
        out.append(float((r @ bs) @ np.linalg.solve(r @ vs @ r.T, r @ bs)))
    return np.array(out)


@pytest.mark.parametrize("seed", [3, 8])
def test_fast_wcr_matches_brute_force_refits_of_an_event_study(seed):
    """Cluster sums of the fit (12 schools) against refits with explicit fixed effects."""
    panel = make_panel(seed, treated_per_stack=6)
    res = event_study(panel, window=WINDOW, cluster="school")
    assert res.n_singletons == 0 and res.n_clusters == 12
    psi, mom = cluster_influence_moments(panel, res)
    x, y, w = _partial_out(panel, res)
    b = np.linalg.lstsq(x * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    np.testing.assert_allclose(b, res.coefficients.to_numpy(), atol=1e-8)
    cl = pd.Index(mom.labels).get_indexer(panel["school"].to_numpy())
    k = b.size
    s_ref, h_ref = moments_from_rows(x, y - x @ b, w, cl)
    np.testing.assert_allclose(mom.scores, s_ref, atol=1e-7)
    np.testing.assert_allclose(mom.hessians.reshape(-1, k), h_ref, atol=1e-8)
    pre = res.coefficients.index.to_numpy() < -1
    r = np.eye(k)[pre]
    v = webb_weights(np.random.default_rng(seed), 40, res.n_clusters)
    ours = bootstrap_walds(
        b,
        r,
        np.linalg.inv(mom.gram),
        mom.scores,
        mom.hessians.reshape(-1, k),
        np.full(k, np.sqrt(mom.factor)),
        v,
    )
    theirs = _brute_force_wcr(x, y, w, cl, r, res.ssc_factor, v)
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)


# wildboottest 0.3.2 (Alexander Fischer; pip, in a throwaway venv) on _reference_data(),
# columns x1 (constant), x2, x3:
#   wildboottest(sm.OLS(y, X), param=..., cluster=cl, B=99999, weights_type="webb",
#                impose_null=True, bootstrap_type="11", seed=1)
# (WCR, Webb weights, CR1 t statistic, symmetric two-sided p-value): its t and p.
WILDBOOTTEST = {1: (3.155177, 0.01784), 2: (-3.074544, 0.207752)}


def _reference_data():
    rng = np.random.default_rng(11)
    g = 7
    sizes = np.array([12, 20, 25, 30, 45, 60, 80])
    cl = np.repeat(np.arange(g), sizes)
    n = cl.size
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=g)[cl]])
    x[:, 1] += rng.normal(size=g)[cl]
    y = 0.3 * x[:, 1] + rng.normal(size=g)[cl] + rng.normal(size=n) * (1 + 0.5 * cl / g)
    return x, y, cl


def _wild_p(x, y, cl, r, *, draws, seed):
    w = np.ones(y.size)
    a_inv = np.linalg.inv(x.T @ x)
    b = a_inv @ x.T @ y
    s, h = moments_from_rows(x, y - x @ b, w, cl)
    g, (n, k) = cl.max() + 1, x.shape
    f = g / (g - 1) * (n - 1) / (n - k)
    v = f * a_inv @ s.T @ s @ a_inv
    wald = clustered_wald(r @ b, r @ v @ r.T, n_clusters=g)
    out = wild_wald(b, r, a_inv, s, h, np.full(k, np.sqrt(f)), wald=wald, draws=draws, seed=seed)
    return out["p_value"], wald, b, v


@pytest.mark.parametrize("column", [1, 2])
def test_a_one_restriction_wcr_p_value_matches_wildboottest(column):
    """Seven clusters; x3 varies only between clusters: F(1, 6) says p = 0.02, WCR 0.21."""
    x, y, cl = _reference_data()
    r = np.eye(3)[[column]]
    p, wald, b, _ = _wild_p(x, y, cl, r, draws=99999, seed=5)
    t_ref, p_ref = WILDBOOTTEST[column]
    assert np.sign(b[column]) * np.sqrt(wald) == pytest.approx(t_ref, abs=1e-6)
    se = np.sqrt(p_ref * (1 - p_ref) * 2 / 99999)  # two Monte Carlo estimates of one p
    assert abs(p - p_ref) < 4 * se


def test_p_value_is_the_same_under_relabelled_and_shuffled_clusters():
    x, y, cl = _reference_data()
    r = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    p0, *_ = _wild_p(x, y, cl, r, draws=999, seed=7)
    perm = np.random.default_rng(2).permutation(y.size)
    relabel = np.array([4, 6, 0, 1, 5, 3, 2])  # another spelling of the same clusters
    p1, *_ = _wild_p(x[perm], y[perm], relabel[cl[perm]], r, draws=999, seed=7)
    assert p1 == p0
    p2, *_ = _wild_p(x, y, cl, r, draws=999, seed=8)
    assert p2 != p0  # the seed does enter


def test_size_with_eight_clusters_cr1_over_rejects_and_the_wild_bootstrap_does_not():
    """600 null draws, 8 unequal clusters, 3 of them 'treated' (MacKinnon-Webb design).

    The binomial standard error of a 5% rejection rate over 600 draws is 0.9 points, so
    the test tells 5% from 15%.
    """
    g = 8
    sizes = np.array([10, 15, 20, 30, 40, 60, 90, 150])
    cl = np.repeat(np.arange(g), sizes)
    n = cl.size
    rng = np.random.default_rng(5)
    r = np.zeros((2, 4))
    r[0, 2] = r[1, 3] = 1.0
    rej_f, rej_w = [], []
    for sim in range(600):
        d = (rng.permutation(g) < 3)[cl].astype(float)
        t = rng.normal(size=n)
        x = np.column_stack([np.ones(n), t, d, d * t])
        y = 0.5 * t + rng.normal(size=g)[cl] + rng.normal(size=n) * (1 + d)
        p, wald, *_ = _wild_p(x, y, cl, r, draws=199, seed=sim)
        rej_f.append(stats.f.sf(wald / 2, 2, g - 1) < 0.05)
        rej_w.append(p <= 0.05)
    size_f, size_w = float(np.mean(rej_f)), float(np.mean(rej_w))
    assert size_f > 0.15  # CR1 with F(q, G - 1)
    assert 0.02 < size_w < 0.10  # the restricted wild cluster bootstrap


def test_size_of_the_pre_trend_test_of_an_event_study_with_eight_schools():
    """300 null panels (two-way effects, no pre-trend), errors clustered by 8 schools.

    The bootstrap leaves the stack-by-month effects un-re-estimated (module Notes); its
    size is measured here on the estimator itself: F(3, 7) rejects about 19%, the wild
    cluster bootstrap about 5% (binomial standard error 1.3 points).
    """
    settings = WildSettings(draws=199, seed=1)
    rej_f, rej_w = [], []
    for sim in range(300):
        panel = make_panel(1000 + sim, treated_per_stack=6)
        panel["school"] = panel["school"] % 8
        res = event_study(panel, window=(-4, 4), cluster="school")
        fit = with_influence(res, *cluster_influence_moments(panel, res))
        test = res.pretrend_test()
        pre = res.coefficients.index.to_numpy() < res.reference
        joint = joint_moments({"a": fit}, ["a"])
        p = wild_p_value(
            joint, np.eye(pre.size)[pre], wald=test.wald, settings=settings, description=str(sim)
        )
        rej_f.append(test.p_value < 0.05)
        rej_w.append(p <= 0.05)
    assert np.mean(rej_f) > 0.13
    assert 0.02 < np.mean(rej_w) < 0.085


def _school_fit(seed: int, **kw):
    panel = make_panel(seed, **kw)
    res = event_study(panel, window=WINDOW, cluster="school")
    return with_influence(res, *cluster_influence_moments(panel, res))


def test_pretrend_tests_of_few_cluster_groups_use_the_wild_bootstrap():
    config = load_config("demo")
    fits = {"g:a": _school_fit(3, treated_per_stack=6)}
    table = pretrend_tests(fits, config).set_index("group")
    row = table.loc["g:a"]
    assert row["inference"] == INFERENCE_WILD and row["clusters"] == 12
    assert row["not_testable"] == ""
    assert 0 < row["p_value"] <= 1
    plain = pretrend_tests(fits).set_index("group").loc["g:a"]
    assert plain["inference"] == INFERENCE_F
    assert plain["statistic"] == row["statistic"]
    assert plain["p_value"] == pytest.approx(fits["g:a"].pretrend_test().p_value)
    # threshold 0: never bootstrap
    no_wild = config.model_copy(
        update={"inference": config.inference.model_copy(update={"few_clusters": 0})}
    )
    assert pretrend_tests(fits, no_wild)["inference"].iloc[0] == INFERENCE_F


def test_a_test_with_more_terms_than_clusters_is_not_testable_with_the_reason():
    panel = make_panel(4, treated_per_stack=6)
    panel["school"] = panel["school"] % 3  # three clusters, two pre-period terms: fine
    res = event_study(panel, window=(-6, 4), cluster="school")  # five pre-period terms
    fit = with_influence(res, *cluster_influence_moments(panel, res))
    row = pretrend_tests({"g:a": fit}, load_config("demo")).iloc[0]
    assert np.isnan(row["statistic"]) and np.isnan(row["p_value"])
    assert row["inference"] == ""
    assert row["not_testable"].startswith("not testable:") and "3 clusters" in row["not_testable"]


def test_subgroup_difference_tests_with_few_clusters_use_the_wild_bootstrap():
    fits = {"g:a": _school_fit(3, treated_per_stack=6), "g:b": _school_fit(5, treated_per_stack=6)}
    settings = WildSettings(few_clusters=30, draws=999, seed=1)
    tests = subgroup_tests(fits, families=["g"], rel_times=[1, 2], settings=settings)
    assert (tests["inference"] == INFERENCE_WILD).all()
    assert (tests["clusters"] == 12).all()
    plain = subgroup_tests(fits, families=["g"], rel_times=[1, 2])
    assert (plain["inference"] == INFERENCE_F).all()
    np.testing.assert_array_equal(tests["statistic"], plain["statistic"])
    assert not np.allclose(tests["p_value"], plain["p_value"])
    again = subgroup_tests(fits, families=["g"], rel_times=[1, 2], settings=settings)
    pd.testing.assert_frame_equal(tests, again)
    # one family, two months: Holm over both tests
    ref = multipletests(tests["p_value"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(tests["p_value_holm_family"], ref, rtol=1e-12)
