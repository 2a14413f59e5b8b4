"""Joint tests that stay valid with few clusters: the restricted wild cluster bootstrap.

A cluster-robust Wald test compared with ``F(q, G - 1)`` over-rejects when the clusters are
few (a district with 7 to 11 schools): the covariance ``V`` is estimated from ``G`` cluster
scores, is too small on average and noisy, and ``F(q, G - 1)`` does not describe the
statistic's distribution. For a test whose groups have fewer than
``inference.few_clusters`` clusters (:data:`FEW_CLUSTERS` by default) the p-value is that of
the restricted (null-imposed) wild cluster bootstrap of the Wald statistic, WCR in
MacKinnon and Webb's terms, computed the way Roodman, MacKinnon, Nielsen and Webb (2019,
"Fast and wild: bootstrap inference in Stata using boottest") do it: from cluster-level sums
only, no refit.

Notes
-----
The event study is ``y = X b + D a + e`` with the unit and stack-by-month effects ``D``
absorbed: after the weighted projection ``M_D``, ``y~ = X~ b + e`` (Frisch-Waugh-Lovell).
For each cluster ``c`` let ``S_c = X~_c' W_c e_c`` (the score of the unrestricted
residuals) and ``H_c = X~_c' W_c X~_c``, ``A = sum_c H_c``. The test is ``R b = 0`` with
``q`` rows (a group's pre-period terms, or the equality of several groups' effects at one
month in the stacked-by-group regression, whose ``A`` and ``H_c`` are block-diagonal over
groups).

1. Restricted fit: ``b_r = b - A^{-1} R' (R A^{-1} R')^{-1} R b``; its cluster scores are
   ``S^r_c = S_c + H_c (b - b_r)``.
2. Draw ``v_c`` (one per cluster and draw) from Webb's six-point distribution,
   ``+-sqrt(1/2), +-1, +-sqrt(3/2)`` with probability 1/6 each (mean 0, variance 1;
   ``6^G`` distinct draws, against ``2^G`` for Rademacher weights: 279,936 for 7 clusters).
3. Bootstrap outcome ``y~* = X~ b_r + v_c e_r``; its estimate
   ``b* = b_r + A^{-1} sum_c v_c S^r_c``, its cluster scores
   ``s*_c = v_c S^r_c - H_c (b* - b_r)`` and its CRV1 covariance
   ``V* = A^{-1} F (sum_c s*_c s*_c') F A^{-1}`` (``F`` the small-sample factor
   ``sqrt(f_g)`` of each group's block, as in the published covariance).
4. ``W* = (R b*)' (R V* R')^{-1} (R b*)`` (``R b_r = 0``), and the p-value is
   ``(1 + #{W* >= W}) / (B + 1)`` over ``B`` draws, ``W`` the statistic of the data
   (unrestricted ``V``): never zero, at least ``1 / (B + 1)`` (boottest reports the plain
   share, which differs by less than ``1 / B``).

Only ``q``-vectors per cluster enter the draws: with ``P_c = R A^{-1} F S^r_c`` and
``M_c = R A^{-1} F H_c``, ``R A^{-1} F s*_c = v_c P_c - M_c (b* - b_r)``.

The bootstrap treats the partialled data ``(y~, X~)`` as given: the fixed effects are not
re-estimated in each draw. That is exact when every absorbed effect is nested in a cluster
(the unit effects are: a unit is one student in one stack, in one school); the
stack-by-month effects are not, and their re-estimation would move each cluster's
bootstrap residuals by the cell means of the other clusters' ``v_c e_r``, a term of order
one over the clusters of a cell. ``tests/test_wild_bootstrap.py`` measures the test as it
is implemented: on 300 null event studies with two-way effects and 8 school clusters, the
5% pre-trend test rejects in about 5% of draws where ``F(q, G - 1)`` rejects in about 19%;
it also checks the cluster-sum algebra against refits on the partialled data and the
p-values against the ``wildboottest`` package.

The per-month intervals of ``event_study.csv`` keep the CRV1 ``t(G - 1)`` intervals; a
CR2 (Bell-McCaffrey) correction needs ``(I - H_cc)^{-1/2}`` over each cluster's rows with
the fixed effects in the hat matrix, and is left out.

Determinism: the draws are seeded by ``inference.seed`` and a hash of what the test is (the
names of its groups and months, its number of clusters and restrictions), and the weights
go to the clusters in the order of their content (each cluster's bootstrap moments ``P_c``,
rounded to :data:`_DIGITS` significant digits, sorted), never in the order of their labels
or rows: a test gives the same p-value whatever the ids, their spelling, the row order or
the number of workers. No floating-point number enters the seed itself, so another BLAS
kernel's last bits cannot change the draws.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

FEW_CLUSTERS = 30
"""Default of ``inference.few_clusters``: a test whose groups have fewer clusters than this
is referred to the wild cluster bootstrap (Cameron and Miller 2015 put the region where
``F(q, G - 1)`` misleads below a few dozen clusters; MacKinnon and Webb 2017)."""

WILD_DRAWS = 9999
"""Default of ``inference.wild_draws``."""

WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
"""Webb's (2014) six-point weights, each with probability 1/6."""

_DIGITS = 8
_CHUNK = 1000


@dataclass(frozen=True)
class WildSettings:
    """How few-cluster tests are computed (from ``inference`` of the parameters).

    Attributes
    ----------
    few_clusters : int
        A test is bootstrapped when a group it involves has fewer clusters than this.
    draws : int
        Bootstrap draws.
    seed : int
        Base seed; each test adds a hash of what it is (:func:`seeded_generator`).
    """

    few_clusters: int = FEW_CLUSTERS
    draws: int = WILD_DRAWS
    seed: int = 20240601


@dataclass(frozen=True, eq=False)
class ClusterMoments:
    """Cluster-level sums of one fit, enough for its wild cluster bootstrap.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(G,)`` cluster labels (order irrelevant to the results).
    scores : numpy.ndarray
        ``(G, k)`` ``S_c = X~_c' W_c e_c`` (unrestricted residuals, no small-sample factor).
    hessians : numpy.ndarray
        ``(G, k, k)`` ``H_c = X~_c' W_c X~_c``.
    gram : numpy.ndarray
        ``(k, k)`` ``A = sum_c H_c``.
    factor : float
        Small-sample factor ``f`` of the fit's CRV1 covariance.
    """

    labels: np.ndarray
    scores: np.ndarray
    hessians: np.ndarray
    gram: np.ndarray
    factor: float


def webb_weights(rng: np.random.Generator, draws: int, clusters: int) -> np.ndarray:
    """``(draws, clusters)`` Webb six-point weights."""
    return WEBB[rng.integers(0, 6, size=(draws, clusters))]


def seeded_generator(seed: int, description: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and a hash of ``description`` (what the test is)."""
    h = int(hashlib.sha256(description.encode("utf-8")).hexdigest()[:15], 16)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h])


def _content_order(p: np.ndarray) -> np.ndarray:
    """Clusters sorted by their (rounded) bootstrap moments: an order no label sets."""
    scale = float(np.abs(p).max()) or 1.0
    key = np.round(p / scale, _DIGITS) + 0.0
    return np.lexsort(key.T[::-1]) if key.shape[1] else np.arange(key.shape[0])


def wild_wald(
    b: np.ndarray,
    r: np.ndarray,
    gram_inv: np.ndarray,
    scores: np.ndarray,
    hessians: sp.spmatrix | np.ndarray,
    scale: np.ndarray,
    *,
    wald: float,
    draws: int,
    seed: int,
    description: str = "",
) -> dict:
    """Restricted wild cluster bootstrap (Webb weights) p-value of the Wald test ``R b = 0``.

    Parameters
    ----------
    b : numpy.ndarray
        ``(K,)`` unrestricted estimates.
    r : numpy.ndarray
        ``(q, K)`` restrictions.
    gram_inv : numpy.ndarray
        ``(K, K)`` ``A^{-1}``.
    scores : numpy.ndarray
        ``(G, K)`` unrestricted cluster scores ``S_c``.
    hessians : numpy.ndarray or scipy.sparse matrix
        ``H_c`` stacked as a ``(G * K, K)`` matrix (row block ``c`` is ``H_c``).
    scale : numpy.ndarray
        ``(K,)`` ``sqrt(f)`` of each coefficient's group (the diagonal of ``F``).
    wald : float
        ``W`` of the data (unrestricted CRV1 covariance).
    draws : int
        Bootstrap draws ``B``.
    seed : int
        Base seed.
    description : str
        What the test is (group names, months; no id), hashed into the seed with the
        numbers of clusters and restrictions (:func:`seeded_generator`).

    Returns
    -------
    dict
        ``p_value`` (``(1 + #{W* >= W}) / (B + 1)``), ``draws``, ``restricted`` (``b_r``).

    Notes
    -----
    See the module Notes for the equations.
    """
    prep = _prepare(b, r, gram_inv, scores, hessians, scale)
    g_n, q = prep["p"].shape
    k = scores.shape[1]
    key = np.column_stack(
        [prep["p"], prep["s_r"] @ prep["rai"].T, np.asarray(prep["m"] @ np.ones(k)).reshape(g_n, q)]
    )
    order = _content_order(key)
    rng = seeded_generator(seed, f"{description}|G={g_n}|q={q}|K={k}|B={draws}")
    exceed = 0
    done = 0
    while done < draws:
        n = min(_CHUNK, draws - done)
        v = np.empty((n, g_n))
        v[:, order] = webb_weights(rng, n, g_n)
        exceed += int(np.count_nonzero(_draws(prep, v) >= wald))
        done += n
    p_value = (1 + exceed) / (draws + 1)
    return {"p_value": p_value, "draws": draws, "restricted": prep["b_r"]}


def _prepare(b, r, gram_inv, scores, hessians, scale) -> dict:
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    g_n, k = scores.shape
    rai = r @ gram_inv  # R A^{-1}
    lam = np.linalg.solve(rai @ r.T, r @ b)
    delta_r = gram_inv @ r.T @ lam  # b - b_r
    hs = hessians.tocsr() if sp.issparse(hessians) else sp.csr_matrix(hessians)
    s_r = scores + np.asarray(hs @ delta_r).reshape(g_n, k)  # S^r_c
    raf = rai * np.asarray(scale, dtype=np.float64)[None, :]  # R A^{-1} F
    # M_c = R A^{-1} F H_c, stacked (G*q, K)
    m = sp.csr_matrix(sp.kron(sp.identity(g_n, format="csr"), sp.csr_matrix(raf)) @ hs)
    return {
        "r": r,
        "rai": rai,
        "gram_inv": gram_inv,
        "b_r": b - delta_r,
        "s_r": s_r,
        "p": s_r @ raf.T,
        "m": m,
    }


def bootstrap_walds(
    b: np.ndarray,
    r: np.ndarray,
    gram_inv: np.ndarray,
    scores: np.ndarray,
    hessians: sp.spmatrix | np.ndarray,
    scale: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """``W*`` of the restricted wild cluster bootstrap for given weights ``v`` (``B, G``).

    The arguments are those of :func:`wild_wald`; ``v[:, c]`` multiplies cluster ``c``'s
    restricted residuals (the row order of ``scores``).
    """
    return _draws(_prepare(b, r, gram_inv, scores, hessians, scale), np.atleast_2d(v))


def _draws(prep: dict, v: np.ndarray) -> np.ndarray:
    g_n, q = prep["p"].shape
    n = v.shape[0]
    delta = (v @ prep["s_r"]) @ prep["gram_inv"]  # b* - b_r, (n, K)
    rb = delta @ prep["r"].T  # R b* (R b_r = 0), (n, q)
    md = np.asarray(prep["m"] @ delta.T).reshape(g_n, q, n)  # M_c (b* - b_r)
    u = v.T[:, None, :] * prep["p"][:, :, None] - md  # (G, q, n)
    meat = np.einsum("gqn,gpn->nqp", u, u)
    return _quadratic(rb, meat)


def _quadratic(x: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """``x_n' M_n^{-1} x_n`` for each draw; a singular draw counts as exceeding (inf)."""
    out = np.full(x.shape[0], np.inf)
    eig_max = np.linalg.eigvalsh(mats)[:, -1] if mats.shape[1] > 1 else mats[:, 0, 0]
    ok = eig_max > 0
    try:
        sol = np.linalg.solve(mats[ok], x[ok][:, :, None])[:, :, 0]
        out[ok] = np.einsum("nq,nq->n", x[ok], sol)
    except np.linalg.LinAlgError:
        for i in np.flatnonzero(ok):
            try:
                out[i] = float(x[i] @ np.linalg.solve(mats[i], x[i]))
            except np.linalg.LinAlgError:
                out[i] = np.inf
    return out


def moments_from_rows(
    x: np.ndarray, resid: np.ndarray, weights: np.ndarray, cluster_codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``S_c`` and ``H_c`` (stacked ``(G * k, k)``) of partialled regressors ``x`` (``n, k``).

    Rows are grouped by ``cluster_codes`` (``0..G-1``); the loop is over clusters, so no
    ``n x k x k`` array is formed.
    """
    g_n = int(cluster_codes.max()) + 1
    wx = x * weights[:, None]
    members = sp.csr_matrix(
        (np.ones(cluster_codes.size), (cluster_codes, np.arange(cluster_codes.size))),
        shape=(g_n, cluster_codes.size),
    )
    scores = np.asarray(members @ (wx * resid[:, None]))
    order = np.argsort(cluster_codes, kind="stable")
    bounds = np.searchsorted(cluster_codes[order], np.arange(g_n + 1))
    return scores, cluster_hessians(x[order], weights[order], bounds)


def cluster_hessians(x: np.ndarray, weights: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``H_c = X_c' W_c X_c`` (stacked ``(G * k, k)``) of rows sorted by cluster.

    Cluster ``c`` holds rows ``bounds[c]:bounds[c + 1]`` of ``x`` (``n, k``), so each block
    is a slice: no row is gathered again and no ``n x k x k`` array is formed.
    """
    g_n, k = bounds.size - 1, x.shape[1]
    wx = x * weights[:, None]
    hess = np.zeros((g_n, k, k))
    for c in range(g_n):
        lo, hi = bounds[c], bounds[c + 1]
        hess[c] = wx[lo:hi].T @ x[lo:hi]
    return hess.reshape(g_n * k, k)
