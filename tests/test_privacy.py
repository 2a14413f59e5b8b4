import numpy as np
import pandas as pd

from leapresearch.analysis.base import BOOTSTRAP_COLUMNS
from leapresearch.config import PrivacyConfig
from leapresearch.publish.outputs import publishable
from leapresearch.publish.privacy import suppress

P = PrivacyConfig(min_count=6, min_group=20, min_treated=20)


def test_small_counts_and_small_groups_are_suppressed():
    t = pd.DataFrame(
        {
            "group": ["all", "district:A", "district:B"],
            "rel_time": [1, 1, 1],
            "estimate": [4.0, 9.0, 2.0],
            "std_error": [1.0, 3.0, 1.5],
            "ci_lower": [2.0, 3.0, -1.0],
            "ci_upper": [6.0, 15.0, 5.0],
            "n_treated": [500, 12, 40],
            "n_comparison": [1500, 36, 3],
        }
    )
    out = suppress(t, name="event_study", privacy=P)
    assert out["suppressed"].tolist() == [False, True, True]
    # the group of 12 treated has its estimate emptied
    assert np.isnan(out.loc[1, "estimate"]) and np.isnan(out.loc[1, "ci_upper"])
    # its count 12 (>= 6) is still shown; a count of 3 is not
    assert out.loc[1, "n_treated"] == 12
    assert pd.isna(out.loc[2, "n_comparison"])
    # 40 treated but 3 comparison students: the row is suppressed, so nothing is shown
    assert out.loc[2, ["estimate", "std_error", "ci_lower", "ci_upper"]].isna().all()
    assert out.loc[0, "n_treated"] == 500


def test_complementary_suppression_protects_a_part_recoverable_from_the_total():
    t = pd.DataFrame(
        {
            "cohort": ["c1"],
            "treated": [100],
            "matched": [97],
            "unmatched": [3],
            "unmatched_no_comparisons": [1],
            "unmatched_outside_caliper": [2],
            "unmatched_not_enrolled_or_no_data": [0],
            "comparisons": [280],
        }
    )
    out = suppress(t, name="matching_summary", privacy=P)
    assert pd.isna(out.loc[0, "unmatched"])
    # matched = treated - unmatched would reveal it: one more cell must go
    hidden = [c for c in ("treated", "matched") if pd.isna(out.loc[0, c])]
    assert hidden, "complementary suppression must hide matched or treated"


def test_zero_is_published_and_small_cohorts_vanish():
    t = pd.DataFrame(
        {
            "cohort": ["big", "tiny"],
            "treated": [200, 8],
            "matched": [200, 8],
            "unmatched": [0, 0],
            "comparisons": [600, 24],
        }
    )
    out = suppress(t, name="matching_summary", privacy=P)
    assert out.loc[0, "unmatched"] == 0
    assert out.loc[1, ["treated", "matched", "comparisons"]].isna().all()


def test_publishable_sorts_deterministically():
    t = pd.DataFrame(
        {"group": ["b", "a"], "rel_time": [2, 1], "estimate": [1.0, 2.0], "n_treated": [100, 100]}
    )
    out = publishable(t, "event_study", privacy=P)
    assert out["group"].tolist() == ["a", "b"]


def test_every_suppressed_row_has_empty_estimates():
    t = pd.DataFrame(
        {
            "group": ["all"] * 3,
            "rel_time": [1, 2, 3],
            "estimate": [4.0, 5.0, 6.0],
            "p_value": [0.01, 0.02, 0.03],
            "p_value_adjusted": [0.02, 0.04, 0.06],
            "n_treated": [400, 10, 300],
            "n_comparison": [900, 900, 4],
            "boot_std_error": [1.0, 2.0, 3.0],
            "band_lower": [1.5, 0.5, -0.5],
            "band_upper": [6.5, 9.5, 12.5],
        }
    )
    out = suppress(t, name="event_study", privacy=P)
    sup = out["suppressed"].to_numpy(bool)
    assert sup.tolist() == [False, True, True]
    for c in ("estimate", "p_value", "p_value_adjusted", *BOOTSTRAP_COLUMNS):
        assert out.loc[sup, c].isna().all() and out.loc[~sup, c].notna().all()


def test_bootstrap_columns_are_snapped_like_the_estimates():
    noisy = 1.1 + 2e-15  # floating noise below 12 significant digits
    t = pd.DataFrame(
        {
            "group": ["all"],
            "rel_time": [1],
            "estimate": [noisy],
            "n_treated": [400],
            **{c: [noisy] for c in BOOTSTRAP_COLUMNS},
        }
    )
    out = publishable(t, "event_study", privacy=P)
    assert noisy != 1.1
    assert (out[["estimate", *BOOTSTRAP_COLUMNS]] == 1.1).all(axis=None)


def test_robust_rows_are_suppressed_on_students_not_on_cohorts():
    """n_groups counts cohorts (1-5 is no privacy risk); n_treated counts students."""
    t = pd.DataFrame(
        {
            "group": ["all"] * 3,
            "rel_time": [8, 9, 12],
            "estimate": [27.6, 31.7, 40.0],
            "std_error": [6.3, 12.0, 9.0],
            "ci_lower": [15.3, 8.0, 22.0],
            "ci_upper": [40.0, 55.3, 58.0],
            "n_groups": [5, 4, 1],
            "n_treated": [475, 413, 11],
        }
    )
    out = suppress(t, name="robust_estimator", privacy=P)
    assert out["suppressed"].tolist() == [False, False, True]
    assert out["n_groups"].tolist() == [5, 4, 1]  # published: not a count of students
    assert out.loc[:1, "estimate"].tolist() == [27.6, 31.7]
    assert out.loc[2, ["estimate", "std_error", "ci_lower", "ci_upper"]].isna().all()
    shown = out.loc[out["suppressed"], "estimate"]
    assert shown.isna().all()  # no suppressed-but-shown row


def test_the_linearmodels_check_hides_the_estimates_of_small_cells():
    privacy = PrivacyConfig()
    check = pd.DataFrame(
        {
            "rel_time": [1, 2],
            "estimate_fast": [3.0, 4.0],
            "estimate_linearmodels": [3.0, 4.0],
            "std_error_fast": [1.0, 1.0],
            "std_error_linearmodels": [1.0, 1.0],
            "estimate_difference": [0.0, 0.0],
            "std_error_difference": [0.0, 0.0],
            "n_treated": [privacy.min_treated - 1, privacy.min_treated + 50],
        }
    )
    out = publishable(check, "linearmodels_check", privacy=privacy)
    assert out["suppressed"].tolist() == [True, False]
    estimates = [c for c in check.columns if c not in ("rel_time", "n_treated")]
    assert out.loc[0, estimates].isna().all()
    assert out.loc[1, "estimate_fast"] == 4.0


# ------------------------------------------------------------------ implied counts (shares)


def _balance(**shares) -> pd.DataFrame:
    """A balance table: one row per covariate, shares of 1,000 visited students."""
    rows = []
    for name, (p_t, p_c) in shares.items():
        rows.append(
            {
                "covariate": name,
                "used_in_matching": True,
                "type": "continuous" if name.startswith("rate") else "binary",
                "n_treated_after": 1000,
                "n_treated_before": 1000,
                "n_comparison_before": 30000,
                "n_comparison_after": 2000,
                "mean_treated": p_t,
                "mean_treated_before": p_t,
                "mean_comparison_before": p_c,
                "mean_comparison_after": p_c,
                "diff_before": p_t - p_c,
                "diff_after": p_t - p_c,
                "sd_treated": float(np.sqrt(p_t * (1 - p_t))),
                "smd_before": 0.1,
                "smd_after": 0.1,
                "wwc_effect_size": 0.1,
                "wwc_category": "satisfies with adjustment",
            }
        )
    return pd.DataFrame(rows)


SHARE_COLUMNS = [
    "mean_treated",
    "mean_treated_before",
    "mean_comparison_before",
    "mean_comparison_after",
    "diff_before",
    "diff_after",
    "sd_treated",
    "smd_before",
    "smd_after",
    "wwc_effect_size",
]


def test_a_share_that_is_one_to_five_students_is_not_published():
    """0.001 of 1,000 visited students is one student: the share and what gives it away go."""
    t = _balance(ell=(0.110, 0.13), swd=(0.004, 0.15), rate_m1=(0.003, 0.9), female=(0.996, 0.5))
    out = publishable(t, "balance", privacy=P).set_index("covariate")
    assert out.loc["swd", SHARE_COLUMNS].isna().all() and out.loc["swd", "suppressed"]
    # the complement: 0.996 of 1,000 leaves 4 students who are not female
    assert out.loc["female", SHARE_COLUMNS].isna().all() and out.loc["female", "suppressed"]
    assert out.loc["ell", "mean_treated"] == 0.11 and not out.loc["ell", "suppressed"]
    # a mean of a continuous variable (an attendance rate) is no share of students
    assert out.loc["rate_m1", "mean_treated"] == 0.003
    # what the reader needs is kept: the covariate, its WWC category and the group sizes
    assert out.loc["swd", "wwc_category"] == "satisfies with adjustment"
    assert out.loc["swd", "n_treated_after"] == 1000


def test_zero_students_is_published_like_a_zero_count():
    out = publishable(_balance(ell=(0.0, 0.0), swd=(1.0, 1.0)), "balance", privacy=P)
    assert out["mean_treated"].tolist() == [0.0, 1.0]
    assert not out["suppressed"].any()


def test_a_weighted_share_of_a_fraction_of_a_student_is_not_published():
    """Weighted comparison means: 0.000333 of 1,000 is a third of a student's weight."""
    t = _balance(ell=(0.110, 0.13))
    t["mean_comparison_after"] = 0.000333
    out = publishable(t, "balance", privacy=P)
    assert out.loc[0, "suppressed"] and np.isnan(out.loc[0, "mean_comparison_after"])


def test_a_share_of_a_group_below_min_group_is_not_published():
    t = _balance(ell=(0.5, 0.5))
    t["n_treated_after"] = t["n_treated_before"] = P.min_group - 1
    out = publishable(t, "balance", privacy=P)
    assert out.loc[0, "suppressed"] and np.isnan(out.loc[0, "mean_treated"])


def test_students_between_nested_groups_are_not_given_away():
    """30 of 1,000 candidates and 29 of 990 matched: one unmatched student has the trait."""
    t = _balance(ell=(29 / 990, 0.13))
    t["n_treated_after"] = 990
    t["mean_treated_before"] = 30 / 1000
    out = publishable(t, "balance", privacy=P)
    assert out.loc[0, "suppressed"] and np.isnan(out.loc[0, "mean_treated_before"])


def test_a_suppressed_category_cannot_be_recovered_from_the_others():
    """Race shares of 1,000 visited students; White (the reference) is 1 - the others."""

    def published(counts):
        t = _balance(**{k: (v / 1000, 0.2) for k, v in counts.items()})
        return publishable(t, "balance", privacy=P).set_index("covariate")

    counts = {"race_hispanic": 600, "race_black": 300, "race_asian": 50, "race_two": 40,
              "race_american": 4, "race_native": 0}  # fmt: skip
    # White 6: American (4) hidden; subtraction gives American + White = 10, not American
    out = published(counts)
    assert out["suppressed"].tolist() == [c == "race_american" for c in counts]
    # White 2 and no small category: subtraction would give White, so the smallest category
    # holding students (two or more races, 48) is hidden with it
    out = published({**counts, "race_two": 48, "race_american": 0})
    assert set(out.index[out["suppressed"]]) == {"race_two"}
    # White 1 and American 4: American + White = 5 is still small, one more goes
    out = published({**counts, "race_two": 45})
    assert set(out.index[out["suppressed"]]) == {"race_american", "race_two"}
    shown = out.loc[~out["suppressed"], "mean_treated"]
    rest = 1000 - 1000 * shown.sum()  # hidden categories and White together
    assert rest >= P.min_count


def test_the_reference_category_is_checked_even_when_no_category_is_small():
    """Gender: female 0.497, X 0.500 of 1,000 leaves 3 male students by subtraction."""
    t = _balance(female=(0.497, 0.5), gender_x=(0.500, 0.01))
    out = publishable(t, "balance", privacy=P)
    assert out["suppressed"].any()
    shown = out.loc[~out["suppressed"], "mean_treated"]
    assert 1000 - 1000 * shown.sum() >= P.min_count


def test_shares_of_notebook_tables_are_checked_against_their_counts():
    pool = pd.DataFrame(
        {
            "rel_time": [1, 2],
            "comparison_units": [200, 200],
            "visited_later_share": [0.01, 0.10],  # 2 units, 20 units
            "mean_censoring_weight": [1.0, 1.0],
            "max_censoring_weight": [1.0, 1.0],
        }
    )
    out = publishable(pool, "comparison_pool_summary", privacy=P)
    assert out["suppressed"].tolist() == [True, False]
    assert np.isnan(out.loc[0, "visited_later_share"]) and out.loc[1, "visited_later_share"] == 0.1
    by_year = pd.DataFrame(
        {
            "school_year": ["2020-21", "2021-22"],
            "n_students": [100, 100],
            "attendance_rate": [92.0, 93.0],
            "chronically_absent": [3.0, 20.0],
        }  # fmt: skip
    )
    out = publishable(by_year, "attendance_by_year", privacy=P)
    assert out["suppressed"].tolist() == [True, False]  # 3% of 100 is 3 students
    assert np.isnan(out.loc[0, "chronically_absent"]) and out.loc[1, "chronically_absent"] == 20


def test_implied_counts_lists_every_share_with_its_group():
    from leapresearch.publish.privacy import implied_counts

    t = _balance(ell=(0.110, 0.13), rate_m1=(0.5, 0.9))
    found = implied_counts(t)
    assert set(found["row"]) == {0}  # the binary row only
    treated = found.loc[found["share"] == "mean_treated"].iloc[0]
    assert treated["size"] == "n_treated_after" and round(treated["count"]) == 110
    assert round(treated["complement"]) == 890 and not treated["weighted"]
    assert found.loc[found["share"] == "mean_comparison_after", "weighted"].all()


def test_the_attack_finds_what_suppression_removes():
    """The generic attack of tests/disclosure.py recovers the counts of the raw table."""
    from tests.disclosure import attack_table

    t = _balance(ell=(0.110, 0.13), swd=(0.004, 0.15), race_native=(0.001, 0.002))
    raw = attack_table(t.round(6).astype(str), "raw", sizes=[1000])
    assert {f.where.split(",")[0] for f in raw} == {"row 1", "row 2"}
    safe = publishable(t, "balance", privacy=P)
    shown = safe.astype(object).where(safe.notna(), "").astype(str)
    assert attack_table(shown, "published", sizes=[1000]) == []


def test_the_long_term_coverage_hides_a_small_count_and_its_complement():
    """``long_term_coverage``: visited = with a reference year + new; a small count of new
    students would be given away by the other two, so one more cell goes with it."""
    from leapresearch.config import load_config

    table = pd.DataFrame(
        {
            "cohort": ["2020-21", "summer-2021"],
            "n_visited": [60, 320],
            "n_with_reference_year": [57, 320],
            "n_new_in_visit_year": [3, 0],
        }
    )
    out = suppress(table, name="long_term_coverage", privacy=load_config("demo").privacy)
    assert out.loc[0, ["n_with_reference_year", "n_new_in_visit_year"]].isna().all()
    assert out.loc[0, "n_visited"] == 60 and bool(out.loc[0, "suppressed"])
    assert out.loc[1, ["n_visited", "n_with_reference_year", "n_new_in_visit_year"]].tolist() == [
        320,
        320,
        0,
    ]
