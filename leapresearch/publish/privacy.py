"""Small-cell suppression, applied by the one function that writes tables.

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

Only counts of *students* are subject to the rules: columns starting with
:data:`COUNT_PREFIXES`, except :data:`NOT_STUDENT_COUNTS` (e.g. ``n_groups`` of the robust
estimator counts event-month cohorts, not students).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leapresearch.config import PrivacyConfig

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
    "breakdown",
    "boot_std_error",
    "boot_ci_lower",
    "boot_ci_upper",
    "band_lower",
    "band_upper",
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
}
"""Per table: ``(total, parts)`` relations used for complementary suppression."""


def count_columns(table: pd.DataFrame) -> list[str]:
    """Columns that hold counts of students."""
    return [
        c
        for c in table.columns
        if c.startswith(COUNT_PREFIXES)
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
        rows empty; a boolean ``suppressed`` column when the table has estimates or counts.
    """
    out = table.copy()
    counts = count_columns(out)
    if not counts and not any(c in out.columns for c in ESTIMATE_COLUMNS):
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
    for c in counts:
        mask = hidden[c] | (row_flag if name == "matching_summary" else False)
        out[c] = out[c].round().astype("Int64").mask(mask)
    suppressed = row_flag | hidden.any(axis=1)
    for c in ESTIMATE_COLUMNS:
        if c in out.columns:
            out[c] = out[c].astype(np.float64).mask(suppressed)
    out["suppressed"] = suppressed
    return out
