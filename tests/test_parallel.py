"""The parallel engine: the same numbers from a loop, loky workers and a Dask cluster."""

from __future__ import annotations

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
