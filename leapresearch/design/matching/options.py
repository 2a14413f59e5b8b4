"""The options of matching and the checks of its inputs.

Holds the types, allowed values and defaults of the options of
:func:`~leapresearch.design.matching.nearest.nearest_neighbor_match` and
:func:`~leapresearch.design.matching.propensity.propensity_scores` (``m_order``,
``caliper_scale``, the exact-match and fixed-effect columns), the reasons a treated student
can stay unmatched, and the validation of the candidates' columns and of the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd

from leapresearch.design.matching.sorting import _int_lexsort

MOrder = Literal["largest", "smallest", "random", "closest", "farthest"]
"""Order in which treated students are matched without replacement (MatchIt's ``m.order``)."""

CaliperScale = Literal["sd_logit"]
"""Unit of the caliper: standard deviations of the logit over all candidate rows."""

UnmatchedReason = Literal[
    "no_comparisons_in_stratum",
    "missing_pscore",
    "outside_caliper",
    "comparisons_exhausted",
]
"""Why a treated student received no match."""

M_ORDERS: tuple[str, ...] = get_args(MOrder)
CALIPER_SCALES: tuple[str, ...] = get_args(CaliperScale)
UNMATCHED_REASONS: tuple[str, ...] = get_args(UnmatchedReason)

DEFAULT_EXACT: tuple[str, ...] = ("stack", "district", "grade_band")
DEFAULT_FIXED_EFFECTS: tuple[str, ...] = ("district", "grade_band")


def _check_match_options(
    candidates: pd.DataFrame,
    pscore: pd.Series,
    exact: Sequence[str],
    ratio: int,
    caliper: float | None,
    caliper_scale: str,
    m_order: str,
) -> tuple[tuple[str, ...], int]:
    """Validate the options of :func:`nearest_neighbor_match`; return ``exact`` and ``ratio``."""
    exact = _as_names(exact, "exact")
    if "stack" not in exact:
        raise ValueError(f"exact must include 'stack' (stacked design), got {exact!r}")
    _require_columns(candidates, ["stack", "student", "treated", *exact])
    if isinstance(ratio, bool) or not isinstance(ratio, int | np.integer) or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    if caliper is not None and not (np.isfinite(caliper) and caliper > 0):
        raise ValueError(f"caliper must be a positive number or None, got {caliper!r}")
    if caliper_scale not in CALIPER_SCALES:
        raise ValueError(f"caliper_scale must be one of {CALIPER_SCALES}, got {caliper_scale!r}")
    if m_order not in M_ORDERS:
        raise ValueError(f"m_order must be one of {M_ORDERS}, got {m_order!r}")
    if not isinstance(pscore, pd.Series) or not pscore.index.equals(candidates.index):
        raise ValueError(
            "pscore must be a pandas Series with the same index as candidates "
            f"(got {type(pscore).__name__} of length {len(pscore)})"
        )
    return exact, int(ratio)


def _as_names(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    """Validate a sequence of column names (a bare string is rejected)."""
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of column names, got the string {names!r}")
    out = tuple(names)
    if any(not isinstance(c, str) for c in out):
        raise ValueError(f"{what} must contain column names (str), got {out!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicate names: {out!r}")
    return out


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ValueError naming the columns missing from ``frame``."""
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"candidates lacks column(s) {missing}")


def _as_bool(col: pd.Series) -> np.ndarray:
    """Return the ``treated`` column as a numpy bool array (bool or 0/1 accepted)."""
    if pd.api.types.is_bool_dtype(col.dtype):
        if col.isna().any():
            raise ValueError("treated has missing values")
        return col.to_numpy(dtype=bool)
    values = col.to_numpy()
    if pd.api.types.is_numeric_dtype(col.dtype) and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    raise ValueError(f"treated must be boolean or 0/1, got dtype {col.dtype}")


def _numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Return a numeric column as a numpy array, without copying numpy-backed columns."""
    col = frame[name]
    if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
        raise ValueError(f"covariate {name!r} must be numeric, got dtype {col.dtype}")
    if isinstance(col.dtype, np.dtype):
        return col.to_numpy()
    return col.to_numpy(dtype=float, na_value=np.nan)


def _check_unique_keys(stack: np.ndarray, student: np.ndarray) -> None:
    """Raise ValueError if a (stack, student) pair occurs twice."""
    order = _int_lexsort((student, stack))
    s, t = stack[order], student[order]
    dup = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    if dup.any():
        i = np.flatnonzero(dup)[0]
        raise ValueError(f"duplicate candidate row (stack={s[i]}, student={t[i]})")
