"""The whole-procedure cluster bootstrap (issue 27, items 1-2, 4).

On the 5% simulated sample: a draw that takes every school once rebuilds the run's matched
sample and estimates bit for bit; the draws are the same numbers with one worker, two
workers and a two-worker Dask cluster; the order of the schools (the draws' frame) comes
from their content, not from their ids; and the columns of ``event_study.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_PROCEDURE_DRAWS

DRAWS = 4


@pytest.fixture(scope="module")
def prepared(sim_data: Path):
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables

    overrides = [f"inference.procedure_draws={TEST_PROCEDURE_DRAWS}"]
    overrides += ["inference.procedure_scheme=resample"]  # the tests below resample schools
    config = load_config("demo", data_dir=sim_data, overrides=overrides)
    return prepare(read_raw_tables(sim_data), config)


def _assert_the_run_s_estimates(prepared, drawn: dict) -> None:
    """``drawn`` (group -> path) holds the headline groups with the run's estimates."""
    from leapresearch.analysis.event_studies import estimate_event_studies

    table, _ = estimate_event_studies(prepared, subgroups=("grade_band",))
    assert set(drawn) >= {"all", "grade_band:PK-5", "grade_band:6-12"}
    for label, est in drawn.items():
        rows = table.loc[table["group"] == label].set_index("rel_time")["estimate"]
        # equal up to the order of floating-point sums (rows are in another order)
        np.testing.assert_allclose(
            est.reindex(rows.index).to_numpy(), rows.to_numpy(), rtol=1e-9, atol=1e-9
        )


def test_every_school_once_gives_back_the_matched_sample_and_the_estimates(prepared):
    from leapresearch.analysis import procedure
    from leapresearch.analysis.sample import prepare_matched

    data = procedure.procedure_data(prepared)
    panel, candidates = procedure.resampled_inputs(data, np.ones(data.n_clusters, np.int64))
    again = prepare_matched(panel, candidates, prepared.config)
    # the same matched units, students renumbered in the order of their content
    assert len(again.units) == len(prepared.units)
    assert again.units["treated"].sum() == prepared.units["treated"].sum()
    np.testing.assert_array_equal(
        np.sort(again.units["weight"].to_numpy()), np.sort(prepared.units["weight"].to_numpy())
    )
    drawn = procedure.headline_fits(again)
    _assert_the_run_s_estimates(prepared, drawn)


def test_a_school_drawn_twice_is_two_schools_of_distinct_students(prepared):
    from leapresearch.analysis import procedure

    data = procedure.procedure_data(prepared)
    counts = procedure.draw_counts(data.seed, 0, data.n_clusters)
    assert counts.sum() == data.n_clusters and counts.max() >= 2 and (counts == 0).any()
    panel, candidates = procedure.resampled_inputs(data, counts)
    frame = candidates.frame
    assert len(frame) == int(counts[data.row_cluster].sum())
    assert not frame.duplicated(["stack", "student"]).any()
    # the rows of a school drawn twice: two schools, each student twice under two codes
    cluster = int(np.flatnonzero(counts >= 2)[0])
    rows = data.candidates.frame.loc[data.row_cluster == cluster]
    covs = data.candidates.covariates
    hits = frame.merge(rows[["stack", *covs]].drop_duplicates(), on=["stack", *covs])
    assert hits["school"].nunique() == counts[cluster]
    assert hits["student"].nunique() == counts[cluster] * rows["student"].nunique()
    new = hits["student"].to_numpy()
    assert np.isin(
        np.nan_to_num(panel.rates[new], nan=-1),
        np.nan_to_num(prepared.panel.rates[rows["student"].to_numpy()], nan=-1),
    ).all()
    assert panel.n_students == panel.rates.shape[0] == frame["student"].nunique()


def test_draws_are_the_same_with_one_or_two_workers_and_on_a_dask_cluster(prepared):
    from distributed import LocalCluster

    from leapresearch.analysis import procedure

    data = procedure.procedure_data(prepared)
    one = procedure.procedure_draws(prepared, DRAWS, workers=1, data=data)
    two = procedure.procedure_draws(prepared, DRAWS, workers=2, data=data)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        dask = procedure.procedure_draws(
            prepared, DRAWS, scheduler=cluster.scheduler_address, data=data
        )
    assert set(one) == set(two) == set(dask) and "all" in one
    for label, frame in one.items():
        assert len(frame) == DRAWS and frame.notna().any(axis=None)
        pd.testing.assert_frame_equal(two[label], frame, check_exact=True)
        pd.testing.assert_frame_equal(dask[label], frame, check_exact=True)
    # the draws differ from one another and from the estimate: the resampling is real
    assert not np.allclose(one["all"].iloc[0], one["all"].iloc[1], equal_nan=True)


def test_the_draws_start_every_stacks_score_from_the_full_samples_fit(prepared):
    # the shortcuts of the draws (fits started from the full sample's coefficients, the
    # full sample's separating directions) change the work, not the draws' estimates
    import dataclasses

    from leapresearch.analysis import procedure
    from leapresearch.design.matching import separation

    data = procedure.procedure_data(prepared)
    fits = prepared.matching.settings["fit_diagnostics"]
    assert set(data.pscore_start) == {f["group"] for f in fits if f["converged"]}
    assert len(data.pscore_start) >= len(fits) - 1
    plain = dataclasses.replace(data, pscore_start={}, separating={})
    for draw in range(2):
        separation._SEPARATING.clear()
        fast = procedure.draw_estimates(data, draw)
        separation._SEPARATING.clear()
        slow = procedure.draw_estimates(plain, draw)
        assert set(fast) == set(slow) and "all" in fast
        for label in fast:
            # equal unless a score's last decimal moves a tie (measured: never, on the
            # demo's tables and four draws at the districts' scale)
            np.testing.assert_allclose(fast[label], slow[label], rtol=1e-9, atol=1e-9)


def test_schools_are_ordered_by_their_content_not_their_codes(prepared):
    import dataclasses

    from leapresearch.analysis import procedure

    panel, frame = prepared.panel, prepared.candidates.frame
    rng = np.random.default_rng(5)
    student = rng.permutation(panel.n_students)  # old code -> new code
    n_school = int(panel.roster["school"].max()) + 1
    school = rng.permutation(n_school)
    rates = np.empty_like(panel.rates)
    rates[student] = panel.rates
    relabelled = dataclasses.replace(
        panel,
        rates=rates,
        events=panel.events.assign(student=student[panel.events["student"]]),
        roster=panel.roster.assign(
            student=student[panel.roster["student"]], school=school[panel.roster["school"]]
        ).iloc[rng.permutation(len(panel.roster))],
    )
    shuffled = frame.assign(student=student[frame["student"]], school=school[frame["school"]]).iloc[
        rng.permutation(len(frame))
    ]
    keys = procedure.cluster_keys(panel, frame, "school")
    again = procedure.cluster_keys(relabelled, shuffled, "school")
    assert keys.nunique() > 10
    assert sorted(keys) == sorted(again)
    np.testing.assert_array_equal(again.loc[school[keys.index]].to_numpy(), keys.to_numpy())


@pytest.fixture(scope="module")
def bayesian(prepared):
    import dataclasses

    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.procedure import procedure_data

    config = with_setting(prepared.config, "inference", procedure_scheme="bayesian")
    return procedure_data(dataclasses.replace(prepared, config=config))


def test_a_bayesian_draw_of_weights_one_gives_back_the_estimates(prepared, bayesian):
    # the Bayesian scheme keeps every school once (students numbered by content) and weights
    # the propensity fits and the units; with every weight 1 that is the run itself
    from leapresearch.analysis import procedure
    from leapresearch.analysis.sample import prepare_matched

    data = bayesian
    assert data.scheme == "bayesian" and len(data.candidates.frame) == len(
        prepared.candidates.frame
    )
    plain = procedure.procedure_data(prepared)
    once_panel, once = procedure.resampled_inputs(plain, np.ones(plain.n_clusters, np.int64))
    pd.testing.assert_frame_equal(data.candidates.frame, once.frame)
    assert once_panel.n_students == data.panel.n_students
    # each row keeps its school's cluster (school codes are the clusters' positions)
    np.testing.assert_array_equal(data.candidates.frame["school"].to_numpy(), data.row_cluster)
    ones = np.ones(data.n_clusters)
    again = prepare_matched(
        data.panel, data.candidates, data.config, pscore_weights=ones[data.row_cluster]
    )
    drawn = procedure.headline_fits(again, unit_mass=np.ones(len(again.units)))
    _assert_the_run_s_estimates(prepared, drawn)


def test_the_content_ordered_data_number_students_by_their_rank(prepared, bayesian):
    # its student codes are the content ranks: resampling it gives the original's draws
    from leapresearch.analysis import procedure

    np.testing.assert_array_equal(bayesian.student_rank, np.arange(bayesian.panel.n_students))
    plain = procedure.procedure_data(prepared)
    counts = procedure.draw_counts(plain.seed, 3, plain.n_clusters)
    again = procedure.resampled_inputs(bayesian, counts)[1].frame.drop(columns="school")
    pd.testing.assert_frame_equal(
        again, procedure.resampled_inputs(plain, counts)[1].frame.drop(columns="school")
    )


def test_bayesian_draws_weight_every_school_and_do_not_depend_on_the_workers(prepared, bayesian):
    from leapresearch.analysis import procedure

    weights = procedure.draw_weights(bayesian.seed, 0, bayesian.n_clusters)
    assert (weights > 0).all() and weights.size == bayesian.n_clusters
    one = procedure.procedure_draws(prepared, DRAWS, workers=1, data=bayesian)
    two = procedure.procedure_draws(prepared, DRAWS, workers=2, data=bayesian)
    assert set(one) == set(two) and "all" in one
    for label, frame in one.items():
        assert len(frame) == DRAWS and frame.notna().any(axis=None)
        pd.testing.assert_frame_equal(two[label], frame, check_exact=True)
    assert not np.allclose(one["all"].iloc[0], one["all"].iloc[1], equal_nan=True)
    # not the resampling scheme's draws
    resampled = procedure.procedure_draws(prepared, 2, workers=1)
    assert not np.allclose(one["all"].iloc[0], resampled["all"].iloc[0], equal_nan=True)


def test_bayesian_draws_with_the_shared_plan_are_the_same_numbers(bayesian):
    # a block of draws builds the weight-free part of the propensity fits once, and
    # their terms at the common start by school (shared_plan); its draws are those
    # computed from scratch, bit for bit (the first step's sums run in another order,
    # about 1e-16 apart; the scores are rounded to 1e-9 and fitted to far below that)
    from leapresearch.analysis import procedure

    plan = procedure.shared_plan(bayesian)
    assert plan is not None and len(plan.groups) > 1
    for draw in (0, 3):
        fast = procedure.draw_estimates(bayesian, draw, plan=plan)
        slow = procedure.draw_estimates(bayesian, draw)
        assert set(fast) == set(slow) and "all" in fast
        for label, est in slow.items():
            pd.testing.assert_series_equal(fast[label], est, check_exact=True)


def test_a_bayesian_draw_weights_the_censoring_hazard_by_the_draw(bayesian):
    # with censoring weights on, a draw re-fits the censoring hazard with each comparison
    # weighted as in the draw's estimate; masses of 1 give the run's hazard back
    import dataclasses

    from leapresearch.analysis import procedure
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.sample import prepare_matched

    config = with_setting(bayesian.config, "comparison_pool", censoring_weights=True)
    data = dataclasses.replace(bayesian, config=config)

    def censoring(unit_mass):
        again = prepare_matched(data.panel, data.candidates, config, unit_mass=unit_mass)
        return again.stacked["censoring_weight"].to_numpy()

    plain = censoring(None)
    assert (plain > 1).any()  # later-visited comparisons are censored in these data
    np.testing.assert_allclose(censoring(lambda u: np.ones(len(u))), plain, rtol=1e-12)
    weight = procedure.draw_weights(data.seed, 2, data.n_clusters)
    drawn = censoring(lambda u: weight[data.code_cluster[u["school"].to_numpy()]])
    assert drawn.shape == plain.shape and np.abs(drawn - plain).max() > 1e-3
    estimates = procedure.draw_estimates(data, 2, plan=procedure.shared_plan(data))
    assert np.isfinite(estimates["all"]).all()


def test_resampled_draws_have_no_shared_plan(prepared):
    from leapresearch.analysis import procedure

    data = procedure.procedure_data(prepared)
    assert procedure.shared_plan(data) is None
    plan = procedure.shared_plan(procedure.content_ordered(data))
    with pytest.raises(ValueError, match="Bayesian scheme's draws only"):
        procedure.draw_estimates(data, 0, plan=plan)


def test_procedure_intervals_from_known_draws():
    from leapresearch.analysis.procedure import procedure_intervals

    rng = np.random.default_rng(3)
    months = [-2, 0, 1, 2]
    est = pd.Series([0.0, 1.0, 2.0, 3.0], index=months)
    draws = pd.DataFrame(rng.normal(size=(4000, 4)) * [1.0, 2.0, 2.0, 0.5], columns=months)
    tab = procedure_intervals(est, draws, band_rel_times=[0, 1, 2], alpha=0.05).set_index(
        "rel_time"
    )
    np.testing.assert_allclose(tab["procedure_std_error"], [1.0, 2.0, 2.0, 0.5], rtol=0.06)
    half = tab["procedure_ci_upper"] - est
    np.testing.assert_allclose(half, 1.959964 * tab["procedure_std_error"])
    crit = (tab["procedure_band_upper"] - est) / tab["procedure_std_error"]
    assert np.isnan(crit.loc[-2]) and 2.2 < crit.loc[0] < 2.6  # sup of 3 independent |N(0,1)|
    # a near-singular draw (an estimate of 1e7 pp) is not counted: 20 draws give the
    # intervals of the 19 others
    few = draws.iloc[:20].copy()
    few.iloc[7, 2] = 1e7
    got = procedure_intervals(est, few, band_rel_times=[0, 1, 2], alpha=0.05)
    kept = procedure_intervals(est, few.drop(index=7), band_rel_times=[0, 1, 2], alpha=0.05)
    pd.testing.assert_frame_equal(got, kept, check_exact=True)
    assert got["procedure_band_upper"].max() < 50
    # a group estimated in too few draws gets no interval
    draws.iloc[: len(draws) // 5, 1] = np.nan
    empty = procedure_intervals(est, draws, band_rel_times=[0, 1, 2], alpha=0.05)
    assert empty.drop(columns="rel_time").isna().all(axis=None)


def test_event_study_table_has_procedure_columns_for_the_headline_groups(prepared):
    from leapresearch.analysis.base import PROCEDURE_COLUMNS
    from leapresearch.analysis.event_studies import estimate_event_studies

    table, _ = estimate_event_studies(prepared, subgroups=("grade_band", "cohort"), procedure=True)
    head = table["group"].eq("all") | table["group"].str.startswith("grade_band:")
    assert table.loc[~head, PROCEDURE_COLUMNS].isna().all(axis=None)
    rows = table.loc[table["group"] == "all"].set_index("rel_time")
    assert rows["procedure_std_error"].notna().all() and (rows["procedure_std_error"] > 0).all()
    band = rows["procedure_band_lower"].notna()
    assert (
        band.sum() >= 10
        and (rows.loc[band, "procedure_band_lower"] < rows.loc[band, "procedure_ci_lower"]).all()
    )
    off = prepared.config.model_copy(
        update={"inference": prepared.config.inference.model_copy(update={"procedure_draws": 0})}
    )
    import dataclasses

    bare, _ = estimate_event_studies(
        dataclasses.replace(prepared, config=off), subgroups=(), procedure=True
    )
    assert bare[PROCEDURE_COLUMNS].isna().all(axis=None)
    pd.testing.assert_frame_equal(
        bare.drop(columns=PROCEDURE_COLUMNS),
        table.loc[table["group"] == "all"].drop(columns=PROCEDURE_COLUMNS).reset_index(drop=True),
        check_exact=True,
    )


def test_the_inference_sentence_calls_the_fixed_step_errors_conditional_and_reads_the_ratio():
    from leapresearch.publish.narrative import describe_inference

    months = np.arange(-2, 12)
    post = months >= 0
    est = np.where(post, 5.0, 0.0)
    table = pd.DataFrame(
        {
            "group": "all",
            "rel_time": months,
            "estimate": est,
            "std_error": 1.0,
            "boot_std_error": 1.0,
            "band_lower": np.where(post, est - 2.5, np.nan),
            "band_upper": np.where(post, est + 2.5, np.nan),
            "procedure_std_error": np.where(months == 3, 1.5, 1.25),
            "procedure_band_lower": np.where(post, est - 3.0 * 1.25, np.nan),
            "procedure_band_upper": np.where(post, est + 3.0 * 1.25, np.nan),
        }
    )
    text = describe_inference(table)
    assert "Both errors are conditional" in text
    assert "1.25 to 1.50 times the analytic ones" in text
    assert "whole-procedure band for all visited students lies above zero in all 12" in text
    bare = describe_inference(table.drop(columns=["procedure_std_error"]))
    assert "conditional" in bare and "whole-procedure" not in bare


def test_a_process_builds_the_shared_plan_once_for_all_its_blocks(bayesian, monkeypatch):
    # the blocks of one data in one process (a worker, or the run itself with one worker)
    # share one plan, built for the first; other data (another token) get their own; the
    # draws are those of blocks each building their own plan
    from leapresearch.analysis import procedure

    built = []
    real = procedure.shared_plan

    def counted(data):
        built.append(data.token)
        return real(data)

    monkeypatch.setattr(procedure, "shared_plan", counted)
    procedure._PLANS.clear()
    shared = [procedure._block(bayesian, (d,)) for d in (0, 1, 2)]
    assert built == [bayesian.token]
    other = procedure.content_ordered(bayesian)
    assert other.token != bayesian.token
    procedure._block(other, (0,))
    assert built == [bayesian.token, other.token]
    procedure._PLANS.clear()
    for d, block in zip((0, 1, 2), shared, strict=True):
        fresh = procedure.draw_estimates(bayesian, d, plan=real(bayesian))
        assert block[0].keys() == fresh.keys()
        assert all(block[0][g].equals(fresh[g]) for g in fresh)
