"""``report/report.pdf``: the printed report, typeset by Typst (the ``typst`` wheel).

The PDF is a Typst document made from the package's own content and compiled by the
Typst compiler that the ``typst`` wheel ships (installed by ``make setup`` from
``requirements.lock``; no browser, no system library, no system font). In order: the
front page (title, synthetic-data banner, then the summary and the headline table first,
then the rest of ``report/index.html``, the exhibit map giving the page each section
starts on), then one section per executed notebook, each on a new page, with its prose,
tables, figures and results (not its code, nor cells tagged ``developer``: prose for
someone running the notebook). Paper: the vintage file's ``report.paper`` (Letter or
A4). Tables take the largest font size at which they fit the page, the widest on a
landscape page; figures are scaled to the text width and height. The PDF's outline
(bookmarks) follows the headings, links between sections are links inside the PDF,
every page is numbered, and the PDF carries no date: the same run gives the same bytes.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from leapresearch.publish.typst_html import Context, Node, parse, to_typst
from leapresearch.publish.typst_markup import escape, markdown, string

PAPERS: dict[str, tuple[str, float, float]] = {
    "letter": ("us-letter", 612.0, 792.0),
    "a4": ("a4", 595.28, 841.89),
}
"""Paper of ``report.paper``: (Typst's name, width, height in pt)."""

MARGIN = 54.0
"""Page margin (pt) on every side; the footer sits in the bottom margin."""

FRONT_FIRST = ("Summary", "Headline estimates")
"""Sections of the front page printed first, right after the title block."""

DEVELOPER_TAG = "developer"
"""Notebook cells with this tag speak to someone running the notebook: not printed."""

PREAMBLE = """#set document(title: %(title)s, date: none)
#set page(paper: "%(paper)s", margin: %(margin)spt, numbering: none,
  footer: context [#set text(size: 7.5pt, fill: luma(90)); %(footer)s #h(1fr)
    Page #counter(page).display() of #counter(page).final().first()])
#set text(font: ("Libertinus Serif",), size: 10.5pt, lang: "en", hyphenate: false)
#set par(leading: 0.62em, spacing: 0.9em)
#show heading: set block(above: 1.3em, below: 0.7em, sticky: true)
#show heading.where(level: 1): set text(size: 17pt)
#show heading.where(level: 2): set text(size: 13pt)
#show heading.where(level: 3): set text(size: 11pt)
#show raw: set text(font: "DejaVu Sans Mono", size: 0.82em)
#show link: set text(fill: rgb("#0072B2"))
#show math.equation: set text(font: "New Computer Modern Math")
#let lr-maxh = %(maxh)spt
#let lr-page-of(target) = context counter(page).at(target).first()
#let lr-banner(body) = block(fill: rgb("#fff4d6"), stroke: 1.5pt + rgb("#E69F00"),
  inset: 8pt, width: 100%%, strong(body))
#let lr-box(body) = block(fill: rgb("#f7f9fb"), stroke: 0.5pt + luma(200), inset: 8pt,
  width: 100%%, body)
#let lr-note(body) = block(text(size: 0.85em, fill: luma(80), body))
#let lr-caption(body) = block(sticky: true, text(size: 0.9em, strong(body)))
#let lr-figure(path, caption) = block(breakable: false, width: 100%%, {
  layout(size => {
    let img = image(path, width: size.width)
    align(center, if measure(img).height > lr-maxh { image(path, height: lr-maxh) } else { img })
  })
  if caption != [] { text(size: 0.85em, fill: luma(80), caption) }
})
#let lr-grid(aligns, head, cells, size, columns: auto) = {
  set text(size: size)
  table(columns: if columns == auto { aligns.len() } else { columns },
    align: (x, y) => aligns.at(x) + top,
    stroke: (x, y) => if y == 0 and head.len() > 0 { (bottom: 0.7pt) }
      else { (bottom: 0.3pt + luma(215)) },
    inset: (x: 0.45em, y: 0.32em),
    ..if head.len() > 0 { (table.header(..head.map(strong)),) } else { () },
    ..cells)
}
// widths of the columns at size s: each at least its longest word, the rest of the width
// shared in proportion to what wrapping takes from each column
#let lr-widths(s, words, texts, avail) = {
  let lo = words.map(w => w * (s / 10pt) + 0.9 * s)
  let want = texts.zip(words).map(((t, w)) => (t - w) * (s / 10pt))
  let spare = avail - lo.sum()
  let total = want.sum()
  lo.zip(want).map(((l, w)) => l + spare * if total > 0pt { w / total } else { 1 / lo.len() })
}
// the font size of a table: 9pt if it fits unwrapped; else the size at which it fits
// unwrapped (at least 6.5pt) or, smaller, wrapped at 6.5pt (its columns at least their
// longest word); a larger size with wrapped texts instead when that adds under a third
// to the height of that choice
#let lr-table(aligns, head, cells, words, texts) = layout(size => {
  let wide(t) = measure(text(size: 10pt, strong(t))).width
  let (ws, ts) = (words.map(wide), texts.map(wide))
  let pad = aligns.len() * 9pt
  let nat = measure(lr-grid(aligns, head, cells, 10pt))
  let exact = calc.floor(40 * size.width / calc.max(nat.width, ts.sum() + pad)) / 4 * 1pt
  let least = calc.floor(40 * size.width / (ws.sum() + pad)) / 4 * 1pt
  if exact >= 9pt { return lr-grid(aligns, head, cells, 9pt) }
  let cols(s) = lr-widths(s, ws, ts, size.width)
  let tall(s) = measure(lr-grid(aligns, head, cells, s, columns: cols(s))).height / (s / 10pt)
  let base = if exact >= 6.5pt { exact } else { calc.min(6.5pt, least) }
  let ref = if exact >= 6.5pt { nat.height } else { tall(base) }
  let better = (9pt, 8.5pt, 8pt, 7.5pt, 7pt).filter(s => s > base and s <= least)
    .find(s => tall(s) <= 1.35 * ref)
  if better != none { lr-grid(aligns, head, cells, better, columns: cols(better)) }
  else if exact >= 6.5pt { lr-grid(aligns, head, cells, exact) }
  else { lr-grid(aligns, head, cells, base, columns: cols(base)) }
})
"""
"""Page set-up and the functions the document calls (``lr-table``, ``lr-figure``, ...)."""


class PDFError(RuntimeError):
    """The PDF could not be made; the message says why."""


class _Assets:
    """Images of the document, copied or written into its build folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "img").mkdir(parents=True, exist_ok=True)

    def write(self, name: str, data: bytes) -> str:
        (self.folder / "img" / name).write_bytes(data)
        return f"img/{name}"

    def copy(self, source: Path) -> str | None:
        if not source.is_file():
            return None
        return self.write(f"{source.parent.name}-{source.name}", source.read_bytes())


def _label(stem: str) -> str:
    return "sec-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)


def _context(stems: Sequence[str], assets: _Assets, base: Path, text_width: float) -> Context:
    def section(href: str) -> str | None:
        stem = Path(href.split("#")[0]).stem
        return _label(stem) if href and stem in stems else None

    def image(src: str) -> str | None:
        return None if re.match(r"^(data|https?):", src) else assets.copy(base / src)

    return Context(section=section, image=image, text_width=text_width)


def front_typst(index: Path, ctx: Context) -> str:
    """The front page: title block and banner, :data:`FRONT_FIRST`, then the other sections.

    The sections are the ``<h2>`` parts of ``index.html``'s ``<main>``, each kept whole.
    """
    page = parse(Path(index).read_text(encoding="utf-8"))
    mains = page.find_all("main")
    if not mains:
        raise PDFError(f"{index}: the front page has no <main> element to print")
    parts: list[tuple[str, list[Node | str]]] = [("", [])]
    for c in mains[0].children:
        if isinstance(c, Node) and c.tag == "h2":
            parts.append((c.text().strip(), []))
        parts[-1][1].append(c)
    first = sorted(
        (p for p in parts[1:] if p[0] in FRONT_FIRST), key=lambda p: FRONT_FIRST.index(p[0])
    )
    ordered = [parts[0], *first, *(p for p in parts[1:] if p[0] not in FRONT_FIRST)]
    return "\n".join(to_typst(Node("body", children=p[1]), ctx) for p in ordered)


def _output_typst(output: dict, ctx: Context, assets: _Assets, name: str) -> str:
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return f"#block(raw({string(text)}, block: true))\n" if output["name"] == "stdout" else ""
    if "image/svg+xml" in data:
        svg = data["image/svg+xml"]
        path = assets.write(f"{name}.svg", (svg if isinstance(svg, str) else "".join(svg)).encode())
        return f"#lr-figure({string(path)}, [])\n"
    if "image/png" in data:
        path = assets.write(f"{name}.png", base64.b64decode(data["image/png"]))
        return f"#lr-figure({string(path)}, [])\n"
    if "text/html" in data:
        return to_typst(data["text/html"], ctx)
    if "text/markdown" in data:
        return markdown(data["text/markdown"])
    if "text/plain" in data:
        return f"#block(raw({string(data['text/plain'])}, block: true))\n"
    return ""


def notebook_typst(path: Path, ctx: Context, assets: _Assets) -> str:
    """One executed notebook as a section: its prose and results, not its code.

    The section starts on a new page, where its label (for links and the exhibit map's
    page numbers) is placed; cells tagged :data:`DEVELOPER_TAG` are left out.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    stem = Path(path).stem
    parts = [f"#pagebreak(weak: true)\n#metadata({string(stem)}) <{_label(stem)}>\n"]
    for i, cell in enumerate(nb.cells):
        if DEVELOPER_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            parts.append(markdown(cell.source))
        elif cell.cell_type == "code":
            for j, out in enumerate(cell.get("outputs", [])):
                parts.append(_output_typst(out, ctx, assets, f"{stem}-{i}-{j}"))
    return "\n".join(p for p in parts if p)


def print_document(
    index: Path,
    notebooks: Sequence[Path],
    folder: Path,
    *,
    footer: str = "",
    title: str = "Report",
    paper: str = "letter",
) -> Path:
    """Write the Typst source of the printed report (``folder/report.typ``) and its images.

    ``index``: the front page (``report/index.html``); ``notebooks``: the executed
    notebooks, in order. Returns the path of the source.
    """
    if paper not in PAPERS:
        raise PDFError(f"report.paper must be one of {sorted(PAPERS)}, not {paper!r}")
    name, width, height = PAPERS[paper]
    assets = _Assets(Path(folder))
    stems = [Path(nb).stem for nb in notebooks]
    ctx = _context(stems, assets, Path(index).parent, width - 2 * MARGIN)
    preamble = PREAMBLE % {
        "title": string(title),
        "paper": name,
        "margin": MARGIN,
        "footer": escape(footer),
        "maxh": round(0.78 * (height - 2 * MARGIN)),
    }
    body = [front_typst(index, ctx)]
    body += [notebook_typst(Path(nb), ctx, assets) for nb in notebooks]
    source = Path(folder) / "report.typ"
    source.write_text(preamble + "\n" + "\n".join(body), encoding="utf-8")
    return source


def write_pdf(
    index: Path,
    notebooks: Sequence[Path],
    out: Path,
    *,
    footer: str = "",
    title: str = "Report",
    paper: str = "letter",
) -> Path:
    """Typeset the front page and the executed notebooks into ``out`` (a PDF).

    The document is built and compiled in a temporary folder, and ``out`` is replaced only
    by a complete PDF: a failure leaves no partial file.

    Raises
    ------
    PDFError
        The ``typst`` package is missing, or Typst could not compile the document (its
        message and the place in the generated source are quoted).
    """
    try:
        import typst
    except ImportError:
        raise PDFError(
            "report.pdf is typeset by Typst, and the `typst` package is not installed: run "
            "`make setup` (it installs requirements.lock) and run again"
        ) from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="leap-typst-") as tmp:
        source = print_document(
            index, notebooks, Path(tmp), footer=footer, title=title, paper=paper
        )
        try:
            pdf = typst.compile(str(source), root=tmp, font_paths=[], ignore_system_fonts=True)
        except typst.TypstError as exc:
            where = getattr(exc, "diagnostic", "") or ""
            raise PDFError(f"Typst could not typeset {out.name}: {exc}\n{where[-1500:]}") from None
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_bytes(pdf)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def section_pages(pdf: Path, n_sections: int) -> list[int] | None:
    """First page (1-based) of each section, from the PDF's outline.

    The outline has one top-level heading per section, the front page first; None when it
    does not match the sections.
    """
    import pypdf

    reader = pypdf.PdfReader(pdf)
    top = [o for o in reader.outline if not isinstance(o, list)]
    if len(top) != n_sections + 1:
        return None
    return [reader.get_destination_page_number(o) + 1 for o in top[1:]]
