"""Long-term effects in later school years (notebooks 06 and 07, ``long_term.csv``).

Difference-in-differences on annual outcomes, by cohort and grade band.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import pandas as pd

from leapresearch.analysis.base import LONG_TERM_COLUMNS, Log, quiet, with_setting
from leapresearch.analysis.fitting import adjustment_kinds, fit_group
from leapresearch.analysis.sample import Prepared, unit_censoring_info
from leapresearch.design.censoring import censoring_weights
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.linear_models import linearmodels_event_study
from leapresearch.estimation.long_term import (
    enrolled_in_reference_year,
    long_term_panel,
    long_term_table,
)
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
    group_definitions,
)
from leapresearch.threads import single_blas_thread


@single_blas_thread
def estimate_long_term(prepared: Prepared, *, log: Log = quiet) -> pd.DataFrame:
    """Difference-in-differences on annual outcomes of later school years (``long_term.csv``).

    For each cohort and each of ``all`` and the grade bands, the matched units of that
    cohort's visited students, annual outcome in pp, reference: the school year before
    the cohort's. Fitted by ``linearmodels`` (``AbsorbingLS``, see
    :func:`~leapresearch.estimation.linear_models.linearmodels_event_study`).
    ``adjustment`` says which slopes adjusted a school year's outcome, as in
    ``event_study.csv`` (``none`` with ``long_term.regression_adjustment`` off). With
    ``long_term.censoring_weights`` (and a not-yet-visited pool) the comparisons' school
    months of the attendance rate are weighted by the inverse probability of not yet
    having been visited (:func:`long_term_censoring_weights`). With
    ``long_term.require_reference_year`` the fits keep the units whose student is enrolled
    in the school year before the stack's (the reference year): the estimand is the effect
    on the visited students with a record in that year, each weighed over its comparisons
    with one (:func:`_with_reference_year`). A visited student new to the data in its
    visit year has no reference row; kept, it would enter only through the change from its
    visit year, which holds the dip that got it picked, to the next
    (``validation/README.md``, eighth freeze).
    """
    config = prepared.config
    attrs = prepared.attributes
    units, pairs = prepared.units, prepared.matching.pairs
    kept = None
    if config.long_term.require_reference_year:
        kept = enrolled_in_reference_year(prepared.panel, units)
        attrs, pairs = _with_reference_year(units, kept, attrs, pairs, log=log)
    rows = []
    for outcome in config.long_term.outcomes:
        annual = long_term_panel(prepared.panel, units, outcome=outcome)
        annual = annual.rename(columns={"y": "outcome"})
        if _weighted(prepared, annual):
            annual = annual.assign(
                censoring_weight=long_term_censoring_weights(prepared, annual, log=log)
            )
        if kept is not None:
            annual = annual.loc[kept[annual["unit"].to_numpy()]].reset_index(drop=True)
        for cohort in sorted(attrs["cohort"].dropna().unique()):
            in_cohort = attrs.loc[attrs["cohort"] == cohort]
            cohort_year = int(in_cohort["stack"].min()) // 10
            groups = [(GROUP_ALL, in_cohort[["stack", "student"]])]
            groups += [
                (label, treated)
                for label, treated in group_definitions(in_cohort, ["grade_band"])
                if label != GROUP_ALL
            ]
            for label, treated in groups:
                weights = subgroup_weights(units, pairs, treated)
                try:
                    res = fit_group(
                        prepared,
                        annual,
                        weights,
                        outcome="outcome",
                        window=None,
                        reference=-1,
                        adjust=config.long_term.regression_adjustment,
                        estimator=linearmodels_event_study,
                    )
                except (ValueError, np.linalg.LinAlgError) as exc:
                    # e.g. a small cohort's grade band whose comparisons visited later leave
                    # one school: that cell is not estimable, the others are
                    log(f"long-term: {label}, {cohort}, {outcome} not estimable: {exc}")
                    res = None
                if res is None:
                    continue
                tab = long_term_table(res, cohort_year=cohort_year, alpha=config.analysis.alpha)
                adjusted = adjustment_kinds(res, tab["years_after"])
                rows.append(
                    tab.assign(group=label, cohort=cohort, outcome=outcome, adjustment=adjusted)
                )
    log(f"long-term: {len(rows)} fits")
    cols = LONG_TERM_COLUMNS
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.concat(rows, ignore_index=True)[cols]


def long_term_coverage(prepared: Prepared) -> pd.DataFrame:
    """Per cohort: the matched visited students, and those with a reference-year record.

    Columns ``cohort``, ``n_visited`` (matched visited students), ``n_with_reference_year``
    (enrolled in the school year before their first visit's:
    :func:`~leapresearch.estimation.long_term.enrolled_in_reference_year`) and
    ``n_new_in_visit_year`` (the others, new to the data in their visit year). With
    ``long_term.require_reference_year`` the long-term cells cover the second count only
    (notebook 06).
    """
    units = prepared.units
    treated = units["treated"].to_numpy() == 1
    kept = enrolled_in_reference_year(prepared.panel, units)
    visited = units.loc[treated, ["stack", "student"]].assign(kept=kept[treated])
    cohorts = prepared.attributes[["stack", "student", "cohort"]]
    visited = visited.merge(cohorts, on=["stack", "student"], how="left", validate="one_to_one")
    by_cohort = visited.groupby("cohort", sort=True)["kept"]
    n_visited = by_cohort.size().astype(np.int64)
    n_with = by_cohort.sum().astype(np.int64)
    return pd.DataFrame(
        {
            "cohort": n_visited.index.to_numpy(),
            "n_visited": n_visited.to_numpy(),
            "n_with_reference_year": n_with.to_numpy(),
            "n_new_in_visit_year": (n_visited - n_with).to_numpy(),
        }
    )


def _with_reference_year(
    units: pd.DataFrame,
    kept: np.ndarray,
    attributes: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    log: Log = quiet,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The visited students and the matched pairs whose units ``kept`` marks.

    ``kept``: per unit, whether its student is enrolled in the school year before its
    stack's (:func:`~leapresearch.estimation.long_term.enrolled_in_reference_year`). Each
    kept visited student's weight is spread over its kept comparisons
    (:func:`~leapresearch.design.stacking.subgroup_weights` counts the pairs left).
    """
    key = ["stack", "student"]
    treated = units["treated"].to_numpy() == 1
    kept_treated = units.loc[kept & treated, key]
    kept_comparisons = units.loc[kept & ~treated, key]
    attributes = attributes.merge(kept_treated, on=key, how="inner")
    pairs = pairs.merge(
        kept_comparisons.rename(columns={"student": "comparison_student"}),
        on=["stack", "comparison_student"],
        how="inner",
    )
    n_visited = int(treated.sum())
    log(
        f"long-term: {len(kept_treated):,} of {n_visited:,} visited students and "
        f"{len(kept_comparisons):,} of {int((~treated).sum()):,} comparison units "
        "enrolled in the school year before their visit's (the others have no reference "
        "row: long_term.require_reference_year)"
    )
    return attributes, pairs


def _weighted(prepared: Prepared, annual: pd.DataFrame) -> bool:
    """Whether the long-term fit of ``annual`` takes censoring weights (month rows only)."""
    config = prepared.config
    return (
        config.long_term.censoring_weights
        and config.comparison_pool.not_yet_visited
        and "day_share" in annual.columns
    )


def long_term_censoring_weights(
    prepared: Prepared, annual: pd.DataFrame, *, log: Log = quiet
) -> np.ndarray:
    """Inverse-probability-of-censoring weights of the long-term panel's month rows.

    The model of the monthly event study (:func:`~leapresearch.design.censoring.
    censoring_weights`: a pooled logistic hazard of a comparison's first visit on its recent
    attendance, calendar month, district, grade band and pre-period mean), fitted over every
    school month each comparison is at risk until the last month of its stack. A comparison
    month after the event month gets the inverse of its estimated probability of not yet
    having been visited (capped); months up to the event month and visited students' rows
    get 1. Chronic absence, a whole school year's property, is not weighted.

    Notes
    -----
    Over later school years an early cohort's comparisons are visited (and censored) by the
    later, larger cohorts, picked on falling attendance: unweighted, the comparisons left
    are those whose attendance held up, and the long-term estimate is too low
    (``validation/README.md``).
    """
    units = prepared.units
    key = (id(units), id(prepared.panel.events), len(annual))
    hit = _WEIGHTS.get(key)
    if hit is not None and hit[0]() is units and hit[1]() is prepared.panel.events:
        return hit[2]
    model = censoring_weights(
        prepared.panel, units, annual, unit_censoring_info(units, prepared.candidates)
    )
    summary = model.summary()
    log(
        f"long-term censoring weights: {model.n_censored:,} of {model.n_at_risk:,} comparison "
        f"months at risk censored, largest weight {summary['max_weight']:.2f} "
        f"({model.n_capped:,} month rows capped)"
    )
    for stale in [k for k, v in _WEIGHTS.items() if v[0]() is None or v[1]() is None]:
        del _WEIGHTS[stale]
    _WEIGHTS[key] = (weakref.ref(units), weakref.ref(prepared.panel.events), model.weights)
    return model.weights


_WEIGHTS: dict[tuple, tuple[weakref.ref, weakref.ref, np.ndarray]] = {}
"""Recent :func:`long_term_censoring_weights`, by matched units and first visits (weak
references): the published fit and notebook 07's alternative without the adjustment build
the same month rows from the same sample, so they share one hazard fit."""


def estimate_long_term_alternatives(
    prepared: Prepared, *, published: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``long_term.csv`` as published, and with each of its three choices switched.

    Rows of the run's own choice (``published`` True), of the other
    ``long_term.regression_adjustment`` (every outcome), of the other
    ``long_term.censoring_weights`` (the attendance rate, the outcome the weights apply to;
    only when the pool holds not-yet-visited comparisons), and of the other
    ``long_term.require_reference_year`` (every outcome). Columns ``published``,
    ``adjusted``, ``censoring_weights``, ``reference_year_required`` and those of
    :func:`estimate_long_term`. The run publishes the parameters' choice; this shows what
    each choice moves (notebook 07) instead of resting either on the simulator, and no
    correction's estimation error is in the standard errors. ``published``, the run's
    :func:`estimate_long_term` table, is reused for the parameters' choice.
    """
    config = prepared.config
    adjust = config.long_term.regression_adjustment
    weigh = config.long_term.censoring_weights and config.comparison_pool.not_yet_visited
    reference = config.long_term.require_reference_year
    own = estimate_long_term(prepared) if published is None else published
    variants = [(True, adjust, weigh, reference, own)]

    def switched(**setting) -> pd.DataFrame:
        other = with_setting(config, "long_term", **setting)
        return estimate_long_term(dataclasses.replace(prepared, config=other))

    variants.append(
        (False, not adjust, weigh, reference, switched(regression_adjustment=not adjust))
    )
    if config.comparison_pool.not_yet_visited and "attendance_rate" in config.long_term.outcomes:
        table = switched(censoring_weights=not weigh, outcomes=("attendance_rate",))
        variants.append((False, adjust, not weigh, reference, table))
    table = switched(require_reference_year=not reference)
    variants.append((False, adjust, weigh, not reference, table))
    tables = [
        table.assign(
            published=is_published,
            adjusted=adjusted,
            # chronic absence (year rows) is never weighted
            censoring_weights=weighted & (table["outcome"] == "attendance_rate"),
            reference_year_required=with_reference,
        )
        for is_published, adjusted, weighted, with_reference, table in variants
    ]
    out = pd.concat(tables, ignore_index=True)
    # each cell's variants side by side, in the published table's order of cells
    keys = ["group", "cohort", "outcome", "years_after"]
    order = {key: i for i, key in enumerate(own[keys].itertuples(index=False, name=None))}
    position = [order.get(key, len(order)) for key in out[keys].itertuples(index=False, name=None)]
    out = out.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    flags = ["published", "adjusted", "censoring_weights", "reference_year_required"]
    return out[[*flags, *LONG_TERM_COLUMNS]]
