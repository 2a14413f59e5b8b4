"""Sentences on the event-study estimates (notebooks 03, 04 and 08).

The effect of one group at one month (:func:`describe_effect`), every group of a family
(grade bands, cohorts: notebook 04), the headline months of one group, the bootstrap
errors and the simultaneous band (notebook 03, *Bootstrap errors and a simultaneous
band*) and the check that ``linearmodels`` reproduces the fast estimator (notebook 03,
*The same event study, fitted by linearmodels*).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.labels import (
    family_of,
    fmt,
    fmt_interval,
    group_label,
    sort_groups,
)
from leapresearch.publish.narrative.common import _months, _snapped, _who


@_snapped
def describe_effect(
    table: pd.DataFrame,
    *,
    group: str = "all",
    rel_time: int = 9,
    lead: bool = False,
    conditional: str = "analytic",
    mark: bool = True,
) -> str:
    """One sentence on the estimate of ``group`` at ``rel_time`` months after the first visit.

    With ``lead`` (the front page) the interval is the one the report leads with
    (:func:`leapresearch.publish.tables.lead_intervals`: the whole-procedure one where
    published); where it falls back to the table's ``ci_lower``, ``ci_upper`` and
    ``mark``, the sentence says it is the ``conditional`` interval, conditional on the
    estimated score and matches.
    """
    from leapresearch.publish.tables import CONDITIONAL_WORDS, lead_intervals

    row = table.loc[(table["group"] == group) & (table["rel_time"] == rel_time)]
    who = group_label(group)
    if row.empty:
        return f"No estimate for {who.lower()} at {_months(rel_time)} after the first visit."
    r = row.iloc[0]
    if pd.isna(r["estimate"]):
        return (
            f"The estimate for {who.lower()} at {_months(rel_time)} is suppressed "
            "(too few visited students)."
        )
    lo, hi, note = r["ci_lower"], r["ci_upper"], ""
    if lead:
        r = lead_intervals(row).iloc[0]
        lo, hi = r["lead_lower"], r["lead_upper"]
        if mark and r["lead_kind"] == "conditional":
            note = f"; {conditional}, {CONDITIONAL_WORDS}"
    sig = "" if (lo > 0 or hi < 0) else ", an interval that includes zero"
    return (
        f"{_months(rel_time).capitalize()} after the first visit, visited students"
        f"{'' if group == 'all' else f' ({who})'} "
        f"attended {fmt(abs(r['estimate']), 1)} percentage points "
        f"{'more' if r['estimate'] >= 0 else 'less'} of their enrolled days than matched "
        f"comparison students (95% CI {fmt_interval(lo, hi)}{note}{sig})."
    )


@_snapped
def describe_family(table: pd.DataFrame, *, family: str, rel_time: int) -> str:
    """:func:`describe_effect` for every group of one family, in reading order."""
    groups = sort_groups(g for g in table["group"] if family_of(g) == family)
    return " ".join(describe_effect(table, group=g, rel_time=rel_time) for g in groups)


@_snapped
def describe_event_study(
    table: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (1, 3, 6, 9)
) -> str:
    """A short paragraph: effects at the headline months for one group."""
    return " ".join(describe_effect(table, group=group, rel_time=r) for r in rel_times)


def months_by_adjustment(
    table: pd.DataFrame, kind: str, groups: Sequence[str] | None = None
) -> pd.Series:
    """Per group, the published months whose ``adjustment`` is ``kind`` (``pooled``, ``none``).

    Only groups with at least one such month, in reading order; empty when the table
    has no ``adjustment`` column (a table from before it existed).
    """
    if "adjustment" not in table.columns:
        return pd.Series(dtype=object)
    rows = table.loc[table["estimate"].notna() & table["adjustment"].eq(kind)]
    if groups is not None:
        rows = rows.loc[rows["group"].isin(groups)]
    months = rows.groupby("group")["rel_time"].agg(lambda r: sorted(int(m) for m in r))
    return months.reindex(sort_groups(months.index))


def _months_of_groups(months: pd.Series, total: pd.Series) -> str:
    """``Grades 6-8 at all 24 months; Torrington at months 2, 3 and 4``."""
    parts = []
    for group, missing in months.items():
        n = int(total[group])
        if len(missing) == n:
            when = f"all {n} months"
        elif len(missing) <= 3:
            when = _month_list(missing)
        else:
            when = f"{len(missing)} of {n} months"
        parts.append(f"{group_label(group)} at {when}")
    return "; ".join(parts)


@_snapped
def describe_adjustment(table: pd.DataFrame, *, groups: Sequence[str] | None = None) -> str:
    """Which slopes adjusted each group's outcome, where not the group's own.

    ``table`` is ``event_study.csv``; ``groups`` restricts the sentence to those groups
    (the front page: the headline groups). A group's comparison units at a month may be
    too few for its own slopes
    (:data:`~leapresearch.design.adjustment.MIN_UNITS_PER_COVARIATE` per covariate beyond
    one per stack); the month then takes the slopes of the whole matched sample
    (``adjustment`` is ``pooled``) or, without those, goes unadjusted (``none``) and its
    estimate rests on the matches alone.
    """
    from leapresearch.design.adjustment import MIN_UNITS_PER_COVARIATE

    if "adjustment" not in table.columns:
        return ""
    published = table.loc[table["estimate"].notna()]
    rows = published if groups is None else published.loc[published["group"].isin(groups)]
    if rows.empty:
        return ""
    if published["adjustment"].eq("none").all():  # the adjustment is off
        return (
            "The outcome is not regression-adjusted in any month: the estimates rest on the "
            "matches alone."
        )
    pooled, none = months_by_adjustment(rows, "pooled"), months_by_adjustment(rows, "none")
    if pooled.empty and none.empty:
        return (
            "The outcome is regression-adjusted with each group's own slopes at every "
            "published month."
        )
    total = rows.groupby("group")["rel_time"].size()
    rule = (
        f"too few for its own slopes (at least {MIN_UNITS_PER_COVARIATE} per covariate "
        "beyond one per stack)"
    )
    parts = []
    if len(pooled):
        parts.append(
            f"Where a group's comparison students are {rule}, its outcome is adjusted with "
            "the slopes of the whole matched sample, which assumes the group's pre-visit "
            "trajectory predicts its change as everyone's does: "
            f"{_months_of_groups(pooled, total)}."
        )
    if len(none):
        lead = (
            "Where even those slopes are missing"
            if len(pooled)
            else f"Where a group's comparison students are {rule}"
        )
        parts.append(
            f"{lead}, the outcome goes unadjusted and the estimate rests on the matches alone, "
            "keeping whatever difference in pre-visit trajectories they leave (largest for "
            f"students matched outside the caliper): {_months_of_groups(none, total)}."
        )
    return " ".join(parts)


def _month_list(months: Sequence[int]) -> str:
    """``[2, 3, 7]`` -> ``months 2, 3 and 7``."""
    ms = [str(int(m)) for m in months]
    if len(ms) == 1:
        return f"month {ms[0]}"
    return f"months {', '.join(ms[:-1])} and {ms[-1]}"


def _band_verdict(band: pd.DataFrame, who: str, span: str) -> str:
    """Where the simultaneous band lies with respect to zero, in one sentence."""
    above = band["band_lower"] > 0
    below = band["band_upper"] < 0
    covers = ~(above | below)
    n = len(band)
    if covers.all():
        return (
            f"Over {span}, the 95% simultaneous band for {who} includes zero in every month: "
            "the hypothesis of no effect in all of them at once is not rejected at the 5% level."
        )
    if not covers.any():
        if above.all() or below.all():
            side = "above" if above.all() else "below"
            return (
                f"Over {span}, the 95% simultaneous band for {who} lies {side} zero in all "
                f"{n} months: with 95% confidence the effect is "
                f"{'positive' if side == 'above' else 'negative'} in every one of them at once."
            )
        return (
            f"Over {span}, the 95% simultaneous band for {who} excludes zero in all {n} "
            f"months, above zero in {int(above.sum())} and below it in {int(below.sum())}."
        )
    return (
        f"Over {span}, the 95% simultaneous band for {who} excludes zero in "
        f"{int((~covers).sum())} of {n} months and includes it in "
        f"{_month_list(band.loc[covers, 'rel_time'])}: there, an effect of zero lies within "
        "the band."
    )


@_snapped
def describe_inference(
    table: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (1, 3, 6, 9)
) -> str:
    """The simultaneous band over the post-visit months and the bootstrap errors, in words.

    Parameters
    ----------
    table : DataFrame
        The published event-study table (``boot_std_error``, ``band_lower``,
        ``band_upper``).
    group : str
        The group described.
    rel_times : sequence of int
        Headline months at which the bootstrap and analytic errors are compared.

    Returns
    -------
    str
        Whether the band excludes zero over the months it covers, its critical value
        (half-width over the bootstrap error, against the pointwise 1.96), the range
        of bootstrap-over-analytic error ratios at the headline months, that both are
        conditional on the first steps, and, with the ``procedure_*`` columns, the range of
        whole-procedure-over-analytic ratios and where the whole-procedure band lies.
    """
    who = _who(group)
    d = table.loc[table["group"] == group]
    if not {"band_lower", "band_upper", "boot_std_error"} <= set(d.columns):
        return f"No simultaneous band for {who}: the table has no bootstrap columns."
    band = d.dropna(subset=["estimate", "band_lower", "band_upper", "boot_std_error"])
    band = band.sort_values("rel_time", kind="mergesort")
    if band.empty:
        return f"No simultaneous band for {who} (not estimated, or suppressed)."
    lo, hi = int(band["rel_time"].min()), int(band["rel_time"].max())
    crit = float(((band["band_upper"] - band["estimate"]) / band["boot_std_error"]).median())
    out = [
        _band_verdict(band, who, f"months {lo} to {hi} after the first visit"),
        f"The band is the estimate plus or minus {fmt(crit, 2)} bootstrap standard errors "
        f"(the sup-t critical value), against 1.96 for a single month.",
    ]
    head = d.loc[d["rel_time"].isin(list(rel_times))].dropna(subset=["std_error"])
    ratio = (head["boot_std_error"] / head["std_error"]).dropna()
    if len(ratio):
        span = (
            f"{fmt(ratio.min(), 2)} to {fmt(ratio.max(), 2)} times"
            if fmt(ratio.min(), 2) != fmt(ratio.max(), 2)
            else f"{fmt(ratio.min(), 2)} times"
        )
        out.append(
            f"At {_month_list(head['rel_time'])}, the bootstrap standard errors are {span} "
            "the analytic ones."
        )
    out.append(_describe_procedure(d, head, who))
    return " ".join(s for s in out if s)


def _ratio_span(ratio: pd.Series) -> str:
    """``0.9 to 1.3 times`` (or ``1.1 times`` when they round alike)."""
    lo, hi = fmt(ratio.min(), 2), fmt(ratio.max(), 2)
    return f"{lo} to {hi} times" if lo != hi else f"{lo} times"


def _describe_procedure(d: pd.DataFrame, head: pd.DataFrame, who: str) -> str:
    """The whole-procedure bootstrap against the conditional errors, in words (or nothing)."""
    if "procedure_std_error" not in d.columns or d["procedure_std_error"].isna().all():
        return (
            "Both errors are conditional: they hold the propensity score, the matches and the "
            "adjustment slopes fixed."
        )
    ratio = (head["procedure_std_error"] / head["std_error"]).dropna()
    out = (
        "Both errors are conditional: they hold the propensity score, the matches and the "
        "adjustment slopes fixed. Re-estimating every step in each draw (the whole-procedure "
        "cluster bootstrap) gives standard errors "
    )
    out += (
        f"{_ratio_span(ratio)} the analytic ones at those months"
        if len(ratio)
        else "only outside the headline months"
    )
    band = d.dropna(subset=["estimate", "procedure_band_lower", "procedure_band_upper"])
    if band.empty:
        return out + "."
    lo, hi = int(band["rel_time"].min()), int(band["rel_time"].max())
    proc = pd.DataFrame(
        {
            "rel_time": band["rel_time"].to_numpy(),
            "band_lower": band["procedure_band_lower"].to_numpy(),
            "band_upper": band["procedure_band_upper"].to_numpy(),
        }
    )
    verdict = _band_verdict(proc, who, f"months {lo} to {hi}")
    return f"{out}. {verdict.replace('95% simultaneous band', '95% whole-procedure band')}"


def _bound(x: float, *, floor: float = 1e-9) -> str:
    """The smallest power of ten at or above ``x`` (at least ``floor``), for print."""
    exponent = int(np.ceil(np.log10(max(float(x), floor))))
    return f"1e{exponent:+03d}"


@_snapped
def describe_linearmodels_check(check: pd.DataFrame, *, tolerance: float = 1e-6) -> str:
    """Whether ``linearmodels`` reproduces the fast estimator's coefficients and errors.

    Parameters
    ----------
    check : DataFrame
        From :func:`leapresearch.analysis.event_studies.linearmodels_check`.
    tolerance : float
        Largest absolute difference (pp) read as equality.
    """
    d_est = float(check["estimate_difference"].max())
    d_se = float(check["std_error_difference"].max())
    verdict = (
        "the two fits agree"
        if max(d_est, d_se) <= tolerance
        else "the two fits DISAGREE: investigate before reading the estimates"
    )
    return (
        f"Fitted once with linearmodels (AbsorbingLS) and once with the fast in-house "
        f"estimator, the {len(check)} event-time coefficients differ by at most "
        f"{_bound(d_est)} pp and their standard errors by at most {_bound(d_se)} pp "
        f"(the largest estimate is {check['estimate_fast'].abs().max():.1f} pp): {verdict}."
    )
