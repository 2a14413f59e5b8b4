"""Stacked matched panels for the event study, and comparison weights for subgroups.

Each matched (stack, student) pair is a *unit*. The monthly panel of a unit holds the
student's attendance rate (in percentage points) in every school month with membership,
with ``rel_time = time - stack``. A comparison student matched in two stacks is two units
(one per stack) but one cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.panel import AnalyticPanel, first_event_times
from leapresearch.design.matching.sorting import _dense_codes


def candidate_rows(frame: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray | None:
    """Position in ``frame`` of each ``(stack, student)`` of ``keys``, by a dense table.

    ``frame``: the candidate frame (integer ``stack`` and ``student``). A table of row
    numbers over the stacks and the student codes replaces a merge of the keys with the
    candidates' millions of rows. None (the caller merges instead) when a pair of
    ``frame`` repeats, a key is not in ``frame``, or a code is not a small non-negative
    integer.
    """
    stacks = frame["stack"].to_numpy()
    students = frame["student"].to_numpy()
    want_stack, want_student = keys["stack"].to_numpy(), keys["student"].to_numpy()
    arrays = (stacks, students, want_stack, want_student)
    if not all(a.dtype.kind in "iu" for a in arrays) or not len(frame) or not len(keys):
        return None
    if min(int(students.min()), int(want_student.min())) < 0:
        return None
    levels, level_of_row = _dense_codes(stacks)  # np.unique's, by a table over a small range
    n_students = int(max(students.max(), want_student.max())) + 1
    if levels.size * n_students > 8 * (len(frame) + len(keys)) + 1_000_000:
        return None  # sparse codes: the table would be larger than the data
    table = np.full((levels.size, n_students), -1, dtype=np.int64)
    table[level_of_row, students] = np.arange(len(frame))
    if np.count_nonzero(table >= 0) != len(frame):
        return None  # a (stack, student) pair repeats
    level = np.minimum(np.searchsorted(levels, want_stack), levels.size - 1)
    if not np.array_equal(levels[level], want_stack):
        return None
    rows = table[level, want_student]
    return None if (rows < 0).any() else rows


def unit_table(matched: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """The units of a matched sample with their stack, student, weight and school.

    Parameters
    ----------
    matched : DataFrame
        ``MatchResult.matched``: ``stack``, ``student``, ``treated``, ``weight``.
    candidates : DataFrame
        The candidate frame (for the school of each unit in the event school year).

    Returns
    -------
    DataFrame
        ``unit`` (0..n-1), ``stack``, ``student``, ``treated``, ``weight``, ``school``,
        sorted by stack, treated first, student.
    """
    units = matched[["stack", "student", "treated", "weight"]]
    rows = candidate_rows(candidates, units)
    if rows is not None:
        units = units.reset_index(drop=True).assign(
            school=candidates["school"].take(rows).reset_index(drop=True)
        )
    else:
        units = units.merge(
            candidates[["stack", "student", "school"]].drop_duplicates(["stack", "student"]),
            on=["stack", "student"],
            how="left",
            validate="one_to_one",
        )
    units = units.sort_values(["stack", "treated", "student"], ascending=[True, False, True])
    units = units.reset_index(drop=True)
    units.insert(0, "unit", np.arange(len(units), dtype=np.int64))
    units["treated"] = units["treated"].astype(np.int8)
    return units


def stacked_panel(
    panel: AnalyticPanel,
    units: pd.DataFrame,
    *,
    max_rel_time: int | None = None,
    min_rel_time: int | None = None,
) -> pd.DataFrame:
    """Long unit x school-month panel of a matched sample.

    Parameters
    ----------
    panel : AnalyticPanel
        Source of the dense monthly rates.
    units : DataFrame
        From :func:`unit_table`.
    max_rel_time, min_rel_time : int, optional
        Keep only months with ``rel_time`` in this range (the placebo keeps months
        before the real event month).

    Returns
    -------
    DataFrame
        ``unit``, ``stack``, ``time``, ``rel_time``, ``treated``, ``weight``,
        ``student``, ``school``, ``attendance_pp`` (100 x monthly rate); rows only where
        the student had membership.
    """
    rates = panel.rates[units["student"].to_numpy()]
    unit_idx, col = np.nonzero(~np.isnan(rates))
    time = col + panel.time_min
    stack = units["stack"].to_numpy()[unit_idx]
    rel = time - stack
    keep = np.ones(len(rel), dtype=bool)
    if len(panel.events):
        # a comparison student visited later leaves the panel at its own event month
        first_event = first_event_times(panel.events, panel.rates.shape[0])
        comp = units["treated"].to_numpy()[unit_idx] == 0
        keep &= ~(comp & (time >= first_event[units["student"].to_numpy()[unit_idx]]))
    if max_rel_time is not None:
        keep &= rel <= max_rel_time
    if min_rel_time is not None:
        keep &= rel >= min_rel_time
    unit_idx, col, time, stack, rel = (a[keep] for a in (unit_idx, col, time, stack, rel))
    return pd.DataFrame(
        {
            "unit": units["unit"].to_numpy()[unit_idx],
            "stack": stack,
            "time": time.astype(np.int64),
            "rel_time": rel.astype(np.int64),
            "treated": units["treated"].to_numpy()[unit_idx],
            "weight": units["weight"].to_numpy(np.float64)[unit_idx],
            "student": units["student"].to_numpy()[unit_idx],
            "school": units["school"].to_numpy()[unit_idx],
            "attendance_pp": 100.0 * rates[unit_idx, col],
        }
    )


def subgroup_weights(
    units: pd.DataFrame, pairs: pd.DataFrame, treated_in_group: pd.DataFrame
) -> np.ndarray:
    """Unit weights for the subgroup of treated students ``treated_in_group``.

    The treated students of the subgroup keep weight 1; each comparison unit gets the
    sum, over the subgroup's treated students it serves, of ``1 / k_i`` (``k_i`` the
    number of comparisons of treated student ``i``); every other unit gets 0. With the
    full set of treated students this reproduces the matching weights.

    Parameters
    ----------
    units : DataFrame
        From :func:`unit_table`.
    pairs : DataFrame
        ``MatchResult.pairs``: ``stack``, ``treated_student``, ``comparison_student``.
    treated_in_group : DataFrame
        ``stack`` and ``student`` of the subgroup's treated students.

    Returns
    -------
    ndarray
        One weight per unit (aligned with ``units``).
    """
    key = ["stack", "student"]
    sel = treated_in_group[key].drop_duplicates()
    k = pairs.groupby(["stack", "treated_student"]).size().rename("k").reset_index()
    p = pairs.merge(k, on=["stack", "treated_student"])
    p = p.merge(sel.rename(columns={"student": "treated_student"}), on=["stack", "treated_student"])
    p = p.sort_values("k", kind="stable")  # each sum adds its terms in a fixed order
    w_comp = (
        (1.0 / p["k"]).groupby([p["stack"], p["comparison_student"]]).sum().rename("w")
    ).reset_index()
    w_comp = w_comp.rename(columns={"comparison_student": "student"})
    w_comp["treated"] = np.int8(0)
    w_treat = sel.merge(units.loc[units["treated"] == 1, key], on=key)
    w_treat = w_treat.assign(w=1.0, treated=np.int8(1))
    w = pd.concat([w_treat, w_comp], ignore_index=True)
    merged = units[["stack", "student", "treated"]].merge(
        w, on=["stack", "student", "treated"], how="left"
    )
    return merged["w"].fillna(0.0).to_numpy(np.float64)


def mass_weights(
    units: pd.DataFrame, pairs: pd.DataFrame, treated_in_group: pd.DataFrame, mass: np.ndarray
) -> np.ndarray:
    r"""Unit weights of a subgroup when every unit carries a mass (a weighted bootstrap draw).

    Treated student :math:`i` of the subgroup gets its mass :math:`m_i`; comparison unit
    :math:`j` gets :math:`\sum_i m_i\, m_j / \sum_{l \in M(i)} m_l` over the subgroup's
    treated students :math:`i` it serves (:math:`M(i)` their matches): each treated
    student's counterfactual is the mass-weighted mean of its matches, and the matched
    estimator is the weighted sample's. With every mass 1 these are
    :func:`subgroup_weights` (``1 / k_i``). Every other unit gets 0.

    Parameters
    ----------
    units, pairs, treated_in_group
        As :func:`subgroup_weights`.
    mass : ndarray
        One positive mass per unit (aligned with ``units``).

    Returns
    -------
    ndarray
        One weight per unit (aligned with ``units``).
    """
    key = ["stack", "student"]
    sel = treated_in_group[key].drop_duplicates().rename(columns={"student": "treated_student"})
    p = pairs[["stack", "treated_student", "comparison_student"]].merge(
        sel, on=["stack", "treated_student"]
    )
    ids = units[key].assign(unit=np.arange(len(units)), treated=units["treated"].astype(bool))
    comp = ids.loc[~ids["treated"], [*key, "unit"]]
    treat = ids.loc[ids["treated"], [*key, "unit"]]
    p = p.merge(comp.rename(columns={"student": "comparison_student", "unit": "c"}))
    p = p.merge(treat.rename(columns={"student": "treated_student", "unit": "t"}))
    m_c = np.asarray(mass, dtype=np.float64)[p["c"].to_numpy()]
    t = p["t"].to_numpy()
    total = np.bincount(t, weights=m_c, minlength=len(units))  # mass of each i's matches
    share = np.asarray(mass, dtype=np.float64)[t] * m_c / total[t]
    out = np.bincount(p["c"].to_numpy(), weights=share, minlength=len(units))
    members = treat.merge(sel.rename(columns={"treated_student": "student"}))["unit"].to_numpy()
    out[members] = np.asarray(mass, dtype=np.float64)[members]
    return out
