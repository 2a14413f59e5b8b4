"""Subgroups of visited students and the event study run once per group.

Every subgroup uses the same specification as the main estimate. A subgroup is a set of
treated (stack, student) units; its comparison units are the matched comparisons of
exactly those treated students, re-weighted by
:func:`leapresearch.design.stacking.subgroup_weights`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from leapresearch.data.panel import AnalyticPanel

GROUP_ALL = "all"
GROUP_WITHIN_CALIPER = "within_caliper"
"""The visited students with at least one comparison inside the caliper (a family of one)."""


def treated_attributes(panel: AnalyticPanel, units: pd.DataFrame) -> pd.DataFrame:
    """Subgroup attributes of each treated unit.

    Returns
    -------
    DataFrame
        ``stack``, ``student`` and ``grade_band`` (grade in the school year of the event
        month), ``cohort``, ``district``, ``first_visit_location``, ``visitor_type``,
        ``visits`` (``1``, ``2-3``, ``4+`` completed visits), ``home_language``
        (``English``/``Other``; missing when the roster has none) and ``meal_status``.
    """
    t = units.loc[units["treated"] == 1, ["stack", "student"]].copy()
    t["year"] = t["stack"] // 10
    ros = panel.roster[
        ["student", "year", "grade_band", "district", "home_language", "meal_status"]
    ]
    t = t.merge(ros, on=["student", "year"], how="left", validate="one_to_one")
    ev = panel.events[["student", "cohort", "first_visit_location", "visitor_type", "visits"]]
    t = t.merge(ev, on="student", how="left", validate="one_to_one")
    lang = t["home_language"]
    t["home_language"] = np.where(
        lang.isna(), None, np.where(lang == "English", "English", "Other")
    )
    t["district"] = t["district"].astype(str)
    return t.drop(columns="year").reset_index(drop=True)


def group_definitions(
    attrs: pd.DataFrame, subgroups: Sequence[str]
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield ``(group label, treated units)`` for ``all`` and every subgroup level.

    Labels follow the table contract: ``all``, ``grade_band:PK-5`` ... and the pooled
    ``grade_band:6-12``, ``cohort:<label>``, ``district:<name>``, and so on. Levels are
    sorted; a missing attribute is not a level.
    """
    yield GROUP_ALL, attrs[["stack", "student"]]
    for name in subgroups:
        col = attrs[name]
        for level in sorted(col.dropna().astype(str).unique()):
            yield f"{name}:{level}", attrs.loc[col.astype(str) == level, ["stack", "student"]]
        if name == "grade_band":
            pooled = attrs.loc[attrs["grade_band"].isin(["6-8", "9-12"]), ["stack", "student"]]
            yield "grade_band:6-12", pooled


def group_order(label: str) -> tuple:
    """Sort key that puts ``all`` first and pooled bands after their parts."""
    return (label != GROUP_ALL, label.split(":")[0], label)


def run_by_group(
    groups: Sequence[tuple[str, pd.DataFrame]],
    estimate: Callable[[str, pd.DataFrame], pd.DataFrame | None],
) -> pd.DataFrame:
    """Apply ``estimate(label, treated_units)`` to every group and stack the tables."""
    tables = []
    for label, treated in groups:
        table = estimate(label, treated)
        if table is not None and len(table):
            tables.append(table.assign(group=label))
    if not tables:
        return pd.DataFrame()
    out = pd.concat(tables, ignore_index=True)
    cols = ["group"] + [c for c in out.columns if c != "group"]
    return out[cols]
