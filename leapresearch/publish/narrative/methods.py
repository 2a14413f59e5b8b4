"""The front page's methods box and limitations, from the parameters and the numbers.

The design in a few sentences (comparison group, estimate, inference, checks, privacy)
from the parameters of the run, and the limitations of its estimates with the numbers
that qualify them.
"""

from __future__ import annotations

import pandas as pd

from leapresearch.publish.calibration import (
    SIZE_BOUND,
    Calibration,
    load_calibration,
    pretrend_names,
)
from leapresearch.publish.labels import (
    FAMILY_NAMES,
    family_of,
    group_label,
)
from leapresearch.publish.narrative.common import _snapped
from leapresearch.publish.narrative.event_study import describe_adjustment
from leapresearch.publish.narrative.sample import pool_text
from leapresearch.publish.tables import CONDITIONAL_WORDS, HEADLINE_TABLE_FAMILIES


def _inference_method(config) -> str:
    """The methods-box sentences on the intervals the report leads with, and the others."""
    inf, a = config.inference, config.analysis
    conditional = (
        "the multiplier bootstrap's (normal, with its standard errors)"
        if inf.intervals == "bootstrap"
        else "the analytic ones"
    )
    if inf.procedure_draws > 0:
        how = (
            f"draws that weight every {a.cluster} by an exponential(1) weight (a Bayesian "
            "bootstrap)"
            if inf.procedure_scheme == "bayesian"
            else f"draws of the {a.cluster}s with replacement"
        )
        lead = (
            f"Intervals: the report leads with those of a whole-procedure cluster bootstrap "
            f"({inf.procedure_draws} {how}; the "
            "propensity score, the matching, the censoring weights, the regression "
            "adjustment and the event study re-run in each draw; normal intervals with the "
            "draws' interquartile-range standard error) for all visited students and the "
            f"grade bands; elsewhere, marked as such, {conditional}, "
            f"{CONDITIONAL_WORDS} (they leave out the estimation error of those steps)."
        )
    else:
        lead = (
            "Intervals: the whole-procedure bootstrap is off (inference.procedure_draws: 0), "
            f"so the intervals shown are {conditional}, {CONDITIONAL_WORDS} (they leave "
            "out the estimation error of those steps)."
        )
    band = (
        f"; the figures add a {1 - a.alpha:.0%} simultaneous (sup-t) band over the post-visit "
        f"months 0 to {a.window[1] - 1}"
        if inf.band
        else ""
    )
    few = (
        f" Joint tests (pre-trends, subgroup differences) of groups with fewer than "
        f"{inf.few_clusters} clusters take their p-values from a restricted wild cluster "
        f"bootstrap (Webb weights, {inf.wild_draws} draws) instead of F(q, G-1)."
        if inf.few_clusters > 0
        else ""
    )
    return (
        f"{lead} Beside the analytic errors, a multiplier (Otsu-Rai weighted) bootstrap "
        f"over the same clusters with {inf.bootstrap_draws} draws, matches held fixed (the "
        f"propensity score and the regression adjustment are not re-estimated){band}.{few}"
    )


def _robust_method(robust) -> str:
    """The robust estimator in words, from the ``robust`` parameters."""
    who = {"nevertreated": "never-visited", "notyettreated": "not-yet-visited"}
    kind = "the doubly-robust " if robust.est_method == "dr" else "the "
    return f"{kind}Callaway-Sant'Anna estimator with {who[robust.control_group]} comparisons"


def methods_text(config, *, cluster: str | None = None) -> list[str]:
    """The methods box: the design in a few sentences, from the parameters of the run.

    ``cluster`` is the level the run's errors were clustered by, when it is not the one
    the parameters ask for (:func:`leapresearch.analysis.fitting.cluster_level`).
    """
    m, a, pool = config.matching, config.analysis, config.comparison_pool
    clustered = a.cluster
    if cluster is not None and cluster != a.cluster:
        clustered = (
            f"{cluster} (the parameters ask for {a.cluster}; the matched sample has too few "
            f"{a.cluster}s for errors clustered by them)"
        )
    lo, hi = a.window
    caliper = "no caliper" if m.caliper is None else f"a caliper of {m.caliper} SD of the logit"
    where = "any district" if pool.allow_other_districts else "the visited student's district"
    return [
        f"Comparison group: for each visited student, {m.ratio} comparison students "
        f"{'(with replacement) ' if m.replace else ''}from {where}, {pool_text(pool)}, "
        f"matched on a propensity score of the {m.pre_months} months of attendance before the "
        f"first visit and demographics, exactly within "
        f"{', '.join(FAMILY_NAMES.get(e, e).lower() for e in m.exact)} and event month, "
        f"with {caliper}.",
        f"Estimate: a stacked event study of the monthly attendance rate from {abs(lo)} months "
        f"before to {hi} months after the first visit (month {a.reference} is the reference), "
        f"with student-by-stack and stack-by-month fixed effects; standard errors clustered by "
        f"{clustered}; {1 - a.alpha:.0%} confidence intervals."
        + (
            " Outcomes are regression-adjusted: the change the pre-period trajectory predicts"
            " (slopes fitted among comparison students) is taken out."
            if a.regression_adjustment
            else ""
        ),
        _inference_method(config),
        f"Checks: a naive before/after change, {_robust_method(config.robust)}, a placebo "
        f"first visit {config.placebo.shift_months} months early, and joint tests of the "
        "pre-period coefficients. The summary and the headline table read only the checks "
        f"whose size the validation measured near nominal ({load_calibration().rule()}); "
        "the notebooks give every check with its measured size.",
        f"Privacy: counts below {config.privacy.min_count} and groups below "
        f"{config.privacy.min_group} students are suppressed; subgroup estimates need "
        f"{config.privacy.min_treated} visited students.",
    ]


@_snapped
def limitations(
    table: pd.DataFrame,
    pretrends: pd.DataFrame | None,
    matching: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    simulated: bool = False,
    calibration: Calibration | None = None,
) -> list[str]:
    """Limitations of this run's estimates, with the numbers that qualify them.

    The pre-trend limitations read only the calibrated tests (``calibration``: default the
    packaged record, :mod:`leapresearch.publish.calibration`): how many groups one of them
    rejects for, and what power the validation measured for them against the failures of
    parallel trends it built.
    """
    out = []
    if simulated:
        out.append(
            "The inputs are synthetic (simulated): the figures demonstrate the method and do "
            "not describe real students."
        )
    out.append(
        "Matching balances what the data record (attendance history, demographics); families "
        "who agreed to a visit may differ in ways the data do not show, which no comparison "
        "group can rule out."
    )
    if pretrends is not None and len(pretrends):
        out += _pretrend_limits(
            pretrends, alpha, load_calibration() if calibration is None else calibration
        )
    if matching is not None and "matched_outside_caliper" in matching:
        far, treated = matching["matched_outside_caliper"].sum(), matching["treated"].sum()
        if treated:
            out.append(
                f"{int(far):,} of {int(treated):,} visited students "
                f"({far / treated:.0%}) had no comparison inside the caliper and kept their "
                "nearest one; their differences rest on the regression adjustment."
            )
    out += _adjustment_limits(table)
    n_sup = int(table["estimate"].isna().sum())
    out.append(
        f"{n_sup:,} of {len(table):,} group-month estimates are suppressed for privacy; many "
        "subgroups are compared, so some differences between them arise by chance."
    )
    return out


def _adjustment_limits(table: pd.DataFrame) -> list[str]:
    """Groups whose outcome was not adjusted with their own slopes in some month.

    The headline groups by name (:func:`describe_adjustment`), the others counted.
    """
    if "adjustment" not in table.columns:
        return []
    published = table.loc[table["estimate"].notna()]
    if published.empty:
        return []
    if published["adjustment"].eq("none").all():
        return [describe_adjustment(table)]  # the adjustment is off
    headline = [g for g in table["group"].unique() if family_of(g) in HEADLINE_TABLE_FAMILIES]
    other = published.loc[~published["group"].isin(headline) & published["adjustment"].ne("group")]
    out = []
    if published.loc[published["group"].isin(headline), "adjustment"].ne("group").any():
        out.append(describe_adjustment(table, groups=headline))
    n = other["group"].nunique()
    if n:
        out.append(
            f"{n} other group{'s' if n > 1 else ''} of the subgroup analysis "
            f"{'have' if n > 1 else 'has'} months adjusted with the whole matched sample's "
            "slopes or not at all (event_study.csv, column adjustment)."
        )
    return out


def _pretrend_limits(pretrends: pd.DataFrame, alpha: float, cal: Calibration) -> list[str]:
    """The calibrated pre-trend tests: groups they reject for, and their measured power."""
    names = pretrend_names(pretrends) if "basis" in pretrends else pd.Series("", pretrends.index)
    good = pretrends.loc[names.isin(cal.calibrated()) & pretrends["p_value"].notna()]
    if good.empty:
        return [
            "No pre-trend test of this run passed the calibration rule "
            f"({cal.rule()}): none is read as evidence on parallel trends."
        ]
    tested = good["group"].unique()
    bad = good.loc[good["p_value"] < alpha, "group"].unique()
    out = [
        f"The calibrated pre-trend test rejects parallel trends at the {alpha:.0%} level for "
        f"{len(bad)} of {len(tested)} groups"
        + (f" ({', '.join(group_label(g) for g in bad[:5])})" if len(bad) else "")
        + "; its size was measured on the test of all visited students."
    ]
    for name in dict.fromkeys(names.loc[good.index]):
        d = cal.diagnostics[name]
        fails = d.power.get("assumption_fails")
        if fails is None:
            continue
        n = len(fails.families)
        words = f"{d.words[0].upper()}{d.words[1:]}"
        if d.no_power_against():
            out.append(
                f"{words}: in the validation it rejected in {fails.percent()} of the draws of "
                f"the {n} famil{'y' if n == 1 else 'ies'} where parallel trends fail, no more "
                f"than the {100 * SIZE_BOUND:.0f}% a calibrated test may reject where the "
                "design is right: it has no measured power against the "
                "failures built there, so its not rejecting does not show that the "
                "assumption holds."
            )
        else:
            out.append(
                f"{words}: in the validation it detected the failures of parallel trends "
                f"built there in {fails.percent()} of the draws."
            )
    return out
