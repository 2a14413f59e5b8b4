"""Tests of the synthetic data generator (leapresearch.data.simulate).

Contract rules are checked here with plain pandas (independently of any validator).
All simulations are demo scale or smaller samples, so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leapresearch.data.calendar import cohort_label, event_month_index, school_month_index
from leapresearch.data.simulate import (
    SIMULATION_MARKER,
    TABLES,
    TRUTH_SCHEMA,
    SimulatedData,
    SimulationConfig,
    read_marker,
    simulate,
    write_simulation,
)
from leapresearch.data.types import GRADES, MEAL_STATUSES, RACES, VISIT_LOCATIONS, VISITOR_TYPES

PUBLISHED_CHRONIC = {  # statewide K-12 chronic absence, % (ct-public-figures.md)
    "2018-19": 10.4,
    "2019-20": 12.2,
    "2020-21": 19.0,
    "2021-22": 23.7,
    "2022-23": 20.0,
    "2023-24": 17.7,
}
LEAP_2122_SIZES = {
    "Bridgeport": 18482, "CREC": 9653, "Danbury": 11783, "East Hartford": 6126,
    "Hartford": 16371, "Manchester": 6039, "Meriden": 8476, "New Britain": 9299,
    "New Haven": 18028, "New London": 3055, "Norwich": 3176, "Stamford": 15986,
    "Torrington": 3813, "Waterbury": 17806, "Windham": 2960,
}  # fmt: skip
STUDENT_COLUMNS = [
    "student_id", "school_year", "district", "school_id", "grade", "gender",
    "race_ethnicity", "meal_status", "ell", "swd", "home_language",
]  # fmt: skip
ATTENDANCE_COLUMNS = [
    "student_id", "district", "school_id", "month", "inperson_membership",
    "inperson_attended", "remote_membership", "remote_attended",
]  # fmt: skip
VISIT_COLUMNS = [
    "visit_id", "student_id", "district", "visit_date", "visit_status", "visit_location",
    "visitor_type",
]  # fmt: skip
DAY_COLUMNS = ATTENDANCE_COLUMNS[4:]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo() -> SimulatedData:
    return simulate(scale="demo")


@pytest.fixture(scope="module")
def demo_no_effect() -> SimulatedData:
    return simulate(scale="demo", effect_multiplier=0.0)


@pytest.fixture(scope="module")
def state_sample() -> SimulatedData:
    # A small state-like sample that keeps the district mix (all districts, 4% of each).
    return simulate(
        scale="state",
        sample_fraction=0.04,
        school_years=("2018-19", "2019-20", "2020-21", "2021-22", "2022-23", "2023-24"),
    )


@pytest.fixture(scope="module")
def demo_monthly(demo: SimulatedData) -> pd.DataFrame:
    return _monthly(demo)


@pytest.fixture(scope="module")
def state_monthly(state_sample: SimulatedData) -> pd.DataFrame:
    return _monthly(state_sample)


@pytest.fixture(scope="module")
def state_annual(state_sample: SimulatedData, state_monthly: pd.DataFrame) -> pd.DataFrame:
    return _annual(state_sample, state_monthly)


@pytest.fixture(scope="module")
def small() -> SimulatedData:
    return simulate(scale="demo", sample_fraction=0.2, seed=7)


# ----------------------------------------------------------------------------- helpers


def _school_year_of_month(month: pd.Series) -> pd.Series:
    """School year (``YYYY-YY``) of September-June months."""
    y = month.str.slice(0, 4).astype(int)
    m = month.str.slice(5, 7).astype(int)
    start = y.where(m >= 9, y - 1)
    return start.astype(str) + "-" + ((start + 1) % 100).astype(str).str.zfill(2)


def _monthly(data: SimulatedData) -> pd.DataFrame:
    """School-month totals per student (summer rows dropped) with school-month index."""
    a = data.attendance_monthly
    m = a["month"].str.slice(5, 7).astype(int)
    a = a[~m.isin([7, 8])]
    a = a.assign(
        att=a["inperson_attended"] + a["remote_attended"],
        mem=a["inperson_membership"] + a["remote_membership"],
    )
    g = a.groupby(["student_id", "month"], as_index=False)[["att", "mem"]].sum()
    y, mm = g["month"].str.slice(0, 4).astype(int), g["month"].str.slice(5, 7).astype(int)
    return g.assign(idx=school_month_index(y, mm), school_year=_school_year_of_month(g["month"]))


def _annual(data: SimulatedData, monthly: pd.DataFrame | None = None) -> pd.DataFrame:
    """Annual attendance rate and chronic absence per student-year, with roster columns."""
    monthly = _monthly(data) if monthly is None else monthly
    g = monthly.groupby(["student_id", "school_year"], as_index=False)[["att", "mem"]]
    g = g.sum()
    g = g[g["mem"] > 0]
    g = g.assign(rate=g["att"] / g["mem"])
    g = g.assign(chronic=g["rate"] < 0.9)
    return g.merge(data.students, on=["student_id", "school_year"], how="left", validate="1:1")


def _first_visits(data: SimulatedData) -> pd.DataFrame:
    v = data.leap_visits
    done = v[v["visit_status"] == "completed"].sort_values(["student_id", "visit_date"])
    first = done.drop_duplicates("student_id").copy()
    d = pd.to_datetime(first["visit_date"])
    first["event_idx"] = event_month_index(d.dt.year, d.dt.month)
    first["cohort"] = cohort_label(first["visit_date"])
    return first


def _visited_panel(data: SimulatedData, monthly: pd.DataFrame | None = None) -> pd.DataFrame:
    """Monthly rates of students with a first completed visit, by rel_time."""
    first = _first_visits(data)
    monthly = _monthly(data) if monthly is None else monthly
    mon = monthly.merge(
        first[["student_id", "event_idx", "district", "visit_location", "cohort"]],
        on="student_id",
    )
    mon = mon[mon["mem"] > 0]
    return mon.assign(rel=mon["idx"] - mon["event_idx"], rate=100 * mon["att"] / mon["mem"])


def _assert_contract(data: SimulatedData) -> None:
    """Every rule of the raw-data contract, written out in plain pandas."""
    st, at, vi = data.students, data.attendance_monthly, data.leap_visits
    # students
    assert list(st.columns) == STUDENT_COLUMNS
    for col in STUDENT_COLUMNS:
        if col not in ("ell", "swd"):
            assert pd.api.types.is_string_dtype(st[col]), col
            assert (st[col].str.len() > 0).all(), col
    assert st["student_id"].str.fullmatch(r"\d{10}").all()
    assert not st.duplicated(["student_id", "school_year"]).any()
    sy = st["school_year"].str.extract(r"^(\d{4})-(\d{2})$").astype(int)
    assert ((sy[0] + 1) % 100 == sy[1]).all()
    assert set(st["grade"]) <= set(GRADES)
    assert set(st["gender"]) <= {"F", "M", "X"}
    assert set(st["race_ethnicity"]) <= set(RACES)
    assert set(st["meal_status"]) <= set(MEAL_STATUSES)
    assert set(st["ell"]) <= {0, 1} and set(st["swd"]) <= {0, 1}
    assert set(st["home_language"]) <= {"English", "Spanish", "Other"}
    # schools are nested in districts
    assert (st.groupby("school_id")["district"].nunique() == 1).all()
    # attendance
    assert list(at.columns) == ATTENDANCE_COLUMNS
    for col in ATTENDANCE_COLUMNS[:4]:
        assert pd.api.types.is_string_dtype(at[col]), col
        assert (at[col].str.len() > 0).all(), col
    for col in DAY_COLUMNS:
        assert pd.api.types.is_integer_dtype(at[col]), col
        assert (at[col] >= 0).all(), col
    assert not at.duplicated(["student_id", "month", "school_id"]).any()
    assert at["month"].str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").all()
    assert (at["inperson_attended"] <= at["inperson_membership"]).all()
    assert (at["remote_attended"] <= at["remote_membership"]).all()
    total = (
        (at["inperson_membership"] + at["remote_membership"])
        .groupby([at["student_id"], at["month"]])
        .sum()
    )
    assert total.max() <= 23
    month_num = at["month"].str.slice(5, 7).astype(int)
    summer = month_num.isin([7, 8])
    school = at[~summer]
    keys = school.assign(school_year=_school_year_of_month(school["month"]))
    merged = keys.merge(
        st[["student_id", "school_year", "district"]],
        on=["student_id", "school_year"],
        how="left",
        suffixes=("", "_roster"),
        indicator=True,
    )
    assert (merged["_merge"] == "both").all(), "attendance row without a students row"
    assert (merged["district"] == merged["district_roster"]).all()
    # July/August rows: the student is on the roster both before and after the summer;
    # summer rows carry no remote days.
    summ = at[summer]
    year = summ["month"].str.slice(0, 4).astype(int)
    before = (year - 1).astype(str) + "-" + (year % 100).astype(str).str.zfill(2)
    after = year.astype(str) + "-" + ((year + 1) % 100).astype(str).str.zfill(2)
    roster = set(zip(st["student_id"], st["school_year"], strict=True))
    assert all((s, b) in roster for s, b in zip(summ["student_id"], before, strict=True))
    assert all((s, a) in roster for s, a in zip(summ["student_id"], after, strict=True))
    assert (summ["remote_membership"] == 0).all()
    # visits
    assert list(vi.columns) == VISIT_COLUMNS
    for col in VISIT_COLUMNS:
        assert pd.api.types.is_string_dtype(vi[col]), col
    assert vi["visit_id"].is_unique
    assert vi["student_id"].isin(st["student_id"]).all()
    assert vi["visit_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    pd.to_datetime(vi["visit_date"], format="%Y-%m-%d")  # raises on impossible dates
    assert set(vi["visit_status"]) <= {"completed", "attempted"}
    assert set(vi["visit_location"]) <= set(VISIT_LOCATIONS)
    assert set(vi["visitor_type"]) <= set(VISITOR_TYPES)
    home = st.drop_duplicates("student_id").set_index("student_id")["district"]
    assert (vi["district"].to_numpy() == home.loc[vi["student_id"]].to_numpy()).all()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("scale", "county", "'county'"),
        ("sample_fraction", 0.0, "0.0"),
        ("sample_fraction", 8.5, "8.5"),
        ("sample_fraction", float("nan"), "nan"),
        ("school_years", ("2019-20", "2021-22"), "'2021-22'"),
        ("school_years", ("2019-21",), "'2019-21'"),
        ("canvass_district", "Gotham", "'Gotham'"),
        ("ar_rho", 1.0, "1.0"),
        ("no_collection_months", ("2020-13",), "'2020-13'"),
        ("seed", -1, "-1"),
    ],
)
def test_config_rejects_bad_values_naming_them(field: str, value: object, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        SimulationConfig(**{field: value})


def test_sample_fraction_above_one_fills_the_same_schools() -> None:
    """A size check's larger sample: the same schools, each with about twice the students."""
    base = {"scale": "demo", "seed": 11, "demo_students": 3000, "visited_target": 150}
    single, double = (simulate(**base, sample_fraction=f) for f in (1.0, 2.0))
    schools = [set(d.students["school_id"]) for d in (single, double)]
    assert len(schools[1] - schools[0]) <= 0.05 * len(schools[0])
    assert len(schools[0] - schools[1]) <= 0.05 * len(schools[0])
    ratio = double.students["student_id"].nunique() / single.students["student_id"].nunique()
    assert 1.8 < ratio < 2.2
    visited = [
        d.leap_visits.loc[d.leap_visits["visit_status"] == "completed", "student_id"].nunique()
        for d in (single, double)
    ]
    assert 1.7 < visited[1] / visited[0] < 2.3


def test_simulate_rejects_unknown_override() -> None:
    with pytest.raises(ValueError, match="not_a_field"):
        simulate(not_a_field=1)


def test_simulate_accepts_config_and_overrides(small: SimulatedData) -> None:
    cfg = SimulationConfig(scale="demo", sample_fraction=0.2, seed=1)
    again = simulate(cfg, seed=7)
    assert again.truth["seed"] == 7
    pd.testing.assert_frame_equal(again.leap_visits, small.leap_visits)


def test_config_is_json_ready_and_panel_limits_the_program() -> None:
    data = simulate(
        scale="demo",
        sample_fraction=0.1,
        seed=np.int64(3),
        school_years=["2019-20", "2020-21"],  # a list, as from a CLI or YAML file
    )
    assert json.loads(json.dumps(data.truth))["config"]["school_years"] == ["2019-20", "2020-21"]
    # only the spring-2021 share of the target fits in this panel; nothing is reallocated
    first = _first_visits(data)
    assert set(first["cohort"]) == {"2020-21"}
    assert len(first) == pytest.approx(0.06 * 100, abs=2)
    assert data.attendance_monthly["month"].max() == "2021-06"


# ----------------------------------------------------------------------------- writing


def _write_bytes(data: SimulatedData, out: Path, fmt: str) -> dict[str, bytes]:
    paths = write_simulation(data, out, file_format=fmt, truth_path=out.parent / "truth.json")
    return {p.name: p.read_bytes() for p in paths}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_gives_byte_identical_files(
    tmp_path: Path, small: SimulatedData, fmt: str
) -> None:
    first = _write_bytes(small, tmp_path / "a" / "data", fmt)
    second = _write_bytes(
        simulate(scale="demo", sample_fraction=0.2, seed=7), tmp_path / "b" / "data", fmt
    )
    assert set(first) == {f"{t}.{fmt}" for t in TABLES} | {"truth.json", SIMULATION_MARKER}
    assert first == second
    other = _write_bytes(
        simulate(scale="demo", sample_fraction=0.2, seed=8), tmp_path / "c" / "data", fmt
    )
    for name in first:
        if name != SIMULATION_MARKER:
            assert first[name] != other[name], name


def test_write_creates_exactly_the_three_tables(tmp_path: Path, small: SimulatedData) -> None:
    out = tmp_path / "nested" / "data"
    truth = tmp_path / "truth" / "truth.json"
    paths = write_simulation(small, out, file_format="csv", truth_path=truth)
    assert paths[-1] == truth and truth.exists()
    tables = sorted(p.name for p in out.iterdir() if p.name != SIMULATION_MARKER)
    assert tables == sorted(f"{t}.csv" for t in TABLES)
    assert read_marker(out)["simulated"] is True  # the inputs say they are synthetic
    assert read_marker(tmp_path) is None  # a folder without the marker is not simulated
    # switching format replaces the tables; the folder never holds both formats
    write_simulation(small, out, file_format="parquet")
    tables = sorted(p.name for p in out.iterdir() if p.name != SIMULATION_MARKER)
    assert tables == sorted(f"{t}.parquet" for t in TABLES)
    loaded = json.loads(truth.read_text())
    assert loaded == json.loads(json.dumps(small.truth))


@pytest.mark.parametrize("inside", ["truth.json", "sub/truth.json", "."])
def test_write_refuses_truth_inside_data_folder(
    tmp_path: Path, small: SimulatedData, inside: str
) -> None:
    out = tmp_path / "data"
    with pytest.raises(ValueError, match="inside the data folder"):
        write_simulation(small, out, truth_path=out / inside)
    assert not out.exists()  # refused before writing anything


def test_write_rejects_bad_format(tmp_path: Path, small: SimulatedData) -> None:
    with pytest.raises(ValueError, match="'xlsx'"):
        write_simulation(small, tmp_path / "d", file_format="xlsx")  # type: ignore[arg-type]


def test_files_round_trip_with_leading_zero_ids(tmp_path: Path, small: SimulatedData) -> None:
    write_simulation(small, tmp_path / "csv", file_format="csv")
    write_simulation(small, tmp_path / "pq", file_format="parquet")
    id_cols = {"student_id": str, "school_id": str, "visit_id": str, "district": str}
    for name in TABLES:
        frame = getattr(small, name)
        from_csv = pd.read_csv(tmp_path / "csv" / f"{name}.csv", dtype=id_cols)
        from_pq = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        pd.testing.assert_frame_equal(from_csv, frame, check_dtype=False)
        pd.testing.assert_frame_equal(from_pq, frame, check_dtype=False)
    ids = small.students["student_id"]
    assert ids.str.startswith("0").any()
    assert ids.str.fullmatch(r"\d{10}").all()
    text = (tmp_path / "csv" / "attendance_monthly.csv").read_text().splitlines()
    assert text[0] == ",".join(ATTENDANCE_COLUMNS)
    assert re.fullmatch(r"\d{10},[^,]+,\d+,\d{4}-\d{2},\d+,\d+,\d+,\d+", text[1])


def test_rows_are_sorted(small: SimulatedData) -> None:
    st = small.students
    assert st.equals(st.sort_values(["student_id", "school_year"], ignore_index=True))
    at = small.attendance_monthly
    assert at.equals(at.sort_values(["student_id", "month", "school_id"], ignore_index=True))
    vi = small.leap_visits
    assert vi.equals(vi.sort_values("visit_id", ignore_index=True))


# ----------------------------------------------------------------------------- contract


def test_demo_satisfies_contract(demo: SimulatedData) -> None:
    _assert_contract(demo)


def test_state_sample_satisfies_contract(state_sample: SimulatedData) -> None:
    _assert_contract(state_sample)
    assert state_sample.students["district"].nunique() > 100


def test_collection_gaps_and_remote_days(demo: SimulatedData) -> None:
    at = demo.attendance_monthly
    months = set(at["month"])
    assert not months & {"2020-03", "2020-04", "2020-05", "2020-06"}
    assert {"2019-09", "2020-02", "2020-09", "2024-06"} <= months
    remote = at[at["remote_membership"] > 0]
    assert len(remote) > 0
    assert (_school_year_of_month(remote["month"]) == "2020-21").all()
    assert (at["remote_attended"] > 0).sum() > 0
    # the remote share of 2020-21 days varies by district
    y2021 = at[_school_year_of_month(at["month"]) == "2020-21"]
    share = y2021.groupby("district")[["remote_membership", "inperson_membership"]].sum()
    share = share["remote_membership"] / share.sum(axis=1)
    assert share.max() - share.min() > 0.15
    summer = at[at["month"].str.slice(5, 7).isin(["07", "08"])]
    assert 0 < len(summer) < 0.02 * len(at)


def test_school_days_per_month_are_realistic(demo: SimulatedData) -> None:
    at = demo.attendance_monthly
    at = at[~at["month"].str.slice(5, 7).isin(["07", "08"])]
    days = at["inperson_membership"] + at["remote_membership"]
    full = days.groupby([at["district"], at["month"]]).max().rename("days").reset_index()
    full["m"] = full["month"].str.slice(5, 7)
    # fmt: off
    bounds = {"09": (16, 18), "10": (19, 21), "11": (17, 19), "12": (14, 16), "01": (18, 20),
              "02": (16, 18), "03": (21, 23), "04": (16, 18), "05": (19, 21), "06": (10, 12)}
    # fmt: on
    for m, (lo, hi) in bounds.items():
        d = full.loc[full["m"] == m, "days"]
        assert d.between(lo, hi).all(), (m, d.min(), d.max())
    # partial membership exists (mid-year entrants and leavers)
    assert (days < days.groupby([at["district"], at["month"]]).transform("max")).mean() > 0.005


def test_mid_year_school_moves_have_one_row_per_school(demo: SimulatedData) -> None:
    at = demo.attendance_monthly
    n_rows = at.groupby(["student_id", "month"]).size()
    moved = n_rows[n_rows == 2]
    assert len(moved) > 20 and n_rows.max() == 2
    rows = at.set_index(["student_id", "month"]).loc[moved.index]
    per = rows.groupby(level=[0, 1]).agg(
        schools=("school_id", "nunique"), districts=("district", "nunique")
    )
    assert (per["schools"] == 2).all() and (per["districts"] == 1).all()


def test_roster_dynamics(demo: SimulatedData) -> None:
    st = demo.students
    order = {g: i for i, g in enumerate(GRADES)}
    st = st.assign(g=st["grade"].map(order), y=st["school_year"].str.slice(0, 4).astype(int))
    nxt = st.merge(st.assign(y=st["y"] - 1), on=["student_id", "y"], suffixes=("", "_next"))
    step = nxt["g_next"] - nxt["g"]
    assert set(step) <= {0, 1}
    assert (step == 1).mean() > 0.95  # a grade a year, a little retention
    assert (st["grade"] == "12").sum() > 0 and (nxt["grade"] != "12").all()  # grade 12 leaves
    # mobility: share of non-graduating students absent next year is around 9%
    cur = st[(st["grade"] != "12") & (st["y"] < st["y"].max())]
    stay = cur.set_index(["student_id", "y"]).index.isin(nxt.set_index(["student_id", "y"]).index)
    assert 0.06 < 1 - stay.mean() < 0.14
    # new PK/K entrants every year; sizes stable across years
    sizes = st.groupby("y").size()
    assert (sizes.max() / sizes.min()) < 1.1
    for _, grp in st.groupby("y"):
        assert grp["grade"].isin(["PK", "K"]).mean() > 0.08
    # Norwich is a K-8 district
    assert not st.loc[st["district"] == "Norwich", "grade"].isin(["9", "10", "11", "12"]).any()
    # demographics: plausible urban mix
    one = st.drop_duplicates("student_id")
    assert one["race_ethnicity"].value_counts(normalize=True).index[0] == "Hispanic/Latino"
    assert one["meal_status"].value_counts(normalize=True)["free"] > 0.6
    assert 0 < (one["gender"] == "X").mean() < 0.01
    ell_by_lang = one.groupby("home_language")["ell"].mean()
    assert ell_by_lang["Spanish"] > 5 * ell_by_lang["English"]
    assert one.loc[one["home_language"] == "Spanish", "race_ethnicity"].eq("Hispanic/Latino").all()


def test_scale_sizes(state_sample: SimulatedData) -> None:
    d = simulate(scale="districts", sample_fraction=0.05)
    n = d.students[d.students["school_year"] == "2021-22"].groupby("district").size()
    assert set(n.index) == set(LEAP_2122_SIZES)
    for name, size in LEAP_2122_SIZES.items():
        assert abs(n[name] - 0.05 * size) <= max(3, 0.03 * 0.05 * size), name
    assert d.truth["program"]["n_visited"] == pytest.approx(0.05 * 8700, rel=0.02)
    st = state_sample.students
    total = st[st["school_year"] == "2021-22"].shape[0]
    assert total == pytest.approx(0.04 * 510_000, rel=0.03)
    leap = st["district"].isin(list(LEAP_2122_SIZES))
    assert 0.25 < leap[st["school_year"] == "2021-22"].mean() < 0.35


# ----------------------------------------------------------------------------- calibration


def test_statewide_chronic_absence_matches_published(state_annual: pd.DataFrame) -> None:
    ann = state_annual
    k12 = ann[ann["grade"] != "PK"]
    rate = 100 * k12.groupby("school_year")["chronic"].mean()
    for year, published in PUBLISHED_CHRONIC.items():
        assert abs(rate[year] - published) < 2.0, (year, rate[year], published)
    # LEAP districts are much higher than the state every year
    leap = (
        100
        * k12[k12["district"].isin(list(LEAP_2122_SIZES))].groupby("school_year")["chronic"].mean()
    )
    assert (leap - rate > 5).all()


def test_grade_and_meal_gradients(state_annual: pd.DataFrame) -> None:
    ann = state_annual
    k12 = ann[ann["grade"] != "PK"]
    for _, grp in k12.groupby("school_year"):
        high = grp.loc[grp["grade"].isin(["9", "10", "11", "12"]), "chronic"].mean()
        elem = grp.loc[grp["grade"].isin(["K", "1", "2", "3", "4", "5"]), "chronic"].mean()
        assert high >= 1.5 * elem
        free = grp.loc[grp["meal_status"] == "free", "chronic"].mean()
        not_eligible = grp.loc[grp["meal_status"] == "not_eligible", "chronic"].mean()
        assert free >= 2 * not_eligible
    # U-shaped grade profile: K above grades 3-5, grade 12 the highest
    by_grade = k12.groupby("grade")["chronic"].mean()
    assert by_grade["K"] > by_grade[["3", "4", "5"]].mean()
    assert by_grade["12"] == by_grade.max()


def test_district_attendance_levels_2021_22(
    demo: SimulatedData, demo_monthly: pd.DataFrame
) -> None:
    ann = _annual(demo, demo_monthly)
    yr = ann[ann["school_year"] == "2021-22"]
    days = yr.groupby("district")[["att", "mem"]].sum()
    ada = days["att"] / days["mem"]
    assert ada.between(0.83, 0.93).all(), ada.to_dict()
    assert ada[["Hartford", "New Haven"]].between(0.83, 0.87).all()
    assert (ada[["Hartford", "New Haven"]] < ada.median() - 0.02).all()
    # seasonality: January 2022 (Omicron) is the worst month of 2021-22
    mon = demo_monthly
    mon = mon[mon["school_year"] == "2021-22"].groupby("month")[["att", "mem"]].sum()
    assert (mon["att"] / mon["mem"]).idxmin() == "2022-01"


def test_persistence_fall_to_winter(state_monthly: pd.DataFrame) -> None:
    mon = state_monthly
    fall = mon[mon["month"].isin(["2020-09", "2020-10", "2020-11"])]
    winter = mon[mon["month"].isin(["2021-01", "2021-02", "2021-03"])]
    f = fall.groupby("student_id", as_index=False)[["att", "mem"]].sum()
    w = winter.groupby("student_id", as_index=False)[["att", "mem"]].sum()
    both = f.merge(w, on="student_id", suffixes=("_f", "_w"))
    rate_f = both["att_f"] / both["mem_f"]
    chronic_w = both["att_w"] / both["mem_w"] < 0.9
    risk_chronic = chronic_w[rate_f < 0.9].mean()
    assert risk_chronic / chronic_w[rate_f >= 0.9].mean() > 4
    assert risk_chronic / chronic_w[rate_f >= 0.95].mean() > 7
    assert 0.3 < risk_chronic < 0.95  # persistent, yet spells recover


# ----------------------------------------------------------------------------- program


def test_visited_students_and_cohorts(demo: SimulatedData) -> None:
    first = _first_visits(demo)
    assert len(first) == pytest.approx(1000, abs=50)
    assert demo.truth["program"]["n_visited"] == len(first)
    assert (first["visit_date"] >= "2021-04-01").all()
    share = first["cohort"].value_counts(normalize=True)
    assert set(share.index) == {"2020-21", "summer-2021", "2021-22", "2022-23"}
    assert share["summer-2021"] > 0.2 and share["2021-22"] > 0.4
    assert share["2020-21"] < 0.12 and share["2022-23"] < 0.12
    v = demo.leap_visits
    done = v[v["visit_status"] == "completed"].groupby("student_id").size()
    assert (
        (done == 1).mean() > 0.2 and done.between(2, 3).mean() > 0.2 and (done >= 4).mean() > 0.15
    )
    # attempts: some before the first completed visit, some students never reached
    att = v[v["visit_status"] == "attempted"].merge(
        first[["student_id", "visit_date"]], on="student_id", how="left", suffixes=("", "_first")
    )
    before = att["visit_date"] < att["visit_date_first"]
    assert before.sum() > 50
    assert (before | att["visit_date_first"].isna()).all()
    assert att["visit_date_first"].isna().sum() > 10
    assert first["visit_location"].value_counts(normalize=True)["home"] > 0.5
    assert set(first["visitor_type"]) == set(VISITOR_TYPES)


def test_selection_is_on_low_observed_attendance_except_canvassing(
    demo: SimulatedData, demo_monthly: pd.DataFrame
) -> None:
    canvass = demo.truth["program"]["canvass_district"]
    panel = _visited_panel(demo, demo_monthly)
    pre = panel[panel["rel"].between(-3, -1)]
    targeted = pre.loc[pre["district"] != canvass, "rate"].mean()
    canvassed = pre.loc[pre["district"] == canvass, "rate"].mean()
    mon = demo_monthly
    overall = 100 * mon["att"].sum() / mon["mem"].sum()
    assert targeted < overall - 20
    assert canvassed > targeted + 15
    assert abs(canvassed - overall) < 5


def test_naive_pre_post_overstates_truth(demo: SimulatedData, demo_monthly: pd.DataFrame) -> None:
    canvass = demo.truth["program"]["canvass_district"]
    panel = _visited_panel(demo, demo_monthly)
    panel = panel[panel["district"] != canvass]
    naive = (
        panel.loc[panel["rel"].between(1, 3), "rate"].mean()
        - panel.loc[panel["rel"].between(-3, -1), "rate"].mean()
    )
    es = demo.truth["event_study"]["all"]
    true_effect = np.mean([es[str(k)] for k in (1, 2, 3)])
    assert naive > true_effect + 5


def test_rebound_without_any_program(demo_no_effect: SimulatedData) -> None:
    es = demo_no_effect.truth["event_study"]
    assert all(v == 0.0 for group in es.values() for v in group.values())
    panel = _visited_panel(demo_no_effect)
    panel = panel[panel["district"] != demo_no_effect.truth["program"]["canvass_district"]]
    rebound = (
        panel.loc[panel["rel"].between(1, 3), "rate"].mean()
        - panel.loc[panel["rel"].between(-3, -1), "rate"].mean()
    )
    assert rebound > 5  # regression to the mean alone


def test_potential_outcomes_share_random_numbers(
    demo: SimulatedData, demo_no_effect: SimulatedData, demo_monthly: pd.DataFrame
) -> None:
    """Two routes to the truth: observed Y(1) - Y(0) across runs equals truth ATT(k)."""
    pd.testing.assert_frame_equal(demo.students, demo_no_effect.students)
    pd.testing.assert_frame_equal(demo.leap_visits, demo_no_effect.leap_visits)
    a1, a0 = demo.attendance_monthly, demo_no_effect.attendance_monthly
    pd.testing.assert_frame_equal(a1[ATTENDANCE_COLUMNS[:4]], a0[ATTENDANCE_COLUMNS[:4]])
    for col in ("inperson_membership", "remote_membership"):
        assert (a1[col] == a0[col]).all()
    changed = (a1["inperson_attended"] != a0["inperson_attended"]) | (
        a1["remote_attended"] != a0["remote_attended"]
    )
    assert (a1["inperson_attended"] >= a0["inperson_attended"]).all()
    assert (a1["remote_attended"] >= a0["remote_attended"]).all()
    monthly0 = _monthly(demo_no_effect)
    p1, p0 = _visited_panel(demo, demo_monthly), _visited_panel(demo_no_effect, monthly0)
    both = p1.merge(p0[["student_id", "idx", "rate"]], on=["student_id", "idx"], suffixes=("", "0"))
    assert (both.loc[both["rel"] < 0, "rate"] == both.loc[both["rel"] < 0, "rate0"]).all()
    visited = set(_first_visits(demo)["student_id"])
    assert set(a1.loc[changed, "student_id"]) <= visited  # no spill-over, no anticipation
    es = demo.truth["event_study"]["all"]
    att = (both["rate"] - both["rate0"]).groupby(both["rel"]).mean()
    for k in (-5, -1, 0, 1, 3, 6, 9, 12, 20):
        assert es[str(k)] == pytest.approx(att[k], abs=1e-3)
    # long-term truth: annual attendance-rate ATT of the 2021-22 cohort in 2022-23
    first = _first_visits(demo)
    coh = set(first.loc[first["cohort"] == "2021-22", "student_id"])
    r1 = _annual(demo, demo_monthly).set_index(["student_id", "school_year"])["rate"]
    r0 = _annual(demo_no_effect, monthly0).set_index(["student_id", "school_year"])["rate"]
    diff = (r1 - r0).reset_index()
    diff = diff[diff["student_id"].isin(coh) & (diff["school_year"] == "2022-23")]
    rec = [
        r for r in demo.truth["long_term"]
        if r["cohort"] == "2021-22" and r["group"] == "all" and r["school_year"] == "2022-23"
        and r["outcome"] == "attendance_rate"
    ]  # fmt: skip
    assert len(rec) == 1
    assert rec[0]["att"] == pytest.approx(100 * diff["rate"].mean(), abs=1e-3)
    assert rec[0]["years_after"] == 1
    # the same cell over the cohort's students enrolled in the school year before (2020-21):
    # the population of a long-term fit with a reference row; some students are new
    enrolled = set(r1.reset_index().query("school_year == '2020-21'")["student_id"])
    with_ref = diff[diff["student_id"].isin(enrolled)]
    assert 0 < len(with_ref) < len(diff)
    rec = [
        r for r in demo.truth["long_term_with_reference"]
        if r["cohort"] == "2021-22" and r["group"] == "all" and r["school_year"] == "2022-23"
        and r["outcome"] == "attendance_rate"
    ]  # fmt: skip
    assert len(rec) == 1 and rec[0]["n"] == len(with_ref)
    assert rec[0]["att"] == pytest.approx(100 * with_ref["rate"].mean(), abs=1e-3)


# ----------------------------------------------------------------------------- truth


def test_truth_has_documented_keys(demo: SimulatedData) -> None:
    t = demo.truth
    assert json.loads(json.dumps(t)) == t  # JSON-serialisable as is
    assert t["schema"] == TRUTH_SCHEMA
    assert t["seed"] == 20210401 and t["scale"] == "demo"
    assert t["config"]["school_years"][0] == "2019-20"
    es = t["event_study"]
    cohorts = sorted(set(_first_visits(demo)["cohort"]))
    expected = {"all", "grade_band:PK-5", "grade_band:6-8", "grade_band:9-12", "grade_band:6-12"}
    expected |= {f"cohort:{c}" for c in cohorts}
    expected |= {f"first_visit_location:{loc}" for loc in VISIT_LOCATIONS}
    assert expected <= set(es)
    assert set(es["all"]) == {str(k) for k in range(-12, 25)}
    for group in es.values():
        assert all(re.fullmatch(r"-?\d+", k) for k in group)
        assert all(v == 0.0 for k, v in group.items() if int(k) < 0)  # no anticipation
    lt = pd.DataFrame(t["long_term"])
    assert {"group", "cohort", "school_year", "years_after", "outcome", "att"} <= set(lt.columns)
    assert set(lt["outcome"]) == {"attendance_rate", "chronically_absent"}
    assert set(lt["cohort"]) == set(cohorts)
    summer = lt[lt["cohort"] == "summer-2021"]
    assert summer["school_year"].min() == "2021-22"
    assert set(summer["years_after"]) == {0, 1, 2}
    assert (lt.loc[lt["outcome"] == "chronically_absent", "att"] <= 0).all()
    assert (lt.loc[lt["outcome"] == "attendance_rate", "att"] >= 0).all()


def test_truth_follows_the_published_pattern(demo: SimulatedData) -> None:
    es = demo.truth["event_study"]
    assert 0 < es["all"]["0"] < es["all"]["1"]  # partial in the event month
    assert 2.5 < es["all"]["1"] < 6.5  # ~ +4 pp one month after
    assert 11 < es["cohort:2021-22"]["6"] < 19  # ~ +15 pp after six months
    assert 4 < es["cohort:summer-2021"]["6"] < 10  # ~ +7 pp for summer 2021
    assert 5 < es["grade_band:PK-5"]["9"] < 11  # ~ +8 pp at nine months
    assert 12 < es["grade_band:6-12"]["9"] < 20  # ~ +16 pp
    assert es["first_visit_location:home"]["6"] > es["first_visit_location:phone"]["6"] + 3
    assert es["first_visit_location:home"]["6"] > es["first_visit_location:virtual"]["6"] + 3
    assert 0 < es["all"]["24"] < es["all"]["9"]  # persists while fading


def test_canvassing_district_has_zero_effect(demo: SimulatedData) -> None:
    canvass = demo.truth["program"]["canvass_district"]
    es = demo.truth["event_study"]
    zero = es[f"district:{canvass}"]
    assert len(zero) > 20 and all(v == 0.0 for v in zero.values())
    assert demo.truth["event_study_n"][f"district:{canvass}"]["1"] >= 20
    assert es["district:Hartford"]["6"] > 5
    other = simulate(scale="demo", sample_fraction=0.3, canvass_district="Windham")
    assert all(v == 0.0 for v in other.truth["event_study"]["district:Windham"].values())
    assert other.truth["event_study"]["district:Meriden"]["6"] > 0
