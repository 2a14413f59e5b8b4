"""Reading one table's file into Arrow: CSV as text, Parquet with its stored types.

Holds ``_read_csv`` and ``_read_parquet`` and the checks of a file's structure made while
reading it: empty or binary files, encoding (UTF-8), the header (blank, wrong delimiter,
duplicate names, contract columns missing or in another case, extra columns ignored),
lines with the wrong number of fields, and the storage types of Parquet columns. Header
names go through the vintage's input mapping (``rename``) first.
"""

from __future__ import annotations

import codecs
import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leapresearch.data.contract.messages import Violation
from leapresearch.data.contract.schema import _SPECS, _Col
from leapresearch.data.intake import (
    NO_MAPPING,
    DataWarning,
    InputMapping,
    TableMapping,
    rename_header,
    sniff_binary,
)

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


def _closest(wanted: str, candidates: list[str]) -> tuple[str | None, bool]:
    """The candidate most like ``wanted``, and whether it differs only in case or spaces.

    The same name but for case and spaces comes first, else the closest by
    :func:`difflib.get_close_matches` (None when none is close).
    """
    key = wanted.strip().casefold()
    for c in candidates:
        if c.strip().casefold() == key:
            return c, True
    folded = {c.strip().casefold(): c for c in candidates}
    near = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return (folded[near[0]], False) if near else (None, False)


def _missing_column(
    name: str, file: str, col: str, header: list[str], renamed: list[str], mapping: TableMapping
) -> Violation:
    """A required column that is missing, named as the file and the mapping name it.

    When the input mapping renames a file column to ``col``, the violation names that file
    column and the mapping key; either way, the closest column of the file that no table
    column reads is named (the same name in another case first).
    """
    known = {c.name for c in _SPECS[name]}
    unread = [h for h, r in zip(header, renamed, strict=True) if r not in known]
    sources = [old for old, new in mapping.rename.items() if new == col]
    if sources:
        expected = " or ".join(sources)
        near, same = None, False
        for source in sources:
            near, same = _closest(source, unread)
            if near is not None:
                break
        if near is None:
            found = "no column of the file is like it"
        elif same:
            found = f"found {near}, which differs only in case or spaces"
        else:
            found = f"found {near}, the closest column of the file"
        rule = (
            f"required column is missing: expected {expected}, mapped to {col} by "
            f"input.{name}.rename; {found} (rename the column in the file, or the key in the "
            "vintage file)"
        )
        return Violation(file, sources[0], rule)
    near, same = _closest(col, unread)
    if near is None:
        hint = ""
    elif same:
        hint = f" (found {near!r}: names are case- and space-sensitive)"
    else:
        hint = (
            f" (the file has a column {near!r}, which is not read: rename it to {col}, or map "
            f"it with input: {name}: rename: {{{near}: {col}}} in the vintage file)"
        )
    return Violation(file, col, "required column is missing" + hint)


def _column_problems(
    name: str,
    file: str,
    renamed: list[str],
    header: list[str] | None = None,
    mapping: TableMapping | None = None,
) -> tuple[list[str], list[Violation], list[str]]:
    """Contract columns present, missing-column violations and the extra-column warning.

    ``renamed`` is the header after the mapping's renames, ``header`` the file's own
    (the same when omitted): missing columns are named as the file and the mapping name
    them.
    """
    header = renamed if header is None else header
    mapping = mapping or TableMapping()
    specs = _SPECS[name]
    known = {c.name for c in specs}
    present = [c.name for c in specs if c.name in renamed]
    lowered = {h.strip().lower(): h for h in renamed if h not in known}
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
    problems = [
        _missing_column(name, file, c.name, header, renamed, mapping)
        for c in specs
        if c.required and c.name not in renamed
    ]
    extra = [h for h in renamed if h not in known and not h.startswith("__index_level_")]
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
    table_mapping = mapping.table(name)
    present, problems, notes = _column_problems(name, file, renamed, header, table_mapping)
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
    present, problems, notes = _column_problems(name, file, names, original_names, table_mapping)
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
