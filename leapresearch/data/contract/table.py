"""One table while it is checked: its typed values, the rows they came from, what is usable.

Holds ``_Table``, shared by the conversion of a read file (:mod:`.convert`) and the
rules (:mod:`.rules`), and ``_warning_at``, the warning counterpart of
``_Table.violation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.data.contract.messages import (
    MAX_ROWS_SHOWN,
    Violation,
    _found,
    _violation_at,
)
from leapresearch.data.contract.schema import _is_id
from leapresearch.data.intake import DataWarning


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
        """Codes (-1 for missing) and distinct values of a column, computed once.

        The codes are int32 (half the memory of millions of attendance rows, kept while the
        rules run) unless there are more distinct values than that holds.
        """
        if column not in self.cached_codes:
            codes, uniques = pd.factorize(self.frame[column])
            self.cached_codes[column] = (_narrow(codes), pd.Series(uniques))
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


def _narrow(codes: np.ndarray) -> np.ndarray:
    """Factorized codes as int32 when they fit (they always do below 2**31 distinct values)."""
    if codes.size and int(codes.max()) >= np.iinfo(np.int32).max:
        return codes
    return codes.astype(np.int32)


def _warning_at(
    tbl: _Table, column: str | None, issue: str, mask: np.ndarray, handling: str
) -> DataWarning | None:
    """A warning for the rows where ``mask`` is true (None when there are none)."""
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return None
    rows = tuple(int(r) for r in tbl.lines[positions[:MAX_ROWS_SHOWN]])
    return DataWarning(tbl.file, column, issue, handling, int(positions.size), rows)  # type: ignore[arg-type]
