"""Sentences on the other designs of notebook 07 (robustness).

The naive before/after change beside the matched estimate, and the Callaway-Sant'Anna
estimators (doubly robust, unconditional) beside it, with whether each difference
exceeds sampling error and what the estimator's own pre-visit rows say about why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.publish.labels import (
    fmt_interval,
)
from leapresearch.publish.narrative.common import _months, _pp, _snapped


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
