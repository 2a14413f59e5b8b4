"""Event-study figures: a pure tidy step and a drawing step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def tidy_event_study(
    table: pd.DataFrame, *, groups: Sequence[str] = ("all",), reference: int = -1
) -> pd.DataFrame:
    """Rows of ``event_study.csv`` to plot, with the reference month added at zero.

    Parameters
    ----------
    table : DataFrame
        The event-study table (``group``, ``rel_time``, ``estimate``, ``ci_lower``,
        ``ci_upper``).
    groups : sequence of str
        Groups to keep, in legend order.
    reference : int
        The omitted month, drawn at 0 with no interval.

    Returns
    -------
    DataFrame
        ``group``, ``rel_time``, ``estimate``, ``ci_lower``, ``ci_upper`` sorted by group
        order then month; suppressed estimates are NaN and are not drawn.
    """
    keep = table.loc[
        table["group"].isin(groups), ["group", "rel_time", "estimate", "ci_lower", "ci_upper"]
    ]
    present = [g for g in groups if g in set(keep["group"])]
    ref = pd.DataFrame(
        {
            "group": present,
            "rel_time": reference,
            "estimate": 0.0,
            "ci_lower": np.nan,
            "ci_upper": np.nan,
        }
    )
    out = pd.concat([keep, ref], ignore_index=True)
    out["order"] = out["group"].map({g: i for i, g in enumerate(groups)})
    out = out.sort_values(["order", "rel_time"], kind="mergesort").drop(columns="order")
    return out.reset_index(drop=True)


def plot_event_study(tidy: pd.DataFrame, *, ax=None, title: str | None = None):
    """Draw event-study estimates with 95% confidence bands (one line per group).

    Parameters
    ----------
    tidy : DataFrame
        From :func:`tidy_event_study`.
    ax : matplotlib Axes, optional
        Drawn into; a new figure when None.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    groups = list(dict.fromkeys(tidy["group"]))
    offsets = np.linspace(-0.15, 0.15, len(groups)) if len(groups) > 1 else [0.0]
    for off, g in zip(offsets, groups, strict=True):
        d = tidy.loc[tidy["group"] == g]
        x = d["rel_time"].to_numpy() + off
        line = ax.plot(x, d["estimate"], marker="o", ms=3, lw=1.2, label=g)[0]
        ax.fill_between(x, d["ci_lower"], d["ci_upper"], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(-0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("School months since the first completed visit (end points binned)")
    ax.set_ylabel("Effect on attendance rate (pp)")
    if title:
        ax.set_title(title)
    if len(groups) > 1:
        ax.legend(frameon=False, fontsize=8)
    return ax


def tidy_forest(
    table: pd.DataFrame,
    *,
    family: str,
    rel_time: int,
    shrink: bool = False,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Rows of a forest plot: one family's published estimates at one month.

    Parameters
    ----------
    table : DataFrame
        The *published* event-study table (suppressed estimates are NaN and left out).
    family : str
        Subgroup family, e.g. ``"district"`` (pooled groups such as ``grade_band:6-12``
        are left out).
    rel_time : int
        Month since the first visit.
    shrink : bool
        Add empirical-Bayes shrunken estimates beside the raw ones
        (:func:`leapresearch.estimation.multiple_testing.empirical_bayes`; the groups'
        errors are treated as independent, as they are when matching is exact on the
        family, e.g. districts).
    alpha : float
        1 - confidence level of the shrunken intervals (raw intervals are the table's).

    Returns
    -------
    DataFrame
        ``level, kind ("raw" | "shrunken"), estimate, ci_lower, ci_upper``, levels
        ordered by raw estimate.
    """
    from scipy import stats

    from leapresearch.estimation.multiple_testing import POOLED_GROUPS, empirical_bayes

    d = table.loc[
        table["group"].str.startswith(f"{family}:")
        & ~table["group"].isin(list(POOLED_GROUPS))
        & (table["rel_time"] == rel_time)
        & table["estimate"].notna()
    ]
    d = d.sort_values(["estimate", "group"], kind="mergesort")
    raw = pd.DataFrame(
        {
            "level": d["group"].str.split(":", n=1).str[1].to_numpy(),
            "kind": "raw",
            "estimate": d["estimate"].to_numpy(np.float64),
            "ci_lower": d["ci_lower"].to_numpy(np.float64),
            "ci_upper": d["ci_upper"].to_numpy(np.float64),
        }
    )
    if not shrink or len(d) < 2:
        return raw
    eb = empirical_bayes(d["estimate"].to_numpy(), d["std_error"].to_numpy())
    z = stats.norm.ppf(1 - alpha / 2)
    shrunk = raw.assign(
        kind="shrunken",
        estimate=eb["shrunken"],
        ci_lower=eb["shrunken"] - z * eb["posterior_sd"],
        ci_upper=eb["shrunken"] + z * eb["posterior_sd"],
    )
    return pd.concat([raw, shrunk], ignore_index=True)


def plot_forest(tidy: pd.DataFrame, *, ax=None, title: str | None = None):
    """Draw a forest plot: one row per level, raw (and shrunken) estimates with intervals.

    Parameters
    ----------
    tidy : DataFrame
        From :func:`tidy_forest`.
    ax : matplotlib Axes, optional
        Drawn into; a new figure when None.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(tidy["level"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(levels) + 1))
    y_of = {lev: i for i, lev in enumerate(levels)}
    kinds = list(dict.fromkeys(tidy["kind"]))
    style = {"raw": ("o", "C0", 0.15), "shrunken": ("s", "C3", -0.15)}
    for kind in kinds:
        marker, color, off = style[kind] if len(kinds) > 1 else ("o", "C0", 0.0)
        d = tidy.loc[tidy["kind"] == kind]
        y = d["level"].map(y_of).to_numpy(np.float64) + off
        ax.errorbar(
            d["estimate"],
            y,
            xerr=[d["estimate"] - d["ci_lower"], d["ci_upper"] - d["estimate"]],
            fmt=marker,
            color=color,
            ms=4,
            lw=1,
            capsize=0,
            label=kind,
        )
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(levels)), levels, fontsize=8)
    ax.set_xlabel("Effect on attendance rate (pp)")
    if title:
        ax.set_title(title, fontsize=10)
    if len(kinds) > 1:
        ax.legend(frameon=False, fontsize=8)
    return ax


def forest_figure(
    table: pd.DataFrame,
    *,
    families: Sequence[str],
    rel_time: int,
    shrink: Sequence[str] = ("district",),
):
    """One forest plot per subgroup family at one month (shrunken beside raw for ``shrink``).

    Parameters
    ----------
    table : DataFrame
        The published event-study table.
    families : sequence of str
        Families to draw, one panel each (families without a published estimate are
        skipped).
    rel_time : int
        Month since the first visit.
    shrink : sequence of str
        Families drawn with empirical-Bayes shrunken estimates beside the raw ones.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    tidies = [
        (f, tidy_forest(table, family=f, rel_time=rel_time, shrink=f in shrink)) for f in families
    ]
    tidies = [(f, t) for f, t in tidies if len(t)]
    if not tidies:
        raise ValueError(f"no published subgroup estimate at month {rel_time} to plot")
    heights = [max(2, t["level"].nunique()) for _, t in tidies]
    fig, axes = plt.subplots(
        len(tidies),
        1,
        figsize=(7, 0.32 * sum(heights) + 1.2 * len(tidies)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (family, tidy) in zip(axes[:, 0], tidies, strict=True):
        plot_forest(tidy, ax=ax, title=f"{family.replace('_', ' ')}, month {rel_time}")
    fig.tight_layout()
    return fig
