import numpy as np
import pandas as pd
import pytest

from leapresearch.data.calendar import (
    cohort_label,
    event_month_index,
    index_to_month_label,
    index_to_school_year,
    school_month_index,
    school_year_label,
    school_year_start,
)
from leapresearch.data.types import grade_band


def test_school_months_are_consecutive_across_summer():
    # June 2021 -> September 2021 is one step; September..June are consecutive.
    june = school_month_index([2021], [6])[0]
    sept = school_month_index([2021], [9])[0]
    assert sept - june == 1
    months = [9, 10, 11, 12, 1, 2, 3, 4, 5, 6]
    years = [2021] * 4 + [2022] * 6
    idx = school_month_index(years, months)
    assert np.all(np.diff(idx) == 1)


def test_summer_is_not_a_school_month_but_maps_to_september_for_events():
    assert school_month_index([2021, 2021], [7, 8]).tolist() == [-1, -1]
    assert (
        event_month_index([2021, 2021], [7, 8]).tolist() == [school_month_index([2021], [9])[0]] * 2
    )
    # a January visit is its own event month
    assert event_month_index([2022], [1])[0] == school_month_index([2022], [1])[0]


def test_index_round_trips_to_labels():
    idx = school_month_index([2019, 2020, 2024], [9, 6, 3])
    assert index_to_month_label(idx).tolist() == ["2019-09", "2020-06", "2024-03"]
    assert index_to_school_year(idx).tolist() == ["2019-20", "2019-20", "2023-24"]


@pytest.mark.parametrize("label", ["2021-23", "21-22", "2021/22", "2021-2"])
def test_bad_school_year_labels_are_refused(label):
    with pytest.raises(ValueError, match="YYYY-YY"):
        school_year_start(label)


def test_school_year_label_wraps_century():
    assert school_year_label(2099) == "2099-00"
    assert school_year_start("2099-00") == 2099


def test_cohort_labels_follow_the_contract():
    dates = pd.Series(["2021-04-12", "2021-07-01", "2021-08-31", "2021-09-01", "2022-06-30"])
    assert cohort_label(dates).tolist() == [
        "2020-21",
        "summer-2021",
        "summer-2021",
        "2021-22",
        "2021-22",
    ]


@pytest.mark.parametrize(
    ("grade", "band"),
    [
        ("PK", "PK-5"),
        ("K", "PK-5"),
        ("5", "PK-5"),
        ("6", "6-8"),
        ("8", "6-8"),
        ("9", "9-12"),
        ("12", "9-12"),
    ],
)
def test_grade_bands(grade, band):
    assert grade_band(grade) == band


def test_unknown_grade_raises():
    with pytest.raises(ValueError, match="13"):
        grade_band("13")
