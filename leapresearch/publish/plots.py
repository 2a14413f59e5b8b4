"""Figures of the report: each a pure tidy step (table in, table out) and a ``draw(ax)`` step.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); series are also told apart by marker shape. Labels come from
:mod:`leapresearch.publish.labels`, so figures, tables and sentences use the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.publish import labels

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
"""Okabe and Ito (2008) colour-blind-safe palette, in the order used for series."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
TEXT_COLOURS = tuple(c for c in OKABE_ITO if c != "#F0E442")
"""The palette without yellow, for text and thin lines on white."""
X_EVENT = "School months since the first completed visit (end points binned)"
Y_EFFECT = "Effect on attendance rate (pp)"
BALANCE_SAMPLES = ("before", "after")
BAND_COLUMNS = ("band_lower", "band_upper")
"""Columns of the simultaneous band in ``event_study.csv``."""
POINTWISE_LABEL = "95% pointwise interval"
BAND_LABEL = "95% simultaneous band"


def _axes(ax, figsize=(7, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _nothing_to_draw(ax, text: str):
    """An empty panel that says why it is empty (every estimate suppressed, or none fitted)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="0.3", wrap=True)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


# ------------------------------------------------------------------ event study


def tidy_event_study(
    table: pd.DataFrame, *, groups: Sequence[str] = ("all",), reference: int = -1
) -> pd.DataFrame:
    """Rows of ``event_study.csv`` to plot, with the reference month added at zero.

    Parameters
    ----------
    table : DataFrame
        The event-study table (``group``, ``rel_time``, ``estimate``, ``ci_lower``,
        ``ci_upper``; ``band_lower``, ``band_upper`` when the table has the simultaneous
        band). Rows without ``rel_time`` (the summary rows of ``falsification.csv``) are
        left out.
    groups : sequence of str
        Groups to keep, in legend order.
    reference : int
        The omitted month, drawn at 0 with no interval.

    Returns
    -------
    DataFrame
        ``group``, ``label``, ``rel_time``, ``estimate``, ``ci_lower``, ``ci_upper`` (and
        ``band_lower``, ``band_upper`` when ``table`` has them: NaN outside the band's
        months) sorted by group order then month; suppressed estimates are NaN and are
        not drawn.
    """
    cols = ["group", "rel_time", "estimate", "ci_lower", "ci_upper"]
    cols += [c for c in BAND_COLUMNS if c in table.columns]
    keep = table.loc[table["group"].isin(groups) & table["rel_time"].notna(), cols]
    keep = keep.astype({"rel_time": np.int64})
    present = [g for g in groups if g in set(keep["group"])]
    ref = pd.DataFrame({"group": present, "rel_time": reference, "estimate": 0.0})
    ref = ref.reindex(columns=cols)
    out = pd.concat([keep, ref.astype({"rel_time": keep["rel_time"].dtype})], ignore_index=True)
    out["order"] = out["group"].map({g: i for i, g in enumerate(groups)})
    out = out.sort_values(["order", "rel_time"], kind="mergesort").drop(columns="order")
    out.insert(1, "label", out["group"].map(labels.group_label))
    return out.reset_index(drop=True)


def tidy_event_study_family(
    table: pd.DataFrame, family: str, *, reference: int = -1
) -> pd.DataFrame:
    """:func:`tidy_event_study` for every group of one family, in reading order.

    Grade bands PK-5, 6-8, 9-12, 6-12; cohorts in time order.
    """
    groups = labels.sort_groups(g for g in table["group"] if labels.family_of(g) == family)
    return tidy_event_study(table, groups=tuple(groups), reference=reference)


def _has_band(d: pd.DataFrame) -> bool:
    """Whether ``d`` carries a simultaneous band with at least one month."""
    return all(c in d.columns for c in BAND_COLUMNS) and d["band_lower"].notna().any()


def _draw_ribbons(ax, x, d: pd.DataFrame, colour: str, *, alpha: float = 0.22) -> None:
    """The simultaneous band (lighter, behind) and the pointwise interval of one series."""
    if _has_band(d):
        ax.fill_between(
            x, d["band_lower"], d["band_upper"], color=colour, alpha=alpha * 0.45, lw=0,
            label=BAND_LABEL,
        )  # fmt: skip
    ax.fill_between(
        x, d["ci_lower"], d["ci_upper"], color=colour, alpha=alpha, lw=0, label=POINTWISE_LABEL
    )


def plot_event_study(
    tidy: pd.DataFrame, *, ax=None, title: str | None = None, band: bool | None = None
):
    """Draw event-study estimates with 95% intervals (one series per group).

    Parameters
    ----------
    tidy : DataFrame
        From :func:`tidy_event_study`.
    ax : matplotlib Axes, optional
        Drawn into; a new figure when None.
    title : str, optional
    band : bool, optional
        Shade the interval (default for a single group); otherwise error bars on points
        offset side by side, so several groups never overprint. A single shaded group
        also shows the 95% simultaneous band (``band_lower``, ``band_upper``) as a lighter
        ribbon behind its pointwise interval, when ``tidy`` has it; the legend names both.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    groups = list(dict.fromkeys(tidy["group"]))
    band = len(groups) == 1 if band is None else band
    offsets = np.linspace(-0.24, 0.24, len(groups)) if len(groups) > 1 else [0.0]
    for i, (off, g) in enumerate(zip(offsets, groups, strict=True)):
        d = tidy.loc[tidy["group"] == g]
        x = d["rel_time"].to_numpy() + off
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        label = labels.group_label(g)
        if band:
            mk = MARKERS[i % 8]
            ax.plot(x, d["estimate"], marker=mk, ms=3, lw=1.2, color=colour, label=label)
            if len(groups) == 1:
                _draw_ribbons(ax, x, d, colour, alpha=0.18)
            else:
                ax.fill_between(x, d["ci_lower"], d["ci_upper"], color=colour, alpha=0.18, lw=0)
        else:
            err = np.vstack([d["estimate"] - d["ci_lower"], d["ci_upper"] - d["estimate"]])
            ax.errorbar(
                x, d["estimate"], yerr=err, fmt=MARKERS[i % 8], ms=3.5, lw=0.9, capsize=0,
                color=colour, label=label,
            )  # fmt: skip
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(-0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel(X_EVENT)
    ax.set_ylabel(Y_EFFECT)
    if title:
        ax.set_title(title)
    if len(groups) > 1:
        ax.legend(frameon=False, fontsize=8)
    elif band and _has_band(tidy):
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    return ax


def _ribbon_legend(fig) -> None:
    """A figure legend naming the two ribbons of the panels (in neutral grey)."""
    from matplotlib.patches import Patch

    handles = [
        Patch(color="0.45", alpha=0.27, lw=0, label=POINTWISE_LABEL),  # drawn over the band
        Patch(color="0.45", alpha=0.09, lw=0, label=BAND_LABEL),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2, frameon=False, fontsize=8)


def plot_event_study_panels(tidy: pd.DataFrame, *, ncols: int = 2, fig=None):
    """Small multiples: one panel per group (shared axes), each with its 95% interval.

    When ``tidy`` has the simultaneous band (``band_lower``, ``band_upper``), each panel
    shows it as a lighter ribbon behind the pointwise interval, and a figure legend names
    both.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(tidy["group"]))
    nrows = max(1, int(np.ceil(len(groups) / ncols)))
    if fig is None:
        fig = plt.figure(figsize=(4.2 * ncols, 2.9 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False))
    flat = axes.ravel()
    for i, g in enumerate(groups):
        ax = flat[i]
        d = tidy.loc[tidy["group"] == g]
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(d["rel_time"], d["estimate"], marker="o", ms=2.5, lw=1.1, color=colour)
        _draw_ribbons(ax, d["rel_time"].to_numpy(), d, colour, alpha=0.2)
        ax.axhline(0, color="0.3", lw=0.7)
        ax.axvline(-0.5, color="0.5", lw=0.7, ls="--")
        ax.set_title(labels.group_label(g), fontsize=10)
    for ax in flat[len(groups) :]:
        ax.set_visible(False)
    if _has_band(tidy):
        _ribbon_legend(fig)
    fig.supxlabel(X_EVENT, fontsize=9)
    fig.supylabel(Y_EFFECT, fontsize=9)
    return fig


# ------------------------------------------------------------------ balance


def tidy_love_plot(balance: pd.DataFrame) -> pd.DataFrame:
    """Reshape a balance table into the long form drawn by :func:`plot_love` (signed SMDs).

    Parameters
    ----------
    balance : pandas.DataFrame
        A balance table (needs ``covariate``, ``smd_before`` and ``smd_after``;
        ``used_in_matching`` and ``type`` are carried along if present).

    Returns
    -------
    pandas.DataFrame
        Two rows per covariate: ``covariate``, ``label`` (in words), ``sample``
        (``"before"``/``"after"``), ``smd`` (signed: visited minus comparison, in standard
        deviations) and ``ordered``, the covariate's vertical position (0 = bottom): the
        covariate with the largest absolute SMD before matching is at the top, ties by
        name; NaN SMDs go to the bottom.

    Raises
    ------
    ValueError
        If a required column is missing or a covariate appears twice.
    """
    need = ["covariate", "smd_before", "smd_after"]
    missing = [c for c in need if c not in balance.columns]
    if missing:
        raise ValueError(f"balance lacks column(s) {missing}")
    if balance["covariate"].duplicated().any():
        dup = balance.loc[balance["covariate"].duplicated(), "covariate"].tolist()
        raise ValueError(f"balance has duplicate covariates {dup}")
    carry = [c for c in ("used_in_matching", "type") if c in balance.columns]
    base = balance[["covariate", *carry]].reset_index(drop=True)
    base.insert(1, "label", base["covariate"].astype(str).map(labels.covariate_label))
    if "suppressed" in balance.columns:  # shares withheld by the privacy rules: no points
        hidden = balance["suppressed"].fillna(False).astype(bool).to_numpy()
        base.loc[hidden, "label"] += " (not shown: too few students)"
    before = balance["smd_before"].abs().to_numpy(dtype=float)
    # position: ascending |SMD before| (NaN lowest), ties by name descending -> top is A..Z
    names = base["covariate"].astype(str).to_numpy()
    name_rank = pd.Series(names).rank(method="first", ascending=False).to_numpy()
    order = np.lexsort((name_rank, np.nan_to_num(before, nan=-1.0)))
    ordered = np.empty(len(base), dtype=np.int64)
    ordered[order] = np.arange(len(base))
    base["ordered"] = ordered
    parts = []
    for sample, col in (("before", "smd_before"), ("after", "smd_after")):
        part = base.copy()
        part["sample"] = sample
        part["smd"] = balance[col].to_numpy(dtype=float)
        parts.append(part)
    tidy = pd.concat(parts, ignore_index=True)
    tidy["sample"] = pd.Categorical(tidy["sample"], categories=BALANCE_SAMPLES)
    return tidy[["covariate", "label", "sample", "smd", "ordered", *carry]]


def plot_love(tidy: pd.DataFrame, *, ax=None, thresholds: Sequence[float] = (0.1, 0.25)):
    """Draw a signed Love plot: SMD of each covariate before and after matching.

    Dotted lines mark ±0.1 (a common balance threshold) and dashed lines ±0.25 (the What
    Works Clearinghouse limit for statistical adjustment). A point left of zero means the
    visited students had the lower value.

    Parameters
    ----------
    tidy : pandas.DataFrame
        Output of :func:`tidy_love_plot`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created if None.
    thresholds : sequence of float
        Reference lines drawn at ± each value.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Raises
    ------
    ValueError
        If a threshold is negative or ``tidy`` lacks a required column.
    """
    if any(not t >= 0 for t in thresholds):
        raise ValueError(f"thresholds must be non-negative, got {thresholds!r}")
    missing = [c for c in ("covariate", "sample", "smd", "ordered") if c not in tidy]
    if missing:
        raise ValueError(f"tidy lacks column(s) {missing}")
    ax = _axes(ax, figsize=(7, 9))
    styles = {
        "before": {"marker": "o", "facecolors": "none", "edgecolors": OKABE_ITO[1]},
        "after": {"marker": "s", "color": OKABE_ITO[0]},
    }
    names = {"before": "Before matching (all pool students)", "after": "After matching"}
    for sample in BALANCE_SAMPLES:
        d = tidy.loc[tidy["sample"] == sample]
        ax.scatter(d["smd"], d["ordered"], s=22, label=names[sample], zorder=3, **styles[sample])
    for t, ls in zip(thresholds, (":", "--", "-."), strict=False):
        for x in (-t, t):
            ax.axvline(x, color="0.45", lw=0.8, ls=ls)
    ax.axvline(0, color="0.2", lw=0.8)
    ticks = tidy.drop_duplicates("covariate").sort_values("ordered")
    ax.set_yticks(ticks["ordered"].to_numpy())
    text = ticks["label"] if "label" in ticks else ticks["covariate"]
    ax.set_yticklabels(text.astype(str).tolist(), fontsize=7)
    ax.set_xlabel("Standardised mean difference, visited minus comparison (SD)")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    ax.grid(axis="y", color="0.92", lw=0.5)
    return ax


# ------------------------------------------------------------------ subgroups (forest plots)

FOREST_ORDERS = ("reading", "estimate")
"""Row orders of :func:`tidy_forest`: groups in reading order, or by estimate (largest top)."""
SHRUNKEN_COLOUR = OKABE_ITO[1]
"""Colour of the empirical-Bayes estimates drawn beside the raw ones."""
FOREST_COLUMNS = (
    "group", "family", "label", "level", "kind", "estimate", "ci_lower", "ci_upper",
    "n_treated", "position",
)  # fmt: skip
"""Columns of :func:`tidy_forest`."""


def _forest_rows(
    table: pd.DataFrame, rel_time: int, families, pooled: bool, suppressed: bool
) -> pd.DataFrame:
    """The rows of ``table`` a forest plot shows at ``rel_time`` (see :func:`tidy_forest`)."""
    from leapresearch.estimation.multiple_testing import POOLED_GROUPS

    d = table.loc[table["rel_time"] == rel_time].copy()
    d["family"] = d["group"].map(labels.family_of)
    if families is not None:
        d = d.loc[d["family"].isin(("all", *families))]
    if not pooled:
        d = d.loc[(d["family"] != "all") & ~d["group"].isin(list(POOLED_GROUPS))]
    if not suppressed:
        d = d.loc[d["estimate"].notna()]
    return d


def _shrunken(raw: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Empirical-Bayes rows (``kind = "shrunken"``) for each family of ``raw`` with 2+ groups.

    Each family is shrunk among its own published, non-pooled groups, their errors taken
    as independent (as they are when matching is exact on the family, e.g. districts).
    """
    from scipy import stats

    from leapresearch.estimation.multiple_testing import POOLED_GROUPS, empirical_bayes

    z = stats.norm.ppf(1 - alpha / 2)
    parts = []
    for family, d in raw.groupby("family", sort=False):
        d = d.loc[~d["group"].isin(list(POOLED_GROUPS)) & d["estimate"].notna()]
        if family == "all" or len(d) < 2:
            continue
        eb = empirical_bayes(d["estimate"].to_numpy(), d["std_error"].to_numpy())
        parts.append(
            d.assign(
                kind="shrunken",
                estimate=eb["shrunken"],
                ci_lower=eb["shrunken"] - z * eb["posterior_sd"],
                ci_upper=eb["shrunken"] + z * eb["posterior_sd"],
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else raw.iloc[:0]


def tidy_forest(
    table: pd.DataFrame,
    *,
    rel_time: int,
    families: Sequence[str] | None = None,
    pooled: bool = True,
    suppressed: bool = True,
    order: str = "reading",
    shrink: bool = False,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Subgroup estimates at one month, one row per group (and kind), for a forest plot.

    Parameters
    ----------
    table : DataFrame
        The *published* event-study table (suppressed estimates are NaN).
    rel_time : int
        Month since the first visit.
    families : sequence of str, optional
        Subgroup families shown (with the pooled group ``all``), in this order; all
        families when None.
    pooled : bool
        Keep ``all`` and the pooled groups such as ``grade_band:6-12``
        (:data:`leapresearch.estimation.multiple_testing.POOLED_GROUPS`).
    suppressed : bool
        Keep a row (with no estimate) for each suppressed group.
    order : {"reading", "estimate"}
        Groups in reading order (``all`` first, then each family in the order of
        ``families``), or by estimate, largest at the top (ties by group code).
    shrink : bool
        Add empirical-Bayes shrunken estimates beside the raw ones, each family shrunk
        among its published non-pooled groups
        (:func:`leapresearch.estimation.multiple_testing.empirical_bayes`; the groups'
        errors are treated as independent, as they are when matching is exact on the
        family, e.g. districts); a family with fewer than two such groups has none.
    alpha : float
        1 - confidence level of the shrunken intervals (raw intervals are the table's).

    Returns
    -------
    DataFrame
        ``group``, ``family``, ``label`` (in words), ``level`` (the group's value alone),
        ``kind`` (``"raw"`` or ``"shrunken"``), ``estimate``, ``ci_lower``, ``ci_upper``,
        ``n_treated`` and ``position`` (the row of the plot, 0 = top; a group's shrunken
        row shares its raw row's position); raw rows first.

    Raises
    ------
    ValueError
        If ``order`` is not one of :data:`FOREST_ORDERS`.
    """
    if order not in FOREST_ORDERS:
        raise ValueError(f"order must be one of {FOREST_ORDERS}, got {order!r}")
    d = _forest_rows(table, rel_time, families, pooled, suppressed)
    if order == "reading":
        rows = labels.sort_groups(d["group"], families or tuple(labels.FAMILY_NAMES))
    else:
        ranked = d.sort_values(["estimate", "group"], kind="mergesort", na_position="first")
        rows = ranked["group"].tolist()[::-1]
    d = d.set_index("group").loc[rows].reset_index()
    d["label"] = d["group"].map(labels.group_label)
    d["level"] = [g.partition(":")[2] or g for g in d["group"]]
    d["kind"] = "raw"
    d["position"] = np.arange(len(d))
    d = d.reindex(columns=[*FOREST_COLUMNS, "std_error"])
    if shrink:
        d = pd.concat([d, _shrunken(d, alpha)], ignore_index=True)
    return d[list(FOREST_COLUMNS)]


def _forest_series(ax, tidy: pd.DataFrame, colour: dict[str, str]) -> None:
    """The points and intervals: raw by family colour, shrunken beside them (squares)."""
    kinds = list(dict.fromkeys(tidy["kind"]))
    offset = {"raw": 0.15, "shrunken": -0.15} if len(kinds) > 1 else {"raw": 0.0}
    for kind in kinds:
        rows = tidy.loc[tidy["kind"] == kind]
        for fam in dict.fromkeys(rows["family"]):
            d = rows.loc[rows["family"] == fam]
            y = offset[kind] - d["position"].to_numpy(dtype=float)
            err = np.vstack([d["estimate"] - d["ci_lower"], d["ci_upper"] - d["estimate"]])
            shrunk = kind == "shrunken"
            ax.errorbar(
                d["estimate"], y, xerr=err, fmt="s" if shrunk else "o", ms=3.5, lw=1,
                color=SHRUNKEN_COLOUR if shrunk else colour[fam],
                label=kind if len(kinds) > 1 and fam == rows["family"].iloc[0] else None,
            )  # fmt: skip


def plot_forest(tidy: pd.DataFrame, *, ax=None, title: str | None = None, names: str = "label"):
    """Draw a forest plot: one row per group, estimate and 95% interval, pooled line.

    Families are told apart by colour (and their row names take it, when there are
    several); suppressed groups keep their row with the symbol of :mod:`labels` instead
    of a point; shrunken estimates, when ``tidy`` has them, are drawn as squares below
    their raw estimate, and a legend names both.

    Parameters
    ----------
    tidy : DataFrame
        From :func:`tidy_forest`.
    ax : matplotlib Axes, optional
        Drawn into; a new figure when None.
    title : str, optional
    names : str
        Column of ``tidy`` naming the rows: ``"label"`` (in words) or ``"level"`` (the
        group's value alone, for a panel whose title names the family).

    Returns
    -------
    matplotlib.axes.Axes
    """
    raw = tidy.loc[tidy["kind"] == "raw"]
    ax = _axes(ax, figsize=(7, 0.24 * len(raw) + 1.2))
    families = list(dict.fromkeys(raw["family"]))
    colour = {f: TEXT_COLOURS[i % len(TEXT_COLOURS)] for i, f in enumerate(families)}
    _forest_series(ax, tidy, colour)
    pooled = raw.loc[raw["group"] == "all", "estimate"]
    if len(pooled) and pd.notna(pooled.iloc[0]):
        ax.axvline(pooled.iloc[0], color=OKABE_ITO[0], lw=0.8, ls="--")
    ax.axvline(0, color="0.3", lw=0.8)
    texts = [
        f"{lab} ({labels.SUPPRESSED})" if pd.isna(e) else lab
        for lab, e in zip(raw[names], raw["estimate"], strict=True)
    ]
    ax.set_yticks(-raw["position"].to_numpy(dtype=float))
    ax.set_yticklabels(texts, fontsize=7)
    if len(families) > 1:
        for tick, fam in zip(ax.get_yticklabels(), raw["family"], strict=True):
            tick.set_color(colour[fam])
    ax.set_xlabel(Y_EFFECT)
    if title:
        ax.set_title(title, fontsize=10)
    if tidy["kind"].nunique() > 1:
        ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="x", color="0.92", lw=0.5)
    return ax


def tidy_forest_families(
    table: pd.DataFrame,
    *,
    families: Sequence[str],
    rel_time: int,
    shrink: Sequence[str] = ("district",),
) -> list[tuple[str, pd.DataFrame]]:
    """``(family, tidy forest)`` of each family with a published estimate at ``rel_time``.

    The tidy step of :func:`forest_figure` (an empty list: nothing to draw).
    """
    tidies = [
        (f, tidy_forest(table, rel_time=rel_time, families=(f,), pooled=False,
                        suppressed=False, order="estimate", shrink=f in shrink))
        for f in families
    ]  # fmt: skip
    return [(f, t) for f, t in tidies if len(t)]


def forest_figure(
    table: pd.DataFrame,
    *,
    families: Sequence[str],
    rel_time: int,
    shrink: Sequence[str] = ("district",),
):
    """One forest plot per subgroup family at one month (shrunken beside raw for ``shrink``).

    Each panel holds the family's published, non-pooled groups ordered by estimate
    (:func:`tidy_forest` then :func:`plot_forest`, rows named by their value alone: the
    panel's title names the family).

    Parameters
    ----------
    table : DataFrame
        The published event-study table.
    families : sequence of str
        Families to draw, one panel each (families without a published estimate are
        skipped; without any, one panel that says so).
    rel_time : int
        Month since the first visit.
    shrink : sequence of str
        Families drawn with empirical-Bayes shrunken estimates beside the raw ones.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    tidies = tidy_forest_families(table, families=families, rel_time=rel_time, shrink=shrink)
    if not tidies:
        fig, ax = plt.subplots(figsize=(7, 1.5))
        _nothing_to_draw(ax, f"No published subgroup estimate at month {rel_time}")
        return fig
    heights = [max(2, t["group"].nunique()) for _, t in tidies]
    fig, axes = plt.subplots(
        len(tidies),
        1,
        figsize=(7, 0.32 * sum(heights) + 1.2 * len(tidies)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (family, tidy) in zip(axes[:, 0], tidies, strict=True):
        title = f"{family.replace('_', ' ')}, month {rel_time}"
        plot_forest(tidy, ax=ax, title=title, names="level")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ long term


def tidy_long_term(
    long_term: pd.DataFrame, *, group: str = "all", reference: int | None = -1
) -> pd.DataFrame:
    """Annual effects of one group by cohort (time order) and years after the first visit.

    The reference school year (``years_after = -1``, the year before the first visit's) is
    added at zero with no interval, as in the event-study figures.
    """
    d = long_term.loc[long_term["group"] == group].copy()
    if reference is not None and len(d):
        ref = d.drop_duplicates(["outcome", "cohort"])[["group", "cohort", "outcome"]].copy()
        ref = ref.assign(years_after=reference, school_year="", estimate=0.0)
        ref = ref.assign(ci_lower=np.nan, ci_upper=np.nan)
        have = set(zip(d["outcome"], d["cohort"], d["years_after"], strict=True))
        keep = [
            (o, c, reference) not in have
            for o, c in zip(ref["outcome"], ref["cohort"], strict=True)
        ]
        d = pd.concat([d, ref.loc[keep]], ignore_index=True)
    d["cohort_order"] = d["cohort"].map(labels.cohort_key)
    d = d.sort_values(["outcome", "cohort_order", "years_after"], kind="mergesort")
    d["label"] = d["cohort"].map(labels.cohort_label)
    cols = ["outcome", "cohort", "label", "school_year", "years_after", "estimate"]
    return d[[*cols, "ci_lower", "ci_upper"]].reset_index(drop=True)


def plot_long_term(tidy: pd.DataFrame, *, ax=None, outcome: str = "attendance_rate"):
    """Draw one outcome's effects by school years after the first visit, a series per cohort."""
    ax = _axes(ax)
    d = tidy.loc[tidy["outcome"] == outcome]
    if d.empty:
        return _nothing_to_draw(
            ax, f"No published long-term effect on {labels.outcome_label(outcome).lower()}"
        )
    cohorts = list(dict.fromkeys(d["cohort"]))
    offsets = np.linspace(-0.18, 0.18, len(cohorts)) if len(cohorts) > 1 else [0.0]
    for i, (off, c) in enumerate(zip(offsets, cohorts, strict=True)):
        g = d.loc[d["cohort"] == c]
        err = np.vstack([g["estimate"] - g["ci_lower"], g["ci_upper"] - g["estimate"]])
        ax.errorbar(
            g["years_after"] + off, g["estimate"], yerr=err, fmt=MARKERS[i % 8] + "-", ms=4,
            lw=1, color=OKABE_ITO[i % 8], label=labels.cohort_label(c),
        )  # fmt: skip
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(-0.5, color="0.5", lw=0.8, ls="--")
    years = sorted(d["years_after"].unique())
    ax.set_xticks(years)
    ax.set_xticklabels(["0\n(first visit)" if y == 0 else f"{y:+d}" for y in years])
    ax.set_xlabel("School years relative to the year of the first visit")
    ax.set_ylabel(f"Effect on {labels.outcome_label(outcome).lower()} (pp)")
    ax.legend(frameon=False, fontsize=8, title="Cohort", title_fontsize=8)
    return ax


# ------------------------------------------------------------------ designs compared


ROBUST_DESIGNS = {
    "dr": "Callaway-Sant'Anna doubly robust",
    "unconditional": "Callaway-Sant'Anna unconditional",
}
ROBUST_COMPARISONS = {
    "never_visited": "never visited, same pre-visit attendance",
    "not_yet_visited": "visited later",
    "not_yet_or_never_visited": "visited later or never",
}


def _robust_designs(robust: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One ``(legend label, rows)`` per row set of ``robust_estimator.csv``.

    The unconditional rows are drawn without intervals (their late months rest on few
    students visited later and their intervals would set the scale; the table has them).
    """
    if "estimator" not in robust.columns:  # tables written before the row sets existed
        return [("Callaway-Sant'Anna (visited later)", robust)]
    out = []
    for est, d in robust.groupby("estimator", sort=False):
        comp = str(d["comparison"].iloc[0]) if "comparison" in d.columns else ""
        words = ROBUST_COMPARISONS.get(comp, comp.replace("_", " "))
        if est == "unconditional":
            d = d.assign(ci_lower=np.nan, ci_upper=np.nan)
            words += "; intervals in the table"
        out.append((f"{ROBUST_DESIGNS.get(str(est), str(est))} ({words})", d))
    return sorted(out, key=lambda x: not x[0].startswith(ROBUST_DESIGNS["dr"]))


def tidy_designs(
    naive: pd.DataFrame,
    event_study: pd.DataFrame,
    robust: pd.DataFrame | None,
    *,
    group: str = "all",
) -> pd.DataFrame:
    """Naive before/after, matched event study and Callaway-Sant'Anna side by side.

    Returns
    -------
    DataFrame
        ``design``, ``rel_time``, ``estimate``, ``ci_lower``, ``ci_upper`` (NaN for the
        naive change, which has no interval, and for the unconditional Callaway-Sant'Anna
        rows). Each row set of ``robust`` (column ``estimator``) is its own design, named
        by estimator and comparison students.
    """
    tables: list[tuple[str, pd.DataFrame | None]] = [
        ("Naive before/after", naive),
        ("Matched comparison (main)", event_study),
    ]
    if robust is not None and "estimate" in robust and "rel_time" in robust:
        tables += _robust_designs(robust)
    parts = []
    for design, table in tables:
        if table is None or "estimate" not in table or "rel_time" not in table:
            continue
        d = table.loc[table["group"] == group] if "group" in table else table
        d = d.reindex(columns=["rel_time", "estimate", "ci_lower", "ci_upper"]).copy()
        d.insert(0, "design", design)
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def plot_designs(tidy: pd.DataFrame, *, ax=None):
    """Draw the designs of :func:`tidy_designs` in one panel (offset points, intervals)."""
    ax = _axes(ax)
    designs = list(dict.fromkeys(tidy["design"]))
    offsets = np.linspace(-0.2, 0.2, len(designs)) if len(designs) > 1 else [0.0]
    for i, (off, name) in enumerate(zip(offsets, designs, strict=True)):
        d = tidy.loc[tidy["design"] == name].dropna(subset=["estimate"])
        x = d["rel_time"].to_numpy() + off
        colour = OKABE_ITO[(i + 1) % 8] if i else OKABE_ITO[7]
        if d["ci_lower"].notna().any():
            err = np.vstack([d["estimate"] - d["ci_lower"], d["ci_upper"] - d["estimate"]])
            ax.errorbar(x, d["estimate"], yerr=err, fmt=MARKERS[i] + "-", ms=3.5, lw=1,
                        color=colour, label=name)  # fmt: skip
        else:
            ax.plot(x, d["estimate"], MARKERS[i] + ":", ms=3.5, lw=1, color=colour, label=name)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(-0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel(X_EVENT)
    ax.set_ylabel("Change or effect on attendance rate (pp)")
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda j: designs.index(names[j]))
    ax.legend([handles[j] for j in order], [names[j] for j in order], frameon=False,
              fontsize=8, title="Design (comparison students)", title_fontsize=8)  # fmt: skip
    return ax


# ------------------------------------------------------------------ identification


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

    methods = {
        "relative_magnitudes": "Relative magnitudes: Mbar",
        "smoothness": "Smoothness: M (pp per month²)",
    }
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, method in zip(axes, methods, strict=True):
        d = tidy.loc[tidy["method"] == method]
        x = d["bound"].to_numpy()
        mid = 0.5 * (d["ci_lower"] + d["ci_upper"]).to_numpy()
        ax.errorbar(x, mid, yerr=[mid - d["ci_lower"], d["ci_upper"] - mid], fmt="none", lw=2)
        ax.axhline(0, color="0.3", lw=0.8)
        if len(d) and np.isfinite(d["breakdown"].iloc[0]):
            ax.axvline(d["breakdown"].iloc[0], color="C3", ls="--", lw=0.8, label="breakdown")
            ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel(methods[method])
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
