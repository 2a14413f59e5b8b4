"""Iterative singleton removal on data that needs several passes.

A row is a singleton when it is alone in a level of one fixed effect; dropping it can
leave another row alone in a level of the *other* effect, and so on. ``fixest`` /
``pyfixest`` (``fixef_rm="singleton"``) repeat the removal until no singleton is left.
The expected rows are computed here by a brute-force loop of its own (whole-sample
counts with :class:`collections.Counter`, every singleton dropped at once, repeated until
nothing changes), which is order-free: the result is the largest set of rows in which
every level of every effect has at least two rows, whatever order rows are removed in.

The data are a chain: unit ``k`` is observed in cells ``k`` and ``k + 1``, so only cell 0
and the last cell start as singletons, and each removal exposes the next link. One pass
over the effects (unit, then cell) removes at most a couple of links at each end; the
whole chain needs several passes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.fixed_effects import singleton_mask
from leapresearch.estimation.linear_models import compare_estimators, linearmodels_event_study
from tests.test_event_study import make_panel, month_index


def brute_force_singletons(*codes: np.ndarray) -> np.ndarray:
    """Rows kept after repeatedly dropping every row alone in a level of some effect."""
    rows = set(range(len(codes[0])))
    while True:
        counts = [Counter(c[i] for i in rows) for c in codes]
        pairs = list(zip(counts, codes, strict=True))
        alone = {i for i in rows if any(cnt[c[i]] == 1 for cnt, c in pairs)}
        if not alone:
            break
        rows -= alone
    keep = np.zeros(len(codes[0]), dtype=bool)
    keep[sorted(rows)] = True
    return keep


def chain_codes(n_links: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2 x 2 core (units 0-1 x cells 0-1, all kept) and a chain of ``n_links`` units.

    Chain unit ``k`` (code ``2 + k``) has one row in cell ``2 + k`` and one in cell
    ``3 + k``; the chain is attached to the core through nothing, so all of it goes.
    """
    unit = [0, 0, 1, 1]
    cell = [0, 1, 0, 1]
    for k in range(n_links):
        unit += [2 + k, 2 + k]
        cell += [2 + k, 3 + k]
    return np.array(unit), np.array(cell)


def test_brute_force_agrees_with_a_hand_count():
    unit, cell = chain_codes(3)
    keep = brute_force_singletons(unit, cell)
    assert keep.tolist() == [True] * 4 + [False] * 6


def test_singleton_mask_removes_a_whole_chain():
    for n_links in (1, 2, 5, 12):
        unit, cell = chain_codes(n_links)
        expected = brute_force_singletons(unit, cell)
        assert expected.sum() == 4  # only the core is left
        np.testing.assert_array_equal(singleton_mask([unit, cell]), expected)
        np.testing.assert_array_equal(singleton_mask([cell, unit]), expected)
    # the chain really needs more than one pass over the effects
    unit, cell = chain_codes(12)
    one_pass = singleton_mask([unit, cell], max_iter=1)
    assert one_pass.sum() > 4


def test_singleton_mask_on_random_sparse_effects():
    rng = np.random.default_rng(8)
    for _ in range(30):
        n = int(rng.integers(20, 200))
        codes = [rng.integers(0, n // 3, n), rng.integers(0, n // 2, n), rng.integers(0, 5, n)]
        expected = brute_force_singletons(*codes)
        np.testing.assert_array_equal(singleton_mask(codes), expected)
        np.testing.assert_array_equal(singleton_mask(codes[:2]), brute_force_singletons(*codes[:2]))


def chain_panel(base: pd.DataFrame, n_links: int) -> pd.DataFrame:
    """``base`` plus comparison units of a new stack forming a singleton chain.

    Chain unit ``k`` is observed in months ``k`` and ``k + 1`` of a stack no other unit is
    in, so each stack-month cell holds two chain units except the first and the last.
    """
    stack = int(month_index(1))  # not an event month of make_panel's stacks
    rows = []
    for k in range(n_links):
        for pos in (k, k + 1):
            rows.append(
                {
                    "unit": 90_000 + k,
                    "stack": stack,
                    "time": int(month_index(pos)),
                    "rel_time": pos - 1,
                    "treated": 0,
                    "weight": 1.0,
                    "student": 80_000 + k,
                    "school": 3,
                    "attendance_pp": 80.0 + 7.0 * k - 3.0 * pos,
                }
            )
    chain = pd.DataFrame(rows).astype(base.dtypes.to_dict())
    return pd.concat([base, chain], ignore_index=True)


def test_event_study_drops_the_whole_chain_and_is_unchanged():
    base_panel = make_panel(25)
    n_links = 9
    panel = chain_panel(base_panel, n_links)
    # the expected sample, by brute force on the panel's own unit and stack-month labels
    cell = panel.groupby(["stack", "time"]).ngroup().to_numpy()
    keep = brute_force_singletons(panel["unit"].to_numpy(), cell)
    base_cell = base_panel.groupby(["stack", "time"]).ngroup().to_numpy()
    base_keep = brute_force_singletons(base_panel["unit"].to_numpy(), base_cell)
    assert (~keep).sum() == (~base_keep).sum() + 2 * n_links

    base = event_study(base_panel, window=(-4, 4))
    res = event_study(panel, window=(-4, 4))
    assert res.nobs == int(keep.sum()) == base.nobs
    assert res.n_singletons == int((~keep).sum())
    np.testing.assert_allclose(res.coefficients, base.coefficients, rtol=0, atol=1e-10)
    # the small-sample factor counts N and K of the kept sample only
    np.testing.assert_allclose(res.std_errors, base.std_errors, rtol=1e-12)

    # linearmodels, on the sample its own singleton loop builds, agrees
    lib = linearmodels_event_study(panel, window=(-4, 4))
    check = compare_estimators(res, lib)
    assert check["estimate_difference"].max() < 1e-8
    assert check["std_error_difference"].max() < 1e-8
