"""Sentences generated from the numbers, for the notebooks and the report.

Every interpretation a reader sees under a result is produced here from the published
(suppressed) table, never typed by hand, so re-running on new data rewrites the story.
Numbers are rounded once for print, from the stored value, by
:func:`leapresearch.publish.labels.fmt` (one decimal for percentage points); groups and
covariates are named by :mod:`leapresearch.publish.labels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.labels import (
    FAMILY_NAMES,
    cohort_key,
    cohort_label,
    covariate_label,
    family_of,
    fmt,
    fmt_interval,
    group_label,
    sort_groups,
)

MONTH_WORDS = {
    1: "one month",
    3: "three months",
    6: "six months",
    9: "nine months",
    12: "twelve months or more",
}


def _pp(x: float) -> str:
    return f"{fmt(x, 1, signed=True)} pp"


def _months(r: int) -> str:
    return MONTH_WORDS.get(r, f"{r} months")


def describe_effect(table: pd.DataFrame, *, group: str = "all", rel_time: int = 9) -> str:
    """One sentence on the estimate of ``group`` at ``rel_time`` months after the first visit."""
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
    sig = "" if (r["ci_lower"] > 0 or r["ci_upper"] < 0) else ", an interval that includes zero"
    return (
        f"{_months(rel_time).capitalize()} after the first visit, visited students"
        f"{'' if group == 'all' else f' ({who})'} "
        f"attended {fmt(abs(r['estimate']), 1)} percentage points "
        f"{'more' if r['estimate'] >= 0 else 'less'} of their enrolled days than matched "
        f"comparison students (95% CI {fmt_interval(r['ci_lower'], r['ci_upper'])}{sig})."
    )


def describe_family(table: pd.DataFrame, *, family: str, rel_time: int) -> str:
    """:func:`describe_effect` for every group of one family, in reading order."""
    groups = sort_groups(g for g in table["group"] if family_of(g) == family)
    return " ".join(describe_effect(table, group=g, rel_time=rel_time) for g in groups)


def describe_event_study(
    table: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (1, 3, 6, 9)
) -> str:
    """A short paragraph: effects at the headline months for one group."""
    return " ".join(describe_effect(table, group=group, rel_time=r) for r in rel_times)


def describe_pretrends(pretrends: pd.DataFrame, *, group: str = "all", alpha: float = 0.05) -> str:
    """Whether the joint test of the pre-period coefficients rejects, in words."""
    row = pretrends.loc[pretrends["group"] == group]
    if row.empty or pd.isna(row.iloc[0]["p_value"]):
        return f"No pre-trend test for {group}."
    r = row.iloc[0]
    verdict = "rejects" if r["p_value"] < alpha else "does not reject"
    return (
        f"The joint Wald test that all {int(r['df'])} pre-period coefficients are zero "
        f"{verdict} at the {alpha:.0%} level (statistic {fmt(r['statistic'])}, p = "
        f"{fmt(r['p_value'], 3)}): "
        + (
            "before the first visit, visited and comparison students moved in parallel."
            if r["p_value"] >= alpha
            else "visited and comparison students already diverged before the first visit, so "
            "read the effects with care."
        )
    )


def describe_balance(balance: pd.DataFrame, *, threshold: float = 0.1) -> str:
    """How many matching covariates are balanced, and the worst one."""
    used = balance.loc[balance["used_in_matching"]]
    before = (used["smd_before"].abs() < threshold).sum()
    after = (used["smd_after"].abs() < threshold).sum()
    worst = used.loc[used["smd_after"].abs().idxmax()]
    wwc = (used["wwc_category"] == "satisfies").sum()
    return (
        f"Before matching, {before} of {len(used)} matching covariates had an absolute "
        f"standardised mean difference below {threshold}; after matching, {after} do. "
        f"The largest remaining difference is {fmt(worst['smd_after'], 3, signed=True)} "
        f"({covariate_label(worst['covariate'])}). "
        f"{wwc} of {len(used)} covariates meet the What Works Clearinghouse baseline-"
        "equivalence standard without adjustment (|ES| <= 0.05); for the rest the event study "
        "relies on statistical adjustment: student fixed effects and the regression adjustment "
        "of comparison students' outcomes on the pre-period trajectory."
    )


def describe_matching(summary: pd.DataFrame) -> str:
    """Visited, matched and unmatched students, summed over cohorts."""
    cols = ["treated", "matched", "unmatched", "comparisons"]
    if "matched_outside_caliper" in summary.columns:
        cols.append("matched_outside_caliper")
    tot = summary[cols].sum(min_count=1)
    if pd.isna(tot["treated"]) or tot["treated"] == 0:
        return "No visited students to match."
    share = tot["matched"] / tot["treated"] if tot["treated"] else np.nan
    far = ""
    if "matched_outside_caliper" in tot and pd.notna(tot["matched_outside_caliper"]):
        far = (
            f" {int(tot['matched_outside_caliper']):,} of the matched had no comparison inside "
            "the caliper and kept their single nearest one (their differences are handled by "
            "the regression adjustment)."
        )
    return (
        f"Of {int(tot['treated']):,} visited students (published cells), {int(tot['matched']):,} "
        f"({share:.0%}) found comparison students; {int(tot['unmatched']):,} did not and are "
        "counted, not dropped silently." + far + " The matched comparison group holds "
        f"{int(tot['comparisons']):,} distinct students summed over cohorts."
    )


def describe_naive(naive: pd.DataFrame, table: pd.DataFrame, *, rel_time: int = 6) -> str:
    """How much of the naive before/after change the comparison group removes."""
    n = naive.loc[(naive["group"] == "all") & (naive["rel_time"] == rel_time), "estimate"]
    m = table.loc[(table["group"] == "all") & (table["rel_time"] == rel_time), "estimate"]
    if n.empty or m.empty or pd.isna(n.iloc[0]) or pd.isna(m.iloc[0]):
        return "The naive comparison is not available."
    naive_v, matched_v = float(n.iloc[0]), float(m.iloc[0])
    return (
        f"{_months(rel_time).capitalize()} after the first visit, visited students' attendance "
        f"had changed by {_pp(naive_v)} since the month before it. The matched comparison "
        f"puts the effect at {_pp(matched_v)}: the difference, {_pp(naive_v - matched_v)}, "
        "is what students picked for low attendance would have recovered on their own."
    )


def describe_long_term(long_term: pd.DataFrame, *, outcome: str = "attendance_rate") -> str:
    """The effects on later school years' annual outcome, pooled group, each cohort."""
    d = long_term.loc[
        (long_term["group"] == "all")
        & (long_term["outcome"] == outcome)
        & (long_term["years_after"] >= 1)
    ]
    if d.empty:
        return "No later school years are observed for any cohort."
    unit = "attendance rate" if outcome == "attendance_rate" else "share chronically absent"
    parts = []
    for cohort, g in d.groupby("cohort", sort=True):
        vals = ", ".join(
            f"{r.school_year}: {_pp(r.estimate)}"
            if pd.notna(r.estimate)
            else f"{r.school_year}: suppressed"
            for r in g.sort_values("years_after").itertuples()
        )
        parts.append((cohort_key(cohort), f"{cohort_label(cohort)} cohort ({vals})"))
    parts = [text for _, text in sorted(parts)]
    return f"Effects on the annual {unit} in later school years: " + "; ".join(parts) + "."


def describe_placebo(placebo: pd.DataFrame) -> str:
    """Whether the fake-event estimates are near zero."""
    if "note" in placebo.columns:
        return f"The placebo could not be estimated ({placebo['note'].iloc[0]})."
    post = placebo.loc[placebo["rel_time"] >= 0]
    if post.empty:
        return "No placebo estimates."
    shift = int(placebo["shift_months"].iloc[0])
    covers = ((post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)).sum()
    biggest = post.loc[post["estimate"].abs().idxmax()]
    early = post.loc[post["rel_time"] < shift // 2]
    early_txt = ""
    if len(early):
        early_cov = ((early["ci_lower"] <= 0) & (early["ci_upper"] >= 0)).sum()
        early_txt = (
            f" In the first {len(early)} placebo months, furthest from the real visit, "
            f"{early_cov} of {len(early)} intervals include zero."
        )
    return (
        f"With a fake first visit {shift} months early, {covers} of {len(post)} placebo "
        f"'effects' have 95% intervals that include zero; the largest is "
        f"{_pp(biggest['estimate'])} at month {int(biggest['rel_time'])}." + early_txt + " "
        "Placebo months just before the real visit are when districts picked students for a "
        "low spell, so a dip there shows the selection the matching must (and, at the real "
        "event month, does) absorb, not an effect of the program."
    )


def describe_robust(robust: pd.DataFrame, table: pd.DataFrame, *, rel_time: int = 6) -> str:
    """The heterogeneity-robust estimate beside the matched one."""
    if "note" in robust.columns:
        return f"The robust estimator could not be computed ({robust['note'].iloc[0]})."
    r = robust.loc[robust["rel_time"] == rel_time, "estimate"]
    m = table.loc[(table["group"] == "all") & (table["rel_time"] == rel_time), "estimate"]
    if r.empty or m.empty or pd.isna(r.iloc[0]) or pd.isna(m.iloc[0]):
        return "The robust estimator has no estimate at that month."
    return (
        f"At {_months(rel_time)}, the Callaway-Sant'Anna estimator, which compares visited "
        f"students with students visited later, gives {_pp(float(r.iloc[0]))} against "
        f"{_pp(float(m.iloc[0]))} from the matched event study."
    )


def describe_attendance_by_year(by_year: pd.DataFrame) -> str:
    """Range and peak of chronic absence across school years."""
    d = by_year.dropna(subset=["chronically_absent"])
    if d.empty:
        return "No school year has published chronic-absence figures."
    peak = d.loc[d["chronically_absent"].idxmax()]
    return (
        f"Across the school years in the data, the share of K-12 students chronically absent "
        f"ranged from {fmt(d['chronically_absent'].min())}% to "
        f"{fmt(d['chronically_absent'].max())}%, peaking in {peak['school_year']}."
    )


def describe_extremes(table: pd.DataFrame, *, rel_time: int) -> str:
    """The largest and smallest published subgroup estimates at one month."""
    d = table.loc[(table["rel_time"] == rel_time) & table["estimate"].notna()]
    if d.empty:
        return f"No published subgroup estimate at month {rel_time}."
    best, worst = d.loc[d["estimate"].idxmax()], d.loc[d["estimate"].idxmin()]
    return (
        f"{_months(rel_time).capitalize()} after the first visit, the largest estimated effect "
        f"among published subgroups is {_pp(best['estimate'])} ({group_label(best['group'])}) "
        f"and the smallest {_pp(worst['estimate'])} ({group_label(worst['group'])})."
    )


def headline_table(
    table: pd.DataFrame,
    *,
    rel_times: Sequence[int],
    pretrends: pd.DataFrame | None = None,
):
    """The headline table (estimate, 95% CI, n per group, in reading order), for display.

    See :func:`leapresearch.publish.tables.headline_table`; the object returned shows as
    the same HTML table as the report's index page.
    """
    from leapresearch.publish.tables import headline_html
    from leapresearch.publish.tables import headline_table as _headline

    head = _headline(table, rel_times=rel_times, pretrends=pretrends)
    return HTMLTable(headline_html(head, rel_times=rel_times), head)


class HTMLTable:
    """A table shown as HTML in notebooks (``data`` holds the numbers)."""

    def __init__(self, html: str, data: pd.DataFrame) -> None:
        self.html, self.data = html, data

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.data.to_string(index=False)


def summary_paragraph(
    table: pd.DataFrame,
    pretrends: pd.DataFrame | None,
    *,
    rel_times: Sequence[int],
    alpha: float = 0.05,
) -> str:
    """The front page's summary: pooled effects with intervals, grade bands, pre-trends."""
    first, last = rel_times[0], rel_times[-1]
    pooled = table.loc[(table["group"] == "all") & (table["rel_time"] == last)]
    parts = []
    if pretrends is not None and (pretrends["group"] == "all").any():
        n = pretrends.loc[pretrends["group"] == "all", "n_treated"].iloc[0]
        if pd.notna(n):
            parts.append(
                f"The evaluation compares {int(n):,} visited students with matched comparison "
                "students from the same district, grade band and month who had similar "
                "attendance before."
            )
    parts.append(describe_effect(table, group="all", rel_time=first))
    if not pooled.empty:
        parts.append(describe_effect(table, group="all", rel_time=last))
    bands = [g for g in ("grade_band:PK-5", "grade_band:6-12") if (table["group"] == g).any()]
    for g in bands:
        parts.append(describe_effect(table, group=g, rel_time=last))
    if pretrends is not None:
        parts.append(describe_pretrends(pretrends, alpha=alpha))
    return " ".join(parts)


def methods_text(config) -> list[str]:
    """The methods box: the design in a few sentences, from the parameters of the run."""
    m, a, pool = config.matching, config.analysis, config.comparison_pool
    lo, hi = a.window
    caliper = "no caliper" if m.caliper is None else f"a caliper of {m.caliper} SD of the logit"
    where = "any district" if pool.allow_other_districts else "the visited student's district"
    return [
        f"Comparison group: for each visited student, {m.ratio} comparison students "
        f"{'(with replacement) ' if m.replace else ''}from {where}, never visited by then, "
        f"matched on a propensity score of the {m.pre_months} months of attendance before the "
        f"first visit and demographics, exactly within "
        f"{', '.join(FAMILY_NAMES.get(e, e).lower() for e in m.exact)} and event month, "
        f"with {caliper}.",
        f"Estimate: a stacked event study of the monthly attendance rate from {abs(lo)} months "
        f"before to {hi} months after the first visit (month {a.reference} is the reference), "
        f"with student-by-stack and stack-by-month fixed effects; standard errors clustered by "
        f"{a.cluster}; {1 - a.alpha:.0%} confidence intervals."
        + (
            " Comparison outcomes are regression-adjusted on the pre-period trajectory."
            if a.regression_adjustment
            else ""
        ),
        f"Checks: a naive before/after change, the Callaway-Sant'Anna estimator with "
        f"not-yet-visited comparisons, a placebo first visit {config.placebo.shift_months} "
        "months early, and joint tests of the pre-period coefficients.",
        f"Privacy: counts below {config.privacy.min_count} and groups below "
        f"{config.privacy.min_group} students are suppressed; subgroup estimates need "
        f"{config.privacy.min_treated} visited students.",
    ]


def limitations(
    table: pd.DataFrame,
    pretrends: pd.DataFrame | None,
    matching: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    simulated: bool = False,
) -> list[str]:
    """Limitations of this run's estimates, with the numbers that qualify them."""
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
        bad = pretrends.loc[pretrends["p_value"] < alpha, "group"]
        out.append(
            f"Pre-trend tests reject parallel trends at the {alpha:.0%} level for {len(bad)} of "
            f"{pretrends['p_value'].notna().sum()} groups"
            + (f" ({', '.join(group_label(g) for g in bad[:5])})." if len(bad) else ".")
        )
    if matching is not None and "matched_outside_caliper" in matching:
        far, treated = matching["matched_outside_caliper"].sum(), matching["treated"].sum()
        if treated:
            out.append(
                f"{int(far):,} of {int(treated):,} visited students "
                f"({far / treated:.0%}) had no comparison inside the caliper and kept their "
                "nearest one; their differences rest on the regression adjustment."
            )
    n_sup = int(table["estimate"].isna().sum())
    out.append(
        f"{n_sup:,} of {len(table):,} group-month estimates are suppressed for privacy; many "
        "subgroups are compared, so some differences between them arise by chance."
    )
    return out
