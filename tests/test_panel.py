"""The analytic panel, comparison candidates and stacked panels on a hand-made data set."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leapresearch.config import MatchingConfig, PoolConfig
from leapresearch.data.calendar import school_month_index
from leapresearch.data.panel import build_panel
from leapresearch.design.pool import build_candidates
from leapresearch.design.stacking import mass_weights, stacked_panel, subgroup_weights, unit_table


def roster_row(sid, year, district="D1", grade="3", **kw):
    row = dict(
        student_id=sid,
        school_year=year,
        district=district,
        school_id=f"{district}-S1",
        grade=grade,
        gender="F",
        race_ethnicity="Hispanic/Latino",
        meal_status="free",
        ell=0,
        swd=0,
        home_language="Spanish",
    )
    row.update(kw)
    return row


def att_row(sid, month, att, mem=20.0, school="D1-S1", district="D1", remote=(0.0, 0.0)):
    return dict(
        student_id=sid,
        district=district,
        school_id=school,
        month=month,
        inperson_membership=mem,
        inperson_attended=att,
        remote_membership=remote[0],
        remote_attended=remote[1],
    )


MONTHS_2021 = [
    "2020-09",
    "2020-10",
    "2020-11",
    "2020-12",
    "2021-01",
    "2021-02",
    "2021-03",
    "2021-04",
    "2021-05",
    "2021-06",
]
MONTHS_2122 = [
    "2021-09",
    "2021-10",
    "2021-11",
    "2021-12",
    "2022-01",
    "2022-02",
    "2022-03",
    "2022-04",
    "2022-05",
    "2022-06",
]


@pytest.fixture
def tables():
    ids = ["0000000001", "0000000002", "0000000003", "0000000004", "0123456789"]
    students = pd.DataFrame(
        [roster_row(s, y) for s in ids for y in ("2020-21", "2021-22")]
        + [roster_row("0000000005", y, district="D2") for y in ("2020-21", "2021-22")]
    )
    rows = []
    for k, s in enumerate(ids):
        for j, m in enumerate(MONTHS_2021 + MONTHS_2122):
            rows.append(att_row(s, m, att=float(10 + (k + j) % 10)))
    for m in MONTHS_2021 + MONTHS_2122:
        rows.append(att_row("0000000005", m, att=15.0, school="D2-S1", district="D2"))
    # student 1 changes school in October 2021: two rows that month
    rows = [r for r in rows if not (r["student_id"] == "0000000001" and r["month"] == "2021-10")]
    rows.append(att_row("0000000001", "2021-10", 5.0, mem=8.0, school="D1-S1"))
    rows.append(att_row("0000000001", "2021-10", 9.0, mem=12.0, school="D1-S2"))
    # remote days in 2020-21 for student 2
    rows = [r for r in rows if not (r["student_id"] == "0000000002" and r["month"] == "2020-11")]
    rows.append(att_row("0000000002", "2020-11", 4.0, mem=10.0, remote=(10.0, 6.0)))
    # a summer-school row and a zero-membership month
    rows.append(att_row("0000000003", "2021-07", 10.0, mem=10.0))
    rows = [r for r in rows if not (r["student_id"] == "0000000004" and r["month"] == "2021-12")]
    rows.append(att_row("0000000004", "2021-12", 0.0, mem=0.0))
    attendance = pd.DataFrame(rows)
    visits = pd.DataFrame(
        {
            "visit_id": ["v1", "v2", "v3", "v4", "v5"],
            "student_id": ["0000000001", "0000000001", "0000000001", "0123456789", "0000000002"],
            "district": ["D1"] * 5,
            "visit_date": pd.to_datetime(
                ["2021-07-20", "2021-09-02", "2021-10-05", "2022-01-10", "2021-11-03"]
            ),
            "visit_status": ["attempted", "completed", "completed", "completed", "attempted"],
            "visit_location": ["home", "home", "phone", "virtual", "home"],
            "visitor_type": ["school_staff"] * 5,
        }
    )
    return SimpleNamespace(students=students, attendance_monthly=attendance, leap_visits=visits)


def test_monthly_rate_sums_schools_and_remote_days(tables):
    panel = build_panel(tables)
    t_oct = school_month_index([2021], [10])[0]
    m = panel.monthly.set_index(["student", "time"])
    # student codes follow the sorted ids: "0000000001" -> 0
    assert m.loc[(0, t_oct), "membership"] == 20.0
    assert m.loc[(0, t_oct), "rate"] == pytest.approx(14.0 / 20.0)
    t_nov = school_month_index([2020], [11])[0]
    assert m.loc[(1, t_nov), "rate"] == pytest.approx((4.0 + 6.0) / 20.0)


def test_summer_rows_and_zero_membership_are_counted_not_lost(tables):
    panel = build_panel(tables)
    assert panel.counts["summer_rows"] == 1
    assert panel.counts["zero_membership_months"] == 1
    t_dec = school_month_index([2021], [12])[0]
    assert np.isnan(panel.rates[3, t_dec - panel.time_min])


def test_first_visit_is_earliest_completed(tables):
    panel = build_panel(tables)
    ev = panel.events.set_index("student")
    # student 0: attempted in July, completed 2 Sep and 5 Oct -> first = 2 Sep, 2 visits
    assert ev.loc[0, "first_visit_date"] == pd.Timestamp("2021-09-02")
    assert ev.loc[0, "event_time"] == school_month_index([2021], [9])[0]
    assert ev.loc[0, "cohort"] == "2021-22"
    assert ev.loc[0, "visits"] == "2-3"
    assert ev.loc[0, "first_visit_location"] == "home"
    # student 1 only had an attempt: not treated, but visited_any
    assert 1 not in ev.index and panel.visited_any[1]
    assert set(ev.index) == {0, 5}  # "0123456789" sorts last


def test_annual_rate_and_chronic_absence(tables):
    panel = build_panel(tables, chronic_threshold=0.9)
    a = panel.annual.set_index(["student", "year"])
    m = panel.monthly
    sel = m[(m["student"] == 2) & (m["year"] == 2020)]
    assert a.loc[(2, 2020), "rate"] == pytest.approx(
        sel["attended"].sum() / sel["membership"].sum()
    )
    assert a.loc[(2, 2020), "chronically_absent"] == int(a.loc[(2, 2020), "rate"] < 0.9)


def test_candidates_pool_excludes_visited_and_other_districts(tables):
    panel = build_panel(tables)
    strict = PoolConfig(include_attempted_only=False, not_yet_visited=False)
    cand = build_candidates(panel, pool=strict, matching=MatchingConfig(pre_months=6))
    f = cand.frame
    sept = school_month_index([2021], [9])[0]
    in_stack = f[f["stack"] == sept]
    # treated: student 0; pool: never visited (2, 3) in D1; student 1 had an attempt; 4 in D2
    assert in_stack.loc[in_stack["treated"], "student"].tolist() == [0]
    assert sorted(in_stack.loc[~in_stack["treated"], "student"]) == [2, 3]
    # by default an attempt without contact is not a visit (data contract)
    never = PoolConfig(not_yet_visited=False)
    f1 = build_candidates(panel, pool=never, matching=MatchingConfig(pre_months=6)).frame
    assert sorted(f1.loc[(f1["stack"] == sept) & ~f1["treated"], "student"]) == [1, 2, 3]
    other = PoolConfig(allow_other_districts=True, not_yet_visited=False)
    f2 = build_candidates(panel, pool=other, matching=MatchingConfig(pre_months=6)).frame
    assert sorted(f2.loc[(f2["stack"] == sept) & ~f2["treated"], "student"]) == [1, 2, 3, 4]
    # students first visited later join only with not_yet_visited, the default (student 5:
    # January 2022)
    later = PoolConfig()
    assert later.not_yet_visited
    f3 = build_candidates(panel, pool=later, matching=MatchingConfig(pre_months=6)).frame
    assert 5 in set(f3.loc[(f3["stack"] == sept) & ~f3["treated"], "student"])
    assert not f[cand.covariates].isna().any().any()


def test_pre_period_covariates_are_the_months_before_the_event(tables):
    panel = build_panel(tables)
    cand = build_candidates(panel, pool=PoolConfig(), matching=MatchingConfig(pre_months=3))
    row = cand.frame[(cand.frame["student"] == 2) & (cand.frame["stack"] % 10 == 0)].iloc[0]
    stack = int(row["stack"])
    for k in (1, 2, 3):
        assert row[f"pre_rate_m{k}"] == pytest.approx(panel.rates[2, stack - k - panel.time_min])
    assert row["prior_year_rate"] == pytest.approx(
        panel.annual.set_index(["student", "year"]).loc[(2, stack // 10 - 1), "rate"]
    )


def test_stacked_panel_and_subgroup_weights():
    from types import SimpleNamespace as NS

    rates = np.array([[0.5, 0.6, 0.7], [0.8, np.nan, 0.9], [0.9, 0.9, 0.95]])
    panel = NS(
        rates=rates, time_min=100, events=pd.DataFrame({"student": [2], "event_time": [102]})
    )
    matched = pd.DataFrame(
        {
            "stack": [101, 101, 101],
            "student": [0, 1, 2],
            "treated": [True, False, False],
            "weight": [1.0, 0.5, 0.5],
        }
    )
    cands = matched[["stack", "student"]].assign(school=[7, 7, 8])
    units = unit_table(matched, cands)
    sp = stacked_panel(panel, units)
    # one missing month; comparison student 2 is visited in month 102 and leaves there
    assert len(sp) == 7
    assert sp.loc[sp["student"] == 2, "time"].tolist() == [100, 101]
    assert sp.loc[sp["student"] == 0, "rel_time"].tolist() == [-1, 0, 1]
    assert sp.loc[(sp["student"] == 0) & (sp["rel_time"] == 1), "attendance_pp"].item() == 70.0
    pairs = pd.DataFrame(
        {"stack": [101, 101], "treated_student": [0, 0], "comparison_student": [1, 2]}
    )
    w = subgroup_weights(units, pairs, matched.loc[matched["treated"], ["stack", "student"]])
    assert w.tolist() == [1.0, 0.5, 0.5]
    assert subgroup_weights(units, pairs, matched.iloc[0:0][["stack", "student"]]).sum() == 0


def test_mass_weights_make_each_counterfactual_the_mass_weighted_mean_of_its_matches():
    # a Bayesian bootstrap draw: each unit carries its school's weight; treated 0 is served
    # by comparisons 2 and 3, treated 1 by 3 and 4 (stack 5); treated 6 in another stack
    units = pd.DataFrame(
        {
            "stack": [5, 5, 5, 5, 5, 9, 9],
            "student": [0, 1, 2, 3, 4, 6, 2],
            "treated": [True, True, False, False, False, True, False],
        }
    )
    pairs = pd.DataFrame(
        {
            "stack": [5, 5, 5, 5, 9],
            "treated_student": [0, 0, 1, 1, 6],
            "comparison_student": [2, 3, 3, 4, 2],
        }
    )
    everyone = units.loc[units["treated"], ["stack", "student"]]
    mass = np.array([2.0, 0.5, 1.0, 3.0, 0.25, 1.5, 4.0])
    w = mass_weights(units, pairs, everyone, mass)
    # 0: matches of mass 1 and 3 take 2 * 1/4 and 2 * 3/4; 1: matches of mass 3 and 0.25
    expected = [2.0, 0.5, 2 * 1 / 4, 2 * 3 / 4 + 0.5 * 3 / 3.25, 0.5 * 0.25 / 3.25, 1.5, 1.5]
    np.testing.assert_allclose(w, expected, rtol=1e-15)
    # the weighted estimator: sum_i m_i (y_i - sum_l m_l y_l / sum_l m_l) over the group
    y = np.array([10.0, 20.0, 1.0, 2.0, 3.0, 7.0, 5.0])
    treated = units["treated"].to_numpy()
    direct = 2.0 * (10 - (1 * 1 + 3 * 2) / 4) + 0.5 * (20 - (3 * 2 + 0.25 * 3) / 3.25)
    direct += 1.5 * (7 - 5)
    assert (w[treated] @ y[treated] - w[~treated] @ y[~treated]) == pytest.approx(direct)
    # every mass 1: the matching weights of subgroup_weights, for the group and a subgroup
    ones = np.ones(len(units))
    for group in (everyone, everyone.iloc[[1]]):
        np.testing.assert_array_equal(
            mass_weights(units, pairs, group, ones), subgroup_weights(units, pairs, group)
        )


def test_candidate_rows_find_each_unit_as_a_merge_does_or_leave_it_to_the_merge():
    # units look up their candidate row by a dense table over stacks and student codes
    # instead of merging with the millions of candidate rows: the same rows as a merge,
    # whatever the order of the frame; None (the merge then decides) when a pair repeats,
    # a unit has no row or a code is not a small non-negative integer
    from leapresearch.design.stacking import candidate_rows

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"stack": np.repeat([20211, 20213, 20216], 40), "student": np.tile(np.arange(40), 3)}
    )
    frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    frame["school"] = rng.integers(0, 9, len(frame))
    keys = frame.sample(25, random_state=4)[["stack", "student"]].reset_index(drop=True)
    rows = candidate_rows(frame, keys)
    merged = keys.merge(frame.reset_index(), on=["stack", "student"], how="left")
    assert rows is not None and rows.tolist() == merged["index"].tolist()
    repeated = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    assert candidate_rows(repeated, keys) is None
    absent = pd.concat([keys, pd.DataFrame({"stack": [20212], "student": [1]})])
    assert candidate_rows(frame, absent) is None
    assert candidate_rows(frame, keys.assign(student=keys["student"] + 40)) is None
    assert candidate_rows(frame.assign(student=frame["student"] - 1), keys) is None
    text = frame.assign(student=frame["student"].astype(str))
    assert candidate_rows(text, keys.assign(student=keys["student"].astype(str))) is None


def test_pre_period_gathers_each_rows_months_as_the_column_loop_did():
    import types

    from leapresearch.design import pool as pool_module

    rng = np.random.default_rng(11)
    rates = rng.random((300, 40))
    rates[rng.random(rates.shape) < 0.15] = np.nan
    panel = types.SimpleNamespace(rates=rates, time_min=20190)
    student = rng.integers(0, 300, 70_000)  # more rows than one block
    stack = rng.integers(20190 - 3, 20190 + 45, student.size)  # months off both ends
    expected = np.full((student.size, 24), np.nan)
    for k in range(1, 25):
        col = stack - k - panel.time_min
        ok = (col >= 0) & (col < rates.shape[1])
        expected[ok, k - 1] = rates[student[ok], col[ok]]
    got = pool_module._pre_period(panel, student, stack, 24)
    np.testing.assert_array_equal(got, expected)
    assert got.flags.c_contiguous


def test_demographic_indicators_of_rows_are_the_dummies_of_those_roster_rows():
    """Computed once per roster row and gathered (the candidates' way), the indicators
    equal :func:`demographic_dummies` of the gathered roster rows (the way before), and
    the missing-home-language column is there only when a gathered row lacks one."""
    from leapresearch.data.panel import demographic_dummies, demographic_indicators

    roster = pd.DataFrame(
        {
            "gender": ["F", "M", "X", "F", "M"],
            "race_ethnicity": ["White", "Black", "Hispanic", "Asian", "White"],
            "meal_status": ["free", "reduced", "not_eligible", "free", "free"],
            "ell": np.array([1, 0, 0, 1, 0], dtype=np.int8),
            "swd": np.array([0, 0, 1, 1, 0], dtype=np.int8),
            "home_language": ["English", "Spanish", None, "English", "Polish"],
        }
    )
    demographics = ("gender", "race_ethnicity", "meal_status", "ell", "swd", "home_language")
    for rows in (np.array([4, 0, 0, 2, 3, 1, 2]), np.array([1, 0, 4, 4])):
        before = demographic_dummies(roster.iloc[rows].reset_index(drop=True), demographics)
        now = demographic_indicators(roster, demographics, rows)
        assert list(now) == list(before.columns)
        for column, values in now.items():
            np.testing.assert_array_equal(values.astype(np.float64), before[column].to_numpy())
    assert "home_language_missing" in demographic_indicators(roster, demographics, np.array([2]))
    assert "home_language_missing" not in demographic_indicators(
        roster, demographics, np.array([0, 1])
    )


def test_student_month_sums_are_the_groupby_s_and_do_not_depend_on_the_row_order():
    """``build_monthly``'s sums by (student, month): a key of one row keeps its values; the
    days of a key of several rows (two schools in a month) are summed from the smallest, so
    a shuffled file gives the same bits. With whole days that is the pandas groupby it
    replaced, exactly; with fractional days within a rounding error of it (the groupby's
    last bit depended on the row order)."""
    from leapresearch.data.panel import _sum_by_student_month

    rng = np.random.default_rng(7)
    n = 20_000
    student = rng.integers(0, 1_500, n)
    time = rng.choice(np.array([20210, 20211, 20215, 20219, 20220, 20223]), n)
    whole = rng.integers(0, 20, n).astype(float)
    fractional = np.round(rng.uniform(0, 20, n), 1) + rng.choice([0.0, 1e-9, 1 / 3], n)
    shuffle = rng.permutation(n)
    by_key = np.lexsort((time, student))
    for attended in (whole, fractional):
        membership = attended + rng.integers(0, 3, n)
        frame = pd.DataFrame(
            {"student": student, "time": time, "attended": attended, "membership": membership}
        )
        want = frame.groupby(["student", "time"], sort=True, as_index=False).sum()
        assert (want.groupby("student").size() > 1).any() and len(want) < n  # repeats summed
        results = [
            pd.DataFrame(_sum_by_student_month(*(frame[c].to_numpy()[rows] for c in frame.columns)))
            for rows in (np.arange(n), shuffle, by_key)
        ]
        for got in results[1:]:
            pd.testing.assert_frame_equal(got, results[0], check_exact=True)
        exact = attended is whole
        pd.testing.assert_frame_equal(results[0], want, check_exact=exact, rtol=1e-15)
    unique = want.iloc[::2].reset_index(drop=True)  # no repeated key, as most extracts
    again = pd.DataFrame(_sum_by_student_month(*(unique[c].to_numpy() for c in unique.columns)))
    pd.testing.assert_frame_equal(again, unique, check_exact=True)
    empty = pd.DataFrame(
        _sum_by_student_month(*(np.zeros(0, t) for t in (np.int64, np.int64, float, float)))
    )
    assert list(empty.columns) == list(want.columns) and len(empty) == 0


def test_a_missing_month_or_id_is_refused_not_gathered_from_another_row():
    """The months and ids are converted once per distinct value and gathered by code: a
    missing one (code -1) must raise, never take the last distinct value's."""
    from leapresearch.data.calendar import split_month
    from leapresearch.data.panel import _codes, build_monthly

    year, month = split_month(pd.Series(["2021-09", "2022-01", "2021-09"]))
    assert year.tolist() == [2021, 2022, 2021] and month.tolist() == [9, 1, 9]
    with pytest.raises(ValueError, match="1 months are missing"):
        split_month(pd.Series(["2021-09", None], dtype="str"))
    index = pd.Index(["a", "b"])
    assert _codes(pd.Series(["b", "a", "b"], dtype="str"), index).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="1 rows refer to students missing"):
        _codes(pd.Series(["b", None], dtype="str"), index)
    attendance = pd.DataFrame(
        {
            "student_id": pd.Series(["a", "b"], dtype="str"),
            "month": pd.Series(["2021-09", None], dtype="str"),
            **{c: [1.0, 1.0] for c in ("inperson_attended", "inperson_membership")},
            **{c: [0.0, 0.0] for c in ("remote_attended", "remote_membership")},
        }
    )
    with pytest.raises(ValueError, match="1 attendance rows have no month"):
        build_monthly(attendance, index)
