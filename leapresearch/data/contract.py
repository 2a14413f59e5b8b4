"""Read a raw data folder and check it against the data contract (v1).

A data folder holds three tables, ``students``, ``attendance_monthly`` and
``leap_visits``, each as ``NAME.csv`` (UTF-8, header row, comma-separated) or
``NAME.parquet``. :func:`validate_folder` reads them and checks every rule of the
contract; :func:`read_raw_tables` does the same and raises :class:`ContractError`
listing *all* violations at once. Nothing else in the folder is read.

How a folder is checked
-----------------------
1. **Files.** Each table must be present exactly once (CSV or Parquet, not both).
2. **Structure.** CSV: not empty, UTF-8, comma-separated, a header row with unique
   names naming every required column, every line with as many fields as the header.
   Parquet: readable, unique column names, identifiers and labels stored as strings,
   day counts and 0/1 flags stored as numbers, ``visit_date`` as a date (or a
   ``YYYY-MM-DD`` string). Columns outside the contract are ignored with one warning
   per table.
3. **Types.** CSV columns are read as strings (never inferred, so identifiers keep their
   leading zeros) and then converted with explicit checks: text that is not a number
   in a day-count column, or not a ``YYYY-MM-DD`` date, is reported with its rows.
4. **Column rules** (:data:`SCHEMAS`, a pandera ``DataFrameSchema`` per table, validated
   lazily on the distinct values of each column): no missing values in required
   columns, closed vocabularies, formats of ``school_year`` and ``month``, day counts
   ``>= 0``, flags in ``{0, 1}``.
5. **Cross-column, key and cross-table rules** (vectorised pandas): attended
   ``<=`` membership, total membership of a student-month ``<= 23`` days, unique keys,
   attendance and visits of students known to ``students``, attendance months inside
   the school years in ``students``, visits not before the program start.

Row numbers
-----------
A violation names rows as the user sees them. For a CSV file these are **line
numbers**: the header is line 1 and data row *k* is line *k + 1* (a record whose
quoted value spans several lines counts as one line). For a Parquet file they are
1-based **row numbers**. Identifiers (``student_id``, ``school_id``, ``visit_id``) are
never shown in a message; values of other columns (a grade ``13``) are, unless they
look like an identifier (six digits in a row).

Choices where the contract is silent
------------------------------------
* ``students`` and ``attendance_monthly`` must have rows; ``leap_visits`` may be empty
  (a header alone, or a Parquet file with no rows).
* Empty or whitespace-only values, and null tokens (``NULL``, ``N/A``, ``NA``,
  ``#N/A``), count as missing. Coded values are not trimmed unless the vintage's input
  mapping says so: ``"K "`` is not a grade. District names and ``home_language`` are
  normalised (see :mod:`leapresearch.data.intake`), with warnings.
* A completed visit before the program start is a violation; an attempted one a warning.
* An attendance row of July or August (summer school) needs a ``students`` row for
  either adjacent school year (the one ending in June or the one starting in
  September).
* A missing optional ``home_language`` column becomes a column of missing values.
* Blank lines at the end of a CSV file are ignored; a blank line between data lines is
  a violation.
* Visits dated after the last month with attendance data give a warning, not an error.
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors
from pandera.pandas import Check, Column, DataFrameSchema

from leapresearch.data.calendar import cohort_label
from leapresearch.data.intake import (
    NO_MAPPING,
    DataWarning,
    InputMapping,
    apply_mapping,
    capitalise_words,
    case_collisions,
    collapse_spaces,
    id_form_hint,
    positions_of,
    rename_header,
    sniff_binary,
)
from leapresearch.data.types import (
    GENDERS,
    GRADES,
    MEAL_STATUSES,
    RACES,
    VISIT_LOCATIONS,
    VISIT_STATUSES,
    VISITOR_TYPES,
)

__all__ = [
    "MAX_MONTH_MEMBERSHIP_DAYS",
    "TABLES",
    "ContractError",
    "ContractWarning",
    "DataWarning",
    "InputMapping",
    "RawTables",
    "SCHEMAS",
    "Violation",
    "find_table_files",
    "read_raw_tables",
    "summarise",
    "validate_folder",
]

TABLES: tuple[str, ...] = ("students", "attendance_monthly", "leap_visits")
"""Table names of the contract, in reading order."""

MAX_MONTH_MEMBERSHIP_DAYS = 23
"""Most days of membership a student can have in one month, over all schools."""

MAX_ROWS_SHOWN = 10
"""How many row numbers a violation lists."""

_MAX_VALUES_SHOWN = 20
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


# --------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------


class ContractWarning(UserWarning):
    """A problem in a data folder that does not stop the analysis (e.g. ignored columns)."""


@dataclass(frozen=True)
class Violation:
    """One broken rule of the data contract.

    Attributes
    ----------
    file : str
        File name (``attendance_monthly.csv``); the table name when the file itself is
        missing; the folder when the folder is missing.
    column : str or None
        Column that breaks the rule, ``None`` for a problem of the file or table.
        A rule on two columns together names both
        (``"inperson_membership + remote_membership"``).
    rule : str
        The rule broken, as a sentence whose subject is the column
        (``"must be ≤ inperson_membership"``) or, for table-level problems, a full
        sentence.
    n_rows : int
        How many rows break it (0 for problems of the whole file).
    rows : tuple of int
        The first (at most 10) of those rows, ascending: line numbers for CSV files
        (header = line 1, data row *k* = line *k + 1*), 1-based row numbers for
        Parquet files.
    """

    file: str
    column: str | None
    rule: str
    n_rows: int = 0
    rows: tuple[int, ...] = ()

    @property
    def row_kind(self) -> str:
        """``"line"`` for CSV files, ``"row"`` otherwise (how :attr:`rows` count)."""
        return "line" if self.file.endswith(".csv") else "row"

    def __str__(self) -> str:
        where = f"{self.file}: " + (f"column {self.column}: " if self.column else "")
        text = where + self.rule
        if self.n_rows:
            unit = self.row_kind + ("s" if len(self.rows) > 1 else "")
            shown = ", ".join(map(str, self.rows))
            more = f", … first {len(self.rows)} shown" if self.n_rows > len(self.rows) else ""
            count = f"{self.n_rows:,} row" + ("s" if self.n_rows != 1 else "")
            text += f" — {count} ({unit} {shown}{more})"
        return text


class ContractError(Exception):
    """A data folder breaks the data contract.

    Parameters
    ----------
    violations : iterable of Violation
        Every violation found (not only the first).

    Attributes
    ----------
    violations : tuple of Violation
        Every violation found; ``str(error)`` lists them, one per line, after a
        one-line summary.
    """

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__(self.violations)

    def __str__(self) -> str:
        n = len(self.violations)
        head = f"the data folder breaks the data contract ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head, *(f"  - {v}" for v in self.violations)])


@dataclass(frozen=True, eq=False)
class RawTables:
    """The three contract tables of a valid data folder, typed.

    Attributes
    ----------
    students : pandas.DataFrame
        Contract columns in contract order. Identifiers and labels have the pandas
        ``str`` dtype (leading zeros kept); ``ell`` and ``swd`` are ``int8``;
        ``home_language`` is ``str`` and all missing when the file has no such column.
    attendance_monthly : pandas.DataFrame
        Identifiers and ``month`` (``YYYY-MM``) as ``str``; the four day counts as
        ``float64``.
    leap_visits : pandas.DataFrame
        ``visit_date`` as ``datetime64[us]``; the other columns as ``str``.
    files : Mapping[str, Path]
        Table name to the file that was read.
    warnings : tuple of DataWarning
        Warnings about the folder, each with its handling (ignored columns, attempted
        visits before the program start, visits after the attendance data, recoded
        district names and home languages).
    mapping : Mapping[str, dict]
        What the input mapping and the null tokens changed: ``table -> column ->
        {"trimmed"|"null_tokens"|"recoded"|"dates": count}``.
    """

    students: pd.DataFrame
    attendance_monthly: pd.DataFrame
    leap_visits: pd.DataFrame
    files: Mapping[str, Path]
    warnings: tuple[DataWarning, ...] = ()
    mapping: Mapping[str, dict] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Internal state of one table while it is checked
# --------------------------------------------------------------------------------------


@dataclass
class _Table:
    """A table read from one file, with what is known to be usable in it."""

    name: str
    path: Path
    frame: pd.DataFrame
    lines: np.ndarray
    usable: set[str]
    unparsed: dict[str, np.ndarray] = field(default_factory=dict)
    cached_codes: dict[str, tuple[np.ndarray, pd.Series]] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return self.path.name

    def factorized(self, column: str) -> tuple[np.ndarray, pd.Series]:
        """Codes (-1 for missing) and distinct values of a column, computed once."""
        if column not in self.cached_codes:
            codes, uniques = pd.factorize(self.frame[column])
            self.cached_codes[column] = (codes, pd.Series(uniques))
        return self.cached_codes[column]

    def codes(self, column: str) -> np.ndarray:
        """Factorized codes of a column (-1 for missing values)."""
        return self.factorized(column)[0]

    def has(self, *columns: str) -> bool:
        return all(c in self.usable for c in columns)

    def violation(
        self, column: str | None, rule: str, mask: np.ndarray, *, show_values: bool = True
    ) -> Violation | None:
        """Violation for the rows where ``mask`` is true (None when there are none)."""
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return None
        if show_values and column in self.frame.columns and not _is_id(self.name, column):
            rule += _found(self.frame[column].iloc[positions])
        return _violation_at(self.file, column, rule, self.lines, positions)


def _violation_at(
    file: str, column: str | None, rule: str, lines: np.ndarray, positions: np.ndarray
) -> Violation:
    rows = tuple(int(r) for r in lines[positions[:MAX_ROWS_SHOWN]])
    return Violation(file, column, rule, int(positions.size), rows)


def _is_id(table: str, column: str) -> bool:
    return any(c.name == column and c.kind == "id" for c in _SPECS[table])


_ID_LIKE = re.compile(r"\d{6}")
_HIDDEN = "a value that looks like an identifier (not shown)"


def _show(value: object) -> str:
    """Format a value for a message: numbers plain, text quoted and cut at 30 characters.

    A value that looks like an identifier (6 or more digits in a row, as when columns
    are shifted and a SASID lands in ``grade``) is never shown.
    """
    if isinstance(value, float | np.floating | int | np.integer):
        return _HIDDEN if abs(float(value)) >= 100_000 else f"{float(value):g}"
    text = str(value)
    if _ID_LIKE.search(text):
        return _HIDDEN
    return repr(text if len(text) <= 30 else text[:30] + "…")


def _found(values: pd.Series) -> str:
    """`` (found 'a', 'b')``: every distinct non-missing value, up to 20, then a count."""
    distinct = pd.unique(values.dropna())
    if len(distinct) == 0:
        return ""
    shown = list(dict.fromkeys(_show(v) for v in distinct[:_MAX_VALUES_SHOWN]))
    more = len(distinct) - _MAX_VALUES_SHOWN
    tail = f" and {more:,} more distinct value{'s' if more > 1 else ''}" if more > 0 else ""
    return f" (found {', '.join(shown)}{tail})"


# --------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------


_NO_FOLDER_HINT = (
    ": make the synthetic demo data with `make demo-data` (or `leapresearch simulate --out "
    "DIR`), or put the state's extracts in a folder such as data_raw/<vintage>/ and name it "
    "in params/<vintage>.yaml (data_dir) or with --data (see data_raw/README.md)"
)


def _locate(
    folder: Path, mapping: InputMapping = NO_MAPPING
) -> tuple[dict[str, Path], list[Violation]]:
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist" + _NO_FOLDER_HINT
        return {}, [Violation(str(folder), None, f"the data folder {what}")]
    found: dict[str, Path] = {}
    problems: list[Violation] = []
    for name in TABLES:
        named = mapping.table(name).file
        if named is not None:
            path = folder / named
            if path.is_file() and path.suffix.lower() in (".csv", ".parquet"):
                found[name] = path
            else:
                why = "is not a .csv or .parquet file" if path.is_file() else "is missing"
                rule = f"table is missing: {named} (named by the input mapping) {why}"
                problems.append(Violation(name, None, rule))
            continue
        csv_path, pq_path = folder / f"{name}.csv", folder / f"{name}.parquet"
        if csv_path.is_file() and pq_path.is_file():
            rule = f"both {name}.csv and {name}.parquet are present; keep exactly one of them"
            problems.append(Violation(name, None, rule))
        elif csv_path.is_file() or pq_path.is_file():
            found[name] = csv_path if csv_path.is_file() else pq_path
        else:
            others = sorted(p.name for p in folder.glob(f"{name}.*"))
            hint = f"; found {', '.join(others)}, which is not read" if others else ""
            rule = f"table is missing: no {name}.csv or {name}.parquet in the folder{hint}"
            problems.append(Violation(name, None, rule))
    if problems and any(v.rule.startswith("table is missing: no ") for v in problems):
        problems = [_unused_files_hint(v, folder, found) for v in problems]
    return found, problems


def _unused_files_hint(v: Violation, folder: Path, found: dict[str, Path]) -> Violation:
    """Name the data files of the folder that no table reads (a state's own file names)."""
    if not v.rule.startswith("table is missing: no ") or "which is not read" in v.rule:
        return v
    used = {p.name for p in found.values()}
    suffixes = (".csv", ".parquet", ".txt", ".xlsx", ".xls")
    unused = sorted(
        p.name for p in folder.iterdir() if p.suffix.lower() in suffixes and p.name not in used
    )
    if not unused:
        return v
    shown = ", ".join(unused[:5]) + (", …" if len(unused) > 5 else "")
    hint = (
        f"; the folder holds {shown}, which is not read: rename the file, or name it in the "
        f"input: section of the vintage file (input: {v.file}: file:)"
    )
    return Violation(v.file, v.column, v.rule + hint)


def find_table_files(folder: Path, *, mapping: InputMapping = NO_MAPPING) -> dict[str, Path]:
    """Find the file of each contract table in a data folder.

    Parameters
    ----------
    folder : Path
        The data folder.

    Returns
    -------
    dict of str to Path
        ``NAME.csv`` or ``NAME.parquet`` for each name in :data:`TABLES`.

    Raises
    ------
    ContractError
        If the folder does not exist, or a table has no file or has both a CSV and a
        Parquet file (all such problems at once).
    """
    found, problems = _locate(folder, mapping)
    if problems:
        raise ContractError(problems)
    return found


# --------------------------------------------------------------------------------------
# Reading CSV
# --------------------------------------------------------------------------------------


@dataclass
class _Read:
    """Outcome of reading one file: a string/typed Arrow table or table-level problems."""

    table: pa.Table | None
    lines: np.ndarray
    violations: list[Violation]
    warnings: list[DataWarning]


def _failed(*violations: Violation) -> _Read:
    return _Read(None, np.empty(0, np.int64), list(violations), [])


def _invalid_utf8_lines(path: Path) -> np.ndarray:
    """Line numbers (1-based) of the lines of ``path`` that hold bytes invalid in UTF-8.

    Runs only once a file is known to be broken; it loops over invalid byte sequences,
    not over lines.
    """
    data = path.read_bytes()
    view = memoryview(data)
    bad: list[int] = []
    pos = 0
    while pos < len(data):
        try:
            codecs.utf_8_decode(view[pos:], "strict", True)
            break
        except UnicodeDecodeError as exc:
            bad.append(pos + exc.start)
            pos += exc.end
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    return np.unique(np.searchsorted(newlines, np.asarray(bad, dtype=np.int64)) + 1)


def _utf8_violation(file: str, path: Path) -> Violation:
    lines = _invalid_utf8_lines(path)
    rule = (
        "file must be UTF-8 encoded; these lines hold bytes that are not UTF-8 "
        "(saved as Latin-1/Windows-1252? re-save as UTF-8)"
    )
    return Violation(file, None, rule, int(lines.size), tuple(int(x) for x in lines[:10]))


def _header_problems(file: str, header: list[str]) -> list[Violation]:
    """Problems that make a CSV header unusable (blank, wrong delimiter, duplicates)."""
    if not any(h.strip() for h in header):
        return [Violation(file, None, "the first line must be the header row; it is blank")]
    if len(header) == 1:
        text = header[0]
        for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in text:
                rule = (
                    f"expected comma-separated columns, but the header is one column "
                    f"containing {sep!r} (a {label}-separated file?); save it as CSV with commas"
                )
                return [Violation(file, None, rule)]
    counts = pd.Series(header).value_counts()
    problems = []
    for col in counts.index[counts.to_numpy() > 1]:
        positions = [str(i + 1) for i, h in enumerate(header) if h == col]
        rule = (
            f"column name appears {len(positions)} times in the header (columns "
            f"{', '.join(positions)}); header names must be unique"
        )
        problems.append(Violation(file, str(col), rule))
    return problems


def _column_problems(
    name: str, file: str, header: list[str]
) -> tuple[list[str], list[Violation], list[str]]:
    """Contract columns present, missing-column violations and the extra-column warning."""
    specs = _SPECS[name]
    known = {c.name for c in specs}
    present = [c.name for c in specs if c.name in header]
    lowered = {h.strip().lower(): h for h in header if h not in known}
    if not present:
        cased = [(lowered[c.name], c.name) for c in specs if c.name in lowered]
        if cased:
            pairs = ", ".join(f"{h!r} for {c}" for h, c in cased[:5])
            rule = (
                f"column names differ from the contract's in case or spaces (found {pairs}"
                f"{', …' if len(cased) > 5 else ''}): the contract's names are lower case; "
                "rename the columns, or map them in the input: section of the vintage file"
            )
            return [], [Violation(file, None, rule)], []
        expected = ", ".join(c.name for c in specs if c.required)
        rule = f"has none of the contract columns ({expected})"
        if file.endswith(".csv"):
            rule += "; the first line must be a comma-separated header row"
        return [], [Violation(file, None, rule)], []
    problems = []
    for c in specs:
        if c.required and c.name not in header:
            near = lowered.get(c.name)
            hint = f" (found {near!r}: names are case- and space-sensitive)" if near else ""
            problems.append(Violation(file, c.name, "required column is missing" + hint))
    extra = [h for h in header if h not in known and not h.startswith("__index_level_")]
    notes = []
    if extra:
        issue = (
            f"{len(extra)} column{'s' if len(extra) > 1 else ''} not in the data contract: "
            f"{', '.join(extra)}"
        )
        notes.append(DataWarning(file, None, issue, "ignored"))
    return present, problems, notes


def _read_csv(name: str, path: Path, mapping: InputMapping = NO_MAPPING) -> _Read:
    file = path.name
    if path.stat().st_size == 0:
        return _failed(Violation(file, None, "file is empty (0 bytes); expected a header row"))
    binary = sniff_binary(path)
    if binary:
        return _failed(Violation(file, None, binary))
    with path.open("rb") as fh:
        first = fh.readline()
        header_only = fh.read(1) == b""
    try:
        header_text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _failed(_utf8_violation(file, path))
    try:
        header = next(csv.reader([header_text.rstrip("\r\n")]), [])
    except csv.Error:  # e.g. a NUL byte: not a text file
        return _failed(Violation(file, None, "the header row could not be read as CSV text"))
    renamed = rename_header(header, mapping.table(name))
    problems = _header_problems(file, renamed)
    if problems:
        return _failed(*problems)
    present, problems, notes = _column_problems(name, file, renamed)
    if not present:
        return _failed(*problems)
    original = {new: old for old, new in zip(header, renamed, strict=True)}
    source = [original[c] for c in present]

    invalid: list[tuple[int | None, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.actual_columns))
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                ignore_empty_lines=False, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in source},
                include_columns=source,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        if header_only:  # the Arrow reader fails on a lone header without a newline
            table = pa.table({c: pa.array([], pa.string()) for c in source})
        else:
            table = read(threads=True)
        if invalid and any(number is None for number, _ in invalid):
            invalid.clear()  # line numbers are known only to a single-threaded read
            table = read(threads=False)
        table = table.rename_columns(present)
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            return _failed(_utf8_violation(file, path))
        # the parser's own message may quote data (identifiers): it is not passed on
        rule = "could not be parsed as comma-separated text (an unbalanced double quote?)"
        return _failed(Violation(file, None, rule))

    n_records = table.num_rows + len(invalid)
    lines = np.arange(2, n_records + 2, dtype=np.int64)
    if invalid:
        skipped = np.array(sorted(number for number, _ in invalid), dtype=np.int64)
        rule = (
            f"every line must have {len(header)} comma-separated fields like the header "
            f"(the first of these has {invalid[0][1]}: an unquoted comma, or an unbalanced "
            "double quote?)"
        )
        problems.append(Violation(file, None, rule, len(skipped), tuple(skipped[:10].tolist())))
        lines = np.setdiff1d(lines, skipped, assume_unique=True)
    return _Read(table, lines, problems, notes)


# --------------------------------------------------------------------------------------
# Reading Parquet
# --------------------------------------------------------------------------------------


def _is_stringlike(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_stringlike(t.value_type)
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_null(t)
    )


def _storage_problem(col: _Col, t: pa.DataType) -> str | None:
    """Why a Parquet column of type ``t`` cannot hold ``col`` (None when it can)."""
    if col.kind in ("id", "text"):
        if _is_stringlike(t):
            return None
        why = (
            " (identifiers stored as numbers lose their leading zeros)" if col.kind == "id" else ""
        )
        return f"must be stored as string, not {t}{why}"
    if col.kind in ("days", "flag"):
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t):
            return None
        return f"must be stored as a number, not {t}"
    if _is_stringlike(t) or pa.types.is_date(t) or pa.types.is_timestamp(t):
        return None
    return f"must be stored as a date (or YYYY-MM-DD text), not {t}"


def _read_parquet(name: str, path: Path, mapping: InputMapping = NO_MAPPING) -> _Read:
    file = path.name
    if path.stat().st_size == 0:
        return _failed(Violation(file, None, "file is empty (0 bytes); expected a Parquet file"))
    try:
        pfile = pq.ParquetFile(path)
        schema = pfile.schema_arrow
    except (pa.ArrowException, OSError):
        return _failed(Violation(file, None, "is not a readable Parquet file"))
    table_mapping = mapping.table(name)
    original_names = list(schema.names)
    names = rename_header(original_names, table_mapping)
    problems = [v for v in _header_problems(file, names) if v.column is not None]
    if problems:
        return _failed(*problems)
    present, problems, notes = _column_problems(name, file, names)
    if not present:
        return _failed(*problems)
    original = {new: old for old, new in zip(original_names, names, strict=True)}
    mapped = set(table_mapping.recode) | set(table_mapping.date_format)
    wrong: set[str] = set()
    for col in _SPECS[name]:
        if col.name in present and col.name not in mapped:
            why = _storage_problem(col, schema.field(original[col.name]).type)
            if why:
                problems.append(Violation(file, col.name, why))
                wrong.add(col.name)
    readable = [c for c in present if c not in wrong]
    try:
        table = pfile.read(columns=[original[c] for c in readable]).rename_columns(readable)
    except (pa.ArrowException, OSError):
        return _failed(Violation(file, None, "is not a readable Parquet file"))
    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return _Read(table, lines, problems, notes)


# --------------------------------------------------------------------------------------
# Converting columns (Arrow) and dropping blank lines
# --------------------------------------------------------------------------------------


_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"


def _as_string(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_null(arr.type):
        return pa.chunked_array([pa.nulls(len(arr), pa.string())])
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _blank(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """Flag strings that are empty or whitespace only (null stays null)."""
    return pc.or_(pc.equal(pc.utf8_length(arr), 0), pc.utf8_is_space(arr))


def _blank_to_null(arr: pa.ChunkedArray, blank: pa.ChunkedArray) -> pa.ChunkedArray:
    if pc.any(blank).as_py():
        return pc.if_else(blank, pa.scalar(None, pa.string()), arr)
    return arr


def _to_mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _parse_numbers(arr: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Float64 values of a string or numeric column and the mask of unparsable values."""
    if not _is_stringlike(arr.type):
        values = pc.cast(arr, pa.float64())
    else:
        arr = _as_string(arr)
        try:
            values = pc.cast(arr, pa.float64())
        except pa.ArrowInvalid:
            trimmed = pc.utf8_trim_whitespace(arr)
            ok = pc.match_substring_regex(trimmed, _NUMBER)
            values = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), pa.float64())
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.is_finite(values)))
    if pa.types.is_floating(arr.type):  # a NaN stored in a Parquet float column is missing
        bad = pc.and_(bad, pc.invert(pc.is_nan(values)))
    bad_mask = _to_mask(bad) | (_to_mask(pc.is_valid(arr)) & ~_to_mask(pc.is_valid(values)))
    finite = pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))
    return finite, bad_mask


def _parse_dates(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``datetime64[us]`` values of a date column and the mask of unparsable values."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        return values.dt.normalize().astype("datetime64[us]"), np.zeros(len(values), bool)
    text = values.astype("str")
    shaped = text.str.fullmatch(_DATE).fillna(False).to_numpy(dtype=bool)
    dates = pd.to_datetime(text.where(shaped), format="%Y-%m-%d", errors="coerce")
    bad = text.notna().to_numpy() & dates.isna().to_numpy()
    return dates.astype("datetime64[us]"), bad


_RULE_UNPARSED = {
    "days": "must be a number of days",
    "flag": "must be 0 or 1",
    "date": "must be a date written YYYY-MM-DD",
}


def _drop_blank_lines(
    file: str, columns: dict[str, pa.ChunkedArray], blanks: list[pa.ChunkedArray], lines: np.ndarray
) -> tuple[dict[str, pa.ChunkedArray], np.ndarray, list[Violation]]:
    """Drop CSV lines whose every field is empty: ignored at the end, a violation inside."""
    empty = np.logical_and.reduce([_to_mask(b) for b in blanks])
    if not empty.any():
        return columns, lines, []
    keep = np.flatnonzero(~empty)
    inner = np.flatnonzero(empty[: keep[-1] if keep.size else 0])  # before the last data line
    problems = []
    if inner.size:
        problems.append(_violation_at(file, None, "line is blank (no values)", lines, inner))
    index = pa.array(keep)
    return {c: a.take(index) for c, a in columns.items()}, lines[keep], problems


def _convert_column(kind: Kind, arr: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray | None]:
    """Pandas values of a column and, for numbers and dates, the mask of unparsable values."""
    if kind in ("days", "flag"):
        numbers, bad = _parse_numbers(arr)
        return numbers.to_pandas(), bad
    if kind == "date":
        if pa.types.is_date(arr.type):
            arr = pc.cast(arr, pa.timestamp("us"))
        return _parse_dates(arr.to_pandas())
    values = arr.to_pandas()
    return (values if values.dtype == "str" else values.astype("str")), None


def _convert(name: str, path: Path, read: _Read, *, csv_file: bool) -> tuple[_Table, list]:
    """Typed DataFrame of a read table, with violations for values that do not convert.

    Text is never trimmed; empty or whitespace-only text becomes missing.
    """
    assert read.table is not None
    kinds = {c.name: c.kind for c in _SPECS[name]}
    columns: dict[str, pa.ChunkedArray] = {}
    blanks: list[pa.ChunkedArray] = []
    for col in read.table.column_names:
        arr = read.table.column(col)
        if _is_stringlike(arr.type):
            arr = _as_string(arr)
            blanks.append(_blank(arr))
            arr = _blank_to_null(arr, blanks[-1])
        columns[col] = arr
    lines, problems = read.lines, []
    if csv_file and read.table.num_rows:
        columns, lines, problems = _drop_blank_lines(path.name, columns, blanks, lines)

    data: dict[str, pd.Series] = {}
    unparsed: dict[str, np.ndarray] = {}
    for col, arr in columns.items():
        values, bad = _convert_column(kinds[col], arr)
        data[col] = values.reset_index(drop=True)
        if bad is None:
            continue
        unparsed[col] = np.flatnonzero(bad)
        if unparsed[col].size:
            shown = arr.take(pa.array(unparsed[col][:1000])).to_pandas()
            rule = _RULE_UNPARSED[kinds[col]] + _found(shown)
            problems.append(_violation_at(path.name, col, rule, lines, unparsed[col]))
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(lines)))
    return _Table(name, path, frame, lines, set(columns), unparsed), problems


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


def _column_rules(tbl: _Table) -> list[Violation]:
    """Violations of the per-column rules of a table (pandera, lazy).

    Every column rule is a rule on single values, so pandera validates the *distinct*
    values of each column (with one missing value when the column has any) and the
    failures are mapped back to rows through the factorized codes. This keeps
    validation fast when millions of rows repeat a few values, or break a rule.
    """
    problems = []
    for col in (c.name for c in _SPECS[tbl.name] if c.name in tbl.usable):
        codes, uniques = tbl.factorized(col)
        missing = codes < 0
        if missing.any():
            uniques = pd.concat([uniques, uniques.iloc[:0].reindex([len(uniques)])])
            codes = np.where(missing, len(uniques) - 1, codes)
        values = pd.DataFrame({col: uniques.to_numpy()}, index=pd.RangeIndex(len(uniques)))
        values[col] = values[col].astype(tbl.frame[col].dtype)
        try:
            SCHEMAS[tbl.name].select_columns([col]).validate(values, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            continue
        for check, group in cases.groupby("check", sort=False):
            index = group["index"].dropna()
            if index.empty:  # a problem of the whole column (a dtype): a bug, not bad data
                problems.append(Violation(tbl.file, col, f"fails the check {check}"))
                continue
            bad = np.zeros(len(uniques), dtype=bool)
            bad[index.to_numpy(dtype=np.int64)] = True
            mask = bad[codes]
            if check == "not_nullable":
                mask[tbl.unparsed.get(col, [])] = False  # reported as unparsable already
            v = tbl.violation(col, _RULE_MISSING if check == "not_nullable" else str(check), mask)
            if v:
                problems.append(v)
    return problems


# --------------------------------------------------------------------------------------
# Cross-column, key and cross-table rules (pandas)
# --------------------------------------------------------------------------------------


def _share_student_codes(tables: Iterable[_Table]) -> int:
    """Factorize ``student_id`` once over all tables (same id, same code in every table).

    Returns the number of distinct ids; codes are cached on each table, -1 for missing.
    """
    with_ids = [t for t in tables if t.has("student_id")]
    if not with_ids:
        return 0
    codes, uniques = pd.factorize(
        pd.concat([t.frame["student_id"] for t in with_ids], ignore_index=True)
    )
    bounds = np.cumsum([0] + [len(t.frame) for t in with_ids])
    for t, lo, hi in zip(with_ids, bounds[:-1], bounds[1:], strict=True):
        t.cached_codes["student_id"] = (codes[lo:hi], pd.Series(uniques))
    return len(uniques)


def _combine(*codes: np.ndarray) -> np.ndarray:
    """One int64 key per row from several factorized codes (-1 where any part is missing)."""
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for c in codes:
        size = int(c.max(initial=-1)) + 2
        if int(key.max(initial=0)) >= np.iinfo(np.int64).max // size:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)  # compress first
        key = key * size + (c + 1)
    valid = np.logical_and.reduce([c >= 0 for c in codes])
    return np.where(valid, key, -1)


def _duplicated(*codes: np.ndarray) -> np.ndarray:
    """Rows whose key repeats (all of them); rows with a missing key part never match."""
    key = _combine(*codes)
    ordered = np.sort(key[key >= 0])
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size == 0:
        return np.zeros(len(key), dtype=bool)
    return np.isin(key, np.unique(repeated)) & (key >= 0)


def _lookup(codes: np.ndarray, size: int) -> np.ndarray:
    """Boolean table over code values: true for the (non-missing) codes present."""
    present = np.zeros(size + 1, dtype=bool)
    present[codes[codes >= 0]] = True
    return present  # present[-1] (missing code) stays False


def _year_month(months: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Calendar year and month of ``YYYY-MM`` labels; -1 where the label is not valid."""
    codes, uniques = pd.factorize(months)
    labels = pd.Series(uniques, dtype="str")
    ok = _valid_month(labels).to_numpy(dtype=bool)
    year = np.where(ok, pd.to_numeric(labels.str.slice(0, 4), errors="coerce").fillna(-1), -1)
    month = np.where(ok, pd.to_numeric(labels.str.slice(5, 7), errors="coerce").fillna(-1), -1)
    year, month = np.append(year, -1).astype(np.int64), np.append(month, -1).astype(np.int64)
    return year[codes], month[codes]


def _school_year_starts(labels: pd.Series) -> np.ndarray:
    """First year of ``YYYY-YY`` school years; -1 where the label is not valid."""
    codes, uniques = pd.factorize(labels)
    u = pd.Series(uniques, dtype="str")
    ok = _valid_school_year(u).to_numpy(dtype=bool)
    start = np.where(ok, pd.to_numeric(u.str.slice(0, 4), errors="coerce").fillna(-1), -1)
    return np.append(start, -1).astype(np.int64)[codes]


def _years_text(starts: np.ndarray) -> str:
    labels = [f"{s}-{(s + 1) % 100:02d}" for s in starts[:6]]
    if starts.size > 2 and starts[-1] - starts[0] == starts.size - 1:
        return f"{labels[0]} to {starts[-1]}-{(starts[-1] + 1) % 100:02d}"
    more = f", … ({starts.size} school years)" if starts.size > 6 else ""
    return (", ".join(labels) + more) if labels else "none"


def _students_rules(stu: _Table) -> list[Violation | None]:
    if not stu.has("student_id", "school_year"):
        return []
    dup = _duplicated(stu.codes("student_id"), stu.codes("school_year"))
    rule = "(student_id, school_year) must be unique; each of these rows repeats another's"
    return [stu.violation(None, rule, dup)]


def _attendance_rules(att: _Table) -> list[Violation | None]:
    f = att.frame
    found: list[Violation | None] = []
    for kind in ("inperson", "remote"):
        a, m = f"{kind}_attended", f"{kind}_membership"
        if att.has(a, m):
            over = (f[a] > f[m]).to_numpy(dtype=bool, na_value=False)
            found.append(att.violation(a, f"must be ≤ {m}", over, show_values=False))
    if att.has("student_id", "month", "school_id"):
        dup = _duplicated(att.codes("student_id"), att.codes("month"), att.codes("school_id"))
        rule = "(student_id, month, school_id) must be unique; each of these rows repeats another's"
        found.append(att.violation(None, rule, dup))
    if att.has("student_id", "month", "inperson_membership", "remote_membership"):
        total = f["inperson_membership"].fillna(0) + f["remote_membership"].fillna(0)
        total = total.to_numpy(copy=True)
        sid, month = att.codes("student_id"), att.codes("month")
        multi = _duplicated(sid, month)  # a student in two schools in one month
        if multi.any():
            sub = pd.Series(total[multi])
            total[multi] = sub.groupby([sid[multi], month[multi]]).transform("sum").to_numpy()
        rule = (
            f"must be at most {MAX_MONTH_MEMBERSHIP_DAYS} days in a month, summed over the "
            "student's rows for that month (all schools)"
        )
        over = total > MAX_MONTH_MEMBERSHIP_DAYS
        found.append(att.violation("inperson_membership + remote_membership", rule, over))
    return found


def _enrolment_rules(stu: _Table, att: _Table, n_ids: int) -> list[Violation | None]:
    """Attendance rows need a student known to ``students`` for the month's school year."""
    s_sid, a_sid = stu.codes("student_id"), att.codes("student_id")
    start = _school_year_starts(stu.frame["school_year"])
    keep = (s_sid >= 0) & (start >= 0)
    years = np.unique(start[keep])
    year, month = _year_month(att.frame["month"])
    ok_month = month > 0
    # the school year holding the month; July/August may belong to either adjacent year
    ending = np.where(month >= 9, year, year - 1)
    starting = np.where((month == 7) | (month == 8), year, ending)
    in_years = ok_month & (np.isin(ending, years) | np.isin(starting, years))
    known = _lookup(s_sid, n_ids)[a_sid]
    # enrolled[code, k]: the student has a students row for the school year years[k]
    enrolled = np.zeros((n_ids + 1, max(years.size, 1)), dtype=bool)
    enrolled[s_sid[keep], np.searchsorted(years, start[keep])] = True
    rows = np.flatnonzero(in_years & known)  # none when there are no years
    has_row = np.zeros(len(a_sid), dtype=bool)
    for candidate in (ending[rows], starting[rows]):
        k = np.minimum(np.searchsorted(years, candidate), years.size - 1)
        has_row[rows] |= (years[k] == candidate) & enrolled[a_sid[rows], k]
    return [
        _unknown_ids(att, stu, (a_sid >= 0) & ~known),
        att.violation(
            "month",
            f"is outside the school years in students ({_years_text(years)}): "
            "dates outside the school years",
            ok_month & ~in_years,
        ),
        att.violation(
            "student_id",
            "must have a students row for the school year that contains month (July/August: "
            "the school year ending in June or the one starting in September)",
            in_years & known & ~has_row,
        ),
    ]


def _warning_at(
    tbl: _Table, column: str | None, issue: str, mask: np.ndarray, handling: str
) -> DataWarning | None:
    """A warning for the rows where ``mask`` is true (None when there are none)."""
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return None
    rows = tuple(int(r) for r in tbl.lines[positions[:MAX_ROWS_SHOWN]])
    return DataWarning(tbl.file, column, issue, handling, int(positions.size), rows)  # type: ignore[arg-type]


def _unknown_ids(tbl: _Table, stu: _Table, mask: np.ndarray) -> Violation | None:
    """``student_id must appear in students``, with how the unmatched ids differ in form."""
    if not mask.any():
        return None
    unknown = pd.Series(pd.unique(tbl.frame["student_id"].to_numpy()[mask]))
    known = pd.Series(pd.unique(stu.frame["student_id"].dropna().to_numpy()))
    rule = "must appear in students" + id_form_hint(unknown, known, stu.file)
    return tbl.violation("student_id", rule, mask)


def _normalised(values: pd.Series, clean) -> tuple[pd.Series, np.ndarray]:
    """``clean`` applied to the distinct non-missing values; the new column and changed rows.

    Missing values stay missing.
    """
    codes, uniques = pd.factorize(values)
    if len(uniques) == 0:
        return values, np.zeros(len(values), dtype=bool)
    before = pd.Series(uniques, dtype="str")
    after = clean(before)
    changed_u = np.append((after != before).to_numpy(dtype=bool, na_value=False), False)
    changed = changed_u[codes]
    if not changed.any():
        return values, changed
    new = pd.Series(np.append(after.to_numpy(dtype=object), None)[codes], dtype="str")
    return new.set_axis(values.index), changed


def _normalise_names(tbl: _Table, counts: dict[str, dict[str, int]]) -> list[DataWarning]:
    """Trim district names and normalise home_language (case, spaces), with warnings."""
    found: list[DataWarning | None] = []
    f = tbl.frame
    if tbl.has("district"):
        f["district"], changed = _normalised(f["district"], collapse_spaces)
        issue = "district names with leading, trailing or repeated spaces were trimmed"
        found.append(_warning_at(tbl, "district", issue, changed, "recoded"))
    if tbl.has("home_language"):
        original = f["home_language"]
        f["home_language"], changed = _normalised(original, capitalise_words)
        if changed.any():
            pairs = pd.DataFrame({"a": original[changed], "b": f["home_language"][changed]})
            pairs = pairs.drop_duplicates().head(5)
            shown = ", ".join(f"{_show(a)} -> {_show(b)}" for a, b in pairs.itertuples(index=False))
            issue = f"home languages normalised to capitalised words ({shown})"
            found.append(_warning_at(tbl, "home_language", issue, changed, "recoded"))
        n_null = counts.get("home_language", {}).get("null_tokens", 0)
        if n_null:
            issue = f"{n_null:,} home languages written as a null token (NULL, N/A) read as missing"
            found.append(DataWarning(tbl.file, "home_language", issue, "recoded"))
    return [w for w in found if w is not None]


def _district_spellings(tables: Iterable[_Table]) -> list[Violation]:
    """Districts whose names differ only in case (over all tables): one would become two."""
    with_district = [t for t in tables if t.has("district")]
    if not with_district:
        return []
    collisions = case_collisions(pd.concat([t.frame["district"] for t in with_district]))
    problems = []
    for spellings in collisions.values():
        shown = " vs ".join(_show(s) for s in spellings[:5])
        rule = (
            f"district names differ only in case ({shown}): one district would be split in "
            f"two; recode them to one spelling in the input mapping (recode: district:)"
        )
        for t in with_district:
            mask = np.zeros(len(t.frame), dtype=bool)
            mask[positions_of(t.frame["district"], spellings[1:])] = True
            v = t.violation("district", rule, mask, show_values=False)
            if v:
                problems.append(v)
    return problems


def _visit_rules(
    vis: _Table,
    stu: _Table | None,
    att: _Table | None,
    n_ids: int,
    *,
    program_start: date | None,
) -> tuple[list[Violation | None], list[str]]:
    f = vis.frame
    found: list[Violation | None] = []
    notes: list[DataWarning | None] = []
    if vis.has("visit_id"):
        dup = _duplicated(vis.codes("visit_id"))
        found.append(vis.violation("visit_id", "must be unique", dup))
    if vis.has("student_id") and stu is not None and stu.has("student_id"):
        v_sid = vis.codes("student_id")
        unknown = (v_sid >= 0) & ~_lookup(stu.codes("student_id"), n_ids)[v_sid]
        found.append(_unknown_ids(vis, stu, unknown))
    if not vis.has("visit_date"):
        return found, notes
    dates = f["visit_date"]
    if program_start is not None:
        early = (dates < pd.Timestamp(program_start)).to_numpy(dtype=bool, na_value=False)
        attempted = (f["visit_status"] == "attempted").to_numpy(dtype=bool, na_value=False)
        start = program_start.isoformat()
        rule = (
            f"must not be before the program start {start} for a completed visit (a vintage "
            "with an earlier start sets program_start in its parameters)"
        )
        found.append(vis.violation("visit_date", rule, early & ~attempted, show_values=False))
        notes.append(
            _warning_at(
                vis,
                "visit_date",
                f"attempted visits before the program start {start}; attempts never define "
                "the event month",
                early & attempted,
                "kept",
            )
        )
    if att is not None and att.has("month"):
        year, month = _year_month(att.frame["month"])
        if (month > 0).any():
            last = int((year * 12 + month - 1)[month > 0].max())  # months since year 0
            visit_month = (dates.dt.year * 12 + dates.dt.month - 1).to_numpy(
                dtype=float, na_value=np.nan
            )
            late = visit_month > last
            rule = (
                f"is after the last month with attendance data ({last // 12}-"
                f"{last % 12 + 1:02d}); these visits have no outcome data"
            )
            notes.append(_warning_at(vis, "visit_date", rule, late, "kept"))
    return found, [n for n in notes if n is not None]


# --------------------------------------------------------------------------------------
# Output types and the public entry points
# --------------------------------------------------------------------------------------


def _finalise(tbl: _Table) -> pd.DataFrame:
    """Contract columns in contract order with their final dtypes."""
    frame = tbl.frame
    out = {}
    for col in _SPECS[tbl.name]:
        if col.name not in frame.columns:
            out[col.name] = pd.Series(pd.NA, index=frame.index, dtype="str")
        elif col.kind == "flag":
            out[col.name] = frame[col.name].astype("int8")
        else:
            out[col.name] = frame[col.name]
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _table_order(v: Violation) -> int:
    """Position of a violation's table in :data:`TABLES` (-1 for the folder itself)."""
    stem = v.file.split(".")[0]
    return TABLES.index(stem) if stem in TABLES else -1


def _read_table(
    name: str, path: Path, mapping: InputMapping
) -> tuple[_Table | None, list[Violation], list[DataWarning], dict]:
    """Read one file, apply the input mapping and convert its columns."""
    csv_file = path.suffix.lower() == ".csv"
    try:
        read = _read_csv(name, path, mapping) if csv_file else _read_parquet(name, path, mapping)
    except OSError as exc:  # permissions, a file vanishing while it is read
        reason = exc.strerror or type(exc).__name__
        read = _failed(Violation(path.name, None, f"could not be read ({reason})"))
    problems, notes = list(read.violations), list(read.warnings)
    if read.table is None:
        return None, problems, notes, {}
    read.table, counts = apply_mapping(
        read.table, mapping.table(name), trim=mapping.trim, null_tokens=mapping.tokens()
    )
    tbl, conversion = _convert(name, path, read, csv_file=csv_file)
    formats = mapping.table(name).date_format
    problems += [
        Violation(
            v.file,
            v.column,
            f"{v.rule}; the input mapping's format {formats[v.column]!r} "
            "did not parse these either",
            v.n_rows,
            v.rows,
        )
        if v.column in formats
        else v
        for v in conversion
    ]
    if name in _MUST_HAVE_ROWS and len(tbl.frame) == 0:
        problems.append(Violation(path.name, None, "table has no data rows"))
        return None, problems, notes, counts
    notes += _normalise_names(tbl, counts)
    return tbl, problems, notes, counts


def _table_rules(
    tables: dict[str, _Table], *, program_start: date | None
) -> tuple[list[Violation], list[DataWarning]]:
    """Column, key and cross-table rules over the tables that could be read."""
    problems: list[Violation] = []
    notes: list[DataWarning] = []
    found: list[Violation | None] = []
    stu, att, vis = (tables.get(n) for n in TABLES)
    n_ids = _share_student_codes(tables.values())
    for tbl in tables.values():
        problems += _column_rules(tbl)
    problems += _district_spellings(tables.values())
    if stu is not None:
        found += _students_rules(stu)
    if att is not None:
        found += _attendance_rules(att)
        if (
            stu is not None
            and stu.has("student_id", "school_year")
            and att.has("student_id", "month")
        ):
            found += _enrolment_rules(stu, att, n_ids)
    if vis is not None:
        visit_found, visit_notes = _visit_rules(vis, stu, att, n_ids, program_start=program_start)
        found += visit_found
        notes += visit_notes
    problems += [v for v in found if v is not None]
    return problems, notes


def _check_folder(
    folder: Path, *, program_start: date | None, mapping: InputMapping | None = None
) -> tuple[RawTables | None, list[Violation], list[DataWarning]]:
    mapping = mapping or NO_MAPPING
    files, problems = _locate(Path(folder), mapping)
    notes: list[DataWarning] = []
    tables: dict[str, _Table] = {}
    record: dict[str, dict] = {}
    for name, path in files.items():
        tbl, table_problems, table_notes, counts = _read_table(name, path, mapping)
        problems += table_problems
        notes += table_notes
        if counts:
            record[name] = counts
        if tbl is not None:
            tables[name] = tbl
    rule_problems, rule_notes = _table_rules(tables, program_start=program_start)
    problems += rule_problems
    notes += rule_notes
    problems.sort(key=_table_order)  # stable: by table, then in the order found
    notes.sort(key=lambda w: _table_order(Violation(w.file, None, "")))

    if problems or set(tables) != set(TABLES):
        return None, problems, notes
    raw = RawTables(
        students=_finalise(tables["students"]),
        attendance_monthly=_finalise(tables["attendance_monthly"]),
        leap_visits=_finalise(tables["leap_visits"]),
        files=MappingProxyType(dict(files)),
        warnings=tuple(notes),
        mapping=MappingProxyType(record),
    )
    return raw, problems, notes


def validate_folder(
    folder: Path, *, program_start: date | None = None, mapping: InputMapping | None = None
) -> tuple[RawTables | None, list[Violation], list[DataWarning]]:
    """Read a data folder and check it against the data contract, without raising.

    Parameters
    ----------
    folder : Path
        The data folder holding ``students``, ``attendance_monthly`` and
        ``leap_visits`` as CSV or Parquet.
    program_start : datetime.date, optional
        Program start: a completed visit before it is a violation, an attempted one a
        warning. ``None`` (the default) skips this check.
    mapping : InputMapping, optional
        The vintage's input mapping (file names, renames, recodes, date formats, trimming,
        null tokens), applied before any rule is checked.

    Returns
    -------
    tables : RawTables or None
        The typed tables when there is no violation, else ``None``.
    violations : list of Violation
        Every violation found (empty when the folder is valid).
    warnings : list of DataWarning
        Warnings, each with its handling. They are returned, not emitted with
        :func:`warnings.warn`.

    Notes
    -----
    Bad data never raises; an unreadable folder is reported as a violation.
    """
    return _check_folder(Path(folder), program_start=program_start, mapping=mapping)


def read_raw_tables(
    folder: Path,
    *,
    program_start: date | None = None,
    mapping: InputMapping | None = None,
    emit_warnings: bool = True,
) -> RawTables:
    """Read a data folder, check it against the data contract and return its tables.

    Parameters
    ----------
    folder : Path
        The data folder.
    program_start : datetime.date, optional
        Program start (``None``: not checked); see :func:`validate_folder`.
    mapping : InputMapping, optional
        The vintage's input mapping.
    emit_warnings : bool, default True
        Emit each warning as a :class:`ContractWarning` too (they are always in
        ``RawTables.warnings``); notebooks show them as text instead.

    Returns
    -------
    RawTables
        The three tables, typed (see :class:`RawTables`).

    Raises
    ------
    ContractError
        Listing every violation, when the folder breaks the contract.

    Warns
    -----
    ContractWarning
        Once per warning (see :class:`DataWarning`), unless ``emit_warnings`` is False.

    Examples
    --------
    >>> from datetime import date
    >>> tables = read_raw_tables(Path("data_raw/demo"), program_start=date(2021, 4, 1))
    ... # doctest: +SKIP
    """
    tables, problems, notes = _check_folder(
        Path(folder), program_start=program_start, mapping=mapping
    )
    for note in notes if emit_warnings else ():
        warnings.warn(str(note), ContractWarning, stacklevel=2)
    if problems or tables is None:
        raise ContractError(problems)
    return tables


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
