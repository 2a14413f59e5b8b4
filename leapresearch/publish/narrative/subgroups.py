"""Sentences on differences between subgroups (notebooks 04 and 05).

The joint tests that a family's groups share one effect (and the PK-5 vs 6-12
contrast), never the most extreme group, and how much of the spread of a family's
estimates is noise (empirical-Bayes shrinkage, beside the forest plots of notebook 05).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish.narrative.common import _months, _pp, _snapped


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@_snapped
def describe_heterogeneity(
    tests: pd.DataFrame,
    *,
    rel_time: int,
    families: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> str:
    """Whether effects differ within each subgroup family at one month, in words.

    Reads ``subgroup_tests.csv``: the joint F test that every group of a family has the
    same effect (and the PK-5 vs 6-12 contrast). No single group is singled out: with
    many groups the largest and smallest estimates are the noisiest (winner's curse).
    """
    d = tests.loc[(tests["rel_time"] == rel_time) & tests["p_value"].notna()]
    if families is not None:
        d = d.loc[d["family"].isin(families)]
    if d.empty:
        return f"No subgroup test at {_months(rel_time)}."
    parts = []
    for r in d.itertuples():
        name = r.family.replace("_", " ")
        stat = f"F({int(r.df)}, {int(r.df_denom)}) = {r.statistic:.2f}, {_p(r.p_value)}"
        if r.contrast == "all equal":
            verdict = (
                "the effects differ across groups"
                if r.p_value < alpha
                else "no evidence that the effects differ"
            )
            parts.append(f"{name}: {verdict} ({stat})")
        else:
            verdict = "differ" if r.p_value < alpha else "are not distinguishable"
            parts.append(
                f"{name}, {r.contrast}: the effects {verdict} (difference {_pp(r.estimate)}, "
                f"{stat})"
            )
    return (
        f"Joint tests at {_months(rel_time)} after the first visit, each family's groups "
        f"tested together at the {alpha:.0%} level: " + "; ".join(parts) + "."
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
