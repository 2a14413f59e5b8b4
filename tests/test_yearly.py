"""The yearly run an analyst does alone: ``new-year``, ``make report PARAMS=``, ``compare``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

import leapresearch.analysis.runner
import leapresearch.publish.report
from leapresearch.cli import build_parser, main
from leapresearch.config import load_config
from leapresearch.data.intake import MANIFEST_NAME, manifest_problems
from leapresearch.paths import PARAMS, PROJECT_ROOT
from leapresearch.publish.compare_runs import compare, headline_comparison

DEMO_FRONT_PAGE = (
    "A demonstration on synthetic data",
    "29 November 2026",
    "leapresearch maintainers",
    "2020-21 to 2022-23",
    "demonstration run",
)
"""What params/demo.yaml puts on the front page (none may reach another vintage's)."""


@pytest.fixture(scope="module")
def extract_year(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A year's extracts in the state layout (the simulated data of the suite, 5%)."""
    from leapresearch.data.state_extract import write_state_extract
    from tests.conftest import _simulated

    folder = tmp_path_factory.mktemp("year") / "2024-25"
    write_state_extract(_simulated(), folder)
    return folder


@pytest.fixture
def year(extract_year: Path, tmp_path: Path) -> Path:
    """A fresh copy of the extracts (new-year writes the manifest into the folder)."""
    return Path(shutil.copytree(extract_year, tmp_path / "data_2024-25"))


def _new_year(data: Path, params: Path, *extra: str) -> int:
    args = ["new-year", "2024-25", "--data", str(data), "--params-dir", str(params)]
    return main([*args, *extra])


# --------------------------------------------------------------------------------------
# new-year
# --------------------------------------------------------------------------------------


def test_new_year_writes_every_per_year_field_for_review(year, tmp_path, capsys):
    params = tmp_path / "params"
    code = _new_year(year, params, "--like", "example-extract", "--author", "A. Analyst")
    out = capsys.readouterr().out
    assert code == 0, out
    path = params / "2024-25.yaml"
    text = path.read_text()
    written = yaml.safe_load(text)
    report = written["report"]
    assert written["vintage"] == "2024-25"
    assert Path(written["data_dir"]) == year.resolve()
    assert report["title"] == "Did home visits raise attendance? Evaluation of the 2024-25 data"
    assert report["date"] == dt.date.today()
    assert report["authors"] == ["A. Analyst"] and report["organisation"] is None
    assert report["reviewed"] is False
    roster = pd.read_csv(year / "PSIS_OCTOBER_ROSTER.csv", dtype=str)
    years = sorted(roster["SCHOOL_YEAR"].str.strip().unique())
    assert report["school_years"] == f"{years[0]} to {years[-1]}"
    like = yaml.safe_load((PARAMS / "example-extract.yaml").read_text())
    assert written["input"] == like["input"]  # the mapping, quoted codes and all
    assert written["program_start"] == like["program_start"]
    # every per-year field is marked for review, and the manifest is listed
    for key in ("title:", "authors:", "organisation:", "date:", 'school_years: "'):
        line = next(x for x in text.splitlines() if x.strip().startswith(key))
        assert "# REVIEW" in line, line
    assert "# REVIEW the input mapping" in text and "# REVIEW the checksum manifest" in text
    expected, problems = manifest_problems(year)
    assert problems == [] and set(expected) == {p.name for p in year.iterdir()} - {MANIFEST_NAME}
    assert all(f"#   {digest}  {name}" in text for name, digest in expected.items())
    # it loads as any vintage does, and the run warns until the fields are reviewed
    config = load_config(path)
    assert config.report.reviewed is False and config.data_path == year.resolve()
    assert "report.school_years: " + report["school_years"] in out


def test_new_year_never_replaces_a_vintage_file(year, tmp_path, capsys):
    params = tmp_path / "params"
    assert _new_year(year, params, "--like", "example-extract") == 0
    before = (params / "2024-25.yaml").read_bytes()
    capsys.readouterr()
    assert _new_year(year, params, "--like", "example-extract", "--author", "B") == 1
    err = capsys.readouterr().err
    assert "exists; a vintage file is never replaced" in err and "Traceback" not in err
    assert (params / "2024-25.yaml").read_bytes() == before


def test_new_year_refuses_what_it_cannot_set_up(year, tmp_path, capsys):
    params = tmp_path / "params"
    # the state's layout without a mapping to read it
    assert _new_year(year, params) == 1
    assert "--like" in capsys.readouterr().err
    # a manifest that no longer matches the files
    (year / MANIFEST_NAME).write_text(f"{'0' * 64}  PSIS_OCTOBER_ROSTER.csv\n")
    assert _new_year(year, params, "--like", "example-extract") == 1
    err = capsys.readouterr().err
    assert "PSIS_OCTOBER_ROSTER.csv: sha256 differs" in err
    assert not (params / "2024-25.yaml").exists()
    assert main(["new-year", "../x", "--data", str(year), "--params-dir", str(params)]) == 1


# --------------------------------------------------------------------------------------
# A run of the new vintage: its front page is its own
# --------------------------------------------------------------------------------------


def fake_event_study(shift: dict[tuple[str, int], float] | None = None, se: float = 1.0):
    """An event-study table of three headline groups, months -12..12 (B - A: ``shift``)."""
    rows = []
    for g, base in (("all", 5.0), ("grade_band:PK-5", 4.0), ("grade_band:6-12", 6.0)):
        for t in range(-12, 13):
            est = 0.0 if t < 0 else base + 0.5 * t
            est += (shift or {}).get((g, t), 0.0)
            rows.append(
                {"group": g, "rel_time": t, "estimate": est, "std_error": se,
                 "ci_lower": est - 1.96 * se, "ci_upper": est + 1.96 * se,
                 "n_treated": 400, "n_comparison": 900, "p_value": 0.5,
                 "p_value_adjusted": 0.5}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _fake_tables() -> dict[str, pd.DataFrame]:
    matching = pd.DataFrame(
        {"cohort": ["2021-22", "2022-23"], "treated": [300, 100], "matched": [300, 98],
         "matched_outside_caliper": [40, 10], "unmatched": [0, 2], "comparisons": [700, 200]}
    )  # fmt: skip
    pretrends = pd.DataFrame(
        {"group": ["all", "all"], "basis": ["adjusted", "adjusted"],
         "months": ["<=-12..-2", "-24..-13"], "statistic": [0.8, 3.0], "df": [11, 12],
         "p_value": [0.64, 0.001], "n_treated": [400, 400]}
    )  # fmt: skip
    return {"event_study": fake_event_study(), "matching_summary": matching,
            "pretrend_tests": pretrends}  # fmt: skip


def test_a_new_vintage_runs_and_its_front_page_inherits_nothing_from_the_demo(
    year, tmp_path, capsys, monkeypatch, private_cache
):
    """new-year on an extract-layout simulation, then ``run --params`` (cheap evaluation)."""
    params = tmp_path / "params"
    assert _new_year(year, params, "--like", "example-extract") == 0
    capsys.readouterr()

    def fake_evaluation(tables=None, config=None, **_):
        return SimpleNamespace(
            prepared=SimpleNamespace(timings={}, config=config),
            tables=_fake_tables(),
            event_studies={},
        )

    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", fake_evaluation)
    monkeypatch.setattr(leapresearch.publish.report, "write_figures", lambda *a, **k: [])
    monkeypatch.setattr(leapresearch.publish.report, "write_pdf", lambda *a, **k: None)
    out = tmp_path / "outputs" / "2024-25"
    vintage = str(params / "2024-25.yaml")
    code = main(["run", "--params", vintage, "--out", str(out), "--no-notebooks"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "report.reviewed is false" in err
    page = (out / "report" / "index.html").read_text()
    written = yaml.safe_load(Path(vintage).read_text())["report"]
    assert written["title"] in page
    assert written["school_years"] in page
    assert dt.date.today().strftime("%-d %B %Y") in page
    assert "Synthetic data." in page  # the simulator's marker, carried by the extract layout
    assert "Draft: the title, date, school years and authors of vintage 2024-25" in page
    assert [s for s in DEMO_FRONT_PAGE if s in page] == []
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["vintage"] == "2024-25" and prov["simulated_inputs"] is True
    assert Path(prov["data_dir"]) == year.resolve()


def test_the_demo_front_page_fields_are_what_the_test_above_looks_for():
    """The strings the test above excludes are the demo's (so their absence means something)."""
    report = load_config("demo").report
    assert DEMO_FRONT_PAGE[0] in report.title
    assert report.date.strftime("%-d %B %Y") == DEMO_FRONT_PAGE[1]
    assert report.authors == (DEMO_FRONT_PAGE[2],)
    assert report.school_years == DEMO_FRONT_PAGE[3]
    assert DEMO_FRONT_PAGE[4] in report.organisation
    from leapresearch.publish.frontpage import title_block

    demo = title_block(load_config("demo"), fake_event_study(), simulated=True)
    assert "Draft" not in demo and report.title in demo  # reviewed (the default): no draft note


def _make(*args: str) -> str:
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-o", "setup", "-o", "demo-data", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return res.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_report_with_a_vintage_uses_its_data_and_output_folders():
    recipe = _make("report", "PARAMS=2024-25")
    assert "leapresearch validate  --params 2024-25" in recipe
    run = next(line for line in recipe.splitlines() if "leapresearch run" in line)
    assert "--data" not in run and "demo" not in recipe  # run's defaults: data_dir, outputs/2024-25
    assert "--out" not in recipe
    demo = _make("report")
    assert "validate data_raw/demo" in demo and "--out outputs/demo" in demo
    given = _make("report", "PARAMS=x", "DATA=data_raw/x", "OUT=outputs/x")
    assert "--data data_raw/x" in given and "--out outputs/x" in given
    lab = _make("lab", "VINTAGE=2024-25")
    assert '-p vintage "2024-25"' in lab and "--notebook-dir=outputs/lab/2024-25" in lab


# --------------------------------------------------------------------------------------
# compare: the director's page
# --------------------------------------------------------------------------------------


def _fake_run(folder: Path, *, vintage: str, event_study: pd.DataFrame, **prov) -> Path:
    (folder / "tables").mkdir(parents=True)
    event_study.to_csv(folder / "tables" / "event_study.csv", index=False)
    for name, table in _fake_tables().items():
        if name != "event_study":
            table.to_csv(folder / "tables" / f"{name}.csv", index=False)
    params = load_config("demo").as_dict() | {"vintage": vintage}
    record = {
        "vintage": vintage,
        "parameters": params,
        "inputs": {"students": {"file": "students.csv", "sha256": vintage * 4}},
        "warnings": [],
        "simulated_inputs": True,
        "input_mapping": {"spec": params["input"], "changed": {}},
    } | prov
    (folder / "provenance.json").write_text(json.dumps(record, default=str))
    return folder


@pytest.fixture
def two_years(tmp_path: Path) -> tuple[Path, Path]:
    """Run A, and run B where grades PK-5 fell 8 pp at month 9 (SE 1 in both runs)."""
    a = _fake_run(tmp_path / "2023-24", vintage="2023-24", event_study=fake_event_study())
    mapping = load_config("example-extract").as_dict()["input"]
    params_b = load_config("demo", overrides=["matching.ratio=2"]).as_dict()
    params_b["vintage"] = "2024-25"
    b = _fake_run(
        tmp_path / "2024-25",
        vintage="2024-25",
        event_study=fake_event_study({("grade_band:PK-5", 9): -8.0, ("all", 1): 1.0}),
        parameters=params_b,
        input_mapping={"spec": mapping, "changed": {}},
        warnings=[{"message": "leap_visits.csv: 3 visits after the last month [kept]"}],
    )
    return a, b


def test_compare_writes_the_change_its_interval_and_the_flag(two_years, tmp_path, capsys):
    a, b = two_years
    out = tmp_path / "director" / "compare.md"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [
        "wrote",
        str(out),
        "wrote",
        str(out.with_suffix(".csv")),
    ]
    page = out.read_text()
    half = 1.959963984540054 * np.sqrt(2)  # normal quantile x sqrt(1^2 + 1^2)
    lo, hi = -8 - half, -8 + half
    assert f"{lo:.1f} to {hi:.1f}" == "-10.8 to -5.2"
    assert (
        "Grades PK-5, month 9: 8.0 pp lower in B (8.5 pp in A, 0.5 pp in B; 95% interval of "
        "the change -10.8 to -5.2 pp; Holm-adjusted p < 0.001)." in page
    )
    assert "1 of the 12 headline estimates compared changed" in page
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in page.splitlines()
            if line.startswith("| ")}  # fmt: skip
    assert rows[("Grades PK-5", "9")].rstrip().endswith("| Yes |")
    assert "| -8.0 | -10.8 to -5.2 |" in rows[("Grades PK-5", "9")]
    assert rows[("All visited students", "1")].rstrip().endswith("| No |")  # +1 pp: noise
    assert "treats the two runs' estimates as independent" in page
    assert "conservative" in page
    assert "matching.ratio: 3 → 2" in page
    assert "Input mapping: A reads the contract layout as it is; B maps a state layout" in page
    assert "Synthetic data: both runs read simulated inputs" in page
    assert "B: leap_visits.csv: 3 visits after the last month [kept]" in page
    assert "| Visited students | 400 | 400 |" in page
    csv = pd.read_csv(out.with_suffix(".csv"))
    row = csv.loc[(csv["group"] == "grade_band:PK-5") & (csv["rel_time"] == 9)].iloc[0]
    assert row["difference"] == pytest.approx(-8.0)
    assert row["std_error_difference"] == pytest.approx(np.sqrt(2), abs=1e-6)
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((lo, hi), abs=1e-6)
    assert bool(row["changed"]) and row["group_label"] == "Grades PK-5"
    assert int(csv["changed"].sum()) == 1
    html = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--out", str(html)]) == 0
    assert "-10.8 to -5.2" in html.read_text() and "<table" in html.read_text()


def test_compare_without_a_change_says_so(two_years):
    a, _ = two_years
    head = compare(a, a).head
    assert not head["changed"].any() and (head["difference"] == 0).all()
    page = compare(a, a).markdown()
    assert "None of the 12 headline estimates compared changed" in page
    assert "Both runs read the same input files" in page  # same students: test not informative


def test_holm_runs_over_the_headline_cells():
    """One cell 2.5 SE of the difference away: significant alone, not after Holm over 12."""
    b = fake_event_study({("all", 9): -2.5 * np.sqrt(2)})
    head = headline_comparison(fake_event_study(), b)
    cell = head.loc[(head["group"] == "all") & (head["rel_time"] == 9)].iloc[0]
    assert cell["p_value"] == pytest.approx(0.0124, abs=1e-4)
    assert cell["p_value_holm"] == pytest.approx(12 * cell["p_value"])
    assert cell["pointwise"] and not cell["changed"]


def test_compare_refuses_a_page_it_cannot_name(two_years, tmp_path, capsys):
    a, b = two_years
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "x.pdf")]) == 1
    assert ".md or .html" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_explains_every_option(command, capsys):
    parser = _commands()[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help text"
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert parser.description and parser.description.split()[0] in text
    for action in parser._actions:
        assert (action.option_strings or [action.metavar or action.dest])[0] in text
