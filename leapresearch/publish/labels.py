"""One vocabulary that turns the package's codes into words, for tables, figures and sentences.

Codes come from the result tables: groups (``all``, ``grade_band:PK-5``, ``cohort:2021-22``,
``district:<name>``, ...), covariates of the balance table (``pre_rate_m3``, ``race_black``,
``gender_x``), outcomes (``attendance_rate``). Labels are derived from the code itself
(a district's label is its name as it appears in the data), so no place name, year or
category list is typed here beyond the closed vocabularies of :mod:`leapresearch.data.types`.

Numbers are formatted by :func:`fmt` from the stored value (the six decimals written to the
CSV), so a number reads the same in the notebooks, the index page and the PDF.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from leapresearch.data.panel import RACE_DUMMIES
from leapresearch.estimation.subgroups import GROUP_WITHIN_CALIPER
from leapresearch.publish.outputs import snap

SUPPRESSED = "‡"
"""Symbol shown in place of a suppressed number."""

NOT_AVAILABLE = "–"
"""Symbol shown for a number that is not applicable or cannot be computed (not suppressed)."""

NOT_AVAILABLE_NOTE = f"{NOT_AVAILABLE} Not applicable or not estimable."

SUPPRESSED_NOTE = (
    f"{SUPPRESSED} Suppressed: too few students behind the cell to publish "
    "(small-cell rule of the state's public data)."
)

GRADE_BAND_ORDER = ("PK-5", "6-8", "9-12", "6-12")
"""Grade bands in reading order; ``6-12`` pools the two upper bands."""

FAMILY_NAMES = {
    "grade_band": "Grade band",
    "cohort": "Cohort",
    "district": "District",
    "first_visit_location": "Where the first visit took place",
    "visitor_type": "Who visited",
    "visits": "Number of completed visits",
    "home_language": "Home language",
    "meal_status": "Meal status",
}
"""Subgroup families in words (the family code itself is used for any other family)."""

_VALUE_WORDS = {
    ("meal_status", "free"): "Eligible for free meals",
    ("meal_status", "reduced"): "Eligible for reduced-price meals",
    ("meal_status", "not_eligible"): "Not eligible for free or reduced-price meals",
    ("first_visit_location", "other_location"): "First visit at another location",
    ("home_language", "Other"): "Home language other than English",
}

_COVARIATE_WORDS = {
    "prior_year_rate": "Attendance rate, previous school year",
    "prior_year_missing": "No attendance data, previous school year",
    "pre_rate_m13_24": "Attendance rate 13-24 months before (not matched on)",
    "female": "Female",
    "gender_x": "Gender X (non-binary)",
    "meal_free": "Eligible for free meals",
    "meal_reduced": "Eligible for reduced-price meals",
    "ell": "English learner",
    "swd": "Student with a disability",
    "home_language_other": "Home language other than English",
    "home_language_missing": "Home language not recorded",
}

OUTCOME_WORDS = {
    "attendance_rate": "Attendance rate",
    "chronically_absent": "Chronically absent",
}


def _words(code: str) -> str:
    """``other_location`` -> ``other location``."""
    return code.replace("_", " ")


def cohort_label(code: str) -> str:
    """``summer-2021`` -> ``Summer 2021``; ``2021-22`` -> ``School year 2021-22``."""
    m = re.fullmatch(r"summer-(\d{4})", code)
    if m:
        return f"Summer {m.group(1)}"
    if re.fullmatch(r"\d{4}-\d{2}", code):
        return f"School year {code}"
    return code


def cohort_key(code: str) -> float:
    """Time order of cohorts: ``2020-21`` < ``summer-2021`` < ``2021-22``.

    A school-year cohort sorts at its start year; the summer between two school years at
    the earlier one plus one half. Unknown codes sort last.
    """
    m = re.fullmatch(r"summer-(\d{4})", code)
    if m:
        return int(m.group(1)) - 0.5
    m = re.fullmatch(r"(\d{4})-\d{2}", code)
    return float(m.group(1)) if m else math.inf


def _value_label(family: str, value: str) -> str:
    if (family, value) in _VALUE_WORDS:
        return _VALUE_WORDS[(family, value)]
    if family == "grade_band":
        return f"Grades {value}"
    if family == "cohort":
        return cohort_label(value)
    if family == "visits":
        return f"{value} completed visit{'' if value == '1' else 's'}"
    if family == "first_visit_location":
        where = {"home": "at home", "phone": "by phone", "virtual": "by video call"}
        return f"First visit {where.get(value, _words(value))}"
    if family == "visitor_type":
        return f"Visitor: {_words(value)}"
    if family == "home_language":
        return f"Home language: {value}"
    if family == "district":
        return value
    return f"{FAMILY_NAMES.get(family, _words(family).capitalize())}: {_words(value)}"


def group_label(code: str) -> str:
    """A result group in words (``grade_band:PK-5`` -> ``Grades PK-5``).

    Parameters
    ----------
    code : str
        ``all`` or ``<family>:<value>``.

    Returns
    -------
    str
    """
    if code == "all":
        return "All visited students"
    if code == GROUP_WITHIN_CALIPER:
        return "Visited students with a comparison within the caliper"
    family, sep, value = code.partition(":")
    if not sep:
        return _words(code)
    return _value_label(family, value)


def family_of(code: str) -> str:
    """The subgroup family of a group code (``all`` for the pooled group).

    A code without a family (``within_caliper``) is a family of its own.
    """
    return code.partition(":")[0] if ":" in code or code == GROUP_WITHIN_CALIPER else "all"


def _value_key(family: str, value: str) -> tuple:
    if family == "grade_band":
        order = GRADE_BAND_ORDER
        return (order.index(value) if value in order else len(order), value)
    if family == "cohort":
        return (cohort_key(value), value)
    m = re.match(r"(\d+)", value)
    return (int(m.group(1)) if m else math.inf, value)


def group_key(code: str, families: Sequence[str] = tuple(FAMILY_NAMES)) -> tuple:
    """Sort key of group codes: all; grade bands; cohorts in time order; other families."""
    family = family_of(code)
    if family == "all":
        return (-1, ())
    if family == GROUP_WITHIN_CALIPER:  # right after all visited students
        return (-1, (0,))
    rank = families.index(family) if family in families else len(families)
    return (rank, _value_key(family, code.partition(":")[2]))


def sort_groups(codes: Iterable[str], families: Sequence[str] = tuple(FAMILY_NAMES)) -> list[str]:
    """Distinct group codes in reading order (see :func:`group_key`)."""
    return sorted(dict.fromkeys(codes), key=lambda c: group_key(c, families))


def covariate_label(code: str) -> str:
    """A balance-table covariate in words (``pre_rate_m3`` -> ``Attendance rate 3 months before``).

    Race dummies take the category of the data contract they stand for (``race_american`` ->
    ``American Indian or Alaska Native``).
    """
    if code in _COVARIATE_WORDS:
        return _COVARIATE_WORDS[code]
    race = {v: k for k, v in RACE_DUMMIES.items()}
    if code in race:
        return race[code]
    m = re.fullmatch(r"pre_(rate|missing)_m(\d+)", code)
    if m:
        k = int(m.group(2))
        when = f"{k} month{'' if k == 1 else 's'} before"
        return f"Attendance rate {when}" if m.group(1) == "rate" else f"No attendance data {when}"
    return _words(code).capitalize()


def outcome_label(code: str) -> str:
    """An outcome in words (``chronically_absent`` -> ``Chronically absent``)."""
    return OUTCOME_WORDS.get(code, _words(code).capitalize())


def month_label(rel_time: int) -> str:
    """A column heading for months since the first visit (``Month 6``)."""
    return f"Month {rel_time}"


COLUMN_WORDS = {
    "group": "Group",
    "rel_time": "Months since first visit",
    "estimate": "Estimate (pp)",
    "std_error": "Std. error",
    "ci_lower": "95% CI lower",
    "ci_upper": "95% CI upper",
    "boot_std_error": "Bootstrap std. error (conditional)",
    "se_ratio": "Bootstrap / analytic std. error",
    "band_lower": "95% simultaneous band lower (conditional)",
    "band_upper": "95% simultaneous band upper (conditional)",
    "procedure_std_error": "Whole-procedure std. error",
    "procedure_ci_lower": "95% CI lower, whole procedure",
    "procedure_ci_upper": "95% CI upper, whole procedure",
    "procedure_band_lower": "95% simultaneous band lower, whole procedure",
    "procedure_band_upper": "95% simultaneous band upper, whole procedure",
    "adjustment": "Regression adjustment (slopes)",
    "n_treated": "Visited students",
    "n_comparison": "Comparison students",
    "n_visited": "Visited students, matched",
    "n_with_reference_year": "Enrolled the school year before",
    "n_new_in_visit_year": "New in the visit year",
    "reference_year_required": "Reference year required",
    "cohort": "Cohort",
    "school_year": "School year",
    "years_after": "Years after",
    "outcome": "Outcome",
    "covariate": "Covariate",
    "p_value": "p-value",
    "pre_wald_p_value": "Pre-period Wald test p-value",
    "statistic": "Statistic",
    "df": "Degrees of freedom",
    "n_groups": "Cohort-month groups",
    "shift_months": "Shift (months)",
    "estimate_full": "Estimate, full sample (pp)",
    "estimate_balanced": "Estimate, balanced sample (pp)",
    "difference": "Difference (pp)",
    "n_treated_full": "Visited students, full",
    "n_treated_balanced": "Visited students, balanced",
    "n_treated_after": "Visited students, matched",
    "n_treated_before": "Visited students, before matching",
    "n_comparison_before": "Comparison rows, before matching",
    "n_comparison_after": "Comparison rows, matched",
}


def column_label(code: str) -> str:
    """A table column heading in words (unknown columns: underscores to spaces).

    ``n_<grade band>`` columns read ``Grades <band> (n)``.
    """
    m = re.fullmatch(r"n_(.+)", code)
    if m:
        band = {b.lower(): b for b in GRADE_BAND_ORDER}.get(m.group(1).lower())
        if band:
            return f"Grades {band} (n)"
    return COLUMN_WORDS.get(code, _words(code).capitalize())


def stored(value: float) -> float:
    """The value as written to the CSV, the single source of every print.

    Snapped to 12 significant digits first (:func:`leapresearch.publish.outputs.snap`), then
    six decimals, as :func:`leapresearch.publish.outputs.write_table` writes it: a last-bit
    difference between machines cannot flip a printed digit.
    """
    return float(f"{snap(value):.6f}")


def _missing(value) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def fmt(value, digits: int = 1, *, signed: bool = False) -> str:
    """Format a number once, from its stored value; missing values print as the symbol.

    Parameters
    ----------
    value : float or None
        The number (NaN or None: suppressed or not estimable).
    digits : int
        Decimals shown.
    signed : bool
        Show a leading ``+`` on positive numbers.
    """
    if _missing(value):
        return SUPPRESSED
    x = stored(float(value))
    out = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return out.replace("-", "", 1) if float(out) == 0 and out.startswith("-") else out


def fmt_interval(lower, upper, digits: int = 1) -> str:
    """``[lower, upper]`` formatted once (see :func:`fmt`)."""
    if _missing(lower) or _missing(upper):
        return SUPPRESSED
    return f"{fmt(lower, digits)} to {fmt(upper, digits)}"
