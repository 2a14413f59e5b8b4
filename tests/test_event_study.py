"""Tests of the stacked event study and the fixed-effect absorption behind it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from leapresearch.estimation.event_study import EventStudyResult, WaldTest, event_study
from leapresearch.estimation.fixed_effects import (
    TwoWayProjector,
    combine_codes,
    demean,
    factorize,
    is_nested,
    singleton_mask,
)

# --------------------------------------------------------------------------------------
# simulated stacked matched panels
# --------------------------------------------------------------------------------------


def month_index(i: np.ndarray | int) -> np.ndarray:
    """School-month index (10 * start_year + position) of the i-th month from Sep 2020."""
    i = np.asarray(i)
    return 10 * (2020 + i // 10) + i % 10


def true_effect(rel: np.ndarray) -> np.ndarray:
    """Dynamic effect in percentage points: zero before the visit, rising then flat."""
    rel = np.asarray(rel, dtype=float)
    return np.where(rel >= 0, 1.5 + 0.25 * np.minimum(rel, 6), 0.0)


def make_panel(
    seed: int,
    *,
    n_stacks: int = 3,
    treated_per_stack: int = 5,
    k: int = 3,
    n_months: int = 14,
    missing: float = 0.15,
    pretrend: float = 0.0,
    noise: float = 3.0,
    heterogeneity: float = 0.5,
    school_moves: bool = False,
) -> pd.DataFrame:
    """A stacked matched panel like the lead's builder produces.

    Each stack holds ``treated_per_stack`` visited students and ``k`` comparison units
    per treated student; comparison students are drawn from a shared pool, so one
    comparison student appears in several stacks (same cluster). Rows are missing at
    random; the outcome has student, unit, stack-by-month and treated-specific
    (heterogeneous) dynamic effects plus serially correlated noise.
    """
    rng = np.random.default_rng(seed)
    event_pos = np.linspace(4, n_months - 5, n_stacks).round().astype(int)
    n_tr = n_stacks * treated_per_stack
    n_units = n_tr * (1 + k)
    unit_stack = np.repeat(np.arange(n_stacks), treated_per_stack * (1 + k))
    treated_u = np.tile(np.r_[1, np.zeros(k, dtype=int)], n_tr)
    pool = max(k * treated_per_stack, int(1.5 * k * treated_per_stack))
    student_u = np.empty(n_units, dtype=np.int64)
    student_u[treated_u == 1] = np.arange(n_tr)
    for s in range(n_stacks):  # comparison students: unique within a stack, shared across
        idx = np.flatnonzero((unit_stack == s) & (treated_u == 0))
        student_u[idx] = 1000 + rng.choice(pool, idx.size, replace=False)
    weight_u = np.where(treated_u == 1, 1.0, rng.choice([1 / 3, 0.5, 2 / 3, 1.0, 4 / 3], n_units))
    school_of_student = rng.integers(0, 12, 2000)
    hetero_u = 1 + heterogeneity * rng.standard_normal(n_units)

    unit = np.repeat(np.arange(n_units), n_months)
    pos = np.tile(np.arange(n_months), n_units)
    stack_pos = event_pos[unit_stack[unit]]
    rel = pos - stack_pos
    tr = treated_u[unit]
    student = student_u[unit]
    stud_eff = rng.normal(0, 4, 2000)[student]
    unit_eff = rng.normal(0, 2, n_units)[unit]
    st_eff = rng.normal(0, 2, (n_stacks, n_months))[unit_stack[unit], pos]
    ar = np.zeros(unit.size)
    shocks = rng.normal(0, noise, unit.size)
    ar[pos == 0] = shocks[pos == 0]
    for p in range(1, n_months):  # loop over months (14), vectorised over units
        ar[pos == p] = 0.5 * ar[pos == p - 1] + shocks[pos == p]
    effect = tr * true_effect(rel) * hetero_u[unit]
    trend = tr * pretrend * np.where(rel < 0, rel + 1, 0)  # drifts towards 0 before visit
    y = 90 + stud_eff + unit_eff + st_eff + effect + trend + ar
    school = school_of_student[student]
    if school_moves:  # some students change school mid-panel
        moves = rng.random(unit.size) < 0.1
        school = np.where(moves & (pos > n_months // 2), (school + 1) % 12, school)
    df = pd.DataFrame(
        {
            "unit": unit.astype(np.int64) + 500,
            "stack": month_index(stack_pos).astype(np.int64),
            "time": month_index(pos).astype(np.int64),
            "rel_time": rel.astype(np.int64),
            "treated": tr.astype(np.int8),
            "weight": weight_u[unit],
            "student": student.astype(np.int64),
            "school": school.astype(np.int64),
            "attendance_pp": y,
        }
    )
    keep = rng.random(len(df)) > missing
    keep |= (df["rel_time"] == -1).to_numpy()  # keep the reference month
    return df.loc[keep].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# independent route: dummy-variable WLS with statsmodels
# --------------------------------------------------------------------------------------


def dummy_wls(
    df: pd.DataFrame,
    *,
    window: tuple[int, int] | None,
    reference: int,
    cluster: str,
    weight: str | None,
) -> tuple[pd.Series, pd.Series]:
    """Coefficients and CRV1 standard errors from explicit dummies (statsmodels)."""
    rel = df["rel_time"] if window is None else df["rel_time"].clip(*window)
    tr = df["treated"].to_numpy() == 1
    terms = sorted(set(rel[tr]) - {reference})
    ev = np.column_stack([(tr & (rel == r)).to_numpy() for r in terms]).astype(float)
    unit_d = pd.get_dummies(df["unit"], dtype=float).to_numpy()
    st = df["stack"].astype(str) + "_" + df["time"].astype(str)
    st_d = pd.get_dummies(st, dtype=float)
    # drop one stack-month dummy per stack: the unit dummies already span each stack
    first = st.groupby(df["stack"]).min()
    st_d = st_d.drop(columns=first.to_numpy())
    x = np.column_stack([ev, unit_d, st_d.to_numpy()])
    assert np.linalg.matrix_rank(x) == x.shape[1]
    w = np.ones(len(df)) if weight is None else df[weight].to_numpy()
    groups = pd.factorize(df[cluster])[0]
    fit = sm.WLS(df["attendance_pp"].to_numpy(), x, weights=w).fit(
        cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False}
    )
    # Small-sample correction, written out (pyfixest / fixest default CRV1):
    #   V = G/(G-1) * (N-1)/(N-K) * V0,
    #   K = k_event + sum(FE levels) - (n_FE_sets - 1), where a FE set nested in the
    #       cluster (each of its levels inside one cluster) counts as 1 parameter.
    n_obs = len(df)
    n_clusters = groups.max() + 1
    n_unit, n_st = df["unit"].nunique(), st.nunique()
    unit_nested = bool((df.groupby("unit")[cluster].nunique() == 1).all())
    st_nested = bool((df.groupby(st)[cluster].nunique() == 1).all())
    k_fe = (1 if unit_nested else n_unit) + (1 if st_nested else n_st) - 1
    big_k = len(terms) + k_fe
    factor = n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - big_k)
    cov = factor * fit.cov_params()[: len(terms), : len(terms)]
    idx = pd.Index(terms, name="rel_time")
    return pd.Series(fit.params[: len(terms)], index=idx), pd.Series(
        np.sqrt(np.diag(cov)), index=idx
    )


@pytest.mark.parametrize(
    ("seed", "window", "cluster", "weight", "moves"),
    [
        (1, (-4, 4), "student", "weight", False),
        (2, None, "student", "weight", False),
        (3, (-3, 5), "school", "weight", False),
        (4, (-4, 4), "school", "weight", True),
        (5, (-4, 4), "student", None, False),
    ],
)
def test_two_routes_match_dummy_variable_wls(seed, window, cluster, weight, moves):
    df = make_panel(seed, school_moves=moves)
    res = event_study(df, window=window, cluster=cluster, weight=weight)
    coef, se = dummy_wls(df, window=window, reference=-1, cluster=cluster, weight=weight)
    assert res.n_singletons == 0
    assert list(res.coefficients.index) == list(coef.index)
    np.testing.assert_allclose(res.coefficients.to_numpy(), coef.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.std_errors.to_numpy(), se.to_numpy(), rtol=0, atol=1e-6)
    assert res.nobs == len(df)
    assert res.n_clusters == df[cluster].nunique()


def test_recovers_known_effect_with_flat_pretrends():
    df = make_panel(12, n_stacks=6, treated_per_stack=80, n_months=30, missing=0.1, noise=4.0)
    res = event_study(df, window=(-8, 10))
    tab = res.table().set_index("rel_time").drop(index=-1)
    truth = true_effect(tab.index.to_numpy())
    z = (tab["estimate"] - truth) / tab["std_error"]
    assert np.all(np.abs(z) < 3), z[np.abs(z) >= 3]
    post = tab.index >= 0
    assert (tab.loc[post, "estimate"] > 0.5).all()  # clearly positive effects
    pre = res.pretrend_test()
    assert pre.p_value > 0.01
    assert pre.terms == tuple(range(-8, -1))


NULL_DRAWS = 500
"""Simulated panels for the size and coverage tests (about 15 ms each).

Binomial bounds with ``n = 500`` independent draws: the share of 95% intervals that cover
the truth has a standard deviation of ``sqrt(.95 * .05 / 500) = 0.0097`` if the level is
right, so it lies in ``[0.925, 0.975]`` with probability 0.99; a 90% interval (sd 0.0134)
reaches 0.925 with probability 0.03. The rejection rate of a 5% test (sd 0.0097) stays
within ``[0.02, 0.09]`` with probability 0.999; a 15% test (sd 0.016) falls to 0.09 with
probability 1e-4, and a 10% test (sd 0.0134) with probability 0.23.
"""


@pytest.fixture(scope="module")
def null_draws() -> pd.DataFrame:
    """Pre-trend p-value (true null) and the e = 2 interval of ``NULL_DRAWS`` panels.

    Six stacks of ten visited students with two comparison units each (about 90
    student clusters, 60 of them visited), AR(1) noise within unit, comparison students
    shared across stacks, heterogeneous effects, 15% of the rows missing.
    """
    rows = []
    for s in range(NULL_DRAWS):
        df = make_panel(10_000 + s, n_stacks=6, treated_per_stack=10, k=2)
        res = event_study(df, window=(-4, 4))
        lo, hi = res.table().set_index("rel_time").loc[2, ["ci_lower", "ci_upper"]]
        rows.append((res.pretrend_test().p_value, lo, hi))
    return pd.DataFrame(rows, columns=["p_pretrend", "ci_lower", "ci_upper"])


def test_pretrend_test_has_size(null_draws):
    """The joint F test of the pre-period terms rejects 5% of true nulls, not 10 or 15%."""
    size = float(np.mean(null_draws["p_pretrend"] < 0.05))
    assert 0.02 <= size <= 0.09, size
    # p-values are spread out, not piled at 0 or 1
    assert 0.4 <= float(np.mean(null_draws["p_pretrend"] < 0.5)) <= 0.6


def test_confidence_intervals_cover_truth(null_draws):
    """95% intervals of the e = 2 effect (truth 2.0 pp) cover it in 92.5-97.5% of draws."""
    truth = float(true_effect(2))
    covered = (null_draws["ci_lower"] <= truth) & (truth <= null_draws["ci_upper"])
    assert 0.925 <= float(covered.mean()) <= 0.975, covered.mean()


def test_pretrend_test_rejects_injected_pretrend():
    res = event_study(make_panel(7, treated_per_stack=10, pretrend=1.5), window=(-4, 4))
    test = res.pretrend_test()
    assert isinstance(test, WaldTest)
    assert test.p_value < 1e-3
    assert test.df == 3 and test.df_denom == res.n_clusters - 1
    assert test.stat == pytest.approx(test.wald / test.df)


# --------------------------------------------------------------------------------------
# options, table, edge cases
# --------------------------------------------------------------------------------------


def test_end_points_are_binned():
    df = make_panel(21)
    res = event_study(df, window=(-3, 3))
    clipped = df.assign(rel_time=df["rel_time"].clip(-3, 3))
    res_none = event_study(clipped, window=None)
    assert list(res.coefficients.index) == [-3, -2, 0, 1, 2, 3]
    np.testing.assert_allclose(res.coefficients, res_none.coefficients, atol=1e-10)
    np.testing.assert_allclose(res.cov, res_none.cov, atol=1e-10)
    # the binned end point pools every treated row at or beyond it
    tr = df[df["treated"] == 1]
    assert res.n_treated_by_rel_time[3] == tr.loc[tr["rel_time"] >= 3, "student"].nunique()
    assert res.pretrend_test().terms == (-3, -2)


def test_table_has_reference_row_and_counts():
    df = make_panel(22)
    res = event_study(df, window=(-4, 4))
    tab = res.table(alpha=0.1)
    assert list(tab.columns) == [
        "rel_time",
        "estimate",
        "std_error",
        "ci_lower",
        "ci_upper",
        "t_stat",
        "p_value",
        "n_treated",
        "n_comparison",
    ]
    assert tab["rel_time"].tolist() == list(range(-4, 5))
    ref = tab.set_index("rel_time").loc[-1]
    assert ref["estimate"] == 0 and np.isnan(ref["std_error"]) and np.isnan(ref["p_value"])
    rel = df["rel_time"].clip(-4, 4)
    expect_t = df[df["treated"] == 1].groupby(rel)["student"].nunique()
    expect_c = df[df["treated"] == 0].groupby(rel)["student"].nunique()
    assert tab.set_index("rel_time")["n_treated"].to_dict() == expect_t.to_dict()
    assert tab.set_index("rel_time")["n_comparison"].to_dict() == expect_c.to_dict()
    assert res.n_treated == df.loc[df["treated"] == 1, "student"].nunique()
    assert res.n_comparison == df.loc[df["treated"] == 0, "student"].nunique()
    # 90% intervals are narrower than 95% ones
    wide = res.table()
    assert (
        (wide["ci_upper"] - wide["ci_lower"])
        .dropna()
        .gt((tab["ci_upper"] - tab["ci_lower"]).dropna())
        .all()
    )
    assert isinstance(res, EventStudyResult)
    assert "CRV1" in res.ssc


def test_school_clusters_differ_from_student_clusters():
    df = make_panel(23)
    by_student = event_study(df, cluster="student")
    by_school = event_study(df, cluster="school")
    np.testing.assert_allclose(by_student.coefficients, by_school.coefficients, atol=1e-12)
    assert by_school.n_clusters == df["school"].nunique()
    assert not np.allclose(by_student.std_errors, by_school.std_errors)


@pytest.mark.parametrize("cluster", ["student", "school"])
def test_coefficients_only_skip_the_covariance_and_nothing_else(cluster):
    # the whole-procedure bootstrap's draws keep the coefficients only
    df = make_panel(25)
    full = event_study(df, cluster=cluster)
    bare = event_study(df, cluster=cluster, covariance=False)
    pd.testing.assert_series_equal(bare.coefficients, full.coefficients, check_exact=True)
    assert bare.cov.shape == full.cov.shape and bare.cov.isna().all().all()
    assert not full.cov.isna().any().any()
    for name in ("nobs", "n_clusters", "df_k", "ssc_factor", "n_treated", "dropped"):
        assert getattr(bare, name) == getattr(full, name), name
    pd.testing.assert_series_equal(bare.n_treated_by_rel_time, full.n_treated_by_rel_time)
    # the degrees-of-freedom check still refuses a fit with too few observations
    from types import SimpleNamespace

    from leapresearch.estimation.event_study import _crv1_covariance

    codes = np.arange(4)
    short = SimpleNamespace(nobs=6, n_g=4, n_u=4, n_st=4, st_code=codes, g_code=codes)
    for scores in (np.ones((4, 2)), None):
        with pytest.raises(ValueError, match="too few observations"):
            _crv1_covariance(np.eye(2), scores, short, k=2, unit_nested=False)


def test_window_none_gives_one_term_per_event_time():
    df = make_panel(24)
    res = event_study(df, window=None, reference=-2)
    observed = sorted(set(df.loc[df["treated"] == 1, "rel_time"]) - {-2})
    assert list(res.coefficients.index) == observed
    assert res.window is None and res.reference == -2


def test_singletons_are_dropped_without_changing_estimates():
    df = make_panel(25)
    base = event_study(df)
    lone = df.iloc[[0]].assign(unit=99_999, student=77_777, attendance_pp=50.0)
    res = event_study(pd.concat([df, lone], ignore_index=True))
    assert res.n_singletons == 1 and res.nobs == base.nobs
    np.testing.assert_allclose(res.coefficients, base.coefficients, atol=1e-10)
    np.testing.assert_allclose(res.std_errors, base.std_errors, atol=1e-10)
    assert any("singleton" in n for n in res.notes)


def test_event_time_without_treated_rows_is_dropped_with_note():
    df = make_panel(26)
    df = df[~((df["treated"] == 1) & (df["rel_time"] == 2))]
    res = event_study(df, window=(-4, 4))
    assert 2 not in res.coefficients.index and 2 in res.dropped
    assert any("no treated observation" in n for n in res.notes)
    assert 2 not in res.table()["rel_time"].to_numpy()


def test_collinear_term_is_dropped():
    df = make_panel(27, missing=0.0)
    last = df.loc[df["treated"] == 1, "rel_time"].max()
    # at the last event time only treated rows remain in their stack-month cells,
    # so that term is absorbed by the stack-by-month effects
    cells = df.loc[(df["treated"] == 1) & (df["rel_time"] == last), ["stack", "time"]]
    in_cell = df.set_index(["stack", "time"]).index.isin(pd.MultiIndex.from_frame(cells))
    df = df[~(in_cell & (df["treated"] == 0).to_numpy())]
    res = event_study(df, window=None)
    assert last not in res.coefficients.index and last in res.dropped
    assert any("collinear" in n for n in res.notes)
    assert np.all(np.isfinite(res.std_errors))


def test_unbalanced_and_balanced_panels_agree_with_alternating_projections():
    df = make_panel(28, missing=0.3)
    u = factorize(df["unit"].to_numpy())[0]
    st = combine_codes(factorize(df["stack"].to_numpy())[0], factorize(df["time"].to_numpy())[0])[0]
    x = df[["attendance_pp", "weight"]].to_numpy()
    w = df["weight"].to_numpy()
    exact = demean(x, [u, st], w)
    alt = demean(x, [u, st], w, method="alternating", tol=1e-13)
    np.testing.assert_allclose(exact, alt, atol=1e-8)
    # the transformed data are W-orthogonal to both sets of dummies
    for codes in (u, st):
        sums = np.bincount(codes, w * exact[:, 0])
        assert np.abs(sums).max() < 1e-8


# --------------------------------------------------------------------------------------
# fixed_effects building blocks
# --------------------------------------------------------------------------------------


def test_demean_matches_least_squares_on_dummies():
    rng = np.random.default_rng(0)
    n = 400
    a = rng.integers(0, 40, n)
    b = rng.integers(0, 8, n) + 8 * (a % 2)  # two connected components
    w = rng.uniform(0.5, 2.0, n)
    x = rng.normal(size=(n, 2))
    h = np.column_stack([pd.get_dummies(a).to_numpy(), pd.get_dummies(b).to_numpy()])
    sw = np.sqrt(w)[:, None]
    coef = np.linalg.lstsq(h * sw, x * sw, rcond=None)[0]
    expected = x - h @ coef
    for method in ("auto", "exact", "alternating"):
        got = demean(x, [a, b], w, method=method, tol=1e-13)
        np.testing.assert_allclose(got, expected, atol=1e-9)
    one = demean(x[:, 0], [a], w)  # one fixed effect: one exact sweep
    means = np.bincount(a, w * x[:, 0]) / np.bincount(a, w)
    np.testing.assert_allclose(one, x[:, 0] - means[a], atol=1e-12)
    three = demean(x, [a, b, rng.integers(0, 3, n)], w, tol=1e-12)
    assert three.shape == x.shape
    proj = TwoWayProjector(factorize(a)[0], factorize(b)[0], w)
    assert proj.method == "exact" and proj.n_components == 2
    assert proj.n_levels == (40, 16)
    np.testing.assert_allclose(proj.demean(x), expected, atol=1e-9)
    # the alternating fallback (Gauss-Seidel on the normal equations) agrees
    alt = TwoWayProjector(factorize(a)[0], factorize(b)[0], w, method="alternating", tol=1e-13)
    np.testing.assert_allclose(alt.demean(x), expected, atol=1e-8)
    assert alt.method == "alternating" and alt.iterations > 1
    with pytest.raises(ValueError, match="max_exact_levels"):
        TwoWayProjector(factorize(a)[0], factorize(b)[0], w, method="exact", max_exact_levels=5)


def test_fixed_effect_helpers():
    codes, n = factorize(np.array([30, 10, 30, 20]))
    assert n == 3 and codes.tolist() == [2, 0, 2, 1]
    codes, n = factorize(np.array(["b", "a", "b"], dtype=object))
    assert n == 2 and codes.tolist() == [1, 0, 1]
    combo, n = combine_codes(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0]))
    assert n == 3 and combo.tolist() == [0, 1, 2, 2]
    # observation 3 is alone in a=2; dropping it makes observation 2 alone in b=1
    a = np.array([0, 0, 1, 2, 1])
    b = np.array([0, 0, 1, 1, 2])
    assert singleton_mask([a, b]).tolist() == [True, True, False, False, False]
    assert is_nested(np.array([0, 0, 1]), np.array([5, 5, 6]))
    assert not is_nested(np.array([0, 0, 1]), np.array([5, 6, 6]))
    with pytest.raises(ValueError, match="method"):
        demean(np.ones(3), [np.arange(3)], method="magic")
    with pytest.raises(ValueError, match="weights"):
        demean(np.ones(3), [np.arange(3)], np.array([1.0, -1.0, 1.0]))


# --------------------------------------------------------------------------------------
# invalid arguments
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_panel() -> pd.DataFrame:
    return make_panel(30)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": (3, -3)}, "window"),
        ({"window": (0, 4)}, "window"),
        ({"window": (-4,)}, "window"),
        ({"window": (-4.0, 4.0)}, "window"),
        ({"reference": 1.5}, "reference"),
        ({"cluster": "district"}, "district"),
        ({"outcome": "missing_col"}, "missing_col"),
        ({"weight": "nope"}, "nope"),
        ({"tol": 0.0}, "tol"),
    ],
)
def test_invalid_arguments_raise(small_panel, kwargs, match):
    with pytest.raises(ValueError, match=match):
        event_study(small_panel, **kwargs)


def test_invalid_data_raise(small_panel):
    df = small_panel
    with pytest.raises(ValueError, match="attendance_pp"):
        event_study(df.assign(attendance_pp=df["attendance_pp"].where(df.index != 3)))
    with pytest.raises(ValueError, match="weight"):
        event_study(df.assign(weight=df["weight"].where(df.index != 3, -1.0)))
    with pytest.raises(ValueError, match="treated"):
        event_study(df.assign(treated=df["treated"].where(df.index != 3, 2)))
    with pytest.raises(ValueError, match="duplicate"):
        event_study(pd.concat([df, df.iloc[[5]]], ignore_index=True))
    with pytest.raises(ValueError, match="reference"):
        event_study(df[~((df["treated"] == 1) & (df["rel_time"] == -1))])
    with pytest.raises(ValueError, match="school"):
        event_study(df.drop(columns="school"), cluster="school")
    res = event_study(df, window=(-4, 4))
    with pytest.raises(ValueError, match="alpha"):
        res.table(alpha=1.5)
    post_only = event_study(df[df["rel_time"] >= -1], window=None)
    with pytest.raises(ValueError, match="pre-period"):
        post_only.pretrend_test()


def test_a_joint_test_the_clusters_cannot_support_is_refused_not_a_number():
    # issue 27 / the referee: district fits with 7-11 schools published F = -4.3e13 for an
    # 11-term pre-trend test (a clustered covariance of G clusters has rank <= G - 1)
    from leapresearch.estimation.event_study import clustered_wald

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 11))  # 7 clusters' scores of 11 terms: rank <= 7
    v = scores.T @ scores
    b = rng.normal(size=11)
    with pytest.raises(np.linalg.LinAlgError, match="11 terms with 7 clusters"):
        clustered_wald(b, v, n_clusters=7)
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        clustered_wald(b, v, n_clusters=30)  # enough clusters claimed, V still singular
    full = rng.normal(size=(40, 11))
    v = full.T @ full
    assert clustered_wald(b, v, n_clusters=40) == pytest.approx(b @ np.linalg.solve(v, b))
