"""Long-term effects on annual outcomes of later school years.

For each cohort, the matched units of its treated students form an annual panel (one row
per unit and school year with membership). The difference-in-differences is the event
study of :func:`leapresearch.estimation.event_study.event_study` on that panel, with school years in
place of months and the school year before the cohort's as the reference
(``years_after = -1``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.calendar import school_year_label
from leapresearch.data.panel import AnalyticPanel

ESTIMATE_COLUMNS = ["estimate", "std_error", "ci_lower", "ci_upper", "n_treated", "n_comparison"]
"""Columns of every estimate row in the output tables (after the row's keys)."""

OUTCOME_COLUMNS = {"attendance_rate": "rate", "chronically_absent": "chronically_absent"}


def annual_stacked_panel(
    panel: AnalyticPanel, units: pd.DataFrame, *, outcome: str = "attendance_rate"
) -> pd.DataFrame:
    """Unit x school-year panel of an annual outcome, in percentage points.

    Parameters
    ----------
    panel : AnalyticPanel
        Source of annual rates.
    units : DataFrame
        ``unit``, ``stack``, ``student``, ``treated``, ``weight``, ``school``.
    outcome : {"attendance_rate", "chronically_absent"}
        Annual attendance rate x 100, or chronic absence (0/100; school years in which the
        student was in PK are left out, as in the state's K-12 measure).

    Returns
    -------
    DataFrame
        Columns of :func:`leapresearch.design.stacking.stacked_panel` with ``time`` the first
        calendar year of the school year, ``rel_time`` = years after the school year of
        the event month, and the outcome in ``y``.
    """
    if outcome not in OUTCOME_COLUMNS:
        raise ValueError(f"outcome must be one of {sorted(OUTCOME_COLUMNS)}, got {outcome!r}")
    annual = panel.annual[["student", "year", OUTCOME_COLUMNS[outcome]]]
    if outcome == "chronically_absent":
        # the state's chronic-absence measure covers K-12: PK years are left out
        grade = panel.roster[["student", "year", "grade"]]
        annual = annual.merge(grade, on=["student", "year"], how="left")
        annual = annual.loc[annual["grade"] != "PK"].drop(columns="grade")
    df = units.merge(annual, on="student", how="inner")
    df["time"] = df["year"].astype(np.int64)
    df["rel_time"] = (df["year"] - df["stack"] // 10).astype(np.int64)
    df["y"] = 100.0 * df[OUTCOME_COLUMNS[outcome]].astype(np.float64)
    cols = ["unit", "stack", "time", "rel_time", "treated", "weight", "student", "school", "y"]
    return df[cols].sort_values(["unit", "time"], ignore_index=True)


def long_term_table(result, *, cohort_year: int, alpha: float = 0.05) -> pd.DataFrame:
    """Tidy rows of one long-term fit: school year, years after, estimate and interval.

    Parameters
    ----------
    result : EventStudyResult
        Fit on :func:`annual_stacked_panel` with ``window=None`` and reference ``-1``.
    cohort_year : int
        First calendar year of the school year of the cohort's event month.
    alpha : float
        1 - confidence level.
    """
    tab = result.table(alpha=alpha).rename(columns={"rel_time": "years_after"})
    tab = tab.loc[tab["years_after"] != result.reference].copy()
    tab["school_year"] = [school_year_label(cohort_year + int(r)) for r in tab["years_after"]]
    return tab[["school_year", "years_after", *ESTIMATE_COLUMNS]].reset_index(drop=True)
