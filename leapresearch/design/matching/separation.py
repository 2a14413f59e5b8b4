"""Whether the classes of a propensity fit are (quasi-)separated.

The maximum-likelihood logit does not exist when a direction separates treated from
comparison rows. This is decided by a linear program (Konis's), solved by HiGHS with no
BLAS, not from the iterates of a diverging fit; a single separating column is recognised
first by exact comparisons, a converged fit certifies overlap by its score, and a separating
direction found once is remembered (by the names of the columns) and checked exactly on
the next rows of the same strata.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit

from leapresearch.design.matching.logit import _raw_coefficients, _standardised_coefficients

_SEPARATION_LP_TOL: float = 1e-7
"""Optimum of the separation linear program per row above which the data are separated."""


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


Directions = dict[tuple, list[tuple[float, np.ndarray, np.ndarray]]]
"""Separating directions by the names of the columns: ``(b0, b, c)`` on the raw scale."""

_SEPARATING: Directions = {}
"""Separating directions the program found, on the raw scale, by the names of the columns.

A run fits the propensity model of the same strata several times (the main matching, the
specifications that re-match, the draws of the whole-procedure bootstrap):
:func:`_separated_remembering` tries the directions found before, checked exactly on the
new rows, before solving the program again. A direction that separates a sample separates
every resample of its rows, so the full sample's directions decide the bootstrap's draws
(:func:`remembered_directions`, :func:`remember_directions`). At most
:data:`_DIRECTIONS_PER_COLUMNS` are kept per set of columns: the first found, and the
latest others.
"""

_DIRECTIONS_PER_COLUMNS = 4


def remembered_directions() -> Directions:
    """A copy of the separating directions this process has found (see :data:`_SEPARATING`)."""
    return {columns: list(found) for columns, found in _SEPARATING.items()}


def remember_directions(directions: Directions) -> None:
    """Add directions found elsewhere (:func:`remembered_directions` of another process).

    Only the speed of later fits changes: a remembered direction decides a fit only where
    the program would reach the same decision (:func:`_separated_remembering`).
    """
    for columns, found in directions.items():
        known = _SEPARATING.setdefault(columns, [])
        for direction in found:
            if len(known) < _DIRECTIONS_PER_COLUMNS and not any(
                _same_direction(direction, k) for k in known
            ):
                known.append(direction)


def _same_direction(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def _separated_remembering(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    *,
    columns: tuple,
    mean: np.ndarray,
    sd: np.ndarray,
) -> bool:
    """:func:`_program_separates`, trying first the directions found before for ``columns``.

    ``design`` is ``[1, (x - mean) / sd]``. A direction is kept on the raw scale
    (``b0 + b'x + c'd``) and re-expressed on this group's standardisation, scaled into the
    program's box ``|beta_j| <= 1``. When one is feasible for these rows (within HiGHS's
    primal feasibility tolerance, 1e-7) and its objective exceeds the program's threshold,
    the program's optimum does too: the data are separated, the same decision the program
    would reach, and the program is not solved.
    """
    scale = {"columns": columns, "mean": mean, "sd": sd}
    return _remembered_separates(design, dmat, y, **scale) or _program_remembering(
        design, dmat, y, **scale
    )


def _program_remembering(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    *,
    columns: tuple,
    mean: np.ndarray,
    sd: np.ndarray,
) -> bool:
    """:func:`_program_separates`, keeping the direction it finds for ``columns``.

    The second half of :func:`_separated_remembering`, for a caller that has tried the
    remembered directions already (:func:`_remembered_separates`).
    """
    p = design.shape[1]
    beta = _program_direction(design, dmat, y)
    if beta is None:
        return False
    if len(_SEPARATING) >= 256:
        _SEPARATING.clear()
    known = _SEPARATING.setdefault(columns, [])
    if len(known) >= _DIRECTIONS_PER_COLUMNS:
        del known[1]  # the first is kept: in the bootstrap's draws, the full sample's
    known.append(_raw_coefficients(beta, p, mean, sd))
    return True


def _remembered_separates(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    *,
    columns: tuple,
    mean: np.ndarray,
    sd: np.ndarray,
) -> bool:
    """Whether a direction found before for ``columns`` separates these rows (no program).

    The check of :func:`_separated_remembering` alone: True decides the rows are separated,
    as the program would; False decides nothing (the program has not been asked).
    """
    p = design.shape[1]
    for b0, b, c in _SEPARATING.get(columns, ()):
        beta = _standardised_coefficients(b0, b, c, mean, sd)
        beta /= max(float(np.abs(beta).max()), 1e-300)
        margins = design @ beta[:p]
        if dmat is not None:
            margins = margins + dmat @ beta[p:]
        margins *= 2.0 * y - 1.0
        if margins.min() >= -1e-7 and margins.sum() > _SEPARATION_LP_TOL * y.size:
            return True
    return False


def _program_direction(
    design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray
) -> np.ndarray | None:
    """The separating direction the program of :func:`_is_separated` finds (None: none).

    Solved by row generation: the program keeps its objective (every row's
    :math:`s_i x_i`, summed) and starts from the constraints of a subset of the rows
    (:func:`_first_rows`). Fewer constraints can only raise the optimum, so an optimum
    at most the threshold decides "not separated" for every row; a solution feasible for
    every row (within HiGHS's feasibility tolerance) is the whole program's optimum and
    decides "separated". Otherwise the rows it violates most join and the program is
    solved again, up to every row: the decision is the whole program's, at a fraction
    of its time and memory (a hundred thousand rows by fifty columns, most of them
    inactive).
    """
    x = design if dmat is None else np.hstack([design, dmat.toarray()])
    s = 2.0 * y - 1.0
    objective = -(s[:, None] * x).sum(axis=0)
    rows = _first_rows(y)
    while True:
        res = scipy.optimize.linprog(
            objective,
            A_ub=-(s[rows, None] * x[rows]),
            b_ub=np.zeros(rows.size),
            bounds=[(-1.0, 1.0)] * x.shape[1],
            method="highs",
        )
        if res.status != 0 or -res.fun <= _SEPARATION_LP_TOL * y.size:
            return None
        beta = np.asarray(res.x, dtype=np.float64)
        margins = s * (x * beta).sum(axis=1)  # no BLAS: the same on every CPU
        violated = np.flatnonzero(margins < -_FEASIBILITY_TOL)
        if violated.size == 0:
            return beta
        worst = violated[np.argsort(margins[violated], kind="stable")[:_ROWS_ADDED]]
        rows = np.union1d(rows, worst)


_FIRST_COMPARISON_ROWS = 4096
"""Comparison rows the row generation of :func:`_program_direction` starts from."""
_ROWS_ADDED = 4096
"""Most violated rows added to the program per round."""
_FEASIBILITY_TOL = 1e-7
"""HiGHS's primal feasibility tolerance: a row's margin above minus this is satisfied."""


def _first_rows(y: np.ndarray) -> np.ndarray:
    """Every treated row and evenly spaced comparison rows (rows in canonical order)."""
    treated, comparison = np.flatnonzero(y == 1.0), np.flatnonzero(y != 1.0)
    step = max(1, -(-comparison.size // _FIRST_COMPARISON_ROWS))
    return np.union1d(treated, comparison[::step])


def _one_column_separates(design: np.ndarray, dmat: sp.csr_array | None, y: np.ndarray) -> bool:
    """Whether one column alone separates the classes (exact comparisons).

    The common case, e.g. a dummy that no treated row has: the maximum over one class is
    at most the minimum over the other. The dummies are compared in their sparse form (a
    column's extremes count its implicit zeros), without a dense copy of them.
    """
    is_t, is_c = y == 1.0, y == 0.0
    t, c = design[is_t, 1:], design[is_c, 1:]
    if np.any(t.max(axis=0) <= c.min(axis=0)) or np.any(t.min(axis=0) >= c.max(axis=0)):
        return True
    if dmat is None or dmat.shape[1] == 0:
        return False
    dt, dc = dmat[np.flatnonzero(is_t)], dmat[np.flatnonzero(is_c)]

    def extreme(m: sp.csr_array, how: str) -> np.ndarray:
        return np.asarray(getattr(m, how)(axis=0).toarray()).ravel()

    return bool(
        np.any(extreme(dt, "max") <= extreme(dc, "min"))
        or np.any(extreme(dt, "min") >= extreme(dc, "max"))
    )


def _overlap_certified(
    design: np.ndarray,
    dmat: sp.csr_array | None,
    y: np.ndarray,
    eta: np.ndarray,
    weights: np.ndarray | None = None,
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
    A fit with row weights :math:`v_i > 0` has the score :math:`X'(v \odot r)`; the same
    argument holds with :math:`w_i = v_i |r_i|`.
    """
    resid = y - expit(eta)
    if weights is not None:
        resid = weights * resid
    w_min = float(np.abs(resid).min())
    if not w_min > 0.0:
        return False
    score = float(np.abs(design.T @ resid).sum())
    if dmat is not None:
        score += float(np.abs(dmat.T @ resid).sum())
    return score / w_min <= 0.5 * _SEPARATION_LP_TOL * y.size
