"""Checks of the identifying assumption (notebooks 03 and 07).

Rambachan-Roth sensitivity bounds (``sensitivity.csv``), pre-trends on outcomes the design
did not fit (``pretrend_event_study.csv``, ``pretrend_tests.csv``) and the falsification on
never-visited students with the same dip (``falsification.csv``).

The pre-trend tests are fitted on the untreated rows only (:func:`untreated_rows`, as the
test of parallel trends of Borusyak, Jaravel and Spiess 2024): in the stacked regression a
visited student's unit effect is shared by its rows before and after the visit, and the
panel is unbalanced (students enrol and leave, stacks near the ends of the data lose
months), so effects that differ across students moved the pre-period coefficients of the
full fit (the adjusted months -11 and <=-12 by -1.1 and -0.4 pp at four times the demo's
size, with pre-visit data and matches unchanged; ``validation/README.md``) and the tests
rejected designs that work. The sensitivity bounds take their pre-period trend from the same
untreated-rows fits (:func:`estimate_sensitivity`).

The specifications (``specifications.csv``) are in
:mod:`leapresearch.analysis.specifications`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from leapresearch.analysis.base import EVENT_STUDY_COLUMNS, Log, not_estimable, quiet
from leapresearch.analysis.event_studies import estimate_event_studies, pretrend_tests
from leapresearch.analysis.fitting import event_table, fit_group, headline_weights
from leapresearch.analysis.sample import Prepared, prepare_matched
from leapresearch.config import Config
from leapresearch.data.panel import (
    AnalyticPanel,
)
from leapresearch.design.pool import (
    build_candidates,
)
from leapresearch.estimation.falsification import (
    mean_of_terms,
    pseudo_events,
    selection_rule,
    wald_terms,
)
from leapresearch.estimation.multiple_testing import INFERENCE_F
from leapresearch.estimation.sensitivity import sensitivity_table
from leapresearch.estimation.subgroups import (
    GROUP_ALL,
)
from leapresearch.threads import single_blas_thread


def estimate_sensitivity(
    prepared: Prepared, results: dict | None = None, pretrends: dict | None = None
) -> pd.DataFrame:
    """Rambachan-Roth bounds of the headline groups and months (``sensitivity.csv``).

    The post-period coefficients are each group's event study; the pre-period ones, which
    bound the trend, its fit on the untreated rows (:func:`pretrend_fits`; see the module
    docstring), with the joint covariance of the two fits from their cluster influences.
    ``results`` are the fits of :func:`estimate_event_studies` and ``pretrends`` those of
    :func:`pretrend_fits`, each holding the groups of ``identification.groups`` with their
    influence; those groups are fitted here when omitted. See
    :mod:`leapresearch.estimation.sensitivity`.
    """
    config = prepared.config
    ident = config.identification
    families = tuple(sorted({g.split(":", 1)[0] for g in ident.groups if g != GROUP_ALL}))
    if results is None:
        _, results = estimate_event_studies(
            prepared, subgroups=families, include_all=GROUP_ALL in ident.groups
        )
    if pretrends is None:
        pretrends = pretrend_fits(prepared, subgroups=families)
    return sensitivity_table(
        results,
        groups=ident.groups,
        rel_times=config.analysis.report_rel_times,
        mbar=ident.sensitivity_mbar,
        m=ident.sensitivity_m,
        alpha=config.analysis.alpha,
        pretrends=pretrends,
    )


PRETREND_EVENT_STUDY_COLUMNS = ["group", "basis", *EVENT_STUDY_COLUMNS[1:]]


def _basis(adjust: bool) -> str:
    return "adjusted" if adjust else "unadjusted"


def untreated_rows(panel: pd.DataFrame, reference: int) -> pd.DataFrame:
    r"""The rows of the stacked panel whose outcome is untreated: what a pre-trend test may use.

    Every comparison row (a comparison leaves its stacks before its own first visit) and
    the visited students' rows up to the reference month; rows after it (the visit and,
    when the reference is earlier than -1, the months of anticipation) are left out.

    Notes
    -----
    The pre-trend fit is the stacked event study of :mod:`leapresearch.estimation.event_study`
    on these rows,

    .. math::

        y_{ist} = \alpha_{is} + \gamma_{st}
        + \sum_{r < \text{ref}} \beta_r \, \text{Treated}_i \, 1[\text{rel\_time}_{st} = r]
        + \varepsilon_{ist}, \qquad \text{rel\_time}_{st} \le \text{ref for visited rows},

    and the test is :math:`\beta_r = 0` for every :math:`r`. Under parallel trends it holds
    whatever the effects after the visit are, because no post-visit outcome enters the fit
    (the test of parallel trends of Borusyak, Jaravel and Spiess 2024). In the full fit the
    visited student's unit effect :math:`\alpha_{is}` also averages its post-visit rows: in
    an unbalanced panel, effects that differ across students then reach the pre-period
    coefficients.
    """
    keep = (panel["treated"].to_numpy() == 0) | (panel["rel_time"].to_numpy() <= reference)
    return panel.loc[keep]


def pretrend_sample(prepared: Prepared) -> Prepared:
    """``prepared`` with its stacked panel cut to :func:`untreated_rows` (the pre-trend fits)."""
    reference = prepared.config.analysis.reference
    return dataclasses.replace(prepared, stacked=untreated_rows(prepared.stacked, reference))


def pretrend_fits(prepared: Prepared, *, subgroups: tuple[str, ...] | None = None) -> dict:
    """The pre-trend fit of every group: the event study on :func:`untreated_rows`.

    The groups of :func:`~leapresearch.analysis.event_studies.estimate_event_studies`
    (``subgroups``: its families; default ``config.subgroups``); the cluster influence and
    moments only for the groups whose results read them: those with fewer than
    ``inference.few_clusters`` clusters, whose tests take the wild cluster bootstrap
    (:func:`~leapresearch.analysis.event_studies.pretrend_tests`), and the headline groups
    of ``identification.groups``, whose sensitivity bounds take the joint covariance with
    their event study (:func:`estimate_sensitivity`).
    """
    config = prepared.config
    few, headline = config.inference.few_clusters, set(config.identification.groups)
    return estimate_event_studies(
        pretrend_sample(prepared),
        subgroups=subgroups,
        influence_if=lambda label, res: label in headline or res.n_clusters < few,
    )[1]


@single_blas_thread
def estimate_pretrend_evidence(prepared: Prepared) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pre-trends on outcomes the design did not fit, from the untreated rows.

    Every fit is on :func:`untreated_rows` (no post-visit outcome enters it). The
    regression adjustment takes out the change the pre-period trajectory predicts,
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
    rows = untreated_rows(prepared.stacked, ref)
    tables, tests = [], []
    for label, weights in headline_weights(prepared):
        for adjust in (True, False):
            res = fit_group(prepared, rows, weights, window=window, adjust=adjust)
            if res is None:
                continue
            tables.append(event_table(res, config).assign(group=label, basis=_basis(adjust)))
            spans = [range(far_lo, far_hi + 1)]
            if not adjust:  # the adjusted test on these months is the main one
                spans.insert(0, range(lo, ref))
            for months in spans:
                row = wald_terms(res, list(months))
                row["inference"] = INFERENCE_F if not row["not_testable"] else ""
                row["clusters"] = int(res.n_clusters)
                tests.append(
                    {"group": label, "basis": _basis(adjust), **row, "n_treated": res.n_treated}
                )
    es = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return es.reindex(columns=PRETREND_EVENT_STUDY_COLUMNS), pd.DataFrame(tests)


PRETREND_TEST_COLUMNS = [
    "group",
    "basis",
    "months",
    "statistic",
    "df",
    "p_value",
    "inference",
    "clusters",
    "not_testable",
    "n_treated",
]


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


FALSIFICATION_COLUMNS = [
    "group",
    "term",
    "rel_time",
    "months",
    *EVENT_STUDY_COLUMNS[2:],
    "statistic",
    "df",
    "p_value",
    "rule_recent_rate",
    "rule_drop",
]


def _post_summary(res, config: Config) -> dict:
    """The ``post_months`` row: mean pseudo-effect over the post months and their joint test."""
    post = [int(r) for r in res.coefficients.index if int(r) >= 0]
    mean = mean_of_terms(res, post, alpha=config.analysis.alpha)
    wald = wald_terms(res, post)
    return {
        "term": "post_months",
        "months": wald["months"],
        **mean,
        "n_treated": res.n_treated,
        "n_comparison": res.n_comparison,
        "statistic": wald["statistic"],
        "df": wald["df"],
        "p_value": wald["p_value"],
    }


@single_blas_thread
def estimate_falsification(prepared: Prepared, *, log: Log = quiet) -> pd.DataFrame:
    """Pseudo-events for never-visited students with the dip that got students picked.

    The selection rule (:func:`leapresearch.estimation.falsification.selection_rule`) is
    inferred from visited students' attendance before their first visit; never-visited
    students who meet it get a fake first visit at the first real event month they do
    (:func:`~leapresearch.estimation.falsification.pseudo_events`: all of them, or the
    ``identification.falsification_max_students`` with the smallest hash of their own
    data, so the sample does not depend on how ids are spelled or rows ordered), and go
    through the same candidates, matching, stacking, regression adjustment and event
    study as the visited students. No one was visited, so every post-period estimate
    should be zero; a design that leaves the rebound from a dip in its estimates shows an
    "effect" here. Unlike a placebo inside the matching window it can fail.

    Returns
    -------
    DataFrame
        ``falsification.csv``, by headline group: rows with ``term == "month"``, one per
        event month (``rel_time``; the event-study columns; ``statistic``, ``df``,
        ``p_value`` empty), then one ``term == "post_months"`` row (``rel_time`` empty,
        ``months`` the post months ``"0..hi"``): ``estimate`` the mean pseudo-effect over
        the post months, ``std_error`` and the interval from the fit's covariance
        (``a'Va``), ``statistic``, ``df``, ``p_value`` the joint Wald test that every post
        month is zero (``F(q, G - 1)``), ``n_treated`` / ``n_comparison`` the students of
        the fit. ``rule_recent_rate`` and ``rule_drop`` (the selection rule) repeat on
        every row.
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
        if res is None:
            continue
        months = event_table(res, config).drop(columns="p_value").assign(term="month")
        summary = pd.DataFrame([_post_summary(res, config)])
        tables.append(pd.concat([months, summary], ignore_index=True).assign(group=label))
    if not tables:
        raise ValueError("no pseudo-event group could be estimated")
    log(
        f"falsification: {len(fake):,} pseudo-events (recent rate <= {rule.recent:.3f}, "
        f"drop <= {rule.drop:+.3f})"
    )
    out = pd.concat(tables, ignore_index=True)
    out["rel_time"] = out["rel_time"].astype("Int64")
    out["df"] = out["df"].astype("Int64")
    out["rule_recent_rate"] = rule.recent
    out["rule_drop"] = rule.drop
    return out.reindex(columns=FALSIFICATION_COLUMNS)


def pretrend_evidence(
    prepared: Prepared, pretrends: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``pretrend_event_study`` and the full ``pretrend_tests`` table.

    ``pretrends`` (from :func:`pretrend_tests` on :func:`pretrend_fits`: every group,
    adjusted outcome, main window) is labelled with its basis and months, then followed by
    the tests of :func:`estimate_pretrend_evidence` for the headline groups.
    """
    es, extra = estimate_pretrend_evidence(prepared)
    main = label_pretrend_tests(pretrends, prepared.config)
    tests = pd.concat([main, extra], ignore_index=True)[PRETREND_TEST_COLUMNS]
    return es, tests


def pretrend_tables(
    prepared: Prepared, fits: dict | None = None, log: Log = quiet, pretrends: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`pretrend_evidence`, or a note and the main tests when it cannot be estimated.

    The main tests are those of every group's pre-trend fit (``pretrends``, from
    :func:`pretrend_fits`, fitted here when omitted; with the few-cluster settings of
    ``prepared.config``). ``fits``: the event study of every group
    (:func:`~leapresearch.analysis.event_studies.estimate_event_studies`; fitted here when
    omitted), whose numbers of visited students are the tests' ``n_treated``: a group's
    test speaks for them, though only those with months before the visit enter its fit
    (the pre-trend fit's own count where a group has no event study).
    """
    if fits is None:
        fits = estimate_event_studies(prepared)[1]
    if pretrends is None:
        pretrends = pretrend_fits(prepared)
    pretrends = pretrend_tests(pretrends, prepared.config)
    try:
        es, tests = pretrend_evidence(prepared, pretrends)
    except (ValueError, np.linalg.LinAlgError) as exc:
        log(f"pre-trend evidence: not estimable on these data: {exc}")
        es, tests = not_estimable(exc), label_pretrend_tests(pretrends, prepared.config)
    visited = tests["group"].map({label: int(res.n_treated) for label, res in fits.items()})
    tests["n_treated"] = visited.fillna(tests["n_treated"]).astype(np.int64)
    return es, tests


def estimate_pretrend_tests(prepared: Prepared) -> pd.DataFrame:
    """``pretrend_tests.csv``: the main pre-trend test of every group, then the further tests.

    The joint tests of :func:`pretrend_tests` on the pre-trend fit of every group
    (:func:`pretrend_fits`, labelled by :func:`label_pretrend_tests`), followed by the tests
    of :func:`estimate_pretrend_evidence` for the headline groups; ``n_treated`` is each
    group's visited students in its event study (:func:`pretrend_tables`).
    """
    return pretrend_tables(prepared)[1]


def estimate_pretrend_event_study(prepared: Prepared) -> pd.DataFrame:
    """``pretrend_event_study.csv``: headline groups on adjusted and unadjusted outcomes.

    The event study of :func:`estimate_pretrend_evidence` (pre-visit months only).
    """
    return estimate_pretrend_evidence(prepared)[0]
