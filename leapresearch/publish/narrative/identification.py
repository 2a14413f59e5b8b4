"""Sentences on the identifying assumption (notebooks 03 and 07).

Notebook 03: the joint pre-trend tests and the signs of the pre-period estimates
(*Pre-trends*), the full against the balanced sample (*Composition*) and the
Rambachan-Roth breakdown values (*Sensitivity*). Notebook 07: the placebo first visit,
the falsification with never-visited students who had the same dip, the estimates
under each specification and the intent-to-treat estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.labels import (
    fmt,
)
from leapresearch.publish.narrative.common import _months, _pp, _snapped


def _pretrend_sentence(r: pd.Series, alpha: float) -> str:
    basis = r.get("basis", "adjusted")
    months = r.get("months", "")
    verdict = "rejects" if r["p_value"] < alpha else "does not reject"
    where = f" in months {months}" if isinstance(months, str) and months else ""
    return (
        f"On {basis} outcomes{where}, the joint Wald test that all {int(r['df'])} pre-period "
        f"coefficients are zero {verdict} at the {alpha:.0%} level (F = {fmt(r['statistic'], 2)}, "
        f"p = {fmt(r['p_value'], 3)})."
    )


@_snapped
def describe_pretrends(
    pretrends: pd.DataFrame, *, group: str = "all", alpha: float = 0.05, brief: bool = False
) -> str:
    """Every pre-trend test of a group in words, then what they say together.

    Rows may carry ``basis`` (adjusted / unadjusted outcome) and ``months``. A test that
    does not reject is reported as that, not as evidence of parallel trends; a test on
    adjusted outcomes in the months the design fitted is flagged as partly mechanical.
    With ``brief`` (the front page's summary) only what the tests say together.
    """
    rows = pretrends.loc[(pretrends["group"] == group) & pretrends["p_value"].notna()]
    if rows.empty:
        return f"No pre-trend test for {group}."
    parts = [] if brief else [_pretrend_sentence(r, alpha) for _, r in rows.iterrows()]
    rejected = rows.loc[rows["p_value"] < alpha]
    if len(rejected):
        where = ", ".join(
            f"{r.get('basis', 'adjusted')} {r.get('months', '')}".strip()
            for _, r in rejected.iterrows()
        )
        parts.append(
            f"{len(rejected)} of {len(rows)} tests reject ({where}): visited and comparison "
            "students already differed before the first visit, so read the effects with the "
            "sensitivity bounds beside them."
        )
    else:
        parts.append(
            f"None of the {len(rows)} tests rejects at the {alpha:.0%} level; not rejecting "
            "is not evidence that the paths were parallel, only that a difference of the "
            "size these tests can detect is not seen."
        )
    if not brief and "basis" in rows.columns and (rows["basis"] == "adjusted").any():
        parts.append(
            "Tests on adjusted outcomes in the months used for matching are partly "
            "mechanical (the design fitted those months); the tests on unadjusted outcomes "
            "and on months before the matching window are the ones the design did not fit."
        )
    return " ".join(parts)


@_snapped
def describe_pre_period(
    table: pd.DataFrame, *, group: str = "all", reference: int = -1, alpha: float = 0.05
) -> str:
    """Signs and size of the pre-period estimates, with a sign test at ``alpha``.

    Under parallel trends each pre-period estimate is as likely positive as negative;
    a two-sided binomial (sign) test at ``alpha`` says whether they lean one way
    (estimates are correlated, so this is a rough guide).
    """
    from scipy.stats import binomtest

    pre = table.loc[
        (table["group"] == group) & (table["rel_time"] < reference) & table["estimate"].notna()
    ]
    if pre.empty:
        return f"No pre-period estimates for {group}."
    n, pos = len(pre), int((pre["estimate"] > 0).sum())
    excl = int(((pre["ci_lower"] > 0) | (pre["ci_upper"] < 0)).sum())
    p = binomtest(pos, n, 0.5).pvalue
    lean = (
        f"they lean {'positive' if pos > n / 2 else 'negative'} (sign test p = {p:.3f} < "
        f"{alpha:g}): the comparison path was not the same before the first visit"
        if p < alpha
        else f"their signs do not lean one way at the {alpha:.0%} level (sign test p = {p:.3f})"
    )
    return (
        f"Of the {n} pre-period estimates for {group}, {pos} are positive, ranging from "
        f"{_pp(pre['estimate'].min())} to {_pp(pre['estimate'].max())}; {excl} have 95% "
        f"intervals that exclude zero, and {lean}."
    )


@_snapped
def describe_composition(balanced: pd.DataFrame, *, rel_time: int = 9) -> str:
    """The full-sample estimate beside the one on students observed in every month."""
    d = balanced.loc[balanced["rel_time"] == rel_time].set_index("sample")
    if not {"full", "balanced"} <= set(d.index):
        return "The balanced-sample estimate is not available."
    f, b = d.loc["full"], d.loc["balanced"]
    return (
        f"At {_months(rel_time)} the full sample ({int(f['n_treated']):,} visited students "
        f"observed that month) gives {_pp(f['estimate'])}; the students enrolled in every "
        f"month of the balanced window ({int(b['n_treated']):,}) give {_pp(b['estimate'])}, "
        f"a difference of {_pp(f['estimate'] - b['estimate'])} that reflects who is observed "
        "as well as how effects change with time."
    )


@_snapped
def describe_sensitivity(sensitivity: pd.DataFrame, *, group: str = "all") -> str:
    """Breakdown values of the Rambachan-Roth bounds at each headline month."""
    if "note" in sensitivity.columns:
        return f"The sensitivity bounds could not be computed ({sensitivity['note'].iloc[0]})."
    d = sensitivity.loc[(sensitivity["group"] == group) & sensitivity["breakdown"].notna()]
    if d.empty:
        return f"No published sensitivity bounds for {group}."
    parts = []
    for r, g in d.groupby("rel_time", sort=True):
        rm = g.loc[g["method"] == "relative_magnitudes", "breakdown"]
        sd = g.loc[g["method"] == "smoothness", "breakdown"]
        parts.append(
            f"at {_months(int(r))}, Mbar = {rm.iloc[0]:.2f} and M = {sd.iloc[0]:.2f} pp"
            if len(rm) and len(sd)
            else f"at {_months(int(r))}, not available"
        )
    weakest = d.loc[d["method"] == "relative_magnitudes", "breakdown"].min()
    reading = (
        "the conclusion that the effect is not zero survives post-visit departures from "
        "parallel trends as large as the largest pre-visit month-to-month change"
        if weakest >= 1
        else "the conclusion that the effect is not zero does not survive post-visit "
        "departures from parallel trends as large as the largest month-to-month change "
        "seen before the visit (Mbar = 1)"
    )
    return (
        f"Breakdown values for {group} (the smallest bound at which the 95% interval "
        f"includes zero): " + "; ".join(parts) + f". With the smallest Mbar at "
        f"{weakest:.2f}, {reading}."
    )


@_snapped
def describe_placebo(placebo: pd.DataFrame) -> str:
    """The fake-event estimates, and what this placebo can and cannot test."""
    if "note" in placebo.columns:
        return f"The placebo could not be estimated ({placebo['note'].iloc[0]})."
    post = placebo.loc[placebo["rel_time"] >= 0]
    if post.empty:
        return "No placebo estimates."
    shift = int(placebo["shift_months"].iloc[0])
    covers = ((post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)).sum()
    biggest = post.loc[post["estimate"].abs().idxmax()]
    early = post.loc[post["rel_time"] < shift // 2]
    late = post.loc[post["rel_time"] >= shift // 2]
    text = (
        f"With a fake first visit {shift} months early, {covers} of {len(post)} placebo "
        f"'effects' have 95% intervals that include zero; the largest is "
        f"{_pp(biggest['estimate'])} at month {int(biggest['rel_time'])}."
    )
    if len(early):
        early_cov = ((early["ci_lower"] <= 0) & (early["ci_upper"] >= 0)).sum()
        text += (
            f" In the first {len(early)} placebo months, furthest from the real visit, "
            f"{early_cov} of {len(early)} intervals include zero"
            + (
                ": there the matched groups moved together."
                if early_cov == len(early)
                else ": even there the matched groups did not move together."
            )
        )
    if len(late):
        late_mean = float(late["estimate"].mean())
        text += (
            f" The last {len(late)} placebo months fall in the weeks before the real visit, "
            f"when students were picked for a low spell (mean placebo 'effect' "
            f"{_pp(late_mean)}); this placebo therefore cannot test whether the matching "
            "absorbs the selection at the real event month. The falsification with "
            "never-visited students who had the same dip is the check that can fail."
        )
    return text


@_snapped
def describe_falsification(falsification: pd.DataFrame, *, group: str = "all") -> str:
    """Whether pseudo-events for never-visited students with the same dip show an effect."""
    if "note" in falsification.columns:
        return f"The falsification could not be estimated ({falsification['note'].iloc[0]})."
    post = falsification.loc[
        (falsification["group"] == group)
        & (falsification["rel_time"] >= 0)
        & falsification["estimate"].notna()
    ]
    if post.empty:
        return f"No published falsification estimates for {group}."
    covers = int(((post["ci_lower"] <= 0) & (post["ci_upper"] >= 0)).sum())
    n = len(post)
    mean = float(post["estimate"].mean())
    biggest = post.loc[post["estimate"].abs().idxmax()]
    verdict = (
        "the design leaves no detectable rebound from the dip in its estimates"
        if covers >= 0.8 * n
        else "the design leaves part of the rebound from the dip in its estimates, so the "
        "effects above are overstated by about this much"
    )
    from scipy.stats import binomtest

    pos = int((post["estimate"] > 0).sum())
    p = binomtest(pos, n, 0.5).pvalue
    lean = (
        f" The pseudo-effects lean {'positive' if pos > n / 2 else 'negative'} ({pos} of {n} "
        f"positive, sign test p = {p:.3f} < 0.05): if this carries over to the visited "
        f"students, the design {'over' if pos > n / 2 else 'under'}states effects by about "
        f"{abs(mean):.1f} pp."
        if p < 0.05
        else ""
    )
    return (
        f"Never-visited students given a pseudo first visit at the month their attendance "
        f"dipped as visited students' had ({group}): {covers} of {n} post-period "
        f"intervals include zero (threshold for 'no rebound': at least 80%), mean "
        f"pseudo-effect {_pp(mean)}, largest {_pp(biggest['estimate'])} at month "
        f"{int(biggest['rel_time'])}: {verdict}." + lean
    )


@_snapped
def specification_table(
    specifications: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (1, 3, 6, 9)
) -> pd.DataFrame:
    """Estimates by specification (rows, ``main`` first) and headline month (columns)."""
    d = specifications.loc[
        (specifications["group"] == group) & specifications["rel_time"].isin(rel_times)
    ]
    wide = d.pivot(index="specification", columns="rel_time", values="estimate")
    wide.columns = [f"month {m}" for m in wide.columns]
    order = sorted(wide.index, key=lambda s: (s != "main", s))
    return wide.loc[order].reset_index()


@_snapped
def describe_specifications(
    specifications: pd.DataFrame, *, group: str = "all", rel_time: int = 9
) -> str:
    """How far the estimate moves across design switches, and which switch moves it most."""
    if "note" in specifications.columns:
        return f"The specifications could not be estimated ({specifications['note'].iloc[0]})."
    d = specifications.loc[
        (specifications["group"] == group)
        & (specifications["rel_time"] == rel_time)
        & specifications["estimate"].notna()
    ].set_index("specification")
    if "main" not in d.index:
        return f"No published main estimate for {group} at {_months(rel_time)}."
    main = d.loc["main"]
    others = d.drop(index="main").drop(index="outside_caliper_only", errors="ignore")
    if others.empty:
        return "No alternative specification was estimated."
    gap = others["estimate"] - main["estimate"]
    outside = (
        (others["estimate"] < main["ci_lower"]) | (others["estimate"] > main["ci_upper"])
    ).sum()
    far = gap.abs().idxmax()
    excludes_zero = ((others["ci_lower"] > 0) | (others["ci_upper"] < 0)).sum()
    return (
        f"At {_months(rel_time)} ({group}), the main estimate is {_pp(main['estimate'])}; "
        f"across {len(others)} alternative specifications (the out-of-caliper subset aside) "
        f"it ranges from {_pp(others['estimate'].min())} to {_pp(others['estimate'].max())}, "
        f"{outside} of them outside the main 95% interval. The largest change comes from "
        f"{far} ({_pp(gap[far])}). {excludes_zero} of {len(others)} alternative intervals "
        "exclude zero."
    )


@_snapped
def describe_intent_to_treat(
    specifications: pd.DataFrame, *, group: str = "all", rel_times: Sequence[int] = (6,)
) -> str:
    """The effect of a first contact of any status beside the effect of a completed visit."""
    d = specifications.loc[specifications["group"] == group]
    parts = []
    for r in rel_times:
        at = d.loc[d["rel_time"] == r].set_index("specification")
        if not {"intent_to_treat", "main"} <= set(at.index):
            continue
        itt, main = at.loc["intent_to_treat"], at.loc["main"]
        if pd.isna(itt["estimate"]) or pd.isna(main["estimate"]):
            continue
        share = itt["estimate"] / main["estimate"] if main["estimate"] else np.nan
        parts.append(
            f"at {_months(r)} {_pp(itt['estimate'])} (95% CI {itt['ci_lower']:.1f} to "
            f"{itt['ci_upper']:.1f}; {int(itt['n_treated']):,} contacted students) against "
            f"{_pp(main['estimate'])} for the first completed visit ({share:.0%} of it)"
        )
    if not parts:
        return "The intent-to-treat estimate is not available (or is suppressed)."
    return (
        f"Keyed to the first contact of any status ({group}), the effect is "
        + "; ".join(parts)
        + ". The intent-to-treat estimate does not condition on a family agreeing to and "
        "completing a visit; the gap to the completed-visit estimate is what selection on "
        "reachability and the dilution by contacts that never became visits account for "
        "together."
    )
