"""Heterogeneity-robust event study: Callaway & Sant'Anna (2021) group-time ATTs.

Two-way fixed-effects and stacked event studies can be biased when effects differ across
adoption cohorts and over time. The estimator of Callaway and Sant'Anna (2021,
*Journal of Econometrics* 225(2)) avoids this by estimating one clean 2x2
difference-in-differences per (cohort, month) pair -- ATT(g, t) -- and averaging them.
This module implements the panel version with not-yet-treated or never-treated
comparisons, each cell either unconditional (no covariates) or doubly robust given
covariates (Sant'Anna and Zhao 2020, ``did::att_gt(est_method="dr")``, see
:mod:`leapresearch.estimation.drdid`), a varying or universal base period, the dynamic
(event-study) aggregation of ``did::aggte(type="dynamic")`` and analytic
influence-function standard errors.

Input is the *unstacked* student-by-school-month panel, one row per (student, month),
with the student's event month (school-month index of the first visit, missing for
students never visited) in a ``group`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np
import pandas as pd
from scipy import stats

from leapresearch.estimation.drdid import dr_did_panel
from leapresearch.estimation.event_study import WaldTest
from leapresearch.estimation.fixed_effects import factorize

ControlGroup = Literal["notyettreated", "nevertreated"]
BasePeriod = Literal["varying", "universal"]
EstMethod = Literal["unconditional", "dr"]
_CONTROL_GROUPS: tuple[str, ...] = ("notyettreated", "nevertreated")
_BASE_PERIODS: tuple[str, ...] = ("varying", "universal")
_EST_METHODS: tuple[str, ...] = ("unconditional", "dr")

SE_DESCRIPTION = (
    "analytic influence-function standard errors (did package, bstrap=FALSE): "
    "V = Psi'Psi / n^2 with Psi the n x E matrix of student-level influence functions, "
    "including the estimation of the group-share weights; one row per student, so "
    "clustered at the student; normal critical values"
)
SE_DESCRIPTION_DR = (
    "analytic influence-function standard errors (did package, est_method='dr', "
    "bstrap=FALSE): each cell's doubly-robust influence function includes the estimation "
    "of the propensity-score logit and of the outcome regression; V = Psi'Psi / n^2, "
    "including the group-share weights; clustered at the student; normal critical values"
)


@dataclass(frozen=True, eq=False)
class RobustEventStudyResult:
    """Dynamic aggregation of Callaway-Sant'Anna group-time ATTs.

    Attributes
    ----------
    estimates : pandas.Series
        ``theta(e)`` indexed by ``rel_time`` ``e = t - g``.
    cov : pandas.DataFrame
        Covariance of ``estimates`` from the influence functions.
    n_groups : pandas.Series
        Number of cohorts averaged at each ``e``.
    n_treated : pandas.Series
        Treated students contributing at each ``e`` (observed in ``t`` and the base).
    group_time : pandas.DataFrame
        The ATT(g, t) table (see :func:`group_time_effects`).
    cohorts : pandas.DataFrame
        Estimated cohorts: ``group, n_students, n_at_base`` (students observed in the
        universal base month ``g - 1 - anticipation``).
    n_students : int
        Students in the panel.
    control_group, base_period, est_method : str
        Options used.
    anticipation : int
        Months of anticipation allowed.
    window : tuple of int or None
        Event times reported.
    reference : int or None
        Event time normalised to zero (``-1 - anticipation`` with a universal base
        period, ``None`` with a varying base period).
    se_method : str
        How standard errors are computed.
    notes : tuple of str
        Dropped cohorts and cells.
    """

    estimates: pd.Series
    cov: pd.DataFrame
    n_groups: pd.Series
    n_treated: pd.Series
    group_time: pd.DataFrame
    cohorts: pd.DataFrame
    n_students: int
    control_group: str
    base_period: str
    anticipation: int
    window: tuple[int, int] | None
    reference: int | None
    est_method: str = "unconditional"
    se_method: str = SE_DESCRIPTION
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors of ``estimates``."""
        return pd.Series(
            np.sqrt(np.diag(self.cov.to_numpy())), index=self.estimates.index, name="se"
        )

    def table(self, alpha: float = 0.05) -> pd.DataFrame:
        """Tidy event-study table.

        Parameters
        ----------
        alpha : float, optional
            One minus the confidence level (pointwise normal intervals).

        Returns
        -------
        pandas.DataFrame
            Columns ``rel_time, estimate, std_error, ci_lower, ci_upper, n_groups,
            n_treated``; with a universal base period the reference event time is a row
            with estimate 0 and NaN standard error.
        """
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        z = stats.norm.ppf(1 - alpha / 2)
        est = self.estimates.to_numpy()
        se = self.std_errors.to_numpy()
        out = pd.DataFrame(
            {
                "rel_time": self.estimates.index.to_numpy(dtype=np.int64),
                "estimate": est,
                "std_error": se,
                "ci_lower": est - z * se,
                "ci_upper": est + z * se,
                "n_groups": self.n_groups.to_numpy(dtype=np.int64),
                "n_treated": self.n_treated.to_numpy(dtype=np.int64),
            }
        )
        if self.reference is not None and (
            self.window is None or self.window[0] <= self.reference <= self.window[1]
        ):
            row = pd.DataFrame(
                {
                    "rel_time": [self.reference],
                    "estimate": [0.0],
                    "std_error": [np.nan],
                    "ci_lower": [np.nan],
                    "ci_upper": [np.nan],
                    "n_groups": [len(self.cohorts)],
                    "n_treated": [int(self.cohorts["n_at_base"].sum())],
                }
            )
            out = pd.concat([out, row], ignore_index=True)
        return out.sort_values("rel_time").reset_index(drop=True)

    def pretrend_test(self) -> WaldTest:
        """Joint Wald test that all pre-period estimates are zero.

        Pre-periods are ``e < 0`` (varying base: short-difference placebos) or
        ``e < reference`` (universal base). The statistic ``W = b' V^{-1} b`` is
        compared with ``chi2(q)`` (the influence-function covariance is asymptotic).

        Raises
        ------
        ValueError
            No pre-period estimate, or their covariance is singular: some pre-period
            estimates are exact linear combinations of others (with the doubly-robust
            estimator, e.g. months that a pre-trajectory covariate averages: the outcome
            regression fits their sum exactly), so the joint test is not defined (as
            ``did``, no statistic is returned).
        """
        idx = self.estimates.index.to_numpy()
        cut = 0 if self.reference is None else self.reference
        pre = idx < cut
        if not pre.any():
            raise ValueError("no pre-period estimate to test")
        b = self.estimates.to_numpy()[pre]
        v = self.cov.to_numpy()[np.ix_(pre, pre)]
        q = int(pre.sum())
        scale = np.sqrt(np.clip(np.diag(v), 0.0, None))
        rank = 0
        if (scale > 0).all():
            corr = v / np.outer(scale, scale)
            rank = int(np.linalg.matrix_rank(corr, tol=SINGULAR_RTOL * q))
        if rank < q:
            months = ", ".join(str(int(r)) for r in idx[pre])
            raise ValueError(
                f"the covariance of the {q} pre-period estimates (months {months}) is "
                f"singular (rank {rank}): some are linear combinations of others, so their "
                "joint test is not defined"
            )
        wald = float(b @ np.linalg.solve(v, b))
        return WaldTest(
            stat=wald,
            df=q,
            p_value=float(stats.chi2.sf(wald, q)),
            df_denom=None,
            wald=wald,
            terms=tuple(int(r) for r in idx[pre]),
            distribution="chi2",
        )


# --------------------------------------------------------------------------------------
# data preparation
# --------------------------------------------------------------------------------------


SINGULAR_RTOL: float = 1e-10
"""A covariance whose correlation matrix has a singular value below this (times its size)
is treated as singular (a condition number beyond about 1e10): no test is computed from it."""


@dataclass(frozen=True)
class _Wide:
    """Outcome matrix with students sorted by cohort (never-treated last)."""

    y: np.ndarray  # (n_periods, n_students), NaN where unobserved
    periods: np.ndarray  # sorted period values
    group: np.ndarray  # cohort per (sorted) student, NaN for never treated
    n_finite: int  # students with a cohort (the first n_finite columns)
    units: np.ndarray  # student label per (sorted) student


class _CellOptions(TypedDict):
    """Checked options of :func:`_cells` (see :func:`callaway_santanna`)."""

    window: tuple[int, int] | None
    control_group: str
    include_never_treated: bool
    base_period: str
    anticipation: int
    min_group_size: int
    est_method: str
    pre_trajectory: tuple[int, ...]
    trim: float


def _validate_options(
    window: object,
    control_group: object,
    include_never_treated: object,
    base_period: object,
    anticipation: object,
    min_group_size: object,
    est_method: object = "unconditional",
    pre_trajectory: object = (),
    trim: object = 0.995,
) -> _CellOptions:
    """Check the options shared by :func:`group_time_effects` and :func:`callaway_santanna`."""
    if control_group not in _CONTROL_GROUPS:
        raise ValueError(f"control_group must be one of {_CONTROL_GROUPS}, got {control_group!r}")
    if base_period not in _BASE_PERIODS:
        raise ValueError(f"base_period must be one of {_BASE_PERIODS}, got {base_period!r}")
    if est_method not in _EST_METHODS:
        raise ValueError(f"est_method must be one of {_EST_METHODS}, got {est_method!r}")
    if not isinstance(include_never_treated, bool):
        raise ValueError(f"include_never_treated must be a bool, got {include_never_treated!r}")
    for name, val in (("anticipation", anticipation), ("min_group_size", min_group_size)):
        if not isinstance(val, int | np.integer) or isinstance(val, bool) or val < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {val!r}")
    if int(min_group_size) < 1:  # type: ignore[call-overload]
        raise ValueError(f"min_group_size must be at least 1, got {min_group_size!r}")
    if not isinstance(pre_trajectory, tuple | list) or not all(
        isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1
        for k in pre_trajectory
    ):
        raise ValueError(f"pre_trajectory must be positive integers, got {pre_trajectory!r}")
    if not isinstance(trim, float | int) or not 0.5 < float(trim) <= 1.0:
        raise ValueError(f"trim must lie in (0.5, 1], got {trim!r}")
    return _CellOptions(
        window=_check_window(window),
        control_group=str(control_group),
        include_never_treated=include_never_treated,
        base_period=str(base_period),
        anticipation=int(anticipation),  # type: ignore[call-overload]
        min_group_size=int(min_group_size),  # type: ignore[call-overload]
        est_method=str(est_method),
        pre_trajectory=tuple(sorted({int(k) for k in pre_trajectory})),
        trim=float(trim),
    )


def _check_window(window: object) -> tuple[int, int] | None:
    """The event-time window as a pair of ints ``lo <= hi``, or None."""
    if window is None:
        return None
    if (
        not isinstance(window, tuple | list)
        or len(window) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in window)
        or int(window[0]) > int(window[1])
    ):
        raise ValueError(f"window must be None or integers (lo, hi) with lo <= hi, got {window!r}")
    return int(window[0]), int(window[1])


def _prepare(panel: pd.DataFrame, outcome: str, group: str, time: str, unit: str) -> _Wide:
    if not isinstance(panel, pd.DataFrame):
        raise ValueError(f"panel must be a pandas DataFrame, got {type(panel).__name__}")
    missing = sorted({outcome, group, time, unit} - set(panel.columns))
    if missing:
        raise ValueError(f"panel lacks required columns {missing}")
    if len(panel) == 0:
        raise ValueError("panel has no rows")
    ycol = panel[outcome]
    if not pd.api.types.is_numeric_dtype(ycol.dtype) or pd.api.types.is_bool_dtype(ycol):
        raise ValueError(f"outcome column {outcome!r} must be numeric, got dtype {ycol.dtype}")
    y = ycol.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(y)):
        raise ValueError(
            f"outcome column {outcome!r} has {int((~np.isfinite(y)).sum())} missing values"
        )
    tcol = panel[time]
    if not pd.api.types.is_integer_dtype(tcol.dtype) or tcol.isna().any():
        raise ValueError(f"time column {time!r} must be integer without missing values")
    tval = tcol.to_numpy(dtype=np.int64)
    gcol = panel[group]
    if not pd.api.types.is_numeric_dtype(gcol.dtype) or pd.api.types.is_bool_dtype(gcol):
        raise ValueError(f"group column {group!r} must be numeric, got dtype {gcol.dtype}")
    gval = gcol.to_numpy(dtype=np.float64, na_value=np.nan)
    if panel[unit].isna().any():
        raise ValueError(f"unit column {unit!r} has missing values")

    s_code, n_s = factorize(panel[unit].to_numpy())
    t_code, n_t = factorize(tval)
    periods = np.empty(n_t, dtype=np.int64)
    periods[t_code] = tval
    cell = s_code.astype(np.int64) * n_t + t_code
    if np.bincount(cell, minlength=n_s * n_t).max() > 1:
        raise ValueError(f"panel has duplicate ({unit}, {time}) rows")
    g_first = np.empty(n_s)
    g_first[s_code] = gval
    g_rows = g_first[s_code]
    same = (g_rows == gval) | (np.isnan(g_rows) & np.isnan(gval))
    if not same.all():
        bad = panel[unit].to_numpy()[~same][0]
        raise ValueError(f"group must be constant within {unit}; it varies for {unit}={bad!r}")
    finite = np.isfinite(g_first)
    if np.any(g_first[finite] != np.round(g_first[finite])):
        raise ValueError(f"group column {group!r} must hold integer school-month indices or NA")
    order = np.argsort(np.where(finite, g_first, np.inf), kind="stable")
    rank = np.empty(n_s, dtype=np.intp)
    rank[order] = np.arange(n_s)
    wide = np.full((n_t, n_s), np.nan)
    wide[t_code, rank[s_code]] = y
    g_sorted = g_first[order]
    labels = np.empty(n_s, dtype=object)
    labels[s_code] = panel[unit].to_numpy()
    return _Wide(wide, periods, g_sorted, int(np.isfinite(g_sorted).sum()), labels[order])


# --------------------------------------------------------------------------------------
# group-time effects
# --------------------------------------------------------------------------------------


_CELL_COLUMNS = [
    "group",
    "time",
    "rel_time",
    "base_time",
    "att",
    "std_error",
    "n_treated",
    "n_comparison",
    "group_size",
]


@dataclass(frozen=True)
class _CellRules:
    """Options that decide each cell's base month, comparison students and estimator."""

    window: tuple[int, int] | None
    control_group: str
    use_never: bool
    base_period: str
    anticipation: int
    est_method: str = "unconditional"
    pre_trajectory: tuple[int, ...] = ()
    static: np.ndarray | None = None  # (n_students, k) time-invariant covariates, sorted
    trim: float = 0.995


@dataclass
class _Diagnostics:
    """Counts reported in the notes of the result."""

    empty: int = 0  # cells without treated or comparison students
    ridge: int = 0  # DR cells whose logit needed the ridge penalty
    trimmed: int = 0  # comparison student-cells trimmed for a score >= trim
    no_pre: int = 0  # treated student-cells without an observed pre-trajectory month
    last_logit: np.ndarray | None = None  # previous cell's logit: a warm start only


def _comparison_slices(wide: _Wide, tr: slice, thr: int, rules: _CellRules) -> list[slice]:
    """Comparison students of a cell: cohort after ``thr`` (never cohort ``tr``), never treated.

    Students are sorted by cohort, so each comparison set is a few contiguous slices.
    """
    n_fin, n = wide.n_finite, wide.group.size
    ctrl: list[slice] = []
    if rules.control_group == "notyettreated":
        start = int(np.searchsorted(wide.group[:n_fin], thr, side="right"))
        if start < tr.start:
            ctrl.append(slice(start, tr.start))
        ctrl.append(slice(max(start, tr.stop), n_fin))
    if rules.use_never:
        ctrl.append(slice(n_fin, n))
    return ctrl


def pre_trajectory_covariates(
    y: np.ndarray, periods: np.ndarray, base: int, lengths: tuple[int, ...]
) -> np.ndarray:
    """Means of each student's last ``k`` observed months up to ``base``, for each ``k``.

    Parameters
    ----------
    y : numpy.ndarray
        ``(n_periods, n_students)`` outcomes, NaN where unobserved.
    periods : numpy.ndarray
        Sorted school-month indices of the rows of ``y``.
    base : int
        The base month; only months ``base - max(lengths) + 1 .. base`` are used, so the
        covariates are measured before the first visit and before any anticipation
        month (the base month is ``g - 1 - anticipation``). The base month itself is
        included: students are picked on a low spell, and a comparison that is not
        conditioned on attendance in the base month does not share it.
    lengths : tuple of int
        Number of most recent observed months averaged, one covariate per entry (``1``:
        the base month itself, observed for every student in a cell); the largest is
        the mean of every observed month of the window.

    Returns
    -------
    numpy.ndarray
        ``(n_students, len(lengths))``; NaN for students with no observed month in the
        window (never the case for a student in a cell, who is observed at the base).
    """
    k_max = max(lengths)
    rows = np.flatnonzero((periods > base - k_max) & (periods <= base))
    out = np.full((y.shape[1], len(lengths)), np.nan)
    if rows.size == 0:
        return out
    recent = y[rows[::-1]]  # most recent month first
    seen = ~np.isnan(recent)
    rank = np.cumsum(seen, axis=0)
    filled = np.where(seen, recent, 0.0)
    for j, k in enumerate(lengths):
        take = seen & (rank <= k)
        cnt = take.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(cnt > 0, (filled * take).sum(axis=0) / cnt, np.nan)
    return out


def _cohort_covariates(wide: _Wide, base: int, rules: _CellRules) -> np.ndarray | None:
    """The DR covariates of every student for a cohort with base month ``base``."""
    if rules.est_method != "dr":
        return None
    parts = []
    if rules.pre_trajectory:
        parts.append(pre_trajectory_covariates(wide.y, wide.periods, base, rules.pre_trajectory))
    if rules.static is not None:
        parts.append(rules.static)
    if not parts:
        return np.zeros((wide.group.size, 0))
    return np.column_stack(parts)


def _cell_estimate(
    d_t: np.ndarray,
    d_c: np.ndarray,
    x_t: np.ndarray | None,
    x_c: np.ndarray | None,
    *,
    rules: _CellRules,
    diag: _Diagnostics,
    nan_t: np.ndarray | None = None,
    nan_c: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray, int, int] | None:
    """ATT of one cell and each student's contribution ``phi`` to its influence function.

    ``phi`` is scaled so that the cell variance is ``sum(phi**2)`` and the event-time
    accumulator adds ``n_g * phi``; zero for students not in the cell. None if the cell
    has no treated or no comparison student. ``nan_t``, ``nan_c``: the rows of ``x_t``,
    ``x_c`` with a missing covariate, when the caller has them (the same for every month
    of a cohort).
    """
    ok_t, ok_c = ~np.isnan(d_t), ~np.isnan(d_c)
    if x_t is not None and x_c is not None:
        no_pre_t = ok_t & (np.isnan(x_t).any(axis=1) if nan_t is None else nan_t)
        ok_t &= ~no_pre_t
        ok_c &= ~(np.isnan(x_c).any(axis=1) if nan_c is None else nan_c)
    n_t, n_c = int(ok_t.sum()), int(ok_c.sum())
    if n_t == 0 or n_c == 0:
        diag.empty += 1
        return None
    if x_t is None or x_c is None:
        mu_t, mu_c = float(d_t[ok_t].mean()), float(d_c[ok_c].mean())
        phi_t = np.where(ok_t, d_t - mu_t, 0.0) / n_t
        phi_c = -np.where(ok_c, d_c - mu_c, 0.0) / n_c
        return mu_t - mu_c, phi_t, phi_c, n_t, n_c
    diag.no_pre += int(no_pre_t.sum())
    dy = np.concatenate([d_t[ok_t], d_c[ok_c]])
    treat = np.concatenate([np.ones(n_t), np.zeros(n_c)])
    cell = dr_did_panel(
        dy, treat, np.vstack([x_t[ok_t], x_c[ok_c]]), trim=rules.trim, start=diag.last_logit
    )
    diag.last_logit = None if cell.ridge else cell.logit
    diag.ridge += int(cell.ridge)
    diag.trimmed += cell.n_trimmed
    if not np.isfinite(cell.att):
        diag.empty += 1
        return None
    n1 = n_t + n_c
    phi_t, phi_c = np.zeros(d_t.size), np.zeros(d_c.size)
    phi_t[ok_t] = cell.influence[:n_t] / n1
    phi_c[ok_c] = cell.influence[n_t:] / n1
    return cell.att, phi_t, phi_c, n_t, n_c


def _cohort_cells(
    wide: _Wide,
    g: int,
    tr: slice,
    size: np.integer,
    *,
    col: dict[int, int],
    rules: _CellRules,
    rows: list[tuple],
    acc: np.ndarray | None,
    e_lo: int,
    diag: _Diagnostics,
) -> None:
    """Estimate the 2x2 DiD ATT(g, t) of cohort ``g`` (students ``tr``) for every month.

    Appends one row per estimated cell to ``rows`` and, if ``acc`` is given, adds
    ``pg * psi`` to its row of event time ``t - g``; counts skipped cells in ``diag``.
    """
    ymat, window, anticipation = wide.y, rules.window, rules.anticipation
    univ_base = g - 1 - anticipation
    x_all = _cohort_covariates(wide, univ_base, rules)
    x_nan = None if x_all is None else np.isnan(x_all).any(axis=1)
    # the comparisons' covariates of the last set of comparison slices: with never-visited
    # comparisons, the same for every month of the cohort (stacked once, not per month)
    last: tuple[tuple, np.ndarray, np.ndarray] | None = None
    diag.last_logit = None
    for t in wide.periods:
        t = int(t)
        e = t - g
        if window is not None and not window[0] <= e <= window[1]:
            continue
        if t >= g - anticipation or rules.base_period == "universal":
            base = univ_base
        else:
            base = t - 1
        if base == t:  # universal base period: normalised to zero, not estimated
            continue
        if base not in col:
            continue
        d = ymat[col[t]] - ymat[col[base]]
        # comparison students: cohort after max(t, base) + anticipation, never g
        ctrl = _comparison_slices(wide, tr, max(t, base) + anticipation, rules)
        d_c = np.concatenate([d[s] for s in ctrl]) if ctrl else np.zeros(0)
        x_t = x_c = nan_t = nan_c = None
        if x_all is not None:
            x_t, nan_t = x_all[tr], x_nan[tr]
            key = tuple((s.start, s.stop) for s in ctrl)
            if last is None or last[0] != key:
                last = (
                    key,
                    np.vstack([x_all[s] for s in ctrl]) if ctrl else np.zeros((0, x_all.shape[1])),
                    np.concatenate([x_nan[s] for s in ctrl]) if ctrl else np.zeros(0, bool),
                )
            x_c, nan_c = last[1], last[2]
        fit = _cell_estimate(d[tr], d_c, x_t, x_c, rules=rules, diag=diag, nan_t=nan_t, nan_c=nan_c)
        if fit is None:
            continue
        att, phi_t, phi_c, n_t, n_c = fit
        se = np.sqrt(float(phi_t @ phi_t) + float(phi_c @ phi_c))
        rows.append((g, t, e, base, att, se, n_t, n_c, int(size)))
        if acc is not None:
            # psi_i = n * phi_i; accumulate pg * psi with pg = n_g / n, i.e. n_g * phi
            j = e - e_lo
            acc[j, tr] += size * phi_t
            pos = 0
            for s in ctrl:
                m = s.stop - s.start
                acc[j, s] += size * phi_c[pos : pos + m]
                pos += m


def _notes(diag: _Diagnostics, no_base: int, rules: _CellRules) -> list[str]:
    """Sentences on cohorts and cells not estimated and on the DR safeguards used."""
    notes = []
    if no_base:
        notes.append(f"{no_base} cohort(s) without a pre-period in the panel not estimated")
    if diag.empty:
        notes.append(
            f"{diag.empty} (g, t) cell(s) without treated or (untrimmed) comparison students "
            "skipped"
        )
    if rules.est_method == "dr":
        if diag.no_pre:
            notes.append(f"{diag.no_pre} treated student-cell(s) with missing covariates left out")
        if diag.ridge:
            notes.append(
                f"{diag.ridge} cell(s) whose propensity logit did not converge (separation) "
                "refitted with a ridge penalty"
            )
        if diag.trimmed:
            notes.append(
                f"{diag.trimmed} comparison student-cell(s) with a propensity score of at "
                f"least {rules.trim} given weight zero"
            )
    return notes


def _cells(
    wide: _Wide,
    options: _CellOptions,
    *,
    static: np.ndarray | None = None,
    accumulate: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None, np.ndarray, list[str]]:
    """Compute every ATT(g, t); optionally accumulate ``pg * psi`` per event time.

    Returns the cell table, the cohort table, the ``(n_e, n_students)`` accumulator
    (or None), the event times of its rows and notes.
    """
    ymat, periods, gs, n_fin = wide.y, wide.periods, wide.group, wide.n_finite
    window, anticipation = options["window"], options["anticipation"]
    n = gs.size
    col = {int(p): i for i, p in enumerate(periods)}
    groups, g_start = np.unique(gs[:n_fin], return_index=True)
    g_end = np.append(g_start[1:], n_fin)
    sizes = g_end - g_start
    notes: list[str] = []
    min_size = options["min_group_size"]
    if options["est_method"] == "dr":  # as did: a logit needs more students than covariates
        k = len(options["pre_trajectory"]) + (0 if static is None else static.shape[1])
        min_size = max(min_size, k + 5)
    small = sizes < min_size
    if small.any():
        notes.append(
            f"{int(small.sum())} cohort(s) with fewer than {min_size} students not "
            "estimated (they still serve as not-yet-treated comparisons)"
        )
    e_lo = window[0] if window is not None else int(periods[0] - groups.max(initial=0))
    e_hi = window[1] if window is not None else int(periods[-1] - groups.min(initial=0))
    e_values = np.arange(e_lo, e_hi + 1)
    acc = np.zeros((e_values.size, n)) if accumulate else None  # rows contiguous
    use_never = options["control_group"] == "nevertreated" or options["include_never_treated"]
    if use_never and n_fin == n:
        notes.append("no never-treated student in the panel")
    rules = _CellRules(
        window, options["control_group"], use_never, options["base_period"], anticipation,
        options["est_method"], options["pre_trajectory"], static, options["trim"],
    )  # fmt: skip
    rows: list[tuple] = []
    cohort_rows: list[tuple[int, int, int]] = []
    no_base, diag = 0, _Diagnostics()
    for gi, g in enumerate(groups):  # loops over cohorts x months (~30 x 50), not students
        if small[gi]:
            continue
        g = int(g)
        univ_base = g - 1 - anticipation
        if univ_base not in col:
            no_base += 1
            continue
        tr = slice(int(g_start[gi]), int(g_end[gi]))
        at_base = int(np.count_nonzero(~np.isnan(ymat[col[univ_base], tr])))
        cohort_rows.append((g, int(sizes[gi]), at_base))
        _cohort_cells(
            wide, g, tr, sizes[gi], col=col, rules=rules, rows=rows, acc=acc, e_lo=e_lo,
            diag=diag,
        )  # fmt: skip
    notes.extend(_notes(diag, no_base, rules))
    table = pd.DataFrame(rows, columns=_CELL_COLUMNS)
    cohorts = pd.DataFrame(cohort_rows, columns=["group", "n_students", "n_at_base"])
    return table, cohorts, acc, e_values, notes


def _static_covariates(covariates: pd.DataFrame | None, wide: _Wide) -> np.ndarray | None:
    """Time-invariant covariates aligned with the (sorted) students of ``wide``."""
    if covariates is None:
        return None
    if not isinstance(covariates, pd.DataFrame):
        raise ValueError(f"covariates must be a DataFrame indexed by unit, got {type(covariates)}")
    bad = [c for c in covariates.columns if not pd.api.types.is_numeric_dtype(covariates[c])]
    if bad:
        raise ValueError(f"covariates must be numeric (dummy-code categories); not: {bad}")
    if not covariates.index.is_unique:
        raise ValueError("covariates must have one row per unit (duplicate index values)")
    x = covariates.reindex(pd.Index(wide.units)).to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(x).any(axis=1)
    if missing.any():
        raise ValueError(
            f"covariates lack a complete row for {int(missing.sum())} unit(s) of the panel, "
            f"e.g. {wide.units[np.flatnonzero(missing)[0]]!r}"
        )
    return x


def group_time_effects(
    panel: pd.DataFrame,
    *,
    outcome: str = "attendance_pp",
    group: str = "event_time",
    time: str = "time",
    unit: str = "student",
    window: tuple[int, int] | None = (-12, 12),
    control_group: ControlGroup = "notyettreated",
    include_never_treated: bool = False,
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    min_group_size: int = 5,
    est_method: EstMethod = "unconditional",
    covariates: pd.DataFrame | None = None,
    pre_trajectory: tuple[int, ...] = (),
    trim: float = 0.995,
) -> pd.DataFrame:
    """Callaway-Sant'Anna group-time average treatment effects ATT(g, t).

    Parameters are those of :func:`callaway_santanna`.

    Returns
    -------
    pandas.DataFrame
        One row per estimated cell: ``group, time, rel_time, base_time, att,
        std_error, n_treated, n_comparison, group_size`` (``std_error`` is the
        cell's own influence-function standard error).

    Notes
    -----
    For cohort ``g`` (students first visited in school month ``g``) and month ``t``::

        ATT(g, t) = mean_{i: G_i = g} (y_it - y_ib) - mean_{i in C(g, t)} (y_it - y_ib)

    over students observed in both ``t`` and the base month ``b``: ``b = g - 1 -
    anticipation`` for post-periods (``t >= g - anticipation``) and for every period
    with a universal base, ``b = t - 1`` for pre-periods with a varying base. The
    comparison set ``C(g, t)`` is students first visited after ``max(t, b) +
    anticipation`` other than cohort ``g`` ("notyettreated"; plus never-visited
    students if ``include_never_treated``), or never-visited students only
    ("nevertreated"). Means are unweighted. No small-sample correction: the cell
    variance is ``sum_T (dy - mu_T)^2 / n_T^2 + sum_C (dy - mu_C)^2 / n_C^2``.

    With ``est_method="dr"`` the cell is instead the doubly-robust DiD (Sant'Anna and
    Zhao 2020) given covariates ``X`` (the pre-trajectory means and ``covariates``)::

        ATT(g, t) = mean_T(dy - m(X)) - sum_C w(X) (dy - m(X)) / sum_C w(X),
        w(X) = p(X) / (1 - p(X))

    with ``p`` a logit of being in cohort ``g`` rather than a comparison and ``m`` the
    OLS regression of the comparisons' change ``dy``; its variance is
    ``sum psi^2 / n_cell^2`` with ``psi`` the influence function including both
    nuisance fits. Students with a missing covariate are left out of the cell.
    """
    options = _validate_options(
        window, control_group, include_never_treated, base_period, anticipation,
        min_group_size, est_method, pre_trajectory, trim,
    )  # fmt: skip
    wide = _prepare(panel, outcome, group, time, unit)
    static = _static_covariates(covariates, wide)
    table, _, _, _, _ = _cells(wide, options, static=static, accumulate=False)
    return table


def callaway_santanna(
    panel: pd.DataFrame,
    *,
    outcome: str = "attendance_pp",
    group: str = "event_time",
    time: str = "time",
    unit: str = "student",
    window: tuple[int, int] | None = (-12, 12),
    control_group: ControlGroup = "notyettreated",
    include_never_treated: bool = False,
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    min_group_size: int = 5,
    est_method: EstMethod = "unconditional",
    covariates: pd.DataFrame | None = None,
    pre_trajectory: tuple[int, ...] = (),
    trim: float = 0.995,
) -> RobustEventStudyResult:
    """Heterogeneity-robust event study (Callaway & Sant'Anna 2021, dynamic aggregation).

    Parameters
    ----------
    panel : pandas.DataFrame
        Unstacked panel, one row per (student, school month), unbalanced allowed.
    outcome : str, optional
        Outcome column (finite floats).
    group : str, optional
        Column with the school-month index of the student's event month (first
        visit); missing (NaN / NA) for students never visited. Constant per student.
    time : str, optional
        Integer school-month index (consecutive months differ by one).
    unit : str, optional
        Student identifier.
    window : tuple of int or None, optional
        Event times ``e = t - g`` estimated and reported (``lo <= e <= hi``); ``None``
        for all. No binning.
    control_group : {"notyettreated", "nevertreated"}, optional
        Comparison students: first visited after the compared months, or never visited.
    include_never_treated : bool, optional
        With ``"notyettreated"``, also use never-visited students as comparisons.
    base_period : {"varying", "universal"}, optional
        ``"varying"``: pre-period cells compare consecutive months (placebo short
        differences, as ``did``'s default); ``"universal"``: every cell is relative to
        ``g - 1 - anticipation``, which becomes the zero reference.
    anticipation : int, optional
        Months before the event in which effects may already start.
    min_group_size : int, optional
        Cohorts with fewer students are not estimated (with ``"dr"``, at least the
        number of covariates plus five, as ``did``).
    est_method : {"unconditional", "dr"}, optional
        Difference of mean changes, or doubly-robust DiD given covariates.
    covariates : pandas.DataFrame, optional
        ``"dr"``: time-invariant numeric covariates indexed by ``unit``.
    pre_trajectory : tuple of int, optional
        ``"dr"``: mean outcome of the last ``k`` observed months up to the base month,
        one covariate per ``k`` (:func:`pre_trajectory_covariates`).
    trim : float, optional
        ``"dr"``: comparisons with a propensity score at least this get weight zero.

    Returns
    -------
    RobustEventStudyResult
        Estimates by event time, covariance, counts, ``.table()``, ``.group_time``.

    Raises
    ------
    ValueError
        On missing columns or values, duplicate (student, month) rows, a cohort that
        varies within a student, invalid options, or when no event time is estimable.

    Notes
    -----
    Estimating equations. For each cohort-month cell the 2x2 DiD of
    :func:`group_time_effects` (unconditional or doubly robust); then, for each event
    time ``e``::

        theta(e) = sum_g w_g(e) ATT(g, g + e),   w_g(e) = n_g / sum_{g' in K(e)} n_g'

    over the cohorts ``K(e)`` with an estimated cell at ``e`` (``n_g``: students in
    cohort ``g``), as ``did::aggte(type="dynamic")``.

    Standard errors are analytic, from influence functions (``did`` with
    ``bstrap=FALSE``): a cell's influence function is ``psi_i = n [D_i (dy_i -
    mu_T) / n_T - C_i (dy_i - mu_C) / n_C]``; the aggregate adds the influence
    function of the estimated weights, ``n (a_i / N_K - c_i B / N_K^2)`` with ``N_K =
    sum_K n_g``, ``B = sum_K n_g ATT_g``, ``a_i`` the ATT of student ``i``'s cohort
    (0 outside ``K(e)``) and ``c_i`` the indicator of being in ``K(e)``. Then
    ``V = Psi'Psi / n^2``. With ``"dr"`` the cell influence function is that of
    :func:`~leapresearch.estimation.drdid.dr_did_panel` (including the estimation of
    the propensity score and the outcome regression) scaled by ``n / n_cell``, as
    ``did``. One row of ``Psi`` per student, so the variance is clustered at the
    student; no small-sample correction, normal intervals. Vectorised over students
    (sorted by cohort); only cohorts x months are looped over.
    """
    options = _validate_options(
        window, control_group, include_never_treated, base_period, anticipation,
        min_group_size, est_method, pre_trajectory, trim,
    )  # fmt: skip
    wide = _prepare(panel, outcome, group, time, unit)
    return _estimate(wide, options, _static_covariates(covariates, wide))


def _estimate(
    wide: _Wide, options: _CellOptions, static: np.ndarray | None
) -> RobustEventStudyResult:
    """All cells, their dynamic aggregation and the result of :func:`callaway_santanna`."""
    cells, cohort_table, acc, e_values, notes = _cells(
        wide, options, static=static, accumulate=True
    )
    fields, cohorts = _dynamic_aggregation(cells, acc, e_values, wide)
    universal = options["base_period"] == "universal"
    return RobustEventStudyResult(
        **fields,
        group_time=cells,
        cohorts=cohort_table[cohort_table["group"].isin(cohorts)].reset_index(drop=True),
        n_students=int(wide.group.size),
        control_group=options["control_group"],
        base_period=options["base_period"],
        est_method=options["est_method"],
        se_method=SE_DESCRIPTION_DR if options["est_method"] == "dr" else SE_DESCRIPTION,
        anticipation=options["anticipation"],
        window=options["window"],
        reference=-1 - options["anticipation"] if universal else None,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------
# dynamic aggregation
# --------------------------------------------------------------------------------------


def _cohort_index(wide: _Wide, cohorts: np.ndarray) -> np.ndarray:
    """Cohort of each (sorted) student as an index into ``cohorts``, -1 if none."""
    n = wide.group.size
    gpos = np.full(n, -1, dtype=np.intp)
    fin = np.isfinite(wide.group)
    gpos[fin] = np.searchsorted(cohorts, wide.group[fin])
    gpos[fin & ~np.isin(wide.group, cohorts)] = -1
    return gpos


def _dynamic_aggregation(
    cells: pd.DataFrame, acc: np.ndarray | None, e_values: np.ndarray, wide: _Wide
) -> tuple[dict[str, pd.Series | pd.DataFrame], np.ndarray]:
    """Average the ATT(g, g + e) over cohorts by size, with influence-function covariance.

    ``theta(e) = B / N_K`` with ``B = sum_K n_g ATT_g``; each student's influence
    function adds the estimation of the weights, ``n (a_i / N_K - c_i B / N_K^2)``, to
    the cells' accumulated ``n * acc / N_K``; ``V = Psi'Psi / n^2``. Returns the
    ``estimates, cov, n_groups, n_treated`` fields of the result, indexed by event
    time, and the estimated cohorts.
    """
    if cells.empty:
        raise ValueError("no (cohort, month) cell could be estimated")
    assert acc is not None
    cohorts = np.unique(cells["group"].to_numpy())
    gpos = _cohort_index(wide, cohorts)
    n = wide.group.size
    present = np.isin(e_values, cells["rel_time"].to_numpy())
    est, n_groups, n_treated = [], [], []
    psi = np.zeros((int(present.sum()), n))
    for j_out, j in enumerate(np.flatnonzero(present)):  # loop over event times
        e = int(e_values[j])
        ce = cells[cells["rel_time"] == e]
        sizes = ce["group_size"].to_numpy(dtype=np.float64)
        atts = ce["att"].to_numpy()
        n_k = sizes.sum()
        big_b = float(sizes @ atts)
        est.append(big_b / n_k)
        n_groups.append(len(ce))
        n_treated.append(int(ce["n_treated"].sum()))
        att_of = np.zeros(cohorts.size + 1)  # last slot: students outside K(e)
        in_k = np.zeros(cohorts.size + 1)
        kpos = np.searchsorted(cohorts, ce["group"].to_numpy())
        att_of[kpos] = atts
        in_k[kpos] = 1.0
        a_i, c_i = att_of[gpos], in_k[gpos]
        wif = n * (a_i / n_k - c_i * big_b / n_k**2)
        psi[j_out] = n * acc[j] / n_k + wif
    cov = psi @ psi.T / n**2
    idx = pd.Index(e_values[present], name="rel_time")
    fields = {
        "estimates": pd.Series(est, index=idx, name="estimate"),
        "cov": pd.DataFrame(cov, index=idx, columns=idx),
        "n_groups": pd.Series(n_groups, index=idx, name="n_groups"),
        "n_treated": pd.Series(n_treated, index=idx, name="n_treated"),
    }
    return fields, cohorts
