"""Robustness of the estimate to the estimator (notebooks 06 and 07).

The naive before/after change (``naive_pre_post.csv``), the placebo with a fake event month
(``placebo.csv``) and the Callaway-Sant'Anna estimators (``robust_estimator.csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.analysis.base import EVENT_STUDY_COLUMNS, Log, not_estimable, quiet
from leapresearch.analysis.fitting import event_table, fit_group
from leapresearch.analysis.sample import Prepared, prepare_matched
from leapresearch.design.pool import (
    build_candidates,
)
from leapresearch.estimation.falsification import wald_terms
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


PLACEBO_COLUMNS = [
    "group",
    "shift_months",
    *EVENT_STUDY_COLUMNS[1:],
    "pre_wald_p_value",
    "post_wald_statistic",
    "post_wald_df",
    "post_wald_p_value",
    "n_visited",
    "n_visited_placebo",
]


def placebo_post_end(config) -> int:
    """Last fake post month that lies before the real matching window (negative: none).

    Fake month ``r`` is real month ``r - shift_months``; the matching used real months
    ``-1 .. -pre_months``, so fake months up to ``shift_months - pre_months - 1`` are free
    of it. The placebo's window ends there or at ``placebo.window``, whichever is earlier.
    """
    free = config.placebo.shift_months - config.matching.pre_months - 1
    return min(config.placebo.window[1], free)


@single_blas_thread
def estimate_placebo(prepared: Prepared, *, log: Log = quiet) -> pd.DataFrame:
    """Placebo: a fake event month ``shift_months`` before the real one (``placebo.csv``).

    Visited students are re-matched at the fake event month on the trajectory before it.
    Only fake months up to :func:`placebo_post_end` enter, so every fake post month lies
    before the real matching window (months ``-1 .. -pre_months`` before the real first
    visit): the matching did not fit them, and the placebo can fail. Visited students whose
    fake event month has no roster row or no attendance before it (the panel starts too
    late) are left out; with fewer than two left, or no fake post month before the
    matching window, the table is a one-row note.

    Returns
    -------
    DataFrame
        One row per fake month: the event-study columns, ``shift_months``,
        ``pre_wald_p_value`` (joint test of the fake pre-period months),
        ``post_wald_statistic``, ``post_wald_df``, ``post_wald_p_value`` (joint Wald test
        that every fake post month is zero, ``F(q, G - 1)``), ``n_visited`` (matched
        visited students of the main design) and ``n_visited_placebo`` (those in the
        placebo fit); the last five repeat on every row.
    """
    config = prepared.config
    shift = config.placebo.shift_months
    post_end = placebo_post_end(config)
    treated = prepared.units.loc[prepared.units["treated"] == 1]
    n_visited = int(treated["student"].nunique())
    if post_end < 0:
        return not_estimable(
            ValueError(
                f"a shift of {shift} months leaves no fake post month before the "
                f"{config.matching.pre_months}-month matching window (shift at least "
                f"{config.matching.pre_months + 1})"
            )
        )
    cand = build_candidates(
        prepared.panel,
        pool=config.comparison_pool,
        matching=config.matching,
        shift=shift,
        stacks=np.unique(treated["stack"]),
    )
    n_usable = int(cand.frame.loc[cand.frame["treated"].astype(bool), "student"].nunique())
    if n_usable < 2:
        log(f"placebo: not enough history ({n_usable} of {n_visited:,} visited students)")
        return not_estimable(
            ValueError(
                f"not enough history: {n_usable} of {n_visited:,} visited students have "
                f"attendance before a fake first visit {shift} months early"
            )
        )
    window = (config.placebo.window[0], post_end)
    fake = prepare_matched(prepared.panel, cand, config, max_rel_time=post_end)
    weights = fake.units["weight"].to_numpy(np.float64)
    res = fit_group(fake, fake.stacked, weights, window=window)
    if res is None:
        raise ValueError("fewer than two visited students in the placebo fit")
    post = wald_terms(res, list(range(0, post_end + 1)))
    log(f"placebo: {res.n_treated:,} of {n_visited:,} visited students")
    tab = event_table(res, config).assign(group=GROUP_ALL, shift_months=shift)
    tab["pre_wald_p_value"] = res.pretrend_test().p_value
    tab["post_wald_statistic"] = post["statistic"]
    tab["post_wald_df"] = post["df"]
    tab["post_wald_p_value"] = post["p_value"]
    tab["n_visited"] = n_visited
    tab["n_visited_placebo"] = res.n_treated
    return tab[PLACEBO_COLUMNS].reset_index(drop=True)


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
