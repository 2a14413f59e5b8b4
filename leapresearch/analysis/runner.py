"""The run: the list of its steps, and the one function that computes a step.

Every result that ``leapresearch run`` publishes or a notebook shows is a :class:`Step` of
:data:`STEPS`: its table's name, the public function that computes it alone (what a notebook
passes to ``session.result``) and how a run computes it from what the steps share
(:class:`StepInputs`). :func:`evaluate` runs the steps; :func:`compute` computes one, for a run
or a notebook, so both show the same table. A new analysis is one function and one step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from leapresearch.analysis import long_term
from leapresearch.analysis.base import Log, quiet, try_estimate
from leapresearch.analysis.event_studies import (
    estimate_balanced_sample,
    estimate_event_studies,
    estimate_event_study,
    estimate_subgroup_tests,
    linearmodels_check,
    published_event_study,
)
from leapresearch.analysis.fitting import cluster_level
from leapresearch.analysis.identification import (
    estimate_falsification,
    estimate_pretrend_event_study,
    estimate_pretrend_tests,
    estimate_sensitivity,
    pretrend_fits,
    pretrend_tables,
)
from leapresearch.analysis.procedure import StartedDraws, draws_beside_the_run
from leapresearch.analysis.refits import Refits, specifications_with, start_refits
from leapresearch.analysis.robustness import estimate_naive, estimate_placebo, estimate_robust
from leapresearch.analysis.sample import (
    Prepared,
    comparison_pool_summary,
    estimate_balance,
    matching_summary,
    prepare,
)
from leapresearch.analysis.specifications import estimate_specifications
from leapresearch.analysis.truth import compare_with_truth, estimate_truth_comparison
from leapresearch.config import Config
from leapresearch.data.descriptives import attendance_by_year, visited_by_cohort
from leapresearch.threads import single_blas_thread


@dataclass
class StepInputs:
    """What the steps of one run share, each part computed at most once.

    ``prepared``: the matched sample (:func:`~leapresearch.analysis.sample.prepare`); ``tables``:
    the contract tables, or a function that reads them (called only when a step needs them:
    the intent-to-treat rows of the specifications); ``refits``: the steps the workers
    compute (:func:`~leapresearch.analysis.refits.start_refits`); ``results``: the results so
    far, by step name; ``workers``, ``scheduler``: of the whole-procedure bootstrap
    (:mod:`~leapresearch.analysis.procedure`), as :func:`~leapresearch.parallel.parallel_map`;
    ``procedure``: its draws when the run started them beside its steps (two workers or more).
    """

    prepared: Prepared
    tables: object = None
    log: Log = quiet
    refits: Refits | None = None
    results: dict[str, pd.DataFrame] = field(default_factory=dict)
    workers: int = 1
    scheduler: str | None = None
    procedure: StartedDraws | None = None

    def contract_tables(self):
        """The contract tables (read on first use when given as a function)."""
        if callable(self.tables):
            self.tables = self.tables()
        return self.tables

    @cached_property
    def event_studies(self) -> tuple[pd.DataFrame, dict]:
        """The table and the fit of every group (:func:`estimate_event_studies`), no bootstrap."""
        return estimate_event_studies(self.prepared, within_caliper=True, log=self.log)

    def published_event_study(self) -> pd.DataFrame:
        """``event_study.csv``: :attr:`event_studies` with the whole-procedure bootstrap."""
        parallel = {"workers": self.workers, "scheduler": self.scheduler, "started": self.procedure}
        return published_event_study(self.prepared, self.event_studies, log=self.log, **parallel)

    @cached_property
    def pretrend_fits(self) -> dict:
        """The fit of every group on its untreated rows (:func:`pretrend_fits`)."""
        return pretrend_fits(self.prepared)

    @cached_property
    def pretrend_evidence(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``pretrend_event_study.csv`` and ``pretrend_tests.csv`` (:func:`pretrend_tables`)."""
        return pretrend_tables(self.prepared, self.event_studies[1], self.log, self.pretrend_fits)


@dataclass(frozen=True)
class Step:
    """One result of a run.

    ``function`` computes it from the matched sample alone (what a notebook names); ``compute``
    is how a run computes the same table from the shared :class:`StepInputs`. ``guarded``:
    when the data cannot support the step, the run publishes a one-row note and goes on (a
    check the headline does not rest on); otherwise the run stops. ``beside``: computed by the
    workers of a run with two or a Dask scheduler, while this process computes the others.
    ``optional``: published only when it has rows (the truth comparison: simulated data
    with their truth).
    """

    name: str
    function: Callable[..., pd.DataFrame]
    compute: Callable[[StepInputs], pd.DataFrame] | None = None
    """Default: ``function(inputs.prepared)``."""
    published: bool = True
    guarded: bool = False
    beside: bool = False
    optional: bool = False


NOTEBOOK_ONLY = {"published": False, "guarded": True}
ONLY_WITH_ROWS = {"optional": True, "guarded": True}
BESIDE = {"guarded": True, "beside": True}


def _logged(function: Callable[..., pd.DataFrame]) -> Callable[[StepInputs], pd.DataFrame]:
    """How a run computes a step whose function takes the matched sample and the run's log."""
    return lambda i: function(i.prepared, log=i.log)


def _of_panel(function: Callable[..., pd.DataFrame]) -> Callable[[StepInputs], pd.DataFrame]:
    """How a run computes a step whose function takes the analytic panel."""
    return lambda i: function(i.prepared.panel)


STEPS: tuple[Step, ...] = (
    Step("long_term", long_term.estimate_long_term, _logged(long_term.estimate_long_term)),
    Step("balance", estimate_balance),
    Step("matching_summary", matching_summary),
    Step("naive_pre_post", estimate_naive),
    Step(
        "subgroup_tests",
        estimate_subgroup_tests,
        lambda i: estimate_subgroup_tests(i.prepared, i.event_studies[1]),
    ),
    Step(
        "sensitivity",
        estimate_sensitivity,
        lambda i: estimate_sensitivity(i.prepared, i.event_studies[1], i.pretrend_fits),
        guarded=True,
    ),
    Step("pretrend_event_study", estimate_pretrend_event_study, lambda i: i.pretrend_evidence[0]),
    Step("pretrend_tests", estimate_pretrend_tests, lambda i: i.pretrend_evidence[1]),
    # shown by the notebooks only
    Step("attendance_by_year", attendance_by_year, _of_panel(attendance_by_year), **NOTEBOOK_ONLY),
    Step("visited_by_cohort", visited_by_cohort, _of_panel(visited_by_cohort), **NOTEBOOK_ONLY),
    Step("comparison_pool_summary", comparison_pool_summary, **NOTEBOOK_ONLY),
    Step("balanced_sample", estimate_balanced_sample, **NOTEBOOK_ONLY),
    Step(  # the run's own long-term table is reused; only the switched choices are fitted
        "long_term_alternatives",
        long_term.estimate_long_term_alternatives,
        lambda i: long_term.estimate_long_term_alternatives(
            i.prepared, published=i.results.get("long_term")
        ),
        **NOTEBOOK_ONLY,
    ),
    Step("long_term_coverage", long_term.long_term_coverage, **NOTEBOOK_ONLY),
    # the steps the workers compute come last: this process computes the others meanwhile
    # (the whole steps the longest first, then the specification rows that re-match)
    Step("robust_estimator", estimate_robust, _logged(estimate_robust), **BESIDE),
    Step(
        "specifications",
        estimate_specifications,
        lambda i: specifications_with(i.prepared, i.refits, tables=i.contract_tables(), log=i.log),
        guarded=True,
    ),
    Step("falsification", estimate_falsification, _logged(estimate_falsification), **BESIDE),
    Step("placebo", estimate_placebo, _logged(estimate_placebo), **BESIDE),
    Step("linearmodels_check", linearmodels_check, **BESIDE),
    # last, with what needs the bootstrap's draws (with two workers computed beside the rest)
    Step("event_study", estimate_event_study, lambda i: i.published_event_study()),
    Step("truth_comparison", estimate_truth_comparison, compare_with_truth, **ONLY_WITH_ROWS),
)
"""Every step of a run, in the order a run computes them."""


def step_of(function: Callable[..., pd.DataFrame]) -> Step:
    """The step of :data:`STEPS` whose public function is ``function``."""
    for step in STEPS:
        if step.function is function:
            return step
    names = ", ".join(step.function.__name__ for step in STEPS)
    raise ValueError(f"{getattr(function, '__name__', function)!r} is not a step ({names})")


def compute(step: Step, inputs: StepInputs, *, guarded: bool | None = None) -> pd.DataFrame:
    """The result of ``step`` (``guarded``: as :attr:`Step.guarded` unless given)."""
    run = step.compute or (lambda i: step.function(i.prepared))
    if not (step.guarded if guarded is None else guarded):
        return run(inputs)
    return try_estimate(run, inputs, log=inputs.log, name=step.name)


@dataclass(frozen=True)
class Evaluation:
    """A run's results: ``tables`` published, ``shown`` notebook-only, ``event_studies`` fits."""

    prepared: Prepared
    tables: dict[str, pd.DataFrame]
    event_studies: dict
    shown: dict = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        """The level every fit's errors were clustered by (:func:`cluster_level`)."""
        return cluster_level(self.prepared)


def compute_named(name: str, prepared: Prepared, tables, log: Log) -> pd.DataFrame:
    """Step ``name`` of :data:`STEPS` computed alone from the matched sample (a refit)."""
    step = next(s for s in STEPS if s.name == name)
    return compute(step, StepInputs(prepared, tables=tables, log=log))


@single_blas_thread
def evaluate(
    tables,
    config: Config,
    *,
    log: Log = quiet,
    workers: int = 1,
    scheduler: str | None = None,
    built: tuple | None = None,
    notebook_steps: bool = True,
) -> Evaluation:
    """Run every step of :data:`STEPS` on validated contract tables.

    ``built``: the panel and candidates the data check built (see :func:`prepare`). With
    ``workers >= 2`` or a Dask ``scheduler`` (or ``LEAPRESEARCH_SCHEDULER``), the steps marked
    ``beside`` and the specifications that fit a new propensity model (``REFIT_SPECS``) are
    computed by the workers while this process computes the others (:func:`~leapresearch.
    analysis.refits.start_refits`), and after them the bootstrap's draws; the tables
    are the same either way (``notebook_steps=False``: only the published steps; a notebook
    computes the others when it shows them). An exception names the step it stopped.
    """
    prepared = prepare(tables, config, log=log, built=built)
    beside = [s.name for s in STEPS if s.beside]
    parallel = {"workers": workers, "scheduler": scheduler}
    refits = start_refits(
        prepared, tables=tables, steps=beside, compute_step=compute_named, **parallel
    )
    boot = draws_beside_the_run(prepared, **parallel)  # queued behind the refits
    inputs = StepInputs(prepared, tables, log, refits, procedure=boot, **parallel)
    try:
        for step in [s for s in STEPS if notebook_steps or s.published]:
            try:
                if step.beside and refits is not None:
                    inputs.results[step.name] = refits.take(step.name, log)
                else:
                    inputs.results[step.name] = compute(step, inputs)
            except Exception as exc:
                exc.add_note(f"(in the step {step.name} of the run)")
                raise
    finally:
        for started in (refits, boot):
            if started is not None:
                started.close()  # only still running if a step here failed
    absent = {s.name for s in STEPS if s.optional and inputs.results[s.name].empty}
    published = {s.name for s in STEPS if s.published} - absent
    return Evaluation(
        prepared=prepared,
        tables={k: v for k, v in inputs.results.items() if k in published},
        event_studies=inputs.event_studies[1],
        shown={k: v for k, v in inputs.results.items() if k not in published},
    )


def stored_results(evaluation: Evaluation) -> dict[str, pd.DataFrame]:
    """Step name -> result, for every result a notebook shows (stored for their sessions)."""
    return {**evaluation.tables, **getattr(evaluation, "shown", {})}
