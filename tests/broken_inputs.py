"""A corpus of broken data folders, each made from the valid fixture by one change.

``CASES`` is a list of ``(case_name, build, expected)``:

* ``build(valid_dir, target_dir)`` writes the broken folder into ``target_dir`` from
  the valid **CSV** fixture folder ``valid_dir`` (see :mod:`tests.fixtures`);
* ``expected`` (:class:`Expected`) names the file, the column (``None`` for a
  table-level problem), a distinctive fragment of the rule, and, where the case breaks
  rows, the exact row numbers the violation must list (CSV: line numbers, header =
  line 1; Parquet: 1-based rows). ``expected.program_start`` is passed to the reader.

Usage::

    from tests.broken_inputs import CASES
    for name, build, expected in CASES:
        build(valid_dir, tmp_path / name)
        ...

Rows are addressed by their 0-based data-row index in the fixture (``line = row + 2``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from tests.fixtures import (
    PROGRAM_START,
    SUMMER_MONTH,
    SWITCH_MONTH,
    SWITCHER,
    student_ids,
    typed_for_parquet,
    valid_tables,
)

Builder = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Expected:
    """What the validator must report for a broken folder."""

    file: str
    column: str | None
    rule: str
    rows: tuple[int, ...] | None = None
    program_start: date | None = None


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def copy_folder(valid_dir: Path, target_dir: Path) -> None:
    """Copy the valid folder's files into ``target_dir``."""
    shutil.copytree(valid_dir, target_dir, dirs_exist_ok=True)


def read_text_table(path: Path) -> pd.DataFrame:
    """A CSV table exactly as text (no type inference, empty stays empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def edit(table: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Builder:
    """Builder that rewrites ``table.csv`` through ``change`` (a text DataFrame)."""

    def build(valid_dir: Path, target_dir: Path) -> None:
        copy_folder(valid_dir, target_dir)
        path = target_dir / f"{table}.csv"
        change(read_text_table(path)).to_csv(path, index=False)

    return build


def set_cells(table: str, column: str, cells: dict[int, str]) -> Builder:
    """Builder that sets ``column`` of data rows ``{row: value}`` (0-based rows)."""

    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[list(cells), column] = list(cells.values())
        return df

    return edit(table, change)


def edit_bytes(table: str, change: Callable[[bytes], bytes]) -> Builder:
    """Builder that rewrites the raw bytes of ``table.csv``."""

    def build(valid_dir: Path, target_dir: Path) -> None:
        copy_folder(valid_dir, target_dir)
        path = target_dir / f"{table}.csv"
        path.write_bytes(change(path.read_bytes()))

    return build


def edit_lines(table: str, change: Callable[[list[bytes]], list[bytes]]) -> Builder:
    """Builder that rewrites the lines (with their newlines) of ``table.csv``."""
    return edit_bytes(table, lambda data: b"".join(change(data.splitlines(keepends=True))))


def remove(table: str) -> Builder:
    """Builder that deletes ``table.csv``."""

    def build(valid_dir: Path, target_dir: Path) -> None:
        copy_folder(valid_dir, target_dir)
        (target_dir / f"{table}.csv").unlink()

    return build


def as_parquet(table: str, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Builder:
    """Builder that replaces ``table.csv`` by a Parquet file, typed, then ``change``-d."""

    def build(valid_dir: Path, target_dir: Path) -> None:
        copy_folder(valid_dir, target_dir)
        csv_path = target_dir / f"{table}.csv"
        frame = typed_for_parquet(table, read_text_table(csv_path))
        if change is not None:
            frame = change(frame)
        frame.to_parquet(target_dir / f"{table}.parquet", index=False)
        csv_path.unlink()

    return build


def write_raw(table: str, suffix: str, data: bytes, *, keep_csv: bool = False) -> Builder:
    """Builder that writes ``table.<suffix>`` with raw bytes (replacing the CSV)."""

    def build(valid_dir: Path, target_dir: Path) -> None:
        copy_folder(valid_dir, target_dir)
        if not keep_csv:
            (target_dir / f"{table}.csv").unlink()
        (target_dir / f"{table}.{suffix}").write_bytes(data)

    return build


def append_copy(table: str, row: int, **changes: str) -> Builder:
    """Builder that appends a copy of data row ``row`` with some columns changed."""

    def change(df: pd.DataFrame) -> pd.DataFrame:
        extra = df.iloc[[row]].assign(**changes)
        return pd.concat([df, extra], ignore_index=True)

    return edit(table, change)


def lines(*rows: int) -> tuple[int, ...]:
    """CSV line numbers of 0-based data rows."""
    return tuple(r + 2 for r in rows)


# --------------------------------------------------------------------------------------
# Facts about the fixture the cases rely on (computed, not typed in)
# --------------------------------------------------------------------------------------

_T = valid_tables()
_ATT = _T["attendance_monthly"]
_STU = _T["students"]
N_STUDENT_ROWS = len(_STU)
N_ATTENDANCE_ROWS = len(_ATT)
_IDS = student_ids()

# the two rows of the student who changes school in January 2022
SWITCH_ROWS = tuple(
    int(i)
    for i in np.flatnonzero(
        (_ATT["student_id"] == _IDS[SWITCHER]) & (_ATT["month"] == SWITCH_MONTH)
    )
)
# an attendance row of student 28, who has no students row for 2022-23
_LEAVER = _IDS[28]
LEAVER_ROW = int(np.flatnonzero((_ATT["student_id"] == _LEAVER) & (_ATT["month"] == "2022-02"))[0])
SUMMER_ROW = int(np.flatnonzero(_ATT["month"] == SUMMER_MONTH)[0])
# a non-Hartford row (no remote days) for the remote rule
NO_REMOTE_ROW = int(np.flatnonzero(_ATT["remote_membership"] == "0")[0])
assert len(SWITCH_ROWS) == 2 and _STU["student_id"].iloc[28] == _LEAVER


# --------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------

S, A, V = "students.csv", "attendance_monthly.csv", "leap_visits.csv"
MISSING = "must not be empty"


def _add_parquet_copy(table: str, valid_dir: Path, target_dir: Path) -> None:
    copy_folder(valid_dir, target_dir)
    frame = typed_for_parquet(table, read_text_table(target_dir / f"{table}.csv"))
    frame.to_parquet(target_dir / f"{table}.parquet", index=False)


def _semicolons(data: bytes) -> bytes:
    return data.replace(b",", b";")


def _latin1_on_lines_5_and_10(data: bytes) -> bytes:
    """Append a Latin-1 'é' (one byte, not UTF-8) to the last value of lines 5 and 10."""
    rows = data.splitlines(keepends=True)
    for k in (4, 9):
        rows[k] = rows[k].rstrip(b"\r\n") + "é\n".encode("latin-1")
    return b"".join(rows)


CASES: list[tuple[str, Builder, Expected]] = [
    # ---- files -----------------------------------------------------------------------
    ("students_missing", remove("students"), Expected("students", None, "table is missing")),
    ("leap_visits_missing", remove("leap_visits"), Expected("leap_visits", None, "missing")),
    (
        "students_csv_and_parquet",
        lambda valid_dir, target_dir: _add_parquet_copy("students", valid_dir, target_dir),
        Expected("students", None, "both students.csv and students.parquet"),
    ),
    (
        "attendance_empty_file",
        write_raw("attendance_monthly", "csv", b""),
        Expected(A, None, "file is empty (0 bytes)"),
    ),
    (
        "students_header_only",
        edit_lines("students", lambda rows: rows[:1]),
        Expected(S, None, "no data rows"),
    ),
    (
        "attendance_semicolons",
        edit_bytes("attendance_monthly", _semicolons),
        Expected(A, None, "expected comma-separated columns"),
    ),
    (
        "students_not_utf8",
        edit_bytes("students", _latin1_on_lines_5_and_10),
        Expected(S, None, "UTF-8", rows=(5, 10)),
    ),
    (
        "students_duplicated_header",
        edit_lines("students", lambda rows: [rows[0].replace(b",swd,", b",ell,"), *rows[1:]]),
        Expected(S, "ell", "appears 2 times in the header"),
    ),
    (
        "students_missing_column",
        edit("students", lambda df: df.drop(columns="meal_status")),
        Expected(S, "meal_status", "required column is missing"),
    ),
    (
        "students_renamed_column",
        edit("students", lambda df: df.rename(columns={"grade": "Grade"})),
        Expected(S, "grade", "found 'Grade'"),
    ),
    (
        "attendance_no_header",
        edit_lines("attendance_monthly", lambda rows: rows[1:]),
        Expected(A, None, "none of the contract columns"),
    ),
    (
        "attendance_ragged_line",
        edit_lines(
            "attendance_monthly",
            lambda rows: [*rows[:11], rows[11].rstrip(b"\n") + b",extra\n", *rows[12:]],
        ),
        Expected(A, None, "comma-separated fields like the header", rows=(12,)),
    ),
    (
        "visits_blank_line",
        edit_lines("leap_visits", lambda rows: [*rows[:3], b"\n", *rows[3:]]),
        Expected(V, None, "blank", rows=(4,)),
    ),
    # ---- types -------------------------------------------------------------------------
    (
        "attendance_text_in_numbers",
        set_cells("attendance_monthly", "inperson_membership", {40: "abc", 45: "1,5"}),
        Expected(A, "inperson_membership", "must be a number", rows=lines(40, 45)),
    ),
    (
        "students_flag_not_01",
        set_cells("students", "swd", {14: "yes"}),
        Expected(S, "swd", "must be 0 or 1", rows=lines(14)),
    ),
    (
        "students_flag_2",
        set_cells("students", "ell", {13: "2"}),
        Expected(S, "ell", "must be 0 or 1", rows=lines(13)),
    ),
    (
        "parquet_student_id_int",
        as_parquet("students", lambda df: df.assign(student_id=df["student_id"].astype("int64"))),
        Expected("students.parquet", "student_id", "must be stored as string"),
    ),
    (
        "parquet_days_as_text",
        as_parquet(
            "attendance_monthly",
            lambda df: df.assign(inperson_attended=df["inperson_attended"].astype(str)),
        ),
        Expected("attendance_monthly.parquet", "inperson_attended", "must be stored as a number"),
    ),
    (
        "parquet_date_as_int",
        as_parquet("leap_visits", lambda df: df.assign(visit_date=np.arange(len(df)))),
        Expected("leap_visits.parquet", "visit_date", "must be stored as a date"),
    ),
    (
        "parquet_not_parquet",
        write_raw("leap_visits", "parquet", b"PAR1 this is not a parquet file"),
        Expected("leap_visits.parquet", None, "not a readable Parquet file"),
    ),
    (
        "parquet_negative_days",
        as_parquet(
            "attendance_monthly",
            lambda df: df.assign(
                remote_membership=df["remote_membership"].mask(df.index == 7, -3.0)
            ),
        ),
        Expected("attendance_monthly.parquet", "remote_membership", "≥ 0", rows=(8,)),
    ),
    # ---- students ----------------------------------------------------------------------
    (
        "students_empty_id",
        set_cells("students", "student_id", {2: ""}),
        Expected(S, "student_id", MISSING, rows=lines(2)),
    ),
    (
        "students_school_year_format",
        set_cells("students", "school_year", {5: "2021/22"}),
        Expected(S, "school_year", "YYYY-YY", rows=lines(5)),
    ),
    (
        "students_school_year_not_consecutive",
        set_cells("students", "school_year", {6: "2021-23"}),
        Expected(S, "school_year", "first plus one", rows=lines(6)),
    ),
    (
        "students_empty_district",
        set_cells("students", "district", {8: "  "}),
        Expected(S, "district", MISSING, rows=lines(8)),
    ),
    (
        "students_empty_school",
        set_cells("students", "school_id", {3: ""}),
        Expected(S, "school_id", MISSING, rows=lines(3)),
    ),
    (
        "students_grade_13",
        set_cells("students", "grade", {9: "13", 20: "k"}),
        Expected(S, "grade", "must be one of PK, K, 1", rows=lines(9, 20)),
    ),
    (
        "students_gender",
        set_cells("students", "gender", {10: "Q"}),
        Expected(S, "gender", "one of F, M, X", rows=lines(10)),
    ),
    (
        "students_race",
        set_cells("students", "race_ethnicity", {11: "Other"}),
        Expected(S, "race_ethnicity", "must be one of", rows=lines(11)),
    ),
    (
        "students_meal",
        set_cells("students", "meal_status", {12: "paid"}),
        Expected(S, "meal_status", "free, reduced, not_eligible", rows=lines(12)),
    ),
    (
        "students_missing_gender",
        set_cells("students", "gender", {15: ""}),
        Expected(S, "gender", MISSING, rows=lines(15)),
    ),
    (
        "students_duplicate_key",
        append_copy("students", 0),
        Expected(S, None, "(student_id, school_year) must be unique", rows=(2, N_STUDENT_ROWS + 2)),
    ),
    # ---- attendance ----------------------------------------------------------------------
    (
        "attendance_month_13",
        set_cells("attendance_monthly", "month", {50: "2021-13", 51: "Sept 2021"}),
        Expected(A, "month", "YYYY-MM", rows=lines(50, 51)),
    ),
    (
        "attendance_negative_membership",
        set_cells("attendance_monthly", "inperson_membership", {30: "-2"}),
        Expected(A, "inperson_membership", "≥ 0", rows=lines(30)),
    ),
    (
        "attendance_negative_attended",
        set_cells("attendance_monthly", "inperson_attended", {31: "-1"}),
        Expected(A, "inperson_attended", "≥ 0", rows=lines(31)),
    ),
    (
        "attendance_attended_over_membership",
        set_cells("attendance_monthly", "inperson_attended", {12: "25"}),
        Expected(A, "inperson_attended", "≤ inperson_membership", rows=lines(12)),
    ),
    (
        "attendance_remote_over_membership",
        set_cells("attendance_monthly", "remote_attended", {NO_REMOTE_ROW: "3"}),
        Expected(A, "remote_attended", "≤ remote_membership", rows=lines(NO_REMOTE_ROW)),
    ),
    (
        "attendance_total_over_23",
        set_cells("attendance_monthly", "inperson_membership", {SWITCH_ROWS[1]: "20"}),
        Expected(
            A,
            "inperson_membership + remote_membership",
            "at most 23 days",
            rows=lines(*SWITCH_ROWS),
        ),
    ),
    (
        "attendance_duplicate_key",
        append_copy("attendance_monthly", 0),
        Expected(
            A,
            None,
            "(student_id, month, school_id) must be unique",
            rows=(2, N_ATTENDANCE_ROWS + 2),
        ),
    ),
    (
        "attendance_empty_school",
        set_cells("attendance_monthly", "school_id", {60: ""}),
        Expected(A, "school_id", MISSING, rows=lines(60)),
    ),
    (
        "attendance_unknown_student",
        set_cells("attendance_monthly", "student_id", {3: "9990000001"}),
        Expected(A, "student_id", "must appear in students", rows=lines(3)),
    ),
    (
        "attendance_no_students_row_that_year",
        set_cells("attendance_monthly", "month", {LEAVER_ROW: "2023-02"}),
        Expected(
            A, "student_id", "for the school year that contains month", rows=lines(LEAVER_ROW)
        ),
    ),
    (
        "attendance_dates_outside_school_years",
        set_cells("attendance_monthly", "month", {7: "2025-01", SUMMER_ROW: "2020-07"}),
        Expected(A, "month", "outside the school years", rows=lines(7, SUMMER_ROW)),
    ),
    # ---- leap_visits -------------------------------------------------------------------
    (
        "visits_duplicate_id",
        set_cells("leap_visits", "visit_id", {1: "LV000101"}),
        Expected(V, "visit_id", "must be unique", rows=lines(0, 1)),
    ),
    (
        "visits_unknown_student",
        set_cells("leap_visits", "student_id", {2: "8880000000"}),
        Expected(V, "student_id", "must appear in students", rows=lines(2)),
    ),
    (
        "visits_impossible_date",
        set_cells("leap_visits", "visit_date", {3: "2021-02-30", 4: "04/01/2021"}),
        Expected(V, "visit_date", "YYYY-MM-DD", rows=lines(3, 4)),
    ),
    (
        "visits_status",
        set_cells("leap_visits", "visit_status", {5: "done"}),
        Expected(V, "visit_status", "completed, attempted", rows=lines(5)),
    ),
    (
        # a renamed status column is reported, not a KeyError (completed and attempted
        # visits cannot be told apart, so the program-start rule waits for it)
        "visits_status_renamed",
        edit("leap_visits", lambda df: df.rename(columns={"visit_status": "status"})),
        Expected(
            V,
            "visit_status",
            "required column is missing (the file has a column 'status', which is not read",
            program_start=PROGRAM_START,
        ),
    ),
    (
        "visits_location",
        set_cells("leap_visits", "visit_location", {6: "school"}),
        Expected(V, "visit_location", "home, other_location, virtual, phone", rows=lines(6)),
    ),
    (
        "visits_visitor_type",
        set_cells("leap_visits", "visitor_type", {7: "teacher"}),
        Expected(V, "visitor_type", "school_staff, community_partner, other", rows=lines(7)),
    ),
    (
        "visits_empty_district",
        set_cells("leap_visits", "district", {0: ""}),
        Expected(V, "district", MISSING, rows=lines(0)),
    ),
    (
        "visits_before_program_start",
        set_cells("leap_visits", "visit_date", {0: "2021-03-15"}),
        Expected(V, "visit_date", "before the program start 2021-04-01", lines(0), PROGRAM_START),
    ),
]
"""One broken folder per contract rule (see the module docstring)."""

CASE_NAMES = [name for name, _, _ in CASES]
assert len(set(CASE_NAMES)) == len(CASE_NAMES)
