"""The three contract tables as pandas frames: rows sorted, identifiers as strings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from leapresearch.data.simulate.attendance import _Panel
from leapresearch.data.simulate.population import _Roster
from leapresearch.data.simulate.program import _Program
from leapresearch.data.simulate.world import _Calendar, _Districts, _Schools
from leapresearch.data.types import GRADES, MEAL_STATUSES, RACES, VISIT_LOCATIONS, VISITOR_TYPES


def _take_str(values: list[str] | np.ndarray, codes: np.ndarray) -> pa.Array:
    """Arrow string array ``values[codes]``."""
    return pa.array(list(values), type=pa.string()).take(pa.array(np.asarray(codes)))


def _sasid_strings(sasid: np.ndarray) -> np.ndarray:
    """Zero-padded 10-digit strings of integer SASIDs."""
    return np.char.zfill(sasid.astype("U10"), 10)


def _build_frames(
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    panel: _Panel,
    summer: dict[str, np.ndarray],
    program: _Program,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Assemble the three contract tables, sorted, identifiers as strings."""
    sasid_str = _sasid_strings(roster.sasid)
    # students
    sy_order = np.lexsort((roster.sy_year, roster.sasid[roster.sy_student]))
    s_student = roster.sy_student[sy_order]
    s_year = roster.sy_year[sy_order]
    students = pa.table(
        {
            "student_id": _take_str(sasid_str, s_student),
            "school_year": _take_str(cal.labels, s_year),
            "district": _take_str(dist.names, roster.district[s_student]),
            "school_id": _take_str(schools.ids, roster.sy_school[sy_order]),
            "grade": _take_str(list(GRADES), roster.sy_grade[sy_order]),
            "gender": _take_str(["F", "M", "X"], roster.gender[s_student]),
            "race_ethnicity": _take_str(list(RACES), roster.race[s_student]),
            "meal_status": _take_str(list(MEAL_STATUSES), roster.meal[s_student]),
            "ell": pa.array(roster.ell[s_student].astype(np.int64)),
            "swd": pa.array(roster.swd[s_student].astype(np.int64)),
            "home_language": _take_str(["English", "Spanish", "Other"], roster.language[s_student]),
        }
    ).to_pandas(split_blocks=True, self_destruct=True)
    # attendance: school-month rows and summer rows, sorted by (student_id, month, school_id)
    month_labels = []
    for yi in range(cal.n_years):
        month_labels.extend(cal.month_labels[10 * yi : 10 * yi + 10])
        month_labels.extend(cal.summer_labels[yi])
    month_ord = np.concatenate(
        [
            (12 * (panel.t // 10) + panel.t % 10).astype(np.int16),
            (12 * summer["year"] + summer["month"]).astype(np.int16),
        ]
    )
    a_student = np.concatenate([panel.student, summer["student"].astype(np.int32)])
    a_school = np.concatenate([panel.school, summer["school"].astype(np.int32)])
    key = roster.sasid[a_student]
    key *= 12 * cal.n_years
    key += month_ord
    key *= len(schools.ids)
    key += a_school
    order = np.argsort(key, kind="stable")
    del key
    a_student = a_student[order]
    n_summer = len(summer["student"])
    zeros = np.zeros(n_summer, dtype=np.int32)
    columns = {
        "student_id": _take_str(sasid_str, a_student),
        "district": _take_str(dist.names, roster.district[a_student].astype(np.int32)),
        "school_id": _take_str(schools.ids, a_school[order]),
        "month": _take_str(month_labels, month_ord[order]),
    }
    del a_student, a_school, month_ord
    for name, left, right in (
        ("inperson_membership", panel.mem_in, summer["mem"]),
        ("inperson_attended", panel.att_in, summer["att"]),
        ("remote_membership", panel.mem_rem, zeros),
        ("remote_attended", panel.att_rem, zeros),
    ):
        both = np.concatenate([left, right.astype(np.int32)])
        columns[name] = pa.array(both[order].astype(np.int64))
        del both
    del order
    attendance = pa.table(columns).to_pandas(split_blocks=True, self_destruct=True)
    del columns
    # visits
    v = program.visits
    v_sasid = roster.sasid[v["student"]]
    v_order = np.lexsort((v["location"], v["status"], v_sasid, v["date"]))
    n_v = len(v_order)
    width = max(6, len(str(n_v)))
    visit_ids = [f"V{i:0{width}d}" for i in range(1, n_v + 1)]
    dates = np.datetime_as_string(v["date"][v_order], unit="D")
    visits = pa.table(
        {
            "visit_id": pa.array(visit_ids, type=pa.string()),
            "student_id": _take_str(sasid_str, v["student"][v_order]),
            "district": _take_str(dist.names, roster.district[v["student"][v_order]]),
            "visit_date": pa.array(dates.tolist(), type=pa.string()),
            "visit_status": _take_str(["completed", "attempted"], v["status"][v_order]),
            "visit_location": _take_str(list(VISIT_LOCATIONS), v["location"][v_order]),
            "visitor_type": _take_str(list(VISITOR_TYPES), v["visitor"][v_order]),
        }
    ).to_pandas()
    return students, attendance, visits
