"""Tests of leapresearch.design.matching: propensity scores and nearest-neighbour matching."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit

from leapresearch.design.balance import balance_table
from leapresearch.design.matching import (
    UNMATCHED_REASONS,
    MatchResult,
    PropensityFitWarning,
    match,
    nearest_neighbor_match,
    propensity_scores,
)

STACKS = (20211, 20213, 20216)
COVS = [
    "pre_rate_m1",
    "pre_rate_m2",
    "pre_rate_m3",
    "prior_year_rate",
    "female",
    "race_black",
    "race_hispanic",
    "meal_free",
    "swd",
]


def make_candidates(n_students: int = 14_000, seed: int = 1) -> pd.DataFrame:
    """Synthetic stacked candidates: 3 stacks x 2 districts x 2 grade bands.

    Every student has a latent attendance level; in each stack the probability of being
    visited follows a known logit that favours low recent attendance, free meals, SWD and
    Black students. A visited student appears once (treated, in its visit stack); never
    visited students appear in every stack as comparisons.
    """
    rng = np.random.default_rng(seed)
    n = n_students
    district = rng.choice(np.array(["A", "B"]), n, p=[0.6, 0.4])
    band = rng.choice(np.array(["PK-5", "6-8"]), n)
    female = rng.random(n) < 0.5
    black = rng.random(n) < 0.3
    hisp = (~black) & (rng.random(n) < 0.4)
    meal = rng.random(n) < 0.5
    swd = rng.random(n) < 0.15
    level = np.clip(0.93 - 0.03 * meal - 0.03 * swd + rng.normal(0, 0.04, n), 0.5, 1)
    visit_stack = np.full(n, -1)
    frames = []
    for si, s in enumerate(STACKS):
        months = [np.clip(level + rng.normal(0, 0.03, n), 0, 1) for _ in range(3)]
        prior = np.clip(level + rng.normal(0, 0.02, n), 0, 1)
        logit = (
            -4.3
            - 25 * (months[0] - 0.9)
            - 10 * (prior - 0.9)
            + 0.4 * meal
            + 0.5 * swd
            + 0.3 * black
            + 0.3 * (district == "B")
            - 0.2 * (band == "6-8")
        )
        visited = (rng.random(n) < expit(logit)) & (visit_stack < 0)
        visit_stack[visited] = si
        frames.append(
            pd.DataFrame(
                {
                    "stack": np.int64(s),
                    "student": np.arange(n, dtype=np.int64),
                    "si": si,
                    "district": district,
                    "grade_band": band,
                    "pre_rate_m1": months[0],
                    "pre_rate_m2": months[1],
                    "pre_rate_m3": months[2],
                    "prior_year_rate": prior,
                    "female": female.astype(float),
                    "race_black": black.astype(float),
                    "race_hispanic": hisp.astype(float),
                    "meal_free": meal.astype(float),
                    "swd": swd.astype(float),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    v = visit_stack[df["student"].to_numpy()]
    si = df["si"].to_numpy()
    keep = (v < 0) | (v == si)
    df = df.loc[keep].drop(columns="si").reset_index(drop=True)
    df["treated"] = v[keep] == si[keep]
    return df


def tiny_frame(seed: int, n_t: int = 15, n_c: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    """Small frame with continuous random logits (no ties) in 2 stacks x 2 districts."""
    rng = np.random.default_rng(seed)
    n = n_t + n_c
    frame = pd.DataFrame(
        {
            "stack": rng.choice(np.array([1, 2], dtype=np.int64), n),
            "student": rng.permutation(n).astype(np.int64) + 100,
            "treated": np.r_[np.ones(n_t, bool), np.zeros(n_c, bool)],
            "district": rng.choice(np.array(["A", "B"]), n),
            "grade_band": "PK-5",
        }
    )
    pscore = pd.Series(rng.normal(0, 1, n) + 0.8 * frame["treated"], index=frame.index)
    return frame, pscore


@pytest.fixture(scope="module")
def candidates() -> pd.DataFrame:
    return make_candidates()


@pytest.fixture(scope="module")
def result(candidates: pd.DataFrame) -> MatchResult:
    return match(candidates, covariates=COVS)


@pytest.fixture(scope="module")
def result_norepl(candidates: pd.DataFrame) -> MatchResult:
    return match(candidates, covariates=COVS, replace=False)


def with_strata(pairs: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    cols = ["stack", "student", "district", "grade_band", "treated"]
    info = candidates[cols]
    out = pairs.merge(
        info.rename(columns={"student": "treated_student"}), on=["stack", "treated_student"]
    )
    return out.merge(
        info.rename(columns={"student": "comparison_student"}),
        on=["stack", "comparison_student"],
        suffixes=("_t", "_c"),
    )


# --------------------------------------------------------------------------------------
# balance, strata, caliper, ratio, weights on the synthetic design
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["result", "result_norepl"])
def test_matching_balances_covariates(candidates, which, request):
    res = request.getfixturevalue(which)
    bal = balance_table(candidates, res, covariates=COVS).set_index("covariate")
    # selection on attendance and demographics makes groups differ before matching ...
    assert (bal.loc[["pre_rate_m1", "prior_year_rate"], "smd_before"].abs() > 1.0).all()
    assert (bal.loc[["meal_free", "swd"], "smd_before"].abs() > 0.3).all()
    # ... and matching removes it for every covariate
    assert (bal["smd_after"].abs() < 0.1).all(), bal["smd_after"]
    assert bal["smd_after"].abs().mean() < 0.05


def test_pairs_share_exact_strata_and_comparisons_are_untreated(candidates, result):
    pairs = with_strata(result.pairs, candidates)
    assert len(pairs) == len(result.pairs)
    assert (pairs["district_t"] == pairs["district_c"]).all()
    assert (pairs["grade_band_t"] == pairs["grade_band_c"]).all()
    assert pairs["treated_t"].all()
    assert not pairs["treated_c"].any()


def test_caliper_is_sd_of_logit_and_respected(candidates, result):
    ps = result.pscore
    assert result.caliper_logit == pytest.approx(0.2 * np.std(ps.to_numpy(), ddof=1))
    key = pd.Series(ps.to_numpy(), index=pd.MultiIndex.from_frame(candidates[["stack", "student"]]))
    p = result.pairs
    d = np.abs(
        key.loc[list(zip(p["stack"], p["treated_student"], strict=True))].to_numpy()
        - key.loc[list(zip(p["stack"], p["comparison_student"], strict=True))].to_numpy()
    )
    np.testing.assert_allclose(p["distance"].to_numpy(), d)
    assert (p["distance"] <= result.caliper_logit).all()
    # the caliper binds in this design: some treated are unmatched for it
    assert (result.unmatched["reason"] == "outside_caliper").sum() > 0


def test_ratio_at_most_k_and_exactly_k_when_abundant(candidates, result):
    per_treated = result.pairs.groupby(["stack", "treated_student"]).size()
    assert per_treated.max() <= 3
    assert (per_treated > 0).all()
    free = match(candidates, covariates=COVS, caliper=None, ratio=4)
    counts = free.pairs.groupby(["stack", "treated_student"]).size()
    assert len(counts) == int(candidates["treated"].sum())
    assert (counts == 4).all()
    assert free.unmatched.empty
    assert free.caliper_logit == np.inf


def test_without_replacement_uses_each_comparison_once_per_stack(result_norepl):
    p = result_norepl.pairs
    assert not p.duplicated(["stack", "comparison_student"]).any()
    assert p.groupby(["stack", "treated_student"]).size().max() <= 3
    m = result_norepl.matched
    assert (m.loc[~m["treated"], "n_matches"] == 1).all()
    # ranks are ordered by distance within each treated student
    diffs = p.groupby(["stack", "treated_student"])["distance"].diff().dropna()
    assert (diffs >= 0).all()


@pytest.mark.parametrize("which", ["result", "result_norepl"])
def test_weights_att(which, request):
    res = request.getfixturevalue(which)
    m = res.matched
    t, c = m[m["treated"]], m[~m["treated"]]
    assert (t["weight"] == 1.0).all()
    sums = m.groupby(["stack", "treated"])["weight"].sum().unstack()
    np.testing.assert_allclose(sums[True].to_numpy(), sums[False].to_numpy())
    # comparison weight = sum over served treated of 1/k_i
    k = res.pairs.groupby(["stack", "treated_student"]).size().rename("k").reset_index()
    p = res.pairs.merge(k, on=["stack", "treated_student"])
    expected = (1.0 / p["k"]).groupby([p["stack"], p["comparison_student"]]).sum()
    got = c.set_index(["stack", "student"])["weight"]
    pd.testing.assert_series_equal(
        got.sort_index(), expected.sort_index(), check_names=False, check_index_type=False
    )
    served = p.groupby(["stack", "comparison_student"]).size()
    np.testing.assert_array_equal(
        c.set_index(["stack", "student"])["n_matches"].sort_index().to_numpy(),
        served.sort_index().to_numpy(),
    )


def test_summary_accounts_for_every_treated(candidates, result):
    s = result.summary.set_index("stack")
    n_t = candidates.groupby("stack")["treated"].sum()
    np.testing.assert_array_equal(s["n_treated"].to_numpy(), n_t.to_numpy())
    assert (s["n_matched"] + s["n_unmatched"] == s["n_treated"]).all()
    um = result.unmatched.groupby("stack").size().reindex(s.index, fill_value=0)
    np.testing.assert_array_equal(s["n_unmatched"].to_numpy(), um.to_numpy())
    pairs_per_stack = result.pairs.groupby("stack").size()
    np.testing.assert_array_equal(s["n_comparison_rows"].to_numpy(), pairs_per_stack.to_numpy())
    m = result.matched
    np.testing.assert_array_equal(
        s["n_comparisons"].to_numpy(), m[~m["treated"]].groupby("stack").size().to_numpy()
    )
    matched_t = set(zip(m.loc[m["treated"], "stack"], m.loc[m["treated"], "student"], strict=True))
    unmatched_t = set(zip(result.unmatched["stack"], result.unmatched["student"], strict=True))
    all_t = candidates.loc[candidates["treated"], ["stack", "student"]]
    assert matched_t | unmatched_t == set(zip(all_t["stack"], all_t["student"], strict=True))
    assert not matched_t & unmatched_t


# --------------------------------------------------------------------------------------
# brute-force checks of the nearest-neighbour choice
# --------------------------------------------------------------------------------------


def brute_force_with_replacement(frame, pscore, k, caliper):
    rows = []
    x = pscore.to_numpy()
    tr = frame["treated"].to_numpy()
    for i in np.flatnonzero(tr):
        same = (
            (frame["stack"] == frame["stack"].iloc[i])
            & (frame["district"] == frame["district"].iloc[i])
            & ~frame["treated"]
        ).to_numpy()
        js = np.flatnonzero(same)
        d = np.abs(x[js] - x[i])  # all pairwise distances in the stratum
        keep = d <= caliper
        js, d = js[keep], d[keep]
        if js.size == 0:
            continue
        kth = np.sort(d)[min(k, d.size) - 1]  # Abadie-Imbens: every tie of the k-th is kept
        for j, dj in zip(js[d <= kth], d[d <= kth], strict=True):
            rank = 1 + int((d < dj).sum())  # competition rank
            rows.append(
                (frame["stack"].iloc[i], frame["student"].iloc[i], frame["student"].iloc[j], rank)
            )
    return sorted(rows)


def brute_force_greedy(frame, pscore, k, caliper, m_order):
    x = pscore.to_numpy()
    tr = frame["treated"].to_numpy()
    strat = list(zip(frame["stack"], frame["district"], strict=True))
    t_idx = np.flatnonzero(tr)
    c_idx = np.flatnonzero(~tr)
    d0 = np.array(
        [
            min([abs(x[i] - x[j]) for j in c_idx if strat[j] == strat[i]], default=np.inf)
            for i in t_idx
        ]
    )
    prio = {"largest": -x[t_idx], "smallest": x[t_idx], "closest": d0, "farthest": -d0}[m_order]
    order = t_idx[np.argsort(prio, kind="stable")]
    used: set[int] = set()
    alive = set(t_idx.tolist())
    rows = []
    for r in range(k):
        got = set()
        for i in order:
            if i not in alive:
                continue
            cands = [j for j in c_idx if strat[j] == strat[i] and j not in used]
            if not cands:
                continue
            j = min(cands, key=lambda j: abs(x[i] - x[j]))
            if abs(x[i] - x[j]) > caliper:
                continue
            used.add(j)
            got.add(i)
            rows.append(
                (frame["stack"].iloc[i], frame["student"].iloc[i], frame["student"].iloc[j], r + 1)
            )
        alive = got
    return sorted(rows)


def as_tuples(pairs: pd.DataFrame) -> list[tuple]:
    cols = ["stack", "treated_student", "comparison_student", "rank"]
    return sorted(map(tuple, pairs[cols].itertuples(index=False, name=None)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbours_match_brute_force_with_replacement(seed, k):
    frame, ps = tiny_frame(seed)
    res = nearest_neighbor_match(frame, ps, exact=("stack", "district"), ratio=k, caliper=0.3)
    assert as_tuples(res.pairs) == brute_force_with_replacement(frame, ps, k, res.caliper_logit)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("m_order", ["largest", "smallest", "closest", "farthest"])
def test_greedy_without_replacement_matches_sequential_algorithm(seed, m_order):
    frame, ps = tiny_frame(seed, n_t=20, n_c=45)
    res = nearest_neighbor_match(
        frame, ps, exact=("stack", "district"), ratio=2, caliper=0.5, replace=False, m_order=m_order
    )
    expected = brute_force_greedy(frame, ps, 2, res.caliper_logit, m_order)
    assert as_tuples(res.pairs) == expected


# --------------------------------------------------------------------------------------
# unmatched reasons, ties, determinism
# --------------------------------------------------------------------------------------


def reason_frame() -> tuple[pd.DataFrame, pd.Series]:
    rows = [
        # stack 1, district A: a matchable treated and a far-away treated
        (1, 1, True, "A", 0.00),
        (1, 2, True, "A", 9.00),
        (1, 10, False, "A", 0.05),
        (1, 11, False, "A", 0.10),
        (1, 12, False, "A", -0.1),
        # stack 1, district B: treated with no comparison in the stratum
        (1, 3, True, "B", 0.0),
        # stack 2, district A: treated with a missing score
        (2, 4, True, "A", np.nan),
        (2, 13, False, "A", 0.0),
        # stack 2, district B: two treated compete for one comparison
        (2, 5, True, "B", 0.50),
        (2, 6, True, "B", 0.40),
        (2, 14, False, "B", 0.45),
    ]
    frame = pd.DataFrame(rows, columns=["stack", "student", "treated", "district", "ps"])
    frame["grade_band"] = "6-8"
    frame[["stack", "student"]] = frame[["stack", "student"]].astype(np.int64)
    return frame.drop(columns="ps"), frame["ps"]


def test_unmatched_reasons_are_reported():
    frame, ps = reason_frame()
    res = nearest_neighbor_match(frame, ps, ratio=2, caliper=0.5, replace=False)
    reasons = dict(zip(res.unmatched["student"], res.unmatched["reason"].astype(str), strict=True))
    assert reasons == {
        2: "outside_caliper",
        3: "no_comparisons_in_stratum",
        4: "missing_pscore",
        6: "comparisons_exhausted",  # "largest" order: student 5 (0.50) goes first
    }
    assert set(res.unmatched["reason"].cat.categories) == set(UNMATCHED_REASONS)
    assert {"district", "grade_band"} <= set(res.unmatched.columns)
    with_repl = nearest_neighbor_match(frame, ps, ratio=2, caliper=0.5, replace=True)
    assert set(with_repl.unmatched["student"]) == {2, 3, 4}
    k = with_repl.matched.set_index("student")["n_matches"]
    # student 1 (0.00): 0.05 is nearest, 0.10 and -0.10 tie for second, both are kept
    assert k[1] == 3 and k[5] == 1 and k[6] == 1 and k[14] == 2  # k_i < k is kept


def tie_frame() -> tuple[pd.DataFrame, pd.Series]:
    n_c = 40
    frame = pd.DataFrame(
        {
            "stack": np.int64(7),
            "student": np.arange(n_c + 2, dtype=np.int64),
            "treated": np.r_[True, True, np.zeros(n_c, bool)],
            "district": "A",
            "grade_band": "9-12",
        }
    )
    ps = pd.Series(np.r_[0.0, 0.0, np.zeros(n_c)], index=frame.index)  # all tied
    return frame, ps


def test_ties_with_the_kth_nearest_are_all_kept_and_share_the_weight():
    frame, ps = tie_frame()
    res = nearest_neighbor_match(frame, ps, ratio=3, caliper=None)
    assert len(res.pairs) == 2 * 40  # both treated keep all 40 tied comparisons
    assert (res.pairs["rank"] == 1).all()
    comp = res.matched.loc[~res.matched["treated"]]
    np.testing.assert_allclose(comp["weight"].to_numpy(), 2 / 40)
    assert (res.matched.loc[res.matched["treated"], "n_matches"] == 40).all()
    # the seed plays no part with replacement
    other = nearest_neighbor_match(frame, ps, ratio=3, caliper=None, seed=5)
    pd.testing.assert_frame_equal(other.pairs, res.pairs)


def test_without_replacement_same_seed_same_result_and_seed_breaks_ties():
    frame, ps = tie_frame()
    picks = []
    for seed in range(6):
        kw = {"ratio": 3, "seed": seed, "caliper": None, "replace": False}
        a = nearest_neighbor_match(frame, ps, **kw)
        b = nearest_neighbor_match(frame, ps, **kw)
        pd.testing.assert_frame_equal(a.pairs, b.pairs)
        pd.testing.assert_frame_equal(a.matched, b.matched)
        picks.append(frozenset(a.pairs["comparison_student"]))
    assert len(set(picks)) > 1


def tied_frame(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """A frame whose logits take few distinct values: ties on both sides and in blocks."""
    frame, _ = tiny_frame(seed, n_t=20, n_c=80)
    rng = np.random.default_rng(seed)
    ps = pd.Series(rng.integers(-6, 7, len(frame)) / 8.0, index=frame.index)
    return frame, ps


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_tie_rule_matches_brute_force(seed, k):
    frame, ps = tied_frame(seed)
    res = nearest_neighbor_match(frame, ps, exact=("stack", "district"), ratio=k, caliper=0.4)
    assert as_tuples(res.pairs) == brute_force_with_replacement(frame, ps, k, res.caliper_logit)
    assert (res.pairs.groupby(["stack", "treated_student"]).size() > k).any()  # ties exist


@pytest.mark.parametrize("seed", range(3))
def test_keys_made_once_match_as_keys_made_by_each_matching(seed):
    # the bootstrap's draws re-match the same candidates with new scores: the keys and
    # strata made once (match_keys) give the same matches, and a subset's keys (take) are
    # those of the subset's own frame, strata numbered densely as _group_codes numbers them
    from leapresearch.design.matching.grid import _group_codes, match_keys

    frame, ps = tied_frame(seed)
    exact = ("stack", "district")
    keys = match_keys(frame, exact)
    for k, caliper in ((1, None), (2, 0.4)):
        with_keys = nearest_neighbor_match(
            frame, ps, exact=exact, ratio=k, caliper=caliper, keys=keys
        )
        alone = nearest_neighbor_match(frame, ps, exact=exact, ratio=k, caliper=caliper)
        pd.testing.assert_frame_equal(with_keys.pairs, alone.pairs, check_exact=True)
        pd.testing.assert_frame_equal(with_keys.matched, alone.matched, check_exact=True)
    rows = np.flatnonzero(frame["stack"].to_numpy() == 2)
    taken = keys.take(rows)
    assert taken.stratum.max() + 1 == np.unique(taken.stratum).size  # dense
    np.testing.assert_array_equal(taken.stratum, _group_codes(frame.take(rows), exact))
    assert taken.checked_for(frame.take(rows), exact) is taken
    # keys of other rows, other treatment or other strata are refused, never used
    flipped = frame.assign(treated=~frame["treated"])
    with pytest.raises(ValueError, match="do not fit"):
        nearest_neighbor_match(flipped, ps, exact=exact, keys=keys)
    with pytest.raises(ValueError, match="do not fit"):
        nearest_neighbor_match(frame, ps, exact=("stack",), keys=keys)
    with pytest.raises(ValueError, match="do not fit"):
        nearest_neighbor_match(frame.iloc[1:], ps.iloc[1:], exact=exact, keys=keys)
    with pytest.raises(ValueError, match="duplicate candidate row"):
        match_keys(pd.concat([frame, frame.iloc[:1]], ignore_index=True), exact)


@pytest.mark.parametrize("seed", range(3))
def test_matching_is_invariant_to_ids_and_row_order(seed):
    frame, ps = tied_frame(seed)
    res = nearest_neighbor_match(frame, ps, exact=("stack", "district"), ratio=2, caliper=0.4)
    rng = np.random.default_rng(100 + seed)
    perm = rng.permutation(len(frame))
    relabel = {s: 10_000 - s for s in frame["student"]}  # reverses the order of the ids
    other = frame.iloc[perm].reset_index(drop=True)
    other["student"] = other["student"].map(relabel).astype(np.int64)
    ps2 = pd.Series(ps.to_numpy()[perm], index=other.index)
    res2 = nearest_neighbor_match(other, ps2, exact=("stack", "district"), ratio=2, caliper=0.4)
    back = {v: k for k, v in relabel.items()}
    p2 = res2.pairs.assign(
        treated_student=res2.pairs["treated_student"].map(back),
        comparison_student=res2.pairs["comparison_student"].map(back),
    )
    assert as_tuples(p2) == as_tuples(res.pairs)
    m2 = res2.matched.assign(student=res2.matched["student"].map(back))
    key = ["stack", "student"]
    pd.testing.assert_frame_equal(
        m2.sort_values(key, ignore_index=True),
        res.matched.sort_values(key, ignore_index=True),
        check_exact=True,
    )


def test_result_does_not_depend_on_row_order(candidates, result):
    shuffled = candidates.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = match(shuffled, covariates=COVS)
    pd.testing.assert_frame_equal(again.pairs, result.pairs)
    pd.testing.assert_frame_equal(again.matched, result.matched, rtol=1e-9)
    again_nr = match(shuffled, covariates=COVS, replace=False)
    first_nr = match(candidates, covariates=COVS, replace=False)
    pd.testing.assert_frame_equal(again_nr.pairs, first_nr.pairs)


def test_random_order_is_seeded():
    frame, ps = tiny_frame(11, n_t=25, n_c=30)
    kw = {"exact": ("stack", "district"), "replace": False, "m_order": "random", "caliper": None}
    a = nearest_neighbor_match(frame, ps, seed=4, **kw)
    b = nearest_neighbor_match(frame, ps, seed=4, **kw)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    assert not a.pairs.duplicated(["stack", "comparison_student"]).any()


# --------------------------------------------------------------------------------------
# propensity scores
# --------------------------------------------------------------------------------------


def small_fit_frame(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "stack": np.int64(1),
            "student": np.arange(n, dtype=np.int64),
            "district": rng.choice(np.array(["A", "B", "C"]), n),
            "grade_band": rng.choice(np.array(["PK-5", "6-8"]), n),
            "x1": rng.normal(0, 1, n),
            "x2": rng.normal(5, 2, n),
            "b": (rng.random(n) < 0.3).astype(float),
        }
    )
    lin = (
        -2
        + 0.8 * frame["x1"]
        - 0.3 * frame["x2"]
        + 0.6 * frame["b"]
        + 0.5 * (frame["district"] == "B")
    )
    frame["treated"] = rng.random(n) < expit(lin + 1.5)
    return frame


def test_propensity_scores_equal_statsmodels_logit():
    frame = small_fit_frame()
    ours = propensity_scores(frame, covariates=["x1", "x2", "b"])
    x = pd.get_dummies(
        frame[["x1", "x2", "b", "district", "grade_band"]], drop_first=True, dtype=float
    )
    fit = sm.Logit(frame["treated"].astype(float), sm.add_constant(x)).fit(disp=0)
    np.testing.assert_allclose(ours.to_numpy(), fit.fittedvalues.to_numpy(), atol=1e-6)
    assert ours.index.equals(frame.index)
    diag = ours.attrs["fit_diagnostics"][0]
    assert diag["method"] == "mle" and diag["converged"]


def test_weighted_propensity_scores_equal_duplicated_rows_and_statsmodels():
    # a Bayesian bootstrap draw weights each row's log-likelihood: integer weights give the
    # fit of duplicated rows, real ones statsmodels' weighted GLM; weights of 1 change nothing
    frame = small_fit_frame(4)
    rng = np.random.default_rng(11)
    covs = ["x1", "x2", "b"]
    counts = rng.integers(1, 4, len(frame))
    weighted = propensity_scores(frame, covariates=covs, weights=counts.astype(float))
    copies = frame.loc[frame.index.repeat(counts)].reset_index(drop=True)
    duplicated = propensity_scores(copies, covariates=covs).to_numpy()
    np.testing.assert_array_equal(weighted.to_numpy(), duplicated[np.cumsum(counts) - counts])
    w = rng.standard_exponential(len(frame))
    ours = propensity_scores(frame, covariates=covs, weights=w)
    x = pd.get_dummies(frame[[*covs, "district", "grade_band"]], drop_first=True, dtype=float)
    fit = sm.GLM(
        frame["treated"].astype(float),
        sm.add_constant(x),
        family=sm.families.Binomial(),
        var_weights=w,
    ).fit(tol=1e-12)
    assert np.abs(ours.to_numpy() - fit.predict(which="linear")).max() < 1e-6
    assert np.abs(ours.to_numpy() - propensity_scores(frame, covariates=covs)).max() > 1e-3
    ones = propensity_scores(frame, covariates=covs, weights=np.ones(len(frame)))
    np.testing.assert_array_equal(ones.to_numpy(), propensity_scores(frame, covariates=covs))
    # the rows' order does not enter (ties of identical rows are ordered by weight too)
    perm = rng.permutation(len(frame))
    again = propensity_scores(frame.iloc[perm], covariates=covs, weights=w[perm])
    np.testing.assert_array_equal(again.loc[frame.index].to_numpy(), ours.to_numpy())
    for bad in (np.r_[w[:-1], 0.0], np.r_[w[:-1], np.nan], w[:-1]):
        with pytest.raises(ValueError, match="propensity weights"):
            propensity_scores(frame, covariates=covs, weights=bad)


def test_a_propensity_plan_gives_the_same_scores_bit_for_bit():
    # the Bayesian draws fit the same candidates with new weights from one plan of their
    # weight-free steps; with it or without, weighted or not, the scores are the same bits
    from leapresearch.design.matching.propensity import _fit_order_weights, propensity_plan

    frame = pd.concat(
        [small_fit_frame(5, n=1500), small_fit_frame(6, n=1500).assign(stack=np.int64(2))],
        ignore_index=True,
    )
    # rows identical on every key (ties) fitted in the order of their weights
    frame = frame.loc[frame.index.repeat(np.where(np.arange(len(frame)) % 7 == 0, 3, 1))]
    frame = frame.reset_index(drop=True).assign(student=np.arange(len(frame)))
    covs = ["x1", "x2", "b"]
    rng = np.random.default_rng(12)
    plan = propensity_plan(frame, covariates=covs)
    assert len(plan.groups) == 2 and any(g.tie_block is not None for g in plan.groups)
    for w in (None, rng.standard_exponential(len(frame)), rng.standard_exponential(len(frame))):
        without = propensity_scores(frame, covariates=covs, weights=w)
        with_plan = propensity_scores(frame, covariates=covs, weights=w, plan=plan)
        np.testing.assert_array_equal(with_plan.to_numpy(), without.to_numpy())
        assert with_plan.attrs["fit_diagnostics"] == without.attrs["fit_diagnostics"]
    # the plan of shuffled rows gives the same scores to the same rows
    perm = rng.permutation(len(frame))
    shuffled = frame.iloc[perm]
    shuffled_plan = propensity_plan(shuffled, covariates=covs)
    again = propensity_scores(shuffled, covariates=covs, weights=w[perm], plan=shuffled_plan)
    np.testing.assert_array_equal(again.loc[frame.index].to_numpy(), with_plan.to_numpy())
    # the fit sees the same weights in the same order (ties: ascending), whatever the rows'
    for group, other in zip(plan.groups, shuffled_plan.groups, strict=True):
        ordered = _fit_order_weights(group, w)
        np.testing.assert_array_equal(_fit_order_weights(other, w[perm]), ordered)
        if group.tie_block is not None:
            assert not np.array_equal(w[group.rows], ordered)
    with pytest.raises(ValueError, match="propensity plan of 3,"):
        propensity_scores(frame.iloc[1:], covariates=covs, plan=plan)
    with pytest.raises(ValueError, match="does not fit"):
        propensity_scores(frame, covariates=["x1", "x2"], plan=plan)
    with pytest.raises(ValueError, match="plan of other candidates"):
        propensity_scores(shuffled.reset_index(drop=True), covariates=covs, plan=plan)


@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_the_first_step_from_cluster_sums_is_the_rows_first_step(ridge):
    # a Bayesian draw weights each school's rows alike: the score, Hessian and deviance at
    # the common start are weighted sums of per-school terms (ClusterTerms), and the fit
    # that starts from them takes the same steps as the one that sums the rows
    from leapresearch.design.matching import logit

    rng = np.random.default_rng(21)
    n = 6000
    district, band = np.sort(rng.integers(0, 5, n)), rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3))
    eta = 0.5 * z[:, 0] - 0.4 * z[:, 1] + 0.3 * district - 0.5 * band - 1.0
    y = (rng.random(n) < expit(eta)).astype(float)
    dmat = logit._dummies([district, band], [("d", np.arange(5)), ("b", np.arange(3))])[0].tocsr()
    design = np.column_stack([np.ones(n), z])
    cluster = rng.integers(0, 40, n)
    theta = logit._logit_newton(design, dmat, y, ridge=ridge)[0] + rng.normal(0, 0.3, 10)
    terms = logit.cluster_terms(design, dmat, y, theta, cluster)
    assert terms.hessian.shape == (40, 10 * 11 // 2)
    weights = rng.standard_exponential(40)[cluster]
    score, hess, dev = terms.weighted(weights)
    rows = logit._NewtonTerms(design, dmat)
    eta0 = rows.linear(theta)
    mu = expit(eta0)
    row_score, row_hess = rows.score_and_hessian(mu * (1 - mu) * weights, (y - mu) * weights)
    np.testing.assert_allclose(score, row_score, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hess, row_hess, rtol=1e-10, atol=1e-10)
    row_dev = 2.0 * (weights @ np.logaddexp(0.0, eta0) - (weights * y) @ eta0)
    assert dev == pytest.approx(row_dev, rel=1e-12)
    # the fit from the sums: the same iterations to the same maximum
    fast = logit._logit_newton(
        design, dmat, y, ridge=ridge, start=theta, weights=weights, first=(score, hess, dev)
    )
    slow = logit._logit_newton(design, dmat, y, ridge=ridge, start=theta, weights=weights)
    assert fast[1] and slow[1] and fast[2] == slow[2] > 1
    np.testing.assert_allclose(fast[0], slow[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast[3], slow[3], rtol=0, atol=1e-12)
    # weights that differ within a cluster have no cluster sums
    uneven = weights.copy()
    uneven[np.flatnonzero(cluster == cluster[0])[1]] *= 2.0
    assert terms.weighted(uneven) is None
    with pytest.raises(ValueError, match="need the start"):
        logit._logit_newton(design, dmat, y, ridge=ridge, first=(score, hess, dev))


def test_a_plan_with_the_start_terms_gives_the_scores_to_their_last_decimal(monkeypatch):
    # the draws' plan also holds each fit's terms at the common start by school; a draw's
    # first Newton step reads them, the scores are those without them (the sums' order
    # differs, so the same to the last decimal kept), and other weights or another start
    # do not use them
    from leapresearch.design.matching import logit
    from leapresearch.design.matching import propensity as pm
    from leapresearch.design.matching.grid import PSCORE_DECIMALS

    frame = pd.concat(
        [small_fit_frame(5, n=1500), small_fit_frame(6, n=1500).assign(stack=np.int64(2))],
        ignore_index=True,
    )
    covs = ["x1", "x2", "b"]
    rng = np.random.default_rng(13)
    school = rng.integers(0, 30, len(frame))
    full = propensity_scores(frame, covariates=covs)
    start = {d["group"]: d["coefficients"] for d in full.attrs["fit_diagnostics"]}
    plan = pm.propensity_plan(frame, covariates=covs)
    with_terms = pm.with_start_terms(plan, start, school)
    assert all(g.start_terms is not None for g in with_terms.groups)
    assert all(g.start_terms is None for g in plan.groups)
    assert all(
        g.start_terms is None
        for g in pm.with_start_terms(plan, start, np.arange(len(frame))).groups
    )  # a cluster a row: more memory than the design, so no terms

    passes = []
    real = logit._NewtonTerms.score_and_hessian

    def counted(self, w, resid):
        passes.append(1)
        return real(self, w, resid)

    monkeypatch.setattr(logit._NewtonTerms, "score_and_hessian", counted)

    def fit(plan, weights, start=start):
        passes.clear()
        out = propensity_scores(frame, covariates=covs, weights=weights, start=start, plan=plan)
        return out.to_numpy(), len(passes), out.attrs["fit_diagnostics"]

    weights = rng.standard_exponential(30)[school]
    fast, fast_passes, fast_diag = fit(with_terms, weights)
    slow, slow_passes, slow_diag = fit(plan, weights)
    assert fast_passes == slow_passes - len(plan.groups)  # each fit's first pass saved
    assert [d["n_iter"] for d in fast_diag] == [d["n_iter"] for d in slow_diag]
    assert np.nanmax(np.abs(fast - slow)) <= 10.0**-PSCORE_DECIMALS
    # weights that differ within a school, or another start: the rows are summed
    uneven = rng.standard_exponential(len(frame))
    assert fit(with_terms, uneven)[1] == fit(plan, uneven)[1]
    np.testing.assert_array_equal(fit(with_terms, uneven)[0], fit(plan, uneven)[0])
    moved = {k: {c: v + 0.01 for c, v in coefs.items()} for k, coefs in start.items()}
    assert fit(with_terms, weights, moved)[1] == fit(plan, weights, moved)[1]


def test_constant_and_aliased_columns_are_dropped():
    frame = small_fit_frame(1)
    base = propensity_scores(frame, covariates=["x1", "x2", "b"])
    frame["const"] = 0.5
    frame["x1_copy"] = 2 * frame["x1"] - 3
    frame["b_not"] = 1 - frame["b"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        more = propensity_scores(frame, covariates=["x1", "x2", "const", "b", "x1_copy", "b_not"])
    np.testing.assert_allclose(more.to_numpy(), base.to_numpy(), atol=1e-7)
    dropped = set(more.attrs["fit_diagnostics"][0]["dropped_columns"])
    assert dropped == {"const", "x1_copy", "b_not"}


def test_separation_warns_and_falls_back_to_ridge():
    frame = small_fit_frame(2)
    frame["perfect"] = frame["treated"].astype(float) + 0.01 * frame["x1"]
    with pytest.warns(PropensityFitWarning, match="ridge"):
        ps = propensity_scores(frame, covariates=["x1", "x2", "perfect"])
    assert np.isfinite(ps).all()
    assert ps.attrs["fit_diagnostics"][0]["method"] == "ridge"
    # the fallback still ranks treated above comparisons
    assert ps[frame["treated"]].min() > ps[~frame["treated"]].max()


def test_single_class_groups_and_levels_are_nan_and_unmatched():
    frame = small_fit_frame(3, n=2000)
    # district C in stack 1 loses its treated rows; stack 2 has treated only
    frame = frame[~((frame["district"] == "C") & frame["treated"])].copy()
    extra = frame[frame["treated"]].head(5).assign(stack=np.int64(2))
    frame = pd.concat([frame, extra], ignore_index=True)
    ps = propensity_scores(frame, covariates=["x1", "x2", "b"])
    is_c1 = (frame["stack"] == 1) & (frame["district"] == "C")
    assert ps[is_c1].isna().all()
    assert ps[frame["stack"] == 2].isna().all()
    assert ps[(frame["stack"] == 1) & ~is_c1].notna().all()
    res = nearest_neighbor_match(frame, ps)
    reasons = res.unmatched.set_index("stack")["reason"].astype(str)
    assert (reasons.loc[[2]] == "no_comparisons_in_stratum").all()
    assert res.summary.set_index("stack").loc[2, "n_matched"] == 0


def test_match_is_propensity_scores_then_nearest_neighbor(candidates, result):
    ps = propensity_scores(candidates, covariates=COVS)
    two_step = nearest_neighbor_match(candidates, ps)
    pd.testing.assert_frame_equal(two_step.pairs, result.pairs)
    pd.testing.assert_series_equal(two_step.pscore, result.pscore)
    assert result.settings["covariates"] == tuple(COVS)
    assert len(result.settings["fit_diagnostics"]) == len(STACKS)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 0}, "ratio"),
        ({"ratio": 2.5}, "ratio"),
        ({"caliper": -0.1}, "caliper"),
        ({"caliper_scale": "sd_pscore"}, "caliper_scale"),
        ({"m_order": "best"}, "m_order"),
        ({"exact": ("district", "grade_band")}, "stack"),
        ({"exact": ("stack", "school")}, "school"),
    ],
)
def test_invalid_options_raise(kwargs, message):
    frame, ps = reason_frame()
    with pytest.raises(ValueError, match=message):
        nearest_neighbor_match(frame, ps, **kwargs)


def test_invalid_inputs_raise():
    frame, ps = reason_frame()
    with pytest.raises(ValueError, match="pscore"):
        nearest_neighbor_match(frame, ps.iloc[:-1])
    dup = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate candidate row"):
        nearest_neighbor_match(dup, pd.Series(0.0, index=dup.index))
    fit = small_fit_frame()
    with pytest.raises(ValueError, match="nope"):
        propensity_scores(fit, covariates=["x1", "nope"])
    fit.loc[3, "x1"] = np.nan
    with pytest.raises(ValueError, match="x1"):
        propensity_scores(fit, covariates=["x1"])
    with pytest.raises(ValueError, match="string"):
        propensity_scores(fit, covariates="x2")


def test_a_converged_fit_proves_overlap_exactly_when_the_linear_program_finds_none():
    # The fit's score is Farkas's certificate that no separating direction exists: where
    # it certifies, the separation program (no longer solved there) finds none; data
    # separated only by two columns together are not certified and the program finds
    # them, so the propensity model falls back to the ridge as before.
    from leapresearch.design.matching import logit
    from leapresearch.design.matching import separation as m

    certified = 0
    for seed in range(12):
        frame = small_fit_frame(seed, n=600)
        y = frame["treated"].to_numpy(float)
        z = frame[["x1", "x2", "b"]].to_numpy(float)
        design = np.column_stack([np.ones(y.size), (z - z.mean(0)) / z.std(0)])
        _, converged, _, eta = logit._logit_newton(design, None, y, ridge=0.0)
        assert converged
        if m._overlap_certified(design, None, y, eta):
            certified += 1
            assert not m._program_separates(design, None, y)
    assert certified == 12

    frame = small_fit_frame(1, n=600)
    pair = frame["student"].to_numpy() % 4  # (a, b) = (0,0), (1,0), (0,1), (1,1)
    frame["a"] = np.isin(pair, (1, 3)).astype(float)
    frame["c"] = np.isin(pair, (2, 3)).astype(float)
    frame.loc[pair == 1, "treated"] = False  # a without c: comparisons only
    frame.loc[pair == 2, "treated"] = True  # c without a: visited only
    y = frame["treated"].to_numpy(float)
    z = frame[["x1", "a", "c"]].to_numpy(float)
    design = np.column_stack([np.ones(y.size), (z - z.mean(0)) / z.std(0)])
    assert not m._one_column_separates(design, None, y)
    _, converged, _, eta = logit._logit_newton(design, None, y, ridge=0.0)
    assert not (converged and m._overlap_certified(design, None, y, eta))
    assert m._program_separates(design, None, y)
    with pytest.warns(PropensityFitWarning, match="separated"):
        ps = propensity_scores(frame, covariates=["x1", "a", "c"])
    assert ps.attrs["fit_diagnostics"][0]["method"] == "ridge"


def _separated_by_two_columns(seed: int, n: int = 600) -> pd.DataFrame:
    frame = small_fit_frame(seed, n=n)
    pair = frame["student"].to_numpy() % 4
    frame["a"] = np.isin(pair, (1, 3)).astype(float)
    frame["c"] = np.isin(pair, (2, 3)).astype(float)
    frame.loc[pair == 1, "treated"] = False
    frame.loc[pair == 2, "treated"] = True
    return frame


@pytest.fixture
def linprog_calls(monkeypatch):
    """The separation program's calls, counted; no separating direction remembered yet."""
    import scipy.optimize

    from leapresearch.design.matching import separation

    real, calls = scipy.optimize.linprog, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "linprog", counted)
    monkeypatch.setattr(separation, "_SEPARATING", {})
    return calls


def test_a_separating_direction_found_once_decides_the_next_fit_without_the_program(
    monkeypatch, linprog_calls
):
    # the specifications re-fit the same strata on other rows: the direction the program
    # found is re-expressed on the new rows' standardisation and checked exactly, and the
    # fit is the one a fresh solve gives
    from leapresearch.design.matching import separation as m

    calls = linprog_calls
    covariates = ["x1", "x2", "a", "c"]
    with pytest.warns(PropensityFitWarning, match="separated"):
        propensity_scores(_separated_by_two_columns(3), covariates=covariates)
    assert len(calls) == 1 and len(m._SEPARATING) == 1
    other = _separated_by_two_columns(4, n=900)  # other rows, means and SDs
    with pytest.warns(PropensityFitWarning, match="separated"):
        remembered = propensity_scores(other, covariates=covariates)
    assert len(calls) == 1  # decided without the program
    monkeypatch.setattr(m, "_SEPARATING", {})
    with pytest.warns(PropensityFitWarning, match="separated"):
        solved = propensity_scores(other, covariates=covariates)
    assert len(calls) == 2
    pd.testing.assert_series_equal(remembered, solved, check_exact=True)
    assert remembered.attrs["fit_diagnostics"] == solved.attrs["fit_diagnostics"]
    # rows with overlap are certified by their own fit: a remembered direction never
    # decides them
    overlap = small_fit_frame(5, n=600).assign(a=0.0, c=0.0)
    overlap["a"] = (overlap["student"] % 4).isin((1, 3)).astype(float)
    overlap["c"] = (overlap["student"] % 4).isin((2, 3)).astype(float)
    monkeypatch.setattr(m, "_SEPARATING", {})
    with pytest.warns(PropensityFitWarning, match="separated"):
        propensity_scores(_separated_by_two_columns(3), covariates=covariates)
    before = len(calls)
    fit = propensity_scores(overlap, covariates=covariates)
    assert fit.attrs["fit_diagnostics"][0]["method"] == "mle"
    assert len(calls) == before  # certified by the fit itself


def test_the_full_samples_separating_direction_decides_every_resample_of_its_rows(
    monkeypatch, linprog_calls
):
    # the whole-procedure bootstrap re-fits each stack on a resample of its rows: a
    # direction that separates the sample separates every resample, so the direction the
    # program found on the full sample, handed to a fresh process, decides the draws'
    # fits without the program, and they equal a fresh solve bit for bit
    from leapresearch.design.matching import separation as m

    calls = linprog_calls
    covariates = ["x1", "x2", "a", "c"]
    full = _separated_by_two_columns(6, n=800)
    with pytest.warns(PropensityFitWarning, match="separated"):
        propensity_scores(full, covariates=covariates)
    assert len(calls) == 1
    found = m.remembered_directions()
    rng = np.random.default_rng(0)
    for _ in range(3):
        resample = full.iloc[rng.integers(0, len(full), len(full))].reset_index(drop=True)
        resample["student"] = np.arange(len(resample))
        monkeypatch.setattr(m, "_SEPARATING", {})  # a fresh worker
        m.remember_directions(found)
        before = len(calls)
        with pytest.warns(PropensityFitWarning, match="separated"):
            decided = propensity_scores(resample, covariates=covariates)
        assert len(calls) == before
        monkeypatch.setattr(m, "_SEPARATING", {})
        with pytest.warns(PropensityFitWarning, match="separated"):
            solved = propensity_scores(resample, covariates=covariates)
        assert len(calls) == before + 1
        pd.testing.assert_series_equal(decided, solved, check_exact=True)


def test_a_remembered_direction_spares_the_maximum_likelihood_attempt(monkeypatch, linprog_calls):
    # rows a remembered direction separates get the ridge fit straight away: the
    # maximum-likelihood attempt (which would end in the ridge fit anyway) is not made,
    # and the scores are those of a fresh solve, which makes it and asks the program
    from leapresearch.design.matching import propensity as pm
    from leapresearch.design.matching import separation as m

    covariates = ["x1", "x2", "a", "c"]
    with pytest.warns(PropensityFitWarning, match="separated"):
        propensity_scores(_separated_by_two_columns(3), covariates=covariates)
    penalties: list[float] = []
    real = pm._logit_newton

    def counted(*args, **kwargs):
        penalties.append(kwargs["ridge"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pm, "_logit_newton", counted)
    other = _separated_by_two_columns(4, n=900)
    with pytest.warns(PropensityFitWarning, match="separated"):
        remembered = propensity_scores(other, covariates=covariates)
    assert penalties == [pm.RIDGE_FALLBACK] and len(linprog_calls) == 1
    penalties.clear()
    monkeypatch.setattr(m, "_SEPARATING", {})
    with pytest.warns(PropensityFitWarning, match="separated"):
        solved = propensity_scores(other, covariates=covariates)
    assert penalties[0] == 0.0 and penalties[-1] == pm.RIDGE_FALLBACK
    assert len(linprog_calls) == 2
    pd.testing.assert_series_equal(remembered, solved, check_exact=True)
    assert remembered.attrs["fit_diagnostics"] == solved.attrs["fit_diagnostics"]


def test_directions_found_in_other_draws_never_push_out_the_first_one(monkeypatch):
    from leapresearch.design.matching import separation as m

    monkeypatch.setattr(m, "_SEPARATING", {})
    first = (0.5, np.array([1.0, -1.0, 2.0]), np.array([]))
    m.remember_directions({("cols",): [first]})
    m.remember_directions({("cols",): [first]})  # the same direction is not kept twice
    assert len(m._SEPARATING[("cols",)]) == 1
    # rows with overlap: no kept direction is feasible, so each call asks the program,
    # here a stand-in returning a new direction every time
    frame = small_fit_frame(3, n=500)
    y = frame["treated"].to_numpy(float)
    z = frame[["x1", "x2", "b"]].to_numpy(float)
    mean, sd = z.mean(0), z.std(0)
    design = np.column_stack([np.ones(y.size), (z - mean) / sd])
    rng = np.random.default_rng(0)
    monkeypatch.setattr(m, "_program_direction", lambda *args: rng.uniform(-1, 1, 4))
    for calls in range(1, m._DIRECTIONS_PER_COLUMNS + 3):
        assert m._separated_remembering(design, None, y, columns=("cols",), mean=mean, sd=sd)
        assert len(m._SEPARATING[("cols",)]) == min(1 + calls, m._DIRECTIONS_PER_COLUMNS)
    assert m._SEPARATING[("cols",)][0] is first


def test_a_fit_stopped_before_its_score_certifies_overlap_is_polished_not_sent_to_the_program(
    monkeypatch,
):
    # the deviance criterion can stop a fit whose score is still too large for the
    # certificate (the districts' draws: 1.7e-5 on 121,000 rows); two more Newton steps
    # certify it, so the linear program is not solved; where overlap fails they cannot
    from leapresearch.design.matching import logit
    from leapresearch.design.matching import propensity as prop
    from leapresearch.design.matching import separation as m

    frame = small_fit_frame(2, n=2000)
    y = frame["treated"].to_numpy(float)
    z = frame[["x1", "x2", "b"]].to_numpy(float)
    design = np.column_stack([np.ones(y.size), (z - z.mean(0)) / z.std(0)])
    theta, converged, _, eta = logit._logit_newton(design, None, y, ridge=0.0, max_iter=4)
    assert not converged and not m._overlap_certified(design, None, y, eta)
    assert prop._certified(design, None, y, theta, eta)
    assert not m._program_separates(design, None, y)  # the program's decision too

    frame = _separated_by_two_columns(1)
    y = frame["treated"].to_numpy(float)
    z = frame[["x1", "a", "c"]].to_numpy(float)
    design = np.column_stack([np.ones(y.size), (z - z.mean(0)) / z.std(0)])
    theta, _, _, eta = logit._logit_newton(design, None, y, ridge=0.0)
    assert not prop._certified(design, None, y, theta, eta)
    assert m._program_separates(design, None, y)


@pytest.mark.parametrize("separated", [False, True])
def test_a_fit_started_from_the_full_samples_coefficients_reaches_the_same_scores_sooner(
    separated,
):
    # the bootstrap's draws start each stack's fit (maximum likelihood, or the ridge of a
    # separated stack) from the full sample's coefficients: both objectives are concave,
    # so the scores are those of a cold start (up to the convergence criterion), in fewer
    # Newton steps
    from leapresearch.design.matching import propensity as prop

    full = _separated_by_two_columns(2, n=3000) if separated else small_fit_frame(2, n=3000)
    covariates = ["x1", "x2", "a", "c"] if separated else ["x1", "x2", "b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PropensityFitWarning)
        fit = propensity_scores(full, covariates=covariates)
        (diag,) = fit.attrs["fit_diagnostics"]
        assert diag["method"] == ("ridge" if separated else "mle")
        coefficients = diag["coefficients"]
        assert set(coefficients) >= {prop.INTERCEPT, "x1", "x2"}
        # the coefficients are on the covariates' own scale: they give back the scores
        names = [n for n in covariates if n in coefficients]
        eta = coefficients[prop.INTERCEPT] + full[names].to_numpy(float) @ np.array(
            [coefficients[n] for n in names]
        )
        dummies = [k for k in coefficients if "[" in k]
        for name in dummies:
            column, level = name[:-1].split("[")
            eta = eta + coefficients[name] * (full[column].astype(str) == level).to_numpy()
        np.testing.assert_allclose(eta, fit.to_numpy(), rtol=0, atol=1e-8)
        rng = np.random.default_rng(1)
        for _ in range(3):
            draw = full.iloc[rng.integers(0, len(full), len(full))].reset_index(drop=True)
            cold = propensity_scores(draw, covariates=covariates)
            warm = propensity_scores(draw, covariates=covariates, start={1: coefficients})
            # both stop at a relative change of the deviance below 1e-10, which leaves the
            # ridge fit's scores (about -11 here) a few units of their 9th decimal apart
            np.testing.assert_allclose(warm.to_numpy(), cold.to_numpy(), rtol=0, atol=5e-9)
            (w,), (c,) = warm.attrs["fit_diagnostics"], cold.attrs["fit_diagnostics"]
            assert w["method"] == c["method"]
            assert w["n_iter"] < c["n_iter"]


def _whole_program(x: np.ndarray, y: np.ndarray):
    """The separation program on every row at once (before row generation)."""
    import scipy.optimize

    sx = (2.0 * y - 1.0)[:, None] * x
    return scipy.optimize.linprog(
        -sx.sum(axis=0),
        A_ub=-sx,
        b_ub=np.zeros(y.size),
        bounds=[(-1.0, 1.0)] * x.shape[1],
        method="highs",
    )


@pytest.mark.parametrize("case", ["overlap", "separated", "quasi_separated"])
def test_row_generation_reaches_the_whole_programs_decision_and_optimum(case, monkeypatch):
    """The program solved on a subset of rows, then the rows its solution violates, decides
    as the program on every row does, with the same optimum; the rounds are counted, so
    the generation itself (not only the first subset) is exercised."""
    import scipy.optimize

    from leapresearch.design.matching import separation as m

    rng = np.random.default_rng(11)
    n = 30_000
    z = rng.normal(size=(n, 3))
    d = (rng.random(n) < 0.1).astype(float)
    if case == "overlap":
        y = (rng.random(n) < expit(-3.0 + z[:, 0])).astype(float)
    elif case == "separated":  # a combination of two columns, not one, separates
        y = (z[:, 0] + 0.5 * z[:, 1] > 2.2).astype(float)
    else:  # rows with d = 1 are never treated and with z0 + z1 > 2: quasi-complete
        y = (rng.random(n) < expit(-3.0 + z[:, 0])).astype(float)
        y[d == 1] = 0.0
        y[(d == 0) & (z[:, 0] + z[:, 1] > 2.0)] = 1.0
        y[(d == 0) & (z[:, 0] + z[:, 1] <= 2.0)] = 0.0
    x = np.column_stack([np.ones(n), z, d])
    rounds = []
    solve = scipy.optimize.linprog

    def counted(*args, **kwargs):
        rounds.append(kwargs["A_ub"].shape[0])
        return solve(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "linprog", counted)
    beta = m._program_direction(x, None, y)
    monkeypatch.setattr(scipy.optimize, "linprog", solve)
    whole = _whole_program(x, y)
    separated = -whole.fun > m._SEPARATION_LP_TOL * n
    assert (beta is not None) == separated == (case != "overlap"), (case, -whole.fun)
    assert rounds[0] < n / 4  # started from a subset
    if beta is not None:
        s = 2.0 * y - 1.0
        assert (s * (x @ beta)).min() >= -1e-7  # feasible for every row
        optimum = float((s[:, None] * x).sum(axis=0) @ beta)
        np.testing.assert_allclose(optimum, -whole.fun, rtol=1e-6)
        assert len(rounds) >= 2, rounds  # rows were added


@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_newton_sums_over_runs_of_dummy_rows_equal_the_sparse_products_and_statsmodels(
    ridge, monkeypatch
):
    # rows sorted by their fixed effects come in runs of identical dummy rows: the Hessian
    # and score summed over runs (cut into blocks of rows) give the same fit as the sparse
    # products used for rows in no such order, and, without the ridge, statsmodels' GLM
    from leapresearch.design.matching import logit

    monkeypatch.setattr(logit, "_CHUNK_ROWS", 700)  # several blocks within one run
    rng = np.random.default_rng(11)
    n = 9000
    district, band = rng.integers(0, 5, n), rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3))
    eta = 0.5 * z[:, 0] - 0.4 * z[:, 1] + 0.3 * district - 0.5 * band - 1.0
    y = (rng.random(n) < expit(eta)).astype(float)
    weights = rng.exponential(size=n)
    order = np.lexsort((band, district))  # the canonical order: by fixed effects

    def fit(rows: np.ndarray) -> tuple[np.ndarray, int]:
        dmat, _ = logit._dummies(
            [district[rows], band[rows]], [("d", np.arange(5)), ("b", np.arange(3))]
        )
        design = np.column_stack([np.ones(n), z[rows]])
        runs = logit._DummyRuns(dmat.tocsr(), n)
        theta, converged, _, fitted = logit._logit_newton(
            design, dmat.tocsr(), y[rows], ridge=ridge, weights=weights[rows]
        )
        assert converged
        back = np.empty(n)
        back[rows] = fitted
        return theta, back, runs.starts.size

    sorted_theta, sorted_eta, sorted_blocks = fit(order)
    shuffled_theta, shuffled_eta, shuffled_blocks = fit(rng.permutation(n))
    assert sorted_blocks * logit._MIN_RUN_ROWS <= n  # the runs' sums
    assert shuffled_blocks * logit._MIN_RUN_ROWS > n  # the sparse products
    np.testing.assert_allclose(sorted_theta, shuffled_theta, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sorted_eta, shuffled_eta, rtol=0, atol=1e-9)
    if ridge == 0.0:
        exog = np.column_stack([np.ones(n), z, np.eye(5)[district][:, 1:], np.eye(3)[band][:, 1:]])
        ref = sm.GLM(y, exog, family=sm.families.Binomial(), var_weights=weights).fit(tol=1e-12)
        np.testing.assert_allclose(sorted_eta, exog @ ref.params, rtol=0, atol=1e-7)


@pytest.mark.parametrize("scale", [1, 2**55])
def test_first_block_not_below_a_treated_score_by_binary_search_equals_counting(scale):
    # blocks sorted by (stratum, grid score), distinct; the first one of the treated
    # student's stratum at or above its score, counted by brute force; scores of 2**55
    # take the merge (their mixed-radix key would not fit in 62 bits)
    from leapresearch.design.matching.nearest import _first_not_below

    rng = np.random.default_rng(5)
    pairs = np.unique(np.c_[rng.integers(0, 6, 400), rng.integers(-50, 50, 400) * scale], axis=0)
    b_strat, b_q = pairs[:, 0], pairs[:, 1]
    t_strat, t_q = rng.integers(0, 7, 300), rng.integers(-60, 60, 300) * scale
    expected = [
        int(((b_strat < s) | ((b_strat == s) & (b_q < q))).sum())
        for s, q in zip(t_strat, t_q, strict=True)
    ]
    np.testing.assert_array_equal(_first_not_below(b_strat, b_q, t_strat, t_q), expected)
