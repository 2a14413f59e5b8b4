"""Robustness of the estimate to the estimator (notebooks 06 and 07).

The naive before/after change (``naive_pre_post.csv``), the placebo with a fake event month
(``placebo.csv``) and the Callaway-Sant'Anna estimators (``robust_estimator.csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.analysis.base import EVENT_STUDY_COLUMNS, Log, quiet
from leapresearch.analysis.fitting import event_table, fit_group
from leapresearch.analysis.sample import Prepared, prepare_matched
from leapresearch.design.pool import (
    build_candidates,
)
from leapresearch.estimation.naive import naive_pre_post
from leapresearch.estimation.robust import callaway_santanna
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
    group_definitions,
)
from leapresearch.threads import single_blas_thread


def estimate_naive(prepared: Prepared) -> pd.DataFrame:
    """Naive before/after change of matched visited students, by group (``naive_pre_post.csv``)."""
    config = prepared.config
    tables = []
    for label, treated in group_definitions(prepared.attributes, ("grade_band", "cohort")):
        tab = naive_pre_post(
            prepared.panel,
            treated,
            window=config.analysis.window,
            reference=config.analysis.reference,
        )
        tables.append(tab.assign(group=label))
    out = pd.concat(tables, ignore_index=True)
    return out[["group", "rel_time", "estimate", "n_treated"]]


@single_blas_thread
def estimate_placebo(prepared: Prepared, *, log: Log = quiet) -> pd.DataFrame:
    """Placebo: a fake event month ``shift_months`` before the real one (``placebo.csv``).

    Visited students are re-matched at the fake event month on the trajectory before it;
    only months before the real event month enter. Estimates at fake ``rel_time >= 0``
    should be zero when the design is sound.
    """
    config = prepared.config
    shift = config.placebo.shift_months
    cand = build_candidates(
        prepared.panel,
        pool=config.comparison_pool,
        matching=config.matching,
        shift=shift,
        stacks=np.unique(prepared.units.loc[prepared.units["treated"] == 1, "stack"]),
    )
    fake = prepare_matched(prepared.panel, cand, config, max_rel_time=shift - 1)
    weights = fake.units["weight"].to_numpy(np.float64)
    res = fit_group(fake, fake.stacked, weights, window=config.placebo.window)
    log("placebo: done")
    tab = event_table(res, config).assign(group=GROUP_ALL, shift_months=shift)
    tab["pre_wald_p_value"] = res.pretrend_test().p_value
    cols = ["group", "shift_months", *EVENT_STUDY_COLUMNS[1:], "pre_wald_p_value"]
    return tab[cols].reset_index(drop=True)


ROBUST_COMPARISONS = {
    ("notyettreated", False): "not_yet_visited",
    ("notyettreated", True): "not_yet_or_never_visited",
    ("nevertreated", False): "never_visited",
    ("nevertreated", True): "never_visited",
}
"""``comparison`` column of ``robust_estimator.csv`` by (control group, with never-visited)."""


def _robust_data(prepared: Prepared, *, with_never: bool) -> pd.DataFrame:
    """Unstacked student-month panel of visited (and, if asked, never-visited) students.

    Never-visited students follow ``comparison_pool``, as the matched design's pool:
    students with only attempted visits count as never visited if
    ``include_attempted_only``, and unless ``allow_other_districts`` only students ever
    on the roster of a district with a visited student (of the analysed cohorts) enter.
    """
    panel, pool = prepared.panel, prepared.config.comparison_pool
    monthly = panel.monthly[["student", "time", "rate"]]
    ev = panel.events[["student", "event_time"]]
    if prepared.config.cohorts is not None:
        ev = ev.loc[panel.events["cohort"].isin(prepared.config.cohorts)]
    if with_never:
        never = ~panel.visited_any
        if pool.include_attempted_only:
            never = np.ones(panel.n_students, dtype=bool)
            never[panel.events["student"].to_numpy()] = False
        if not pool.allow_other_districts:
            ros = panel.roster
            districts = ros.loc[ros["student"].isin(ev["student"]), "district"].unique()
            in_district = np.zeros(panel.n_students, dtype=bool)
            in_district[ros.loc[ros["district"].isin(districts), "student"].to_numpy()] = True
            never &= in_district
        data = monthly.merge(ev, on="student", how="left")
        data = data.loc[data["event_time"].notna() | never[data["student"].to_numpy()]]
    else:
        data = monthly.merge(ev, on="student", how="inner")
    return data.assign(attendance_pp=100.0 * data["rate"]).drop(columns="rate")


def _robust_demographics(prepared: Prepared, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """Dummy-coded roster columns of each student's first school year (None if none asked)."""
    if not columns:
        return None
    roster = prepared.panel.roster.sort_values(["student", "year"], kind="stable")
    first = roster.groupby("student", sort=True)[list(columns)].first()
    cats = [c for c in columns if not pd.api.types.is_numeric_dtype(first[c])]
    out = pd.get_dummies(first, columns=cats, drop_first=True, dtype=np.float64)
    return out.astype(np.float64)


def _robust_rows(res, *, estimator: str, comparison: str) -> pd.DataFrame:
    tab = res.table()
    tab.insert(0, "comparison", comparison)
    tab.insert(0, "estimator", estimator)
    tab.insert(0, "group", GROUP_ALL)
    return tab


@single_blas_thread
def estimate_robust(prepared: Prepared, *, log: Log = quiet) -> pd.DataFrame:
    """Callaway-Sant'Anna event study (``robust_estimator.csv``), default and unconditional.

    The default (``params/base.yaml`` ``robust:``) is the doubly-robust estimator with
    never-visited comparisons, pre-trajectory covariates and the universal base month
    ``-1 - anticipation``, so that its rows compare with the main matched estimate;
    ``robust.unconditional`` adds the rows of the unconditional estimator. Column
    ``estimator`` (``dr`` or ``unconditional``) and ``comparison`` tell the row sets
    apart. See :func:`leapresearch.estimation.robust.callaway_santanna`.
    """
    rc = prepared.config.robust
    window = prepared.config.analysis.window
    parts = []
    specs = [(rc.est_method, rc)]
    if rc.unconditional is not None and rc.est_method != "unconditional":
        specs.append(("unconditional", rc.unconditional))
    for method, spec in specs:
        with_never = spec.include_never_treated or spec.control_group == "nevertreated"
        dr = method == "dr"
        res = callaway_santanna(
            _robust_data(prepared, with_never=with_never),
            group="event_time",
            window=window,
            control_group=spec.control_group,
            include_never_treated=spec.include_never_treated,
            base_period=spec.base_period,
            anticipation=spec.anticipation,
            est_method=method,
            covariates=_robust_demographics(prepared, rc.demographics) if dr else None,
            pre_trajectory=rc.pre_trajectory if dr else (),
            trim=rc.trim,
        )
        for note in res.notes:
            log(f"robust estimator ({method}): {note}")
        comparison = ROBUST_COMPARISONS[(spec.control_group, spec.include_never_treated)]
        parts.append(_robust_rows(res, estimator=method, comparison=comparison))
    log("robust estimator: done")
    return pd.concat(parts, ignore_index=True)
