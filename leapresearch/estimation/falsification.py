"""Checks of the identifying assumption that the design did not fit.

* :func:`wald_terms` tests that a chosen set of event-study coefficients is jointly zero
  (the pre-trend test on months outside the matching window, or on unadjusted outcomes);
  :func:`mean_of_terms` is their average with its interval.
* :func:`selection_rule` and :func:`pseudo_events` give never-visited students a fake
  first visit at the month their attendance fell the way visited students' attendance
  had fallen before their first visit (all of them, or a sample ordered by a hash of each
  student's own data, so that it does not depend on id spellings or row order). Run
  through the same matching, adjustment and event study, their "effect" should be zero:
  a design that leaves the rebound of a dip in its estimates shows it here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from leapresearch.data.panel import AnalyticPanel
from leapresearch.estimation.event_study import clustered_wald

RECENT_MONTHS = 3
"""Months before the event whose mean attendance is the 'recent' level of the rule."""
EARLIER_MONTHS = (4, 12)
"""Months before the event (from, to) whose mean is the 'earlier' level of the rule."""


def wald_terms(result, terms: Sequence[int]) -> dict:
    """Joint Wald test that the coefficients of ``terms`` (present in the fit) are zero.

    Returns
    -------
    dict
        ``statistic`` (``F = b'V^{-1}b / q``), ``df`` (``q``), ``p_value`` (from
        ``F(q, G - 1)``), ``months`` (``"lo..hi"`` of the terms tested); NaN statistic and
        p-value when no term is present or the test is not defined
        (:func:`~leapresearch.estimation.event_study.clustered_wald`), the reason in
        ``not_testable`` (empty when the test is defined).
    """
    present = [int(r) for r in terms if int(r) in set(result.coefficients.index)]
    months = f"{min(present)}..{max(present)}" if present else ""
    out = {
        "statistic": np.nan,
        "df": len(present),
        "p_value": np.nan,
        "months": months,
        "not_testable": "",
    }
    if not present:
        out["not_testable"] = "not testable: no term present"
        return out
    b = result.coefficients.loc[present].to_numpy(np.float64)
    v = result.cov.loc[present, present].to_numpy(np.float64)
    try:
        wald = clustered_wald(b, v, n_clusters=result.n_clusters)
    except np.linalg.LinAlgError as exc:  # more terms than clusters allow, or singular
        out["not_testable"] = str(exc)
        return out
    q = len(present)
    out["statistic"] = wald / q
    out["p_value"] = float(stats.f.sf(wald / q, q, result.df_resid))
    return out


def mean_of_terms(result, terms: Sequence[int], *, alpha: float = 0.05) -> dict:
    """Average of the coefficients of ``terms`` (present in the fit), with its interval.

    The average ``a'b`` with ``a = 1/q`` has variance ``a'Va`` (``V`` the fit's clustered
    covariance); the interval uses Student's t with ``G - 1`` degrees of freedom, as the
    fit's own intervals.

    Returns
    -------
    dict
        ``estimate``, ``std_error``, ``ci_lower``, ``ci_upper`` (NaN when no term is
        present).
    """
    present = [int(r) for r in terms if int(r) in set(result.coefficients.index)]
    out = dict.fromkeys(("estimate", "std_error", "ci_lower", "ci_upper"), np.nan)
    if not present:
        return out
    a = np.full(len(present), 1.0 / len(present))
    b = result.coefficients.loc[present].to_numpy(np.float64)
    v = result.cov.loc[present, present].to_numpy(np.float64)
    est, se = float(a @ b), float(np.sqrt(max(a @ v @ a, 0.0)))
    crit = float(stats.t.ppf(1 - alpha / 2, result.df_resid))
    return {
        "estimate": est,
        "std_error": se,
        "ci_lower": est - crit * se,
        "ci_upper": est + crit * se,
    }


@dataclass(frozen=True)
class SelectionRule:
    """The dip that preceded visited students' first visit (medians over visited students).

    A never-visited student meets the rule at month ``t`` when its mean attendance rate of
    the ``RECENT_MONTHS`` months before ``t`` is at most ``recent`` and that mean minus
    the mean of the earlier months ``EARLIER_MONTHS`` before ``t`` is at most ``drop``.
    """

    recent: float
    drop: float
    n_visited: int


def _levels(panel: AnalyticPanel, student: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Recent mean and recent-minus-earlier mean before ``month`` (rows of (2,))."""
    n_times = panel.rates.shape[1]

    def mean(k_from: int, k_to: int) -> np.ndarray:
        total = np.zeros(len(student))
        count = np.zeros(len(student))
        for k in range(k_from, k_to + 1):
            col = month - k - panel.time_min
            ok = (col >= 0) & (col < n_times)
            v = np.full(len(student), np.nan)
            v[ok] = panel.rates[student[ok], col[ok]]
            total += np.nan_to_num(v)
            count += ~np.isnan(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    recent = mean(1, RECENT_MONTHS)
    earlier = mean(*EARLIER_MONTHS)
    return np.column_stack([recent, recent - earlier])


def selection_rule(panel: AnalyticPanel, events: pd.DataFrame) -> SelectionRule:
    """Infer the dip rule from visited students' trajectories before their first visit."""
    lv = _levels(
        panel, events["student"].to_numpy(np.int64), events["event_time"].to_numpy(np.int64)
    )
    ok = ~np.isnan(lv).any(axis=1)
    if ok.sum() < 2:
        raise ValueError("too few visited students with a pre-visit trajectory for the rule")
    return SelectionRule(
        recent=float(np.median(lv[ok, 0])),
        drop=float(np.median(lv[ok, 1])),
        n_visited=int(ok.sum()),
    )


ID_COLUMNS = frozenset({"student", "school", "school_id"})
"""Roster columns left out of a student's content key (codes and spellings of ids)."""


MISSING_TEXT = "\x00"
"""A missing roster value in :func:`content_keys`' text (no value is spelled so)."""


def content_keys(panel: AnalyticPanel, first: pd.DataFrame, *, seed: int) -> np.ndarray:
    """A key of each row of ``first`` (``student``, ``event_time``) from its own data only.

    SHA-256 of the seed, the pseudo-event month, the student's monthly attendance rates
    (every month of the panel) and its roster rows without ids (year, district, grade,
    demographics; a missing value as :data:`MISSING_TEXT`), in hex. Students with
    identical data get identical keys, whatever their ids are spelled like or wherever
    their rows are.
    """
    attrs = [c for c in panel.roster.columns if c not in ID_COLUMNS]
    ros = panel.roster.loc[panel.roster["student"].isin(first["student"])]
    ros = ros.sort_values(["student", "year"], kind="stable")
    # each roster row's values as text (a missing value as MISSING_TEXT), joined column by
    # column (not a row-wise apply)
    values = [ros[c].astype(str).fillna(MISSING_TEXT).tolist() for c in attrs]
    values = values or [[""] * len(ros)]
    text = pd.Series(["\x1f".join(row) for row in zip(*values, strict=True)], dtype=object)
    roster_text = text.groupby(ros["student"].to_numpy(), sort=True).agg("\x1e".join)
    keys = []
    students, months = first["student"].to_numpy(), first["event_time"].to_numpy()
    for student, month in zip(students, months, strict=True):
        h = hashlib.sha256(f"{seed}\x1d{int(month)}\x1d".encode())
        h.update(np.nan_to_num(panel.rates[student], nan=-1.0).astype("<f8").tobytes())
        h.update(roster_text.get(student, "").encode())
        keys.append(h.hexdigest())
    return np.asarray(keys, dtype=object)


def take_by_key(keys: np.ndarray, max_students: int) -> np.ndarray:
    """Positions of the ``max_students`` smallest keys (all when there are no more).

    When the cut falls inside a run of equal keys (students with identical data), the
    whole run is left out, so which of two identical students is taken never depends on
    their ids; fewer than ``max_students`` may then be taken.
    """
    if len(keys) <= max_students:
        return np.arange(len(keys))
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    cut = max_students
    while cut > 0 and ranked[cut - 1] == ranked[max_students]:
        cut -= 1
    return np.sort(order[:cut])


def pseudo_events(
    panel: AnalyticPanel,
    events: pd.DataFrame,
    pool: np.ndarray,
    *,
    rule: SelectionRule,
    max_students: int,
    seed: int,
) -> pd.DataFrame:
    """Fake first visits of never-visited students who meet the selection rule.

    Parameters
    ----------
    panel : AnalyticPanel
        The analytic panel.
    events : DataFrame
        The real first visits (``student``, ``event_time``): pseudo-events are placed only
        in months with real first visits, in districts with real first visits that
        school year.
    pool : ndarray of bool
        Students eligible for a pseudo-event (by code): never visited.
    rule : SelectionRule
        From :func:`selection_rule`.
    max_students : int
        Every student meeting the rule when they are at most this many; otherwise the
        ``max_students`` with the smallest :func:`content_keys` (a hash of each student's
        own data, not of its id or row), see :func:`take_by_key`.
    seed : int
        Salt of the content key (another seed, another deterministic sample).

    Returns
    -------
    DataFrame
        ``student``, ``event_time`` (the first real event month at which the student
        meets the rule), sorted by student.
    """
    ros = panel.roster[["student", "year", "district"]]
    ev = events[["student", "event_time"]].assign(year=events["event_time"] // 10)
    ev = ev.merge(ros, on=["student", "year"], how="inner")
    cells = ev[["event_time", "year", "district"]].drop_duplicates()
    cand = cells.merge(ros, on=["year", "district"], how="inner")
    cand = cand.loc[pool[cand["student"].to_numpy(np.int64)]]
    lv = _levels(panel, cand["student"].to_numpy(np.int64), cand["event_time"].to_numpy(np.int64))
    meets = (lv[:, 0] <= rule.recent) & (lv[:, 1] <= rule.drop)
    hits = cand.loc[meets, ["student", "event_time"]]
    first = hits.groupby("student", sort=True)["event_time"].min().reset_index()
    if len(first) > max_students:
        first = first.iloc[take_by_key(content_keys(panel, first, seed=seed), max_students)]
    return first.reset_index(drop=True)
