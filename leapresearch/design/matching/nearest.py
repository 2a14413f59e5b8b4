"""Nearest-neighbour matching on the propensity score, and the tie rule.

Holds :func:`nearest_neighbor_match` (k:1 matching on the grid scores within exact strata,
with a caliper), :func:`match` (propensity scores, then that matching) and the matching
with replacement, where every comparison tied with the k-th nearest is kept (Abadie and
Imbens 2006), so that no id or row order decides among equally distant comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.design.matching.greedy import _match_greedy, _tie_keys
from leapresearch.design.matching.grid import MatchKeys, _MatchRows
from leapresearch.design.matching.options import (
    DEFAULT_EXACT,
    DEFAULT_FIXED_EFFECTS,
    CaliperScale,
    MOrder,
    _check_match_options,
)
from leapresearch.design.matching.propensity import PropensityPlan, propensity_scores
from leapresearch.design.matching.result import MatchResult, _assemble
from leapresearch.design.matching.sorting import _int_lexsort


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
    keys: MatchKeys | None = None,
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
    keys : MatchKeys, optional
        :func:`~leapresearch.design.matching.grid.match_keys` of ``candidates`` and
        ``exact``, when already made (matchings of the same candidates with other scores:
        the bootstrap's draws); checked against the rows' keys and treatment.

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
    r = _MatchRows.of(candidates, pscore, exact, caliper, keys)
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
    start: Mapping[Any, Mapping[str, float]] | None = None,
    weights: np.ndarray | None = None,
    plan: PropensityPlan | None = None,
    keys: MatchKeys | None = None,
) -> MatchResult:
    """Estimate propensity scores and match (:func:`propensity_scores` then NN matching).

    Parameters
    ----------
    candidates : pandas.DataFrame
        Candidate rows (see :func:`nearest_neighbor_match`).
    covariates : sequence of str
        Covariates of the propensity model.
    exact, ratio, caliper, replace, m_order, seed, keys
        See :func:`nearest_neighbor_match`.
    by, fixed_effects, start, weights, plan
        See :func:`propensity_scores` (``weights``: of the propensity fit only).

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
    ps = propensity_scores(
        candidates,
        covariates=covariates,
        by=by,
        fixed_effects=fixed_effects,
        start=start,
        weights=weights,
        plan=plan,
    )
    res = nearest_neighbor_match(
        candidates,
        ps,
        exact=exact,
        ratio=ratio,
        caliper=caliper,
        replace=replace,
        m_order=m_order,
        seed=seed,
        keys=keys,
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
    c_rows = c_rows[_int_lexsort((q[c_rows], stratum[c_rows]))]
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
    """Index of the first block of the stratum whose score is >= the treated score.

    The blocks are sorted by (stratum, score) and distinct, so (stratum, score) as one
    mixed-radix integer increases strictly along them: a binary search of each treated
    student's key gives the number of blocks before it. A merge of blocks and treated
    students by :func:`_int_lexsort` where that integer would not fit in 62 bits.
    """
    if b_q.size == 0 or t_q.size == 0:
        return np.zeros(t_q.size, dtype=np.int64)
    lo = min(int(b_q.min()), int(t_q.min()))
    span = max(int(b_q.max()), int(t_q.max())) - lo + 1
    strata = max(int(b_strat.max()), int(t_strat.max())) + 1
    if span * strata < 2**62:
        blocks = b_strat.astype(np.int64) * span + (b_q - lo)
        treated = t_strat.astype(np.int64) * span + (t_q - lo)
        return np.searchsorted(blocks, treated, side="left").astype(np.int64)
    is_c = np.r_[np.ones(b_q.size, np.int64), np.zeros(t_q.size, np.int64)]
    order = _int_lexsort((is_c, np.r_[b_q, t_q], np.r_[b_strat, t_strat]))
    before = np.cumsum(is_c[order]) - is_c[order]
    out = np.empty(is_c.size, dtype=np.int64)
    out[order] = before
    return out[b_q.size :]
