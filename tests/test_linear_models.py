"""The stacked event study fitted by linearmodels equals the fast in-house estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linearmodels.iv.absorbing import AbsorbingLS

from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.linear_models import (
    FE_METHOD,
    compare_estimators,
    linearmodels_event_study,
)
from leapresearch.publish.narrative import describe_linearmodels_check
from tests.test_event_study import make_panel


@pytest.mark.parametrize(
    ("seed", "window", "cluster", "weight"),
    [
        (1, (-4, 4), "student", "weight"),
        (2, None, "student", "weight"),
        (3, (-3, 5), "school", "weight"),
        (5, (-4, 4), "student", None),
    ],
)
def test_linearmodels_fit_equals_the_fast_estimator(seed, window, cluster, weight):
    df = make_panel(seed)
    fast = event_study(df, window=window, cluster=cluster, weight=weight)
    lib = linearmodels_event_study(df, window=window, cluster=cluster, weight=weight)
    assert lib.fe_method == FE_METHOD
    check = compare_estimators(fast, lib)
    assert check["estimate_difference"].max() < 1e-8
    assert check["std_error_difference"].max() < 1e-8
    # the results are not the same object: the coefficients are linearmodels' own
    assert lib.coefficients is not fast.coefficients
    assert "agree" in describe_linearmodels_check(check)


def test_linearmodels_check_counts_units_in_full_when_not_nested_in_clusters():
    """Students who change school: their units are not nested in the school clusters, so
    both implementations count every unit level in K (and the check is no tautology: the
    linearmodels side computes G, N, K and the correction without the fast estimator)."""
    df = make_panel(7, school_moves=True)
    assert (df.groupby("unit")["school"].nunique() > 1).any()
    fast = event_study(df, window=(-4, 4), cluster="school")
    lib = linearmodels_event_study(df, window=(-4, 4), cluster="school")
    check = compare_estimators(fast, lib)
    assert check["estimate_difference"].max() < 1e-8
    assert check["std_error_difference"].max() < 1e-8
    # units nested in student clusters count once: K differs by (units - 1)
    by_student = event_study(df, window=(-4, 4), cluster="student")
    assert fast.df_k - by_student.df_k == df["unit"].nunique() - 1


def test_linearmodels_debiased_counts_nested_unit_effects():
    """Which correction matches: linearmodels' debiased=True counts every unit level.

    The fast estimator (fixest convention) has K = terms + stack-month cells; linearmodels'
    debiased=True has K = terms + units + cells - 1, so its errors are larger by
    sqrt((N - K_fixest) / (N - K_linearmodels)) exactly.
    """
    df = make_panel(1)
    fast = event_study(df, window=(-4, 4))
    rel = df["rel_time"].clip(-4, 4)
    tr = df["treated"].to_numpy() == 1
    x = {f"r{r}": (tr & (rel == r)).astype(float) for r in fast.coefficients.index}
    import pandas as pd

    absorb = pd.DataFrame(
        {
            "unit": pd.Categorical(df["unit"]),
            "cell": pd.Categorical(df["stack"] * 1000 + df["time"] % 1000),
        }
    )
    fit = AbsorbingLS(df["attendance_pp"], pd.DataFrame(x), absorb=absorb, weights=df["weight"])
    res = fit.fit(cov_type="clustered", clusters=df["student"].to_numpy(), debiased=True)
    n, n_units = fast.nobs, df["unit"].nunique()
    k_lm = fast.df_k + n_units - 1
    expected = np.sqrt((n - fast.df_k) / (n - k_lm))
    ratio = np.sqrt(np.diag(res.cov.to_numpy())) / fast.std_errors.to_numpy()
    np.testing.assert_allclose(ratio, expected, rtol=1e-7)
    assert expected > 1.01  # the conventions differ visibly: the choice matters


def test_disagreement_is_reported():
    df = make_panel(1)
    fast = event_study(df, window=(-4, 4))
    check = compare_estimators(fast, fast)
    check.loc[0, "estimate_difference"] = 0.01
    assert "DISAGREE" in describe_linearmodels_check(check)


def test_every_run_writes_the_linearmodels_check_beside_the_event_study(run_a):
    check = pd.read_csv(run_a / "tables" / "linearmodels_check.csv")
    shown = check[~check["suppressed"]]
    assert len(shown) >= 10
    assert shown["estimate_difference"].max() < 1e-8
    assert shown["std_error_difference"].max() < 1e-8
    # the fast column is the published event study of all visited students
    es = pd.read_csv(run_a / "tables" / "event_study.csv")
    es = es[es["group"] == "all"].set_index("rel_time")
    shown = shown.set_index("rel_time")
    np.testing.assert_allclose(shown["estimate_fast"], es.loc[shown.index, "estimate"])
    assert (shown["n_treated"] == es.loc[shown.index, "n_treated"]).all()
