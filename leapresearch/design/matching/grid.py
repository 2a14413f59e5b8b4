"""The candidates as matching sees them: scores on an integer grid, strata, keys.

Matching compares linear propensity scores as exact integers on a grid of
``1e-PSCORE_DECIMALS``, so that distances, ties and the caliper are decided alike on every
machine. Holds the grid of scores and caliper, the candidate rows as arrays (keys, grid
scores, exact-match strata, the treated students that can be matched) and the dense codes
of the strata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leapresearch.design.matching.options import _as_bool, _check_unique_keys
from leapresearch.design.matching.sorting import _dense_codes

PSCORE_DECIMALS: int = 9
"""Decimals of the linear propensity score kept for matching (the grid of distances).

The fitted logit moves in its last bits with the BLAS kernel; matching compares scores
on this fixed grid, as exact integers, so that ties and the caliper are decided alike on
every machine (up to a score falling within 1e-16 of a grid boundary)."""


@dataclass(frozen=True)
class _ScoreGrid:
    """Scores and caliper on the integer grid of :data:`PSCORE_DECIMALS` decimals."""

    q: np.ndarray  # round(eta * 10**PSCORE_DECIMALS) as int64 (0 where eta is NaN)
    cal_q: int  # caliper on the grid (int64 max without caliper)
    caliper_logit: float
    sd_logit: float

    @classmethod
    def of(cls, eta: np.ndarray, caliper: float | None) -> _ScoreGrid:
        finite = np.isfinite(eta)
        scale = 10.0**PSCORE_DECIMALS
        q = np.zeros(eta.size, dtype=np.int64)
        q[finite] = np.round(eta[finite] * scale).astype(np.int64)
        # sd over the sorted values: the same sum whatever the order of the rows
        values = np.sort(eta[finite])
        sd_logit = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
        if caliper is None:
            return cls(q, int(np.iinfo(np.int64).max), float("inf"), sd_logit)
        if not np.isfinite(sd_logit):
            raise ValueError("cannot scale the caliper: fewer than two finite propensity scores")
        caliper_logit = float(caliper) * sd_logit
        return cls(q, int(np.floor(caliper_logit * scale)), caliper_logit, sd_logit)


@dataclass(frozen=True)
class MatchKeys:
    """What matching reads of candidate rows besides their scores: keys, treatment, strata.

    Made once by :func:`match_keys` (the ``(stack, student)`` keys checked unique), it lets
    matchings of the same candidates with other scores (a Bayesian bootstrap's draws) skip
    the strata's codes and the key check: the same matches bit for bit. ``stratum``: the
    dense codes of the ``exact`` columns' combinations (:func:`_group_codes`).
    """

    exact: tuple[str, ...]
    stack: np.ndarray
    student: np.ndarray
    treated: np.ndarray
    stratum: np.ndarray

    def take(self, rows: np.ndarray) -> MatchKeys:
        """The keys of ``rows`` (ascending positions), strata numbered as of those rows alone.

        The dense codes of a subset's combinations are their ranks among the subset's
        combinations, so renumbering the codes present gives :func:`_group_codes` of the
        subset.
        """
        stratum = _dense_codes(self.stratum[rows])[1].astype(np.int64)
        return MatchKeys(
            self.exact, self.stack[rows], self.student[rows], self.treated[rows], stratum
        )

    def checked_for(self, candidates: pd.DataFrame, exact: tuple[str, ...]) -> MatchKeys:
        """These keys, after checking that they are ``candidates``' with these ``exact``.

        ValueError unless the strata are of the same ``exact`` columns and every row's
        ``stack``, ``student`` and ``treated`` are those the keys were made from.
        """
        same = (
            self.exact == tuple(exact)
            and self.stack.size == len(candidates)
            and np.array_equal(self.stack, candidates["stack"].to_numpy(dtype=np.int64))
            and np.array_equal(self.student, candidates["student"].to_numpy(dtype=np.int64))
            and np.array_equal(self.treated, _as_bool(candidates["treated"]))
        )
        if not same:
            raise ValueError(
                f"matching keys of {self.stack.size:,} rows with exact strata {self.exact} "
                f"do not fit {len(candidates):,} candidate rows with exact strata {tuple(exact)}"
            )
        return self


def match_keys(candidates: pd.DataFrame, exact: Sequence[str]) -> MatchKeys:
    """The :class:`MatchKeys` of ``candidates`` (ValueError on a duplicate (stack, student))."""
    stack = candidates["stack"].to_numpy(dtype=np.int64)
    student = candidates["student"].to_numpy(dtype=np.int64)
    treated = _as_bool(candidates["treated"])
    _check_unique_keys(stack, student)
    return MatchKeys(tuple(exact), stack, student, treated, _group_codes(candidates, exact))


@dataclass(frozen=True)
class _MatchRows:
    """Candidate rows as arrays: keys, scores on the grid, strata, matchable treated."""

    stack: np.ndarray
    student: np.ndarray
    treated: np.ndarray
    finite: np.ndarray
    grid: _ScoreGrid
    stratum: np.ndarray
    c_count: np.ndarray  # comparisons with a finite score per stratum
    t_rows: np.ndarray  # treated rows
    t_ok: np.ndarray  # treated rows that can be matched (finite score, comparisons)
    tv: np.ndarray  # t_rows[t_ok]

    @classmethod
    def of(
        cls,
        candidates: pd.DataFrame,
        pscore: pd.Series,
        exact: tuple[str, ...],
        caliper,
        keys: MatchKeys | None = None,
    ) -> _MatchRows:
        """``keys``: :func:`match_keys` of ``candidates`` when already made (checked)."""
        if keys is None:
            keys = match_keys(candidates, exact)
        else:
            keys = keys.checked_for(candidates, exact)
        stack, student, treated, stratum = keys.stack, keys.student, keys.treated, keys.stratum
        eta = pscore.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(eta)
        n_strata = int(stratum.max()) + 1 if len(candidates) else 0
        c_count = np.bincount(stratum[~treated & finite], minlength=n_strata)
        t_rows = np.flatnonzero(treated)
        t_ok = finite[t_rows] & (c_count[stratum[t_rows]] > 0)
        grid = _ScoreGrid.of(eta, caliper)
        return cls(
            stack, student, treated, finite, grid, stratum, c_count, t_rows, t_ok, t_rows[t_ok]
        )


def _group_codes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Dense int64 codes of the combinations of ``columns`` (NaN is its own level)."""
    if len(frame) == 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.zeros(len(frame), dtype=np.int64)
    total = 1  # codes < total
    for col in columns:
        c, uniques = pd.factorize(frame[col], use_na_sentinel=False, sort=True)
        base = len(uniques) + 1
        if total * base >= 2**62:  # made dense first only when the product would overflow
            codes = _dense_codes(codes)[1].astype(np.int64)
            total = int(codes.max()) + 1
        codes = codes * base + c
        total *= base
    return _dense_codes(codes)[1].astype(np.int64)
