"""What happens to a raw extract before the contract rules: mapping, clean-up, warnings.

Three things live here, all used by :mod:`leapresearch.data.contract`:

* :class:`DataWarning`: something implausible that does not stop the analysis, with its
  handling (``kept``, ``excluded``, ``recoded``, ``ignored``) and the rows it concerns.
  Errors are :class:`~leapresearch.data.contract.Violation` objects; warnings never are.
* :class:`InputMapping`: the ``input:`` section of a vintage file. It maps the state's own
  layout of an extract onto the contract *before* any rule is checked: the file of each
  table, column renames, per-column value recodes, date formats, whitespace trimming and
  null tokens. :func:`apply_mapping` applies it to a table read as text and counts what it
  changed (recorded in ``provenance.json``).
* The checksum manifest (``checksums.sha256``, :func:`manifest_problems`) and the
  diagnoses that turn a cryptic failure into its likely cause: an Excel workbook or a
  UTF-16 file saved under a ``.csv`` name (:func:`sniff_binary`), identifiers that lost
  their leading zeros or became numbers (:func:`id_form_hint`).

Normalisations applied to every extract (mapping or not)
--------------------------------------------------------
* **Null tokens.** A text value that is, after trimming and ignoring case, one of
  :data:`DEFAULT_NULL_TOKENS` (``NULL``, ``N/A``, ``NA``, ``#N/A``) is missing, like an
  empty value. In a required column it is then refused as a missing value.
* **District names** are trimmed and inner runs of spaces collapsed (warning, recoded).
  Two spellings that differ only in case are refused: they would split a district in two.
* **home_language** is trimmed, inner spaces collapsed, null tokens made missing and each
  word capitalised (``english`` and ``ENGLISH`` become ``English``; warning, recoded).
  Categories: any language name; the analysis compares ``English`` with every other
  language, and a missing value is its own indicator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_NULL_TOKENS",
    "MANIFEST_NAME",
    "DataWarning",
    "Handling",
    "InputMapping",
    "TableMapping",
    "apply_mapping",
    "id_form_hint",
    "manifest_problems",
    "sniff_binary",
    "write_manifest",
]

MANIFEST_NAME = "checksums.sha256"
"""Optional checksum manifest of a data folder (``sha256sum`` format)."""

DEFAULT_NULL_TOKENS: tuple[str, ...] = ("NULL", "N/A", "NA", "#N/A")
"""Text that means missing in any column (compared trimmed and case-insensitively)."""

Handling = Literal["kept", "excluded", "recoded", "ignored"]


@dataclass(frozen=True)
class DataWarning:
    """Something implausible in the data that does not stop the analysis.

    Attributes
    ----------
    file : str
        File (``leap_visits.csv``) or table the warning concerns.
    column : str or None
        Column concerned (``None`` for the file as a whole).
    issue : str
        What was found, as a phrase (``"attempted visits before the program start"``).
    handling : {"kept", "excluded", "recoded", "ignored"}
        What the package does with those rows or values.
    n_rows : int
        How many rows are concerned (0 when not about rows).
    rows : tuple of int
        The first (at most 10) of them: CSV line numbers or Parquet row numbers.
    """

    file: str
    column: str | None
    issue: str
    handling: Handling
    n_rows: int = 0
    rows: tuple[int, ...] = ()

    def __str__(self) -> str:
        text = f"{self.file}: " + (f"column {self.column}: " if self.column else "") + self.issue
        if self.n_rows:
            unit = ("line" if self.file.endswith(".csv") else "row") + (
                "s" if len(self.rows) > 1 else ""
            )
            more = f", … first {len(self.rows)} shown" if self.n_rows > len(self.rows) else ""
            count = f"{self.n_rows:,} row" + ("s" if self.n_rows != 1 else "")
            shown = f" ({unit} {', '.join(map(str, self.rows))}{more})" if self.rows else ""
            text += f" — {count}{shown}"
        return f"{text} [{self.handling}]"

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-compatible record (for ``provenance.json``)."""
        return {
            "file": self.file,
            "column": self.column,
            "issue": self.issue,
            "handling": self.handling,
            "n_rows": self.n_rows,
            "message": str(self),
        }


# --------------------------------------------------------------------------------------
# The input mapping
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableMapping:
    """How one table of an extract maps onto the contract.

    Attributes
    ----------
    file : str or None
        File name in the data folder (``None``: ``NAME.csv`` or ``NAME.parquet``).
    rename : Mapping[str, str]
        Extract column name -> contract column name.
    recode : Mapping[str, Mapping[str, str]]
        Contract column -> {extract value -> contract value}; other values pass
        unchanged (and are refused by the contract if they break it).
    date_format : Mapping[str, str]
        Contract column -> ``strftime`` format of its dates (``"%m/%d/%Y"``).
    """

    file: str | None = None
    rename: Mapping[str, str] = field(default_factory=dict)
    recode: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    date_format: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InputMapping:
    """The ``input:`` section of a vintage file (see the module docstring).

    Attributes
    ----------
    tables : Mapping[str, TableMapping]
        Per contract table.
    trim : bool
        Trim leading and trailing whitespace of every text value.
    null_tokens : tuple of str
        Extra text meaning missing (added to :data:`DEFAULT_NULL_TOKENS`).
    """

    tables: Mapping[str, TableMapping] = field(default_factory=dict)
    trim: bool = False
    null_tokens: tuple[str, ...] = ()

    def table(self, name: str) -> TableMapping:
        """The mapping of one table (an empty one when the vintage gives none)."""
        return self.tables.get(name, TableMapping())

    def tokens(self) -> tuple[str, ...]:
        """Every null token, upper-cased."""
        return tuple(
            dict.fromkeys(t.strip().upper() for t in DEFAULT_NULL_TOKENS + self.null_tokens)
        )


NO_MAPPING = InputMapping()


def rename_header(header: list[str], mapping: TableMapping) -> list[str]:
    """Header names after the mapping's renames."""
    return [mapping.rename.get(h, h) for h in header]


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def _recode(arr: pa.ChunkedArray, codes: Mapping[str, str]) -> tuple[pa.ChunkedArray, int]:
    keys = pa.array(list(codes), pa.string())
    pos = pc.index_in(arr, value_set=keys)
    hit = pc.is_valid(pos)
    n = _count(hit)
    if n == 0:
        return arr, 0
    new = pc.take(pa.array(list(codes.values()), pa.string()), pos)
    return pc.if_else(hit, new, arr), n


def _reformat_dates(arr: pa.ChunkedArray, fmt: str) -> tuple[pa.ChunkedArray, int]:
    """Dates written in ``fmt`` rewritten ``YYYY-MM-DD``; other text unchanged."""
    values = pd.Series(arr.to_pandas(), dtype="object")
    parsed = pd.to_datetime(values, format=fmt, errors="coerce")
    ok = parsed.notna().to_numpy()
    out = values.where(~ok, parsed.dt.strftime("%Y-%m-%d"))
    return pa.chunked_array([pa.array(out.to_numpy(dtype=object), pa.string())]), int(ok.sum())


def apply_mapping(
    table: pa.Table, mapping: TableMapping, *, trim: bool, null_tokens: tuple[str, ...]
) -> tuple[pa.Table, dict[str, dict[str, int]]]:
    """Apply trimming, null tokens, recodes and date formats to a table of text columns.

    Parameters
    ----------
    table : pyarrow.Table
        Columns already renamed to the contract's names; text columns as strings.
    mapping : TableMapping
        Recodes and date formats of this table.
    trim : bool
        Trim whitespace of every text value first.
    null_tokens : tuple of str
        Upper-case tokens that mean missing.

    Returns
    -------
    table : pyarrow.Table
        The mapped table.
    counts : dict
        ``column -> {"trimmed": n, "null_tokens": n, "recoded": n, "dates": n}`` (only
        non-zero counts).
    """
    counts: dict[str, dict[str, int]] = {}
    tokens = pa.array(list(null_tokens), pa.string())
    columns = {}
    for name in table.column_names:
        arr = table.column(name)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            if name in mapping.recode or name in mapping.date_format:
                arr = pc.cast(arr, pa.string())
            else:
                columns[name] = arr
                continue
        c: dict[str, int] = {}
        if trim:
            trimmed = pc.utf8_trim_whitespace(arr)
            c["trimmed"] = _count(pc.not_equal(trimmed, arr))
            arr = trimmed
        is_token = pc.is_in(pc.utf8_upper(pc.utf8_trim_whitespace(arr)), value_set=tokens)
        c["null_tokens"] = _count(is_token)
        if c["null_tokens"]:
            arr = pc.if_else(is_token, pa.scalar(None, pa.string()), arr)
        if name in mapping.recode:
            arr, c["recoded"] = _recode(arr, mapping.recode[name])
        if name in mapping.date_format:
            arr, c["dates"] = _reformat_dates(arr, mapping.date_format[name])
        columns[name] = arr
        if any(c.values()):
            counts[name] = {k: v for k, v in c.items() if v}
    return pa.table(columns), counts


# --------------------------------------------------------------------------------------
# Diagnoses
# --------------------------------------------------------------------------------------


def sniff_binary(path: Path) -> str | None:
    """Why a ``.csv`` file is not CSV text at all (Excel workbook, UTF-16), else None."""
    with Path(path).open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return (
            "is an Excel workbook (.xlsx) saved with a .csv name, not CSV text; in Excel use "
            "'Save As' > 'CSV UTF-8 (comma delimited)'"
        )
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return (
            "is an old Excel workbook (.xls) saved with a .csv name, not CSV text; in Excel "
            "use 'Save As' > 'CSV UTF-8 (comma delimited)'"
        )
    first = head.split(b"\n", 1)[0]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in first:
        return (
            "is UTF-16 encoded (a byte-order mark or NUL bytes between the letters), not "
            "UTF-8; re-save it as 'CSV UTF-8'"
        )
    return None


_SCI = re.compile(r"^\s*\d(\.\d+)?[eE][+-]?\d+\s*$")
_DECIMAL = re.compile(r"^\s*\d+\.\d*\s*$")


def _length_text(lengths: pd.Series) -> str:
    lo, hi = int(lengths.min()), int(lengths.max())
    return f"{lo}" if lo == hi else f"{lo} to {hi}"


def id_form_hint(unknown: pd.Series, known: pd.Series, other: str) -> str:
    """How unmatched identifiers differ in form from the identifiers they should match.

    Parameters
    ----------
    unknown : Series of str
        Distinct identifiers that have no match.
    known : Series of str
        Distinct identifiers of the table they should appear in.
    other : str
        File name of that table (for the message).

    Returns
    -------
    str
        A phrase naming lengths, lost leading zeros, decimal points, spaces or scientific
        notation, with counts; never an identifier.
    """
    unknown = unknown.dropna().astype(str)
    known = known.dropna().astype(str)
    if unknown.empty or known.empty:
        return ""
    known_set = set(known)
    k_len, u_len = known.str.len(), unknown.str.len()
    width = int(k_len.mode().iloc[0])
    n = len(unknown)
    parts = []
    if _length_text(u_len) != _length_text(k_len):
        parts.append(
            f"the unmatched ids have {_length_text(u_len)} characters, the ids of {other} "
            f"{_length_text(k_len)}"
        )
    spaces = unknown.str.strip() != unknown
    if spaces.any():
        fixed = int(unknown[spaces].str.strip().isin(known_set).sum())
        parts.append(
            f"{int(spaces.sum()):,} have leading or trailing spaces ({fixed:,} match once trimmed)"
        )
    sci = unknown.str.match(_SCI.pattern)
    if sci.any():
        parts.append(
            f"{int(sci.sum()):,} are written in scientific notation (e.g. 1.2E+09: a "
            "spreadsheet stored them as numbers and their last digits are lost; re-export "
            "the ids as text)"
        )
    dec = unknown.str.match(_DECIMAL.pattern) & ~sci
    if dec.any():
        stripped = unknown[dec].str.strip().str.replace(r"\.0*$", "", regex=True)
        fixed = int(stripped.str.zfill(width).isin(known_set).sum())
        parts.append(
            f"{int(dec.sum()):,} have a decimal point (stored as numbers?; {fixed:,} match "
            "without it)"
        )
    plain = ~(spaces | sci | dec)
    padded = unknown[plain & (u_len < width)].str.zfill(width).isin(known_set)
    if padded.any():
        parts.append(
            f"{int(padded.sum()):,} match an id of {other} once padded with leading zeros to "
            f"{width} characters (leading zeros lost, e.g. opened in a spreadsheet?)"
        )
    if not parts:
        return (
            f"; the {n:,} unmatched ids have the same form as those of {other} (lengths, "
            "digits): these students are not in it"
        )
    return f"; form of the {n:,} unmatched ids: " + "; ".join(parts)


# --------------------------------------------------------------------------------------
# The checksum manifest
# --------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_problems(folder: Path) -> tuple[dict[str, str] | None, list[tuple[str, str]]]:
    """Check ``FOLDER/checksums.sha256`` (``sha256sum`` format) when present.

    Returns
    -------
    expected : dict or None
        File name -> expected sha256 (None when there is no manifest).
    problems : list of (file, rule)
        Each listed file that is missing or whose checksum differs, and malformed lines
        (file ``checksums.sha256``).
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None, []
    expected: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}, [(MANIFEST_NAME, "could not be read as UTF-8 text")]
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            problems.append((MANIFEST_NAME, f"line {n} is not '<sha256>  <file>'"))
            continue
        digest, name = parts[0].lower(), parts[1].lstrip("*")
        expected[name] = digest
        target = Path(folder) / name
        if not target.is_file():
            problems.append((name, f"listed in {MANIFEST_NAME} but missing"))
        elif _sha256(target) != digest:
            problems.append(
                (
                    name,
                    f"sha256 differs from {MANIFEST_NAME} (the file changed after the manifest "
                    "was written: restore it, or write a new manifest with sha256sum)",
                )
            )
    return expected, problems


def write_manifest(folder: Path) -> dict[str, str]:
    """Write ``FOLDER/checksums.sha256`` over every file of the folder (``sha256sum`` format).

    Hidden files and the manifest itself are left out. The file is created, never replaced.

    Returns
    -------
    dict
        File name -> sha256, as written.

    Raises
    ------
    FileExistsError
        The folder already has a manifest.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        and p.name != MANIFEST_NAME
    )  # fmt: skip
    sums = {p.name: _sha256(p) for p in files}
    with (folder / MANIFEST_NAME).open("x", encoding="utf-8") as fh:
        fh.writelines(f"{digest}  {name}\n" for name, digest in sums.items())
    return sums


def capitalise_words(values: pd.Series) -> pd.Series:
    """Trimmed, inner spaces collapsed, each word capitalised (``english`` -> ``English``)."""
    text = values.astype("str").str.strip().str.replace(r"\s+", " ", regex=True)
    return text.str.title()


def collapse_spaces(values: pd.Series) -> pd.Series:
    """Trimmed, inner runs of whitespace collapsed to one space."""
    return values.astype("str").str.strip().str.replace(r"\s+", " ", regex=True)


def case_collisions(values: pd.Series) -> dict[str, list[str]]:
    """Spellings that differ only in case: ``lower -> [spellings, most frequent first]``."""
    counts = values.dropna().value_counts()
    if counts.empty:
        return {}
    frame = pd.DataFrame({"name": counts.index.astype(str), "n": counts.to_numpy()})
    frame["key"] = frame["name"].str.casefold()
    out = {}
    for key, group in frame.groupby("key", sort=True):
        if len(group) > 1:
            ordered = group.sort_values(["n", "name"], ascending=[False, True])
            out[str(key)] = ordered["name"].tolist()
    return out


def positions_of(values: pd.Series, names: list[str]) -> np.ndarray:
    """Row positions whose value is one of ``names``."""
    return np.flatnonzero(values.isin(names).to_numpy(dtype=bool, na_value=False))
