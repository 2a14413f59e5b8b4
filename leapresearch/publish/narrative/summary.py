"""The summary of notebook 08 and of the front page.

The headline table (the same HTML as the report's index page), the crosswalk of our
headline estimates to the published figures (notebook 08 and the front page's table,
:func:`leapresearch.publish.frontpage.crosswalk_html`), the front page's summary
paragraph with the visited students outside the caliper, and on simulated data the
estimates beside the simulator's truth (notebook 08).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.estimation.sensitivity import NO_PRETREND_FIT
from leapresearch.estimation.subgroups import GROUP_WITHIN_CALIPER
from leapresearch.publish.calibration import Calibration
from leapresearch.publish.labels import fmt, fmt_interval, group_label
from leapresearch.publish.narrative.common import _months, _pp, _snapped
from leapresearch.publish.narrative.event_study import describe_effect
from leapresearch.publish.narrative.identification import describe_calibrated_diagnostics


@_snapped
def headline_table(
    table: pd.DataFrame,
    *,
    rel_times: Sequence[int],
    pretrends: pd.DataFrame | None = None,
    alpha: float = 0.05,
    sensitivity: pd.DataFrame | None = None,
    falsification: pd.DataFrame | None = None,
    placebo: pd.DataFrame | None = None,
    calibration: Calibration | None = None,
    conditional: str = "analytic",
):
    """The headline table (estimate, 95% CI, n per group, in reading order), for display.

    See :func:`leapresearch.publish.tables.headline_table` (the whole-procedure interval
    where published, the calibrated diagnostics; with ``sensitivity``, the
    relative-magnitudes breakdown value beside each bounded estimate); the object returned
    shows as the same HTML table as the report's index page.
    """
    from leapresearch.publish.tables import headline_html
    from leapresearch.publish.tables import headline_table as _headline

    head = _headline(
        table,
        rel_times=rel_times,
        pretrends=pretrends,
        alpha=alpha,
        sensitivity=sensitivity,
        falsification=falsification,
        placebo=placebo,
        calibration=calibration,
    )
    html = headline_html(
        head, rel_times=rel_times, alpha=alpha, calibration=calibration, conditional=conditional
    )
    return HTMLTable(html, head)


class HTMLTable:
    """A table shown as HTML in notebooks (``data`` holds the numbers)."""

    def __init__(self, html: str, data: pd.DataFrame) -> None:
        self.html, self.data = html, data

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.data.to_string(index=False)


@_snapped
def crosswalk(table: pd.DataFrame, published: Sequence) -> pd.DataFrame:
    """Our headline estimates beside the published figures (notebook 08, the front page).

    Parameters
    ----------
    table : DataFrame
        The published (suppressed) ``event_study.csv``.
    published : sequence of PublishedFigure
        ``report.published`` of the parameters.

    Returns
    -------
    DataFrame
        ``group, rel_time, published, estimate, ci_lower, ci_upper, interval, difference,
        published_in_ci, definition``: the interval is the one the report leads with
        (``interval``: ``procedure``, the whole-procedure bootstrap, or ``conditional``,
        the table's own, :func:`leapresearch.publish.tables.lead_intervals`);
        ``definition``: what differs from ours.
    """
    from leapresearch.publish.tables import lead_intervals

    lead = lead_intervals(table)
    rows = []
    for p in published:
        hit = lead.loc[(lead["group"] == p.group) & (lead["rel_time"] == p.rel_time)]
        r = hit.iloc[0] if len(hit) else pd.Series(dtype=float)
        est, lo, hi = (r.get(c, np.nan) for c in ("estimate", "lead_lower", "lead_upper"))
        rows.append(
            {
                "group": p.group,
                "rel_time": p.rel_time,
                "published": float(p.estimate),
                "estimate": est,
                "ci_lower": lo,
                "ci_upper": hi,
                "interval": r.get("lead_kind", ""),
                "difference": est - p.estimate,
                "published_in_ci": bool(lo <= p.estimate <= hi) if pd.notna(est) else None,
                "definition": ("published as approximate; " if p.approximate else "")
                + p.difference,
            }
        )
    return pd.DataFrame(rows)


def describe_lead_intervals(
    table: pd.DataFrame, cells: Sequence[tuple[str, int]], *, conditional: str = "analytic"
) -> tuple[str, bool]:
    """Which intervals the summary's effects carry, in one sentence, and whether to mark.

    ``cells``: the ``(group, rel_time)`` described. Returns the sentence and whether the
    sentences must mark each interval that falls back to the conditional one (some cells
    have a whole-procedure interval, others not).
    """
    from leapresearch.publish.tables import CONDITIONAL_WORDS, lead_intervals

    lead = lead_intervals(table).set_index(["group", "rel_time"])
    kinds = [lead.loc[c, "lead_kind"] for c in cells if c in lead.index]
    kinds = [k for k in kinds if k]  # a suppressed estimate shows no interval
    if not kinds:
        return "", False
    if "procedure" not in kinds:
        return (
            f"These intervals are the {conditional} ones, {CONDITIONAL_WORDS} (they leave out "
            "the estimation error of the first steps): event_study.csv has no whole-procedure "
            "interval for these groups.",
            False,
        )
    text = (
        "These intervals are from the whole-procedure bootstrap (score, matches and "
        "adjustment re-estimated in each draw)"
    )
    if "conditional" in kinds:
        return (
            text + f", except those marked {conditional}, where event_study.csv has none.",
            True,
        )
    return text + ".", False


@_snapped
def summary_paragraph(
    table: pd.DataFrame,
    pretrends: pd.DataFrame | None,
    *,
    rel_times: Sequence[int],
    alpha: float = 0.05,
    matching: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
    falsification: pd.DataFrame | None = None,
    placebo: pd.DataFrame | None = None,
    calibration: Calibration | None = None,
    conditional: str = "analytic",
) -> str:
    """The front page's summary: pooled effects with intervals, grade bands, checks.

    The intervals are those the report leads with (the whole-procedure ones where
    ``event_study.csv`` has them, else the ``conditional`` ones, and the text says which:
    :func:`describe_lead_intervals`). With the matching summary (``matching``), also how
    many visited students have no comparison within the caliper and the estimate without
    them (:func:`describe_within_caliper`); with the published ``sensitivity.csv``, the
    relative-magnitudes breakdown values of the headline estimates
    (:func:`describe_headline_breakdowns`); with the pre-trend tests (and the
    falsification and placebo tables), the diagnostics whose size in the validation is
    near nominal, with that size (:func:`describe_calibrated_diagnostics`).
    """
    first, last = rel_times[0], rel_times[-1]
    pooled = table.loc[(table["group"] == "all") & (table["rel_time"] == last)]
    parts = []
    if pretrends is not None and (pretrends["group"] == "all").any():
        n = pretrends.loc[pretrends["group"] == "all", "n_treated"].iloc[0]
        if pd.notna(n):
            parts.append(
                f"The evaluation compares {int(n):,} visited students with matched comparison "
                "students from the same district, grade band and month who had similar "
                "attendance before."
            )
    bands = [g for g in ("grade_band:PK-5", "grade_band:6-12") if (table["group"] == g).any()]
    cells = [("all", first)] + ([("all", last)] if not pooled.empty else [])
    cells += [(g, last) for g in bands]
    note, mark = describe_lead_intervals(table, cells, conditional=conditional)
    for g, m in cells:
        parts.append(
            describe_effect(
                table, group=g, rel_time=m, lead=True, conditional=conditional, mark=mark
            )
        )
    parts.append(note)
    parts.append(
        describe_within_caliper(table, matching, rel_time=last, lead=True, conditional=conditional)
    )
    if sensitivity is not None:
        parts.append(describe_headline_breakdowns(sensitivity, rel_times=rel_times))
    if pretrends is not None or falsification is not None or placebo is not None:
        parts.append(
            describe_calibrated_diagnostics(
                pretrends, falsification, placebo, alpha=alpha, calibration=calibration
            )
        )
    return " ".join(p for p in parts if p)


@_snapped
def describe_headline_breakdowns(sensitivity: pd.DataFrame, *, rel_times: Sequence[int]) -> str:
    """The relative-magnitudes breakdown values of the bounded groups, in one sentence.

    Read from the published ``sensitivity.csv`` (the ``breakdown`` of its
    ``relative_magnitudes`` rows: the smallest ``Mbar`` at which the 95% interval includes
    zero): each bounded group's value at the last headline month, and the smallest at any
    headline month with what it means. The headline table prints every month's beside
    its estimate.
    """
    if "note" in sensitivity.columns:
        return f"The sensitivity bounds could not be computed ({sensitivity['note'].iloc[0]})."
    rm = sensitivity.loc[
        (sensitivity["method"] == "relative_magnitudes")
        & sensitivity["rel_time"].isin(list(rel_times))
    ].drop_duplicates(["group", "rel_time"])
    if rm.empty:
        return "No relative-magnitudes bounds were computed at the headline months."
    last = int(rm["rel_time"].max())
    at_last = rm.loc[rm["rel_time"] == last]
    values = ", ".join(
        f"{group_label(g)} "
        + (f"not bounded ({NO_PRETREND_FIT})" if how == NO_PRETREND_FIT else fmt(b, 2))
        for g, b, how in zip(
            at_last["group"],
            at_last["breakdown"],
            at_last.reindex(columns=["inference"])["inference"],
            strict=True,
        )
    )
    fallback = (
        "; Bonferroni projection where the hybrid could not be computed"
        if "inference" in rm.columns and (rm["inference"] == "Bonferroni").any()
        else ""
    )
    text = (
        f"Relative-magnitudes breakdown values at {_months(last)} (the smallest Mbar at which "
        f"the 95% Rambachan-Roth interval includes zero{fallback}): {values}."
    )
    known = rm.dropna(subset=["breakdown"])
    if known.empty:
        return text
    weak = known.sort_values(["breakdown", "rel_time"], kind="mergesort").iloc[0]
    where = f"{group_label(weak['group'])} at {_months(int(weak['rel_time']))}"
    b = float(weak["breakdown"])
    if b >= 1:
        reading = (
            f"Even the smallest ({fmt(b, 2)}, {where}) survives a post-visit departure from "
            "parallel trends as large as the largest pre-visit month-to-month departure."
        )
    elif b > 0:
        reading = (
            f"The smallest ({fmt(b, 2)}, {where}) gives way to a post-visit departure from "
            f"parallel trends of {fmt(100 * b, 0)}% of the largest pre-visit month-to-month one."
        )
    else:
        reading = f"The interval of {where} includes zero already under parallel trends."
    return f"{text} {reading}"


def _outside_caliper_count(matching: pd.DataFrame | None) -> tuple[int, int] | None:
    """(visited students outside the caliper, visited students), or None if not published."""
    cols = ("treated", "matched_outside_caliper")
    if matching is None or not set(cols) <= set(matching.columns):
        return None
    counts = matching[list(cols)]
    if counts.isna().any().any() or counts["treated"].sum() <= 0:
        return None  # a suppressed cell: the total is not published
    return int(counts["matched_outside_caliper"].sum()), int(counts["treated"].sum())


@_snapped
def describe_within_caliper(
    table: pd.DataFrame,
    matching: pd.DataFrame | None = None,
    *,
    rel_time: int = 9,
    lead: bool = False,
    conditional: str = "analytic",
) -> str:
    """The visited students outside the caliper, and the estimate of those within it.

    ``table``: the published ``event_study.csv`` (groups ``all`` and ``within_caliper``);
    ``matching``: the published ``matching_summary.csv`` (the count of visited students
    matched outside the caliper; left out when a cell of it is suppressed). With ``lead``
    (the front page) the interval is the one the report leads with
    (:func:`leapresearch.publish.tables.lead_intervals`), and a fallback to the
    ``conditional`` one is said.
    """
    from leapresearch.publish.tables import CONDITIONAL_WORDS, lead_intervals

    count = _outside_caliper_count(matching)
    parts = []
    if count is not None and count[0] == 0:
        return (
            f"Every one of the {count[1]:,} visited students has a comparison within the caliper."
        )
    if count is not None:
        far, n = count
        parts.append(
            f"{far:,} of the {n:,} visited students ({fmt(100.0 * far / n, 0)}%) have no "
            "comparison student within the caliper of the propensity score and are compared "
            "with their nearest one outside it."
        )
    at = table.loc[table["rel_time"] == rel_time].set_index("group")
    if {"all", GROUP_WITHIN_CALIPER} <= set(at.index):
        w, a = at.loc[GROUP_WITHIN_CALIPER], at.loc["all"]
        if pd.notna(w["estimate"]) and pd.notna(a["estimate"]):
            lo, hi, note = w["ci_lower"], w["ci_upper"], ""
            if lead:
                ww = lead_intervals(at.loc[[GROUP_WITHIN_CALIPER]]).iloc[0]
                lo, hi = ww["lead_lower"], ww["lead_upper"]
                if ww["lead_kind"] == "conditional":
                    note = f"; {conditional}, {CONDITIONAL_WORDS}"
            parts.append(
                f"For the visited students with a comparison within the caliper, the estimate "
                f"{_months(rel_time)} after the first visit is {_pp(w['estimate'])} (95% CI "
                f"{fmt_interval(lo, hi)}{note}), against "
                f"{_pp(a['estimate'])} for all visited students."
            )
    return " ".join(parts)


HEADLINE_FAMILIES = ("all", "grade_band", "cohort")
"""Groups of the truth comparison's headline rows (:func:`truth_headline`)."""


def truth_headline(
    truth: pd.DataFrame, *, rel_times: Sequence[int], exhibit: str | None = None
) -> pd.DataFrame:
    """The headline rows of ``truth_comparison.csv``: what notebook 08 shows.

    The event study of all visited students, grade bands and cohorts at the headline months
    and the long-term attendance-rate effects of all visited students (``exhibit``: only
    the rows of ``event_study`` or ``long_term``); columns empty on every row are left out.
    """
    if truth.empty:
        return truth
    family = truth["group"].str.partition(":")[0]
    event = (truth["exhibit"] == "event_study") & truth["rel_time"].isin(list(rel_times))
    long = (truth["exhibit"] == "long_term") & (truth["group"] == "all")
    if "outcome" in truth:
        long &= truth["outcome"] == "attendance_rate"
    keep = family.isin(HEADLINE_FAMILIES) & (event | long)
    if exhibit is not None:
        keep &= truth["exhibit"] == exhibit
    cols = [c for c in truth.columns if not truth.loc[keep, c].isna().all()]
    return truth.loc[keep, cols].reset_index(drop=True)


@_snapped
def describe_truth_comparison(truth: pd.DataFrame, *, rel_times: Sequence[int]) -> str:
    """How often the intervals cover the simulator's truth, and where they miss it.

    ``truth``: the published ``truth_comparison.csv`` (no rows: the data are not simulated
    with a known truth).
    """
    if truth.empty:
        return (
            "These data carry no simulator's truth (real data, or simulated data whose marker "
            "records no truth file): there is nothing to compare the estimates with."
        )
    parts = []
    words = {"event_study": "event-study", "long_term": "long-term"}
    for exhibit, d in truth.groupby("exhibit", sort=True):
        d = d.loc[d["covered"].notna()]
        n, c = len(d), int(d["covered"].sum())
        text = (
            f"The 95% intervals of {c} of the {n} {words.get(exhibit, exhibit)} estimates "
            f"({fmt(100.0 * c / max(n, 1), 0)}%) cover the simulator's truth"
        )
        band = d.loc[d["band_covered"].notna()] if "band_covered" in d else d.iloc[:0]
        if len(band):
            text += (
                f", the simultaneous band {int(band['band_covered'].sum())} of the "
                f"{len(band)} post-visit estimates it spans"
            )
        parts.append(text + ".")
    event = truth.loc[(truth["exhibit"] == "event_study") & (truth["group"] == "all")]
    post = event.loc[event["rel_time"] >= 0]
    if len(post):
        above = int((post["estimate"] > post["truth"]).sum())
        parts.append(
            f"For all visited students, {above} of the {len(post)} post-visit estimates lie "
            "above the truth."
        )
    head = truth_headline(truth, rel_times=rel_times)
    missed = head.loc[(head["exhibit"] == "event_study") & (head["covered"] == False)]  # noqa: E712
    if len(missed):
        where = "; ".join(
            f"{group_label(r.group).lower() if r.group == 'all' else group_label(r.group)} at "
            f"{_months(int(r.rel_time))} ({_pp(r.estimate)} against {_pp(r.truth)})"
            for r in missed.itertuples(index=False)
        )
        parts.append(f"At the headline months the interval misses the truth for {where}.")
    elif len(head):
        parts.append("At the headline months every interval covers the truth.")
    return " ".join(parts)
