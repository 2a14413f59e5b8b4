r"""Regression adjustment of matched comparisons (bias-corrected matching).

Nearest-neighbour matching leaves some difference between a visited student and the
comparison students it was matched to, largest where few comparisons exist (students
with the lowest attendance, matched outside the caliper). Following Abadie and Imbens
(2011), each comparison student's outcome change is moved to the covariates of the
visited students it serves, using the relation between covariates and outcome changes
estimated among comparison students:

.. math::

    y^*_{c,r} = y_{c,r} + \hat\delta_r' (\bar X_c - X_c),
    \qquad \bar X_c = \frac{\sum_{i \to c} X_i / k_i}{\sum_{i \to c} 1 / k_i},

where :math:`\hat\delta_r` is the weighted least-squares slope of
:math:`y_{c,r} - y_{c,\text{ref}}` on :math:`X_c` among comparison units observed in both
event times, with stack fixed effects. Visited students' outcomes are left unchanged, so
the event study of :math:`y^*` estimates the effect on all matched visited students. The
covariates are the pre-period trajectory of the matching (time-invariant per unit). The
first-step estimation error of :math:`\hat\delta` is not propagated into the standard
errors (as in Abadie and Imbens' bias-corrected estimator with its usual variance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_UNITS_PER_COVARIATE = 10
"""Comparison units needed per covariate before an event time is adjusted."""


def pair_units(units: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Matched pairs in unit ids with the weight ``1 / k_i`` of each pair.

    Returns
    -------
    DataFrame
        ``treated_unit``, ``comparison_unit``, ``w``.
    """
    key = units[["unit", "stack", "student", "treated"]]
    t = key.loc[key["treated"] == 1].rename(
        columns={"unit": "treated_unit", "student": "treated_student"}
    )
    c = key.loc[key["treated"] == 0].rename(
        columns={"unit": "comparison_unit", "student": "comparison_student"}
    )
    p = pairs[["stack", "treated_student", "comparison_student"]]
    p = p.merge(t[["stack", "treated_student", "treated_unit"]], on=["stack", "treated_student"])
    p = p.merge(
        c[["stack", "comparison_student", "comparison_unit"]], on=["stack", "comparison_student"]
    )
    k = p.groupby("treated_unit")["comparison_unit"].transform("size")
    return pd.DataFrame(
        {
            "treated_unit": p["treated_unit"].to_numpy(np.int64),
            "comparison_unit": p["comparison_unit"].to_numpy(np.int64),
            "w": 1.0 / k.to_numpy(np.float64),
        }
    )


def target_covariates(unit_x: np.ndarray, pairs: pd.DataFrame, n_units: int) -> np.ndarray:
    """``X̄_c``: the weighted mean covariates of the visited students each comparison serves.

    Rows of units that serve no visited student (and of visited units) hold their own X.
    """
    out = unit_x.copy()
    if pairs.empty:
        return out
    cu = pairs["comparison_unit"].to_numpy()
    w = pairs["w"].to_numpy()
    tx = unit_x[pairs["treated_unit"].to_numpy()]
    # add each comparison's terms in an order fixed by their values, not by the unit ids
    order = np.lexsort((*tx.T[::-1], w, cu))
    cu, w, tx = cu[order], w[order], tx[order]
    den = np.bincount(cu, weights=w, minlength=n_units)
    served = den > 0
    for j in range(unit_x.shape[1]):
        num = np.bincount(cu, weights=w * tx[:, j], minlength=n_units)
        out[served, j] = num[served] / den[served]
    return out


def _within(values: np.ndarray, codes: np.ndarray, w: np.ndarray) -> np.ndarray:
    n = codes.max() + 1
    den = np.bincount(codes, weights=w, minlength=n)
    if values.ndim == 1:
        return values - (np.bincount(codes, weights=w * values, minlength=n) / den)[codes]
    cols = [
        values[:, j] - (np.bincount(codes, weights=w * values[:, j], minlength=n) / den)[codes]
        for j in range(values.shape[1])
    ]
    return np.column_stack(cols)


def adjusted_outcome(
    panel: pd.DataFrame,
    unit_x: np.ndarray,
    pairs: pd.DataFrame,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int = -1,
) -> np.ndarray:
    """Bias-corrected outcome: comparison rows moved to their visited students' covariates.

    Parameters
    ----------
    panel : DataFrame
        Stacked panel (``unit``, ``stack``, ``rel_time``, ``treated``, ``weight`` and the
        outcome) of the units of one group.
    unit_x : ndarray
        ``(n_units, p)`` covariates, indexed by unit id.
    pairs : DataFrame
        :func:`pair_units` restricted to the group's visited students.
    outcome : str
        Outcome column.
    window : tuple of int or None
        End-point bins of the event study (``None``: no binning).
    reference : int
        Reference event time (its rows are not adjusted).

    Returns
    -------
    ndarray
        The adjusted outcome, aligned with ``panel``.
    """
    y = panel[outcome].to_numpy(np.float64).copy()
    n_units = unit_x.shape[0]
    unit = panel["unit"].to_numpy()
    rel = panel["rel_time"].to_numpy()
    if window is not None:
        rel = np.clip(rel, window[0], window[1])
    comp = panel["treated"].to_numpy() == 0
    if not comp.any() or pairs.empty:
        return y
    shift = target_covariates(unit_x, pairs, n_units) - unit_x  # zero for visited units
    base = np.full(n_units, np.nan)
    at_ref = rel == reference
    base[unit[at_ref]] = y[at_ref]
    w_all = panel["weight"].to_numpy(np.float64)
    stack = panel["stack"].to_numpy()
    for r in np.unique(rel):
        if r == reference:
            continue
        rows = rel == r
        fit = rows & comp & ~np.isnan(base[unit])
        if fit.sum() < MIN_UNITS_PER_COVARIATE * unit_x.shape[1]:
            continue  # too few comparisons to estimate the slopes: leave this month as is
        u = unit[fit]
        dy = y[fit] - base[u]
        x = unit_x[u]
        w = w_all[fit]
        codes = pd.factorize(stack[fit])[0]
        xd, yd = _within(x, codes, w), _within(dy, codes, w)
        sw = np.sqrt(w)
        delta = np.linalg.lstsq(xd * sw[:, None], yd * sw, rcond=None)[0]
        y[rows] += shift[unit[rows]] @ delta
    return y
