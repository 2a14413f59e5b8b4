"""Comparison pools and matching candidates, one stack per event month.

A *stack* is an event month ``e`` (school-month index). Its treated students are the
visited students whose first completed visit falls in ``e``; its pool is every student
who was never visited, enrolled (on the October roster) in the school year of ``e``, in a
district of the stack's treated students (unless other districts are allowed), with at
least ``min_pre_months`` months of attendance in the ``pre_months`` school months before
``e``. A never-visited student is a candidate in every stack whose rules it meets; each
matched comparison takes the event month of its stack (the stacked design).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leapresearch.config import MatchingConfig, PoolConfig
from leapresearch.data.panel import (
    NEVER_VISITED,
    AnalyticPanel,
    demographic_indicators,
    first_event_times,
    row_positions,
)


@dataclass(frozen=True)
class Candidates:
    """Matching candidates and the bookkeeping of who could not be a candidate.

    Attributes
    ----------
    frame : DataFrame
        One row per (stack, student): ``stack``, ``student``, ``treated``, ``district``,
        ``grade_band``, ``school``, the covariates and the extra balance variables.
    covariates : list of str
        Numeric columns used in the propensity score.
    extra : list of str
        Pre-period variables not used in matching, for the balance check.
    excluded_treated : DataFrame
        Visited students who cannot be matched at all, with ``stack``, ``student`` and
        ``reason`` (``not_on_roster_in_event_year`` or ``no_pre_period_attendance``).
    """

    frame: pd.DataFrame
    covariates: list[str]
    extra: list[str]
    excluded_treated: pd.DataFrame


def cohort_candidates(
    panel: AnalyticPanel,
    *,
    pool: PoolConfig,
    matching: MatchingConfig,
    cohorts: Sequence[str] | None = None,
) -> Candidates:
    """:func:`build_candidates` for the first visits of ``cohorts`` (None: every cohort).

    The stacks are the event months of those visits; visited students of other cohorts
    are left out of them. ``leapresearch validate`` (the evaluability check) and
    :func:`leapresearch.analysis.sample.prepare` build the candidates of a run with this.
    """
    events = panel.events
    if cohorts is not None:
        events = events.loc[events["cohort"].isin(cohorts)]
    candidates = build_candidates(
        panel, pool=pool, matching=matching, stacks=np.unique(events["event_time"].to_numpy())
    )
    if cohorts is None:
        return candidates
    frame = candidates.frame
    keep = ~frame["treated"] | frame["student"].isin(events["student"])
    return dataclasses.replace(candidates, frame=frame.loc[keep].reset_index(drop=True))


def _pre_period(
    panel: AnalyticPanel, student: np.ndarray, stack: np.ndarray, months: int, *, first: int = 1
) -> np.ndarray:
    """Rates in ``months`` school months before each stack's event month, from ``first`` back.

    Column ``j`` holds month ``stack - first - j``; NaN where no data. Rows are filled a block
    at a time, each row's months gathered at once (they lie side by side in the student's
    row of ``panel.rates``), not a column at a time across every row.
    """
    out = np.empty((len(student), months))
    n_times = panel.rates.shape[1]
    back = np.arange(first, first + months)
    for lo in range(0, len(student), _PRE_PERIOD_BLOCK):
        hi = min(lo + _PRE_PERIOD_BLOCK, len(student))
        col = (stack[lo:hi, None] - panel.time_min) - back  # (rows, months)
        ok = (col >= 0) & (col < n_times)
        block = panel.rates[student[lo:hi, None], np.clip(col, 0, max(n_times - 1, 0))]
        block[~ok] = np.nan
        out[lo:hi] = block
    return out


_PRE_PERIOD_BLOCK = 65_536
"""Candidate rows gathered at once by :func:`_pre_period` (bounds its temporaries)."""


def _row_mean(block: np.ndarray) -> np.ndarray:
    """Mean of the non-missing values of each row (NaN for a row with none)."""
    n = (~np.isnan(block)).sum(axis=1)
    total = np.nansum(block, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _as_indicator(values: np.ndarray) -> np.ndarray:
    """A 0/1 column as booleans (a byte a row instead of eight), any other as it is.

    The propensity fits and the balance table read covariates as float64, so the numbers
    are the same; a bool column refuses the subtraction that would wrap an unsigned one.
    """
    return values == 1 if np.all((values == 0) | (values == 1)) else values


def build_candidates(
    panel: AnalyticPanel,
    *,
    pool: PoolConfig,
    matching: MatchingConfig,
    shift: int = 0,
    stacks: np.ndarray | None = None,
) -> Candidates:
    """Treated students and their comparison pool, with the matching covariates.

    Parameters
    ----------
    panel : AnalyticPanel
        The analytic panel.
    pool : PoolConfig
        Who may serve as a comparison.
    matching : MatchingConfig
        ``pre_months`` and ``demographics`` define the covariates.
    shift : int, default 0
        Move every treated student's stack this many school months earlier (placebo).
    stacks : ndarray, optional
        Restrict to these (unshifted) event months.

    Returns
    -------
    Candidates

    Notes
    -----
    Covariates: ``pre_rate_m1`` ... ``pre_rate_m{pre_months}`` (rate in month ``e - k``),
    missing months imputed by the student's mean over the available pre-period months
    with indicators ``pre_missing_mk``; ``prior_year_rate`` (annual rate of the school
    year before that of ``e``, imputed the same way, with ``prior_year_missing``); and
    demographic dummies of the roster row of the event school year. Extra balance
    variable (not matched on): ``pre_rate_m13_24``, the mean rate 13-24 months before.
    """
    treated, excluded = _treated_rows(panel, shift=shift, stacks=stacks)
    frame = _with_comparison_rows(panel, treated, pool=pool, shift=shift)
    frame, traj, own_mean, far_mean, no_pre = _eligible_rows(
        panel, frame, pool=pool, pre_months=matching.pre_months
    )
    excluded.append(no_pre)
    trajectory = _trajectory_columns(traj, own_mean)
    del traj  # not held while the frame is assembled
    frame, covariates, extra = _covariate_frame(
        panel, frame, trajectory, own_mean, far_mean, matching=matching
    )
    return Candidates(
        frame=frame.reset_index(drop=True),
        covariates=covariates,
        extra=extra,
        excluded_treated=pd.concat(excluded, ignore_index=True),
    )


def _treated_rows(
    panel: AnalyticPanel, *, shift: int, stacks: np.ndarray | None
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Treated rows ``stack, student, treated, year, district`` on the event year's roster.

    Also returns the visited students not on the roster of their event school year
    (reason ``not_on_roster_in_event_year``).
    """
    events = panel.events
    if stacks is not None:
        events = events.loc[events["event_time"].isin(stacks)]
    t_student = events["student"].to_numpy(np.int64)
    t_stack = events["event_time"].to_numpy(np.int64) - shift
    ros = panel.roster
    treated = pd.DataFrame({"stack": t_stack, "student": t_student, "treated": True})
    treated["year"] = treated["stack"] // 10
    t_rows = row_positions(ros, panel.n_students, treated["student"], treated["year"])
    on_roster = t_rows >= 0
    excluded = [
        treated.loc[~on_roster, ["stack", "student"]].assign(reason="not_on_roster_in_event_year")
    ]
    treated = treated.loc[on_roster].reset_index(drop=True)
    treated["district"] = ros["district"].astype(str).to_numpy()[t_rows[on_roster]]
    return treated, excluded


def _pool_rule(panel: AnalyticPanel, pool: PoolConfig) -> Callable[[np.ndarray, int], np.ndarray]:
    """``admits(students, event_month)``: whether each student may be a comparison then.

    Never-visited students (with ``include_attempted_only``, students with only attempted
    visits count as never visited), and with ``not_yet_visited`` also students whose first
    completed visit comes after the event month (so without ``include_attempted_only``,
    students with only attempted visits are never comparisons, in either pool). The roster
    year, district and pre-period rules are applied elsewhere.
    """
    never = ~panel.visited_any
    if pool.include_attempted_only and len(panel.events):
        never = np.ones(panel.n_students, dtype=bool)
        never[panel.events["student"].to_numpy()] = False
    first_event = first_event_times(panel.events, panel.n_students)

    def admits(students: np.ndarray, event_month: int) -> np.ndarray:
        ok = never[students]
        if pool.not_yet_visited:
            later = first_event[students]
            ok = ok | ((later > event_month) & (later != NEVER_VISITED))
        return ok

    return admits


def narrower_pool(old: PoolConfig, new: PoolConfig) -> bool:
    """Whether every comparison admitted by ``new`` is admitted by ``old`` (same other rules).

    Then :func:`restrict_candidates` gives the candidates of ``new`` from those of ``old``.
    """
    same = old.model_dump(exclude={"not_yet_visited", "include_attempted_only"}) == new.model_dump(
        exclude={"not_yet_visited", "include_attempted_only"}
    )
    return (
        same
        and new.not_yet_visited <= old.not_yet_visited
        and new.include_attempted_only <= old.include_attempted_only
    )


def restrict_candidates(
    candidates: Candidates, panel: AnalyticPanel, pool: PoolConfig
) -> Candidates:
    """The candidates a narrower ``pool`` gives (:func:`narrower_pool`), without rebuilding.

    Every rule is a rule on one row, so the comparison rows ``pool`` does not admit are
    dropped and the rest keep their order and covariates; equal to :func:`build_candidates`
    with ``pool`` (tested), at a fraction of its cost.
    """
    frame = candidates.frame
    admits = _pool_rule(panel, pool)
    keep = frame["treated"].to_numpy(bool).copy()
    stack, student = frame["stack"].to_numpy(), frame["student"].to_numpy()
    for value in np.unique(stack[~keep]):
        rows = np.flatnonzero((stack == value) & ~keep)
        keep[rows] = admits(student[rows], int(value))
    frame = frame.loc[keep].reset_index(drop=True)
    covariates = list(candidates.covariates)
    if "home_language_missing" in covariates and not frame["home_language_missing"].any():
        covariates.remove("home_language_missing")  # as demographic_indicators does
        frame = frame.drop(columns="home_language_missing")
    return dataclasses.replace(candidates, frame=frame, covariates=covariates)


def _with_comparison_rows(
    panel: AnalyticPanel, treated: pd.DataFrame, *, pool: PoolConfig, shift: int
) -> pd.DataFrame:
    """Append each stack's pool to the treated rows, with ``grade_band`` and ``school``.

    The pool of a stack: never-visited students (or not yet visited, if allowed) on the
    roster of the stack's school year, in the districts of its treated students unless
    other districts are allowed.
    """
    ros = panel.roster
    parts = [treated]
    admits = _pool_rule(panel, pool)
    for stack_value, group in treated.groupby("stack", sort=True):
        year = int(stack_value) // 10
        ok = admits(ros["student"].to_numpy(), int(stack_value) + shift)
        cand = ros.loc[(ros["year"] == year) & ok]
        if not pool.allow_other_districts:
            cand = cand.loc[cand["district"].astype(str).isin(group["district"].unique())]
        parts.append(
            pd.DataFrame(
                {
                    "stack": np.int64(stack_value),
                    "student": cand["student"].to_numpy(np.int64),
                    "treated": False,
                    "year": year,
                    "district": cand["district"].astype(str).to_numpy(),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    rows = row_positions(ros, panel.n_students, frame["student"], frame["year"])
    frame["grade_band"] = ros["grade_band"].to_numpy()[rows]
    frame["school"] = ros["school"].to_numpy()[rows]
    return frame


def _eligible_rows(
    panel: AnalyticPanel, frame: pd.DataFrame, *, pool: PoolConfig, pre_months: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Keep the rows with enough pre-period attendance, in a deterministic order.

    Returns the kept rows (by stack, treated first, student), their pre-period
    trajectory (``pre_months`` columns), its mean, the mean 13-24 months before, and the
    treated rows excluded (reason ``no_pre_period_attendance``).
    """
    student, stack = frame["student"].to_numpy(), frame["stack"].to_numpy()
    # months 13-24 only for their mean, gone before the trajectory's rows are taken
    far_mean = _row_mean(_pre_period(panel, student, stack, 12, first=13))
    traj = _pre_period(panel, student, stack, pre_months)
    n_obs = (~np.isnan(traj)).sum(axis=1)
    own_mean = _row_mean(traj)
    enough = n_obs >= max(pool.min_pre_months, 1)
    if pool.max_pre_rate is not None:
        enough &= frame["treated"].to_numpy() | (own_mean < pool.max_pre_rate)
    t_mask = frame["treated"].to_numpy()
    excluded = frame.loc[t_mask & ~enough, ["stack", "student"]].assign(
        reason="no_pre_period_attendance"
    )
    # keep the eligible rows, ordered by stack, treated first, student (deterministic)
    frame = frame.loc[enough].reset_index(drop=True)
    order = np.lexsort(
        (frame["student"].to_numpy(), ~frame["treated"].to_numpy(), frame["stack"].to_numpy())
    )
    frame = frame.iloc[order].reset_index(drop=True)
    keep = np.flatnonzero(enough)[order]
    return frame, traj[keep], own_mean[keep], far_mean[keep], excluded


def _trajectory_columns(traj: np.ndarray, own_mean: np.ndarray) -> dict[str, np.ndarray]:
    """``pre_rate_m{k}`` (a missing month imputed by ``own_mean``) and ``pre_missing_m{k}``."""
    out = {}
    for k in range(1, traj.shape[1] + 1):
        miss = np.isnan(traj[:, k - 1])
        out[f"pre_rate_m{k}"] = np.where(miss, own_mean, traj[:, k - 1])
        out[f"pre_missing_m{k}"] = miss  # indicators as booleans (a byte, not eight)
    return out


def _covariate_frame(
    panel: AnalyticPanel,
    frame: pd.DataFrame,
    trajectory: dict[str, np.ndarray],
    own_mean: np.ndarray,
    far_mean: np.ndarray,
    *,
    matching: MatchingConfig,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The candidate frame with the matching covariates and the extra balance variable.

    Returns the frame, the covariate names and the extra (not matched on) names; see
    :func:`build_candidates` for the imputation rules.
    """
    ros = panel.roster
    covariates: list[str] = []
    cols: dict[str, np.ndarray] = {c: frame[c].to_numpy() for c in frame.columns if c != "year"}
    cols.update(trajectory)  # pre_rate_m1, pre_missing_m1, ... (:func:`_trajectory_columns`)
    covariates += [f"pre_rate_m{k}" for k in range(1, matching.pre_months + 1)]
    covariates += [f"pre_missing_m{k}" for k in range(1, matching.pre_months + 1)]

    annual = panel.annual
    prior_rows = row_positions(annual, panel.n_students, frame["student"], frame["year"] - 1)
    prior = np.where(prior_rows >= 0, annual["rate"].to_numpy()[prior_rows], np.nan)
    cols["prior_year_missing"] = np.isnan(prior)
    cols["prior_year_rate"] = np.where(np.isnan(prior), own_mean, prior)
    covariates += ["prior_year_rate", "prior_year_missing"]

    cols["pre_rate_m13_24"] = np.where(np.isnan(far_mean), own_mean, far_mean)
    extra = ["pre_rate_m13_24"]

    rows = row_positions(ros, panel.n_students, frame["student"], frame["year"])
    demo = demographic_indicators(ros, tuple(matching.demographics), rows)
    covariates += list(demo)
    cols.update({c: _as_indicator(v) for c, v in demo.items()})
    del demo
    return pd.DataFrame(cols, copy=False), covariates, extra  # no consolidated copy at the peak
