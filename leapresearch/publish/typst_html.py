"""Typst markup from the report's own HTML: the front page and the notebooks' tables.

The pages of the HTML report are written by this package (:mod:`frontpage`,
:mod:`tables`), so their HTML is a small known set of elements: headings, paragraphs,
lists, boxes, figures, links and tables. :func:`to_typst` writes that set as Typst markup
for the printed report. Links to another page of the report become links inside the PDF
(followed by the page the section starts on); links to files beside the pages are plain
text; a folded long table (``<details>``) is printed in full.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from leapresearch.publish.typst_markup import escape, link, string, table_markup

_VOID = frozenset({"br", "img", "meta", "link", "hr", "input", "col"})
_SKIP = frozenset({"script", "style", "head", "title", "nav", "summary"})


@dataclass
class Node:
    """An HTML element: tag, attributes and children (text as ``str``)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        """The element's CSS classes."""
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str) -> list[Node]:
        """Every descendant element with this tag, in document order."""
        out = []
        for c in self.children:
            if isinstance(c, Node):
                out += [c] if c.tag == tag else []
                out += c.find_all(tag)
        return out

    def text(self) -> str:
        """The text of the element and its descendants."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("root")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    """The element tree of an HTML fragment or page."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


WRAP = 24
"""Cell texts longer than this (characters) are assumed to wrap at words."""

Resolve = Callable[[str], str | None]
"""Maps an ``href`` or ``src`` to a target inside the PDF (a label or an image path)."""


@dataclass
class Context:
    """What the conversion needs from the document: where links and images go.

    ``section(href)``: the label of the section a link points to (None: not a section);
    ``image(src)``: the path, for Typst, of an image (None: left out).
    """

    section: Resolve = lambda href: None
    image: Resolve = lambda src: None
    text_width: float = 504.0
    """Width (pt) of the text on an upright page; a wider table goes on a landscape page."""


def _inline(node: Node | str, ctx: Context) -> str:
    if isinstance(node, str):
        return escape(re.sub(r"\s+", " ", node))
    inner = "".join(_inline(c, ctx) for c in node.children)
    tag = node.tag
    if tag in _SKIP:
        return ""
    if tag == "br":
        return " \\\n"
    if tag in ("strong", "b"):
        return f"#strong[{inner}]"
    if tag in ("em", "i"):
        return f"#emph[{inner}]"
    if tag == "code":
        return f"#raw({string(node.text())})"
    if "lr-ci" in node.classes or "lr-stamp" in node.classes:
        return f"#text(size: 0.85em, fill: luma(90))[{inner}]"
    if tag == "a":
        target = ctx.section(node.attrs.get("href", ""))
        if target:
            return f"#link(<{target}>)[{inner}], page #lr-page-of(<{target}>)"
        return link(node.attrs.get("href", ""), inner)
    if tag == "math":
        return escape(node.text())
    return inner


def _cells(row: Node, ctx: Context) -> list[str]:
    return [_inline(c, ctx).strip() for c in row.children if isinstance(c, Node)]


def natural_width(rows: list[Node], *, size: float = 7.0) -> float:
    """Estimated width (pt) of a table set at ``size`` pt, long texts wrapped at words.

    About half an em a character (the document's serif face is narrower), plus the cells'
    inset. Header cells and texts longer than :data:`WRAP` characters wrap at words. The
    Typst preamble then picks the font size at which the table really fits.
    """
    widths: dict[int, int] = {}
    for r in rows:
        cells = [c for c in r.children if isinstance(c, Node)]
        for i, c in enumerate(cells):
            text = c.text().strip()
            wraps = c.tag == "th" or len(text) > WRAP
            n = max(map(len, text.split()), default=0) if wraps else len(text)
            widths[i] = max(widths.get(i, 0), min(n, WRAP) if wraps and " " in text else n)
    return sum(0.5 * size * n + 0.9 * size for n in widths.values())


def table(node: Node, ctx: Context) -> str:
    """An HTML table as Typst (every row; the header repeats on each page)."""
    head_rows = [r for t in node.find_all("thead") for r in t.find_all("tr")]
    rows = [r for r in node.find_all("tr") if r not in head_rows]
    head = _cells(head_rows[0], ctx) if head_rows else []
    body = [_cells(r, ctx) for r in rows]
    first = (head_rows or rows or [None])[0]
    cells = [c for c in first.children if isinstance(c, Node)] if first else []
    texts = [i for i, c in enumerate(cells) if "lr-text" in c.classes]
    if "lr-exhibits" in node.classes:
        texts = list(range(len(cells)))
    row_heads = any(c.tag == "th" for r in rows for c in r.children[:1] if isinstance(c, Node))
    caption = next((c for c in node.children if isinstance(c, Node) and c.tag == "caption"), None)
    cap = f"#lr-caption[{_inline(caption, ctx)}]\n" if caption else ""
    wide = natural_width([*head_rows[:1], *rows]) > ctx.text_width
    plain = [[c.text() for c in r.children if isinstance(c, Node)] for r in [*head_rows[:1], *rows]]
    markup = table_markup(head, body, plain, text_columns=[0, *texts], row_heads=row_heads)
    return f"#page(flipped: true)[\n{cap}{markup}]\n" if wide else cap + markup


def _figure(node: Node, ctx: Context) -> str:
    img = next(iter(node.find_all("img")), None)
    path = ctx.image(img.attrs.get("src", "")) if img else None
    caps = node.find_all("figcaption")
    caption = "".join(_inline(c, ctx) for c in caps[0].children) if caps else ""
    if not path:
        return f"{caption}\n"
    return f"#lr-figure({string(path)}, [{caption.strip()}])\n"


def _blocks(node: Node, ctx: Context) -> list[str]:
    out: list[str] = []
    inline: list[str] = []

    def flush():
        text = "".join(inline).strip()
        if text:
            out.append(text + "\n")
        inline.clear()

    for c in node.children:
        if isinstance(c, Node) and c.tag in _BLOCK:
            flush()
            out.append(_BLOCK[c.tag](c, ctx))
        else:
            inline.append(_inline(c, ctx))
    flush()
    return out


def _heading(level: int):
    def write(node: Node, ctx: Context) -> str:
        label = f" <{node.attrs['id']}>" if node.attrs.get("id") else ""
        return f"{'=' * level} {''.join(_inline(c, ctx) for c in node.children).strip()}{label}\n"

    return write


def _container(node: Node, ctx: Context) -> str:
    body = "\n".join(_blocks(node, ctx))
    if node.tag in _SKIP:
        return ""
    if "lr-banner" in node.classes:
        return f"#lr-banner[{body}]\n"
    if "lr-box" in node.classes:
        return f"#lr-box[{body}]\n"
    if "lr-note" in node.classes:
        return f"#lr-note[{body.strip()}]\n"
    return body


def _list(node: Node, ctx: Context) -> str:
    marker = "+" if node.tag == "ol" else "-"
    items = [c for c in node.children if isinstance(c, Node) and c.tag == "li"]
    return "".join(
        f"{marker} " + "\n".join(_blocks(li, ctx)).strip().replace("\n", "\n  ") + "\n"
        for li in items
    )


_BLOCK: dict[str, Callable[[Node, Context], str]] = {
    "h1": _heading(1),
    "h2": _heading(2),
    "h3": _heading(3),
    "h4": _heading(4),
    "table": table,
    "figure": _figure,
    "ul": _list,
    "ol": _list,
    **{t: _container for t in ("p", "div", "header", "section", "main", "details", "body")},
    **{t: _container for t in _SKIP},
}


def to_typst(html: str | Node, ctx: Context | None = None) -> str:
    """The HTML (a page or a fragment) as Typst markup; see the module docstring."""
    node = parse(html) if isinstance(html, str) else html
    return "\n".join(_blocks(node, ctx or Context()))
