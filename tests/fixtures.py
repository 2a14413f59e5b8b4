"""A tiny, hand-checkable VALID data folder, built in code (no simulator).

30 students in 3 districts (2 schools each), school years 2021-22 and 2022-23
(students 28 and 29 leave after 2021-22), monthly attendance September to June,
plus the cases the contract calls out:

* SASIDs with leading zeros (every even student's id starts with ``00``);
* a student (5) who changes school in January 2022: two rows that month;
* a July 2022 summer-school attendance row (student 3);
* remote days in Hartford in autumn 2021;
* 8 visits: two completed visits of one student (0), an attempt followed by a
  completed visit (1), a July 2022 visit (2, cohort ``summer-2022``), and an
  attempt with no completed visit (9);
* one missing ``home_language`` (student 7): the column is optional.

:func:`valid_tables` gives the tables as the text written to CSV (all ``str``);
:func:`write_folder` writes them as CSV, Parquet or a mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.data.types import GENDERS, GRADES, MEAL_STATUSES, RACES

PROGRAM_START = date(2021, 4, 1)
"""First possible LEAP visit date, used with ``program_start`` in tests."""

N_STUDENTS = 30
SCHOOL_YEARS = ("2021-22", "2022-23")
DISTRICTS = ("Hartford", "New Haven", "Bridgeport")
SCHOOLS = {
    "Hartford": ("0641011", "0641112"),
    "New Haven": ("0931021", "0931122"),
    "Bridgeport": ("0151031", "0151132"),
}
SCHOOL_MONTHS = ("09", "10", "11", "12", "01", "02", "03", "04", "05", "06")

SWITCHER, SWITCH_MONTH = 5, "2022-01"
SUMMER_STUDENT, SUMMER_MONTH = 3, "2022-07"

EXPECTED_SUMMARY = {
    "students": 30,
    "student_years": 58,
    "school_years": ["2021-22", "2022-23"],
    "months_with_data": 21,
    "first_month": "2021-09",
    "last_month": "2023-06",
    "attendance_rows": 58 * 10 + 2,
    "visits": 8,
    "completed_visits": 6,
    "students_with_completed_visit": 5,
    "cohorts": {"2021-22": 3, "summer-2022": 1, "2022-23": 1},
}


def student_ids() -> np.ndarray:
    """SASIDs of the 30 students: 10 digits, every even one starting with ``00``."""
    i = np.arange(N_STUDENTS)
    body = (i * 7_919 + 104_729) * 9_973 % 10**8
    even = np.char.add("00", np.char.zfill(body.astype(str), 8))
    odd = np.char.add("1", np.char.zfill((body * 7 % 10**9).astype(str), 9))
    return np.where(i % 2 == 0, even, odd)


def _students() -> pd.DataFrame:
    i = np.arange(N_STUDENTS)
    district = np.array(DISTRICTS)[i % 3]
    school = np.array([SCHOOLS[d][k] for d, k in zip(district, (i // 3) % 2, strict=True)])
    base = pd.DataFrame(
        {
            "i": i,
            "student_id": student_ids(),
            "district": district,
            "school_id": school,
            "grade_index": i % 12,
            "gender": np.array(GENDERS)[i % 3],
            "race_ethnicity": np.array(RACES)[i % 7],
            "meal_status": np.array(MEAL_STATUSES)[i % 3],
            "ell": (i % 4 == 0).astype(int).astype(str),
            "swd": (i % 5 == 0).astype(int).astype(str),
            "home_language": np.where(i == 7, "", np.array(["English", "Spanish", "Other"])[i % 3]),
        }
    )
    years = pd.DataFrame({"school_year": SCHOOL_YEARS, "year_index": [0, 1]})
    out = base.merge(years, how="cross")
    out = out[(out["year_index"] == 0) | (out["i"] < N_STUDENTS - 2)]
    out = out.sort_values(["year_index", "i"], kind="stable").reset_index(drop=True)
    out["grade"] = np.array(GRADES)[out["grade_index"] + out["year_index"]]
    return out


def _attendance(students: pd.DataFrame) -> pd.DataFrame:
    months = pd.DataFrame({"m": np.arange(10), "mm": SCHOOL_MONTHS})
    a = students[["i", "student_id", "district", "school_id", "school_year", "year_index"]]
    a = a.merge(months, how="cross")
    start = 2021 + a["year_index"] + (a["m"] >= 4)
    a["month"] = start.astype(str) + "-" + a["mm"]
    a["in_mem"] = 18 + (a["i"] + a["m"]) % 3
    remote = (a["district"] == "Hartford") & (a["year_index"] == 0) & (a["m"] < 4)
    a["rem_mem"] = np.where(remote, 2, 0)
    a["in_att"] = a["in_mem"] - (a["i"] * 7 + a["m"]) % 5 - np.where(a["i"] % 6 == 0, 3, 0)
    a["rem_att"] = np.where(remote, 1, 0)

    # student 5 changes school in January 2022: 8 days at the first, 10 at the second
    switch = (a["i"] == SWITCHER) & (a["month"] == SWITCH_MONTH)
    a.loc[switch, ["in_mem", "in_att"]] = [8, 7]
    second = a[switch].assign(in_mem=10, in_att=10)
    first_school = second["school_id"].iloc[0]
    other = [s for s in SCHOOLS[second["district"].iloc[0]] if s != first_school]
    second["school_id"] = other[0]
    # student 3 attends summer school in July 2022
    summer = a[(a["i"] == SUMMER_STUDENT) & (a["month"] == "2022-06")].assign(
        month=SUMMER_MONTH, in_mem=12, in_att=10, rem_mem=0, rem_att=0
    )
    a = pd.concat([a, second, summer], ignore_index=True)
    return pd.DataFrame(
        {
            "student_id": a["student_id"],
            "district": a["district"],
            "school_id": a["school_id"],
            "month": a["month"],
            "inperson_membership": a["in_mem"].astype(str),
            "inperson_attended": a["in_att"].astype(str),
            "remote_membership": a["rem_mem"].astype(str),
            "remote_attended": a["rem_att"].astype(str),
        }
    )


_VISITS = pd.DataFrame(
    {
        "visit_id": [f"LV{n:06d}" for n in (101, 102, 103, 104, 105, 106, 107, 108)],
        "i": [0, 0, 1, 1, 2, 4, 6, 9],
        "visit_date": [
            "2021-10-12",
            "2021-11-03",
            "2021-10-20",
            "2021-12-01",
            "2022-07-14",
            "2022-03-08",
            "2022-10-05",
            "2023-01-11",
        ],
        "visit_status": ["completed", "completed", "attempted", "completed"]
        + ["completed", "completed", "completed", "attempted"],
        "visit_location": ["home", "home", "home", "virtual"]
        + ["home", "phone", "other_location", "home"],
        "visitor_type": ["school_staff", "school_staff", "community_partner", "community_partner"]
        + ["other", "school_staff", "community_partner", "school_staff"],
    }
)


def valid_tables() -> dict[str, pd.DataFrame]:
    """The three contract tables as CSV text: every column ``str``, no missing values.

    Returns
    -------
    dict of str to DataFrame
        ``students`` (58 rows), ``attendance_monthly`` (582 rows), ``leap_visits`` (8).
    """
    stu = _students()
    att = _attendance(stu)
    first = stu.drop_duplicates("i").set_index("i")
    vis = _VISITS.assign(
        student_id=first.loc[_VISITS["i"], "student_id"].to_numpy(),
        district=first.loc[_VISITS["i"], "district"].to_numpy(),
    )
    columns = {
        "students": [
            "student_id",
            "school_year",
            "district",
            "school_id",
            "grade",
            "gender",
            "race_ethnicity",
            "meal_status",
            "ell",
            "swd",
            "home_language",
        ],
        "attendance_monthly": list(att.columns),
        "leap_visits": [
            "visit_id",
            "student_id",
            "district",
            "visit_date",
            "visit_status",
            "visit_location",
            "visitor_type",
        ],
    }
    frames = {"students": stu, "attendance_monthly": att, "leap_visits": vis}
    return {
        name: frames[name][cols].astype("str").reset_index(drop=True)
        for name, cols in columns.items()
    }


def typed_for_parquet(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Store a text table with the Parquet types of the contract (numbers, dates)."""
    out = frame.copy()
    if name == "students":
        out[["ell", "swd"]] = out[["ell", "swd"]].astype("int8")
        out["home_language"] = out["home_language"].replace("", None)
    elif name == "attendance_monthly":
        days = [c for c in out.columns if c.endswith(("membership", "attended"))]
        out[days] = out[days].astype("float64")
    else:
        out["visit_date"] = pd.to_datetime(out["visit_date"], format="%Y-%m-%d").dt.date
    return out


def write_folder(
    tables: Mapping[str, pd.DataFrame],
    folder: Path,
    *,
    formats: str | Mapping[str, str] = "csv",
) -> Path:
    """Write text tables to ``folder`` as ``NAME.csv`` or ``NAME.parquet``.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Tables as returned by :func:`valid_tables` (possibly edited).
    folder : Path
        Created if needed.
    formats : str or mapping, default "csv"
        ``"csv"``, ``"parquet"``, or a format per table name.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        fmt = formats if isinstance(formats, str) else formats.get(name, "csv")
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            typed_for_parquet(name, frame).to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def make_valid_folder(folder: Path, *, formats: str | Mapping[str, str] = "csv") -> Path:
    """Write the valid fixture folder (see the module docstring) and return it."""
    return write_folder(valid_tables(), folder, formats=formats)
