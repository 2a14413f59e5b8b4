"""The refits of a run, computed by joblib's workers while the run estimates the rest.

``leapresearch run`` (``--workers 2`` or a Dask scheduler) sends the steps that fit a new
propensity model to :func:`leapresearch.parallel.start_parallel_map`; the table assembled
from the workers' rows is the one a single process computes, and a refit that fails in a
worker surfaces with its step's name, in the step that takes it.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from tests.conftest import PROCEDURE_OVERRIDE


def _pid_or_fail(name: str, prepared, tables, log) -> pd.DataFrame:
    """A step runner for the tests: its process id, or the failure its name asks for."""
    log(f"{name}: computed")
    if name == "kaboom":
        raise KeyError("a column no table has")
    if name == "too_few":
        raise ValueError("no group with a comparison")
    if name == "dies":
        os._exit(3)
    if name == "slow":
        time.sleep(120)
    return pd.DataFrame({"step": [name], "pid": [os.getpid()]})


def _separating_directions(name: str, prepared, tables, log) -> pd.DataFrame:
    """A step runner for the tests: the separating directions its worker remembers."""
    from leapresearch.design.matching import separation

    found = separation.remembered_directions()
    return pd.DataFrame(
        {
            "columns": [repr(columns) for columns in found],
            "directions": [repr(directions) for directions in found.values()],
            "pid": os.getpid(),
        }
    )


@pytest.fixture(scope="module")
def demo_session(sim_data, tmp_path_factory):
    from leapresearch import session as session_module
    from leapresearch.session import open_session

    mp = pytest.MonkeyPatch()
    mp.setattr(session_module, "CACHE_DIR", tmp_path_factory.mktemp("cache"))
    try:
        yield open_session("demo", data_dir=str(sim_data))
    finally:
        mp.undo()


def test_specifications_refitted_by_the_workers_give_the_same_table(demo_session):
    from leapresearch.analysis import refits, runner, specifications

    prepared, tables = demo_session.prepared, demo_session.tables
    alone = specifications.estimate_specifications(prepared, tables=tables)
    assert (
        refits.start_refits(
            prepared, tables=tables, steps=[], compute_step=runner.compute_named, workers=1
        )
        is None
    )  # one process: the rows are computed at their place
    lines: list[str] = []
    started = refits.start_refits(
        prepared, tables=tables, steps=[], compute_step=runner.compute_named, workers=2
    )
    split = refits.specifications_with(prepared, started, tables=tables, log=lines.append)
    refitted = set(specifications.REFIT_SPECS) & set(alone["specification"])
    assert len(refitted) >= 3 and len(set(alone["specification"]) - refitted) > 5
    pd.testing.assert_frame_equal(split, alone, check_exact=True)
    # the log shows the two parts as before: the rows computed here, then the refits
    assert len(lines) == 2 and all(x.startswith("specifications: ") for x in lines)


def test_whole_steps_are_computed_by_other_processes_with_their_log(demo_session):
    from leapresearch.analysis.refits import start_refits

    started = start_refits(
        demo_session.prepared,
        tables=None,
        steps=["first", "second"],
        compute_step=_pid_or_fail,
        workers=2,
    )
    lines: list[str] = []
    first = started.take("first", lines.append)
    second = started.take("second", lines.append)
    assert first["step"].tolist() == ["first"] and second["step"].tolist() == ["second"]
    assert os.getpid() not in {first["pid"].iloc[0], second["pid"].iloc[0]}
    assert lines == ["first: computed", "second: computed"]
    pd.testing.assert_frame_equal(started.take("first", lambda _: None), first)  # taken again


def test_the_workers_are_handed_the_separating_directions_of_the_run(demo_session, monkeypatch):
    # the refits fit the propensity model of the run's strata on other rows: the
    # directions the run's linear program found are handed to the workers (other
    # processes), so that they decide the separated fits without solving it again
    import numpy as np

    from leapresearch.analysis.refits import start_refits
    from leapresearch.design.matching import separation

    columns = (("x_test_a", "x_test_b"), ("d_test[1]",))
    direction = (0.5, np.array([1.0, -2.0]), np.array([3.0]))
    monkeypatch.setattr(separation, "_SEPARATING", {columns: [direction]})
    started = start_refits(
        demo_session.prepared,
        tables=None,
        steps=["directions"],
        compute_step=_separating_directions,
        workers=2,
    )
    got = started.take("directions", lambda _: None).set_index("columns")
    assert got["pid"].iloc[0] != os.getpid()
    assert got.loc[repr(columns), "directions"] == repr([direction])


def test_a_failing_refit_names_its_step_and_spares_the_others(demo_session):
    from leapresearch.analysis.refits import RefitError, start_refits

    started = start_refits(
        demo_session.prepared,
        tables=None,
        steps=["kaboom", "too_few", "fine"],
        compute_step=_pid_or_fail,
        workers=2,
    )
    # any error but the data's: its step, its type and its message, not a pickling trace
    with pytest.raises(RefitError, match=r"kaboom failed: KeyError: .a column no table has"):
        started.take("kaboom", lambda _: None)
    # the data cannot support the step: the ValueError of one process (for the step's
    # guard, hence the same note in the table), with the refit named in a note
    with pytest.raises(ValueError) as caught:
        started.take("too_few", lambda _: None)
    assert str(caught.value) == "no group with a comparison"
    assert caught.value.__notes__ == ["(in the refit too_few)"]
    assert started.take("fine", lambda _: None)["step"].tolist() == ["fine"]


def test_a_dead_worker_is_a_clear_error(demo_session):
    from leapresearch.analysis.refits import RefitError, start_refits

    started = start_refits(
        demo_session.prepared, tables=None, steps=["dies"], compute_step=_pid_or_fail, workers=2
    )
    with pytest.raises(RefitError, match=r"(?s)refits \(dies, .*did not finish.*--workers 1"):
        started.take("dies", lambda _: None)


def test_a_run_that_failed_does_not_wait_for_its_refits(demo_session):
    from leapresearch.analysis.refits import start_refits

    started = start_refits(
        demo_session.prepared,
        tables=None,
        steps=["slow", "slow_too"],
        compute_step=_pid_or_fail,
        workers=2,
    )
    time.sleep(1)
    start = time.perf_counter()
    started.close()  # a step of the run failed: the workers are stopped, not awaited
    assert time.perf_counter() - start < 30


def test_a_step_of_the_run_that_fails_is_named_in_the_run_error(sim_data, tmp_path, monkeypatch):
    # the step's name reaches the message `leapresearch run` prints
    from leapresearch import pipeline
    from leapresearch.analysis import runner
    from leapresearch.config import load_config

    def balance_fails(prepared):
        raise ValueError("no students to balance")

    steps = tuple(
        s if s.name != "balance" else runner.Step("balance", balance_fails) for s in runner.STEPS
    )
    monkeypatch.setattr(runner, "STEPS", steps)
    config = load_config("demo", data_dir=sim_data, overrides=[PROCEDURE_OVERRIDE])
    with pytest.raises(pipeline.RunError) as caught:
        pipeline.run_report(
            sim_data, tmp_path / "run", config=config, log=lambda _: None, use_cache=False
        )
    assert str(caught.value) == (
        "the evaluation cannot be completed on these data: no students to balance "
        "(in the step balance of the run)"
    )
    assert not (tmp_path / "run").exists()


def test_a_pool_refit_starts_from_the_fits_of_the_run_and_gives_the_same_rows(
    demo_session, monkeypatch
):
    # a specification that changes the pool fits the same strata on other rows: its fits
    # start from the run's coefficients (fewer Newton steps), and the rows are those of
    # fits started from scratch
    from leapresearch.analysis import sample, specifications

    prepared, tables = demo_session.prepared, demo_session.tables
    starts: list = []
    real = specifications.prepare_matched

    def recorded(*args, **kwargs):
        starts.append(kwargs.get("pscore_start"))
        return real(*args, **kwargs)

    monkeypatch.setattr(specifications, "prepare_matched", recorded)
    names = ["never_visited_pool", "intent_to_treat"]
    warm = specifications.estimate_specifications(prepared, tables=tables, names=names)
    expected = sample.fitted_coefficients(prepared.matching)
    assert len(expected) >= 3 and starts == [expected, expected]
    monkeypatch.setattr(specifications, "fitted_coefficients", lambda matching: {})
    cold = specifications.estimate_specifications(prepared, tables=tables, names=names)
    assert set(warm["specification"]) == set(names)
    pd.testing.assert_frame_equal(warm, cold, check_exact=True)


@pytest.mark.parametrize("cluster", [False, True])
def test_the_bootstraps_draws_start_before_the_steps_behind_the_refits(
    cluster, sim_data, monkeypatch
):
    # on a cluster and with two local workers the whole-procedure draws are computed beside
    # the run's own steps: started before the first one, after the refits were queued
    from leapresearch.analysis import procedure, runner
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables

    events: list[str] = []
    real_start, real_compute = procedure.start_procedure_draws, runner.compute
    real_refits = runner.start_refits

    def start_refits(*args, **kwargs):
        events.append("refits started")
        return real_refits(*args, **kwargs)

    def start(*args, **kwargs):
        started = real_start(*args, **{**kwargs, "scheduler": None})  # a local stand-in
        events.append("draws started")
        real_paths = started.paths

        def paths():
            events.append("draws taken")
            return real_paths()

        monkeypatch.setattr(started, "paths", paths)
        return started

    def compute(step, inputs, **kwargs):
        events.append(step.name)
        return real_compute(step, inputs, **kwargs)

    monkeypatch.setattr(procedure, "start_procedure_draws", start)
    monkeypatch.setattr(runner, "compute", compute)
    monkeypatch.setattr(runner, "start_refits", start_refits)
    if cluster:
        monkeypatch.setattr(procedure, "scheduler_address", lambda _: "tcp://scheduler:8786")
    names = ("balance", "matching_summary", "event_study")
    monkeypatch.setattr(runner, "STEPS", tuple(s for s in runner.STEPS if s.name in names))
    config = load_config("demo", data_dir=sim_data, overrides=[PROCEDURE_OVERRIDE])
    evaluation = runner.evaluate(read_raw_tables(sim_data), config, workers=2)
    steps = ["balance", "matching_summary", "event_study"]
    assert events == ["refits started", "draws started", *steps, "draws taken"]
    table = evaluation.tables["event_study"]
    assert table.loc[table["group"] == "all", "procedure_std_error"].notna().any()
    assert procedure._PLANS == {}  # the run's own process kept no plan
