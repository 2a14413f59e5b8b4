"""The ``leapresearch`` command line: simulate, validate, run, compare, and bad arguments."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leapresearch.cli import main
from tests.conftest import STRICT_OVERRIDES, assert_ok, listing, run_cli

SUMMARY_KEYS = (
    "students",
    "student_years",
    "school_years",
    "districts",
    "months_with_data",
    "first_month",
    "last_month",
    "attendance_rows",
    "visits",
    "completed_visits",
    "students_with_completed_visit",
    "cohorts",
)


def test_validate_prints_the_summary_of_a_valid_folder(sim_data, sim_ids):
    res = run_cli("validate", sim_data)
    assert_ok(res)
    lines = res.stdout.splitlines()
    assert lines[0] == f"{sim_data}: valid (raw-data contract v1)"
    keys = [line.split(":")[0] for line in lines[1:] if not line.startswith(" ")]
    assert keys == list(SUMMARY_KEYS)
    assert f"students: {len(sim_ids.student_ids):,}" in lines
    assert f"visits: {len(sim_ids.visit_ids):,}" in lines
    attendance = pd.read_csv(sim_data / "attendance_monthly.csv", usecols=["month"])
    assert f"attendance_rows: {len(attendance):,}" in lines
    assert f"first_month: {attendance['month'].min()}" in lines
    assert res.stderr == ""


def test_simulate_writes_three_tables_and_the_truth_elsewhere(tmp_path):
    out, truth = tmp_path / "data", tmp_path / "truth" / "demo.json"
    res = run_cli("simulate", "--out", out, "--scale", "demo", "--seed", "11", "--truth", truth)
    assert_ok(res)
    assert sorted(p.name for p in out.iterdir()) == [
        "SIMULATED.json",  # the marker: reports on these data say they are synthetic
        "attendance_monthly.csv",
        "leap_visits.csv",
        "students.csv",
    ]
    assert json.loads(truth.read_text())["schema"] == "leapresearch-truth/1"
    assert [line.split()[-1] for line in res.stdout.splitlines()] == [
        str(out / "students.csv"),
        str(out / "attendance_monthly.csv"),
        str(out / "leap_visits.csv"),
        str(out / "SIMULATED.json"),
        str(truth),
    ]


def test_simulate_refuses_the_truth_inside_the_data_folder(tmp_path, capsys):
    out = tmp_path / "data"
    code = main(["simulate", "--out", str(out), "--truth", str(out / "truth.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: truth_path ") and "inside the data folder" in err
    assert not out.exists()  # refused before anything was written


def test_simulate_refuses_bad_arguments_cleanly(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "d"), "--seed", "-1"]) == 1
    assert "seed must be a non-negative integer" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["simulate", "--out", str(tmp_path / "file")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_run_refuses_an_existing_folder_without_overwrite(sim_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "provenance.json").write_text('{"earlier": true}\n')
    before = listing(tmp_path)
    res = run_cli("run", "--data", sim_data, "--out", out, "--tables-only")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"{out} exists" in res.stderr and "--overwrite" in res.stderr
    assert listing(tmp_path) == before
    assert (out / "provenance.json").read_text() == '{"earlier": true}\n'


def test_a_run_folder_holds_the_outputs(run_a, sim_data):
    files = set(listing(run_a))
    tables = {
        "balance",
        "event_study",
        "long_term",
        "matching_summary",
        "naive_pre_post",
        "placebo",
        "pretrend_tests",
        "robust_estimator",
        "subgroup_tests",
    }
    assert {f"tables/{t}.csv" for t in tables} <= files
    figures = ("event_study_all", "event_study_grade_bands", "forest_subgroups", "love_plot")
    assert {f"figures/{f}.{e}" for f in figures for e in ("png", "svg")} <= files
    assert {"provenance.json", "report/index.html"} <= files
    assert not any(f.startswith("notebooks") for f in files)  # --no-notebooks
    prov = json.loads((run_a / "provenance.json").read_text())
    assert prov["schema"] == "leapresearch-provenance/1"
    assert prov["data_dir"] == sim_data.resolve().as_posix()  # outside the project
    assert prov["machine"]["cpu"] and prov["machine"]["blas"]
    assert all(b["internal_api"] and b["architecture"] for b in prov["machine"]["blas"])
    assert len(prov["parameters_sha256"]) == 64


def test_compare_identical_runs(run_a, run_b):
    res = run_cli("compare", run_a, run_b)
    assert_ok(res)
    out = res.stdout
    assert "## Headline estimates (percentage points of attendance)" in out
    table = out.split("## Headline estimates")[1].split("\n\n")[1].splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")][:5] == [
        "Group",
        "Month",
        "A (pp)",
        "B (pp)",
        "Change B - A (pp)",
    ]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    all_rows = [r for r in rows if r[0] == "All visited students"]
    assert [r[1] for r in all_rows] == ["1", "3", "6", "9"]
    assert all(r[4] == "+0.0" and r[-1] == "No" for r in all_rows)  # same data, same parameters
    compared = sum(1 for r in rows if r[2] != "‡" and r[3] != "‡")
    assert f"None of the {compared} headline estimates compared changed" in out
    assert "Design parameters: identical." in out
    assert "Input files: identical (same sha256)" in out


def test_compare_lists_a_changed_parameter(run_a, run_strict):
    res = run_cli("compare", run_a, run_strict)
    assert_ok(res)
    assert "- matching.ratio: 3 → 2" in res.stdout
    assert "- privacy.min_treated: 20 → 100000" in res.stdout
    assert "Design parameters: identical." not in res.stdout
    assert {o.split("=")[0] for o in STRICT_OVERRIDES} == {"matching.ratio", "privacy.min_treated"}


def test_compare_refuses_a_folder_that_is_not_a_run(run_a, tmp_path):
    res = run_cli("compare", run_a, tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "is not a finished leapresearch run" in res.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("matching.ratioo=2", "matching.ratioo"),
        ("privacy.min_count=many", "privacy.min_count"),
        ("matching.ratio=0", "matching.ratio"),
        ("nonsense", "'nonsense'"),
        ("matching.exact=[district", "matching.exact=[district"),
    ],
)
def test_bad_parameter_is_refused_with_its_key(override, named, sim_data, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--data", str(sim_data), "--out", str(out), "-p", override])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and named in err
    assert not out.exists() and listing(tmp_path) == []


def test_bad_parameter_through_the_real_command(sim_data, tmp_path):
    res = run_cli("run", "--data", sim_data, "--out", tmp_path / "o", "-p", "matching.ratioo=2")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "matching.ratioo: Extra inputs are not permitted" in res.stderr
    assert listing(tmp_path) == []


def test_validate_refuses_a_bad_program_start_cleanly(sim_data, capsys):
    assert main(["validate", str(sim_data), "--program-start", "2021-13-01"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --program-start '2021-13-01' is not a date YYYY-MM-DD")


def test_run_refuses_an_output_under_a_file(valid_fixture, tmp_path, capsys, private_cache):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    # the tiny fixture is valid; the folder problem is found before any estimation
    code = main(["run", "--data", str(valid_fixture), "--out", str(out), "--tables-only"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cannot write the run folder")
    assert listing(tmp_path) == ["file"]


def test_missing_data_folder_is_a_contract_message(tmp_path):
    res = run_cli("run", "--data", tmp_path / "nope", "--out", tmp_path / "o")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "the data folder does not exist" in res.stderr
    assert listing(tmp_path) == []
