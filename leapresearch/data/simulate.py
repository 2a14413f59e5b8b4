r"""Synthetic Connecticut-like raw data with known true effects of LEAP home visits.

The generator writes the three tables of the raw-data contract (``students``,
``attendance_monthly``, ``leap_visits``) for a synthetic population calibrated to the
public Connecticut figures (``docs/ct-public-figures.md``), together with a
``truth`` dictionary holding the true average effects on the treated, computed from the
simulated potential outcomes. Nothing here is read by the estimation code: the truth is
returned separately and :func:`write_simulation` refuses to put it beside the data.

Model in one paragraph. Students sit in districts and schools (elementary PK-5, middle
6-8, high 9-12), move up a grade each year, graduate after grade 12, leave (about 9% a
year, some mid-year) and are replaced by PK/K entrants and movers. Each school month a
student in membership attends each day with probability

.. math::

    p_{it} = \operatorname{expit}\big(\alpha_{d(i),y} + \gamma_{g(i,y)} + \mu_{meal(i)}
        + \beta' x_i + u_i + v_{iy} + s_{school(i,t)} + \kappa_t + z_{it}\big),

with district-year intercepts :math:`\alpha` (calibrated to district ADA and chronic
absence and to the statewide chronic-absence series), a U-shaped grade profile
:math:`\gamma`, a meal-status gradient :math:`\mu`, a persistent student effect
:math:`u_i`, a student-year effect :math:`v_{iy}`, school effects, seasonality and
month shocks :math:`\kappa_t` (Omicron in January 2022) and an AR(1) process
:math:`z_{it}` with occasional negative jumps: spells of low attendance that partly
recover on their own. Days attended are ``Binomial(membership, p)``; remote days
(2020-21) use ``p`` with a lower index.

LEAP visits are assigned from April 2021 to students with low *observed* recent
attendance (weighted sampling without replacement on the attendance rate of the last
three collected months), so visited students regress to the mean without any program.
One district canvasses whole neighbourhoods (random students of some schools) and has a
zero effect. For treated students the daily probability from the event month on is

.. math::

    p^{(1)}_{it} = p^{(0)}_{it} + \theta_{it}\,(1 - p^{(0)}_{it}),\qquad
    \theta_{it} = \theta\, c_{cohort}\, b_{band}\, l_{location}\,
        \min\!\big(1, \tfrac{r+1}{R}\big)\, e^{-\max(r - F, 0)/S},

where ``r`` is ``rel_time``. The potential outcomes share common random numbers:
``Y(1) = Y(0) + Binomial(membership - Y(0), theta)``, which has the right
``Binomial(membership, p1)`` margin and never lowers attendance.

Simplifications worth knowing: ``students`` holds a row for every student enrolled at any
time in the school year (mid-year entrants included, since the contract requires a roster
row for every attendance month); meal status, ELL, disability and home language are
fixed per student; students who leave a district leave the simulated world (a mover
between districts is a new SASID); days are independent Bernoulli draws within a month,
so fall-to-winter persistence of chronic absence (relative risk about 6 statewide in
2020-21) is weaker than the 17x reported for Connecticut.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leapresearch.data.calendar import (
    SCHOOL_MONTHS,
    cohort_label,
    school_year_start,
)
from leapresearch.data.types import (
    GRADE_TO_BAND,
    GRADES,
    MEAL_STATUSES,
    RACES,
    VISIT_LOCATIONS,
    VISITOR_TYPES,
)

__all__ = [
    "TRUTH_SCHEMA",
    "TABLES",
    "SimulationConfig",
    "SimulatedData",
    "simulate",
    "write_simulation",
]

TRUTH_SCHEMA = "leapresearch-truth/1"
"""Value of ``truth["schema"]``."""

TABLES: tuple[str, ...] = ("students", "attendance_monthly", "leap_visits")
"""The three contract tables, in the order they are written."""

ScaleName = Literal["demo", "districts", "state"]
SelectionRegime = Literal["lists", "hazard"]
"""How districts pick students (see :class:`SimulationConfig`, ``selection``)."""
FileFormat = Literal["csv", "parquet"]

# --------------------------------------------------------------------------------------
# Fixed parameters of the synthetic world (calibrated offline, see Notes in `simulate`).
# --------------------------------------------------------------------------------------

# fmt: off
_LEAP_DISTRICTS: tuple[tuple[Any, ...], ...] = (
    # name, code, PK-12 students 2019-20/2020-21/2021-22, highest grade code (13 = grade 12),
    # race shares (RACES order, %), free and reduced meal shares, Spanish home-language share
    # among Hispanic students, remote share of 2020-21 days, LEAP visiting intensity,
    # visitor mix (school_staff, community_partner, other)
    ("Bridgeport", 15, (19423, 18244, 18482), 13, (50, 35, 9, 3, 2.5, 0.3, 0.2), 0.88, 0.03,
     0.45, 0.55, 1.0, (0.6, 0.3, 0.1)),
    ("CREC", 241, (7606, 7771, 9653), 13, (38, 30, 23, 5, 3.5, 0.3, 0.2), 0.55, 0.06,
     0.25, 0.50, 0.8, (0.7, 0.2, 0.1)),
    ("Danbury", 34, (11718, 11455, 11783), 13, (52, 8, 29, 7, 3.5, 0.3, 0.2), 0.55, 0.07,
     0.50, 0.35, 0.9, (0.5, 0.4, 0.1)),
    ("East Hartford", 43, (6529, 6251, 6126), 13, (55, 26, 11, 5, 2.5, 0.3, 0.2), 0.80, 0.04,
     0.45, 0.45, 1.0, (0.6, 0.3, 0.1)),
    ("Hartford", 64, (17344, 15785, 16371), 13, (56, 29, 10, 3, 1.5, 0.3, 0.2), 0.92, 0.02,
     0.45, 0.60, 1.3, (0.4, 0.5, 0.1)),
    ("Manchester", 77, (6023, 5459, 6039), 13, (33, 23, 30, 9, 4.5, 0.3, 0.2), 0.65, 0.06,
     0.30, 0.45, 1.0, (0.6, 0.3, 0.1)),
    ("Meriden", 80, (8052, 8121, 8476), 13, (60, 9, 26, 2, 2.5, 0.3, 0.2), 0.85, 0.03,
     0.40, 0.30, 1.2, (0.3, 0.6, 0.1)),
    ("New Britain", 89, (9744, 9453, 9299), 13, (62, 13, 20, 3, 1.5, 0.3, 0.2), 0.90, 0.02,
     0.50, 0.50, 1.1, (0.6, 0.3, 0.1)),
    ("New Haven", 93, (19307, 18530, 18028), 13, (48, 34, 13, 3, 1.5, 0.3, 0.2), 0.90, 0.02,
     0.40, 0.65, 1.0, (0.5, 0.4, 0.1)),
    ("New London", 95, (3378, 3269, 3055), 13, (55, 20, 15, 3, 6.5, 0.3, 0.2), 0.90, 0.02,
     0.45, 0.50, 1.1, (0.6, 0.3, 0.1)),
    ("Norwich", 104, (3299, 3237, 3176), 9, (30, 18, 35, 8, 8.5, 0.3, 0.2), 0.80, 0.04,
     0.35, 0.30, 1.0, (0.7, 0.2, 0.1)),
    ("Stamford", 135, (16311, 15821, 15986), 13, (45, 20, 25, 7, 2.5, 0.3, 0.2), 0.55, 0.07,
     0.45, 0.25, 0.8, (0.6, 0.3, 0.1)),
    ("Torrington", 143, (3810, 3690, 3813), 13, (27, 5, 62, 2, 3.5, 0.3, 0.2), 0.60, 0.06,
     0.20, 0.35, 1.0, (0.7, 0.2, 0.1)),
    ("Waterbury", 151, (17983, 17847, 17806), 13, (57, 19, 19, 2, 2.5, 0.3, 0.2), 0.92, 0.02,
     0.40, 0.45, 1.0, (0.6, 0.3, 0.1)),
    ("Windham", 163, (3060, 2985, 2960), 13, (72, 3, 22, 1, 1.5, 0.3, 0.2), 0.92, 0.02,
     0.55, 0.50, 1.1, (0.5, 0.4, 0.1)),
)
# fmt: on
_LEAP_SIZE_YEARS = (2019, 2020, 2021)
_LEAP_TOTAL_2021 = sum(row[2][2] for row in _LEAP_DISTRICTS)

# District intercept deviations (logit) of the LEAP districts: base, 2020-21, 2021-22.
# Later years keep a decaying share of the 2021-22 deviation (_LEAP_DEV_DECAY).
_LEAP_OFFSETS: dict[str, tuple[float, float, float]] = {
    "Bridgeport": (0.357, -0.319, -0.133),
    "CREC": (0.097, -0.284, -0.3),
    "Danbury": (0.515, -0.396, -0.341),
    "East Hartford": (0.353, -0.292, -0.165),
    "Hartford": (-0.022, -0.747, -0.403),
    "Manchester": (0.16, -0.48, -0.322),
    "Meriden": (0.434, -0.261, -0.174),
    "New Britain": (0.125, -0.426, -0.358),
    "New Haven": (0.307, -0.888, -0.756),
    "New London": (0.419, -0.904, -0.457),
    "Norwich": (0.404, -0.179, -0.131),
    "Stamford": (0.368, -0.075, -0.312),
    "Torrington": (0.24, -0.667, -0.133),
    "Waterbury": (0.26, -0.238, -0.251),
    "Windham": (0.245, -0.813, -0.638),
}
_LEAP_DEV_DECAY: dict[int, float] = {2022: 0.6, 2023: 0.45}
"""Share of the 2021-22 deviation kept in later years (0.45 from 2023-24 on)."""

# Statewide year intercepts (logit); years outside the table use the nearest entry.
_YEAR_EFFECT: dict[int, float] = {
    2018: 3.718,
    2019: 3.539,
    2020: 3.691,
    2021: 3.354,
    2022: 3.336,
    2023: 3.406,
    2024: 3.46,
}
_NONLEAP_MEAN = 0.45
_NONLEAP_SD = 0.2

# Grade profile by grade code (0 = PK, 1 = K, 2..13 = grades 1..12): U-shaped.
_GRADE_EFFECT = np.array(
    [-0.55, -0.3, -0.1, -0.03, 0.02, 0.02, 0.0, -0.08, -0.18, -0.26, -0.42, -0.45, -0.47, -0.72]
)
# fmt: off
_GRADE_WEIGHTS = np.array(
    [0.045, 0.072, 0.074, 0.074, 0.074, 0.074, 0.074, 0.074, 0.074, 0.074, 0.082, 0.076, 0.071,
     0.068]
)
_RETENTION = np.array(
    [0.25, 0.03, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.06, 0.02, 0.02, 0.0]
)
# fmt: on
_HS_YEAR_EXTRA: dict[int, float] = {2020: -0.15, 2021: -0.2, 2022: -0.15, 2023: -0.1}
_MEAL_EFFECT = np.array([-0.3, 0.0, 0.35])  # MEAL_STATUSES order: free, reduced, not_eligible
_SWD_EFFECT = -0.3
_ELL_EFFECT = 0.1
_GENDER_EFFECT = np.array([0.0, -0.03, -0.3])  # F, M, X
_SD_STUDENT = 0.75
_DISENGAGED_SHARE = 0.06
_DISENGAGED_SHIFT = -0.9
_SD_STUDENT_YEAR = 0.3
_SCHOOL_SD = (0.12, 0.15, 0.25)  # elementary, middle, high
_SEASON = np.array([0.30, 0.18, 0.08, -0.08, -0.05, -0.12, -0.05, -0.12, -0.20, -0.45])
_SUMMER_SHIFT = -0.2
_MONTH_SHOCKS: dict[str, float] = {
    "2020-11": -0.08,
    "2020-12": -0.15,
    "2021-01": -0.12,
    "2021-12": -0.15,
    "2022-01": -0.55,
}
_REMOTE_SHIFT = -0.35
_REMOTE_MONTH_PROFILE = np.array([1.0, 1.0, 1.15, 1.3, 1.3, 1.1, 0.9, 0.8, 0.7, 0.7])
_SCHOOL_DAYS = np.array([17, 20, 18, 15, 19, 17, 22, 17, 20, 11])
_MAX_DAYS = 23

# Program (LEAP) design.
# fmt: off
_PROGRAM_MONTHS: tuple[tuple[str, tuple[tuple[int, int, float], ...]], ...] = (
    # (kind, ((calendar year, month, weight within the kind), ...))
    ("spring", ((2021, 4, 0.3), (2021, 5, 0.4), (2021, 6, 0.3))),
    ("summer", ((2021, 7, 0.55), (2021, 8, 0.45))),
    ("school_year", ((2021, 9, 0.12), (2021, 10, 0.14), (2021, 11, 0.12), (2021, 12, 0.08),
                     (2022, 1, 0.10), (2022, 2, 0.11), (2022, 3, 0.11), (2022, 4, 0.09),
                     (2022, 5, 0.08), (2022, 6, 0.05))),
    ("tail", ((2022, 9, 0.35), (2022, 10, 0.3), (2022, 11, 0.2), (2022, 12, 0.15))),
)
# fmt: on
_PROGRAM_START = np.datetime64("2021-04-01")
_FIRST_LOCATION_P = {  # VISIT_LOCATIONS order: home, other_location, virtual, phone
    "spring": (0.50, 0.10, 0.20, 0.20),
    "default": (0.68, 0.10, 0.10, 0.12),
}
_FOLLOWUP_LOCATION_P = (0.60, 0.12, 0.12, 0.16)
_ATTEMPT_LOCATION_P = (0.85, 0.0, 0.0, 0.15)
_SELECTION_CHRONIC_BONUS = 1.5

# True effect: theta * cohort * band * location * ramp(rel) * fade(rel), on (1 - p0).
_EFFECT_THETA = 0.92
_EFFECT_THETA_CAP = 0.95
_EFFECT_RAMP = 7.0
_EFFECT_FADE_START = 9
_EFFECT_FADE_SCALE = 36.0
_EFFECT_COHORT = {"spring": 0.8, "summer": 0.45, "school_year": 1.0, "tail": 0.8}
_EFFECT_BAND = {"PK-5": 0.72, "6-8": 1.0, "9-12": 1.05}
_EFFECT_LOCATION = np.array([1.0, 0.8, 0.5, 0.4])  # VISIT_LOCATIONS order

_UNIVERSE_SEED = 860_203  # fixes the non-LEAP districts independently of `seed`
# fmt: off
_NONLEAP_TOWNS = (
    "Andover", "Ansonia", "Avon", "Berlin", "Bethel", "Bloomfield", "Branford", "Bristol",
    "Brookfield", "Canton", "Cheshire", "Clinton", "Colchester", "Coventry", "Cromwell",
    "Darien", "Derby", "East Granby", "East Haddam", "East Hampton", "East Haven",
    "East Lyme", "East Windsor", "Ellington", "Enfield", "Fairfield", "Farmington",
    "Glastonbury", "Granby", "Greenwich", "Griswold", "Groton", "Guilford", "Hamden",
    "Killingly", "Ledyard", "Madison", "Mansfield", "Milford", "Monroe", "Montville",
    "Naugatuck", "New Canaan", "New Fairfield", "New Milford", "Newington", "Newtown",
    "North Branford", "North Haven", "Norwalk", "Old Saybrook", "Orange", "Plainfield",
    "Plainville", "Plymouth", "Portland", "Putnam", "Ridgefield", "Rocky Hill", "Seymour",
    "Shelton", "Simsbury", "Somers", "South Windsor", "Southington", "Stafford",
    "Stonington", "Stratford", "Suffield", "Thomaston", "Thompson", "Tolland", "Trumbull",
    "Vernon", "Wallingford", "Waterford", "Watertown", "West Hartford", "West Haven",
    "Westbrook", "Weston", "Westport", "Wethersfield", "Wilton", "Winchester", "Windsor",
    "Windsor Locks", "Wolcott", "Woodbridge",
)
# fmt: on
_N_NONLEAP = 105


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the synthetic data generator (all with defaults).

    Parameters
    ----------
    scale : {"demo", "districts", "state"}
        ``demo``: a proportional sample of the 15 LEAP districts (``demo_students``
        students, about 1,000 visited); ``districts``: the 15 LEAP districts at their
        2021-22 PK-12 sizes (about 151,000 students, about 8,700 visited); ``state``:
        adds about 105 non-LEAP districts up to ``state_students``.
    seed : int
        Seed of the ``numpy.random.SeedSequence`` behind every random draw.
    school_years : tuple of str
        Consecutive ``YYYY-YY`` school years to simulate (at most 20).
    sample_fraction : float
        Fraction of every district's enrolment to simulate, in (0, 1]. Keeps the
        district mix (use it for quick ``state``-like samples); also scales the number
        of visited students.
    demo_students : int
        PK-12 students (2021-22) of the ``demo`` scale before ``sample_fraction``.
    state_students : int
        PK-12 students (2021-22) of the ``state`` scale before ``sample_fraction``.
    visited_target : int or None
        Students with a first completed visit, before ``sample_fraction``; ``None``
        means 1,000 for ``demo`` and 8,700 otherwise.
    cohort_shares : tuple of 4 floats
        Shares of first visits in spring 2021 (April-June), summer 2021 (July-August),
        the 2021-22 school year and autumn 2022 (the 2022-23 tail). Months outside the
        simulated years are dropped.
    attempt_only_share : float
        Extra students (as a share of the visited) with attempted visits only.
    canvass_district : str or None
        LEAP district that canvasses whole neighbourhoods: its visits go to random
        students of some of its schools and have no effect. ``None`` for none.
    canvass_school_share : float
        Share of the canvassing district's schools whose students may be canvassed.
    effect_multiplier : float
        Multiplies every true effect (0 gives a world where LEAP does nothing).
    mobility_rate : float
        Yearly share of students who leave their district (besides graduates).
    midyear_leave_share : float
        Share of leavers who leave during the school year (partial membership).
    midyear_entry_share : float
        Share of entrants in grades 1-12 who arrive during the school year.
    school_move_rate : float
        Yearly share of students who change school inside their district mid-year.
    summer_school_rate : float
        Share of continuing students with July/August summer-school rows.
    ar_rho : float
        Monthly autocorrelation of the attendance shock process, in [0, 1).
    ar_sd : float
        Standard deviation of the monthly Gaussian innovation (logit scale).
    spell_rate : float
        Monthly probability that a student starts a spell of low attendance.
    spell_size : float
        Mean size (logit, exponential) of the negative jump that starts a spell.
    selection_strength : float
        How strongly districts pick students with low recent observed attendance
        (log-weight slope on the recent attendance rate).
    selection : {"lists", "hazard"}
        ``lists`` (default): each program month every district visits a fixed number of
        students drawn from its list of low recent attendance (weighted sampling without
        replacement, log-weight ``-selection_strength * rate``). ``hazard``: dynamic
        selection; every month each eligible student is first visited with probability
        ``expit(a_t - hazard_strength * rate)`` (``rate``: the last three collected
        months), independently, the intercept ``a_t`` set so that the month's expected
        number of visits is its target. The number visited varies, and visits follow
        low spells whenever they happen, so later-visited students leave the
        never-visited pool because of their later attendance.
    hazard_strength : float
        Slope of the monthly visit hazard on the recent attendance rate (logit scale;
        ``selection="hazard"`` only). The default 10 gives visited students about the
        same fall in attendance before the first visit as the ``lists`` regime (about
        12 points from months -6..-4 to -2..-1 at demo scale); 25 doubles it and leaves
        half of the visited students without a comparison inside the caliper (a stress
        test, see ``validation/``).
    no_collection_months : tuple of str
        ``YYYY-MM`` months without any attendance rows (spring and summer 2020).
    remote_school_years : tuple of str
        School years with remote membership days (district-varying share).
    truth_window : tuple of 2 ints
        Range of ``rel_time`` reported in ``truth["event_study"]``.
    """

    scale: ScaleName = "demo"
    seed: int = 20210401
    school_years: tuple[str, ...] = ("2019-20", "2020-21", "2021-22", "2022-23", "2023-24")
    sample_fraction: float = 1.0
    demo_students: int = 20_000
    state_students: int = 510_000
    visited_target: int | None = None
    cohort_shares: tuple[float, float, float, float] = (0.06, 0.32, 0.55, 0.07)
    attempt_only_share: float = 0.08
    canvass_district: str | None = "Meriden"
    canvass_school_share: float = 0.5
    effect_multiplier: float = 1.0
    mobility_rate: float = 0.09
    midyear_leave_share: float = 0.4
    midyear_entry_share: float = 0.35
    school_move_rate: float = 0.02
    summer_school_rate: float = 0.03
    ar_rho: float = 0.65
    ar_sd: float = 0.3
    spell_rate: float = 0.04
    spell_size: float = 1.0
    selection_strength: float = 9.0
    selection: SelectionRegime = "lists"
    hazard_strength: float = 10.0
    no_collection_months: tuple[str, ...] = (
        "2020-03",
        "2020-04",
        "2020-05",
        "2020-06",
        "2020-07",
        "2020-08",
    )
    remote_school_years: tuple[str, ...] = ("2020-21",)
    truth_window: tuple[int, int] = (-12, 24)

    def __post_init__(self) -> None:
        for name in (
            "school_years",
            "cohort_shares",
            "no_collection_months",
            "remote_school_years",
            "truth_window",
        ):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ValueError(f"{name} must be a tuple, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.scale not in ("demo", "districts", "state"):
            raise ValueError(f"scale must be 'demo', 'districts' or 'state', got {self.scale!r}")
        if (
            not isinstance(self.seed, (int, np.integer))
            or isinstance(self.seed, bool)
            or (self.seed < 0)
        ):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        # Plain Python numbers (so that the config is JSON-serialisable as is).
        for name in ("demo_students", "state_students", "visited_target"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or int(value) != value:
                    raise ValueError(f"{name} must be an integer, got {value!r}")
                object.__setattr__(self, name, int(value))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "cohort_shares", tuple(float(x) for x in self.cohort_shares))
        object.__setattr__(self, "truth_window", tuple(int(x) for x in self.truth_window))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.floating):
                object.__setattr__(self, f.name, float(value))
        if not self.school_years or len(self.school_years) > 20:
            raise ValueError(f"school_years must hold 1 to 20 years, got {self.school_years!r}")
        starts = [school_year_start(s) for s in self.school_years]
        if any(b - a != 1 for a, b in zip(starts[:-1], starts[1:], strict=True)):
            raise ValueError(
                f"school_years must be consecutive and increasing, got {self.school_years!r}"
            )
        for s in self.remote_school_years:
            school_year_start(s)
        for m in self.no_collection_months:
            _check_month(m)
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction!r}")
        for name in ("demo_students", "state_students"):
            if getattr(self, name) < 100:
                raise ValueError(f"{name} must be at least 100, got {getattr(self, name)!r}")
        if self.visited_target is not None and self.visited_target < 0:
            raise ValueError(f"visited_target must be >= 0, got {self.visited_target!r}")
        shares = np.asarray(self.cohort_shares, dtype=float)
        if shares.shape != (4,) or (shares < 0).any() or shares.sum() <= 0:
            raise ValueError(
                f"cohort_shares must be 4 non-negative numbers, got {self.cohort_shares!r}"
            )
        leap_names = [row[0] for row in _LEAP_DISTRICTS]
        if self.canvass_district is not None and self.canvass_district not in leap_names:
            raise ValueError(
                f"canvass_district must be one of {leap_names} or None, "
                f"got {self.canvass_district!r}"
            )
        for name in (
            "attempt_only_share",
            "canvass_school_share",
            "mobility_rate",
            "midyear_leave_share",
            "midyear_entry_share",
            "school_move_rate",
            "summer_school_rate",
            "spell_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not 0.0 <= self.ar_rho < 1.0:
            raise ValueError(f"ar_rho must be in [0, 1), got {self.ar_rho!r}")
        if self.selection not in ("lists", "hazard"):
            raise ValueError(f"selection must be 'lists' or 'hazard', got {self.selection!r}")
        for name in (
            "ar_sd",
            "spell_size",
            "selection_strength",
            "effect_multiplier",
            "hazard_strength",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if len(self.truth_window) != 2 or self.truth_window[0] > self.truth_window[1]:
            raise ValueError(f"truth_window must be (low, high), got {self.truth_window!r}")


@dataclass(frozen=True)
class SimulatedData:
    """Output of :func:`simulate`.

    Parameters
    ----------
    students : pandas.DataFrame
        The ``students`` contract table (one row per student and school year).
    attendance_monthly : pandas.DataFrame
        The ``attendance_monthly`` contract table (student, month, school).
    leap_visits : pandas.DataFrame
        The ``leap_visits`` contract table (one row per visit or attempt).
    truth : dict
        JSON-serialisable true effects (schema ``leapresearch-truth/1``): keys
        ``schema``, ``seed``, ``scale``, ``config``, ``program``, ``event_study``,
        ``event_study_n`` and ``long_term``.
    """

    students: pd.DataFrame
    attendance_monthly: pd.DataFrame
    leap_visits: pd.DataFrame
    truth: dict


def simulate(config: SimulationConfig | None = None, /, **overrides: Any) -> SimulatedData:
    r"""Simulate the three raw tables and the true effects of LEAP.

    Parameters
    ----------
    config : SimulationConfig, optional
        Configuration; defaults to ``SimulationConfig()``.
    **overrides
        Fields of :class:`SimulationConfig` to replace (e.g. ``scale="state"``).

    Returns
    -------
    SimulatedData
        ``students``, ``attendance_monthly`` and ``leap_visits`` (contract tables, rows
        sorted, identifiers as strings, day counts as integers) and ``truth``.

    Notes
    -----
    The same configuration gives identical tables. ``truth["event_study"][group][k]`` is

    .. math::

        \mathrm{ATT}(k) = \frac{100}{N_k}\sum_{i:\,rel_{it}=k} \frac{A^{(1)}_{it}
            - A^{(0)}_{it}}{M_{it}},

    over students with a first completed visit and membership ``M > 0`` in the month
    with ``rel_time = k`` (days summed over school rows). ``truth["long_term"]`` holds,
    per cohort, group and school year from the cohort's school year on, the ATT on the
    annual attendance rate (all grades) and on chronic absence (rate < 0.90, K-12 only)
    in percentage points. Event-study groups are ``all``, ``grade_band:<band>`` (PK-5,
    6-8, 9-12, 6-12; band of the grade in the school year of the event month),
    ``cohort:<label>``, ``first_visit_location:<location>`` and ``district:<name>``.

    Intercepts, grade, meal and effect parameters were tuned offline so that a
    ``state`` sample reproduces the statewide K-12 chronic-absence series within about
    one point, LEAP district ADA falls in 84-93% in 2021-22, and the effects match the
    CCERC pattern (+4 pp one month after, ~+15 pp at six months for 2021-22, ~+7 pp for
    summer 2021, +8 pp PK-5 and +16 pp grades 6-12 at nine months).

    Examples
    --------
    >>> data = simulate(scale="demo", sample_fraction=0.05, seed=1)
    >>> data.truth["schema"]
    'leapresearch-truth/1'
    >>> data.students["student_id"].str.len().unique().tolist()
    [10]
    """
    cfg = SimulationConfig() if config is None else config
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(SimulationConfig)})
        if unknown:
            raise ValueError(f"unknown SimulationConfig fields: {unknown}")
        cfg = dataclasses.replace(cfg, **overrides)
    children = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_world, rng_roster, rng_att, rng_prog, rng_eff, rng_summer = (
        np.random.default_rng(c) for c in children
    )
    cal = _Calendar(cfg)
    dist = _build_districts(cfg, cal)
    schools = _build_schools(dist, rng_world)
    roster = _simulate_roster(cfg, cal, dist, schools, rng_roster)
    panel = _simulate_attendance(cfg, cal, dist, schools, roster, rng_att)
    program = _simulate_program(cfg, cal, dist, schools, roster, panel, rng_prog)
    treated_rows = _apply_effects(cfg, cal, roster, panel, program, rng_eff)
    summer = _simulate_summer(cfg, cal, dist, roster, panel, rng_summer)
    truth = _compute_truth(cfg, cal, dist, roster, panel, program, treated_rows)
    students, attendance, visits = _build_frames(cal, dist, schools, roster, panel, summer, program)
    return SimulatedData(
        students=students, attendance_monthly=attendance, leap_visits=visits, truth=truth
    )


def write_simulation(
    data: SimulatedData,
    out_dir: Path,
    *,
    file_format: FileFormat = "csv",
    truth_path: Path | None = None,
) -> list[Path]:
    """Write the three contract tables (and, elsewhere, the truth JSON).

    Parameters
    ----------
    data : SimulatedData
        Output of :func:`simulate`.
    out_dir : pathlib.Path
        Data folder; created if missing. Receives exactly ``students``,
        ``attendance_monthly`` and ``leap_visits`` as ``NAME.csv`` or ``NAME.parquet``;
        a same-named table in the other format is removed so the folder stays
        unambiguous.
    file_format : {"csv", "parquet"}
        Table format.
    truth_path : pathlib.Path, optional
        Where to write the truth JSON; must not be inside ``out_dir``.

    Returns
    -------
    list of pathlib.Path
        The files written (tables, the :data:`SIMULATION_MARKER` file, then the truth file
        if any).

    Notes
    -----
    Output is byte-identical for identical ``data``: rows are sorted (students by
    ``student_id, school_year``; attendance by ``student_id, month, school_id``; visits by
    ``visit_id``), CSV is written by pyarrow (UTF-8, header, comma, no quoting, integer
    day counts) and Parquet by pyarrow with fixed options.
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be 'csv' or 'parquet', got {file_format!r}")
    out_dir = Path(out_dir)
    if truth_path is not None:
        truth_path = Path(truth_path)
        out_abs, truth_abs = out_dir.resolve(), truth_path.resolve()
        if truth_abs == out_abs or truth_abs.is_relative_to(out_abs):
            raise ValueError(
                f"truth_path {str(truth_path)!r} is inside the data folder {str(out_dir)!r}; "
                "the true effects must never sit beside the data"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    other = "parquet" if file_format == "csv" else "csv"
    written: list[Path] = []
    for name in TABLES:
        frame = getattr(data, name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = out_dir / f"{name}.{file_format}"
        if file_format == "csv":
            # Plain header and unquoted values (pyarrow raises if a value needs quoting).
            with pa.OSFile(str(path), "wb") as sink:
                sink.write((",".join(table.column_names) + "\n").encode("utf-8"))
                pacsv.write_csv(
                    table,
                    sink,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
                )
        else:
            pq.write_table(table, path, compression="zstd", write_statistics=True)
        stale = out_dir / f"{name}.{other}"
        if stale.exists():
            stale.unlink()
        written.append(path)
    written.append(write_marker(data, out_dir))
    if truth_path is not None:
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        truth_path.write_text(json.dumps(data.truth, indent=1) + "\n", encoding="utf-8")
        written.append(truth_path)
    return written


SIMULATION_MARKER = "SIMULATED.json"
"""File the simulator writes into every data folder it fills: the inputs are synthetic."""


def write_marker(data: SimulatedData, out_dir: Path) -> Path:
    """Write :data:`SIMULATION_MARKER` (generator, scale, seed; no effect sizes) into ``out_dir``.

    A run records the marker in ``provenance.json`` and its report shows a synthetic-data
    banner; a folder without it is treated as real data (nothing is guessed).
    """
    marker = {
        "schema": "leapresearch-simulated/1",
        "simulated": True,
        "generator": "leapresearch.data.simulate",
        "scale": data.truth.get("scale"),
        "seed": data.truth.get("seed"),
    }
    path = Path(out_dir) / SIMULATION_MARKER
    path.write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    """The simulator's marker of a data folder, or None when the folder has none."""
    path = Path(data_dir) / SIMULATION_MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable simulation marker ({exc})") from None
    if not isinstance(marker, dict) or marker.get("simulated") is not True:
        raise ValueError(f"{path}: not a simulation marker (expected 'simulated': true)")
    return marker


# --------------------------------------------------------------------------------------
# Calendar and world
# --------------------------------------------------------------------------------------


def _check_month(label: str) -> None:
    """Raise ``ValueError`` unless ``label`` is a ``YYYY-MM`` month."""
    ok = isinstance(label, str) and len(label) == 7 and label[4] == "-"
    if ok:
        try:
            ok = 1 <= int(label[5:]) <= 12 and int(label[:4]) > 0
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(f"months must be 'YYYY-MM', got {label!r}")


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


# --------------------------------------------------------------------------------------
# Roster
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Attendance
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# LEAP program
# --------------------------------------------------------------------------------------


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


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights``."""
    weights = np.asarray(weights, dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = total - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _hazard_intercept(logit: np.ndarray, expected: float) -> float:
    """``a`` with ``sum(expit(a + logit)) = expected`` (bisection; 0 < expected < n)."""
    lo, hi = -60.0 - float(logit.max()), 60.0 - float(logit.min())
    for _ in range(100):  # bisection steps, not a loop over students
        mid = 0.5 * (lo + hi)
        if _expit(mid + logit).sum() < expected:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _hazard_choice(
    cfg: SimulationConfig,
    rate: np.ndarray,
    cand_d: np.ndarray,
    canvass_d: int,
    listed: np.ndarray,
    n_total: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Candidates first visited this month under the monthly hazard (``selection="hazard"``).

    Students of the canvassing district keep the list draw (``listed``: random students
    of its canvassed schools); everywhere else each candidate is visited with probability
    ``expit(a - hazard_strength * rate)``, ``a`` set so that the expected number of
    visits equals the month's target less the canvassing district's share.
    """
    canvass = cand_d == canvass_d
    kept = listed[canvass[listed]]
    pool = np.flatnonzero(~canvass)
    expected = n_total - kept.size
    if expected <= 0 or pool.size == 0:
        return kept
    if expected >= pool.size:
        return np.concatenate([kept, pool])
    logit = -cfg.hazard_strength * rate[pool]
    p = _expit(_hazard_intercept(logit, expected) + logit)
    return np.concatenate([kept, pool[rng.random(pool.size) < p]])


def _simulate_program(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    panel: _Panel,
    rng: np.random.Generator,
) -> _Program:
    """Select LEAP students month by month and write their visit log."""
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
        cfg, cal, dist, roster, panel, rng, months, counts, canvass_d, canvass_school
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
    return _treated_program(
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


def _program_months(
    cfg: SimulationConfig, cal: _Calendar
) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Program months ``(kind, year, month, event t or -1)`` and students to visit in each.

    The target is split over all of them; months outside the simulated panel (or without
    any earlier collected month to select on) get event month -1 and are skipped.
    """
    base = (
        cfg.visited_target
        if cfg.visited_target is not None
        else (1000 if cfg.scale == "demo" else 8700)
    )
    n_target = int(round(base * cfg.sample_fraction))
    collected_t = np.flatnonzero(cal.collected)
    months: list[tuple[int, int, int, int]] = []  # (kind, year, month, event t or -1)
    weights: list[float] = []
    for ki, (_, entries) in enumerate(_PROGRAM_MONTHS):
        for y, m, wgt in entries:
            weights.append(cfg.cohort_shares[ki] * wgt)
            start = y if m >= 9 else y - 1
            yi = int(np.searchsorted(cal.starts, start))
            t = -1
            if yi < cal.n_years and cal.starts[yi] == start:
                if m in (7, 8):
                    t = 10 * (yi + 1) if yi + 1 < cal.n_years else -1  # September after
                else:
                    t = 10 * yi + (m - 9 if m >= 9 else m + 3)
                    t = t if cal.collected[t] else -1
            if t >= 0 and not (collected_t < t).any():
                t = -1
            months.append((ki, y, m, t))
    return months, _largest_remainder(n_target, np.array(weights))


def _select_students(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    panel: _Panel,
    rng: np.random.Generator,
    months: list[tuple[int, int, int, int]],
    counts: np.ndarray,
    canvass_d: int,
    canvass_school: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Select each program month's students among those not yet taken.

    Returns, per selected student, the student, program-month kind, event month, calendar
    year and month, and whether only attempts were made (no completed visit).
    """
    n_students = len(roster.u)
    leap_d = np.flatnonzero(dist.leap)
    collected_t = np.flatnonzero(cal.collected)
    taken = np.zeros(n_students, dtype=bool)
    order_t = np.argsort(panel.t, kind="stable")
    t_bounds = np.searchsorted(panel.t[order_t], np.arange(cal.n_t + 1))
    att = panel.att_in + panel.att_rem
    mem = panel.mem_in + panel.mem_rem
    sel_student, sel_kind, sel_t, sel_y, sel_m, sel_attempt_only = [], [], [], [], [], []
    w_d = np.zeros(len(dist.names))
    w_d[leap_d] = dist.sizes[leap_d, :].mean(axis=1) * dist.intensity[leap_d]
    for (ki, y, m, t), n_month in zip(months, counts, strict=True):
        if n_month == 0 or t < 0:
            continue
        summer = m in (7, 8)
        # The district sees the last three collected months before the visit month
        # (for a summer visit, t - 1 is the June before the summer).
        window = collected_t[collected_t <= t - 1][-3:]
        rows = np.concatenate([order_t[t_bounds[w] : t_bounds[w + 1]] for w in window])
        s_att = np.bincount(panel.student[rows], weights=att[rows], minlength=n_students)
        s_mem = np.bincount(panel.student[rows], weights=mem[rows], minlength=n_students)
        # Where a student is now (school month) or will be (summer: next year's roster).
        if summer:
            nxt = np.flatnonzero(roster.sy_year == t // 10)
            now_student = roster.sy_student[nxt]
            now_school = roster.sy_school[nxt]
        else:
            cur = order_t[t_bounds[t] : t_bounds[t + 1]]
            cur = cur[mem[cur] > 0]
            now_student = panel.student[cur]
            now_school = panel.school[cur]
            now_student, first_idx = np.unique(now_student, return_index=True)
            now_school = now_school[first_idx]
        d_now = roster.district[now_student]
        visible = s_mem[now_student] > 0
        elig = dist.leap[d_now] & visible & ~taken[now_student]
        elig &= (d_now != canvass_d) | canvass_school[now_school]
        cand, cand_d = now_student[elig], d_now[elig]
        rate = s_att[cand] / s_mem[cand]
        picked, attempt_only = _draw_month(cfg, rng, cand, cand_d, rate, n_month, w_d, canvass_d)
        taken[picked] = True
        sel_student.append(picked)
        sel_kind.append(np.full(len(picked), ki))
        sel_t.append(np.full(len(picked), t))
        sel_y.append(np.full(len(picked), y))
        sel_m.append(np.full(len(picked), m))
        sel_attempt_only.append(attempt_only)
    if not sel_student:
        none = np.zeros(0, dtype=np.int64)
        return none, none, none, none, none, np.zeros(0, dtype=bool)
    return (
        np.concatenate(sel_student),
        np.concatenate(sel_kind),
        np.concatenate(sel_t),
        np.concatenate(sel_y),
        np.concatenate(sel_m),
        np.concatenate(sel_attempt_only),
    )


def _draw_month(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    cand: np.ndarray,
    cand_d: np.ndarray,
    rate: np.ndarray,
    n_month: int,
    w_d: np.ndarray,
    canvass_d: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one month's students per district, favouring low pre-visit attendance.

    Weighted sampling without replacement by Gumbel keys within each district (the
    canvassing district samples uniformly); the last ``attempt_only_share`` are
    attempts only. Returns the students and the attempt-only flags.
    """
    logw = -cfg.selection_strength * rate + _SELECTION_CHRONIC_BONUS * (rate < 0.9)
    logw = np.where(cand_d == canvass_d, 0.0, logw)
    key = logw + rng.gumbel(size=len(cand))
    n_total = int(round(n_month * (1.0 + cfg.attempt_only_share)))
    per_d = _largest_remainder(n_total, w_d)
    order = np.lexsort((-key, cand_d))
    sorted_d = cand_d[order]
    starts_d = np.searchsorted(sorted_d, np.arange(len(w_d)))
    rank = np.arange(len(order)) - starts_d[sorted_d]
    chosen = order[rank < per_d[sorted_d]]
    if cfg.selection == "hazard":
        chosen = _hazard_choice(cfg, rate, cand_d, canvass_d, chosen, n_total, rng)
    chosen = chosen[rng.permutation(len(chosen))]
    n_done = min(n_month, len(chosen))
    attempt_only = np.arange(len(chosen)) >= n_done
    return cand[chosen], attempt_only


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


def _student_year_row(roster: _Roster, student: np.ndarray, year: np.ndarray) -> np.ndarray:
    """Index of the student-year row of (student, year index) pairs (must exist)."""
    n_years = int(roster.sy_year.max()) + 1
    key = roster.sy_student * n_years + roster.sy_year
    order = np.argsort(key, kind="stable")
    pos = np.searchsorted(key[order], student * n_years + year)
    return order[pos]


def _ramp_fade(rel: np.ndarray) -> np.ndarray:
    """Time profile of the effect: 0 before the event month, ramp, plateau, slow fade."""
    rel = np.asarray(rel, dtype=float)
    ramp = np.minimum(1.0, (rel + 1.0) / _EFFECT_RAMP)
    fade = np.exp(-np.maximum(rel - _EFFECT_FADE_START, 0.0) / _EFFECT_FADE_SCALE)
    return np.where(rel >= 0, ramp * fade, 0.0)


@dataclass
class _TreatedRows:
    rows: np.ndarray  # panel rows of treated students (school months)
    owner: np.ndarray  # index into _Program arrays
    att0: np.ndarray  # Y(0) days attended (in-person + remote)
    att1: np.ndarray  # Y(1) days attended


def _apply_effects(
    cfg: SimulationConfig,
    cal: _Calendar,
    roster: _Roster,
    panel: _Panel,
    program: _Program,
    rng: np.random.Generator,
) -> _TreatedRows:
    """Turn Y(0) into the realised outcome Y(1) for treated students at rel_time >= 0."""
    owner_of = np.full(len(roster.u), -1, dtype=np.int64)
    owner_of[program.student] = np.arange(len(program.student))
    owner = owner_of[panel.student]
    rows = np.flatnonzero(owner >= 0)
    owner = owner[rows]
    att0 = panel.att_in[rows] + panel.att_rem[rows]
    rel = panel.t[rows] - program.event_t[owner]
    theta = np.minimum(program.theta[owner] * _ramp_fade(rel), _EFFECT_THETA_CAP)
    extra_in = rng.binomial(panel.mem_in[rows] - panel.att_in[rows], theta)
    extra_rem = rng.binomial(panel.mem_rem[rows] - panel.att_rem[rows], theta)
    panel.att_in[rows] += extra_in
    panel.att_rem[rows] += extra_rem
    return _TreatedRows(rows=rows, owner=owner, att0=att0, att1=att0 + extra_in + extra_rem)


# --------------------------------------------------------------------------------------
# Summer school
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------


def _compute_truth(
    cfg: SimulationConfig,
    cal: _Calendar,
    dist: _Districts,
    roster: _Roster,
    panel: _Panel,
    program: _Program,
    tr: _TreatedRows,
) -> dict[str, Any]:
    """Compute the true ATTs (event study, long term) from Y(0) and Y(1)."""
    sm = _treated_months(panel, program, tr)
    groups = _truth_groups(cfg, dist, roster, program)
    event_study, event_study_n = _event_study_truth(cfg, sm, groups)
    long_term = _long_term_truth(cal, roster, program, sm, groups)
    cohort_sizes = {c: int((program.cohort == c).sum()) for c in sorted(set(program.cohort))}
    locations = dict(zip(VISIT_LOCATIONS, _EFFECT_LOCATION.tolist(), strict=True))
    config = dataclasses.asdict(cfg)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
    return {
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
    }


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
) -> list[dict[str, Any]]:
    """True effects on annual rates by cohort, school year and grade-band group.

    The attendance-rate effect over all students, and the effect on being chronically
    absent (rate below 90%) over K-12 students.
    """
    sm = sm.assign(year=sm["t"] // 10)
    yr = sm.groupby(["owner", "year"], sort=True, as_index=False)[["mem", "att0", "att1"]].sum()
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


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------


def _take_str(values: list[str] | np.ndarray, codes: np.ndarray) -> pa.Array:
    """Arrow string array ``values[codes]``."""
    return pa.array(list(values), type=pa.string()).take(pa.array(np.asarray(codes)))


def _sasid_strings(sasid: np.ndarray) -> np.ndarray:
    """Zero-padded 10-digit strings of integer SASIDs."""
    return np.char.zfill(sasid.astype("U10"), 10)


def _build_frames(
    cal: _Calendar,
    dist: _Districts,
    schools: _Schools,
    roster: _Roster,
    panel: _Panel,
    summer: dict[str, np.ndarray],
    program: _Program,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Assemble the three contract tables, sorted, identifiers as strings."""
    sasid_str = _sasid_strings(roster.sasid)
    # students
    sy_order = np.lexsort((roster.sy_year, roster.sasid[roster.sy_student]))
    s_student = roster.sy_student[sy_order]
    s_year = roster.sy_year[sy_order]
    students = pa.table(
        {
            "student_id": _take_str(sasid_str, s_student),
            "school_year": _take_str(cal.labels, s_year),
            "district": _take_str(dist.names, roster.district[s_student]),
            "school_id": _take_str(schools.ids, roster.sy_school[sy_order]),
            "grade": _take_str(list(GRADES), roster.sy_grade[sy_order]),
            "gender": _take_str(["F", "M", "X"], roster.gender[s_student]),
            "race_ethnicity": _take_str(list(RACES), roster.race[s_student]),
            "meal_status": _take_str(list(MEAL_STATUSES), roster.meal[s_student]),
            "ell": pa.array(roster.ell[s_student].astype(np.int64)),
            "swd": pa.array(roster.swd[s_student].astype(np.int64)),
            "home_language": _take_str(["English", "Spanish", "Other"], roster.language[s_student]),
        }
    ).to_pandas(split_blocks=True, self_destruct=True)
    # attendance: school-month rows and summer rows, sorted by (student_id, month, school_id)
    month_labels = []
    for yi in range(cal.n_years):
        month_labels.extend(cal.month_labels[10 * yi : 10 * yi + 10])
        month_labels.extend(cal.summer_labels[yi])
    month_ord = np.concatenate(
        [
            (12 * (panel.t // 10) + panel.t % 10).astype(np.int16),
            (12 * summer["year"] + summer["month"]).astype(np.int16),
        ]
    )
    a_student = np.concatenate([panel.student, summer["student"].astype(np.int32)])
    a_school = np.concatenate([panel.school, summer["school"].astype(np.int32)])
    key = roster.sasid[a_student]
    key *= 12 * cal.n_years
    key += month_ord
    key *= len(schools.ids)
    key += a_school
    order = np.argsort(key, kind="stable")
    del key
    a_student = a_student[order]
    n_summer = len(summer["student"])
    zeros = np.zeros(n_summer, dtype=np.int32)
    columns = {
        "student_id": _take_str(sasid_str, a_student),
        "district": _take_str(dist.names, roster.district[a_student].astype(np.int32)),
        "school_id": _take_str(schools.ids, a_school[order]),
        "month": _take_str(month_labels, month_ord[order]),
    }
    del a_student, a_school, month_ord
    for name, left, right in (
        ("inperson_membership", panel.mem_in, summer["mem"]),
        ("inperson_attended", panel.att_in, summer["att"]),
        ("remote_membership", panel.mem_rem, zeros),
        ("remote_attended", panel.att_rem, zeros),
    ):
        both = np.concatenate([left, right.astype(np.int32)])
        columns[name] = pa.array(both[order].astype(np.int64))
        del both
    del order
    attendance = pa.table(columns).to_pandas(split_blocks=True, self_destruct=True)
    del columns
    # visits
    v = program.visits
    v_sasid = roster.sasid[v["student"]]
    v_order = np.lexsort((v["location"], v["status"], v_sasid, v["date"]))
    n_v = len(v_order)
    width = max(6, len(str(n_v)))
    visit_ids = [f"V{i:0{width}d}" for i in range(1, n_v + 1)]
    dates = np.datetime_as_string(v["date"][v_order], unit="D")
    visits = pa.table(
        {
            "visit_id": pa.array(visit_ids, type=pa.string()),
            "student_id": _take_str(sasid_str, v["student"][v_order]),
            "district": _take_str(dist.names, roster.district[v["student"][v_order]]),
            "visit_date": pa.array(dates.tolist(), type=pa.string()),
            "visit_status": _take_str(["completed", "attempted"], v["status"][v_order]),
            "visit_location": _take_str(list(VISIT_LOCATIONS), v["location"][v_order]),
            "visitor_type": _take_str(list(VISITOR_TYPES), v["visitor"][v_order]),
        }
    ).to_pandas()
    return students, attendance, visits
