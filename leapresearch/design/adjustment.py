r"""Regression adjustment of the matched sample (covariate-specific trends).

Nearest-neighbour matching leaves some difference between a visited student and the
comparison students it was matched to, largest where few comparisons exist (students
with the lowest attendance, matched outside the caliper). Following the bias-corrected
matching estimator of Abadie and Imbens (2011), the change in attendance that the
pre-period trajectory predicts is estimated among comparison students and taken out of
every student's outcome, visited or not:

.. math::

    y^*_{u,r} = y_{u,r} - \hat\delta_r' X_u ,

where :math:`\hat\delta_r` is the weighted least-squares slope of
:math:`y_{c,r} - y_{c,\text{ref}}` on :math:`X_c` among comparison units observed in both
event times, with stack fixed effects, and :math:`X_u` the unit's pre-period trajectory
summaries (time-invariant per unit). Rows of the reference event time are not moved.

For a balanced matched sample the event-study coefficient of :math:`y^*` is Abadie and
Imbens' bias-corrected estimate,
:math:`\frac{1}{N_1}\sum_i [\Delta y_i - \sum_c w_{ic}(\Delta y_c + \hat\delta'(X_i - X_c))]`:
the comparisons are moved to their visited students' covariates. Taking the predicted
change out of the visited students' outcomes as well (rather than only moving the
comparisons) has two consequences:

- the model of untreated outcomes, unit and stack-by-month effects plus
  covariate-specific trends :math:`\delta_r' X_u`, is one model for every unit, so
  comparisons that leave the panel early (visited later, or no longer enrolled) do not
  tilt the adjustment;
- the cluster-robust errors no longer count the predictable part of the visited students'
  changes twice. Without it, a visited student and its matches, who share the same
  expected change, enter the variance as if independent, and the errors are conservative
  (Abadie and Spiess 2022 make the same point for regression after matching).

An event time whose comparison units are too few for the slopes
(``MIN_UNITS_PER_COVARIATE``) takes, for a subgroup, the slopes of the whole matched
sample (``analysis.adjustment_fallback: pooled``, :func:`adjust_outcome`'s ``fallback``):
the imbalance the match leaves is then corrected as if the subgroup's trajectory predicted
its change as everyone's does, instead of not at all.

The first-step estimation error of :math:`\hat\delta` is not propagated into the
standard errors (as in Abadie and Imbens' bias-corrected estimator with its usual
variance); matching balances :math:`X`, so it enters the estimate only through the
small remaining imbalance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from leapresearch.design.matching.sorting import _stable_argsort

MIN_UNITS_PER_COVARIATE = 10
"""Comparison units needed per covariate before an event time is adjusted."""


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


def _binned_rel_time(panel: pd.DataFrame, window: tuple[int, int] | None) -> np.ndarray:
    rel = panel["rel_time"].to_numpy()
    return rel if window is None else np.clip(rel, window[0], window[1])


def _reference_level(
    unit: np.ndarray, y: np.ndarray, w: np.ndarray, at_ref: np.ndarray, n_units: int
) -> np.ndarray:
    """Each unit's outcome at the reference: its one row there, or the mean of its rows.

    Month rows of a reference school year are averaged with their weights (the unit's
    weight times the month's share of the student's days), which gives the annual rate.
    Units without a row at the reference get NaN.
    """
    units, y, w = unit[at_ref], y[at_ref], w[at_ref]
    base = np.full(n_units, np.nan)
    count = np.bincount(units, minlength=n_units)
    single = count[units] == 1
    base[units[single]] = y[single]
    if not single.all():
        several = count > 1
        num = np.bincount(units[~single], weights=(w * y)[~single], minlength=n_units)
        den = np.bincount(units[~single], weights=w[~single], minlength=n_units)
        base[several] = num[several] / den[several]
    return base


def _rows_by_value(values: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Positions ``rows`` grouped by ``values[rows]``, each group in ascending order.

    The same positions as ``np.flatnonzero(mask & (values == v))`` for every value ``v``
    (``rows = np.flatnonzero(mask)``), from one stable sort instead of a pass over every
    row per value (of integers: the faster
    :func:`~leapresearch.design.matching.sorting._stable_argsort`).
    """
    order = rows[_stable_argsort(values[rows])]
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], order.size]
    return {int(sorted_values[a]): order[a:b] for a, b in zip(starts, ends, strict=True)}


def trend_slopes(
    panel: pd.DataFrame,
    unit_x: np.ndarray,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int = -1,
) -> dict[int, np.ndarray]:
    r"""The slopes :math:`\hat\delta_r` of the outcome change on the covariates.

    One weighted least-squares fit per event time among the comparison units observed
    at that event time and at the reference, with stack fixed effects. Event times whose
    comparison units, less one per stack (the degrees of freedom the stack effects leave),
    number fewer than ``MIN_UNITS_PER_COVARIATE`` per covariate get no slope (they are
    left unadjusted): counting rows instead let a handful of units, each with ten month
    rows of a school year, through, and their within-stack covariates are nearly
    collinear (long-term slopes of 1e10 in small cohorts).

    Parameters
    ----------
    panel : DataFrame
        Stacked panel (``unit``, ``stack``, ``rel_time``, ``treated``, ``weight`` and the
        outcome) of the units of one group.
    unit_x : ndarray
        ``(n_units, p)`` covariates, indexed by unit id.
    outcome : str
        Outcome column.
    window : tuple of int or None
        End-point bins of the event study (``None``: no binning).
    reference : int
        Reference event time.

    Returns
    -------
    dict
        Event time (binned) -> slope vector of length ``p``.
    """
    y = panel[outcome].to_numpy(np.float64)
    unit = panel["unit"].to_numpy()
    rel = _binned_rel_time(panel, window)
    comp = panel["treated"].to_numpy() == 0
    w_all = panel["weight"].to_numpy(np.float64)
    base = _reference_level(unit, y, w_all, comp & (rel == reference), unit_x.shape[0])
    stack = panel["stack"].to_numpy()
    slopes: dict[int, np.ndarray] = {}
    by_time = _rows_by_value(rel, np.flatnonzero(comp & ~np.isnan(base[unit])))
    for r in np.unique(rel[comp]):
        if r == reference:
            continue
        fit = by_time.get(int(r), np.zeros(0, dtype=np.intp))  # comparison rows with a base
        u = unit[fit]
        codes = pd.factorize(stack[fit])[0]
        units_seen = np.count_nonzero(np.bincount(u, minlength=unit_x.shape[0]))
        within = units_seen - (codes.max() + 1 if len(codes) else 0)
        if within < MIN_UNITS_PER_COVARIATE * unit_x.shape[1]:
            # too few comparison units beyond one per stack (a unit's several rows, months of
            # a binned end point or of a school year, add no information on the slopes):
            # leave this event time as is
            continue
        w = w_all[fit]
        xd, yd = _within(unit_x[u], codes, w), _within(y[fit] - base[u], codes, w)
        sw = np.sqrt(w)
        slopes[int(r)] = np.linalg.lstsq(xd * sw[:, None], yd * sw, rcond=None)[0]
    return slopes


def adjusted_outcome(
    panel: pd.DataFrame,
    unit_x: np.ndarray,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int = -1,
) -> np.ndarray:
    r"""The outcome less the change its pre-period trajectory predicts, :math:`y - \hat\delta_r'X`.

    Parameters
    ----------
    panel, unit_x, outcome, window, reference
        As in :func:`trend_slopes`; rows of the reference event time are not adjusted.

    Returns
    -------
    ndarray
        The adjusted outcome, aligned with ``panel``; visited and comparison rows alike.

    Notes
    -----
    The slopes come from :func:`trend_slopes` (comparison units only), so the visited
    students' post-visit outcomes do not inform them. :func:`adjust_outcome` also says at
    which event times the outcome was adjusted, and can fall back on other slopes.
    """
    return adjust_outcome(
        panel, unit_x, outcome=outcome, window=window, reference=reference
    ).outcome


class Adjustment(NamedTuple):
    """The adjusted outcome and, by (binned) event time, which slopes adjusted it."""

    outcome: np.ndarray
    """The adjusted outcome, aligned with the panel."""
    own: tuple[int, ...]
    """Event times adjusted with the panel's own slopes (:func:`trend_slopes`), sorted."""
    pooled: tuple[int, ...]
    """Event times without their own slopes, adjusted with the ``fallback`` ones, sorted."""


def adjust_outcome(
    panel: pd.DataFrame,
    unit_x: np.ndarray,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int = -1,
    fallback: Callable[[], dict[int, np.ndarray]] | None = None,
) -> Adjustment:
    """:func:`adjusted_outcome`, with the event times it adjusted and an optional fallback.

    An event time of the panel (other than the reference) whose comparison units are too
    few for its own slopes (``MIN_UNITS_PER_COVARIATE``) takes the slopes ``fallback()``
    returns for it, if any (called only when needed: for a subgroup, the slopes of the
    whole matched sample, :func:`~leapresearch.analysis.fitting.pooled_slopes`); an event
    time in neither keeps its outcome as it was.
    """
    y = panel[outcome].to_numpy(np.float64).copy()
    slopes = trend_slopes(panel, unit_x, outcome=outcome, window=window, reference=reference)
    rel = _binned_rel_time(panel, window)
    own = tuple(sorted(slopes))
    pooled: tuple[int, ...] = ()
    missing = [int(r) for r in np.unique(rel) if r != reference and int(r) not in slopes]
    if missing and fallback is not None:
        other = fallback()
        pooled = tuple(r for r in missing if r in other)
        slopes = {**slopes, **{r: other[r] for r in pooled}}
    if not slopes:
        return Adjustment(y, own, pooled)
    unit = panel["unit"].to_numpy()
    by_time = _rows_by_value(rel, np.arange(rel.size))
    for r, delta in slopes.items():
        rows = by_time.get(int(r), np.zeros(0, dtype=np.intp))
        y[rows] -= unit_x[unit[rows]] @ delta
    return Adjustment(y, own, pooled)
