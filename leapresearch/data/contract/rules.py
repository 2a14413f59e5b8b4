"""The rules of the data contract, checked on the tables that could be read.

Holds ``_table_rules`` and the rules it runs: the per-column rules of :data:`SCHEMAS`
(pandera, on the distinct values of each column), the key rules (unique
``(student_id, school_year)``, ``(student_id, month, school_id)`` and ``visit_id``), the
cross-column rules (attended ``<=`` membership, at most
:data:`MAX_MONTH_MEMBERSHIP_DAYS` days of membership in a month), and the cross-table rules
(students known to ``students`` for the month's school year, district spellings, visits
against the program start and the attendance months).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors

from leapresearch.data.contract.messages import Violation, _show
from leapresearch.data.contract.schema import (
    _RULE_MISSING,
    _SPECS,
    MAX_MONTH_MEMBERSHIP_DAYS,
    SCHEMAS,
    TABLES,
    _valid_month,
    _valid_school_year,
)
from leapresearch.data.contract.table import _narrow, _Table, _warning_at
from leapresearch.data.intake import DataWarning, case_collisions, id_form_hint, positions_of

# --------------------------------------------------------------------------------------
# Column rules (pandera)
# --------------------------------------------------------------------------------------


def _column_rules(tbl: _Table) -> list[Violation]:
    """Violations of the per-column rules of a table (pandera, lazy).

    Every column rule is a rule on single values, so pandera validates the *distinct*
    values of each column (with one missing value when the column has any) and the
    failures are mapped back to rows through the factorized codes. This keeps
    validation fast when millions of rows repeat a few values, or break a rule.
    """
    problems = []
    for col in (c.name for c in _SPECS[tbl.name] if c.name in tbl.usable):
        codes, uniques = tbl.factorized(col)
        missing = codes < 0
        if missing.any():
            uniques = pd.concat([uniques, uniques.iloc[:0].reindex([len(uniques)])])
            codes = np.where(missing, len(uniques) - 1, codes)
        values = pd.DataFrame({col: uniques.to_numpy()}, index=pd.RangeIndex(len(uniques)))
        values[col] = values[col].astype(tbl.frame[col].dtype)
        try:
            SCHEMAS[tbl.name].select_columns([col]).validate(values, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            continue
        for check, group in cases.groupby("check", sort=False):
            index = group["index"].dropna()
            if index.empty:  # a problem of the whole column (a dtype): a bug, not bad data
                problems.append(Violation(tbl.file, col, f"fails the check {check}"))
                continue
            bad = np.zeros(len(uniques), dtype=bool)
            bad[index.to_numpy(dtype=np.int64)] = True
            mask = bad[codes]
            if check == "not_nullable":
                mask[tbl.unparsed.get(col, [])] = False  # reported as unparsable already
            v = tbl.violation(col, _RULE_MISSING if check == "not_nullable" else str(check), mask)
            if v:
                problems.append(v)
    return problems


# --------------------------------------------------------------------------------------
# Cross-column, key and cross-table rules (pandas)
# --------------------------------------------------------------------------------------


def _share_student_codes(tables: Iterable[_Table]) -> int:
    """Factorize ``student_id`` once over all tables (same id, same code in every table).

    Returns the number of distinct ids; codes are cached on each table, -1 for missing.
    """
    with_ids = [t for t in tables if t.has("student_id")]
    if not with_ids:
        return 0
    # each table's distinct ids first (millions of attendance rows, a few hundred thousand
    # ids), then those of all tables together: the codes of factorizing the concatenated
    # column (first appearance, table by table) without copying it
    own = [pd.factorize(t.frame["student_id"]) for t in with_ids]
    shared, uniques = pd.factorize(pd.concat([pd.Series(u) for _, u in own], ignore_index=True))
    bounds = np.cumsum([0] + [len(u) for _, u in own])
    for t, (codes, _), lo in zip(with_ids, own, bounds[:-1], strict=True):
        mapped = np.where(codes >= 0, shared[lo + np.maximum(codes, 0)], -1)
        t.cached_codes["student_id"] = (_narrow(mapped), pd.Series(uniques))
    return len(uniques)


def _combine(*codes: np.ndarray) -> np.ndarray:
    """One int64 key per row from several factorized codes (-1 where any part is missing)."""
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for c in codes:
        size = int(c.max(initial=-1)) + 2
        if int(key.max(initial=0)) >= np.iinfo(np.int64).max // size:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)  # compress first
        key = key * size + (c + 1)
    valid = np.logical_and.reduce([c >= 0 for c in codes])
    return np.where(valid, key, -1)


def _duplicated(*codes: np.ndarray) -> np.ndarray:
    """Rows whose key repeats (all of them); rows with a missing key part never match."""
    key = _combine(*codes)
    ordered = np.sort(key[key >= 0])
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size == 0:
        return np.zeros(len(key), dtype=bool)
    return np.isin(key, np.unique(repeated)) & (key >= 0)


def _lookup(codes: np.ndarray, size: int) -> np.ndarray:
    """Boolean table over code values: true for the (non-missing) codes present."""
    present = np.zeros(size + 1, dtype=bool)
    present[codes[codes >= 0]] = True
    return present  # present[-1] (missing code) stays False


def _distinct_year_month(months: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's code and the calendar year and month of each distinct ``YYYY-MM`` label.

    Returns ``(codes, year, month)``: ``year[codes]`` and ``month[codes]`` are the rows'
    values, -1 where the label is missing or not valid (the last entry, code -1). Rules
    that depend on the month alone are computed on the few dozen distinct labels and
    gathered to the millions of rows.
    """
    codes, uniques = pd.factorize(months)
    labels = pd.Series(uniques, dtype="str")
    ok = _valid_month(labels).to_numpy(dtype=bool)
    year = np.where(ok, pd.to_numeric(labels.str.slice(0, 4), errors="coerce").fillna(-1), -1)
    month = np.where(ok, pd.to_numeric(labels.str.slice(5, 7), errors="coerce").fillna(-1), -1)
    year, month = np.append(year, -1).astype(np.int64), np.append(month, -1).astype(np.int64)
    return codes, year, month


def _school_year_starts(labels: pd.Series) -> np.ndarray:
    """First year of ``YYYY-YY`` school years; -1 where the label is not valid."""
    codes, uniques = pd.factorize(labels)
    u = pd.Series(uniques, dtype="str")
    ok = _valid_school_year(u).to_numpy(dtype=bool)
    start = np.where(ok, pd.to_numeric(u.str.slice(0, 4), errors="coerce").fillna(-1), -1)
    return np.append(start, -1).astype(np.int64)[codes]


def _years_text(starts: np.ndarray) -> str:
    labels = [f"{s}-{(s + 1) % 100:02d}" for s in starts[:6]]
    if starts.size > 2 and starts[-1] - starts[0] == starts.size - 1:
        return f"{labels[0]} to {starts[-1]}-{(starts[-1] + 1) % 100:02d}"
    more = f", … ({starts.size} school years)" if starts.size > 6 else ""
    return (", ".join(labels) + more) if labels else "none"


def _students_rules(stu: _Table) -> list[Violation | None]:
    if not stu.has("student_id", "school_year"):
        return []
    dup = _duplicated(stu.codes("student_id"), stu.codes("school_year"))
    rule = "(student_id, school_year) must be unique; each of these rows repeats another's"
    return [stu.violation(None, rule, dup)]


def _attendance_rules(att: _Table) -> list[Violation | None]:
    f = att.frame
    found: list[Violation | None] = []
    for kind in ("inperson", "remote"):
        a, m = f"{kind}_attended", f"{kind}_membership"
        if att.has(a, m):
            over = (f[a] > f[m]).to_numpy(dtype=bool, na_value=False)
            found.append(att.violation(a, f"must be ≤ {m}", over, show_values=False))
    if att.has("student_id", "month", "school_id"):
        dup = _duplicated(att.codes("student_id"), att.codes("month"), att.codes("school_id"))
        rule = "(student_id, month, school_id) must be unique; each of these rows repeats another's"
        found.append(att.violation(None, rule, dup))
    if att.has("student_id", "month", "inperson_membership", "remote_membership"):
        total = f["inperson_membership"].fillna(0) + f["remote_membership"].fillna(0)
        total = total.to_numpy(copy=True)
        sid, month = att.codes("student_id"), att.codes("month")
        multi = _duplicated(sid, month)  # a student in two schools in one month
        if multi.any():
            sub = pd.Series(total[multi])
            total[multi] = sub.groupby([sid[multi], month[multi]]).transform("sum").to_numpy()
        rule = (
            f"must be at most {MAX_MONTH_MEMBERSHIP_DAYS} days in a month, summed over the "
            "student's rows for that month (all schools)"
        )
        over = total > MAX_MONTH_MEMBERSHIP_DAYS
        found.append(att.violation("inperson_membership + remote_membership", rule, over))
    return found


def _enrolment_rules(stu: _Table, att: _Table, n_ids: int) -> list[Violation | None]:
    """Attendance rows need a student known to ``students`` for the month's school year."""
    s_sid, a_sid = stu.codes("student_id"), att.codes("student_id")
    start = _school_year_starts(stu.frame["school_year"])
    keep = (s_sid >= 0) & (start >= 0)
    years = np.unique(start[keep])
    # the school year holding the month; July/August may belong to either adjacent year
    # (computed for each distinct month, then gathered to the rows)
    codes, year, month = _distinct_year_month(att.frame["month"])
    ending = np.where(month >= 9, year, year - 1)
    starting = np.where((month == 7) | (month == 8), year, ending)
    month_ok = month > 0
    month_in_years = month_ok & (np.isin(ending, years) | np.isin(starting, years))
    ok_month, in_years = month_ok[codes], month_in_years[codes]
    known = _lookup(s_sid, n_ids)[a_sid]
    # enrolled[code, k]: the student has a students row for the school year years[k]
    enrolled = np.zeros((n_ids + 1, max(years.size, 1)), dtype=bool)
    enrolled[s_sid[keep], np.searchsorted(years, start[keep])] = True
    has_row = np.zeros(len(a_sid), dtype=bool)
    for candidate in (ending, starting) if years.size else ():
        k = np.minimum(np.searchsorted(years, candidate), years.size - 1)
        hit = month_in_years & (years[k] == candidate)  # by distinct month
        rows = np.flatnonzero(hit[codes] & known)
        has_row[rows] |= enrolled[a_sid[rows], k[codes[rows]]]
    return [
        _unknown_ids(att, stu, (a_sid >= 0) & ~known),
        att.violation(
            "month",
            f"is outside the school years in students ({_years_text(years)}): "
            "dates outside the school years",
            ok_month & ~in_years,
        ),
        att.violation(
            "student_id",
            "must have a students row for the school year that contains month (July/August: "
            "the school year ending in June or the one starting in September)",
            in_years & known & ~has_row,
        ),
    ]


def _unknown_ids(tbl: _Table, stu: _Table, mask: np.ndarray) -> Violation | None:
    """``student_id must appear in students``, with how the unmatched ids differ in form."""
    if not mask.any():
        return None
    unknown = pd.Series(pd.unique(tbl.frame["student_id"].to_numpy()[mask]))
    known = pd.Series(pd.unique(stu.frame["student_id"].dropna().to_numpy()))
    rule = "must appear in students" + id_form_hint(unknown, known, stu.file)
    return tbl.violation("student_id", rule, mask)


def _district_spellings(tables: Iterable[_Table]) -> list[Violation]:
    """Districts whose names differ only in case (over all tables): one would become two."""
    with_district = [t for t in tables if t.has("district")]
    if not with_district:
        return []
    collisions = case_collisions(pd.concat([t.frame["district"] for t in with_district]))
    problems = []
    for spellings in collisions.values():
        shown = " vs ".join(_show(s) for s in spellings[:5])
        rule = (
            f"district names differ only in case ({shown}): one district would be split in "
            f"two; recode them to one spelling in the input mapping (recode: district:)"
        )
        for t in with_district:
            mask = np.zeros(len(t.frame), dtype=bool)
            mask[positions_of(t.frame["district"], spellings[1:])] = True
            v = t.violation("district", rule, mask, show_values=False)
            if v:
                problems.append(v)
    return problems


def _visit_rules(
    vis: _Table,
    stu: _Table | None,
    att: _Table | None,
    n_ids: int,
    *,
    program_start: date | None,
) -> tuple[list[Violation | None], list[str]]:
    f = vis.frame
    found: list[Violation | None] = []
    notes: list[DataWarning | None] = []
    if vis.has("visit_id"):
        dup = _duplicated(vis.codes("visit_id"))
        found.append(vis.violation("visit_id", "must be unique", dup))
    if vis.has("student_id") and stu is not None and stu.has("student_id"):
        v_sid = vis.codes("student_id")
        unknown = (v_sid >= 0) & ~_lookup(stu.codes("student_id"), n_ids)[v_sid]
        found.append(_unknown_ids(vis, stu, unknown))
    if not vis.has("visit_date"):
        return found, notes
    dates = f["visit_date"]
    # without a usable visit_status (a missing column is already a violation) completed
    # and attempted visits cannot be told apart: the program-start rule waits for it
    if program_start is not None and vis.has("visit_status"):
        early = (dates < pd.Timestamp(program_start)).to_numpy(dtype=bool, na_value=False)
        attempted = (f["visit_status"] == "attempted").to_numpy(dtype=bool, na_value=False)
        start = program_start.isoformat()
        rule = (
            f"must not be before the program start {start} for a completed visit (a vintage "
            "with an earlier start sets program_start in its parameters)"
        )
        found.append(vis.violation("visit_date", rule, early & ~attempted, show_values=False))
        notes.append(
            _warning_at(
                vis,
                "visit_date",
                f"attempted visits before the program start {start}; attempts never define "
                "the event month",
                early & attempted,
                "kept",
            )
        )
    if att is not None and att.has("month"):
        _, year, month = _distinct_year_month(att.frame["month"])  # the distinct months
        if (month > 0).any():
            last = int((year * 12 + month - 1)[month > 0].max())  # months since year 0
            visit_month = (dates.dt.year * 12 + dates.dt.month - 1).to_numpy(
                dtype=float, na_value=np.nan
            )
            late = visit_month > last
            rule = (
                f"is after the last month with attendance data ({last // 12}-"
                f"{last % 12 + 1:02d}); these visits have no outcome data"
            )
            notes.append(_warning_at(vis, "visit_date", rule, late, "kept"))
    return found, [n for n in notes if n is not None]


# --------------------------------------------------------------------------------------
# All rules of the tables that could be read
# --------------------------------------------------------------------------------------


def _table_rules(
    tables: dict[str, _Table], *, program_start: date | None
) -> tuple[list[Violation], list[DataWarning]]:
    """Column, key and cross-table rules over the tables that could be read."""
    problems: list[Violation] = []
    notes: list[DataWarning] = []
    found: list[Violation | None] = []
    stu, att, vis = (tables.get(n) for n in TABLES)
    n_ids = _share_student_codes(tables.values())
    for tbl in tables.values():
        problems += _column_rules(tbl)
    problems += _district_spellings(tables.values())
    if stu is not None:
        found += _students_rules(stu)
    if att is not None:
        found += _attendance_rules(att)
        if (
            stu is not None
            and stu.has("student_id", "school_year")
            and att.has("student_id", "month")
        ):
            found += _enrolment_rules(stu, att, n_ids)
    if vis is not None:
        visit_found, visit_notes = _visit_rules(vis, stu, att, n_ids, program_start=program_start)
        found += visit_found
        notes += visit_notes
    problems += [v for v in found if v is not None]
    return problems, notes
