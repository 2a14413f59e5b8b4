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

from leapresearch.estimation.sensitivity import NO_PRETREND_FIT
from leapresearch.publish.calibration import (
    DIAGNOSTIC_SHORT,
    ROLES,
    SIZE_BOUND,
    Calibration,
    Diagnostic,
    diagnostic_results,
    load_calibration,
    pretrend_names,
    reported_in,
    size_words,
)
from leapresearch.publish.labels import fmt
from leapresearch.publish.narrative.common import _months, _pp, _snapped, _who


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


def measured_size(diagnostic: Diagnostic | None, cal: Calibration) -> str:
    """``In the validation this test rejected in ...``: its measured size, read by the rule."""
    if diagnostic is None:
        return "The validation did not measure this test's size."
    text = (
        f"In the validation ({cal.brief(diagnostic)}) this test {diagnostic.measured('of draws')}"
    )
    if diagnostic.calibrated:
        return text + f": its size is near the nominal level ({cal.rule()})."
    return text + (
        f": above the {100 * SIZE_BOUND:.0f}% the report allows where the design is right, so "
        "its verdict is not read as evidence on the design."
    )


def _together(rows: pd.DataFrame, calibrated: pd.Series, alpha: float, cal: Calibration) -> list:
    """What the calibrated tests say together, and the uncalibrated ones' rejections."""
    parts = []
    good = rows.loc[calibrated]
    rejected = good.loc[good["p_value"] < alpha]
    if good.empty:
        parts.append(f"None of the {len(rows)} tests has a near-nominal size ({cal.rule()}).")
    elif len(rejected):
        where = ", ".join(
            f"{r.get('basis', 'adjusted')} {r.get('months', '')}".strip()
            for _, r in rejected.iterrows()
        )
        parts.append(
            f"{len(rejected)} of {len(good)} calibrated tests reject{'s' if len(good) == 1 else ''}"
            f" ({where}): visited and comparison students already differed before the first "
            "visit, so read the effects with the sensitivity bounds beside them."
        )
    else:
        names = good["diagnostic"].map(cal.diagnostics.get)
        blind = all(d is not None and d.no_power_against() for d in names)
        parts.append(
            f"{'The calibrated test does' if len(good) == 1 else 'The calibrated tests do'} "
            f"not reject at the {alpha:.0%} level; not rejecting is not evidence that the paths "
            "were parallel"
            + (
                ": in the validation it rejected no more often where parallel trends fail "
                f"than the {100 * SIZE_BOUND:.0f}% allowed where the design is right."
                if blind
                else "."
            )
        )
    other = rows.loc[~calibrated]
    off = other.loc[other["p_value"] < alpha]
    if len(off):
        where = ", ".join(f"{r.basis} {r.months}" for r in off.itertuples())
        parts.append(
            f"{len(off)} of the {len(other)} tests whose size in the validation is not near "
            f"nominal reject ({where}); at that size a rejection is not evidence against the "
            "design."
        )
    elif len(other):
        parts.append(
            f"None of the {len(other)} tests whose size in the validation is not near nominal "
            "rejects."
        )
    return parts


@_snapped
def describe_pretrends(
    pretrends: pd.DataFrame,
    *,
    group: str = "all",
    alpha: float = 0.05,
    brief: bool = False,
    calibration: Calibration | None = None,
) -> str:
    """Every pre-trend test of a group with its measured size, then what they say together.

    Rows may carry ``basis`` (adjusted / unadjusted outcome) and ``months``. Each test is
    followed by its rejection rate in the validation (``calibration``: default the
    packaged record, :mod:`leapresearch.publish.calibration`); only calibrated tests (size
    near nominal) are read as evidence that the groups differed before the visit. A test
    that does not reject is reported as that, not as evidence of parallel trends. With
    ``brief`` only what the tests say together.
    """
    cal = load_calibration() if calibration is None else calibration
    rows = pretrends.loc[(pretrends["group"] == group) & pretrends["p_value"].notna()]
    if rows.empty:
        return f"No pre-trend test for {group}."
    if {"basis", "months"} <= set(rows.columns):
        rows = rows.assign(diagnostic=pretrend_names(pretrends).loc[rows.index])
    else:
        rows = rows.assign(diagnostic="", basis="adjusted", months="")
    calibrated = rows["diagnostic"].map(lambda n: n in cal.calibrated())
    parts = []
    if not brief:
        for _, r in rows.iterrows():
            parts.append(_pretrend_sentence(r, alpha))
            parts.append(measured_size(cal.diagnostics.get(r["diagnostic"]), cal))
        if group != "all":
            parts.append("(The sizes were measured on the test of all visited students.)")
    parts += _together(rows, calibrated, alpha, cal)
    if not brief and (rows["basis"] == "adjusted").any():
        parts.append(
            "Tests on adjusted outcomes in the months used for matching are partly "
            "mechanical (the design fitted those months); the tests on unadjusted outcomes "
            "and on months before the matching window are the ones the design did not fit."
        )
    return " ".join(parts)


@_snapped
def describe_calibrated_diagnostics(
    pretrends: pd.DataFrame | None,
    falsification: pd.DataFrame | None = None,
    placebo: pd.DataFrame | None = None,
    *,
    group: str = "all",
    alpha: float = 0.05,
    calibration: Calibration | None = None,
) -> str:
    """The front page's sentence on the design's checks: calibrated diagnostics only.

    Each diagnostic whose size in the validation is near nominal (the rule of
    :mod:`leapresearch.publish.calibration`) is printed with its p-value for ``group`` and
    its measured size and power; the others are not read here.
    """
    cal = load_calibration() if calibration is None else calibration
    found = diagnostic_results(pretrends, falsification, placebo)
    found = found.loc[(found["group"] == group) & found["p_value"].notna()]
    names = cal.calibrated()
    if not names:
        grown = [
            f"for the {d.words}, the rejection rate where the design is right was "
            f"{d.size.percent()} at {size_words(d.sample_fraction)} but "
            + " and ".join(
                f"{c.size.percent()} at {size_words(c.sample_fraction)}"
                for c in d.oversized_elsewhere()
            )
            for d in cal.diagnostics.values()
            if d.size is not None and d.size.high <= SIZE_BOUND and d.oversized_elsewhere()
        ]
        why = (
            " A test that keeps its size on a small sample can lose it on a larger one: "
            + "; ".join(grown)
            + "."
            if grown
            else ""
        )
        return (
            f"No check of the design is read here: none passed the calibration rule "
            f"({cal.rule()}).{why} Notebooks 03 and 07 report each with its measured size."
        )
    parts = []
    for name in names:
        d = cal.diagnostics[name]
        hit = found.loc[found["diagnostic"] == name]
        words = DIAGNOSTIC_SHORT.get(name, d.words)
        if hit.empty:
            parts.append(f"{words}: not computed for {_who(group)}.")
            continue
        r = hit.iloc[0]
        rejects = r["p_value"] < alpha
        verdict = "rejects" if rejects else "does not reject"
        where = f", {reported_in(name)}" if reported_in(name) else ""
        text = (
            f"{words} (months {r['months']}{where}): p = {fmt(r['p_value'], 3)}, it {verdict} "
            f"at the {alpha:.0%} level; in the validation ({cal.brief(d)}) this test "
            f"{d.measured('of draws', roles=ROLES[:2])}"
        )
        if rejects:
            text += (
                ", so a rejection is seldom a false alarm: visited and comparison students "
                "differed before the first visit; read the effects with the sensitivity "
                "bounds beside them."
            )
        elif d.no_power_against():
            text += ", so its pass says little."
        else:
            text += "."
        parts.append(text)
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
    if pd.isna(f["estimate"]) or pd.isna(b["estimate"]):
        return (
            f"The balanced-sample estimate at {_months(rel_time)} is not published (too few "
            "visited students; privacy rules)."
        )
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
    own = sensitivity.loc[sensitivity["group"] == group]
    d = own.loc[own["breakdown"].notna()]
    who = _who(group)
    if d.empty:
        unfit = own.reindex(columns=["inference"])["inference"].eq(NO_PRETREND_FIT).any()
        why = f" ({NO_PRETREND_FIT})" if unfit else ""
        return f"No published sensitivity bounds for {who}{why}."
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
        f"Breakdown values for {who} (the smallest bound at which the 95% interval "
        f"includes zero): " + "; ".join(parts) + f". With the smallest Mbar at "
        f"{weakest:.2f}, {reading}."
    )


def _excluding_zero(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.loc[(rows["ci_lower"] > 0) | (rows["ci_upper"] < 0)]


def _month_list(rows: pd.DataFrame) -> str:
    """``"months 0 (-2.8 pp), 1 (-4.0 pp)"`` of the rows given."""
    return "months " + ", ".join(
        f"{int(r['rel_time'])} ({_pp(r['estimate'])})" for _, r in rows.iterrows()
    )


def _joint(p_value: float, statistic: float, alpha: float) -> tuple[bool, str]:
    """Whether a joint test rejects at ``alpha``, and its clause."""
    rejects = bool(p_value < alpha)
    verdict = "rejects" if rejects else "does not reject"
    return rejects, (
        f"{verdict} at the {alpha:.0%} level (F = {fmt(statistic, 2)}, p = {fmt(p_value, 3)})"
    )


@_snapped
def describe_placebo(
    placebo: pd.DataFrame, *, alpha: float = 0.05, calibration: Calibration | None = None
) -> str:
    """The fake-event estimates: which fake post months reject, and their joint test.

    The fake post months of ``placebo.csv`` lie before the real matching window, so the
    placebo can fail; the verdict follows the joint Wald test of the fake post months
    (``post_wald_p_value``), the months whose intervals exclude zero are named, and the
    test's rejection rate in the validation follows (``calibration``: default the packaged
    record); a rejection is read as the design failing only if that size is near nominal.
    """
    cal = load_calibration() if calibration is None else calibration
    diag = cal.diagnostics.get("placebo_post")
    if "note" in placebo.columns:
        return f"The placebo could not be estimated ({placebo['note'].iloc[0]})."
    post = placebo.loc[(placebo["rel_time"] >= 0) & placebo["estimate"].notna()]
    if post.empty:
        return "No placebo estimates."
    shift, last = int(placebo["shift_months"].iloc[0]), int(post["rel_time"].max())
    text = (
        f"With a fake first visit {shift} months early, fake months 0 to {last} are months "
        f"{-shift} to {last - shift} from the real first visit, before the monthly trajectory "
        "the matching used (only the prior school year's annual rate, which may span some "
        "of them, was matched on), so this placebo can fail."
    )
    if {"n_visited", "n_visited_placebo"} <= set(placebo.columns):
        used, total = placebo["n_visited_placebo"].iloc[0], placebo["n_visited"].iloc[0]
        if pd.notna(used) and pd.notna(total):
            text += (
                f" It uses {int(used):,} of the {int(total):,} matched visited students (the "
                "others have no roster row or attendance before their fake first visit)."
            )
    off = _excluding_zero(post)
    text += (
        f" {len(off)} of {len(post)} fake post-month 'effects' have 95% intervals that "
        "exclude zero" + (f" ({_month_list(off)})" if len(off) else "") + "; their average "
        f"is {_pp(post['estimate'].mean())}."
    )
    p = placebo["post_wald_p_value"].iloc[0] if "post_wald_p_value" in placebo else np.nan
    if pd.isna(p):
        return text + " No joint test of the fake post months is available."
    rejects, clause = _joint(p, placebo["post_wald_statistic"].iloc[0], alpha)
    text += f" The joint Wald test that all {len(post)} are zero {clause}"
    if diag is None or not diag.calibrated:
        return f"{text}. {measured_size(diag, cal)}"
    text += ": "
    if rejects:
        return text + (
            f"visited students and their matched comparisons did not move together "
            f"{shift - last} to {shift} months before the first visit, when no one had been "
            "visited, so the design's assumption fails at that distance; read the effects "
            "with the pre-trend tests on months before the matching window and the "
            f"sensitivity bounds. {measured_size(diag, cal)}"
        )
    return text + (
        "no departure of the size this test can detect; not rejecting is not evidence "
        f"that the paths were parallel. {measured_size(diag, cal)}"
    )


@_snapped
def describe_falsification(
    falsification: pd.DataFrame,
    *,
    group: str = "all",
    alpha: float = 0.05,
    calibration: Calibration | None = None,
) -> str:
    """Whether pseudo-events for never-visited students with the same dip show an effect.

    The verdict follows the ``post_months`` row of ``falsification.csv``: the mean
    pseudo-effect over the post months with its interval, and the joint Wald test that
    every post month is zero; then the test's rejection rate in the validation
    (``calibration``: default the packaged record). A pseudo-effect is read as the
    design's bias only if that size is near nominal.
    """
    cal = load_calibration() if calibration is None else calibration
    diag = cal.diagnostics.get("falsification_post")
    if "note" in falsification.columns:
        return f"The falsification could not be estimated ({falsification['note'].iloc[0]})."
    rows = falsification.loc[falsification["group"] == group]
    summary = rows.loc[rows["term"] == "post_months"] if "term" in rows else rows.iloc[:0]
    post = rows.loc[(rows["rel_time"] >= 0) & rows["estimate"].notna()]
    if "term" in rows:
        post = post.loc[post["term"] == "month"]
    if summary.empty or pd.isna(summary["estimate"].iloc[0]) or post.empty:
        return f"No published falsification estimates for {group}."
    s = summary.iloc[0]
    off = _excluding_zero(post)
    rejects, clause = _joint(s["p_value"], s["statistic"], alpha)
    text = (
        f"Never-visited students given a pseudo first visit at the month their attendance "
        f"dipped as visited students' had ({group}, {int(s['n_treated']):,} pseudo-events): "
        f"mean pseudo-effect over months {s['months']} {_pp(s['estimate'])} (95% CI "
        f"{s['ci_lower']:.1f} to {s['ci_upper']:.1f}); the joint Wald test that all "
        f"{int(s['df'])} post months are zero {clause}; {len(off)} of {len(post)} monthly "
        "intervals exclude zero" + (f" ({_month_list(off)})" if len(off) else "") + "."
    )
    if diag is None or not diag.calibrated:
        return f"{text} {measured_size(diag, cal)}"
    if rejects or s["ci_lower"] > 0 or s["ci_upper"] < 0:
        sign = "positive" if s["estimate"] > 0 else "negative"
        return text + (
            f" The design leaves a {sign} pseudo-effect where there is none: if this carries "
            f"over to the visited students, it {'over' if s['estimate'] > 0 else 'under'}"
            f"states effects by about {abs(s['estimate']):.1f} pp. {measured_size(diag, cal)}"
        )
    return text + (
        " The check does not detect a rebound of the dip left in the design's estimates; "
        f"a bias of the mean outside {s['ci_lower']:.1f} to {s['ci_upper']:.1f} pp is "
        f"ruled out at this level, one inside it is not. {measured_size(diag, cal)}"
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
