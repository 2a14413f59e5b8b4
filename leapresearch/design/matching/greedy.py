"""Greedy nearest-neighbour matching without replacement (MatchIt's ``nearest``).

Treated students are matched in ``m_order`` order, one match per treated student per round
(all first matches, then all second matches, ...); it is computed exactly as the
sequential algorithm, in vectorised rounds. Ties are broken by a seeded permutation
assigned in sorted ``(stack, student)`` order, so the result depends on the ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leapresearch.design.matching.grid import _ScoreGrid


def _tie_keys(stack: np.ndarray, student: np.ndarray, seed: int) -> np.ndarray:
    """Seeded random permutation assigned in sorted (stack, student) order."""
    order = np.lexsort((student, stack))
    perm = np.random.default_rng(seed).permutation(stack.size)
    key = np.empty(stack.size, dtype=np.int64)
    key[order] = perm
    return key


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
