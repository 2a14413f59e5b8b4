"""The parallel engine: the same numbers from a loop, loky workers and a Dask cluster."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from leapresearch.parallel import (
    SCHEDULER_ENV,
    parallel_map,
    scheduler_address,
    start_parallel_map,
)


def _blas_heavy(seed: int) -> float:
    """A result whose last bits depend on the BLAS threads if they are not limited."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(150, 150))
    return float(np.linalg.solve(a @ a.T + np.eye(150), rng.normal(size=150)).sum())


def test_results_in_order_and_identical_across_workers():
    loop = parallel_map(_blas_heavy, range(6))
    with threadpool_limits(limits=1, user_api="blas"):
        assert loop == [_blas_heavy(seed) for seed in range(6)]  # in the order of the items
    assert len(set(loop)) == 6
    assert parallel_map(_blas_heavy, range(6), workers=2) == loop


def test_a_map_started_now_gives_the_same_results_later():
    loop = parallel_map(_blas_heavy, range(6))
    in_process = start_parallel_map(_blas_heavy, range(6), workers=1)
    started = start_parallel_map(_blas_heavy, range(6), workers=2)  # sent to loky at once
    assert started.results() == loop and in_process.results() == loop
    assert started.results() is started.results()  # taken once


def _started_at(item: tuple[str, int]) -> tuple[str, int, float]:
    """Which worker began ``item`` and when (then a short wait, so that the items overlap)."""
    import time

    began = time.monotonic()
    time.sleep(0.2)
    return item[0], os.getpid(), began


def test_a_map_started_after_another_waits_for_all_of_its_items():
    # a run queues its bootstrap draws behind its refits on the same two loky workers: every
    # item of the first map is queued at once (joblib would otherwise hold back all but
    # 2 x n_jobs of them and queue the rest behind the second map's), so each worker
    # computes first-map items only before any second-map item (the order within one
    # worker is its queue's, free of races between the two processes' clocks)
    first = start_parallel_map(_started_at, [("first", i) for i in range(7)], workers=2)
    second = start_parallel_map(_started_at, [("second", i) for i in range(3)], workers=2)
    done = first.results() + second.results()
    for pid in {pid for _, pid, _ in done}:
        labels = [label for label, p, _ in sorted(done, key=lambda r: r[2]) if p == pid]
        assert labels == sorted(labels), (pid, labels)  # "first" < "second"
    assert {label for label, _, _ in done} == {"first", "second"}


def _slow_item(item: tuple[str, int]) -> int:
    """Write this worker's pid into the folder ``item[0]``, then wait (stopped before the end)."""
    import pathlib
    import time

    (pathlib.Path(item[0]) / f"pid-{os.getpid()}").write_text("")
    time.sleep(20)
    return item[1]


def test_a_map_stopped_with_work_queued_kills_its_workers_quietly(tmp_path, monkeypatch):
    # a failed run closes its refits and draws with more items queued than loky's call
    # queue holds: loky's manager thread then dies of a KeyError (its race, not ours) while
    # the workers are killed all the same; the close neither waits nor prints a traceback
    import threading
    import time

    psutil = pytest.importorskip("psutil")
    seen = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    started = start_parallel_map(_slow_item, [(str(tmp_path), i) for i in range(9)], workers=2)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(f.name.split("-")[1]) for f in tmp_path.glob("pid-*")]
    assert len(pids) == 2
    began = time.monotonic()
    started.close()
    assert time.monotonic() - began < 10
    time.sleep(1)
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    alive = [pid for pid in alive if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert seen == [] and threading.excepthook == seen.append  # put back after the close


def test_dask_local_cluster_gives_the_same_numbers(monkeypatch):
    distributed = pytest.importorskip("distributed")
    loop = parallel_map(_blas_heavy, range(4))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        assert parallel_map(_blas_heavy, range(4), scheduler=cluster.scheduler_address) == loop
        started = start_parallel_map(_blas_heavy, range(4), scheduler=cluster.scheduler_address)
        assert started.results() == loop
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        assert parallel_map(_blas_heavy, range(4), workers=1) == loop


def test_scheduler_from_environment(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert scheduler_address() is None
    monkeypatch.setenv(SCHEDULER_ENV, " tcp://host:8786 ")
    assert scheduler_address() == "tcp://host:8786"
    assert scheduler_address("tcp://other:1") == "tcp://other:1"


_KILLED_MAP = """
import os, sys, time
from pathlib import Path
from leapresearch.parallel import parallel_map, stop_workers_on_terminate

def task(i):
    out = Path(sys.argv[1])
    (out / f"pid-{os.getpid()}").write_text("")
    time.sleep(2)
    (out / f"done-{i}").write_text("")
    return i

if __name__ == "__main__":
    if sys.argv[2] == "installed":
        assert stop_workers_on_terminate()
        assert not stop_workers_on_terminate()  # over its own handler: not again
    parallel_map(task, range(8), workers=2)
"""


@pytest.mark.parametrize("handler", ["installed", "default"])
def test_a_killed_map_stops_its_workers_once_the_handler_is_installed(tmp_path, handler):
    """SIGTERM of the parent: with the handler its loky workers end at once and write
    nothing more; without it (the default) they go on with the items sent to them."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "killed_map.py"
    script.write_text(_KILLED_MAP)
    out = tmp_path / handler
    out.mkdir()
    with open(tmp_path / "stderr.txt", "w") as stderr:  # loky's notes on the orphans
        parent = subprocess.Popen([sys.executable, str(script), str(out), handler], stderr=stderr)
    deadline = time.monotonic() + 60
    while len(list(out.glob("pid-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.name.removeprefix("pid-")) for p in out.glob("pid-*")]
    assert len(workers) == 2
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    time.sleep(4)  # longer than a task

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        if handler == "installed":
            assert not any(alive(p) for p in workers)
            assert not list(out.glob("done-*"))
        else:  # what the handler is for: orphans finish their items
            assert list(out.glob("done-*"))
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
