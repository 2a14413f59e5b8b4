"""The front page leads with valid intervals and reads only calibrated diagnostics (issues 23, 27).

The whole-procedure interval (score, matches and adjustment re-run in each draw) where
``event_study.csv`` has it, else the conditional one, and the printed text says which; the
pre-trend limitation states the calibrated test's measured power from the packaged record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.publish import narrative
from leapresearch.publish.tables import (
    CONDITIONAL_WORDS,
    INTERVAL_MARK,
    headline_html,
    headline_table,
    lead_intervals,
)

GROUPS = {"all": 10.0, "grade_band:PK-5": 6.0, "grade_band:6-12": 12.0, "cohort:2021-22": 9.0}


def _event_study(*, procedure: set[str]) -> pd.DataFrame:
    """Analytic intervals of +-2 pp; whole-procedure ones of +-3 pp for ``procedure``."""
    rows = []
    for g, est in GROUPS.items():
        for m in (1, 9):
            e = est + m / 10
            has = g in procedure
            rows.append(
                {"group": g, "rel_time": m, "estimate": e, "ci_lower": e - 2, "ci_upper": e + 2,
                 "n_treated": 100, "n_comparison": 250,
                 "procedure_ci_lower": e - 3 if has else np.nan,
                 "procedure_ci_upper": e + 3 if has else np.nan}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_lead_interval_is_the_whole_procedure_one_where_published():
    es = _event_study(procedure={"all"})
    lead = lead_intervals(es).set_index(["group", "rel_time"])
    assert lead.loc[("all", 9), ["lead_lower", "lead_upper"]].tolist() == [7.9, 13.9]
    assert lead.loc[("all", 9), "lead_kind"] == "procedure"
    assert lead.loc[("grade_band:PK-5", 9), ["lead_lower", "lead_upper"]].tolist() == [4.9, 8.9]
    assert lead.loc[("grade_band:PK-5", 9), "lead_kind"] == "conditional"
    # one blank end is no interval: the conditional one is shown
    half = es.assign(procedure_ci_upper=np.nan)
    assert (lead_intervals(half)["lead_kind"] == "conditional").all()
    # a suppressed cell has no interval of either kind: nothing to mark
    hidden = es.assign(ci_lower=np.nan, ci_upper=np.nan)
    kinds = lead_intervals(hidden).set_index("group")["lead_kind"]
    assert kinds.loc["grade_band:PK-5"].eq("").all() and kinds.loc["all"].eq("procedure").all()
    # a table written without the columns at all
    bare = lead_intervals(es.drop(columns=["procedure_ci_lower", "procedure_ci_upper"]))
    assert (bare["lead_lower"] == es["ci_lower"]).all()


def test_the_headline_table_marks_each_fallback_and_says_where():
    es = _event_study(procedure={"all", "grade_band:PK-5", "grade_band:6-12"})
    head = headline_table(es, rel_times=(1, 9))
    by = head.set_index("group")
    assert (by.loc["all", "lo_9"], by.loc["all", "hi_9"]) == (7.9, 13.9)
    assert by.loc["cohort:2021-22", ["lo_9", "kind_9"]].tolist() == [7.9, "conditional"]
    page = headline_html(head, rel_times=(1, 9))
    assert "(7.9 to 13.9)<" in page  # the whole-procedure interval of all, unmarked
    assert f"(7.9 to 11.9){INTERVAL_MARK}" in page  # the cohort's analytic one, marked
    assert page.count(INTERVAL_MARK) == 2 + 1  # the cohort's two cells and the footnote
    assert "Intervals from the whole-procedure bootstrap" in page
    assert f"analytic interval, {CONDITIONAL_WORDS} (School year 2021-22)" in page
    # with the multiplier bootstrap in ci_lower/ci_upper the fallback is named as such
    other = headline_html(head, rel_times=(1, 9), conditional="multiplier-bootstrap")
    assert f"multiplier-bootstrap interval, {CONDITIONAL_WORDS}" in other
    # every whole-procedure column blank (inference.procedure_draws: 0): said once, no mark
    none = headline_html(headline_table(_event_study(procedure=set()), rel_times=(1, 9)),
                         rel_times=(1, 9))  # fmt: skip
    assert INTERVAL_MARK not in none and "whole-procedure bootstrap (" not in none
    assert f"The intervals are the analytic ones, {CONDITIONAL_WORDS}" in none
    assert "no whole-procedure interval for these groups" in none


def test_the_summary_leads_with_the_whole_procedure_interval_and_says_the_fallback():
    every = _event_study(procedure={"all", "grade_band:PK-5", "grade_band:6-12"})
    text = narrative.summary_paragraph(every, None, rel_times=(1, 9))
    assert "(95% CI 7.9 to 13.9)" in text and "(95% CI 7.9 to 11.9)" not in text
    assert "These intervals are from the whole-procedure bootstrap" in text
    assert CONDITIONAL_WORDS not in text and "except" not in text
    # one group without: its interval is the analytic one and the sentence says so
    mixed = _event_study(procedure={"all", "grade_band:6-12"})
    text = narrative.summary_paragraph(mixed, None, rel_times=(1, 9))
    assert f"(95% CI 4.9 to 8.9; analytic, {CONDITIONAL_WORDS})" in text  # PK-5
    assert "(95% CI 7.9 to 13.9)" in text  # all, unmarked
    assert "except those marked analytic" in text
    # none: one sentence, no whole-procedure claim, no per-interval tag
    none = narrative.summary_paragraph(_event_study(procedure=set()), None, rel_times=(1, 9))
    assert f"These intervals are the analytic ones, {CONDITIONAL_WORDS}" in none
    assert "(95% CI 8.9 to 12.9)" in none and "whole-procedure bootstrap" not in none
    assert none.count(CONDITIONAL_WORDS) == 1


def test_the_crosswalk_prints_the_interval_the_report_leads_with():
    from types import SimpleNamespace

    es = _event_study(procedure={"all"})
    published = [
        SimpleNamespace(group="all", rel_time=9, estimate=12.0, approximate=False, difference=""),
        SimpleNamespace(group="cohort:2021-22", rel_time=9, estimate=12.0, approximate=False,
                        difference=""),
    ]  # fmt: skip
    table = narrative.crosswalk(es, published)
    assert table["interval"].tolist() == ["procedure", "conditional"]
    assert table[["ci_lower", "ci_upper"]].to_numpy().tolist() == [[7.9, 13.9], [7.9, 11.9]]
    assert table["published_in_ci"].tolist() == [True, False]


def test_the_limitations_read_the_calibrated_test_and_its_measured_power():
    from tests.test_calibration import families_only_calibration

    cal = families_only_calibration()
    fails = cal.diagnostics["pretrend_adjusted_main"].power["assumption_fails"]
    pretrends = pd.DataFrame(
        {"group": ["all", "all", "grade_band:PK-5"],
         "basis": ["adjusted", "adjusted", "adjusted"],
         "months": ["<=-12..-2", "-24..-13", "<=-12..-2"],
         "p_value": [0.5, 0.001, 0.2]}
    )  # fmt: skip
    es = _event_study(procedure=set())
    limits = " ".join(narrative.limitations(es, pretrends, None, calibration=cal))
    # the far test's rejection is not counted
    assert "The calibrated pre-trend test rejects parallel trends at the 5% level for 0 of 2" in (
        limits
    )
    assert f"it rejected in {fails.percent()} of the draws of the 2 families where parallel" in (
        limits
    )
    assert "no measured power against the failures built there" in limits
    assert "At least one pre-trend test" not in limits
    rejected = " ".join(
        narrative.limitations(es, pretrends.assign(p_value=0.01), None, calibration=cal)
    )
    assert "for 2 of 2 groups (All visited students, Grades PK-5)" in rejected


def test_a_headline_group_not_adjusted_with_its_own_slopes_is_named_with_its_months():
    es = _event_study(procedure=set()).assign(adjustment="group")
    limits = " ".join(narrative.limitations(es, None, None))
    assert "slopes" not in limits and "not regression-adjusted" not in limits
    assert narrative.describe_adjustment(es) == (
        "The outcome is regression-adjusted with each group's own slopes at every published month."
    )
    # grades 6-12 on the whole sample's slopes at both its months, the 2021-22 cohort
    # unadjusted at month 9, and a district (not a headline group) unadjusted at month 1
    district = es.loc[es["group"] == "all"].assign(group="district:D03")
    gaps = pd.concat([es, district], ignore_index=True)
    for group, months, kind in (
        ("grade_band:6-12", (1, 9), "pooled"),
        ("cohort:2021-22", (9,), "none"),
        ("district:D03", (1,), "none"),
    ):
        gaps.loc[gaps["group"].eq(group) & gaps["rel_time"].isin(months), "adjustment"] = kind
    limits = " ".join(narrative.limitations(gaps, None, None))
    assert "adjusted with the slopes of the whole matched sample" in limits
    assert "as everyone's does: Grades 6-12 at all 2 months." in limits, limits
    assert "Where even those slopes are missing, the outcome goes unadjusted" in limits
    assert (
        "(largest for students matched outside the caliper): School year 2021-22 at month 9."
        in (limits)
    )
    assert "District" not in limits.split("1 other group")[0]
    assert "1 other group of the subgroup analysis has months adjusted with the whole" in limits
    # unadjusted months only (the fallback off): one rule, no "even those"
    bare = gaps.assign(adjustment=gaps["adjustment"].replace("pooled", "none"))
    text = narrative.describe_adjustment(bare, groups=["grade_band:6-12"])
    assert text.startswith("Where a group's comparison students are too few for its own slopes")
    assert "even those" not in text and "Grades 6-12 at all 2 months." in text
    # a suppressed cell says nothing about adjustment
    hidden = gaps.assign(estimate=np.where(gaps["group"].eq("grade_band:6-12"), np.nan, 1.0))
    assert "Grades 6-12" not in " ".join(narrative.limitations(hidden, None, None))
    # the adjustment off: one sentence, no list
    off = " ".join(narrative.limitations(es.assign(adjustment="none"), None, None))
    assert "The outcome is not regression-adjusted in any month" in off
    assert "other group" not in off
    # a table from before the column existed says nothing
    assert narrative.describe_adjustment(_event_study(procedure=set())) == ""


def test_the_long_term_coverage_sentence_is_computed_from_its_counts():
    coverage = pd.DataFrame(
        {
            "cohort": ["2021-22", "summer-2021", "2022-23"],
            "n_visited": [400, 300, 60],
            "n_with_reference_year": [320, 300, 45],
            "n_new_in_visit_year": [80, 0, 15],
        }
    )
    text = narrative.describe_long_term_coverage(coverage, required=True)
    assert text.startswith("665 of the 760 matched visited students (88%)"), text
    assert "95 were new to the data" in text and "left out" in text
    assert "2022-23 cohort, 25%" in text, text  # the largest share, not the largest count
    kept = narrative.describe_long_term_coverage(coverage, required=False)
    assert "left out" not in kept and "later school years" in kept
    # a suppressed count leaves its cohort out of the sums, and the sentence says so
    hidden = coverage.astype({"n_new_in_visit_year": float})
    hidden.loc[2, "n_new_in_visit_year"] = np.nan
    text = narrative.describe_long_term_coverage(hidden, required=True)
    assert text.startswith("620 of the 700") and "1 cohort(s) with suppressed counts" in text


def test_the_long_term_sentence_marks_a_school_year_not_adjusted_with_its_own_slopes():
    rows = [
        ("all", "2021-22", "2022-23", 1, 3.0, "group"),
        ("all", "2021-22", "2023-24", 2, 2.0, "none"),
        ("all", "2020-21 spring", "2021-22", 1, 1.0, "pooled"),
    ]
    lt = pd.DataFrame(
        rows, columns=["group", "cohort", "school_year", "years_after", "estimate", "adjustment"]
    ).assign(outcome="attendance_rate")
    text = narrative.describe_long_term(lt)
    assert "2023-24: +2.0 pp (unadjusted)" in text
    assert "2021-22: +1.0 pp (pooled slopes)" in text
    assert "2022-23: +3.0 pp," in text
    assert text.count("(unadjusted)") == 1 and text.count("(pooled slopes)") == 1
    assert "too few for its own regression adjustment" in text
    # the adjustment off everywhere: nothing marked
    off = narrative.describe_long_term(lt.assign(adjustment="none"))
    assert "unadjusted" not in off and "pooled" not in off
    assert "unadjusted" not in narrative.describe_long_term(lt.drop(columns="adjustment"))


def test_the_long_term_sentence_names_its_students_when_a_reference_year_is_required():
    lt = pd.DataFrame(
        [("all", "2021-22", "2022-23", 1, 3.0)],
        columns=["group", "cohort", "school_year", "years_after", "estimate"],
    ).assign(outcome="attendance_rate")
    required = narrative.describe_long_term(lt, required=True)
    assert required.startswith(
        "Effects on the annual attendance rate in later school years, for the visited "
        "students with a record in the school year before their first visit's: "
    )
    assert narrative.describe_long_term(lt).startswith(
        "Effects on the annual attendance rate in later school years: "
    )
