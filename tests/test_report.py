"""A full run with notebooks: the HTML report opens in a browser, links resolve, provenance."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest

import leapresearch.session
from leapresearch.config import load_config
from leapresearch.paths import DEMO_DATA, PROJECT_ROOT
from leapresearch.pipeline import run_report
from leapresearch.publish.calibration import load_calibration
from leapresearch.publish.labels import cohort_key, fmt, group_label
from leapresearch.publish.report import EXHIBITS, notebook_paths, report_writer
from leapresearch.publish.tables import lead_intervals
from tests.conftest import PROCEDURE_OVERRIDE


def _run_config():
    """The demo parameters of the run below, with the tests' whole-procedure draws."""
    return load_config("demo", overrides=[PROCEDURE_OVERRIDE])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    assert (DEMO_DATA / "students.csv").exists(), "run `make demo-data` first (make test does)"
    out = tmp_path_factory.mktemp("run") / "demo"
    config = _run_config()
    with pytest.MonkeyPatch.context() as patch:  # the run and its notebooks: not data_raw/
        patch.setattr(leapresearch.session, "CACHE_DIR", tmp_path_factory.mktemp("cache"))
        run_report(
            DEMO_DATA,
            out,
            config=config,
            write_outputs=report_writer(vintage="demo", overrides=[PROCEDURE_OVERRIDE]),
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


PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const maths = [...document.querySelectorAll('math')];
  const fetched = performance.getEntriesByType('resource').map(e => e.name);
  const attrs = [...document.querySelectorAll('script[src],link[href],img[src],iframe[src]')]
    .map(e => e.getAttribute('src') || e.getAttribute('href'));
  const r = {title: document.title, images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    math: maths.length,
    mathShown: maths.filter(m => m.getBoundingClientRect().width > 0).length,
    rawTex: document.body.innerText.includes('$$'), fetched: fetched, attrs: attrs,
    scripts: document.scripts.length};
  const out = document.createElement('pre'); out.id = 'lr-probe';
  out.textContent = JSON.stringify(r); document.body.appendChild(out);
});</script>"""


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--allow-file-access-from-files",
    # every request that would leave the machine goes to a closed local port
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)
"""Flags of the headless Chromium that opens the HTML report (no network, no sandbox for root)."""


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH, if any."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def browser(run_dir, tmp_path_factory):
    """Every report page opened in headless Chromium with the network cut off.

    The network is cut by a proxy that points at a closed local port (CHROMIUM_FLAGS), so
    anything fetched from outside fails; the probe lists every resource the page fetched.
    Screenshots are saved beside (``screenshots/<page>.png``) to be looked at. The only
    fixture that needs a browser (report.pdf does not): without Chromium on PATH, the
    tests that use it are skipped with that reason (.ci/run installs it).
    """
    if find_chromium() is None:
        pytest.skip(
            "needs Chromium (chromium or chromium-browser on PATH) to open the HTML report "
            "and take screenshots; .ci/run installs it"
        )
    tmp = tmp_path_factory.mktemp("chromium")
    shots = tmp / "screenshots"
    shots.mkdir()
    results = {}
    for page in sorted((run_dir / "report").glob("*.html")):
        probe = page.with_name(f".probe-{page.name}")
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
        try:
            res = _chromium(tmp, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
        finally:
            probe.unlink()
        m = re.search(r'<pre id="lr-probe">(.*?)</pre>', res.stdout, re.S)
        assert m, f"{page.name}: no probe result; chromium said {res.stderr[-1500:]}"
        results[page.name] = json.loads(html.unescape(m.group(1)))
        shot = _chromium(
            tmp, "--window-size=1200,2400", f"--screenshot={shots / page.stem}.png", page.as_uri()
        )
        assert shot.returncode == 0, shot.stderr[-1500:]
    return SimpleNamespace(results=results, screenshots=shots)


def test_every_page_renders_offline_titled_with_equations_and_images(browser, run_dir):
    pages = browser.results
    assert set(pages) == {"index.html"} | {f"{nb.stem}.html" for nb in notebook_paths()}
    for name, r in pages.items():
        # nothing left the machine: every fetched resource and every reference is local
        assert all(u.startswith(("file:", "data:")) for u in r["fetched"]), (name, r["fetched"])
        assert not [a for a in r["attrs"] if re.match(r"^(https?:)?//", a or "")], name
        assert r["scripts"] == 1, f"{name}: a page loads no script (only the test's probe)"
        assert r["title"] and r["title"] != "Notebook" and "Notebook" not in r["title"], name
        assert not r["rawTex"], f"{name}: raw TeX left on the page"
        assert r["loaded"] == r["images"], f"{name}: {r['images'] - r['loaded']} images failed"
        assert r["mathShown"] == r["math"], name
    assert pages["03_event_study.html"]["math"] >= 2  # the model equation, rendered as MathML
    assert pages["index.html"]["images"] >= 7
    assert pages["03_event_study.html"]["title"].startswith("03 · Event study")
    shots = sorted(p.name for p in browser.screenshots.glob("*.png"))
    assert len(shots) == len(pages)
    assert all((browser.screenshots / s).stat().st_size > 10_000 for s in shots)


def test_notebook_pages_link_to_the_index_and_their_neighbours(run_dir):
    stems = [nb.stem for nb in notebook_paths()]
    for i, stem in enumerate(stems):
        parser = Links()
        parser.feed((run_dir / "report" / f"{stem}.html").read_text(encoding="utf-8"))
        assert "index.html" in parser.hrefs
        if i:
            assert f"{stems[i - 1]}.html" in parser.hrefs
        if i + 1 < len(stems):
            assert f"{stems[i + 1]}.html" in parser.hrefs


def test_front_page_has_the_parts_a_reader_needs(run_dir):
    from leapresearch.data.simulate import read_marker

    doc = (run_dir / "report" / "index.html").read_text(encoding="utf-8")
    config = _run_config()
    assert f"<h1>{html.escape(config.report.title)}</h1>" in doc
    for part in ("Summary", "The program", "Methods in brief", "Headline estimates",
                 "Crosswalk to the published figures", "Limitations", "Exhibit map"):  # fmt: skip
        assert f">{part}</h2>" in doc, part
    # the summary is generated from the numbers, with intervals
    summary = re.search(r'<p class="lr-summary">(.*?)</p>', doc, re.S).group(1)
    es = pd.read_csv(run_dir / "tables" / "event_study.csv")
    # it leads with the whole-procedure interval (issue 27), the demo parameters run it
    lead = lead_intervals(es)
    nine = lead[(lead["group"] == "all") & (lead["rel_time"] == 9)].iloc[0]
    assert nine["lead_kind"] == "procedure"
    assert f"95% CI {fmt(nine['lead_lower'])} to {fmt(nine['lead_upper'])}" in summary
    assert "whole-procedure bootstrap" in summary
    # and reads only the calibrated diagnostics, with their measured size (issue 23)
    assert "already differed" not in summary
    if load_calibration().calibrated():
        assert "in the validation (" in summary
    else:  # no check is read, and the summary says why (issue 23: sizes at two sample sizes)
        assert "No check of the design is read here: none passed the calibration rule" in summary
        assert "at the demo&#x27;s size" in summary or "at the demo's size" in summary
    # headline rows: all, those with a comparison within the caliper (issue 23), grade bands
    # PK-5, 6-8, 9-12, 6-12, cohorts in time order, in words
    head = re.search(r'<table class="lr-table lr-headline">(.*?)</table>', doc, re.S).group(1)
    rows = re.findall(r'<th scope="row">(.*?)</th>', head)
    assert rows[:6] == ["All visited students", group_label("within_caliper"), "Grades PK-5",
                        "Grades 6-8", "Grades 9-12", "Grades 6-12"]  # fmt: skip
    cohorts = sorted(es.loc[es["group"].str.startswith("cohort:"), "group"].unique(),
                     key=lambda c: cohort_key(c.partition(":")[2]))  # fmt: skip
    assert rows[6:] == [group_label(c) for c in cohorts]
    assert "Summer 2021" in rows and rows.index("Summer 2021") < rows.index("School year 2021-22")
    assert "grade_band:" not in doc and "cohort:" not in doc
    # the simulated demo shows the banner; the flag comes from the simulator's marker
    assert read_marker(DEMO_DATA) is not None, (
        "data_raw/demo has no SIMULATED.json (simulated before the marker existed): re-create "
        "it with `leapresearch simulate --out data_raw/demo --scale demo --seed 20210401` "
        "(the same bytes, plus the marker)"
    )
    assert "Synthetic data." in doc
    assert json.loads((run_dir / "provenance.json").read_text())["simulated_inputs"] is True


def test_the_headline_numbers_read_the_same_in_the_notebook_and_on_the_index(run_dir):
    index = (run_dir / "report" / "index.html").read_text(encoding="utf-8")
    summary = (run_dir / "report" / "08_summary.html").read_text(encoding="utf-8")
    pattern = r'<table class="lr-table lr-headline">.*?</table>'

    def cells(doc: str) -> list[str]:
        table = re.search(pattern, doc, re.S).group(0)
        return [
            re.sub(r"<[^>]+>", " ", c).split()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table, re.S)
        ]

    assert len(cells(index)) > 40
    assert cells(index) == cells(summary)


def test_tables_are_full_without_index_or_suppressed_column(run_dir):
    for page in (run_dir / "report").glob("*.html"):
        doc = page.read_text(encoding="utf-8")
        assert not re.search(r"\d+ rows × \d+ columns", doc), page.name  # no pandas truncation
        assert "<th>suppressed</th>" not in doc and "<th>Suppressed</th>" not in doc
        assert 'class="dataframe' not in doc, f"{page.name}: a raw pandas table"
    doc = (run_dir / "report" / "06_long_term_effects.html").read_text(encoding="utf-8")
    assert "<details" in doc and "../tables/long_term.csv" in doc  # long tables fold


def test_the_pdf_has_the_front_page_the_exhibits_and_page_numbers(run_dir):
    import pypdf

    reader = pypdf.PdfReader(run_dir / "report" / "report.pdf")
    texts = [p.extract_text() for p in reader.pages]
    n = len(texts)
    assert n >= 10
    assert all(f"Page {i} of {n}" in t for i, t in enumerate(texts, start=1))
    front = " ".join(texts[:3])
    assert "Synthetic data." in front and "Headline estimates" in front
    assert "Exhibit map" in " ".join(texts)
    outline = [o.title for o in reader.outline if hasattr(o, "title")]
    for nb in notebook_paths():
        number = nb.stem[:2]
        assert any(t.startswith(number) for t in outline), f"no bookmark for {nb.stem}"
    # the exhibit map is the table of contents: each section's page, as in the outline
    from leapresearch.publish.pdf import section_pages

    starts = section_pages(run_dir / "report" / "report.pdf", len(notebook_paths()))
    assert starts and starts == sorted(starts) and starts[0] > 1
    toc = " ".join(texts[: starts[0] - 1]).replace("\n", " ")  # the front pages
    for page in starts:
        assert f"page {page}" in toc
        assert f"Page {page} of {n}" in texts[page - 1]
    images = sum(len(p.images) for p in reader.pages)
    assert images >= 7  # the front page's figures at least


def test_the_pdf_opens_with_the_summary_and_the_headline_table(run_dir):
    import pypdf

    reader = pypdf.PdfReader(run_dir / "report" / "report.pdf")
    first = reader.pages[0].extract_text()
    assert first.index("Summary") < first.index("Headline estimates")
    es = lead_intervals(pd.read_csv(run_dir / "tables" / "event_study.csv"))
    nine = es[(es["group"] == "all") & (es["rel_time"] == 9)].iloc[0]
    assert f"{fmt(nine['lead_lower'])} to {fmt(nine['lead_upper'])}" in first  # summary's CI
    one = es[(es["group"] == "all") & (es["rel_time"] == 1)].iloc[0]
    words = " ".join(first.split())  # a row heading may wrap in its cell
    for row in ("All visited students", "Grades PK-5", "Grades 6-12",
                f"({fmt(one['lead_lower'])} to {fmt(one['lead_upper'])})"):  # fmt: skip
        assert row in words, f"headline table: {row!r} not on page 1"
    # the exhibit map (the table of contents) comes after them
    texts = [p.extract_text() for p in reader.pages]
    exhibits = next((i, t.index("Exhibit map")) for i, t in enumerate(texts) if "Exhibit map" in t)
    assert exhibits > (0, first.index("Headline estimates"))


def test_the_pdf_is_on_the_vintage_files_paper_and_everything_fits_the_page(run_dir):
    import pypdf

    from tests.conftest import pdf_drawn_extent, pdf_text

    assert load_config("demo").report.paper == "letter"
    reader = pypdf.PdfReader(run_dir / "report" / "report.pdf")
    for i, page in enumerate(reader.pages, start=1):
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert sorted((width, height)) == [612, 792], f"page {i} is not US Letter"
        x0, y0, x1, y1 = pdf_drawn_extent(page)  # figures and tables inside the page
        assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height, (i, x0, y0, x1, y1)
    text = pdf_text(run_dir / "report" / "report.pdf")
    flat = re.sub(r"\s", "", text)
    prov = json.loads((run_dir / "provenance.json").read_text())
    for rec in prov["inputs"].values():
        assert rec["sha256"] in flat  # the input-files table: every checksum whole
    # printed for a reader: no code, no prose addressed to someone running the notebooks
    for dev in ("papermill", "session.result", "import ", "open_session("):
        assert dev not in text, dev


def test_the_same_run_typesets_the_same_bytes(run_dir, tmp_path):
    from leapresearch.publish.pdf import write_pdf
    from leapresearch.publish.report import _stamp

    config = _run_config()
    notebooks = [run_dir / "notebooks" / nb.name for nb in notebook_paths()]
    again = write_pdf(
        run_dir / "report" / "index.html",
        notebooks,
        tmp_path / "report.pdf",
        footer=_stamp(config),
        title=config.report.title,
        paper=config.report.paper,
    )
    assert again.read_bytes() == (run_dir / "report" / "report.pdf").read_bytes()


def test_no_output_gives_away_a_count_of_one_to_five_students(run_dir):
    """The generic attack of ``tests/disclosure.py`` on every table, notebook output, report
    page and PDF page: no share of a published group gives away 1 to 5 students.

    The demo has rare categories (one visited Native Hawaiian student, four American Indian
    ones): the rule is exercised, and the balance table shows them suppressed.
    """
    from tests.disclosure import attack_run

    findings = attack_run(run_dir)
    assert not findings, "\n".join(map(str, findings[:20]))
    balance = pd.read_csv(run_dir / "tables" / "balance.csv").set_index("covariate")
    assert balance.loc[["race_native", "race_american"], "suppressed"].all()
    assert balance.loc[["race_native", "race_american"], "mean_treated"].isna().all()


def test_a_folder_without_the_marker_shows_no_banner(valid_fixture, tmp_path, cli_cache):
    """A data folder without the simulator's marker (the tiny hand-made one): no banner."""
    from leapresearch.data.simulate import SIMULATION_MARKER
    from tests.conftest import assert_ok, run_cli

    assert not (valid_fixture / SIMULATION_MARKER).exists()
    out = tmp_path / "run"
    res = run_cli(
        "run", "--data", valid_fixture, "--out", out, "--no-notebooks", cache_dir=cli_cache
    )
    assert_ok(res)
    doc = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Synthetic data." not in doc and 'class="lr-banner"' not in doc
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["simulated_inputs"] is False and prov["simulation_marker"] is None
    assert (out / "report" / "report.pdf").stat().st_size > 0


def test_a_simulated_folder_shows_the_banner(run_a):
    doc = (run_a / "report" / "index.html").read_text(encoding="utf-8")
    assert "Synthetic data." in doc
    assert json.loads((run_a / "provenance.json").read_text())["simulated_inputs"] is True


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
    assert prov["parameters_sha256"] == _run_config().digest()
    assert prov["environment"]["packages"]["pandas"]
    assert prov["simulated_inputs"] is True and prov["simulation_marker"]["simulated"] is True
    assert isinstance(prov["command"], list) and prov["command"]
    # the sha256 of every output file (provenance.json itself aside)
    files = sorted(
        p.relative_to(run_dir).as_posix()
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "provenance.json"
    )
    assert sorted(prov["outputs"]) == files
    for name in ("report/report.pdf", "tables/event_study.csv", "report/index.html"):
        rec = prov["outputs"][name]
        data = (run_dir / name).read_bytes()
        assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_two_notebooks_at_a_time_into_a_relative_folder(tmp_path, monkeypatch):
    # `make report` passes a relative --out; papermill changes the process's working
    # directory while it starts each kernel, and two at a time those changes interleave
    import os

    import nbformat

    from leapresearch.publish.report import execute_notebooks

    source = tmp_path / "source"
    source.mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("import os\ncwd = os.getcwd()\ncwd")]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, source / name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    written = execute_notebooks(
        Path("run"),
        load_config("demo"),
        vintage="demo",
        notebooks=[source / "a.ipynb", source / "b.ipynb"],
        log=lambda _: None,
        workers=2,
    )
    assert os.getcwd() == str(work)  # the caller's working directory is back
    assert [p.name for p in written] == ["a.ipynb", "b.ipynb"]
    for path in written:
        assert path.is_absolute() and path.parent == work / "run" / "notebooks"
        out = nbformat.read(path, as_version=4)
        shown = out.cells[-1].outputs[0]["data"]["text/plain"]
        assert shown == repr(str(source))  # each kernel ran in its notebook's folder


def test_the_identifier_scan_reads_the_text_of_a_pdf(tmp_path):
    # the scan of the run folder reads a PDF's page text (compressed in its bytes) and
    # not its cross-reference offsets, so an id printed in the report is found
    from leapresearch.publish import pdf
    from tests.conftest import SimIds, scan_folder

    page = tmp_path / "index.html"
    page.write_text("<html><body><main><p>A student: 0001234567.</p></main></body></html>")
    (tmp_path / "out").mkdir()
    pdf.write_pdf(page, [], tmp_path / "out" / "report.pdf")
    assert b"0001234567" not in (tmp_path / "out" / "report.pdf").read_bytes()
    ids = SimIds(student_ids=frozenset({"0001234567"}), visit_ids=frozenset())
    assert scan_folder(tmp_path / "out", ids) == {"report.pdf": ["0001234567"]}


def _tiny_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell('vintage = "demo"\ndata_dir = None\noverrides = []')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def test_a_run_that_succeeds_logs_nothing_alarming_and_a_failing_cell_still_fails(tmp_path, capfd):
    # issue 25: the kernels' own "running over TCP without encryption" warnings and the
    # "KeyboardInterrupt caught in kernel" error at shutdown cluttered a successful run
    import papermill

    from leapresearch.publish.report import execute_notebooks

    config = load_config("demo")
    good = _tiny_notebook(tmp_path / "good.ipynb", "print(vintage)")
    out = execute_notebooks(tmp_path / "out", config, vintage="demo", notebooks=[good])
    printed = capfd.readouterr()
    executed = nbformat.read(out[0], as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "demo\n"
    for stream in (printed.out, printed.err):
        assert "IPKernelApp" not in stream and "ERROR" not in stream, stream
    bad = _tiny_notebook(tmp_path / "bad.ipynb", "raise ValueError('a cell that fails')")
    with pytest.raises(papermill.PapermillExecutionError, match="a cell that fails"):
        execute_notebooks(tmp_path / "out2", config, vintage="demo", notebooks=[bad])
