"""Inverse-probability-of-censoring weights of the risk-set comparison pool.

Checked against (a) a population whose full, uncensored outcome paths are known: the
weighted mean of the comparison months left after informative censoring must recover the
mean of every comparison, where the unweighted mean does not; (b) statsmodels' logistic
regression for the hazard fit; (c) the bookkeeping: weights of one before the event month, the cap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from leapresearch.data.panel import AnalyticPanel
from leapresearch.design.censoring import _weighted_ridge_logit, censoring_weights

N_UNITS = 6000
N_POST = 8
STACK = 12  # event month of the single stack (school-month index)


def _population(seed: int = 1):
    """Comparison units of one stack whose low-attendance months get them visited.

    Attendance is an AR(1) on the logit scale; in each month after the stack a student is
    first visited with probability ``expit(-3 - 8 (rate_{t-1} - 0.85))``, so students
    in a low spell leave the comparison group. Returns the panel, units, the stacked rows
    left after censoring, unit info and the full (uncensored) rates.
    """
    rng = np.random.default_rng(seed)
    n_times = STACK + N_POST + 1
    level = rng.normal(2.2, 0.6, N_UNITS)
    z = np.zeros((N_UNITS, n_times))
    for t in range(1, n_times):
        z[:, t] = 0.7 * z[:, t - 1] + rng.normal(0, 0.5, N_UNITS)
    rates = expit(level[:, None] + z)
    first = np.full(N_UNITS, -1)
    at_risk = np.ones(N_UNITS, dtype=bool)
    for t in range(STACK + 1, n_times):
        h = expit(-3.0 - 8 * (rates[:, t - 1] - 0.85))
        hit = at_risk & (rng.random(N_UNITS) < h)
        first[hit] = t
        at_risk &= ~hit
    visited = first >= 0
    events = pd.DataFrame({"student": np.flatnonzero(visited), "event_time": first[visited]})
    panel = AnalyticPanel(
        n_students=N_UNITS,
        roster=pd.DataFrame(),
        monthly=pd.DataFrame(),
        annual=pd.DataFrame(),
        events=events,
        visited_any=visited,
        time_min=0,
        rates=rates,
    )
    units = pd.DataFrame(
        {
            "unit": np.arange(N_UNITS),
            "stack": STACK,
            "student": np.arange(N_UNITS),
            "treated": np.int8(0),
            "weight": 1.0,
        }
    )
    unit_ix, col = np.nonzero(np.ones((N_UNITS, n_times), dtype=bool))
    keep = ~visited[unit_ix] | (col < first[unit_ix])
    stacked = pd.DataFrame(
        {
            "unit": unit_ix[keep],
            "stack": STACK,
            "time": col[keep],
            "rel_time": col[keep] - STACK,
            "treated": np.int8(0),
            "attendance_pp": 100 * rates[unit_ix[keep], col[keep]],
        }
    )
    info = pd.DataFrame(
        {
            "district": np.where(np.arange(N_UNITS) % 2 == 0, "A", "B"),
            "grade_band": "PK-5",
            "pre_mean": rates[:, :STACK].mean(axis=1),
        }
    )
    return panel, units, stacked, info, rates


@pytest.fixture(scope="module")
def population():
    return _population()


def test_weights_recover_the_mean_of_the_uncensored_comparison_group(population):
    panel, units, stacked, info, rates = population
    model = censoring_weights(panel, units, stacked, info)
    assert model.n_censored > 0.2 * N_UNITS  # censoring is heavy, and informative
    s = stacked.assign(w=model.weights)
    for r in range(2, N_POST + 1):
        rows = s.loc[s["rel_time"] == r]
        full = 100 * rates[:, STACK + r].mean()
        naive = rows["attendance_pp"].mean()
        weighted = np.average(rows["attendance_pp"], weights=rows["w"])
        assert naive - full > 0.5, (r, naive, full)  # those left had no low spell
        assert abs(weighted - full) < 0.25 * (naive - full), (r, weighted, naive, full)
        assert abs(weighted - full) < 0.4, (r, weighted, full)


def test_weights_are_one_up_to_the_event_month_and_at_least_one_after(population):
    panel, units, stacked, info, _ = population
    w = censoring_weights(panel, units, stacked, info).weights
    pre = stacked["rel_time"].to_numpy() <= 0
    assert (w[pre] == 1.0).all()
    assert (w[~pre] >= 1.0).all() and (w[~pre] > 1.0).any()


def test_weights_are_capped_and_the_cap_is_counted(population):
    panel, units, stacked, info, _ = population
    model = censoring_weights(panel, units, stacked, info, max_weight=2.0)
    assert model.weights.max() == 2.0 and model.n_capped == int((model.weights == 2.0).sum())
    assert model.n_capped > 0


def test_no_later_visited_comparison_means_weights_of_one(population):
    panel, units, stacked, info, _ = population
    never = AnalyticPanel(
        **{**panel.__dict__, "events": panel.events.iloc[:0], "visited_any": ~panel.visited_any}
    )
    model = censoring_weights(never, units, stacked, info)
    assert model.n_censored == 0 and (model.weights == 1.0).all()


def test_hazard_logit_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(4000), rng.normal(size=(4000, 3))])
    y = (rng.random(4000) < expit(x @ np.array([-2.0, 0.8, -0.5, 0.0]))).astype(float)
    w = rng.uniform(0.2, 3.0, 4000)
    ours = _weighted_ridge_logit(x, y, w, ridge=0.0)
    ref = sm.GLM(y, x, family=sm.families.Binomial(), var_weights=w).fit(tol=1e-12).params
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-9)


def test_hazard_logit_on_indicator_codes_matches_statsmodels():
    """The hazard's design as the package keeps it (dense columns, then month and district
    codes standing for their indicators, first level dropped) is the matrix of
    ``pandas.get_dummies``, and its fit is statsmodels'; with the ridge, the dense
    matrix's fit (both to the accuracy of the iterations' stopping rule)."""
    import statsmodels.api as sm

    from leapresearch.design.censoring import IndicatorDesign

    rng = np.random.default_rng(4)
    n = 6000
    month = rng.integers(240, 252, n)
    district = rng.choice(np.array(["b", "a", "c"]), n)
    dense = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    codes = tuple(np.unique(v, return_inverse=True)[1] for v in (month, district))
    design = IndicatorDesign(dense, codes)
    x_dense = np.column_stack(
        [
            dense,
            pd.get_dummies(month, drop_first=True, dtype=float).to_numpy(),
            pd.get_dummies(district, drop_first=True, dtype=float).to_numpy(),
        ]
    )
    np.testing.assert_array_equal(design.toarray(), x_dense)
    assert design.shape == x_dense.shape
    beta = rng.normal(scale=0.3, size=x_dense.shape[1])
    beta[0] = -2.5
    np.testing.assert_allclose(design @ beta, x_dense @ beta, rtol=1e-13, atol=1e-13)
    r = rng.normal(size=n)
    np.testing.assert_allclose(design.rmatvec(r), x_dense.T @ r, rtol=1e-12, atol=1e-11)
    v = rng.uniform(0.1, 2.0, n)
    np.testing.assert_allclose(
        design.weighted_cross_product(v), (x_dense * v[:, None]).T @ x_dense, rtol=1e-12
    )
    y = (rng.random(n) < expit(x_dense @ beta)).astype(float)
    w = rng.uniform(0.2, 3.0, n)
    ours = _weighted_ridge_logit(design, y, w, ridge=0.0)
    ref = sm.GLM(y, x_dense, family=sm.families.Binomial(), var_weights=w).fit(tol=1e-12).params
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        _weighted_ridge_logit(design, y, w, ridge=1.0),
        _weighted_ridge_logit(x_dense, y, w, ridge=1.0),
        rtol=1e-7,  # the Newton iterations stop on a change of the objective below 1e-12
        atol=1e-9,
    )


# --------------------------------------------------------------------------------------
# what the report says about the pool
# --------------------------------------------------------------------------------------


def _config_with(**pool):
    from leapresearch.config import load_config

    config = load_config("demo")
    return config.model_copy(
        update={"comparison_pool": config.comparison_pool.model_copy(update=pool)}
    )


def _pool_summary(share: float, mean_w: float, max_w: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rel_time": [1, 6],
            "comparison_units": [900, 800],
            "visited_later_share": [share / 2, share],
            "mean_censoring_weight": [1.0, mean_w],
            "max_censoring_weight": [1.0, max_w],
        }
    )


def test_pool_sentence_follows_the_parameters_and_the_numbers():
    from leapresearch.publish.narrative import describe_pool, methods_text

    never = _config_with(not_yet_visited=False)
    risk = _config_with(not_yet_visited=True, censoring_weights=True)
    plain = _config_with(not_yet_visited=True, censoring_weights=False)
    summary = _pool_summary(0.12, 1.31, 6.5)
    assert "never visited in the data" in describe_pool(never, summary)
    assert "12%" not in describe_pool(never, summary)
    text = describe_pool(risk, summary)
    assert "not yet visited" in text and "12%" in text and "1.31" in text and "6.5" in text
    other = describe_pool(risk, _pool_summary(0.03, 1.05, 2.0))
    assert "3%" in other and "1.05" in other and other != text
    assert "weighted" not in describe_pool(plain, summary) and "12%" in describe_pool(
        plain, summary
    )
    assert "never visited in the data" in methods_text(never)[0]
    assert "inverse probability" in methods_text(risk)[0]


# --------------------------------------------------------------------------------------
# the risk-set pool in the pipeline
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def risk_set(sim_data):
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables

    config = load_config(
        "demo",
        data_dir=sim_data,
        overrides=[
            "comparison_pool.not_yet_visited=true",
            "comparison_pool.censoring_weights=true",
            "identification.specifications=[never_visited_pool, no_censoring_weights]",
        ],
    )
    return prepare(read_raw_tables(sim_data), config)


def test_risk_set_pool_censors_later_visited_comparisons_at_their_visit(risk_set):
    st, events = risk_set.stacked, risk_set.panel.events
    first = events.set_index("student")["event_time"]
    comp = st.loc[st["treated"] == 0]
    later = comp["student"].map(first)
    assert later.notna().any()  # students visited later do serve as comparisons
    assert (comp.loc[later.notna(), "time"] < later.dropna()).all()  # ... until their visit
    assert (comp.loc[comp["rel_time"] <= 0, "censoring_weight"] == 1.0).all()
    assert (comp.loc[comp["rel_time"] > 0, "censoring_weight"] > 1.0).any()


def test_pool_summary_and_specifications_of_the_risk_set_pool(risk_set):
    from leapresearch.analysis.fitting import fit_group
    from leapresearch.analysis.sample import comparison_pool_summary
    from leapresearch.analysis.specifications import estimate_specifications
    from leapresearch.estimation.subgroups import GROUP_ALL

    summary = comparison_pool_summary(risk_set)
    hi = risk_set.config.analysis.window[1]
    assert summary["rel_time"].tolist() == list(range(1, hi + 1))
    assert (summary["visited_later_share"] > 0).any()
    assert (summary["mean_censoring_weight"] >= 1.0).all()
    assert (summary["max_censoring_weight"] > 1.0).any()

    spec = estimate_specifications(risk_set)
    rows = spec.loc[spec["group"] == GROUP_ALL].pivot(
        index="rel_time", columns="specification", values="estimate"
    )
    assert {"main", "never_visited_pool", "no_censoring_weights"} <= set(rows.columns)
    assert not np.allclose(rows["main"], rows["never_visited_pool"])
    # without the weights: the same as fitting the stacked panel without its weight column
    w = risk_set.units["weight"].to_numpy(np.float64)
    plain = fit_group(risk_set, risk_set.stacked.drop(columns="censoring_weight"), w)
    expected = plain.coefficients.reindex(rows.index).to_numpy()
    np.testing.assert_allclose(rows["no_censoring_weights"].to_numpy(), expected, rtol=1e-9)
    assert not np.allclose(rows["main"], rows["no_censoring_weights"])


def test_switching_the_weights_on_reproduces_the_weighted_run(risk_set, sim_data):
    """A run without the weights, with the ``censoring_weights`` row, gives the weighted run."""
    from leapresearch.analysis.sample import prepare
    from leapresearch.analysis.specifications import estimate_specifications
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.estimation.subgroups import GROUP_ALL

    config = load_config(
        "demo",
        data_dir=sim_data,
        overrides=[
            "comparison_pool.not_yet_visited=true",
            "comparison_pool.censoring_weights=false",
            "identification.specifications=[censoring_weights, no_censoring_weights]",
        ],
    )
    unweighted = prepare(read_raw_tables(sim_data), config)
    assert "censoring_weight" not in unweighted.stacked
    spec = estimate_specifications(unweighted)
    assert set(spec["specification"]) == {"main", "censoring_weights"}  # the other is the run
    weighted = estimate_specifications(risk_set)
    on = spec.loc[(spec["specification"] == "censoring_weights") & (spec["group"] == GROUP_ALL)]
    main = weighted.loc[(weighted["specification"] == "main") & (weighted["group"] == GROUP_ALL)]
    np.testing.assert_allclose(on["estimate"].to_numpy(), main["estimate"].to_numpy(), rtol=1e-10)


def test_methods_box_names_the_robust_estimator_of_the_parameters():
    from leapresearch.publish.narrative import methods_text

    config = _config_with()
    checks = next(line for line in methods_text(config) if line.startswith("Checks"))
    assert "doubly-robust Callaway-Sant'Anna estimator with never-visited comparisons" in checks
    other = config.model_copy(
        update={
            "robust": config.robust.model_copy(
                update={"est_method": "unconditional", "control_group": "notyettreated"}
            )
        }
    )
    checks = next(line for line in methods_text(other) if line.startswith("Checks"))
    assert "the Callaway-Sant'Anna estimator with not-yet-visited comparisons" in checks
