"""Sentences generated from the numbers, for the notebooks and the report.

Every interpretation a reader sees under a result is produced here from the published
(suppressed) table, never typed by hand, so re-running on new data rewrites the story.
Numbers are rounded once for print, from the stored value, by
:func:`leapresearch.publish.labels.fmt` (one decimal for percentage points), after being
snapped to 12 significant digits (:func:`leapresearch.publish.outputs.snap`): every table
a sentence reads is snapped first, so a last-bit difference cannot flip a printed digit.
Groups and covariates are named by :mod:`leapresearch.publish.labels`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

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
from leapresearch.publish.outputs import snap_frame

_F = TypeVar("_F", bound=Callable[..., object])


def _snapped(func: _F) -> _F:
    """Call ``func`` with every table argument snapped (:func:`snap_frame`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        args = tuple(snap_frame(a) if isinstance(a, pd.DataFrame) else a for a in args)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


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


@_snapped
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


def _pretrend_sentence(r: pd.Series, alpha: float) -> str:
    basis = r.get("basis", "adjusted")
    months = r.get("months", "")
    verdict = "rejects" if r["p_value"] < alpha else "does not reject"
    where = f" in months {months}" if isinstance(months, str) and months else ""
    return (
        f"On {basis} outcomes{where}, the joint Wald test that all {int(r['df'])} pre-period "
        f"coefficients are zero {verdict} at the {alpha:.0%} level (F = {fmt(r['statistic'], 2)}, "
        f"p = {fmt(r['p_value'], 3)})."
    )


@_snapped
def describe_pretrends(
    pretrends: pd.DataFrame, *, group: str = "all", alpha: float = 0.05, brief: bool = False
) -> str:
    """Every pre-trend test of a group in words, then what they say together.

    Rows may carry ``basis`` (adjusted / unadjusted outcome) and ``months``. A test that
    does not reject is reported as that, not as evidence of parallel trends; a test on
    adjusted outcomes in the months the design fitted is flagged as partly mechanical.
    With ``brief`` (the front page's summary) only what the tests say together.
    """
    rows = pretrends.loc[(pretrends["group"] == group) & pretrends["p_value"].notna()]
    if rows.empty:
        return f"No pre-trend test for {group}."
    parts = [] if brief else [_pretrend_sentence(r, alpha) for _, r in rows.iterrows()]
    rejected = rows.loc[rows["p_value"] < alpha]
    if len(rejected):
        where = ", ".join(
            f"{r.get('basis', 'adjusted')} {r.get('months', '')}".strip()
            for _, r in rejected.iterrows()
        )
        parts.append(
            f"{len(rejected)} of {len(rows)} tests reject ({where}): visited and comparison "
            "students already differed before the first visit, so read the effects with the "
            "sensitivity bounds beside them."
        )
    else:
        parts.append(
            f"None of the {len(rows)} tests rejects at the {alpha:.0%} level; not rejecting "
            "is not evidence that the paths were parallel, only that a difference of the "
            "size these tests can detect is not seen."
        )
    if not brief and "basis" in rows.columns and (rows["basis"] == "adjusted").any():
        parts.append(
            "Tests on adjusted outcomes in the months used for matching are partly "
            "mechanical (the design fitted those months); the tests on unadjusted outcomes "
            "and on months before the matching window are the ones the design did not fit."
        )
    return " ".join(parts)


@_snapped
def describe_pre_period(
    table: pd.DataFrame, *, group: str = "all", reference: int = -1, alpha: float = 0.05
) -> str:
    """Signs and size of the pre-period estimates, with a sign test at ``alpha``.

    Under parallel trends each pre-period estimate is as likely positive as negative;
    a two-sided binomial (sign) test at ``alpha`` says whether they lean one way
    (estimates are correlated, so this is a rough guide).
    """
    from scipy.stats import binomtest

    pre = table.loc[
        (table["group"] == group) & (table["rel_time"] < reference) & table["estimate"].notna()
    ]
    if pre.empty:
        return f"No pre-period estimates for {group}."
    n, pos = len(pre), int((pre["estimate"] > 0).sum())
    excl = int(((pre["ci_lower"] > 0) | (pre["ci_upper"] < 0)).sum())
    p = binomtest(pos, n, 0.5).pvalue
    lean = (
        f"they lean {'positive' if pos > n / 2 else 'negative'} (sign test p = {p:.3f} < "
        f"{alpha:g}): the comparison path was not the same before the first visit"
        if p < alpha
        else f"their signs do not lean one way at the {alpha:.0%} level (sign test p = {p:.3f})"
    )
    return (
        f"Of the {n} pre-period estimates for {group}, {pos} are positive, ranging from "
        f"{_pp(pre['estimate'].min())} to {_pp(pre['estimate'].max())}; {excl} have 95% "
        f"intervals that exclude zero, and {lean}."
    )


@_snapped
def describe_balance(balance: pd.DataFrame, *, threshold: float = 0.1) -> str:
    """How many matching covariates are balanced, and the worst one."""
    used = balance.loc[balance["used_in_matching"]]
    hidden = (
        used["suppressed"].fillna(False).astype(bool)
        if "suppressed" in used
        else pd.Series(False, index=used.index)
    )
    shown = used.loc[~hidden]
    before = (shown["smd_before"].abs() < threshold).sum()
    after = (shown["smd_after"].abs() < threshold).sum()
    worst = shown.loc[shown["smd_after"].abs().idxmax()]
    wwc = (used["wwc_category"] == "satisfies").sum()
    withheld = (
        f"The shares of {int(hidden.sum())} covariates are not published (they stand for too "
        "few students; privacy rules); their What Works Clearinghouse category is. "
        if hidden.any()
        else ""
    )
    return (
        withheld
        + f"Before matching, {before} of {len(shown)} {'published ' if hidden.any() else ''}"
        "matching covariates had an "
        f"absolute standardised mean difference below {threshold}; after matching, {after} do. "
        f"The largest remaining difference is {fmt(worst['smd_after'], 3, signed=True)} "
        f"({covariate_label(worst['covariate'])}). "
        f"{wwc} of {len(used)} covariates meet the What Works Clearinghouse baseline-"
        "equivalence standard without adjustment (|ES| <= 0.05)"
        + (
            "."
            if wwc == len(used)
            else f"; for the other {len(used) - wwc} the event study relies on statistical "
            "adjustment: student fixed effects and the regression adjustment of comparison "
            "students' outcomes on the pre-period trajectory."
        )
    )


@_snapped
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
            "the caliper and kept their single nearest one; the regression adjustment corrects "
            "their remaining differences, and notebook 07 shows their estimate alone and the "
            "estimate without them."
        )
    return (
        f"Of {int(tot['treated']):,} visited students (published cells), {int(tot['matched']):,} "
        f"({share:.0%}) found comparison students; {int(tot['unmatched']):,} did not and are "
        "counted, not dropped silently." + far + " The matched comparison group holds "
        f"{int(tot['comparisons']):,} distinct students summed over cohorts."
    )


@_snapped
def describe_pool(config, summary: pd.DataFrame, *, rel_time: int = 6) -> str:
    """Which comparison pool the run uses and what the censoring weights do at one month.

    ``summary`` is :func:`leapresearch.evaluate.comparison_pool_summary`.
    """
    pool = config.comparison_pool
    text = f"Comparison students are students {pool_text(pool)}."
    row = summary.loc[summary["rel_time"] == rel_time]
    if not pool.not_yet_visited or row.empty:
        return text
    r = row.iloc[0]
    if pd.isna(r["visited_later_share"]):  # suppressed: too few students to publish
        return text
    text += (
        f" At month {rel_time}, {r['visited_later_share']:.0%} of the comparison units "
        "still observed are students visited later."
    )
    if pool.censoring_weights:
        text += (
            f" Their censoring weights average {r['mean_censoring_weight']:.2f} (largest "
            f"{r['max_censoring_weight']:.1f}): comparisons whose recent attendance made a "
            "visit likely, but who were not yet visited, stand in for those who were."
        )
    return text


@_snapped
def describe_naive(naive: pd.DataFrame, table: pd.DataFrame, *, rel_time: int = 6) -> str:
    """How much of the naive before/after change the comparison group removes."""
    n = naive.loc[(naive["group"] == "all") & (naive["rel_time"] == rel_time), "estimate"]
    m = table.loc[(table["group"] == "all") & (table["rel_time"] == rel_time), "estimate"]
    if n.empty or m.empty or pd.isna(n.iloc[0]) or pd.isna(m.iloc[0]):
        return "The naive comparison is not available."
    naive_v, matched_v = float(n.iloc[0]), float(m.iloc[0])
    gap = naive_v - matched_v
    reading = (
        f"the difference, {_pp(gap)}, is the change the matched comparison students also "
        "made without a visit (recovery from a low spell, or a common trend)"
        if gap > 0
        else f"the comparison students' attendance fell by {_pp(-gap)[1:]} over the same "
        "months, so the effect exceeds the raw change"
    )
    return (
        f"{_months(rel_time).capitalize()} after the first visit, visited students' attendance "
        f"had changed by {_pp(naive_v)} since the month before it. The matched comparison "
        f"puts the effect at {_pp(matched_v)}: {reading}."
    )


@_snapped
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


@_snapped
def describe_placebo(placebo: pd.DataFrame) -> str:
    """The fake-event estimates, and what this placebo can and cannot test."""
    if "note" in placebo.columns:
        return f"The placebo could not be estimated ({placebo['note'].iloc[0]})."
    post = placebo.loc[placebo["rel_time"] >= 0]
    if post.empty:
        return "No placebo estimates."
    shift = int(placebo["shift_months"].iloc[0])
    covers = ((post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)).sum()
    biggest = post.loc[post["estimate"].abs().idxmax()]
    early = post.loc[post["rel_time"] < shift // 2]
    late = post.loc[post["rel_time"] >= shift // 2]
    text = (
        f"With a fake first visit {shift} months early, {covers} of {len(post)} placebo "
        f"'effects' have 95% intervals that include zero; the largest is "
        f"{_pp(biggest['estimate'])} at month {int(biggest['rel_time'])}."
    )
    if len(early):
        early_cov = ((early["ci_lower"] <= 0) & (early["ci_upper"] >= 0)).sum()
        text += (
            f" In the first {len(early)} placebo months, furthest from the real visit, "
            f"{early_cov} of {len(early)} intervals include zero"
            + (
                ": there the matched groups moved together."
                if early_cov == len(early)
                else ": even there the matched groups did not move together."
            )
        )
    if len(late):
        late_mean = float(late["estimate"].mean())
        text += (
            f" The last {len(late)} placebo months fall in the weeks before the real visit, "
            f"when students were picked for a low spell (mean placebo 'effect' "
            f"{_pp(late_mean)}); this placebo therefore cannot test whether the matching "
            "absorbs the selection at the real event month. The falsification with "
            "never-visited students who had the same dip is the check that can fail."
        )
    return text


@_snapped
def describe_falsification(falsification: pd.DataFrame, *, group: str = "all") -> str:
    """Whether pseudo-events for never-visited students with the same dip show an effect."""
    if "note" in falsification.columns:
        return f"The falsification could not be estimated ({falsification['note'].iloc[0]})."
    post = falsification.loc[
        (falsification["group"] == group)
        & (falsification["rel_time"] >= 0)
        & falsification["estimate"].notna()
    ]
    if post.empty:
        return f"No published falsification estimates for {group}."
    covers = int(((post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)).sum())
    n = len(post)
    mean = float(post["estimate"].mean())
    biggest = post.loc[post["estimate"].abs().idxmax()]
    verdict = (
        "the design leaves no detectable rebound from the dip in its estimates"
        if covers >= 0.8 * n
        else "the design leaves part of the rebound from the dip in its estimates, so the "
        "effects above are overstated by about this much"
    )
    from scipy.stats import binomtest

    pos = int((post["estimate"] > 0).sum())
    p = binomtest(pos, n, 0.5).pvalue
    lean = (
        f" The pseudo-effects lean {'positive' if pos > n / 2 else 'negative'} ({pos} of {n} "
        f"positive, sign test p = {p:.3f} < 0.05): if this carries over to the visited "
        f"students, the design {'over' if pos > n / 2 else 'under'}states effects by about "
        f"{abs(mean):.1f} pp."
        if p < 0.05
        else ""
    )
    return (
        f"Never-visited students given a pseudo first visit at the month their attendance "
        f"dipped as visited students' had ({group}): {covers} of {n} post-period "
        f"intervals include zero (threshold for 'no rebound': at least 80%), mean "
        f"pseudo-effect {_pp(mean)}, largest {_pp(biggest['estimate'])} at month "
        f"{int(biggest['rel_time'])}: {verdict}." + lean
    )


@_snapped
def describe_sensitivity(sensitivity: pd.DataFrame, *, group: str = "all") -> str:
    """Breakdown values of the Rambachan-Roth bounds at each headline month."""
    if "note" in sensitivity.columns:
        return f"The sensitivity bounds could not be computed ({sensitivity['note'].iloc[0]})."
    d = sensitivity.loc[(sensitivity["group"] == group) & sensitivity["breakdown"].notna()]
    if d.empty:
        return f"No published sensitivity bounds for {group}."
    parts = []
    for r, g in d.groupby("rel_time", sort=True):
        rm = g.loc[g["method"] == "relative_magnitudes", "breakdown"]
        sd = g.loc[g["method"] == "smoothness", "breakdown"]
        parts.append(
            f"at {_months(int(r))}, Mbar = {rm.iloc[0]:.2f} and M = {sd.iloc[0]:.2f} pp"
            if len(rm) and len(sd)
            else f"at {_months(int(r))}, not available"
        )
    weakest = d.loc[d["method"] == "relative_magnitudes", "breakdown"].min()
    reading = (
        "the conclusion that the effect is not zero survives post-visit departures from "
        "parallel trends as large as the largest pre-visit month-to-month change"
        if weakest >= 1
        else "the conclusion that the effect is not zero does not survive post-visit "
        "departures from parallel trends as large as the largest month-to-month change "
        "seen before the visit (Mbar = 1)"
    )
    return (
        f"Breakdown values for {group} (the smallest bound at which the 95% interval "
        f"includes zero): " + "; ".join(parts) + f". With the smallest Mbar at "
        f"{weakest:.2f}, {reading}."
    )


ROBUST_NAMES = {
    "dr": "doubly-robust Callaway-Sant'Anna estimator",
    "unconditional": "unconditional Callaway-Sant'Anna estimator",
}
"""How each row set of ``robust_estimator.csv`` (column ``estimator``) is named in text."""
ROBUST_COMPARISON_WORDS = {
    "never_visited": "never-visited students",
    "not_yet_visited": "students visited later",
    "not_yet_or_never_visited": "students visited later or never",
}


def _robust_sets(robust: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(estimator, comparison, rows)`` per row set, the doubly-robust one first."""
    if "estimator" not in robust.columns:  # tables written before the row sets existed
        return [("", "not_yet_visited", robust)]
    out = []
    for est, d in robust.groupby("estimator", sort=False):
        comp = d["comparison"].iloc[0] if "comparison" in d.columns else ""
        out.append((str(est), str(comp), d))
    return sorted(out, key=lambda x: x[0] != "dr")


def _estimate_at(d: pd.DataFrame, rel_time: int) -> tuple[float, float] | None:
    row = d.loc[(d["group"] == "all") & (d["rel_time"] == rel_time)] if "group" in d else d
    row = row.loc[row["rel_time"] == rel_time]
    if row.empty or pd.isna(row["estimate"].iloc[0]):
        return None
    return float(row["estimate"].iloc[0]), float(row["std_error"].iloc[0])


def _pre_visit_gap(d: pd.DataFrame) -> tuple[int, float] | None:
    """The pre-visit row furthest from zero among those whose 95% interval excludes it."""
    pre = d.loc[(d["rel_time"] < 0) & d["std_error"].notna() & d["estimate"].notna()]
    pre = pre.loc[(pre["estimate"].abs() - 1.96 * pre["std_error"]) > 0]
    if pre.empty:
        return None
    r = pre.loc[pre["estimate"].abs().idxmax()]
    return int(r["rel_time"]), float(r["estimate"])


def _why_differ(name: str, d: pd.DataFrame, gap: float, z: float, other: str) -> str:
    """Whether ``gap`` exceeds sampling error and what the row set's pre-visit rows say."""
    if abs(z) < 1.96:
        return f"The difference, {_pp(gap)}, is within sampling error (z = {z:.1f})."
    pre = _pre_visit_gap(d)
    if pre is None:
        reason = (
            "its pre-visit rows are all within sampling error of zero, so the gap comes "
            "from which students serve as comparisons and how they are weighted, not from a "
            "difference visible before the visit"
        )
    else:
        month, value = pre
        side = "below" if value < 0 else "above"
        rebound = (
            "students picked in a low spell rebound, and a comparison that does not share "
            "the dip counts that rebound as an effect"
            if value < 0
            else "a comparison that does not share that rise counts its reversal against the visit"
        )
        reason = (
            f"its own pre-visit rows put visited students {_pp(abs(value))[1:]} {side} its "
            f"comparison students {_months(-month)} before the visit (relative to its base "
            f"month): {rebound}"
        )
    return (
        f"The difference from {other}, {_pp(gap)}, is larger than sampling error "
        f"(z = {z:.1f}): {reason}."
    )


@_snapped
def describe_robust(robust: pd.DataFrame, table: pd.DataFrame, *, rel_time: int = 6) -> str:
    """The Callaway-Sant'Anna estimates beside the matched one, and why they differ.

    Each row set of ``robust_estimator.csv`` (doubly robust first, then unconditional)
    is compared with the matched estimate (and the unconditional one with the doubly
    robust one) at ``rel_time``: a difference is called larger than sampling error when
    ``|gap| / sqrt(se_1^2 + se_2^2) >= 1.96`` (the covariance of the two is ignored), and
    is then explained by the set's own pre-visit rows (the row furthest from zero whose
    95% interval excludes zero), or said not to show before the visit.
    """
    if "note" in robust.columns:
        return f"The robust estimator could not be computed ({robust['note'].iloc[0]})."
    matched = _estimate_at(table, rel_time)
    sets = [(e, c, d, _estimate_at(d, rel_time)) for e, c, d in _robust_sets(robust)]
    sets = [s for s in sets if s[3] is not None]
    if matched is None or not sets:
        return "The robust estimator has no estimate at that month."
    m, m_se = matched
    out = []
    first_value: tuple[float, float] | None = None
    for est, comp, d, (r, r_se) in sets:
        name = ROBUST_NAMES.get(est, "Callaway-Sant'Anna estimator")
        who = ROBUST_COMPARISON_WORDS.get(comp, "students visited later")
        how = (
            " with the same attendance trajectory up to the month before the visit"
            if est == "dr"
            else ", without conditioning on attendance before the visit"
        )
        lo, hi = r - 1.96 * r_se, r + 1.96 * r_se
        if first_value is None:
            out.append(
                f"At {_months(rel_time)}, the {name}, which compares visited students with "
                f"{who}{how}, gives {_pp(r)} (95% CI {fmt_interval(lo, hi)}) against "
                f"{_pp(m)} from the matched event study."
            )
            z = (r - m) / np.hypot(r_se, m_se)
            out.append(_why_differ(name, d, r - m, z, "the matched estimate"))
            first_value = (r, r_se)
            continue
        out.append(
            f"The {name}, which compares them with {who}{how}, gives {_pp(r)} "
            f"(95% CI {fmt_interval(lo, hi)})."
        )
        z = (r - first_value[0]) / np.hypot(r_se, first_value[1])
        out.append(_why_differ(name, d, r - first_value[0], z, f"the {sets[0][0]} estimate"))
    return " ".join(out).replace("the dr estimate", "the doubly-robust estimate")


@_snapped
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


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@_snapped
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


@_snapped
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


@_snapped
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


@_snapped
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
        parts.append(
            "Pre-trend tests (notebook 03): "
            + describe_pretrends(pretrends, alpha=alpha, brief=True)
        )
    return " ".join(parts)


def pool_text(pool) -> str:
    """Who may be a comparison student, in words (``comparison_pool`` parameters)."""
    if not pool.not_yet_visited:
        return "never visited in the data"
    text = (
        "not yet visited in the event month (a student visited later is a comparison "
        "until that visit"
    )
    if pool.censoring_weights:
        text += (
            ", and its months are weighted by the inverse probability of not yet having "
            "been visited, from a model of the monthly visit hazard on recent attendance"
        )
    return text + ")"


def _inference_method(config) -> str:
    """The methods-box sentence on the bootstrap, the intervals shown and the band."""
    inf, a = config.inference, config.analysis
    which = (
        "the bootstrap's (normal, with its standard errors)"
        if inf.intervals == "bootstrap"
        else "the analytic ones"
    )
    band = (
        f"; the figures add a {1 - a.alpha:.0%} simultaneous (sup-t) band over the post-visit "
        f"months 0 to {a.window[1] - 1}"
        if inf.band
        else ""
    )
    return (
        f"Inference: beside the analytic errors, a multiplier (Otsu-Rai weighted) bootstrap "
        f"over the same clusters with {inf.bootstrap_draws} draws, matches held fixed (the "
        f"propensity score and the regression adjustment are not re-estimated); the intervals "
        f"shown are {which}{band}."
    )


def _robust_method(robust) -> str:
    """The robust estimator in words, from the ``robust`` parameters."""
    who = {"nevertreated": "never-visited", "notyettreated": "not-yet-visited"}
    kind = "the doubly-robust " if robust.est_method == "dr" else "the "
    return f"{kind}Callaway-Sant'Anna estimator with {who[robust.control_group]} comparisons"


def methods_text(config, *, cluster: str | None = None) -> list[str]:
    """The methods box: the design in a few sentences, from the parameters of the run.

    ``cluster`` is the level the run's errors were clustered by, when it is not the one
    the parameters ask for (:func:`leapresearch.evaluate.cluster_level`).
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
        "pre-period coefficients.",
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
        tested = pretrends.loc[pretrends["p_value"].notna(), "group"].unique()
        bad = pretrends.loc[pretrends["p_value"] < alpha, "group"].unique()
        out.append(
            f"At least one pre-trend test rejects parallel trends at the {alpha:.0%} level for "
            f"{len(bad)} of {len(tested)} groups"
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


# --------------------------------------------------------------------------------------
# identification: specifications, intent to treat, composition, published figures
# --------------------------------------------------------------------------------------


@_snapped
def specification_table(
    specifications: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (1, 3, 6, 9)
) -> pd.DataFrame:
    """Estimates by specification (rows, ``main`` first) and headline month (columns)."""
    d = specifications.loc[
        (specifications["group"] == group) & specifications["rel_time"].isin(rel_times)
    ]
    wide = d.pivot(index="specification", columns="rel_time", values="estimate")
    wide.columns = [f"month {m}" for m in wide.columns]
    order = sorted(wide.index, key=lambda s: (s != "main", s))
    return wide.loc[order].reset_index()


@_snapped
def describe_specifications(
    specifications: pd.DataFrame, *, group: str = "all", rel_time: int = 9
) -> str:
    """How far the estimate moves across design switches, and which switch moves it most."""
    if "note" in specifications.columns:
        return f"The specifications could not be estimated ({specifications['note'].iloc[0]})."
    d = specifications.loc[
        (specifications["group"] == group)
        & (specifications["rel_time"] == rel_time)
        & specifications["estimate"].notna()
    ].set_index("specification")
    if "main" not in d.index:
        return f"No published main estimate for {group} at {_months(rel_time)}."
    main = d.loc["main"]
    others = d.drop(index="main").drop(index="outside_caliper_only", errors="ignore")
    if others.empty:
        return "No alternative specification was estimated."
    gap = others["estimate"] - main["estimate"]
    outside = (
        (others["estimate"] < main["ci_lower"]) | (others["estimate"] > main["ci_upper"])
    ).sum()
    far = gap.abs().idxmax()
    excludes_zero = ((others["ci_lower"] > 0) | (others["ci_upper"] < 0)).sum()
    return (
        f"At {_months(rel_time)} ({group}), the main estimate is {_pp(main['estimate'])}; "
        f"across {len(others)} alternative specifications (the out-of-caliper subset aside) "
        f"it ranges from {_pp(others['estimate'].min())} to {_pp(others['estimate'].max())}, "
        f"{outside} of them outside the main 95% interval. The largest change comes from "
        f"{far} ({_pp(gap[far])}). {excludes_zero} of {len(others)} alternative intervals "
        "exclude zero."
    )


@_snapped
def describe_intent_to_treat(
    specifications: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (6,)
) -> str:
    """The effect of a first contact of any status beside the effect of a completed visit."""
    d = specifications.loc[specifications["group"] == group]
    parts = []
    for r in rel_times:
        at = d.loc[d["rel_time"] == r].set_index("specification")
        if not {"intent_to_treat", "main"} <= set(at.index):
            continue
        itt, main = at.loc["intent_to_treat"], at.loc["main"]
        if pd.isna(itt["estimate"]) or pd.isna(main["estimate"]):
            continue
        share = itt["estimate"] / main["estimate"] if main["estimate"] else np.nan
        parts.append(
            f"at {_months(r)} {_pp(itt['estimate'])} (95% CI {itt['ci_lower']:.1f} to "
            f"{itt['ci_upper']:.1f}; {int(itt['n_treated']):,} contacted students) against "
            f"{_pp(main['estimate'])} for the first completed visit ({share:.0%} of it)"
        )
    if not parts:
        return "The intent-to-treat estimate is not available (or is suppressed)."
    return (
        f"Keyed to the first contact of any status ({group}), the effect is "
        + "; ".join(parts)
        + ". The intent-to-treat estimate does not condition on a family agreeing to and "
        "completing a visit; the gap to the completed-visit estimate is what selection on "
        "reachability and the dilution by contacts that never became visits account for "
        "together."
    )


@_snapped
def describe_composition(balanced: pd.DataFrame, *, rel_time: int = 9) -> str:
    """The full-sample estimate beside the one on students observed in every month."""
    d = balanced.loc[balanced["rel_time"] == rel_time].set_index("sample")
    if not {"full", "balanced"} <= set(d.index):
        return "The balanced-sample estimate is not available."
    f, b = d.loc["full"], d.loc["balanced"]
    return (
        f"At {_months(rel_time)} the full sample ({int(f['n_treated']):,} visited students "
        f"observed that month) gives {_pp(f['estimate'])}; the students enrolled in every "
        f"month of the balanced window ({int(b['n_treated']):,}) give {_pp(b['estimate'])}, "
        f"a difference of {_pp(f['estimate'] - b['estimate'])} that reflects who is observed "
        "as well as how effects change with time."
    )


@_snapped
def crosswalk(table: pd.DataFrame, published: Sequence) -> pd.DataFrame:
    """Our headline estimates beside the published figures (notebook 08, the front page).

    Parameters
    ----------
    table : DataFrame
        The published (suppressed) ``event_study.csv``.
    published : sequence of PublishedFigure
        ``report.published`` of the parameters.

    Returns
    -------
    DataFrame
        ``group, rel_time, published, estimate, ci_lower, ci_upper, difference,
        published_in_ci, definition`` (``definition``: what differs from ours).
    """
    rows = []
    for p in published:
        hit = table.loc[(table["group"] == p.group) & (table["rel_time"] == p.rel_time)]
        r = hit.iloc[0] if len(hit) else pd.Series(dtype=float)
        est, lo, hi = (r.get(c, np.nan) for c in ("estimate", "ci_lower", "ci_upper"))
        rows.append(
            {
                "group": p.group,
                "rel_time": p.rel_time,
                "published": float(p.estimate),
                "estimate": est,
                "ci_lower": lo,
                "ci_upper": hi,
                "difference": est - p.estimate,
                "published_in_ci": bool(lo <= p.estimate <= hi) if pd.notna(est) else None,
                "definition": ("published as approximate; " if p.approximate else "")
                + p.difference,
            }
        )
    return pd.DataFrame(rows)


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
        (half-width over the bootstrap error, against the pointwise 1.96), and the range
        of bootstrap-over-analytic error ratios at the headline months.
    """
    who = group_label(group).lower() if group == "all" else group_label(group)
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
    return " ".join(out)
