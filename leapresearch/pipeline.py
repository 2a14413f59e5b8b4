"""``leapresearch run``: validate, evaluate, write every output, record provenance.

The run writes into a hidden temporary folder beside ``OUT`` and moves it into place only
when every step has succeeded, so a failed run leaves nothing that looks complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from leapresearch.config import Config
from leapresearch.data.contract import summarise
from leapresearch.data.intake import MANIFEST_NAME, manifest_problems  # noqa: F401 (re-export)
from leapresearch.data.simulate import read_marker
from leapresearch.design.readiness import check_data, data_report
from leapresearch.publish.outputs import (
    environment_record,
    file_records,
    git_state,
    run_environment,
    sha256_file,
    write_json,
    write_table,
)
from leapresearch.threads import release_memory

Log = Callable[[str], None]


class RunError(RuntimeError):
    """A run could not finish; the message says why. No output folder was left behind."""


def check_manifest(data_dir: Path) -> dict[str, str] | None:
    """Verify ``DIR/checksums.sha256`` (``sha256sum`` format) when present.

    ``run`` and ``validate`` check the manifest through
    :func:`leapresearch.design.readiness.check_data`; this helper raises instead.

    Returns
    -------
    dict or None
        File name -> expected sha256, or None when there is no manifest.

    Raises
    ------
    RunError
        A listed file is missing or its checksum differs, or a line is malformed.
    """
    expected, problems = manifest_problems(Path(data_dir))
    if problems:
        lines = [f"{file}: {rule}" for file, rule in problems]
        raise RunError("input integrity check failed:\n  " + "\n  ".join(lines))
    return expected


@dataclass(frozen=True)
class RunRecord:
    """Where a finished run is and how long its stages took."""

    out_dir: Path
    timings: dict[str, float]


def output_records(folder: Path) -> dict[str, dict[str, object]]:
    """Relative path -> {bytes, sha256} of every file of a run folder (provenance excluded)."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "provenance.json"
    }


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    trash = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(trash)
    try:
        tmp.rename(out_dir)
    except BaseException:
        # put the earlier run back: a failed run never removes a finished one
        if trash.exists() and not out_dir.exists():
            trash.rename(out_dir)
        raise
    if trash.exists():
        shutil.rmtree(trash)


def run_report(
    data_dir: Path,
    out_dir: Path,
    *,
    config: Config,
    overwrite: bool = False,
    log: Log = print,
    write_outputs: Callable | None = None,
    use_cache: bool = True,
    command: Sequence[str] | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    notebook_steps: bool = True,
) -> RunRecord:
    """Run the evaluation on a contract folder and publish it into ``out_dir``.

    Parameters
    ----------
    data_dir : Path
        The contract folder.
    out_dir : Path
        The run folder to create (a vintage's folder is never edited: an existing one is
        replaced only with ``overwrite``).
    config : Config
        Parameters.
    overwrite : bool
        Replace an existing ``out_dir``.
    log : callable
        Stage log.
    write_outputs : callable, optional
        ``f(evaluation, tmp_dir, config, log)`` writing figures, notebooks and the report
        (``evaluation.tables``: the result tables; the matched sample is already freed).
    use_cache : bool
        Store the prepared sample where the notebooks' sessions find it
        (``data_raw/.cache``), so they do not match again.
    command : sequence of str, optional
        The command line recorded in ``provenance.json`` (default: ``sys.argv``).
    workers, scheduler : int, str or None
        Processes of the evaluation, or a Dask scheduler's address (default:
        ``$LEAPRESEARCH_SCHEDULER``): the design checks that fit a new propensity model are
        computed by joblib's workers or the cluster beside the other steps
        (:func:`leapresearch.analysis.refits.start_refits`); the tables are the same.
    notebook_steps : bool
        Also compute (and store) what only the notebooks show (``--tables-only``: not).

    Notes
    -----
    ``provenance.json`` records whether the inputs are simulated: true exactly when the data
    folder holds the simulator's marker (:data:`leapresearch.data.simulate.SIMULATION_MARKER`);
    ``evaluation.simulated`` passes the same flag to ``write_outputs`` (the report's banner).

    Raises
    ------
    ContractError
        The data break the contract (nothing is written).
    RunError
        Any other reason the run cannot finish (nothing is left behind).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise RunError(f"{out_dir} exists; a run folder is never edited (use --overwrite)")
    started = dt.datetime.now(dt.UTC)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tables, built, loaded = _load_checked(data_dir, config, log)
    timings["load"] = time.perf_counter() - t0
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        evaluation = _evaluate(
            tables, config, log, loaded, built=built, cache=use_cache,
            parallel=(workers, scheduler), notebook_steps=notebook_steps,
        )  # fmt: skip
        del built
        timings.update(evaluation.prepared.timings)
        timings["evaluation"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluation = _results_only(evaluation, simulated=loaded["marker"] is not None)
        input_files = dict(tables.files)
        del tables
        release_memory()
        _publish(evaluation, tmp, config, log, write_outputs)
        timings["outputs"] = time.perf_counter() - t0
        _check_unchanged(input_files, loaded["inputs"])
        provenance = _provenance(
            data_dir, config, loaded, tmp, started=started, timings=timings, command=command
        )
        write_json(provenance, tmp / "provenance.json")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out_dir}")
    return RunRecord(out_dir=out_dir, timings=timings)


def _publish(evaluation, out_dir: Path, config: Config, log: Log, write_outputs) -> None:
    """The tables, then what ``write_outputs`` writes (the notebooks read the run's cache)."""
    from leapresearch.session import exported_cache

    for name, table in sorted(evaluation.tables.items()):
        write_table(table, name, out_dir, privacy=config.privacy)
    if write_outputs is not None:
        with exported_cache():
            write_outputs(evaluation, out_dir, config, log)


def _check_unchanged(input_files: dict, recorded: dict) -> None:
    """Refuse the run when an input file changed since it was read and checked."""
    now = file_records(input_files)
    if now != recorded:
        changed = sorted(k for k in recorded if recorded[k] != now.get(k))
        raise RunError(f"input files changed while the run was going: {', '.join(changed)}")


def _results_only(evaluation, *, simulated: bool) -> SimpleNamespace:
    """What the outputs need of an evaluation: its tables, without the matched sample.

    The caller drops the sample before the notebooks start their kernels. ``simulated``
    marks simulated inputs; ``cluster`` is the level the errors were clustered by.
    """
    return SimpleNamespace(
        tables=evaluation.tables,
        event_studies={},
        simulated=simulated,
        cluster=getattr(evaluation, "cluster", None),
    )


def _load_checked(data_dir: Path, config: Config, log: Log) -> tuple[object, tuple, dict]:
    """The checked raw tables (as ``leapresearch validate`` checks them) and what is recorded.

    Returns the tables, the panel and candidates the check built
    (:attr:`~leapresearch.design.readiness.DataCheck.built`, reused by the evaluation) and
    ``{"inputs", "warnings", "input_mapping", "data_report", "marker"}``: the input files'
    checksums, the data warnings, the input mapping applied, the data check notebook 01
    shows and the simulator's marker (None for real data).
    """
    checked = check_data(data_dir, config)  # the same check as `leapresearch validate`
    for warning in checked.warnings:
        log(f"warning: {warning}")
    tables = checked.raise_for_violations()
    built = checked.built
    loaded = {
        "warnings": [w.as_dict() for w in checked.warnings],
        "input_mapping": checked.mapping,
        "data_report": data_report(summarise(tables), checked.warnings, checked.mapping),
    }
    del checked  # the tables are freed by the caller, before the notebooks start
    try:
        loaded["marker"] = read_marker(data_dir)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    loaded["inputs"] = file_records(tables.files)
    log(
        f"load: {len(tables.students):,} roster rows, {len(tables.attendance_monthly):,} "
        f"attendance rows, {len(tables.leap_visits):,} visits"
    )
    # The panel the check built holds the attendance now; the evaluation reads only the
    # roster and the visit log again (intent-to-treat events). Releasing the largest table
    # before the evaluation forks keeps it out of both processes; a step that still
    # asked for it would fail loudly, not read an empty table.
    tables = dataclasses.replace(tables, attendance_monthly=None)
    release_memory()
    return tables, built, loaded


def _evaluate(
    tables,
    config: Config,
    log: Log,
    loaded: dict,
    *,
    built,
    cache: bool,
    parallel: tuple[int, str | None] = (1, None),
    notebook_steps: bool = True,
):
    """Every analytic step; with ``cache``, store what the notebooks' sessions reuse.

    ``loaded`` is what :func:`_load_checked` recorded (the inputs' checksums key the cache;
    its data report is stored for notebook 01); ``built``, the panel and candidates of the
    data check; ``parallel``, the run's workers and Dask scheduler; ``notebook_steps``,
    whether the steps only the notebooks show are computed (:func:`run_report`).
    """
    from leapresearch.analysis.refits import RefitError
    from leapresearch.analysis.runner import evaluate, stored_results

    inputs = loaded["inputs"]
    try:
        workers, scheduler = parallel
        evaluation = evaluate(
            tables,
            config,
            log=log,
            workers=workers,
            scheduler=scheduler,
            built=built,
            notebook_steps=notebook_steps,
        )
    except ValueError as exc:  # includes numpy's LinAlgError
        # Valid data can still be too small or sparse for a step (e.g. no cohort-month
        # cell the robust estimator can estimate): refuse with the reason and the step.
        raise RunError(
            f"the evaluation cannot be completed on these data: {_with_notes(exc)}"
        ) from exc
    except RefitError as exc:  # a worker failed or died: the step and the reason
        raise RunError(f"the evaluation did not finish: {_with_notes(exc)}") from exc
    if cache:
        from leapresearch.session import DATA_REPORT, store_prepared, store_result

        store_prepared(evaluation.prepared, inputs)
        # notebook 01 shows the data check without reading the data again
        store_result(loaded["data_report"], inputs, config, DATA_REPORT)
        for step, result in stored_results(evaluation).items():
            store_result(result, inputs, config, step)
    return evaluation


def _with_notes(exc: BaseException) -> str:
    """The message of ``exc`` followed by its notes (the step it stopped, the refit)."""
    return " ".join([str(exc), *getattr(exc, "__notes__", ())])


def _provenance(
    data_dir: Path,
    config: Config,
    loaded: dict,
    run_dir: Path,
    *,
    started: dt.datetime,
    timings: dict[str, float],
    command: Sequence[str] | None,
) -> dict:
    """The ``provenance.json`` record of a run whose outputs are in ``run_dir``."""
    return {
        "schema": "leapresearch-provenance/1",
        "vintage": config.vintage,
        "git": git_state(),
        "parameters": config.as_dict(),
        "parameters_sha256": config.digest(),
        "inputs": loaded["inputs"],
        **run_environment(data_dir),
        "environment": environment_record(),
        "seeds": {"matching": config.matching.seed},
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "warnings": loaded["warnings"],
        "input_mapping": loaded["input_mapping"],
        "command": list(command)
        if command is not None
        else [Path(sys.argv[0]).name, *sys.argv[1:]],
        "simulated_inputs": loaded["marker"] is not None,
        "simulation_marker": loaded["marker"],
        "outputs": output_records(run_dir),
    }
