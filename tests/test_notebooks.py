"""Repository rules for the notebooks, their parameters, and the reviewers' Jupyter server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from leapresearch.config import Config
from leapresearch.paths import DEMO_DATA, NOTEBOOKS, PROJECT_ROOT
from leapresearch.publish.report import notebook_paths

NOTEBOOK_FILES = notebook_paths()
FILE_IO = re.compile(
    r"\bopen\(|\.to_csv\(|\.to_parquet\(|\.write_text\(|\.write_bytes\(|savefig\(|"
    r"read_csv\(|read_parquet\(|\bPath\("
)
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(/(home|work|tmp|Users|root)/|[A-Za-z]:\\\\)")


def code_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


def parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cells


def test_there_are_numbered_notebooks():
    assert len(NOTEBOOK_FILES) >= 8
    assert [p.name[:2] for p in NOTEBOOK_FILES] == [f"{i:02d}" for i in range(1, 9)]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_one_parameters_cell_with_typed_documented_defaults(path):
    cells = parameters_cell(path)
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    params = PythonTranslator.inspect(cells[0])
    names = [p.name for p in params]
    assert names == ["vintage", "data_dir", "overrides"]
    for p in params:
        assert p.inferred_type_name != "None", f"{p.name} needs a type annotation"
        assert p.help, f"{p.name} needs a comment saying what it is"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_parameters_are_parameter_file_keys(path):
    fields = set(Config.model_fields)
    params = {p.name for p in PythonTranslator.inspect(parameters_cell(path)[0])}
    # vintage and data_dir are keys of the vintage files; overrides carry dotted keys
    assert params - {"overrides"} <= fields
    source = "".join(c.source for c in code_cells(path))
    assert "nb.open_session(vintage, data_dir=data_dir or None, overrides=overrides)" in source


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_cells_are_thin_and_do_no_io(path):
    for i, cell in enumerate(code_cells(path)):
        src = cell.source
        assert not re.search(r"^\s*(def|class|lambda)\b", src, re.M), f"cell {i} defines logic"
        assert not FILE_IO.search(src), f"cell {i} does file I/O: {src!r}"
        assert not ABSOLUTE_PATH.search(src), f"cell {i} has an absolute path"
        assert len(src.strip().splitlines()) <= 12, f"cell {i} is longer than a screen"
        assert "import os" not in src and "environ" not in src


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_narrative_outweighs_code_and_results_are_checked(path):
    nb = nbformat.read(path, as_version=4)
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(md) >= 3
    assert md[0].source.startswith("# "), "a title first"
    assert "What this notebook answers" in md[0].source
    if path.stem != "01_data_and_validation":
        assert any("NBVAL_CHECK_OUTPUT" in c.source for c in code_cells(path))


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_outputs_have_no_errors_ids_or_rows(path):
    for i, cell in enumerate(code_cells(path)):
        assert cell.get("execution_count") is not None, f"cell {i} was not executed"
        text = json.dumps(cell.get("outputs", []))
        assert '"output_type": "error"' not in text
        assert '"name": "stderr"' not in text, f"cell {i} printed to stderr"
        assert not re.search(r"(?<![\d.])\d{10}(?![\d.])", text), f"cell {i}: 10-digit number"
        assert "student_id" not in text


def test_papermill_runs_a_notebook_with_other_parameters(tmp_path):
    """Non-default parameters reach the analysis: a 1:1 match gives other comparison counts."""
    import papermill as pm

    assert (DEMO_DATA / "students.csv").exists(), "run `make demo-data` first (make test does)"
    out = tmp_path / "02.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "02_comparison_group_and_balance.ipynb"),
        str(out),
        parameters={"overrides": ["matching.ratio=1", "matching.caliper=0.1"]},
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
    )
    executed = nbformat.read(out, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "matching.ratio=1" in injected[0].source
    assert executed.metadata["papermill"]["parameters"]["overrides"] == [
        "matching.ratio=1",
        "matching.caliper=0.1",
    ]
    committed = nbformat.read(NOTEBOOKS / "02_comparison_group_and_balance.ipynb", as_version=4)

    def summary_text(nb):
        cell = next(c for c in nb.cells if "session.result(matching_summary)" in c.source)
        return cell.outputs[0]["data"]["text/plain"]

    assert summary_text(executed) != summary_text(committed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_server_serves_the_notebooks():
    port = free_port()
    token = "leapresearch-test"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--notebook-dir={NOTEBOOKS}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    listing = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        assert {p.name for p in NOTEBOOK_FILES} <= names
        nb_url = f"http://127.0.0.1:{port}/api/contents/03_event_study.ipynb?token={token}"
        with urllib.request.urlopen(nb_url, timeout=10) as r:
            model = json.loads(r.read())
        assert model["type"] == "notebook" and model["content"]["cells"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
