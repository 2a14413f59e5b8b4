"""Descriptive aggregates of the data (no row-level records), for notebook 01."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.calendar import school_year_label
from leapresearch.data.panel import AnalyticPanel


def attendance_by_year(panel: AnalyticPanel) -> pd.DataFrame:
    """Students, mean attendance rate and chronic absence (K-12) per school year.

    Returns
    -------
    DataFrame
        ``school_year``, ``n_students`` (K-12 with membership), ``attendance_rate`` (pooled
        days: sum attended / sum membership, %), ``chronically_absent`` (% of K-12
        students; PK excluded as in the state's official rate).
    """
    a = panel.annual.merge(
        panel.roster[["student", "year", "grade"]], on=["student", "year"], how="left"
    )
    k12 = a.loc[a["grade"] != "PK"]
    g = k12.groupby("year", sort=True)
    out = pd.DataFrame(
        {
            "n_students": g.size(),
            "attendance_rate": 100 * g["attended"].sum() / g["membership"].sum(),
            "chronically_absent": 100 * g["chronically_absent"].mean(),
        }
    ).reset_index()
    out.insert(0, "school_year", [school_year_label(int(y)) for y in out.pop("year")])
    return out


def visited_by_cohort(panel: AnalyticPanel) -> pd.DataFrame:
    """Visited students (first completed visit) per cohort and grade band."""
    ev = panel.events.copy()
    ev["year"] = ev["event_time"] // 10
    ev = ev.merge(
        panel.roster[["student", "year", "grade_band"]], on=["student", "year"], how="left"
    )
    ev["grade_band"] = ev["grade_band"].fillna("not on roster")
    tab = ev.pivot_table(
        index="cohort", columns="grade_band", values="student", aggfunc="count", fill_value=0
    )
    tab.columns = [f"n_{c}" for c in tab.columns]
    tab["n_treated"] = tab.sum(axis=1)
    return tab.reset_index()


def visited_by_month(panel: AnalyticPanel) -> pd.DataFrame:
    """Visited students by event month (school-month index and calendar label)."""
    from leapresearch.data.calendar import index_to_month_label

    counts = panel.events.groupby("event_time").size()
    return pd.DataFrame(
        {
            "event_month": index_to_month_label(counts.index.to_numpy()),
            "n_treated": counts.to_numpy(np.int64),
        }
    )
