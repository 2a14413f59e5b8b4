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


def tidy_sensitivity(
    sensitivity: pd.DataFrame, *, group: str = "all", rel_time: int = 9
) -> pd.DataFrame:
    """Rows of ``sensitivity.csv`` for one group and month, by method then bound.

    Returns
    -------
    DataFrame
        ``method``, ``bound``, ``ci_lower``, ``ci_upper``, ``breakdown`` (suppressed
        rows dropped).
    """
    if "note" in sensitivity.columns:
        return pd.DataFrame(columns=["method", "bound", "ci_lower", "ci_upper", "breakdown"])
    d = sensitivity.loc[
        (sensitivity["group"] == group)
        & (sensitivity["rel_time"] == rel_time)
        & sensitivity["ci_lower"].notna()
    ]
    d = d.sort_values(["method", "bound"], kind="mergesort")
    return d[["method", "bound", "ci_lower", "ci_upper", "breakdown"]].reset_index(drop=True)


def plot_sensitivity(tidy: pd.DataFrame, *, axes=None, title: str | None = None):
    """Robust intervals against the bound, one panel per method (breakdown dashed).

    Returns
    -------
    ndarray of matplotlib Axes
    """
    import matplotlib.pyplot as plt

    labels = {
        "relative_magnitudes": "Relative magnitudes: Mbar",
        "smoothness": "Smoothness: M (pp per month²)",
    }
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, method in zip(axes, labels, strict=True):
        d = tidy.loc[tidy["method"] == method]
        x = d["bound"].to_numpy()
        mid = 0.5 * (d["ci_lower"] + d["ci_upper"]).to_numpy()
        ax.errorbar(x, mid, yerr=[mid - d["ci_lower"], d["ci_upper"] - mid], fmt="none", lw=2)
        ax.axhline(0, color="0.3", lw=0.8)
        if len(d) and np.isfinite(d["breakdown"].iloc[0]):
            ax.axvline(d["breakdown"].iloc[0], color="C3", ls="--", lw=0.8, label="breakdown")
            ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel(labels[method])
    axes[0].set_ylabel("95% robust interval (pp)")
    if title:
        axes[0].figure.suptitle(title)
    return axes


def tidy_specifications(
    specifications: pd.DataFrame, *, group: str = "all", rel_time: int = 9
) -> pd.DataFrame:
    """Rows of ``specifications.csv`` for one group and month, ``main`` first."""
    if "note" in specifications.columns:
        return pd.DataFrame(columns=["specification", "estimate", "ci_lower", "ci_upper"])
    d = specifications.loc[
        (specifications["group"] == group)
        & (specifications["rel_time"] == rel_time)
        & specifications["estimate"].notna()
    ]
    d = d.assign(order=(d["specification"] != "main").astype(int))
    d = d.sort_values(["order", "specification"], kind="mergesort")
    return d[["specification", "estimate", "ci_lower", "ci_upper"]].reset_index(drop=True)


def plot_specifications(tidy: pd.DataFrame, *, ax=None, title: str | None = None):
    """Estimate and 95% interval under each specification (the main one shaded)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * max(len(tidy), 4) + 1))
    y = np.arange(len(tidy))[::-1]
    est = tidy["estimate"].to_numpy()
    ax.errorbar(
        est,
        y,
        xerr=[est - tidy["ci_lower"], tidy["ci_upper"] - est],
        fmt="o",
        ms=4,
        lw=1.2,
    )
    main = tidy.loc[tidy["specification"] == "main"]
    if len(main):
        ax.axvspan(main["ci_lower"].iloc[0], main["ci_upper"].iloc[0], color="0.85", lw=0)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, tidy["specification"])
    ax.set_xlabel("Effect on attendance rate (pp)")
    if title:
        ax.set_title(title)
    return ax


def tidy_pretrend(
    pretrend_event_study: pd.DataFrame, *, group: str = "all", reference: int = -1
) -> pd.DataFrame:
    """The adjusted and unadjusted event studies of one group as two plotted lines.

    Rows of ``pretrend_event_study.csv``; the binned lower end point is left out (it is
    not one month). Returns the :func:`tidy_event_study` layout with ``group`` naming
    the outcome basis.
    """
    d = pretrend_event_study.loc[pretrend_event_study["group"] == group]
    d = d.loc[d["rel_time"] > d["rel_time"].min()] if len(d) else d
    d = d.assign(group=d["basis"] + " outcome")
    return tidy_event_study(
        d, groups=("adjusted outcome", "unadjusted outcome"), reference=reference
    )
