"""Attendance without the program, Y(0): the monthly panel and the summer-school rows.

One row per enrolled, collected school month of every student-year (two at a mid-year
school move), its membership days (partial months, remote days), the logit of the daily
attendance probability (with the AR(1) shocks and spells) and the binomial draws of days
attended; and the July/August summer-school rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.params import (
    _ELL_EFFECT,
    _GENDER_EFFECT,
    _GRADE_EFFECT,
    _HS_YEAR_EXTRA,
    _MAX_DAYS,
    _MEAL_EFFECT,
    _REMOTE_MONTH_PROFILE,
    _REMOTE_SHIFT,
    _SCHOOL_DAYS,
    _SD_STUDENT_YEAR,
    _SEASON,
    _SUMMER_SHIFT,
    _SWD_EFFECT,
)
from leapresearch.data.simulate.population import _Roster
from leapresearch.data.simulate.world import _Calendar, _Districts, _Schools


@dataclass
class _Panel:
    sy: np.ndarray  # student-year of the row
    student: np.ndarray
    t: np.ndarray  # panel school month
    school: np.ndarray
    mem_in: np.ndarray
    mem_rem: np.ndarray
    att_in: np.ndarray
    att_rem: np.ndarray
    z: np.ndarray  # [students, 12 * years] AR shocks (float32)


def _ar_shocks(cfg: SimulationConfig, rng: np.random.Generator, n: int, n_steps: int) -> np.ndarray:
    """AR(1) shocks with negative jumps (spells), one row per student, monthly steps."""
    z = np.zeros((n, n_steps), dtype=np.float32)
    state = np.zeros(n)
    burn_in = 24
    for step in range(-burn_in, n_steps):
        jump = (rng.random(n) < cfg.spell_rate) * rng.exponential(cfg.spell_size, size=n)
        state = cfg.ar_rho * state + cfg.ar_sd * rng.standard_normal(n) - jump
        if step >= 0:
            z[:, step] = state
    return z


def _expit(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _simulate_attendance(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    rng: np.random.Generator,
) -> _Panel:
    """Simulate monthly rows (student, school month, school) with Y(0) attendance."""
    # School days per district, year and month.
    jitter = rng.integers(-1, 2, size=(len(dist.names), cal.n_years, 10))
    days = np.clip(_SCHOOL_DAYS[None, None, :] + jitter, 1, _MAX_DAYS).astype(np.int32)
    row_sy, pos, n_base, at_move = _monthly_rows(cal, roster)
    year = roster.sy_year[row_sy].astype(np.int16)
    t = (10 * year + pos).astype(np.int16)
    student = roster.sy_student[row_sy].astype(np.int32)
    move = roster.sy_move[row_sy]
    second = np.zeros(len(row_sy), dtype=bool)
    second[n_base:] = True
    school = np.where(
        (move >= 0) & ((pos > move) | second),
        roster.sy_move_school[row_sy],
        roster.sy_school[row_sy],
    ).astype(np.int32)
    del move, second
    mem = _membership_days(rng, days, roster, row_sy, pos, student, year, n_base, at_move)
    del at_move
    mem_rem = _remote_days(rng, cal, dist, roster, row_sy, pos, year, mem)
    mem_in = mem - mem_rem
    del mem
    z = _ar_shocks(cfg, rng, len(roster.u), 12 * cal.n_years)
    eta = _latent_index(rng, cal, dist, schools, roster, z, row_sy, student, school, year, pos, t)
    del year, pos
    att_rem = np.zeros(len(eta), dtype=np.int32)
    rem = np.flatnonzero(mem_rem > 0)
    att_rem[rem] = rng.binomial(mem_rem[rem], _expit(eta[rem] + _REMOTE_SHIFT))
    del rem
    np.negative(eta, out=eta)
    np.exp(eta, out=eta)
    eta += 1.0
    np.reciprocal(eta, out=eta)  # now p, the in-person daily attendance probability
    att_in = rng.binomial(mem_in, eta).astype(np.int32)
    del eta
    return _Panel(
        sy=row_sy,
        student=student,
        t=t,
        school=school,
        mem_in=mem_in,
        mem_rem=mem_rem,
        att_in=att_in,
        att_rem=att_rem,
        z=z,
    )


def _monthly_rows(
    cal: _Calendar, roster: _Roster
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """One row per enrolled, collected school month of every student-year.

    The month of a mid-year school change is split into two rows, one per school: the
    second rows are appended after the first ``n_base``. Returns the student-year and
    month position (0-9) of each row, ``n_base`` and the rows of the first halves.
    """
    n_months = (roster.sy_end - roster.sy_start + 1).astype(np.int64)
    row_sy = np.repeat(np.arange(len(n_months), dtype=np.int32), n_months)
    first_row = np.repeat((np.cumsum(n_months) - n_months).astype(np.int32), n_months)
    pos = (roster.sy_start[row_sy] + np.arange(len(row_sy), dtype=np.int32) - first_row).astype(
        np.int16
    )
    del first_row
    keep = cal.collected[10 * roster.sy_year[row_sy] + pos]
    row_sy, pos = row_sy[keep], pos[keep]
    del keep
    move = roster.sy_move[row_sy]
    at_move = np.flatnonzero((move >= 0) & (pos == move))
    n_base = len(row_sy)
    src = np.concatenate([np.arange(n_base, dtype=np.int64), at_move])
    row_sy, pos = row_sy[src], pos[src]
    return row_sy, pos, n_base, at_move


def _membership_days(
    rng: np.random.Generator,
    days: np.ndarray,
    roster: _Roster,
    row_sy: np.ndarray,
    pos: np.ndarray,
    student: np.ndarray,
    year: np.ndarray,
    n_base: int,
    at_move: np.ndarray,
) -> np.ndarray:
    """Days of membership of each row: partial entry/exit months, moves split in two."""
    mem = days[roster.district[student], year, pos]
    partial = ((pos == roster.sy_start[row_sy]) & (roster.sy_start[row_sy] > 0)) | (
        (pos == roster.sy_end[row_sy]) & (roster.sy_end[row_sy] < 9)
    )
    mem = np.where(partial, 1 + np.floor(rng.random(len(mem)) * mem), mem).astype(np.int32)
    del partial
    j = 1 + np.floor(rng.random(len(at_move)) * (mem[at_move] - 1)).astype(np.int32)
    mem[n_base:] = mem[at_move] - j
    mem[at_move] = j
    return mem


def _remote_days(
    rng: np.random.Generator,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    row_sy: np.ndarray,
    pos: np.ndarray,
    year: np.ndarray,
    mem: np.ndarray,
) -> np.ndarray:
    """Remote membership days in remote years (fully remote or hybrid student-years)."""
    mem_rem = np.zeros(len(row_sy), dtype=np.int32)
    if cal.remote_year.any():
        n_sy = len(roster.sy_student)
        r_share = dist.remote[roster.district[roster.sy_student]]
        full_remote = rng.random(n_sy) < 0.35 * r_share
        hybrid = np.clip(r_share * rng.gamma(4.0, 0.1875, size=n_sy), 0.0, 1.0)
        rows = np.flatnonzero(cal.remote_year[year])
        share = np.where(
            full_remote[row_sy[rows]],
            1.0,
            np.clip(hybrid[row_sy[rows]] * _REMOTE_MONTH_PROFILE[pos[rows]], 0.0, 1.0),
        )
        mem_rem[rows] = np.rint(share * mem[rows])
    return mem_rem


def _latent_index(
    rng: np.random.Generator,
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    z: np.ndarray,
    row_sy: np.ndarray,
    student: np.ndarray,
    school: np.ndarray,
    year: np.ndarray,
    pos: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """Logit of the daily attendance probability of each row, accumulated in place.

    District-year intercept, grade, student traits, student-year and school effects,
    season, month shock and the student's AR shock ``z``.
    """
    v = _SD_STUDENT_YEAR * rng.standard_normal(len(roster.sy_student))
    hs_extra = np.array([_HS_YEAR_EXTRA.get(int(s), 0.0) for s in cal.starts])
    grade = roster.sy_grade[row_sy]
    eta = dist.intercept[roster.district[student], year]
    eta += _GRADE_EFFECT[grade]
    eta += hs_extra[year] * (grade >= 10)
    del grade
    eta += (
        _MEAL_EFFECT[roster.meal]
        + _SWD_EFFECT * roster.swd
        + _ELL_EFFECT * roster.ell
        + _GENDER_EFFECT[roster.gender]
        + roster.u
    )[student]
    eta += v[row_sy]
    eta += schools.effect[school]
    eta += _SEASON[pos]
    eta += cal.month_shock[t]
    eta += z[student, 12 * year + pos]
    return eta


def _simulate_summer(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    panel: _Panel,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """July/August summer-school rows of students enrolled before and after the summer."""
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("student", "school", "year", "month", "mem", "att")
    }
    for yi in range(cal.n_years - 1):
        rows = np.flatnonzero((roster.sy_year == yi) & (roster.sy_next >= 0))
        rows = rows[rng.random(len(rows)) < cfg.summer_school_rate]
        student = roster.sy_student[rows]
        school = np.where(
            roster.sy_move[rows] >= 0, roster.sy_move_school[rows], roster.sy_school[rows]
        )
        base = dist.intercept[roster.district[student], yi] + roster.u[student] + _SUMMER_SHIFT
        for k, (lo, hi, share) in enumerate(((12, 20, 1.0), (5, 11, 0.3))):
            if not cal.summer_collected[yi, k]:
                continue
            pick = rng.random(len(rows)) < share
            mem = rng.integers(lo, hi, size=int(pick.sum()))
            p = _expit(base[pick] + panel.z[student[pick], 12 * yi + 10 + k])
            parts["student"].append(student[pick])
            parts["school"].append(school[pick])
            parts["year"].append(np.full(len(mem), yi))
            parts["month"].append(np.full(len(mem), 10 + k))
            parts["mem"].append(mem)
            parts["att"].append(rng.binomial(mem, p))
    return {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in parts.items()}
