"""Fixed parameters of the synthetic world, calibrated offline (see Notes in ``simulate``).

The 15 LEAP districts (sizes, composition, remote share, visiting intensity, visitor mix)
and their intercepts, the statewide year intercepts, the non-LEAP towns of the ``state``
scale, the terms of the attendance model (grade, student, school, season, month shocks,
remote days, school days), the LEAP program design (program months, visit locations) and
the true effect model. Read only by the generator's own modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
