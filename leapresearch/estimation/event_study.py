"""Stacked event study of monthly attendance by months since the first home visit.

The input is the stacked matched panel built elsewhere: one row per (unit, school month),
where a *unit* is a (stack, student) pair and a *stack* holds the students first visited
in one event month together with their matched comparison students. The estimator is
weighted least squares with unit and stack-by-month fixed effects absorbed by the exact
within transformation of :mod:`leapresearch.estimation.fixed_effects`, and a cluster-robust (CRV1)
covariance whose small-sample correction follows ``fixest`` / ``pyfixest`` defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from leapresearch.estimation.fixed_effects import (
    TwoWayProjector,
    combine_codes,
    factorize,
    is_nested,
    singleton_mask,
)

ClusterVar = Literal["student", "school"]
_CLUSTERS: tuple[str, ...] = ("student", "school")
_INT_COLUMNS: tuple[str, ...] = ("unit", "stack", "time", "rel_time", "treated", "student")
COLLINEARITY_TOL = 1e-9
"""A term is dropped when its variance left after the fixed effects and the earlier terms
is below this fraction of its raw weighted sum of squares."""

SSC_DESCRIPTION = (
    "CRV1, V = G/(G-1) * (N-1)/(N-K) * (X~'WX~)^-1 [sum_g s_g s_g'] (X~'WX~)^-1 with "
    "K = event-time terms + absorbed fixed-effect levels not nested in the cluster "
    "(pyfixest default ssc(k_adj=True, k_fixef='nonnested', G_adj=True)); "
    "t and F inference with G-1 denominator degrees of freedom; singletons dropped"
)


SINGULAR_RATIO = 1e-10
"""Smallest over largest eigenvalue below which a covariance is treated as singular."""


def clustered_wald(b: np.ndarray, v: np.ndarray, *, n_clusters: int) -> float:
    """``b' V^{-1} b`` of a joint test, or ``LinAlgError`` when the test is not defined.

    A cluster-robust covariance built from ``G`` clusters has rank at most ``G - 1``, so a
    joint test of ``q`` terms needs ``q <= G - 1``; with more terms (a district with seven
    schools and eleven pre-period months) ``V`` is singular and a solve returns a number
    that means nothing (huge, negative, or changing with the row order). The test is also
    refused when ``V`` is numerically singular (smallest eigenvalue below
    :data:`SINGULAR_RATIO` times the largest).

    Raises
    ------
    numpy.linalg.LinAlgError
        With the reason, e.g. ``"not testable: 11 terms with 7 clusters (at most 6)"``.
    """
    q = len(b)
    if q > n_clusters - 1:
        raise np.linalg.LinAlgError(
            f"not testable: {q} terms with {n_clusters} clusters (at most {n_clusters - 1})"
        )
    eig = np.linalg.eigvalsh((v + v.T) / 2.0)
    if not eig[-1] > 0 or eig[0] <= SINGULAR_RATIO * eig[-1]:
        raise np.linalg.LinAlgError("not testable: the covariance of the terms is singular")
    return float(b @ np.linalg.solve(v, b))


@dataclass(frozen=True)
class WaldTest:
    """Result of a Wald test that several coefficients are jointly zero.

    Attributes
    ----------
    stat : float
        The test statistic: ``W / df`` for ``distribution="F"``, ``W`` for ``"chi2"``,
        with ``W = b' V^{-1} b`` the Wald statistic.
    df : int
        Numerator degrees of freedom (number of restrictions).
    p_value : float
        ``P(F(df, df_denom) > stat)`` or ``P(chi2(df) > stat)``.
    df_denom : int or None
        Denominator degrees of freedom of the F test, ``G - 1`` (clusters minus one);
        ``None`` for a chi-square test.
    wald : float
        The chi-square form ``W`` (asymptotically ``chi2(df)``).
    terms : tuple of int
        The event times tested.
    distribution : {"F", "chi2"}
        Reference distribution.
    """

    stat: float
    df: int
    p_value: float
    df_denom: int | None
    wald: float
    terms: tuple[int, ...]
    distribution: Literal["F", "chi2"] = "F"


@dataclass(frozen=True, eq=False)
class EventStudyResult:
    """Estimates of a stacked event study (see :func:`event_study`).

    Attributes
    ----------
    coefficients : pandas.Series
        Event-time coefficients ``b_r`` indexed by ``rel_time`` (reference omitted).
    cov : pandas.DataFrame
        Cluster-robust covariance of ``coefficients`` (small-sample corrected).
    nobs : int
        Observations used (after dropping singletons).
    n_clusters : int
        Number of clusters ``G``.
    n_treated, n_comparison : int
        Unique treated and comparison students in the estimation sample.
    n_treated_by_rel_time, n_comparison_by_rel_time : pandas.Series
        Unique students observed at each (binned) event time, reference included.
    reference : int
        Omitted event time.
    window : tuple of int or None
        Binning window; ``None`` when every event time has its own term.
    cluster : str
        Cluster variable.
    ssc : str
        Description of the small-sample correction.
    outcome : str
        Outcome column.
    weight : str or None
        Weight column.
    ssc_factor : float
        ``G/(G-1) * (N-1)/(N-K)``.
    df_k : int
        ``K`` in the correction.
    df_resid : int
        Degrees of freedom of t and F inference, ``G - 1``.
    n_singletons : int
        Singleton observations dropped.
    dropped : tuple of int
        Event-time terms dropped (no treated observation, or collinear with the
        fixed effects / other terms).
    notes : tuple of str
        Human-readable notes on dropped observations and terms.
    fe_method : str
        How the fixed effects were absorbed (``"exact"`` or ``"alternating"``).
    adjusted_rel_times : tuple of int or None
        Event times whose outcome was regression-adjusted with the group's own slopes
        before the fit (:func:`~leapresearch.design.adjustment.adjust_outcome`, set by
        :func:`~leapresearch.analysis.fitting.fit_group`); ``None`` when not recorded.
    pooled_rel_times : tuple of int or None
        Event times adjusted with the whole matched sample's slopes instead (too few
        comparison units of the group's own); ``None`` when not recorded.
    """

    coefficients: pd.Series
    cov: pd.DataFrame
    nobs: int
    n_clusters: int
    n_treated: int
    n_comparison: int
    n_treated_by_rel_time: pd.Series
    n_comparison_by_rel_time: pd.Series
    reference: int
    window: tuple[int, int] | None
    cluster: str
    ssc: str
    outcome: str = "attendance_pp"
    weight: str | None = "weight"
    ssc_factor: float = float("nan")
    df_k: int = 0
    df_resid: int = 0
    n_singletons: int = 0
    dropped: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    fe_method: str = "exact"
    adjusted_rel_times: tuple[int, ...] | None = None
    pooled_rel_times: tuple[int, ...] | None = None

    @property
    def std_errors(self) -> pd.Series:
        """Cluster-robust standard errors, indexed by ``rel_time``."""
        with np.errstate(invalid="ignore"):  # a tiny group can give a negative variance: NaN
            se = np.sqrt(np.diag(self.cov.to_numpy()))
        return pd.Series(se, index=self.coefficients.index, name="se")

    def table(self, alpha: float = 0.05) -> pd.DataFrame:
        """Tidy table of the event-study coefficients.

        Parameters
        ----------
        alpha : float, optional
            One minus the confidence level of the intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``rel_time, estimate, std_error, ci_lower, ci_upper, t_stat,
            p_value, n_treated, n_comparison``, one row per event time sorted by
            ``rel_time``, including the reference period (estimate 0, NaN inference).
            Intervals and p-values use Student's t with ``G - 1`` degrees of freedom.
        """
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        est = self.coefficients.to_numpy()
        se = self.std_errors.to_numpy()
        crit = stats.t.ppf(1 - alpha / 2, self.df_resid)
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = est / se
        rows = pd.DataFrame(
            {
                "rel_time": self.coefficients.index.to_numpy(dtype=np.int64),
                "estimate": est,
                "std_error": se,
                "ci_lower": est - crit * se,
                "ci_upper": est + crit * se,
                "t_stat": tstat,
                "p_value": 2 * stats.t.sf(np.abs(tstat), self.df_resid),
            }
        )
        ref = pd.DataFrame(
            {
                "rel_time": [self.reference],
                "estimate": [0.0],
                "std_error": [np.nan],
                "ci_lower": [np.nan],
                "ci_upper": [np.nan],
                "t_stat": [np.nan],
                "p_value": [np.nan],
            }
        )
        out = pd.concat([rows, ref], ignore_index=True).sort_values("rel_time")
        out = out.reset_index(drop=True)
        out["n_treated"] = (
            self.n_treated_by_rel_time.reindex(out["rel_time"]).fillna(0).to_numpy(np.int64)
        )
        out["n_comparison"] = (
            self.n_comparison_by_rel_time.reindex(out["rel_time"]).fillna(0).to_numpy(np.int64)
        )
        return out

    def pretrend_test(self) -> WaldTest:
        """Joint test that all pre-period coefficients are zero.

        The pre-period terms are those with ``rel_time < reference``, including the
        binned lower end point.

        Returns
        -------
        WaldTest
            ``F = W / q`` with ``W = b' V^{-1} b`` over the ``q`` pre-period terms,
            compared with ``F(q, G - 1)`` (the clustered-Wald convention of ``fixest``
            / ``pyfixest``).

        Raises
        ------
        ValueError
            If there is no pre-period term.
        numpy.linalg.LinAlgError
            If the test is not defined (:func:`clustered_wald`: more terms than the
            clusters allow, or a singular covariance).
        """
        idx = self.coefficients.index.to_numpy()
        pre = idx < self.reference
        if not pre.any():
            raise ValueError(
                f"no pre-period coefficient (rel_time < reference={self.reference}) to test"
            )
        b = self.coefficients.to_numpy()[pre]
        v = self.cov.to_numpy()[np.ix_(pre, pre)]
        wald = clustered_wald(b, v, n_clusters=self.n_clusters)
        q = int(pre.sum())
        fstat = wald / q
        return WaldTest(
            stat=fstat,
            df=q,
            p_value=float(stats.f.sf(fstat, q, self.df_resid)),
            df_denom=self.df_resid,
            wald=wald,
            terms=tuple(int(r) for r in idx[pre]),
        )


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


def _int_array(panel: pd.DataFrame, name: str) -> np.ndarray:
    col = panel[name]
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
        if col.isna().any():
            raise ValueError(f"column {name!r} has {int(col.isna().sum())} missing values")
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(col.dtype):
        arr = col.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"column {name!r} must hold integers, found non-integer values")
        return arr.astype(np.int64)
    raise ValueError(f"column {name!r} must be an integer column, got dtype {col.dtype}")


def _float_array(panel: pd.DataFrame, name: str, *, what: str) -> np.ndarray:
    col = panel[name]
    if not (pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col)):
        raise ValueError(f"{what} column {name!r} must be numeric, got dtype {col.dtype}")
    arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what} column {name!r} has {int(bad.sum())} missing or infinite values")
    return arr


def _check_window(window: object, reference: object) -> tuple[int, int] | None:
    if not isinstance(reference, int | np.integer) or isinstance(reference, bool):
        raise ValueError(f"reference must be an integer, got {reference!r}")
    if window is None:
        return None
    if (
        not isinstance(window, tuple | list)
        or len(window) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in window)
    ):
        raise ValueError(f"window must be None or a pair of integers (lo, hi), got {window!r}")
    lo, hi = int(window[0]), int(window[1])
    if not lo < int(reference) < hi:
        raise ValueError(
            f"window {window!r} must satisfy lo < reference < hi with reference={reference}"
        )
    return lo, hi


def _unique_counts(
    students: np.ndarray, n_students: int, bins: np.ndarray, n_bins: int
) -> np.ndarray:
    """Count distinct students in each bin (``bins`` coded ``0 .. n_bins - 1``)."""
    if students.size == 0:
        return np.zeros(n_bins, dtype=np.int64)
    pair = students.astype(np.int64) * n_bins + bins
    if n_students * n_bins <= 1 << 25:
        present = np.zeros(n_students * n_bins, dtype=np.bool_)
        present[pair] = True
        return present.reshape(n_students, n_bins).sum(axis=0).astype(np.int64)
    uniq = pd.unique(pair)
    return np.bincount(uniq % n_bins, minlength=n_bins).astype(np.int64)


def _independent_terms(gram: np.ndarray, raw: np.ndarray, tol: float) -> np.ndarray:
    """Return the indices of terms kept by a sequential collinearity check.

    Term ``j`` is kept when the part of its (within-transformed) variance not explained
    by the terms kept before it exceeds ``tol`` times its raw weighted sum of squares.
    """
    keep: list[int] = []
    for j in range(gram.shape[0]):  # loop over terms (a few dozen), not observations
        if keep:
            s = np.asarray(keep)
            coef = np.linalg.solve(gram[np.ix_(s, s)], gram[s, j])
            resid = gram[j, j] - gram[j, s] @ coef
        else:
            resid = gram[j, j]
        if resid > tol * raw[j]:
            keep.append(j)
    return np.asarray(keep, dtype=np.intp)


# --------------------------------------------------------------------------------------
# estimation steps
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    """Observation-level arrays of the estimation sample (singletons dropped)."""

    u_code: np.ndarray  # unit fixed-effect code
    st_code: np.ndarray  # stack-by-month fixed-effect code
    y: np.ndarray
    w: np.ndarray
    rb: np.ndarray  # binned event time
    treated: np.ndarray
    student: np.ndarray
    g_code: np.ndarray  # cluster code
    n_g: int
    n_single: int
    notes: list[str]

    @property
    def n_u(self) -> int:
        return int(self.u_code.max()) + 1

    @property
    def n_st(self) -> int:
        return int(self.st_code.max()) + 1

    @property
    def nobs(self) -> int:
        return self.y.size


@dataclass(frozen=True)
class _WithinFit:
    """The fixed effects absorbed: projected coefficients and the within normal equations.

    ``alpha`` / ``gamma`` hold the unit / stack-month fixed-effect coefficients of each
    event-time dummy (first ``k_all`` columns) and of the outcome (last column);
    ``gram = X~'WX~``, ``xwy_t = X~'Wy~`` and ``raw = X'WX`` (diagonal).
    """

    alpha: np.ndarray
    gamma: np.ndarray
    gram: np.ndarray
    raw: np.ndarray
    xwy_t: np.ndarray
    method: str


@dataclass(frozen=True)
class _Options:
    """Checked options of :func:`event_study`."""

    outcome: str
    cluster: str
    weight: str | None
    reference: int
    window: tuple[int, int] | None


def _check_options(
    outcome: object,
    cluster: object,
    weight: object,
    tol: object,
    window: object,
    reference: object,
) -> _Options:
    """Validate the options of :func:`event_study`."""
    if not isinstance(outcome, str):
        raise ValueError(f"outcome must be a column name, got {outcome!r}")
    if cluster not in _CLUSTERS:
        raise ValueError(f"cluster must be one of {_CLUSTERS}, got {cluster!r}")
    if weight is not None and not isinstance(weight, str):
        raise ValueError(f"weight must be a column name or None, got {weight!r}")
    if not (isinstance(tol, float | int) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    win = _check_window(window, reference)
    return _Options(outcome, cluster, weight, int(reference), win)  # type: ignore[arg-type]


def _estimation_sample(panel: pd.DataFrame, opt: _Options) -> _Sample:
    """Read and check the panel's columns, code the fixed effects and drop singletons.

    Singletons (alone in their unit or stack-month cell, iteratively) are dropped as
    ``fixest`` / ``pyfixest`` do; a note records how many.
    """
    outcome, cluster, weight, win = opt.outcome, opt.cluster, opt.weight, opt.window
    if not isinstance(panel, pd.DataFrame):
        raise ValueError(f"panel must be a pandas DataFrame, got {type(panel).__name__}")
    needed = [*_INT_COLUMNS, cluster, outcome] + ([weight] if weight is not None else [])
    missing = sorted(set(needed) - set(panel.columns))
    if missing:
        raise ValueError(f"panel lacks required columns {missing}")
    if len(panel) == 0:
        raise ValueError("panel has no rows")

    unit = _int_array(panel, "unit")
    stack = _int_array(panel, "stack")
    time = _int_array(panel, "time")
    rel = _int_array(panel, "rel_time")
    treated_raw = _int_array(panel, "treated")
    bad_treated = (treated_raw != 0) & (treated_raw != 1)
    if bad_treated.any():
        bad = treated_raw[bad_treated][0]
        raise ValueError(f"column 'treated' must be 0 or 1, found {bad}")
    treated = treated_raw.astype(np.bool_)
    student = _int_array(panel, "student")
    clus = student if cluster == "student" else _int_array(panel, cluster)
    y = _float_array(panel, outcome, what="outcome")
    if weight is None:
        w = np.ones(len(panel), dtype=np.float64)
    else:
        w = _float_array(panel, weight, what="weight")
        if np.any(w <= 0):
            raise ValueError(f"weight column {weight!r} must be positive, found {w[w <= 0][0]}")

    notes: list[str] = []
    rb = np.clip(rel, win[0], win[1]) if win is not None else rel
    u_code, _ = factorize(unit)
    st_code, _ = combine_codes(factorize(stack)[0], factorize(time)[0])
    keep = singleton_mask([u_code, st_code])
    n_single = int((~keep).sum())
    if n_single:
        notes.append(f"dropped {n_single} singleton observation(s) (alone in a unit or cell)")
        u_code, y, w, rb, treated = u_code[keep], y[keep], w[keep], rb[keep], treated[keep]
        st_code, student, clus = st_code[keep], student[keep], clus[keep]
        if y.size == 0:
            raise ValueError("no observation left after dropping singletons")
        u_code, st_code = factorize(u_code)[0], factorize(st_code)[0]
    g_code, n_g = factorize(clus)
    if n_g < 2:
        raise ValueError(f"need at least two clusters of {cluster!r}, got {n_g}")
    return _Sample(u_code, st_code, y, w, rb, treated, student, g_code, n_g, n_single, notes)


def _event_time_terms(sample: _Sample, opt: _Options) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Choose the event-time terms and code each observation's term.

    Returns the terms (sorted event times with a treated observation, reference
    excluded), each observation's term index (-1: comparison row or reference) and
    the event times dropped for lack of a treated observation.
    """
    rb, treated, ref, win = sample.rb, sample.treated, opt.reference, opt.window
    if not (treated & (rb == ref)).any():
        raise ValueError(f"no treated observation at the reference period rel_time={ref}")
    if win is not None:
        candidates = np.array([r for r in range(win[0], win[1] + 1) if r != ref], np.int64)
    else:
        observed = np.unique(rb[treated])
        candidates = observed[observed != ref]
    has_treated = np.isin(candidates, np.unique(rb[treated]))
    dropped = [int(r) for r in candidates[~has_treated]]
    if dropped:
        sample.notes.append(f"no treated observation at rel_time {dropped}: terms dropped")
    terms = candidates[has_treated]
    if terms.size == 0:
        raise ValueError("no event-time term has a treated observation besides the reference")
    k_all = terms.size
    pos = np.searchsorted(terms, rb)
    pos_c = np.minimum(pos, k_all - 1)
    code = np.where(treated & (terms[pos_c] == rb), pos_c, -1)
    return terms, code, dropped


def _within_fit(sample: _Sample, terms: np.ndarray, code: np.ndarray, *, tol: float) -> _WithinFit:
    """Absorb the unit and stack-month fixed effects (exact weighted within transformation).

    Because the event-time regressors are mutually exclusive dummies, every
    cross-product is assembled from group sums (``np.bincount``) and the demeaned
    regressors are never materialised.
    """
    u_code, st_code, w, y = sample.u_code, sample.st_code, sample.w, sample.y
    n_u, n_st, nobs, k_all = sample.n_u, sample.n_st, sample.nobs, terms.size
    proj = TwoWayProjector(u_code, st_code, w, tol=tol)
    if proj.n_cells < nobs:
        raise ValueError(f"panel has {nobs - proj.n_cells} duplicate (unit, stack, time) row(s)")
    m = code >= 0
    um, sm, cm, wm = u_code[m], st_code[m], code[m], w[m]
    wy = w * y
    dx_u = np.bincount(um * k_all + cm, wm, minlength=n_u * k_all).reshape(n_u, k_all)
    dx_s = np.bincount(sm * k_all + cm, wm, minlength=n_st * k_all).reshape(n_st, k_all)
    sums_u = np.column_stack([dx_u, np.bincount(u_code, wy, minlength=n_u)])
    sums_s = np.column_stack([dx_s, np.bincount(st_code, wy, minlength=n_st)])
    # D'WX and F'WX are sparse (comparison units and all but one term per cell are 0)
    dx_u, dx_s = sp.csr_matrix(dx_u).T.tocsr(), sp.csr_matrix(dx_s).T.tocsr()
    alpha, gamma = proj.coefficients(sums_u, sums_s)
    raw = np.bincount(cm, wm, minlength=k_all)  # X'WX is diagonal (exclusive dummies)
    xwy = np.bincount(cm, wy[m], minlength=k_all)
    gram = np.diag(raw) - dx_u @ alpha[:, :k_all] - dx_s @ gamma[:, :k_all]
    gram = 0.5 * (gram + gram.T)
    xwy_t = xwy - dx_u @ alpha[:, k_all] - dx_s @ gamma[:, k_all]
    return _WithinFit(alpha, gamma, gram, raw, xwy_t, proj.method)


def _solve_within(
    fit: _WithinFit, terms: np.ndarray, notes: list[str], dropped: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop collinear terms and solve ``b = (X~'WX~)^{-1} X~'Wy~``.

    Returns the kept term indices, the bread ``(X~'WX~)^{-1}`` and ``b``; collinear
    event times are appended to ``dropped`` with a note.
    """
    kept = _independent_terms(fit.gram, fit.raw, COLLINEARITY_TOL)
    if kept.size < terms.size:
        coll = [int(r) for r in np.delete(terms, kept)]
        notes.append(f"rel_time {coll} collinear with the fixed effects or other terms: dropped")
        dropped += coll
    if kept.size == 0:
        raise ValueError("every event-time term is collinear with the fixed effects")
    a_mat = fit.gram[np.ix_(kept, kept)]
    bread = np.linalg.inv(a_mat)
    bread = 0.5 * (bread + bread.T)
    beta = np.linalg.solve(a_mat, fit.xwy_t[kept])
    return kept, bread, beta


def _cluster_scores(
    sample: _Sample, code: np.ndarray, fit: _WithinFit, kept: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Cluster scores ``s_g = sum_{i in g} w_i e_i x~_i`` from the full-model residuals.

    ``x~ = x - D alpha_x - F gamma_x`` is never materialised: the scores are the
    clusters' sums of ``w e x`` minus the fixed-effect parts. Also returns whether
    units are nested in clusters.
    """
    u_code, st_code, g_code, w = sample.u_code, sample.st_code, sample.g_code, sample.w
    n_u, n_st, n_g, k_all = sample.n_u, sample.n_st, sample.n_g, fit.raw.size
    alpha, gamma = fit.alpha, fit.gamma
    beta_ext = np.zeros(k_all + 1)
    beta_ext[kept] = beta  # index -1 (no term) stays 0
    alpha_x, gamma_x = alpha[:, kept], gamma[:, kept]
    # matrix-vector products via einsum: no threaded BLAS call for a few flops
    a_res = alpha[:, k_all] - np.einsum("ij,j->i", alpha_x, beta)
    g_res = gamma[:, k_all] - np.einsum("ij,j->i", gamma_x, beta)
    resid = sample.y - beta_ext[code] - a_res[u_code] - g_res[st_code]
    cw = w * resid
    m = code >= 0
    cm = code[m]
    scores = np.bincount(g_code[m] * k_all + cm, cw[m], minlength=n_g * k_all).reshape(n_g, k_all)[
        :, kept
    ]
    unit_nested = is_nested(u_code, g_code)
    if unit_nested:
        g_of_u = np.empty(n_u, dtype=np.intp)
        g_of_u[u_code] = g_code
        cu = np.bincount(u_code, cw, minlength=n_u)
        scores -= sp.csr_matrix((cu, (g_of_u, np.arange(n_u))), shape=(n_g, n_u)) @ alpha_x
    else:
        pair, n_pair = combine_codes(g_code, u_code)
        g_of_p = np.empty(n_pair, dtype=np.intp)
        g_of_p[pair] = g_code
        u_of_p = np.empty(n_pair, dtype=np.intp)
        u_of_p[pair] = u_code
        cp = np.bincount(pair, cw, minlength=n_pair)
        scores -= sp.csr_matrix((cp, (g_of_p, u_of_p)), shape=(n_g, n_u)) @ alpha_x
    scores -= sp.csr_matrix((cw, (g_code, st_code)), shape=(n_g, n_st)) @ gamma_x
    return scores, unit_nested


def _crv1_covariance(
    bread: np.ndarray,
    scores: np.ndarray | None,
    sample: _Sample,
    *,
    k: int,
    unit_nested: bool,
) -> tuple[np.ndarray, float, int]:
    """Clustered (CRV1) covariance with the ``fixest`` / ``pyfixest`` small-sample factor.

    ``V = G/(G-1) * (N-1)/(N-K) * A^{-1} (sum_g s_g s_g') A^{-1}`` with ``A^{-1}`` the
    bread and ``K = k + sum of fixed-effect levels - (number of sets - 1)``, where the
    levels of a set nested in the cluster (the units when ``unit_nested``, and/or the
    stack-month cells) count as one (``ssc(k_adj=True, k_fixef="nonnested", G_adj=True)``). Returns
    ``V``, the factor and ``K``; without ``scores``, ``V`` is NaN (and ``K`` still checked).
    """
    nobs, n_g = sample.nobs, sample.n_g
    levels = [(sample.n_u, unit_nested), (sample.n_st, is_nested(sample.st_code, sample.g_code))]
    k_fe = sum(n for n, _ in levels) - (len(levels) - 1)
    n_nested = sum(1 for _, nested in levels if nested)
    df_k = k + k_fe - sum(n for n, nested in levels if nested) + n_nested
    if nobs - df_k <= 0:
        raise ValueError(f"too few observations ({nobs}) for {df_k} parameters")
    factor = n_g / (n_g - 1) * (nobs - 1) / (nobs - df_k)
    if scores is None:  # coefficients only (covariance=False)
        return np.full((k, k), np.nan), factor, df_k
    v_raw = bread @ (scores.T @ scores) @ bread
    cov = factor * 0.5 * (v_raw + v_raw.T)
    return cov, factor, df_k


def _covariance(
    sample: _Sample,
    code: np.ndarray,
    fit: _WithinFit,
    kept: np.ndarray,
    beta: np.ndarray,
    bread: np.ndarray,
    *,
    covariance: bool,
) -> tuple[np.ndarray, float, int]:
    """:func:`_crv1_covariance` from the cluster scores; NaN without ``covariance``."""
    if covariance:
        scores, unit_nested = _cluster_scores(sample, code, fit, kept, beta)
    else:
        scores, unit_nested = None, is_nested(sample.u_code, sample.g_code)
    return _crv1_covariance(bread, scores, sample, k=kept.size, unit_nested=unit_nested)


def _event_study_result(
    sample: _Sample,
    opt: _Options,
    rel_terms: np.ndarray,
    beta: np.ndarray,
    cov: np.ndarray,
    factor: float,
    df_k: int,
    dropped: list[int],
    fe_method: str,
) -> EventStudyResult:
    """Count students by event time and assemble the :class:`EventStudyResult`."""
    rb, treated, ref = sample.rb, sample.treated, opt.reference
    rel_index = np.sort(np.append(rel_terms, ref))
    bins = np.searchsorted(rel_index, rb)
    in_index = (bins < rel_index.size) & (rel_index[np.minimum(bins, rel_index.size - 1)] == rb)
    s_code, n_s = factorize(sample.student)
    cnt_t = _unique_counts(
        s_code[treated & in_index], n_s, bins[treated & in_index], len(rel_index)
    )
    cnt_c = _unique_counts(
        s_code[~treated & in_index], n_s, bins[~treated & in_index], len(rel_index)
    )
    idx = pd.Index(rel_index, name="rel_time")
    rel_kept = pd.Index(rel_terms, name="rel_time")
    return EventStudyResult(
        coefficients=pd.Series(beta, index=rel_kept, name="estimate"),
        cov=pd.DataFrame(cov, index=rel_kept, columns=rel_kept),
        nobs=int(sample.nobs),
        n_clusters=int(sample.n_g),
        n_treated=int(np.count_nonzero(np.bincount(s_code[treated], minlength=n_s))),
        n_comparison=int(np.count_nonzero(np.bincount(s_code[~treated], minlength=n_s))),
        n_treated_by_rel_time=pd.Series(cnt_t, index=idx, name="n_treated"),
        n_comparison_by_rel_time=pd.Series(cnt_c, index=idx, name="n_comparison"),
        reference=ref,
        window=opt.window,
        cluster=opt.cluster,
        ssc=SSC_DESCRIPTION,
        outcome=opt.outcome,
        weight=opt.weight,
        ssc_factor=float(factor),
        df_k=int(df_k),
        df_resid=int(sample.n_g - 1),
        n_singletons=sample.n_single,
        dropped=tuple(sorted(dropped)),
        notes=tuple(sample.notes),
        fe_method=fe_method,
    )


# --------------------------------------------------------------------------------------
# estimator
# --------------------------------------------------------------------------------------


def event_study(
    panel: pd.DataFrame,
    *,
    outcome: str = "attendance_pp",
    window: tuple[int, int] | None = (-12, 12),
    reference: int = -1,
    cluster: ClusterVar = "student",
    weight: str | None = "weight",
    tol: float = 1e-10,
    covariance: bool = True,
) -> EventStudyResult:
    """Stacked event study with unit and stack-by-month fixed effects.

    Parameters
    ----------
    panel : pandas.DataFrame
        Stacked matched panel, one row per (unit, school month), with integer columns
        ``unit, stack, time, rel_time, treated, student`` (and ``school`` to cluster by
        school), the outcome and the weight column.
    outcome : str, optional
        Outcome column (finite floats).
    window : tuple of int or None, optional
        ``(lo, hi)`` with ``lo < reference < hi``: event times ``<= lo`` are binned into
        ``lo`` and ``>= hi`` into ``hi``. ``None`` gives one term per event time observed
        among treated rows.
    reference : int, optional
        Omitted event time (normalised to zero).
    cluster : {"student", "school"}, optional
        Cluster variable of the covariance.
    weight : str or None, optional
        Column of positive regression (matching) weights; ``None`` for OLS.
    tol : float, optional
        Convergence tolerance of the alternating-projections fallback of the fixed-effect
        solver (the exact block solver, used whenever every stack has at most
        3,000 months, does not iterate).
    covariance : bool, optional
        False: the coefficients only, with a NaN covariance (the whole-procedure
        bootstrap's draws, whose spread is the covariance); the checks are the same.

    Returns
    -------
    EventStudyResult
        Coefficients, cluster-robust covariance, counts, :meth:`~EventStudyResult.table`
        and :meth:`~EventStudyResult.pretrend_test`.

    Raises
    ------
    ValueError
        On missing columns, invalid values (missing outcomes, non-positive weights,
        ``treated`` outside {0, 1}), duplicate (unit, stack, time) rows, an invalid
        window, reference or cluster, no treated observation at the reference period,
        or fewer than two clusters.

    Notes
    -----
    Estimating equation, for unit ``i`` in stack ``s`` observed in school month ``t``::

        y_ist = a_is + g_st + sum_{r != ref} b_r * Treated_i * 1[bin(t - s) = r] + e_ist

    with ``a_is`` unit effects (column ``unit``) and ``g_st`` stack-by-month effects
    (``stack x time``), estimated by weighted least squares with weights ``w_ist``.
    Both fixed-effect sets are absorbed by the exact weighted within transformation
    (:class:`~leapresearch.estimation.fixed_effects.TwoWayProjector`): ``b = (X~'WX~)^{-1}
    X~'Wy~``. Because the event-time regressors are mutually exclusive dummies, every
    cross-product is assembled from group sums (``np.bincount``), and the demeaned
    regressors are never materialised.

    Singletons (observations alone in their unit or stack-month cell, iteratively) are
    dropped first, as ``fixest``/``pyfixest`` do (``fixef_rm="singleton"``); they are
    fitted perfectly by their fixed effect and do not change ``b``, only ``N`` in the
    correction. Terms without any treated observation are dropped with a note, as are
    terms collinear with the fixed effects or with other terms.

    Covariance (CRV1), clustering on ``g`` (student or school)::

        V = G/(G-1) * (N-1)/(N-K) * A^{-1} (sum_g s_g s_g') A^{-1},
        A = X~'WX~,   s_g = sum_{i in g} w_i e_i x~_i,

    with ``e`` the full-model residuals, ``N`` observations, ``G`` clusters and
    ``K = k + sum of fixed-effect levels - (number of fixed-effect sets - 1)``, where the
    levels of a set nested in the cluster (each unit lies in one student) are replaced
    by one. With student clusters ``K = k + number of stack-month cells``. This is the
    default of ``pyfixest.feols(..., vcov={"CRV1": cluster})`` (``ssc(k_adj=True,
    k_fixef="nonnested", G_adj=True)``, the analogue of R ``fixest``'s
    ``fixef.K="nested"``), so standard errors match it (checked in
    ``benchmarks/bench_estimator.py``). Confidence intervals and p-values use
    ``t(G-1)``; the pre-trend test uses ``F(q, G-1)``.
    """
    opt = _check_options(outcome, cluster, weight, tol, window, reference)
    sample = _estimation_sample(panel, opt)
    terms, code, dropped = _event_time_terms(sample, opt)
    fit = _within_fit(sample, terms, code, tol=tol)
    kept, bread, beta = _solve_within(fit, terms, sample.notes, dropped)
    cov, factor, df_k = _covariance(sample, code, fit, kept, beta, bread, covariance=covariance)
    return _event_study_result(
        sample, opt, terms[kept], beta, cov, factor, df_k, dropped, fit.method
    )
