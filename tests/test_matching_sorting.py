"""The sorting shortcuts of the matching give exactly the permutations they replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from leapresearch.design.matching.grid import _group_codes
from leapresearch.design.matching.propensity import _canonical_rows, _packed_keys
from leapresearch.design.matching.separation import _one_column_separates
from leapresearch.design.matching.sorting import (
    _dense_codes,
    _int_lexsort,
    _refined_lexsort,
    _stable_argsort,
)


@pytest.mark.parametrize("seed", range(5))
def test_int_lexsort_is_lexsort(seed):
    rng = np.random.default_rng(seed)
    n = 5_000
    keys = (
        rng.integers(0, 2, n),
        rng.integers(-(10**10), 10**10, n),  # grid scores
        rng.integers(0, 7, n),  # strata: many ties
    )
    np.testing.assert_array_equal(_int_lexsort(keys), np.lexsort(keys))


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(6).integers(0, 50, 200_000),  # a small range: radix sort
        np.random.default_rng(9).integers(-(10**12), 10**12, 100)[
            np.random.default_rng(10).integers(0, 100, 200_000)
        ],  # a wide range with long runs of ties
        np.random.default_rng(7).integers(-(10**12), 10**12, 200_000),  # almost no ties
        np.random.default_rng(11).integers(0, 5, 10_000) / 2.0,  # floats: numpy's sort
        np.repeat(np.arange(1_000, 0, -1), 300),  # descending runs
        np.zeros(5_000, np.int64),  # one run
        np.arange(3, dtype=np.int64),
        np.array([4], dtype=np.int64),
    ],
)
def test_stable_argsort_is_numpys_stable_argsort(values):
    # the faster unstable sort with the tied runs put back in the order of their positions
    np.testing.assert_array_equal(_stable_argsort(values), np.argsort(values, kind="stable"))
    if values.dtype.kind == "i":
        keys = (np.random.default_rng(8).integers(0, 3, values.size), values)  # tied on both
        np.testing.assert_array_equal(_int_lexsort(keys), np.lexsort(keys))


def test_int_lexsort_falls_back_when_the_ranges_overflow():
    rng = np.random.default_rng(1)
    keys = (rng.integers(-(2**62), 2**62, 1_000), rng.integers(0, 5, 1_000))
    np.testing.assert_array_equal(_int_lexsort(keys), np.lexsort(keys))
    assert _int_lexsort((np.zeros(0, np.int64),)).size == 0


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(3).integers(0, 900, 5_000),  # a small range: the table
        np.random.default_rng(4).integers(-50, 50, 300),  # negative values
        np.random.default_rng(5).integers(0, 10**12, 2_000),  # a wide range: np.unique
        np.array([7]),
        np.zeros(0, np.int64),
    ],
)
def test_dense_codes_are_np_unique(values):
    uniques, codes = _dense_codes(values)
    expected_uniques, expected_codes = np.unique(values, return_inverse=True)
    np.testing.assert_array_equal(uniques, expected_uniques)
    np.testing.assert_array_equal(codes, expected_codes)
    assert uniques.dtype == expected_uniques.dtype


def test_packed_keys_keep_the_lexicographic_order_and_ties():
    rng = np.random.default_rng(2)
    n = 4_000
    keys = [
        rng.integers(0, 2, n).astype(float),  # indicators
        rng.integers(0, 2, n).astype(float),
        rng.choice([0.25, 0.5, 1.0], n),  # rates: not packed
        rng.integers(0, 2, n).astype(float),
        rng.integers(0, 40, n),  # fixed-effect codes
        rng.integers(0, 3, n),
    ]
    packed = _packed_keys(keys)
    assert len(packed) == 3
    np.testing.assert_array_equal(np.lexsort(packed), np.lexsort(keys))


def test_canonical_rows_as_a_full_lexsort():
    rng = np.random.default_rng(3)
    n = 3_000
    treated = rng.random(n) < 0.2
    cov = {
        "rate": rng.choice([0.5, 0.75, 1.0], n),
        "missing": rng.integers(0, 2, n).astype(float),
        "female": rng.integers(0, 2, n).astype(float),
    }
    fe = [rng.integers(0, 4, n), rng.integers(0, 3, n)]
    rows, first = _canonical_rows(np.arange(n), treated, cov, list(cov), fe)
    keys = [treated, *(cov[c] for c in reversed(list(cov))), *reversed(fe)]
    np.testing.assert_array_equal(rows, np.lexsort(keys))
    values = np.column_stack([cov[c][rows] for c in cov] + [f[rows] for f in fe])
    np.testing.assert_array_equal(values, values[first])  # same pattern as its first row
    assert np.unique(first).size == np.unique(values, axis=0).shape[0]


def test_group_codes_dense_lexicographic():
    import pandas as pd

    frame = pd.DataFrame({"a": [3, 1, 3, 2, 1], "b": ["x", "y", "x", "x", None]})
    np.testing.assert_array_equal(_group_codes(frame, ["a", "b"]), [3, 0, 3, 2, 1])


def test_one_column_separation_on_sparse_dummies():
    design = np.column_stack([np.ones(6), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    y = np.array([1.0, 0, 1, 0, 1, 0])
    overlap = sp.csr_array(np.array([[1.0], [1], [0], [0], [1], [1]]))
    only_comparisons = sp.csr_array(np.array([[0.0], [1], [0], [0], [0], [1]]))
    assert not _one_column_separates(design, overlap, y)
    assert _one_column_separates(design, only_comparisons, y)  # no treated row has it
    assert not _one_column_separates(design, None, y)


@pytest.mark.parametrize("seed", range(4))
def test_refined_lexsort_is_lexsort_and_reports_ties_before_the_tail(seed):
    rng = np.random.default_rng(seed)
    n = 4_000
    keys = [
        rng.random(n),  # weights: unique, least significant
        (rng.random(n) < 0.2).astype(np.int64),  # treated
        rng.choice([0.25, 0.5, 0.75, 1.0], n),  # a covariate with many ties
        rng.integers(0, 3, n).astype(float),
        rng.integers(0, 5, n),  # fixed-effect codes: most significant
    ]
    expected = np.lexsort(keys)
    for tail in range(len(keys) + 1):
        order, tied = _refined_lexsort(keys, tail=tail)
        np.testing.assert_array_equal(order, expected)
        same = np.ones(n - 1, dtype=bool)
        for key in keys[tail:]:
            same &= key[expected][1:] == key[expected][:-1]
        np.testing.assert_array_equal(tied, np.r_[False, same])
    # no row tied after the first keys: the rest are never read
    order, tied = _refined_lexsort([np.zeros(3), np.array([2.0, 0.0, 1.0])])
    np.testing.assert_array_equal(order, [1, 2, 0])
    assert not tied.any()
    assert _refined_lexsort([np.zeros(0)])[0].size == 0
