"""Parallel work through existing engines: joblib (loky) on one machine, Dask on a cluster.

Every parallel computation of the package (the refits of a run, the whole-procedure
bootstrap's draws, the Monte Carlo's draws) goes through :func:`parallel_map`. With one
worker it is a plain loop (one BLAS thread); with several it is ``joblib.Parallel`` on the
loky backend (processes, one BLAS thread each); when a Dask scheduler is named (``scheduler=`` or
the environment variable ``LEAPRESEARCH_SCHEDULER``, for example ``tcp://host:8786``) it is
joblib's Dask backend on a ``dask.distributed`` client of that scheduler.

:func:`start_parallel_map` starts the same work and lets the caller go on until it takes the
results (a run computes its refits so while it estimates the other steps).

Results come back in the order of the items, and each item carries everything its
computation depends on (its seed included), so the numbers are the same whatever the number
of workers or the backend.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import joblib
from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")

# loky replaces a worker whose memory grew by more than a few hundred MB over its tasks (the
# re-matchings of a run allocate that much) and says so in a UserWarning from its manager
# thread; the worker's results are kept and the replacement takes the next item, so the
# message only alarms whoever reads the run's terminal
warnings.filterwarnings(
    "ignore",
    message="A worker stopped while some jobs were given to the executor",
    category=UserWarning,
)

SCHEDULER_ENV = "LEAPRESEARCH_SCHEDULER"
"""Environment variable naming a Dask scheduler's address (``tcp://host:8786``)."""


def stop_workers_on_terminate() -> bool:
    """Make ``kill`` (SIGTERM) of this process stop its loky workers too.

    A process killed by SIGTERM dies at once, and the loky workers of its
    :func:`parallel_map` go on: they compute the items already sent to them (a Monte Carlo's
    draws, written into its results folder after the run was stopped) and then stay idle.
    Turned into ``SystemExit``, the signal unwinds through ``joblib.Parallel``, which
    terminates its workers. Installed by the command-line entry points, in the main thread
    and only over the default handler (an embedding program keeps its own); returns
    whether it was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    return True


def _exit_on_terminate(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The Dask scheduler named by ``scheduler`` or by ``LEAPRESEARCH_SCHEDULER`` (or None)."""
    named = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV, "")
    return named.strip() or None


def parallel_map(
    function: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 1,
    scheduler: str | None = None,
) -> list[R]:
    """``[function(item) for item in items]``, computed in parallel, in the items' order.

    Parameters
    ----------
    function
        A function of one item; it must be picklable (a module-level function or a
        ``functools.partial`` of one) when computed by more than one worker.
    items
        The work; each item holds everything its result depends on.
    workers
        Processes on this machine (loky); 1 computes in this process.
    scheduler
        Address of a Dask scheduler; when given (or set in ``LEAPRESEARCH_SCHEDULER``) the
        items are computed on that cluster and ``workers`` is ignored.
    """
    work = list(items)
    address = scheduler_address(scheduler)
    if address is not None:
        from distributed import Client

        with Client(address) as _client, joblib.parallel_config(backend="dask"):
            return list(joblib.Parallel()(joblib.delayed(function)(item) for item in work))
    if workers <= 1 or len(work) <= 1:
        with threadpool_limits(limits=1, user_api="blas"):  # as in a worker: same last bits
            return [function(item) for item in work]
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = joblib.Parallel(n_jobs=min(workers, len(work)))
        return list(parallel(joblib.delayed(function)(item) for item in work))


class Started(Generic[R]):
    """The results of :func:`start_parallel_map`: computing beside the caller until taken."""

    def __init__(self, take: Callable[[], list[R]], stop: Callable[[], None]) -> None:
        self._take = take
        self._stop = stop
        self._results: list[R] | None = None

    def results(self) -> list[R]:
        """Every result, in the order of the items (waits for the workers; computed once).

        An item's exception is raised here, as it was raised in its worker.
        """
        if self._results is None:
            try:
                self._results = self._take()
            finally:
                self.close()
        return self._results

    def close(self) -> None:
        """Stop what is still running (its results are no longer wanted) and free the workers."""
        self._stop()


def _is_loky_shutdown_race(args: threading.ExceptHookArgs) -> bool:
    """Whether a thread died of loky's race when an executor is killed with work queued.

    loky 3.6 (joblib 1.6), shutting an executor down with ``kill_workers=True`` while more
    items are queued than its call queue holds, empties its pending items and then looks
    one up (``KeyError`` in ``_ExecutorManagerThread.add_call_item_to_queue``); the
    workers are killed all the same (tested).
    """
    return args.exc_type is KeyError and type(args.thread).__name__ == "_ExecutorManagerThread"


def _generator_stop(outputs, *also: Callable[[], None]) -> Callable[[], None]:
    def stop() -> None:
        previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            if not _is_loky_shutdown_race(args):
                previous(args)

        threading.excepthook = hook  # joblib's abort joins the executor's manager thread
        try:
            with warnings.catch_warnings():  # the tasks are cancelled on purpose
                warnings.simplefilter("ignore", UserWarning)
                outputs.close()  # joblib aborts the tasks not yet done
        finally:
            threading.excepthook = previous
            for close in also:
                close()

    return stop


def start_parallel_map(
    function: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 1,
    scheduler: str | None = None,
) -> Started[R]:
    """:func:`parallel_map` started now, its results taken later (:meth:`Started.results`).

    With a scheduler, or with ``workers >= 2``, the items are sent at once to the Dask
    cluster or to ``workers`` loky processes (``joblib.Parallel(return_as="generator")``)
    and computed while the caller goes on with other work; otherwise they are computed in
    this process when their results are asked for. The results are those of
    :func:`parallel_map` whatever the way. On loky every item is queued at once
    (``pre_dispatch="all"``), so that work started later on the same workers (a run's
    bootstrap draws after its refits) is computed after all of it.
    """
    work = list(items)
    address = scheduler_address(scheduler)
    calls = (joblib.delayed(function)(item) for item in work)
    if address is not None:
        from distributed import Client

        client = Client(address)
        try:
            with joblib.parallel_config(backend="dask"):
                outputs = joblib.Parallel(return_as="generator")(calls)
        except BaseException:
            client.close()
            raise
        return Started(lambda: list(outputs), _generator_stop(outputs, client.close))
    if workers <= 1 or len(work) <= 1:
        return Started(lambda: parallel_map(function, work, workers=1), lambda: None)
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = joblib.Parallel(
            n_jobs=min(workers, len(work)), return_as="generator", pre_dispatch="all"
        )
        outputs = parallel(calls)
    return Started(lambda: list(outputs), _generator_stop(outputs))
