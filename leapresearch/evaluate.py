"""The evaluation, step by step: one public function per analytic step.

``prepare`` builds the analytic panel, the comparison candidates, the matched sample and
its stacked panel; each ``estimate_*`` function turns a :class:`Prepared` into one tidy
table of the output contract; :func:`evaluate` runs them all. The notebooks call the same
functions one at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leapresearch.config import Config
from leapresearch.data.panel import (
    NEVER_VISITED,
    AnalyticPanel,
    build_panel,
    first_event_times,
)
from leapresearch.design.adjustment import adjusted_outcome
from leapresearch.design.balance import balance_table
from leapresearch.design.censoring import censoring_weights
from leapresearch.design.matching import MatchResult, match, nearest_neighbor_match
from leapresearch.design.pool import (
    Candidates,
    build_candidates,
    cohort_candidates,
    narrower_pool,
    restrict_candidates,
)
from leapresearch.design.stacking import stacked_panel, subgroup_weights, unit_table
from leapresearch.estimation.bootstrap import multiplier_bootstrap
from leapresearch.estimation.event_study import EventStudyResult, event_study
from leapresearch.estimation.falsification import (
    pseudo_events,
    selection_rule,
    wald_terms,
)
from leapresearch.estimation.linear_models import compare_estimators, linearmodels_event_study
from leapresearch.estimation.long_term import (
    ESTIMATE_COLUMNS,
    annual_stacked_panel,
    long_term_table,
)
from leapresearch.estimation.multiple_testing import (
    GroupFit,
    adjust_within_families,
    cluster_influence,
    subgroup_tests,
    with_influence,
)
from leapresearch.estimation.naive import naive_pre_post
from leapresearch.estimation.robust import callaway_santanna
from leapresearch.estimation.sensitivity import sensitivity_table
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
    group_definitions,
    run_by_group,
    treated_attributes,
)
from leapresearch.threads import Beside, release_memory, single_blas_thread

Log = Callable[[str], None]

LONG_TERM_COLUMNS = ["group", "cohort", "school_year", "years_after", "outcome", *ESTIMATE_COLUMNS]
EVENT_STUDY_COLUMNS = ["group", "rel_time", *ESTIMATE_COLUMNS]
BOOTSTRAP_COLUMNS = ["boot_std_error", "band_lower", "band_upper"]
"""Multiplier-bootstrap standard error and simultaneous band of ``event_study.csv``."""
EVENT_STUDY_TABLE_COLUMNS = [
    *EVENT_STUDY_COLUMNS,
    "p_value",
    "p_value_adjusted",
    *BOOTSTRAP_COLUMNS,
]


def _quiet(_: str) -> None:
    return None


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


@single_blas_thread
def run_matching(
    candidates: Candidates, config: Config, *, pscore: pd.Series | None = None
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
    on the same candidates (the specification table's ratio and caliper rows).
    """
    m = config.matching
    exact = ["stack", *m.exact]
    if config.comparison_pool.allow_other_districts:
        exact = [e for e in exact if e != "district"]
    if pscore is None:
        result = match(
            candidates.frame,
            covariates=candidates.covariates,
            exact=tuple(exact),
            ratio=m.ratio,
            caliper=m.caliper,
            replace=m.replace,
            seed=m.seed,
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
    frame = candidates.frame
    flag = (
        frame[["stack", "student"]]
        .merge(far[["stack", "student"]].assign(far=True), on=["stack", "student"], how="left")[
            "far"
        ]
        .fillna(False)
        .to_numpy(bool)
    )
    sub = frame.loc[~frame["treated"].to_numpy() | flag]
    second = nearest_neighbor_match(
        sub,
        result.pscore.loc[sub.index],
        exact=tuple(exact),
        ratio=1,
        caliper=None,
        replace=True,
        seed=m.seed,
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


def unit_censoring_info(units: pd.DataFrame, candidates: Candidates) -> pd.DataFrame:
    """District, grade band and mean pre-period rate of each unit (the censoring model)."""
    pre = [c for c in candidates.covariates if c.startswith("pre_rate_m")]
    x = units[["stack", "student"]].merge(
        candidates.frame[["stack", "student", "district", "grade_band", *pre]],
        on=["stack", "student"],
        how="left",
    )
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
    x = units[["stack", "student"]].merge(
        candidates.frame[["stack", "student", *cols]], on=["stack", "student"], how="left"
    )
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
    log: Log = _quiet,
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
    log: Log = _quiet,
) -> Prepared:
    """Match the candidates and build the stacked panel of the matched units.

    ``max_rel_time`` keeps only months up to that event time (the placebo stops before
    the real first visit); ``pscore`` reuses fitted propensity scores
    (:func:`run_matching`).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_matching(candidates, config, pscore=pscore)
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
        censoring = censoring_weights(panel, units, stacked, unit_censoring_info(units, candidates))
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
    w = weights[panel["unit"].to_numpy()]
    if "censoring_weight" in panel.columns:  # risk-set pool: inverse-probability-of-censoring
        w = w * panel["censoring_weight"].to_numpy(np.float64)
    sub = panel.loc[w > 0].assign(weight=w[w > 0])
    if sub.loc[sub["treated"] == 1, "student"].nunique() < 2:
        return None
    if (sub.loc[sub["treated"] == 1, "rel_time"] == reference).sum() == 0:
        return None
    if sub[cluster_level(prepared)].nunique() < 2:
        return None
    if adjust:
        sub[outcome] = adjusted_outcome(
            sub,
            prepared.unit_x,
            outcome=outcome,
            window=window,
            reference=reference,
        )
    return sub


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
    Returns None when fewer than two visited students remain.
    """
    config = prepared.config
    window = config.analysis.window if window == "config" else window
    reference = config.analysis.reference if reference is None else reference
    sub = group_sample(
        prepared,
        panel,
        weights,
        outcome=outcome,
        window=window,
        reference=reference,
        adjust=config.analysis.regression_adjustment if adjust is None else adjust,
    )
    if sub is None:
        return None
    return estimator(
        sub, outcome=outcome, window=window, reference=reference, cluster=cluster_level(prepared)
    )


@single_blas_thread
def linearmodels_check(prepared: Prepared) -> pd.DataFrame:
    """The headline event study (all visited students) fitted by both estimators.

    The fast in-house estimator and ``linearmodels``' ``AbsorbingLS`` (unit and
    stack-by-month effects absorbed, the same weights and regression-adjusted outcome,
    clustered by the same variable) fit the same rows once each.

    Returns
    -------
    DataFrame
        One row per event time, see
        :func:`~leapresearch.estimation.linear_models.compare_estimators`; the two
        difference columns are rounded to :data:`CHECK_RESOLUTION` percentage points, so
        the table does not show floating-point noise that differs between machines (a
        difference below it prints as zero).
    """
    weights = prepared.units["weight"].to_numpy(np.float64)
    fast = fit_group(prepared, prepared.stacked, weights)
    library = fit_group(prepared, prepared.stacked, weights, estimator=linearmodels_event_study)
    if fast is None or library is None:
        raise ValueError("the headline event study cannot be estimated on these data")
    out = compare_estimators(fast, library)
    for col in ("estimate_difference", "std_error_difference"):
        out[col] = out[col].round(CHECK_DECIMALS) + 0.0
    return out


CHECK_DECIMALS = 9
CHECK_RESOLUTION = 10.0**-CHECK_DECIMALS
"""Resolution (pp) at which :func:`linearmodels_check` reports the estimators' differences."""


def fit_group_with_influence(
    prepared: Prepared, panel: pd.DataFrame, weights: np.ndarray
) -> GroupFit | None:
    """:func:`fit_group` (monthly outcome, parameters' window) plus each cluster's influence.

    The influence (:func:`~leapresearch.estimation.multiple_testing.cluster_influence`)
    gives the joint covariance of different groups' estimates for the subgroup tests.
    """
    config = prepared.config
    window, reference = config.analysis.window, config.analysis.reference
    sub = group_sample(
        prepared,
        panel,
        weights,
        window=window,
        reference=reference,
        adjust=config.analysis.regression_adjustment,
    )
    if sub is None:
        return None
    res = event_study(sub, window=window, reference=reference, cluster=cluster_level(prepared))
    try:
        return with_influence(res, cluster_influence(sub, res))
    except (RuntimeError, np.linalg.LinAlgError) as exc:  # e.g. a near-singular tiny group
        note = f"cluster influence not computed ({exc}): left out of the subgroup tests"
        return with_influence(dataclasses.replace(res, notes=(*res.notes, note)), None)


def band_rel_times(result: EventStudyResult) -> list[int]:
    """Months of the simultaneous band: the post-visit months before the binned end point."""
    if result.window is not None:
        hi = result.window[1]
    else:  # no binning: the last month is a month like the others
        hi = int(result.coefficients.index.max()) + 1
    return [int(r) for r in result.coefficients.index if 0 <= r < hi]


def bootstrap_intervals(result: GroupFit, config: Config) -> pd.DataFrame:
    """Multiplier-bootstrap standard errors, intervals and sup-t band of one group's path.

    Parameters
    ----------
    result : GroupFit
        A group's fit with its cluster influence (see :func:`fit_group_with_influence`).
    config : Config
        ``inference`` (draws, seed, band) and ``analysis.alpha``.

    Returns
    -------
    DataFrame
        ``rel_time, boot_std_error, boot_ci_lower, boot_ci_upper, band_lower,
        band_upper`` for every estimated month (see
        :func:`~leapresearch.estimation.bootstrap.multiplier_bootstrap`); all NaN when the
        fit has no influence. The band covers :func:`band_rel_times` simultaneously with
        probability ``1 - analysis.alpha`` (NaN elsewhere, and everywhere without
        ``inference.band``).
    """
    est = result.coefficients
    if getattr(result, "influence", None) is None:
        cols = ["boot_std_error", "boot_ci_lower", "boot_ci_upper", "band_lower", "band_upper"]
        return pd.DataFrame({"rel_time": est.index.to_numpy(), **dict.fromkeys(cols, np.nan)})
    inf = config.inference
    boot = multiplier_bootstrap(
        result.influence,
        band_rel_times=band_rel_times(result),
        draws=inf.bootstrap_draws,
        alpha=config.analysis.alpha,
        seed=inf.seed,
    )
    out = boot.table(est, alpha=config.analysis.alpha)
    if not inf.band:
        out[["band_lower", "band_upper"]] = np.nan
    return out


def _event_table(result: EventStudyResult, config: Config) -> pd.DataFrame:
    """A fit's rows of an event-study table (reference month left out)."""
    tab = result.table(alpha=config.analysis.alpha)
    return tab.loc[tab["rel_time"] != result.reference, [*EVENT_STUDY_COLUMNS[1:], "p_value"]]


def group_event_table(result: GroupFit, config: Config) -> pd.DataFrame:
    """A group's rows of ``event_study.csv``: :func:`_event_table` and the bootstrap.

    Adds :data:`BOOTSTRAP_COLUMNS` (:func:`bootstrap_intervals`); with
    ``inference.intervals: bootstrap`` the pointwise bootstrap intervals replace the
    analytic ``ci_lower``, ``ci_upper``.
    """
    tab = _event_table(result, config)
    boot = bootstrap_intervals(result, config)
    tab = tab.merge(boot, on="rel_time", how="left", validate="one_to_one")
    if config.inference.intervals == "bootstrap":
        tab["ci_lower"], tab["ci_upper"] = tab["boot_ci_lower"], tab["boot_ci_upper"]
    return tab.drop(columns=["boot_ci_lower", "boot_ci_upper"])


@single_blas_thread
def estimate_event_studies(
    prepared: Prepared,
    *,
    subgroups: tuple[str, ...] | None = None,
    include_all: bool = True,
    log: Log = _quiet,
) -> tuple[pd.DataFrame, dict]:
    """The event study for ``all`` and every subgroup (``event_study.csv``).

    Parameters
    ----------
    prepared : Prepared
        The matched sample.
    subgroups : tuple of str, optional
        Subgroup families to estimate (default: ``config.subgroups``; ``()`` for none).
    include_all : bool
        Estimate the pooled ``all`` group too.
    log : callable
        Stage log.

    Returns
    -------
    table : DataFrame
        ``group, rel_time, estimate, std_error, ci_lower, ci_upper, n_treated,
        n_comparison, p_value, p_value_adjusted, boot_std_error, band_lower,
        band_upper``; the reference month is omitted (its estimate is 0 by definition).
        ``p_value`` tests the estimate against zero (``t(G-1)``); ``p_value_adjusted`` is
        Holm's adjustment within the group's family (all districts, all grade bands with
        the pooled 6-12, ...) at the same month, over every group estimated, published or
        not (each was a test). ``boot_std_error`` is the multiplier-bootstrap standard
        error and ``band_lower, band_upper`` the simultaneous (sup-t) band over the
        post-visit months (:func:`bootstrap_intervals`); ``ci_lower, ci_upper`` are the
        analytic (``t(G-1)``) or the bootstrap (normal) intervals as
        ``inference.intervals`` says. ``std_error`` and ``p_value`` stay analytic.
    results : dict
        Group label -> :class:`~leapresearch.estimation.multiple_testing.GroupFit` (an
        event-study result with the cluster influence of its coefficients).
    """
    config = prepared.config
    results: dict = {}
    units, pairs = prepared.units, prepared.matching.pairs

    def estimate(label: str, treated: pd.DataFrame) -> pd.DataFrame | None:
        if label == GROUP_ALL:
            weights = units["weight"].to_numpy(np.float64)
        else:
            weights = subgroup_weights(units, pairs, treated)
        res = fit_group_with_influence(prepared, prepared.stacked, weights)
        if res is None:
            return None
        results[label] = res
        return group_event_table(res, config)

    families = config.subgroups if subgroups is None else subgroups
    groups = [
        (label, treated)
        for label, treated in group_definitions(prepared.attributes, families)
        if include_all or label != GROUP_ALL
    ]
    table = run_by_group(groups, estimate)
    if table.empty:
        return pd.DataFrame(columns=EVENT_STUDY_TABLE_COLUMNS), results
    table["p_value_adjusted"] = adjust_within_families(
        table, min_treated=config.privacy.min_treated
    )
    log(f"event studies: {len(results)} groups")
    if cluster_level(prepared) != config.analysis.cluster:
        log(
            f"event studies: errors clustered by student, not {config.analysis.cluster}: "
            f"{prepared.units['school'].nunique()} schools in the matched sample, fewer than "
            f"{MIN_SCHOOL_CLUSTERS}"
        )
    return table[EVENT_STUDY_TABLE_COLUMNS], results


def estimate_event_study(prepared: Prepared) -> pd.DataFrame:
    """``event_study.csv``: the event study of ``all`` and of every subgroup, as one table.

    The table of :func:`estimate_event_studies` (default families), without its fits.
    """
    return estimate_event_studies(prepared)[0]


def estimate_subgroup_tests(prepared: Prepared, results: dict | None = None) -> pd.DataFrame:
    """Equality of effects within each subgroup family, and PK-5 vs 6-12 (``subgroup_tests.csv``).

    At each headline month (``analysis.report_rel_times``), for every family of
    ``config.subgroups`` present in ``results``: an F test that the effects of the
    family's groups are all equal, using their joint cluster-robust covariance (see
    :mod:`leapresearch.estimation.multiple_testing`); for grade bands also the contrast
    PK-5 minus 6-12. Groups with fewer than ``privacy.min_treated`` visited students
    (not published) are left out. ``results`` are the fits of
    :func:`estimate_event_studies`; every family is fitted here when it is omitted.
    """
    config = prepared.config
    if results is None:
        _, results = estimate_event_studies(prepared, include_all=False)
    return subgroup_tests(
        results,
        families=config.subgroups,
        rel_times=config.analysis.report_rel_times,
        min_treated=config.privacy.min_treated,
    )


def pretrend_tests(results: dict) -> pd.DataFrame:
    """Joint Wald test that every pre-period coefficient is zero, per group."""
    rows = []
    for label, res in results.items():
        try:
            w = res.pretrend_test()
            stat, df, p_value = w.stat, w.df, w.p_value
        except np.linalg.LinAlgError:
            # A tiny subgroup (a few treated students, so a few clusters) has a singular
            # covariance of its pre-period terms: the joint test is not defined.
            pre = res.coefficients.index.to_numpy() < res.reference
            stat, df, p_value = np.nan, int(pre.sum()), np.nan
        rows.append(
            {
                "group": label,
                "statistic": stat,
                "df": df,
                "p_value": p_value,
                "n_treated": res.n_treated,
            }
        )
    return pd.DataFrame(rows)


@single_blas_thread
def estimate_long_term(prepared: Prepared, *, log: Log = _quiet) -> pd.DataFrame:
    """Difference-in-differences on annual outcomes of later school years (``long_term.csv``).

    For each cohort and each of ``all`` and the grade bands, the matched units of that
    cohort's visited students, annual outcome in pp, reference: the school year before
    the cohort's. Fitted by ``linearmodels`` (``AbsorbingLS``, see
    :func:`~leapresearch.estimation.linear_models.linearmodels_event_study`).
    """
    config = prepared.config
    attrs = prepared.attributes
    units, pairs = prepared.units, prepared.matching.pairs
    rows = []
    for outcome in config.long_term.outcomes:
        annual = annual_stacked_panel(prepared.panel, units, outcome=outcome)
        annual = annual.rename(columns={"y": "outcome"})
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
                if res is None:
                    continue
                tab = long_term_table(res, cohort_year=cohort_year, alpha=config.analysis.alpha)
                rows.append(tab.assign(group=label, cohort=cohort, outcome=outcome))
    log(f"long-term: {len(rows)} fits")
    cols = LONG_TERM_COLUMNS
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.concat(rows, ignore_index=True)[cols]


def estimate_long_term_both(
    prepared: Prepared, *, published: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``long_term.csv`` with the regression adjustment off and on (column ``adjusted``).

    The run publishes the parameter's choice (``long_term.regression_adjustment``); this
    shows the alternative beside it (notebook 07) instead of resting the choice on one
    data set. ``published``, the run's :func:`estimate_long_term` table, is reused for
    the parameter's choice (only the alternative is fitted).
    """
    config = prepared.config
    tables = []
    for adjust in (False, True):
        if published is not None and adjust == config.long_term.regression_adjustment:
            table = published
        else:
            alt = dataclasses.replace(
                prepared, config=_with(config, "long_term", regression_adjustment=adjust)
            )
            table = estimate_long_term(alt)
        tables.append(table.assign(adjusted=adjust))
    out = pd.concat(tables, ignore_index=True)
    return out[["adjusted", *LONG_TERM_COLUMNS]]


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
def estimate_placebo(prepared: Prepared, *, log: Log = _quiet) -> pd.DataFrame:
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
    tab = _event_table(res, config).assign(group=GROUP_ALL, shift_months=shift)
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
def estimate_robust(prepared: Prepared, *, log: Log = _quiet) -> pd.DataFrame:
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


def try_estimate(
    step: Callable[..., pd.DataFrame], prepared: Prepared, *, log: Log = _quiet
) -> pd.DataFrame:
    """Run a robustness step; if the data cannot support it, say so instead of failing.

    The main estimates do not depend on these checks, so a robustness estimator that
    cannot be computed (e.g. no event-month group with a not-yet-visited comparison)
    yields a one-row table whose ``note`` gives the reason, and the log says so.
    """
    takes_log = "log" in inspect.signature(step).parameters
    try:
        return step(prepared, log=log) if takes_log else step(prepared)
    except (ValueError, np.linalg.LinAlgError) as exc:
        log(f"{step.__name__}: not estimable on these data: {exc}")
        return pd.DataFrame({"group": [GROUP_ALL], "note": [f"not estimable: {exc}"]})


def compute_result(
    step: Callable[..., pd.DataFrame],
    prepared,
    *,
    tables: Callable[[], object] | None = None,
) -> pd.DataFrame:
    """``try_estimate(step, prepared)``, given what the step's signature asks for.

    A step whose first parameter is ``panel`` (a descriptive table of
    :mod:`leapresearch.data.descriptives`) is given ``prepared.panel``; a step with a
    ``tables`` parameter (the intent-to-treat rows of the specifications) is also given
    the contract tables, read by ``tables()`` only then. ``leapresearch run`` and a
    notebook's :meth:`~leapresearch.session.Session.result` compute a result through this
    one function.
    """
    parameters = inspect.signature(step).parameters
    call = step
    if next(iter(parameters), None) == "panel":
        call = functools.update_wrapper(lambda prep: step(prep.panel), step)
    elif "tables" in parameters:
        if tables is None:
            raise ValueError(f"{step.__name__} needs the contract tables")
        call = functools.update_wrapper(functools.partial(step, tables=tables()), step)
    return try_estimate(call, prepared)


def notebook_results(prepared: Prepared, tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """Results the notebooks show that are not output tables, by the step that makes each.

    Each is :func:`compute_result` of its step, as a notebook's session computes it:
    :func:`~leapresearch.data.descriptives.attendance_by_year`,
    :func:`~leapresearch.data.descriptives.visited_by_cohort`,
    :func:`comparison_pool_summary`, :func:`estimate_balanced_sample` and
    :func:`estimate_long_term_both` (which reuses ``tables["long_term"]``, the run's own
    choice of the adjustment, and fits only the other).
    """
    from leapresearch.data.descriptives import attendance_by_year, visited_by_cohort

    steps: list[Callable[..., pd.DataFrame]] = [
        attendance_by_year,
        visited_by_cohort,
        comparison_pool_summary,
        estimate_balanced_sample,
    ]
    if "long_term" in tables:
        both = functools.partial(estimate_long_term_both, published=tables["long_term"])
        steps.append(functools.update_wrapper(both, estimate_long_term_both))
    return {step.__name__: compute_result(step, prepared) for step in steps}


@dataclass(frozen=True)
class Evaluation:
    """Every table of the output contract, plus the objects they came from.

    ``shown``: the results only the notebooks show (:func:`notebook_results`).
    """

    prepared: Prepared
    tables: dict[str, pd.DataFrame]
    event_studies: dict
    shown: dict = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        """The level every fit's errors were clustered by (:func:`cluster_level`)."""
        return cluster_level(self.prepared)


@single_blas_thread
def evaluate(
    tables,
    config: Config,
    *,
    log: Log = _quiet,
    workers: int = 1,
    built: tuple[AnalyticPanel, Candidates] | None = None,
) -> Evaluation:
    """Run the whole evaluation on validated contract tables.

    ``built``: the panel and candidates the data check built (see :func:`prepare`).

    With ``workers >= 2`` the specifications that fit a new propensity model
    (:data:`REFIT_SPECS`) and the linearmodels check run in a forked process beside the
    other steps (:func:`refits_beside`); the tables are the same either way.

    Returns
    -------
    Evaluation
        ``tables`` holds ``event_study``, ``long_term``, ``balance``,
        ``matching_summary``, ``naive_pre_post``, ``pretrend_tests``,
        ``subgroup_tests``, ``robust_estimator``, ``placebo``, the identification checks
        (:func:`estimate_identification`: ``sensitivity``, ``pretrend_event_study``,
        ``falsification``, ``specifications``) and ``linearmodels_check``
        (:func:`linearmodels_check`), unsuppressed (suppression is applied when they are
        written); ``shown`` the results only the notebooks show (:func:`notebook_results`).
    """
    prepared = prepare(tables, config, log=log, built=built)
    if workers >= 2:
        release_memory()  # the matching's garbage is not handed to the forked process
    refits = refits_beside(prepared, tables=tables, enabled=workers >= 2)
    try:
        es_table, results = estimate_event_studies(prepared, log=log)
        out = {
            "event_study": es_table,
            "long_term": estimate_long_term(prepared, log=log),
            "balance": estimate_balance(prepared),
            "matching_summary": matching_summary(prepared),
            "naive_pre_post": estimate_naive(prepared),
            "pretrend_tests": pretrend_tests(results),
            "subgroup_tests": estimate_subgroup_tests(prepared, results),
            "robust_estimator": try_estimate(estimate_robust, prepared, log=log),
            "placebo": try_estimate(estimate_placebo, prepared, log=log),
        }
        out.update(
            estimate_identification(
                prepared, results, out["pretrend_tests"], tables=tables, log=log, refits=refits
            )
        )
        out["linearmodels_check"] = (
            try_estimate(linearmodels_check, prepared, log=log)
            if refits is None
            else _taken(refits, "linearmodels_check", log)
        )
    finally:
        if refits is not None:
            refits.close()  # only still running if a step here failed
    shown = notebook_results(prepared, out)
    return Evaluation(prepared=prepared, tables=out, event_studies=results, shown=shown)


def _logged(step: Callable[..., object], *args, **kwargs) -> tuple[object, list[str]]:
    """``step(*args, log=..., **kwargs)`` and the lines it logged (replayed by the caller)."""
    lines: list[str] = []
    return step(*args, log=lines.append, **kwargs), lines


# --------------------------------------------------------------------------------------
# identification checks (issue 11): sensitivity bounds, non-circular pre-trends,
# falsification and specifications
# --------------------------------------------------------------------------------------


def estimate_sensitivity(prepared: Prepared, results: dict | None = None) -> pd.DataFrame:
    """Rambachan-Roth bounds of the headline groups and months (``sensitivity.csv``).

    ``results`` are the fits of :func:`estimate_event_studies` holding the groups of
    ``identification.groups``; those groups are fitted here when it is omitted. See
    :mod:`leapresearch.estimation.sensitivity`.
    """
    config = prepared.config
    ident = config.identification
    if results is None:
        families = tuple(sorted({g.split(":", 1)[0] for g in ident.groups if g != GROUP_ALL}))
        _, results = estimate_event_studies(
            prepared, subgroups=families, include_all=GROUP_ALL in ident.groups
        )
    return sensitivity_table(
        results,
        groups=ident.groups,
        rel_times=config.analysis.report_rel_times,
        mbar=ident.sensitivity_mbar,
        m=ident.sensitivity_m,
        alpha=config.analysis.alpha,
    )


PRETREND_EVENT_STUDY_COLUMNS = ["group", "basis", *EVENT_STUDY_COLUMNS[1:]]


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


def _basis(adjust: bool) -> str:
    return "adjusted" if adjust else "unadjusted"


@single_blas_thread
def estimate_pretrend_evidence(prepared: Prepared) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pre-trends on outcomes the design did not fit.

    The regression adjustment takes out the change the pre-period trajectory predicts,
    and the matching used months -1..-``pre_months``; pre-period coefficients of the
    adjusted outcome in those months are partly fitted to be zero. For each headline
    group this fits the event study on the *unadjusted* outcome beside the adjusted one,
    with the window extended to ``identification.far_pre_months`` (months before the
    matching window; the prior school year's annual rate was matched on, so these months
    are free only in their monthly shape), and tests jointly the months inside the
    matching window and those before it.

    Returns
    -------
    event_study : DataFrame
        ``group, basis, rel_time, estimate, ...`` (``pretrend_event_study.csv``).
    tests : DataFrame
        ``group, basis, months, statistic, df, p_value, n_treated``.
    """
    config = prepared.config
    far_lo, far_hi = config.identification.far_pre_months
    lo, hi = config.analysis.window
    ref = config.analysis.reference
    window = (far_lo - 1, hi)
    tables, tests = [], []
    for label, weights in headline_weights(prepared):
        for adjust in (True, False):
            res = fit_group(prepared, prepared.stacked, weights, window=window, adjust=adjust)
            if res is None:
                continue
            tables.append(_event_table(res, config).assign(group=label, basis=_basis(adjust)))
            spans = [range(far_lo, far_hi + 1)]
            if not adjust:  # the adjusted test on these months is the main one
                spans.insert(0, range(lo, ref))
            for months in spans:
                row = wald_terms(res, list(months))
                tests.append(
                    {"group": label, "basis": _basis(adjust), **row, "n_treated": res.n_treated}
                )
    es = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return es.reindex(columns=PRETREND_EVENT_STUDY_COLUMNS), pd.DataFrame(tests)


PRETREND_TEST_COLUMNS = ["group", "basis", "months", "statistic", "df", "p_value", "n_treated"]


def label_pretrend_tests(tests: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The main pre-trend tests with the outcome basis and the months they use."""
    lo, _ = config.analysis.window
    ref = config.analysis.reference
    out = tests.assign(
        basis=_basis(config.analysis.regression_adjustment), months=f"<={lo}..{ref - 1}"
    )
    return out.reindex(columns=PRETREND_TEST_COLUMNS)


def _pseudo_panel(prepared: Prepared) -> tuple[AnalyticPanel, pd.DataFrame, object]:
    """The panel with fake first visits for never-visited students who had the dip."""
    config = prepared.config
    panel = prepared.panel
    real = panel.events
    if config.cohorts is not None:
        real = real.loc[real["cohort"].isin(config.cohorts)]
    rule = selection_rule(panel, real)
    fake = pseudo_events(
        panel,
        real,
        ~panel.visited_any,
        rule=rule,
        max_students=config.identification.falsification_max_students,
        seed=config.matching.seed,
    )
    if len(fake) < 2:
        raise ValueError("fewer than two never-visited students meet the selection rule")
    fake_events = fake.assign(
        cohort="pseudo", first_visit_location="pseudo", visitor_type="pseudo", visits="pseudo"
    )
    # the pool: never-visited students as in the real design; the real visited students and
    # those with a pseudo-event never serve as comparisons
    excluded = panel.visited_any.copy()
    if config.comparison_pool.include_attempted_only:
        excluded[:] = False
        excluded[panel.events["student"].to_numpy()] = True
    excluded[fake["student"].to_numpy()] = True
    fake_panel = dataclasses.replace(panel, events=fake_events, visited_any=excluded)
    return fake_panel, fake, rule


@single_blas_thread
def estimate_falsification(prepared: Prepared, *, log: Log = _quiet) -> pd.DataFrame:
    """Pseudo-events for never-visited students with the dip that got students picked.

    The selection rule (:func:`leapresearch.estimation.falsification.selection_rule`) is
    inferred from visited students' attendance before their first visit; never-visited
    students who meet it get a fake first visit at the first real event month they do
    (:func:`~leapresearch.estimation.falsification.pseudo_events`), and go through the
    same candidates, matching, stacking, regression adjustment and event study as the
    visited students (``falsification.csv``). No one was visited, so every post-period
    estimate should be zero; a design that leaves the rebound from a dip in its estimates
    shows a positive "effect" here. Unlike the placebo it can fail.
    """
    config = prepared.config
    fake_panel, fake, rule = _pseudo_panel(prepared)
    pool = config.comparison_pool.model_copy(
        update={"include_attempted_only": False, "not_yet_visited": False}
    )
    cand = build_candidates(
        fake_panel,
        pool=pool,
        matching=config.matching,
        stacks=np.unique(fake["event_time"].to_numpy()),
    )
    matched = prepare_matched(fake_panel, cand, config)
    tables = []
    for label, weights in headline_weights(matched):
        res = fit_group(matched, matched.stacked, weights)
        if res is not None:
            tables.append(_event_table(res, config).assign(group=label))
    if not tables:
        raise ValueError("no pseudo-event group could be estimated")
    log(
        f"falsification: {len(fake):,} pseudo-events (recent rate <= {rule.recent:.3f}, "
        f"drop <= {rule.drop:+.3f})"
    )
    out = pd.concat(tables, ignore_index=True)
    out["rule_recent_rate"] = rule.recent
    out["rule_drop"] = rule.drop
    return out[[*EVENT_STUDY_COLUMNS, "rule_recent_rate", "rule_drop"]]


def _guarded(name: str, step: Callable[[], pd.DataFrame], log: Log) -> pd.DataFrame:
    """Run one identification check; if the data cannot support it, a one-row note."""
    try:
        return step()
    except (ValueError, np.linalg.LinAlgError) as exc:
        log(f"{name}: not estimable on these data: {exc}")
        return pd.DataFrame({"group": [GROUP_ALL], "note": [f"not estimable: {exc}"]})


@single_blas_thread
def estimate_identification(
    prepared: Prepared,
    results: dict,
    pretrends: pd.DataFrame,
    *,
    tables=None,
    log: Log = _quiet,
    refits: Beside | None = None,
) -> dict[str, pd.DataFrame]:
    """Every check of the identifying assumption, as tables of the output contract.

    Returns
    -------
    dict
        ``sensitivity`` (:func:`estimate_sensitivity`), ``pretrend_event_study`` and
        ``pretrend_tests`` (the main tests labelled with their basis and months, then
        :func:`estimate_pretrend_evidence`), ``falsification``
        (:func:`estimate_falsification`) and ``specifications``
        (:func:`estimate_specifications`; ``tables``, the contract tables, give its
        intent-to-treat rows; ``refits``, from :func:`refits_beside`, computes the rows of
        :data:`REFIT_SPECS` and the falsification table in another process).
    """
    t0 = time.perf_counter()
    out = {
        "sensitivity": _guarded("sensitivity", lambda: estimate_sensitivity(prepared, results), log)
    }
    out["pretrend_event_study"], out["pretrend_tests"] = _pretrend_tables(prepared, pretrends, log)
    if refits is None:
        out["falsification"] = _falsification_table(prepared, log=log)
    out["specifications"] = _guarded(
        "specifications",
        lambda: _specifications_with(prepared, refits, tables=tables, log=log),
        log,
    )
    if refits is not None:  # computed beside, taken after this process's own steps
        out["falsification"] = _taken(refits, "falsification", log)
    log(f"identification checks: {time.perf_counter() - t0:.1f} s")
    return out


REFIT_SPECS = (
    "not_yet_visited_pool",
    "never_visited_pool",
    "attempted_only_excluded",
    "intent_to_treat",
)
"""Specifications that fit a new propensity model (the slow ones)."""


def refits_beside(prepared: Prepared, *, tables=None, enabled: bool) -> Beside | None:
    """Slow steps computed in a forked process (None unless ``enabled``).

    The rows of :data:`REFIT_SPECS`, the falsification table and
    :func:`linearmodels_check`: they need only the matched sample.
    :func:`estimate_identification` takes the rows and the falsification table (and
    replays their log) after its own steps, and :func:`evaluate` the check.
    """
    if not enabled:
        return None
    return Beside(functools.partial(_steps_beside, prepared, tables=tables), enabled=True)


def _steps_beside(prepared: Prepared, *, tables=None) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each table of :func:`refits_beside` with the lines its step logged."""
    names = [n for n in prepared.config.identification.specifications if n in REFIT_SPECS]
    steps = {
        "specifications": lambda: _logged(
            estimate_specifications, prepared, tables=tables, names=names
        ),
        "linearmodels_check": lambda: _logged(try_estimate, linearmodels_check, prepared),
        "falsification": lambda: _logged(_falsification_table, prepared),
    }
    out = {}
    for name, step in steps.items():
        out[name] = step()
        release_memory()  # the re-matched samples of one step are not kept for the next
    return out


def _falsification_table(prepared: Prepared, *, log: Log = _quiet) -> pd.DataFrame:
    """:func:`estimate_falsification`, or a note when the data cannot support it."""
    return _guarded("falsification", lambda: estimate_falsification(prepared, log=log), log)


def _taken(refits: Beside, name: str, log: Log) -> pd.DataFrame:
    """Table ``name`` computed by ``refits``, its log lines replayed."""
    table, lines = refits.result()[name]
    for line in lines:
        log(line)
    return table


def _specifications_with(
    prepared: Prepared, refits: Beside | None, *, tables=None, log: Log = _quiet
) -> pd.DataFrame:
    """:func:`estimate_specifications`, with the rows of ``refits`` computed beside."""
    if refits is None:
        return estimate_specifications(prepared, tables=tables, log=log)
    specs = ["main", *prepared.config.identification.specifications]
    here = estimate_specifications(
        prepared, tables=tables, log=log, names=[n for n in specs if n not in REFIT_SPECS]
    )
    there = _taken(refits, "specifications", log)
    both = pd.concat([part for part in (here, there) if len(part)] or [here], ignore_index=True)
    rank = both["specification"].map({n: i for i, n in enumerate(specs)})
    order = np.argsort(rank.to_numpy(), kind="stable")  # each part keeps its row order
    return both.iloc[order].reset_index(drop=True)


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


def _with(config: Config, section: str, **update) -> Config:
    return config.model_copy(update={section: getattr(config, section).model_copy(update=update)})


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
        tab = _event_table(res, prepared.config)
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
        new = _with(config, section, **update)
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
    return prepare_matched(panel, cand, new)


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
    log: Log = _quiet,
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
    lo, hi = config.analysis.window
    rows = _spec_rows(prepared, "main") if "main" in names else []
    timings = {}
    for name in (n for n in specs if n in names):
        t0 = time.perf_counter()
        if name == "no_adjustment" and config.analysis.regression_adjustment:
            rows += _spec_rows(prepared, name, adjust=False)
        elif name in ("outside_caliper_drop", "outside_caliper_only"):
            far = prepared.outside_caliper
            treated = prepared.units.loc[prepared.units["treated"] == 1, ["stack", "student"]]
            flag = treated.merge(far.assign(f=True), on=["stack", "student"], how="left")
            is_far = flag["f"].fillna(False).to_numpy(bool)
            keep = treated.loc[is_far if name.endswith("only") else ~is_far]
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
                alt = dataclasses.replace(prepared, config=_with(config, "analysis", cluster=level))
                rows += _spec_rows(alt, name)
        elif name in REMATCHED_SPECS:
            alt = _rematched(prepared, name, tables)
            if alt is not None:
                rows += _spec_rows(alt, name)
            # the re-matched sample is dropped before the next one is built, not beside it
            del alt
            release_memory()
        timings[name] = time.perf_counter() - t0
    log("specifications: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if v >= 0.5))
    if not rows:
        return pd.DataFrame(columns=SPECIFICATION_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    return out[SPECIFICATION_COLUMNS]


def pretrend_evidence(
    prepared: Prepared, pretrends: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``pretrend_event_study`` and the full ``pretrend_tests`` table.

    ``pretrends`` (from :func:`pretrend_tests`, every group, adjusted outcome, main
    window) is labelled with its basis and months, then followed by the tests of
    :func:`estimate_pretrend_evidence` for the headline groups.
    """
    es, extra = estimate_pretrend_evidence(prepared)
    main = label_pretrend_tests(pretrends, prepared.config)
    tests = pd.concat([main, extra], ignore_index=True)[PRETREND_TEST_COLUMNS]
    return es, tests


def _pretrend_tables(
    prepared: Prepared, pretrends: pd.DataFrame, log: Log = _quiet
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`pretrend_evidence`, or a note and the main tests when it cannot be estimated."""
    try:
        return pretrend_evidence(prepared, pretrends)
    except (ValueError, np.linalg.LinAlgError) as exc:
        log(f"pre-trend evidence: not estimable on these data: {exc}")
        note = pd.DataFrame({"group": [GROUP_ALL], "note": [f"not estimable: {exc}"]})
        return note, label_pretrend_tests(pretrends, prepared.config)


def estimate_pretrend_tests(prepared: Prepared) -> pd.DataFrame:
    """``pretrend_tests.csv``: the main pre-trend test of every group, then the further tests.

    The joint tests of :func:`pretrend_tests` on the event studies of every group
    (labelled by :func:`label_pretrend_tests`), followed by the tests of
    :func:`estimate_pretrend_evidence` for the headline groups.
    """
    _, results = estimate_event_studies(prepared)
    return _pretrend_tables(prepared, pretrend_tests(results))[1]


def estimate_pretrend_event_study(prepared: Prepared) -> pd.DataFrame:
    """``pretrend_event_study.csv``: headline groups on adjusted and unadjusted outcomes.

    The event study of :func:`estimate_pretrend_evidence`.
    """
    return estimate_pretrend_evidence(prepared)[0]


BALANCED_COLUMNS = ["group", "sample", *EVENT_STUDY_COLUMNS[1:]]


@single_blas_thread
def estimate_balanced_sample(
    prepared: Prepared, *, months: tuple[int, int] = (-6, 9)
) -> pd.DataFrame:
    """The event study of ``all`` on the full sample and on a sample balanced in event time.

    The visited students behind each month change (students leave the district or the
    data end), so ``beta_r`` of the full sample mixes effects and composition. The
    balanced version keeps only visited students enrolled in every month of ``months``
    (with their matched comparisons, re-weighted) and only those months, so every
    coefficient describes the same visited students.

    Returns
    -------
    DataFrame
        ``group, sample`` (``full`` / ``balanced``), ``rel_time``, the estimate columns.
    """
    config = prepared.config
    lo, hi = months
    st = prepared.stacked
    span = st.loc[(st["treated"] == 1) & st["rel_time"].between(lo, hi)]
    n_months = span.groupby("unit")["rel_time"].nunique()
    full_units = n_months.index[n_months == hi - lo + 1]
    keep = prepared.units.loc[prepared.units["unit"].isin(full_units), ["stack", "student"]]
    if len(keep) < 2:
        raise ValueError(f"fewer than two visited students are enrolled in every month {months}")
    weights = subgroup_weights(prepared.units, prepared.matching.pairs, keep)
    tables = []
    full = fit_group(prepared, st, prepared.units["weight"].to_numpy(np.float64))
    tables.append(_event_table(full, config).assign(sample="full"))
    window = st.loc[st["rel_time"].between(lo, hi)]
    bal = fit_group(prepared, window, weights, window=None)
    if bal is not None:
        tables.append(_event_table(bal, config).assign(sample="balanced"))
    out = pd.concat(tables, ignore_index=True).assign(group=GROUP_ALL)
    out = out.loc[out["rel_time"].between(lo, hi)]
    return out[BALANCED_COLUMNS].reset_index(drop=True)
