"""One group's event study on the matched sample: the fitting every exhibit shares.

A group is a set of visited students with their matched comparisons, re-weighted
(:func:`~leapresearch.design.stacking.subgroup_weights`); :func:`group_sample` selects and
regression-adjusts its rows, :func:`fit_group` fits its event study with errors clustered at
:func:`cluster_level`, :func:`event_table` turns a fit into rows of an event-study table and
:func:`headline_weights` gives the headline groups (``identification.groups``).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable

import numpy as np
import pandas as pd

from leapresearch.analysis.base import EVENT_STUDY_COLUMNS
from leapresearch.analysis.sample import Prepared
from leapresearch.config import Config
from leapresearch.design.adjustment import Adjustment, adjust_outcome, trend_slopes
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.event_study import EventStudyResult, event_study
from leapresearch.estimation.multiple_testing import (
    GroupFit,
    cluster_influence_moments,
    with_influence,
)
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
    group_definitions,
)

MIN_SCHOOL_CLUSTERS = 30
"""Fewest schools in the matched sample for errors clustered by school (``analysis.cluster``).

With fewer, every fit of the run clusters by student and the event-study log says so:
cluster-robust errors need many clusters (Cameron and Miller 2015)."""


def cluster_level(prepared: Prepared) -> str:
    """The cluster of every fit of the run.

    ``analysis.cluster``, or ``student`` when the matched sample has fewer than
    ``MIN_SCHOOL_CLUSTERS`` schools.
    """
    cluster = prepared.config.analysis.cluster
    if cluster == "school" and prepared.units["school"].nunique() < MIN_SCHOOL_CLUSTERS:
        return "student"
    return cluster


def group_sample(
    prepared: Prepared,
    panel: pd.DataFrame,
    weights: np.ndarray,
    *,
    outcome: str = "attendance_pp",
    window: tuple[int, int] | None = None,
    reference: int = -1,
    adjust: bool = True,
) -> pd.DataFrame | None:
    """The rows of one group: its units re-weighted, outcome regression-adjusted.

    Returns None when fewer than two visited students remain, none is observed at the
    reference period, or the rows fall in fewer than two clusters (:func:`cluster_level`).
    """
    rows = _group_rows(
        prepared, panel, weights, outcome=outcome, window=window, reference=reference, adjust=adjust
    )
    return None if rows is None else rows[0]


def _weighted_rows(panel: pd.DataFrame, weights: np.ndarray) -> pd.DataFrame:
    """The rows of ``panel`` with a positive weight, ``weight`` the product of its parts."""
    w = weights[panel["unit"].to_numpy()]
    if "censoring_weight" in panel.columns:  # risk-set pool: inverse-probability-of-censoring
        w = w * panel["censoring_weight"].to_numpy(np.float64)
    if "day_share" in panel.columns:  # long-term rate on month rows: a month's share of its year
        w = w * panel["day_share"].to_numpy(np.float64)
    return panel.loc[w > 0].assign(weight=w[w > 0])


_POOLED: dict[tuple, tuple[weakref.ref, weakref.ref, dict[int, np.ndarray]]] = {}
"""Recent :func:`pooled_slopes`, by panel, units and outcome (weak references: no copy kept)."""


def pooled_slopes(
    prepared: Prepared,
    panel: pd.DataFrame,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int,
) -> dict[int, np.ndarray]:
    """The adjustment's slopes of the whole matched sample (every visited student's units).

    A subgroup whose comparison units at an event time are too few for its own slopes
    takes these (``analysis.adjustment_fallback: pooled``): the change the pre-period
    trajectory predicts, estimated on every comparison unit of ``panel`` with the
    matching weights. Remembered while ``panel`` lives, so the groups of one step share one
    computation.
    """
    units = prepared.units
    key = (id(panel), id(units), outcome, window, reference)
    hit = _POOLED.get(key)
    if hit is not None and hit[0]() is panel and hit[1]() is units:
        return hit[2]
    rows = _weighted_rows(panel, units["weight"].to_numpy(np.float64))
    slopes = trend_slopes(
        rows, prepared.unit_x, outcome=outcome, window=window, reference=reference
    )
    for stale in [k for k, v in _POOLED.items() if v[0]() is None or v[1]() is None]:
        del _POOLED[stale]
    _POOLED[key] = (weakref.ref(panel), weakref.ref(units), slopes)
    return slopes


def _group_rows(
    prepared: Prepared,
    panel: pd.DataFrame,
    weights: np.ndarray,
    *,
    outcome: str,
    window: tuple[int, int] | None,
    reference: int,
    adjust: bool,
) -> tuple[pd.DataFrame, Adjustment | None] | None:
    """:func:`group_sample` and which slopes adjusted each event time (None: not adjusted)."""
    sub = _weighted_rows(panel, weights)
    if sub.loc[sub["treated"] == 1, "student"].nunique() < 2:
        return None
    if (sub.loc[sub["treated"] == 1, "rel_time"] == reference).sum() == 0:
        return None
    if sub[cluster_level(prepared)].nunique() < 2:
        return None
    if not adjust:
        return sub, None
    fallback = None
    if prepared.config.analysis.adjustment_fallback == "pooled":
        fallback = functools.partial(
            pooled_slopes, prepared, panel, outcome=outcome, window=window, reference=reference
        )
    adjustment = adjust_outcome(
        sub, prepared.unit_x, outcome=outcome, window=window, reference=reference, fallback=fallback
    )
    sub[outcome] = adjustment.outcome
    return sub, adjustment


def _with_adjustment(res: EventStudyResult, adjustment: Adjustment | None) -> EventStudyResult:
    """``res`` recording which event times were adjusted, and with which slopes."""
    if adjustment is None:
        return dataclasses.replace(res, adjusted_rel_times=(), pooled_rel_times=())
    return dataclasses.replace(
        res, adjusted_rel_times=adjustment.own, pooled_rel_times=adjustment.pooled
    )


ADJUSTMENT_KINDS = ("group", "pooled", "none")
"""Values of the tables' ``adjustment`` column: which slopes adjusted an event time's outcome
(the group's own, the whole matched sample's, none)."""


def adjustment_kinds(result: EventStudyResult, rel_times: pd.Series) -> np.ndarray:
    """``adjustment`` of each event time of ``rel_times`` (:data:`ADJUSTMENT_KINDS`)."""
    if result.adjusted_rel_times is None or result.pooled_rel_times is None:
        raise ValueError("the fit does not record which months were adjusted (use fit_group)")
    own = rel_times.isin(result.adjusted_rel_times).to_numpy()
    pooled = rel_times.isin(result.pooled_rel_times).to_numpy()
    return np.where(own, "group", np.where(pooled, "pooled", "none"))


def fit_group(
    prepared: Prepared,
    panel: pd.DataFrame,
    weights: np.ndarray,
    *,
    outcome: str = "attendance_pp",
    window: tuple[int, int] | None | str = "config",
    reference: int | None = None,
    adjust: bool | None = None,
    estimator: Callable[..., EventStudyResult] = event_study,
) -> EventStudyResult | None:
    """The event study of one group: its units re-weighted, outcome regression-adjusted.

    ``window="config"`` takes the window of the parameters; ``None`` bins nothing.
    ``adjust`` overrides ``analysis.regression_adjustment``. ``estimator`` is the fast
    :func:`~leapresearch.estimation.event_study.event_study` or
    :func:`~leapresearch.estimation.linear_models.linearmodels_event_study`.
    Returns None when fewer than two visited students remain. The result records the
    event times adjusted with the group's own slopes (``adjusted_rel_times``) and with the
    whole matched sample's (``pooled_rel_times``, :func:`pooled_slopes`).
    """
    config = prepared.config
    window = config.analysis.window if window == "config" else window
    reference = config.analysis.reference if reference is None else reference
    rows = _group_rows(
        prepared,
        panel,
        weights,
        outcome=outcome,
        window=window,
        reference=reference,
        adjust=config.analysis.regression_adjustment if adjust is None else adjust,
    )
    if rows is None:
        return None
    sub, adjustment = rows
    res = estimator(
        sub, outcome=outcome, window=window, reference=reference, cluster=cluster_level(prepared)
    )
    return _with_adjustment(res, adjustment)


def fit_group_with_influence(
    prepared: Prepared,
    panel: pd.DataFrame,
    weights: np.ndarray,
    *,
    influence_if: Callable[[EventStudyResult], bool] | None = None,
) -> GroupFit | None:
    """:func:`fit_group` (monthly outcome, parameters' window) plus each cluster's influence.

    The influence (:func:`~leapresearch.estimation.multiple_testing.cluster_influence`)
    gives the joint covariance of different groups' estimates for the subgroup tests.
    ``influence_if``: compute it only for the fits it accepts (the others get none, so no
    bootstrap columns and no wild-bootstrap moments); default every fit.
    """
    config = prepared.config
    window, reference = config.analysis.window, config.analysis.reference
    rows = _group_rows(
        prepared,
        panel,
        weights,
        outcome="attendance_pp",
        window=window,
        reference=reference,
        adjust=config.analysis.regression_adjustment,
    )
    if rows is None:
        return None
    sub, adjustment = rows
    res = event_study(sub, window=window, reference=reference, cluster=cluster_level(prepared))
    res = _with_adjustment(res, adjustment)
    if influence_if is not None and not influence_if(res):
        return with_influence(res, None)
    try:
        return with_influence(res, *cluster_influence_moments(sub, res))
    except (RuntimeError, np.linalg.LinAlgError) as exc:  # e.g. a near-singular tiny group
        note = f"cluster influence not computed ({exc}): left out of the subgroup tests"
        return with_influence(dataclasses.replace(res, notes=(*res.notes, note)), None)


def event_table(result: EventStudyResult, config: Config) -> pd.DataFrame:
    """A fit's rows of an event-study table (reference month left out)."""
    tab = result.table(alpha=config.analysis.alpha)
    return tab.loc[tab["rel_time"] != result.reference, [*EVENT_STUDY_COLUMNS[1:], "p_value"]]


def band_rel_times(result: EventStudyResult) -> list[int]:
    """Months of the simultaneous band: the post-visit months before the binned end point."""
    if result.window is not None:
        hi = result.window[1]
    else:  # no binning: the last month is a month like the others
        hi = int(result.coefficients.index.max()) + 1
    return [int(r) for r in result.coefficients.index if 0 <= r < hi]


def headline_weights(
    prepared: Prepared, *, keep: pd.DataFrame | None = None
) -> list[tuple[str, np.ndarray]]:
    """``(group, unit weights)`` of the headline groups (``identification.groups``).

    ``keep`` (``stack``, ``student``) restricts every group to those visited students.
    """
    wanted = prepared.config.identification.groups
    units, pairs = prepared.units, prepared.matching.pairs
    out = []
    for label, treated in group_definitions(prepared.attributes, ("grade_band",)):
        if label not in wanted:
            continue
        if keep is not None:
            treated = treated.merge(keep[["stack", "student"]], on=["stack", "student"])
            out.append((label, subgroup_weights(units, pairs, treated)))
        elif label == GROUP_ALL:
            out.append((label, units["weight"].to_numpy(np.float64)))
        else:
            out.append((label, subgroup_weights(units, pairs, treated)))
    return out
