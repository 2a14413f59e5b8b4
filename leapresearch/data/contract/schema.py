"""The tables and columns of the data contract, and the pandera schemas of its column rules.

Holds :data:`TABLES`, what each column of each table holds (``_SPECS``: identifier, text,
day count, 0/1 flag or date, required or optional), the limits the rules use, and
:data:`SCHEMAS`, a pandera ``DataFrameSchema`` per table with the per-column rules
(missing values, closed vocabularies, formats of ``school_year`` and ``month``, day counts
``>= 0``, flags in ``{0, 1}``). The rules are applied in :mod:`.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd
from pandera.pandas import Check, Column, DataFrameSchema

from leapresearch.data.types import (
    GENDERS,
    GRADES,
    MEAL_STATUSES,
    RACES,
    VISIT_LOCATIONS,
    VISIT_STATUSES,
    VISITOR_TYPES,
)

TABLES: tuple[str, ...] = ("students", "attendance_monthly", "leap_visits")
"""Table names of the contract, in reading order."""

MAX_MONTH_MEMBERSHIP_DAYS = 23
"""Most days of membership a student can have in one month, over all schools."""


_MUST_HAVE_ROWS = frozenset({"students", "attendance_monthly"})
_DAYS = ("inperson_membership", "inperson_attended", "remote_membership", "remote_attended")

Kind = Literal["id", "text", "days", "flag", "date"]


@dataclass(frozen=True)
class _Col:
    """One contract column: its name, what it holds, and whether it is required."""

    name: str
    kind: Kind
    required: bool = True


_SPECS: dict[str, tuple[_Col, ...]] = {
    "students": (
        _Col("student_id", "id"),
        _Col("school_year", "text"),
        _Col("district", "text"),
        _Col("school_id", "id"),
        _Col("grade", "text"),
        _Col("gender", "text"),
        _Col("race_ethnicity", "text"),
        _Col("meal_status", "text"),
        _Col("ell", "flag"),
        _Col("swd", "flag"),
        _Col("home_language", "text", required=False),
    ),
    "attendance_monthly": (
        _Col("student_id", "id"),
        _Col("district", "text"),
        _Col("school_id", "id"),
        _Col("month", "text"),
        *(_Col(name, "days") for name in _DAYS),
    ),
    "leap_visits": (
        _Col("visit_id", "id"),
        _Col("student_id", "id"),
        _Col("district", "text"),
        _Col("visit_date", "date"),
        _Col("visit_status", "text"),
        _Col("visit_location", "text"),
        _Col("visitor_type", "text"),
    ),
}


def _is_id(table: str, column: str) -> bool:
    return any(c.name == column and c.kind == "id" for c in _SPECS[table])


# --------------------------------------------------------------------------------------
# Column rules (pandera)
# --------------------------------------------------------------------------------------


def _valid_school_year(labels: pd.Series) -> pd.Series:
    parts = labels.astype("str").str.extract(r"^(\d{4})-(\d{2})$")
    first = pd.to_numeric(parts[0]).to_numpy(dtype=float, na_value=np.nan)
    second = pd.to_numeric(parts[1]).to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(np.nan_to_num((first + 1) % 100 - second, nan=1.0) == 0, index=labels.index)


def _valid_month(labels: pd.Series) -> pd.Series:
    ok = labels.astype("str").str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])")
    return ok.fillna(False).astype(bool)


def _one_of(values: tuple[str, ...]) -> Check:
    return Check.isin(list(values), error=f"must be one of {', '.join(values)}")


_RULE_MISSING = "must not be empty (missing value: empty, or a null token such as NULL or N/A)"
_RULE_SCHOOL_YEAR = "must be YYYY-YY with the second year the first plus one, e.g. 2021-22"
_RULE_MONTH = "must be YYYY-MM with a month 01 to 12, e.g. 2021-09"

_CHECKS: dict[str, dict[str, list[Check]]] = {
    "students": {
        "school_year": [Check(_valid_school_year, error=_RULE_SCHOOL_YEAR)],
        "grade": [_one_of(GRADES)],
        "gender": [_one_of(GENDERS)],
        "race_ethnicity": [_one_of(RACES)],
        "meal_status": [_one_of(MEAL_STATUSES)],
        "ell": [Check.isin([0, 1], error="must be 0 or 1")],
        "swd": [Check.isin([0, 1], error="must be 0 or 1")],
    },
    "attendance_monthly": {
        "month": [Check(_valid_month, error=_RULE_MONTH)],
        **{d: [Check.ge(0, error="must be ≥ 0 days")] for d in _DAYS},
    },
    "leap_visits": {
        "visit_status": [_one_of(VISIT_STATUSES)],
        "visit_location": [_one_of(VISIT_LOCATIONS)],
        "visitor_type": [_one_of(VISITOR_TYPES)],
    },
}


def _schema(name: str) -> DataFrameSchema:
    """Build the pandera schema of the column rules of a contract table."""
    dtypes = {"days": "float64", "date": "datetime64[us]"}
    return DataFrameSchema(
        {
            c.name: Column(
                dtypes.get(c.kind),
                checks=_CHECKS[name].get(c.name, []),
                nullable=not c.required,
                required=c.required,
            )
            for c in _SPECS[name]
        },
        name=name,
    )


SCHEMAS: Mapping[str, DataFrameSchema] = MappingProxyType({n: _schema(n) for n in TABLES})
"""Pandera schemas of the per-column rules of each table, over the typed tables.

Cross-column, key and cross-table rules are not in these schemas; they are checked by
:func:`validate_folder`.
"""
