"""Tables for readers: the headline table and full HTML renderings of published tables.

Every rendering starts from the published (suppressed) table and formats each number once
with :func:`leapresearch.publish.labels.fmt`, so the notebook pages, the index page and the
PDF print the same digits. Codes become words through :mod:`leapresearch.publish.labels`;
suppressed cells show :data:`~leapresearch.publish.labels.SUPPRESSED` with a footnote; no
index column is printed and no row is cut: long tables fold into a ``<details>`` element
that links to the CSV holding every row.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.estimation.sensitivity import NO_PRETREND_FIT
from leapresearch.estimation.subgroups import GROUP_WITHIN_CALIPER
from leapresearch.publish import labels
from leapresearch.publish.calibration import (
    DIAGNOSTIC_SHORT,
    Calibration,
    diagnostic_results,
    load_calibration,
    reported_in,
)

COLLAPSE_ROWS = 25
"""Tables longer than this fold into a collapsible element."""

WRITTEN_TABLES = frozenset(
    {
        "balance",
        "event_study",
        "long_term",
        "matching_summary",
        "naive_pre_post",
        "placebo",
        "pretrend_tests",
        "robust_estimator",
    }
)
"""Tables a run writes to ``tables/<name>.csv`` (the CSV a folded table links to)."""

_CODE_COLUMNS = {
    "group": labels.group_label,
    "covariate": labels.covariate_label,
    "outcome": labels.outcome_label,
    "cohort": labels.cohort_label,
}
_COUNT_HINTS = ("n_", "treated", "matched", "comparisons", "students", "df", "unmatched")


def _is_count(name: str, col: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(col.dtype):
        return True
    if not pd.api.types.is_float_dtype(col.dtype):
        return False
    values = col.dropna().to_numpy()
    whole = values.size > 0 and bool(np.all(values == np.round(values)))
    return whole and any(h in name for h in _COUNT_HINTS)


def _cell(value, *, count: bool, digits: int) -> str:
    if isinstance(value, bool | np.bool_):
        return "Yes" if value else "No"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return labels.SUPPRESSED
        return f"{int(round(value)):,}" if count else labels.fmt(value, digits)
    if value is None or value is pd.NA:
        return labels.SUPPRESSED
    return str(value)


def readable(table: pd.DataFrame, *, digits: int = 1) -> tuple[pd.DataFrame, bool, bool]:
    """Codes in words, numbers formatted once, headings in words.

    Returns
    -------
    (DataFrame of str, bool, bool)
        The formatted table, whether any cell is shown as suppressed (a row flagged by the
        privacy rules) and whether any shows as not available (empty for another reason).
    """
    out = table.reset_index(drop=True)
    flagged = (
        out["suppressed"].fillna(False).astype(bool).to_numpy()
        if "suppressed" in out.columns
        else np.zeros(len(out), dtype=bool)
    )
    keys = []
    if "group" in out.columns:
        keys.append(out["group"].astype(str).map(labels.group_key))
    if "cohort" in out.columns:
        keys.append(out["cohort"].astype(str).map(labels.cohort_key))
    if keys:  # reading order (all, grade bands, cohorts in time order, ...); stable otherwise
        rows = list(zip(*(k.tolist() for k in keys), strict=True))
        order = sorted(range(len(out)), key=rows.__getitem__)
        out, flagged = out.iloc[order].reset_index(drop=True), flagged[order]
    out = out.drop(columns=[c for c in ("suppressed",) if c in out.columns])
    cells: dict[str, list[str]] = {}
    for name in out.columns:
        col = out[name]
        text = col.dtype == object or pd.api.types.is_string_dtype(col.dtype)
        if name in _CODE_COLUMNS and text:
            cells[name] = [_CODE_COLUMNS[name](str(v)) for v in col]
            continue
        count = _is_count(str(name), col)
        places = max(digits, 3) if "p_value" in str(name) else digits
        values = [_cell(v, count=count, digits=places) for v in col.tolist()]
        # an empty cell is suppressed only in a row the privacy rules flagged
        cells[name] = [
            labels.NOT_AVAILABLE if v == labels.SUPPRESSED and not f else v
            for v, f in zip(values, flagged, strict=True)
        ]
    frame = pd.DataFrame(cells, columns=list(out.columns))
    any_suppressed = bool((frame == labels.SUPPRESSED).to_numpy().any())
    any_missing = bool((frame == labels.NOT_AVAILABLE).to_numpy().any())
    frame.columns = [labels.column_label(str(c)) for c in out.columns]
    return frame, any_suppressed, any_missing


def table_html(
    table: pd.DataFrame,
    *,
    digits: int = 1,
    csv: str | None = None,
    collapse_rows: int = COLLAPSE_ROWS,
    caption: str | None = None,
) -> str:
    """The whole table as HTML: no index column, no truncation, suppressed cells marked.

    Parameters
    ----------
    table : DataFrame
        A published (suppressed) table.
    digits : int
        Decimals of non-count numbers (p-values: at least three).
    csv : str, optional
        Link to the CSV with every row (shown with long tables).
    collapse_rows : int
        Longer tables are folded into ``<details>``.
    caption : str, optional
    """
    frame, any_suppressed, any_missing = readable(table, digits=digits)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    doc = (
        f'<table class="lr-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )
    notes = []
    if any_suppressed:
        notes.append(html.escape(labels.SUPPRESSED_NOTE))
    if any_missing:
        notes.append(html.escape(labels.NOT_AVAILABLE_NOTE))
    if csv:
        notes.append(f'Every row: <a href="{html.escape(csv)}">{html.escape(csv)}</a>.')
    foot = f'<p class="lr-note">{" ".join(notes)}</p>' if notes else ""
    if len(frame) > collapse_rows:
        return (
            f'<details class="lr-details"><summary>Show all {len(frame):,} rows '
            f"({len(frame.columns)} columns)</summary>{doc}</details>{foot}"
        )
    return doc + foot


def csv_link(name: str) -> str | None:
    """Relative link from a report page to ``tables/<name>.csv`` (None if not written)."""
    return f"../tables/{name}.csv" if name in WRITTEN_TABLES else None


PROCEDURE_INTERVAL = ("procedure_ci_lower", "procedure_ci_upper")
"""The whole-procedure interval of ``event_study.csv`` (score, matches, adjustment re-run)."""

INTERVAL_MARK = "§"
"""Mark of an interval that holds the first steps fixed (the table has no valid one)."""

CONDITIONAL_WORDS = "conditional on the estimated score and matches"

HEADLINE_TABLE_FAMILIES = ("all", GROUP_WITHIN_CALIPER, "grade_band", "cohort")
"""Families of the headline table's rows (:func:`headline_table`)."""
"""How an interval that holds the propensity score and the matches fixed is labelled."""


def lead_intervals(event_study: pd.DataFrame) -> pd.DataFrame:
    """The interval the report leads with, for each row of the event-study table.

    The whole-procedure interval (``procedure_ci_lower``, ``procedure_ci_upper``: the
    propensity score, the matching and the adjustment re-estimated in each bootstrap draw)
    where both ends are published; else the table's ``ci_lower``, ``ci_upper``, which
    hold the first steps fixed (conditional on the estimated score and matches).

    Returns
    -------
    DataFrame
        The table with ``lead_lower``, ``lead_upper`` and ``lead_kind`` (``procedure``,
        ``conditional``, or empty where no interval is published: suppressed).
    """
    out = event_study.copy()
    lo, hi = PROCEDURE_INTERVAL
    if {lo, hi} <= set(out.columns):
        valid = (out[lo].notna() & out[hi].notna()).to_numpy()
        p_lo, p_hi = out[lo].to_numpy(np.float64), out[hi].to_numpy(np.float64)
    else:
        valid = np.zeros(len(out), dtype=bool)
        p_lo = p_hi = np.full(len(out), np.nan)
    out["lead_lower"] = np.where(valid, p_lo, out["ci_lower"].to_numpy(np.float64))
    out["lead_upper"] = np.where(valid, p_hi, out["ci_upper"].to_numpy(np.float64))
    shown = (out["lead_lower"].notna() & out["lead_upper"].notna()).to_numpy()
    out["lead_kind"] = np.where(valid, "procedure", np.where(shown, "conditional", ""))
    return out


def headline_table(
    event_study: pd.DataFrame,
    *,
    rel_times: Sequence[int],
    pretrends: pd.DataFrame | None = None,
    groups: Sequence[str] | None = None,
    alpha: float = 0.05,
    sensitivity: pd.DataFrame | None = None,
    falsification: pd.DataFrame | None = None,
    placebo: pd.DataFrame | None = None,
    calibration: Calibration | None = None,
) -> pd.DataFrame:
    """Headline numbers: one row per group, estimate and 95% CI at each headline month.

    Parameters
    ----------
    event_study : DataFrame
        The published event-study table.
    rel_times : sequence of int
        Headline months since the first visit.
    pretrends : DataFrame, optional
        Published pre-trend tests: adds the visited students per group and the p-value of
        each *calibrated* diagnostic (:mod:`leapresearch.publish.calibration`: its size in
        the validation near nominal) the group has; the others are left out.
    groups : sequence of str, optional
        Groups to show; default: all, within the caliper, grade bands and cohorts present.
    alpha : float
        Level of the tests (whether a calibrated test rejects).
    sensitivity : DataFrame, optional
        The published ``sensitivity.csv``: adds for each month ``m`` the
        relative-magnitudes breakdown value ``brk_m`` of the groups it bounds (NaN for the
        others) and its ``inference_m`` (``C-LF`` or the ``Bonferroni`` fallback).
    falsification, placebo : DataFrame, optional
        The published ``falsification.csv`` and ``placebo.csv`` (their joint tests enter
        only if calibrated).
    calibration : Calibration, optional
        Default: the packaged record (:func:`~leapresearch.publish.calibration.load_calibration`).

    Returns
    -------
    DataFrame
        ``group`` (code), ``n_treated``, ``n_comparison`` (students at the first headline
        month), for each calibrated diagnostic ``d`` with rows: ``p_d`` and ``months_d``
        (NaN, empty: no test), and for each month ``m``: ``est_m``, ``lo_m``, ``hi_m`` (the
        interval the report leads with, :func:`lead_intervals`), ``kind_m``
        (``procedure`` / ``conditional``) and ``brk_m``, ``inference_m`` with
        ``sensitivity``; rows in reading order (:func:`leapresearch.publish.labels.sort_groups`).
    """
    present = event_study["group"].unique()
    if groups is None:
        groups = [g for g in present if labels.family_of(g) in HEADLINE_TABLE_FAMILIES]
    order = [g for g in labels.sort_groups(groups) if g in set(present)]
    es = lead_intervals(event_study).set_index(["group", "rel_time"])
    brk = _rm_breakdowns(sensitivity)
    results = _calibrated_results(pretrends, falsification, placebo, calibration)
    rows = []
    for g in order:
        row: dict[str, object] = {"group": g}
        first = es.loc[(g, rel_times[0])] if (g, rel_times[0]) in es.index else None
        row["n_treated"] = np.nan if first is None else first["n_treated"]
        row["n_comparison"] = np.nan if first is None else first["n_comparison"]
        if pretrends is not None:
            p = pretrends.loc[pretrends["group"] == g]
            row["n_treated"] = p["n_treated"].iloc[0] if len(p) else row["n_treated"]
        for name, d in results.items():
            hit = d.loc[d["group"] == g]
            row[f"p_{name}"] = hit["p_value"].iloc[0] if len(hit) else np.nan
            row[f"months_{name}"] = hit["months"].iloc[0] if len(hit) else ""
        for m in rel_times:
            r = es.loc[(g, m)] if (g, m) in es.index else None
            for key, col in (("est", "estimate"), ("lo", "lead_lower"), ("hi", "lead_upper")):
                row[f"{key}_{m}"] = np.nan if r is None else r[col]
            row[f"kind_{m}"] = "" if r is None else r["lead_kind"]
            if brk is not None:
                b = brk.loc[(g, m)] if (g, m) in brk.index else None
                row[f"brk_{m}"] = np.nan if b is None else b["breakdown"]
                row[f"inference_{m}"] = "" if b is None else b["inference"]
        rows.append(row)
    return pd.DataFrame(rows)


def _calibrated_results(
    pretrends: pd.DataFrame | None,
    falsification: pd.DataFrame | None,
    placebo: pd.DataFrame | None,
    calibration: Calibration | None,
) -> dict[str, pd.DataFrame]:
    """Rows of each calibrated diagnostic (name -> its rows by group; none: no test)."""
    if pretrends is None and falsification is None and placebo is None:
        return {}
    cal = load_calibration() if calibration is None else calibration
    found = diagnostic_results(pretrends, falsification, placebo)
    return {name: found.loc[found["diagnostic"] == name] for name in cal.calibrated()}


def _rm_breakdowns(sensitivity: pd.DataFrame | None) -> pd.DataFrame | None:
    """Relative-magnitudes breakdown (and inference) by ``(group, rel_time)``, or None."""
    if sensitivity is None or "note" in sensitivity.columns or sensitivity.empty:
        return None
    rm = sensitivity.loc[sensitivity["method"] == "relative_magnitudes"]
    if "inference" not in rm.columns:
        rm = rm.assign(inference="")
    return rm.drop_duplicates(["group", "rel_time"]).set_index(["group", "rel_time"])[
        ["breakdown", "inference"]
    ]


def _diagnostic_names(head: pd.DataFrame) -> list[str]:
    """The calibrated diagnostics of a headline table (its ``p_<name>`` columns)."""
    return [c[2:] for c in head.columns if c.startswith("p_") and f"months_{c[2:]}" in head]


def _diagnostic_cell(p: float, alpha: float) -> str:
    if pd.isna(p):
        return "no test"
    return f"p = {labels.fmt(p, 3)}" + (f", rejects at {alpha:.0%}" if p < alpha else "")


def _diagnostic_heading(head: pd.DataFrame, name: str) -> str:
    """``Pre-trend test, adjusted, months <=-12..-2`` (the months of the run)."""
    months = next((m for m in head[f"months_{name}"] if m), "")
    return DIAGNOSTIC_SHORT.get(name, name) + (f", months {months}" if months else "")


def _diagnostic_notes(head: pd.DataFrame, names: list[str], cal: Calibration) -> list[str]:
    """What each calibrated diagnostic measured in the validation, and what is left out."""
    notes = []
    for name in names:
        d = cal.diagnostics[name]
        heading = _diagnostic_heading(head, name)
        power = (
            "; it has no measured power against the failures of parallel trends built "
            "there, so a pass says little"
            if d.no_power_against()
            else ""
        )
        where = f" ({reported_in(name)})" if reported_in(name) else ""
        notes.append(
            f"{heading}: the p-value of the group's joint test{where}. In the "
            f"validation ({cal.provenance(d)}; the test of all visited students) it "
            f"{d.measured('of draws')}{power}."
        )
    left = [cal.diagnostics[n] for n in cal.uncalibrated()]
    if left:
        where = sorted({reported_in(d.name) for d in left} - {""})
        shown = " and ".join(where) if where else "the notebooks"
        notes.append(
            "Not shown here: diagnostics whose size is not near nominal ("
            + "; ".join(f"{d.words}: {d.size_summary()}" for d in left)
            + f" of validation draws where the design is right); {shown} report them with "
            f"it. Rule: {cal.rule()}."
        )
    return notes


def _interval_note(head: pd.DataFrame, rel_times: Sequence[int], conditional: str) -> str:
    """Which intervals the cells show: whole-procedure ones, and where they are missing."""
    kinds = head.reindex(columns=[f"kind_{m}" for m in rel_times])
    fallback = head.loc[(kinds == "conditional").any(axis=1), "group"]
    proc = head.loc[(kinds == "procedure").any(axis=1), "group"]
    if proc.empty:
        return (
            f"The intervals are the {conditional} ones, {CONDITIONAL_WORDS} (they leave out "
            "the estimation error of the first steps): event_study.csv has no whole-procedure "
            "interval for these groups."
        )
    note = (
        "Intervals from the whole-procedure bootstrap (propensity score, matching and "
        "regression adjustment re-estimated in each draw)"
    )
    if fallback.empty:
        return note + "."
    names = ", ".join(labels.group_label(g) for g in fallback)
    return (
        f"{note}; {INTERVAL_MARK}: event_study.csv has no whole-procedure interval for this "
        f"cell, so it shows the {conditional} interval, {CONDITIONAL_WORDS} ("
        f"{html.escape(names)})."
    )


def headline_html(
    head: pd.DataFrame,
    *,
    rel_times: Sequence[int],
    alpha: float = 0.05,
    calibration: Calibration | None = None,
    conditional: str = "analytic",
) -> str:
    """The headline table as HTML: each month's cell holds the estimate and its 95% CI.

    The interval is the whole-procedure one where published, else the ``conditional``
    one (``analytic`` or the multiplier ``bootstrap``'s) marked :data:`INTERVAL_MARK`;
    one column per calibrated diagnostic with its p-value, its measured size and power in
    a footnote (``calibration``: default the packaged record).
    """
    cal = load_calibration() if calibration is None else calibration
    names = _diagnostic_names(head)
    months = "".join(f"<th>{labels.month_label(m)}</th>" for m in rel_times)
    diag = "".join(f"<th>{html.escape(_diagnostic_heading(head, n))}: p-value</th>" for n in names)
    rows = []
    any_suppressed = False
    with_brk = f"brk_{rel_times[0]}" in head.columns
    kinds = head.reindex(columns=[f"kind_{m}" for m in rel_times])
    marked = bool((kinds == "procedure").to_numpy().any())  # else one note says it all
    for r in head.to_dict("records"):
        cells = []
        for m in rel_times:
            est = labels.fmt(r[f"est_{m}"], 1, signed=True)
            ci = labels.fmt_interval(r[f"lo_{m}"], r[f"hi_{m}"], 1)
            mark = INTERVAL_MARK if marked and r.get(f"kind_{m}") == "conditional" else ""
            any_suppressed |= est == labels.SUPPRESSED
            brk = ""
            how = r.get(f"inference_{m}") if with_brk else ""
            if how == NO_PRETREND_FIT:
                brk = f'<br><span class="lr-ci">no bounds ({NO_PRETREND_FIT})</span>'
            elif how:
                dagger = "†" if how == "Bonferroni" else ""
                brk = (
                    f'<br><span class="lr-ci">breakdown Mbar '
                    f"{labels.fmt(r[f'brk_{m}'], 2)}{dagger}</span>"
                )
            cells.append(f'<td>{est}<br><span class="lr-ci">({ci}){mark}</span>{brk}</td>')
        n1 = _cell(r["n_treated"], count=True, digits=0)
        n0 = _cell(r["n_comparison"], count=True, digits=0)
        p = "".join(f"<td>{_diagnostic_cell(r[f'p_{n}'], alpha)}</td>" for n in names)
        rows.append(
            f'<tr><th scope="row">{html.escape(labels.group_label(r["group"]))}</th>'
            f"<td>{n1}</td><td>{n0}</td>{''.join(cells)}{p}</tr>"
        )
    foot = [
        "Effect on the attendance rate in percentage points (pp), with its 95% confidence "
        "interval in brackets. Visited students: students in the group; comparison students: "
        f"matched comparison students at {labels.month_label(rel_times[0]).lower()}.",
        _interval_note(head, rel_times, conditional),
    ]
    if names or cal.uncalibrated():
        foot += [html.escape(t) for t in _diagnostic_notes(head, names, cal)]
    if with_brk:
        foot.append(_breakdown_note(head, rel_times))
        if validated := cal.breakdown_words(max(rel_times)):
            foot.append(html.escape(validated))
    if any_suppressed:
        foot.append(html.escape(labels.SUPPRESSED_NOTE))
    return (
        '<table class="lr-table lr-headline"><thead><tr><th>Group</th><th>Visited students</th>'
        f"<th>Comparison students</th>{months}{diag}</tr></thead><tbody>{''.join(rows)}"
        f'</tbody></table><p class="lr-note">{" ".join(foot)}</p>'
    )


def _breakdown_note(head: pd.DataFrame, rel_times: Sequence[int]) -> str:
    """Footnote of the breakdown values: what they mean, for which groups, and how made."""
    inf = pd.concat([head[f"inference_{m}"] for m in rel_times], axis=1)
    bounded = head.loc[(~inf.isin(["", NO_PRETREND_FIT])).any(axis=1), "group"]
    unbounded = head.loc[(inf == NO_PRETREND_FIT).any(axis=1), "group"]
    names = ", ".join(labels.group_label(g) for g in bounded)
    note = (
        "Breakdown Mbar (notebook 03, sensitivity.csv; shown for "
        f"{html.escape(names) or 'no group'}): the smallest Mbar at which the 95% "
        "relative-magnitudes interval of Rambachan and Roth includes zero, i.e. the "
        "estimate stays distinguishable from zero as long as the post-visit departure from "
        "parallel trends in any month is below Mbar times the largest month-to-month "
        "departure before the visit (those of the group's fit on its untreated rows, no "
        "post-visit outcome); conditional least-favourable hybrid interval (C-LF, as "
        "the R package HonestDiD computes it)."
    )
    if (inf == "Bonferroni").to_numpy().any():
        note += " †: the hybrid could not be computed; Bonferroni projection (more conservative)."
    if len(unbounded):
        note += (
            " Not bounded: "
            + html.escape(", ".join(labels.group_label(g) for g in unbounded))
            + " (its untreated rows gave no pre-trend fit, whose pre-period the bounds need)."
        )
    return note


INFERENCE_COLUMNS = [
    "rel_time",
    "estimate",
    "std_error",
    "boot_std_error",
    "se_ratio",
    "ci_lower",
    "ci_upper",
    "band_lower",
    "band_upper",
]
"""Columns of :func:`inference_table`."""


def composition_table(balanced: pd.DataFrame) -> pd.DataFrame:
    """The full and the balanced sample side by side, one row per month (notebook 03).

    Parameters
    ----------
    balanced : DataFrame
        The published ``balanced_sample`` table (``sample``: ``full`` / ``balanced``).

    Returns
    -------
    DataFrame
        ``rel_time``, ``estimate_full``, ``estimate_balanced``, ``difference`` (full minus
        balanced), ``n_treated_full``, ``n_treated_balanced``; months in order.
    """
    wide = balanced.pivot(index="rel_time", columns="sample", values=["estimate", "n_treated"])
    out = pd.DataFrame(
        {
            "rel_time": wide.index.to_numpy(),
            "estimate_full": wide[("estimate", "full")].to_numpy(),
            "estimate_balanced": wide[("estimate", "balanced")].to_numpy(),
            "n_treated_full": wide[("n_treated", "full")].to_numpy(),
            "n_treated_balanced": wide[("n_treated", "balanced")].to_numpy(),
        }
    )
    out.insert(3, "difference", out["estimate_full"] - out["estimate_balanced"])
    return out.sort_values("rel_time", kind="mergesort").reset_index(drop=True)


def inference_table(
    event_study: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int]
) -> pd.DataFrame:
    """Analytic and bootstrap standard errors, pointwise interval and band of one group.

    Parameters
    ----------
    event_study : DataFrame
        The published event-study table (with ``boot_std_error``, ``band_lower``,
        ``band_upper``).
    group : str
        The group shown.
    rel_times : sequence of int
        Months shown (the headline months).

    Returns
    -------
    DataFrame
        :data:`INFERENCE_COLUMNS`, one row per month of ``rel_times`` present:
        ``se_ratio`` is the bootstrap over the analytic standard error; ``ci_lower``,
        ``ci_upper`` the published pointwise interval; ``band_lower``, ``band_upper`` the
        95% simultaneous band over all post-visit months, at these months.
    """
    d = event_study.loc[
        (event_study["group"] == group) & event_study["rel_time"].isin(list(rel_times))
    ]
    d = d.reindex(columns=[c for c in INFERENCE_COLUMNS if c != "se_ratio"])
    d = d.sort_values("rel_time", kind="mergesort").reset_index(drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d["boot_std_error"].astype(float) / d["std_error"].astype(float)
    d.insert(4, "se_ratio", ratio)
    return d
