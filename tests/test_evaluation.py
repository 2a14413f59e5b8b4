"""The evaluation against the known truth of simulated data.

A simulated population with known potential outcomes is run through the whole pipeline
(contract reader, panel, matching, regression-adjusted stacked event study); estimates
must land near the true average effect on the treated, and intervals must cover it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from leapresearch.analysis.event_studies import estimate_event_studies, estimate_subgroup_tests
from leapresearch.analysis.long_term import estimate_long_term
from leapresearch.analysis.robustness import estimate_naive
from leapresearch.analysis.sample import estimate_balance, prepare
from leapresearch.analysis.truth import long_term_truth_key
from leapresearch.config import load_config
from leapresearch.data.contract import read_raw_tables
from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

HEADLINE = (1, 3, 6, 9)


def simulate_folder(folder: Path, **config) -> dict:
    data = simulate(SimulationConfig(**config))
    write_simulation(data, folder / "data", file_format="parquet", truth_path=folder / "truth.json")
    return json.loads((folder / "truth.json").read_text())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("truth")
    # a quarter of the 15 districts: about 38,000 students, 2,200 visited
    truth = simulate_folder(folder, scale="districts", sample_fraction=0.25, seed=7)
    tables = read_raw_tables(folder / "data")
    return folder, tables, truth


@pytest.fixture(scope="module")
def prepared(simulated):
    folder, tables, _ = simulated
    config = load_config("demo", data_dir=folder / "data")
    return prepare(tables, config)


@pytest.fixture(scope="module")
def event_study_fit(prepared):
    return estimate_event_studies(prepared, subgroups=("grade_band", "cohort"))


@pytest.fixture(scope="module")
def event_study_table(event_study_fit):
    return event_study_fit[0]


def estimate_at(table, group, rel_time):
    row = table.loc[(table["group"] == group) & (table["rel_time"] == rel_time)].iloc[0]
    return row["estimate"], row["std_error"]


@pytest.mark.parametrize("rel_time", HEADLINE)
def test_all_visited_students_effect_recovers_truth(event_study_table, simulated, rel_time):
    truth = simulated[2]["event_study"]["all"][str(rel_time)]
    est, se = estimate_at(event_study_table, "all", rel_time)
    assert abs(est - truth) < 3 * se, (est, truth, se)


def test_all_visited_students_path_is_within_1_5_pp_of_the_truth(event_study_table, simulated):
    """One draw: the mean error over the headline months within 1.5 pp (standard errors
    here are 0.8-1.0 pp a month, so a per-month bound of 1.5 pp would be under 2 SE; bias
    itself is tested over many draws in ``tests/test_monte_carlo.py`` and ``validation/``)."""
    errors = []
    for r in HEADLINE:
        est, _ = estimate_at(event_study_table, "all", r)
        errors.append(est - simulated[2]["event_study"]["all"][str(r)])
    assert abs(np.mean(errors)) < 1.5, errors


@pytest.mark.parametrize("band", ["PK-5", "6-8", "9-12", "6-12"])
def test_grade_band_effects_recover_truth(event_study_table, simulated, band):
    """One draw: each month within 4 standard errors, the path's mean error within 2.5 pp.

    A band has a quarter to a half of the visited students (standard errors 0.8-1.7 pp
    here), so a fixed 2.5 pp bound on each of 16 cells would sit under two standard
    errors for the smaller bands and be crossed by chance on many seeds; per-cell bias
    and coverage are measured over 200 draws in ``validation/``.
    """
    errors = []
    for rel_time in HEADLINE:
        truth = simulated[2]["event_study"][f"grade_band:{band}"][str(rel_time)]
        est, se = estimate_at(event_study_table, f"grade_band:{band}", rel_time)
        assert abs(est - truth) < 4 * se, (band, rel_time, est, truth, se)
        errors.append(est - truth)
    assert abs(np.mean(errors)) < 2.5, (band, errors)


def test_pre_period_estimates_are_near_zero(event_study_table):
    pre = event_study_table.loc[
        (event_study_table["group"] == "all") & event_study_table["rel_time"].between(-6, -2)
    ]
    assert (pre["estimate"].abs() < 3 * pre["std_error"]).all()


def test_pk5_vs_6_12_contrast_recovers_the_true_difference(event_study_fit, prepared, simulated):
    truth = simulated[2]["event_study"]
    tests = estimate_subgroup_tests(prepared, event_study_fit[1])
    contrast = tests.loc[tests["contrast"] == "PK-5 vs 6-12"].set_index("rel_time")
    assert sorted(contrast.index) == list(HEADLINE)
    for r in HEADLINE:
        diff = truth["grade_band:PK-5"][str(r)] - truth["grade_band:6-12"][str(r)]
        row = contrast.loc[r]
        assert row["df"] == 1 and row["std_error"] > 0
        assert abs(row["estimate"] - diff) < 3 * row["std_error"], (r, row["estimate"], diff)
    equal = tests.loc[(tests["family"] == "grade_band") & (tests["contrast"] == "all equal")]
    assert (equal["df"] == 2).all()  # PK-5, 6-8, 9-12: the pooled 6-12 is not a third part


def test_event_study_table_carries_family_adjusted_p_values(event_study_table):
    t = event_study_table.dropna(subset=["p_value"])
    assert (t["p_value_adjusted"] >= t["p_value"] - 1e-15).all()
    alone = t.loc[t["group"] == "all"]
    assert (alone["p_value_adjusted"] == alone["p_value"]).all()  # a family of one
    bands = t.loc[t["group"].str.startswith("grade_band:")]
    assert (bands["p_value_adjusted"] > bands["p_value"]).any()


def test_simultaneous_band_covers_the_true_post_visit_path(event_study_table, simulated):
    truth = simulated[2]["event_study"]["all"]
    a = event_study_table.loc[event_study_table["group"] == "all"].set_index("rel_time")
    band = a.dropna(subset=["band_lower", "band_upper"])
    hi = load_config("demo").analysis.window[1]
    assert band.index.tolist() == list(range(0, hi))  # post months, binned end point left out
    for r, row in band.iterrows():
        assert row["band_lower"] <= truth[str(r)] <= row["band_upper"], (r, truth[str(r)])
    # the multiplier bootstrap reproduces the analytic clustered errors
    ratio = a["boot_std_error"] / a["std_error"]
    assert ratio.between(0.85, 1.15).all(), ratio.round(3).to_dict()


def test_long_term_effects_recover_truth(prepared, simulated):
    truth = {
        (r["group"], r["cohort"], r["school_year"], r["outcome"]): r["att"]
        for r in simulated[2][long_term_truth_key(prepared.config)]
    }
    table = estimate_long_term(prepared)
    later = table.loc[(table["group"] == "all") & (table["years_after"] >= 1)]
    assert len(later) >= 4
    checked = 0
    for row in later.itertuples():
        key = (row.group, row.cohort, row.school_year, row.outcome)
        if key not in truth or row.n_treated < 100:
            continue
        if row.outcome == "attendance_rate":
            assert abs(row.estimate - truth[key]) < 2.5, (key, row.estimate, truth[key])
        else:
            # chronic absence is a 0/100 outcome: its standard error here is 2-3 pp, so the
            # check is statistical rather than a fixed number of points
            assert abs(row.estimate - truth[key]) < 3 * row.std_error, (key, row, truth[key])
        checked += 1
    assert checked >= 6


def test_naive_before_after_overstates_the_effect(prepared, simulated):
    naive = estimate_naive(prepared)
    for rel_time in (3, 6):
        truth = simulated[2]["event_study"]["all"][str(rel_time)]
        est = naive.loc[(naive["group"] == "all") & (naive["rel_time"] == rel_time), "estimate"]
        # students picked in a low spell rebound on their own: the naive change is far larger
        assert est.item() > truth + 3.0


def test_every_visited_student_is_matched_or_reported(prepared):
    n_visited = len(prepared.panel.events)
    n_matched = int((prepared.units["treated"] == 1).sum())
    n_lost = len(prepared.matching.unmatched) + len(prepared.candidates.excluded_treated)
    assert n_matched + n_lost == n_visited


def test_matching_balances_every_covariate_within_the_caliper(simulated):
    folder, tables, _ = simulated
    config = load_config(
        "demo", data_dir=folder / "data", overrides=["matching.outside_caliper=drop"]
    )
    balance = estimate_balance(prepare(tables, config))
    used = balance.loc[balance["used_in_matching"]].dropna(subset=["smd_after"])
    assert len(used) > 20
    worst = used.loc[used["smd_after"].abs().idxmax()]
    assert abs(worst["smd_after"]) < 0.1, worst[["covariate", "smd_before", "smd_after"]]
    # and matching did the work: before matching, attendance was far apart
    assert used["smd_before"].abs().max() > 0.5


def test_a_robustness_step_that_cannot_be_estimated_says_why():
    from leapresearch.analysis.base import try_estimate
    from leapresearch.publish.narrative import describe_placebo, describe_robust

    def impossible(prepared, *, log=None):
        raise ValueError("no event-month group has a not-yet-visited comparison")

    lines: list[str] = []
    table = try_estimate(impossible, None, log=lines.append)
    assert table["note"].item().startswith("not estimable: no event-month group")
    assert lines and "impossible" in lines[0]
    assert "could not be computed" in describe_robust(table, table)
    assert "could not be estimated" in describe_placebo(table)


def test_placebo_post_months_lie_before_the_matching_window_or_it_says_why(prepared):
    import dataclasses

    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.robustness import estimate_placebo
    from leapresearch.publish.narrative import describe_placebo

    def placebo(shift: int):
        config = with_setting(prepared.config, "placebo", shift_months=shift)
        return estimate_placebo(dataclasses.replace(prepared, config=config))

    pre = prepared.config.matching.pre_months
    table = placebo(pre + 3)  # fake months 0, 1, 2 lie before the window; later ones would not
    post = table.loc[table["rel_time"] >= 0]
    assert post["rel_time"].tolist() == [0, 1, 2]
    assert (post["post_wald_df"] == 3).all() and post["post_wald_p_value"].notna().all()
    n_used, n_all = table["n_visited_placebo"].iloc[0], table["n_visited"].iloc[0]
    assert 2 <= n_used <= n_all
    assert f"It uses {n_used:,} of the {n_all:,}" in describe_placebo(table)
    inside = placebo(pre)  # every fake post month inside the matching window: no placebo
    assert "no fake post month before the" in inside["note"].item()
    too_early = placebo(10 * 40)  # before the panel starts: no history, a note, no crash
    assert "not enough history: 0 of" in too_early["note"].item()
    assert "not enough history" in describe_placebo(too_early)


def test_falsification_with_never_visited_dips_is_near_zero(prepared):
    from leapresearch.analysis.identification import estimate_falsification

    table = estimate_falsification(prepared)
    rows = table.loc[table["group"] == "all"]
    post = rows.loc[(rows["term"] == "month") & (rows["rel_time"] >= 0)]
    assert len(post) >= 10
    covers = (post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)
    assert covers.mean() >= 0.8, post
    assert (post["n_treated"] > 0).all()
    # the published verdict: the mean pseudo-effect's interval covers zero and the joint
    # test of every post month does not reject
    summary = rows.loc[rows["term"] == "post_months"].iloc[0]
    assert summary["ci_lower"] <= 0 <= summary["ci_upper"], summary
    assert summary["p_value"] >= 0.05, summary
    assert summary["df"] == len(post)


def test_doubly_robust_rows_sit_with_the_matched_estimate_and_nearer_the_truth(
    prepared, simulated, event_study_table
):
    """The default Callaway-Sant'Anna rows (doubly robust, never-visited comparisons,
    reference month -1) are comparable with the matched estimate and much nearer the
    truth than the unconditional rows (students visited later, no covariates), which are
    published beside them. Both designs draw comparisons from students never visited in
    the whole window (issue 12, item 4), so neither is held to the truth more tightly."""
    from leapresearch.analysis.robustness import estimate_robust

    table = estimate_robust(prepared)
    assert set(table["estimator"]) == {"dr", "unconditional"}
    dr = table.loc[table["estimator"] == "dr"].set_index("rel_time")
    unc = table.loc[table["estimator"] == "unconditional"].set_index("rel_time")
    assert (dr["comparison"] == "never_visited").all()
    assert (unc["comparison"] == "not_yet_visited").all()
    assert dr.loc[-1, "estimate"] == 0 and np.isnan(dr.loc[-1, "std_error"])
    for rel_time in HEADLINE:
        truth = simulated[2]["event_study"]["all"][str(rel_time)]
        matched, _ = estimate_at(event_study_table, "all", rel_time)
        est = dr.loc[rel_time, "estimate"]
        assert abs(est - matched) < 1.5, (rel_time, est, matched)
        assert abs(est - truth) < 3, (rel_time, est, truth)
        assert abs(est - truth) < abs(unc.loc[rel_time, "estimate"] - truth), rel_time


def test_errors_are_clustered_by_school_unless_the_sample_has_too_few(prepared, event_study_fit):
    import dataclasses

    from leapresearch.analysis.fitting import MIN_SCHOOL_CLUSTERS, cluster_level

    assert prepared.config.analysis.cluster == "school"  # params/base.yaml
    assert prepared.units["school"].nunique() >= MIN_SCHOOL_CLUSTERS
    assert cluster_level(prepared) == "school"
    assert {fit.cluster for fit in event_study_fit[1].values()} == {"school"}
    schools = prepared.units["school"].to_numpy()
    few = dataclasses.replace(
        prepared, units=prepared.units.assign(school=schools % (MIN_SCHOOL_CLUSTERS - 1))
    )
    assert cluster_level(few) == "student"
    # the report's methods box says which level the errors were clustered by
    from leapresearch.analysis.runner import Evaluation
    from leapresearch.publish.narrative import methods_text

    used = Evaluation(prepared=few, tables={}, event_studies={}).cluster
    stated = " ".join(methods_text(few.config, cluster=used))
    assert "clustered by student (the parameters ask for school;" in stated
    assert "clustered by school;" in " ".join(methods_text(prepared.config, cluster="school"))


def test_the_composition_table_sets_each_month_of_both_samples_side_by_side():
    # notebook 03 shows the full and the balanced sample month by month; the month column
    # must be in the table (a pivot's index is not shown)
    import pandas as pd

    from leapresearch.publish.tables import composition_table

    balanced = pd.DataFrame(
        {
            "group": "all",
            "sample": ["full", "full", "balanced", "balanced"],
            "rel_time": [1, -2, -2, 1],
            "estimate": [5.0, 0.5, 0.25, 4.0],
            "n_treated": [90, 100, 80, 80],
        }
    )
    table = composition_table(balanced)
    assert list(table.columns) == [
        "rel_time",
        "estimate_full",
        "estimate_balanced",
        "difference",
        "n_treated_full",
        "n_treated_balanced",
    ]
    assert table["rel_time"].tolist() == [-2, 1]
    assert table["estimate_full"].tolist() == [0.5, 5.0]
    assert table["difference"].tolist() == [0.25, 1.0]
    assert table["n_treated_full"].tolist() == [100, 90]


def test_pretrend_tests_of_a_group_with_too_few_schools_are_empty(prepared):
    from leapresearch.analysis.event_studies import estimate_event_studies, pretrend_tests

    _, fits = estimate_event_studies(prepared, subgroups=("district",))
    table = pretrend_tests(fits).set_index("group")
    few = [g for g, fit in fits.items() if fit.n_clusters - 1 < table.loc[g, "df"]]
    assert few, "the test data have no group with fewer schools than pre-period terms"
    assert table.loc[few, ["statistic", "p_value"]].isna().all().all()
    assert table.loc[few, "not_testable"].str.startswith("not testable: 11 terms with").all()
    tested = table.dropna(subset=["statistic"])
    assert (tested["statistic"] >= 0).all() and (tested["statistic"] < 1e6).all()
    # with the parameters, groups with few schools take the wild cluster bootstrap's p-value
    from leapresearch.estimation.multiple_testing import INFERENCE_F, INFERENCE_WILD

    wild = pretrend_tests(fits, prepared.config).set_index("group")
    small = tested.index[tested["clusters"] < prepared.config.inference.few_clusters]
    assert len(small), "the test data have no testable group with few schools"
    assert (wild.loc[small, "inference"] == INFERENCE_WILD).all()
    assert (wild.drop(index=small).dropna(subset=["statistic"])["inference"] == INFERENCE_F).all()
    np.testing.assert_array_equal(wild["statistic"], table["statistic"])
    assert wild.loc[few, "p_value"].isna().all()


def test_students_outside_the_caliper_get_the_nearest_comparison_of_their_whole_stratum(prepared):
    # the rescue reads only the far students' strata: the same pairs as a nearest match of
    # those students against every comparison candidate of every stratum
    import pandas as pd

    from leapresearch.analysis.sample import run_matching
    from leapresearch.design.matching import nearest_neighbor_match

    frame = prepared.candidates.frame
    result = prepared.matching
    far = result.settings["matched_outside_caliper"]
    assert len(far) >= 20  # enough far students in several strata to tell
    again = run_matching(prepared.candidates, prepared.config, pscore=result.pscore)
    pd.testing.assert_frame_equal(again.pairs, result.pairs)
    flag = frame[["stack", "student"]].merge(far.assign(_far=True), how="left")["_far"].notna()
    every = frame.loc[~frame["treated"].to_numpy(bool) | flag.to_numpy(bool)]
    exact = ("stack", *prepared.config.matching.exact)
    brute = nearest_neighbor_match(
        every, result.pscore.loc[every.index], exact=exact, ratio=1, caliper=None
    )
    keys = ["stack", "treated_student"]
    rescued = result.pairs.merge(far.rename(columns={"student": "treated_student"}), on=keys)
    order = [*keys, "rank", "comparison_student"]
    pd.testing.assert_frame_equal(
        rescued.sort_values(order, ignore_index=True),
        brute.pairs.sort_values(order, ignore_index=True),
    )


def test_event_study_table_says_at_which_months_the_outcome_was_adjusted(
    event_study_table, prepared, monkeypatch
):
    """``adjustment`` is ``group`` exactly where the group has its own slopes; below the
    adjustment's minimum with no fallback a group is fitted unadjusted and says so."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.fitting import fit_group, group_sample, headline_weights
    from leapresearch.design import adjustment

    config = prepared.config
    window, reference = config.analysis.window, config.analysis.reference
    checked = 0
    for label, weights in headline_weights(prepared):
        rows = event_study_table.loc[event_study_table["group"] == label]
        if rows.empty:
            continue
        raw = group_sample(prepared, prepared.stacked, weights, window=window, adjust=False)
        slopes = adjustment.trend_slopes(
            raw, prepared.unit_x, outcome="attendance_pp", window=window, reference=reference
        )
        assert set(rows.loc[rows["adjustment"].eq("group"), "rel_time"]) == set(slopes), label
        checked += 1
    assert checked >= 3
    weights = prepared.units["weight"].to_numpy(np.float64)
    no_fallback = dataclasses.replace(
        prepared, config=with_setting(config, "analysis", adjustment_fallback="none")
    )
    monkeypatch.setattr(adjustment, "MIN_UNITS_PER_COVARIATE", 10**9)
    below = fit_group(no_fallback, prepared.stacked, weights)
    unadjusted = fit_group(prepared, prepared.stacked, weights, adjust=False)
    assert below.adjusted_rel_times == () == unadjusted.adjusted_rel_times
    assert below.pooled_rel_times == () == unadjusted.pooled_rel_times
    np.testing.assert_array_equal(below.coefficients, unadjusted.coefficients)
    monkeypatch.undo()
    adjusted = fit_group(prepared, prepared.stacked, weights)
    assert len(adjusted.adjusted_rel_times) == len(adjusted.coefficients)
    assert not np.allclose(adjusted.coefficients, unadjusted.coefficients)


def test_a_group_short_of_comparisons_takes_the_whole_matched_samples_slopes(prepared, monkeypatch):
    """``adjustment_fallback: pooled``: the months a grade band cannot fit its own slopes
    for take those of every visited student's units, recomputed here by hand."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.fitting import (
        cluster_level,
        fit_group,
        group_sample,
        headline_weights,
    )
    from leapresearch.design import adjustment
    from leapresearch.estimation.event_study import event_study

    config = prepared.config
    assert config.analysis.adjustment_fallback == "pooled"  # the default this checks
    window, reference = config.analysis.window, config.analysis.reference
    # a minimum the grade band meets in some months only (every visited student's in all)
    monkeypatch.setattr(adjustment, "MIN_UNITS_PER_COVARIATE", 600)
    weights = dict(headline_weights(prepared))["grade_band:PK-5"]
    fit = fit_group(prepared, prepared.stacked, weights)
    assert fit.pooled_rel_times and fit.adjusted_rel_times
    assert not set(fit.pooled_rel_times) & set(fit.adjusted_rel_times)
    every = prepared.units["weight"].to_numpy(np.float64)
    raw = group_sample(prepared, prepared.stacked, weights, window=window, adjust=False)
    pooled_raw = group_sample(prepared, prepared.stacked, every, window=window, adjust=False)
    kw = {"outcome": "attendance_pp", "window": window, "reference": reference}
    own = adjustment.trend_slopes(raw, prepared.unit_x, **kw)
    pooled = adjustment.trend_slopes(pooled_raw, prepared.unit_x, **kw)
    assert set(own) == set(fit.adjusted_rel_times)
    rel = np.clip(raw["rel_time"].to_numpy(), *window)
    x = prepared.unit_x[raw["unit"].to_numpy()]
    y = raw["attendance_pp"].to_numpy(np.float64).copy()
    for r in np.unique(rel):
        delta = own.get(int(r), pooled.get(int(r)))
        if r != reference and delta is not None:
            y[rel == r] -= x[rel == r] @ delta
    by_hand = event_study(
        raw.assign(attendance_pp=y),
        window=window,
        reference=reference,
        cluster=cluster_level(prepared),
    )
    np.testing.assert_allclose(fit.coefficients, by_hand.coefficients, rtol=0, atol=1e-9)
    # without the fallback those months stay unadjusted: other estimates
    none = dataclasses.replace(
        prepared, config=with_setting(config, "analysis", adjustment_fallback="none")
    )
    plain = fit_group(none, prepared.stacked, weights)
    assert plain.pooled_rel_times == ()
    months = list(fit.pooled_rel_times)
    assert not np.allclose(fit.coefficients.loc[months], plain.coefficients.loc[months])


def test_long_term_table_says_which_school_years_went_unadjusted(prepared, monkeypatch):
    """``adjustment`` of ``long_term.csv``: ``group`` where a school year got its own
    slopes; below the adjustment's minimum, without a fallback, every cell is the
    unadjusted one and says so."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.design import adjustment

    config = with_setting(prepared.config, "long_term", outcomes=("attendance_rate",))
    attendance = dataclasses.replace(prepared, config=config)
    no_fallback = dataclasses.replace(
        prepared, config=with_setting(config, "analysis", adjustment_fallback="none")
    )
    off = dataclasses.replace(
        prepared, config=with_setting(config, "long_term", regression_adjustment=False)
    )
    default = estimate_long_term(attendance)
    largest = default["cohort"].eq(
        default.loc[default["group"].eq("all")].groupby("cohort")["n_treated"].max().idxmax()
    )
    assert default.loc[largest & default["group"].eq("all"), "adjustment"].eq("group").all()
    unadjusted = estimate_long_term(off)
    assert unadjusted["adjustment"].eq("none").all()
    monkeypatch.setattr(adjustment, "MIN_UNITS_PER_COVARIATE", 10**9)
    below = estimate_long_term(no_fallback)
    assert below["adjustment"].eq("none").all()
    key = ["group", "cohort", "years_after"]
    np.testing.assert_array_equal(
        below.sort_values(key)["estimate"].to_numpy(),
        unadjusted.sort_values(key)["estimate"].to_numpy(),
    )
    assert not np.allclose(
        default.sort_values(key)["estimate"].to_numpy(),
        unadjusted.sort_values(key)["estimate"].to_numpy(),
    )
