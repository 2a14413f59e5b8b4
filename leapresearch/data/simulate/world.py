"""The simulated world: school calendar, districts and schools.

``_Calendar`` lays the configured school years out as panel months; ``_build_districts``
builds the district universe of the scale (the LEAP districts, plus about 105 non-LEAP
ones at ``state`` scale) with roster sizes, composition and attendance intercepts;
``_build_schools`` nests elementary, middle and high schools in the districts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leapresearch.data.calendar import SCHOOL_MONTHS, school_year_start
from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.params import (
    _LEAP_DEV_DECAY,
    _LEAP_DISTRICTS,
    _LEAP_OFFSETS,
    _LEAP_SIZE_YEARS,
    _LEAP_TOTAL_2021,
    _MONTH_SHOCKS,
    _N_NONLEAP,
    _NONLEAP_MEAN,
    _NONLEAP_SD,
    _NONLEAP_TOWNS,
    _SCHOOL_SD,
    _UNIVERSE_SEED,
    _YEAR_EFFECT,
)


def _nearest(table: dict[int, float], year: int) -> float:
    """Value of ``table`` at ``year``, using the nearest key outside its range."""
    keys = sorted(table)
    return table[min(max(year, keys[0]), keys[-1])]


class _Calendar:
    """School years and school months of the panel.

    Panel month ``t = 10 * year_index + position`` (September 0 ... June 9), so the
    contract's school-month index is ``10 * first_start_year + t``. The summer after
    school year ``yi`` is July/August of ``start + 1``.
    """

    def __init__(self, cfg: SimulationConfig) -> None:
        self.labels = list(cfg.school_years)
        self.starts = np.array([school_year_start(s) for s in self.labels], dtype=np.int64)
        self.n_years = len(self.labels)
        self.n_t = 10 * self.n_years
        cal_month = np.array(SCHOOL_MONTHS)
        self.month_labels = np.empty(self.n_t, dtype=object)
        for yi, start in enumerate(self.starts):
            years = start + (np.arange(10) >= 4)
            self.month_labels[10 * yi : 10 * yi + 10] = [
                f"{y:04d}-{m:02d}" for y, m in zip(years, cal_month, strict=True)
            ]
        nc = set(cfg.no_collection_months)
        self.collected = np.array([m not in nc for m in self.month_labels])
        self.remote_year = np.array([s in cfg.remote_school_years for s in self.labels])
        self.month_shock = np.array([_MONTH_SHOCKS.get(m, 0.0) for m in self.month_labels])
        self.summer_labels = [(f"{s + 1:04d}-07", f"{s + 1:04d}-08") for s in self.starts]
        self.summer_collected = np.array(
            [[m not in nc for m in pair] for pair in self.summer_labels]
        ).reshape(self.n_years, 2)


@dataclass
class _Districts:
    names: list[str]
    codes: np.ndarray
    leap: np.ndarray
    max_grade: np.ndarray
    sizes: np.ndarray  # [D, Y] simulated PK-12 roster sizes
    nominal: np.ndarray  # [D] full-scale size (for the school structure)
    race_p: np.ndarray  # [D, 7]
    meal_p: np.ndarray  # [D, 3] free, reduced, not eligible
    spanish: np.ndarray
    remote: np.ndarray
    intensity: np.ndarray
    visitor_p: np.ndarray  # [D, 3]
    intercept: np.ndarray  # [D, Y]


def _build_districts(cfg: SimulationConfig, cal: _Calendar) -> _Districts:
    """District universe of the scale, with sizes, composition and intercepts."""
    rows = list(_LEAP_DISTRICTS)
    n_leap = len(rows)
    names = [r[0] for r in rows]
    codes = [r[1] for r in rows]
    max_grade = [r[3] for r in rows]
    race = [np.asarray(r[4], dtype=float) for r in rows]
    free = [r[5] for r in rows]
    reduced = [r[6] for r in rows]
    spanish = [r[7] for r in rows]
    remote = [r[8] for r in rows]
    intensity = [r[9] for r in rows]
    visitor = [np.asarray(r[10], dtype=float) for r in rows]
    base_sizes = np.zeros((n_leap, cal.n_years))
    for i, r in enumerate(rows):
        for yi, start in enumerate(cal.starts):
            k = int(np.clip(start - _LEAP_SIZE_YEARS[0], 0, len(_LEAP_SIZE_YEARS) - 1))
            base_sizes[i, yi] = r[2][k]
    nominal = [r[2][2] for r in rows]
    offsets = np.zeros((n_leap, cal.n_years))
    for i, name in enumerate(names):
        base, dev20, dev21 = _LEAP_OFFSETS[name]
        for yi, start in enumerate(cal.starts):
            if start <= 2019:
                dev = 0.0
            elif start == 2020:
                dev = dev20
            elif start == 2021:
                dev = dev21
            else:
                dev = dev21 * _nearest(_LEAP_DEV_DECAY, int(start))
            offsets[i, yi] = base + dev
    if cfg.scale == "demo":
        base_sizes = base_sizes * (cfg.demo_students / _LEAP_TOTAL_2021)
    if cfg.scale == "state":
        uni = np.random.default_rng(_UNIVERSE_SEED)
        n_extra = _N_NONLEAP
        raw = uni.lognormal(mean=np.log(2600.0), sigma=0.85, size=n_extra)
        raw = np.clip(raw, 250.0, None)
        total = max(cfg.state_students - _LEAP_TOTAL_2021, 1000)
        sizes_nl = raw / raw.sum() * total
        free_nl = np.clip(uni.beta(2.0, 5.0, size=n_extra), 0.03, 0.75)
        red_nl = np.clip(0.06 + 0.02 * uni.standard_normal(n_extra), 0.01, 0.12)
        hisp = np.clip(0.05 + 0.35 * free_nl + 0.05 * uni.standard_normal(n_extra), 0.02, 0.6)
        black = np.clip(0.02 + 0.2 * free_nl + 0.03 * uni.standard_normal(n_extra), 0.01, 0.4)
        asian = np.clip(0.05 + 0.02 * uni.standard_normal(n_extra), 0.01, 0.15)
        two = np.full(n_extra, 0.04)
        white = np.clip(1.0 - hisp - black - asian - two - 0.005, 0.05, None)
        nl_offset = _NONLEAP_MEAN + _NONLEAP_SD * uni.standard_normal(n_extra)
        nl_remote = uni.uniform(0.2, 0.45, size=n_extra)
        town_names = list(_NONLEAP_TOWNS)
        used = set(codes)
        free_codes = [c for c in range(1, 240) if c not in used]
        for j in range(n_extra):
            names.append(town_names[j] if j < len(town_names) else f"District {free_codes[j]:03d}")
            codes.append(free_codes[j])
            max_grade.append(13)
            race.append(np.array([hisp[j], black[j], white[j], asian[j], two[j], 0.003, 0.002]))
            free.append(float(free_nl[j]))
            reduced.append(float(red_nl[j]))
            spanish.append(0.35)
            remote.append(float(nl_remote[j]))
            intensity.append(0.0)
            visitor.append(np.array([0.6, 0.3, 0.1]))
            nominal.append(float(sizes_nl[j]))
        base_sizes = np.vstack([base_sizes, np.repeat(sizes_nl[:, None], cal.n_years, axis=1)])
        offsets = np.vstack([offsets, np.repeat(nl_offset[:, None], cal.n_years, axis=1)])
    n_d = len(names)
    sizes = np.maximum(np.rint(base_sizes * cfg.sample_fraction), 5).astype(np.int64)
    year_eff = np.array([_nearest(_YEAR_EFFECT, int(s)) for s in cal.starts])
    race_p = np.vstack(race)
    race_p = race_p / race_p.sum(axis=1, keepdims=True)
    free_a, red_a = np.asarray(free), np.asarray(reduced)
    meal_p = np.column_stack([free_a, red_a, 1.0 - free_a - red_a])
    return _Districts(
        names=names,
        codes=np.asarray(codes, dtype=np.int64),
        leap=np.arange(n_d) < n_leap,
        max_grade=np.asarray(max_grade, dtype=np.int64),
        sizes=sizes,
        nominal=np.asarray(nominal, dtype=float),
        race_p=race_p,
        meal_p=meal_p,
        spanish=np.asarray(spanish),
        remote=np.asarray(remote),
        intensity=np.asarray(intensity),
        visitor_p=np.vstack(visitor),
        intercept=offsets + year_eff[None, :],
    )


@dataclass
class _Schools:
    district: np.ndarray
    level: np.ndarray  # 0 elementary (PK-5), 1 middle (6-8), 2 high (9-12)
    ids: list[str]
    effect: np.ndarray
    first: np.ndarray  # [D, 3] index of the first school of a level
    count: np.ndarray  # [D, 3]


def _grade_level(grade: np.ndarray) -> np.ndarray:
    """School level of grade codes: 0 for PK-5, 1 for 6-8, 2 for 9-12."""
    return np.where(grade <= 6, 0, np.where(grade <= 9, 1, 2))


def _build_schools(dist: _Districts, rng: np.random.Generator) -> _Schools:
    """Schools nested in districts: about 430 (elementary), 560, 950 students each."""
    per_level = np.array([0.52, 0.22, 0.26])
    per_school = np.array([430.0, 560.0, 950.0])
    n_d = len(dist.names)
    count = np.maximum(np.rint(dist.nominal[:, None] * per_level / per_school), 1).astype(int)
    count[dist.max_grade < 10, 2] = 0
    count = np.minimum(count, 30)
    first = np.zeros((n_d, 3), dtype=np.int64)
    s_district, s_level, ids = [], [], []
    k = 0
    for d in range(n_d):
        number = 1
        for level in range(3):
            first[d, level] = k
            for _ in range(count[d, level]):
                s_district.append(d)
                s_level.append(level)
                ids.append(f"{dist.codes[d]:03d}{number:02d}{11 + level}")
                number += 1
                k += 1
    s_level_a = np.asarray(s_level, dtype=np.int64)
    sd = np.asarray(_SCHOOL_SD)[s_level_a]
    return _Schools(
        district=np.asarray(s_district, dtype=np.int64),
        level=s_level_a,
        ids=ids,
        effect=sd * rng.standard_normal(len(ids)),
        first=first,
        count=count,
    )
