"""Trust: bad input refused cleanly, no identifiers out, suppression, determinism, integrity.

The expensive artefacts (a small simulated data folder and three ``leapresearch run``
processes of it) are session fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import leapresearch.analysis.runner
import leapresearch.publish.report
from leapresearch.cli import main
from leapresearch.config import load_config
from leapresearch.paths import DATA_RAW, NOTEBOOKS, PROJECT_ROOT
from leapresearch.pipeline import RunError, check_manifest, run_report
from leapresearch.publish.privacy import COUNT_PREFIXES, ESTIMATE_COLUMNS, NOT_STUDENT_COUNTS
from leapresearch.publish.report import notebook_paths
from tests.broken_inputs import CASE_NAMES, CASES, Expected
from tests.conftest import (
    MANIFEST,
    PROCEDURE_OVERRIDE,
    SIM_FRACTION,
    SimIds,
    build_once,
    find_identifiers,
    listing,
    run_cli,
    run_cli_concurrently,
    scan_folder,
)

EXPECTED = {name: expected for name, _, expected in CASES}

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broken_root(shared_root: Path, valid_fixture: Path) -> Path:
    """Every broken folder of tests/broken_inputs.py, built once."""

    def build(folder: Path) -> None:
        for name, builder, _ in CASES:
            builder(valid_fixture, folder / name)

    return build_once(shared_root, "broken", build)


def _rows_shown(rows: tuple[int, ...]) -> re.Pattern[str]:
    shown = re.escape(", ".join(map(str, rows)))
    return re.compile(rf"\((?:lines?|rows?) {shown}(?:\)|,)")


def assert_names_violation(stderr: str, expected: Expected) -> str:
    """One line of ``stderr`` names the file, the column, the rule and the rows."""
    for line in stderr.splitlines():
        text = line.strip()
        if not text.startswith(f"- {expected.file}: "):
            continue
        if expected.column is not None and f"column {expected.column}: " not in text:
            continue
        if expected.rule not in text:
            continue
        if expected.rows is not None and not _rows_shown(expected.rows).search(text):
            continue
        return text
    raise AssertionError(f"no line names {expected} in stderr:\n{stderr}")


ID_LIKE = re.compile(r"(?<!\d)\d{10}(?!\d)|LV\d{6}")
"""SASIDs (10 digits, also the unknown ids the corpus injects) and fixture visit ids."""


def _validate_args(data: Path, expected: Expected) -> list[str]:
    args = ["validate", str(data)]
    if expected.program_start is not None:
        args += ["--program-start", expected.program_start.isoformat()]
    return args


def _run_args(data: Path, out: Path, expected: Expected) -> list[str]:
    args = ["run", "--data", str(data), "--out", str(out), "--no-notebooks"]
    if expected.program_start is not None:
        args += ["-p", f"program_start={expected.program_start.isoformat()}"]
    return args


# --------------------------------------------------------------------------------------
# 1. Bad input through the CLI
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_broken_folder_is_refused_by_validate_and_run(
    name, broken_root, tmp_path, capsys, private_cache
):
    """In process (fast) for the whole corpus: exit 1, a precise message, nothing written."""
    expected, data = EXPECTED[name], broken_root / name

    assert main(_validate_args(data, expected)) == 1
    out, err = capsys.readouterr()
    assert_names_violation(err, expected)
    assert "valid (raw-data contract" not in out
    assert not ID_LIKE.findall(out + err), "an identifier reached the terminal"

    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(_run_args(data, runs / "nested" / "out", expected)) == 1
    out, err = capsys.readouterr()
    assert "the data break the raw-data contract" in err
    assert_names_violation(err, expected)
    assert not ID_LIKE.findall(out + err), "an identifier reached the terminal"
    assert listing(runs) == []  # no OUT, no parent created, no hidden temp folder
    assert not private_cache.exists()  # nothing prepared, nothing cached


FAMILIES = {
    "missing table": "students_missing",
    "non-UTF-8": "students_not_utf8",
    "mixed types": "attendance_text_in_numbers",
    "visits before program start": "visits_before_program_start",
    "Parquet with wrong types": "parquet_student_id_int",
}
"""One case per kind of rule for the real command (the whole corpus runs in process above:
empty file, wrong delimiter, duplicated header, dates outside the school years, unknown
students and the rest)."""


@pytest.mark.parametrize("family", FAMILIES)
def test_rule_families_are_refused_by_the_real_command_without_traceback(
    family, broken_root, tmp_path
):
    """A fresh ``leapresearch`` process per command: what a user at a terminal sees."""
    name = FAMILIES[family]
    expected, data = EXPECTED[name], broken_root / name
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "keep.txt").write_text("unrelated file\n")
    before = listing(runs)

    commands = (_validate_args(data, expected), _run_args(data, runs / "out", expected))
    for args, res in zip(commands, run_cli_concurrently(*commands), strict=True):
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stdout + res.stderr
        assert_names_violation(res.stderr, expected)
    assert listing(runs) == before


def test_program_start_matters(broken_root, capsys, private_cache, tmp_path):
    """validate and run read program_start from the same parameters (params/demo.yaml:
    2021-04-01) and refuse the early completed visit alike; an earlier start accepts it."""
    data = broken_root / "visits_before_program_start"
    assert main(["validate", str(data)]) == 1
    assert "before the program start 2021-04-01" in capsys.readouterr().err
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "o"), "--tables-only"]) == 1
    assert "before the program start 2021-04-01" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["validate", str(data), "-p", "program_start=2021-03-01"]) == 0


def test_valid_but_tiny_data_end_cleanly(valid_fixture, tmp_path, capsys, private_cache):
    """30 students are valid but too few for most estimates: the whole run (figures,
    notebooks, report) completes, every estimate is suppressed, a robustness step that
    cannot be computed says why, and a figure with nothing to draw is left out."""
    runs = tmp_path / "runs"
    runs.mkdir()
    out = runs / "out"
    code = main(["run", "--data", str(valid_fixture), "--out", str(out), "-p", PROCEDURE_OVERRIDE])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err + captured.out
    es = pd.read_csv(out / "tables" / "event_study.csv")
    assert es["estimate"].isna().all() and es["suppressed"].all()
    robust = pd.read_csv(out / "tables" / "robust_estimator.csv")
    assert robust["note"].str.startswith("not estimable").all()
    assert sorted(p.name for p in runs.iterdir()) == ["out"]
    assert len(list((out / "notebooks").glob("*.ipynb"))) == len(notebook_paths())
    assert (out / "report" / "report.pdf").stat().st_size > 0
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert "event_study_all" in figures and not {"long_term", "forest_families"} & figures
    # the notebooks' kernels read what the run stored in its cache: had they looked in
    # data_raw/.cache they would have prepared the sample again and stored it there
    stored = [p.name for p in private_cache.glob("prepared-*")]
    assert len(stored) == 1 and any(private_cache.glob("result-*-event_study"))
    assert not (DATA_RAW / ".cache" / stored[0]).exists()


# --------------------------------------------------------------------------------------
# 2. No identifiers out
# --------------------------------------------------------------------------------------


def test_identifier_scan_finds_planted_identifiers(run_a, sim_ids, tmp_path):
    """The scanner itself works: ids planted in copies of output files are found."""
    sid = sorted(i for i in sim_ids.student_ids if not i.startswith("0"))[0]
    zero = sorted(i for i in sim_ids.student_ids if i.startswith("0") and i[1] != "0")[0]
    vid = sorted(sim_ids.visit_ids)[0]
    out = shutil.copytree(run_a, tmp_path / "copy")
    with open(out / "tables" / "event_study.csv", "a") as f:
        f.write(f"all,99,1.0,,,,{sid}0,,False\n")  # inside a longer run of digits
    (out / "provenance.json").write_text(json.dumps({"x": int(zero)}))  # leading zero lost
    svg = out / "figures" / "love_plot.svg"
    svg.write_text(svg.read_text().replace("</svg>", f"<!-- {vid} --></svg>"))
    (out / "report" / f"{vid}.html").write_text("")
    hits = scan_folder(out, sim_ids)
    assert hits["tables/event_study.csv"] == [sid]
    assert hits["provenance.json"] == [zero]
    assert hits["figures/love_plot.svg"] == [vid]
    assert hits[f"report/{vid}.html"] == [vid]
    assert scan_folder(run_a, sim_ids) == {}


def test_run_outputs_hold_no_identifier(run_a, sim_ids):
    files = listing(run_a)
    for kind in ("tables/event_study.csv", "figures/event_study_all.svg", "provenance.json"):
        assert kind in files
    assert "report/index.html" in files
    assert len(sim_ids.student_ids) > 1_000 and len(sim_ids.visit_ids) > 100
    assert scan_folder(run_a, sim_ids) == {}


ROW_LEVEL_COLUMNS = {
    "student",
    "student_id",
    "sasid",
    "unit",
    "visit_id",
    "treated_student",
    "comparison_student",
    "index",
}


def test_no_output_table_is_row_level(run_a, sim_ids):
    tables = sorted((run_a / "tables").glob("*.csv"))
    assert len(tables) == 14  # 8 + sensitivity, falsification, specifications,
    # pretrend_event_study, subgroup_tests, linearmodels_check
    n_visited = None
    for path in tables:
        frame = pd.read_csv(path)
        cols = {c.lower() for c in frame.columns}
        assert not cols & ROW_LEVEL_COLUMNS, (path.name, cols & ROW_LEVEL_COLUMNS)
        assert not any(c.startswith("unnamed") for c in cols), path.name  # no index column
        if path.name == "pretrend_tests.csv":
            n_visited = int(frame.loc[frame["group"] == "all", "n_treated"].iloc[0])
    # one row per student would be ~thousands of rows in the roster-sized tables
    assert n_visited is not None and n_visited >= 20
    for path in tables:
        assert len(pd.read_csv(path)) < len(sim_ids.student_ids), path.name


def _notebook_versions() -> list[tuple[str, str]]:
    """``(label, text)`` of every notebook in the working tree and at ``HEAD``."""
    versions = []
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        versions.append((f"notebooks/{nb.name}", nb.read_text(encoding="utf-8")))
        res = subprocess.run(
            ["git", "show", f"HEAD:notebooks/{nb.name}"],
            cwd=PROJECT_ROOT,
            env=_git_env(),
            capture_output=True,
            text=True,
        )
        if res.returncode == 0:  # not yet committed, or no git checkout: working tree only
            versions.append((f"HEAD:notebooks/{nb.name}", res.stdout))
    return versions


def test_committed_notebooks_hold_no_identifier():
    """Notebooks (as committed and as in the working tree) show no id of the demo data.

    Executed notebooks ran on the default demo data (``make notebooks``), so its ids are
    the ones to look for; a version with outputs must show that data's row count, else
    the scan would look for the wrong ids.
    """
    from leapresearch.data.simulate import SimulationConfig, simulate

    demo = simulate(SimulationConfig(scale="demo"))
    ids = SimIds(frozenset(demo.students["student_id"]), frozenset(demo.leap_visits["visit_id"]))
    versions = _notebook_versions()
    assert len(versions) >= 8
    for label, text in versions:
        assert find_identifiers(text, ids) == set(), label
        cells = json.loads(text)["cells"]
        if label.endswith("01_data_and_validation.ipynb") and any(c.get("outputs") for c in cells):
            n_rows = len(demo.attendance_monthly)  # printed as 893325 or 893,325
            assert re.search(rf"\b({n_rows}|{n_rows:,})\b", text), label


# --------------------------------------------------------------------------------------
# 3. Suppression end to end
# --------------------------------------------------------------------------------------


def _count_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c for c in frame.columns if c.startswith(COUNT_PREFIXES) and c not in NOT_STUDENT_COUNTS
    ]


def _estimate_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c in ESTIMATE_COLUMNS]


def test_published_tables_respect_the_thresholds(run_a):
    privacy = load_config("demo").privacy
    published = suppressed_rows = 0
    for path in sorted((run_a / "tables").glob("*.csv")):
        frame = pd.read_csv(path)
        counts = _count_columns(frame)
        for c in counts:
            v = frame[c].dropna()
            assert (v == v.round()).all(), (path.name, c)
            small = v[(v > 0) & (v < privacy.min_count)]
            assert small.empty, (path.name, c, small.tolist())
            assert (v >= 0).all(), (path.name, c)
        if counts or _estimate_columns(frame):
            assert "suppressed" in frame.columns, path.name
            assert frame["suppressed"].dtype == bool, path.name
            emptied = frame[counts].isna().any(axis=1)
            assert frame.loc[emptied, "suppressed"].all(), path.name
        if "n_treated" in frame.columns:
            few = frame["n_treated"].isna() | (frame["n_treated"] < privacy.min_treated)
            est = _estimate_columns(frame)
            assert est, path.name
            assert frame.loc[few, est].isna().all().all(), path.name
            assert frame.loc[few, "suppressed"].all(), path.name
            suppressed_rows += int(few.sum())
            published += int(frame.loc[~few, est].notna().any(axis=1).sum())
        if path.name == "matching_summary.csv":
            assert (frame.loc[frame["treated"].notna(), "treated"] >= privacy.min_group).all()
    # both sides of the rule are exercised by these data
    assert published > 100 and suppressed_rows > 100


def test_small_sample_outputs_give_away_no_count_of_one_to_five_students(run_small_full):
    """A 5% demo (50 visited students, rare categories with 1-5 of them): the generic
    attack of ``tests/disclosure.py`` recovers no count of 1 to 5 students from any table,
    notebook output, report page or PDF page (issue 26)."""
    from tests.disclosure import attack_run

    run = run_small_full
    balance = pd.read_csv(run / "tables" / "balance.csv")
    assert (balance["type"] == "binary").any() and balance["suppressed"].any()  # exercised
    notebooks = sorted((run / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 8 and (run / "report" / "report.pdf").exists()  # all attacked
    findings = attack_run(run)
    assert not findings, "\n".join(map(str, findings[:20]))


def test_matching_summary_has_no_single_recoverable_cell(run_a):
    """Complementary suppression: no total-and-parts relation with exactly one hidden cell."""
    frame = pd.read_csv(run_a / "tables" / "matching_summary.csv")
    relations = [
        ("treated", "matched", "unmatched"),
        (
            "unmatched",
            "unmatched_no_comparisons",
            "unmatched_outside_caliper",
            "unmatched_not_enrolled_or_no_data",
        ),
    ]
    for cells in relations:
        hidden = frame[list(cells)].isna().sum(axis=1)
        assert not (hidden == 1).any(), frame[list(cells)]
        published = frame.loc[hidden == 0, list(cells)]
        assert (published.iloc[:, 0] == published.iloc[:, 1:].sum(axis=1)).all()


def test_min_treated_above_everything_empties_every_estimate(run_a, run_strict):
    names = sorted(p.name for p in (run_a / "tables").glob("*.csv"))
    assert sorted(p.name for p in (run_strict / "tables").glob("*.csv")) == names
    checked = 0
    for name in names:
        frame = pd.read_csv(run_strict / "tables" / name)
        est = _estimate_columns(frame)
        if not est:
            continue
        assert "suppressed" in frame.columns, name
        assert len(frame) > 0, name
        assert frame[est].isna().all().all(), name
        if "n_treated" in frame.columns:
            assert frame["suppressed"].all(), name
        checked += 1
    # every table with estimates (all but balance and matching_summary), the four
    # identification tables, the robust estimator (suppressed on students) and the
    # linearmodels check included
    assert checked == 12


# --------------------------------------------------------------------------------------
# 4. Determinism
# --------------------------------------------------------------------------------------

VOLATILE_PROVENANCE = ("started", "finished", "timings_seconds", "command")
"""Keys of provenance.json that differ between the runs (times; the command names OUT)."""


def test_two_runs_give_identical_files(run_a, run_b):
    """Two processes (different PYTHONHASHSEED, different OUT names): the same bytes."""
    files = [f for f in listing(run_a) if (run_a / f).is_file()]
    assert files == [f for f in listing(run_b) if (run_b / f).is_file()]
    assert {"figures/love_plot.svg", "figures/event_study_all.png"} <= set(files)
    differ = [
        f
        for f in files
        if f != "provenance.json" and (run_a / f).read_bytes() != (run_b / f).read_bytes()
    ]
    assert differ == []
    prov_a = json.loads((run_a / "provenance.json").read_text())
    prov_b = json.loads((run_b / "provenance.json").read_text())
    for key in VOLATILE_PROVENANCE:
        assert key in prov_a
        prov_a.pop(key), prov_b.pop(key)
    assert prov_a == prov_b


def test_svg_figures_carry_the_stamp_and_no_date(run_a):
    svg = (run_a / "figures" / "event_study_all.svg").read_text()
    assert "leapresearch | vintage demo | commit" in svg
    assert "<dc:date>" not in svg


# --------------------------------------------------------------------------------------
# 5. Integrity of the inputs
# --------------------------------------------------------------------------------------


def test_matching_manifest_is_checked_and_recorded(sim_data, run_a):
    expected = check_manifest(sim_data)
    assert expected is not None
    assert set(expected) == {"students.csv", "attendance_monthly.csv", "leap_visits.csv"}
    inputs = json.loads((run_a / "provenance.json").read_text())["inputs"]
    assert {r["file"]: r["sha256"] for r in inputs.values()} == expected


def _copy_data(sim_data: Path, target: Path) -> Path:
    return shutil.copytree(sim_data, target)


def test_mismatched_manifest_refuses_the_run(sim_data, tmp_path):
    data = _copy_data(sim_data, tmp_path / "data")
    path = data / "leap_visits.csv"
    raw = bytearray(path.read_bytes())
    k = raw.rindex(b"2022-")  # one byte of a visit date, after the manifest was written
    raw[k + 3] = ord("3") if raw[k + 3] != ord("3") else ord("1")
    path.write_bytes(bytes(raw))
    runs = tmp_path / "runs"
    runs.mkdir()
    res = run_cli("run", "--data", data, "--out", runs / "out", "--tables-only")
    assert res.returncode == 1
    assert "Traceback" not in res.stdout + res.stderr
    assert "leap_visits.csv: sha256 differs from checksums.sha256" in res.stderr
    assert "students.csv" not in res.stderr  # the unchanged files are not blamed
    assert listing(runs) == []


def test_manifest_problems_name_the_file(sim_data, tmp_path):
    data = _copy_data(sim_data, tmp_path / "data")
    (data / "students.csv").unlink()
    with pytest.raises(RunError, match="students.csv: listed in checksums.sha256 but missing"):
        check_manifest(data)
    (data / MANIFEST).write_text("not a checksum line with four fields\n")
    with pytest.raises(RunError, match="line 1"):
        check_manifest(data)
    (data / MANIFEST).unlink()
    assert check_manifest(data) is None


def _fake_evaluation(tables=None, config=None, **_) -> SimpleNamespace:
    """A stand-in for the slow evaluation (same signature): one small publishable table."""
    table = pd.DataFrame(
        {"group": ["all", "all"], "rel_time": [0, 1], "estimate": [1.5, 2.5], "n_treated": [50, 3]}
    )
    return SimpleNamespace(
        prepared=SimpleNamespace(timings={}, config=config),
        tables={"naive_pre_post": table},
        event_studies={},
    )


def _config_for(data: Path):
    return load_config("demo", data_dir=data)


def test_input_changed_during_the_run_is_refused(valid_fixture, tmp_path, monkeypatch):
    data = shutil.copytree(valid_fixture, tmp_path / "data")
    runs = tmp_path / "runs"
    old = runs / "out"
    (old / "tables").mkdir(parents=True)
    (old / "provenance.json").write_text('{"old": true}\n')
    before = listing(runs)

    def evaluate_while_someone_edits(
        tables, config, log=None, workers=1, scheduler=None, built=None, notebook_steps=True
    ):
        with open(data / "students.csv", "a") as f:
            f.write("\n")
        return _fake_evaluation(tables, config)

    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", evaluate_while_someone_edits)
    with pytest.raises(RunError, match="input files changed while the run was going: students"):
        run_report(
            data, old, config=_config_for(data), overwrite=True, log=lambda _: None, use_cache=False
        )
    assert listing(runs) == before
    assert (old / "provenance.json").read_text() == '{"old": true}\n'


# --------------------------------------------------------------------------------------
# 6. Atomic output
# --------------------------------------------------------------------------------------


@pytest.fixture
def failing_figures(monkeypatch):
    """Replace the evaluation by a fast stand-in and make the figure step fail.

    Records what the temporary run folder held when the failure happened.
    """
    seen: dict[str, list[str]] = {}

    def fail(evaluation, out_dir, config):
        seen["tmp"] = listing(out_dir)
        seen["name"] = [Path(out_dir).name]
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    monkeypatch.setattr(leapresearch.publish.report, "write_figures", fail)
    return seen


def test_failed_step_leaves_no_folder(
    valid_fixture, tmp_path, capsys, failing_figures, private_cache
):
    runs = tmp_path / "runs"
    runs.mkdir()
    args = ["--data", str(valid_fixture), "--out", str(runs / "out"), "--no-notebooks"]
    code = main(["run", *args, "-p", PROCEDURE_OVERRIDE])
    err = capsys.readouterr().err
    assert code == 1
    assert "No space left on device" in err
    # the failure came after tables had been written into the hidden temporary folder
    assert "tables/naive_pre_post.csv" in failing_figures["tmp"]
    assert failing_figures["name"][0].startswith(".out.tmp-")
    assert listing(runs) == []


def test_failed_overwrite_keeps_the_earlier_run(
    valid_fixture, tmp_path, capsys, monkeypatch, private_cache
):
    runs = tmp_path / "runs"
    out = runs / "out"
    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    base = ["run", "--data", str(valid_fixture), "--out", str(out)]
    assert main([*base, "--tables-only"]) == 0
    capsys.readouterr()
    before = {f: (out / f).read_bytes() for f in listing(out) if (out / f).is_file()}
    assert "provenance.json" in before and "tables/naive_pre_post.csv" in before
    entries = listing(runs)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(leapresearch.publish.report, "write_figures", fail)
    assert main([*base, "--no-notebooks", "--overwrite"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert listing(runs) == entries  # no temporary or trash folder left either
    assert {f: (out / f).read_bytes() for f in before} == before


@pytest.mark.parametrize("error", [RuntimeError("bug in a figure"), KeyboardInterrupt()])
def test_any_interruption_leaves_nothing(valid_fixture, tmp_path, monkeypatch, error):
    """An unexpected exception or Ctrl-C propagates, and the temporary folder is gone."""
    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    runs = tmp_path / "runs"
    runs.mkdir()

    def write_outputs(evaluation, tmp, config, log):
        assert (tmp / "tables" / "naive_pre_post.csv").exists()
        raise error

    with pytest.raises(type(error)):
        run_report(
            valid_fixture,
            runs / "out",
            config=_config_for(valid_fixture),
            log=lambda _: None,
            write_outputs=write_outputs,
            use_cache=False,
        )
    assert listing(runs) == []


def test_failure_while_publishing_restores_the_earlier_run(valid_fixture, tmp_path, monkeypatch):
    """Even the last step (renaming the finished folder into place) cannot lose OUT."""
    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    runs = tmp_path / "runs"
    out = runs / "out"
    (out / "tables").mkdir(parents=True)
    (out / "provenance.json").write_text('{"old": true}\n')
    before = listing(runs)
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".out.tmp-"):
            raise PermissionError(13, "Permission denied (simulated)")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        run_report(
            valid_fixture,
            out,
            config=_config_for(valid_fixture),
            overwrite=True,
            log=lambda _: None,
            use_cache=False,
        )
    assert listing(runs) == before
    assert (out / "provenance.json").read_text() == '{"old": true}\n'


# --------------------------------------------------------------------------------------
# 7. Data never staged
# --------------------------------------------------------------------------------------

CHECK = PROJECT_ROOT / "scripts" / "check_no_data_staged.py"


def _git_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_CONFIG_NOSYSTEM="1",
        HOME=os.environ.get("HOME", "/tmp"),
    )
    return env


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=repo, env=_git_env(), capture_output=True, text=True, check=False
    )


def _check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), *args],
        cwd=repo,
        env=_git_env(),
        capture_output=True,
        text=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    assert _git(folder, "init", "-q").returncode == 0
    (folder / "data_raw").mkdir()
    (folder / "data_raw" / "README.md").write_text("contract\n")
    (folder / "analysis.py").write_text("print('hi')\n")
    return folder


def test_staged_data_file_is_refused(repo):
    (repo / "students.csv").write_text("student_id\n0012345678\n")
    assert _git(repo, "add", "analysis.py", "data_raw/README.md", "students.csv").returncode == 0
    res = _check(repo)
    assert res.returncode == 1
    assert "students.csv: data file type .csv" in res.stderr
    assert "analysis.py" not in res.stderr and "README.md" not in res.stderr


def test_clean_index_passes(repo):
    assert _git(repo, "add", "analysis.py", "data_raw/README.md").returncode == 0
    res = _check(repo)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    "path",
    [
        "x/visits.parquet",
        "book.XLSX",
        "survey.sav",
        "panel.dta",
        "t.feather",
        "session.pkl",
        "extract.csv.gz",
        "data_raw/2024-25/notes.txt",
        "data_raw/.cache/prepared-abc",
        "outputs/demo/provenance.json",
    ],
)
def test_every_kind_of_data_path_is_refused(repo, path):
    res = _check(repo, path)
    assert res.returncode == 1 and path in res.stderr


def test_allowed_paths_pass(repo):
    res = _check(repo, "data_raw/README.md", "outputs/README.md", "tests/fixtures.py", "a/b.md")
    assert res.returncode == 0, res.stderr


def test_only_the_pinned_public_data_set_passes(repo):
    """tests/data/mpdta.csv passes with its pinned bytes; other content at that path does not."""
    (repo / "tests" / "data").mkdir(parents=True)
    pinned = PROJECT_ROOT / "tests" / "data" / "mpdta.csv"
    shutil.copy2(pinned, repo / "tests" / "data" / "mpdta.csv")
    assert _check(repo, "tests/data/mpdta.csv").returncode == 0
    (repo / "tests" / "data" / "mpdta.csv").write_text("student_id\n0012345678\n")
    res = _check(repo, "tests/data/mpdta.csv")
    assert res.returncode == 1 and "not the public data set" in res.stderr
    (repo / "tests" / "data" / "other.csv").write_bytes(pinned.read_bytes())
    assert _check(repo, "tests/data/other.csv").returncode == 1  # pinned by path and content


def test_removing_a_data_file_from_git_is_allowed(repo):
    (repo / "old.csv").write_text("a\n1\n")
    assert _git(repo, "add", "old.csv").returncode == 0
    assert _git(repo, "commit", "-q", "--no-verify", "-m", "oops").returncode == 0
    assert _git(repo, "rm", "-q", "--cached", "old.csv").returncode == 0
    assert _check(repo).returncode == 0
    assert _check(repo, "--tracked").returncode == 0


def test_installed_hook_blocks_a_commit_with_data(repo):
    (repo / "scripts").mkdir()
    shutil.copy2(CHECK, repo / "scripts" / CHECK.name)  # the hook runs the repo's copy
    res = _check(repo, "--install")
    assert res.returncode == 0, res.stderr
    assert _git(repo, "add", "analysis.py", "scripts").returncode == 0
    ok = _git(repo, "commit", "-q", "-m", "code only")
    assert ok.returncode == 0, ok.stderr
    (repo / "students.parquet").write_bytes(b"PAR1")
    assert _git(repo, "add", "students.parquet").returncode == 0
    refused = _git(repo, "commit", "-q", "-m", "data")
    assert refused.returncode != 0
    assert "students.parquet" in refused.stderr
    assert _check(repo, "--install").returncode == 0  # re-installing our own hook is fine


def test_outside_a_repository_is_an_error(tmp_path):
    res = _check(tmp_path)
    assert res.returncode == 2 and "cannot ask git" in res.stderr


def test_repository_tracks_no_data_file():
    res = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, env=_git_env(), capture_output=True, text=True
    )
    assert res.returncode == 0
    tracked = res.stdout.splitlines()
    assert "leapresearch/cli.py" in tracked
    data = [
        p
        for p in tracked
        if re.search(r"\.(csv|tsv|parquet|pkl|pickle|feather|xlsx?|sav|dta)\b", p)
    ]
    # the one public data set (R `did`'s mpdta, tests/data/SOURCES.md), with its pinned bytes
    assert data == ["tests/data/mpdta.csv"]
    digest = hashlib.sha256((PROJECT_ROOT / data[0]).read_bytes()).hexdigest()
    assert digest in (PROJECT_ROOT / "tests" / "data" / "SOURCES.md").read_text()
    assert _check(PROJECT_ROOT, "--tracked").returncode == 0


# --------------------------------------------------------------------------------------
# Sanity of the shared artefacts
# --------------------------------------------------------------------------------------


def test_simulated_folder_is_the_small_demo(sim_data, sim_ids):
    assert sorted(p.name for p in sim_data.iterdir()) == [
        "SIMULATED.json",  # the simulator's marker
        "attendance_monthly.csv",
        MANIFEST,
        "leap_visits.csv",
        "students.csv",
    ]
    assert SIM_FRACTION < 1 and 1_000 < len(sim_ids.student_ids) < 10_000
    assert all(len(i) == 10 and i.isdigit() for i in sim_ids.student_ids)
    assert any(i.startswith("0") for i in sim_ids.student_ids)  # leading zeros are kept
