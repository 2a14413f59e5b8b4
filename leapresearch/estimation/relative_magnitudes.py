r"""Relative-magnitudes intervals by the conditional least-favourable hybrid test (HonestDiD).

Rambachan and Roth (2023) bound the post-period trend differences by ``Mbar`` times the
largest pre-period month-to-month change: ``Delta^RM(Mbar)``. The R package ``HonestDiD``
(``computeConditionalCS_DeltaRM``, default ``method = "C-LF"``) inverts the conditional
least-favourable hybrid test of Andrews, Roth and Pakes (2023, ARP) over a grid of
``theta = tau_k``; this module follows that code step by step:

* ``Delta^RM`` is the union over which pre-period change ``s`` is the largest and its
  sign: for each, ``A delta <= 0`` with rows ``+-(delta_r - delta_{r-1}) - Mbar c_s``
  (``c_s`` the signed change ``s``); as in the package (``postPeriodMomentsOnly``) only
  the rows of the post-period changes enter the test. ``theta`` is accepted when any
  ``(s, sign)`` accepts.
* With ``Y = A beta_hat``, ``Sigma_Y = A Sigma A'``, the nuisance ``nu`` (the other
  post-period ``tau``) and ``X`` its columns of ``A``, the statistic is
  ``eta(theta) = min_nu max_j (Y_j - a_j theta - X_j nu) / sd_j``. Its dual is
  ``max lambda'y`` over ``lambda >= 0, sd'lambda = 1, X'lambda = 0``, whose vertices for
  ``theta = tau_k`` are known in closed form (:func:`_dual_vertices`): one for each
  post-period change ``r`` (weights on ``+r`` and ``-r``) and one for each sign of the
  chain of changes ``1..k``. So ``eta`` is the largest vertex value, without a linear
  programme (checked against HiGHS in the tests).
* First stage (least favourable, size ``kappa = alpha / 10``): reject when ``eta``
  exceeds the ``1 - kappa`` quantile of ``eta`` at ``Y ~ N(0, Sigma_Y)``, simulated with
  1000 draws exactly as the package draws them (R's ``set.seed(0)``, Mersenne-Twister,
  inversion normals, ``mvtnorm::rmvnorm`` with the symmetric square root; quantile type 7).
* Second stage: conditional on the optimal vertex ``gamma``, ``eta / sigma_B``
  (``sigma_B^2 = gamma' Sigma_Y gamma``) is a normal truncated to ``[v_lo, v_up] / sigma_B``:
  the values ``c`` of ``gamma'Y`` along ``Y = s + Sigma_Y gamma c / sigma_B^2`` at which
  ``gamma`` stays optimal (every other vertex ``v``: ``v's + (v'b) c <= c``), ``v_up``
  capped by the first stage's critical value. Reject when ``eta / sigma_B`` exceeds the
  ``1 - (alpha - kappa) / (1 - kappa)`` quantile of that truncated normal (or 0).
  ``HonestDiD`` finds ``[v_lo, v_up]`` by the primal formulas or, when the programme is
  degenerate, by bisection to 1e-6; both are this exact range.
* Interval: as in the package the test is run at ``gridPoints = 1000`` values of
  ``theta`` evenly spread over ``+-20 se(beta_k)``, and the interval is the smallest and
  largest accepted value (:func:`hybrid_grid`). For publication (:func:`hybrid_ci`) the
  grid is widened while an end point is accepted (the package would only warn) and each
  end is refined between the last accepted and first rejected grid value to 1e-6 of the
  grid spacing (three finer grids of 101 values), so it lies within one R grid step of
  the package's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special, stats

GRID_POINTS = 1000
LF_SIMULATIONS = 1000
LF_SEED = 0
LAMBDA_TOL = 1e-6  # HonestDiD's threshold for a binding moment (reported only)
SINGULAR_RATIO = 1e-10
"""A covariance of the event-study coefficients whose smallest eigenvalue is below this
share of its largest is singular (for example a cluster-robust covariance with fewer
clusters than coefficients): the hybrid test is not computed on it."""


# --------------------------------------------------------------------------------------
# R's random normals (set.seed, Mersenne-Twister, Inversion)
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def r_normal_draws(n: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` values of R's ``rnorm`` after ``set.seed(seed)`` (R >= 3.6 defaults).

    R scrambles the seed by 50 steps of ``seed = 69069 seed + 1`` and fills the 624 words
    of the Mersenne-Twister state with the next 625 (the first is the position); a uniform
    is ``u32 * 2^-32`` and a normal is ``qnorm(((int)(2^27 u1) + u2) / 2^27)``.
    """
    s = int(seed) & 0xFFFFFFFF
    for _ in range(50):
        s = (69069 * s + 1) & 0xFFFFFFFF
    words = []
    for _ in range(625):
        s = (69069 * s + 1) & 0xFFFFFFFF
        words.append(s)
    bitgen = np.random.MT19937()
    bitgen.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.array(words[1:], dtype=np.uint32), "pos": 624},
    }
    raw = bitgen.random_raw(2 * n).astype(np.float64) * 2.3283064365386963e-10
    i2_32m1 = 2.328306437080797e-10
    raw = np.where(raw <= 0.0, 0.5 * i2_32m1, raw)
    raw = np.where(1.0 - raw <= 0.0, 1.0 - 0.5 * i2_32m1, raw)
    big = 134217728.0
    u = (np.floor(big * raw[0::2]) + raw[1::2]) / big
    out = special.ndtri(u)
    out.flags.writeable = False
    return out


def _sym_sqrt(sigma: np.ndarray) -> np.ndarray:
    """``mvtnorm``'s factor: ``V diag(sqrt(max(lambda, 0))) V'`` (unique, sign-free)."""
    vals, vecs = np.linalg.eigh(sigma)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


# --------------------------------------------------------------------------------------
# moments of Delta^RM for one (s, sign)
# --------------------------------------------------------------------------------------


def rm_moments(n_pre: int, n_post: int, mbar: float, s: int, positive: bool) -> np.ndarray:
    """``HonestDiD``'s ``.create_A_RM`` (``dropZero``), rows of the post-period changes only.

    Rows ``+r`` then ``-r`` for the changes ``r = 1..n_post`` (``delta_{r-1} -> delta_r``):
    ``+-(delta_r - delta_{r-1}) - Mbar v_s' delta <= 0``, ``v_s`` the change ending at
    period ``s`` (``-n_pre + 1 <= s <= 0``), negated when ``positive`` is false.
    """
    n = n_pre + n_post
    atilde = np.zeros((n, n + 1))
    for r in range(n):
        atilde[r, r : r + 2] = (-1.0, 1.0)
    v = np.zeros(n + 1)
    v[n_pre + s - 1 : n_pre + s + 1] = (-1.0, 1.0)
    if not positive:
        v = -v
    ub = np.vstack([np.tile(v, (n_pre, 1)), np.tile(mbar * v, (n_post, 1))])
    a = np.vstack([atilde - ub, -atilde - ub])
    a = a[np.einsum("ij,ij->i", a, a) > 1e-10]
    a = np.delete(a, n_pre, axis=1)  # period 0
    return a[np.abs(a[:, n_pre:]).sum(axis=1) > 0]


def _dual_vertices(sd: np.ndarray, n_post: int, k: int) -> np.ndarray:
    """Vertices of ``{lambda >= 0, sd'lambda = 1, X'lambda = 0}`` for ``theta = tau_k``.

    Rows ``+1..+n_post, -1..-n_post``; the nuisance is every ``tau_j``, ``j != k``, so
    ``X'lambda = 0`` says ``lambda_{+r} - lambda_{-r}`` is one constant ``c`` for
    ``r <= k`` and zero after. The polytope is the union of two simplices (``c >= 0``,
    ``c <= 0``) with vertices: each ``r`` alone (``c = 0``) and the chain ``1..k`` of
    ``+`` (``c > 0``) or of ``-`` rows (``c < 0``).
    """
    plus, minus = sd[:n_post], sd[n_post:]
    rows = []
    for r in range(n_post):
        v = np.zeros(2 * n_post)
        v[[r, n_post + r]] = 1.0 / (plus[r] + minus[r])
        rows.append(v)
    chain_plus, chain_minus = np.zeros(2 * n_post), np.zeros(2 * n_post)
    chain_plus[:k] = 1.0 / plus[:k].sum()
    chain_minus[n_post : n_post + k] = 1.0 / minus[:k].sum()
    return np.vstack([*rows, chain_plus, chain_minus])


@dataclass(frozen=True)
class _Arm:
    """One ``(s, sign)`` of the union: what the test at any ``theta`` needs."""

    vy: np.ndarray  # V Y          (n_v,)
    va: np.ndarray  # V a          (n_v,)
    q: np.ndarray  # V Sigma_Y V'  (n_v, n_v)
    lf_cv: float


def _arm(coef_beta, coef_sigma, n_pre, n_post, k, mbar, s, positive, kappa) -> _Arm:
    a_full = rm_moments(n_pre, n_post, mbar, s, positive)
    y = a_full @ coef_beta
    sig_y = a_full @ coef_sigma @ a_full.T
    sd = np.sqrt(np.diag(sig_y))
    if not np.all(sd > 0) or not np.all(np.isfinite(sig_y)):
        raise FloatingPointError("a moment of Delta^RM has no variance")
    verts = _dual_vertices(sd, n_post, k)
    a_theta = a_full[:, n_pre + k - 1]  # Gamma^{-1}: theta is tau_k
    m = sig_y.shape[0]
    draws = r_normal_draws(LF_SIMULATIONS * m, LF_SEED).reshape(LF_SIMULATIONS, m)
    xi = draws @ _sym_sqrt(sig_y)
    eta_sim = (xi @ verts.T).max(axis=1)
    lf_cv = float(np.quantile(eta_sim, 1 - kappa))
    return _Arm(vy=verts @ y, va=verts @ a_theta, q=verts @ sig_y @ verts.T, lf_cv=lf_cv)


def _truncnorm_upper_quantile(p: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``p`` quantile of ``N(0, 1)`` truncated to ``[lo, hi]`` (``TruncatedNormal::norminvp``)."""
    out = np.full(lo.shape, np.nan)
    ok = lo < hi
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # left of 0 by the cdf, right of it by the survival function (no cancellation)
        c_lo, c_hi = special.ndtr(lo), special.ndtr(hi)
        s_lo, s_hi = special.ndtr(-lo), special.ndtr(-hi)
        left = special.ndtri(c_lo + p * (c_hi - c_lo))
        right = -special.ndtri(s_hi + (1 - p) * (s_lo - s_hi))
        fast = np.where(lo > 0, right, left)
        mass = np.where(lo > 0, s_lo - s_hi, c_hi - c_lo)
    good = ok & np.isfinite(fast) & (mass > 1e-250)
    out[good] = fast[good]
    slow = ok & ~good
    if slow.any():  # far tails: scipy's log-space quantile
        out[slow] = stats.truncnorm.ppf(p, lo[slow], hi[slow])
    return out


def conditional_range(
    q: np.ndarray, vals: np.ndarray, g: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[v_lo, v_up]``: the values ``c`` of ``gamma'Y`` at which vertex ``g`` stays optimal.

    ``Y`` moves along ``s + b c`` with ``b = Sigma_Y gamma / gamma' Sigma_Y gamma`` and
    ``s = Y - b eta`` fixed; ``gamma`` stays optimal while every vertex ``v`` has
    ``v's + (v'b) c <= c``. ``q = V Sigma_Y V'``; ``vals`` the vertex values ``V y`` (one
    column per test), ``g`` the optimal vertex and ``eta`` its value in each column.
    """
    s2 = q[g, g]
    vb = q[:, g] / s2[None, :]  # v'b for every vertex v
    num = vals - vb * eta[None, :]  # v's
    den = 1.0 - vb
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num / den
    tol = 1e-12
    lo_cand = np.where(den > tol, ratio, -np.inf)
    hi_cand = np.where(den < -tol, ratio, np.inf)
    lo_cand[g, np.arange(g.size)] = -np.inf
    hi_cand[g, np.arange(g.size)] = np.inf
    return lo_cand.max(axis=0), hi_cand.min(axis=0)


def _accepts(arm: _Arm, theta: np.ndarray, alpha: float, kappa: float) -> np.ndarray:
    """The hybrid test of one arm at each ``theta`` (``True`` = not rejected)."""
    vals = arm.vy[:, None] - arm.va[:, None] * theta[None, :]  # (n_v, G)
    g = np.argmax(vals, axis=0)
    cols = np.arange(theta.size)
    eta = vals[g, cols]
    accept = eta <= arm.lf_cv
    sig2 = arm.q[g, g]
    tiny = np.abs(sig2) < np.finfo(float).eps
    accept &= ~(tiny & (eta > 0))
    live = accept & ~tiny
    if not live.any():
        return accept
    gl, cl, el = g[live], cols[live], eta[live]
    s2 = sig2[live]
    v_lo, v_up = conditional_range(arm.q, vals[:, cl], gl, el)
    v_up = np.minimum(v_up, arm.lf_cv)
    sig_b = np.sqrt(s2)
    zlo, zup, stat = v_lo / sig_b, v_up / sig_b, el / sig_b
    inside = (zlo <= stat) & (stat <= zup)
    mod_size = (alpha - kappa) / (1 - kappa)
    cval = np.maximum(0.0, _truncnorm_upper_quantile(1 - mod_size, zlo, zup))
    reject = inside & (stat > cval)
    accept[np.flatnonzero(live)[reject]] = False
    return accept


class HybridRM:
    """The union of ``(s, sign)`` arms of ``Delta^RM(mbar)`` for ``theta = tau_k``."""

    def __init__(self, beta, sigma, n_pre: int, n_post: int, k: int, mbar: float, alpha: float):
        if n_post < 2:
            raise ValueError("the hybrid test with nuisance parameters needs two post periods")
        if not 1 <= k <= n_post:
            raise ValueError(f"post period {k} is not in 1..{n_post}")
        self.alpha, self.kappa = float(alpha), float(alpha) / 10
        beta, sigma = np.asarray(beta, np.float64), np.asarray(sigma, np.float64)
        eig = np.linalg.eigvalsh((sigma + sigma.T) / 2)
        if not eig[0] > SINGULAR_RATIO * eig[-1]:
            raise FloatingPointError(
                f"the covariance of the event-study coefficients is singular (smallest "
                f"eigenvalue {eig[0]:.3g}, largest {eig[-1]:.3g}): the hybrid test's "
                "conditioning on a moment is not defined"
            )
        self.se = float(np.sqrt(sigma[n_pre + k - 1, n_pre + k - 1]))
        if not self.se > 0:
            raise FloatingPointError("the target coefficient has no variance")
        self.arms = [
            _arm(beta, sigma, n_pre, n_post, k, float(mbar), s, pos, self.kappa)
            for s in range(-(n_pre - 1), 1)
            for pos in (True, False)
        ]

    def accepts(self, theta: np.ndarray) -> np.ndarray:
        """Whether some ``(s, sign)`` accepts each ``theta`` (the union's test)."""
        theta = np.asarray(theta, np.float64)
        out = np.zeros(theta.shape, bool)
        for arm in self.arms:
            out |= _accepts(arm, theta, self.alpha, self.kappa)
        return out


def hybrid_grid(
    beta, sigma, n_pre: int, n_post: int, k: int, mbar: float, *, alpha: float = 0.05,
    grid_points: int = GRID_POINTS,
) -> tuple[float, float]:  # fmt: skip
    """``createSensitivityResults_relativeMagnitudes``' ``(lb, ub)`` for ``l = e_k``.

    The smallest and largest accepted ``theta`` on ``grid_points`` values over
    ``+-20 se(beta_k)``; ``(nan, nan)`` when none is accepted.
    """
    test = HybridRM(beta, sigma, n_pre, n_post, k, mbar, alpha)
    grid = np.linspace(-20 * test.se, 20 * test.se, grid_points)
    ok = test.accepts(grid)
    if not ok.any():
        return float("nan"), float("nan")
    return float(grid[ok].min()), float(grid[ok].max())


def _refine(test: HybridRM, inside: float, outside: float) -> float:
    """The accepted end between an accepted and a rejected ``theta`` (to 1e-6 of the gap)."""
    for _ in range(3):
        fine = np.linspace(inside, outside, 101)
        ok = test.accepts(fine)
        last = int(np.flatnonzero(ok).max()) if ok.any() else 0
        inside, outside = fine[last], fine[min(last + 1, 100)]
    return float(inside)


def covers_zero(
    beta, sigma, n_pre: int, n_post: int, k: int, mbar: float, *, alpha: float = 0.05,
    grid_points: int = GRID_POINTS,
) -> bool:  # fmt: skip
    """Whether zero is accepted or lies between accepted values of the package's grid."""
    test = HybridRM(beta, sigma, n_pre, n_post, k, mbar, alpha)
    if test.accepts(np.zeros(1))[0]:
        return True
    grid = np.linspace(-20 * test.se, 20 * test.se, grid_points)
    ok = test.accepts(grid)
    return bool(ok[grid < 0].any() and ok[grid > 0].any())


def hybrid_ci(
    beta, sigma, n_pre: int, n_post: int, k: int, mbar: float, *, alpha: float = 0.05,
    grid_points: int = GRID_POINTS, max_widen: int = 12,
) -> tuple[float, float]:  # fmt: skip
    """The C-LF interval of ``tau_k`` under ``Delta^RM(mbar)``, ends refined (module doc).

    Raises
    ------
    RuntimeError
        The accepted set still reaches the grid's end after ``max_widen`` doublings.
    """
    test = HybridRM(beta, sigma, n_pre, n_post, k, mbar, alpha)
    half = 20 * test.se
    for _ in range(max_widen + 1):
        grid = np.linspace(-half, half, grid_points)
        ok = test.accepts(grid)
        if not ok.any():
            return float("nan"), float("nan")
        if not (ok[0] or ok[-1]):
            break
        half *= 2
    else:
        raise RuntimeError("the relative-magnitudes interval is unbounded on the grid")
    idx = np.flatnonzero(ok)
    lo = _refine(test, grid[idx[0]], grid[idx[0] - 1])
    hi = _refine(test, grid[idx[-1]], grid[idx[-1] + 1])
    return lo, hi
