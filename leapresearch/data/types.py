"""Closed vocabularies of the package, as ``Literal`` aliases (one place for all of them)."""

from __future__ import annotations

from typing import Literal, get_args

GradeBand = Literal["PK-5", "6-8", "9-12"]
"""Grade band of a student in the school year of the event month."""

ReportedGradeBand = Literal["PK-5", "6-8", "9-12", "6-12"]
"""Grade bands reported; ``6-12`` pools ``6-8`` and ``9-12``."""

Grade = Literal["PK", "K", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
Gender = Literal["F", "M", "X"]
RaceEthnicity = Literal[
    "Hispanic/Latino",
    "Black or African American",
    "White",
    "Asian",
    "Two or More Races",
    "American Indian or Alaska Native",
    "Native Hawaiian or Other Pacific Islander",
]
MealStatus = Literal["free", "reduced", "not_eligible"]
VisitStatus = Literal["completed", "attempted"]
VisitLocation = Literal["home", "other_location", "virtual", "phone"]
VisitorType = Literal["school_staff", "community_partner", "other"]
Scale = Literal["demo", "districts", "state"]
ClusterLevel = Literal["student", "school"]
Outcome = Literal["attendance_rate", "chronically_absent"]
VisitCountBin = Literal["1", "2-3", "4+"]

GRADES: tuple[str, ...] = get_args(Grade)
GENDERS: tuple[str, ...] = get_args(Gender)
RACES: tuple[str, ...] = get_args(RaceEthnicity)
MEAL_STATUSES: tuple[str, ...] = get_args(MealStatus)
VISIT_STATUSES: tuple[str, ...] = get_args(VisitStatus)
VISIT_LOCATIONS: tuple[str, ...] = get_args(VisitLocation)
VISITOR_TYPES: tuple[str, ...] = get_args(VisitorType)
GRADE_BANDS: tuple[str, ...] = get_args(GradeBand)


def grade_band(grade: str) -> str:
    """Return the grade band (``PK-5``, ``6-8`` or ``9-12``) of a contract grade.

    Parameters
    ----------
    grade : str
        One of ``PK``, ``K``, ``1`` ... ``12``.

    Returns
    -------
    str
        The grade band.
    """
    if grade not in GRADES:
        raise ValueError(f"grade must be one of {GRADES}, got {grade!r}")
    if grade in ("PK", "K") or int(grade) <= 5:
        return "PK-5"
    return "6-8" if int(grade) <= 8 else "9-12"


GRADE_TO_BAND: dict[str, str] = {g: grade_band(g) for g in GRADES}
