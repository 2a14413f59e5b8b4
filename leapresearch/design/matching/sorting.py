"""Sorting integer keys of millions of candidate rows.

:func:`_int_lexsort` is ``np.lexsort`` for integer keys (strata, grid scores, ids) by one
stable argsort of a combined key: the same permutation in a fraction of the time;
:func:`_dense_codes` is ``np.unique(..., return_inverse=True)`` of integers of a small
range, by a table instead of a sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _int_lexsort(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort(keys)`` of integer keys (last most significant), as one stable argsort.

    The keys are combined into one int64 (mixed radix over their ranges) when the product
    of the ranges stays below 2**62, and the combined key is sorted stably: the same
    permutation as ``np.lexsort``, in a fraction of its time on millions of rows;
    otherwise ``np.lexsort`` itself.
    """
    if not keys or keys[0].size == 0:
        return np.lexsort(keys)
    combined = np.zeros(keys[0].size, dtype=np.int64)
    total = 1
    for key in reversed(keys):  # most significant first
        lo, hi = int(key.min()), int(key.max())
        span = hi - lo + 1
        total *= span
        if total >= 2**62:
            return np.lexsort(keys)
        combined *= span
        combined += key.astype(np.int64) - lo
    return np.argsort(combined, kind="stable")


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
