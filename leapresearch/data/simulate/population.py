"""The student population: who is enrolled where, in which grade and in which months.

Static traits of new students, the yearly roster (promotion, retention, graduation,
leavers and entrants, some of them mid-year), mid-year school moves inside a district and
the random SASIDs, assembled into ``_Roster`` (students and student-years).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.params import (
    _DISENGAGED_SHARE,
    _DISENGAGED_SHIFT,
    _GRADE_WEIGHTS,
    _RETENTION,
    _SD_STUDENT,
)
from leapresearch.data.simulate.world import _Calendar, _Districts, _grade_level, _Schools
from leapresearch.data.types import GRADES


@dataclass
class _Roster:
    # students
    district: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    meal: np.ndarray
    ell: np.ndarray
    swd: np.ndarray
    language: np.ndarray  # 0 English, 1 Spanish, 2 Other
    u: np.ndarray
    sasid: np.ndarray  # int64 < 1e10, unique
    # student-years
    sy_student: np.ndarray
    sy_year: np.ndarray
    sy_grade: np.ndarray
    sy_school: np.ndarray
    sy_start: np.ndarray
    sy_end: np.ndarray
    sy_move: np.ndarray  # -1 when no mid-year school change
    sy_move_school: np.ndarray
    sy_next: np.ndarray  # index of the next year's row of the student, -1 if none


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return (u[:, None] > cum).sum(axis=1).astype(np.int64)


def _random_school(
    rng: np.random.Generator, schools: _Schools, d: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Draw a random school of the given district and level."""
    cnt = schools.count[d, level]
    return schools.first[d, level] + np.floor(rng.random(len(d)) * cnt).astype(np.int64)


def _new_students(
    rng: np.random.Generator, dist: _Districts, d: np.ndarray
) -> dict[str, np.ndarray]:
    """Draw the static attributes of new students of districts ``d``."""
    n = len(d)
    gender = rng.choice(3, size=n, p=[0.487, 0.510, 0.003])
    race = _categorical(rng, dist.race_p[d])
    race_mult = np.array([1.15, 1.2, 0.65, 0.8, 1.0, 1.1, 1.1])[race]
    p_free = np.clip(dist.meal_p[d, 0] * race_mult, 0.01, 0.97)
    p_red = np.minimum(dist.meal_p[d, 1], 1.0 - p_free)
    meal = _categorical(rng, np.column_stack([p_free, p_red, 1.0 - p_free - p_red]))
    u_lang = rng.random(n)
    hisp, asian = race == 0, race == 3
    p_spanish = np.where(hisp, dist.spanish[d], 0.0)
    p_other = np.where(asian, 0.55, np.where(hisp, 0.02, 0.08))
    language = np.where(u_lang < p_spanish, 1, np.where(u_lang < p_spanish + p_other, 2, 0))
    ell = (rng.random(n) < np.where(language > 0, 0.45, 0.01)).astype(np.int64)
    swd = (rng.random(n) < np.array([0.11, 0.20, 0.15])[gender]).astype(np.int64)
    u = _SD_STUDENT * rng.standard_normal(n) + _DISENGAGED_SHIFT * (
        rng.random(n) < _DISENGAGED_SHARE
    )
    return {
        "district": d,
        "gender": gender,
        "race": race,
        "meal": meal,
        "ell": ell,
        "swd": swd,
        "language": language,
        "u": u,
    }


def _simulate_roster(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    rng: np.random.Generator,
) -> _Roster:
    """Students and student-years: progression, graduation, mobility, entrants, moves."""
    n_d = len(dist.names)
    n_g = len(GRADES)
    w = np.tile(_GRADE_WEIGHTS, (n_d, 1))
    w[np.arange(n_g)[None, :] > dist.max_grade[:, None]] = 0.0
    w = w / w.sum(axis=1, keepdims=True)
    q_mid = cfg.mobility_rate * cfg.midyear_leave_share
    q_end = cfg.mobility_rate * (1.0 - cfg.midyear_leave_share) / max(1.0 - q_mid, 1e-9)
    static: list[dict[str, np.ndarray]] = []
    district_of = np.zeros(0, dtype=np.int64)
    parts: list[dict[str, Any]] = []
    offset = 0
    for yi in range(cal.n_years):
        target = np.rint(dist.sizes[:, yi, None] * w).astype(np.int64)  # [D, G]
        prev = parts[-1] if parts else None
        cont_student, cont_grade, cont_school, cont_prev = _continuing_students(
            rng, prev, dist, schools, district_of, q_end
        )
        d_c = district_of[cont_student]
        new_d, new_grade = _entrants_needed(target, d_c, cont_grade)
        static.append(_new_students(rng, dist, new_d))
        new_student = len(district_of) + np.arange(len(new_d))
        district_of = np.concatenate([district_of, new_d])
        new_school = _random_school(rng, schools, new_d, _grade_level(new_grade))
        student = np.concatenate([cont_student, new_student])
        grade = np.concatenate([cont_grade, new_grade])
        school = np.concatenate([cont_school, new_school])
        d_all = np.concatenate([d_c, new_d])
        start, end = _enrolment_months(cfg, rng, yi, new_grade, len(cont_student), q_mid)
        move, move_school = _school_moves(cfg, rng, schools, d_all, grade, school, start, end)
        n = len(student)
        parts.append(
            {
                "student": student,
                "grade": grade,
                "school": school,
                "start": start,
                "end": end,
                "move": move,
                "move_school": move_school,
                "year": np.full(n, yi, dtype=np.int64),
                "offset": offset,
                "prev_link": cont_prev,
            }
        )
        offset += n
    return _assemble_roster(static, parts, rng, len(district_of))


def _continuing_students(
    rng: np.random.Generator,
    prev: dict[str, Any] | None,
    dist: _Districts,
    schools: _Schools,
    district_of: np.ndarray,
    q_end: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Last year's students who stay: promoted or retained, new school at a level change.

    Returns their student index, grade, school and row in the previous year (all empty
    in the first year).
    """
    empty = np.zeros(0, dtype=np.int64)
    if prev is None:
        return empty, empty, empty, empty
    stays = (prev["end"] == 9) & (rng.random(len(prev["end"])) >= q_end)
    stays &= prev["grade"] < dist.max_grade[district_of[prev["student"]]]
    idx = np.flatnonzero(stays)
    cont_prev = idx + prev["offset"]
    cont_student = prev["student"][idx]
    g_old = prev["grade"][idx]
    retained = rng.random(len(idx)) < _RETENTION[g_old]
    cont_grade = g_old + (~retained)
    school_old = np.where(prev["move"][idx] >= 0, prev["move_school"][idx], prev["school"][idx])
    new_level = _grade_level(cont_grade)
    changes = np.flatnonzero(new_level != schools.level[school_old])
    cont_school = school_old.copy()
    cont_school[changes] = _random_school(
        rng, schools, district_of[cont_student[changes]], new_level[changes]
    )
    return cont_student, cont_grade, cont_school, cont_prev


def _entrants_needed(
    target: np.ndarray, d_c: np.ndarray, cont_grade: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """District and grade of the new students that fill each (district, grade) target."""
    n_d, n_g = target.shape
    have = np.bincount(d_c * n_g + cont_grade, minlength=n_d * n_g).reshape(n_d, n_g)
    need = np.maximum(target - have, 0).ravel()
    new_d = np.repeat(np.repeat(np.arange(n_d), n_g), need)
    new_grade = np.repeat(np.tile(np.arange(n_g), n_d), need)
    return new_d, new_grade


def _enrolment_months(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    yi: int,
    new_grade: np.ndarray,
    n_cont: int,
    q_mid: float,
) -> tuple[np.ndarray, np.ndarray]:
    """First and last school month (0-9) of each student-year: mid-year entries and exits.

    Continuing students (the first ``n_cont``) start in September; new students may
    enter mid-year; anyone may leave mid-year.
    """
    n_new = len(new_grade)
    if yi == 0:
        p_mid = np.full(n_new, 0.04)
    else:
        p_mid = np.where(new_grade <= 1, 0.05, cfg.midyear_entry_share)
    mid_entry = rng.random(n_new) < p_mid
    n = n_cont + n_new
    start = np.concatenate(
        [
            np.zeros(n_cont, np.int64),
            np.where(mid_entry, rng.integers(1, 9, size=n_new), 0),
        ]
    )
    leave_mid = rng.random(n) < q_mid
    end = np.where(leave_mid, start + np.floor(rng.random(n) * (9 - start)).astype(np.int64), 9)
    return start, end


def _school_moves(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    schools: _Schools,
    d_all: np.ndarray,
    grade: np.ndarray,
    school: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mid-year school change inside the district (never in the first or last month).

    Returns the month of the move and the new school (-1 without a move).
    """
    n = len(grade)
    lvl = _grade_level(grade)
    lo = start + 1
    hi = np.where(end < 9, end - 1, 8)
    can = (hi >= lo) & (schools.count[d_all, lvl] >= 2)
    mi = np.flatnonzero(can & (rng.random(n) < cfg.school_move_rate))
    move = np.full(n, -1, dtype=np.int64)
    move_school = np.full(n, -1, dtype=np.int64)
    move[mi] = lo[mi] + np.floor(rng.random(len(mi)) * (hi[mi] - lo[mi] + 1)).astype(np.int64)
    cnt = schools.count[d_all[mi], lvl[mi]]
    first = schools.first[d_all[mi], lvl[mi]]
    shift = 1 + np.floor(rng.random(len(mi)) * (cnt - 1)).astype(np.int64)
    move_school[mi] = first + (school[mi] - first + shift) % cnt
    return move, move_school


def _assemble_roster(
    static: list[dict[str, np.ndarray]],
    parts: list[dict[str, Any]],
    rng: np.random.Generator,
    n_students: int,
) -> _Roster:
    """Concatenate the yearly parts, link each student-year to the next, draw SASIDs."""
    st = {k: np.concatenate([s[k] for s in static]) for k in static[0]}
    sy = {
        k: np.concatenate([p[k] for p in parts])
        for k in ("student", "grade", "school", "start", "end", "move", "move_school", "year")
    }
    sy_next = np.full(len(sy["student"]), -1, dtype=np.int64)
    for p in parts:
        if len(p["prev_link"]):
            sy_next[p["prev_link"]] = p["offset"] + np.arange(len(p["prev_link"]))
    return _Roster(
        district=st["district"],
        gender=st["gender"],
        race=st["race"],
        meal=st["meal"],
        ell=st["ell"],
        swd=st["swd"],
        language=st["language"],
        u=st["u"],
        sasid=_draw_sasids(rng, n_students),
        sy_student=sy["student"],
        sy_year=sy["year"],
        sy_grade=sy["grade"],
        sy_school=sy["school"],
        sy_start=sy["start"],
        sy_end=sy["end"],
        sy_move=sy["move"],
        sy_move_school=sy["move_school"],
        sy_next=sy_next,
    )


def _draw_sasids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct random 10-digit identifiers (about 10% start with 0)."""
    out = np.zeros(0, dtype=np.int64)
    while len(out) < n:
        draw = rng.integers(0, 10**10, size=int(1.02 * n) + 64, dtype=np.int64)
        out = np.unique(np.concatenate([out, draw]))
    return rng.permutation(out)[:n]


def _student_year_row(roster: _Roster, student: np.ndarray, year: np.ndarray) -> np.ndarray:
    """Index of the student-year row of (student, year index) pairs (must exist)."""
    n_years = int(roster.sy_year.max()) + 1
    key = roster.sy_student * n_years + roster.sy_year
    order = np.argsort(key, kind="stable")
    pos = np.searchsorted(key[order], student * n_years + year)
    return order[pos]
