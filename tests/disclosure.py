"""A generic attack on a run's outputs: every count of students a published number implies.

Nothing here knows which tables hold shares. A table (a CSV, a table shown in a notebook
or on a report page) is read with its column names; a *share* is a column whose values all
lie in [0, 1] and whose name is not that of a statistic (:data:`NOT_A_SHARE`: p-values,
standard errors, intervals, estimates, standardised differences, ratios, weights ...);
a *size* is a count of students published in the same row (a column whose name reads as a
count and whose values are whole numbers) or anywhere in the run (every published count of
visited students and its totals). Text without columns (the PDF's pages, the sentences of
the notebooks) is read line by line: numbers in [0, 1] written with 3 or more decimals
against the whole numbers of the same line and the run's counts.

A published share ``p`` written with ``d`` decimals and a size ``n`` imply a count in
``[n (p - 0.5 10^-d), n (p + 0.5 10^-d)]``, and a complement ``n`` minus that;
when every whole number in that interval (or in the complement's) is from 1 to 5, the
reader learns that 1 to 5 students are meant: that is a finding.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

NOT_A_SHARE = re.compile(
    r"p.?value|\bp\b|statistic|std|error|\bci\b|ci_|interval|band|estimate|smd|standardi|"
    r"effect|ratio|bound|breakdown|weight|rule|cox|hedges|\bdf\b|degrees|\bsd\b|sd_|"
    r"difference|diff|\(pp\)|\(sd\)",
    re.IGNORECASE,
)
"""Names of columns that hold statistics, not shares of students."""

COUNT_NAME = re.compile(
    r"^n_|^n$|students|visited|treated|matched|comparison|units|rows|\(n\)", re.IGNORECASE
)
"""Names of columns that hold counts of students."""

NOT_A_COUNT = re.compile(
    r"month|year|rel_time|\bdf\b|degrees|shift|groups|share|mean|rate|p.?value|window",
    re.IGNORECASE,
)

NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?(?![\w.])")


@dataclass(frozen=True)
class Finding:
    """A published number that gives away a count of 1 to 5 students."""

    source: str
    where: str
    share: str
    size: float
    count: tuple[int, int]

    def __str__(self) -> str:
        lo, hi = self.count
        return (
            f"{self.source} [{self.where}]: {self.share} of {self.size:g} implies "
            f"{lo}..{hi} students (or its complement does)"
        )


def _decimals(text: str) -> int:
    text = text.strip()
    return len(text.partition(".")[2]) if "." in text else 0


def _number(text: object) -> float | None:
    """A displayed cell as a number (thousands separators, minus sign), else None."""
    if isinstance(text, (int, float, np.integer, np.floating)):
        return float(text)
    s = str(text).strip().replace(",", "").replace("−", "-")
    try:
        return float(s)
    except ValueError:
        return None


def implied(p: float, decimals: int, n: float) -> tuple[float, float]:
    """The interval of counts ``n * p`` with ``p`` rounded to ``decimals``."""
    half = 0.5 * 10.0**-decimals + 1e-9
    return n * max(p - half, 0.0), n * min(p + half, 1.0)


def reveals(p: float, decimals: int, n: float) -> tuple[int, int] | None:
    """The counts of 1 to 5 students ``p`` of ``n`` gives away (or its complement), or None.

    ``p`` is a share of ``n`` students only if ``n p`` (within the rounding of ``p``) can
    be a whole number; it gives a small count away when every such whole number is 1-5.
    """
    if not (n >= 1 and 0.0 <= p <= 1.0):
        return None
    lo, hi = implied(p, decimals, n)
    for a, b in ((lo, hi), (n - hi, n - lo)):
        first, last = math.ceil(a - 1e-9), math.floor(b + 1e-9)
        if first <= last and 1 <= first and last <= 5:
            return first, last
    return None


# ------------------------------------------------------------------ tables


def _text_table(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), "")


def _columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Share-like and count-like columns of a table of displayed strings."""
    shares, counts = [], []
    for col in frame.columns:
        name = str(col)
        cells = [c for c in frame[col].astype(str) if c.strip() != ""]
        values = [_number(c) for c in cells]
        if not cells or any(v is None for v in values):
            continue
        if all(0.0 <= v <= 1.0 for v in values) and not NOT_A_SHARE.search(name):
            if any(_decimals(c) > 0 for c in cells):
                shares.append(name)
        if COUNT_NAME.search(name) and not NOT_A_COUNT.search(name):
            if all(v == round(v) and v >= 0 for v in values):
                counts.append(name)
    return shares, counts


def attack_table(frame: pd.DataFrame, source: str, sizes: Iterable[float] = ()) -> list[Finding]:
    """Every implied count of 1-5 in one table (cells as displayed strings or numbers)."""
    frame = _text_table(frame.reset_index(drop=True))
    frame.columns = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame]
    shares, counts = _columns(frame)
    outside = sorted(set(sizes))
    found = []
    for i, row in frame.iterrows():
        row_sizes = [_number(row[c]) for c in counts if str(row[c]).strip() != ""]
        for col in shares:
            cell = str(row[col]).strip()
            p = _number(cell)
            if p is None or cell == "":
                continue
            d = _decimals(cell) if isinstance(row[col], str) else 6
            for n in [*row_sizes, *outside]:
                hit = reveals(p, d, n)
                if hit:
                    found.append(Finding(source, f"row {i}, {col}", cell, n, hit))
    return found


def csv_tables(run: Path) -> Iterator[tuple[str, pd.DataFrame]]:
    """Every published CSV, as written (strings, so the decimals are the written ones)."""
    for path in sorted((run / "tables").glob("*.csv")):
        yield f"tables/{path.name}", pd.read_csv(path, dtype=str, keep_default_na=False)


class _Tables(HTMLParser):
    """Rows of cell texts of every ``<table>`` (``thead`` rows apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[list[str]], list[list[str]]]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._head = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "thead":
            self._head = True
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            span = int(dict(attrs).get("colspan") or 1)
            self._row.extend([""] * (span - 1))

    def handle_endtag(self, tag):
        if tag == "thead":
            self._head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1][0 if self._head else 1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(doc: str) -> list[pd.DataFrame]:
    """The tables of an HTML document, every cell as displayed text, headers as names."""
    parser = _Tables()
    parser.feed(doc)
    frames = []
    for head, body in parser.tables:
        if not body:
            continue
        width = max(len(r) for r in body)
        names = head[-1] if head else [f"column {k}" for k in range(width)]
        names = [""] * (width - len(names)) + names[-width:]
        names = [n or f"column {k}" for k, n in enumerate(names)]
        rows = [r + [""] * (width - len(r)) for r in body]
        frames.append(pd.DataFrame(rows, columns=pd.Index(names).map(str)))
    return frames


def notebook_outputs(run: Path) -> Iterator[tuple[str, str, str]]:
    """``(source, mime, text)`` of every displayed output of the executed notebooks."""
    for path in sorted((run / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for k, cell in enumerate(nb["cells"]):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "text" in out:
                    data = {"text/plain": out["text"]}
                for mime in ("text/html", "text/markdown", "text/plain"):
                    if mime in data:
                        text = data[mime]
                        text = "".join(text) if isinstance(text, list) else text
                        yield f"notebooks/{path.name} cell {k}", mime, text
                        break


VISITED = re.compile(r"treated|visited|matched", re.IGNORECASE)
NOT_VISITED = re.compile(r"unmatched|comparison|outside", re.IGNORECASE)


def global_sizes(run: Path) -> set[float]:
    """The numbers of visited students a reader knows from the run's tables: per count
    column of visited students, its largest value (the pooled group, e.g. all visited
    students) and its total over the rows (e.g. over the cohorts of ``matching_summary``).
    """
    sizes: set[float] = set()
    for _, frame in csv_tables(run):
        _, counts = _columns(_text_table(frame))
        for c in counts:
            if not VISITED.search(c) or NOT_VISITED.search(c):
                continue
            values = [v for v in map(_number, frame[c]) if v is not None]
            if values:
                sizes |= {max(values), sum(values)}
    return sizes


# ------------------------------------------------------------------ text


P_VALUE = re.compile(r"p\s*(?:=|<|>|≤|value)\s*$", re.IGNORECASE)


def attack_text(
    text: str, source: str, sizes: Iterable[float] = (), skip: frozenset[str] = frozenset()
) -> list[Finding]:
    """Line by line: numbers in [0, 1] with 3+ decimals against the line's counts and ``sizes``.

    A number written right after ``p =`` (a p-value) and the strings of ``skip`` (cells the
    tables show in statistics' columns) are not shares.
    """
    outside = sorted(set(sizes))
    found = []
    for j, line in enumerate(text.splitlines()):
        tokens = [(m.group(), m.start()) for m in NUMBER.finditer(line)]
        whole = [v for v in (_number(t) for t, _ in tokens) if v is not None and v == round(v)]
        for tok, at in tokens:
            p = _number(tok)
            if p is None or not 0.0 <= p <= 1.0 or _decimals(tok) < 3 or tok in skip:
                continue
            if P_VALUE.search(line[:at]):
                continue
            for n in [v for v in whole if v >= 6] + outside:  # 1-5 are no group sizes
                hit = reveals(p, _decimals(tok), n)
                if hit:
                    found.append(Finding(source, f"line {j}: {line.strip()[:80]}", tok, n, hit))
    return found


def pdf_lines(path: Path) -> list[tuple[int, str]]:
    """``(page, text)`` of every page of a PDF (pypdf)."""
    import pypdf

    return [(i, p.extract_text() or "") for i, p in enumerate(pypdf.PdfReader(path).pages, 1)]


def statistic_cells(tables: Iterable[pd.DataFrame]) -> frozenset[str]:
    """Displayed strings of the cells of statistics' columns (not shares) of ``tables``."""
    skip: set[str] = set()
    share_cells: set[str] = set()
    for frame in tables:
        frame = _text_table(frame)
        frame.columns = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame]
        shares, _ = _columns(frame)
        for col in frame.columns:
            cells = {str(c).strip() for c in frame[col]}
            (share_cells if col in shares else skip).update(cells)
    return frozenset(skip - share_cells)


def attack_run(run: Path) -> list[Finding]:
    """Every finding in a run folder: CSVs, notebook outputs, report pages and the PDF."""
    sizes = global_sizes(run)
    findings: list[Finding] = []
    for source, frame in csv_tables(run):
        findings += attack_table(frame, source, sizes)
    shown: list[pd.DataFrame] = []
    texts: list[tuple[str, str]] = []
    for source, mime, text in notebook_outputs(run):
        if mime == "text/html":
            for frame in html_tables(text):
                shown.append(frame)
                findings += attack_table(frame, source, sizes)
        else:
            texts.append((source, text))
    for page in sorted((run / "report").glob("*.html")):
        doc = page.read_text(encoding="utf-8")
        for frame in html_tables(doc):
            shown.append(frame)
            findings += attack_table(frame, f"report/{page.name}", sizes)
        prose = re.sub(r"<table.*?</table>", "\n", doc, flags=re.S)  # tables: read above
        texts.append((f"report/{page.name}", re.sub(r"<[^>]+>", "\n", prose)))
    skip = statistic_cells(shown)
    for source, text in texts:
        findings += attack_text(text, source, sizes, skip)
    pdf = run / "report" / "report.pdf"
    if pdf.exists():
        for page, text in pdf_lines(pdf):
            findings += attack_text(text, f"report/report.pdf page {page}", sizes, skip)
    return findings
