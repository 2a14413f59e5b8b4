"""The true effects, computed from the simulated potential outcomes Y(0) and Y(1).

Event-study ATTs by ``rel_time`` and group, long-term effects on the annual attendance
rate and on chronic absence by cohort and school year, and the ``truth`` dictionary
(schema :data:`TRUTH_SCHEMA`) that holds them with the configuration and program sizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.data.simulate.attendance import _Panel
from leapresearch.data.simulate.config import VALIDATION_HOOKS, SimulationConfig
from leapresearch.data.simulate.effects import _TreatedRows
from leapresearch.data.simulate.hooks import _validation_truth
from leapresearch.data.simulate.params import (
    _EFFECT_BAND,
    _EFFECT_COHORT,
    _EFFECT_FADE_SCALE,
    _EFFECT_FADE_START,
    _EFFECT_LOCATION,
    _EFFECT_RAMP,
    _EFFECT_THETA,
    _EFFECT_THETA_CAP,
)
from leapresearch.data.simulate.population import _Roster, _student_year_row
from leapresearch.data.simulate.program import _Program
from leapresearch.data.simulate.world import _Calendar, _Districts
from leapresearch.data.types import VISIT_LOCATIONS

TRUTH_SCHEMA = "leapresearch-truth/1"
"""Value of ``truth["schema"]``."""


def _compute_truth(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    panel: _Panel,
    program: _Program,
    tr: _TreatedRows,
    shifted: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compute the true ATTs (event study, long term) from Y(0) and Y(1).

    With a validation hook on (``shifted``: the Y(0) rows it moved, if any) the truth
    also holds ``validation`` (:func:`~leapresearch.data.simulate.hooks._validation_truth`).
    """
    sm = _treated_months(panel, program, tr)
    groups = _truth_groups(cfg, dist, roster, program)
    event_study, event_study_n = _event_study_truth(cfg, sm, groups)
    long_term = _long_term_truth(cal, roster, program, sm, groups)
    with_reference = _long_term_truth(cal, roster, program, sm, groups, with_reference=True)
    cohort_sizes = {c: int((program.cohort == c).sum()) for c in sorted(set(program.cohort))}
    locations = dict(zip(VISIT_LOCATIONS, _EFFECT_LOCATION.tolist(), strict=True))
    config = dataclasses.asdict(cfg)
    config = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in config.items()
        if k not in VALIDATION_HOOKS or v != VALIDATION_HOOKS[k]  # hooks only when on
    }
    truth = {
        "schema": TRUTH_SCHEMA,
        "seed": int(cfg.seed),
        "scale": cfg.scale,
        "config": config,
        "program": {
            "n_visited": int(len(program.student)),
            "n_attempt_only": program.n_attempt_only,
            "canvass_district": cfg.canvass_district,
            "cohort_sizes": cohort_sizes,
            "effect_model": (
                "p1 = p0 + theta * (1 - p0); theta = "
                f"{_EFFECT_THETA} * effect_multiplier * cohort {_EFFECT_COHORT} * band "
                f"{_EFFECT_BAND} * first location {locations}"
                f" * min(1, (rel_time + 1) / {_EFFECT_RAMP})"
                f" * exp(-max(rel_time - {_EFFECT_FADE_START}, 0) / {_EFFECT_FADE_SCALE}),"
                f" capped at {_EFFECT_THETA_CAP}; 0 in the canvassing district and before the"
                " event month; Y1 = Y0 + Binomial(membership - Y0, theta)"
            ),
        },
        "event_study": event_study,
        "event_study_n": event_study_n,
        "long_term": long_term,
        "long_term_with_reference": with_reference,
    }
    if cfg.hooks_active():
        selected = program.selected if program.selected is not None else program.student
        selected_t = program.selected_t if program.selected_t is not None else program.event_t
        truth["validation"] = _validation_truth(
            cfg, sm, program.student, program.event_t, shifted, selected, selected_t, panel
        )
    return truth


def _treated_months(panel: _Panel, program: _Program, tr: _TreatedRows) -> pd.DataFrame:
    """Treated students' school months: membership, Y(0) and Y(1) days, ``rel``, ``diff``.

    ``diff`` is the individual effect in percentage points of the monthly rate; months
    without membership are left out.
    """
    mem = panel.mem_in[tr.rows] + panel.mem_rem[tr.rows]
    frame = pd.DataFrame(
        {
            "owner": tr.owner,
            "t": panel.t[tr.rows],
            "mem": mem,
            "att0": tr.att0,
            "att1": tr.att1,
        }
    )
    sm = frame.groupby(["owner", "t"], sort=True, as_index=False)[["mem", "att0", "att1"]].sum()
    sm = sm[sm["mem"] > 0]
    owner = sm["owner"].to_numpy()
    return sm.assign(
        rel=sm["t"].to_numpy() - program.event_t[owner],
        diff=100.0 * (sm["att1"] - sm["att0"]) / sm["mem"],
    )


def _event_study_truth(
    cfg: SimulationConfig, sm: pd.DataFrame, groups: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """True ATT and number of student-months by event time in the truth window, per group."""
    lo, hi = cfg.truth_window
    es = sm[(sm["rel"] >= lo) & (sm["rel"] <= hi)]
    event_study: dict[str, dict[str, float]] = {}
    event_study_n: dict[str, dict[str, int]] = {}
    es_owner = es["owner"].to_numpy()
    for name, member in groups.items():
        sub = es[member[es_owner]]
        agg = sub.groupby("rel", sort=True)["diff"].agg(["mean", "size"])
        event_study[name] = {str(int(k)): round(float(v), 4) for k, v in agg["mean"].items()}
        event_study_n[name] = {str(int(k)): int(v) for k, v in agg["size"].items()}
    return event_study, event_study_n


def _long_term_truth(
    cal: _Calendar,
    roster: _Roster,
    program: _Program,
    sm: pd.DataFrame,
    groups: dict[str, np.ndarray],
    *,
    with_reference: bool = False,
) -> list[dict[str, Any]]:
    """True effects on annual rates by cohort, school year and grade-band group.

    The attendance-rate effect over all students, and the effect on being chronically
    absent (rate below 90%) over K-12 students. ``with_reference``: over the visited
    students enrolled in the school year before that of their first visit only (those a
    long-term difference-in-differences has a reference row for; ``truth
    ["long_term_with_reference"]``).
    """
    sm = sm.assign(year=sm["t"] // 10)
    yr = sm.groupby(["owner", "year"], sort=True, as_index=False)[["mem", "att0", "att1"]].sum()
    if with_reference:
        owner_year = yr["owner"].to_numpy()
        enrolled_before = owner_year[yr["year"].to_numpy() == program.event_t[owner_year] // 10 - 1]
        yr = yr.loc[np.isin(owner_year, enrolled_before)].reset_index(drop=True)
    yo = yr["owner"].to_numpy()
    rate0 = yr["att0"].to_numpy() / yr["mem"].to_numpy()
    rate1 = yr["att1"].to_numpy() / yr["mem"].to_numpy()
    year = yr["year"].to_numpy()
    sy_rows = _student_year_row(roster, program.student[yo], year)
    k12 = roster.sy_grade[sy_rows] >= 1
    cohort_year = program.event_t // 10
    long_term: list[dict[str, Any]] = []
    band_groups = ["all", "grade_band:PK-5", "grade_band:6-8", "grade_band:9-12", "grade_band:6-12"]
    for coh in sorted(set(program.cohort.tolist())):
        in_coh = program.cohort[yo] == coh
        cy = int(cohort_year[program.cohort == coh][0])
        for yi in range(cy, cal.n_years):
            in_year = in_coh & (year == yi)
            for g in band_groups:
                sel = in_year & groups[g][yo]
                if not sel.any():
                    continue
                att_rate = 100.0 * float(np.mean(rate1[sel] - rate0[sel]))
                sel_k = sel & k12
                record = {
                    "group": g,
                    "cohort": coh,
                    "school_year": cal.labels[yi],
                    "years_after": yi - cy,
                }
                long_term.append(
                    {
                        **record,
                        "outcome": "attendance_rate",
                        "att": round(att_rate, 4),
                        "n": int(sel.sum()),
                    }
                )
                if sel_k.any():
                    chronic = 100.0 * float(
                        np.mean(rate1[sel_k] < 0.9) - np.mean(rate0[sel_k] < 0.9)
                    )
                    long_term.append(
                        {
                            **record,
                            "outcome": "chronically_absent",
                            "att": round(chronic, 4),
                            "n": int(sel_k.sum()),
                        }
                    )
    return long_term


def _truth_groups(
    cfg: SimulationConfig, dist: _Districts, roster: _Roster, program: _Program
) -> dict[str, np.ndarray]:
    """Boolean membership (over program students) of every truth group."""
    n = len(program.student)
    band = program.band.astype(str) if n else np.zeros(0, dtype=str)
    groups: dict[str, np.ndarray] = {"all": np.ones(n, dtype=bool)}
    for b in ("PK-5", "6-8", "9-12"):
        groups[f"grade_band:{b}"] = band == b
    groups["grade_band:6-12"] = (band == "6-8") | (band == "9-12")
    for c in sorted(set(program.cohort.tolist())):
        groups[f"cohort:{c}"] = program.cohort == c
    for k, loc in enumerate(VISIT_LOCATIONS):
        if (program.location == k).any():
            groups[f"first_visit_location:{loc}"] = program.location == k
    d_of = roster.district[program.student]
    for d in np.flatnonzero(dist.leap):
        if (d_of == d).any():
            groups[f"district:{dist.names[d]}"] = d_of == d
    return groups
