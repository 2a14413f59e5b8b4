"""The simulated data written in a state-extract layout (the worked example of the mapping).

``leapresearch simulate --layout extract`` writes the same three tables as the canonical
layout, but the way a state's data systems export them: state file and column names in
upper case (``SASID``, ``DISTRICT_NAME`` …), grades ``PK3``/``PK4``/``KG``/``01``-``12``,
flags ``Y``/``N``, meal status ``F``/``R``/``N``, visit codes in upper case, visit dates
``MM/DD/YYYY``, district names padded with spaces as fixed-width exports do, and an extra
``EXIT_DATE`` column holding ``NULL`` for students who did not leave.

``params/example-extract.yaml`` maps this layout back onto the contract (its ``input:``
section); the run on it gives tables byte-identical to the run on the canonical layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.data.simulate.writing import write_marker

__all__ = ["EXTRACT_FILES", "state_extract", "write_state_extract"]

EXTRACT_FILES: dict[str, str] = {
    "students": "PSIS_OCTOBER_ROSTER.csv",
    "attendance_monthly": "MONTHLY_MEMBERSHIP_ATTENDANCE.csv",
    "leap_visits": "LEAP_VISIT_LOG.csv",
}
"""File name of each contract table in the state-extract layout."""

_RENAME = {
    "students": {
        "student_id": "SASID",
        "school_year": "SCHOOL_YEAR",
        "district": "DISTRICT_NAME",
        "school_id": "SCHOOL_CODE",
        "grade": "GRADE_CODE",
        "gender": "GENDER_CODE",
        "race_ethnicity": "RACE_ETHNICITY",
        "meal_status": "FRL_STATUS",
        "ell": "ELL_FLAG",
        "swd": "SPED_FLAG",
        "home_language": "HOME_LANGUAGE",
    },
    "attendance_monthly": {
        "student_id": "SASID",
        "district": "REPORTING_DISTRICT",
        "school_id": "SCHOOL_CODE",
        "month": "COLLECTION_MONTH",
        "inperson_membership": "INPERSON_MEMBERSHIP_DAYS",
        "inperson_attended": "INPERSON_ATTENDED_DAYS",
        "remote_membership": "REMOTE_MEMBERSHIP_DAYS",
        "remote_attended": "REMOTE_ATTENDED_DAYS",
    },
    "leap_visits": {
        "visit_id": "VISIT_ID",
        "student_id": "SASID",
        "district": "DISTRICT_NAME",
        "visit_date": "VISIT_DATE",
        "visit_status": "VISIT_STATUS",
        "visit_location": "VISIT_LOCATION",
        "visitor_type": "VISITOR_TYPE",
    },
}

_MEALS = {"free": "F", "reduced": "R", "not_eligible": "N"}
_FLAGS = {"1": "Y", "0": "N"}
_LOCATIONS = {"home": "HOME", "other_location": "OTHER", "virtual": "VIRTUAL", "phone": "PHONE"}
_VISITORS = {
    "school_staff": "SCHOOL STAFF",
    "community_partner": "COMMUNITY PARTNER",
    "other": "OTHER",
}


def _grades(grade: pd.Series) -> pd.Series:
    """``PK`` -> ``PK3``/``PK4`` (alternating rows), ``K`` -> ``KG``, ``1`` -> ``01``."""
    text = grade.astype(str)
    pk = np.where(np.arange(len(text)) % 2 == 0, "PK3", "PK4")
    out = text.where(~text.str.fullmatch(r"\d+"), text.str.zfill(2))
    out = out.where(text != "K", "KG")
    return out.where(text != "PK", pd.Series(pk, index=text.index))


def _pad(names: pd.Series, width: int = 24) -> pd.Series:
    return names.astype(str).str.ljust(width)


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as text; missing values written ``NULL`` as state exports do."""
    return frame.astype(object).where(frame.notna(), "NULL").astype(str)


def _students(frame: pd.DataFrame) -> pd.DataFrame:
    out = _text(frame)
    out["grade"] = _grades(out["grade"])
    out["meal_status"] = out["meal_status"].map(_MEALS)
    for col in ("ell", "swd"):
        out[col] = out[col].map(_FLAGS)
    out["district"] = _pad(out["district"])
    out = out.rename(columns=_RENAME["students"])
    out["EXIT_DATE"] = "NULL"
    return out


def _attendance(frame: pd.DataFrame) -> pd.DataFrame:
    out = _text(frame)
    out["district"] = _pad(out["district"])
    return out.rename(columns=_RENAME["attendance_monthly"])


def _visits(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["visit_date"] = pd.to_datetime(out["visit_date"]).dt.strftime("%m/%d/%Y")
    out = _text(out)
    out["visit_status"] = out["visit_status"].str.upper()
    out["visit_location"] = out["visit_location"].map(_LOCATIONS)
    out["visitor_type"] = out["visitor_type"].map(_VISITORS)
    out["district"] = _pad(out["district"])
    return out.rename(columns=_RENAME["leap_visits"])


def state_extract(
    students: pd.DataFrame, attendance_monthly: pd.DataFrame, leap_visits: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The three contract tables rewritten in the state-extract layout (all text).

    Parameters
    ----------
    students, attendance_monthly, leap_visits : pandas.DataFrame
        Contract tables (as simulated or read back as text).

    Returns
    -------
    dict of str to DataFrame
        File name (:data:`EXTRACT_FILES`) -> the table in the extract layout, rows in
        the same order.
    """
    return {
        EXTRACT_FILES["students"]: _students(students),
        EXTRACT_FILES["attendance_monthly"]: _attendance(attendance_monthly),
        EXTRACT_FILES["leap_visits"]: _visits(leap_visits),
    }


def write_state_extract(data, out_dir: Path, *, truth_path: Path | None = None) -> list[Path]:
    """Write simulated data (:class:`~leapresearch.data.simulate.SimulatedData`) as an extract.

    Parameters
    ----------
    data : SimulatedData
        Output of :func:`leapresearch.data.simulate.simulate`.
    out_dir : Path
        Data folder; created if missing.
    truth_path : Path, optional
        Where to write the truth JSON; must not be inside ``out_dir``.

    Returns
    -------
    list of Path
        The three files written (UTF-8 CSV, upper-case headers), the simulator's marker
        (:data:`~leapresearch.data.simulate.SIMULATION_MARKER`, as in every layout
        ``leapresearch simulate`` writes), then the truth file.
    """
    out_dir = Path(out_dir)
    if truth_path is not None:
        truth_abs = Path(truth_path).resolve()
        if truth_abs == out_dir.resolve() or truth_abs.is_relative_to(out_dir.resolve()):
            raise ValueError(
                f"truth_path {str(truth_path)!r} is inside the data folder {str(out_dir)!r}; "
                "the true effects must never sit beside the data"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = state_extract(data.students, data.attendance_monthly, data.leap_visits)
    written = []
    for name, frame in tables.items():
        path = out_dir / name
        frame.to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    # the simulator's marker: every report on these data says they are synthetic
    written.append(
        write_marker(data, out_dir, layout="extract", files=list(tables), truth_path=truth_path)
    )
    if truth_path is not None:
        Path(truth_path).parent.mkdir(parents=True, exist_ok=True)
        Path(truth_path).write_text(json.dumps(data.truth, indent=1) + "\n", encoding="utf-8")
        written.append(Path(truth_path))
    return written
