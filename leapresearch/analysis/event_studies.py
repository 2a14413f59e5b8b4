"""The event studies and their inference (notebooks 03 to 05).

``event_study.csv``, ``subgroup_tests.csv``, the main pre-trend tests, the balanced-sample
comparison and the check of the fast estimator against ``linearmodels``.

Every group (all visited students, grade bands, cohorts, the subgroup families) is fitted by
:func:`estimate_event_studies`, with multiplier-bootstrap errors and a simultaneous band
(:func:`bootstrap_intervals`) and Holm's adjustment within each family.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd

from leapresearch.analysis.base import (
    EVENT_STUDY_COLUMNS,
    EVENT_STUDY_TABLE_COLUMNS,
    PROCEDURE_COLUMNS,
    Log,
    quiet,
)
from leapresearch.analysis.fitting import (
    MIN_SCHOOL_CLUSTERS,
    adjustment_kinds,
    band_rel_times,
    cluster_level,
    event_table,
    fit_group,
    fit_group_with_influence,
)
from leapresearch.analysis.procedure import StartedDraws, procedure_table
from leapresearch.analysis.sample import Prepared
from leapresearch.config import Config
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.bootstrap import multiplier_bootstrap
from leapresearch.estimation.linear_models import compare_estimators, linearmodels_event_study
from leapresearch.estimation.multiple_testing import (
    INFERENCE_F,
    INFERENCE_WILD,
    GroupFit,
    adjust_within_families,
    joint_moments,
    subgroup_tests,
    wild_p_value,
)
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
    GROUP_WITHIN_CALIPER,
    group_definitions,
    run_by_group,
)
from leapresearch.threads import single_blas_thread


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


def group_event_table(result: GroupFit, config: Config) -> pd.DataFrame:
    """A group's rows of ``event_study.csv``: :func:`_event_table` and the bootstrap.

    Adds :data:`BOOTSTRAP_COLUMNS` (:func:`bootstrap_intervals`); with
    ``inference.intervals: bootstrap`` the pointwise bootstrap intervals replace the
    analytic ``ci_lower``, ``ci_upper``. ``adjustment`` says which slopes adjusted each
    month's outcome (:func:`~leapresearch.analysis.fitting.adjustment_kinds`): the group's
    own, the whole matched sample's (too few comparison units of its own), or none (the
    estimate then rests on the matches alone).
    """
    tab = event_table(result, config)
    tab["adjustment"] = adjustment_kinds(result, tab["rel_time"])
    boot = bootstrap_intervals(result, config)
    tab = tab.merge(boot, on="rel_time", how="left", validate="one_to_one")
    if config.inference.intervals == "bootstrap":
        tab["ci_lower"], tab["ci_upper"] = tab["boot_ci_lower"], tab["boot_ci_upper"]
    return tab.drop(columns=["boot_ci_lower", "boot_ci_upper"])


def _event_study_groups(
    prepared: Prepared, subgroups: tuple[str, ...] | None, include_all: bool, within: bool
) -> list[tuple[str, pd.DataFrame]]:
    """The groups of :func:`estimate_event_studies`: label and visited students, in order."""
    families = prepared.config.subgroups if subgroups is None else subgroups
    groups = [
        (label, treated)
        for label, treated in group_definitions(prepared.attributes, families)
        if include_all or label != GROUP_ALL
    ]
    caliper = prepared.caliper_split()[0] if within else ()
    if len(caliper):
        groups.insert(int(include_all), (GROUP_WITHIN_CALIPER, caliper))
    return groups


@single_blas_thread
def estimate_event_studies(
    prepared: Prepared,
    *,
    subgroups: tuple[str, ...] | None = None,
    include_all: bool = True,
    within_caliper: bool = False,
    procedure: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    influence_if: Callable | None = None,
    log: Log = quiet,
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
    within_caliper : bool
        Estimate the group ``within_caliper`` too (``event_study.csv`` has it): the
        visited students with at least one comparison inside the caliper, with their own
        comparisons (:meth:`~leapresearch.analysis.sample.Prepared.caliper_split`); the
        effect on those students, leaving out the ones matched to their nearest comparison
        outside the caliper. A family of one (its ``p_value_adjusted`` is its
        ``p_value``); no other row changes, and its fit is not among ``results`` (no
        pre-trend test, subgroup test or bound is computed for it).
    procedure, workers, scheduler
        Fill the whole-procedure bootstrap's columns (:func:`with_procedure`), with
        ``workers`` processes or on the Dask ``scheduler`` (as
        :func:`~leapresearch.parallel.parallel_map`).
    influence_if : callable, optional
        Compute a fit's cluster influence only when ``influence_if(label, fit)`` is true
        (:func:`~leapresearch.analysis.fitting.fit_group_with_influence`; the others have
        no bootstrap columns and no wild-bootstrap moments); default every fit.
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
        ``inference.intervals`` says. ``std_error`` and ``p_value`` stay analytic. Both
        hold the propensity score, matches, censoring weights and adjustment slopes fixed
        (conditional on the first steps); ``procedure_std_error``, ``procedure_ci_lower``,
        ``procedure_ci_upper``, ``procedure_band_lower``, ``procedure_band_upper`` re-run
        them in every draw (``procedure``).
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
        only_if = None if influence_if is None else functools.partial(influence_if, label)
        res = fit_group_with_influence(prepared, prepared.stacked, weights, influence_if=only_if)
        if res is None:
            return None
        results[label] = res
        return group_event_table(res, config)

    groups = _event_study_groups(prepared, subgroups, include_all, within_caliper)
    table = run_by_group(groups, estimate)
    results.pop(GROUP_WITHIN_CALIPER, None)
    if table.empty:
        return pd.DataFrame(columns=EVENT_STUDY_TABLE_COLUMNS), results
    table["p_value_adjusted"] = adjust_within_families(
        table, min_treated=config.privacy.min_treated
    )
    log(f"event studies: {len(results)} groups")
    table = with_procedure(
        table, prepared, results, procedure=procedure, workers=workers, scheduler=scheduler, log=log
    )
    if cluster_level(prepared) != config.analysis.cluster:
        log(
            f"event studies: errors clustered by student, not {config.analysis.cluster}: "
            f"{prepared.units['school'].nunique()} schools in the matched sample, fewer than "
            f"{MIN_SCHOOL_CLUSTERS}"
        )
    return table[EVENT_STUDY_TABLE_COLUMNS], results


def with_procedure(
    table: pd.DataFrame,
    prepared: Prepared,
    results: dict,
    *,
    procedure: bool,
    workers: int = 1,
    scheduler: str | None = None,
    log: Log = quiet,
    started: StartedDraws | None = None,
) -> pd.DataFrame:
    """``table`` with :data:`~leapresearch.analysis.base.PROCEDURE_COLUMNS`.

    With ``procedure``, those of the headline groups (all, each grade band, 6-12) come from
    the whole-procedure bootstrap (:func:`~leapresearch.analysis.procedure.procedure_table`,
    ``inference.procedure_draws`` draws, ``workers`` processes: the numbers do not depend
    on it); every other row, and every row without ``procedure``, has them empty.
    ``started``: the bootstrap's draws, started earlier
    (:func:`~leapresearch.analysis.procedure.start_procedure_draws`).
    """
    table = table.drop(columns=list(PROCEDURE_COLUMNS), errors="ignore")
    if not procedure:
        return table.assign(**dict.fromkeys(PROCEDURE_COLUMNS, np.nan))
    boot = procedure_table(
        prepared, results, workers=workers, scheduler=scheduler, log=log, started=started
    )
    merged = table.merge(boot, on=["group", "rel_time"], how="left", validate="one_to_one")
    # A group with a post-visit month of the window that is not estimated or not published
    # (fewer than privacy.min_treated visited students) is too small for its re-matched
    # draws to be stable (a near-singular adjustment's last digits follow the BLAS kernel):
    # no whole-procedure number for it rather than a fragile one.
    config = prepared.config
    post = merged["rel_time"].between(0, config.analysis.window[1] - 1)
    small = merged["estimate"].isna() | (merged["n_treated"] < config.privacy.min_treated)
    empty = merged.loc[post & small, "group"].unique()
    merged.loc[merged["group"].isin(empty), list(PROCEDURE_COLUMNS)] = np.nan
    return merged


def published_event_study(
    prepared: Prepared,
    fitted: tuple[pd.DataFrame, dict],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    log: Log = quiet,
    started: StartedDraws | None = None,
) -> pd.DataFrame:
    """``event_study.csv`` from the fits of :func:`estimate_event_studies` without the bootstrap.

    ``fitted`` is that function's ``(table, results)``; the whole-procedure columns are added
    here (:func:`with_procedure`), so the steps that need only the fits (subgroup tests,
    pre-trends, bounds) do not pay for the bootstrap's draws. ``started``: its draws,
    started earlier (a run's).
    """
    table, results = fitted
    parallel = {"workers": workers, "scheduler": scheduler, "started": started}
    return with_procedure(table, prepared, results, procedure=True, log=log, **parallel)


def estimate_event_study(prepared: Prepared) -> pd.DataFrame:
    """``event_study.csv``: the event study of ``all`` and of every subgroup, as one table.

    The table of :func:`estimate_event_studies` (default families, ``within_caliper`` and
    the whole-procedure bootstrap), without its fits.
    """
    return estimate_event_studies(prepared, within_caliper=True, procedure=True)[0]


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
        settings=config.inference.wild_settings(),
    )


def pretrend_tests(results: dict, config: Config | None = None) -> pd.DataFrame:
    """Joint Wald test that every pre-period coefficient is zero, per group.

    ``F = W / q`` against ``F(q, G - 1)``; for a group with fewer than
    ``inference.few_clusters`` clusters the p-value is that of the restricted wild cluster
    bootstrap (:func:`~leapresearch.estimation.multiple_testing.wild_p_value`; needs the
    fit's cluster moments and ``config``). A test the clusters cannot support (more terms
    than ``G - 1``, or a singular covariance) has no statistic and says why in
    ``not_testable``. ``inference`` names the reference distribution, ``clusters`` is ``G``.
    """
    settings = config.inference.wild_settings() if config is not None else None
    rows = []
    for label, res in results.items():
        pre = res.coefficients.index.to_numpy() < res.reference
        row = {
            "group": label,
            "statistic": np.nan,
            "df": int(pre.sum()),
            "p_value": np.nan,
            "inference": "",
            "clusters": int(res.n_clusters),
            "not_testable": "",
            "n_treated": res.n_treated,
        }
        try:
            w = res.pretrend_test()
        except (np.linalg.LinAlgError, ValueError) as exc:
            # A tiny subgroup (a few treated students, so a few clusters) has a singular
            # covariance of its pre-period terms: the joint test is not defined.
            row["not_testable"] = str(exc)
            rows.append(row)
            continue
        row.update(statistic=w.stat, df=w.df, p_value=w.p_value, inference=INFERENCE_F)
        moments = getattr(res, "moments", None)
        if settings is not None and res.n_clusters < settings.few_clusters and moments:
            joint = joint_moments({label: res}, [label])
            r = np.eye(pre.size)[pre]
            what = f"pre-trend {label}: {list(w.terms)}"
            row["p_value"] = wild_p_value(
                joint, r, wald=w.wald, settings=settings, description=what
            )
            row["inference"] = INFERENCE_WILD
        rows.append(row)
    return pd.DataFrame(rows)


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
    tables.append(event_table(full, config).assign(sample="full"))
    window = st.loc[st["rel_time"].between(lo, hi)]
    bal = fit_group(prepared, window, weights, window=None)
    if bal is not None:
        tables.append(event_table(bal, config).assign(sample="balanced"))
    out = pd.concat(tables, ignore_index=True).assign(group=GROUP_ALL)
    out = out.loc[out["rel_time"].between(lo, hi)]
    return out[BALANCED_COLUMNS].reset_index(drop=True)
