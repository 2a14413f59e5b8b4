r"""Sensitivity of event-study effects to violations of parallel trends (Rambachan-Roth).

Rambachan and Roth (2023, *Review of Economic Studies*, "A More Credible Approach to
Parallel Trends") write the event-study coefficients as ``beta = tau + delta``: the
effect ``tau`` (zero before the event) plus the difference in trends ``delta`` that
parallel trends assumes away. Instead of assuming ``delta_post = 0`` they bound it by
what the pre-period shows, and report confidence intervals for ``theta = tau_k`` (one
post-period month) valid for every ``delta`` in a set ``Delta``:

* **Smoothness**, ``Delta^SD(M)``: the slope of the trend difference changes by at most
  ``M`` percentage points per month between consecutive months,
  ``|delta_{t+1} - 2 delta_t + delta_{t-1}| <= M``. ``M = 0`` allows exactly a linear
  trend, extrapolated from the pre-period. The interval is the optimal fixed-length
  confidence interval (FLCI) of the paper, as in the R package ``HonestDiD``: among
  affine estimators ``l'beta_post - w'beta_pre`` with finite worst-case bias it minimises
  the half-length ``sd * cv_alpha(bias / sd)``, where ``cv_alpha(b)`` is the ``1 - alpha``
  quantile of ``|N(b, 1)|``. As in ``HonestDiD`` it is solved in two levels: for an L1
  budget ``b`` of the worst-case bias ``M ||C w + c0||_1 <= M b`` the least-variance
  weights solve a convex quadratic programme (SLSQP on its epigraph form, then the exact
  solution of the active set found, kept only when the KKT conditions hold; otherwise an
  error is raised), and the half-length is minimised over ``b`` by a bounded scalar search.
* **Relative magnitudes**, ``Delta^RM(Mbar)``: no month-to-month change of the trend
  difference after the event is larger than ``Mbar`` times the largest month-to-month
  change before it. ``Mbar = 0`` is parallel trends after the event. The interval is the
  one ``HonestDiD`` reports by default (``method = "C-LF"``): the inversion of the
  conditional least-favourable hybrid test of Andrews, Roth and Pakes, ported in
  :mod:`leapresearch.estimation.relative_magnitudes` (normal critical values, as in the
  package; at ``Mbar = 0`` too, where it is a test of ``delta_post = 0`` close to the
  original interval). The ``inference`` column of the table says ``C-LF``.

  **Fallback** (``inference = "Bonferroni"``): when the hybrid cannot be computed (a single
  post-period month, whose no-nuisance test is not ported, a moment without variance, or a
  singular covariance of the coefficients, such as a cluster-robust one with fewer clusters
  than coefficients: ``relative_magnitudes.SINGULAR_RATIO``)
  the month's rows are a valid, more conservative **Bonferroni projection**: the
  identified set is ``beta_k +/- k Mbar D`` with ``D = max_s |delta_{s+1} - delta_s|``
  over the pre-period; with probability at least ``1 - alpha`` both
  ``|beta_k_hat - beta_k| <= z_{1-alpha_2/2} se_k`` and every pre-period change lies
  within ``c se_j`` of its estimate (``c`` Bonferroni over the ``n_pre`` changes at level
  ``alpha_1``), so ``[beta_k_hat -/+ z se_k -/+ k Mbar D_up]`` with ``D_up =
  max_j(|Delta beta_j_hat| + c se_j)`` covers ``theta`` (``alpha_1 = alpha / 10``,
  ``alpha_2 = alpha - alpha_1``; ``t(df)`` critical values when the event study has them;
  at ``Mbar = 0`` the original interval).

Checks (``tests/test_identification.py``, ``tests/test_honest_did.py``): the smoothness
FLCI reproduces the intervals the R package prints for its Medicaid example (``M = 0 ..
0.05``) to the printed digits, matches a brute-force minimisation of the worst-case bias
computed by linear programming, and is the linear extrapolation of the pre-trend at
``M = 0``; the relative-magnitudes C-LF intervals on the package's grid are the ones its
README printed for that example (``Mbar = 0.5 .. 2``, three digits) and its breakdown is
between 1.5 and 2 as the README says; the Bonferroni fallback follows its closed form and
contains the hybrid interval.

Which pre-period coefficients: ``sensitivity_bounds(..., pretrend=fit)`` takes them from
the group's event study on its untreated rows (the pre-trend fit of
:mod:`leapresearch.analysis.identification`, whose post-visit outcomes never enter) and
the post-period ones from the full fit, with the joint covariance of the two from their
cluster influences (:func:`joint_covariance`); the run does so. Without it the full fit's
own pre-period coefficients are used (the published example, the tests by hand).

Indexing follows ``HonestDiD``: the reference month (``rel_time = reference``) is period
0 with ``delta_0 = 0``; pre-period months are ``-n_pre..-1``, post-period months
``1..n_post``, so ``rel_time = r`` is period ``r - reference``. Binned end points of the
event-study window are not single months and are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from leapresearch.estimation import relative_magnitudes as rm_hybrid
from leapresearch.estimation.multiple_testing import stacked_influence

Method = Literal["relative_magnitudes", "smoothness"]
METHODS: tuple[Method, ...] = ("relative_magnitudes", "smoothness")
RM_FIRST_STAGE_SHARE = 0.1
"""Share of ``alpha`` the Bonferroni fallback spends on the pre-period changes."""

SENSITIVITY_DECIMALS = 3
"""Decimals (of a percentage point) ``ci_lower``, ``ci_upper`` and ``breakdown`` are rounded to.

The smoothness interval comes out of a numerical optimisation that agrees with itself to
about 1e-9 relative (not to the last bit) across row orders, id spellings and BLAS
kernels: up to about 1e-7 pp for intervals some 50 pp wide. Rounding well above that
noise makes the published table identical everywhere, except when a value falls within
the noise of a rounding boundary: for the widest intervals about one cell in a thousand
with 4 decimals (it happened on the demo data of 2026-11-30: 37.26065005 under SkylakeX,
37.26064999 under Prescott), one in ten thousand with 3."""

SENSITIVITY_COLUMNS = [
    "group",
    "rel_time",
    "method",
    "inference",
    "bound",
    "estimate",
    "ci_lower",
    "ci_upper",
    "breakdown",
    "n_treated",
]


@dataclass(frozen=True)
class EventCoefficients:
    """Contiguous pre- and post-period coefficients in ``HonestDiD`` order.

    ``beta`` holds periods ``-n_pre..-1`` then ``1..n_post`` (period 0, the reference, is
    omitted); ``sigma`` is their covariance.
    """

    beta: np.ndarray
    sigma: np.ndarray
    n_pre: int
    n_post: int
    reference: int

    def period(self, rel_time: int) -> int:
        """The post-period index of an event time (``rel_time - reference``)."""
        return int(rel_time) - self.reference


def _pre_terms(result) -> list[int]:
    """The run of consecutive months before the reference (binned end point left out)."""
    ref = int(result.reference)
    idx = {int(r) for r in result.coefficients.index}
    lo_bin = result.window[0] if result.window is not None else None
    pre: list[int] = []
    r = ref - 1
    while r in idx and r != lo_bin:
        pre.insert(0, r)
        r -= 1
    return pre


def joint_covariance(first, first_terms: list[int], second, second_terms: list[int]) -> np.ndarray:
    """Covariance of two fits' coefficients stacked, from their cluster influences.

    ``psi = [psi_first[first_terms], psi_second[second_terms]]`` over the union of the two
    fits' clusters (a cluster absent from a fit influences it by zero); the covariance is
    ``psi' psi`` (:func:`~leapresearch.estimation.multiple_testing.stacked_influence`, as the
    subgroup tests' joint covariance). Each fit's influence is scaled by its own small-sample factor
    (:func:`~leapresearch.estimation.multiple_testing.cluster_influence`), so the diagonal
    blocks are the fits' own covariances.

    Raises
    ------
    ValueError
        A fit without cluster influence, or the two clustered at different levels.
    """
    for fit in (first, second):
        if getattr(fit, "influence", None) is None:
            raise ValueError("the joint covariance needs both fits' cluster influence")
    if first.cluster != second.cluster:
        raise ValueError(f"fits clustered by {first.cluster!r} and {second.cluster!r}")
    psi = stacked_influence([first.influence[first_terms], second.influence[second_terms]])
    return psi.T @ psi


def coefficients_for_bounds(result, *, max_rel_time: int, pretrend=None) -> EventCoefficients:
    """Pick the pre- and post-period terms of an event study for the bounds.

    Parameters
    ----------
    result : EventStudyResult
        A fitted event study.
    max_rel_time : int
        The last post-period month needed.
    pretrend : GroupFit, optional
        The same group's event study on its untreated rows
        (:func:`~leapresearch.analysis.identification.pretrend_fits`): the pre-period
        coefficients are taken from it, the post-period ones from ``result``, with their
        joint covariance from both fits' cluster influences (:func:`joint_covariance`;
        ``result`` must carry its influence too).

    Returns
    -------
    EventCoefficients
        The run of consecutive months before the reference (binned end point left out)
        and the months after it up to ``max_rel_time``.

    Raises
    ------
    ValueError
        No pre-period month, a post-period month up to ``max_rel_time`` is missing, the
        two fits have different references, or either lacks its cluster influence.

    Notes
    -----
    Why the untreated rows: in the stacked regression a visited student's unit effect is
    shared by its months before and after the visit, and in an unbalanced panel effects that
    differ across students reach the pre-period coefficients of the full fit (module
    docstring of :mod:`leapresearch.analysis.identification`). The relative-magnitudes and
    smoothness restrictions then bound the post-period bias by a pre-period trend that
    carries part of the effect; the untreated-rows fit's pre-period coefficients carry
    none.
    """
    ref = int(result.reference)
    source = result if pretrend is None else pretrend
    if int(source.reference) != ref:
        raise ValueError(f"references differ: {ref} and {int(source.reference)}")
    pre = _pre_terms(source)
    idx = {int(r) for r in result.coefficients.index}
    post = list(range(ref + 1, int(max_rel_time) + 1))
    missing = [r for r in post if r not in idx]
    if not pre:
        raise ValueError("no pre-period event-study coefficient to bound the trend")
    if missing:
        raise ValueError(f"event-study coefficients missing at rel_time {missing}")
    if pretrend is None:
        terms = pre + post
        beta = result.coefficients.loc[terms].to_numpy(np.float64)
        sigma = result.cov.loc[terms, terms].to_numpy(np.float64)
    else:
        beta = np.concatenate(
            [
                pretrend.coefficients.loc[pre].to_numpy(np.float64),
                result.coefficients.loc[post].to_numpy(np.float64),
            ]
        )
        sigma = joint_covariance(pretrend, pre, result, post)
    return EventCoefficients(
        beta=beta, sigma=sigma, n_pre=len(pre), n_post=len(post), reference=ref
    )


# --------------------------------------------------------------------------------------
# relative magnitudes
# --------------------------------------------------------------------------------------


def _critical(alpha: float, df: int | None) -> float:
    """Two-sided critical value: ``t(df)`` when ``df`` is given, else normal."""
    q = 1 - alpha / 2
    return float(stats.t.ppf(q, df) if df else stats.norm.ppf(q))


def _pre_changes(coef: EventCoefficients) -> tuple[np.ndarray, np.ndarray]:
    """Month-to-month changes of the pre-period coefficients (up to ``delta_0 = 0``)."""
    n = coef.n_pre
    a = np.zeros((n, len(coef.beta)))
    for j in range(n):  # change from period j - n to j - n + 1 (the last one ends at 0)
        a[j, j] = -1.0
        if j + 1 < n:
            a[j, j + 1] = 1.0
    diff = a @ coef.beta
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", a, coef.sigma, a), 0.0))
    return diff, se


def _rm_parts(coef: EventCoefficients, rel_time: int, alpha: float, df):
    """Estimate, its se, the two critical values and ``D_up`` of the RM interval."""
    k = coef.period(rel_time)
    pos = coef.n_pre + k - 1
    b, se = float(coef.beta[pos]), float(np.sqrt(coef.sigma[pos, pos]))
    a1 = alpha * RM_FIRST_STAGE_SHARE
    diff, dse = _pre_changes(coef)
    c = _critical(a1 / coef.n_pre, df)
    d_up = float(np.max(np.abs(diff) + c * dse))
    return k, b, se, _critical(alpha, df), _critical(alpha - a1, df), d_up


def bonferroni_rm_ci(
    coef: EventCoefficients, rel_time: int, mbar: float, *, alpha: float = 0.05, df=None
) -> tuple[float, float]:
    """Bonferroni interval for ``tau`` at ``rel_time`` under ``Delta^RM(mbar)`` (fallback)."""
    if mbar < 0:
        raise ValueError(f"mbar must be non-negative, got {mbar}")
    k, b, se, z0, z2, d_up = _rm_parts(coef, rel_time, alpha, df)
    half = z0 * se if mbar == 0 else z2 * se + k * mbar * d_up
    return b - half, b + half


def bonferroni_rm_breakdown(
    coef: EventCoefficients, rel_time: int, *, alpha: float = 0.05, df=None
) -> float:
    """Smallest ``Mbar`` whose Bonferroni interval includes zero (0 when the first does).

    Closed form: ``(|beta_k_hat| - z se_k) / (k D_up)``.
    """
    k, b, se, z0, z2, d_up = _rm_parts(coef, rel_time, alpha, df)
    gap = abs(b) - z2 * se
    if abs(b) <= z0 * se or gap <= 0:
        return 0.0
    return float(gap / (k * d_up))


def relative_magnitudes_ci(
    coef: EventCoefficients, rel_time: int, mbar: float, *, alpha: float = 0.05
) -> tuple[float, float]:
    """C-LF hybrid interval for ``tau`` at ``rel_time`` under ``Delta^RM(mbar)``.

    See :mod:`leapresearch.estimation.relative_magnitudes`.

    Raises
    ------
    ValueError
        Fewer than two post-period months (the package's no-nuisance test is not
        implemented), or ``mbar < 0``.
    FloatingPointError
        A moment without variance.
    """
    if mbar < 0:
        raise ValueError(f"mbar must be non-negative, got {mbar}")
    return rm_hybrid.hybrid_ci(
        coef.beta, coef.sigma, coef.n_pre, coef.n_post, coef.period(rel_time), mbar, alpha=alpha
    )


def relative_magnitudes_breakdown(
    coef: EventCoefficients, rel_time: int, *, alpha: float = 0.05, atol: float = 1e-4
) -> float:
    """Smallest ``Mbar`` whose C-LF interval includes zero (0 when ``Mbar = 0``'s does).

    "Includes zero": the test accepts ``theta = 0``, or accepts values of the package's
    grid on both sides of it (:func:`~leapresearch.estimation.relative_magnitudes.covers_zero`).
    Bracketed by doubling from 1, then bisected to ``atol``; the upper end is returned
    (``inf`` beyond ``Mbar = 1024``).
    """

    def covers(mbar: float) -> bool:
        k = coef.period(rel_time)
        return rm_hybrid.covers_zero(
            coef.beta, coef.sigma, coef.n_pre, coef.n_post, k, mbar, alpha=alpha
        )

    if covers(0.0):
        return 0.0
    hi = 1.0
    while not covers(hi):
        hi *= 2
        if hi > 1024:
            return float("inf")
    lo = 0.0 if hi == 1.0 else hi / 2
    while hi - lo > atol:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if covers(mid) else (mid, hi)
    return hi


def _rm_rows(
    coef: EventCoefficients,
    rel_time: int,
    mbar: Sequence[float],
    *,
    alpha: float,
    df,
    estimate: float,
    n_treated: int,
) -> list[tuple]:
    """Relative-magnitudes rows of one month: C-LF, or Bonferroni when it cannot be had.

    The hybrid needs at least two post-period months and moments with variance; when it
    raises, the month's rows are the Bonferroni projection, labelled so in ``inference``.
    """
    try:
        brk = relative_magnitudes_breakdown(coef, rel_time, alpha=alpha)
        cis = [relative_magnitudes_ci(coef, rel_time, float(b), alpha=alpha) for b in mbar]
        how = "C-LF"
    except (ValueError, FloatingPointError, RuntimeError):
        brk = bonferroni_rm_breakdown(coef, rel_time, alpha=alpha, df=df)
        cis = [bonferroni_rm_ci(coef, rel_time, float(b), alpha=alpha, df=df) for b in mbar]
        how = "Bonferroni"
    return [
        (rel_time, "relative_magnitudes", how, float(b), estimate, lo, hi, brk, n_treated)
        for b, (lo, hi) in zip(mbar, cis, strict=True)
    ]


# --------------------------------------------------------------------------------------
# smoothness: fixed-length confidence interval
# --------------------------------------------------------------------------------------


def _second_difference_basis(n_pre: int, n_post: int) -> np.ndarray:
    """``G^{-1}``: ``delta = G^{-1} (u, s)`` with ``u`` second differences, ``s`` slope.

    Column ``n - 1`` (the slope) is the linear trend ``delta_t = t``.
    """
    times = np.r_[np.arange(-n_pre, 0), np.arange(1, n_post + 1)]
    n = times.size
    full = np.r_[np.arange(-n_pre, n_post + 1)]  # with period 0
    pos = {int(t): i for i, t in enumerate(times)}
    g = np.zeros((n, n))
    for row, center in enumerate(full[1:-1]):
        for t, c in ((center - 1, 1.0), (center, -2.0), (center + 1, 1.0)):
            if t != 0:
                g[row, pos[int(t)]] += c
    g[n - 1, pos[1]] = 1.0  # slope delta_1 - delta_0
    return np.linalg.inv(g)


def cv_folded_normal(bias: float, alpha: float) -> float:
    """The ``1 - alpha`` quantile of ``|N(bias, 1)|``."""
    b = abs(float(bias))
    if b > 40:  # the lower tail is negligible
        return b + float(stats.norm.ppf(1 - alpha))

    def excess(c: float) -> float:
        return special.ndtr(c - b) - special.ndtr(-c - b) - (1 - alpha)

    return float(optimize.brentq(excess, 0.0, b + 10.0, xtol=1e-12))


def _flci_problem(coef: EventCoefficients, rel_time: int):
    """Linear pieces of the FLCI for ``tau`` at ``rel_time``: ``bias = M ||C w + c0||_1``."""
    ginv = _second_difference_basis(coef.n_pre, coef.n_post)
    n, n_pre = len(coef.beta), coef.n_pre
    ell = np.zeros(n)
    ell[n_pre + coef.period(rel_time) - 1] = 1.0
    # v = (-w, l_post): v' G^{-1} = -w' G^{-1}_pre + l' G^{-1}
    c_mat = -ginv[:n_pre].T  # (n, n_pre): coefficient of w on (u, s)
    c0 = ginv.T @ ell
    return ell, c_mat[:-1], c0[:-1], c_mat[-1], c0[-1]


def _gls_weights(coef: EventCoefficients, ell: np.ndarray, a: np.ndarray, b0: float):
    """Pre-period weights of least variance with no bias from a linear trend (``M = 0``)."""
    n_pre = coef.n_pre
    s = coef.sigma
    s_pp, s_pl = s[:n_pre, :n_pre], s[:n_pre] @ ell
    # minimise w' S_pp w - 2 w' S_pl  s.t.  a' w + b0 = 0   (variance of l'b - w'b_pre)
    kkt = np.block([[2 * s_pp, a[:, None]], [a[None, :], np.zeros((1, 1))]])
    rhs = np.r_[2 * s_pl, -b0]
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n_pre]


@dataclass(frozen=True)
class _Flci:
    """The FLCI problem in the pre-period weights ``w`` (see :func:`_flci_problem`).

    ``variance(w) = w' s_pp w - 2 w' s_pl + s_ll``; bias ``M ||c_mat w + c0||_1``;
    linear-trend constraint ``a' w + b0 = 0``.
    """

    s_pp: np.ndarray
    s_pl: np.ndarray
    s_ll: float
    c_mat: np.ndarray
    c0: np.ndarray
    a: np.ndarray
    b0: float

    def variance(self, w: np.ndarray) -> float:
        return float(max(w @ self.s_pp @ w - 2 * w @ self.s_pl + self.s_ll, 1e-300))

    def l1(self, w: np.ndarray) -> float:
        return float(np.abs(self.c_mat @ w + self.c0).sum())


def _least_l1_weights(p: _Flci) -> np.ndarray:
    """Weights of least worst-case bias (linear programme, HiGHS)."""
    k, n = p.c_mat.shape
    # variables (w, t): min sum t  s.t.  -t <= C w + c0 <= t,  a'w = -b0
    cost = np.r_[np.zeros(n), np.ones(k)]
    a_ub = np.block([[p.c_mat, -np.eye(k)], [-p.c_mat, -np.eye(k)]])
    b_ub = np.r_[-p.c0, p.c0]
    a_eq = np.r_[p.a, np.zeros(k)][None, :]
    fit = optimize.linprog(
        cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[-p.b0],
        bounds=[(None, None)] * n + [(0, None)] * k, method="highs",
    )  # fmt: skip
    if fit.status != 0:
        raise RuntimeError(f"least-bias linear programme failed: {fit.message}")
    return fit.x[:n]


def _kkt_multipliers_exist(grad: np.ndarray, cons: np.ndarray) -> bool:
    """Whether ``grad + cons' mult = 0`` has ``mult = (mu, nu, lam)``, ``|nu| <= lam``.

    ``mu`` (linear trend) is free, ``nu`` are the bias terms at zero and ``lam >= 0`` the
    multiplier of the L1 budget: the KKT conditions of the L1-constrained programme
    (a feasibility linear programme, so degenerate vertices are handled).
    """
    k = cons.shape[0]
    scale = max(float(np.abs(grad).max()), 1e-300)
    n_zero = k - 2
    a_ub = np.zeros((2 * n_zero, k))
    for i in range(n_zero):
        a_ub[2 * i, [1 + i, k - 1]] = (1.0, -1.0)
        a_ub[2 * i + 1, [1 + i, k - 1]] = (-1.0, -1.0)
    fit = optimize.linprog(
        np.zeros(k), A_ub=a_ub if n_zero else None, b_ub=np.zeros(2 * n_zero) if n_zero else None,
        A_eq=cons.T, b_eq=-grad / scale, bounds=[(None, None)] * (k - 1) + [(0, None)],
        method="highs",
    )  # fmt: skip
    return fit.status == 0


def _polish(p: _Flci, w: np.ndarray, budget: float, tol: float = 1e-7):
    """Exact solution on the active set of an approximate one (``None`` if it is not optimal).

    With ``Z`` the bias terms at zero and ``s`` the signs of the others, the optimum solves
    the linear KKT system of ``min variance  s.t.  a'w = -b0, C_Z w = -c0_Z,
    s'(C w + c0)_{not Z} = budget``; it is kept only when it is optimal for the L1 problem
    (signs unchanged, multiplier of the budget >= 0, subgradients of ``Z`` in [-1, 1]).
    """
    r = p.c_mat @ w + p.c0
    zero = np.abs(r) <= tol * max(1.0, np.abs(r).max())
    sign = np.where(zero, 0.0, np.sign(r))
    n = w.size
    rows = [p.a[None, :], p.c_mat[zero], (sign @ p.c_mat)[None, :]]
    rhs = np.r_[-p.b0, -p.c0[zero], budget - sign @ p.c0]
    cons = np.vstack(rows)
    kkt = np.block([[2 * p.s_pp, cons.T], [cons, np.zeros((len(cons), len(cons)))]])
    sol = np.linalg.lstsq(kkt, np.r_[2 * p.s_pl, rhs], rcond=None)[0]
    w_new = sol[:n]
    r_new = p.c_mat @ w_new + p.c0
    ok = np.allclose(cons @ w_new, rhs, atol=1e-10 * max(1.0, budget)) and np.all(
        sign[~zero] * r_new[~zero] >= -1e-12
    )
    if not ok:
        return None
    # The multipliers of the linear system are a certificate when they are admissible
    # (``|nu| <= lam``, ``lam >= 0``); if not (e.g. a degenerate vertex, where they are not
    # unique), a feasibility linear programme looks for admissible ones.
    grad = 2 * (p.s_pp @ w_new - p.s_pl)
    mult = sol[n:]
    lam, nu = mult[-1], mult[1:-1]
    slack = 1e-9 * max(1.0, float(np.abs(mult).max()))
    stationary = np.allclose(grad + cons.T @ mult, 0.0, atol=1e-9 * max(1e-300, np.abs(grad).max()))
    if stationary and lam >= -slack and np.all(np.abs(nu) <= lam + slack):
        return w_new
    return w_new if _kkt_multipliers_exist(grad, cons) else None


def _min_variance_weights(p: _Flci, budget: float, start: np.ndarray) -> np.ndarray:
    """Least-variance weights with ``||C w + c0||_1 <= budget`` (convex QP).

    Solved by SLSQP on the smooth epigraph form ``t >= |C w + c0|, sum t <= budget`` from
    a feasible start, then polished to the exact optimum of its active set
    (:func:`_polish`).

    Raises
    ------
    RuntimeError
        The solver fails and the polished point is not optimal.
    """
    k, n = p.c_mat.shape
    eye = np.eye(k)
    cons = [
        {"type": "eq", "fun": lambda x: np.array([p.a @ x[:n] + p.b0]),
         "jac": lambda x: np.r_[p.a, np.zeros(k)][None, :]},
        {"type": "ineq", "fun": lambda x: x[n:] - (p.c_mat @ x[:n] + p.c0),
         "jac": lambda x: np.hstack([-p.c_mat, eye])},
        {"type": "ineq", "fun": lambda x: x[n:] + (p.c_mat @ x[:n] + p.c0),
         "jac": lambda x: np.hstack([p.c_mat, eye])},
        {"type": "ineq", "fun": lambda x: np.array([budget - x[n:].sum()]),
         "jac": lambda x: np.r_[np.zeros(n), -np.ones(k)][None, :]},
    ]  # fmt: skip
    scale = p.variance(start)

    def fun(x):
        w = x[:n]
        return (w @ p.s_pp @ w - 2 * w @ p.s_pl) / scale

    def jac(x):
        return np.r_[2 * (p.s_pp @ x[:n] - p.s_pl), np.zeros(k)] / scale

    x0 = np.r_[start, np.abs(p.c_mat @ start + p.c0)]
    fit = optimize.minimize(
        fun, x0, jac=jac, method="SLSQP", constraints=cons,
        options={"ftol": 1e-15, "maxiter": 1000},
    )  # fmt: skip
    polished = _polish(p, fit.x[:n], budget)
    if polished is not None:
        return polished
    raise RuntimeError(f"FLCI variance programme not solved at budget {budget}: {fit.message}")


class _FlciPath:
    """The least-variance weights of one FLCI problem along the L1 budget ``b``.

    The optimum is piecewise linear in ``b`` with a constant active set on each piece, so
    an optimum already found is tried first (:func:`_polish` on its active set, exact
    and KKT-checked) from the solved budgets nearest to ``b``; SLSQP runs only when
    neither is optimal. Every solved budget is kept, so the scalar searches of different
    ``M`` (and the breakdown's bisection) share their work.
    """

    def __init__(self, p: _Flci, ell: np.ndarray, w0: np.ndarray) -> None:
        self.p, self.ell, self.w0 = p, ell, w0
        self.w_lp = _least_l1_weights(p)
        self.b_lo, self.b_hi = p.l1(self.w_lp), p.l1(w0)
        self.solved: dict[float, np.ndarray] = {}

    def weights(self, b: float) -> np.ndarray:
        if b >= self.b_hi:
            return self.w0
        if b in self.solved:
            return self.solved[b]
        known = sorted(self.solved)
        at = int(np.searchsorted(known, b))
        w = None
        for near in sorted(known[max(at - 1, 0) : at + 1], key=lambda k: abs(k - b)):
            w = _polish(self.p, self.solved[near], b)
            if w is not None:
                break
        if w is None:
            lam = (b - self.b_lo) / (self.b_hi - self.b_lo)  # convex combination: feasible
            w = _min_variance_weights(self.p, b, self.w_lp + lam * (self.w0 - self.w_lp))
        self.solved[b] = w
        return w


_PATHS: dict[bytes, _FlciPath] = {}
_PATHS_KEPT = 64


def _flci_path(coef: EventCoefficients, rel_time: int) -> _FlciPath:
    """The :class:`_FlciPath` of ``tau`` at ``rel_time`` (kept for the same coefficients)."""
    key = hashlib.sha256(
        np.ascontiguousarray(coef.beta, dtype=np.float64).tobytes()
        + np.ascontiguousarray(coef.sigma, dtype=np.float64).tobytes()
        + np.array([coef.n_pre, coef.n_post, coef.period(rel_time)], dtype=np.int64).tobytes()
    ).digest()
    if key not in _PATHS:
        if len(_PATHS) >= _PATHS_KEPT:
            _PATHS.clear()
        ell, c_mat, c0, a, b0 = _flci_problem(coef, rel_time)
        n_pre, s = coef.n_pre, coef.sigma
        prob = _Flci(
            s_pp=s[:n_pre, :n_pre], s_pl=s[:n_pre] @ ell, s_ll=float(ell @ s @ ell),
            c_mat=c_mat, c0=c0, a=a, b0=float(b0),
        )  # fmt: skip
        _PATHS[key] = _FlciPath(prob, ell, _gls_weights(coef, ell, a, b0))
    return _PATHS[key]


def _flci_weights(path: _FlciPath, m: float, alpha: float) -> np.ndarray:
    """Pre-period weights minimising the FLCI half-length ``h cv_alpha(M b / h)``.

    For an L1 budget ``b`` (worst-case bias ``M b``) the least sd is ``h(b)``
    (:func:`_min_variance_weights`); the half-length is minimised over ``b`` between
    the least achievable ``b`` and that of the GLS weights ``w0`` (beyond which the sd
    no longer falls) by a bounded scalar search (the optimal half-length is unimodal in
    ``b``), as ``HonestDiD`` does over ``h``.
    """
    p, b_lo, b_hi = path.p, path.b_lo, path.b_hi
    if b_hi - b_lo <= 1e-12 * max(1.0, b_hi):
        return path.w0

    def half(b: float) -> float:
        w = path.weights(b)
        h = np.sqrt(p.variance(w))
        return h * cv_folded_normal(m * p.l1(w) / h, alpha)

    fit = optimize.minimize_scalar(
        half, bounds=(b_lo, b_hi), method="bounded", options={"xatol": 1e-12 * b_hi}
    )
    best = min((float(fit.x), b_lo, b_hi), key=half)
    return path.weights(best)


def smoothness_ci(
    coef: EventCoefficients, rel_time: int, m: float, *, alpha: float = 0.05
) -> tuple[float, float]:
    """Optimal FLCI for ``tau`` at ``rel_time`` under ``Delta^SD(m)`` (module docstring).

    Raises
    ------
    RuntimeError
        The optimisation is not solved (no other method's interval is substituted).
    """
    path = _flci_path(coef, rel_time)
    prob = path.p
    w = _flci_weights(path, m, alpha) if m > 0 else path.w0
    bias = m * prob.l1(w)
    h = np.sqrt(prob.variance(w))
    centre = float(path.ell @ coef.beta - w @ coef.beta[: coef.n_pre])
    length = h * cv_folded_normal(bias / h, alpha)
    return centre - length, centre + length


def smoothness_breakdown(
    coef: EventCoefficients, rel_time: int, *, alpha: float = 0.05, rtol: float = 1e-2
) -> float:
    """Smallest ``M`` whose FLCI includes zero (bisection; 0 when ``M = 0`` already does)."""

    def covers(m: float) -> bool:
        lo, hi = smoothness_ci(coef, rel_time, m, alpha=alpha)
        return lo <= 0 <= hi

    if covers(0.0):
        return 0.0
    hi = 1.0
    while not covers(hi):
        hi *= 4
        if hi > 1e6:
            return float("inf")
    lo = 0.0
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if covers(mid) else (mid, hi)
    return hi


# --------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------


def _smoothness_rows(
    coef: EventCoefficients,
    rel_time: int,
    m: Sequence[float],
    *,
    alpha: float,
    estimate: float,
    n_treated: int,
) -> list[tuple]:
    """Smoothness rows of one month; empty intervals when the programme cannot be solved.

    On very small or degenerate event studies the FLCI programme can fail its optimality
    check (:func:`smoothness_ci` raises rather than report another method's interval);
    the month's smoothness rows are then left empty (not computable), and the run goes on.
    """
    try:
        brk = smoothness_breakdown(coef, rel_time, alpha=alpha)
        cis = [smoothness_ci(coef, rel_time, float(b), alpha=alpha) for b in m]
    except RuntimeError:
        brk, cis = np.nan, [(np.nan, np.nan)] * len(m)
    return [
        (rel_time, "smoothness", "FLCI", float(b), estimate, lo, hi, brk, n_treated)
        for b, (lo, hi) in zip(m, cis, strict=True)
    ]


def sensitivity_bounds(
    result,
    *,
    rel_times: Sequence[int],
    mbar: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
    m: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    alpha: float = 0.05,
    pretrend=None,
) -> pd.DataFrame:
    """Rambachan-Roth intervals and breakdown values of one event study.

    Parameters
    ----------
    result : EventStudyResult
        The fitted event study (coefficients and cluster-robust covariance).
    rel_times : sequence of int
        Post-period months to bound (the headline months).
    mbar, m : sequence of float
        Bounds of the relative-magnitudes and smoothness restrictions (``m`` in
        percentage points per month squared).
    alpha : float
        One minus the confidence level.
    pretrend : GroupFit, optional
        The group's fit on its untreated rows, whose pre-period coefficients bound the
        trend (:func:`coefficients_for_bounds`); default ``result``'s own.

    Returns
    -------
    DataFrame
        ``rel_time, method, inference, bound, estimate, ci_lower, ci_upper, breakdown,
        n_treated``; ``inference`` is ``C-LF`` or (fallback) ``Bonferroni`` for the
        relative magnitudes and ``FLCI`` for smoothness; ``breakdown`` is the smallest
        bound whose interval includes zero (the same on every row of a month and method;
        the relative-magnitudes one bisected to 1e-4). ``ci_lower``, ``ci_upper`` and ``breakdown``
        are rounded to :data:`SENSITIVITY_DECIMALS` decimals, far above the optimiser's
        tolerance (about 1e-9 relative), so that the table does not depend on last-bit
        noise of the inputs (row order, BLAS kernel); the smoothness breakdown is itself
        found by bisection to 1% of its value.

    Notes
    -----
    ``beta_r`` comes from the event study
    ``y_ist = a_is + g_st + sum_r beta_r Treated_i 1[rel_time = r] + e_ist``;
    the bounds are those of the module docstring, with ``theta = tau_r``.
    """
    targets = sorted(int(r) for r in rel_times if int(r) > result.reference)
    coef = coefficients_for_bounds(result, max_rel_time=max(targets), pretrend=pretrend)
    df = result.df_resid or None
    rows = []
    for r in targets:
        n_t = int(result.n_treated_by_rel_time.get(r, 0))
        est = float(result.coefficients.loc[r])
        rows += _rm_rows(coef, r, mbar, alpha=alpha, df=df, estimate=est, n_treated=n_t)
        rows += _smoothness_rows(coef, r, m, alpha=alpha, estimate=est, n_treated=n_t)
    table = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS[1:])
    rounded = ["ci_lower", "ci_upper", "breakdown"]
    table[rounded] = table[rounded].round(SENSITIVITY_DECIMALS) + 0.0  # no -0.0
    return table


NO_PRETREND_FIT = "no pre-trend fit"


def unbounded_rows(
    result, *, rel_times: Sequence[int], mbar: Sequence[float], m: Sequence[float]
) -> pd.DataFrame:
    """The rows of a group whose bounds cannot be computed, with the reason.

    The same rows as :func:`sensitivity_bounds` (each month, method and bound) with the
    estimate and the number of visited students, empty intervals and breakdown values, and
    ``inference`` :data:`NO_PRETREND_FIT`: the group's untreated rows gave no pre-trend
    fit, and its full fit's pre-period (whose coefficients also average post-visit
    effects) is not put in its place.
    """
    rows = []
    for r in sorted(int(r) for r in rel_times if int(r) > result.reference):
        est = float(result.coefficients.loc[r])
        n_t = int(result.n_treated_by_rel_time.get(r, 0))
        for method, bounds in zip(METHODS, (mbar, m), strict=True):
            rows += [
                (r, method, NO_PRETREND_FIT, float(b), est, np.nan, np.nan, np.nan, n_t)
                for b in bounds
            ]
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS[1:])


def sensitivity_table(
    results: dict,
    *,
    groups: Sequence[str],
    rel_times: Sequence[int],
    mbar: Sequence[float],
    m: Sequence[float],
    alpha: float = 0.05,
    pretrends: dict | None = None,
) -> pd.DataFrame:
    """:func:`sensitivity_bounds` for each group present in ``results`` (``sensitivity.csv``).

    ``pretrends``: each group's fit on its untreated rows, whose pre-period coefficients
    bound the trend. A group of ``results`` without one (its untreated rows could not be
    fitted) is not bounded by its own event study's pre-period instead: its rows are
    :func:`unbounded_rows`, and the other groups keep their bounds.
    """
    tables = []
    for g in groups:
        if g not in results:
            continue
        if pretrends is not None and pretrends.get(g) is None:
            tab = unbounded_rows(results[g], rel_times=rel_times, mbar=mbar, m=m)
        else:
            tab = sensitivity_bounds(
                results[g],
                rel_times=rel_times,
                mbar=mbar,
                m=m,
                alpha=alpha,
                pretrend=None if pretrends is None else pretrends[g],
            )
        tables.append(tab.assign(group=g))
    if not tables:
        return pd.DataFrame(columns=SENSITIVITY_COLUMNS)
    return pd.concat(tables, ignore_index=True)[SENSITIVITY_COLUMNS]
