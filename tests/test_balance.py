"""Tests of leapresearch.design.balance: balance table and WWC categories."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from leapresearch.design.balance import (  # noqa: E402
    BALANCE_COLUMNS,
    balance_table,
    wwc_category,
)
from leapresearch.design.matching import MatchResult  # noqa: E402

# --------------------------------------------------------------------------------------
# a hand example
# --------------------------------------------------------------------------------------
# stack 1: treated students 1-4 (4 is unmatched), comparisons 10-14 with matching weights
# 0, 1.5, 1.0, 0.5, 0 (they sum to the 3 matched treated); stack 2 has comparisons only
# and must not enter the "before" comparison mean.
X_T = np.array([1.0, 2.0, 3.0, 6.0])
B_T = np.array([1.0, 1.0, 0.0, 1.0])
X_C = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
B_C = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
W_C = np.array([0.0, 1.5, 1.0, 0.5, 0.0])


def hand_example() -> tuple[pd.DataFrame, MatchResult]:
    cand = pd.DataFrame(
        {
            "stack": np.array([1] * 9 + [2] * 2, dtype=np.int64),
            "student": np.array([1, 2, 3, 4, 10, 11, 12, 13, 14, 10, 11], dtype=np.int64),
            "treated": [True] * 4 + [False] * 7,
            "x": np.r_[X_T, X_C, 100.0, 100.0],
            "b": np.r_[B_T, B_C, 1.0, 1.0],
            "z_extra": np.r_[X_T * 2, X_C * 2, 5.0, 5.0],
        }
    )
    matched = pd.DataFrame(
        {
            "stack": np.int64(1),
            "student": np.array([1, 2, 3, 11, 12, 13], dtype=np.int64),
            "treated": [True, True, True, False, False, False],
            "weight": [1.0, 1.0, 1.0, 1.5, 1.0, 0.5],
            "n_matches": [1, 2, 2, 2, 2, 1],
            "pscore": 0.0,
        }
    )
    empty = pd.DataFrame()
    result = MatchResult(
        matched=matched,
        pairs=empty,
        unmatched=empty,
        pscore=pd.Series(0.0, index=cand.index),
        summary=empty,
        caliper_logit=np.inf,
        settings={},
    )
    return cand, result


def wmean(x, w):
    return float(np.sum(w * x) / np.sum(w))


def wvar(x, w):
    m = wmean(x, w)
    return float(np.sum(w) / (np.sum(w) ** 2 - np.sum(w**2)) * np.sum(w * (x - m) ** 2))


def test_hand_example_continuous():
    cand, res = hand_example()
    row = balance_table(cand, res, covariates=["x"]).iloc[0]
    xm, xcm, wm = X_T[:3], X_C[W_C > 0], W_C[W_C > 0]
    assert row["type"] == "continuous"
    assert row["used_in_matching"]
    assert row["mean_treated_before"] == pytest.approx(3.0)  # (1+2+3+6)/4
    assert row["mean_treated"] == pytest.approx(2.0)
    assert row["mean_comparison_before"] == pytest.approx(3.0)  # (0+1+2+4+8)/5, stack 2 out
    assert row["mean_comparison_after"] == pytest.approx((1.5 * 1 + 2 + 0.5 * 4) / 3)
    s_t = np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)  # SD of all treated
    assert row["sd_treated"] == pytest.approx(s_t)
    assert row["smd_before"] == pytest.approx(0.0)
    assert row["diff_after"] == pytest.approx(2.0 - 5.5 / 3)
    assert row["smd_after"] == pytest.approx((2.0 - 5.5 / 3) / s_t)
    assert row["var_ratio_before"] == pytest.approx(np.var(X_T, ddof=1) / np.var(X_C, ddof=1))
    assert row["var_ratio_after"] == pytest.approx(np.var(xm, ddof=1) / wvar(xcm, wm))
    # WWC Hedges' g on the matched sample
    n1, n0 = 3, 3
    pooled = np.sqrt(((n1 - 1) * np.var(xm, ddof=1) + (n0 - 1) * wvar(xcm, wm)) / (n1 + n0 - 2))
    g = (1 - 3 / (4 * (n1 + n0) - 9)) * (2.0 - wmean(xcm, wm)) / pooled
    assert row["wwc_effect_size"] == pytest.approx(g)
    assert row["wwc_category"] == "satisfies with adjustment"  # g = 0.11
    assert 0.05 < abs(g) <= 0.25


def test_hand_example_binary_and_extra():
    cand, res = hand_example()
    tab = balance_table(cand, res, covariates=["b"], extra=["z_extra", "x"])
    tab = tab.set_index("covariate")
    row = tab.loc["b"]
    assert row["type"] == "binary"
    p_t = 3 / 4
    assert row["sd_treated"] == pytest.approx(np.sqrt(p_t * (1 - p_t)))
    assert row["diff_before"] == pytest.approx(p_t - 2 / 5)
    assert row["smd_before"] == pytest.approx((p_t - 2 / 5) / np.sqrt(p_t * (1 - p_t)))
    p1, p0 = 2 / 3, (1.5 * 0 + 1.0 * 1 + 0.5 * 1) / 3
    assert row["mean_comparison_after"] == pytest.approx(p0)
    assert row["diff_after"] == pytest.approx(p1 - p0)
    assert np.isnan(row["var_ratio_before"]) and np.isnan(row["var_ratio_after"])
    cox = (np.log(p1 / (1 - p1)) - np.log(p0 / (1 - p0))) / 1.65
    assert row["wwc_effect_size"] == pytest.approx(cox)
    assert row["wwc_category"] == "does not satisfy"  # ln(2) / 1.65 = 0.42
    assert not tab.loc["z_extra", "used_in_matching"] and not tab.loc["x", "used_in_matching"]
    # z_extra = 2 x: standardised statistics are scale invariant, raw ones are not
    for col in ("smd_before", "smd_after", "var_ratio_before", "var_ratio_after"):
        assert tab.loc["z_extra", col] == pytest.approx(tab.loc["x", col], abs=1e-12)
    assert tab.loc["z_extra", "diff_after"] == pytest.approx(2 * tab.loc["x", "diff_after"])
    assert list(balance_table(cand, res, covariates=["b"]).columns) == list(BALANCE_COLUMNS)


def test_cox_index_undefined_at_zero_or_one():
    cand, res = hand_example()
    cand = cand.assign(never=0.0, rare=np.r_[np.zeros(4), 0, 1.0, 0, 0, 0, 0, 0])
    tab = balance_table(cand, res, covariates=["never", "rare"]).set_index("covariate")
    assert tab.loc["never", "wwc_effect_size"] == 0.0
    assert tab.loc["never", "wwc_category"] == "satisfies"
    assert tab.loc["never", "smd_after"] == 0.0  # s* = 0 and no difference
    assert np.isnan(tab.loc["rare", "wwc_effect_size"])  # p_treated = 0, p_comparison > 0
    assert tab.loc["rare", "wwc_category"] == "not computable"
    assert np.isnan(tab.loc["rare", "smd_after"])  # s* = 0 but a difference
    assert tab.loc["rare", "diff_after"] == pytest.approx(-0.5)


def test_wwc_category_thresholds():
    es = np.array([0.0, 0.05, -0.05, 0.0501, 0.25, -0.2501, 1.3, np.nan])
    assert wwc_category(es).tolist() == [
        "satisfies",
        "satisfies",
        "satisfies",
        "satisfies with adjustment",
        "satisfies with adjustment",
        "does not satisfy",
        "does not satisfy",
        "not computable",
    ]
    assert wwc_category(0.01).tolist() == ["satisfies"]


def test_balance_table_validation():
    cand, res = hand_example()
    with pytest.raises(ValueError, match="nope"):
        balance_table(cand, res, covariates=["x", "nope"])
    with pytest.raises(ValueError, match="both"):
        balance_table(cand, res, covariates=["x"], extra=["x"])
    other = MatchResult(
        matched=res.matched.assign(student=res.matched["student"] + 1000),
        pairs=res.pairs,
        unmatched=res.unmatched,
        pscore=res.pscore,
        summary=res.summary,
        caliper_logit=res.caliper_logit,
        settings={},
    )
    with pytest.raises(ValueError, match="not a candidate row"):
        balance_table(cand, other, covariates=["x"])
    with pytest.raises(ValueError, match="missing values"):
        balance_table(cand.assign(x=np.nan), res, covariates=["x"])
