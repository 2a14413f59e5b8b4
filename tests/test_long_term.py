"""Long-term effects: the annual panel censors comparisons visited later (issue 23).

A hand-made panel checks exactly which school years each comparison keeps; simulated
populations of both selection regimes check the estimates against the simulator's truth.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leapresearch.analysis.truth import long_term_truth_key
from leapresearch.data.calendar import event_month_index
from leapresearch.estimation.long_term import annual_stacked_panel

YEARS = (2019, 2020, 2021, 2022, 2023)
STACK = int(event_month_index([2021], [3])[0])  # March 2021: school year 2020-21


def _event(year: int, month: int) -> int:
    return int(event_month_index([year], [month])[0])


# student -> first completed visit (calendar year, month); None: never visited
VISITS = {
    0: (2021, 3),  # the visited student of the stack
    1: None,  # never visited
    2: (2021, 5),  # visited later in the stack's own school year (2020-21)
    3: (2022, 7),  # summer 2022: event month September 2022 (school year 2022-23)
    4: (2022, 6),  # June 2022: school year 2021-22
    5: (2021, 9),  # September 2021: the first month of school year 2021-22
}


def _tiny_panel() -> SimpleNamespace:
    students = sorted(VISITS)
    annual = pd.DataFrame(
        [(s, y, 0.80 + 0.01 * s, int(s % 2)) for s in students for y in YEARS],
        columns=["student", "year", "rate", "chronically_absent"],
    )
    roster = annual[["student", "year"]].assign(grade="3")
    visited = [s for s in students if VISITS[s] is not None]
    events = pd.DataFrame({"student": visited, "event_time": [_event(*VISITS[s]) for s in visited]})
    return SimpleNamespace(annual=annual, roster=roster, events=events, n_students=len(students))


def _units(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    stack, student, treated = (list(c) for c in zip(*rows, strict=True))
    return pd.DataFrame(
        {
            "unit": np.arange(len(rows)),
            "stack": stack,
            "student": student,
            "treated": np.array(treated, dtype=np.int8),
            "weight": 1.0,
            "school": 0,
        }
    )


def test_comparison_visited_later_loses_exactly_the_school_years_from_its_visit():
    panel = _tiny_panel()
    later_stack = _event(*VISITS[2])
    units = _units([(STACK, 0, 1), *((STACK, s, 0) for s in (1, 2, 3, 4, 5)), (later_stack, 2, 1)])
    for outcome in ("attendance_rate", "chronically_absent"):
        df = annual_stacked_panel(panel, units, outcome=outcome)
        kept = df.groupby("unit")["time"].apply(list).to_dict()
        assert kept[0] == list(YEARS)  # the visited student keeps every school year
        assert kept[1] == list(YEARS)  # never visited: every school year
        assert kept[2] == [2019]  # visited in 2020-21: only the school year before
        assert kept[3] == [2019, 2020, 2021]  # summer 2022 visit: counts from 2022-23
        assert kept[4] == [2019, 2020]  # June 2022: 2021-22 is partly treated
        assert kept[5] == [2019, 2020]  # September 2021: 2021-22 from its first month
        assert kept[6] == list(YEARS)  # student 2 as the visited student of its own stack
        # the reference school year (years_after = -1) is never censored
        assert (df.loc[df["time"] == 2019, "rel_time"] == -1).all()


def test_without_visits_every_row_stays():
    panel = _tiny_panel()
    panel.events = panel.events.iloc[0:0]
    units = _units([(STACK, 0, 1), *((STACK, s, 0) for s in (1, 2, 3, 4, 5))])
    df = annual_stacked_panel(panel, units)
    assert len(df) == len(units) * len(YEARS)
    assert df["y"].tolist() == [
        pytest.approx(100 * (0.80 + 0.01 * s)) for s in (0, 1, 2, 3, 4, 5) for _ in YEARS
    ]


# ----------------------------------------------------------------------------------------
# Against the simulator's truth
# ----------------------------------------------------------------------------------------

SIM_SEEDS = {"lists": 20_231, "hazard": 20_232}
"""One demo-size population per selection regime (about 1,000 visited students)."""


def _estimates(selection: str) -> pd.DataFrame:
    """All-student attendance-rate cells with the draw's truth.

    ``estimate``/``std_error``: the design's default (censored, regression-adjusted,
    censoring-weighted); ``_unadjusted``: censored, without the adjustment;
    ``estimate_uncensored``: the default's units with no comparison ever censored;
    ``estimate_unweighted``: censored, without the censoring weights. Also returns the
    matched sample.
    """
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term
    from leapresearch.analysis.sample import prepare
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

    warnings.simplefilter("ignore")
    sim = simulate(SimulationConfig(scale="demo", seed=SIM_SEEDS[selection], selection=selection))
    with tempfile.TemporaryDirectory(prefix="lr-lt-") as tmp:
        write_simulation(sim, Path(tmp), file_format="parquet")
        config = load_config("demo", data_dir=Path(tmp))
        config = with_setting(config, "long_term", outcomes=("attendance_rate",))
        prepared = prepare(read_raw_tables(Path(tmp)), config)
    assert config.long_term.regression_adjustment  # the defaults this checks
    assert config.long_term.censoring_weights and config.comparison_pool.not_yet_visited
    panel = prepared.panel
    uncensored = dataclasses.replace(
        prepared, panel=dataclasses.replace(panel, events=panel.events.iloc[0:0])
    )
    unadjusted = dataclasses.replace(
        prepared, config=with_setting(config, "long_term", regression_adjustment=False)
    )
    unweighted = dataclasses.replace(
        prepared, config=with_setting(config, "long_term", censoring_weights=False)
    )
    key = ["group", "cohort", "years_after"]
    est = (
        estimate_long_term(prepared)
        .merge(
            estimate_long_term(uncensored)[[*key, "estimate"]], on=key, suffixes=("", "_uncensored")
        )
        .merge(
            estimate_long_term(unadjusted)[[*key, "estimate", "std_error"]],
            on=key,
            suffixes=("", "_unadjusted"),
        )
        .merge(
            estimate_long_term(unweighted)[[*key, "estimate"]], on=key, suffixes=("", "_unweighted")
        )
    )
    # the truth of the estimand the design fits (long_term.require_reference_year)
    truth = pd.DataFrame(sim.truth[long_term_truth_key(config)])
    truth = truth.loc[truth["outcome"] == "attendance_rate", [*key, "att"]]
    out = est.merge(truth, on=key, how="inner", validate="one_to_one")
    return out.loc[out["group"] == "all"].reset_index(drop=True), prepared


@pytest.fixture(scope="module", params=sorted(SIM_SEEDS))
def simulated(request) -> tuple[str, pd.DataFrame, object]:
    return request.param, *_estimates(request.param)


def test_reference_year_enrolment_is_read_from_the_months_with_membership(simulated):
    """A unit is enrolled in its reference year iff its student has a school month with
    membership in the school year before its stack's (a direct pandas computation)."""
    from leapresearch.estimation.long_term import enrolled_in_reference_year

    selection, _, prepared = simulated
    units, monthly = prepared.units, prepared.panel.monthly
    got = enrolled_in_reference_year(prepared.panel, units)
    member = monthly.loc[monthly["membership"] > 0, ["student", "time"]]
    years = set(zip(member["student"], member["time"] // 10, strict=True))
    expected = [
        (s, t // 10 - 1) in years for s, t in zip(units["student"], units["stack"], strict=True)
    ]
    assert got.tolist() == expected
    treated = units["treated"].to_numpy() == 1
    # some visited students are new in their visit year, most are not (both arms)
    assert 0 < (~got[treated]).sum() < 0.5 * treated.sum(), selection
    assert 0 < (~got[~treated]).sum() < 0.5 * (~treated).sum(), selection


def test_the_requirement_leaves_out_exactly_the_students_new_in_their_visit_year(simulated):
    """The visit-year cell of each cohort counts the cohort's visited students enrolled in
    the reference year (all of them without the requirement)."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term
    from leapresearch.estimation.long_term import enrolled_in_reference_year

    selection, _, prepared = simulated
    assert prepared.config.long_term.require_reference_year  # the default this checks
    off = dataclasses.replace(
        prepared,
        config=with_setting(prepared.config, "long_term", require_reference_year=False),
    )
    key = ["cohort", "years_after"]
    cells = {}
    for name, prep in (("required", prepared), ("every", off)):
        table = estimate_long_term(prep)
        table = table.loc[(table["group"] == "all") & (table["years_after"] == 0)]
        cells[name] = table.set_index(key)["n_treated"]
    units, attrs = prepared.units, prepared.attributes
    kept = pd.Series(enrolled_in_reference_year(prepared.panel, units))
    treated = units.assign(kept=kept).loc[units["treated"] == 1]
    treated = treated.merge(attrs[["stack", "student", "cohort"]], on=["stack", "student"])
    counts = treated.groupby("cohort")["kept"].agg(["sum", "size"])
    for (cohort, _), n in cells["required"].items():
        assert n == counts.loc[cohort, "sum"], (selection, cohort, n, counts)
        assert cells["every"][(cohort, 0)] == counts.loc[cohort, "size"], (selection, cohort)
    assert (cells["required"] < cells["every"]).any(), selection


def test_the_coverage_table_counts_each_cohorts_visited_students_once(simulated):
    """``long_term_coverage``: per cohort the matched visited students, split into those
    enrolled in the reference year and those new in the visit year; the totals are the
    matched sample's."""
    from leapresearch.analysis.long_term import long_term_coverage
    from leapresearch.estimation.long_term import enrolled_in_reference_year

    selection, _, prepared = simulated
    table = long_term_coverage(prepared)
    units = prepared.units
    treated = units["treated"].to_numpy() == 1
    kept = enrolled_in_reference_year(prepared.panel, units)
    assert table["n_visited"].sum() == treated.sum()
    assert table["n_with_reference_year"].sum() == (kept & treated).sum()
    assert (
        table["n_visited"] == table["n_with_reference_year"] + table["n_new_in_visit_year"]
    ).all()
    assert sorted(table["cohort"]) == sorted(prepared.attributes["cohort"].unique())
    assert (table["n_new_in_visit_year"] > 0).any(), selection


def test_censored_year_one_effects_are_near_the_truth(simulated):
    """Every cohort's censored year-1 estimate (all students) within 3 SE of the truth.

    Checked without the regression adjustment, whose slopes' estimation error the standard
    errors leave out: with it, the small spring-2021 cohort (43 visited students in year
    1, slopes from 47 comparisons) of the hazard draw sits 3.3 of those SEs below the
    truth (README, Validation: the adjusted cells' coverage in the Monte Carlo).
    """
    selection, cells, _ = simulated
    year1 = cells.loc[cells["years_after"] == 1]
    assert len(year1) >= 3, year1  # spring 2021, summer 2021, 2021-22 (and 2022-23)
    z = (year1["estimate_unadjusted"] - year1["att"]) / year1["std_error_unadjusted"]
    assert (z.abs() < 3).all(), (selection, year1.assign(z=z))


def test_censoring_moves_the_largest_cohort_towards_the_truth(simulated):
    """Where the uncensored error is material (> 1 SE), censoring shrinks it.

    Checked on the cohort with the most visited students (the smaller cohorts' errors
    are mostly noise on one draw) at years 1 and 2 after its school year.
    """
    selection, cells, _ = simulated
    largest = cells.loc[cells["n_treated"].idxmax(), "cohort"]
    sel = cells.loc[(cells["cohort"] == largest) & cells["years_after"].isin([1, 2])]
    err = (sel["estimate"] - sel["att"]).abs()
    err_uncensored = (sel["estimate_uncensored"] - sel["att"]).abs()
    material = err_uncensored > sel["std_error"]
    assert (err[material] < err_uncensored[material]).all(), (selection, sel)


# ----------------------------------------------------------------------------------------
# The annual attendance rate on month rows (censored at the comparison's event month)
# ----------------------------------------------------------------------------------------

SCHOOL_MONTHS = 10


def _monthly_panel(*, equal_days: bool = False, visits: dict | None = None) -> SimpleNamespace:
    """Students 0..5 over every school month of ``YEARS``, attendance and days that vary."""
    from leapresearch.data.calendar import school_month_index

    visits = VISITS if visits is None else visits
    rng = np.random.default_rng(7)
    times = [
        int(school_month_index([y + (m < 9)], [m])[0])
        for y in YEARS
        for m in (9, 10, 11, 12, 1, 2, 3, 4, 5, 6)
    ]
    rows = []
    for s in sorted(visits):
        for t in times:
            days = 18 if equal_days else int(rng.integers(5, 22))
            attended = int(rng.integers(0, days + 1))
            rows.append((s, t, t // 10, attended, days, attended / days))
    monthly = pd.DataFrame(
        rows, columns=["student", "time", "year", "attended", "membership", "rate"]
    )
    sums = monthly.groupby(["student", "year"], as_index=False)[["attended", "membership"]].sum()
    annual = sums.assign(rate=sums["attended"] / sums["membership"])
    time_min = min(times)
    rates = np.full((len(visits), max(times) - time_min + 1), np.nan)
    rates[monthly["student"], monthly["time"] - time_min] = monthly["rate"]
    visited = [s for s in sorted(visits) if visits[s] is not None]
    events = pd.DataFrame({"student": visited, "event_time": [_event(*visits[s]) for s in visited]})
    return SimpleNamespace(
        monthly=monthly,
        annual=annual,
        roster=annual[["student", "year"]].assign(grade="3"),
        events=events,
        n_students=len(visits),
        rates=rates,
        time_min=time_min,
    )


def test_month_rows_keep_a_later_visited_comparison_until_its_event_month():
    from leapresearch.estimation.long_term import monthly_long_term_panel

    panel = _monthly_panel()
    units = _units([(STACK, 0, 1), *((STACK, s, 0) for s in (1, 2, 3, 4, 5))])
    df = monthly_long_term_panel(panel, units)
    first = dict(zip(panel.events["student"], panel.events["event_time"], strict=True))
    for unit, student in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)):
        kept = df.loc[df["unit"] == unit, "time"]
        all_months = panel.monthly.loc[panel.monthly["student"] == student, "time"]
        expected = all_months[all_months < first.get(student, 10**9)]
        assert kept.tolist() == expected.tolist(), unit
    # student 2 (visited May 2021) keeps September 2020 to April 2021 of its visit year
    visit_year = df.loc[(df["unit"] == 2) & (df["time"] // 10 == 2020), "time"]
    assert len(visit_year) == 8
    # the visited student keeps every month; event time is school years after the stack's
    treated = df.loc[df["unit"] == 0]
    assert len(treated) == SCHOOL_MONTHS * len(YEARS)
    assert (treated["rel_time"] == treated["time"] // 10 - STACK // 10).all()


def test_day_weighted_month_rows_give_back_the_annual_rate():
    from leapresearch.estimation.long_term import monthly_long_term_panel

    panel = _monthly_panel()
    units = _units([(STACK, 0, 1), (STACK, 1, 0)])
    df = monthly_long_term_panel(panel, units)
    df["year"] = df["time"] // 10
    shares = df.groupby(["unit", "year"])["day_share"].sum()
    np.testing.assert_allclose(shares.to_numpy(), 1.0, rtol=0, atol=1e-12)
    mean = (df["day_share"] * df["y"]).groupby([df["student"], df["year"]]).sum()
    annual = panel.annual.set_index(["student", "year"])["rate"] * 100
    np.testing.assert_allclose(mean.to_numpy(), annual.loc[mean.index].to_numpy(), atol=1e-10)


def test_month_rows_day_shares_are_those_of_a_merge_with_the_monthly_rows():
    """Each row's day share found by the dense table of monthly row numbers equals the
    merge of the stacked rows with every monthly row (the construction before), row for
    row and bit for bit, rows in shuffled monthly order included."""
    from leapresearch.design.stacking import stacked_panel
    from leapresearch.estimation.long_term import monthly_long_term_panel

    panel = _monthly_panel()
    panel.monthly = panel.monthly.sample(frac=1.0, random_state=3).reset_index(drop=True)
    units = _units([(STACK, 0, 1), *((STACK, s, 0) for s in (1, 2, 3, 4, 5))])
    df = monthly_long_term_panel(panel, units)
    monthly = panel.monthly
    total = monthly.groupby(["student", "year"], sort=False)["membership"].transform("sum")
    share = monthly.assign(day_share=monthly["membership"] / total)
    merged = stacked_panel(panel, units).merge(
        share[["student", "time", "day_share"]], on=["student", "time"], how="left"
    )
    expected = merged.sort_values(["unit", "time"], ignore_index=True)["day_share"]
    np.testing.assert_array_equal(df["day_share"].to_numpy(), expected.to_numpy())
    assert df["day_share"].notna().all()


def test_month_rows_reproduce_the_annual_fit_when_nothing_is_censored():
    """Equal days in every month, no comparison visited: the month-row fit is the annual one."""
    from leapresearch.estimation.event_study import event_study
    from leapresearch.estimation.long_term import monthly_long_term_panel

    visits = {s: None for s in range(8)}
    visits[0] = visits[6] = VISITS[0]  # two visited students in the stack, six never visited
    panel = _monthly_panel(equal_days=True, visits=visits)
    rows = [(STACK, 0, 1), (STACK, 6, 1), *((STACK, s, 0) for s in (1, 2, 3, 4, 5, 7))]
    units = _units(rows).assign(school=[0, 1, 0, 1, 0, 1, 0, 1])
    months = monthly_long_term_panel(panel, units)
    months = months.assign(weight=months["weight"] * months["day_share"])
    years = annual_stacked_panel(panel, units)
    fits = [
        event_study(df, outcome="y", window=None, reference=-1, cluster="school")
        for df in (months, years)
    ]
    np.testing.assert_allclose(
        fits[0].coefficients.to_numpy(), fits[1].coefficients.to_numpy(), atol=1e-9
    )
    # ... and it differs once a comparison is censored inside a school year
    censored = _monthly_panel(equal_days=True, visits={**visits, 3: (2022, 1)})
    months_c = monthly_long_term_panel(censored, units)
    years_c = annual_stacked_panel(censored, units)
    assert len(months_c) < len(months) and len(years_c) < len(years)
    assert (months_c.loc[months_c["unit"] == 4, "time"] // 10 == 2021).sum() == 4  # Sep-Dec


def test_visit_year_of_the_largest_cohort_is_near_the_truth(simulated):
    """The school year of the first visit (dip months before it, effect after) within 3 SE.

    On year rows without the adjustment (the design before) it sat 2-4 pp low, beyond 3
    standard errors of these demo-size draws.
    """
    selection, cells, _ = simulated
    largest = cells.loc[cells["n_treated"].idxmax(), "cohort"]
    cell = cells.loc[(cells["cohort"] == largest) & (cells["years_after"] == 0)]
    assert len(cell) == 1
    z = float((cell["estimate"] - cell["att"]).iloc[0] / cell["std_error"].iloc[0])
    assert abs(z) < 3, (selection, cell)


# ----------------------------------------------------------------------------------------
# Censoring weights of the long-term rate (long_term.censoring_weights, fifth freeze)


def _pre_mean_of_comparisons(prepared, months: pd.DataFrame, weight: np.ndarray, stacks) -> float:
    """Mean pre-period rate of the comparisons' school-year-1 month rows of ``stacks``.

    Each row weighted by its unit's matching weight, its day share and ``weight``.
    """
    from leapresearch.analysis.sample import unit_censoring_info

    units = prepared.units
    pre = unit_censoring_info(units, prepared.candidates)["pre_mean"].to_numpy()
    unit = months["unit"].to_numpy()
    keep = (
        (months["treated"].to_numpy() == 0)
        & (months["rel_time"].to_numpy() == 1)
        & months["stack"].isin(stacks).to_numpy()
    )
    w = units["weight"].to_numpy()[unit] * months["day_share"].to_numpy() * weight
    return float(np.average(pre[unit[keep]], weights=w[keep]))


def test_censoring_weights_restore_the_earliest_cohorts_comparisons(simulated):
    """A school year after the earliest cohort's visits, its comparisons still unvisited
    look better than all its matched comparisons; weighted, less so.

    The later cohorts' students were picked on falling attendance, so the comparisons that
    are not yet visited a year later had the higher pre-period rates; the inverse
    probability of not yet being visited gives back weight to the lower ones. Reference:
    the same rows with no comparison ever censored. Weights that were inverted, applied to
    the visited students or lost on the way would fail.
    """
    from leapresearch.analysis.long_term import _weighted, long_term_censoring_weights
    from leapresearch.estimation.long_term import monthly_long_term_panel

    selection, _, prepared = simulated
    panel, units = prepared.panel, prepared.units
    attrs = prepared.attributes
    earliest = attrs.loc[attrs["stack"] == attrs["stack"].min(), "cohort"].iloc[0]
    stacks = attrs.loc[attrs["cohort"] == earliest, "stack"].unique()
    months = monthly_long_term_panel(panel, units)
    assert _weighted(prepared, months)
    weights = long_term_censoring_weights(prepared, months)
    treated = months["treated"].to_numpy() == 1
    assert (weights[treated] == 1).all() and (weights >= 1).all() and (weights > 1).any()
    nobody_censored = dataclasses.replace(panel, events=panel.events.iloc[0:0])
    all_months = monthly_long_term_panel(nobody_censored, units)
    reference = _pre_mean_of_comparisons(prepared, all_months, 1.0, stacks)
    unweighted = _pre_mean_of_comparisons(prepared, months, 1.0, stacks) - reference
    weighted = _pre_mean_of_comparisons(prepared, months, weights, stacks) - reference
    assert unweighted > 0.005, (selection, earliest, unweighted)  # the selection is there
    assert abs(weighted) < abs(unweighted), (selection, earliest, weighted, unweighted)


def test_censoring_weights_reach_only_the_rate_of_censored_school_years(simulated):
    """The weights move the attendance rate's cells where comparisons were censored.

    With no comparison censored (the nobody-visited-later panel) there is nothing to
    weight: :func:`long_term_censoring_weights` gives 1 everywhere.
    """
    from leapresearch.analysis.long_term import long_term_censoring_weights
    from leapresearch.estimation.long_term import monthly_long_term_panel

    selection, cells, prepared = simulated
    moved = (cells["estimate"] - cells["estimate_unweighted"]).abs()
    assert (moved[cells["years_after"] >= 1] > 1e-6).any(), (selection, cells)
    panel = prepared.panel
    nobody = dataclasses.replace(
        prepared, panel=dataclasses.replace(panel, events=panel.events.iloc[0:0])
    )
    months = monthly_long_term_panel(nobody.panel, prepared.units)
    assert (long_term_censoring_weights(nobody, months) == 1).all()


def test_alternatives_switch_one_correction_each(simulated):
    """Notebook 07's table: the published cells, and each with one choice switched.

    The published rows are :func:`estimate_long_term`'s; the other rows are its fits with
    the adjustment, the censoring weights (attendance rate only, since chronic absence is
    never weighted), or the reference-year requirement switched; each cell's variants sit
    together.
    """
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import (
        estimate_long_term,
        estimate_long_term_alternatives,
    )

    selection, _, prepared = simulated
    config = with_setting(
        prepared.config, "long_term", outcomes=("attendance_rate", "chronically_absent")
    )
    prepared = dataclasses.replace(prepared, config=config)
    reference = config.long_term.require_reference_year
    out = estimate_long_term_alternatives(prepared)
    published = estimate_long_term(prepared)
    cols = list(published.columns)
    own = out.loc[out["published"]]
    assert (
        own["adjusted"].all()
        and (own["censoring_weights"] == (own["outcome"] == "attendance_rate")).all()
        and (own["reference_year_required"] == reference).all()
    )
    pd.testing.assert_frame_equal(own[cols].reset_index(drop=True), published)

    def fitted(**switch) -> pd.DataFrame:
        alt = dataclasses.replace(prepared, config=with_setting(config, "long_term", **switch))
        return estimate_long_term(alt)

    others = out.loc[~out["published"]]
    unadjusted = others.loc[~others["adjusted"]]
    assert (unadjusted["censoring_weights"] == (unadjusted["outcome"] == "attendance_rate")).all()
    assert (unadjusted["reference_year_required"] == reference).all()
    pd.testing.assert_frame_equal(
        unadjusted[cols].reset_index(drop=True), fitted(regression_adjustment=False)
    )
    switched_reference = others.loc[others["reference_year_required"] != reference]
    assert switched_reference["adjusted"].all()
    pd.testing.assert_frame_equal(
        switched_reference[cols].reset_index(drop=True),
        fitted(require_reference_year=not reference),
    )
    unweighted = others.loc[others["adjusted"] & (others["reference_year_required"] == reference)]
    assert not unweighted["censoring_weights"].any()
    assert (unweighted["outcome"] == "attendance_rate").all()
    expected = fitted(censoring_weights=False, outcomes=("attendance_rate",))
    pd.testing.assert_frame_equal(unweighted[cols].reset_index(drop=True), expected)
    assert not np.allclose(
        unweighted["estimate"], own.loc[own["outcome"] == "attendance_rate", "estimate"]
    ), selection
    # the requirement leaves out visited students new in their visit year: fewer counted
    mine = own.set_index(["group", "cohort", "outcome", "years_after"])["n_treated"]
    theirs = switched_reference.set_index(["group", "cohort", "outcome", "years_after"])
    fewer, more = (mine, theirs["n_treated"]) if reference else (theirs["n_treated"], mine)
    both = fewer.index.intersection(more.index)
    assert (fewer[both] <= more[both]).all() and (fewer[both] < more[both]).any(), selection
    # a cell's variants are adjacent rows
    keys = ["group", "cohort", "outcome", "years_after"]
    runs = (out[keys] != out[keys].shift()).any(axis=1).cumsum()
    assert runs.nunique() == len(published)
