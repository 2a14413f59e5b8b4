"""``report/report.pdf``: the front page and every notebook page, printed by headless Chromium.

The pages are joined into one print document (the front page, whose exhibit map is the
table of contents, then one section per notebook, each starting on a new page), printed
with Chromium's ``--print-to-pdf`` and CSS page-margin boxes for the page numbers. The
PDF's outline (bookmarks) follows the headings. Links between pages become links inside
the PDF. Nothing is fetched from the network, and the PDF carries no date, so the same
pages give the same bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from html import escape as html_escape
from pathlib import Path

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
"""Flags of every headless Chromium the package starts (no network, no sandbox for root)."""

PRINT_CSS = """
@page{size:A4;margin:16mm 14mm 18mm 14mm;
 @bottom-center{content:"Page " counter(page) " of " counter(pages);font-size:9pt;color:#555}
 @bottom-left{content:"%(footer)s";font-size:8pt;color:#777}}
.lr-section{break-before:page}
.lr-nav{display:none}
"""


class PDFError(RuntimeError):
    """The PDF could not be made; the message says why and what to install."""


def find_chromium() -> str:
    """Path of a Chromium executable.

    Raises
    ------
    PDFError
        No Chromium on ``PATH`` (the message names the package to install).
    """
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise PDFError(
        "report.pdf is printed by headless Chromium, which is not installed: install it "
        "(Debian/Ubuntu: apt-get install chromium; .ci/run does this) and run again"
    )


def _main(doc: str) -> str:
    m = re.search(r"<main[^>]*>(.*)</main>", doc, re.S)
    if not m:
        raise PDFError("a report page has no <main> element to print")
    return re.sub(r'<nav class="lr-nav".*?</nav>', "", m.group(1), flags=re.S)


def _styles(doc: str) -> str:
    return "".join(re.findall(r"<style[^>]*>.*?</style>", doc, re.S))


def print_document(
    index: Path, pages: Sequence[Path], *, footer: str = "", title: str = "Report"
) -> str:
    """One HTML document: the front page, then each page as a section on a new page.

    Links to a page (``03_event_study.html``) become links to its section.
    """
    front = Path(index).read_text(encoding="utf-8")
    docs = [Path(p).read_text(encoding="utf-8") for p in pages]
    styles = _styles(front) + "".join(dict.fromkeys(_styles(d) for d in docs))
    main = _main(front)
    # the exhibit map is the table of contents: in print it follows the title block
    toc = re.search(r'<h2 id="exhibits">.*?</table>', main, re.S)
    if toc and "</header>" in main:
        main = main.replace(toc.group(0), "")
        head, rest = main.split("</header>", 1)
        banner = re.match(r'\s*<div class="lr-banner".*?</div>', rest, re.S)
        cut = banner.end() if banner else 0
        main = head + "</header>" + rest[:cut] + toc.group(0) + rest[cut:]
    body = [f'<section id="index">{main}</section>']
    for p, d in zip(pages, docs, strict=True):
        body.append(
            f'<section class="lr-section jp-Notebook" id="{Path(p).stem}">{_main(d)}</section>'
        )
    html = "".join(body).replace(
        '<details class="lr-details">', '<details class="lr-details" open>'
    )
    for p in pages:
        html = html.replace(f'href="{Path(p).name}"', f'href="#{Path(p).stem}"')
    # links to files beside the page would carry the run folder's absolute path into the
    # PDF (and differ from run to run): in print they are plain text
    html = re.sub(
        r'<a href="(?!#|https?:)[^"]*"[^>]*>(.*?)</a>', r"<span>\1</span>", html, flags=re.S
    )
    css = PRINT_CSS % {"footer": footer.replace('"', "'")}
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html_escape(title)}</title>"
        f"{styles}<style>{css}</style></head>"
        f'<body class="lr-page" data-jp-theme-light="true">{html}</body></html>'
    )


def section_pages(pdf: Path, n_sections: int) -> list[int] | None:
    """First page (1-based) of each section, from the PDF's outline.

    The outline has one top-level heading per report page, the front page first; None when
    it does not match the sections.
    """
    import pypdf

    reader = pypdf.PdfReader(pdf)
    top = [o for o in reader.outline if not isinstance(o, list)]
    if len(top) != n_sections + 1:
        return None
    return [reader.get_destination_page_number(o) + 1 for o in top[1:]]


def with_page_numbers(doc: str, pages: Sequence[Path], numbers: Sequence[int]) -> str:
    """The exhibit map as a table of contents: each link to a section followed by its page."""
    for p, n in zip(pages, numbers, strict=True):
        stem = Path(p).stem
        doc = re.sub(
            rf'(<a href="#{re.escape(stem)}">[^<]*</a>)(?!<span class="lr-page-no">)',
            rf'\1<span class="lr-page-no">, page {n}</span>',
            doc,
        )
    return doc


def write_pdf(
    index: Path,
    pages: Sequence[Path],
    out: Path,
    *,
    footer: str = "",
    title: str = "Report",
    timeout: int = 300,
) -> Path:
    """Print the front page and the notebook pages into ``out`` (a PDF).

    Printed twice: the second time, the exhibit map (the table of contents) carries the
    page on which each section starts, read from the first print's outline.

    Raises
    ------
    PDFError
        Chromium is missing or printing failed (its error output is quoted).
    """
    doc = print_document(index, pages, footer=footer, title=title)
    _print(doc, Path(index).parent, out, timeout=timeout)
    numbers = section_pages(out, len(pages)) if pages else None
    for _ in range(2):  # the page numbers may push a section to the next page: print again
        if not numbers:
            break
        _print(with_page_numbers(doc, pages, numbers), Path(index).parent, out, timeout=timeout)
        now = section_pages(out, len(pages))
        if now == numbers:
            break
        numbers = now
    return out


def _print(doc: str, folder: Path, out: Path, *, timeout: int) -> Path:
    chromium = find_chromium()
    source = Path(folder).resolve() / ".print.html"  # a file URI needs an absolute path
    source.write_text(doc, encoding="utf-8")
    out = Path(out).resolve()
    try:
        with tempfile.TemporaryDirectory(prefix="leap-chromium-") as profile:
            res = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--no-pdf-header-footer",
                    "--generate-pdf-document-outline",
                    "--virtual-time-budget=20000",
                    f"--print-to-pdf={out}",
                    source.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
    except subprocess.TimeoutExpired:
        raise PDFError(f"Chromium did not finish printing {out} in {timeout} s") from None
    finally:
        source.unlink(missing_ok=True)
    if res.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise PDFError(f"Chromium failed to print {out}: {res.stderr[-1500:]}")
    out.write_bytes(with_stable_node_ids(without_dates(out.read_bytes())))
    return out


_PDF_DATE = re.compile(rb"/(CreationDate|ModDate) \(D:(\d{14})")


def without_dates(pdf: bytes) -> bytes:
    """The PDF with its creation and modification dates fixed (same inputs, same bytes).

    The dates are overwritten in place with a constant of the same length, so the
    cross-reference offsets stay valid.
    """
    return _PDF_DATE.sub(lambda m: b"/" + m.group(1) + b" (D:19800101000000", pdf)


_NODE_ID = re.compile(rb"\(node(\d{8})\)")


def with_stable_node_ids(pdf: bytes) -> bytes:
    """The PDF with Chromium's DOM node ids of the tagged structure numbered in order.

    Chromium names table header cells by its internal node counter (``/ID (node00000019)``,
    referred to by the data cells' ``/Headers``), which can differ between two prints of
    the same page. Each id is replaced, everywhere, by its rank of first appearance, with
    the same eight digits, so the cross-reference offsets stay valid.
    """
    ranks: dict[bytes, int] = {}

    def renumber(m: re.Match) -> bytes:
        rank = ranks.setdefault(m.group(1), len(ranks))
        return b"(node%08d)" % rank

    return _NODE_ID.sub(renumber, pdf)
