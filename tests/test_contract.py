"""Tests of leapresearch.data.contract: reading and validating a raw data folder."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leapresearch.data.contract import (
    SCHEMAS,
    TABLES,
    ContractError,
    ContractWarning,
    RawTables,
    Violation,
    find_table_files,
    read_raw_tables,
    summarise,
    validate_folder,
)
from leapresearch.data.contract.schema import _SPECS
from tests.broken_inputs import CASES, Builder, Expected, read_text_table
from tests.fixtures import (
    DISTRICTS,
    EXPECTED_SUMMARY,
    PROGRAM_START,
    make_valid_folder,
    student_ids,
    valid_tables,
    write_folder,
)

ID_TOKEN = re.compile(r"\d{7,}|LV\d{6}")
"""What identifiers look like in the fixture and the corpus (SASIDs, school codes, visit ids)."""


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_valid_folder(tmp_path_factory.mktemp("valid") / "csv")


def _ids_in_folder(folder: Path) -> set[str]:
    """Every identifier-like token in the files of a folder (any encoding, any format)."""
    found: set[str] = set()
    for path in folder.iterdir():
        if path.suffix == ".csv":
            found |= set(ID_TOKEN.findall(path.read_bytes().decode("latin-1")))
        elif path.suffix == ".parquet":
            try:
                frame = pd.read_parquet(path)
            except Exception:  # a deliberately unreadable file holds no ids
                continue
            found |= set(ID_TOKEN.findall(frame.astype(str).to_csv()))
    return found


def _assert_no_identifiers(text: str, folder: Path) -> None:
    leaked = sorted(i for i in _ids_in_folder(folder) if i in text)
    assert not leaked, f"identifiers leaked into messages: {leaked[:3]}"


def _matches(v: Violation, expected: Expected) -> bool:
    return v.file == expected.file and v.column == expected.column and expected.rule in v.rule


# --------------------------------------------------------------------------------------
# The valid fixture
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formats",
    [
        "csv",
        "parquet",
        {"students": "parquet", "attendance_monthly": "csv", "leap_visits": "parquet"},
    ],
    ids=["csv", "parquet", "mixed"],
)
def test_valid_fixture_passes(tmp_path: Path, formats: object) -> None:
    folder = make_valid_folder(tmp_path / "data", formats=formats)
    tables, violations, notes = validate_folder(folder, program_start=PROGRAM_START)
    assert violations == []
    assert notes == []
    assert isinstance(tables, RawTables)
    summary = summarise(tables)
    assert summary == {**EXPECTED_SUMMARY, "districts": sorted(DISTRICTS)}


def test_types_leading_zeros_and_column_order(valid_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid folder without extra columns warns nothing
        tables = read_raw_tables(valid_dir)
    stu, att, vis = tables.students, tables.attendance_monthly, tables.leap_visits
    text = valid_tables()
    for name, frame in zip(TABLES, (stu, att, vis), strict=True):
        assert list(frame.columns) == list(text[name].columns)
        assert frame.index.equals(pd.RangeIndex(len(text[name])))
    # identifiers stay text with their leading zeros
    assert stu["student_id"].dtype == "str"
    assert set(stu["student_id"]) == set(student_ids())
    assert stu["student_id"].str.startswith("00").sum() > 0
    assert att["school_id"].str.startswith("0").all()
    assert vis["student_id"].isin(stu["student_id"]).all()
    # typed columns
    assert stu["ell"].dtype == np.int8 and stu["swd"].dtype == np.int8
    assert set(stu["ell"]) == {0, 1}
    for col in ("inperson_membership", "inperson_attended", "remote_membership"):
        assert att[col].dtype == np.float64
    assert pd.api.types.is_datetime64_dtype(vis["visit_date"])
    assert vis["visit_date"].min() == pd.Timestamp("2021-10-12")
    # the empty optional home_language is missing, not ""
    assert stu["home_language"].isna().sum() == 2
    assert tables.files == {n: valid_dir / f"{n}.csv" for n in TABLES}
    for name in TABLES:  # the published column schemas hold on the typed tables
        SCHEMAS[name].validate(getattr(tables, name))


def test_csv_and_parquet_give_the_same_tables(tmp_path: Path) -> None:
    from_csv = read_raw_tables(make_valid_folder(tmp_path / "c"))
    from_parquet = read_raw_tables(make_valid_folder(tmp_path / "p", formats="parquet"))
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(from_csv, name), getattr(from_parquet, name))


def test_leap_visits_may_be_empty(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["leap_visits"] = tables["leap_visits"].iloc[:0]
    folder = write_folder(tables, tmp_path / "csv")
    raw = read_raw_tables(folder)
    assert len(raw.leap_visits) == 0
    assert pd.api.types.is_datetime64_dtype(raw.leap_visits["visit_date"])
    assert summarise(raw)["cohorts"] == {}
    # a header without a final newline, and an empty Parquet table, too
    path = folder / "leap_visits.csv"
    path.write_text(path.read_text().rstrip("\n"))
    assert validate_folder(folder)[1] == []
    write_folder(tables, tmp_path / "pq", formats="parquet")
    assert validate_folder(tmp_path / "pq")[1] == []


def test_line_endings_bom_and_trailing_blank_lines_are_accepted(tmp_path: Path) -> None:
    folder = make_valid_folder(tmp_path)
    students = folder / "students.csv"
    students.write_bytes(b"\xef\xbb\xbf" + students.read_bytes().replace(b"\n", b"\r\n"))
    visits = folder / "leap_visits.csv"
    visits.write_bytes(visits.read_bytes() + b"\n\n")
    raw = read_raw_tables(folder)
    assert len(raw.students) == len(valid_tables()["students"])
    assert len(raw.leap_visits) == 8


# --------------------------------------------------------------------------------------
# The corpus of broken folders
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_folder_is_refused(
    valid_dir: Path, tmp_path: Path, name: str, build: Builder, expected: Expected
) -> None:
    folder = tmp_path / name
    build(valid_dir, folder)

    tables, violations, _ = validate_folder(folder, program_start=expected.program_start)
    assert tables is None
    hits = [v for v in violations if _matches(v, expected)]
    assert hits, f"expected {expected} among:\n" + "\n".join(map(str, violations))
    if expected.rows is not None:
        assert hits[0].rows == expected.rows
        assert hits[0].n_rows == len(expected.rows)

    with pytest.raises(ContractError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", ContractWarning)
        read_raw_tables(folder, program_start=expected.program_start)
    assert info.value.violations == tuple(violations)
    message = str(info.value)
    assert str(hits[0]) in message.splitlines()[1 + violations.index(hits[0])]
    _assert_no_identifiers(message, folder)


@pytest.mark.parametrize(
    ("table", "column"),
    [(t, c.name) for t in TABLES for c in _SPECS[t] if c.required],
)
def test_any_missing_required_column_is_reported_not_raised(
    valid_dir: Path, tmp_path: Path, table: str, column: str
) -> None:
    """Dropping any one required column (program start given) gives its violation."""
    folder = tmp_path / "data"
    shutil.copytree(valid_dir, folder)
    path = folder / f"{table}.csv"
    read_text_table(path).drop(columns=column).to_csv(path, index=False)
    tables, violations, _ = validate_folder(folder, program_start=PROGRAM_START)
    assert tables is None
    hits = [v for v in violations if (v.file, v.column) == (f"{table}.csv", column)]
    assert hits and hits[0].rule.startswith("required column is missing"), violations


def test_corpus_covers_every_table_and_format() -> None:
    files = {expected.file for _, _, expected in CASES}
    assert {"students", "leap_visits"} <= files  # missing tables
    assert {f"{t}.csv" for t in TABLES} <= files
    assert {f"{t}.parquet" for t in TABLES} <= files


def test_all_violations_are_reported_together(valid_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    shutil.copytree(valid_dir, folder)
    stu = read_text_table(folder / "students.csv")
    stu.loc[[3, 9], "grade"] = "13"
    stu.drop(columns="meal_status").to_csv(folder / "students.csv", index=False)
    att = read_text_table(folder / "attendance_monthly.csv")
    att.loc[5, "inperson_attended"] = "30"
    att.loc[6, "month"] = "2021-00"
    att.to_csv(folder / "attendance_monthly.csv", index=False)
    (folder / "leap_visits.csv").unlink()

    with pytest.raises(ContractError) as info:
        read_raw_tables(folder)
    found = {(v.file, v.column, v.rows) for v in info.value.violations}
    assert ("students.csv", "grade", (5, 11)) in found
    assert ("students.csv", "meal_status", ()) in found
    assert ("attendance_monthly.csv", "inperson_attended", (7,)) in found
    assert ("attendance_monthly.csv", "month", (8,)) in found
    assert ("leap_visits", None, ()) in found
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + len(info.value.violations)
    assert "5 problems" in lines[0]
    assert "(found '13')" in str(info.value)  # values of non-identifier columns are shown


def test_violations_are_grouped_by_table(valid_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "order"
    shutil.copytree(valid_dir, folder)
    vis = read_text_table(folder / "leap_visits.csv")
    vis.loc[0, "visit_status"] = "done"
    vis.to_csv(folder / "leap_visits.csv", index=False)
    stu = read_text_table(folder / "students.csv")
    stu.loc[0, "gender"] = "Q"
    stu.to_csv(folder / "students.csv", index=False)
    (folder / "attendance_monthly.csv").write_bytes(b"")
    _, violations, _ = validate_folder(folder)
    files = [v.file for v in violations]
    assert files == ["students.csv", "attendance_monthly.csv", "leap_visits.csv"]


# --------------------------------------------------------------------------------------
# Warnings, options, files
# --------------------------------------------------------------------------------------


def test_extra_columns_warn_once_per_table(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["students"] = tables["students"].assign(notes="x", zip_code="06106")
    tables["leap_visits"] = tables["leap_visits"].assign(visit_minutes="45")
    folder = write_folder(tables, tmp_path)
    with pytest.warns(ContractWarning) as record:
        raw = read_raw_tables(folder)
    messages = [str(w.message) for w in record if issubclass(w.category, ContractWarning)]
    assert len(messages) == 2
    assert (
        messages[0] == "students.csv: 2 columns not in the data contract: notes, zip_code [ignored]"
    )
    assert "leap_visits.csv" in messages[1] and "visit_minutes" in messages[1]
    assert tuple(map(str, raw.warnings)) == tuple(messages)
    assert [w.handling for w in raw.warnings] == ["ignored", "ignored"]
    assert "notes" not in raw.students.columns
    # validate_folder returns the same warnings without emitting them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(map(str, validate_folder(folder)[2])) == messages


def test_visits_after_the_attendance_data_warn(tmp_path: Path) -> None:
    tables = valid_tables()
    late = tables["leap_visits"].iloc[[0]].assign(visit_id="LV000999", visit_date="2023-07-05")
    tables["leap_visits"] = pd.concat([tables["leap_visits"], late], ignore_index=True)
    folder = write_folder(tables, tmp_path)
    raw, violations, notes = validate_folder(folder, program_start=PROGRAM_START)
    assert violations == [] and raw is not None
    assert len(notes) == 1
    assert "after the last month with attendance data (2023-06)" in str(notes[0])
    assert "(line 10)" in str(notes[0])
    assert notes[0].handling == "kept" and notes[0].n_rows == 1


def test_program_start_is_checked_only_when_given(tmp_path: Path) -> None:
    """A completed visit before the start is an error; an attempted one a warning."""
    tables = valid_tables()
    assert tables["leap_visits"].loc[0, "visit_status"] == "completed"
    assert tables["leap_visits"].loc[2, "visit_status"] == "attempted"
    tables["leap_visits"].loc[[0, 2], "visit_date"] = "2021-03-31"
    folder = write_folder(tables, tmp_path)
    assert validate_folder(folder)[1] == []
    assert validate_folder(folder, program_start=date(2021, 3, 31))[1] == []
    _, violations, notes = validate_folder(folder, program_start=PROGRAM_START)
    assert [(v.column, v.rows) for v in violations] == [("visit_date", (2,))]
    assert "for a completed visit" in violations[0].rule
    early = [w for w in notes if "attempted visits before the program start" in w.issue]
    assert [(w.column, w.rows, w.handling) for w in early] == [("visit_date", (4,), "kept")]


def test_find_table_files(valid_dir: Path, tmp_path: Path) -> None:
    assert find_table_files(valid_dir) == {n: valid_dir / f"{n}.csv" for n in TABLES}
    folder = tmp_path / "bad"
    shutil.copytree(valid_dir, folder)
    (folder / "students.csv").unlink()
    (folder / "students.xlsx").write_bytes(b"")
    (folder / "leap_visits.parquet").write_bytes(b"")
    with pytest.raises(ContractError) as info:
        find_table_files(folder)
    rules = {v.file: v.rule for v in info.value.violations}
    assert set(rules) == {"students", "leap_visits"}
    assert "found students.xlsx, which is not read" in rules["students"]
    assert "both leap_visits.csv and leap_visits.parquet" in rules["leap_visits"]


def test_missing_folder_is_a_violation_not_a_traceback(tmp_path: Path) -> None:
    tables, violations, _ = validate_folder(tmp_path / "nope")
    assert tables is None
    assert violations[0].rule.startswith("the data folder does not exist: ")
    assert "make demo-data" in violations[0].rule and "data_raw/README.md" in violations[0].rule
    with pytest.raises(ContractError):
        read_raw_tables(tmp_path / "nope")


def test_far_away_years_and_odd_headers_do_not_crash(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["students"].loc[4, "school_year"] = "1021-22"  # well-formed, but absurd
    tables["attendance_monthly"].loc[0, "month"] = "9999-12"
    tables["leap_visits"].loc[0, "visit_date"] = "9999-12-31"
    folder = write_folder(tables, tmp_path / "years")
    _, violations, _ = validate_folder(folder, program_start=PROGRAM_START)
    found = {(v.column, v.rows[0]) for v in violations}
    assert ("month", 2) in found  # outside the school years
    assert ("student_id", 42) in found  # student 4 lost the students row of 2021-22
    assert not any(v.file == "students.csv" for v in violations)

    folder = make_valid_folder(tmp_path / "huge_field")  # beyond the csv module's field limit
    path = folder / "leap_visits.csv"
    path.write_bytes(b'"' + b"x" * 200_000 + b'",' + path.read_bytes())
    _, violations, _ = validate_folder(folder)
    assert [v.rule for v in violations] == ["the header row could not be read as CSV text"]


def test_identifiers_in_the_wrong_column_are_not_shown(tmp_path: Path) -> None:
    tables = valid_tables()
    sasid = tables["students"].loc[5, "student_id"]
    tables["students"].loc[3, "grade"] = sasid  # shifted columns
    tables["students"].loc[4, "ell"] = sasid
    tables["leap_visits"].loc[1, "visit_date"] = sasid
    folder = write_folder(tables, tmp_path)
    _, violations, _ = validate_folder(folder)
    assert {(v.column, v.rows) for v in violations} >= {
        ("grade", (5,)),
        ("ell", (6,)),
        ("visit_date", (3,)),
    }
    text = "\n".join(map(str, violations))
    assert "looks like an identifier" in text
    _assert_no_identifiers(text, folder)
    assert sasid.lstrip("0")[:6] not in text


def test_violation_str() -> None:
    v = Violation(
        "attendance_monthly.csv",
        "inperson_attended",
        "must be ≤ inperson_membership",
        3,
        (5, 9, 12),
    )
    assert str(v) == (
        "attendance_monthly.csv: column inperson_attended: must be ≤ inperson_membership"
        " — 3 rows (lines 5, 9, 12)"
    )
    one = Violation("students.parquet", "grade", "must be one of PK, K", 1, (4,))
    assert str(one) == "students.parquet: column grade: must be one of PK, K — 1 row (row 4)"
    assert str(Violation("students", None, "table is missing")) == "students: table is missing"
    many = Violation("a.csv", None, "line is blank", 1234, tuple(range(2, 12)))
    assert str(many).endswith(
        "— 1,234 rows (lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … first 10 shown)"
    )


# --------------------------------------------------------------------------------------
# Property: one bad cell anywhere is reported with its column and line
# --------------------------------------------------------------------------------------

_FLAG = ["2", "yes", "-1", "0.5", ""]
_DAYS = ["-1", "abc", "", "1e999"]
_INVALID: dict[str, dict[str, list[str]]] = {
    "students": {
        "student_id": [""],
        "school_year": ["2021-23", "21-22", "", "2021_22"],
        "district": ["", "  "],
        "school_id": [""],
        "grade": ["13", "k", "Kindergarten", "", "0"],
        "gender": ["f", "Female", ""],
        "race_ethnicity": ["Other", "white", ""],
        "meal_status": ["paid", "Free", ""],
        "ell": _FLAG,
        "swd": _FLAG,
    },
    "attendance_monthly": {
        "student_id": ["", "0000000000"],
        "district": [""],
        "school_id": [""],
        "month": ["2021-13", "2021-9", "202109", "Sept", "", "9999-12", "0000-01"],
        "inperson_membership": _DAYS,
        "remote_membership": _DAYS,
        "inperson_attended": [*_DAYS, "99"],
        "remote_attended": [*_DAYS, "99"],
    },
    "leap_visits": {
        "visit_id": [""],
        "student_id": ["", "0000000000"],
        "district": [""],
        "visit_date": ["2021-02-30", "yesterday", "", "2021/10/12", "2021-10-1"],
        "visit_status": ["done", "Completed", ""],
        "visit_location": ["school", ""],
        "visitor_type": ["teacher", ""],
    },
}
_TABLES = valid_tables()


@st.composite
def _bad_cell(draw: st.DrawFn) -> tuple[str, int, str, str]:
    table = draw(st.sampled_from(TABLES))
    column = draw(st.sampled_from(sorted(_INVALID[table])))
    row = draw(st.integers(0, len(_TABLES[table]) - 1))
    value = draw(st.sampled_from(_INVALID[table][column]))
    return table, row, column, value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=_bad_cell())
def test_one_bad_cell_is_reported_with_its_column_and_line(
    cell: tuple[str, int, str, str],
) -> None:
    table, row, column, value = cell
    tables = {name: frame.copy() for name, frame in _TABLES.items()}
    tables[table].loc[row, column] = value
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(tables, Path(tmp))
        _, violations, _ = validate_folder(folder)
        hits = [
            v
            for v in violations
            if v.file == f"{table}.csv" and v.column == column and row + 2 in v.rows
        ]
        assert hits, f"{table}.csv line {row + 2} {column}={value!r}: " + "; ".join(
            map(str, violations)
        )
        _assert_no_identifiers("\n".join(map(str, violations)), folder)


def test_student_codes_shared_across_tables_are_those_of_the_concatenated_column():
    """``rules._share_student_codes`` factorizes each table's ids, then their distinct values
    together: the same codes and distinct ids as factorizing the three columns concatenated
    (first appearance, table by table), missing ids -1, an id unknown to the roster its own
    code."""
    from pathlib import Path

    from leapresearch.data.contract.rules import _share_student_codes
    from leapresearch.data.contract.table import _Table

    rng = np.random.default_rng(3)
    ids = np.array([f"{i:06d}" for i in rng.permutation(500)], dtype=object)

    def table(name, values):
        frame = pd.DataFrame({"student_id": pd.Series(values, dtype="str")})
        return _Table(name, Path(f"{name}.csv"), frame, np.arange(len(frame)), {"student_id"})

    roster = table("students", np.r_[ids[:300], ids[:300], [None]])
    attendance = table("attendance_monthly", rng.choice(np.r_[ids[100:400], [None]], 5_000))
    visits = table("leap_visits", np.r_[ids[450:], ids[:5], ["nobody"]])
    tables = [roster, attendance, visits]
    n = _share_student_codes(tables)
    want, uniques = pd.factorize(pd.concat([t.frame["student_id"] for t in tables]))
    assert n == len(uniques)
    lo = 0
    for t in tables:
        codes, distinct = t.cached_codes["student_id"]
        np.testing.assert_array_equal(codes, want[lo : lo + len(t.frame)])
        assert list(distinct) == list(uniques)
        lo += len(t.frame)
    assert (roster.codes("student_id") == -1).sum() == 1
