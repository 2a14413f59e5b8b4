"""The summary of notebook 08 and of the front page.

The headline table (the same HTML as the report's index page), the crosswalk of our
headline estimates to the published figures (notebook 08 and the front page's table,
:func:`leapresearch.publish.frontpage.crosswalk_html`) and the front page's summary
paragraph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.narrative.common import _snapped
from leapresearch.publish.narrative.event_study import describe_effect
from leapresearch.publish.narrative.identification import describe_pretrends


@_snapped
def headline_table(
    table: pd.DataFrame,
    *,
    rel_times: Sequence[int],
    pretrends: pd.DataFrame | None = None,
    alpha: float = 0.05,
):
    """The headline table (estimate, 95% CI, n per group, in reading order), for display.

    See :func:`leapresearch.publish.tables.headline_table`; the object returned shows as
    the same HTML table as the report's index page.
    """
    from leapresearch.publish.tables import headline_html
    from leapresearch.publish.tables import headline_table as _headline

    head = _headline(table, rel_times=rel_times, pretrends=pretrends, alpha=alpha)
    return HTMLTable(headline_html(head, rel_times=rel_times, alpha=alpha), head)


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
        ``group, rel_time, published, estimate, ci_lower, ci_upper, difference,
        published_in_ci, definition`` (``definition``: what differs from ours).
    """
    rows = []
    for p in published:
        hit = table.loc[(table["group"] == p.group) & (table["rel_time"] == p.rel_time)]
        r = hit.iloc[0] if len(hit) else pd.Series(dtype=float)
        est, lo, hi = (r.get(c, np.nan) for c in ("estimate", "ci_lower", "ci_upper"))
        rows.append(
            {
                "group": p.group,
                "rel_time": p.rel_time,
                "published": float(p.estimate),
                "estimate": est,
                "ci_lower": lo,
                "ci_upper": hi,
                "difference": est - p.estimate,
                "published_in_ci": bool(lo <= p.estimate <= hi) if pd.notna(est) else None,
                "definition": ("published as approximate; " if p.approximate else "")
                + p.difference,
            }
        )
    return pd.DataFrame(rows)


@_snapped
def summary_paragraph(
    table: pd.DataFrame,
    pretrends: pd.DataFrame | None,
    *,
    rel_times: Sequence[int],
    alpha: float = 0.05,
) -> str:
    """The front page's summary: pooled effects with intervals, grade bands, pre-trends."""
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
    parts.append(describe_effect(table, group="all", rel_time=first))
    if not pooled.empty:
        parts.append(describe_effect(table, group="all", rel_time=last))
    bands = [g for g in ("grade_band:PK-5", "grade_band:6-12") if (table["group"] == g).any()]
    for g in bands:
        parts.append(describe_effect(table, group=g, rel_time=last))
    if pretrends is not None:
        parts.append(
            "Pre-trend tests (notebook 03): "
            + describe_pretrends(pretrends, alpha=alpha, brief=True)
        )
    return " ".join(parts)
