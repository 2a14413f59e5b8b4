"""Small-cell suppression, applied by the one function that writes tables.

Every table a run publishes (CSV, notebook cell, report page, PDF) goes through
:func:`suppress`: :func:`leapresearch.publish.outputs.publishable` calls it for the
writer and for the notebooks' ``show``.

Rules (thresholds from ``params/base.yaml``, the convention of the state's public data):

1. Any count of students from 1 to ``min_count - 1`` is not published (zero is).
2. An estimate for a group with fewer than ``min_treated`` treated students is not
   published: its estimate, standard error and interval are emptied and the row's
   ``suppressed`` flag is set.
3. A row describing a group of fewer than ``min_group`` students is not published.
4. Complementary suppression: where a published total equals the sum of its parts, a
   single suppressed part could be recovered by subtraction, so the smallest other part
   (or, failing that, the total) is suppressed as well.
5. A row flagged ``suppressed`` never shows an estimate: when any count of students in
   the row is suppressed (e.g. an estimate resting on 1-5 comparison students), its
   estimate, standard error, interval, statistics and p-values are emptied too.

6. Implied counts: a share of students (a proportion, or the mean of a 0/1 variable; the
   columns of :data:`SHARES`) is a count once the size of its group is published beside
   it: ``n * share``. A share whose implied count, or whose complement ``n * (1 - share)``,
   is from 1 to ``min_count - 1`` (for a weighted share: above 0 and below ``min_count``)
   is not published, nor is a share of a group of fewer than ``min_group`` students; the
   row's other numbers computed from the share (:data:`SHARE_DERIVED`: differences,
   standardised differences, effect sizes) are emptied with it and ``suppressed`` is set.
   Zero implied counts are published, as zero counts are (rule 1).
7. Differences of shares: where one group contains another (all treated candidates and
   the matched ones, :data:`NESTED_SHARES`), the difference of their implied counts counts
   the students in between; it is subject to rule 6 too.
8. Complementary suppression of categories: the 0/1 indicators of one categorical
   variable (:data:`leapresearch.data.panel.DUMMY_FAMILIES`, e.g. the race dummies) and
   their reference category (``1 -`` the sum of the shares) partition the group. When a
   category is suppressed, further categories (the smallest first) are suppressed until
   the hidden categories, reference included, add up to 0 or at least ``min_count``
   students, so no hidden category can be recovered by subtraction; when the reference
   category alone is small, the smallest published category that holds students is
   suppressed with it.

Only counts of *students* are subject to the rules: columns starting with
:data:`COUNT_PREFIXES`, except :data:`NOT_STUDENT_COUNTS` (e.g. ``n_groups`` of the robust
estimator counts event-month cohorts, not students). Which rows of a table hold shares of
students: every row, or where the table has a ``type`` column (``balance``), the rows of
``binary`` variables (means of continuous variables such as attendance rates are not
shares of students).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.config import PrivacyConfig
from leapresearch.data.panel import DUMMY_FAMILIES

COUNT_PREFIXES = ("n_", "treated", "matched", "unmatched", "comparisons")
NOT_STUDENT_COUNTS = frozenset({"n_groups"})
"""Count columns that do not count students (``n_groups``: cohorts averaged, robust table)."""
ESTIMATE_COLUMNS = (
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "statistic",
    "p_value",
    "p_value_adjusted",
    "t_stat",
    "pre_wald_p_value",
    "post_wald_statistic",
    "post_wald_p_value",
    "breakdown",
    "boot_std_error",
    "boot_ci_lower",
    "boot_ci_upper",
    "band_lower",
    "band_upper",
    "procedure_std_error",
    "procedure_ci_lower",
    "procedure_ci_upper",
    "procedure_band_lower",
    "procedure_band_upper",
    "estimate_fast",
    "estimate_linearmodels",
    "std_error_fast",
    "std_error_linearmodels",
    "estimate_difference",
    "std_error_difference",
)

ADDITIVE_RELATIONS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "matching_summary": [
        ("treated", ("matched", "unmatched")),
        (
            "unmatched",
            (
                "unmatched_no_comparisons",
                "unmatched_outside_caliper",
                "unmatched_not_enrolled_or_no_data",
            ),
        ),
    ],
    "long_term_coverage": [("n_visited", ("n_with_reference_year", "n_new_in_visit_year"))],
}
"""Per table: ``(total, parts)`` relations used for complementary suppression."""


SHARES: dict[str, tuple[str, ...]] = {
    "mean_treated": ("n_treated_after",),
    "mean_treated_before": ("n_treated_before",),
    "mean_comparison_before": ("n_comparison_before",),
    "mean_comparison_after": ("n_comparison_after", "n_treated_after"),
    "visited_later_share": ("comparison_units",),
}
"""Share columns -> the column(s) holding the size of the group they are a share of.

``mean_comparison_after`` is weighted (the weights sum to ``n_treated_after``): its
implied counts on both sizes are checked, the weighted one as a weighted count."""
PERCENT_SHARES: dict[str, tuple[str, ...]] = {"chronically_absent": ("n_students",)}
"""Shares published in percent (``attendance_by_year``: % of K-12 students)."""
WEIGHTED_SIZES = frozenset(
    {("mean_comparison_after", "n_treated_after"), ("mean_comparison_after", "n_comparison_after")}
)
"""``(share, size)`` pairs of a weighted share: ``share * size`` is not a whole number of
students, so any implied count above 0 and below ``min_count`` is a small cell."""
NESTED_SHARES: tuple[tuple[str, str], ...] = (("mean_treated_before", "mean_treated"),)
"""``(whole, part)`` share columns of nested groups (rule 7)."""
SHARE_DERIVED: tuple[str, ...] = (
    "diff_before",
    "diff_after",
    "sd_treated",
    "smd_before",
    "smd_after",
    "wwc_effect_size",
)
"""Numbers computed from the shares of a row, emptied with them (``sd_treated`` of a 0/1
variable is ``sqrt(p (1 - p))``, so it gives the share away)."""
COUNT_COLUMNS = frozenset({"comparison_units"})
"""Student counts whose names do not start with a count prefix."""


def count_columns(table: pd.DataFrame) -> list[str]:
    """Columns that hold counts of students."""
    return [
        c
        for c in table.columns
        if (c.startswith(COUNT_PREFIXES) or c in COUNT_COLUMNS)
        and c not in NOT_STUDENT_COUNTS
        and pd.api.types.is_numeric_dtype(table[c])
    ]


def _complementary(
    table: pd.DataFrame, hidden: pd.DataFrame, relations: Sequence[tuple[str, tuple[str, ...]]]
) -> pd.DataFrame:
    hidden = hidden.copy()
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            cells = [total, *parts]
            if not all(c in table.columns for c in cells):
                continue
            n_hidden = hidden[cells].sum(axis=1)
            exposed = n_hidden == 1
            for i in np.flatnonzero(exposed.to_numpy()):
                row = table.iloc[i]
                open_parts = [p for p in parts if not hidden.iloc[i][p]]
                target = min(open_parts, key=lambda p: (row[p], p)) if open_parts else total
                if hidden.iloc[i][target]:
                    target = total
                hidden.iloc[i, hidden.columns.get_loc(target)] = True
                changed = True
    return hidden


def _small(count: pd.Series | np.ndarray | float, limit: int, *, weighted: bool = False):
    """True where an implied count is a small cell: 1..limit-1 (weighted: in (0, limit))."""
    c = np.asarray(count, dtype=float)
    with np.errstate(invalid="ignore"):
        if weighted:
            return (c > 1e-6) & (c < limit - 1e-6)
        k = np.round(c)
        return (k >= 1) & (k < limit)


def _shares(table: pd.DataFrame) -> list[tuple[str, str, float]]:
    """``(share, size, scale)`` of every share column of ``table`` with its size present."""
    found = []
    for mapping, scale in ((SHARES, 1.0), (PERCENT_SHARES, 100.0)):
        for share, sizes in mapping.items():
            if share in table.columns:
                found += [(share, n, scale) for n in sizes if n in table.columns]
    return found


def _share_rows(table: pd.DataFrame) -> pd.Series:
    """Rows whose share columns are shares of students (binary rows of a ``type`` table)."""
    if "type" in table.columns:
        return (table["type"].astype(str) == "binary").reset_index(drop=True)
    return pd.Series(True, index=range(len(table)))


def implied_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Every count of students the shares of ``table`` imply, one row per cell and size.

    Parameters
    ----------
    table : DataFrame
        A result table (before or after suppression).

    Returns
    -------
    DataFrame
        ``row`` (position), ``share`` and ``size`` (column names), ``count`` (``size *
        share``), ``complement`` (``size - count``) and ``weighted`` (a sum of weights,
        not of students), for the rows of :func:`_share_rows` with a published share.
    """
    rows = _share_rows(table).to_numpy()
    parts = []
    for share, size, scale in _shares(table):
        p = table[share].to_numpy(dtype=float, na_value=np.nan) / scale
        n = table[size].to_numpy(dtype=float, na_value=np.nan)
        keep = rows & ~np.isnan(p)
        parts.append(
            pd.DataFrame(
                {
                    "row": np.flatnonzero(keep),
                    "share": share,
                    "size": size,
                    "count": (n * p)[keep],
                    "complement": (n - n * p)[keep],
                    "weighted": (share, size) in WEIGHTED_SIZES,
                }
            )
        )
    cols = ["row", "share", "size", "count", "complement", "weighted"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def _unsafe_shares(table: pd.DataFrame, privacy: PrivacyConfig) -> np.ndarray:
    """Rows with a share that implies a small count (rules 6 and 7)."""
    hide = np.zeros(len(table), dtype=bool)
    implied = implied_counts(table)
    for weighted, part in implied.groupby("weighted"):
        bad = (
            _small(part["count"], privacy.min_count, weighted=bool(weighted))
            | _small(part["complement"], privacy.min_count, weighted=bool(weighted))
            | (part["count"] + part["complement"] < privacy.min_group)
        )
        hide[part["row"].to_numpy(dtype=int)[bad]] = True
    rows = _share_rows(table).to_numpy()
    for whole, part in NESTED_SHARES:
        if not {whole, part, SHARES[whole][0], SHARES[part][0]} <= set(table.columns):
            continue
        n_w, n_p = (table[SHARES[c][0]].to_numpy(dtype=float) for c in (whole, part))
        between = n_w * table[whole].to_numpy(dtype=float) - n_p * table[part].to_numpy(dtype=float)
        bad = _small(between, privacy.min_count) | _small(n_w - n_p - between, privacy.min_count)
        hide |= rows & bad
    return hide


def _complementary_categories(
    table: pd.DataFrame, hide: np.ndarray, privacy: PrivacyConfig
) -> np.ndarray:
    """Rule 8: suppress further categories of a family until no hidden one is recoverable."""
    if "covariate" not in table.columns:
        return hide
    hide = hide.copy()
    names = table["covariate"].astype(str).to_numpy()
    rows = _share_rows(table).to_numpy()
    for members in DUMMY_FAMILIES.values():
        idx = np.flatnonzero(np.isin(names, members) & rows)
        if idx.size == 0:
            continue
        for share, size, scale in _shares(table):
            weighted = (share, size) in WEIGHTED_SIZES
            n = table[size].to_numpy(dtype=float)[idx]
            c = n * table[share].to_numpy(dtype=float)[idx] / scale
            if np.isnan(c).any() or np.unique(n).size != 1:
                continue
            while True:
                open_ = ~hide[idx]
                rest = n[0] - c[open_].sum()  # the hidden categories and the reference
                if not open_.any() or not _small(rest, privacy.min_count, weighted=weighted):
                    break
                # the smallest category that holds students (hiding a zero adds nothing)
                pick = open_ & (c > 1e-6) if (open_ & (c > 1e-6)).any() else open_
                hide[idx[np.flatnonzero(pick)[np.argmin(c[pick])]]] = True
    return hide


def suppress(table: pd.DataFrame, *, name: str, privacy: PrivacyConfig) -> pd.DataFrame:
    """Return a copy of ``table`` that is safe to publish.

    Parameters
    ----------
    table : DataFrame
        A table of the output contract.
    name : str
        Its name (selects the additive relations for complementary suppression).
    privacy : PrivacyConfig
        Thresholds.

    Returns
    -------
    DataFrame
        Counts as nullable integers (suppressed cells empty); estimates of suppressed
        rows empty; shares implying a small count empty (rules 6-8); a boolean
        ``suppressed`` column when the table has estimates, counts or shares.
    """
    out = table.copy().reset_index(drop=True)
    counts = count_columns(out)
    shares = _shares(out)
    if not counts and not shares and not any(c in out.columns for c in ESTIMATE_COLUMNS):
        return out
    hidden = pd.DataFrame(False, index=out.index, columns=counts)
    for c in counts:
        v = out[c]
        hidden[c] = (v > 0) & (v < privacy.min_count)
    row_flag = pd.Series(False, index=out.index)
    if "n_treated" in out.columns:
        row_flag |= out["n_treated"].fillna(0) < privacy.min_treated
    if name == "matching_summary" and "treated" in out.columns:
        row_flag |= out["treated"] < privacy.min_group
    hidden = _complementary(out, hidden, ADDITIVE_RELATIONS.get(name, []))
    share_flag = _complementary_categories(out, _unsafe_shares(out, privacy), privacy)
    for c in counts:
        mask = hidden[c] | (row_flag if name == "matching_summary" else False)
        out[c] = out[c].round().astype("Int64").mask(mask)
    suppressed = row_flag | hidden.any(axis=1) | share_flag
    share_cols = {s for s, _, _ in shares} | set(SHARE_DERIVED)
    for c in (*ESTIMATE_COLUMNS, *sorted(share_cols)):
        if c in out.columns and pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype(np.float64).mask(suppressed)
    out["suppressed"] = suppressed
    return out
