"""Tests of the Callaway & Sant'Anna (2021) estimator in leapresearch.estimation.robust."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.robust import (
    RobustEventStudyResult,
    callaway_santanna,
    group_time_effects,
)

N_MONTHS = 36
COHORT_POS = np.array([10, 14, 18, 22, 26])  # month positions of the event months
COHORT_PROB = np.array([0.12, 0.16, 0.2, 0.16, 0.16])  # the rest is never treated


def month_index(i: np.ndarray | int) -> np.ndarray:
    """School-month index (10 * start_year + position) of the i-th month from Sep 2019."""
    i = np.asarray(i)
    return 10 * (2019 + i // 10) + i % 10


def tau(k: np.ndarray, e: np.ndarray, heterogeneous: bool) -> np.ndarray:
    """True effect of cohort number ``k`` at event time ``e`` (0 before the event)."""
    e = np.asarray(e, dtype=float)
    if heterogeneous:  # later cohorts gain more, effects grow with exposure
        size = (1.0 + 0.5 * np.asarray(k)) * (1.0 + 0.15 * np.maximum(e, 0))
    else:
        size = 2.0 + 0.1 * np.maximum(e, 0)
    return np.where(e >= 0, size, 0.0)


def simulate(
    seed: int, *, n: int = 2500, heterogeneous: bool = True, missing: float = 0.1
) -> pd.DataFrame:
    """Unstacked student-month panel with staggered first visits."""
    rng = np.random.default_rng(seed)
    k_of = rng.choice(np.arange(COHORT_POS.size + 1), n, p=np.append(COHORT_PROB, 0.2))
    never = k_of == COHORT_POS.size
    g_pos = np.where(never, -1, COHORT_POS[np.minimum(k_of, COHORT_POS.size - 1)])
    sid = np.repeat(np.arange(n), N_MONTHS)
    pos = np.tile(np.arange(N_MONTHS), n)
    e = pos - g_pos[sid]
    treated_now = ~never[sid]
    effect = np.where(treated_now, tau(k_of[sid], e, heterogeneous), 0.0)
    y = (
        90.0
        + rng.normal(0, 4, n)[sid]
        + 2 * np.sin(pos / 4)  # common month effects
        - 1.5 * never[sid]  # never-visited students differ in level only
        + effect
        + rng.normal(0, 2.5, sid.size)
    )
    event = pd.array(np.where(never, 0, month_index(np.maximum(g_pos, 0))), dtype="Int64")
    event[never] = pd.NA
    df = pd.DataFrame(
        {
            "student": 10_000 + sid,
            "time": month_index(pos).astype(np.int64),
            "event_time": event[sid],
            "attendance_pp": y,
        }
    )
    keep = rng.random(len(df)) > missing
    return df.loc[keep].reset_index(drop=True)


def true_dynamic(res: RobustEventStudyResult, heterogeneous: bool = True) -> pd.Series:
    """theta(e) with population cohort shares over the cohorts estimated at each e."""
    gt = res.group_time
    k = np.searchsorted(month_index(COHORT_POS), gt["group"].to_numpy())
    prob = COHORT_PROB[k]
    eff = tau(k, gt["rel_time"].to_numpy(), heterogeneous)
    num = pd.Series(prob * eff).groupby(gt["rel_time"].to_numpy()).sum()
    den = pd.Series(prob).groupby(gt["rel_time"].to_numpy()).sum()
    return (num / den).reindex(res.estimates.index)


# --------------------------------------------------------------------------------------


def test_recovers_heterogeneous_dynamic_effects():
    df = simulate(1, n=6000)
    res = callaway_santanna(df, window=(-6, 10))
    truth = true_dynamic(res)
    z = (res.estimates - truth) / res.std_errors
    assert np.all(np.abs(z) < 3), z[np.abs(z) >= 3]
    assert res.pretrend_test().p_value > 0.01
    # dynamic effects are visible: late effects exceed the on-impact effect
    assert res.estimates[8] > res.estimates[0] + 1
    tab = res.table()
    assert list(tab.columns) == [
        "rel_time",
        "estimate",
        "std_error",
        "ci_lower",
        "ci_upper",
        "n_groups",
        "n_treated",
    ]
    assert tab["rel_time"].tolist() == list(range(-6, 11))
    # the last cohort has no not-yet-treated comparison after its event month
    assert tab.set_index("rel_time").loc[0, "n_groups"] == COHORT_POS.size - 1


CS_DRAWS = 400
"""Simulated panels for the coverage and size tests (about 12 ms of CPU each).

Binomial bounds with ``n = 400`` independent draws: the share of 95% intervals covering
the truth has sd ``sqrt(.95 * .05 / 400) = 0.011`` at the right level and lies in
``[0.925, 0.975]`` with probability 0.98; a 90% interval (sd 0.015) reaches 0.925 with
probability 0.05. A 5% test rejects in ``[0.02, 0.09]`` of the draws with probability
0.998; a 15% test (sd 0.018) falls to 0.09 with probability 4e-4.
"""


@pytest.fixture(scope="module")
def cs_draws() -> pd.DataFrame:
    """z-statistics against the truth and the pre-trend p-value of ``CS_DRAWS`` panels.

    1000 students each (five cohorts of 120-200 and 200 never visited), heterogeneous
    effects across cohorts and event times, so the dynamic aggregation's standard error
    needs the influence function of the estimated cohort shares; pre-trends are zero.
    """
    rows = []
    for seed in range(CS_DRAWS):
        res = callaway_santanna(simulate(30_000 + seed, n=1000), window=(-3, 4))
        z = (res.estimates - true_dynamic(res)) / res.std_errors
        row = {f"z{e}": z.loc[e] for e in (-2, 0, 2, 4)}
        rows.append({**row, "p": res.pretrend_test().p_value})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("e", [0, 2, 4])
def test_dynamic_intervals_cover_the_truth(cs_draws, e):
    """95% normal intervals of theta(e), which averages 3-5 cohorts with estimated
    weights, cover the population truth in 92.5-97.5% of the draws."""
    covered = float(np.mean(np.abs(cs_draws[f"z{e}"]) < 1.959964))
    assert 0.925 <= covered <= 0.975, (e, covered)


def test_pretrend_wald_test_has_size(cs_draws):
    """The chi2 test that the e = -3..-1 placebo estimates are zero rejects 5% of true nulls."""
    size = float(np.mean(cs_draws["p"] < 0.05))
    assert 0.02 <= size <= 0.09, size
    assert 0.4 <= float(np.mean(cs_draws["p"] < 0.5)) <= 0.6
    # the placebo estimate at e = -2 is centred on zero: |mean z| within 3 sd of the mean
    assert abs(cs_draws["z-2"].mean()) < 3 / np.sqrt(CS_DRAWS)


def test_matches_stacked_event_study_with_homogeneous_effects():
    df = simulate(2, n=8000, heterogeneous=False, missing=0.0)
    lo, hi = -4, 4
    cs = callaway_santanna(df, window=(lo, hi), base_period="universal")
    # stacked panel: for each cohort g, its students plus students first visited
    # after g + hi (clean not-yet-treated comparisons), months g + lo ... g + hi
    stacks = []
    student_event = df.groupby("student")["event_time"].first()
    for g in np.sort(df["event_time"].dropna().unique()):
        ev = student_event
        members = ev.index[(ev == g) | (ev > g + hi)].to_numpy()
        part = df[df["student"].isin(members) & df["time"].between(g + lo, g + hi)].copy()
        part["stack"] = int(g)
        part["treated"] = (part["event_time"] == g).astype(np.int8)
        stacks.append(part)
    stacked = pd.concat(stacks, ignore_index=True)
    stacked = stacked[stacked.groupby("stack")["treated"].transform("max") == 1]
    stacked = stacked[stacked.groupby("stack")["treated"].transform("min") == 0]
    stacked["rel_time"] = (stacked["time"] - stacked["stack"]).astype(np.int64)
    stacked["unit"] = stacked["stack"] * 100_000 + stacked["student"]
    stacked["weight"] = 1.0
    stacked["school"] = 0
    es = event_study(stacked, window=(lo, hi), weight="weight")
    post = [e for e in range(0, hi + 1)]
    diff = cs.estimates[post].to_numpy() - es.coefficients[post].to_numpy()
    # both are unbiased here; they differ by sampling noise (se of each about 0.07)
    assert np.max(np.abs(diff)) < 0.2, diff
    truth = tau(0, np.array(post), heterogeneous=False)
    assert np.max(np.abs(cs.estimates[post].to_numpy() - truth)) < 0.2


def test_hand_computed_two_by_two_cells():
    df = simulate(3, n=800)
    gt = group_time_effects(df, window=None).set_index(["group", "time"])
    wide = df.pivot(index="student", columns="time", values="attendance_pp")
    cohort = df.groupby("student")["event_time"].first().reindex(wide.index)
    g = int(month_index(COHORT_POS[1]))
    months = sorted(df["time"].unique())

    def two_by_two(t: int, base: int, controls: pd.Series) -> float:
        dy = wide[t] - wide[base]  # NaN unless observed in both months
        treated = dy[cohort == g].dropna()
        comparison = dy[controls].dropna()
        return treated.mean() - comparison.mean()

    # post-period cell: base g - 1, comparisons first visited after t (not g)
    t = months[months.index(g) + 2]
    base = months[months.index(g) - 1]
    att = two_by_two(t, base, (cohort > t).fillna(False))
    assert gt.loc[(g, t), "att"] == pytest.approx(att, abs=1e-12)
    assert gt.loc[(g, t), "base_time"] == base
    # pre-period cell with varying base: consecutive months, comparisons after t, not g
    t = months[months.index(g) - 3]
    base = months[months.index(g) - 4]
    controls = ((cohort > t) & (cohort != g)).fillna(False)
    att = two_by_two(t, base, controls)
    assert gt.loc[(g, t), "att"] == pytest.approx(att, abs=1e-12)
    # never-treated comparisons only
    gt_never = group_time_effects(df, window=None, control_group="nevertreated")
    gt_never = gt_never.set_index(["group", "time"])
    t = months[months.index(g) + 5]
    att = two_by_two(t, months[months.index(g) - 1], cohort.isna())
    assert gt_never.loc[(g, t), "att"] == pytest.approx(att, abs=1e-12)
    # the cell's standard error is the two-sample formula with 1/n^2
    dy = wide[t] - wide[months[months.index(g) - 1]]
    d1, d0 = dy[cohort == g].dropna(), dy[cohort.isna()].dropna()
    se = np.sqrt(
        ((d1 - d1.mean()) ** 2).sum() / len(d1) ** 2 + ((d0 - d0.mean()) ** 2).sum() / len(d0) ** 2
    )
    assert gt_never.loc[(g, t), "std_error"] == pytest.approx(se, rel=1e-12)


def test_aggregation_weights_are_cohort_sizes():
    df = simulate(4, n=1500)
    res = callaway_santanna(df, window=(-2, 4))
    gt = res.group_time
    for e in (-2, 0, 3):
        cell = gt[gt["rel_time"] == e]
        expected = np.average(cell["att"], weights=cell["group_size"])
        assert res.estimates[e] == pytest.approx(expected, abs=1e-12)
    sizes = df.dropna(subset=["event_time"]).groupby("event_time")["student"].nunique()
    np.testing.assert_array_equal(
        res.cohorts.set_index("group")["n_students"], sizes.reindex(res.cohorts["group"])
    )


def test_options_universal_base_anticipation_never_treated_and_small_cohorts():
    df = simulate(5, n=1500)
    uni = callaway_santanna(df, window=(-4, 4), base_period="universal")
    assert uni.reference == -1 and -1 not in uni.estimates.index
    ref = uni.table().set_index("rel_time").loc[-1]
    assert ref["estimate"] == 0 and np.isnan(ref["std_error"])
    assert uni.pretrend_test().terms == (-4, -3, -2)
    ant = group_time_effects(df, window=(0, 0), anticipation=1)
    months = sorted(df["time"].unique())
    for g, base in zip(ant["group"], ant["base_time"], strict=True):
        assert base == months[months.index(g) - 2]
    with_never = callaway_santanna(df, window=(0, 4), include_never_treated=True)
    without = callaway_santanna(df, window=(0, 4))
    assert (with_never.group_time["n_comparison"].to_numpy() > 0).all()
    # adding never-treated students enlarges every comparison group and lets the last
    # cohort be estimated
    assert with_never.n_groups[0] == without.n_groups[0] + 1
    # a cohort smaller than min_group_size is not estimated but noted
    first = df["event_time"].dropna().min()
    keep = df["event_time"].ne(first).fillna(True) | df["student"].isin(
        df.loc[df["event_time"] == first, "student"].unique()[:3]
    )
    small = callaway_santanna(df[keep], window=(0, 2), min_group_size=5)
    assert first not in small.group_time["group"].to_numpy()
    assert any("fewer than 5" in n for n in small.notes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"control_group": "everyone"}, "control_group"),
        ({"base_period": "fixed"}, "base_period"),
        ({"anticipation": -1}, "anticipation"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"window": (4, -4)}, "window"),
        ({"include_never_treated": "yes"}, "include_never_treated"),
        ({"outcome": "nope"}, "nope"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    df = simulate(6, n=200)
    with pytest.raises(ValueError, match=match):
        callaway_santanna(df, **kwargs)


def test_invalid_data_raise():
    df = simulate(7, n=200)
    with pytest.raises(ValueError, match="duplicate"):
        callaway_santanna(pd.concat([df, df.iloc[[0]]], ignore_index=True))
    varying = df.copy()
    varying.loc[varying.index[0], "event_time"] = 20_205
    with pytest.raises(ValueError, match="constant"):
        callaway_santanna(varying)
    with pytest.raises(ValueError, match="attendance_pp"):
        callaway_santanna(df.assign(attendance_pp=np.nan))
