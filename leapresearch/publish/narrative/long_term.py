"""Sentences of notebook 06 (long-term effects): later school years' annual outcomes."""

from __future__ import annotations

import pandas as pd

from leapresearch.publish.labels import (
    cohort_key,
    cohort_label,
)
from leapresearch.publish.narrative.common import _pp, _snapped

MARKS = {"pooled": " (pooled slopes)", "none": " (unadjusted)"}
"""How a school year not adjusted with its own slopes is marked (``adjustment``)."""


@_snapped
def describe_long_term(long_term: pd.DataFrame, *, outcome: str = "attendance_rate") -> str:
    """The effects on later school years' annual outcome, pooled group, each cohort.

    Where ``long_term.csv`` says a cell was adjusted with the whole matched sample's
    slopes or not at all (``adjustment``) while others had their own, the cell is marked
    and a sentence says why.
    """
    d = long_term.loc[
        (long_term["group"] == "all")
        & (long_term["outcome"] == outcome)
        & (long_term["years_after"] >= 1)
    ]
    if d.empty:
        return "No later school years are observed for any cohort."
    unit = "attendance rate" if outcome == "attendance_rate" else "share chronically absent"
    kind = pd.Series("group", index=d.index)
    if "adjustment" in d.columns and not long_term["adjustment"].eq("none").all():
        kind = d["adjustment"].where(d["estimate"].notna(), "group")
    parts = []
    for cohort, g in d.groupby("cohort", sort=True):
        vals = ", ".join(
            (
                f"{r.school_year}: {_pp(r.estimate)}{MARKS.get(kind[r.Index], '')}"
                if pd.notna(r.estimate)
                else f"{r.school_year}: suppressed"
            )
            for r in g.sort_values("years_after").itertuples()
        )
        parts.append((cohort_key(cohort), f"{cohort_label(cohort)} cohort ({vals})"))
    parts = [text for _, text in sorted(parts)]
    text = f"Effects on the annual {unit} in later school years: " + "; ".join(parts) + "."
    if kind.ne("group").any():
        text += (
            " A school year whose comparison students were too few for its own regression "
            "adjustment took the whole matched sample's slopes (marked pooled) or none "
            "(marked unadjusted: its estimate rests on the matches alone)."
        )
    return text
