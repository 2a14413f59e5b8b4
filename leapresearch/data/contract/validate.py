"""Checking a whole data folder: the entry points and the typed tables of a valid folder.

Holds :func:`validate_folder` (violations and warnings returned, never raised),
:func:`read_raw_tables` (raises :class:`ContractError`), :class:`RawTables` (what a valid
folder yields), and the steps between them: each table's file is found, read, mapped,
converted, and the rules run over the tables that could be read.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pyarrow as pa

from leapresearch.data.contract.convert import _convert, _normalise_names
from leapresearch.data.contract.files import _locate
from leapresearch.data.contract.messages import ContractError, ContractWarning, Violation
from leapresearch.data.contract.reading import _failed, _read_csv, _read_parquet
from leapresearch.data.contract.rules import _table_rules
from leapresearch.data.contract.schema import _MUST_HAVE_ROWS, _SPECS, TABLES
from leapresearch.data.contract.table import _Table
from leapresearch.data.intake import NO_MAPPING, DataWarning, InputMapping, apply_mapping


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
# From a folder to its checked tables
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
    checked = _check_folder(Path(folder), program_start=program_start, mapping=mapping)
    # the files' Arrow tables and their cast columns are freed by now, but Arrow's memory
    # pool keeps their buffers for reuse: give them back before the panel is built (about
    # a gigabyte at the state's scale)
    gc.collect()
    pa.default_memory_pool().release_unused()
    return checked


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
