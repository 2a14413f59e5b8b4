"""Sentences of notebook 02 (comparison group and balance).

The matching summary (visited, matched, unmatched, outside the caliper), the comparison
pool in words and what its censoring weights do, and covariate balance before and after
matching (with the What Works Clearinghouse standard). :func:`pool_text` is also a line
of the methods box (:mod:`.methods`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.publish.labels import (
    covariate_label,
    fmt,
)
from leapresearch.publish.narrative.common import _snapped


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

    ``summary`` is :func:`leapresearch.analysis.sample.comparison_pool_summary`.
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
    if shown["smd_after"].isna().all():
        return (
            f"No matching covariate's balance is published: each of the {len(used)} stands "
            "for too few visited students (privacy rules)."
        )
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
