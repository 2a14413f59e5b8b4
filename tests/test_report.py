"""A full run with notebooks: the HTML report opens in a browser, links resolve, provenance."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import nbformat
import pytest

from leapresearch.config import load_config
from leapresearch.paths import DEMO_DATA, PROJECT_ROOT
from leapresearch.pipeline import run_report
from leapresearch.publish.report import EXHIBITS, notebook_paths, report_writer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    assert (DEMO_DATA / "students.csv").exists(), "run `make demo-data` first (make test does)"
    out = tmp_path_factory.mktemp("run") / "demo"
    config = load_config("demo")
    run_report(
        DEMO_DATA,
        out,
        config=config,
        write_outputs=report_writer(vintage="demo"),
        log=lambda _: None,
    )
    return out


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src") and not a["src"].startswith("data:"):
            self.images.append(a["src"])


def test_run_folder_has_every_exhibit(run_dir):
    for _, _, file in EXHIBITS:
        assert (run_dir / file).exists(), file
    for nb in notebook_paths():
        assert (run_dir / "notebooks" / nb.name).exists()
        assert (run_dir / "report" / f"{nb.stem}.html").exists()
    assert not list(run_dir.parent.glob(".*tmp*")), "no temporary folder left behind"


def test_no_identifier_in_any_output_file(run_dir):
    """Executed notebooks and the HTML report included: no student or visit id anywhere."""
    from leapresearch.data.contract import read_raw_tables
    from tests.conftest import SimIds, scan_folder

    tables = read_raw_tables(DEMO_DATA)
    ids = SimIds(
        student_ids=frozenset(tables.students["student_id"]),
        visit_ids=frozenset(tables.leap_visits["visit_id"]),
    )
    assert len(ids.student_ids) > 1000
    assert scan_folder(run_dir, ids) == {}


def test_executed_notebooks_record_their_parameters(run_dir):
    nb = nbformat.read(run_dir / "notebooks" / "03_event_study.ipynb", as_version=4)
    params = nb.metadata["papermill"]["parameters"]
    assert params["vintage"] == "demo"
    assert params["data_dir"] == "data_raw/demo"  # relative to the project: no machine path
    assert PROJECT_ROOT / params["data_dir"] == DEMO_DATA


def test_every_internal_link_of_the_report_resolves(run_dir):
    for page in (run_dir / "report").glob("*.html"):
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for ref in parser.hrefs + parser.images:
            if re.match(r"^(https?:|mailto:|#)", ref):
                continue
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.exists(), f"{page.name}: broken link {ref}"


def test_report_opens_in_headless_chromium_with_every_figure_loaded(run_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed here (CI installs it)")
    index = run_dir / "report" / "index.html"
    probe = index.with_name("probe.html")
    script = (
        "<script>window.addEventListener('load', () => {"
        "const imgs = [...document.images];"
        "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
        "document.body.setAttribute('data-images', imgs.length + '/' + ok);});</script>"
    )
    probe.write_text(index.read_text().replace("</body>", script + "</body>"))
    try:
        res = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--allow-file-access-from-files",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    m = re.search(r'data-images="(\d+)/(\d+)"', res.stdout)
    assert m, res.stderr[-2000:]
    total, loaded = int(m.group(1)), int(m.group(2))
    assert total >= 3 and loaded == total
    assert "Headline estimates" in res.stdout


def test_provenance_records_inputs_parameters_and_environment(run_dir):
    prov = json.loads((run_dir / "provenance.json").read_text())
    for key in (
        "git",
        "parameters",
        "parameters_sha256",
        "inputs",
        "environment",
        "started",
        "finished",
        "seeds",
        "timings_seconds",
    ):
        assert key in prov, key
    for name, rec in prov["inputs"].items():
        path = DEMO_DATA / rec["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"], name
        assert path.stat().st_size == rec["bytes"]
    assert prov["parameters"]["matching"]["ratio"] == 3
    assert prov["parameters_sha256"] == load_config("demo").digest()
    assert prov["environment"]["packages"]["pandas"]
