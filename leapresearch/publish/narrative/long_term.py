"""Sentences of notebook 06 (long-term effects): later school years' annual outcomes."""

from __future__ import annotations

import pandas as pd

from leapresearch.publish.labels import (
    cohort_key,
    cohort_label,
)
from leapresearch.publish.narrative.common import _pp, _snapped


@_snapped
def describe_long_term(long_term: pd.DataFrame, *, outcome: str = "attendance_rate") -> str:
    """The effects on later school years' annual outcome, pooled group, each cohort.

    Where ``long_term.csv`` says a cell's outcome went unadjusted (``outcome_adjusted``)
    while others were adjusted, the cell is marked and a sentence says why.
    """
    d = long_term.loc[
        (long_term["group"] == "all")
        & (long_term["outcome"] == outcome)
        & (long_term["years_after"] >= 1)
    ]
    if d.empty:
        return "No later school years are observed for any cohort."
    unit = "attendance rate" if outcome == "attendance_rate" else "share chronically absent"
    flag = pd.Series(True, index=d.index)
    if "outcome_adjusted" in d.columns:
        flag = d["outcome_adjusted"].astype("boolean").fillna(True)
        if not long_term["outcome_adjusted"].astype("boolean").fillna(False).any():
            flag[:] = True  # the adjustment is off: nothing to mark
    marked = flag.eq(False) & d["estimate"].notna()
    parts = []
    for cohort, g in d.groupby("cohort", sort=True):
        vals = ", ".join(
            (
                f"{r.school_year}: {_pp(r.estimate)}" + (" (unadjusted)" if marked[r.Index] else "")
                if pd.notna(r.estimate)
                else f"{r.school_year}: suppressed"
            )
            for r in g.sort_values("years_after").itertuples()
        )
        parts.append((cohort_key(cohort), f"{cohort_label(cohort)} cohort ({vals})"))
    parts = [text for _, text in sorted(parts)]
    text = f"Effects on the annual {unit} in later school years: " + "; ".join(parts) + "."
    if marked.any():
        text += (
            " A school year marked unadjusted had too few comparison students for the "
            "regression adjustment's slopes: its estimate rests on the matches alone."
        )
    return text
