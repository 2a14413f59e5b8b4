r"""Inverse-probability-of-censoring weights for a risk-set comparison pool.

With ``comparison_pool.not_yet_visited``, the pool of event month :math:`s` holds every
student not yet visited by :math:`s`, whether visited later or never (risk-set matching,
Li, Propert and Rosenbaum 2001; the "clone, censor, weight" design of target-trial
emulation, Hernán and Robins 2016). A comparison student first visited in month
:math:`v > s` is *censored* from :math:`v` on: its later months are no longer untreated
outcomes (:func:`~leapresearch.design.stacking.stacked_panel` drops them). Students are
picked on their recent attendance, so censoring is informative: the comparisons left at
month :math:`t` are those whose attendance did not fall enough to be picked. Weighting
each remaining comparison month by the inverse of its probability of having remained
unvisited, given its own attendance history, restores the comparison group that was
matched at :math:`s` (Robins and Finkelstein 2000).

The censoring hazard is a pooled logistic regression over the at-risk months of the
matched comparison units (weighted by their matching weights; in a Bayesian bootstrap
draw, by their weights in that draw):

.. math::

    \Pr(V_j = t \mid V_j \ge t, \mathcal H_{j,t-1}) =
    \operatorname{expit}\bigl(\alpha_t + \gamma_{d(j)} + \eta_{b(j)}
    + \textstyle\sum_{k=1}^{K} \beta_k\, y_{j,t-k} + \beta_0\, \bar y_{j,s}\bigr),

with calendar-month effects :math:`\alpha_t`, district :math:`\gamma_d` and grade-band
:math:`\eta_b` effects, the student's attendance in the :math:`K` months before :math:`t`
and its mean over the matching pre-period :math:`\bar y_{j,s}`, and a small ridge penalty
so that months without any visit do not diverge. A comparison month :math:`t > s` then
has weight

.. math::

    W_{j,t} = \prod_{\tau = s+1}^{t} \bigl(1 - \hat h_{j,\tau}\bigr)^{-1},

capped at ``max_weight``; months up to the event month, visited students and pools
without later-visited students have weight 1. The weights multiply the matching weights
in the event study and in the regression adjustment; like the propensity score, their
estimation error is not propagated into the analytic standard errors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.special import expit

from leapresearch.data.panel import AnalyticPanel, first_event_times

RECENT_MONTHS = 3
"""Months of recent attendance in the censoring hazard."""
RIDGE = 1.0
"""Ridge penalty on every coefficient but the intercept (covariates are standardised)."""
MAX_WEIGHT = 20.0
"""Cap on a comparison month's inverse survival probability."""


@dataclass(frozen=True)
class CensoringModel:
    """The fitted censoring hazard and the weights it gives.

    Attributes
    ----------
    weights : ndarray
        One weight per row of the stacked panel it was computed for.
    n_at_risk : int
        Comparison unit-months at risk of censoring used in the fit.
    n_censored : int
        Of which censored (the student's first visit).
    n_capped : int
        Stacked rows whose weight was capped at ``max_weight``.
    """

    weights: np.ndarray
    n_at_risk: int
    n_censored: int
    n_capped: int

    def summary(self) -> dict[str, float]:
        """Counts and the distribution of the weights of comparison months after the event."""
        return {
            "n_at_risk": self.n_at_risk,
            "n_censored": self.n_censored,
            "n_capped": self.n_capped,
            "max_weight": float(self.weights.max()) if self.weights.size else 1.0,
        }


def _risk_rows(
    units: pd.DataFrame, first: np.ndarray, last_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, time, censored) of every comparison month at risk after its stack.

    A comparison unit of stack ``s`` is at risk in months ``s+1 .. min(v, last)``, with
    ``v`` its student's first visit (censored in ``v``) and ``last`` the last month the
    unit is needed.
    """
    comp = units.loc[units["treated"] == 0]
    unit = comp["unit"].to_numpy(np.int64)
    stack = comp["stack"].to_numpy(np.int64)
    v = first[comp["student"].to_numpy(np.int64)]
    stop = np.minimum(v, last_time[unit])
    n = np.maximum(stop - stack, 0)
    row_unit = np.repeat(unit, n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    row_time = np.repeat(stack, n) + 1 + offset
    censored = row_time == np.repeat(v, n)
    return row_unit, row_time, censored


def _features(
    panel: AnalyticPanel,
    units: pd.DataFrame,
    unit_info: pd.DataFrame,
    row_unit: np.ndarray,
    row_time: np.ndarray,
) -> np.ndarray:
    """Standardised recent attendance, pre-period mean and dummies of each risk month."""
    student = units["student"].to_numpy(np.int64)[row_unit]
    n_times = panel.rates.shape[1]
    pre_mean = unit_info["pre_mean"].to_numpy(np.float64)[row_unit]
    cols = [pre_mean]
    for k in range(1, RECENT_MONTHS + 1):
        col = row_time - k - panel.time_min
        ok = (col >= 0) & (col < n_times)
        val = np.full(row_time.size, np.nan)
        val[ok] = panel.rates[student[ok], col[ok]]
        missing = np.isnan(val)
        cols.append(np.where(missing, pre_mean, val))
        cols.append(missing.astype(np.float64))
    x = np.column_stack(cols)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    by_unit = [np.unique(unit_info[c].to_numpy(), return_inverse=True)[1] for c in _CATEGORIES]
    codes = tuple(  # sorted levels present in the risk months, as get_dummies would have them
        np.unique(v, return_inverse=True)[1] for v in (row_time, *(u[row_unit] for u in by_unit))
    )
    return IndicatorDesign(np.column_stack([np.ones(row_time.size), x]), codes)


_CATEGORIES = ("district", "grade_band")
"""Columns of ``unit_info`` whose levels get an indicator each (after the calendar month)."""


@dataclass(frozen=True)
class IndicatorDesign:
    """Dense columns, then the indicators of each categorical's levels but its first.

    The design matrix ``[dense | 1{codes[0] == 1} ... 1{codes[0] == L0 - 1} | ...]`` (the
    columns of ``pandas.get_dummies(..., drop_first=True)`` for codes of sorted levels),
    never formed: its products with a vector and its weighted cross-product are computed
    from the codes (bincounts), the hazard's indicators of calendar month, district and
    grade band being most of its columns.
    """

    dense: np.ndarray
    codes: tuple[np.ndarray, ...]

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        """Indicator columns of each categorical (its levels but the first)."""
        return tuple(max(int(c.max(initial=0)), 0) for c in self.codes)

    @property
    def shape(self) -> tuple[int, int]:
        """Rows and columns of the design matrix."""
        return self.dense.shape[0], self.dense.shape[1] + sum(self.sizes)

    def _blocks(self, theta: np.ndarray) -> list[np.ndarray]:
        """``theta``'s coefficients of each categorical, the dropped level's 0 first."""
        out, start = [], self.dense.shape[1]
        for size in self.sizes:
            out.append(np.r_[0.0, theta[start : start + size]])
            start += size
        return out

    def __matmul__(self, theta: np.ndarray) -> np.ndarray:
        eta = self.dense @ theta[: self.dense.shape[1]]
        for code, block in zip(self.codes, self._blocks(theta), strict=True):
            eta += block[code]
        return eta

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        """``X' r``."""
        parts = [self.dense.T @ r]
        for code, size in zip(self.codes, self.sizes, strict=True):
            parts.append(np.bincount(code, weights=r, minlength=size + 1)[1:])
        return np.concatenate(parts)

    def weighted_cross_product(self, v: np.ndarray) -> np.ndarray:
        """``X' diag(v) X``."""
        d = self.dense.shape[1]
        out = np.empty((self.shape[1], self.shape[1]))
        out[:d, :d] = (self.dense * v[:, None]).T @ self.dense
        starts = np.cumsum([d, *self.sizes])
        for f, (code, size) in enumerate(zip(self.codes, self.sizes, strict=True)):
            a = slice(starts[f], starts[f] + size)
            for j in range(d):
                out[a, j] = np.bincount(code, weights=v * self.dense[:, j], minlength=size + 1)[1:]
                out[j, a] = out[a, j]
            for g in range(f, len(self.codes)):
                b = slice(starts[g], starts[g] + self.sizes[g])
                if g == f:
                    out[a, b] = np.diag(np.bincount(code, weights=v, minlength=size + 1)[1:])
                    continue
                n_g = self.sizes[g] + 1
                pair = code * n_g + self.codes[g]
                joint = np.bincount(pair, weights=v, minlength=(size + 1) * n_g)
                out[a, b] = joint.reshape(size + 1, n_g)[1:, 1:]
                out[b, a] = out[a, b].T
        return out

    def toarray(self) -> np.ndarray:
        """The design matrix itself (tests)."""
        blocks = [self.dense]
        for code, size in zip(self.codes, self.sizes, strict=True):
            block = np.zeros((code.size, size))
            rows = np.flatnonzero(code > 0)
            block[rows, code[rows] - 1] = 1.0
            blocks.append(block)
        return np.column_stack(blocks)


def _weighted_ridge_logit(
    x: np.ndarray | IndicatorDesign,
    y: np.ndarray,
    w: np.ndarray,
    *,
    ridge: float,
    max_iter: int = 100,
) -> np.ndarray:
    """Newton-Raphson with step halving for a weighted ridge logit; column 0 unpenalised.

    ``x`` a dense array or an :class:`IndicatorDesign` (the hazard's).
    """
    theta = np.zeros(x.shape[1])
    ybar = float(np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6))
    theta[0] = np.log(ybar / (1 - ybar))
    pen = np.full(x.shape[1], ridge)
    pen[0] = 0.0

    def objective(th: np.ndarray) -> float:
        eta = x @ th
        return float(w @ (np.logaddexp(0.0, eta) - y * eta)) + 0.5 * float(pen @ (th * th))

    obj = objective(theta)
    for _ in range(max_iter):
        mu = expit(x @ theta)
        grad = _rmatvec(x, w * (y - mu)) - pen * theta
        hess = _weighted_cross_product(x, w * mu * (1 - mu)) + np.diag(pen)
        hess[0, 0] += 1e-12 * max(1.0, float(w.sum()))
        step = scipy.linalg.solve(hess, grad, assume_a="pos")
        t = 1.0
        while (new := objective(theta + t * step)) > obj and t > 1e-8:
            t *= 0.5
        theta, change, obj = theta + t * step, obj - new, new
        if change <= 1e-12 * (abs(obj) + 1.0):
            break
    return theta


def _rmatvec(x: np.ndarray | IndicatorDesign, r: np.ndarray) -> np.ndarray:
    """``x' r``."""
    return x.rmatvec(r) if isinstance(x, IndicatorDesign) else x.T @ r


def _weighted_cross_product(x: np.ndarray | IndicatorDesign, v: np.ndarray) -> np.ndarray:
    """``x' diag(v) x`` as a dense array."""
    if isinstance(x, IndicatorDesign):
        return x.weighted_cross_product(v)
    return (x * v[:, None]).T @ x


def censoring_weights(
    panel: AnalyticPanel,
    units: pd.DataFrame,
    stacked: pd.DataFrame,
    unit_info: pd.DataFrame,
    *,
    max_weight: float = MAX_WEIGHT,
    unit_weight: np.ndarray | None = None,
) -> CensoringModel:
    """Inverse-probability-of-censoring weights of the rows of a stacked panel.

    Parameters
    ----------
    panel : AnalyticPanel
        Source of the attendance history and of the first visits.
    units : DataFrame
        The matched units (:func:`~leapresearch.design.stacking.unit_table`).
    stacked : DataFrame
        Their stacked panel (``unit``, ``time``, ``rel_time``, ``treated``).
    unit_info : DataFrame
        One row per unit, aligned with ``units``: ``district``, ``grade_band`` and
        ``pre_mean`` (mean attendance rate over the matching pre-period).
    max_weight : float
        Cap on a single weight.
    unit_weight : ndarray, optional
        Each unit's weight in the hazard's fit, aligned with ``units`` (a Bayesian
        bootstrap draw's comparison weights); default ``units["weight"]``.

    Returns
    -------
    CensoringModel
        ``weights`` aligned with ``stacked``.

    Notes
    -----
    See the module docstring for the hazard model and the weights.
    """
    weights = np.ones(len(stacked))
    first = first_event_times(panel.events, panel.n_students)
    s_unit = stacked["unit"].to_numpy(np.int64)
    s_time = stacked["time"].to_numpy(np.int64)
    # a unit is needed up to the last month of its stack (censoring cuts its own rows short)
    stack_last = stacked.groupby("stack")["time"].max()
    last = stack_last.reindex(units["stack"]).fillna(np.iinfo(np.int64).min).to_numpy(np.int64)
    row_unit, row_time, censored = _risk_rows(units, first, last)
    if not censored.any():
        return CensoringModel(weights, int(row_unit.size), 0, 0)
    x = _features(panel, units, unit_info, row_unit, row_time)
    if unit_weight is None:
        unit_weight = units["weight"].to_numpy(np.float64)
    w = np.asarray(unit_weight, dtype=np.float64)[row_unit]
    theta = _weighted_ridge_logit(x, censored.astype(np.float64), w, ridge=RIDGE)
    log_stay = np.log1p(-expit(x @ theta))
    # cumulative log survival through each at-risk month of each unit (rows are unit-sorted)
    order = np.lexsort((row_time, row_unit))
    row_unit, row_time, log_stay = row_unit[order], row_time[order], log_stay[order]
    cum = np.cumsum(log_stay)
    start = np.flatnonzero(np.r_[True, row_unit[1:] != row_unit[:-1]])
    cum -= np.repeat(cum[start] - log_stay[start], np.diff(np.r_[start, row_unit.size]))
    key = pd.MultiIndex.from_arrays([row_unit, row_time])
    pos = key.get_indexer(pd.MultiIndex.from_arrays([s_unit, s_time]))
    after = (pos >= 0) & (stacked["treated"].to_numpy() == 0)
    weights[after] = np.exp(-cum[pos[after]])
    capped = weights > max_weight
    weights[capped] = max_weight
    return CensoringModel(weights, int(row_unit.size), int(censored.sum()), int(capped.sum()))
