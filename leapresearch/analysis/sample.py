"""The matched sample (notebook 02).

The analytic panel, the comparison candidates, the propensity-score matching and the stacked
panel of the matched units, and its summaries.

:func:`prepare` makes the :class:`Prepared` sample every other step starts from;
:func:`comparison_pool_summary`, :func:`matching_summary` and :func:`estimate_balance` are
the tables of notebook 02 (``matching_summary.csv``, ``balance.csv``).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.analysis.base import Log, quiet
from leapresearch.config import Config
from leapresearch.data.panel import (
    NEVER_VISITED,
    AnalyticPanel,
    build_panel,
    first_event_times,
)
from leapresearch.design.balance import balance_table
from leapresearch.design.censoring import censoring_weights
from leapresearch.design.matching import MatchResult, match, nearest_neighbor_match
from leapresearch.design.matching.grid import MatchKeys, _group_codes
from leapresearch.design.matching.propensity import (
    PropensityPlan,
    propensity_plan,
    with_match_keys,
)
from leapresearch.design.pool import (
    Candidates,
    cohort_candidates,
)
from leapresearch.design.stacking import candidate_rows, mass_weights, stacked_panel, unit_table
from leapresearch.estimation.subgroups import (
    treated_attributes,
)
from leapresearch.threads import single_blas_thread


@dataclass(frozen=True)
class Prepared:
    """The matched, stacked data every estimate starts from."""

    config: Config
    panel: AnalyticPanel
    candidates: Candidates
    matching: MatchResult
    units: pd.DataFrame
    attributes: pd.DataFrame
    stacked: pd.DataFrame
    unit_x: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """Diagnostics of the matching step (e.g. propensity fits refitted with a ridge penalty)."""

    @property
    def outside_caliper(self) -> pd.DataFrame:
        """Visited students matched to their nearest comparison outside the caliper."""
        return self.matching.settings.get(
            "matched_outside_caliper", pd.DataFrame(columns=["stack", "student"])
        )

    def caliper_split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The visited students (``stack``, ``student``) within and outside the caliper.

        ``within``: at least one comparison inside the caliper; ``outside``: matched to
        their nearest comparison outside it (:attr:`outside_caliper`). Together they are
        every visited student of the matched sample, in the order of ``units``.
        """
        treated = self.units.loc[self.units["treated"] == 1, ["stack", "student"]]
        far = self.outside_caliper[["stack", "student"]].assign(_far=True)
        flag = treated.merge(far, on=["stack", "student"], how="left")["_far"]
        is_far = flag.notna().to_numpy(bool)
        return treated.loc[~is_far], treated.loc[is_far]


def _weights_from_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Matched sample of MatchIt ATT weights rebuilt from pairs (treated 1, comparison sum 1/k)."""
    k = pairs.groupby(["stack", "treated_student"]).size().rename("k").reset_index()
    p = pairs.merge(k, on=["stack", "treated_student"])
    p = p.sort_values("k", kind="stable")  # each sum adds its terms in a fixed order
    comp = (1.0 / p["k"]).groupby([p["stack"], p["comparison_student"]]).sum()
    comp = comp.rename("weight").reset_index().rename(columns={"comparison_student": "student"})
    n_served = p.groupby(["stack", "comparison_student"]).size().to_numpy()
    treat = k.rename(columns={"treated_student": "student", "k": "n_matches"})
    out = pd.concat(
        [
            treat.assign(treated=True, weight=1.0),
            comp.assign(treated=False, n_matches=n_served),
        ],
        ignore_index=True,
    )
    out = out.sort_values(["stack", "treated", "student"], ascending=[True, False, True])
    return out[["stack", "student", "treated", "weight", "n_matches"]].reset_index(drop=True)


def pscore_plan(candidates: Candidates) -> PropensityPlan:
    """The weight-free steps of :func:`run_matching`'s propensity fits on ``candidates``.

    Computed once for weighted re-fits of the same candidates (the Bayesian bootstrap's
    draws: :func:`~leapresearch.design.matching.propensity.propensity_plan`).
    """
    return propensity_plan(candidates.frame, covariates=candidates.covariates)


def draws_plan(candidates: Candidates, config: Config) -> PropensityPlan:
    """:func:`pscore_plan` with the matching's keys and strata (:func:`run_matching`'s).

    What the Bayesian bootstrap's draws share of :func:`run_matching`: the propensity
    fits' weight-free steps and the nearest-neighbour step's keys, checked once.
    """
    plan = pscore_plan(candidates)
    return with_match_keys(plan, candidates.frame, matching_exact(config))


@single_blas_thread
def run_matching(
    candidates: Candidates,
    config: Config,
    *,
    pscore: pd.Series | None = None,
    pscore_start: Mapping[Any, Mapping[str, float]] | None = None,
    pscore_weights: np.ndarray | None = None,
    pscore_plan: PropensityPlan | None = None,
) -> MatchResult:
    """Propensity-score matching of each visited student to never-visited students.

    Exact strata are the event month (stack) and ``config.matching.exact``; see
    :func:`leapresearch.design.matching.match` for the score model and the caliper. With
    ``outside_caliper="nearest"``, a visited student with no comparison inside the caliper
    keeps its single nearest comparison in its stratum, is listed in
    ``settings["matched_outside_caliper"]``, and the regression adjustment
    (:mod:`leapresearch.design.adjustment`) corrects the remaining difference. The estimand then
    stays the effect on all visited students rather than on those with close matches.

    ``pscore`` (aligned with ``candidates.frame``) reuses propensity scores already fitted
    on the same candidates (the specification table's ratio and caliper rows);
    ``pscore_start`` starts the score's fits from earlier coefficients (the ``start`` of
    :func:`~leapresearch.design.matching.propensity.propensity_scores`), ``pscore_weights``
    weights the rows of those fits (its ``weights``: a Bayesian bootstrap draw) and
    ``pscore_plan`` (:func:`pscore_plan` of these candidates) skips their weight-free steps,
    and from :func:`draws_plan` the nearest-neighbour step's key check and strata codes.
    """
    m = config.matching
    exact = list(matching_exact(config))
    keys = None if pscore_plan is None else pscore_plan.match_keys
    if pscore is None:
        result = match(
            candidates.frame,
            covariates=candidates.covariates,
            exact=tuple(exact),
            ratio=m.ratio,
            caliper=m.caliper,
            replace=m.replace,
            seed=m.seed,
            start=pscore_start,
            weights=pscore_weights,
            plan=pscore_plan,
            keys=keys,
        )
    else:
        result = nearest_neighbor_match(
            candidates.frame,
            pscore,
            exact=tuple(exact),
            ratio=m.ratio,
            caliper=m.caliper,
            replace=m.replace,
            seed=m.seed,
        )
    far = result.unmatched.loc[result.unmatched["reason"] == "outside_caliper"]
    if m.outside_caliper != "nearest" or far.empty:
        return result
    sub, sub_keys = _rescue_rows(candidates.frame, far, exact, keys)
    second = nearest_neighbor_match(
        sub,
        result.pscore.loc[sub.index],
        exact=tuple(exact),
        ratio=1,
        caliper=None,
        replace=True,
        seed=m.seed,
        keys=sub_keys,
    )
    pairs = pd.concat([result.pairs, second.pairs], ignore_index=True)
    rescued = second.pairs[["stack", "treated_student"]].drop_duplicates()
    rescued = rescued.rename(columns={"treated_student": "student"})
    still = result.unmatched.merge(rescued.assign(r=True), on=["stack", "student"], how="left")
    unmatched = still.loc[still["r"].isna()].drop(columns="r").reset_index(drop=True)
    settings = {
        **result.settings,
        "outside_caliper": "nearest",
        "matched_outside_caliper": rescued.reset_index(drop=True),
    }
    return dataclasses.replace(
        result,
        matched=_weights_from_pairs(pairs),
        pairs=pairs.sort_values(["stack", "treated_student", "rank"], ignore_index=True),
        unmatched=unmatched,
        settings=settings,
    )


def matching_exact(config: Config) -> tuple[str, ...]:
    """The exact strata of :func:`run_matching`: the stack and ``matching.exact``.

    Without the district when ``comparison_pool.allow_other_districts`` is set.
    """
    exact = ["stack", *config.matching.exact]
    if config.comparison_pool.allow_other_districts:
        exact = [e for e in exact if e != "district"]
    return tuple(exact)


def _rescue_rows(
    frame: pd.DataFrame, far: pd.DataFrame, exact: list[str], keys: MatchKeys | None = None
) -> tuple[pd.DataFrame, MatchKeys | None]:
    """The visited students of ``far`` and the comparisons of their exact strata.

    What the nearest match outside the caliper reads (its keys, no covariates): a far
    student's nearest comparison lies in its own stratum, so the other strata's rows are
    left out (the same pairs as a match over every comparison, at a fraction of the cost).
    ``keys``: the matching's keys of ``frame`` when already made (a draw's), whose strata
    are used and whose rows are returned beside the frame's (else None).
    """
    treated = frame["treated"].to_numpy(bool)
    t_rows = np.flatnonzero(treated)
    key_columns = ["stack", "student"]
    visited = frame[key_columns].iloc[t_rows]
    marked = far[key_columns].assign(_far=True)
    is_far = visited.merge(marked, on=key_columns, how="left")["_far"].notna()
    far_rows = t_rows[is_far.to_numpy()]
    if keys is not None:
        strata = keys.checked_for(frame, tuple(exact)).stratum
    else:
        strata = _group_codes(frame, exact)  # dense codes 0..n_strata-1
    far_strata = np.zeros(int(strata.max()) + 1, dtype=bool)
    far_strata[strata[far_rows]] = True
    keep = ~treated & far_strata[strata]
    keep[far_rows] = True
    rows = np.flatnonzero(keep)  # ascending positions, as np.union1d gave them
    columns = list(dict.fromkeys([*key_columns, "treated", *exact]))
    return frame[columns].take(rows), None if keys is None else keys.take(rows)


def fitted_coefficients(matching: MatchResult) -> dict[Any, dict[str, float]]:
    """The propensity fits' coefficients by fit group (stack), as ``pscore_start`` takes them.

    Each converged fit's ``coefficients`` (on the covariates' own scale) from
    ``matching.settings["fit_diagnostics"]``: where a re-fit of the same strata on other
    rows (a specification that changes the pool, a bootstrap draw) starts.
    """
    return {
        fit["group"]: fit["coefficients"]
        for fit in matching.settings.get("fit_diagnostics", ())
        if "coefficients" in fit
    }


def _candidate_columns(
    units: pd.DataFrame, frame: pd.DataFrame, columns: list[str]
) -> pd.DataFrame:
    """``columns`` of the candidate row of each unit, in the order of ``units``.

    By the rows' positions (:func:`~leapresearch.design.stacking.candidate_rows`), else by a
    left merge on ``stack`` and ``student`` (the same values: missing where a unit has no
    candidate row).
    """
    rows = candidate_rows(frame, units)
    if rows is None:
        keys = units[["stack", "student"]]
        return keys.merge(
            frame[["stack", "student", *columns]], on=["stack", "student"], how="left"
        )
    return frame.take(rows)[columns].reset_index(drop=True)  # no copy of whole columns


def unit_censoring_info(units: pd.DataFrame, candidates: Candidates) -> pd.DataFrame:
    """District, grade band and mean pre-period rate of each unit (the censoring model)."""
    pre = [c for c in candidates.covariates if c.startswith("pre_rate_m")]
    x = _candidate_columns(units, candidates.frame, ["district", "grade_band", *pre])
    return pd.DataFrame(
        {
            "district": x["district"].astype(str).to_numpy(),
            "grade_band": x["grade_band"].astype(str).to_numpy(),
            "pre_mean": x[pre].mean(axis=1).to_numpy(np.float64),
        }
    )


def unit_covariates(units: pd.DataFrame, candidates: Candidates, config: Config) -> np.ndarray:
    """Pre-period trajectory summaries of each unit (rows indexed by unit id).

    Three columns: the mean attendance rate of the last three school months before the
    event month, of the months before those (up to ``matching.pre_months``), and the
    prior school year's rate. Summaries rather than every month keep the regression
    adjustment stable in small groups.
    """
    months = config.matching.pre_months
    recent = [f"pre_rate_m{k}" for k in range(1, min(3, months) + 1)]
    earlier = [f"pre_rate_m{k}" for k in range(4, months + 1)] or recent
    cols = list(dict.fromkeys([*recent, *earlier, "prior_year_rate"]))
    x = _candidate_columns(units, candidates.frame, cols)
    return np.column_stack(
        [
            x[recent].mean(axis=1).to_numpy(np.float64),
            x[earlier].mean(axis=1).to_numpy(np.float64),
            x["prior_year_rate"].to_numpy(np.float64),
        ]
    )


@single_blas_thread
def prepare(
    tables,
    config: Config,
    *,
    log: Log = quiet,
    built: tuple[AnalyticPanel, Candidates] | None = None,
) -> Prepared:
    """Analytic panel, comparison candidates, matching and the stacked panel.

    Parameters
    ----------
    tables : RawTables
        Validated contract tables.
    config : Config
        Parameters of the run.
    log : callable, optional
        Receives one line per finished stage.
    built : (AnalyticPanel, Candidates), optional
        The panel and candidates of these tables and parameters, when the data check
        (:attr:`leapresearch.design.readiness.DataCheck.built`) has already built them.

    Returns
    -------
    Prepared
    """
    timings: dict[str, float] = {}
    if built is None:
        t0 = time.perf_counter()
        panel = build_panel(tables, chronic_threshold=config.analysis.chronic_threshold)
        timings["panel"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        candidates = cohort_candidates(
            panel, pool=config.comparison_pool, matching=config.matching, cohorts=config.cohorts
        )
        timings["candidates"] = time.perf_counter() - t0
    else:
        panel, candidates = built
    log(f"panel: {panel.n_students:,} students, {len(panel.monthly):,} student-months")
    log(f"candidates: {len(candidates.frame):,} (stack, student) rows")
    matched = prepare_matched(panel, candidates, config, log=log)
    return dataclasses.replace(matched, timings={**timings, **matched.timings})


@single_blas_thread
def prepare_matched(
    panel: AnalyticPanel,
    candidates: Candidates,
    config: Config,
    *,
    max_rel_time: int | None = None,
    pscore: pd.Series | None = None,
    pscore_start: Mapping[Any, Mapping[str, float]] | None = None,
    pscore_weights: np.ndarray | None = None,
    pscore_plan: PropensityPlan | None = None,
    unit_mass: Callable[[pd.DataFrame], np.ndarray] | None = None,
    log: Log = quiet,
) -> Prepared:
    """Match the candidates and build the stacked panel of the matched units.

    ``max_rel_time`` keeps only months up to that event time (the placebo stops before
    the real first visit); ``pscore`` reuses fitted propensity scores, ``pscore_start``
    starts their fits from earlier coefficients, ``pscore_weights`` weights their rows and
    ``pscore_plan`` reuses their weight-free steps (:func:`run_matching`). ``unit_mass``
    (a Bayesian draw): each matched unit's mass given the unit table; the censoring
    hazard then weights each comparison by its weight in the draw
    (:func:`~leapresearch.design.stacking.mass_weights` of all visited students).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_matching(
            candidates,
            config,
            pscore=pscore,
            pscore_start=pscore_start,
            pscore_weights=pscore_weights,
            pscore_plan=pscore_plan,
        )
    notes = tuple(dict.fromkeys(str(w.message) for w in caught))
    timings["matching"] = time.perf_counter() - t0
    n_t = int(candidates.frame["treated"].sum())
    log(
        f"matching: {len(result.unmatched):,} of {n_t:,} visited students unmatched, "
        f"{len(result.settings.get('matched_outside_caliper', [])):,} matched outside the caliper"
    )
    units = unit_table(result.matched, candidates.frame)
    t0 = time.perf_counter()
    stacked = stacked_panel(panel, units, max_rel_time=max_rel_time)
    timings["stacking"] = time.perf_counter() - t0
    unit_x = unit_covariates(units, candidates, config)
    if config.comparison_pool.not_yet_visited and config.comparison_pool.censoring_weights:
        t0 = time.perf_counter()
        censoring = censoring_weights(
            panel,
            units,
            stacked,
            unit_censoring_info(units, candidates),
            unit_weight=None if unit_mass is None else _draw_weights(units, result, unit_mass),
        )
        stacked = stacked.assign(censoring_weight=censoring.weights)
        timings["censoring_weights"] = time.perf_counter() - t0
        log(
            f"censoring weights: {censoring.n_censored:,} of {censoring.n_at_risk:,} comparison "
            f"months at risk censored, largest weight {censoring.summary()['max_weight']:.2f}"
        )
    return Prepared(
        config=config,
        panel=panel,
        candidates=candidates,
        matching=result,
        units=units,
        attributes=treated_attributes(panel, units),
        stacked=stacked,
        unit_x=unit_x,
        timings=timings,
        notes=notes,
    )


def _draw_weights(
    units: pd.DataFrame, result: MatchResult, unit_mass: Callable[[pd.DataFrame], np.ndarray]
) -> np.ndarray:
    """Every unit's weight in a weighted draw's estimate for all visited students."""
    visited = units.loc[units["treated"] == 1, ["stack", "student"]]
    return mass_weights(units, result.pairs, visited, unit_mass(units))


def comparison_pool_summary(prepared: Prepared) -> pd.DataFrame:
    """The comparison pool in numbers: who the comparisons are and how they are weighted.

    One row per event time from 1 to the window's end: matched comparison units observed
    (``comparison_units``; a student in two stacks counts twice), the share of them that
    are students visited later and not yet censored (``visited_later_share``), and the
    mean and largest inverse-probability-of-censoring weight of the comparison months (1
    without the risk-set pool).
    """
    st = prepared.stacked
    hi = prepared.config.analysis.window[1]
    comp = st.loc[(st["treated"] == 0) & st["rel_time"].between(1, hi)]
    first = first_event_times(prepared.panel.events, prepared.panel.n_students)
    later = first[comp["student"].to_numpy()] < NEVER_VISITED
    w = comp["censoring_weight"] if "censoring_weight" in comp else pd.Series(1.0, comp.index)
    frame = pd.DataFrame(
        {"rel_time": comp["rel_time"].to_numpy(), "later": later, "w": w.to_numpy(np.float64)}
    )
    g = frame.groupby("rel_time", sort=True)
    return pd.DataFrame(
        {
            "comparison_units": g.size(),
            "visited_later_share": g["later"].mean(),
            "mean_censoring_weight": g["w"].mean(),
            "max_censoring_weight": g["w"].max(),
        }
    ).reset_index()


def matching_summary(prepared: Prepared) -> pd.DataFrame:
    """Per cohort: visited students, matched, unmatched (with reasons) and comparisons."""
    ev = prepared.panel.events[["student", "event_time", "cohort"]]
    cohort_of = ev.rename(columns={"event_time": "stack"})
    matched_t = prepared.units.loc[prepared.units["treated"] == 1, ["stack", "student"]]
    matched_t = matched_t.merge(cohort_of[["student", "cohort"]], on="student")
    unmatched = prepared.matching.unmatched[["stack", "student", "reason"]]
    excluded = prepared.candidates.excluded_treated[["student", "reason"]]
    lost = pd.concat([unmatched[["student", "reason"]], excluded], ignore_index=True)
    lost = lost.merge(cohort_of[["student", "cohort"]], on="student")
    pairs = prepared.matching.pairs.merge(
        cohort_of[["student", "cohort"]].rename(columns={"student": "treated_student"}),
        on="treated_student",
    )
    far = prepared.outside_caliper.merge(cohort_of[["student", "cohort"]], on="student")
    rows = []
    for cohort in sorted(cohort_of["cohort"].unique()):
        if prepared.config.cohorts is not None and cohort not in prepared.config.cohorts:
            continue
        lc = lost.loc[lost["cohort"] == cohort]
        rows.append(
            {
                "cohort": cohort,
                "treated": int((cohort_of["cohort"] == cohort).sum()),
                "matched": int((matched_t["cohort"] == cohort).sum()),
                "matched_outside_caliper": int((far["cohort"] == cohort).sum()),
                "unmatched": int(len(lc)),
                "unmatched_no_comparisons": int(
                    (lc["reason"] == "no_comparisons_in_stratum").sum()
                ),
                "unmatched_outside_caliper": int((lc["reason"] == "outside_caliper").sum()),
                "unmatched_not_enrolled_or_no_data": int(
                    lc["reason"]
                    .isin(["not_on_roster_in_event_year", "no_pre_period_attendance"])
                    .sum()
                ),
                "comparisons": int(
                    pairs.loc[pairs["cohort"] == cohort, "comparison_student"].nunique()
                ),
            }
        )
    return pd.DataFrame(rows)


@single_blas_thread
def estimate_balance(prepared: Prepared) -> pd.DataFrame:
    """Balance of every matching covariate (and extra pre-period variables) before/after."""
    return balance_table(
        prepared.candidates.frame,
        prepared.matching,
        covariates=prepared.candidates.covariates,
        extra=prepared.candidates.extra,
    )
