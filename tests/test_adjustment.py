"""The regression adjustment, checked against an independent computation.

Two things are checked on small synthetic matched panels:

- on a balanced panel the adjusted event study equals Abadie and Imbens' bias-corrected
  matching estimator written out by hand, with the slopes fitted by statsmodels;
- the adjustment takes the predictable change out of the visited students' outcomes as
  well, so the cluster-robust standard error is that of the unpredictable part (a
  visited student and its matches share their expected change and are not counted as
  independent draws of it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from leapresearch.design.adjustment import (
    _rows_by_value,
    adjust_outcome,
    adjusted_outcome,
    trend_slopes,
)
from leapresearch.estimation.event_study import event_study

REL_TIMES = (-3, -2, -1, 0, 1, 2)
PANEL_COLUMNS = ["unit", "stack", "time", "rel_time", "treated", "student", "weight", "y"]


def _matched_panel(
    rng: np.random.Generator,
    *,
    n_treated: int,
    k: int,
    slope: float,
    noise: float,
    effect: float,
    match_noise: float,
):
    """A balanced stacked panel: each visited student with ``k`` matches of its own.

    The untreated change from the reference month is ``slope * x * rel`` (same for a
    visited student and its matches, up to ``match_noise`` in ``x``) plus noise.
    """
    rows, unit_x = [], []
    unit = 0
    for i in range(n_treated):
        stack = int(i % 2)
        x_t = rng.normal(size=3)
        members = [(1, x_t, 1.0)]
        members += [(0, x_t + match_noise * rng.normal(size=3), 1.0 / k) for _ in range(k)]
        for treated, x, w in members:
            level = rng.normal(80, 5)
            for r in REL_TIMES:
                y = level + slope * x[0] * (r + 1) + 3 * x[1] + noise * rng.normal()
                y += effect * treated * (r >= 0)
                rows.append((unit, stack, stack + r, r, treated, unit, w, y))
            unit_x.append(x)
            unit += 1
    return pd.DataFrame(rows, columns=PANEL_COLUMNS), np.array(unit_x)


def _bias_corrected_by_hand(panel: pd.DataFrame, unit_x: np.ndarray, r: int) -> float:
    """Abadie-Imbens bias-corrected matching estimate at event time ``r`` (balanced)."""
    wide = panel.pivot(index="unit", columns="rel_time", values="y")
    dy = (wide[r] - wide[-1]).to_numpy()
    info = panel.drop_duplicates("unit").set_index("unit").sort_index()
    comp = info["treated"].to_numpy() == 0
    stack = pd.get_dummies(info["stack"], dtype=float).to_numpy()
    design = np.column_stack([unit_x, stack])[comp]
    fit = sm.WLS(dy[comp], design, weights=info["weight"].to_numpy()[comp]).fit()
    delta = fit.params[: unit_x.shape[1]]
    # each visited unit is followed by its k matches (the panel is built that way)
    treated_units = np.flatnonzero(~comp)
    out = []
    for pos, i in enumerate(treated_units):
        end = treated_units[pos + 1] if pos + 1 < len(treated_units) else len(comp)
        matches = np.arange(i + 1, end)
        imputed = np.mean(dy[matches] + (unit_x[i] - unit_x[matches]) @ delta)
        out.append(dy[i] - imputed)
    return float(np.mean(out))


def test_adjusted_event_study_is_the_bias_corrected_matching_estimator():
    rng = np.random.default_rng(7)
    panel, unit_x = _matched_panel(
        rng, n_treated=60, k=3, slope=2.0, noise=1.0, effect=4.0, match_noise=0.5
    )
    adj = panel.assign(y=adjusted_outcome(panel, unit_x, outcome="y", window=None))
    res = event_study(adj, outcome="y", window=None, reference=-1)
    for r in (0, 1, 2, -3):
        expected = _bias_corrected_by_hand(panel, unit_x, r)
        assert abs(res.coefficients.loc[r] - expected) < 1e-9, r
    # the unadjusted estimate differs (the matches are not exact), so the check has teeth
    raw = event_study(panel, outcome="y", window=None, reference=-1)
    assert abs(raw.coefficients.loc[2] - _bias_corrected_by_hand(panel, unit_x, 2)) > 0.01


def test_slopes_come_from_comparisons_only():
    rng = np.random.default_rng(8)
    panel, unit_x = _matched_panel(
        rng, n_treated=60, k=3, slope=2.0, noise=1.0, effect=0.0, match_noise=0.5
    )
    slopes = trend_slopes(panel, unit_x, outcome="y", window=None)
    # a large effect on the visited students that grows with x moves no slope
    visited = (panel["treated"] == 1) & (panel["rel_time"] >= 0)
    x0 = unit_x[panel["unit"].to_numpy(), 0]
    shifted = panel.assign(y=panel["y"] + np.where(visited, 50 * x0, 0.0))
    again = trend_slopes(shifted, unit_x, outcome="y", window=None)
    assert slopes.keys() == again.keys() == {-3, -2, 0, 1, 2}
    for r, delta in slopes.items():
        np.testing.assert_array_equal(delta, again[r])
    np.testing.assert_allclose(slopes[2][0], 2.0 * 3, atol=0.3)  # slope * (r + 1)


def test_standard_error_is_that_of_the_unpredictable_change():
    """With a strongly predictable change, the adjusted error matches the noise-only one.

    Comparing a visited student's change with its matches' while treating both as
    independent would count the predictable part of the change (shared with its
    matches) twice; the error would then be several times the one of the noise alone.
    """
    rng = np.random.default_rng(9)
    panel, unit_x = _matched_panel(
        rng, n_treated=400, k=3, slope=6.0, noise=1.0, effect=0.0, match_noise=0.02
    )
    adj = panel.assign(y=adjusted_outcome(panel, unit_x, outcome="y", window=None))
    se_adj = event_study(adj, outcome="y", window=None, reference=-1).std_errors.loc[2]
    se_raw = event_study(panel, outcome="y", window=None, reference=-1).std_errors.loc[2]
    # the oracle: the same panel without the predictable part of the change
    oracle = panel.assign(
        y=panel["y"] - 6.0 * unit_x[panel["unit"].to_numpy(), 0] * (panel["rel_time"] + 1)
    )
    se_oracle = event_study(oracle, outcome="y", window=None, reference=-1).std_errors.loc[2]
    assert 0.85 < se_adj / se_oracle < 1.15
    assert se_raw > 3 * se_adj


def _school_year_rows(n_stacks: int, units_per_stack: int, rng: np.random.Generator):
    """Comparison units with ten month rows at event time 1 and ten at the reference."""
    rows, unit_x = [], []
    unit = 0
    for stack in range(n_stacks):
        for _ in range(units_per_stack):
            x = rng.normal(size=3)
            for r in (-1, 1):
                for month in range(10):
                    y = 80 + 2.0 * x[0] * (r + 1) + rng.normal()
                    rows.append((unit, stack, 10 * r + month, r, 0, unit, 1.0, y))
            unit_x.append(x)
            unit += 1
    return pd.DataFrame(rows, columns=PANEL_COLUMNS), np.array(unit_x)


def test_slopes_need_units_beyond_one_per_stack_not_rows():
    """40 units, each alone in its stack, have 400 rows but no within-stack information."""
    rng = np.random.default_rng(3)
    alone, x_alone = _school_year_rows(40, 1, rng)
    assert trend_slopes(alone, x_alone, outcome="y", window=None) == {}
    # 2 stacks of 20 units: 38 units beyond one per stack, more than 10 per covariate
    shared, x_shared = _school_year_rows(2, 20, rng)
    slopes = trend_slopes(shared, x_shared, outcome="y", window=None)
    assert set(slopes) == {1}
    assert abs(slopes[1][0] - 4.0) < 0.5  # the change from -1 to 1 is 4 x[0]


def test_adjust_outcome_names_the_event_times_it_adjusted_and_leaves_the_others():
    rng = np.random.default_rng(5)
    panel, unit_x = _matched_panel(
        rng, n_treated=60, k=3, slope=2.0, noise=1.0, effect=0.0, match_noise=0.5
    )
    calls = []

    def fallback():
        calls.append(1)
        return {r: np.array([1.0, 0.0, 0.0]) for r in (-3, -2, 0, 1, 2)}

    full = adjust_outcome(panel, unit_x, outcome="y", window=None, fallback=fallback)
    assert full.own == (-3, -2, 0, 1, 2) and full.pooled == ()  # every event time but -1
    assert calls == []  # nothing missing: the fallback is not computed
    plain = adjusted_outcome(panel, unit_x, outcome="y", window=None)
    np.testing.assert_array_equal(full.outcome, plain)
    # too few comparison units at event time 2 (12 units in two stacks: 10 beyond one per
    # stack, under 10 per covariate): that event time keeps its outcome and is not named
    few = panel.loc[(panel["rel_time"] != 2) | (panel["unit"] < 16)]
    at2 = (few["rel_time"] == 2).to_numpy()
    assert at2.any()
    alone = adjust_outcome(few, unit_x, outcome="y", window=None)
    assert alone.own == (-3, -2, 0, 1) and alone.pooled == ()
    np.testing.assert_array_equal(alone.outcome[at2], few["y"].to_numpy()[at2])
    assert not np.array_equal(alone.outcome[~at2], few["y"].to_numpy()[~at2])
    # with a fallback, event time 2 takes its slopes (x[0] here) and nothing else moves
    helped = adjust_outcome(few, unit_x, outcome="y", window=None, fallback=fallback)
    assert helped.own == (-3, -2, 0, 1) and helped.pooled == (2,) and calls == [1]
    x0 = unit_x[few["unit"].to_numpy()[at2], 0]
    np.testing.assert_array_equal(helped.outcome[at2], few["y"].to_numpy()[at2] - x0)
    np.testing.assert_array_equal(helped.outcome[~at2], alone.outcome[~at2])
    # a fallback without slopes at that event time leaves it as it was
    empty = adjust_outcome(few, unit_x, outcome="y", window=None, fallback=dict)
    assert empty.pooled == ()
    np.testing.assert_array_equal(empty.outcome, alone.outcome)


def test_rows_grouped_by_event_time_are_the_masks_they_replace():
    rng = np.random.default_rng(7)
    rel = rng.integers(-13, 13, 5_000)
    mask = rng.random(5_000) < 0.6
    groups = _rows_by_value(rel, np.flatnonzero(mask))
    assert sorted(groups) == np.unique(rel[mask]).tolist()
    for r, rows in groups.items():
        np.testing.assert_array_equal(rows, np.flatnonzero(mask & (rel == r)))
