"""Same numbers under any spelling of the ids, any row order and any CPU kernel.

The simulated test data get exact ties in the matching distance (every never-visited
student of one district cloned under a new id: identical trajectories and demographics),
so the k-th nearest comparison is tied for many visited students. The tables of
``leapresearch run --tables-only`` must then be byte-identical

* after shuffling the rows of all three files and relabelling every student id and school
  id in reverse order, or with the leading zeros dropped (order by string changes);
* under other OpenBLAS core types (``OPENBLAS_CORETYPE``) and with numpy's AVX2 and
  AVX-512 code paths disabled (``NPY_DISABLE_CPU_FEATURES``).

Every run gets its own prepared-sample cache, so each one matches afresh.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROCEDURE_OVERRIDE, assert_ok, build_once, run_cli

TABLES = "tables"
ID_WIDTH = {"student_id": 10, "school_id": 7}


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def _write(frame: pd.DataFrame, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")


def _add_ties(source: Path, target: Path) -> None:
    """Copy ``source`` and clone the never-visited students of the largest district.

    A clone has its twin's roster rows and attendance (identical matching covariates, an
    exact tie in the propensity score) except one day less attended in each of the last
    ten months of the data, so twins have different outcomes there.
    """
    students = _read(source, "students")
    attendance = _read(source, "attendance_monthly")
    visits = _read(source, "leap_visits")
    district = students["district"].value_counts().index[0]
    never = ~students["student_id"].isin(visits["student_id"])
    ids = students.loc[never & (students["district"] == district), "student_id"].unique()
    used = set(students["student_id"])
    clone = {i: f"{(int(i) + 4_999_999_999) % 10**10:010d}" for i in ids}
    assert not used & set(clone.values())
    extra_s = students.loc[students["student_id"].isin(clone)].copy()
    extra_a = attendance.loc[attendance["student_id"].isin(clone)].copy()
    extra_s["student_id"] = extra_s["student_id"].map(clone)
    extra_a["student_id"] = extra_a["student_id"].map(clone)
    # the twins' later attendance differs, so which twin is matched changes the estimates
    later = extra_a["month"].isin(sorted(extra_a["month"].unique())[-10:])
    days = extra_a["inperson_attended"].astype(int)
    extra_a.loc[later, "inperson_attended"] = (days[later] - (days[later] > 0)).astype(str)
    _write(pd.concat([students, extra_s], ignore_index=True), target, "students")
    _write(pd.concat([attendance, extra_a], ignore_index=True), target, "attendance_monthly")
    _write(visits, target, "leap_visits")


def _relabel(source: Path, target: Path, how: str, seed: int) -> None:
    """Shuffle every file's rows and re-spell every student and school id."""

    def spell(value: str, column: str) -> str:
        if how == "reverse":  # order-reversing, same width
            width = ID_WIDTH[column]
            return f"{10**width - 1 - int(value):0{width}d}"
        return str(int(value))  # leading zeros dropped: the string order changes

    rng = np.random.default_rng(seed)
    for name in ("students", "attendance_monthly", "leap_visits"):
        frame = _read(source, name)
        for column in ID_WIDTH:
            if column in frame.columns:
                mapping = {v: spell(v, column) for v in frame[column].unique()}
                frame[column] = frame[column].map(mapping)
        _write(frame.iloc[rng.permutation(len(frame))], target, name)


@pytest.fixture(scope="module")
def tied_data(shared_root: Path, sim_data: Path) -> Path:
    return build_once(shared_root, "tied-data", lambda out: _add_ties(sim_data, out))


def _cache_of(out: Path) -> Path:
    return out.parent / (out.name + "-cache")


def _run(
    data: Path, out: Path, env: dict[str, str] | None = None, *extra: str, what="--tables-only"
) -> Path:
    res = run_cli(
        "run", "--data", data, "--out", out, what, *extra, cache_dir=_cache_of(out), env=env
    )
    assert_ok(res)
    return out / TABLES


@pytest.fixture(scope="module")
def tied_run(shared_root: Path, tied_data: Path) -> Path:
    """The reference run on the tied data (this machine's default kernel, two processes).

    ``--no-notebooks``: it also stores the results only the notebooks show (the other
    runs here are ``--tables-only``, which leaves them out; their tables are the same).
    """
    two = ("--workers", "2")  # the default, named: the tests' other runs take one
    folder = build_once(
        shared_root, "tied-run", lambda out: _run(tied_data, out, None, *two, what="--no-notebooks")
    )
    return folder / TABLES


def _stored_steps(cache: Path) -> set[str]:
    """The steps whose results a run stored in its cache folder (``result-<key>-<step>``)."""
    return {p.name.split("-", 2)[2] for p in cache.glob("result-*") if ".tmp" not in p.name}


def assert_same_tables(a: Path, b: Path) -> None:
    names_a = sorted(p.name for p in a.glob("*.csv"))
    assert names_a == sorted(p.name for p in b.glob("*.csv"))
    assert len(names_a) >= 6
    differ = [n for n in names_a if (a / n).read_bytes() != (b / n).read_bytes()]
    assert not differ, f"tables differ: {differ}"


@pytest.mark.parametrize("how", ["reverse", "strip"])
def test_relabelled_and_shuffled_ids_give_identical_tables(tmp_path, tied_data, tied_run, how):
    data = tmp_path / "data"
    _relabel(tied_data, data, how, seed=11)
    assert_same_tables(tied_run, _run(data, tmp_path / "run"))


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def core_types() -> list[str]:
    """OpenBLAS kernels this CPU can run: Prescott (SSE3) always, Haswell, SkylakeX."""
    flags = _cpu_flags()
    out = ["Prescott"]
    if "avx2" in flags:
        out.append("Haswell")
    if "avx512f" in flags:
        out.append("SkylakeX")
    return out


def numpy_simd_off() -> str:
    """``NPY_DISABLE_CPU_FEATURES`` value that disables every dispatched SIMD target."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return " ".join(__cpu_dispatch__)


PROBE = (
    "import json, threadpoolctl\n"
    "from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__\n"
    "blas = [i for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas']\n"
    "print(json.dumps({'arch': [i.get('architecture') for i in blas],\n"
    "                  'simd': [k for k in __cpu_dispatch__ if __cpu_features__.get(k)]}))\n"
)


def probe(env: dict[str, str]) -> dict:
    """The OpenBLAS kernel and numpy SIMD targets a process with ``env`` uses."""
    return json.loads(_probe(tuple(sorted(env.items()))))


@functools.lru_cache
def _probe(env: tuple[tuple[str, str], ...]) -> str:
    import os

    res = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **dict(env)},
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout


def environments() -> list[dict[str, str]]:
    """Core types other than the default one (the reference run's), then numpy SIMD off."""
    default = probe({})["arch"]
    envs = [{"OPENBLAS_CORETYPE": c} for c in core_types()]
    envs = [env for env in envs if probe(env)["arch"] != default]
    envs.append({"NPY_DISABLE_CPU_FEATURES": numpy_simd_off(), "OPENBLAS_CORETYPE": "Prescott"})
    return envs


def test_the_kernels_really_change():
    default = tuple(probe({})["arch"])
    kernels = {tuple(probe(env)["arch"]) for env in environments()[:-1]}
    assert kernels and default not in kernels
    assert len(kernels | {default}) >= 2
    assert probe(environments()[-1])["simd"] == []


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory: pytest.TempPathFactory, tied_data: Path) -> Path:
    """``run --tables-only --workers 1`` of the tied data."""
    return _run(tied_data, tmp_path_factory.mktemp("one") / "run", None, "--workers", "1")


def test_one_process_gives_the_tables_of_two(tied_run, one_process_run):
    # the reference run uses the default --workers 2 (the refits computed by two loky
    # workers while the run estimates the other steps); one process computes the same bytes
    assert_same_tables(tied_run, one_process_run)


def test_tables_only_leaves_out_the_steps_only_the_notebooks_show(tied_run, one_process_run):
    from leapresearch.analysis.runner import STEPS

    notebook_only = {s.name for s in STEPS if not s.published}
    assert len(notebook_only) >= 5
    with_notebooks = _stored_steps(_cache_of(tied_run.parent))
    tables_only = _stored_steps(_cache_of(one_process_run.parent))
    assert notebook_only <= with_notebooks  # --no-notebooks stores them for the notebooks
    assert not notebook_only & tables_only
    assert tables_only == with_notebooks - notebook_only  # every published step is there


def test_a_dask_cluster_gives_the_tables_of_one_process(tmp_path, tied_data, tied_run):
    # `--scheduler ADDRESS`: the refits are computed by the workers of a Dask cluster
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        tables = _run(tied_data, tmp_path / "run", None, "--scheduler", address)
        with distributed.Client(address) as client:  # its workers computed the refits
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sum(executed.values()) >= 6
        assert_same_tables(tied_run, tables)
        prov = json.loads((tables.parent / "provenance.json").read_text())
        command = prov["command"]
        assert command[command.index("--scheduler") + 1] == address


@pytest.mark.parametrize("env", environments(), ids=lambda e: "-".join(e.values())[:40])
def test_tables_are_identical_under_other_cpu_kernels(tmp_path, tied_data, tied_run, env):
    tables = _run(tied_data, tmp_path / "run", env=env)
    assert_same_tables(tied_run, tables)
    # the run really used that kernel, and says so in its provenance
    prov = json.loads((tables.parent / "provenance.json").read_text())
    used = {b["architecture"] for b in prov["machine"]["blas"] if b["internal_api"] == "openblas"}
    assert used == set(probe(env)["arch"])


def test_provenance_paths_are_relative_inside_the_project(tmp_path):
    from leapresearch.paths import DEMO_DATA, PROJECT_ROOT
    from leapresearch.publish.outputs import project_relative

    assert project_relative(DEMO_DATA) == "data_raw/demo"
    assert project_relative(PROJECT_ROOT / "data_raw" / ".." / "data_raw" / "x") == "data_raw/x"
    assert project_relative(tmp_path) == tmp_path.resolve().as_posix()


def test_no_pickle_in_the_package():
    root = Path(__file__).resolve().parents[1] / "leapresearch"
    offending = [
        str(p.relative_to(root))
        for p in sorted(root.rglob("*.py"))
        if re.search(r"\bimport pickle\b|\bpickle\.|allow_pickle\s*=\s*True", p.read_text())
    ]
    assert not offending


def test_cache_command_reports_and_clears(tmp_path):
    from leapresearch import session

    res = run_cli("cache", cache_dir=tmp_path / "cache")
    assert_ok(res)
    assert str(tmp_path / "cache") in res.stdout and "0 entries" in res.stdout
    entry = tmp_path / "cache" / "prepared-x"
    entry.mkdir(parents=True)
    (entry / "tree.json").write_text("{}")
    res = run_cli("cache", "--clear", cache_dir=tmp_path / "cache")
    assert_ok(res)
    assert "1 entries" in res.stdout and "cleared" in res.stdout
    assert not (tmp_path / "cache").exists()
    assert session.cache_usage(tmp_path / "cache") == (0, 0)


def test_cache_entry_is_refused_unless_a_package_dataclass(tmp_path):
    from leapresearch import session

    entry = tmp_path / "prepared-x"
    entry.mkdir()
    np.savez(entry / "arrays.npz")
    node = {"dataclass": "subprocess:Popen", "fields": {}}
    (entry / "tree.json").write_text(json.dumps({"format": session._CACHE_FORMAT, "root": node}))
    with pytest.raises(ValueError, match="refusing"):
        session._read_entry(entry)


def test_cached_prepared_sample_gives_the_same_tables(sim_data, private_cache):
    from leapresearch.analysis import event_studies, robustness, sample
    from leapresearch.session import open_session

    fresh = open_session("demo", data_dir=str(sim_data))
    first = fresh.prepared  # computed and stored
    assert [p.name for p in private_cache.iterdir()][0].startswith("prepared-")
    again = open_session("demo", data_dir=str(sim_data)).prepared  # read back
    assert again is not first and again.config == fresh.config
    for step in (sample.estimate_balance, robustness.estimate_placebo):
        pd.testing.assert_frame_equal(step(again), step(first), check_exact=True)
    table_a, _ = event_studies.estimate_event_studies(first, subgroups=())
    table_b, _ = event_studies.estimate_event_studies(again, subgroups=())
    pd.testing.assert_frame_equal(table_b, table_a, check_exact=True)
    assert not list(private_cache.rglob("*.pkl"))


def test_notebook_01_shows_the_data_check_of_the_run_without_reading_the_data(
    sim_data, private_cache
):
    # `leapresearch run` stores what its data check found; notebook 01's session reads it
    # back instead of reading and validating the raw files a second time
    from leapresearch import notebook, pipeline
    from leapresearch.data.intake import DataWarning
    from leapresearch.session import DATA_REPORT, open_session, store_result

    computed = open_session("demo", data_dir=str(sim_data), use_cache=False)
    _, _, loaded = pipeline._load_checked(sim_data, computed.config, lambda _: None)
    report = loaded["data_report"]
    assert report["summary"] == computed.data_report["summary"]
    assert report["warnings"] == computed.data_report["warnings"]
    assert report["input_mapping"] == computed.data_report["input_mapping"]
    tables = (notebook.summary_table, notebook.warnings_table, notebook.input_mapping_table)
    # a warning only the stored report has shows that the notebook reads the stored one
    marked = DataWarning("leap_visits.csv", "visit_date", "stored by the run", "kept", 3, (2,))
    stored = {**report, "warnings": (*report["warnings"], marked)}
    store_result(stored, loaded["inputs"], computed.config, DATA_REPORT)

    session = open_session("demo", data_dir=str(sim_data))
    shown = [pd.DataFrame(f(session)) for f in tables]
    assert "tables" not in vars(session) and "check" not in vars(session)  # never read
    assert session.data_report["warnings"][-1] == marked
    assert shown[1]["warning"].iloc[-1] == "stored by the run"
    pd.testing.assert_frame_equal(shown[0], pd.DataFrame(tables[0](computed)), check_exact=True)
    pd.testing.assert_frame_equal(shown[2], pd.DataFrame(tables[2](computed)), check_exact=True)


def test_the_run_prepares_the_sample_from_what_its_data_check_built(sim_data):
    # `leapresearch run` checks the data as `validate` does, which builds the analytic
    # panel and the candidates; the evaluation reuses them instead of building them again
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.design.readiness import check_data

    config = load_config("demo", data_dir=sim_data)
    check = check_data(sim_data, config)
    assert check.ok and check.built is not None
    reused = prepare(check.tables, config, built=check.built)
    assert reused.panel is check.built[0] and reused.candidates is check.built[1]
    fresh = prepare(check.tables, config)
    pd.testing.assert_frame_equal(reused.candidates.frame, fresh.candidates.frame)
    pd.testing.assert_frame_equal(reused.stacked, fresh.stacked, check_exact=True)
    pd.testing.assert_frame_equal(reused.units, fresh.units, check_exact=True)


def _notebook_steps() -> dict[str, object]:
    """Name -> step of every ``session.result(step)`` in the committed notebooks."""
    import importlib

    from leapresearch.paths import PROJECT_ROOT

    steps: dict[str, object] = {}
    for path in sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "session.prepared" not in code, f"{path.name} loads the matched sample"
        imported = {
            name.strip(): module
            for module, names in re.findall(r"from (leapresearch[\w.]*) import ([\w, ]+)", code)
            for name in names.split(",")
        }
        for name in re.findall(r"session\.result\((\w+)\)", code):
            steps[name] = getattr(importlib.import_module(imported[name]), name)
    return steps


def test_a_notebook_of_the_run_shows_what_the_run_stored_without_loading_the_sample(
    tied_data, tied_run, monkeypatch
):
    # `leapresearch run` stores every result the notebooks show (analysis.runner.stored_results);
    # a notebook of the run reads them instead of matching and fitting again, and each one
    # equals what the notebook computes on its own from the matched sample
    import leapresearch.session

    monkeypatch.setattr(leapresearch.session, "CACHE_DIR", _cache_of(tied_run.parent))
    steps = _notebook_steps()
    assert {"estimate_event_study", "estimate_pretrend_tests", "attendance_by_year"} <= set(steps)
    assert len(steps) >= 15
    of_run = leapresearch.session.open_session(
        "demo", data_dir=str(tied_data), overrides=[PROCEDURE_OVERRIDE]
    )
    alone = leapresearch.session.open_session(
        "demo", data_dir=str(tied_data), use_cache=False, overrides=[PROCEDURE_OVERRIDE]
    )
    for name, step in steps.items():
        stored = of_run.result(step)
        assert not (isinstance(stored, pd.DataFrame) and "note" in stored), name
        pd.testing.assert_frame_equal(stored, alone.result(step), check_exact=True, obj=name)
    assert "prepared" not in vars(of_run) and "tables" not in vars(of_run)  # never loaded


def _falsification_csv(data: Path, out: Path, max_students: int) -> tuple[bytes, int, int]:
    """``falsification.csv`` of ``data`` with the pseudo-event sample capped, as published.

    Also the number of pseudo-events used and of never-visited students meeting the rule.
    """
    from leapresearch.analysis.identification import _pseudo_panel, estimate_falsification
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.publish.outputs import write_table

    def prepared_with(cap: int):
        overrides = [f"identification.falsification_max_students={cap}"]
        config = load_config("demo", data_dir=data, overrides=overrides)
        return prepare(read_raw_tables(data), config)

    prepared = prepared_with(max_students)
    eligible = len(_pseudo_panel(prepared_with(10**9))[1])
    used = len(_pseudo_panel(prepared)[1])
    path = write_table(
        estimate_falsification(prepared), "falsification", out, privacy=prepared.config.privacy
    )
    return path.read_bytes(), used, eligible


@pytest.mark.parametrize("how", ["reverse", "strip"])
def test_capped_falsification_sample_does_not_depend_on_ids_or_row_order(tmp_path, tied_data, how):
    """With fewer pseudo-events allowed than students meet the rule, the sample (ordered by
    a hash of each student's own data) and so ``falsification.csv`` are the same bytes
    under relabelled and shuffled ids; the seeded draw by integer code was not."""
    data = tmp_path / "data"
    _relabel(tied_data, data, how, seed=11)
    ref, used, eligible = _falsification_csv(tied_data, tmp_path / "a", 20)
    assert eligible > 20 >= used >= 15  # the cap binds
    got, used_b, eligible_b = _falsification_csv(data, tmp_path / "b", 20)
    assert (used_b, eligible_b) == (used, eligible)
    assert got == ref
