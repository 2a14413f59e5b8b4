"""Doubly-robust difference-in-differences for one 2x2 cell (Sant'Anna and Zhao 2020).

The panel-data DR DiD estimator of Sant'Anna and Zhao (2020, *Journal of Econometrics*
219(1)) as ``DRDID::drdid_panel`` computes it, which is what ``did::att_gt(est_method =
"dr")`` uses for each group-time cell: a logit propensity score of being treated given the
covariates, an OLS regression of the comparison students' outcome change on the same
covariates, and the influence function that carries the estimation of both nuisance
models. :mod:`leapresearch.estimation.robust` calls :func:`dr_did_panel` once per cell.

Numerical safeguards (reported, never silent): the logit is fitted by Newton-Raphson on
standardised covariates; if it does not converge (separation, a singular Hessian) it is
refitted with a small ridge penalty; comparison students with a propensity score of at
least ``trim`` get weight zero (``did``'s ``trim.level``), and scores are capped at
``1 - 1e-6``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PS_CAP = 1.0 - 1e-6
RIDGE = 1e-2
"""Ridge penalty (on standardised covariates, per observation) when the plain logit fails."""


@dataclass(frozen=True)
class DrCell:
    """One DR DiD cell.

    Attributes
    ----------
    att : float
        The ATT estimate.
    influence : numpy.ndarray
        Influence function of each observation (mean zero); the cell variance is
        ``sum(influence**2) / n**2``.
    ridge : bool
        The logit needed the ridge penalty.
    n_trimmed : int
        Comparison observations given weight zero for a score at or above ``trim``.
    logit : numpy.ndarray
        Logit coefficients on the standardised covariates.
    """

    att: float
    influence: np.ndarray
    ridge: bool
    n_trimmed: int
    logit: np.ndarray


def _standardise(x: np.ndarray) -> np.ndarray:
    """Intercept plus covariates scaled to mean 0, sd 1 (constant columns dropped).

    Computed on the covariates as rows (``x.T``): numpy reduces a tall, narrow array
    along its rows slowly, a few columns at a time.
    """
    columns = np.ascontiguousarray(x.T, dtype=np.float64)
    mean = columns.mean(axis=1)
    centred = columns - mean[:, None]
    sd = np.sqrt(np.einsum("ij,ij->i", centred, centred) / max(x.shape[0], 1))
    largest = np.abs(columns).max(axis=1, initial=0.0)
    keep = sd > 1e-12 * np.maximum(1.0, largest)
    z = np.empty((x.shape[0], int(keep.sum()) + 1))
    z[:, 0] = 1.0
    z[:, 1:] = (centred[keep] / sd[keep][:, None]).T
    return z


def _penalised_loglik(d: np.ndarray, eta: np.ndarray, beta: np.ndarray, pen: np.ndarray) -> float:
    return float((d * eta - np.logaddexp(0.0, eta)).mean() - 0.5 * (pen * beta**2).sum())


def fit_logit(
    x: np.ndarray,
    d: np.ndarray,
    *,
    ridge: float = 0.0,
    max_iter: int = 100,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Logit of ``d`` on ``x`` (first column the intercept) by damped Newton-Raphson.

    Maximises ``mean(d log p + (1 - d) log(1 - p)) - ridge/2 |beta_-0|^2`` (intercept
    unpenalised); a step that lowers the objective is halved. ``start`` (e.g. the fit of
    a neighbouring cell) only saves iterations. Returns the coefficients, the fitted
    probabilities and whether the iterations converged to finite, moderate coefficients
    with a well-conditioned Hessian (otherwise: separation).
    """
    n, k = x.shape
    pen = np.full(k, ridge)
    pen[0] = 0.0
    beta = np.zeros(k)
    beta[0] = np.log(max(d.mean(), 1e-12) / max(1 - d.mean(), 1e-12))
    if start is not None and start.shape == (k,) and np.all(np.isfinite(start)):
        beta = start.copy()
    eta = x @ beta
    obj = _penalised_loglik(d, eta, beta, pen)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-eta))
        grad = x.T @ (d - p) / n - pen * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x / n + np.diag(pen)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return beta, p, False
        for _half in range(30):
            new_eta = x @ (beta + step)
            new_obj = _penalised_loglik(d, new_eta, beta + step, pen)
            if new_obj >= obj - 1e-14:
                break
            step = step / 2
        beta, eta, obj = beta + step, new_eta, new_obj
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 25:
            return beta, p, False
        if np.abs(step).max() < 1e-9:
            return beta, 1.0 / (1.0 + np.exp(-eta)), bool(np.linalg.cond(hess) < 1e10)
    return beta, 1.0 / (1.0 + np.exp(-eta)), False


def dr_did_panel(
    dy: np.ndarray,
    d: np.ndarray,
    x: np.ndarray,
    *,
    trim: float = 0.995,
    start: np.ndarray | None = None,
) -> DrCell:
    """Doubly-robust DiD ATT of one cell with its influence function.

    Parameters
    ----------
    dy : numpy.ndarray
        Outcome change ``y_t - y_base`` of each student in the cell.
    d : numpy.ndarray
        1 for treated (cohort ``g``) students, 0 for comparison students.
    x : numpy.ndarray
        ``(n, k)`` covariates without intercept (added here); measured before the base.
    trim : float, optional
        Comparison students with a propensity score at or above this get weight zero.
    start : numpy.ndarray, optional
        Starting logit coefficients (on the standardised covariates), e.g.
        :attr:`DrCell.logit` of a neighbouring cell; changes no result beyond the
        convergence tolerance.

    Returns
    -------
    DrCell
        ``att`` is NaN when every comparison student is trimmed.

    Notes
    -----
    With ``p(X)`` the logit propensity score and ``m(X) = X'b`` the OLS fit of ``dy`` on
    ``X`` among comparisons (``DRDID::drdid_panel``)::

        w1 = D,   w0 = p(X) (1 - D) / (1 - p(X))
        ATT = mean(w1 (dy - m)) / mean(w1) - mean(w0 (dy - m)) / mean(w0)

    Consistent if either the score or the outcome regression is correctly specified.
    Influence function (Sant'Anna and Zhao 2020, eq. 3.4 with the estimation effects)::

        psi = [w1 (dy - m - ATT_1) - l_ols' M1] / mean(w1)
            - [w0 (dy - m - ATT_0) + l_ps' M2 - l_ols' M3] / mean(w0)

    with ``l_ols``, ``l_ps`` the OLS and logit linear representations,
    ``M1 = mean(w1 X)``, ``M2 = mean(w0 (dy - m - ATT_0) X)``, ``M3 = mean(w0 X)``.
    """
    n = dy.size
    z = _standardise(x)
    d = d.astype(np.float64)
    beta, ps, ok = fit_logit(z, d, start=start)
    ridge = 0.0
    if not ok:
        ridge = RIDGE
        beta, ps, _ = fit_logit(z, d, ridge=ridge, max_iter=200)
    ps = np.minimum(ps, PS_CAP)
    keep = (d == 1) | (ps < trim)
    ctrl = d == 0
    z_ctrl = z[ctrl]
    coef, *_ = np.linalg.lstsq(z_ctrl, dy[ctrl], rcond=None)
    m = z @ coef
    w1 = d
    w0 = keep * ps * (1 - d) / (1 - ps)
    if w1.sum() <= 0 or w0.sum() <= 0:  # every comparison trimmed: no estimate
        return DrCell(np.nan, np.zeros(n), ridge > 0, int((~keep).sum()), beta)
    resid = dy - m
    eta1 = float((w1 * resid).mean() / w1.mean())
    eta0 = float((w0 * resid).mean() / w0.mean())
    m1 = z.T @ w1 / n
    m2 = z.T @ (w0 * (resid - eta0)) / n
    m3 = z.T @ w0 / n
    # The linear representations l_ols (rows ctrl * resid * z' XPX^+) and l_ps (rows
    # ((d - ps) z - pen beta)' H^+) enter only through l' M, so each is applied to M as
    # a k-vector, z (XPX^+ M), instead of being formed as an n-by-k matrix.
    xpx_inv = np.linalg.pinv(z_ctrl.T @ z_ctrl / n)
    ols_part = ctrl * resid
    ols_m1 = ols_part * (z @ (xpx_inv @ m1))
    ols_m3 = ols_part * (z @ (xpx_inv @ m3))
    pen = np.full(z.shape[1], ridge)
    pen[0] = 0.0
    hess = (z * (ps * (1 - ps))[:, None]).T @ z / n + np.diag(pen)
    h_m2 = np.linalg.pinv(hess) @ m2
    ps_m2 = (d - ps) * (z @ h_m2) - float((pen * beta) @ h_m2)
    inf_treat = (w1 * (resid - eta1) - ols_m1) / w1.mean()
    inf_cont = (w0 * (resid - eta0) + ps_m2 - ols_m3) / w0.mean()
    return DrCell(
        att=eta1 - eta0,
        influence=inf_treat - inf_cont,
        ridge=ridge > 0,
        n_trimmed=int((~keep).sum()),
        logit=beta,
    )
