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
