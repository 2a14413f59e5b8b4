"""Long-term effects on annual outcomes of later school years.

For each cohort, the matched units of its treated students are followed over school
years. The difference-in-differences is the event study of
:func:`leapresearch.estimation.event_study.event_study` with school years in place of
months and the school year before the cohort's as the reference (``years_after = -1``):

* the annual attendance rate on school-month rows, each weighted by its share of the
  student's enrolled days of its school year (:func:`monthly_long_term_panel`); a
  comparison student visited later leaves at its own event month, exactly as in the
  monthly panel (:func:`leapresearch.design.stacking.stacked_panel`);
* chronic absence, a property of the whole school year, on one row per school year
  (:func:`annual_stacked_panel`); a comparison visited later leaves from the school year
  of its visit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.calendar import index_to_start_year, school_year_label
from leapresearch.data.panel import AnalyticPanel, first_event_times, row_positions
from leapresearch.design.stacking import stacked_panel

ESTIMATE_COLUMNS = ["estimate", "std_error", "ci_lower", "ci_upper", "n_treated", "n_comparison"]
"""Columns of every estimate row in the output tables (after the row's keys)."""

OUTCOME_COLUMNS = {"attendance_rate": "rate", "chronically_absent": "chronically_absent"}

MONTHLY_OUTCOMES = ("attendance_rate",)
"""Annual outcomes that are a day-weighted mean of monthly ones: estimated on month rows."""


def long_term_panel(
    panel: AnalyticPanel, units: pd.DataFrame, *, outcome: str = "attendance_rate"
) -> pd.DataFrame:
    """The panel of one long-term outcome: month rows for the rate, year rows otherwise.

    The annual attendance rate is the day-weighted mean of the monthly rates, so it is
    estimated on the school months (:func:`monthly_long_term_panel`), where a comparison
    visited later is censored at its event month as in the monthly event study; chronic
    absence is a property of the whole school year (:func:`annual_stacked_panel`).
    """
    if outcome in MONTHLY_OUTCOMES:
        return monthly_long_term_panel(panel, units)
    return annual_stacked_panel(panel, units, outcome=outcome)


def monthly_long_term_panel(panel: AnalyticPanel, units: pd.DataFrame) -> pd.DataFrame:
    """Unit x school-month panel whose event time is the school year (annual rate, pp).

    Parameters
    ----------
    panel : AnalyticPanel
        Source of the monthly rates and memberships.
    units : DataFrame
        ``unit``, ``stack``, ``student``, ``treated``, ``weight``, ``school``.

    Returns
    -------
    DataFrame
        The rows of :func:`leapresearch.design.stacking.stacked_panel` over every school
        month (no window), ``time`` the school month, ``rel_time`` = school years after
        the school year of the event month, the monthly rate x 100 in ``y`` and
        ``day_share``, the month's share of the student's enrolled days of that school
        year.

    Notes
    -----
    For unit ``i`` of stack ``s`` in school month ``m`` of school year ``t(m)``, the fit
    (:func:`long_term_table`) is::

        y_ism = a_is + g_sm + sum_{r != -1} b_r * Treated_i * 1[t(m) - c_s = r] + e_ism

    by weighted least squares with weight ``w_i * d_im``: the unit's design weight times
    the month's share of the student's enrolled days in school year ``t(m)``. A visited
    student's school year then weighs as one student, and ``b_r`` compares day-weighted
    means of the monthly rates, which are the annual rates, between the visited students
    and their comparisons, relative to school year ``c_s - 1`` (month-by-stack effects
    ``g_sm`` compare the two groups month by month).

    **Censoring.** A comparison first visited later keeps its months before its event
    month and loses the later ones (:func:`~leapresearch.design.stacking.stacked_panel`,
    no months of anticipation), exactly as in the monthly event study. Dropping the whole
    school year of its visit instead (:func:`annual_stacked_panel`) removes the months of
    the dip that got it visited, so the comparisons left in that year are those whose
    attendance held up, and the visit-year estimate falls below the truth even when the
    program does nothing (``validation/results/families``, before this change).

    **Whose effect.** A visited student with no row in school year ``c_s - 1`` (new to the
    data in its visit year) has no reference row: ``a_is`` absorbs its level and it enters
    ``b_r`` only through the change between its own later school years, so ``b_r`` leans
    on the visited students observed in the reference year. Where their effects differ
    from the new students', ``b_r`` differs from the plain average of the individual
    effects (up to +0.3 pp for all students in the held-out validation, where the new
    students are mostly PK-5: ``validation/long_term_repeat.py``). The analysis therefore
    keeps the units enrolled in the reference year by default
    (:func:`enrolled_in_reference_year`, ``long_term.require_reference_year``): ``b_r``
    is then the effect on the visited students with a record in that year.
    """
    rows = stacked_panel(panel, units)
    monthly = panel.monthly[["student", "time", "membership"]]
    year = monthly["time"].to_numpy() // 10
    total = monthly.groupby([monthly["student"], year], sort=False)["membership"].transform("sum")
    share = monthly["membership"].to_numpy(np.float64) / total.to_numpy(np.float64)
    at = row_positions(monthly, panel.n_students, rows["student"], rows["time"], column="time")
    rows["day_share"] = np.where(at >= 0, share[np.maximum(at, 0)], np.nan)
    rows["rel_time"] = (rows["time"] // 10 - rows["stack"] // 10).astype(np.int64)
    rows = rows.rename(columns={"attendance_pp": "y"})
    cols = ["unit", "stack", "time", "rel_time", "treated", "weight", "student", "school"]
    return rows[[*cols, "y", "day_share"]].sort_values(["unit", "time"], ignore_index=True)


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
        the event month, and the outcome in ``y``; a comparison unit has no rows from the
        school year of its own event month on.

    Notes
    -----
    The long-term fit on this panel (:func:`long_term_table`), for unit ``i`` of stack ``s``
    (an event month) in school year ``t``::

        y_ist = a_is + g_st + sum_{r != -1} b_r * Treated_i * 1[t - c_s = r] + e_ist

    with ``c_s`` the school year of event month ``s`` (``r`` is ``years_after``, school
    year ``c_s - 1`` the reference), unit and stack-by-school-year effects, by weighted
    least squares with the unit weights of the design (matching weights, or those of a
    subgroup).

    **Censoring.** A comparison unit whose student is first visited later, in event month
    ``g`` (:func:`~leapresearch.data.panel.first_event_times`), keeps only the school years
    ``t < g // 10``, those that end before its event month: the monthly panel keeps its
    months ``m < g`` (no months of anticipation), and the annual outcome of the school year
    holding ``g`` already averages treated months. A summer visit's event month is the
    next September, so the school year before it stays. Never-visited comparisons and
    visited students keep every school year. Comparisons are eligible only while not yet
    visited, so the reference school year (which ends before the stack's event month) is
    never censored.
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
    if len(panel.events):
        # a comparison student visited later leaves the panel from the school year of its
        # event month (never-visited students: a year after every school year)
        first_year = index_to_start_year(first_event_times(panel.events, panel.n_students))
        censored = (df["treated"].to_numpy() == 0) & (
            df["year"].to_numpy() >= first_year[df["student"].to_numpy()]
        )
        df = df.loc[~censored].copy()
    df["time"] = df["year"].astype(np.int64)
    df["rel_time"] = (df["year"] - df["stack"] // 10).astype(np.int64)
    df["y"] = 100.0 * df[OUTCOME_COLUMNS[outcome]].astype(np.float64)
    cols = ["unit", "stack", "time", "rel_time", "treated", "weight", "student", "school", "y"]
    return df[cols].sort_values(["unit", "time"], ignore_index=True)


def enrolled_in_reference_year(panel: AnalyticPanel, units: pd.DataFrame) -> np.ndarray:
    """Whether each unit's student is enrolled in the school year before its stack's.

    Enrolled: a school month of that year with membership (the panel's rows). The long-term
    difference-in-differences has a reference row for these units only; a visited student
    new to the data in its visit year has none (``long_term.require_reference_year``).

    Parameters
    ----------
    panel : AnalyticPanel
        Source of the memberships.
    units : DataFrame
        ``stack`` and ``student`` of each unit.

    Returns
    -------
    ndarray of bool
        One value per row of ``units``, in its order.
    """
    monthly = panel.monthly
    member = monthly["membership"].to_numpy() > 0
    students = monthly["student"].to_numpy(np.int64)[member]
    years = monthly["time"].to_numpy(np.int64)[member] // 10
    wanted_year = units["stack"].to_numpy(np.int64) // 10 - 1
    span = int(max(years.max(initial=0), wanted_year.max(initial=0))) + 2
    enrolled = np.unique(students * span + (years + 1))
    wanted = units["student"].to_numpy(np.int64) * span + (wanted_year + 1)
    return np.isin(wanted, enrolled)


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
