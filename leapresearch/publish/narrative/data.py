"""Sentences of notebook 01 (data and validation): attendance by school year."""

from __future__ import annotations

import pandas as pd

from leapresearch.publish.labels import (
    fmt,
)
from leapresearch.publish.narrative.common import _snapped


@_snapped
def describe_attendance_by_year(by_year: pd.DataFrame) -> str:
    """Range and peak of chronic absence across school years."""
    d = by_year.dropna(subset=["chronically_absent"])
    if d.empty:
        return "No school year has published chronic-absence figures."
    peak = d.loc[d["chronically_absent"].idxmax()]
    return (
        f"Across the school years in the data, the share of K-12 students chronically absent "
        f"ranged from {fmt(d['chronically_absent'].min())}% to "
        f"{fmt(d['chronically_absent'].max())}%, peaking in {peak['school_year']}."
    )
