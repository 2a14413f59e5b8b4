"""The design's switches one at a time (notebook 07, ``specifications.csv``).

Each row set re-estimates the headline groups at the headline months with one choice of the
design changed (:data:`SPEC_DESCRIPTIONS`): the adjustment, the pool, the matching ratio or
caliper, the end points, the clustering, the outside-caliper students, intent to treat.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.analysis.base import Log, quiet, with_setting
from leapresearch.analysis.fitting import event_table, fit_group, headline_weights
from leapresearch.analysis.sample import (
    Prepared,
    fitted_coefficients,
    prepare_matched,
    unit_censoring_info,
)
from leapresearch.data.panel import (
    AnalyticPanel,
)
from leapresearch.design.censoring import censoring_weights
from leapresearch.design.pool import (
    cohort_candidates,
    narrower_pool,
    restrict_candidates,
)
from leapresearch.threads import release_memory, single_blas_thread

REFIT_SPECS = (
    "not_yet_visited_pool",
    "never_visited_pool",
    "attempted_only_excluded",
    "intent_to_treat",
)
"""Specifications that fit a new propensity model (the slow ones)."""


SPECIFICATION_COLUMNS = [
    "specification",
    "group",
    "rel_time",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "n_treated",
]
SPEC_DESCRIPTIONS: dict[str, str] = {
    "main": "the parameters of the run",
    "no_adjustment": "regression adjustment on the pre-period trajectory off",
    "outside_caliper_drop": "visited students with no comparison inside the caliper dropped",
    "outside_caliper_only": "only the visited students matched outside the caliper",
    "not_yet_visited_pool": "students visited later also serve as comparisons until then "
    "(with censoring weights)",
    "never_visited_pool": "only students never visited in the data serve as comparisons",
    "censoring_weights": "not-yet-visited comparisons weighted by the inverse probability "
    "of not yet having been visited",
    "no_censoring_weights": "not-yet-visited comparisons without the censoring weights",
    "attempted_only_excluded": "students with only attempted visits kept out of the pool",
    "ratio_1": "one comparison per visited student",
    "ratio_5": "five comparisons per visited student",
    "caliper_0.1": "caliper 0.1 SD of the logit propensity score",
    "caliper_none": "no caliper",
    "trimmed_end_points": "months outside the window dropped instead of binned",
    "cluster_school": "standard errors clustered by school",
    "cluster_student": "standard errors clustered by student",
    "intent_to_treat": "event at the first contact of any status (attempted or completed); "
    "students with any contact kept out of the pool",
}
"""What each row of ``specifications.csv`` changes (README and notebook 07)."""


def _spec_rows(
    prepared: Prepared,
    name: str,
    *,
    keep: pd.DataFrame | None = None,
    panel: pd.DataFrame | None = None,
    window: tuple[int, int] | None | str = "config",
    adjust: bool | None = None,
) -> list[pd.DataFrame]:
    """Headline months of the headline groups under one specification."""
    months = list(prepared.config.analysis.report_rel_times)
    stacked = prepared.stacked if panel is None else panel
    rows = []
    for label, weights in headline_weights(prepared, keep=keep):
        res = fit_group(prepared, stacked, weights, window=window, adjust=adjust)
        if res is None:
            continue
        tab = event_table(res, prepared.config)
        tab = tab.loc[tab["rel_time"].isin(months)]
        rows.append(tab.assign(specification=name, group=label))
    return rows


def _censoring_spec_rows(prepared: Prepared, name: str) -> list[pd.DataFrame]:
    """Rows with the censoring weights switched on or off (risk-set pools only).

    The matched sample is the same; only the weight column of the stacked panel changes.
    """
    pool = prepared.config.comparison_pool
    has = "censoring_weight" in prepared.stacked
    if not pool.not_yet_visited or has == (name == "censoring_weights"):
        return []  # a never-visited pool, or the run already uses this specification
    if has:
        return _spec_rows(prepared, name, panel=prepared.stacked.drop(columns="censoring_weight"))
    model = censoring_weights(
        prepared.panel,
        prepared.units,
        prepared.stacked,
        unit_censoring_info(prepared.units, prepared.candidates),
    )
    return _spec_rows(prepared, name, panel=prepared.stacked.assign(censoring_weight=model.weights))


def _intent_to_treat_panel(prepared: Prepared, tables) -> AnalyticPanel:
    """The panel with events at the first contact of any status (attempted or completed)."""
    from leapresearch.data.panel import _student_codes, build_events

    index = _student_codes(tables.students)
    visits = tables.leap_visits.assign(visit_status="completed")
    events, visited_any = build_events(visits, index)
    if prepared.config.cohorts is not None:
        events = events.loc[events["cohort"].isin(prepared.config.cohorts)]
    return dataclasses.replace(prepared.panel, events=events, visited_any=visited_any)


def _rematched(prepared: Prepared, name: str, tables) -> Prepared | None:
    """The matched sample under a specification that changes the pool or the matching."""
    config = prepared.config
    pool, matching = config.comparison_pool, config.matching
    changes = {
        "not_yet_visited_pool": ("comparison_pool", {"not_yet_visited": True}),
        "never_visited_pool": ("comparison_pool", {"not_yet_visited": False}),
        "attempted_only_excluded": ("comparison_pool", {"include_attempted_only": False}),
        "ratio_1": ("matching", {"ratio": 1}),
        "ratio_5": ("matching", {"ratio": 5}),
        "caliper_0.1": ("matching", {"caliper": 0.1}),
        "caliper_none": ("matching", {"caliper": None}),
    }
    panel = prepared.panel
    if name == "intent_to_treat":
        if tables is None:
            return None
        new = config
        panel = _intent_to_treat_panel(prepared, tables)
    else:
        section, update = changes[name]
        new = with_setting(config, section, **update)
        if getattr(config, section) == getattr(new, section):
            return None  # the run already uses this specification
        pool, matching = new.comparison_pool, new.matching
    if name.startswith(("ratio", "caliper")):
        # only the nearest-neighbour step changes: same candidates, same propensity scores
        return prepare_matched(panel, prepared.candidates, new, pscore=prepared.matching.pscore)
    if name != "intent_to_treat" and narrower_pool(config.comparison_pool, pool):
        # a narrower pool: the same candidates less the comparisons it does not admit
        cand = restrict_candidates(prepared.candidates, panel, pool)
    else:
        cand = cohort_candidates(panel, pool=pool, matching=matching, cohorts=config.cohorts)
    # the same strata on other rows: the fits start from the run's (the same maxima)
    return prepare_matched(panel, cand, new, pscore_start=fitted_coefficients(prepared.matching))


REMATCHED_SPECS = (
    "not_yet_visited_pool",
    "never_visited_pool",
    "attempted_only_excluded",
    "ratio_1",
    "ratio_5",
    "caliper_0.1",
    "caliper_none",
    "intent_to_treat",
)


@single_blas_thread
def estimate_specifications(
    prepared: Prepared,
    *,
    tables=None,
    log: Log = quiet,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Headline months of the headline groups under each design switch (``specifications.csv``).

    ``identification.specifications`` lists the switches (:data:`SPEC_DESCRIPTIONS`);
    the ``main`` rows repeat the run's own estimates. Switches of the estimation only
    (adjustment, end points, clustering, outside-caliper subsets) reuse the matched
    sample; ratio and caliper re-match the same candidates; the pool switches and the
    intent-to-treat build new candidates (``intent_to_treat`` needs the contract
    ``tables`` and is skipped without them). A switch equal to the run's own parameter
    is skipped. ``names`` restricts the table to those rows (``"main"`` included only if
    named; default: ``main`` and every switch).
    """
    config = prepared.config
    specs = config.identification.specifications
    names = ["main", *specs] if names is None else list(names)
    rows = _spec_rows(prepared, "main") if "main" in names else []
    timings = {}
    for name in (n for n in specs if n in names):
        t0 = time.perf_counter()
        rows += specification_rows(prepared, name, tables=tables)
        timings[name] = time.perf_counter() - t0
    log(timings_line(timings))
    if not rows:
        return pd.DataFrame(columns=SPECIFICATION_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    return out[SPECIFICATION_COLUMNS]


@single_blas_thread
def specification_rows(prepared: Prepared, name: str, *, tables=None) -> list[pd.DataFrame]:
    """The rows of one switch ``name`` of :func:`estimate_specifications` (none if skipped)."""
    config = prepared.config
    lo, hi = config.analysis.window
    rows: list[pd.DataFrame] = []
    if name == "no_adjustment" and config.analysis.regression_adjustment:
        rows += _spec_rows(prepared, name, adjust=False)
    elif name in ("outside_caliper_drop", "outside_caliper_only"):
        within, far = prepared.caliper_split()
        keep = far if name.endswith("only") else within
        if len(far) and len(keep):
            rows += _spec_rows(prepared, name, keep=keep)
    elif name in ("censoring_weights", "no_censoring_weights"):
        rows += _censoring_spec_rows(prepared, name)
    elif name == "trimmed_end_points":
        st = prepared.stacked
        trimmed = st.loc[st["rel_time"].between(lo, hi)]
        rows += _spec_rows(prepared, name, panel=trimmed, window=None)
    elif name in ("cluster_school", "cluster_student"):
        level = name.removeprefix("cluster_")
        if config.analysis.cluster != level:  # the main row already clusters so
            alt = dataclasses.replace(
                prepared, config=with_setting(config, "analysis", cluster=level)
            )
            rows += _spec_rows(alt, name)
    elif name in REMATCHED_SPECS:
        alt = _rematched(prepared, name, tables)
        if alt is not None:
            rows += _spec_rows(alt, name)
        # the re-matched sample is dropped before the next one is built, not beside it
        del alt
        release_memory()
    return rows


def timings_line(timings: dict[str, float]) -> str:
    """The log line of :func:`estimate_specifications`: the switches that took 0.5 s or more."""
    return "specifications: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if v >= 0.5)


def merge_specification_rows(
    here: pd.DataFrame, there: pd.DataFrame, specs: Sequence[str]
) -> pd.DataFrame:
    """Rows of the specifications computed in two processes, in the order of ``specs``.

    Each part keeps its own row order; a part without rows is left out.
    """
    both = pd.concat([part for part in (here, there) if len(part)] or [here], ignore_index=True)
    rank = both["specification"].map({n: i for i, n in enumerate(specs)})
    order = np.argsort(rank.to_numpy(), kind="stable")
    return both.iloc[order].reset_index(drop=True)
