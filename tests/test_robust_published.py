"""The Callaway-Sant'Anna estimator against numbers published by other implementations.

Data: ``mpdta`` of the R package ``did`` (500 counties, 2003-2007, never-treated
comparisons), committed as ``tests/data/mpdta.csv`` (source and sha256 in
``tests/data/SOURCES.md``). Every expected number below is copied from a printed output of
another implementation, never from this package:

* Unconditional parallel trends (``xformla = ~1``): ``moderndid`` (Python port of ``did``),
  user guide ``docs/source/user_guide/example_staggered_did.rst`` in
  ``jordandeklerk/moderndid`` at commit ca8a9ee (``att_gt`` default ``boot=False``, printed
  as "Analytical standard errors"): ATT(g, t) and the dynamic aggregation, 4 decimals.
  (The R ``did`` README prints the same design with its default multiplier bootstrap, whose
  standard errors are random; they are not used.)
* Conditional parallel trends given ``lpop``, doubly robust (``did``'s default
  ``est_method = "dr"``, i.e. ``DRDID::drdid_panel``): Stata ``csdid`` 1.5 with
  ``method(dripw)`` (the same estimator) and its default asymptotic (analytic) standard
  errors, printed in the README "CSDID Version 1.5" of ``friosavila/csdid_drdid``: ATT(g, t)
  and ``estat event``, 7 significant digits.

Tolerances are half a unit of the last printed digit (plus 1e-9 for floating point): a
standard error without the influence function of the aggregation weights, or of the
propensity score, or a variance inflated by any visible factor, fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leapresearch.estimation.robust import callaway_santanna, group_time_effects

DATA = Path(__file__).parent / "data" / "mpdta.csv"
SHA256 = "2283bea1221a152420f98dfa20f633c5d054ea51d881115c8cd702a97bcd3167"

# moderndid user guide (example_staggered_did.rst), analytic standard errors, 4 decimals:
# (group, time): (ATT, se)
MODERNDID_ATT_GT = {
    (2004, 2004): (-0.0105, 0.0233),
    (2004, 2005): (-0.0704, 0.0310),
    (2004, 2006): (-0.1373, 0.0364),
    (2004, 2007): (-0.1008, 0.0344),
    (2006, 2004): (0.0065, 0.0233),
    (2006, 2005): (-0.0028, 0.0196),
    (2006, 2006): (-0.0046, 0.0178),
    (2006, 2007): (-0.0412, 0.0202),
    (2007, 2004): (0.0305, 0.0150),
    (2007, 2005): (-0.0027, 0.0164),
    (2007, 2006): (-0.0311, 0.0179),
    (2007, 2007): (-0.0261, 0.0167),
}
# aggte(type="dynamic"): event time: (estimate, se)
MODERNDID_DYNAMIC = {
    -3: (0.0305, 0.0150),
    -2: (-0.0006, 0.0133),
    -1: (-0.0245, 0.0142),
    0: (-0.0199, 0.0118),
    1: (-0.0510, 0.0169),
    2: (-0.1373, 0.0364),
    3: (-0.1008, 0.0344),
}

# Stata csdid 1.5, method(dripw), covariate lpop, analytic standard errors (README of
# friosavila/csdid_drdid); rows t_<base>_<time> of equation g<group>: (ATT, se)
CSDID_DRIPW_ATT_GT = {
    (2004, 2004): (-0.0145297, 0.0221292),
    (2004, 2005): (-0.0764219, 0.0286713),
    (2004, 2006): (-0.1404483, 0.0353782),
    (2004, 2007): (-0.1069039, 0.0328865),
    (2006, 2004): (-0.0004721, 0.0222234),
    (2006, 2005): (-0.0062025, 0.0184957),
    (2006, 2006): (0.0009606, 0.0194002),
    (2006, 2007): (-0.0412939, 0.0197211),
    (2007, 2004): (0.0267278, 0.0140657),
    (2007, 2005): (-0.0045766, 0.0157178),
    (2007, 2006): (-0.0284475, 0.0181809),
    (2007, 2007): (-0.0287814, 0.0162390),
}
# estat event (T-3 .. T+3)
CSDID_DRIPW_EVENT = {
    -3: (0.0267278, 0.0140657),
    -2: (-0.0036165, 0.0129283),
    -1: (-0.0232440, 0.0144851),
    0: (-0.0210604, 0.0114942),
    1: (-0.0530032, 0.0163465),
    2: (-0.1404483, 0.0353782),
    3: (-0.1069039, 0.0328865),
}

OPTIONS = {
    "outcome": "lemp",
    "group": "first_treat",
    "time": "year",
    "unit": "countyreal",
    "window": None,
    "control_group": "nevertreated",
    "min_group_size": 1,
}


def _tol(decimals: int) -> float:
    return 0.5 * 10.0**-decimals + 1e-9


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    raw = DATA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHA256, "tests/data/mpdta.csv was altered"
    df = pd.read_csv(DATA)
    assert df.shape == (2500, 6) and df["countyreal"].nunique() == 500
    # did codes never treated as 0; here they are missing
    df["first_treat"] = df["first.treat"].where(df["first.treat"] > 0).astype(float)
    return df


@pytest.fixture(scope="module")
def lpop(mpdta: pd.DataFrame) -> pd.DataFrame:
    return mpdta.groupby("countyreal")[["lpop"]].first()


def _check_cells(table: pd.DataFrame, expected: dict, decimals: int) -> None:
    got = table.set_index(["group", "time"])
    assert sorted(got.index) == sorted(expected)
    for key, (att, se) in expected.items():
        assert got.loc[key, "att"] == pytest.approx(att, abs=_tol(decimals)), key
        assert got.loc[key, "std_error"] == pytest.approx(se, abs=_tol(decimals)), key


def _check_event(result, expected: dict, decimals: int) -> None:
    est, se = result.estimates, result.std_errors
    assert sorted(est.index) == sorted(expected)
    for e, (b, s) in expected.items():
        assert est.loc[e] == pytest.approx(b, abs=_tol(decimals)), e
        assert se.loc[e] == pytest.approx(s, abs=_tol(decimals)), e


def test_unconditional_group_time_effects_match_moderndid(mpdta):
    _check_cells(group_time_effects(mpdta, **OPTIONS), MODERNDID_ATT_GT, 4)


def test_unconditional_dynamic_aggregation_matches_moderndid(mpdta):
    """Event times -2..1 average two or three cohorts: their standard errors carry the
    influence function of the estimated cohort-share weights."""
    _check_event(callaway_santanna(mpdta, **OPTIONS), MODERNDID_DYNAMIC, 4)


def test_doubly_robust_group_time_effects_match_stata_csdid(mpdta, lpop):
    """Each cell's standard error carries the estimation of the logit propensity score and
    of the outcome regression (drdid.dr_did_panel)."""
    table = group_time_effects(mpdta, **OPTIONS, est_method="dr", covariates=lpop)
    _check_cells(table, CSDID_DRIPW_ATT_GT, 7)


def test_doubly_robust_dynamic_aggregation_matches_stata_csdid(mpdta, lpop):
    result = callaway_santanna(mpdta, **OPTIONS, est_method="dr", covariates=lpop)
    _check_event(result, CSDID_DRIPW_EVENT, 7)
    # the covariance is that of the same influence functions: its diagonal is the square
    # of the published standard errors, and it is a proper covariance matrix
    cov = result.cov.to_numpy()
    assert np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
