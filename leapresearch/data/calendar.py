"""School calendar arithmetic: school years, school-month indices and event months.

Definitions (data contract, "Definitions the package derives"):

* A school year ``YYYY-YY`` runs September of ``YYYY`` to June of ``YYYY+1``.
* The **school-month index** numbers September ... June of every school year
  consecutively, so June of one school year and September of the next are one step
  apart. We use ``index = 10 * start_year + position`` where ``position`` is 0 for
  September ... 9 for June; consecutive school months therefore differ by exactly 1.
* July and August are not school months. For the **event month** a July or August
  date maps to the following September (:func:`event_month_index`).

Every function here is vectorised over pandas/numpy inputs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

SCHOOL_YEAR_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
SCHOOL_MONTHS: tuple[int, ...] = (9, 10, 11, 12, 1, 2, 3, 4, 5, 6)
"""Calendar months of a school year, in order."""


def school_year_label(start_year: int) -> str:
    """Return the ``YYYY-YY`` label of the school year that starts in ``start_year``."""
    return f"{start_year}-{(start_year + 1) % 100:02d}"


def school_year_start(label: str) -> int:
    """Return the first calendar year of a ``YYYY-YY`` school-year label.

    Raises
    ------
    ValueError
        If ``label`` is not ``YYYY-YY`` with the second part the first plus one.
    """
    m = SCHOOL_YEAR_PATTERN.match(str(label))
    if not m or (int(m.group(1)) + 1) % 100 != int(m.group(2)):
        raise ValueError(f"school year must be 'YYYY-YY' (e.g. '2021-22'), got {label!r}")
    return int(m.group(1))


def month_position(month: np.ndarray | pd.Series) -> np.ndarray:
    """Position of calendar months within the school year: Sep=0 ... Jun=9, Jul/Aug=-1."""
    m = np.asarray(month, dtype=np.int64)
    pos = np.where(m >= 9, m - 9, m + 3)
    return np.where((m == 7) | (m == 8), -1, pos)


def school_month_index(year: np.ndarray | pd.Series, month: np.ndarray | pd.Series) -> np.ndarray:
    """School-month index of calendar (year, month) pairs.

    Returns ``10 * start_year + position`` for September-June and ``-1`` for July and
    August (not school months).
    """
    y = np.asarray(year, dtype=np.int64)
    m = np.asarray(month, dtype=np.int64)
    start = np.where(m >= 9, y, y - 1)
    idx = 10 * start + month_position(m)
    return np.where((m == 7) | (m == 8), -1, idx)


def event_month_index(year: np.ndarray | pd.Series, month: np.ndarray | pd.Series) -> np.ndarray:
    """School-month index of the event month of visits in calendar (year, month).

    A visit in July or August maps to September of the same calendar year.
    """
    y = np.asarray(year, dtype=np.int64)
    m = np.asarray(month, dtype=np.int64)
    summer = (m == 7) | (m == 8)
    return np.where(summer, 10 * y, school_month_index(y, np.where(summer, 9, m)))


def index_to_start_year(index: np.ndarray | pd.Series) -> np.ndarray:
    """First calendar year of the school year that holds a school-month index."""
    return np.asarray(index, dtype=np.int64) // 10


def index_to_month_label(index: np.ndarray | pd.Series) -> np.ndarray:
    """``YYYY-MM`` calendar label of school-month indices (inverse of the index)."""
    idx = np.asarray(index, dtype=np.int64)
    start, pos = idx // 10, idx % 10
    month = np.where(pos <= 3, pos + 9, pos - 3)
    year = np.where(pos <= 3, start, start + 1)
    return np.array([f"{y:04d}-{m:02d}" for y, m in zip(year, month, strict=True)], dtype=object)


def index_to_school_year(index: np.ndarray | pd.Series) -> np.ndarray:
    """``YYYY-YY`` school-year label of school-month indices."""
    starts = index_to_start_year(index)
    labels = {s: school_year_label(int(s)) for s in np.unique(starts)}
    return np.array([labels[s] for s in starts], dtype=object)


def split_month(month: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Split ``YYYY-MM`` strings into integer year and month arrays (no validation).

    The distinct values are split and then gathered: an extract has millions of rows but a
    few dozen months.
    """
    codes, distinct = pd.factorize(pd.Series(month).astype(str))
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} months are missing; expected YYYY-MM")
    s = pd.Series(distinct, dtype=str)
    year = s.str.slice(0, 4).astype(np.int64).to_numpy()
    number = s.str.slice(5, 7).astype(np.int64).to_numpy()
    return year[codes], number[codes]


def cohort_label(visit_date: pd.Series) -> pd.Series:
    """Cohort label of first-visit dates.

    ``summer-YYYY`` for a first visit in July or August of ``YYYY``; otherwise the
    school year of the event month (``2021-22``).
    """
    d = pd.to_datetime(visit_date)
    y, m = d.dt.year.to_numpy(), d.dt.month.to_numpy()
    ev = event_month_index(y, m)
    start = index_to_start_year(ev)
    summer = (m == 7) | (m == 8)
    labels = np.where(
        summer,
        np.char.add("summer-", y.astype(str)),
        np.array([school_year_label(int(s)) for s in start], dtype=object).astype(str),
    )
    return pd.Series(labels, index=visit_date.index, dtype=object)
