"""The result of matching: :class:`MatchResult` and the tables it is assembled from.

Holds the result's dataclass, and the steps that turn the pairs found into it: the pairs
table, the matched sample with its ATT weights, the unmatched treated students with their
reasons, and the per-stack summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.design.matching.grid import PSCORE_DECIMALS, _MatchRows
from leapresearch.design.matching.options import UNMATCHED_REASONS


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
        unmatched[col] = candidates[col].take(um_rows).to_numpy()  # not the whole column
    unmatched["reason"] = pd.Categorical(reason[um], categories=UNMATCHED_REASONS)
    return unmatched.sort_values(["stack", "student"], ignore_index=True)


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
