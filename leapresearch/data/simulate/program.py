"""The LEAP program: the visit log and the treated students with their effect scale.

``_simulate_program`` runs the monthly selection, dates each first visit, draws visitors
and locations, logs the attempts and follow-up visits, and returns ``_Program``: the
students with a first completed visit with their event month, cohort, grade band and
effect scale ``theta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leapresearch.data.calendar import cohort_label
from leapresearch.data.simulate.attendance import _Panel
from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.hooks import _district_factor, _Latent
from leapresearch.data.simulate.params import (
    _ATTEMPT_LOCATION_P,
    _EFFECT_BAND,
    _EFFECT_COHORT,
    _EFFECT_LOCATION,
    _EFFECT_THETA,
    _FIRST_LOCATION_P,
    _FOLLOWUP_LOCATION_P,
    _LEAP_DISTRICTS,
    _PROGRAM_MONTHS,
    _PROGRAM_START,
)
from leapresearch.data.simulate.population import _categorical, _Roster, _student_year_row
from leapresearch.data.simulate.selection import _program_months, _select_students
from leapresearch.data.simulate.world import _Calendar, _Districts, _Schools
from leapresearch.data.types import GRADE_TO_BAND, GRADES


@dataclass
class _Program:
    student: np.ndarray  # students with a first completed visit
    first_date: np.ndarray  # datetime64[D]
    event_t: np.ndarray  # panel month of the event month
    kind: np.ndarray  # index into _PROGRAM_MONTHS kinds
    location: np.ndarray  # first completed visit location (VISIT_LOCATIONS index)
    band: np.ndarray  # grade band label at the event month
    theta: np.ndarray  # effect scale of the student (before ramp/fade)
    cohort: np.ndarray  # cohort label
    visits: dict[str, np.ndarray]  # visit log (student, date, status, location, visitor)
    n_attempt_only: int
    selected: np.ndarray | None = None  # every picked student (validation hooks only)
    selected_t: np.ndarray | None = None  # their event month


def _simulate_program(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    panel: _Panel,
    rng: np.random.Generator,
    latent: _Latent | None = None,
) -> _Program:
    """Select LEAP students month by month and write their visit log.

    ``latent``: the validation hooks' latent traits (``None``: off); with them the
    program also keeps every picked student and month (``selected``, ``selected_t``).
    """
    kinds = [k for k, _ in _PROGRAM_MONTHS]
    months, counts = _program_months(cfg, cal)
    canvass_d = dist.names.index(cfg.canvass_district) if cfg.canvass_district else -1
    # Canvassed schools: a share of the canvassing district's schools.
    canvass_school = np.zeros(len(schools.ids), dtype=bool)
    if canvass_d >= 0:
        own = np.flatnonzero(schools.district == canvass_d)
        n_pick = max(1, int(round(cfg.canvass_school_share * len(own))))
        canvass_school[rng.choice(own, size=n_pick, replace=False)] = True
    student, kind, ev_t, yy, mm, attempt_only = _select_students(
        cfg, cal, dist, roster, panel, rng, months, counts, canvass_d, canvass_school, latent
    )
    n_sel = len(student)
    month_start = np.array(
        [np.datetime64(f"{a:04d}-{b:02d}-01") for a, b in zip(yy, mm, strict=True)],
        dtype="datetime64[D]",
    )
    next_month = np.array(
        [
            np.datetime64(f"{a + (b == 12):04d}-{b % 12 + 1:02d}-01")
            for a, b in zip(yy, mm, strict=True)
        ],
        dtype="datetime64[D]",
    )
    length = (next_month - month_start).astype(np.int64)
    first_date = month_start + np.floor(rng.random(n_sel) * length).astype(np.int64)
    d_sel = roster.district[student]
    visitor = _categorical(rng, dist.visitor_p[d_sel]) if n_sel else np.zeros(0, np.int64)
    loc_p = np.array(
        [_FIRST_LOCATION_P["spring" if kinds[k] == "spring" else "default"] for k in kind]
    ).reshape(n_sel, 4)
    location = _categorical(rng, loc_p) if n_sel else np.zeros(0, np.int64)
    last_day = np.datetime64(f"{int(cal.starts[-1]) + 1:04d}-06-30")
    log = _attempt_visits(rng, student, first_date, attempt_only, visitor, last_day)
    done = np.flatnonzero(~attempt_only)
    _completed_visits(
        rng, dist, roster, student, done, first_date, location, visitor, last_day, log
    )
    visits = {
        "student": np.concatenate(log["student"]),
        "date": np.concatenate(log["date"]).astype("datetime64[D]"),
        "status": np.concatenate(log["status"]),
        "location": np.concatenate(log["location"]),
        "visitor": np.concatenate(log["visitor"]),
    }
    program = _treated_program(
        cfg,
        roster,
        student[done],
        ev_t[done],
        kind[done],
        location[done],
        first_date[done],
        visits=visits,
        canvass_d=canvass_d,
        n_attempt_only=int(attempt_only.sum()),
    )
    if latent is not None:
        program.selected, program.selected_t = student, ev_t
    return program


def _attempt_visits(
    rng: np.random.Generator,
    student: np.ndarray,
    first_date: np.ndarray,
    attempt_only: np.ndarray,
    visitor: np.ndarray,
    last_day: np.datetime64,
) -> dict[str, list[np.ndarray]]:
    """Start the visit log with attempts before the first completed visit (or only attempts)."""
    n_sel = len(student)
    n_att = np.where(
        attempt_only,
        1 + rng.choice(3, size=n_sel, p=[0.5, 0.3, 0.2]),
        rng.choice(3, size=n_sel, p=[0.62, 0.26, 0.12]),
    )
    a_owner = np.repeat(np.arange(n_sel), n_att)
    gaps = np.cumsum(rng.integers(2, 15, size=len(a_owner)))
    group_start = np.repeat(np.cumsum(n_att) - n_att, n_att)
    before = gaps - np.concatenate([[0], gaps])[group_start]
    a_date = first_date[a_owner] - before
    a_date = np.where(attempt_only[a_owner], first_date[a_owner] + before - 1, a_date)
    ok = (a_date >= _PROGRAM_START) & (a_date <= last_day)
    a_owner, a_date = a_owner[ok], a_date[ok]
    a_loc = _categorical(rng, np.tile(_ATTEMPT_LOCATION_P, (len(a_owner), 1)))
    return {
        "student": [student[a_owner]],
        "date": [a_date],
        "status": [np.ones(len(a_owner), dtype=np.int64)],
        "location": [a_loc],
        "visitor": [visitor[a_owner]],
    }


def _completed_visits(
    rng: np.random.Generator,
    dist: _Districts,
    roster: _Roster,
    student: np.ndarray,
    done: np.ndarray,
    first_date: np.ndarray,
    location: np.ndarray,
    visitor: np.ndarray,
    last_day: np.datetime64,
    log: dict[str, list[np.ndarray]],
) -> None:
    """Append the first completed visits (rows ``done``) and their follow-ups to ``log``."""
    log["student"].append(student[done])
    log["date"].append(first_date[done])
    log["status"].append(np.zeros(len(done), dtype=np.int64))
    log["location"].append(location[done])
    log["visitor"].append(visitor[done])
    u_follow = rng.random(len(done))
    n_follow = np.where(
        u_follow < 0.35,
        0,
        np.where(
            u_follow < 0.75,
            1 + (rng.random(len(done)) < 0.5),
            3 + rng.geometric(0.45, len(done)) - 1,
        ),
    )
    f_owner = np.repeat(done, n_follow)
    f_gaps = np.cumsum(rng.integers(7, 46, size=len(f_owner)))
    f_start = np.repeat(np.cumsum(n_follow) - n_follow, n_follow)
    after = f_gaps - np.concatenate([[0], f_gaps])[f_start]
    f_date = first_date[f_owner] + after
    keep_f = f_date <= last_day
    f_owner, f_date = f_owner[keep_f], f_date[keep_f]
    same = rng.random(len(f_owner)) < 0.8
    f_visitor = np.where(
        same, visitor[f_owner], _categorical(rng, dist.visitor_p[roster.district[student[f_owner]]])
    )
    log["student"].append(student[f_owner])
    log["date"].append(f_date)
    log["status"].append(np.zeros(len(f_owner), dtype=np.int64))
    log["location"].append(_categorical(rng, np.tile(_FOLLOWUP_LOCATION_P, (len(f_owner), 1))))
    log["visitor"].append(f_visitor)


def _treated_program(
    cfg: SimulationConfig,
    roster: _Roster,
    st: np.ndarray,
    ev: np.ndarray,
    kind_done: np.ndarray,
    location: np.ndarray,
    first_date: np.ndarray,
    *,
    visits: dict[str, np.ndarray],
    canvass_d: int,
    n_attempt_only: int,
) -> _Program:
    """The treated students (first completed visit) with their grade band and effect scale."""
    kinds = [k for k, _ in _PROGRAM_MONTHS]
    sy_at_event = _student_year_row(roster, st, ev // 10)
    band = np.array([GRADE_TO_BAND[GRADES[g]] for g in roster.sy_grade[sy_at_event]], dtype=object)
    theta = (
        (
            _EFFECT_THETA
            * cfg.effect_multiplier
            * np.array([_EFFECT_COHORT[kinds[k]] for k in kind_done])
            * np.array([_EFFECT_BAND[b] for b in band])
            * _EFFECT_LOCATION[location]
            * (roster.district[st] != canvass_d)
            * _district_factor(cfg, roster.district[st], len(_LEAP_DISTRICTS))
        )
        if len(st)
        else np.zeros(0)
    )
    cohort = (
        cohort_label(pd.Series(first_date)).to_numpy(dtype=object)
        if len(st)
        else np.zeros(0, dtype=object)
    )
    return _Program(
        student=st,
        first_date=first_date,
        event_t=ev,
        kind=kind_done,
        location=location,
        band=band,
        theta=np.asarray(theta, dtype=float),
        cohort=cohort,
        visits=visits,
        n_attempt_only=n_attempt_only,
    )
