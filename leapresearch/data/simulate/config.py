"""The generator's settings and output: :class:`SimulationConfig` and :class:`SimulatedData`.

``SimulationConfig`` holds every knob of the generator (scale, seed, school years,
mobility, attendance shocks, selection regime, effect size, truth window) with defaults,
and checks them on construction; ``SimulatedData`` holds the three contract tables and
the truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from leapresearch.data.calendar import school_year_start
from leapresearch.data.simulate.params import _LEAP_DISTRICTS

ScaleName = Literal["demo", "districts", "state"]

MAX_SAMPLE_FRACTION: float = 8.0
"""Largest ``sample_fraction``: a school at eight times its students (the demo at eight
times its size holds about as many visited students as the districts' scale)."""


SelectionRegime = Literal["lists", "hazard"]
"""How districts pick students (see :class:`SimulationConfig`, ``selection``)."""


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
        Fraction of every district's enrolment to simulate, positive and at most
        :data:`MAX_SAMPLE_FRACTION`. Keeps the district mix and the schools (use it for
        quick ``state``-like samples); also scales the number of visited students. Above
        1 each school holds that many times the students (the validation's size checks
        on larger samples with the same schools).
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
    latent_shock : float
        Validation hook (default 0: off). Slope of the selection (log-weight of the lists,
        logit of the hazard) on a latent student shock ``u ~ Exponential(1)`` that no
        table records.
    latent_recovery : float
        Validation hook (default 0: off). The same shock makes a visited student's
        attendance without the program, Y(0), recover from the event month on:
        ``p0 -> p0 + min(0.9, latent_recovery * u * min(1, (rel + 1) / 3)) * (1 - p0)``;
        comparisons matched on observed attendance have no such recovery.
    reachability : float
        Validation hook (default 0: off). Completion of a selected student's first visit
        depends on a latent reachability ``r ~ N(0, 1)``: of the students drawn in a
        month, the completed ones are the top by ``reachability * r + Gumbel``.
    reachability_shift : float
        Validation hook (default 0: off). ``r`` also moves Y(0) of every selected student
        (completed or attempts only) from the selection month on by about
        ``100 * reachability_shift * r * min(1, (rel + 1) / 3)`` pp of the monthly rate
        (``Binomial(membership, |theta|)`` days added or removed).
    list_waves : tuple of str
        Validation hook (default empty: off). ``YYYY-MM`` program months: each program
        month's visits move to the next wave month of its kind (the last one when none
        follows), so districts list students in a few waves, each from the not yet
        visited.
    district_effect_spread : float
        Validation hook (default 0: off), in [0, 1]. Every true effect of a student in
        the ``k``-th of the ``n`` LEAP districts (``_LEAP_DISTRICTS`` order) is scaled by
        ``1 + spread * (2 k / (n - 1) - 1)``.
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
    latent_shock: float = 0.0
    latent_recovery: float = 0.0
    reachability: float = 0.0
    reachability_shift: float = 0.0
    list_waves: tuple[str, ...] = ()
    district_effect_spread: float = 0.0

    def hooks_active(self) -> bool:
        """Whether any validation hook (:data:`VALIDATION_HOOKS`) differs from its default."""
        return any(getattr(self, name) != default for name, default in VALIDATION_HOOKS.items())

    def __post_init__(self) -> None:
        for name in (
            "school_years",
            "cohort_shares",
            "no_collection_months",
            "remote_school_years",
            "truth_window",
            "list_waves",
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
        for m in (*self.no_collection_months, *self.list_waves):
            _check_month(m)
        _check_sample_fraction(self.sample_fraction)
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
            "latent_shock",
            "latent_recovery",
            "reachability",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.district_effect_spread <= 1.0:
            raise ValueError(
                f"district_effect_spread must be in [0, 1], got {self.district_effect_spread!r}"
            )
        if len(self.truth_window) != 2 or self.truth_window[0] > self.truth_window[1]:
            raise ValueError(f"truth_window must be (low, high), got {self.truth_window!r}")


VALIDATION_HOOKS: dict[str, object] = {
    "latent_shock": 0.0,
    "latent_recovery": 0.0,
    "reachability": 0.0,
    "reachability_shift": 0.0,
    "list_waves": (),
    "district_effect_spread": 0.0,
}
"""Fields of the validation hooks (``validation/families.py``) and their defaults (off).

At their defaults the generator draws nothing more and writes the same tables and truth
as without them (``truth["config"]`` lists a hook only when it is on)."""


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


def _check_sample_fraction(value: float) -> None:
    """ValueError unless ``value`` is in (0, :data:`MAX_SAMPLE_FRACTION`]."""
    if not 0.0 < value <= MAX_SAMPLE_FRACTION:
        raise ValueError(f"sample_fraction must be in (0, {MAX_SAMPLE_FRACTION:g}], got {value!r}")


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
