"""Numerical logistic regression: the design's dummies, aliased columns, Newton-Raphson.

The building blocks of the propensity model of
:mod:`leapresearch.design.matching.propensity`: sparse fixed-effect dummies, the columns
that are not linear combinations of earlier ones (R's ``glm`` aliasing), and the
Newton-Raphson fit, with step halving and an optional ridge penalty, on ``[design | dummies]``;
and the fit's terms at its start summed by cluster (:class:`ClusterTerms`), from which the
weighted fits of a Bayesian bootstrap take their first step.
"""

from __future__ import annotations

from dataclasses import dataclass

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


_CHUNK_ROWS: int = 8192
"""Most rows of one block of the Hessian's sums (a block's weighted rows stay in cache)."""
_MIN_RUN_ROWS: int = 256
"""Fewest rows a run of identical dummy rows holds on average for the runs' Hessian."""


class _DummyRuns:
    r"""The rows of a fit in runs of identical dummy rows, cut into blocks of rows.

    The propensity fits' rows are sorted by their fixed effects, so the dummies
    :math:`D` are constant over long runs of rows: :math:`D = C P`, with :math:`C` the
    indicator of a row's run and :math:`P` the runs' dummy rows (dense, runs by dummies).
    Then :math:`D'r = P'(C'r)`, :math:`D'WX = P'(C'WX)` and
    :math:`D'WD = P'\operatorname{diag}(C'w)P`: sums over runs instead of sparse
    products over rows. ``bounds``: the blocks' first rows and the end; a block lies within
    one run and holds at most :data:`_CHUNK_ROWS` rows; ``pattern``: each block's dummy
    row (None without dummies).
    """

    def __init__(self, dmat: sp.csr_array | None, n: int) -> None:
        starts = np.arange(0, n, _CHUNK_ROWS)
        self.pattern = None
        if dmat is not None:
            dmat = sp.csr_array(dmat)
            dmat.sort_indices()
            width = int(np.diff(dmat.indptr).max(initial=0))
            index = np.full((n, width), -1, np.int64)
            value = np.zeros((n, width))
            at = np.arange(dmat.nnz) - np.repeat(dmat.indptr[:-1], np.diff(dmat.indptr))
            rows = np.repeat(np.arange(n), np.diff(dmat.indptr))
            index[rows, at] = dmat.indices
            value[rows, at] = dmat.data
            new = np.ones(n, dtype=bool)
            new[1:] = (index[1:] != index[:-1]).any(axis=1) | (value[1:] != value[:-1]).any(axis=1)
            starts = np.union1d(np.flatnonzero(new), starts)
            self.pattern = dmat[starts].toarray()
        self.starts = starts
        self.bounds = np.append(starts, n)
        self.sizes = np.diff(self.bounds)


def dummy_runs(dmat: sp.csr_array | None, n: int) -> _DummyRuns:
    """The :class:`_DummyRuns` of a fit's ``n`` rows, without runs when they are short.

    Without dummies, or when the rows come in runs of fewer than :data:`_MIN_RUN_ROWS`
    rows on average, the runs carry no ``pattern`` and :class:`_NewtonTerms` takes sparse
    products. It depends on the dummies alone: fits of the same rows with other weights
    (a Bayesian bootstrap's draws) share it.
    """
    runs = _DummyRuns(dmat, n)
    if dmat is not None and dmat.shape[1] and runs.starts.size * _MIN_RUN_ROWS > n:
        runs = _DummyRuns(None, n)
    return runs


class _NewtonTerms:
    """The linear predictor, score and Hessian of a logit on ``[design | dmat]``.

    The Hessian and the score are summed block by block of rows (each block's weighted
    rows in cache, one pass over the design an iteration); the dummies' parts are sums
    over the runs of identical dummy rows (:class:`_DummyRuns`) when the rows come in runs
    of :data:`_MIN_RUN_ROWS` rows or more on average (the propensity fits' canonical
    order), else sparse products.
    """

    def __init__(
        self, design: np.ndarray, dmat: sp.csr_array | None, runs: _DummyRuns | None = None
    ) -> None:
        n, self.p = design.shape
        self.g = 0 if dmat is None else dmat.shape[1]
        self.design, self.dmat = design, dmat
        self.runs = dummy_runs(dmat, n) if runs is None else runs
        if self.g and self.runs.pattern is None:  # short runs: sparse products
            self.nnz_row = np.repeat(np.arange(n), np.diff(dmat.indptr))
            self.dmat_w = dmat.copy()  # rows scaled by w, reused by every iteration
        self.pattern = self.runs.pattern
        self.block = np.empty((min(n, _CHUNK_ROWS), self.p))  # a block's rows times sqrt(w)

    def linear(self, th: np.ndarray) -> np.ndarray:
        """The linear predictor of coefficients ``th``."""
        out = self.design @ th[: self.p]
        if self.pattern is not None:
            out += np.repeat(self.pattern @ th[self.p :], self.runs.sizes)
        elif self.g:
            out += self.dmat @ th[self.p :]
        return out

    def score_and_hessian(self, w: np.ndarray, resid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``X'resid`` and ``X'WX`` (``w`` the rows' Hessian weights, no penalty)."""
        p, g, design, runs = self.p, self.g, self.design, self.runs
        grad = np.empty(p + g)
        hess = np.empty((p + g, p + g))
        root = np.sqrt(w)
        hxx, gx = np.zeros((p, p)), np.zeros(p)
        sums = np.empty((runs.starts.size, p))  # each block's sum of w x
        for k, (a, b) in enumerate(zip(runs.bounds[:-1], runs.bounds[1:], strict=True)):
            rows, scaled = design[a:b], self.block[: b - a]
            np.multiply(rows, root[a:b, None], out=scaled)
            hxx += scaled.T @ scaled  # numpy uses a symmetric rank-k update here
            sums[k] = root[a:b] @ scaled
            gx += resid[a:b] @ rows
        hess[:p, :p], grad[:p] = hxx, gx
        if self.pattern is not None:
            pattern = self.pattern
            hdx = pattern.T @ sums
            hess[p:, p:] = (pattern.T * np.add.reduceat(w, runs.starts)) @ pattern
            grad[p:] = pattern.T @ np.add.reduceat(resid, runs.starts)
        elif g:
            dmat, dmat_w = self.dmat, self.dmat_w
            np.multiply(dmat.data, w[self.nnz_row], out=dmat_w.data)
            hdx = np.asarray(dmat_w.T @ design)
            hess[p:, p:] = (dmat.T @ dmat_w).toarray()
            grad[p:] = dmat.T @ resid
        if g:
            hess[p:, :p] = hdx
            hess[:p, p:] = hdx.T
        return grad, hess


@dataclass(frozen=True)
class ClusterTerms:
    r"""A logit's score, Hessian and deviance at ``theta``, summed within clusters of rows.

    When every row of a cluster carries the same weight :math:`w_c` (a Bayesian bootstrap
    draw weights schools), the weighted terms at ``theta`` are sums over the clusters:
    :math:`X'W(y - \mu) = \sum_c w_c s_c`, :math:`X'WVX = \sum_c w_c H_c` (:math:`V` the
    logit's variances) and the deviance :math:`\sum_c w_c d_c`. A Newton fit that starts
    at ``theta`` then takes its first step from these sums, without a pass over the rows;
    the step is the same up to the order of the sums (the fit's later steps absorb that).

    ``cluster``: each row's cluster (``0..m-1``); ``cluster_row``: one row of each cluster;
    ``score``: ``(m, k)``; ``hessian``: each :math:`H_c`'s upper triangle, row by row,
    ``(m, k(k+1)/2)``; ``deviance``: ``(m,)``.
    """

    theta: np.ndarray
    cluster: np.ndarray
    cluster_row: np.ndarray
    score: np.ndarray
    hessian: np.ndarray
    deviance: np.ndarray

    def weighted(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Score, Hessian and deviance with row ``weights``; None unless constant by cluster."""
        wc = weights[self.cluster_row]
        if not np.array_equal(weights, wc[self.cluster]):
            return None
        k = self.theta.size
        upper = np.triu_indices(k)
        packed = wc @ self.hessian
        hess = np.empty((k, k))
        hess[upper] = packed
        hess[upper[1], upper[0]] = packed
        return wc @ self.score, hess, float(wc @ self.deviance)


def cluster_terms(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    theta: np.ndarray,
    cluster: np.ndarray,
    runs: _DummyRuns | None = None,
) -> ClusterTerms:
    """:class:`ClusterTerms` of the logit on ``[design | dmat]`` at ``theta`` (unweighted).

    ``cluster``: each row's cluster, codes ``0..m-1`` (every code used); ``runs``:
    :func:`dummy_runs` of ``dmat``, when already made.
    """
    eta = _NewtonTerms(design, dmat, runs).linear(theta)
    mu = expit(eta)
    var, resid = mu * (1.0 - mu), y - mu
    m, k = int(cluster.max(initial=-1)) + 1, theta.size
    order = np.argsort(cluster, kind="stable")
    bounds = np.searchsorted(cluster[order], np.arange(m + 1))
    upper = np.triu_indices(k)
    score, hessian = np.empty((m, k)), np.empty((m, upper[0].size))
    for c in range(m):
        rows = order[bounds[c] : bounds[c + 1]]
        z = design[rows]
        if dmat is not None and dmat.shape[1]:
            z = np.hstack([z, dmat[rows].toarray()])
        score[c] = resid[rows] @ z
        hessian[c] = ((z * var[rows, None]).T @ z)[upper]
    deviance = np.bincount(cluster, 2.0 * (np.logaddexp(0.0, eta) - y * eta), minlength=m).astype(
        np.float64
    )
    return ClusterTerms(theta.copy(), cluster, order[bounds[:-1]], score, hessian, deviance)


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
    runs: _DummyRuns | None = None,
    first: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> tuple[np.ndarray, bool, int, np.ndarray]:
    """Newton-Raphson logistic regression on ``[design | dmat]``; column 0 is unpenalised.

    From ``start`` when given, else from the intercept-only fit; ``tol=0`` takes exactly
    ``max_iter`` steps (converged is then False). ``weights`` (positive, one a row) weight
    each row's log-likelihood (a row of weight 2 counts as two identical rows); None: 1.
    ``runs``: :func:`dummy_runs` of ``dmat``, when already made. ``first``: the weighted
    score, Hessian and deviance (no penalty) at ``start``, when known
    (:meth:`ClusterTerms.weighted`): the first step takes them instead of a pass over the
    rows.

    The score and Hessian: :class:`_NewtonTerms`.
    """
    if first is not None and start is None:
        raise ValueError("the terms of a first step need the start they were computed at")
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
    terms = _NewtonTerms(design, dmat, runs)
    linear = terms.linear

    def objective(eta: np.ndarray, th: np.ndarray) -> float:
        if weights is None:
            dev = 2.0 * float(np.sum(np.logaddexp(0.0, eta)) - y @ eta)
        else:
            dev = 2.0 * float(weights @ np.logaddexp(0.0, eta) - (weights * y) @ eta)
        return dev + float(pen @ (th * th))

    if first is None:
        eta = linear(theta)
        obj = objective(eta, theta)
    else:
        eta, obj = None, first[2] + float(pen @ (theta * theta))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count is reported
        if it == 1 and first is not None:
            grad, hess = first[0].copy(), first[1].copy()
        else:
            mu = expit(eta)
            w = mu * (1.0 - mu)
            resid = y - mu
            if weights is not None:
                w *= weights
                resid *= weights
            grad, hess = terms.score_and_hessian(w, resid)
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
