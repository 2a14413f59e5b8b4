"""report.pdf without a browser: Typst markup, page size, fit to the page, same bytes.

Small documents made here (a front page and a notebook with the report's kinds of
content), so every test runs in seconds; tests/test_report.py checks the PDF of a full
demo run.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import nbformat
import pypdf
import pytest

from leapresearch.publish import pdf
from leapresearch.publish.typst_markup import escape, markdown, math
from tests.conftest import pdf_drawn_extent, pdf_text

SHA = hashlib.sha256(b"students.csv").hexdigest()


def _front(folder: Path) -> Path:
    page = folder / "report" / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(
        "<html><head><title>t</title><style>p{}</style></head><body><main>"
        '<nav class="lr-nav"><a href="index.html">Report</a></nav>'
        "<header><h1>Did visits work?</h1></header>"
        "<h2>Exhibit map</h2><table class='lr-table lr-exhibits'><thead><tr><th>#</th>"
        "<th>Exhibit</th><th>Notebook</th></tr></thead><tbody><tr><td>1</td><td>Input files</td>"
        '<td><a href="01_data.html">01 · Data</a></td></tr></tbody></table>'
        "<h2>The program</h2><p>Home visits.</p>"
        "<h2>Headline estimates</h2><table class='lr-table lr-headline'><thead><tr><th>Group"
        "</th><th>Month 1</th></tr></thead><tbody><tr><th scope='row'>All visited students</th>"
        "<td>+5.5<br><span class='lr-ci'>(3.9 to 7.0)</span></td></tr></tbody></table>"
        "<h2>Summary</h2><p class='lr-summary'>Visited students attended more.</p>"
        "</main></body></html>",
        encoding="utf-8",
    )
    return page


def _svg(width: float, height: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(width, height))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_title("right panel")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()


def _wide_table() -> str:
    head = "".join(f"<th>Column number {i}</th>" for i in range(16))
    row = "<td>students</td><td>" + SHA + "</td>" + "<td>-0.123</td>" * 14
    return (
        f'<table class="lr-table"><thead><tr>{head}</tr></thead><tbody>'
        + f"<tr>{row}</tr>" * 60
        + "</tbody></table>"
    )


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    dev = md("papermill injects different values below the next cell.")
    dev.metadata["tags"] = ["developer"]
    inputs = code("show(inputs)")
    inputs.outputs = [
        nbformat.v4.new_output(
            "execute_result",
            data={
                "text/html": '<table class="lr-table"><thead><tr><th>Table</th><th>Sha256</th>'
                f"</tr></thead><tbody><tr><td>students</td><td>{SHA}</td></tr></tbody></table>",
                "text/plain": "x",
            },
        )
    ]
    figure = code("plot()")
    figure.outputs = [
        nbformat.v4.new_output("display_data", data={"image/svg+xml": _svg(14, 4)}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": _svg(5, 16)}),
        nbformat.v4.new_output("execute_result", data={"text/html": _wide_table()}),
        nbformat.v4.new_output("execute_result", data={"text/markdown": "Effect: **+5.5** pp."}),
    ]
    nb.cells = [
        md("# 01 · Data\n\nThe model: $$y_{ist} = \\alpha_{is} + \\beta_r$$ with $\\bar M = 0$."),
        dev,
        code("import secret_code_cell"),
        inputs,
        md("## Figures\n\n1. one\n2. two\n\n| A | B |\n| --- | --- |\n| `x_1` | y |"),
        figure,
    ]
    path = folder / "notebooks" / "01_data.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A front page and one notebook, typeset once on Letter paper."""
    folder = tmp_path_factory.mktemp("small")
    index, nb = _front(folder), _notebook(folder)
    out = folder / "report" / "report.pdf"
    pdf.write_pdf(index, [nb], out, footer="leapresearch | vintage demo", title="Did visits work?")
    return index, nb, out


def test_markup_escapes_every_character_that_means_something():
    text = r"a*b_c `d` $e$ #f @g <h> [i] ~j -- k // l \ m = n + o / p 'q' \"r\""
    source = f"#set document(date: none)\n{escape(text)}\n\n- {escape('- item')}\n"
    import typst

    out = typst.compile(source.encode(), ignore_system_fonts=True, font_paths=[])
    printed = pypdf.PdfReader(io.BytesIO(out)).pages[0].extract_text()
    assert "a*b_c `d` $e$ #f @g <h> [i] ~j -- k // l \\ m = n + o / p" in printed
    assert "- item" in printed


def test_tex_math_is_typst_math():
    assert math(r"\alpha_{is}") == "$attach(α, b: i s)$"
    assert math(r"\bar M = 0") == "$overline(M) = 0$"
    assert math(r"\text{rel\_time}_{st}") == '$attach("rel_time", b: s t)$'
    assert math("E[Y \\mid X]", display=True) == "$ E \\[ Y ∣ X \\] $"
    doc = markdown("The model $y_{i,e+r}(1)$ and\n\n$$\\sum_{r \\neq -1} \\beta_r$$\n")
    assert "$attach(y, b: i \\, e + r) \\( 1 \\)$" in doc
    assert "$ attach(∑, b: r ≠ − 1) attach(β, b: r) $" in doc


def test_markdown_lists_tables_code_and_links():
    doc = markdown(
        "## Head\n\n**Bold** *it* `a_b` [web](https://x.org) [file](../tables/x.csv)\n\n"
        "1. one\n2. two\n\n| A | B |\n| --- | --- |\n| 1 | 2 |\n"
    )
    assert doc.startswith("== Head\n")
    assert '#strong[Bold] #emph[it] #raw("a_b") #link("https://x.org")[web] file' in doc
    assert "+ one\n+ two" in doc
    assert "#lr-table((left, left,), ([A], [B],)," in doc


def test_the_pdf_needs_no_browser_and_has_sections_outline_and_page_numbers(
    small, monkeypatch, tmp_path
):
    index, nb, out = small
    reader = pypdf.PdfReader(out)
    texts = [p.extract_text() for p in reader.pages]
    n = len(texts)
    assert all(f"Page {i} of {n}" in t for i, t in enumerate(texts, start=1))
    assert [o.title for o in reader.outline if not isinstance(o, list)] == [
        "Did visits work?",
        "01 · Data",
    ]
    assert pdf.section_pages(out, 1) == [2]
    # the exhibit map links to the section and gives its page
    assert "01 · Data, page 2" in texts[0]
    # no browser on PATH: the PDF is the same
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    again = pdf.write_pdf(
        index, [nb], tmp_path / "again.pdf", footer="leapresearch | vintage demo",
        title="Did visits work?",
    )  # fmt: skip
    assert again.read_bytes() == out.read_bytes()


def test_summary_and_headline_table_come_first(small):
    _, _, out = small
    first = pypdf.PdfReader(out).pages[0].extract_text()
    # then the other sections in the front page's order
    order = [first.index(s) for s in ("Did visits work?", "Summary", "Headline estimates",
                                      "Exhibit map", "The program")]  # fmt: skip
    assert order == sorted(order), first
    assert "All visited students" in first and "(3.9 to 7.0)" in first


def test_the_paper_size_follows_the_parameter(tmp_path):
    index = _front(tmp_path)
    for paper, size in (("letter", (612, 792)), ("a4", (595.28, 841.89))):
        out = pdf.write_pdf(index, [], tmp_path / f"{paper}.pdf", paper=paper)
        box = pypdf.PdfReader(out).pages[0].mediabox
        assert (float(box.width), float(box.height)) == pytest.approx(size, abs=0.01)
    with pytest.raises(pdf.PDFError, match="report.paper must be one of"):
        pdf.write_pdf(index, [], tmp_path / "x.pdf", paper="legal")
    assert not (tmp_path / "x.pdf").exists()


def test_the_paper_parameter_is_read_from_the_vintage_file(tmp_path):
    from leapresearch.config import ParameterError, load_config

    assert load_config("demo").report.paper == "letter"
    assert load_config("demo", overrides=["report.paper=a4"]).report.paper == "a4"
    with pytest.raises(ParameterError):
        load_config("demo", overrides=["report.paper=legal"])


def test_wide_and_tall_figures_and_wide_tables_fit_the_page(small):
    _, _, out = small
    reader = pypdf.PdfReader(out)
    for i, page in enumerate(reader.pages, start=1):
        x0, y0, x1, y1 = pdf_drawn_extent(page)
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert x0 >= 0 and y0 >= 0, (i, x0, y0)
        assert x1 <= width and y1 <= height, (i, x1, width, y1, height)
    # the checksums are printed whole (no truncation, no scrollbar)
    assert SHA in re.sub(r"\s", "", pdf_text(out))
    # the 16-column table went to a landscape page
    assert any(p.mediabox.width > p.mediabox.height for p in reader.pages)


def test_the_extent_check_sees_a_figure_cut_off_by_the_page_edge(tmp_path):
    import typst

    (tmp_path / "f.svg").write_text(_svg(14, 4), encoding="utf-8")
    src = tmp_path / "t.typ"
    src.write_text('#set page(paper: "us-letter")\n#image("f.svg", width: 150%)\n')
    out = typst.compile(str(src), root=str(tmp_path), ignore_system_fonts=True, font_paths=[])
    page = pypdf.PdfReader(io.BytesIO(out)).pages[0]
    assert pdf_drawn_extent(page)[2] > float(page.mediabox.width)


def test_no_code_and_no_developer_prose_in_print(small):
    _, _, out = small
    text = pdf_text(out)
    assert "papermill" not in text and "secret_code_cell" not in text
    assert "Effect: +5.5 pp." in text  # Markdown results are printed


def test_same_inputs_same_bytes_and_no_date(small, tmp_path):
    index, nb, out = small
    again = pdf.write_pdf(
        index, [nb], tmp_path / "b.pdf", footer="leapresearch | vintage demo",
        title="Did visits work?",
    )  # fmt: skip
    assert again.read_bytes() == out.read_bytes()
    meta = pypdf.PdfReader(out).metadata or {}
    assert "/CreationDate" not in meta and "/ModDate" not in meta
    assert b"/CreationDate" not in out.read_bytes()


def test_a_pdf_that_cannot_be_made_is_a_clear_error_and_leaves_no_file(monkeypatch, tmp_path):
    import sys

    index = _front(tmp_path)
    out = tmp_path / "report" / "report.pdf"
    monkeypatch.setitem(sys.modules, "typst", None)  # the package is not installed
    with pytest.raises(pdf.PDFError, match="`typst` package is not installed: run `make setup`"):
        pdf.write_pdf(index, [], out)
    monkeypatch.undo()
    monkeypatch.setattr(pdf, "PREAMBLE", pdf.PREAMBLE + "\n#let broken = (\n")
    with pytest.raises(pdf.PDFError, match="Typst could not typeset report.pdf"):
        pdf.write_pdf(index, [], out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.html"]  # nothing partial
    bare = tmp_path / "bare.html"
    bare.write_text("<html><body><p>no main</p></body></html>")
    with pytest.raises(pdf.PDFError, match="no <main> element"):
        pdf.write_pdf(bare, [], tmp_path / "bare.pdf")
    assert not (tmp_path / "bare.pdf").exists()


def test_pdf_from_relative_paths(monkeypatch, tmp_path):
    """`make report` passes a relative run folder: the PDF must still be made."""
    _front(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    pdf.write_pdf(Path("run/report/index.html"), [], Path("run/report/report.pdf"))
    assert (tmp_path / "run/report/report.pdf").stat().st_size > 0
    assert not [p for p in os.listdir(tmp_path / "run/report") if p.startswith(".")]
