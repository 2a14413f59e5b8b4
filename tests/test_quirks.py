"""validate and run agree on every extract quirk and every broken folder (issue 10).

Both commands call :func:`leapresearch.design.readiness.check_data`; these tests check
the property from the outside: for each folder of :mod:`tests.extract_quirks` and of
:mod:`tests.broken_inputs`, ``leapresearch validate`` and ``leapresearch run`` (in
process, the evaluation replaced by a fast stand-in once the check has passed) exit
alike, print the same violation lines and the same warnings, and never a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

import leapresearch.analysis.runner
from leapresearch.cli import main
from leapresearch.config import load_config
from leapresearch.data.simulate import SIMULATION_MARKER, read_marker
from leapresearch.design.readiness import check_data
from leapresearch.paths import PARAMS
from tests.broken_inputs import CASES, Expected
from tests.extract_quirks import QUIRK_NAMES, QUIRKS, Outcome
from tests.test_trust import ID_LIKE, _fake_evaluation

OUTCOMES = {name: outcome for name, _, outcome in QUIRKS}
BUILDERS = {name: build for name, build, _ in QUIRKS}


@pytest.fixture(scope="module")
def quirk_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures import make_valid_folder

    root = tmp_path_factory.mktemp("quirks")
    valid = make_valid_folder(root / "_valid")
    for name, build, _ in QUIRKS:
        build(valid, root / name)
    return root


def _params_file(folder: Path, params: dict, target: Path) -> Path:
    """A vintage file: params/demo.yaml with the case's keys over it, data_dir = folder."""
    data = yaml.safe_load((PARAMS / "demo.yaml").read_text())
    data.update(params, vintage="quirk", data_dir=str(folder))
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def _cli_both(folder: Path, params: Path, tmp_path: Path, capsys, extra=()) -> dict:
    """Run validate then run; what each printed, split into violations and warnings."""
    out: dict = {}
    for cmd, args in (
        ("validate", ["validate", str(folder), "--params", str(params), *extra]),
        (
            "run",
            [
                "run",
                "--data",
                str(folder),
                "--params",
                str(params),
                "--out",
                str(tmp_path / "run"),
                "--tables-only",
                *extra,
            ],
        ),
    ):
        code = main(args)
        cap = capsys.readouterr()
        text = cap.out + cap.err
        assert "Traceback" not in text
        assert not ID_LIKE.findall(text), f"an identifier reached the terminal:\n{text}"
        out[cmd] = {
            "code": code,
            "violations": [ln.strip()[2:] for ln in cap.err.splitlines() if ln.startswith("  - ")],
            "warnings": [
                ln[len("warning: ") :] for ln in text.splitlines() if ln.startswith("warning: ")
            ],
        }
    return out


def _assert_agree(seen: dict) -> None:
    v, r = seen["validate"], seen["run"]
    assert v["code"] == r["code"], seen
    assert v["violations"] == r["violations"]
    assert v["warnings"] == r["warnings"]


def _assert_outcome(check, outcome: Outcome) -> None:
    violations = [str(v) for v in check.violations]
    if outcome.kind == "refused":
        hits = [
            v
            for v in check.violations
            if v.file == outcome.file and v.column == outcome.column and outcome.text in v.rule
        ]
        assert hits, f"no violation {outcome} among:\n" + "\n".join(violations)
        if outcome.rows is not None:
            assert hits[0].rows == outcome.rows
        for value in outcome.values:
            assert value in hits[0].rule, (value, hits[0].rule)
        return
    assert check.ok, "\n".join(violations)
    if outcome.kind == "warned":
        hits = [
            w
            for w in check.warnings
            if w.file == outcome.file and w.column == outcome.column and outcome.text in w.issue
        ]
        assert hits, f"no warning {outcome} among:\n" + "\n".join(map(str, check.warnings))
        assert hits[0].handling == outcome.handling
        if outcome.rows is not None:
            assert hits[0].rows == outcome.rows
    elif outcome.kind == "accepted":
        assert check.warnings == ()
        assert check.mapping["changed"] == {}


def test_the_corpus_is_large_and_covers_every_outcome():
    kinds = [o.kind for o in OUTCOMES.values()]
    assert len(QUIRKS) >= 30
    assert {"accepted", "mapped", "warned", "refused"} <= set(kinds)


@pytest.mark.parametrize("name", QUIRK_NAMES)
def test_quirk_outcome_and_validate_run_agree(
    name, quirk_root, tmp_path, capsys, monkeypatch, private_cache
):
    outcome, folder = OUTCOMES[name], quirk_root / name
    params = _params_file(folder, outcome.params, tmp_path / "quirk.yaml")
    check = check_data(folder, load_config(params))
    _assert_outcome(check, outcome)
    if outcome.kind == "mapped":
        assert "input" in outcome.params
        assert check.mapping["spec"] == load_config(params).as_dict()["input"]

    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    seen = _cli_both(folder, params, tmp_path, capsys)
    _assert_agree(seen)
    assert seen["validate"]["code"] == (1 if outcome.kind == "refused" else 0)
    assert seen["validate"]["violations"] == [str(v) for v in check.violations]
    assert seen["validate"]["warnings"] == [str(w) for w in check.warnings]
    if outcome.kind == "refused":
        assert not (tmp_path / "run").exists()
    else:
        provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
        assert [w["message"] for w in provenance["warnings"]] == seen["validate"]["warnings"]
        assert provenance["input_mapping"] == check.mapping


@pytest.mark.parametrize("name", [name for name, _, _ in CASES])
def test_broken_folder_validate_and_run_agree(name, tmp_path, capsys, monkeypatch, private_cache):
    """The property over the broken-input corpus: same refusal, same message."""
    from tests.fixtures import make_valid_folder

    build, expected = next((b, e) for n, b, e in CASES if n == name)
    valid = make_valid_folder(tmp_path / "valid")
    folder = tmp_path / name
    build(valid, folder)
    start = (expected.program_start or load_config("demo").program_start).isoformat()
    params = _params_file(folder, {"program_start": start}, tmp_path / "p.yaml")
    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    seen = _cli_both(folder, params, tmp_path, capsys)
    _assert_agree(seen)
    assert seen["validate"]["code"] == 1
    assert any(_names(line, expected) for line in seen["validate"]["violations"])


def _names(line: str, expected: Expected) -> bool:
    column = f"column {expected.column}: " if expected.column else ""
    return line.startswith(f"{expected.file}: {column}") and expected.rule in line


def test_messages_name_every_offending_code_up_to_twenty(tmp_path):
    from tests.broken_inputs import set_cells
    from tests.fixtures import make_valid_folder

    valid = make_valid_folder(tmp_path / "valid")
    codes = {k: f"G{k:02d}" for k in range(25)}
    set_cells("students", "grade", codes)(valid, tmp_path / "many")
    check = check_data(tmp_path / "many", load_config("demo"))
    rule = next(v.rule for v in check.violations if v.column == "grade")
    shown = re.findall(r"'G\d\d'", rule)
    assert len(shown) == 20 and "and 5 more distinct values" in rule


# --------------------------------------------------------------------------------------
# The worked example: the state-extract layout through params/example-extract.yaml
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extract_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated data of ``sim_data`` written in the state-extract layout."""
    from leapresearch.data.state_extract import EXTRACT_FILES, write_state_extract
    from tests.conftest import _simulated

    folder = tmp_path_factory.mktemp("extract") / "data"
    written = write_state_extract(_simulated(), folder)
    assert sorted(p.name for p in written) == sorted([*EXTRACT_FILES.values(), SIMULATION_MARKER])
    return folder


def test_the_extract_layout_carries_the_simulation_marker(
    extract_data, tmp_path, capsys, monkeypatch, private_cache
):
    """Every layout ``simulate`` writes is marked synthetic, and a run on it says so."""
    from leapresearch.data.state_extract import EXTRACT_FILES

    assert sorted(p.name for p in extract_data.iterdir()) == sorted(
        [*EXTRACT_FILES.values(), SIMULATION_MARKER]
    )
    marker = read_marker(extract_data)
    assert marker is not None and marker["simulated"] is True
    assert marker["layout"] == "extract"
    assert marker["files"] == sorted(EXTRACT_FILES.values())

    monkeypatch.setattr(leapresearch.analysis.runner, "evaluate", _fake_evaluation)
    out = tmp_path / "run"
    args = ["--params", "example-extract", "--out", str(out), "--tables-only"]
    assert main(["run", "--data", str(extract_data), *args]) == 0, capsys.readouterr().err
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["simulated_inputs"] is True
    assert provenance["simulation_marker"] == marker


@pytest.mark.parametrize(
    ("renamed", "found"),
    [
        ("Collection_Month", "found Collection_Month, which differs only in case or spaces"),
        ("COLL_MONTH", "found COLL_MONTH, the closest column of the file"),
        ("PERIOD", "no column of the file is like it"),
    ],
)
def test_a_missing_mapped_column_is_named_as_the_file_and_the_mapping_name_it(
    extract_data, tmp_path, capsys, renamed, found
):
    """A renamed extract column: the message names the file's column, the mapping key and
    the column found, not the contract's ``month``."""
    folder = tmp_path / "data"
    shutil.copytree(extract_data, folder)
    path = folder / "MONTHLY_MEMBERSHIP_ATTENDANCE.csv"
    header, body = path.read_text().split("\n", 1)
    assert "COLLECTION_MONTH" in header.split(",")
    path.write_text(header.replace("COLLECTION_MONTH", renamed) + "\n" + body)

    assert main(["validate", str(folder), "--params", "example-extract"]) == 1
    err = capsys.readouterr().err
    assert (
        "  - MONTHLY_MEMBERSHIP_ATTENDANCE.csv: column COLLECTION_MONTH: required column is "
        "missing: expected COLLECTION_MONTH, mapped to month by input.attendance_monthly.rename; "
        f"{found} (rename the column in the file, or the key in the vintage file)"
    ) in err.splitlines()
    assert "column month:" not in err


def test_simulate_in_the_extract_layout_writes_the_marker(tmp_path, capsys):
    """The command line: ``leapresearch simulate --layout extract`` marks its folder too."""
    out = tmp_path / "data"
    assert main(["simulate", "--out", str(out), "--layout", "extract", "--seed", "3"]) == 0
    printed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert printed[-1] == str(out / SIMULATION_MARKER)
    assert read_marker(out)["layout"] == "extract"


def test_extract_layout_is_what_the_issue_describes(extract_data):
    roster = (extract_data / "PSIS_OCTOBER_ROSTER.csv").read_text().splitlines()
    header = roster[0].split(",")
    assert "SASID" in header and all(h == h.upper() for h in header)
    body = "\n".join(roster[1:])
    for code in (",KG,", ",01,", ",12,", ",Y,", ",N,", ",F,", ",R,", "NULL"):
        assert code in body, code
    visits = (extract_data / "LEAP_VISIT_LOG.csv").read_text()
    assert re.search(r",\d\d/\d\d/20\d\d,", visits)
    # the canonical contract refuses it as it is, naming the cause
    check = check_data(extract_data, load_config("demo", data_dir=extract_data))
    assert not check.ok
    assert (
        "holds LEAP_VISIT_LOG.csv, MONTHLY_MEMBERSHIP_ATTENDANCE.csv, "
        "PSIS_OCTOBER_ROSTER.csv, which is not read" in str(check.violations[0])
    )
    assert "input: students: file:" in str(check.violations[0])


def test_extract_run_gives_tables_byte_identical_to_the_canonical_run(
    extract_data, run_a, cli_cache, tmp_path
):
    from tests.conftest import assert_ok, run_cli

    res = run_cli("validate", extract_data, "--params", "example-extract")
    assert_ok(res)
    out = tmp_path / "run"
    res = run_cli(
        "run",
        "--data",
        extract_data,
        "--params",
        "example-extract",
        "--out",
        out,
        "--no-notebooks",
        cache_dir=cli_cache,
    )
    assert_ok(res)
    assert (
        "warning: PSIS_OCTOBER_ROSTER.csv: 1 column not in the data contract: EXIT_DATE"
        in res.stdout
    )
    tables = sorted(p.relative_to(out / "tables") for p in (out / "tables").rglob("*"))
    assert tables == sorted(p.relative_to(run_a / "tables") for p in (run_a / "tables").rglob("*"))
    for rel in tables:
        if (out / "tables" / rel).is_file():
            assert (out / "tables" / rel).read_bytes() == (run_a / "tables" / rel).read_bytes(), rel
    provenance = json.loads((out / "provenance.json").read_text())
    changed = provenance["input_mapping"]["changed"]
    assert changed["students"]["grade"]["recoded"] > 0
    n_visits = len((extract_data / "LEAP_VISIT_LOG.csv").read_text().splitlines()) - 1
    assert changed["leap_visits"]["visit_date"]["dates"] == n_visits
    assert provenance["input_mapping"]["spec"]["students"]["file"] == "PSIS_OCTOBER_ROSTER.csv"
    # the extract layout is simulated too: the front page carries the synthetic-data banner
    assert provenance["simulated_inputs"] is True
    assert "Synthetic data." in (out / "report" / "index.html").read_text(encoding="utf-8")
    assert [w["handling"] for w in provenance["warnings"]] == ["ignored"]
