"""Absorbing fixed effects: the weighted within transformation.

A regression ``y = X b + D a + F g + e`` with high-dimensional fixed effects ``D a`` and
``F g`` (``D``, ``F`` indicator matrices of two categorical variables) is estimated by the
Frisch-Waugh-Lovell theorem: project ``y`` and ``X`` off the span of ``[D F]`` in the
``W``-weighted metric and regress residual on residual. This module computes that
projection without building indicator matrices:

* :func:`demean` -- the classic weighted **alternating projections** (method of
  alternating means) with :func:`numpy.bincount`, for any number of fixed-effect
  dimensions, with a convergence tolerance. One fixed-effect dimension needs one sweep
  (exact).
* :class:`TwoWayProjector` -- an **exact** two-way solver used whenever the structure
  allows it: the fixed effects with more levels are eliminated in closed form (group
  means) and the normal equations of the other set are solved directly, block by block
  over the connected components of the bipartite graph of levels (for a stacked event
  study: one block of about 50 stack-by-month levels per stack). When a component is too
  large for a dense solve, the projector falls back to alternating projections
  (Gauss-Seidel on the normal equations, the same iterates as :func:`demean`).

The projector also works in *coefficient space*: given the group sums ``D'Wx`` and
``F'Wx`` of any columns, it returns the fixed-effect coefficients of their projection,
which lets callers with sparse regressors (event-time dummies) avoid materialising
demeaned ``N x k`` matrices.

All arithmetic is float64. Nothing loops over observations in Python.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

FEMethod = Literal["auto", "exact", "alternating"]
"""How to absorb fixed effects: exact block solve when feasible, or alternating projections."""

_FE_METHODS: tuple[str, ...] = ("auto", "exact", "alternating")

MAX_EXACT_LEVELS = 3000
"""Largest connected component (levels of the smaller fixed effect) solved exactly."""

_DENSE_BLOCK_ELEMENTS = 1 << 24
"""Above this many ``units x levels`` cells a component's Gram block is built sparsely."""


class ConvergenceWarning(UserWarning):
    """Alternating projections stopped at ``maxiter`` before reaching the tolerance."""


# --------------------------------------------------------------------------------------
# codes
# --------------------------------------------------------------------------------------


def factorize(values: np.ndarray | pd.Series) -> tuple[np.ndarray, int]:
    """Dense integer codes ``0 .. n_levels - 1`` of a categorical array.

    Integer arrays whose range is small relative to their length are coded with a
    lookup table (O(n), no hashing or sorting); anything else goes through
    :func:`pandas.factorize`. Codes follow the sorted order of the values.

    Parameters
    ----------
    values : array-like
        One-dimensional array of labels without missing values.

    Returns
    -------
    codes : numpy.ndarray
        ``intp`` codes, one per element.
    n_levels : int
        Number of distinct values.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp), 0
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        a = arr.astype(np.int64, copy=False)
        lo, hi = int(a.min()), int(a.max())
        span = hi - lo + 1
        if span <= max(4 * a.size, 1 << 16):
            shifted = (a - lo).astype(np.intp, copy=False)
            present = np.zeros(span, dtype=np.bool_)
            present[shifted] = True
            lookup = np.cumsum(present, dtype=np.intp) - 1
            return lookup[shifted], int(lookup[-1]) + 1
    codes, uniques = pd.factorize(arr, sort=True)
    if (codes < 0).any():
        raise ValueError("values contain missing values")
    return codes.astype(np.intp, copy=False), len(uniques)


def combine_codes(*codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes of the interaction of several code arrays (e.g. ``stack x time``).

    Parameters
    ----------
    *codes : numpy.ndarray
        Non-negative integer code arrays of equal length.

    Returns
    -------
    codes : numpy.ndarray
        Dense codes of the distinct combinations, lexicographically ordered.
    n_levels : int
        Number of distinct combinations.
    """
    if not codes:
        raise ValueError("combine_codes needs at least one code array")
    out, n_out = factorize(np.asarray(codes[0], dtype=np.int64))
    for c in codes[1:]:
        c = np.asarray(c, dtype=np.int64)
        n = int(c.max()) + 1 if c.size else 1
        out, n_out = factorize(out.astype(np.int64) * n + c)
    return out, n_out


def singleton_mask(codes: Sequence[np.ndarray], *, max_iter: int = 1000) -> np.ndarray:
    """Observations to keep after iteratively dropping fixed-effect singletons.

    An observation is a singleton when it is the only one in its level of some
    fixed effect; its fixed effect then fits it perfectly, so it carries no information
    on the slope coefficients. Dropping it can create new singletons, so the check is
    repeated until none is left (as ``fixest`` / ``pyfixest`` with
    ``fixef_rm="singleton"`` do).

    Parameters
    ----------
    codes : sequence of numpy.ndarray
        Integer codes, one array per fixed-effect dimension.
    max_iter : int, optional
        Maximum number of passes.

    Returns
    -------
    numpy.ndarray
        Boolean mask, ``True`` for observations that are kept.
    """
    if len(codes) == 0:
        raise ValueError("singleton_mask needs at least one code array")
    keep = np.ones(len(codes[0]), dtype=np.bool_)
    all_kept = True
    for _ in range(max_iter):
        changed = False
        for c in codes:
            counts = np.bincount(c if all_kept else c[keep], minlength=int(c.max()) + 1)
            single = counts[c] == 1
            if not all_kept:
                single &= keep
            if single.any():
                keep &= ~single
                changed, all_kept = True, False
        if not changed:
            break
    return keep


def is_nested(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether every level of ``inner`` lies within a single level of ``outer``.

    Parameters
    ----------
    inner, outer : numpy.ndarray
        Dense integer codes of equal length (``inner`` coded ``0 .. n - 1``).

    Returns
    -------
    bool
        ``True`` when the map ``inner -> outer`` is a function.
    """
    if inner.size == 0:
        return True
    first = np.empty(int(inner.max()) + 1, dtype=outer.dtype)
    first[inner] = outer  # any one observation of each level
    return bool(np.array_equal(first[inner], outer))


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        bad = w[~(np.isfinite(w) & (w > 0))][0]
        raise ValueError(f"weights must be finite and positive, found {bad!r}")
    return w


def _grouped_sums(codes: np.ndarray, n_levels: int, values: np.ndarray) -> np.ndarray:
    """``(n_levels, k)`` sums of the columns of ``values`` (``(n, k)``) by ``codes``."""
    n, k = values.shape
    if k == 1:
        return np.bincount(codes, values[:, 0], minlength=n_levels)[:, None]
    flat = (codes[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, values.ravel(), minlength=n_levels * k).reshape(n_levels, k)


# --------------------------------------------------------------------------------------
# generic alternating projections
# --------------------------------------------------------------------------------------


def demean(
    x: np.ndarray,
    fe: Sequence[np.ndarray],
    weights: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    maxiter: int = 10_000,
    method: FEMethod = "auto",
) -> np.ndarray:
    """Weighted within transformation of ``x`` with respect to one or more fixed effects.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n,)`` or ``(n, k)`` array to transform.
    fe : sequence of numpy.ndarray
        Fixed effects, one array of integer (or other categorical) labels per dimension.
    weights : numpy.ndarray, optional
        Positive observation weights; ``None`` for unweighted.
    tol : float, optional
        Convergence tolerance of alternating projections: stop when a full sweep changes
        no element by more than ``tol * max(1, max|x|)``.
    maxiter : int, optional
        Maximum number of sweeps.
    method : {"auto", "exact", "alternating"}, optional
        ``"auto"`` uses one exact sweep for a single fixed effect, the exact block solver
        of :class:`TwoWayProjector` for two, and alternating projections otherwise;
        ``"exact"`` requires the exact solver (one or two fixed effects);
        ``"alternating"`` forces alternating projections.

    Returns
    -------
    numpy.ndarray
        The transformed array, same shape as ``x``, float64.

    Notes
    -----
    The result is ``M x`` with ``M = I - H (H'WH)^- H'W`` and ``H = [D_1 ... D_m]`` the
    stacked indicator matrices: the residual of the weighted least-squares projection of
    each column on all fixed effects. Alternating projections cycle through
    ``x <- x - D_j (D_j'W D_j)^{-1} D_j'W x`` (weighted group means computed with
    :func:`numpy.bincount`); the iteration converges to ``M x`` (von Neumann-Halperin).
    With one fixed effect a single sweep is exact. There is no small-sample correction
    here; degrees of freedom are the caller's business.
    """
    if method not in _FE_METHODS:
        raise ValueError(f"method must be one of {_FE_METHODS}, got {method!r}")
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    xx = arr[:, None] if one_d else arr
    if xx.ndim != 2:
        raise ValueError(f"x must be 1- or 2-dimensional, got shape {arr.shape}")
    n = xx.shape[0]
    if len(fe) == 0:
        raise ValueError("fe must hold at least one fixed effect")
    coded = []
    for j, f in enumerate(fe):
        f = np.asarray(f)
        if f.shape != (n,):
            raise ValueError(f"fe[{j}] must have shape ({n},), got {f.shape}")
        coded.append(factorize(f))
    w = _check_weights(weights, n)

    if method == "exact" and len(coded) > 2:
        raise ValueError(f"method='exact' supports one or two fixed effects, got {len(coded)}")
    if len(coded) == 2 and method != "alternating":
        proj = TwoWayProjector(coded[0][0], coded[1][0], w, method=method, tol=tol, maxiter=maxiter)
        out = proj.demean(xx)
    elif len(coded) == 1 and method != "alternating":
        out = _ap_sweep(xx.copy(), coded, w)
    else:
        out = _alternating_projections(xx, coded, w, tol=tol, maxiter=maxiter)
    return out[:, 0] if one_d else out


def _ap_sweep(x: np.ndarray, coded: Sequence[tuple[np.ndarray, int]], w: np.ndarray) -> np.ndarray:
    """One in-place sweep of weighted mean subtraction over all fixed effects."""
    for codes, n_levels in coded:
        wsum = np.bincount(codes, w, minlength=n_levels)
        means = _grouped_sums(codes, n_levels, x * w[:, None]) / wsum[:, None]
        x -= means[codes]
    return x


def _alternating_projections(
    x: np.ndarray,
    coded: Sequence[tuple[np.ndarray, int]],
    w: np.ndarray,
    *,
    tol: float,
    maxiter: int,
) -> np.ndarray:
    out = x.copy()
    scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    for _ in range(maxiter):
        before = out.copy()
        _ap_sweep(out, coded, w)
        if float(np.max(np.abs(out - before), initial=0.0)) <= tol * scale:
            return out
    warnings.warn(
        f"alternating projections did not converge to tol={tol} in {maxiter} sweeps",
        ConvergenceWarning,
        stacklevel=3,
    )
    return out


# --------------------------------------------------------------------------------------
# exact two-way projection
# --------------------------------------------------------------------------------------


def _block_inverse(cmat: np.ndarray) -> tuple[int, np.ndarray]:
    """Inverse of a Schur-complement block with its first level fixed at zero.

    Returns ``(1, inv(C[1:, 1:]))`` when that sub-block is positive definite (a connected
    component), else ``(0, pinv(C))``. Explicit inverses are used because the solves are
    then small matrix products: threaded triangular solves of some OpenBLAS builds stall
    for milliseconds per call when the other cores are busy.
    """
    red = cmat[1:, 1:]
    try:
        np.linalg.cholesky(red)  # positive definiteness check
    except np.linalg.LinAlgError:
        return 0, np.linalg.pinv(cmat, hermitian=True)
    inv = np.linalg.inv(red)
    return 1, 0.5 * (inv + inv.T)


class TwoWayProjector:
    """Weighted least-squares projection onto two sets of fixed effects.

    Built once from the codes of two fixed effects ``a`` and ``b`` and the weights; then
    :meth:`coefficients` maps group sums to fixed-effect coefficients and :meth:`demean`
    applies the within transformation to data columns.

    Parameters
    ----------
    codes_a, codes_b : numpy.ndarray
        Dense integer codes ``0 .. n_a - 1`` and ``0 .. n_b - 1`` (see :func:`factorize`).
    weights : numpy.ndarray, optional
        Positive observation weights; ``None`` for unweighted.
    method : {"auto", "exact", "alternating"}, optional
        ``"auto"`` solves exactly when every connected component has at most
        ``max_exact_levels`` levels of the smaller fixed effect, else alternates;
        ``"exact"`` raises ``ValueError`` when that is not the case.
    tol : float, optional
        Convergence tolerance of the alternating fallback (max change of the
        coefficients of the smaller fixed effect in a sweep, relative to
        ``max(1, max|group mean|)``).
    maxiter : int, optional
        Maximum number of alternating sweeps.
    max_exact_levels : int, optional
        Largest component (levels of the smaller fixed effect) solved exactly.

    Notes
    -----
    Let ``D`` (``n x n_a``) and ``F`` (``n x n_b``) be the indicator matrices and ``W``
    the diagonal weight matrix; let ``a`` be the dimension with more levels. The normal
    equations of the projection of ``x`` on ``[D F]`` are::

        diag(W_a) alpha + B gamma   = D'Wx
        B' alpha + diag(W_b) gamma  = F'Wx,      B = D'WF,  W_a = D'W1,  W_b = F'W1.

    Eliminating ``alpha = (D'Wx - B gamma) / W_a`` gives the Schur-complement system
    ``C gamma = F'Wx - B' (D'Wx / W_a)`` with ``C = diag(W_b) - B' diag(1/W_a) B``.
    ``C`` is block diagonal over the connected components of the bipartite graph linking
    levels of ``a`` and ``b`` that share observations, and each block has a
    one-dimensional null space (adding a constant to ``gamma`` and subtracting it from
    ``alpha``). Each block is therefore solved with one level fixed at zero (its
    inverse is computed once; pseudo-inverse if the reduced block is not positive
    definite). The projection ``D alpha +
    F gamma`` is unique even though the coefficients are not.
    """

    def __init__(
        self,
        codes_a: np.ndarray,
        codes_b: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        method: FEMethod = "auto",
        tol: float = 1e-10,
        maxiter: int = 10_000,
        max_exact_levels: int = MAX_EXACT_LEVELS,
    ) -> None:
        if method not in _FE_METHODS:
            raise ValueError(f"method must be one of {_FE_METHODS}, got {method!r}")
        if tol <= 0:
            raise ValueError(f"tol must be positive, got {tol!r}")
        ca = np.asarray(codes_a, dtype=np.intp)
        cb = np.asarray(codes_b, dtype=np.intp)
        if ca.ndim != 1 or ca.shape != cb.shape:
            raise ValueError(
                f"codes_a and codes_b must be 1-d of equal length, got {ca.shape}, {cb.shape}"
            )
        if ca.size == 0:
            raise ValueError("cannot project on fixed effects of an empty sample")
        self.n_obs = ca.size
        self.weights = _check_weights(weights, ca.size)
        na, nb = int(ca.max()) + 1, int(cb.max()) + 1
        # eliminate the dimension with more levels in closed form
        self._swap = nb > na
        if self._swap:
            ca, cb, na, nb = cb, ca, nb, na
        self._ca, self._cb, self._na, self._nb = ca, cb, na, nb
        w = self.weights
        self._wa = np.bincount(ca, w, minlength=na)
        self._wb = np.bincount(cb, w, minlength=nb)
        if np.any(self._wa <= 0) or np.any(self._wb <= 0):
            raise ValueError("codes must be dense (every level from 0 to max observed)")
        b = sp.csr_matrix((w, (ca, cb)), shape=(na, nb))
        b.sum_duplicates()
        self._B = b
        self._BT = b.T.tocsr()
        self.tol, self.maxiter = tol, maxiter

        # connected components of the bipartite graph (levels of a, then levels of b)
        indptr = np.concatenate([b.indptr, np.full(nb, b.nnz, dtype=b.indptr.dtype)])
        graph = sp.csr_matrix((np.ones(b.nnz), b.indices + na, indptr), shape=(na + nb, na + nb))
        n_comp, labels = connected_components(graph, directed=False)
        self.n_components = int(n_comp)
        lab_a, lab_b = labels[:na], labels[na:]
        size_b = np.bincount(lab_b, minlength=n_comp)
        feasible = int(size_b.max()) <= max_exact_levels
        if method == "exact" and not feasible:
            raise ValueError(
                f"method='exact' needs components of at most max_exact_levels="
                f"{max_exact_levels} levels, the largest has {int(size_b.max())}"
            )
        self.method: Literal["exact", "alternating"] = (
            "exact" if method != "alternating" and feasible else "alternating"
        )
        self.iterations = 0
        if self.method == "exact":
            self._build_blocks(lab_a, lab_b, n_comp)

    # -- properties -------------------------------------------------------------------
    @property
    def n_levels(self) -> tuple[int, int]:
        """Number of levels of the two fixed effects, in the order given."""
        return (self._nb, self._na) if self._swap else (self._na, self._nb)

    @property
    def n_cells(self) -> int:
        """Number of distinct (level of ``a``, level of ``b``) pairs that hold observations."""
        return int(self._B.nnz)

    # -- exact solver -----------------------------------------------------------------
    def _build_blocks(self, lab_a: np.ndarray, lab_b: np.ndarray, n_comp: int) -> None:
        perm_a = np.argsort(lab_a, kind="stable")
        perm_b = np.argsort(lab_b, kind="stable")
        start_a = np.concatenate([[0], np.cumsum(np.bincount(lab_a, minlength=n_comp))])
        start_b = np.concatenate([[0], np.cumsum(np.bincount(lab_b, minlength=n_comp))])
        bp = self._B[perm_a][:, perm_b].tocsr()
        wa, wb = self._wa[perm_a], self._wb[perm_b]
        blocks: list[tuple[int, int, tuple[int, np.ndarray | None]]] = []
        for c in range(n_comp):
            a0, a1, b0, b1 = start_a[c], start_a[c + 1], start_b[c], start_b[c + 1]
            m = b1 - b0
            if m <= 1:
                blocks.append((b0, b1, (0, None)))  # single level: gamma fixed at 0
                continue
            sub = bp[a0:a1, b0:b1]
            scale = 1.0 / np.sqrt(wa[a0:a1])
            if (a1 - a0) * m <= _DENSE_BLOCK_ELEMENTS:
                bs = sub.toarray() * scale[:, None]
                gram = bs.T @ bs
            else:
                bs = sp.diags(scale) @ sub
                gram = (bs.T @ bs).toarray()
            cmat = np.diag(wb[b0:b1]) - gram
            cmat = 0.5 * (cmat + cmat.T)
            blocks.append((b0, b1, _block_inverse(cmat)))
        self._perm_b = perm_b
        self._blocks = blocks

    def _solve_gamma(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``C gamma = rhs`` block by block (``rhs`` in the original b-order)."""
        r = rhs[self._perm_b]
        gam = np.zeros_like(r)
        for b0, b1, (first, inv) in self._blocks:  # loop over components, not observations
            if inv is not None:
                gam[b0 + first : b1] = inv @ r[b0 + first : b1]
        out = np.empty_like(gam)
        out[self._perm_b] = gam
        return out

    # -- public API -------------------------------------------------------------------
    def group_sums(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted group sums ``(D'Wx, F'Wx)`` of the columns of ``x`` (``(n, k)``).

        Returned in the order of the fixed effects given to the constructor.
        """
        xw = np.asarray(x, dtype=np.float64).reshape(self.n_obs, -1) * self.weights[:, None]
        sa = _grouped_sums(self._ca, self._na, xw)
        sb = _grouped_sums(self._cb, self._nb, xw)
        return (sb, sa) if self._swap else (sa, sb)

    def coefficients(self, sums_a: np.ndarray, sums_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-effect coefficients of the projection, from the group sums.

        Parameters
        ----------
        sums_a, sums_b : numpy.ndarray
            ``(n_a, k)`` and ``(n_b, k)`` weighted group sums ``D'Wx`` and ``F'Wx`` of
            ``k`` columns ``x`` (in the order of the constructor's fixed effects).

        Returns
        -------
        alpha, gamma : numpy.ndarray
            ``(n_a, k)`` and ``(n_b, k)`` coefficients with ``D alpha + F gamma`` the
            weighted least-squares projection of ``x`` on both fixed effects
            (normalised with one level per connected component at zero when exact).
        """
        sa = np.asarray(sums_a, dtype=np.float64)
        sb = np.asarray(sums_b, dtype=np.float64)
        if self._swap:
            sa, sb = sb, sa
        sa = sa.reshape(self._na, -1)
        sb = sb.reshape(self._nb, -1)
        if self.method == "exact":
            rhs = sb - self._BT @ (sa / self._wa[:, None])
            gamma = self._solve_gamma(rhs)
            alpha = (sa - self._B @ gamma) / self._wa[:, None]
        else:
            alpha, gamma = self._gauss_seidel(sa, sb)
        return (gamma, alpha) if self._swap else (alpha, gamma)

    def _gauss_seidel(self, sa: np.ndarray, sb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Alternating projections in coefficient space (same iterates as :func:`demean`)."""
        wa, wb = self._wa[:, None], self._wb[:, None]
        gamma = np.zeros_like(sb)
        scale = max(1.0, float(np.max(np.abs(sa / wa), initial=0.0)))
        for it in range(1, self.maxiter + 1):
            alpha = (sa - self._B @ gamma) / wa
            new = (sb - self._BT @ alpha) / wb
            delta = float(np.max(np.abs(new - gamma), initial=0.0))
            gamma = new
            if delta <= self.tol * scale:
                self.iterations = it
                break
        else:
            self.iterations = self.maxiter
            warnings.warn(
                f"alternating projections did not converge to tol={self.tol} "
                f"in {self.maxiter} sweeps",
                ConvergenceWarning,
                stacklevel=3,
            )
        alpha = (sa - self._B @ gamma) / wa
        return alpha, gamma

    def fitted(self, alpha: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """Observation-level ``D alpha + F gamma`` (``(n, k)``)."""
        if self._swap:
            alpha, gamma = gamma, alpha
        a = np.asarray(alpha).reshape(self._na, -1)
        g = np.asarray(gamma).reshape(self._nb, -1)
        return a[self._ca] + g[self._cb]

    def demean(self, x: np.ndarray) -> np.ndarray:
        """Within transformation ``x - D alpha - F gamma`` of ``(n,)`` or ``(n, k)`` data."""
        arr = np.asarray(x, dtype=np.float64)
        xx = arr.reshape(self.n_obs, -1)
        alpha, gamma = self.coefficients(*self.group_sums(xx))
        out = xx - self.fitted(alpha, gamma)
        return out.reshape(arr.shape)
