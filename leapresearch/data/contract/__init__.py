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

Modules
-------
One concern per module; other code imports from this package, which re-exports the
public names:

* :mod:`.schema`: the tables, their columns and the pandera schemas (:data:`SCHEMAS`);
* :mod:`.files`: finding each table's file in the folder (:func:`find_table_files`);
* :mod:`.reading`: reading a CSV or Parquet file, through the input mapping's renames;
* :mod:`.convert`: typing the columns read, normalising district names and languages;
* :mod:`.table`: one table while it is checked (shared by conversion and rules);
* :mod:`.rules`: the column, key, cross-column and cross-table rules;
* :mod:`.messages`: :class:`Violation`, :class:`ContractError`, :class:`ContractWarning`
  and how values and rows are shown in a message;
* :mod:`.validate`: :func:`validate_folder`, :func:`read_raw_tables` and
  :class:`RawTables`;
* :mod:`.summary`: :func:`summarise`, the counts ``leapresearch validate`` prints.
"""

from leapresearch.data.contract.files import find_table_files
from leapresearch.data.contract.messages import ContractError, ContractWarning, Violation
from leapresearch.data.contract.schema import MAX_MONTH_MEMBERSHIP_DAYS, SCHEMAS, TABLES
from leapresearch.data.contract.summary import summarise
from leapresearch.data.contract.validate import RawTables, read_raw_tables, validate_folder
from leapresearch.data.intake import DataWarning, InputMapping

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
