"""Typing the columns of a read table, and normalising district names and home languages.

Holds ``_convert``, which turns the Arrow columns of a read file into the typed
``_Table`` the rules check (empty text becomes missing; day counts, flags and dates that do
not parse are violations; blank CSV lines are dropped, or reported when inside the data),
and ``_normalise_names``, which trims district names and capitalises home languages, with
warnings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leapresearch.data.contract.messages import Violation, _found, _show, _violation_at
from leapresearch.data.contract.reading import _is_stringlike, _Read
from leapresearch.data.contract.schema import _SPECS, Kind
from leapresearch.data.contract.table import _Table, _warning_at
from leapresearch.data.intake import DataWarning, capitalise_words, collapse_spaces

# --------------------------------------------------------------------------------------
# Converting columns (Arrow) and dropping blank lines
# --------------------------------------------------------------------------------------


_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"


def _as_string(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_null(arr.type):
        return pa.chunked_array([pa.nulls(len(arr), pa.string())])
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _blank(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """Flag strings that are empty or whitespace only (null stays null)."""
    return pc.or_(pc.equal(pc.utf8_length(arr), 0), pc.utf8_is_space(arr))


def _blank_to_null(arr: pa.ChunkedArray, blank: pa.ChunkedArray) -> pa.ChunkedArray:
    if pc.any(blank).as_py():
        return pc.if_else(blank, pa.scalar(None, pa.string()), arr)
    return arr


def _to_mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _parse_numbers(arr: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Float64 values of a string or numeric column and the mask of unparsable values."""
    if not _is_stringlike(arr.type):
        values = pc.cast(arr, pa.float64())
    else:
        arr = _as_string(arr)
        try:
            values = pc.cast(arr, pa.float64())
        except pa.ArrowInvalid:
            trimmed = pc.utf8_trim_whitespace(arr)
            ok = pc.match_substring_regex(trimmed, _NUMBER)
            values = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), pa.float64())
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.is_finite(values)))
    if pa.types.is_floating(arr.type):  # a NaN stored in a Parquet float column is missing
        bad = pc.and_(bad, pc.invert(pc.is_nan(values)))
    bad_mask = _to_mask(bad) | (_to_mask(pc.is_valid(arr)) & ~_to_mask(pc.is_valid(values)))
    finite = pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))
    return finite, bad_mask


def _parse_dates(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``datetime64[us]`` values of a date column and the mask of unparsable values."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        return values.dt.normalize().astype("datetime64[us]"), np.zeros(len(values), bool)
    text = values.astype("str")
    shaped = text.str.fullmatch(_DATE).fillna(False).to_numpy(dtype=bool)
    dates = pd.to_datetime(text.where(shaped), format="%Y-%m-%d", errors="coerce")
    bad = text.notna().to_numpy() & dates.isna().to_numpy()
    return dates.astype("datetime64[us]"), bad


_RULE_UNPARSED = {
    "days": "must be a number of days",
    "flag": "must be 0 or 1",
    "date": "must be a date written YYYY-MM-DD",
}


def _drop_blank_lines(
    file: str, columns: dict[str, pa.ChunkedArray], blanks: list[pa.ChunkedArray], lines: np.ndarray
) -> tuple[dict[str, pa.ChunkedArray], np.ndarray, list[Violation]]:
    """Drop CSV lines whose every field is empty: ignored at the end, a violation inside."""
    empty = np.logical_and.reduce([_to_mask(b) for b in blanks])
    if not empty.any():
        return columns, lines, []
    keep = np.flatnonzero(~empty)
    inner = np.flatnonzero(empty[: keep[-1] if keep.size else 0])  # before the last data line
    problems = []
    if inner.size:
        problems.append(_violation_at(file, None, "line is blank (no values)", lines, inner))
    index = pa.array(keep)
    return {c: a.take(index) for c, a in columns.items()}, lines[keep], problems


def _convert_column(kind: Kind, arr: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray | None]:
    """Pandas values of a column and, for numbers and dates, the mask of unparsable values."""
    if kind in ("days", "flag"):
        numbers, bad = _parse_numbers(arr)
        return numbers.to_pandas(), bad
    if kind == "date":
        if pa.types.is_date(arr.type):
            arr = pc.cast(arr, pa.timestamp("us"))
        return _parse_dates(arr.to_pandas())
    values = arr.to_pandas()
    return (values if values.dtype == "str" else values.astype("str")), None


def _convert(name: str, path: Path, read: _Read, *, csv_file: bool) -> tuple[_Table, list]:
    """Typed DataFrame of a read table, with violations for values that do not convert.

    Text is never trimmed; empty or whitespace-only text becomes missing.
    """
    assert read.table is not None
    kinds = {c.name: c.kind for c in _SPECS[name]}
    columns: dict[str, pa.ChunkedArray] = {}
    blanks: list[pa.ChunkedArray] = []
    for col in read.table.column_names:
        arr = read.table.column(col)
        if _is_stringlike(arr.type):
            arr = _as_string(arr)
            blanks.append(_blank(arr))
            arr = _blank_to_null(arr, blanks[-1])
        columns[col] = arr
    lines, problems = read.lines, []
    if csv_file and read.table.num_rows:
        columns, lines, problems = _drop_blank_lines(path.name, columns, blanks, lines)
    # the columns above replace the read table: released, and each column once converted,
    # so that a file of millions of rows is not held three times (Arrow, cast, pandas)
    read.table = None
    del blanks

    names = list(columns)
    data: dict[str, pd.Series] = {}
    unparsed: dict[str, np.ndarray] = {}
    for col in names:
        arr = columns.pop(col)
        values, bad = _convert_column(kinds[col], arr)
        data[col] = values.reset_index(drop=True)
        if bad is None:
            continue
        unparsed[col] = np.flatnonzero(bad)
        if unparsed[col].size:
            shown = arr.take(pa.array(unparsed[col][:1000])).to_pandas()
            rule = _RULE_UNPARSED[kinds[col]] + _found(shown)
            problems.append(_violation_at(path.name, col, rule, lines, unparsed[col]))
    # copy=False: the columns become the frame's without a second copy of each
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(lines)), copy=False)
    return _Table(name, path, frame, lines, set(names), unparsed), problems


# --------------------------------------------------------------------------------------
# Normalising names
# --------------------------------------------------------------------------------------


def _normalised(values: pd.Series, clean) -> tuple[pd.Series, np.ndarray]:
    """``clean`` applied to the distinct non-missing values; the new column and changed rows.

    Missing values stay missing.
    """
    codes, uniques = pd.factorize(values)
    if len(uniques) == 0:
        return values, np.zeros(len(values), dtype=bool)
    before = pd.Series(uniques, dtype="str")
    after = clean(before)
    changed_u = np.append((after != before).to_numpy(dtype=bool, na_value=False), False)
    changed = changed_u[codes]
    if not changed.any():
        return values, changed
    new = pd.Series(np.append(after.to_numpy(dtype=object), None)[codes], dtype="str")
    return new.set_axis(values.index), changed


def _normalise_names(tbl: _Table, counts: dict[str, dict[str, int]]) -> list[DataWarning]:
    """Trim district names and normalise home_language (case, spaces), with warnings."""
    found: list[DataWarning | None] = []
    f = tbl.frame
    if tbl.has("district"):
        f["district"], changed = _normalised(f["district"], collapse_spaces)
        issue = "district names with leading, trailing or repeated spaces were trimmed"
        found.append(_warning_at(tbl, "district", issue, changed, "recoded"))
    if tbl.has("home_language"):
        original = f["home_language"]
        f["home_language"], changed = _normalised(original, capitalise_words)
        if changed.any():
            pairs = pd.DataFrame({"a": original[changed], "b": f["home_language"][changed]})
            pairs = pairs.drop_duplicates().head(5)
            shown = ", ".join(f"{_show(a)} -> {_show(b)}" for a, b in pairs.itertuples(index=False))
            issue = f"home languages normalised to capitalised words ({shown})"
            found.append(_warning_at(tbl, "home_language", issue, changed, "recoded"))
        n_null = counts.get("home_language", {}).get("null_tokens", 0)
        if n_null:
            issue = f"{n_null:,} home languages written as a null token (NULL, N/A) read as missing"
            found.append(DataWarning(tbl.file, "home_language", issue, "recoded"))
    return [w for w in found if w is not None]
