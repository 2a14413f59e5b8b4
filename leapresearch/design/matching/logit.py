"""Numerical logistic regression: the design's dummies, aliased columns, Newton-Raphson.

The building blocks of the propensity model of
:mod:`leapresearch.design.matching.propensity`: sparse fixed-effect dummies, the columns
that are not linear combinations of earlier ones (R's ``glm`` aliasing), and the
Newton-Raphson fit, with step halving and an optional ridge penalty, on ``[design | dummies]``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.special import expit

_ALIAS_TOL: float = 1e-9
"""Columns whose 1 - R^2 on the preceding columns is below this are aliased and dropped."""


def _dummies(
    codes_list: list[np.ndarray], labels: list[tuple[str, np.ndarray]]
) -> tuple[sp.csc_array | None, list[str]]:
    """Sparse dummy matrix of several categorical code arrays (first level of each dropped)."""
    blocks, names = [], []
    for codes, (name, uniques) in zip(codes_list, labels, strict=True):
        levels, inv = np.unique(codes, return_inverse=True)
        if levels.size <= 1:
            continue
        mask = inv > 0
        n = codes.size
        blocks.append(
            sp.csc_array(
                (np.ones(mask.sum()), (np.flatnonzero(mask), inv[mask] - 1)),
                shape=(n, levels.size - 1),
            )
        )
        names += [f"{name}[{uniques[lev]}]" for lev in levels[1:]]
    if not blocks:
        return None, []
    return sp.hstack(blocks, format="csc"), names


def _non_aliased(z: np.ndarray, dummies: sp.csc_array | None) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``[z | dummies]`` that are not linear combinations of earlier ones."""
    n, p = z.shape
    g = 0 if dummies is None else dummies.shape[1]
    if p + g == 0:
        return np.ones(p, dtype=bool), np.ones(g, dtype=bool)
    gram = np.empty((p + g, p + g))
    gram[:p, :p] = z.T @ z
    if g:
        dmean = np.asarray(dummies.sum(axis=0)).ravel() / n
        dz = np.asarray(dummies.T @ z)
        dd = (dummies.T @ dummies).toarray() - n * np.outer(dmean, dmean)
        gram[p:, :p] = dz
        gram[:p, p:] = dz.T
        gram[p:, p:] = dd
    scale = np.sqrt(np.clip(np.diag(gram), 1e-300, None))
    corr = gram / np.outer(scale, scale)
    # sequential Cholesky without pivoting: column j is kept if 1 - R^2 of its regression
    # on the kept earlier columns exceeds the tolerance (loop over columns, not rows)
    keep = np.zeros(p + g, dtype=bool)
    chol = np.zeros((p + g, p + g))
    kept: list[int] = []
    for j in range(p + g):
        if kept:
            lk = scipy.linalg.solve_triangular(
                chol[np.ix_(kept, kept)], corr[kept, j], lower=True, check_finite=False
            )
            resid = corr[j, j] - lk @ lk
        else:
            lk, resid = np.zeros(0), corr[j, j]
        if resid > _ALIAS_TOL:
            chol[j, kept] = lk
            chol[j, j] = np.sqrt(resid)
            kept.append(j)
            keep[j] = True
    return keep[:p], keep[p:]


def _logit_newton(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    *,
    ridge: float,
    max_iter: int = 50,
    tol: float = 1e-10,
    start: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, bool, int, np.ndarray]:
    """Newton-Raphson logistic regression on ``[design | dmat]``; column 0 is unpenalised.

    From ``start`` when given, else from the intercept-only fit; ``tol=0`` takes exactly
    ``max_iter`` steps (converged is then False). ``weights`` (positive, one a row) weight
    each row's log-likelihood (a row of weight 2 counts as two identical rows); None: 1.
    """
    p = design.shape[1]
    g = 0 if dmat is None else dmat.shape[1]
    if start is not None:
        theta = np.array(start, dtype=np.float64)
    else:
        theta = np.zeros(p + g)
        ybar = y.mean() if weights is None else float(weights @ y) / float(weights.sum())
        theta[0] = np.log(ybar / (1.0 - ybar))
    pen = np.full(p + g, ridge)
    pen[0] = 0.0

    def linear(th: np.ndarray) -> np.ndarray:
        out = design @ th[:p]
        if g:
            out = out + dmat @ th[p:]
        return out

    def objective(eta: np.ndarray, th: np.ndarray) -> float:
        if weights is None:
            dev = 2.0 * float(np.sum(np.logaddexp(0.0, eta)) - y @ eta)
        else:
            dev = 2.0 * float(weights @ np.logaddexp(0.0, eta) - (weights * y) @ eta)
        return dev + float(pen @ (th * th))

    eta = linear(theta)
    obj = objective(eta, theta)
    # buffers of the Hessian's weighted rows, reused by every iteration (no new n-by-p
    # temporaries); the products are the same as with fresh arrays
    root_w = np.empty_like(design)
    if g:
        dmat_w = dmat.copy()  # rows scaled by w
        nnz_row = np.repeat(np.arange(design.shape[0]), np.diff(dmat.indptr))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count is reported
        mu = expit(eta)
        w = mu * (1.0 - mu)
        resid = y - mu
        if weights is not None:
            w *= weights
            resid *= weights
        grad = np.empty(p + g)
        grad[:p] = design.T @ resid
        hess = np.empty((p + g, p + g))
        np.multiply(design, np.sqrt(w)[:, None], out=root_w)
        hess[:p, :p] = root_w.T @ root_w  # numpy uses a symmetric rank-k update here
        if g:
            grad[p:] = dmat.T @ resid
            np.multiply(dmat.data, w[nnz_row], out=dmat_w.data)
            hdz = np.asarray(dmat_w.T @ design)
            hess[p:, :p] = hdz
            hess[:p, p:] = hdz.T
            hess[p:, p:] = (dmat.T @ dmat_w).toarray()
        grad -= pen * theta
        hess[np.diag_indices_from(hess)] += pen
        try:
            step = scipy.linalg.solve(hess, grad, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:
            new = theta + t * step
            eta_new = linear(new)
            obj_new = objective(eta_new, new)
            if obj_new <= obj + 1e-12 * abs(obj) or t < 1e-10:
                break
            t *= 0.5
        change = abs(obj - obj_new) / (abs(obj_new) + 0.1)
        theta, eta, obj = new, eta_new, obj_new
        if change < tol:
            converged = True
            break
    return theta, converged, it, eta


def _raw_coefficients(
    theta: np.ndarray, p: int, mean: np.ndarray, sd: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """``theta`` of ``[1, (x - mean) / sd, d]`` as ``(b0, b, c)`` of ``b0 + b'x + c'd``.

    The same linear predictor on the covariates' own scale; ``p`` dense columns.
    """
    b = theta[1:p] / sd
    return float(theta[0] - b @ mean), b, theta[p:].copy()


def _standardised_coefficients(
    b0: float, b: np.ndarray, c: np.ndarray, mean: np.ndarray, sd: np.ndarray
) -> np.ndarray:
    """:func:`_raw_coefficients`' inverse: ``theta`` of ``[1, (x - mean) / sd, d]``."""
    return np.concatenate([[b0 + b @ mean], b * sd, c])
