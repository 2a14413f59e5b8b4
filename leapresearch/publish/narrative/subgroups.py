"""Sentences on differences between subgroups (notebooks 04 and 05).

The joint tests that a family's groups share one effect (and the PK-5 vs 6-12
contrast), adjusted over the family's months (Holm), never the most extreme group, and how
much of the spread of a family's estimates is noise (empirical-Bayes shrinkage, beside the
forest plots of notebook 05).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.narrative.common import _months, _pp, _snapped


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _tests(n: int) -> str:
    return "1 test" if n == 1 else f"{n} tests"


def _family_adjusted(tests: pd.DataFrame) -> pd.Series:
    """``p_value_holm_family``, or Holm over each family's tests when an older table lacks it."""
    if "p_value_holm_family" in tests.columns:
        return tests["p_value_holm_family"]
    from leapresearch.estimation.multiple_testing import adjust_across_months

    return adjust_across_months(tests)


@_snapped
def describe_heterogeneity(
    tests: pd.DataFrame,
    *,
    rel_time: int,
    families: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> str:
    """Whether effects differ within each subgroup family at one month, in words.

    Reads ``subgroup_tests.csv``: the joint test that every group of a family has the
    same effect (and the PK-5 vs 6-12 contrast). Effects are said to differ only when the
    test rejects after Holm's adjustment over all of the family's tests at every month
    tested (``p_value_holm_family``): with four headline months, one unadjusted p below
    ``alpha`` among them is weak evidence. The unadjusted p-value (from ``F(q, G - 1)``, or
    the wild cluster bootstrap when a group has few clusters, as ``inference`` says) is
    printed beside it. No single group is singled out: with many groups the largest and
    smallest estimates are the noisiest (winner's curse).
    """
    tests = tests.assign(p_adjusted=_family_adjusted(tests).to_numpy())
    n_family = tests.loc[tests["p_value"].notna()].groupby("family").size()
    d = tests.loc[(tests["rel_time"] == rel_time) & tests["p_value"].notna()]
    if families is not None:
        d = d.loc[d["family"].isin(families)]
    if d.empty:
        return f"No subgroup test at {_months(rel_time)}."
    parts = []
    for r in d.itertuples():
        name = r.family.replace("_", " ")
        wild = str(getattr(r, "inference", "")).startswith("wild")
        p_text = f"wild cluster bootstrap {_p(r.p_value)}" if wild else _p(r.p_value)
        stat = (
            f"F({int(r.df)}, {int(r.df_denom)}) = {r.statistic:.2f}, {p_text}; "
            f"Holm over the family's {_tests(int(n_family[r.family]))} {_p(r.p_adjusted)}"
        )
        differ = bool(r.p_adjusted < alpha)
        if r.contrast == "all equal":
            verdict = (
                "the effects differ across groups"
                if differ
                else "no evidence that the effects differ"
            )
            parts.append(f"{name}: {verdict} ({stat})")
        else:
            verdict = "differ" if differ else "are not distinguishable"
            parts.append(
                f"{name}, {r.contrast}: the effects {verdict} (difference {_pp(r.estimate)}, "
                f"{stat})"
            )
    return (
        f"Joint tests at {_months(rel_time)} after the first visit, each family's groups "
        f"tested together at the {alpha:.0%} level after Holm's adjustment over the "
        f"family's tests at every month tested: " + "; ".join(parts) + "."
    )


@_snapped
def describe_shrinkage(table: pd.DataFrame, *, family: str = "district", rel_time: int) -> str:
    """How much of the spread of a family's estimates is noise (empirical Bayes)."""
    from leapresearch.estimation.multiple_testing import POOLED_GROUPS, empirical_bayes

    d = table.loc[
        table["group"].str.startswith(f"{family}:")
        & ~table["group"].isin(list(POOLED_GROUPS))
        & (table["rel_time"] == rel_time)
        & table["estimate"].notna()
    ]
    if len(d) < 2:
        return f"Too few published {family} estimates at {_months(rel_time)} to compare."
    eb = empirical_bayes(d["estimate"].to_numpy(), d["std_error"].to_numpy())
    raw_sd = float(d["estimate"].std(ddof=1))
    return (
        f"At {_months(rel_time)}, the {len(d)} published {family} estimates have a standard "
        f"deviation of {raw_sd:.1f} pp; after removing what their standard errors explain, "
        f"the spread of the true {family} effects is estimated at {np.sqrt(eb['tau2']):.1f} pp "
        f"around a mean of {_pp(eb['mu'])}. The shrunken estimates in the plot pull each "
        f"{family} towards that mean in proportion to its noise."
    )
