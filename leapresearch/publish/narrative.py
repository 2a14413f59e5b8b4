"""Sentences generated from the numbers, for the notebooks and the report.

Every interpretation a reader sees under a result is produced here from the published
(suppressed) table, never typed by hand, so re-running on new data rewrites the story.
Numbers are rounded for print (one decimal for percentage points).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MONTH_WORDS = {
    1: "one month",
    3: "three months",
    6: "six months",
    9: "nine months",
    12: "twelve months or more",
}


def _pp(x: float) -> str:
    return f"{x:+.1f} pp"


def _months(r: int) -> str:
    return MONTH_WORDS.get(r, f"{r} months")


def describe_effect(table: pd.DataFrame, *, group: str = "all", rel_time: int = 9) -> str:
    """One sentence on the estimate of ``group`` at ``rel_time`` months after the first visit."""
    row = table.loc[(table["group"] == group) & (table["rel_time"] == rel_time)]
    if row.empty:
        return f"No estimate for {group} at {_months(rel_time)} after the first visit."
    r = row.iloc[0]
    if pd.isna(r["estimate"]):
        return (
            f"The estimate for {group} at {_months(rel_time)} is suppressed "
            "(too few visited students)."
        )
    sig = "" if (r["ci_lower"] > 0 or r["ci_upper"] < 0) else ", an interval that includes zero"
    return (
        f"{_months(rel_time).capitalize()} after the first visit, visited students ({group}) "
        f"attended {abs(r['estimate']):.1f} percentage points "
        f"{'more' if r['estimate'] >= 0 else 'less'} of their enrolled days than matched "
        f"comparison students (95% CI {r['ci_lower']:.1f} to {r['ci_upper']:.1f}{sig})."
    )


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
        f"{verdict} at the {alpha:.0%} level (statistic {r['statistic']:.1f}, p = "
        f"{r['p_value']:.3f}): "
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
        f"The largest remaining difference is {worst['smd_after']:+.3f} ({worst['covariate']}). "
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
        parts.append(f"cohort {cohort} ({vals})")
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
        f"ranged from {d['chronically_absent'].min():.1f}% to "
        f"{d['chronically_absent'].max():.1f}%, peaking in {peak['school_year']}."
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def describe_heterogeneity(
    tests: pd.DataFrame,
    *,
    rel_time: int,
    families: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> str:
    """Whether effects differ within each subgroup family at one month, in words.

    Reads ``subgroup_tests.csv``: the joint F test that every group of a family has the
    same effect (and the PK-5 vs 6-12 contrast). No single group is singled out: with
    many groups the largest and smallest estimates are the noisiest (winner's curse).
    """
    d = tests.loc[(tests["rel_time"] == rel_time) & tests["p_value"].notna()]
    if families is not None:
        d = d.loc[d["family"].isin(families)]
    if d.empty:
        return f"No subgroup test at {_months(rel_time)}."
    parts = []
    for r in d.itertuples():
        name = r.family.replace("_", " ")
        stat = f"F({int(r.df)}, {int(r.df_denom)}) = {r.statistic:.2f}, {_p(r.p_value)}"
        if r.contrast == "all equal":
            verdict = (
                "the effects differ across groups"
                if r.p_value < alpha
                else "no evidence that the effects differ"
            )
            parts.append(f"{name}: {verdict} ({stat})")
        else:
            verdict = "differ" if r.p_value < alpha else "are not distinguishable"
            parts.append(
                f"{name}, {r.contrast}: the effects {verdict} (difference {_pp(r.estimate)}, "
                f"{stat})"
            )
    return (
        f"Joint tests at {_months(rel_time)} after the first visit, each family's groups "
        f"tested together at the {alpha:.0%} level: " + "; ".join(parts) + "."
    )


def describe_shrinkage(table: pd.DataFrame, *, family: str = "district", rel_time: int) -> str:
    """How much of the spread of a family's estimates is noise (empirical Bayes)."""
    from leapresearch.estimation.multiple_testing import POOLED_GROUPS, empirical_bayes

    d = table.loc[
        table["group"].str.startswith(f"{family}:")
        & ~table["group"].isin(list(POOLED_GROUPS))
        & (table["rel_time"] == rel_time)
        & table["estimate"].notna()
    ]
    if len(d) < 2:
        return f"Too few published {family} estimates at {_months(rel_time)} to compare."
    eb = empirical_bayes(d["estimate"].to_numpy(), d["std_error"].to_numpy())
    raw_sd = float(d["estimate"].std(ddof=1))
    return (
        f"At {_months(rel_time)}, the {len(d)} published {family} estimates have a standard "
        f"deviation of {raw_sd:.1f} pp; after removing what their standard errors explain, "
        f"the spread of the true {family} effects is estimated at {np.sqrt(eb['tau2']):.1f} pp "
        f"around a mean of {_pp(eb['mu'])}. The shrunken estimates in the plot pull each "
        f"{family} towards that mean in proportion to its noise."
    )


def headline_table(table: pd.DataFrame, *, rel_times: Sequence[int]) -> pd.DataFrame:
    """Estimates by group (rows) and headline month (columns)."""
    d = table.loc[table["rel_time"].isin(rel_times)]
    wide = d.pivot(index="group", columns="rel_time", values="estimate")
    wide.columns = [f"month {m}" for m in wide.columns]
    return wide.reset_index()


def _bound(x: float, *, floor: float = 1e-9) -> str:
    """The smallest power of ten at or above ``x`` (at least ``floor``), for print."""
    exponent = int(np.ceil(np.log10(max(float(x), floor))))
    return f"1e{exponent:+03d}"


def describe_linearmodels_check(check: pd.DataFrame, *, tolerance: float = 1e-6) -> str:
    """Whether ``linearmodels`` reproduces the fast estimator's coefficients and errors.

    Parameters
    ----------
    check : DataFrame
        From :func:`leapresearch.evaluate.linearmodels_check`.
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
