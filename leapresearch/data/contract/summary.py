"""What a valid data folder holds, counted (the summary ``leapresearch validate`` prints)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.calendar import cohort_label
from leapresearch.data.contract.validate import RawTables


def summarise(tables: RawTables) -> dict[str, object]:
    """Count what a valid data folder holds (for ``leapresearch validate``).

    Parameters
    ----------
    tables : RawTables
        Tables returned by :func:`read_raw_tables`.

    Returns
    -------
    dict
        ``students`` (distinct students), ``student_years`` (rows of ``students``),
        ``school_years`` (sorted labels), ``districts`` (sorted district names of
        ``students``), ``months_with_data`` (distinct months of attendance),
        ``first_month`` and ``last_month`` (``YYYY-MM`` or ``None``), ``attendance_rows``,
        ``visits`` (rows of ``leap_visits``), ``completed_visits``,
        ``students_with_completed_visit`` and ``cohorts`` (number of students per cohort
        label of their first completed visit, in calendar order).
    """
    stu, att, vis = tables.students, tables.attendance_monthly, tables.leap_visits
    months = np.sort(att["month"].unique())
    completed = vis[vis["visit_status"] == "completed"]
    first = completed.groupby("student_id")["visit_date"].min().sort_values()
    labels = cohort_label(first.reset_index(drop=True))
    cohorts = labels.value_counts(sort=False).reindex(pd.unique(labels))
    return {
        "students": int(stu["student_id"].nunique()),
        "student_years": len(stu),
        "school_years": sorted(stu["school_year"].unique().tolist()),
        "districts": sorted(stu["district"].unique().tolist()),
        "months_with_data": len(months),
        "first_month": str(months[0]) if len(months) else None,
        "last_month": str(months[-1]) if len(months) else None,
        "attendance_rows": len(att),
        "visits": len(vis),
        "completed_visits": len(completed),
        "students_with_completed_visit": len(first),
        "cohorts": {str(k): int(v) for k, v in cohorts.items()},
    }
