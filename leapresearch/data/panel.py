"""The analytic panel: student x school-month attendance, annual rates, first visits.

Everything downstream (comparison pools, matching, event studies, long-term effects)
works on integer student codes; the pseudonymous ``student_id`` of the raw tables stays
inside :class:`AnalyticPanel` and is never written anywhere.

Definitions follow the data contract: the attendance rate of a period is
``(sum attended) / (sum membership)`` over every row (in-person plus remote, every school)
in the period; July and August rows carry no school-year attendance; a student-month
with zero membership has no rate; the first visit is the earliest *completed* visit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leapresearch.data.calendar import (
    cohort_label,
    event_month_index,
    school_month_index,
    school_year_start,
    split_month,
)
from leapresearch.data.types import GRADE_TO_BAND, RACES

ROSTER_COLUMNS = (
    "district",
    "school_id",
    "grade",
    "gender",
    "race_ethnicity",
    "meal_status",
    "ell",
    "swd",
    "home_language",
)


NEVER_VISITED = np.iinfo(np.int64).max
"""First-event month of a student never visited (see :func:`first_event_times`)."""


def first_event_times(events: pd.DataFrame, n_students: int) -> np.ndarray:
    """Event month of each student's first completed visit, by student code.

    ``events`` is :attr:`AnalyticPanel.events`; students without one get
    ``NEVER_VISITED``, so that ``first_event_times(...)[s] > t`` reads "not yet visited
    in month t".
    """
    first = np.full(n_students, NEVER_VISITED, dtype=np.int64)
    first[events["student"].to_numpy()] = events["event_time"].to_numpy()
    return first


@dataclass(frozen=True)
class AnalyticPanel:
    """Student-level analysis data built from the three contract tables.

    Attributes
    ----------
    n_students : int
        Number of distinct students (codes ``0 .. n_students - 1``).
    roster : DataFrame
        One row per (student, year): ``student``, ``year`` (first calendar year of the
        school year), roster columns, ``grade_band``, ``school`` (integer school code).
    monthly : DataFrame
        One row per (student, time) with membership: ``student``, ``time`` (school-month
        index), ``year``, ``attended``, ``membership``, ``rate``.
    annual : DataFrame
        One row per (student, year): ``attended``, ``membership``, ``rate``,
        ``chronically_absent`` (rate below the threshold), ``months``.
    events : DataFrame
        One row per student with a completed visit: ``student``, ``first_visit_date``,
        ``event_time``, ``cohort``, ``first_visit_location``, ``visitor_type``,
        ``n_completed_visits``, ``visits`` (``1``, ``2-3``, ``4+``), ``visit_district``.
    visited_any : ndarray of bool
        Students with any visit record (completed or attempted), by code.
    time_min : int
        The first school-month index of the dense matrices.
    rates : ndarray
        Dense ``(n_students, n_times)`` attendance rates, NaN without membership.
    counts : dict
        Counts of rows set aside by definition (summer rows, zero-membership months).
    """

    n_students: int
    roster: pd.DataFrame
    monthly: pd.DataFrame
    annual: pd.DataFrame
    events: pd.DataFrame
    visited_any: np.ndarray
    time_min: int
    rates: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def times(self) -> np.ndarray:
        """School-month indices of the columns of :attr:`rates`."""
        return np.arange(self.time_min, self.time_min + self.rates.shape[1])


def _student_codes(students: pd.DataFrame) -> pd.Index:
    return pd.Index(np.sort(students["student_id"].astype(str).unique()))


def _codes(ids: pd.Series, index: pd.Index) -> np.ndarray:
    """Each row's student code: its id's position in ``index`` (looked up once per id)."""
    rows, distinct = pd.factorize(ids.astype(str))
    codes = index.get_indexer(pd.Index(distinct, dtype=str))[rows] if len(rows) else rows
    if ((rows < 0) | (codes < 0)).any():
        raise ValueError(
            f"{int(((rows < 0) | (codes < 0)).sum())} rows refer to students missing from the "
            "roster (the contract validator should have refused them)"
        )
    return codes.astype(np.int64, copy=False)


def build_roster(students: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Roster rows keyed by integer student code and school-year start.

    Parameters
    ----------
    students : DataFrame
        The contract's ``students`` table.
    index : Index
        Sorted student ids; a student's code is its position.

    Returns
    -------
    DataFrame
        ``student``, ``year``, roster columns, ``grade_band`` and ``school`` (integer code
        of ``(district, school_id)``), sorted by student and year.
    """
    years = students["school_year"].astype(str)
    starts = {y: school_year_start(y) for y in years.unique()}
    out = pd.DataFrame(
        {
            "student": _codes(students["student_id"], index),
            "year": years.map(starts).astype(np.int64).to_numpy(),
        }
    )
    for col in ROSTER_COLUMNS:
        if col in students.columns:
            out[col] = students[col].to_numpy()
    if "home_language" not in out.columns:
        out["home_language"] = pd.NA
    out["grade"] = out["grade"].astype(str)
    out["grade_band"] = out["grade"].map(GRADE_TO_BAND)
    school_key = out["district"].astype(str) + "\x1f" + out["school_id"].astype(str)
    out["school"] = pd.factorize(school_key, sort=True)[0].astype(np.int64)
    for col in ("ell", "swd"):
        out[col] = out[col].astype(np.int8)
    return out.sort_values(["student", "year"], ignore_index=True)


def build_monthly(attendance: pd.DataFrame, index: pd.Index) -> tuple[pd.DataFrame, dict]:
    """Monthly attendance rate per student and school month.

    Rows of July and August are set aside (they carry no school-year attendance) and
    counted; the rows of one student in one month (several schools) are summed.

    Returns
    -------
    monthly : DataFrame
        ``student``, ``time``, ``year``, ``attended``, ``membership``, ``rate``; only
        student-months with positive membership.
    counts : dict
        ``summer_rows`` and ``zero_membership_months`` set aside by definition.
    """
    # a few dozen distinct months: each one's school-month index, gathered to the rows
    month_codes, months = pd.factorize(attendance["month"].astype(str))
    if (month_codes < 0).any():
        raise ValueError(
            f"{int((month_codes < 0).sum())} attendance rows have no month (the contract "
            "validator should have refused them)"
        )
    time = school_month_index(*split_month(pd.Series(months, dtype=str)))[month_codes]
    del month_codes
    school_month = time >= 0
    rows = slice(None) if school_month.all() else school_month  # a view when no summer row
    attended = attendance["inperson_attended"].to_numpy(np.float64) + attendance[
        "remote_attended"
    ].to_numpy(np.float64)
    membership = attendance["inperson_membership"].to_numpy(np.float64) + attendance[
        "remote_membership"
    ].to_numpy(np.float64)
    sums = _sum_by_student_month(
        _codes(attendance["student_id"], index)[rows],
        time[rows],
        attended[rows],
        membership[rows],
    )
    del time, attended, membership
    positive = sums["membership"] > 0
    counts = {
        "summer_rows": int((~school_month).sum()),
        "zero_membership_months": int((~positive).sum()),
    }
    keep = slice(None) if positive.all() else positive
    sums = {name: values[keep] for name, values in sums.items()}
    monthly = pd.DataFrame(
        {
            "student": sums["student"],
            "time": sums["time"],
            "year": sums["time"] // 10,
            "attended": sums["attended"],
            "membership": sums["membership"],
            "rate": sums["attended"] / sums["membership"],
        },
        copy=False,  # the arrays become the frame's columns, not a second copy of each
    )
    return monthly, counts


def _sum_by_student_month(
    student: np.ndarray, time: np.ndarray, attended: np.ndarray, membership: np.ndarray
) -> dict[str, np.ndarray]:
    """``attended`` and ``membership`` summed by (student, time), sorted by both.

    The columns of ``groupby(["student", "time"], sort=True).sum()``, whatever the order of
    the rows: they are put in key order by a stable sort (skipped when they already are);
    a key of one row keeps its values; the values of a key of several rows (a student in
    two schools in one month) are added from the smallest, so their sum does not depend on
    the order of the file's rows (the groupby's did, in the last bit, for day counts that
    are not whole numbers).
    """
    if len(student) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {"student": empty, "time": empty, "attended": attended, "membership": membership}
    t0 = int(time.min())
    key = np.multiply(student, int(time.max()) - t0 + 1, dtype=np.int64)  # then in place
    key += time
    key -= t0
    if (key[1:] < key[:-1]).any():
        order = np.argsort(key, kind="stable")
        key, student, time = key[order], student[order], time[order]
        attended, membership = attended[order], membership[order]
    first = np.empty(len(key), dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    del key
    if first.all():
        return {"student": student, "time": time, "attended": attended, "membership": membership}
    frame = {"student": student[first], "time": time[first]}
    group = np.cumsum(first) - 1
    rows = np.flatnonzero(np.bincount(group)[group] > 1)  # rows of keys of several rows
    in_group = group[rows]
    starts = np.flatnonzero(np.concatenate(([True], in_group[1:] != in_group[:-1])))
    for name, values in (("attended", attended), ("membership", membership)):
        several = values[rows]
        smallest_first = several[np.lexsort((several, in_group))]
        frame[name] = values[first]  # a copy
        frame[name][in_group[starts]] = np.add.reduceat(smallest_first, starts)
    return frame


def build_annual(monthly: pd.DataFrame, *, chronic_threshold: float = 0.90) -> pd.DataFrame:
    """Annual attendance rate and chronic absence per student and school year.

    Notes
    -----
    ``rate = sum(attended) / sum(membership)`` over the school months of the year;
    ``chronically_absent = rate < chronic_threshold`` (the contract's 0.90 by default).
    """
    annual = monthly.groupby(["student", "year"], sort=True, as_index=False).agg(
        attended=("attended", "sum"),
        membership=("membership", "sum"),
        months=("time", "size"),
    )
    annual["rate"] = annual["attended"] / annual["membership"]
    annual["chronically_absent"] = (annual["rate"] < chronic_threshold).astype(np.int8)
    return annual


def _visit_bin(n: pd.Series) -> pd.Series:
    return pd.Series(np.where(n >= 4, "4+", np.where(n >= 2, "2-3", "1")), index=n.index)


def build_events(visits: pd.DataFrame, index: pd.Index) -> tuple[pd.DataFrame, np.ndarray]:
    """First completed visit of each visited student and its derived labels.

    Returns
    -------
    events : DataFrame
        One row per student with at least one completed visit (see
        :class:`AnalyticPanel`). Ties on the first date are broken by ``visit_id``.
    visited_any : ndarray of bool
        Whether each student code has any visit record.
    """
    visited_any = np.zeros(len(index), dtype=bool)
    if len(visits) == 0:
        cols = [
            "student",
            "first_visit_date",
            "event_time",
            "cohort",
            "first_visit_location",
            "visitor_type",
            "n_completed_visits",
            "visits",
            "visit_district",
        ]
        return pd.DataFrame(columns=cols), visited_any
    student = _codes(visits["student_id"], index)
    visited_any[student] = True
    v = pd.DataFrame(
        {
            "student": student,
            "date": pd.to_datetime(visits["visit_date"]).to_numpy(),
            "visit_id": visits["visit_id"].astype(str).to_numpy(),
            "status": visits["visit_status"].astype(str).to_numpy(),
            "location": visits["visit_location"].astype(str).to_numpy(),
            "visitor_type": visits["visitor_type"].astype(str).to_numpy(),
            "district": visits["district"].astype(str).to_numpy(),
        }
    )
    done = v.loc[v["status"] == "completed"].sort_values(["student", "date", "visit_id"])
    n_done = done.groupby("student").size()
    first = done.drop_duplicates("student", keep="first").set_index("student")
    dates = first["date"]
    events = pd.DataFrame(
        {
            "student": first.index.to_numpy(np.int64),
            "first_visit_date": dates.to_numpy(),
            "event_time": event_month_index(dates.dt.year, dates.dt.month),
            "cohort": cohort_label(dates).to_numpy(),
            "first_visit_location": first["location"].to_numpy(),
            "visitor_type": first["visitor_type"].to_numpy(),
            "n_completed_visits": n_done.reindex(first.index).to_numpy(np.int64),
            "visit_district": first["district"].to_numpy(),
        }
    )
    events["visits"] = _visit_bin(events["n_completed_visits"])
    return events.reset_index(drop=True), visited_any


def dense_rates(monthly: pd.DataFrame, n_students: int) -> tuple[int, np.ndarray]:
    """Dense ``(n_students, n_times)`` matrix of monthly rates (NaN without membership)."""
    if monthly.empty:
        return 0, np.full((n_students, 0), np.nan)
    tmin, tmax = int(monthly["time"].min()), int(monthly["time"].max())
    rates = np.full((n_students, tmax - tmin + 1), np.nan)
    rates[monthly["student"].to_numpy(), monthly["time"].to_numpy() - tmin] = monthly[
        "rate"
    ].to_numpy()
    return tmin, rates


def build_panel(tables, *, chronic_threshold: float = 0.90) -> AnalyticPanel:
    """Build the analytic panel from validated contract tables.

    Parameters
    ----------
    tables : RawTables
        Validated ``students``, ``attendance_monthly`` and ``leap_visits``.
    chronic_threshold : float, default 0.90
        Annual attendance rate below which a student is chronically absent.

    Returns
    -------
    AnalyticPanel
    """
    index = _student_codes(tables.students)
    roster = build_roster(tables.students, index)
    monthly, counts = build_monthly(tables.attendance_monthly, index)
    annual = build_annual(monthly, chronic_threshold=chronic_threshold)
    events, visited_any = build_events(tables.leap_visits, index)
    time_min, rates = dense_rates(monthly, len(index))
    counts = {**counts, "students": len(index), "visited_students": int(len(events))}
    return AnalyticPanel(
        n_students=len(index),
        roster=roster,
        monthly=monthly,
        annual=annual,
        events=events,
        visited_any=visited_any,
        time_min=time_min,
        rates=rates,
        counts=counts,
    )


RACE_DUMMIES = {r: "race_" + r.split(" ")[0].split("/")[0].lower() for r in RACES if r != "White"}
"""Dummy columns for race/ethnicity (reference: White)."""


DUMMY_FAMILIES: dict[str, tuple[str, ...]] = {
    "gender": ("female", "gender_x"),
    "race_ethnicity": tuple(RACE_DUMMIES.values()),
    "meal_status": ("meal_free", "meal_reduced"),
    "home_language": ("home_language_other", "home_language_missing"),
}
"""The 0/1 columns of :func:`demographic_dummies` that code one categorical variable.

Within a family at most one indicator is 1; the omitted reference level (see
:func:`demographic_dummies`) is the rest. Publishing the shares of all but one category
publishes the last one by subtraction, which the disclosure rules of
:mod:`leapresearch.publish.privacy` take into account."""


def row_positions(
    frame: pd.DataFrame, n_students: int, student, key, *, column: str = "year"
) -> np.ndarray:
    """Row positions of ``(student, key)`` pairs in a frame keyed by those columns (-1: none).

    ``key`` is matched against the frame's ``column``. A dense ``student x key`` table of
    row numbers replaces a MultiIndex look-up or a merge, an order of magnitude slower on
    millions of rows (the candidates' school years, the long-term panel's school months).
    """
    keys = frame[column].to_numpy(np.int64)
    k0 = int(keys.min()) if len(keys) else 0
    n_keys = int(keys.max()) - k0 + 1 if len(keys) else 1
    small = len(frame) < np.iinfo(np.int32).max
    table = np.full((n_students, n_keys), -1, dtype=np.int32 if small else np.int64)
    table[frame["student"].to_numpy(np.int64), keys - k0] = np.arange(len(frame))
    s = np.asarray(student, dtype=np.int64)
    k = np.asarray(key, dtype=np.int64) - k0
    ok = (k >= 0) & (k < n_keys)
    out = np.full(len(s), -1, dtype=np.int64)
    out[ok] = table[s[ok], k[ok]]
    return out


def demographic_dummies(roster: pd.DataFrame, demographics: tuple[str, ...]) -> pd.DataFrame:
    """Numeric 0/1 columns for the demographic matching covariates.

    References (omitted levels): gender ``M``, race ``White``, meal status
    ``not_eligible``, home language ``English``. A missing home language counts as
    English and gets its own indicator ``home_language_missing`` when any is missing.
    """
    columns = demographic_indicators(roster, demographics)
    return pd.DataFrame({c: v.astype(np.float64) for c, v in columns.items()}, index=roster.index)


def demographic_indicators(
    roster: pd.DataFrame, demographics: tuple[str, ...], rows: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The columns of :func:`demographic_dummies` of the roster's ``rows`` (None: all).

    Booleans (``ell`` and ``swd`` as the roster holds them), computed once per roster row
    and then gathered, so a frame of many rows per student (the candidates) never copies
    the roster's text columns. ``home_language_missing`` is there when any of ``rows`` has
    no home language.
    """

    def take(values) -> np.ndarray:
        values = np.asarray(values)
        return values if rows is None else values[rows]

    out: dict[str, np.ndarray] = {}
    if "gender" in demographics:
        out["female"] = take(roster["gender"] == "F")
        out["gender_x"] = take(roster["gender"] == "X")
    if "race_ethnicity" in demographics:
        for race, col in RACE_DUMMIES.items():
            out[col] = take(roster["race_ethnicity"] == race)
    if "meal_status" in demographics:
        out["meal_free"] = take(roster["meal_status"] == "free")
        out["meal_reduced"] = take(roster["meal_status"] == "reduced")
    if "ell" in demographics:
        out["ell"] = take(roster["ell"])
    if "swd" in demographics:
        out["swd"] = take(roster["swd"])
    if "home_language" in demographics:
        lang = roster["home_language"]
        missing = take(lang.isna())
        out["home_language_other"] = take((lang != "English") & ~lang.isna())
        if missing.any():
            out["home_language_missing"] = missing
    return out
