"""The estimates beside the simulator's truth (notebook 08, ``truth_comparison.csv``).

On simulated data whose marker records the truth file (``leapresearch simulate --truth``,
:func:`~leapresearch.data.simulate.read_truth`), every published estimate of the event
study and of the long term that the truth also holds is set beside the true effect, with
whether its 95% interval (and, for the event study, the simultaneous band) covers it. On
real data (no marker) the truth is never read and the table has no rows (it is not
published).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.analysis.sample import Prepared
from leapresearch.config import Config
from leapresearch.data.simulate.writing import read_truth

TRUTH_COMPARISON_COLUMNS = [
    "exhibit",
    "group",
    "cohort",
    "school_year",
    "years_after",
    "outcome",
    "rel_time",
    "estimate",
    "ci_lower",
    "ci_upper",
    "band_lower",
    "band_upper",
    "truth",
    "error",
    "covered",
    "band_covered",
    "n_treated",
]
"""Columns of ``truth_comparison.csv``: ``exhibit`` (``event_study`` or ``long_term``) and
the keys of its row (``group, rel_time`` of the event study; ``group, cohort, school_year,
years_after, outcome`` of the long term), the published estimate and interval (the band
only for the event study's post-visit months), the simulator's ``truth``, ``error``
(estimate minus truth), ``covered`` (the interval holds the truth) and ``band_covered``."""

_DTYPES = {
    "exhibit": object,
    "group": object,
    "cohort": object,
    "school_year": object,
    "years_after": "Int64",
    "outcome": object,
    "rel_time": "Int64",
    "covered": "boolean",
    "band_covered": "boolean",
    "n_treated": "Int64",
}


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every column of :data:`TRUTH_COMPARISON_COLUMNS`, in fixed types."""
    out = table.reindex(columns=TRUTH_COMPARISON_COLUMNS)
    return out.astype({c: _DTYPES.get(c, np.float64) for c in out.columns}).reset_index(drop=True)


def _published(table: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The rows whose estimate the suppression publishes, with a finite interval.

    Rows of fewer than ``privacy.min_treated`` visited students, or with a count of 1 to
    ``privacy.min_count - 1`` students, are not published: they are not compared either.
    """
    privacy = config.privacy
    keep = table["n_treated"].fillna(0) >= privacy.min_treated
    for col in ("n_treated", "n_comparison"):
        if col in table:
            n = table[col].fillna(0)
            keep &= (n == 0) | (n >= privacy.min_count)
    keep &= np.isfinite(table[["estimate", "ci_lower", "ci_upper"]].to_numpy(float)).all(axis=1)
    return table.loc[keep]


def _between(truth: pd.Series, lower: pd.Series, upper: pd.Series) -> pd.Series:
    """Whether ``lower <= truth <= upper``; missing where a bound is missing."""
    inside = (lower <= truth) & (truth <= upper)
    return inside.astype("boolean").mask(lower.isna() | upper.isna())


def event_study_against_truth(
    event_study: pd.DataFrame, truth: dict, config: Config
) -> pd.DataFrame:
    """The event study's published rows beside the true effect of their group and month.

    Months strictly inside ``analysis.window`` (the end points bin later or earlier months,
    another estimand) of every group the truth holds.
    """
    lo, hi = config.analysis.window
    rows = [
        {"group": g, "rel_time": int(r), "truth": float(v)}
        for g, path in truth.get("event_study", {}).items()
        for r, v in path.items()
        if lo < int(r) < hi
    ]
    if not rows or "estimate" not in event_study:
        return _typed(pd.DataFrame())
    est = _published(event_study, config)
    out = est.merge(pd.DataFrame(rows), on=["group", "rel_time"], validate="one_to_one")
    if "band_lower" not in out:
        out = out.assign(band_lower=np.nan, band_upper=np.nan)
    out = out.assign(
        exhibit="event_study",
        error=out["estimate"] - out["truth"],
        covered=_between(out["truth"], out["ci_lower"], out["ci_upper"]),
        band_covered=_between(out["truth"], out["band_lower"], out["band_upper"]),
    )
    return _typed(out)


LONG_TERM_KEYS = ("group", "cohort", "school_year", "outcome")


def long_term_truth_key(config: Config) -> str:
    """The simulator's truth key of the long-term estimand that ``config`` fits.

    ``long_term_with_reference`` (the visited students enrolled in the school year before
    their visit's) with ``long_term.require_reference_year``, else ``long_term``.
    """
    return "long_term_with_reference" if config.long_term.require_reference_year else "long_term"


def long_term_against_truth(long_term: pd.DataFrame, truth: dict, config: Config) -> pd.DataFrame:
    """The long-term table's published rows beside the true effect of their cell.

    A cell is a group, cohort, school year and outcome (the truth holds the school years
    from the cohort's first on; earlier years are not compared). With
    ``long_term.require_reference_year`` the truth is the simulator's over the visited
    students enrolled in the school year before their visit's (``long_term_with_reference``,
    the estimand of that fit; a truth file without it compares no long-term cell).
    """
    cells = pd.DataFrame(truth.get(long_term_truth_key(config), []))
    keys = [k for k in LONG_TERM_KEYS if k in long_term and k in cells]
    if cells.empty or "estimate" not in long_term or "group" not in keys:
        return _typed(pd.DataFrame())
    cells = cells[[*keys, "att"]].rename(columns={"att": "truth"})
    est = _published(long_term, config).drop(columns=["band_lower", "band_upper"], errors="ignore")
    out = est.merge(cells, on=keys, validate="one_to_one")
    out = out.assign(
        exhibit="long_term",
        error=out["estimate"] - out["truth"],
        covered=_between(out["truth"], out["ci_lower"], out["ci_upper"]),
    )
    return _typed(out)


def truth_comparison(
    event_study: pd.DataFrame, long_term: pd.DataFrame | None, truth: dict, config: Config
) -> pd.DataFrame:
    """Every published estimate the truth holds, beside it (:data:`TRUTH_COMPARISON_COLUMNS`).

    Parameters
    ----------
    event_study : DataFrame
        ``event_study.csv`` of the run (before suppression).
    long_term : DataFrame or None
        ``long_term.csv`` of the run (a one-row note or None: no long-term rows).
    truth : dict
        The simulator's truth (:data:`~leapresearch.data.simulate.TRUTH_SCHEMA`).
    config : Config
        ``analysis.window`` and the suppression thresholds (``privacy``).

    Returns
    -------
    DataFrame
        The event-study rows, then the long-term rows.
    """
    parts = [event_study_against_truth(event_study, truth, config)]
    if long_term is not None:
        parts.append(long_term_against_truth(long_term, truth, config))
    parts = [p for p in parts if len(p)]
    return _typed(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())


def estimate_truth_comparison(
    prepared: Prepared,
    *,
    event_study: pd.DataFrame | None = None,
    long_term: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``truth_comparison.csv``: the estimates beside the simulator's truth.

    The truth is read only through the data folder's simulation marker
    (:func:`~leapresearch.data.simulate.read_truth`); without one (real data, or data
    simulated without ``--truth``) the table has no rows and nothing is estimated.
    ``event_study`` and ``long_term``: the run's tables (estimated here when omitted).

    Raises
    ------
    ValueError
        The marker's truth file is not the truth of these data.
    """
    truth = read_truth(prepared.config.data_path)
    if truth is None:
        return _typed(pd.DataFrame())
    if event_study is None:
        from leapresearch.analysis.event_studies import estimate_event_study

        event_study = estimate_event_study(prepared)
    if long_term is None:
        from leapresearch.analysis.long_term import estimate_long_term

        long_term = estimate_long_term(prepared)
    return truth_comparison(event_study, long_term, truth, prepared.config)


def compare_with_truth(inputs) -> pd.DataFrame:
    """How a run computes :func:`estimate_truth_comparison`: from its own two tables.

    ``inputs``: the run's :class:`~leapresearch.analysis.runner.StepInputs`.
    """
    event_study = inputs.results.get("event_study")
    if event_study is None and read_truth(inputs.prepared.config.data_path) is not None:
        event_study = inputs.published_event_study()  # with the run's workers, not one
    return estimate_truth_comparison(
        inputs.prepared, event_study=event_study, long_term=inputs.results.get("long_term")
    )


def coverage_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Share of intervals (and bands) covering the truth, by exhibit and group family.

    Returns
    -------
    DataFrame
        ``exhibit, family, estimates, covered, coverage, band_estimates, band_covered,
        mean_error`` (``family``: the part of ``group`` before the colon).
    """
    if table.empty:
        return pd.DataFrame(
            columns=["exhibit", "family", "estimates", "covered", "coverage", "band_estimates"]
            + ["band_covered", "mean_error"]
        )
    d = table.assign(family=table["group"].str.split(":").str[0])
    g = d.groupby(["exhibit", "family"], sort=False)
    out = g.agg(
        estimates=("covered", "count"),
        covered=("covered", "sum"),
        band_estimates=("band_covered", "count"),
        band_covered=("band_covered", "sum"),
        mean_error=("error", "mean"),
    ).reset_index()
    out.insert(4, "coverage", out["covered"] / out["estimates"])
    return out
