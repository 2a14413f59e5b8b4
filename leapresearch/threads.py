"""One BLAS thread for the analytic steps, and the memory a process gives back.

The matching fits many small logit models. With OpenBLAS's default threading, each small
solve may spin up threads that fight for the cores (measured here: 12.9 s against 1.6 s for
the same matching on two busy cores), and threaded reductions can change the last bits of
a result between runs. The analytic entry points therefore run with a single BLAS thread;
the work is already vectorised, so nothing is lost on a laptop.

Parallelism comes instead from whole steps, computed by the workers of
:func:`leapresearch.parallel.parallel_map` (one BLAS thread each), so a run uses several
cores without any step's numbers depending on it.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
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


# --------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------


def release_memory() -> None:
    """Collect garbage and give the freed heap back to the operating system.

    glibc keeps freed blocks in its heap for reuse, so a process that has dropped a large
    sample still holds its memory while notebook kernels start beside it;
    ``malloc_trim(0)`` returns it, and Arrow's pool (pandas' string columns) releases what
    it keeps. Beyond garbage collection, a no-op on other C libraries.
    """
    gc.collect()
    try:  # the Arrow buffers of pandas' string columns live in Arrow's own pool
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library (e.g. musl)
            pass
