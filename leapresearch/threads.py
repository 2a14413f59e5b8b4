"""One BLAS thread for the analytic steps, and one step computed beside them.

The matching fits many small logit models. With OpenBLAS's default threading, each small
solve may spin up threads that fight for the cores (measured here: 12.9 s against 1.6 s for
the same matching on two busy cores), and threaded reductions can change the last bits of
a result between runs. The analytic entry points therefore run with a single BLAS thread;
the work is already vectorised, so nothing is lost on a laptop.

Parallelism comes instead from whole steps: :class:`Beside` computes one step (the
re-matching design checks) in a forked process while the main process estimates the rest,
so a run uses two cores without any step's numbers depending on it.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def single_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with BLAS limited to one thread (restored afterwards)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------
# one step beside the main process
# --------------------------------------------------------------------------------------

_PENDING: list[Callable[[], object]] = []


def _run_pending() -> object:
    return _PENDING[-1]()


class Beside:
    """``func()`` computed in a forked child process while the caller goes on.

    With ``enabled`` (and where the platform can fork), the child is forked at
    construction and shares the caller's memory copy-on-write, so large inputs (the
    matched sample) are not copied or pickled; only the return value is. Otherwise
    ``func`` simply runs when :meth:`result` is called. Either way the result is the
    same: the analytic steps are deterministic and single-threaded.
    """

    def __init__(self, func: Callable[[], R], *, enabled: bool) -> None:
        self._func = func
        self._pool = None
        if enabled and "fork" in multiprocessing.get_all_start_methods():
            _PENDING.append(func)
            try:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
                self._future = self._pool.submit(_run_pending)
            finally:
                _PENDING.pop()

    def result(self) -> R:
        """The return value of ``func`` (its exception, if it raised)."""
        if self._pool is None:
            return self._func()
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()
