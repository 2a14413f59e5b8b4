"""Propensity-score nearest-neighbour matching of visited students in a stacked design.

Visited students were selected because their recent attendance was low, so part of
their later recovery is regression to the mean. Each visited (treated) student is
compared with never-visited students who looked alike before the visit: in the same
*stack* (the treated student's event month, whose candidates all take that event month),
the same district and the same grade band, and with a similar estimated propensity to be
visited given the pre-period attendance trajectory and demographics.

The module follows the conventions of R's *MatchIt* (``matchit(method = "nearest")``):

* the distance is the linear propensity score (logit) of a logistic regression of
  ``treated`` on the covariates (:func:`propensity_scores`);
* matching is k:1 nearest-neighbour on the logit *within exact strata*, optionally with a
  caliper expressed in standard deviations of the distance measure (MatchIt's
  ``std.caliper = TRUE``: ``caliper * sd(distance)`` over all non-discarded units);
* with replacement each treated student independently takes its ``k`` nearest
  comparisons **and every comparison tied with the k-th nearest** (Abadie and Imbens
  2006; Stata's ``teffects nnmatch``), so that no id or row order decides among equally
  distant comparisons; without replacement matching is greedy in ``m_order`` order, one
  match per treated student per round (all first matches, then all second matches, ...),
  as MatchIt's ``nearest`` does, and seeded ties make it depend on the ids;
* weights target the ATT: treated 1, a comparison gets the sum over the treated students
  it serves of ``1 / k_i`` (MatchIt's "How Matching Weights Are Computed", before its
  ``normalize`` rescaling), ``k_i`` counting the kept ties.

Exact ties are exact on every machine: the propensity fit sees its rows in an order set
by their values, rows with identical covariates share one score bit for bit, separation
is decided by a linear program, and scores are compared as integers on a grid of
``1e-9`` (:data:`PSCORE_DECIMALS`), so a distance, a tie and the caliper do not depend on
the BLAS kernel (the only exception: a score within about ``1e-16`` of a grid point).

Everything is vectorised over students; Python loops run over fit groups (stacks),
columns, Newton iterations, matching slots (``1 .. ratio``) and greedy rounds only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit

MOrder = Literal["largest", "smallest", "random", "closest", "farthest"]
"""Order in which treated students are matched without replacement (MatchIt's ``m.order``)."""

CaliperScale = Literal["sd_logit"]
"""Unit of the caliper: standard deviations of the logit over all candidate rows."""

UnmatchedReason = Literal[
    "no_comparisons_in_stratum",
    "missing_pscore",
    "outside_caliper",
    "comparisons_exhausted",
]
"""Why a treated student received no match."""

M_ORDERS: tuple[str, ...] = get_args(MOrder)
CALIPER_SCALES: tuple[str, ...] = get_args(CaliperScale)
UNMATCHED_REASONS: tuple[str, ...] = get_args(UnmatchedReason)

DEFAULT_EXACT: tuple[str, ...] = ("stack", "district", "grade_band")
DEFAULT_FIXED_EFFECTS: tuple[str, ...] = ("district", "grade_band")

RIDGE_FALLBACK: float = 1.0
"""Ridge penalty of the fallback fit (on the summed log-likelihood, standardised scale)."""

PSCORE_DECIMALS: int = 9
"""Decimals of the linear propensity score kept for matching (the grid of distances).

The fitted logit moves in its last bits with the BLAS kernel; matching compares scores
on this fixed grid, as exact integers, so that ties and the caliper are decided alike on
every machine (up to a score falling within 1e-16 of a grid boundary)."""

_SEPARATION_LP_TOL: float = 1e-7
"""Optimum of the separation linear program per row above which the data are separated."""

_ALIAS_TOL: float = 1e-9
"""Columns whose 1 - R^2 on the preceding columns is below this are aliased and dropped."""


class PropensityFitWarning(UserWarning):
    """The maximum-likelihood logit did not converge or separated; a ridge fit was used."""


@dataclass(frozen=True)
class MatchResult:
    """Result of nearest-neighbour matching in a stacked design.

    Attributes
    ----------
    matched : pandas.DataFrame
        One row per ``(stack, student)`` in the matched sample with columns ``stack``,
        ``student``, ``treated``, ``weight``, ``n_matches`` and ``pscore``. ``weight`` is
        MatchIt's ATT matching weight *before* its ``normalize`` rescaling: 1 for a matched
        treated student and ``sum(1 / k_i)`` over the treated students ``i`` a comparison
        serves (``k_i`` = number of matches of treated ``i``). Within every stack the
        comparison weights therefore sum to the number of matched treated students, and each
        treated student counts once. ``n_matches`` is ``k_i`` for treated rows and the number
        of treated students served for comparison rows.
    pairs : pandas.DataFrame
        One row per (treated, comparison) pair: ``stack``, ``treated_student``,
        ``comparison_student``, ``distance`` (absolute logit difference) and ``rank``
        (1 = nearest).
    unmatched : pandas.DataFrame
        Treated students without any match: ``stack``, ``student``, the other exact-match
        columns, and ``reason`` (categorical over :data:`UNMATCHED_REASONS`):
        ``no_comparisons_in_stratum`` (no comparison row with a finite score shares the
        exact-match values), ``missing_pscore`` (the student's own score is NaN),
        ``outside_caliper`` (no comparison of the stratum within the caliper) or
        ``comparisons_exhausted`` (without replacement: comparisons within the caliper
        existed but were all taken by treated students matched earlier).
    pscore : pandas.Series
        Linear propensity score (logit) of every candidate row, aligned with the
        candidates' index (NaN where not estimable).
    summary : pandas.DataFrame
        Per stack: ``n_treated``, ``n_matched``, ``n_unmatched``, ``n_comparisons``
        (distinct comparison students matched), ``n_comparison_rows`` (matched pairs, i.e.
        comparison uses counted with multiplicity) and ``n_candidates`` (comparison
        candidate rows available).
    caliper_logit : float
        Caliper in logit units actually used (``inf`` when no caliper).
    settings : dict
        Options and derived quantities (``sd_logit``, ``estimand``, ...).
    """

    matched: pd.DataFrame
    pairs: pd.DataFrame
    unmatched: pd.DataFrame
    pscore: pd.Series
    summary: pd.DataFrame
    caliper_logit: float
    settings: dict[str, Any]


# --------------------------------------------------------------------------------------
# propensity scores
# --------------------------------------------------------------------------------------


def propensity_scores(
    candidates: pd.DataFrame,
    *,
    covariates: Sequence[str],
    by: Sequence[str] = ("stack",),
    fixed_effects: Sequence[str] = DEFAULT_FIXED_EFFECTS,
) -> pd.Series:
    r"""Estimate the linear propensity score (logit) of every candidate row.

    A logistic regression of ``treated`` on ``covariates`` plus dummies of each
    ``fixed_effects`` column (first level dropped) is fitted separately within every
    combination of ``by``; the result is its linear predictor, rounded to
    :data:`PSCORE_DECIMALS` decimals, the same for rows with identical covariates.

    Parameters
    ----------
    candidates : pandas.DataFrame
        One row per (stack, student) candidate with a boolean ``treated`` column, the
        numeric ``covariates`` (no missing values) and the ``by`` and ``fixed_effects``
        columns.
    covariates : sequence of str
        Numeric covariate columns.
    by : sequence of str, default ("stack",)
        Columns defining separate fits.
    fixed_effects : sequence of str, default ("district", "grade_band")
        Categorical columns entered as additive dummies.

    Returns
    -------
    pandas.Series
        ``pscore`` aligned with ``candidates.index``. ``attrs["fit_diagnostics"]`` holds one
        dict per fit group (rows used, columns dropped, method, convergence).

    Raises
    ------
    ValueError
        If a column is missing, a covariate is non-numeric or has missing values, or
        ``treated`` is not boolean/0-1.

    Warns
    -----
    PropensityFitWarning
        When the maximum-likelihood fit of a group does not converge or separates and the
        ridge fallback is used.

    Notes
    -----
    Within a fit group with rows :math:`i`, the model is

    .. math::

        \operatorname{logit} P(T_i = 1) = \eta_i = \alpha + z_i'\beta
            + \sum_f \gamma_{f, g_f(i)},

    where :math:`z_i` are the covariates standardised within the group and
    :math:`\gamma_{f,g}` the fixed effect of level :math:`g` of column :math:`f`
    (:math:`\gamma_{f,1} = 0`). It is fitted by Newton-Raphson with step halving, using
    the sparse structure of the dummies, until the relative change of the deviance is
    below :math:`10^{-10}` (R's ``glm`` criterion). Before fitting:

    * rows in a fixed-effect level containing only treated or only comparison rows are set
      aside (repeatedly, until stable): their maximum-likelihood fixed effect is
      :math:`\pm\infty`, they carry no information on :math:`\beta`, and their ``pscore``
      is NaN (they cannot be matched within an exact stratum anyway);
    * covariates constant within the group are dropped, and so are columns that are
      (numerically) linear combinations of earlier ones, covariates first in the order
      given, then the dummies (``1 - R^2 < 1e-9``, by a sequential Cholesky factorisation
      of their correlation matrix), as R's ``glm`` aliases them; the linear predictor does
      not depend on which aliased column is dropped.

    (Quasi-)separation, where the maximum-likelihood estimate does not exist, is decided
    by a linear program (:func:`_is_separated`), not from the iterates of a diverging fit.
    Separated groups and fits not converged in 50 steps warn and are refitted maximising
    :math:`\ell(\theta) - \tfrac{\lambda}{2}\lVert\theta_{-\alpha}\rVert^2`,
    :math:`\lambda = 1`, which always has a finite maximiser. A group with no treated or
    no comparison rows gets NaN. Rows are fitted in an order set by their values.
    """
    covariates = _as_names(covariates, "covariates")
    by = _as_names(by, "by")
    fixed_effects = _as_names(fixed_effects, "fixed_effects")
    _require_columns(candidates, ["treated", *covariates, *by, *fixed_effects])
    treated = _as_bool(candidates["treated"])
    cov_arrays = {c: _numeric_values(candidates, c) for c in covariates}
    fe_codes, fe_labels = [], []
    for f in fixed_effects:
        # sorted levels: the dummy columns do not depend on the order of the rows
        codes, uniques = pd.factorize(candidates[f], use_na_sentinel=False, sort=True)
        fe_codes.append(codes.astype(np.int64))
        fe_labels.append((f, np.asarray(uniques, dtype=object)))

    eta, diagnostics = _fit_groups(
        candidates, treated, cov_arrays, covariates, by, fe_codes, fe_labels
    )
    out = pd.Series(eta, index=candidates.index, name="pscore")
    out.attrs["fit_diagnostics"] = tuple(diagnostics)
    return out


def _fit_groups(
    candidates: pd.DataFrame,
    treated: np.ndarray,
    cov_arrays: dict[str, np.ndarray],
    covariates: tuple[str, ...],
    by: tuple[str, ...],
    fe_codes: list[np.ndarray],
    fe_labels: list[tuple[str, np.ndarray]],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Fit every ``by`` group (rows in canonical order); scores and diagnostics."""
    eta = np.full(len(candidates), np.nan)
    diagnostics: list[dict[str, Any]] = []
    groups = candidates.groupby(list(by), sort=True, observed=True, dropna=False).indices
    for key, rows in groups.items():
        cov_cols = [np.asarray(cov_arrays[c][rows], dtype=float) for c in covariates]
        for c, values in zip(covariates, cov_cols, strict=True):
            if not np.isfinite(values).all():
                raise ValueError(f"covariate {c!r} has missing or non-finite values")
        rows, first = _canonical_rows(
            np.asarray(rows, dtype=np.int64), treated, cov_arrays, covariates, fe_codes
        )
        eta_g, diag = _fit_group(
            treated[rows].astype(float),
            [np.asarray(cov_arrays[c][rows], dtype=float) for c in covariates],
            covariates,
            [codes[rows] for codes in fe_codes],
            fe_labels,
            group_label=f"{tuple(by)}={key!r}",
        )
        # identical covariate rows get the very same score (that of the first of them)
        eta[rows] = np.round(eta_g[first], PSCORE_DECIMALS)
        diagnostics.append({"group": key, **diag})
    return eta, diagnostics


def _canonical_rows(
    rows: np.ndarray,
    treated: np.ndarray,
    cov_arrays: dict[str, np.ndarray],
    covariates: Sequence[str],
    fe_codes: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a fit group in an order fixed by their values alone, and their patterns.

    Rows are sorted by fixed effects, covariates and ``treated`` (lexicographically), so
    the fit sees the same arrays whatever the order of the input rows or the student ids;
    rows tied on every key are identical, so their order cannot matter. ``first[i]`` is
    the position (in the sorted rows) of the first row with the same covariates and fixed
    effects as row ``i``: they share one linear predictor, bit for bit.
    """
    keys = [treated[rows]]
    keys += [np.asarray(cov_arrays[c][rows], dtype=float) for c in reversed(covariates)]
    keys += [codes[rows] for codes in reversed(fe_codes)]
    order = np.lexsort(keys)
    rows = rows[order]
    same = np.ones(max(rows.size - 1, 0), dtype=bool)
    for key in keys[1:]:
        k = key[order]
        same &= k[1:] == k[:-1]
    new_pattern = np.r_[True, ~same] if rows.size else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(new_pattern)
    first = starts[np.cumsum(new_pattern) - 1]
    return rows, first


def _fit_group(
    y: np.ndarray,
    cov_cols: list[np.ndarray],
    cov_names: Sequence[str],
    fe_codes: list[np.ndarray],
    fe_labels: list[tuple[str, np.ndarray]],
    *,
    group_label: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit one propensity model; return the linear predictor (NaN where not estimable)."""
    n = y.size
    eta = np.full(n, np.nan)
    active = _informative_rows(y, fe_codes)
    diag: dict[str, Any] = {
        "n_rows": int(n),
        "n_fit_rows": int(active.sum()),
        "n_treated": int(y[active].sum()),
        "dropped_columns": (),
        "method": "none",
        "converged": False,
        "n_iter": 0,
    }
    ya = y[active].astype(float)
    if ya.size == 0 or ya.min() == ya.max():
        return eta, diag
    # standardised covariates; constant ones dropped
    x = np.empty((ya.size, len(cov_cols)))
    for j, col in enumerate(cov_cols):  # loop over columns
        x[:, j] = col[active]
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    nonconst = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    dropped = [name for name, keep in zip(cov_names, nonconst, strict=True) if not keep]
    z = (x[:, nonconst] - mean[nonconst]) / sd[nonconst]
    z_names = [name for name, keep in zip(cov_names, nonconst, strict=True) if keep]
    # fixed-effect dummies (first level of each column dropped), sparse
    dummies, d_names = _dummies([codes[active] for codes in fe_codes], fe_labels)
    keep_z, keep_d = _non_aliased(z, dummies)
    dropped += [z_names[j] for j in np.flatnonzero(~keep_z)]
    dropped += [d_names[j] for j in np.flatnonzero(~keep_d)]
    design = np.ascontiguousarray(np.column_stack([np.ones(ya.size), z[:, keep_z]]))
    dmat = dummies[:, np.flatnonzero(keep_d)].tocsr() if dummies is not None else None
    if dmat is not None and dmat.shape[1] == 0:
        dmat = None

    method, converged, n_iter = "mle", True, 0
    separated = _one_column_separates(design, dmat, ya)
    if not separated:
        theta, converged, n_iter, eta_a = _logit_newton(design, dmat, ya, ridge=0.0)
        # a converged fit usually proves there is no separation; the linear program
        # decides the other groups (the same decision either way: _overlap_certified)
        if not (converged and _overlap_certified(design, dmat, ya, eta_a)):
            kept = np.flatnonzero(nonconst)[keep_z]
            columns = (
                tuple(z_names[j] for j in np.flatnonzero(keep_z)),
                tuple(d_names[j] for j in np.flatnonzero(keep_d)),
            )
            separated = _separated_remembering(
                design, dmat, ya, columns=columns, mean=mean[kept], sd=sd[kept]
            )
    if not converged or separated:
        problem = "did not converge" if not converged else "is (quasi-)separated"
        warnings.warn(
            f"propensity model for {group_label} {problem}; refitted with a ridge penalty "
            f"lambda={RIDGE_FALLBACK} on standardised coefficients",
            PropensityFitWarning,
            stacklevel=3,
        )
        theta, converged, n_iter, eta_a = _logit_newton(design, dmat, ya, ridge=RIDGE_FALLBACK)
        method = "ridge"
        if not converged:
            warnings.warn(
                f"ridge propensity model for {group_label} did not converge either",
                PropensityFitWarning,
                stacklevel=3,
            )
    eta[active] = eta_a
    diag.update(dropped_columns=tuple(dropped), method=method, converged=converged, n_iter=n_iter)
    return eta, diag


def _is_separated(design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray) -> bool:
    r"""Whether the classes are (quasi-)completely separated (Konis's linear program).

    The data are separated iff some :math:`\beta \ne 0` has :math:`s_i x_i'\beta \ge 0`
    for every row (:math:`s_i = \pm 1` for treated/comparison) with at least one strict
    inequality; then the maximum-likelihood estimate does not exist. The linear program
    maximises :math:`\sum_i s_i x_i'\beta` over that cone with :math:`|\beta_j| \le 1`:
    its optimum is 0 without separation and clearly positive with it, so the decision does
    not hinge on the last bits of an iterative fit (it is solved by HiGHS, no BLAS). A
    single column separating the classes (the common case: a dummy no treated row has;
    columns are never constant here) is recognised first by exact comparisons.
    """
    return _one_column_separates(design, dmat, y) or _program_separates(design, dmat, y)


def _program_separates(design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray) -> bool:
    """The linear program of :func:`_is_separated` (without its one-column shortcut)."""
    return _program_direction(design, dmat, y) is not None


_SEPARATING: dict[tuple, tuple[float, np.ndarray, np.ndarray]] = {}
"""Separating directions the program found, on the raw scale, by the names of the columns.

A run fits the propensity model of the same strata several times (the main matching, the
specifications that re-match): :func:`_separated_remembering` tries a direction found
before, checked exactly on the new rows, before solving the program again.
"""


def _separated_remembering(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    *,
    columns: tuple,
    mean: np.ndarray,
    sd: np.ndarray,
) -> bool:
    """:func:`_program_separates`, trying first a direction found before for ``columns``.

    ``design`` is ``[1, (x - mean) / sd]``. A direction is kept on the raw scale
    (``b0 + b'x + c'd``) and re-expressed on this group's standardisation, scaled into the
    program's box ``|beta_j| <= 1``. When it is feasible for these rows (within HiGHS's
    primal feasibility tolerance, 1e-7) and its objective exceeds the program's threshold,
    the program's optimum does too: the data are separated, the same decision the program
    would reach, and the program is not solved.
    """
    known = _SEPARATING.get(columns)
    if known is not None:
        b0, b, c = known
        beta = np.concatenate([[b0 + b @ mean], b * sd, c])
        beta /= max(float(np.abs(beta).max()), 1e-300)
        p = design.shape[1]
        margins = design @ beta[:p]
        if dmat is not None:
            margins = margins + dmat @ beta[p:]
        margins *= 2.0 * y - 1.0
        if margins.min() >= -1e-7 and margins.sum() > _SEPARATION_LP_TOL * y.size:
            return True
    beta = _program_direction(design, dmat, y)
    if beta is None:
        return False
    p = design.shape[1]
    b = beta[1:p] / sd
    if len(_SEPARATING) >= 256:
        _SEPARATING.clear()
    _SEPARATING[columns] = (float(beta[0] - b @ mean), b, beta[p:].copy())
    return True


def _program_direction(
    design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray
) -> np.ndarray | None:
    """The separating direction the program of :func:`_is_separated` finds (None: none)."""
    x = design if dmat is None else np.hstack([design, dmat.toarray()])
    s = 2.0 * y - 1.0
    sx = s[:, None] * x
    res = scipy.optimize.linprog(
        -sx.sum(axis=0),
        A_ub=-sx,
        b_ub=np.zeros(y.size),
        bounds=[(-1.0, 1.0)] * x.shape[1],
        method="highs",
    )
    if res.status == 0 and -res.fun > _SEPARATION_LP_TOL * y.size:
        return np.asarray(res.x, dtype=np.float64)
    return None


def _one_column_separates(design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray) -> bool:
    """Whether one column alone separates the classes (exact comparisons).

    The common case, e.g. a dummy that no treated row has: the maximum over one class is
    at most the minimum over the other.
    """
    x = design if dmat is None else np.hstack([design, dmat.toarray()])
    t, c = x[y == 1.0, 1:], x[y == 0.0, 1:]
    return bool(np.any(t.max(axis=0) <= c.min(axis=0)) or np.any(t.min(axis=0) >= c.max(axis=0)))


def _overlap_certified(
    design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray, eta: np.ndarray
) -> bool:
    r"""Whether a converged logistic fit proves the classes are not separated.

    With :math:`r_i = y_i - \operatorname{expit}(\eta_i)`, the weights
    :math:`w_i = |r_i| > 0` satisfy :math:`\sum_i w_i s_i x_i = X'r`, the score of the fit
    (Farkas's certificate that no separating direction exists when the score is 0). For
    every :math:`\beta` feasible in the linear program of :func:`_is_separated`
    (:math:`s_i x_i'\beta \ge 0`, :math:`|\beta_j| \le 1`),
    :math:`\min_i w_i \sum_i s_i x_i'\beta \le \sum_i w_i s_i x_i'\beta
    = r'X\beta \le \lVert X'r \rVert_1`, so the program's optimum is at most
    :math:`\lVert X'r \rVert_1 / \min_i w_i`. When that bound is below half the
    program's threshold, the program would find no separation, and it is not solved.
    """
    resid = y - expit(eta)
    w_min = float(np.abs(resid).min())
    if not w_min > 0.0:
        return False
    score = float(np.abs(design.T @ resid).sum())
    if dmat is not None:
        score += float(np.abs(dmat.T @ resid).sum())
    return score / w_min <= 0.5 * _SEPARATION_LP_TOL * y.size


def _informative_rows(y: np.ndarray, fe_codes: list[np.ndarray]) -> np.ndarray:
    """Rows outside fixed-effect levels that hold a single treatment class (iterated)."""
    active = np.ones(y.size, dtype=bool)
    changed = True
    while changed:
        changed = False
        for codes in fe_codes:
            size = codes.max() + 1 if codes.size else 0
            n_all = np.bincount(codes[active], minlength=size)
            n_t = np.bincount(codes[active], weights=y[active], minlength=size)
            bad = (n_t == 0) | (n_t == n_all)
            drop = active & bad[codes]
            if drop.any():
                active &= ~drop
                changed = True
    return active


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
) -> tuple[np.ndarray, bool, int, np.ndarray]:
    """Newton-Raphson logistic regression on ``[design | dmat]``; column 0 is unpenalised."""
    p = design.shape[1]
    g = 0 if dmat is None else dmat.shape[1]
    theta = np.zeros(p + g)
    ybar = y.mean()
    theta[0] = np.log(ybar / (1.0 - ybar))
    pen = np.full(p + g, ridge)
    pen[0] = 0.0

    def linear(th: np.ndarray) -> np.ndarray:
        out = design @ th[:p]
        if g:
            out = out + dmat @ th[p:]
        return out

    def objective(eta: np.ndarray, th: np.ndarray) -> float:
        dev = 2.0 * float(np.sum(np.logaddexp(0.0, eta)) - y @ eta)
        return dev + float(pen @ (th * th))

    eta = linear(theta)
    obj = objective(eta, theta)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count is reported
        mu = expit(eta)
        w = mu * (1.0 - mu)
        resid = y - mu
        grad = np.empty(p + g)
        grad[:p] = design.T @ resid
        hess = np.empty((p + g, p + g))
        root_w = design * np.sqrt(w)[:, None]
        hess[:p, :p] = root_w.T @ root_w  # numpy uses a symmetric rank-k update here
        if g:
            grad[p:] = dmat.T @ resid
            dmat_w = dmat.copy()  # rows scaled by w
            dmat_w.data = dmat.data * np.repeat(w, np.diff(dmat.indptr))
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


# --------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------


def nearest_neighbor_match(
    candidates: pd.DataFrame,
    pscore: pd.Series,
    *,
    exact: Sequence[str] = DEFAULT_EXACT,
    ratio: int = 3,
    caliper: float | None = 0.2,
    caliper_scale: CaliperScale = "sd_logit",
    replace: bool = True,
    m_order: MOrder = "largest",
    seed: int = 0,
) -> MatchResult:
    r"""Match every treated student to its ``ratio`` nearest comparisons on the logit.

    Parameters
    ----------
    candidates : pandas.DataFrame
        One row per (stack, student) candidate with ``stack`` and ``student`` (int64),
        boolean ``treated`` and the ``exact`` columns. ``(stack, student)`` must be unique.
    pscore : pandas.Series
        Linear propensity score of every candidate row, with the same index as
        ``candidates`` (e.g. from :func:`propensity_scores`). NaN rows cannot be matched.
    exact : sequence of str, default ("stack", "district", "grade_band")
        Exact-match columns; must include ``stack`` so comparisons take the treated
        student's event month.
    ratio : int, default 3
        Number ``k`` of comparisons per treated student (k:1 matching); with replacement,
        comparisons tied with the k-th nearest are all kept (see Notes).
    caliper : float or None, default 0.2
        Maximum logit distance in units of ``caliper_scale``; None for no caliper.
    caliper_scale : {"sd_logit"}, default "sd_logit"
        ``caliper_logit = caliper * sd(pscore)`` over all rows with a finite score (every
        stack), as MatchIt's ``std.caliper = TRUE``.
    replace : bool, default True
        Whether a comparison row may serve several treated students of its stack.
    m_order : {"largest", "smallest", "random", "closest", "farthest"}, default "largest"
        Greedy order without replacement (MatchIt's ``m.order``): by descending/ascending
        logit, seeded random, or ascending/descending distance to the nearest comparison.
    seed : int, default 0
        Seed of the order that breaks ties without replacement (unused with replacement,
        where ties are kept rather than broken).

    Returns
    -------
    MatchResult
        Matched sample, pairs, unmatched treated students with reasons, summary.

    Raises
    ------
    ValueError
        For missing columns, duplicate ``(stack, student)`` rows, ``stack`` missing from
        ``exact``, a misaligned ``pscore`` or an invalid option.

    Notes
    -----
    Scores are compared as integers :math:`q = \operatorname{round}(10^{9}\eta)`; with
    :math:`c = \lfloor 10^{9}\,\text{caliper} \cdot \operatorname{sd}(\eta) \rfloor`,
    comparison :math:`j` is eligible for treated :math:`i` if it shares every ``exact``
    value and :math:`|q_i - q_j| \le c`. With replacement, treated :math:`i` keeps every
    eligible :math:`j` with :math:`|q_i - q_j| \le d_{(k)}`, the distance of its
    :math:`k`-th nearest eligible comparison (all of them if fewer); ``rank`` is the
    competition rank of the distance. Without replacement: MatchIt's greedy algorithm,
    computed exactly in vectorised rounds. ATT weights: :math:`w_i = 1` for matched
    treated, :math:`w_j = \sum_{i \ni j} 1 / k_i` for comparisons, added in increasing
    order of the terms; within each stack :math:`\sum_j w_j` is the number of matched
    treated students.
    """
    exact, ratio = _check_match_options(
        candidates, pscore, exact, ratio, caliper, caliper_scale, m_order
    )
    r = _MatchRows.of(candidates, pscore, exact, caliper)
    if replace:
        found = _match_keeping_ties(
            r.grid.q, r.stratum, ~r.treated & r.finite, r.tv, ratio, r.grid.cal_q
        )
        exhausted = np.zeros(r.tv.size, dtype=bool)
    else:
        ties = _tie_keys(r.stack, r.student, seed)
        found, exhausted = _match_greedy(
            r.grid, r.stratum, r.treated, r.finite, r.tv, ratio, m_order, ties
        )
    options = {
        "exact": exact,
        "ratio": ratio,
        "ties": "all comparisons tied with the k-th nearest kept" if replace else "seeded",
        "caliper": caliper,
        "caliper_scale": caliper_scale,
        "sd_logit": r.grid.sd_logit,
        "replace": bool(replace),
        "m_order": m_order if not replace else None,
        "seed": seed if not replace else None,
    }
    return _assemble(candidates, pscore, r, found, exhausted, options)


@dataclass(frozen=True)
class _MatchRows:
    """Candidate rows as arrays: keys, scores on the grid, strata, matchable treated."""

    stack: np.ndarray
    student: np.ndarray
    treated: np.ndarray
    finite: np.ndarray
    grid: _ScoreGrid
    stratum: np.ndarray
    c_count: np.ndarray  # comparisons with a finite score per stratum
    t_rows: np.ndarray  # treated rows
    t_ok: np.ndarray  # treated rows that can be matched (finite score, comparisons)
    tv: np.ndarray  # t_rows[t_ok]

    @classmethod
    def of(
        cls, candidates: pd.DataFrame, pscore: pd.Series, exact: tuple[str, ...], caliper
    ) -> _MatchRows:
        stack = candidates["stack"].to_numpy(dtype=np.int64)
        student = candidates["student"].to_numpy(dtype=np.int64)
        treated = _as_bool(candidates["treated"])
        _check_unique_keys(stack, student)
        eta = pscore.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(eta)
        stratum = _group_codes(candidates, exact)
        n_strata = int(stratum.max()) + 1 if len(candidates) else 0
        c_count = np.bincount(stratum[~treated & finite], minlength=n_strata)
        t_rows = np.flatnonzero(treated)
        t_ok = finite[t_rows] & (c_count[stratum[t_rows]] > 0)
        grid = _ScoreGrid.of(eta, caliper)
        return cls(
            stack, student, treated, finite, grid, stratum, c_count, t_rows, t_ok, t_rows[t_ok]
        )


def _assemble(
    candidates: pd.DataFrame,
    pscore: pd.Series,
    r: _MatchRows,
    found: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    exhausted: np.ndarray,
    options: dict[str, Any],
) -> MatchResult:
    """The :class:`MatchResult` of the pairs found (positions in ``r.tv``, rows)."""
    p_t, p_c, p_dist, p_rank = found
    tv = r.tv
    k_i = np.bincount(p_t, minlength=tv.size)
    pairs = _pairs_table(r.stack[tv[p_t]], r.student[tv[p_t]], r.student[p_c], p_dist, p_rank)
    score = r.grid.q / 10.0**PSCORE_DECIMALS
    matched, in_sample = _matched_sample(r.stack, r.student, r.treated, score, tv, k_i, p_t, p_c)
    no_comp = r.c_count[r.stratum[r.t_rows]] == 0
    unmatched = _unmatched_table(candidates, options["exact"], r, no_comp, k_i == 0, exhausted)
    settings: dict[str, Any] = {
        **options,
        "n_candidates": len(candidates),
        "n_unique_comparison_students": int(np.unique(r.student[in_sample & ~r.treated]).size),
        **_FIXED_SETTINGS,
    }
    return MatchResult(
        matched=matched,
        pairs=pairs,
        unmatched=unmatched,
        pscore=pscore.rename("pscore"),
        summary=_summary(r.stack, r.treated, r.finite, in_sample, tv, k_i, tv[p_t]),
        caliper_logit=r.grid.caliper_logit,
        settings=settings,
    )


_FIXED_SETTINGS: dict[str, str] = {
    "estimand": "ATT",
    "distance": f"linear propensity score (logit), on a grid of 1e-{PSCORE_DECIMALS}",
    "weights": "treated 1; comparison sum of 1/k_i over treated served (not normalised)",
}


def _pairs_table(
    stack: np.ndarray,
    treated_student: np.ndarray,
    comparison_student: np.ndarray,
    dist_q: np.ndarray,
    rank: np.ndarray,
) -> pd.DataFrame:
    """The pairs of :class:`MatchResult` (distance back on the logit scale), sorted."""
    pairs = pd.DataFrame(
        {
            "stack": stack,
            "treated_student": treated_student,
            "comparison_student": comparison_student,
            "distance": dist_q.astype(float) / 10.0**PSCORE_DECIMALS,
            "rank": rank.astype(np.int64),
        }
    )
    return pairs.sort_values(
        ["stack", "treated_student", "rank", "comparison_student"], ignore_index=True
    )


def _check_match_options(
    candidates: pd.DataFrame,
    pscore: pd.Series,
    exact: Sequence[str],
    ratio: int,
    caliper: float | None,
    caliper_scale: str,
    m_order: str,
) -> tuple[tuple[str, ...], int]:
    """Validate the options of :func:`nearest_neighbor_match`; return ``exact`` and ``ratio``."""
    exact = _as_names(exact, "exact")
    if "stack" not in exact:
        raise ValueError(f"exact must include 'stack' (stacked design), got {exact!r}")
    _require_columns(candidates, ["stack", "student", "treated", *exact])
    if isinstance(ratio, bool) or not isinstance(ratio, int | np.integer) or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    if caliper is not None and not (np.isfinite(caliper) and caliper > 0):
        raise ValueError(f"caliper must be a positive number or None, got {caliper!r}")
    if caliper_scale not in CALIPER_SCALES:
        raise ValueError(f"caliper_scale must be one of {CALIPER_SCALES}, got {caliper_scale!r}")
    if m_order not in M_ORDERS:
        raise ValueError(f"m_order must be one of {M_ORDERS}, got {m_order!r}")
    if not isinstance(pscore, pd.Series) or not pscore.index.equals(candidates.index):
        raise ValueError(
            "pscore must be a pandas Series with the same index as candidates "
            f"(got {type(pscore).__name__} of length {len(pscore)})"
        )
    return exact, int(ratio)


@dataclass(frozen=True)
class _ScoreGrid:
    """Scores and caliper on the integer grid of :data:`PSCORE_DECIMALS` decimals."""

    q: np.ndarray  # round(eta * 10**PSCORE_DECIMALS) as int64 (0 where eta is NaN)
    cal_q: int  # caliper on the grid (int64 max without caliper)
    caliper_logit: float
    sd_logit: float

    @classmethod
    def of(cls, eta: np.ndarray, caliper: float | None) -> _ScoreGrid:
        finite = np.isfinite(eta)
        scale = 10.0**PSCORE_DECIMALS
        q = np.zeros(eta.size, dtype=np.int64)
        q[finite] = np.round(eta[finite] * scale).astype(np.int64)
        # sd over the sorted values: the same sum whatever the order of the rows
        values = np.sort(eta[finite])
        sd_logit = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
        if caliper is None:
            return cls(q, int(np.iinfo(np.int64).max), float("inf"), sd_logit)
        if not np.isfinite(sd_logit):
            raise ValueError("cannot scale the caliper: fewer than two finite propensity scores")
        caliper_logit = float(caliper) * sd_logit
        return cls(q, int(np.floor(caliper_logit * scale)), caliper_logit, sd_logit)


def _matched_sample(
    stack: np.ndarray,
    student: np.ndarray,
    treated: np.ndarray,
    score: np.ndarray,
    tv: np.ndarray,
    k_i: np.ndarray,
    p_t: np.ndarray,
    p_c: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Matched rows with their ATT weights; and the in-sample mask over candidate rows."""
    n = stack.size
    n_matches = np.zeros(n, dtype=np.int64)
    n_matches[tv] = k_i
    weight = np.zeros(n)
    weight[tv] = (k_i > 0).astype(float)
    inv_k = 1.0 / k_i[p_t]
    # add each comparison's terms in increasing order: a sum independent of row order
    order = np.lexsort((inv_k, p_c))
    weight += np.bincount(p_c[order], weights=inv_k[order], minlength=n)
    n_matches += np.bincount(p_c, minlength=n)
    in_sample = n_matches > 0
    matched = pd.DataFrame(
        {
            "stack": stack[in_sample],
            "student": student[in_sample],
            "treated": treated[in_sample],
            "weight": weight[in_sample],
            "n_matches": n_matches[in_sample],
            "pscore": score[in_sample],
        }
    )
    matched = matched.sort_values(
        ["stack", "treated", "student"], ascending=[True, False, True], ignore_index=True
    )
    return matched, in_sample


def _unmatched_table(
    candidates: pd.DataFrame,
    exact: Sequence[str],
    r: _MatchRows,
    no_comp: np.ndarray,
    zero: np.ndarray,
    exhausted: np.ndarray,
) -> pd.DataFrame:
    """Treated students without a match and the reason (see :class:`MatchResult`)."""
    stack, student, t_rows, t_ok, finite = r.stack, r.student, r.t_rows, r.t_ok, r.finite
    reason = np.full(t_rows.size, "", dtype=object)
    reason[no_comp] = "no_comparisons_in_stratum"
    reason[~no_comp & ~finite[t_rows]] = "missing_pscore"
    ok_pos = np.flatnonzero(t_ok)
    reason[ok_pos[zero & ~exhausted]] = "outside_caliper"
    reason[ok_pos[zero & exhausted]] = "comparisons_exhausted"
    um = reason != ""
    um_rows = t_rows[um]
    unmatched = pd.DataFrame({"stack": stack[um_rows], "student": student[um_rows]})
    for col in [c for c in exact if c != "stack"]:
        unmatched[col] = candidates[col].to_numpy()[um_rows]
    unmatched["reason"] = pd.Categorical(reason[um], categories=UNMATCHED_REASONS)
    return unmatched.sort_values(["stack", "student"], ignore_index=True)


def match(
    candidates: pd.DataFrame,
    *,
    covariates: Sequence[str],
    exact: Sequence[str] = DEFAULT_EXACT,
    ratio: int = 3,
    caliper: float | None = 0.2,
    replace: bool = True,
    m_order: MOrder = "largest",
    seed: int = 0,
    by: Sequence[str] = ("stack",),
    fixed_effects: Sequence[str] = DEFAULT_FIXED_EFFECTS,
) -> MatchResult:
    """Estimate propensity scores and match (:func:`propensity_scores` then NN matching).

    Parameters
    ----------
    candidates : pandas.DataFrame
        Candidate rows (see :func:`nearest_neighbor_match`).
    covariates : sequence of str
        Covariates of the propensity model.
    exact, ratio, caliper, replace, m_order, seed
        See :func:`nearest_neighbor_match`.
    by, fixed_effects
        See :func:`propensity_scores`.

    Returns
    -------
    MatchResult
        As :func:`nearest_neighbor_match`, with ``covariates``, ``by``, ``fixed_effects`` and
        the propensity ``fit_diagnostics`` added to ``settings``.

    Notes
    -----
    The linear propensity score is fitted within each ``by`` group (default: each stack)
    with additive fixed-effect dummies, then treated students are matched k:1 within
    ``exact`` strata with a caliper of ``caliper`` standard deviations of the logit.
    """
    ps = propensity_scores(candidates, covariates=covariates, by=by, fixed_effects=fixed_effects)
    res = nearest_neighbor_match(
        candidates,
        ps,
        exact=exact,
        ratio=ratio,
        caliper=caliper,
        replace=replace,
        m_order=m_order,
        seed=seed,
    )
    settings = {
        **res.settings,
        "covariates": tuple(covariates),
        "by": tuple(by),
        "fixed_effects": tuple(fixed_effects),
        "fit_diagnostics": ps.attrs.get("fit_diagnostics", ()),
    }
    return MatchResult(
        matched=res.matched,
        pairs=res.pairs,
        unmatched=res.unmatched,
        pscore=res.pscore,
        summary=res.summary,
        caliper_logit=res.caliper_logit,
        settings=settings,
    )


# --------------------------------------------------------------------------------------
# matching internals
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """Sorted comparison pool and the treated students' positions in it."""

    c_eta: np.ndarray  # logits of the sorted comparison pool
    c_start: np.ndarray  # first pool index of each stratum
    c_end: np.ndarray  # one past the last pool index of each stratum
    t_strat: np.ndarray  # stratum of each (matchable) treated student
    t_eta: np.ndarray  # logit of each treated student
    pos: np.ndarray  # first pool index with logit >= t_eta (within the stratum)


def _insertion_points(
    stratum: np.ndarray, eta: np.ndarray, c_rows: np.ndarray, t_rows: np.ndarray
) -> np.ndarray:
    """Index in the sorted pool of the first comparison of the stratum with logit >= eta_t.

    Merges treated and comparison rows sorted by (stratum, logit, comparison-after-treated)
    and counts the comparisons preceding every treated row.
    """
    rows = np.concatenate([c_rows, t_rows])
    is_c = np.concatenate([np.ones(c_rows.size, np.int64), np.zeros(t_rows.size, np.int64)])
    # comparisons keep their pool order among equal (stratum, logit): lexsort is stable
    order = np.lexsort((is_c, eta[rows], stratum[rows]))
    before = np.cumsum(is_c[order]) - is_c[order]
    out = np.empty(rows.size, dtype=np.int64)
    out[order] = before
    return out[c_rows.size :]


def _match_keeping_ties(
    q: np.ndarray,
    stratum: np.ndarray,
    comparison: np.ndarray,
    tv: np.ndarray,
    k: int,
    cal_q: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest comparisons of each treated in ``tv``, with every tie of the k-th.

    Comparisons with the same grid score in a stratum form a *block*. Each block holds at
    least one comparison, so the k-th nearest comparison lies among the k nearest blocks
    on each side of the treated student's score; every block of that window whose
    distance is at most the k-th nearest distance is kept whole.

    Returns pair arrays: position in ``tv``, candidate row of the comparison, grid
    distance and competition rank.
    """
    c_rows = np.flatnonzero(comparison)
    c_rows = c_rows[np.lexsort((q[c_rows], stratum[c_rows]))]
    b_strat, b_q = stratum[c_rows], q[c_rows]
    new_block = np.r_[True, (b_strat[1:] != b_strat[:-1]) | (b_q[1:] != b_q[:-1])]
    b_start = np.flatnonzero(new_block)
    b_size = np.diff(np.r_[b_start, c_rows.size])
    b_strat, b_q = b_strat[b_start], b_q[b_start]
    n_strata = int(stratum.max()) + 1 if stratum.size else 0
    s_count = np.bincount(b_strat, minlength=n_strata)
    s_end = np.cumsum(s_count)
    s_lo, s_hi = (s_end - s_count)[stratum[tv]], s_end[stratum[tv]]
    pos = _first_not_below(b_strat, b_q, stratum[tv], q[tv])
    off = np.arange(-k, k)
    blk = pos[:, None] + off[None, :]
    valid = (blk >= s_lo[:, None]) & (blk < s_hi[:, None])
    safe = np.clip(blk, 0, max(b_q.size - 1, 0))
    dist = np.abs(b_q[safe] - q[tv][:, None]) if b_q.size else np.zeros(blk.shape, np.int64)
    ok = valid & (dist <= cal_q)
    big = np.iinfo(np.int64).max
    key = np.where(ok, dist, big)
    order = np.argsort(key, axis=1, kind="stable")
    skey = np.take_along_axis(key, order, axis=1)
    ssize = np.where(skey < big, b_size[np.take_along_axis(safe, order, axis=1)], 0)
    csum = np.cumsum(ssize, axis=1)
    reach = np.minimum((csum < k).sum(axis=1), 2 * k - 1)  # first slot reaching k units
    kth = skey[np.arange(tv.size), reach] if tv.size else np.zeros(0, np.int64)
    keep = (skey <= kth[:, None]) & (skey < big)
    # competition rank: 1 + comparisons strictly closer (tied blocks share the rank)
    before = csum - ssize
    same_as_prev = np.c_[np.zeros((tv.size, 1), bool), skey[:, 1:] == skey[:, :-1]]
    before = np.where(same_as_prev, np.c_[np.zeros((tv.size, 1), np.int64), before[:, :-1]], before)
    t_idx, slot = np.nonzero(keep)
    blocks = np.take_along_axis(safe, order, axis=1)[t_idx, slot]
    sizes = b_size[blocks]
    p_t = np.repeat(t_idx, sizes)
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    p_c = c_rows[np.repeat(b_start[blocks], sizes) + within]
    p_dist = np.repeat(skey[t_idx, slot], sizes)
    p_rank = np.repeat(before[t_idx, slot] + 1, sizes)
    return p_t, p_c, p_dist, p_rank


def _first_not_below(
    b_strat: np.ndarray, b_q: np.ndarray, t_strat: np.ndarray, t_q: np.ndarray
) -> np.ndarray:
    """Index of the first block of the stratum whose score is >= the treated score."""
    is_c = np.r_[np.ones(b_q.size, np.int64), np.zeros(t_q.size, np.int64)]
    order = np.lexsort((is_c, np.r_[b_q, t_q], np.r_[b_strat, t_strat]))
    before = np.cumsum(is_c[order]) - is_c[order]
    out = np.empty(is_c.size, dtype=np.int64)
    out[order] = before
    return out[b_q.size :]


def _match_greedy(
    grid: _ScoreGrid,
    stratum: np.ndarray,
    treated: np.ndarray,
    finite: np.ndarray,
    tv: np.ndarray,
    k: int,
    m_order: str,
    tiekey: np.ndarray,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Greedy matching without replacement on the grid scores; pair arrays and exhausted."""
    n_strata = int(stratum.max()) + 1 if stratum.size else 0
    eta = grid.q.astype(float)  # integers below 2**53: exact
    c_rows = np.flatnonzero(~treated & finite)
    c_rows = c_rows[np.lexsort((tiekey[c_rows], eta[c_rows], stratum[c_rows]))]
    c_count = np.bincount(stratum[c_rows], minlength=n_strata)
    c_end = np.cumsum(c_count)
    pos = _insertion_points(stratum, eta, c_rows, tv)
    geom = _Geometry(eta[c_rows], c_end - c_count, c_end, stratum[tv], eta[tv], pos)
    match_idx, match_dist, exhausted = _match_without_replacement(
        geom, k, float(grid.cal_q), m_order, tiekey[tv]
    )
    t_pair, slot = np.nonzero(match_idx >= 0)
    found = (
        t_pair,
        c_rows[match_idx[t_pair, slot]],
        match_dist[t_pair, slot].astype(np.int64),
        slot + 1,
    )
    return found, exhausted


def _nearest_available(
    geom: _Geometry, sel: np.ndarray, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest comparison not in ``taken`` (sorted pool indices) for treated ``sel``."""
    pos = geom.pos[sel]
    x = geom.t_eta[sel]
    lo = geom.c_start[geom.t_strat[sel]]
    hi = geom.c_end[geom.t_strat[sel]]
    left = pos - 1
    right = pos.copy()
    if taken.size:
        new_run = np.r_[True, np.diff(taken) != 1]
        run_id = np.cumsum(new_run) - 1
        run_first = taken[new_run]
        run_last = taken[np.r_[new_run[1:], True]]
        for side, arr in (("left", left), ("right", right)):
            at = np.searchsorted(taken, arr)
            atc = np.minimum(at, taken.size - 1)
            hit = (at < taken.size) & (taken[atc] == arr)
            if side == "left":
                left = np.where(hit, run_first[run_id[atc]] - 1, arr)
            else:
                right = np.where(hit, run_last[run_id[atc]] + 1, arr)
    size = geom.c_eta.size
    has_l = left >= lo
    has_r = right < hi
    dl = np.where(has_l, np.abs(x - geom.c_eta[np.clip(left, 0, size - 1)]), np.inf)
    dr = np.where(has_r, np.abs(geom.c_eta[np.clip(right, 0, size - 1)] - x), np.inf)
    gap_l = pos - 1 - left
    gap_r = right - pos
    pick_left = (dl < dr) | ((dl == dr) & (gap_l <= gap_r))
    cand = np.where(pick_left, left, right)
    dist = np.where(pick_left, dl, dr)
    cand = np.where(np.isfinite(dist), cand, -1)
    return cand, dist


def _match_without_replacement(
    geom: _Geometry, k: int, caliper: float, m_order: str, tiekey_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy k:1 matching without replacement, exactly as the sequential algorithm."""
    nt = geom.pos.size
    if nt == 0:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k)), np.zeros(0, dtype=bool)
    none = np.zeros(0, dtype=np.int64)
    _, d0 = _nearest_available(geom, np.arange(nt), none)
    if m_order == "largest":
        prio = -geom.t_eta
    elif m_order == "smallest":
        prio = geom.t_eta
    elif m_order == "closest":
        prio = d0
    elif m_order == "farthest":
        prio = -d0
    else:  # random
        prio = np.zeros(nt)
    # process treated in (stratum, priority, tie key) order
    order = np.lexsort((tiekey_t, prio, geom.t_strat))
    match_idx = np.full((nt, k), -1, dtype=np.int64)
    match_dist = np.full((nt, k), np.nan)
    taken = none
    alive = np.ones(nt, dtype=bool)  # obtained a match in the previous slot
    for r in range(k):
        pending = alive[order].copy()  # in processing order
        got = np.zeros(nt, dtype=bool)
        while pending.any():
            u = order[pending]  # treated ids, in processing order
            cand, dist = _nearest_available(geom, u, taken)
            has = (cand >= 0) & (dist <= caliper)
            pos_in_order = np.flatnonzero(pending)
            pending[pos_in_order[~has]] = False
            u2, c2, d2, po2 = u[has], cand[has], dist[has], pos_in_order[has]
            if u2.size == 0:
                break
            _, first = np.unique(c2, return_index=True)
            dup = np.ones(u2.size, dtype=np.int64)
            dup[first] = 0
            strat = geom.t_strat[u2]
            new_group = np.r_[True, strat[1:] != strat[:-1]]
            csum = np.cumsum(dup)
            base = (csum - dup)[new_group][np.cumsum(new_group) - 1]
            accept = (csum - base) == 0
            match_idx[u2[accept], r] = c2[accept]
            match_dist[u2[accept], r] = d2[accept]
            got[u2[accept]] = True
            pending[po2[accept]] = False
            taken = np.union1d(taken, c2[accept])
        alive &= got
    exhausted = (match_idx[:, 0] < 0) & (d0 <= caliper)
    return match_idx, match_dist, exhausted


def _summary(
    stack: np.ndarray,
    treated: np.ndarray,
    finite: np.ndarray,
    in_sample: np.ndarray,
    tv: np.ndarray,
    k_i: np.ndarray,
    pair_t_rows: np.ndarray,
) -> pd.DataFrame:
    """Per-stack counts of treated, matched, unmatched and comparison rows."""
    stacks, code = np.unique(stack, return_inverse=True)
    size = stacks.size
    n_treated = np.bincount(code[treated], minlength=size)
    n_matched = np.bincount(code[tv[k_i > 0]], minlength=size)
    n_comp = np.bincount(code[in_sample & ~treated], minlength=size)
    n_pairs = np.bincount(code[pair_t_rows], minlength=size)
    n_cand = np.bincount(code[~treated & finite], minlength=size)
    return pd.DataFrame(
        {
            "stack": stacks,
            "n_treated": n_treated,
            "n_matched": n_matched,
            "n_unmatched": n_treated - n_matched,
            "n_comparisons": n_comp,
            "n_comparison_rows": n_pairs,
            "n_candidates": n_cand,
        }
    )


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def _as_names(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    """Validate a sequence of column names (a bare string is rejected)."""
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of column names, got the string {names!r}")
    out = tuple(names)
    if any(not isinstance(c, str) for c in out):
        raise ValueError(f"{what} must contain column names (str), got {out!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicate names: {out!r}")
    return out


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ValueError naming the columns missing from ``frame``."""
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"candidates lacks column(s) {missing}")


def _as_bool(col: pd.Series) -> np.ndarray:
    """Return the ``treated`` column as a numpy bool array (bool or 0/1 accepted)."""
    if pd.api.types.is_bool_dtype(col.dtype):
        if col.isna().any():
            raise ValueError("treated has missing values")
        return col.to_numpy(dtype=bool)
    values = col.to_numpy()
    if pd.api.types.is_numeric_dtype(col.dtype) and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    raise ValueError(f"treated must be boolean or 0/1, got dtype {col.dtype}")


def _numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Return a numeric column as a numpy array, without copying numpy-backed columns."""
    col = frame[name]
    if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
        raise ValueError(f"covariate {name!r} must be numeric, got dtype {col.dtype}")
    if isinstance(col.dtype, np.dtype):
        return col.to_numpy()
    return col.to_numpy(dtype=float, na_value=np.nan)


def _check_unique_keys(stack: np.ndarray, student: np.ndarray) -> None:
    """Raise ValueError if a (stack, student) pair occurs twice."""
    order = np.lexsort((student, stack))
    s, t = stack[order], student[order]
    dup = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    if dup.any():
        i = np.flatnonzero(dup)[0]
        raise ValueError(f"duplicate candidate row (stack={s[i]}, student={t[i]})")


def _group_codes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Dense int64 codes of the combinations of ``columns`` (NaN is its own level)."""
    if len(frame) == 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.zeros(len(frame), dtype=np.int64)
    for col in columns:
        c, uniques = pd.factorize(frame[col], use_na_sentinel=False, sort=True)
        codes = codes * (len(uniques) + 1) + c
        codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)
    return codes


def _tie_keys(stack: np.ndarray, student: np.ndarray, seed: int) -> np.ndarray:
    """Seeded random permutation assigned in sorted (stack, student) order."""
    order = np.lexsort((student, stack))
    perm = np.random.default_rng(seed).permutation(stack.size)
    key = np.empty(stack.size, dtype=np.int64)
    key[order] = perm
    return key
