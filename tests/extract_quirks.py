"""A corpus of realistic quirks of real extracts, each made from the valid fixture.

``QUIRKS`` is a list of ``(name, build, outcome)``:

* ``build(valid_dir, target_dir)`` writes the folder from the valid CSV fixture folder
  (:mod:`tests.fixtures`), with the builders of :mod:`tests.broken_inputs`;
* ``outcome`` (:class:`Outcome`) says what ``validate`` and ``run`` must both do:
  ``accepted`` (as is, no warning), ``mapped`` (accepted through the ``input:`` mapping of
  ``outcome.params``), ``warned`` (accepted with a warning naming file, column, issue,
  handling and rows) or ``refused`` (a violation naming file, column, rule and rows).
  ``outcome.params`` are vintage keys written over ``params/demo.yaml`` (program start
  2021-04-01) for that case.

The issue's table (attempts before the start, a stale manifest, an empty visit log, only
attempts, home_language and district spellings, ids that changed form, upper-case
headers, Excel and UTF-16 files, grade codes) and the state-extract layout are all here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from leapresearch.data.state_extract import state_extract
from leapresearch.paths import PARAMS
from tests.broken_inputs import (
    append_copy,
    copy_folder,
    edit,
    edit_bytes,
    edit_lines,
    lines,
    read_text_table,
    set_cells,
)
from tests.conftest import write_manifest
from tests.fixtures import student_ids, valid_tables

Builder = Callable[[Path, Path], None]
Kind = Literal["accepted", "mapped", "warned", "refused"]


@dataclass(frozen=True)
class Outcome:
    """What validate and run must both report for a folder."""

    kind: Kind
    file: str | None = None
    column: str | None = None
    text: str = ""
    rows: tuple[int, ...] | None = None
    handling: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    values: tuple[str, ...] = ()
    """Values the message must name (every offending code)."""


S, A, V = "students.csv", "attendance_monthly.csv", "leap_visits.csv"
_T = valid_tables()
_IDS = student_ids()
_ATT = _T["attendance_monthly"]
ZERO_ID = _IDS[0]  # starts with 00
ZERO_ROWS = tuple(int(i) for i in np.flatnonzero(_ATT["student_id"] == ZERO_ID))
HARTFORD_STUDENT_ROWS = tuple(
    int(i) for i in np.flatnonzero(_T["students"]["district"] == "Hartford")[:2]
)


def _upper_header(rows: list[bytes]) -> list[bytes]:
    return [rows[0].upper(), *rows[1:]]


def _as_utf16(data: bytes) -> bytes:
    return data.decode("utf-8").encode("utf-16")


def _as_xlsx(_: bytes) -> bytes:
    return b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 64 + b"[Content_Types].xml"


def _stale_manifest(valid_dir: Path, target_dir: Path) -> None:
    copy_folder(valid_dir, target_dir)
    write_manifest(target_dir)
    path = target_dir / "students.csv"
    path.write_bytes(path.read_bytes().replace(b"Hartford", b"Hartfort", 1))


def _with_manifest(valid_dir: Path, target_dir: Path) -> None:
    copy_folder(valid_dir, target_dir)
    write_manifest(target_dir)


def _renamed_file(valid_dir: Path, target_dir: Path) -> None:
    copy_folder(valid_dir, target_dir)
    (target_dir / "students.csv").rename(target_dir / "ROSTER_2024.csv")


def _extract_layout(valid_dir: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True)
    text = {n: read_text_table(valid_dir / f"{n}.csv") for n in _T}
    for name, frame in state_extract(**text).items():
        frame.to_csv(target_dir / name, index=False, lineterminator="\n")


def _example_extract_input() -> dict[str, Any]:
    return yaml.safe_load((PARAMS / "example-extract.yaml").read_text())["input"]


def _column(table: str, column: str, change: Callable[[pd.Series], pd.Series]) -> Builder:
    return edit(table, lambda df: df.assign(**{column: change(df[column])}))


def _ids(column: pd.Series, new: str) -> pd.Series:
    return column.where(column != ZERO_ID, new)


_GRADES_BAD = {0: "KG", 1: "PK3", 2: "PK4", 3: "13", 4: "UG", 5: "07"}
_GRADES_MAPPABLE = {0: "KG", 1: "PK3", 2: "PK4", 5: "07", 6: "01"}
_GRADE_RECODE = {"KG": "K", "PK3": "PK", "PK4": "PK", "07": "7", "01": "1"}
_FLAGS = {"1": "Y", "0": "N"}
_MEALS = {"free": "F", "reduced": "R", "not_eligible": "N"}


def _us_dates(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, format="%Y-%m-%d").dt.strftime("%m/%d/%Y")


def _input(**tables: Any) -> dict[str, Any]:
    return {"input": tables}


QUIRKS: list[tuple[str, Builder, Outcome]] = [
    # ---- the table ----------------------------------------------------------------
    (
        "attempted_visit_before_program_start",
        set_cells("leap_visits", "visit_date", {2: "2021-03-15"}),
        Outcome(
            "warned", V, "visit_date", "attempted visits before the program start", lines(2), "kept"
        ),
    ),
    (
        "completed_visit_before_program_start",
        set_cells("leap_visits", "visit_date", {0: "2021-03-15"}),
        Outcome(
            "refused",
            V,
            "visit_date",
            "before the program start 2021-04-01 for a completed visit",
            lines(0),
        ),
    ),
    (
        "completed_visit_before_an_earlier_vintage_start",
        set_cells("leap_visits", "visit_date", {0: "2021-03-15"}),
        Outcome(
            "warned",
            V,
            None,
            "1 visited student has no students row for the school year of the first visit",
            handling="excluded",
            params={"program_start": "2021-03-01"},
        ),
    ),
    (
        "stale_checksum_manifest",
        _stale_manifest,
        Outcome("refused", S, None, "sha256 differs from checksums.sha256"),
    ),
    ("matching_checksum_manifest", _with_manifest, Outcome("accepted")),
    (
        "visit_log_header_only",
        edit_lines("leap_visits", lambda rows: rows[:1]),
        Outcome("refused", V, "visit_status", "has no completed visit (the visit log is empty)"),
    ),
    (
        "only_attempted_visits",
        _column("leap_visits", "visit_status", lambda c: pd.Series("attempted", index=c.index)),
        Outcome("refused", V, "visit_status", "has no completed visit (all 8 rows are attempts)"),
    ),
    (
        "home_language_null_tokens",
        set_cells("students", "home_language", {0: "NULL", 1: "N/A"}),
        Outcome("warned", S, "home_language", "written as a null token", None, "recoded"),
    ),
    (
        "home_language_lower_case",
        set_cells("students", "home_language", {0: "english", 3: " ENGLISH"}),
        Outcome(
            "warned", S, "home_language", "normalised to capitalised words", lines(0, 3), "recoded"
        ),
    ),
    (
        "district_trailing_space",
        set_cells("students", "district", {HARTFORD_STUDENT_ROWS[0]: "Hartford "}),
        Outcome("warned", S, "district", "trimmed", lines(HARTFORD_STUDENT_ROWS[0]), "recoded"),
    ),
    (
        "district_null_token",
        set_cells("students", "district", {4: "NULL"}),
        Outcome("refused", S, "district", "must not be empty", lines(4)),
    ),
    (
        "district_trailing_space_and_null",
        set_cells("students", "district", {HARTFORD_STUDENT_ROWS[0]: "Hartford  ", 4: "NULL"}),
        Outcome("refused", S, "district", "must not be empty", lines(4)),
    ),
    (
        "district_differs_only_in_case",
        set_cells("students", "district", dict.fromkeys(HARTFORD_STUDENT_ROWS, "HARTFORD")),
        Outcome(
            "refused",
            S,
            "district",
            "differ only in case",
            lines(*HARTFORD_STUDENT_ROWS),
            values=("'HARTFORD'", "'Hartford'"),
        ),
    ),
    (
        "ids_lost_leading_zeros",
        _column("attendance_monthly", "student_id", lambda c: _ids(c, ZERO_ID.lstrip("0"))),
        Outcome(
            "refused", A, "student_id", "once padded with leading zeros", lines(*ZERO_ROWS[:10])
        ),
    ),
    (
        "ids_with_a_decimal_point",
        _column("attendance_monthly", "student_id", lambda c: _ids(c, ZERO_ID.lstrip("0") + ".0")),
        Outcome("refused", A, "student_id", "have a decimal point", lines(*ZERO_ROWS[:10])),
    ),
    (
        "ids_in_scientific_notation",
        set_cells("leap_visits", "student_id", {2: "1.16407E+09"}),
        Outcome("refused", V, "student_id", "scientific notation", lines(2)),
    ),
    (
        "ids_with_spaces",
        set_cells("leap_visits", "student_id", {5: " " + _T["leap_visits"].loc[5, "student_id"]}),
        Outcome("refused", V, "student_id", "leading or trailing spaces", lines(5)),
    ),
    (
        "headers_upper_case",
        edit_lines("students", _upper_header),
        Outcome("refused", S, None, "differ from the contract's in case"),
    ),
    (
        "excel_workbook_named_csv",
        edit_bytes("students", _as_xlsx),
        Outcome("refused", S, None, "is an Excel workbook"),
    ),
    (
        "utf16_export",
        edit_bytes("attendance_monthly", _as_utf16),
        Outcome("refused", A, None, "is UTF-16 encoded"),
    ),
    (
        "grade_codes_unmapped",
        set_cells("students", "grade", _GRADES_BAD),
        Outcome(
            "refused",
            S,
            "grade",
            "must be one of PK, K, 1",
            lines(*_GRADES_BAD),
            values=tuple(f"'{g}'" for g in _GRADES_BAD.values()),
        ),
    ),
    # ---- through the input mapping ----------------------------------------------------
    (
        "grade_codes_mapped",
        set_cells("students", "grade", _GRADES_MAPPABLE),
        Outcome("mapped", params=_input(students={"recode": {"grade": _GRADE_RECODE}})),
    ),
    (
        "grade_code_not_covered_by_the_mapping",
        set_cells("students", "grade", {**_GRADES_MAPPABLE, 9: "UG"}),
        Outcome(
            "refused",
            S,
            "grade",
            "must be one of PK, K, 1",
            lines(9),
            values=("'UG'",),
            params=_input(students={"recode": {"grade": _GRADE_RECODE}}),
        ),
    ),
    (
        "yes_no_flags_mapped",
        edit(
            "students", lambda df: df.assign(ell=df["ell"].map(_FLAGS), swd=df["swd"].map(_FLAGS))
        ),
        Outcome(
            "mapped",
            params=_input(
                students={"recode": {"ell": {"Y": "1", "N": "0"}, "swd": {"Y": "1", "N": "0"}}}
            ),
        ),
    ),
    (
        "yes_no_flags_unmapped",
        _column("students", "ell", lambda c: c.map(_FLAGS)),
        Outcome("refused", S, "ell", "must be 0 or 1", rows=lines(*range(10))),
    ),
    (
        "meal_codes_mapped",
        _column("students", "meal_status", lambda c: c.map(_MEALS)),
        Outcome(
            "mapped",
            params=_input(students={"recode": {"meal_status": {v: k for k, v in _MEALS.items()}}}),
        ),
    ),
    (
        "us_dates_mapped",
        _column("leap_visits", "visit_date", _us_dates),
        Outcome("mapped", params=_input(leap_visits={"date_format": {"visit_date": "%m/%d/%Y"}})),
    ),
    (
        "us_dates_unmapped",
        _column("leap_visits", "visit_date", _us_dates),
        Outcome("refused", V, "visit_date", "must be a date written YYYY-MM-DD", lines(*range(8))),
    ),
    (
        "state_column_names_mapped",
        edit("students", lambda df: df.rename(columns={"student_id": "SASID", "grade": "GRADE"})),
        Outcome(
            "mapped", params=_input(students={"rename": {"SASID": "student_id", "GRADE": "grade"}})
        ),
    ),
    (
        "state_file_name_mapped",
        _renamed_file,
        Outcome("mapped", params=_input(students={"file": "ROSTER_2024.csv"})),
    ),
    (
        "state_file_name_unmapped",
        _renamed_file,
        Outcome("refused", "students", None, "table is missing"),
    ),
    (
        "padded_codes_trimmed_by_the_mapping",
        set_cells("students", "gender", {2: "F  ", 3: " M"}),
        Outcome("mapped", params={"input": {"trim": True}}),
    ),
    (
        "padded_codes_without_trimming",
        set_cells("students", "gender", {2: "F  ", 3: " M"}),
        Outcome("refused", S, "gender", "must be one of F, M, X", lines(2, 3)),
    ),
    (
        "state_extract_layout",
        _extract_layout,
        Outcome("mapped", params={"input": _example_extract_input()}),
    ),
    # ---- accepted, or accepted with a warning ------------------------------------------
    (
        "bom_and_windows_line_endings",
        edit_bytes("students", lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n")),
        Outcome("accepted"),
    ),
    (
        "extra_state_columns",
        edit("students", lambda df: df.assign(EXIT_DATE="NULL", TOWN="x")),
        Outcome(
            "warned",
            S,
            None,
            "2 columns not in the data contract: EXIT_DATE, TOWN",
            None,
            "ignored",
        ),
    ),
    (
        "visit_after_the_attendance_data",
        append_copy("leap_visits", 0, visit_id="LV000999", visit_date="2023-08-05"),
        Outcome(
            "warned", V, "visit_date", "after the last month with attendance data", (10,), "kept"
        ),
    ),
    (
        "required_id_written_null",
        set_cells("students", "school_id", {3: "NULL"}),
        Outcome("refused", S, "school_id", "must not be empty", lines(3)),
    ),
    # ---- evaluability -----------------------------------------------------------------
    (
        "some_visited_students_lack_a_pre_period",
        copy_folder,
        Outcome(
            "warned",
            V,
            None,
            "too few months of attendance before the first visit",
            None,
            "excluded",
            params={"comparison_pool": {"min_pre_months": 4}},
        ),
    ),
    (
        "visited_student_alone_in_its_stratum",
        set_cells("students", "district", {0: "Windham"}),
        Outcome(
            "warned",
            V,
            None,
            "1 visited student has no comparison candidate in their matching stratum",
            None,
            "excluded",
        ),
    ),
    (
        "no_visited_student_can_be_matched",
        copy_folder,
        Outcome(
            "refused",
            V,
            "student_id",
            "no visited student has a comparison candidate",
            params={"comparison_pool": {"min_pre_months": 12}},
        ),
    ),
    (
        "no_visited_student_in_the_selected_cohorts",
        copy_folder,
        Outcome(
            "refused",
            V,
            "visit_date",
            "no visited student in the cohorts",
            params={"cohorts": ["2030-31"]},
        ),
    ),
]
"""Realistic extract quirks and what validate and run must both do (module docstring)."""

QUIRK_NAMES = [name for name, _, _ in QUIRKS]
assert len(set(QUIRK_NAMES)) == len(QUIRK_NAMES)
