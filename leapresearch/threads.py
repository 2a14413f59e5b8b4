"""One BLAS thread for the analytic steps, and one step computed beside them.

The matching fits many small logit models. With OpenBLAS's default threading, each small
solve may spin up threads that fight for the cores (measured here: 12.9 s against 1.6 s for
the same matching on two busy cores), and threaded reductions can change the last bits of
a result between runs. The analytic entry points therefore run with a single BLAS thread;
the work is already vectorised, so nothing is lost on a laptop.

Parallelism comes instead from whole steps: :class:`Beside` computes one step (the
specifications that fit a new propensity model) in a forked process while the main process
estimates the rest, so a run uses two cores without any step's numbers depending on it.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import multiprocessing
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
# one step beside the main process
# --------------------------------------------------------------------------------------


class BesideError(RuntimeError):
    """The child process of :class:`Beside` died without sending a result."""


def _run_and_send(func: Callable[[], object], conn) -> None:
    """Child side of :class:`Beside`: send ``(True, value)`` or ``(False, exception)``."""
    try:
        try:
            conn.send((True, func()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the parent
            try:
                conn.send((False, exc))
            except Exception:  # an exception that cannot be pickled: its text
                conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class Beside:
    """``func()`` computed in a forked child process while the caller goes on.

    With ``enabled`` (on Linux, where forking a process with these libraries is safe), the
    child is forked at construction and shares the caller's memory copy-on-write, so large
    inputs (the matched sample) are neither copied nor pickled; only the return value is.
    Otherwise ``func`` simply runs when :meth:`result` is called. Either way the result is
    the same: the analytic steps are deterministic and single-threaded. The child is a
    daemon: it ends with the caller, and :meth:`close` ends it early (e.g. after an error
    in the caller).
    """

    def __init__(self, func: Callable[[], R], *, enabled: bool) -> None:
        self._func = func
        self._proc = None
        self._outcome: tuple[bool, object] | None = None
        if enabled and sys.platform == "linux":  # fork is unsafe on macOS, absent on Windows
            ctx = multiprocessing.get_context("fork")
            self._conn, send = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(target=_run_and_send, args=(func, send), daemon=True)
            self._proc.start()
            send.close()

    def result(self) -> R:
        """The return value of ``func`` (its exception, if it raised); computed once."""
        if self._outcome is None:
            self._outcome = self._receive()
        ok, value = self._outcome
        if ok:
            return value
        raise value

    def _receive(self) -> tuple[bool, object]:
        if self._proc is None:
            try:
                return True, self._func()
            except Exception as exc:  # noqa: BLE001 - re-raised by result()
                return False, exc
        try:
            outcome = self._conn.recv()
        except EOFError:
            self._proc.join()
            raise BesideError(
                f"the second process ended without a result (exit code {self._proc.exitcode}"
                f"{', killed: out of memory?' if self._proc.exitcode == -9 else ''}); "
                "run with --workers 1 to use one process"
            ) from None
        finally:
            self._conn.close()
        self._proc.join()
        return outcome

    def close(self) -> None:
        """End the child if it is still running (its result is no longer wanted)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()


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
