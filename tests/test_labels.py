"""The vocabulary of codes to words, the reading order of groups, and rounding once."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from leapresearch.data.panel import RACE_DUMMIES
from leapresearch.publish import labels
from leapresearch.publish.tables import headline_table, readable, table_html


def test_groups_in_words_and_in_reading_order():
    codes = [
        "visits:4+",
        "cohort:2022-23",
        "district:Springfield",
        "cohort:summer-2021",
        "grade_band:6-12",
        "cohort:2021-22",
        "grade_band:PK-5",
        "all",
        "visits:1",
        "grade_band:9-12",
        "cohort:2020-21",
        "grade_band:6-8",
        "visits:2-3",
    ]
    assert labels.sort_groups(codes) == [
        "all",
        "grade_band:PK-5",
        "grade_band:6-8",
        "grade_band:9-12",
        "grade_band:6-12",
        "cohort:2020-21",
        "cohort:summer-2021",
        "cohort:2021-22",
        "cohort:2022-23",
        "district:Springfield",
        "visits:1",
        "visits:2-3",
        "visits:4+",
    ]
    assert labels.group_label("grade_band:PK-5") == "Grades PK-5"
    assert labels.group_label("cohort:summer-2021") == "Summer 2021"
    assert labels.group_label("cohort:2021-22") == "School year 2021-22"
    # a district name is taken from the code, whatever it is
    assert labels.group_label("district:Springfield") == "Springfield"
    assert labels.group_label("visits:1") == "1 completed visit"
    assert labels.group_label("meal_status:not_eligible").startswith("Not eligible")
    for code in codes:
        assert ":" not in labels.group_label(code) or code.startswith("visitor")


def test_covariates_in_words():
    assert labels.covariate_label("pre_rate_m3") == "Attendance rate 3 months before"
    assert labels.covariate_label("pre_missing_m11") == "No attendance data 11 months before"
    assert labels.covariate_label("gender_x") == "Gender X (non-binary)"
    # every race dummy names the contract category it stands for
    for race, code in RACE_DUMMIES.items():
        assert labels.covariate_label(code) == race
    assert labels.covariate_label("race_american") == "American Indian or Alaska Native"
    assert labels.outcome_label("chronically_absent") == "Chronically absent"


def test_numbers_are_rounded_once_from_the_stored_value():
    # every print starts from the value as the CSV stores it (six decimals): a reader who
    # opens the CSV and rounds gets the printed number, whichever page printed it
    rng = np.random.default_rng(1)
    for x in np.concatenate([rng.normal(0, 10, 500), [10.8499996, 10.8500004, -0.04999996]]):
        stored = float(f"{x:.6f}")
        assert labels.fmt(x) == labels.fmt(stored) == f"{stored:.1f}".replace("-0.0", "0.0")
    assert labels.fmt(10.8499996) == labels.fmt(10.85)
    assert labels.fmt(-0.04) == "0.0"  # no negative zero
    assert labels.fmt(np.nan) == labels.SUPPRESSED
    assert labels.fmt(None) == labels.SUPPRESSED
    assert labels.fmt(2.0, signed=True) == "+2.0"
    assert labels.fmt_interval(1.25, np.nan) == labels.SUPPRESSED


def _event_study() -> pd.DataFrame:
    rows = []
    for g in ("cohort:summer-2021", "all", "cohort:2020-21", "grade_band:PK-5", "district:X"):
        for m in (1, 9):
            rows.append(
                {
                    "group": g,
                    "rel_time": m,
                    "estimate": np.nan if g == "cohort:2020-21" else 2.0 + m,
                    "std_error": 1.0,
                    "ci_lower": np.nan if g == "cohort:2020-21" else 0.04 + m,
                    "ci_upper": np.nan if g == "cohort:2020-21" else 3.96 + m,
                    "n_treated": 30.0,
                    "n_comparison": 90.0,
                    "suppressed": g == "cohort:2020-21",
                }
            )
    return pd.DataFrame(rows)


def test_headline_table_order_intervals_and_counts():
    head = headline_table(_event_study(), rel_times=(1, 9))
    assert head["group"].tolist() == [
        "all",
        "grade_band:PK-5",
        "cohort:2020-21",
        "cohort:summer-2021",
    ]
    row = head.iloc[0]
    assert (row["est_9"], row["lo_9"], row["hi_9"], row["n_treated"]) == (11.0, 9.04, 12.96, 30)


def test_tables_render_in_full_without_index_and_with_the_suppression_symbol():
    es = _event_study()
    es.loc[(es["group"] == "all") & (es["rel_time"] == 1), "std_error"] = np.nan
    frame, suppressed, missing = readable(es)
    assert suppressed and missing  # a flagged row shows the symbol, another empty cell a dash
    assert (frame == labels.SUPPRESSED).sum().sum() == 6  # the flagged rows' three numbers
    assert frame["Std. error"].iloc[0] == labels.NOT_AVAILABLE
    assert "Suppressed" not in frame.columns and "suppressed" not in frame.columns
    assert frame.iloc[0, 0] == "All visited students"  # reading order, words
    assert frame["Visited students"].iloc[0] == "30"  # counts print as integers
    doc = table_html(es, collapse_rows=5, csv="../tables/event_study.csv")
    assert doc.startswith("<details") and "../tables/event_study.csv" in doc
    assert doc.count("<tr>") == len(es) + 1  # every row, plus the header
    assert labels.SUPPRESSED_NOTE in doc.replace("&#x27;", "'")
    assert "<th></th>" not in doc  # no index column


def test_the_headline_diagnostic_column_and_the_summary_read_the_same_calibrated_test():
    # issue 25: the headline table and the summary must read the same tests; issue 23,
    # item 4: only those whose size the validation measured near nominal (the adjusted
    # main-window test), printed with that size, never the over-sized ones as evidence
    from leapresearch.publish.calibration import load_calibration
    from leapresearch.publish.narrative import summary_paragraph
    from leapresearch.publish.tables import headline_html

    pretrends = pd.DataFrame(
        {
            "group": ["all"] * 4 + ["grade_band:PK-5"] * 2,
            "basis": ["adjusted", "unadjusted", "unadjusted", "adjusted", "adjusted", "x"],
            "months": ["<=-12..-2", "-12..-2", "-24..-13", "-24..-13", "<=-12..-2", "y"],
            "statistic": [0.6, 2.5, 1.1, 1.9, 2.2, np.nan],
            "df": [11, 11, 12, 12, 11, np.nan],
            "p_value": [0.84, 0.002, 0.3, 0.04, 0.01, np.nan],
            "n_treated": [30] * 4 + [20] * 2,
        }
    )
    from tests.test_calibration import families_only_calibration, no_test_calibration

    es = _event_study()
    # the packaged record (the fifth freeze's families, their pre-trend tests re-run by the
    # sixth freeze on the untreated rows, each at the demo's size and four times it) reads
    # the unadjusted main-window test only (the adjusted one rejects in 32-54% of draws
    # where the design works at four times the demo); it is what a table gets by default
    packaged = load_calibration()
    assert packaged.calibrated() == ["pretrend_unadjusted_main"]
    assert packaged.diagnostics["pretrend_adjusted_main"].oversized_elsewhere()
    default = headline_table(es, rel_times=(1, 9), pretrends=pretrends).set_index("group")
    assert [c for c in default.columns if c.startswith("p_")] == ["p_pretrend_unadjusted_main"]
    assert default.loc["all", "p_pretrend_unadjusted_main"] == 0.002
    assert np.isnan(default.loc["grade_band:PK-5", "p_pretrend_unadjusted_main"])  # no such test
    # a record that reads no test: no diagnostic column, each test with its sizes
    silent = no_test_calibration()
    none = headline_table(es, rel_times=(1, 9), pretrends=pretrends, calibration=silent)
    assert not [c for c in none.columns if c.startswith("p_")]
    page = headline_html(none, rel_times=(1, 9), calibration=silent)
    main = silent.diagnostics["pretrend_adjusted_main"]
    assert f"{main.words}: {main.size_summary()}" in html.unescape(page)
    assert "p = 0.840" not in page
    cal = families_only_calibration()  # the families' own sizes: the main test is read
    assert cal.calibrated() == ["pretrend_adjusted_main"]
    head = headline_table(es, rel_times=(1, 9), pretrends=pretrends, calibration=cal)
    head = head.set_index("group")
    assert [c for c in head.columns if c.startswith("p_")] == ["p_pretrend_adjusted_main"]
    assert head.loc["all", "p_pretrend_adjusted_main"] == 0.84  # not the 0.002 of another
    assert head.loc["grade_band:PK-5", "p_pretrend_adjusted_main"] == 0.01
    assert np.isnan(head.loc["cohort:2020-21", "p_pretrend_adjusted_main"])  # no test
    page = headline_html(head.reset_index(), rel_times=(1, 9), calibration=cal)
    assert "p = 0.840" in page and "p = 0.010, rejects at 5%" in page and "no test" in page
    assert "p = 0.002" not in page and "0.040" not in page  # uncalibrated tests leak nowhere
    size = cal.diagnostics["pretrend_adjusted_main"].size.percent()
    assert f"rejected in {size} of draws where the design is right" in page
    for name in cal.uncalibrated():  # named only with their measured size, as left out
        d = cal.diagnostics[name]
        assert f"{d.words}: {d.size_summary()}" in html.unescape(page)
    summary = summary_paragraph(es, pretrends, rel_times=(1, 9), calibration=cal)
    assert "(months <=-12..-2, notebook 03): p = 0.840, it does not reject" in summary
    assert f"this test rejected in {size} of draws where the design is right" in summary
    assert "already differed" not in summary and "0.002" not in summary
    assert "tests reject" not in summary
    # a calibrated rejection is read as one
    bad = pretrends.assign(p_value=[0.001, 0.5, 0.5, 0.5, 0.5, np.nan])
    assert "p = 0.001, it rejects at the 5% level" in summary_paragraph(
        es, bad, rel_times=(1, 9), calibration=cal
    )
    strict = headline_html(
        headline_table(
            es, rel_times=(1, 9), pretrends=pretrends, alpha=0.001, calibration=cal
        ).reset_index(),
        rel_times=(1, 9),
        alpha=0.001,
        calibration=cal,
    )
    assert "rejects" not in strict


def test_a_published_table_prints_whole_in_words_at_its_precision():
    # issue 25: a notebook's plain-text output (what a text diff, a terminal and nbval see)
    # was the raw frame: six decimals, e-notation p-values, "[128 rows x 12 columns]"
    from leapresearch import notebook as nb
    from leapresearch.config import load_config

    es = pd.concat([_event_study()] * 20, ignore_index=True)  # longer than pandas' display
    es["p_value"] = 1.234e-7
    text = repr(nb.show(es, "event_study", load_config("demo")))
    lines = text.splitlines()
    assert "rows x" not in text and "..." not in text
    assert lines[0].split()[:2] == ["Group", "Months"]  # headings in words
    assert "All visited students" in text and "all " not in text  # codes in words
    assert len([ln for ln in lines if "All visited students" in ln]) == len(
        es.loc[es["group"] == "all"]
    )  # every row
    assert "e-07" not in text and "1.234" not in text  # p-values at their precision
    assert all(ln.rstrip().endswith("0.000") for ln in lines[1:] if "visited" in ln)
