"""The refits of a run: the steps that fit a new propensity model, computed by the workers.

With ``--workers 2`` or a Dask scheduler, :func:`start_refits` sends the slow steps that need
only the matched sample (the rows of ``specifications.csv`` that fit a new propensity
model, :data:`~leapresearch.analysis.specifications.REFIT_SPECS`, one item per row set, and
the steps a run marks ``beside``, one item each) to
:func:`~leapresearch.parallel.start_parallel_map` before the run estimates its other steps;
the run takes them (:meth:`Refits.take`, :func:`specifications_with`) at their place, with
the lines their steps logged. Each item is its name; the work is one picklable function of
the matched sample. Failures are kept per item and raised at the item's step, as one
process raises them, so the tables (notes included) are the same with one process, two or
a cluster.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import pandas as pd

from leapresearch.analysis.base import Log, quiet
from leapresearch.analysis.sample import Prepared
from leapresearch.analysis.specifications import (
    REFIT_SPECS,
    SPECIFICATION_COLUMNS,
    estimate_specifications,
    merge_specification_rows,
    timings_line,
)
from leapresearch.design.matching.separation import (
    Directions,
    remember_directions,
    remembered_directions,
)
from leapresearch.parallel import Started, scheduler_address, start_parallel_map
from leapresearch.threads import release_memory, single_blas_thread

SPECIFICATIONS = "specifications"

ComputeStep = Callable[[str, Prepared, object, Log], pd.DataFrame]
"""``f(step_name, prepared, tables, log)``: one step of a run computed alone (picklable)."""


class RefitError(RuntimeError):
    """A refit failed (or its worker died) for a reason other than its data; names the step."""


@dataclass(frozen=True)
class Refit:
    """One item of the refits: a whole ``step``, or one ``specification`` row set of it."""

    step: str
    specification: str | None = None

    @property
    def label(self) -> str:
        """The step's name, with the specification's if any."""
        return self.step if self.specification is None else f"{self.step} ({self.specification})"


@dataclass(frozen=True)
class Shared:
    """What every refit reads: the matched sample, the roster and visit log, the step runner.

    ``separating``: the separating directions the run's matching found
    (:func:`~leapresearch.design.matching.separation.remembered_directions`). The refits
    fit the propensity model of the same strata on other rows; a worker is another process,
    so it is handed them, and they decide the refits' separated fits where the linear
    program would reach the same decision (the same fits, without the program).
    """

    prepared: Prepared
    tables: object
    compute_step: ComputeStep
    separating: Directions = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """A refit's result (``table``) or its exception (``error``), the lines it logged, its time."""

    table: pd.DataFrame | None
    error: BaseException | None
    lines: tuple[str, ...]
    seconds: float


@single_blas_thread
def compute_refit(shared: Shared, refit: Refit) -> Done:
    """The result of one refit, computed wherever :func:`start_parallel_map` puts it.

    An exception is returned, not raised, so that one failing item neither hides the
    others nor is attributed to them: a ``ValueError`` (the data cannot support the step,
    numpy's ``LinAlgError`` included) as it was raised, for the step's own guard; any
    other as a :class:`RefitError` whose message names the step (it pickles as text).
    """
    lines: list[str] = []
    t0 = time.perf_counter()
    remember_directions(shared.separating)
    table, error = None, None
    try:
        if refit.specification is None:
            table = shared.compute_step(refit.step, shared.prepared, shared.tables, lines.append)
        else:
            table = estimate_specifications(
                shared.prepared, tables=shared.tables, names=[refit.specification]
            )
    except ValueError as exc:
        exc.add_note(f"(in the refit {refit.label})")
        error = exc
    except Exception as exc:  # noqa: BLE001 - raised at the step that takes it
        error = RefitError(f"{refit.label} failed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    release_memory()  # the re-matched samples of one item are not kept for the next
    return Done(table, error, tuple(lines), seconds)


class Refits:
    """The refits of a run, computing since :func:`start_refits`; taken step by step."""

    def __init__(self, items: Sequence[Refit], started: Started[Done]) -> None:
        self.items = tuple(items)
        self._started = started

    def _done(self) -> dict[Refit, Done]:
        try:
            results = self._started.results()
        except Exception as exc:  # a worker died, or a result could not come back
            labels = ", ".join(item.label for item in self.items)
            raise RefitError(
                f"the refits ({labels}) did not finish: {type(exc).__name__}: {exc}; "
                "run with --workers 1 to compute them in this process"
            ) from exc
        return dict(zip(self.items, results, strict=True))

    def take(self, step: str, log: Log) -> pd.DataFrame:
        """The result of the whole step ``step``, its log lines replayed (or its exception)."""
        done = self._done()[Refit(step)]
        for line in done.lines:
            log(line)
        if done.error is not None:
            raise done.error
        return done.table

    def specification_rows(self, log: Log) -> pd.DataFrame:
        """The specification rows refitted, in the order of the items (or the first error)."""
        done = {k: v for k, v in self._done().items() if k.step == SPECIFICATIONS}
        log(timings_line({item.specification: d.seconds for item, d in done.items()}))
        for result in done.values():
            if result.error is not None:
                raise result.error
        tables = [d.table for d in done.values() if len(d.table)]
        if not tables:
            return pd.DataFrame(columns=SPECIFICATION_COLUMNS)
        return pd.concat(tables, ignore_index=True)

    def close(self) -> None:
        """Stop the refits still running (after an error in a step of the run)."""
        self._started.close()


def start_refits(
    prepared: Prepared,
    *,
    tables,
    steps: Sequence[str],
    compute_step: ComputeStep,
    workers: int,
    scheduler: str | None = None,
) -> Refits | None:
    """Start the refits on ``workers`` processes or the Dask ``scheduler`` (None with neither).

    ``steps``: the whole steps to refit (computed by ``compute_step``, a module-level
    function so that it pickles by name), the longest first; then one item per row set of
    :data:`~leapresearch.analysis.specifications.REFIT_SPECS` the parameters list.
    ``tables``: the contract tables; only their roster and visit log are sent (the
    intent-to-treat rows).
    """
    if workers <= 1 and scheduler_address(scheduler) is None:
        return None
    names = [n for n in prepared.config.identification.specifications if n in REFIT_SPECS]
    items = [Refit(step) for step in steps] + [Refit(SPECIFICATIONS, n) for n in names]
    light = None
    if tables is not None:
        light = SimpleNamespace(students=tables.students, leap_visits=tables.leap_visits)
    release_memory()  # the matching's garbage is not handed to the workers
    shared = Shared(prepared, light, compute_step, remembered_directions())
    work = functools.partial(compute_refit, shared)
    return Refits(items, start_parallel_map(work, items, workers=workers, scheduler=scheduler))


def specifications_with(
    prepared: Prepared, refits: Refits | None, *, tables=None, log: Log = quiet
) -> pd.DataFrame:
    """:func:`estimate_specifications`, the rows of ``refits`` computed by the workers."""
    if refits is None:
        return estimate_specifications(prepared, tables=tables, log=log)
    specs: Sequence[str] = ["main", *prepared.config.identification.specifications]
    here = estimate_specifications(
        prepared, tables=tables, log=log, names=[n for n in specs if n not in REFIT_SPECS]
    )
    return merge_specification_rows(here, refits.specification_rows(log), specs)
