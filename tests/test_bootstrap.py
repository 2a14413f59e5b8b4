"""Multiplier bootstrap of the event-study path: hand cases and invariances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leapresearch.estimation.bootstrap import multiplier_bootstrap

REL_TIMES = [0, 1, 2]


def hand_influence(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """``psi_c`` of ``n`` clusters on three correlated months (as a fit's influence)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(n, 1))
    own = rng.normal(size=(n, 3))
    # month 0: noisy; months 1 and 2 share most of their variation (correlation ~0.8)
    psi = np.column_stack(
        [own[:, 0], common[:, 0] + 0.5 * own[:, 1], common[:, 0] + 0.5 * own[:, 2]]
    )
    psi *= np.array([0.02, 0.05, 0.08]) / np.sqrt(n)
    return pd.DataFrame(psi, index=pd.Index(1000 + np.arange(n), name="cluster"), columns=REL_TIMES)


def sup_t_quantile(sigma: np.ndarray, alpha: float, draws: int = 400_000) -> float:
    """The 1 - alpha quantile of max_e |Z_e| / sd_e, Z ~ N(0, sigma), by simulation."""
    z = np.random.default_rng(99).multivariate_normal(np.zeros(len(sigma)), sigma, size=draws)
    return float(np.quantile(np.max(np.abs(z) / np.sqrt(np.diag(sigma)), axis=1), 1 - alpha))


def test_standard_errors_converge_to_the_analytic_ones():
    psi = hand_influence()
    analytic = np.sqrt(np.diag(psi.to_numpy().T @ psi.to_numpy()))
    boot = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, draws=20_000, seed=1)
    np.testing.assert_allclose(boot.std_errors.to_numpy(), analytic, rtol=0.03)
    assert list(boot.std_errors.index) == REL_TIMES


def test_band_critical_value_is_the_sup_of_gaussian_quantile():
    psi = hand_influence()
    sigma = psi.to_numpy().T @ psi.to_numpy()
    boot = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, draws=20_000, seed=2)
    pointwise = stats.norm.ppf(0.975)
    bonferroni = stats.norm.ppf(1 - 0.05 / (2 * len(REL_TIMES)))
    assert pointwise < boot.critical_value < bonferroni
    # correlated months: the exact sup-t value lies well below Bonferroni's
    exact = sup_t_quantile(sigma, 0.05)
    assert exact < bonferroni - 0.03
    assert boot.critical_value == pytest.approx(exact, abs=0.04)


def test_band_over_one_month_is_the_pointwise_interval():
    psi = hand_influence()
    boot = multiplier_bootstrap(psi, band_rel_times=[1], draws=20_000, seed=4)
    assert boot.band_rel_times == (1,)
    assert boot.critical_value == pytest.approx(stats.norm.ppf(0.975), abs=0.04)


def test_table_puts_the_band_on_the_band_months_only():
    psi = hand_influence()
    boot = multiplier_bootstrap(psi, band_rel_times=[1, 2, 7], draws=999, seed=0)
    assert boot.band_rel_times == (1, 2)  # months absent from the influence are left out
    est = pd.Series([0.5, 1.0, 2.0], index=REL_TIMES)
    tab = boot.table(est).set_index("rel_time")
    se, c = boot.std_errors, boot.critical_value
    assert tab.loc[0, ["band_lower", "band_upper"]].isna().all()
    for r in (1, 2):
        assert tab.loc[r, "band_lower"] == pytest.approx(est[r] - c * se[r])
        assert tab.loc[r, "band_upper"] == pytest.approx(est[r] + c * se[r])
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(tab["boot_ci_upper"] - tab["boot_ci_lower"], 2 * z * se.to_numpy())
    assert (
        (tab["band_upper"] - tab["band_lower"])
        .dropna()
        .gt((tab["boot_ci_upper"] - tab["boot_ci_lower"]).loc[[1, 2]])
        .all()
    )


def _bytes(boot) -> bytes:
    return boot.std_errors.to_numpy().tobytes() + np.float64(boot.critical_value).tobytes()


def test_same_seed_same_output_other_seed_other_draws():
    psi = hand_influence()
    a = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, seed=5)
    b = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, seed=5)
    c = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, seed=6)
    assert _bytes(a) == _bytes(b)
    assert _bytes(a) != _bytes(c)


@pytest.mark.parametrize("shuffle_seed", [0, 1, 2])
def test_shuffled_and_relabelled_clusters_give_identical_output(shuffle_seed):
    psi = hand_influence(n=300)
    # two clusters whose influence agrees to rounding noise, and two exact duplicates:
    # their order must not depend on the row order or the labels either
    psi.iloc[1] = psi.iloc[0].to_numpy() * (1 + 1e-13)
    psi.iloc[3] = psi.iloc[2].to_numpy()
    rng = np.random.default_rng(shuffle_seed)
    shuffled = psi.iloc[rng.permutation(len(psi))]
    shuffled.index = pd.Index(rng.permutation(10**6)[: len(psi)], name="other")
    a = multiplier_bootstrap(psi, band_rel_times=REL_TIMES, seed=7)
    b = multiplier_bootstrap(shuffled, band_rel_times=REL_TIMES, seed=7)
    assert _bytes(a) == _bytes(b)


def test_too_few_draws_are_refused():
    with pytest.raises(ValueError, match="draws must be at least 100"):
        multiplier_bootstrap(hand_influence(), band_rel_times=REL_TIMES, draws=50)


# --------------------------------------------------------------------------------------
# event_study.csv rows of one group
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group_fit():
    from leapresearch.estimation.event_study import event_study
    from leapresearch.estimation.multiple_testing import cluster_influence, with_influence
    from tests.test_event_study import make_panel

    df = make_panel(11, treated_per_stack=12)
    res = dataclasses.replace(
        event_study(df, window=(-3, 4)), adjusted_rel_times=(), pooled_rel_times=()
    )
    return with_influence(res, cluster_influence(df, res))


def _rows(fit, **inference):
    from leapresearch.analysis.event_studies import group_event_table
    from leapresearch.config import load_config

    config = load_config("demo", overrides={"inference": inference})
    return group_event_table(fit, config).set_index("rel_time"), config


def test_event_rows_carry_the_bootstrap_and_the_band_over_post_months(group_fit):
    rows, config = _rows(group_fit)
    assert group_fit.reference not in rows.index
    band = rows[["band_lower", "band_upper"]].notna().all(axis=1)
    # post-visit months before the binned end point (4 means ">= 4")
    assert band[band].index.tolist() == [0, 1, 2, 3]
    assert rows.loc[~band, ["band_lower", "band_upper"]].isna().all(axis=None)
    assert rows["boot_std_error"].notna().all()
    analytic = np.sqrt(np.diag(group_fit.influence.to_numpy().T @ group_fit.influence.to_numpy()))
    np.testing.assert_allclose(
        rows["boot_std_error"].to_numpy(),
        pd.Series(analytic, index=group_fit.influence.columns).reindex(rows.index),
        rtol=0.15,
    )
    post = rows.loc[band]
    assert (post["band_lower"] < post["ci_lower"]).all()
    assert (post["band_upper"] > post["ci_upper"]).all()
    # the analytic intervals are the default, and the seed comes from the parameters
    tab = group_fit.table(alpha=config.analysis.alpha).set_index("rel_time")
    assert (rows["ci_lower"] == tab.loc[rows.index, "ci_lower"]).all()
    again, _ = _rows(group_fit)
    other, _ = _rows(group_fit, seed=config.inference.seed + 1)
    pd.testing.assert_frame_equal(rows, again)
    assert not rows["boot_std_error"].equals(other["boot_std_error"])


def test_bootstrap_intervals_replace_the_analytic_ones_when_asked(group_fit):
    rows, _ = _rows(group_fit, intervals="bootstrap")
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(rows["ci_lower"], rows["estimate"] - z * rows["boot_std_error"])
    np.testing.assert_allclose(rows["ci_upper"], rows["estimate"] + z * rows["boot_std_error"])
    analytic, _ = _rows(group_fit)
    pd.testing.assert_series_equal(rows["std_error"], analytic["std_error"])


def test_no_band_when_switched_off_and_no_bootstrap_without_influence(group_fit):
    from leapresearch.estimation.multiple_testing import with_influence

    rows, _ = _rows(group_fit, band=False)
    assert rows[["band_lower", "band_upper"]].isna().all(axis=None)
    assert rows["boot_std_error"].notna().all()
    bare, _ = _rows(with_influence(group_fit, None))
    assert bare[["boot_std_error", "band_lower", "band_upper"]].isna().all(axis=None)
    assert bare["estimate"].notna().all()


# --------------------------------------------------------------------------------------
# notebook 03: the derived table and its sentence
# --------------------------------------------------------------------------------------


def published_rows(estimates, *, crit: float = 2.5, boot_se: float = 1.0) -> pd.DataFrame:
    """Event-study rows of ``all``: months -2..12, a band over 0..11 of half-width crit*se."""
    months = list(range(-2, 13))
    months.remove(-1)
    est = pd.Series(estimates, index=months, dtype=float)
    in_band = (est.index >= 0) & (est.index < 12)
    half = crit * boot_se
    return pd.DataFrame(
        {
            "group": "all",
            "rel_time": months,
            "estimate": est.to_numpy(),
            "std_error": 1.25,
            "ci_lower": est.to_numpy() - 2.0,
            "ci_upper": est.to_numpy() + 2.0,
            "n_treated": 500,
            "boot_std_error": boot_se,
            "band_lower": np.where(in_band, est.to_numpy() - half, np.nan),
            "band_upper": np.where(in_band, est.to_numpy() + half, np.nan),
        }
    )


def test_inference_table_sets_both_errors_side_by_side():
    from leapresearch.publish.tables import INFERENCE_COLUMNS, inference_table

    table = published_rows([0.0] * 2 + [5.0] * 12)
    other = table.assign(group="grade_band:PK-5", estimate=99.0)
    out = inference_table(pd.concat([other, table]), rel_times=(9, 1, 3))
    assert list(out.columns) == INFERENCE_COLUMNS
    assert out["rel_time"].tolist() == [1, 3, 9]
    assert (out["estimate"] == 5.0).all()
    assert out["se_ratio"].tolist() == [0.8, 0.8, 0.8]
    assert (out["band_upper"] == 7.5).all()


def test_sentence_follows_the_band_not_a_fixed_verdict():
    from leapresearch.publish.narrative import describe_inference

    pre = [0.0]  # month -2
    positive = describe_inference(published_rows(pre + [5.0] * 13), rel_times=(1, 3, 6, 9))
    assert "lies above zero in all 12 months" in positive
    assert "plus or minus 2.50 bootstrap standard errors" in positive
    assert "0.80 times the analytic ones" in positive
    negative = describe_inference(published_rows(pre + [-5.0] * 13, crit=2.9))
    assert "lies below zero in all 12 months" in negative and "negative" in negative
    assert "2.90" in negative
    null = describe_inference(published_rows(pre + [1.0] * 13, boot_se=2.0))
    assert "includes zero in every month" in null and "not rejected" in null
    assert "1.60 times" in null
    mixed = describe_inference(published_rows(pre + [1.0, 1.0] + [5.0] * 9 + [1.0, 6.0]))
    assert "excludes zero in 9 of 12 months and includes it in months 0, 1 and 11" in mixed
    for text in (negative, null, mixed):
        assert "above zero in all" not in text


def test_sentence_without_a_band_says_so():
    from leapresearch.publish.narrative import describe_inference

    table = published_rows([0.0] * 2 + [5.0] * 12)
    assert "no bootstrap columns" in describe_inference(table.drop(columns="band_lower"))
    suppressed = table.assign(estimate=np.nan, band_lower=np.nan, band_upper=np.nan)
    assert "not estimated, or suppressed" in describe_inference(suppressed)


def test_methods_box_states_the_intervals_the_parameters_choose():
    from leapresearch.config import load_config
    from leapresearch.publish.narrative import methods_text

    default = " ".join(methods_text(load_config("demo")))
    # issue 27: the report leads with the whole-procedure intervals, their draws from the
    # parameters; the others are labelled conditional
    draws = load_config("demo").inference.procedure_draws
    assert f"the report leads with those of a whole-procedure cluster bootstrap ({draws} " in (
        default
    )
    assert "elsewhere, marked as such, the analytic ones, conditional on the estimated score" in (
        default
    )
    assert "simultaneous (sup-t) band over the post-visit months 0 to 11" in default
    assert "not re-estimated" in default
    boot = " ".join(
        methods_text(
            load_config(
                "demo",
                overrides=[
                    "inference.intervals=bootstrap",
                    "inference.band=false",
                    "inference.procedure_draws=0",
                ],
            )
        )
    )
    assert "whole-procedure bootstrap is off (inference.procedure_draws: 0)" in boot
    assert "intervals shown are the multiplier bootstrap's" in boot and "simultaneous" not in boot
    assert "conditional on the estimated score and matches" in boot
    more = " ".join(methods_text(load_config("demo", overrides=["inference.procedure_draws=499"])))
    assert (
        "whole-procedure cluster bootstrap (499 draws that weight every school by an "
        "exponential(1) weight (a Bayesian bootstrap)"
    ) in more
    resample = load_config("demo", overrides=["inference.procedure_scheme=resample"])
    assert "(199 draws of the schools with replacement; the propensity score" in " ".join(
        methods_text(resample)
    )
    assert (
        "groups with fewer than 30 clusters take their p-values from a restricted wild cluster "
        "bootstrap (Webb weights, 9999 draws)"
    ) in default
    never = " ".join(methods_text(load_config("demo", overrides=["inference.few_clusters=0"])))
    assert "wild cluster" not in never
