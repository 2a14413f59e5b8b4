"""Typst markup from plain text, Markdown and TeX math (the printed report's building blocks).

The printed report (:mod:`leapresearch.publish.pdf`) is a Typst document made from the
package's own content. This module turns each kind of text into Typst markup: plain text
(escaped), Markdown of the notebooks' cells and results (parsed by ``mistune``), TeX math
(``latex2mathml``'s MathML, written as Typst math) and tables (the ``lr-table`` function
of the document's preamble, which picks the largest font size at which a table fits).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

_MARKUP_SPECIAL = re.compile(r"([\\#*_`$<>@=\-+/\[\]~'\"])")
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_MATH_SPECIAL = re.compile(r"([\\#_^/&$\"'()\[\]{},;|])")


def escape(text: str) -> str:
    """Plain text as Typst markup: every character that means something is escaped."""
    return _MARKUP_SPECIAL.sub(r"\\\1", str(text))


def string(text: str) -> str:
    """A Typst string literal (``"..."``) holding ``text``."""
    body = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def raw(text: str) -> str:
    """Inline code (``raw``) in Typst markup."""
    return f"#raw({string(text)})"


# ------------------------------------------------------------------ TeX math -> Typst math

_SPACES = {"0.167em": "thin", "0.222em": "med", "0.278em": "thick"}
_MATHML = "{http://www.w3.org/1998/Math/MathML}"


def _leaf(tag: str, text: str) -> str:
    text = text.replace("\u00a0", " ")
    if tag == "mtext":
        return string(text.replace("\\_", "_").replace("\\", ""))
    if tag == "mi" and len(text) > 1:
        return f"upright({string(text)})"
    if tag == "mn":
        return text
    return _MATH_SPECIAL.sub(r"\\\1", text) if text.strip() else ""


def _mathml(node: ET.Element) -> str:
    tag = node.tag.replace(_MATHML, "")
    if tag in ("mi", "mn", "mo", "mtext"):
        return _leaf(tag, node.text or "")
    if tag == "mspace":
        return _SPACES.get(node.get("width", ""), "space")
    kids = [_mathml(k) or '""' for k in node]
    accent = node[1].text if tag == "mover" and len(node) == 2 else None
    if accent in ("\u00af", "\u203e", "_"):
        return f"overline({kids[0]})"
    if accent in ("^", "\u0302", "~", "\u02dc"):
        return f"accent({kids[0]}, {'hat' if '^' in accent else 'tilde'})"
    slots = {
        "msub": ("b",), "munder": ("b",), "msup": ("t",), "mover": ("t",),
        "msubsup": ("b", "t"), "munderover": ("b", "t"),
    }  # fmt: skip
    if tag in slots and len(kids) == len(slots[tag]) + 1:
        args = ", ".join(f"{s}: {k}" for s, k in zip(slots[tag], kids[1:], strict=True))
        return f"attach({kids[0]}, {args})"
    if tag == "mfrac" and len(kids) == 2:
        return f"frac({kids[0]}, {kids[1]})"
    if tag == "msqrt":
        return f"sqrt({' '.join(kids)})"
    body = " ".join(k for k in kids if k != '""')
    fences = [k for k in node if k.get("fence") == "true" and k.get("stretchy") == "true"]
    if tag == "mrow" and len(fences) == 2 and node[0] is fences[0] and node[-1] is fences[1]:
        return f"lr({body})"
    return body


def math(tex: str, *, display: bool = False) -> str:
    """TeX math as Typst math (``$...$``; ``display``: a block of its own).

    The TeX is read by ``latex2mathml`` (as the HTML report's equations) and its MathML
    written as Typst math: identifiers, numbers, operators and text, sub- and superscripts,
    fractions, roots, overlines and stretchy fences.
    """
    from latex2mathml.converter import convert

    root = ET.fromstring(convert(tex.strip()))
    body = " ".join(filter(None, (_mathml(k) for k in root)))
    return f"$ {body} $" if display else f"${body}$"


# ------------------------------------------------------------------ Markdown -> Typst


def _inline(tokens: Sequence[dict]) -> str:
    out = []
    for t in tokens:
        kind = t["type"]
        if kind == "text":
            out.append(escape(t["raw"]))
        elif kind in ("softbreak", "linebreak"):
            out.append(" " if kind == "softbreak" else " \\\n")
        elif kind == "codespan":
            out.append(raw(t["raw"]))
        elif kind == "emphasis":
            out.append(f"#emph[{_inline(t['children'])}]")
        elif kind == "strong":
            out.append(f"#strong[{_inline(t['children'])}]")
        elif kind == "strikethrough":
            out.append(f"#strike[{_inline(t['children'])}]")
        elif kind == "inline_math":
            out.append(math(t["raw"]))
        elif kind == "link":
            out.append(link(t["attrs"]["url"], _inline(t["children"])))
        elif kind == "image":
            out.append(escape(t["attrs"].get("title") or ""))
        elif kind == "inline_html":
            continue  # tags of inline HTML are left out; the text between them stays
        else:
            out.append(_inline(t.get("children", [])) or escape(t.get("raw", "")))
    return "".join(out)


def link(url: str, label: str) -> str:
    """A link to a web address, or plain text for a file beside the report.

    Links to files beside the run's pages would carry the run folder's path into the PDF
    (and differ from run to run): in print they are plain text.
    """
    if re.match(r"^(https?|mailto):", url):
        return f"#link({string(url)})[{label}]"
    return label


def _plain(tokens: Sequence[dict]) -> str:
    return "".join(t.get("raw", "") + _plain(t.get("children", [])) for t in tokens)


def _md_table(token: dict) -> str:
    head_row, body = token["children"][0]["children"], token["children"][1]["children"]
    head = [_inline(c["children"]) for c in head_row]
    rows = [[_inline(c["children"]) for c in row["children"]] for row in body]
    plain = [[_plain(c["children"]) for c in r] for r in [head_row, *(b["children"] for b in body)]]
    return table_markup(head, rows, plain, text_columns=range(len(head)))


def _block(t: dict, depth: int = 0) -> str:
    kind = t["type"]
    if kind == "heading":
        return f"{'=' * t['attrs']['level']} {_inline(t['children'])}\n"
    if kind in ("paragraph", "block_text"):
        return _inline(t["children"]) + "\n"
    if kind == "block_math":
        return math(t["raw"], display=True) + "\n"
    if kind == "list":
        marker = "+" if t["attrs"].get("ordered") else "-"
        items = []
        for item in t["children"]:
            body = "".join(_block(c, depth + 1) for c in item["children"]).strip()
            items.append(
                "  " * depth + f"{marker} " + body.replace("\n", "\n" + "  " * (depth + 1))
            )
        return "\n".join(items) + "\n"
    if kind == "block_code":
        return f"#block(raw({string(t['raw'])}, block: true))\n"
    if kind == "block_quote":
        return "#quote(block: true)[" + "\n".join(_block(c) for c in t["children"]) + "]\n"
    if kind == "table":
        return _md_table(t)
    if kind == "thematic_break":
        return "#line(length: 100%)\n"
    return ""  # blank lines; raw HTML blocks (none in the notebooks' prose)


def markdown(source: str) -> str:
    """Markdown (CommonMark, pipe tables, ``$...$`` and ``$$...$$`` math) as Typst markup."""
    import mistune

    parse = mistune.create_markdown(renderer=None, plugins=["table", "math", "strikethrough"])
    # ``$$...$$`` is an equation of its own wherever it stands (as in the HTML report)
    source = _DISPLAY.sub(lambda m: f"\n\n$$\n{m.group(1).strip()}\n$$\n\n", source)
    return "\n".join(_block(t) for t in parse(source) if t["type"] != "blank_line")


# ------------------------------------------------------------------ tables


def table_markup(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    plain: Sequence[Sequence[str]],
    *,
    text_columns: Sequence[int] = (0,),
    row_heads: bool = False,
) -> str:
    """A table (cells already Typst markup) as a call of the preamble's ``lr-table``.

    ``plain``: the text of every row, the header first, from which each column's longest
    word (the narrowest it can be) and longest text (its natural width) are passed on;
    ``lr-table`` sizes the columns and the font from them so that the table fits. Text
    columns are left-aligned, the others (numbers) right-aligned; ``row_heads``: the first
    cell of each row is a row heading (bold). Every row is printed; the header repeats on
    each page the table runs over.
    """
    n = max([len(head), *(len(r) for r in rows)], default=0)
    if not n:
        return ""
    left = set(text_columns)
    aligns = ", ".join("left" if i in left else "right" for i in range(n))
    cells = []
    for row in rows:
        padded = list(row) + [""] * (n - len(row))
        first = f"strong[{padded[0]}]" if row_heads else f"[{padded[0]}]"
        cells.append(", ".join([first, *(f"[{c}]" for c in padded[1:])]))
    head_cells = ", ".join(f"[{c}]" for c in list(head) + [""] * (n - len(head)))
    columns = [[r[i] for r in plain if i < len(r)] for i in range(n)]
    words = [max((w for t in col for w in t.split()), key=len, default="") for col in columns]
    texts = [max((t.strip() for t in col), key=len, default="") for col in columns]
    body = ",\n  ".join(cells)
    return (
        f"#lr-table(({aligns},), ({head_cells},),\n  ({body}{',' if cells else ''}),\n"
        f"  ({', '.join(map(string, words))},), ({', '.join(map(string, texts))},))\n"
    )
