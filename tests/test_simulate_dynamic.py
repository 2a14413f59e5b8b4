"""The dynamic-selection regime of the simulator (``selection="hazard"``)."""

from __future__ import annotations

import pandas as pd
import pytest

from leapresearch.data.simulate import SimulatedData, SimulationConfig, simulate


@pytest.fixture(scope="module")
def lists() -> SimulatedData:
    return simulate(scale="demo", sample_fraction=0.5, seed=11)


@pytest.fixture(scope="module")
def hazard() -> SimulatedData:
    return simulate(scale="demo", sample_fraction=0.5, seed=11, selection="hazard")


def first_visits(data: SimulatedData) -> pd.DataFrame:
    v = data.leap_visits
    done = v[v["visit_status"] == "completed"].sort_values("visit_date")
    first = done.groupby("student_id", as_index=False).first()
    first["month"] = pd.to_datetime(first["visit_date"]).dt.strftime("%Y-%m")
    return first


def pre_visit_rate(data: SimulatedData) -> float:
    """Mean attendance rate (%) of visited students outside the canvassing district in the
    three calendar months before their first completed visit's month."""
    a = data.attendance_monthly
    mem = a["inperson_membership"] + a["remote_membership"]
    att = a["inperson_attended"] + a["remote_attended"]
    rates = a.assign(att=att, mem=mem)[["student_id", "month", "att", "mem"]]
    first = first_visits(data)
    first = first[first["district"] != data.truth["program"]["canvass_district"]]
    start = pd.PeriodIndex(first["month"], freq="M")
    rows = []
    for k in (1, 2, 3):
        rows.append(first[["student_id"]].assign(month=(start - k).strftime("%Y-%m")))
    pre = pd.concat(rows).merge(rates, on=["student_id", "month"])
    return 100 * pre["att"].sum() / pre["mem"].sum()


def test_the_default_regime_is_lists_and_unchanged(lists):
    assert SimulationConfig().selection == "lists"
    explicit = simulate(scale="demo", sample_fraction=0.5, seed=11, selection="lists")
    pd.testing.assert_frame_equal(explicit.leap_visits, lists.leap_visits)


def test_hazard_visits_the_target_number_with_months_varying(lists, hazard):
    n_lists, n_hazard = len(first_visits(lists)), len(first_visits(hazard))
    assert abs(n_hazard - n_lists) < 0.1 * n_lists  # the expected count is the target
    by_month = pd.concat(
        {
            "lists": first_visits(lists)["month"].value_counts(),
            "hazard": first_visits(hazard)["month"].value_counts(),
        },
        axis=1,
    ).fillna(0)
    assert (by_month["lists"] != by_month["hazard"]).any()  # Bernoulli draws, not quotas


def test_default_hazard_matches_the_lists_pre_visit_fall_and_the_stress_slope_is_sharper(
    lists, hazard
):
    """The default slope is calibrated to the ``lists`` regime's pre-visit attendance;
    the stress-test slope (25) picks students in a much deeper dip."""
    assert abs(pre_visit_rate(hazard) - pre_visit_rate(lists)) < 4
    strong = simulate(
        scale="demo", sample_fraction=0.5, seed=11, selection="hazard", hazard_strength=25.0
    )
    assert pre_visit_rate(strong) < pre_visit_rate(lists) - 5


def test_config_rejects_an_unknown_regime_and_a_negative_slope():
    with pytest.raises(ValueError, match="selection"):
        SimulationConfig(selection="lottery")
    with pytest.raises(ValueError, match="hazard_strength"):
        SimulationConfig(hazard_strength=-1.0)
