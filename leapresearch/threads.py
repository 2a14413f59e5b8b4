"""One BLAS thread for the analytic steps.

The matching fits many small logit models. With OpenBLAS's default threading, each small
solve may spin up threads that fight for the cores (measured here: 12.9 s against 1.6 s for
the same matching on two busy cores), and threaded reductions can change the last bits of
a result between runs. The analytic entry points therefore run with a single BLAS thread;
the work is already vectorised, so nothing is lost on a laptop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
