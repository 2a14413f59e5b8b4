"""One BLAS thread for the analytic steps, and the memory a process keeps and gives back.

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
import os
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


KEPT_MEMORY_SETTINGS: dict[str, tuple[int, int]] = {
    "MALLOC_MMAP_MAX_": (-4, 0),
    "MALLOC_TRIM_THRESHOLD_": (-1, 2**31 - 1),
    "MALLOC_TOP_PAD_": (-2, 256 * 2**20),
}
"""glibc's tunables that keep freed memory for reuse: environment variable -> (mallopt
parameter, value). No block comes from its own ``mmap`` (``M_MMAP_MAX`` 0), freed memory
is not returned at the top of the heap below 2 GB (``M_TRIM_THRESHOLD``) and the heap
grows by 256 MB at a time (``M_TOP_PAD``)."""


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for the next large array, here and in child processes.

    By default glibc gives every block above 32 MB its own ``mmap`` and returns it when
    freed, so each new large array (the matching's designs, the panel's columns) faults
    in fresh zeroed pages: at the districts scale, without the bootstrap, 97 s of a 204 s
    run's CPU was system time. With :data:`KEPT_MEMORY_SETTINGS` the heap is reused
    instead: 182 s and 187 s against 204 s and 203 s (runs alternated on one machine),
    57 s of system time, byte-identical tables; the price is memory freed but kept, the
    largest process 3.00 GB against 2.89-2.92 GB. :func:`release_memory` still hands
    the freed heap back when asked.

    Sets the settings for this process (``mallopt``) and, as environment variables, for
    the processes it starts (the workers of :func:`leapresearch.parallel.parallel_map` and
    the notebook kernels); a variable the user set is left alone, and glibc applied it at
    start. For the command line only: a library call leaves its host process's allocator
    alone. Returns whether the settings were applied (False on another C library).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    for variable, (parameter, value) in KEPT_MEMORY_SETTINGS.items():
        if variable in os.environ:
            continue
        os.environ[variable] = str(value)
        mallopt(parameter, value)
    return True
