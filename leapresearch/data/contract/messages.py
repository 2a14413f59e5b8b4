"""How a broken rule is reported: violations, the contract's error and warning, their wording.

Holds :class:`Violation` (one broken rule, with the rows that break it, as the user sees
them), :class:`ContractError` (every violation of a folder at once),
:class:`ContractWarning`, and the helpers that word a message: which rows are listed
(:data:`MAX_ROWS_SHOWN`) and how values found in the data are shown (never an
identifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_ROWS_SHOWN = 10
"""How many row numbers a violation lists."""

_MAX_VALUES_SHOWN = 20


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


def _violation_at(
    file: str, column: str | None, rule: str, lines: np.ndarray, positions: np.ndarray
) -> Violation:
    rows = tuple(int(r) for r in lines[positions[:MAX_ROWS_SHOWN]])
    return Violation(file, column, rule, int(positions.size), rows)


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
