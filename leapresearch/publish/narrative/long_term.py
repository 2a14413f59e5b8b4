"""Sentences of notebook 06 (long-term effects): later school years' annual outcomes."""

from __future__ import annotations

import pandas as pd

from leapresearch.publish.labels import (
    cohort_key,
    cohort_label,
    fmt,
)
from leapresearch.publish.narrative.common import _pp, _snapped

MARKS = {"pooled": " (pooled slopes)", "none": " (unadjusted)"}
"""How a school year not adjusted with its own slopes is marked (``adjustment``)."""


@_snapped
def describe_long_term(
    long_term: pd.DataFrame, *, outcome: str = "attendance_rate", required: bool = False
) -> str:
    """The effects on later school years' annual outcome, pooled group, each cohort.

    Where ``long_term.csv`` says a cell was adjusted with the whole matched sample's
    slopes or not at all (``adjustment``) while others had their own, the cell is marked
    and a sentence says why. ``required``: ``long_term.require_reference_year`` of the
    run, whose estimand (the visited students with a record in the reference year) the
    sentence then names.
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
    whose = (
        ", for the visited students with a record in the school year before their first visit's"
        if required
        else ""
    )
    text = f"Effects on the annual {unit} in later school years{whose}: " + "; ".join(parts) + "."
    if kind.ne("group").any():
        text += (
            " A school year whose comparison students were too few for its own regression "
            "adjustment took the whole matched sample's slopes (marked pooled) or none "
            "(marked unadjusted: its estimate rests on the matches alone)."
        )
    return text


@_snapped
def describe_long_term_coverage(coverage: pd.DataFrame, *, required: bool) -> str:
    """Whose effect the long-term cells are: the visited students with a reference year.

    ``coverage``: the published ``long_term_coverage`` table (a suppressed count is
    missing and left out of the sums, and the sentence says so). ``required``:
    ``long_term.require_reference_year``.
    """
    if coverage.empty or "n_visited" not in coverage:
        return "No cohort's coverage of the long-term cells is available."
    counts = coverage[["n_visited", "n_with_reference_year", "n_new_in_visit_year"]]
    complete = counts.notna().all(axis=1)
    shown = coverage.loc[complete]
    visited = int(shown["n_visited"].sum())
    kept = int(shown["n_with_reference_year"].sum())
    new = int(shown["n_new_in_visit_year"].sum())
    if visited == 0:
        return "Every cohort's coverage count is suppressed (small cells)."
    share = shown["n_new_in_visit_year"] / shown["n_visited"].where(shown["n_visited"] > 0)
    most = shown.loc[share.idxmax()] if share.notna().any() else None
    text = (
        f"{kept:,} of the {visited:,} matched visited students ({fmt(100 * kept / visited, 0)}%) "
        f"were enrolled in the school year before their first visit's; {new:,} were new to "
        "the data in their visit year"
    )
    if most is not None and most["n_new_in_visit_year"] > 0:
        text += (
            f" (the most in the {cohort_label(most['cohort'])} cohort, "
            f"{fmt(100 * share.max(), 0)}%)"
        )
    if required:
        text += (
            ". The long-term cells are the effect on the first: the new students have no "
            "reference year and are left out, with their comparisons."
        )
    else:
        text += (
            ". They stay in the long-term cells without a reference year, counted only "
            "through the changes between their own later school years."
        )
    if not complete.all():
        text += f" {int((~complete).sum())} cohort(s) with suppressed counts are left out."
    return text
