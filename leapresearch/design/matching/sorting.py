"""Sorting integer keys of millions of candidate rows.

:func:`_int_lexsort` is ``np.lexsort`` for integer keys (strata, grid scores, ids) by one
stable argsort of a combined key: the same permutation in a fraction of the time;
:func:`_dense_codes` is ``np.unique(..., return_inverse=True)`` of integers of a small
range, by a table instead of a sort; :func:`_refined_lexsort` is ``np.lexsort`` of many keys
(the covariates of a fit group) that sorts by the next key only the rows still tied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _int_lexsort(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort(keys)`` of integer keys (last most significant), as one argsort.

    The keys are combined into one int64 (mixed radix over their ranges) when the product
    of the ranges stays below 2**62, and the combined key is sorted (:func:`_stable_argsort`):
    the same permutation as ``np.lexsort``, in a fraction of its time on millions of rows;
    otherwise ``np.lexsort`` itself.
    """
    if not keys or keys[0].size == 0:
        return np.lexsort(keys)
    combined = None
    total = 1
    for key in reversed(keys):  # most significant first
        lo, hi = int(key.min()), int(key.max())
        span = hi - lo + 1
        total *= span
        if total >= 2**62:
            return np.lexsort(keys)
        digit = key.astype(np.int64, copy=False) - lo  # a new array
        if combined is None:
            combined = digit
        else:
            combined *= span
            combined += digit
    return _stable_argsort(combined)


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of integer values, by faster sorts.

    Values within a range of 2**16 are sorted as 16-bit offsets, which numpy sorts stably
    by a radix sort (about four times faster). Otherwise numpy's default argsort
    (vectorised where the CPU allows) orders equal values arbitrarily, and the runs of
    equal values are put back in the order of their positions, each run's positions
    sorted by one sort of ``run * n + position``: the stable permutation, in about half
    the time on millions of rows.
    """
    n = values.size
    if n == 0 or values.dtype.kind not in "iu":  # floats: numpy's own stable sort
        return np.argsort(values, kind="stable")
    lo = int(values.min())
    if int(values.max()) - lo < 2**16:
        return np.argsort((values - lo).astype(np.uint16), kind="stable")
    order = np.argsort(values)
    ranked = values[order]
    tied = ranked[1:] == ranked[:-1]
    if not tied.any():
        return order
    in_run = np.r_[tied, False] | np.r_[False, tied]  # rows equal to a neighbour
    rows = np.flatnonzero(in_run)
    run = np.cumsum(np.r_[True, ~tied])[rows].astype(np.int64)  # ascending along rows
    order[rows] = np.sort(run * n + order[rows]) % n
    return order


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of integers, by a table over their range.

    When the range of ``values`` is at most a few times their number, which values occur
    is marked in a table over the range and numbered by a running count: the same sorted
    uniques and codes as ``np.unique`` without sorting; otherwise ``np.unique`` itself.
    """
    if values.size == 0:
        return np.unique(values, return_inverse=True)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= 4 * values.size + 1024:
        return np.unique(values, return_inverse=True)
    offset = values.astype(np.int64) - lo
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[offset] = True
    code = np.cumsum(present, dtype=np.intp) - 1
    return (np.flatnonzero(present) + lo).astype(values.dtype), code[offset]


def _refined_lexsort(keys: Sequence[np.ndarray], *, tail: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``np.lexsort(keys)`` (last key most significant, stable), and which rows tie.

    Sorts by the most significant key, then, key by key, re-sorts only the runs of rows
    still tied on every key so far (stably, by the next key): the same permutation as
    ``np.lexsort``, with passes over ever fewer rows where the first keys already order
    almost every row (continuous covariates), instead of a pass over every row per key.

    Returns the permutation and ``tied``: ``tied[i]`` (``i >= 1``) says whether sorted row
    ``i`` equals sorted row ``i - 1`` on every key but the ``tail`` least significant
    ones (``tied[0]`` is False).
    """
    significance = list(reversed(keys))  # most significant first
    n = significance[0].size if significance else 0
    if n == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=bool)
    head = len(significance) - tail  # keys whose ties are reported
    order = np.argsort(significance[0], kind="stable")
    ranked = significance[0][order]
    tied = np.r_[False, ranked[1:] == ranked[:-1]]
    reported = tied.copy() if head == 1 else None
    for depth, key in enumerate(significance[1:], start=2):
        if not tied.any():
            break
        pos = np.flatnonzero(tied | np.r_[tied[1:], False])  # rows tied with a neighbour
        run = np.cumsum(~tied)[pos]  # each tied run's number, ascending along pos
        rows = order[pos]
        rows = rows[np.lexsort((key[rows], run))]
        order[pos] = rows
        ranked = key[rows]
        tied[:] = False
        tied[pos[1:]] = (run[1:] == run[:-1]) & (ranked[1:] == ranked[:-1])
        if depth == head:
            reported = tied.copy()
    if head <= 0:  # ties on no key: every row ties with the one before
        reported = np.r_[False, np.ones(n - 1, dtype=bool)]
    return order, tied.copy() if reported is None else reported
