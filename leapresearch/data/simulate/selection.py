"""Who is visited: each program month's target and the students the districts pick.

The program months and their numbers of first visits; each month, the eligible students
(in a LEAP district, seen in the last three collected months, not yet visited; in the
canvassing district only those of canvassed schools) and the draw among them under the
two selection regimes, ``lists`` (weighted sampling without replacement on the recent
attendance rate) and ``hazard`` (a monthly visit hazard on it).
"""

from __future__ import annotations

import numpy as np

from leapresearch.data.simulate.attendance import _expit, _Panel
from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.hooks import (
    _completion_order,
    _Latent,
    _selection_shift,
    _wave_counts,
)
from leapresearch.data.simulate.params import _PROGRAM_MONTHS, _SELECTION_CHRONIC_BONUS
from leapresearch.data.simulate.population import _Roster
from leapresearch.data.simulate.world import _Calendar, _Districts


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights``."""
    weights = np.asarray(weights, dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = total - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _program_months(
    cfg: SimulationConfig, cal: _Calendar
) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Program months ``(kind, year, month, event t or -1)`` and students to visit in each.

    The target is split over all of them; months outside the simulated panel (or without
    any earlier collected month to select on) get event month -1 and are skipped.
    """
    base = (
        cfg.visited_target
        if cfg.visited_target is not None
        else (1000 if cfg.scale == "demo" else 8700)
    )
    n_target = int(round(base * cfg.sample_fraction))
    collected_t = np.flatnonzero(cal.collected)
    months: list[tuple[int, int, int, int]] = []  # (kind, year, month, event t or -1)
    weights: list[float] = []
    for ki, (_, entries) in enumerate(_PROGRAM_MONTHS):
        for y, m, wgt in entries:
            weights.append(cfg.cohort_shares[ki] * wgt)
            start = y if m >= 9 else y - 1
            yi = int(np.searchsorted(cal.starts, start))
            t = -1
            if yi < cal.n_years and cal.starts[yi] == start:
                if m in (7, 8):
                    t = 10 * (yi + 1) if yi + 1 < cal.n_years else -1  # September after
                else:
                    t = 10 * yi + (m - 9 if m >= 9 else m + 3)
                    t = t if cal.collected[t] else -1
            if t >= 0 and not (collected_t < t).any():
                t = -1
            months.append((ki, y, m, t))
    counts = _largest_remainder(n_target, np.array(weights))
    return months, _wave_counts(cfg, months, counts)


def _select_students(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    panel: _Panel,
    rng: np.random.Generator,
    months: list[tuple[int, int, int, int]],
    counts: np.ndarray,
    canvass_d: int,
    canvass_school: np.ndarray,
    latent: _Latent | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Select each program month's students among those not yet taken.

    ``latent``: the validation hooks' latent traits (:mod:`.hooks`; ``None``: off).
    Returns, per selected student, the student, program-month kind, event month, calendar
    year and month, and whether only attempts were made (no completed visit).
    """
    n_students = len(roster.u)
    leap_d = np.flatnonzero(dist.leap)
    collected_t = np.flatnonzero(cal.collected)
    taken = np.zeros(n_students, dtype=bool)
    order_t = np.argsort(panel.t, kind="stable")
    t_bounds = np.searchsorted(panel.t[order_t], np.arange(cal.n_t + 1))
    att = panel.att_in + panel.att_rem
    mem = panel.mem_in + panel.mem_rem
    sel_student, sel_kind, sel_t, sel_y, sel_m, sel_attempt_only = [], [], [], [], [], []
    w_d = np.zeros(len(dist.names))
    w_d[leap_d] = dist.sizes[leap_d, :].mean(axis=1) * dist.intensity[leap_d]
    for (ki, y, m, t), n_month in zip(months, counts, strict=True):
        if n_month == 0 or t < 0:
            continue
        summer = m in (7, 8)
        # The district sees the last three collected months before the visit month
        # (for a summer visit, t - 1 is the June before the summer).
        window = collected_t[collected_t <= t - 1][-3:]
        rows = np.concatenate([order_t[t_bounds[w] : t_bounds[w + 1]] for w in window])
        s_att = np.bincount(panel.student[rows], weights=att[rows], minlength=n_students)
        s_mem = np.bincount(panel.student[rows], weights=mem[rows], minlength=n_students)
        # Where a student is now (school month) or will be (summer: next year's roster).
        if summer:
            nxt = np.flatnonzero(roster.sy_year == t // 10)
            now_student = roster.sy_student[nxt]
            now_school = roster.sy_school[nxt]
        else:
            cur = order_t[t_bounds[t] : t_bounds[t + 1]]
            cur = cur[mem[cur] > 0]
            now_student = panel.student[cur]
            now_school = panel.school[cur]
            now_student, first_idx = np.unique(now_student, return_index=True)
            now_school = now_school[first_idx]
        d_now = roster.district[now_student]
        visible = s_mem[now_student] > 0
        elig = dist.leap[d_now] & visible & ~taken[now_student]
        elig &= (d_now != canvass_d) | canvass_school[now_school]
        cand, cand_d = now_student[elig], d_now[elig]
        rate = s_att[cand] / s_mem[cand]
        picked, attempt_only = _draw_month(
            cfg, rng, cand, cand_d, rate, n_month, w_d, canvass_d, latent
        )
        taken[picked] = True
        sel_student.append(picked)
        sel_kind.append(np.full(len(picked), ki))
        sel_t.append(np.full(len(picked), t))
        sel_y.append(np.full(len(picked), y))
        sel_m.append(np.full(len(picked), m))
        sel_attempt_only.append(attempt_only)
    if not sel_student:
        none = np.zeros(0, dtype=np.int64)
        return none, none, none, none, none, np.zeros(0, dtype=bool)
    return (
        np.concatenate(sel_student),
        np.concatenate(sel_kind),
        np.concatenate(sel_t),
        np.concatenate(sel_y),
        np.concatenate(sel_m),
        np.concatenate(sel_attempt_only),
    )


def _draw_month(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    cand: np.ndarray,
    cand_d: np.ndarray,
    rate: np.ndarray,
    n_month: int,
    w_d: np.ndarray,
    canvass_d: int,
    latent: _Latent | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one month's students per district, favouring low pre-visit attendance.

    Weighted sampling without replacement by Gumbel keys within each district (the
    canvassing district samples uniformly); the last ``attempt_only_share`` are
    attempts only. Returns the students and the attempt-only flags. With the validation
    hooks on, a latent shock adds to the log-weights and hazard logits, and a latent
    reachability orders the drawn students before the completed ones are taken.
    """
    extra = _selection_shift(cfg, latent, cand)
    logw = -cfg.selection_strength * rate + _SELECTION_CHRONIC_BONUS * (rate < 0.9) + extra
    logw = np.where(cand_d == canvass_d, 0.0, logw)
    key = logw + rng.gumbel(size=len(cand))
    n_total = int(round(n_month * (1.0 + cfg.attempt_only_share)))
    per_d = _largest_remainder(n_total, w_d)
    order = np.lexsort((-key, cand_d))
    sorted_d = cand_d[order]
    starts_d = np.searchsorted(sorted_d, np.arange(len(w_d)))
    rank = np.arange(len(order)) - starts_d[sorted_d]
    chosen = order[rank < per_d[sorted_d]]
    if cfg.selection == "hazard":
        chosen = _hazard_choice(cfg, rate, cand_d, canvass_d, chosen, n_total, rng, extra)
    chosen = chosen[rng.permutation(len(chosen))]
    chosen = chosen[_completion_order(cfg, latent, cand[chosen])]
    n_done = min(n_month, len(chosen))
    attempt_only = np.arange(len(chosen)) >= n_done
    return cand[chosen], attempt_only


def _hazard_intercept(logit: np.ndarray, expected: float) -> float:
    """``a`` with ``sum(expit(a + logit)) = expected`` (bisection; 0 < expected < n)."""
    lo, hi = -60.0 - float(logit.max()), 60.0 - float(logit.min())
    for _ in range(100):  # bisection steps, not a loop over students
        mid = 0.5 * (lo + hi)
        if _expit(mid + logit).sum() < expected:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _hazard_choice(
    cfg: SimulationConfig,
    rate: np.ndarray,
    cand_d: np.ndarray,
    canvass_d: int,
    listed: np.ndarray,
    n_total: int,
    rng: np.random.Generator,
    extra: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Candidates first visited this month under the monthly hazard (``selection="hazard"``).

    Students of the canvassing district keep the list draw (``listed``: random students
    of its canvassed schools); everywhere else each candidate is visited with probability
    ``expit(a - hazard_strength * rate)``, ``a`` set so that the expected number of
    visits equals the month's target less the canvassing district's share. ``extra``
    (per candidate, or 0) is added to the logit (the latent-shock validation hook).
    """
    canvass = cand_d == canvass_d
    kept = listed[canvass[listed]]
    pool = np.flatnonzero(~canvass)
    expected = n_total - kept.size
    if expected <= 0 or pool.size == 0:
        return kept
    if expected >= pool.size:
        return np.concatenate([kept, pool])
    logit = -cfg.hazard_strength * rate[pool]
    if np.ndim(extra):
        logit = logit + np.asarray(extra)[pool]
    p = _expit(_hazard_intercept(logit, expected) + logit)
    return np.concatenate([kept, pool[rng.random(pool.size) < p]])
