"""What the comparison group removes: the naive before/after change of visited students.

The placebo (a fake event month) reuses the matching and event-study steps and lives in
:mod:`leapresearch.analysis`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapresearch.data.panel import AnalyticPanel


def naive_pre_post(
    panel: AnalyticPanel,
    treated: pd.DataFrame,
    *,
    window: tuple[int, int] = (-12, 12),
    reference: int = -1,
) -> pd.DataFrame:
    """Mean change in visited students' attendance since the reference month, no comparison.

    Parameters
    ----------
    panel : AnalyticPanel
        Dense monthly rates.
    treated : DataFrame
        ``stack`` (event month) and ``student`` of the visited students.
    window : tuple of int
        Months since the first visit to report.
    reference : int
        The month the change is measured from.

    Returns
    -------
    DataFrame
        ``rel_time``, ``estimate`` (pp), ``n_treated``.

    Notes
    -----
    ``estimate_r = mean_i (100 y_{i,e_i+r} - 100 y_{i,e_i+reference})`` over visited
    students observed in both months. Selection on a low recent spell makes this
    overstate the effect: students picked for low attendance recover partly on their own.
    """
    student = treated["student"].to_numpy()
    stack = treated["stack"].to_numpy()
    n_times = panel.rates.shape[1]

    def at(rel: int) -> np.ndarray:
        col = stack + rel - panel.time_min
        out = np.full(len(student), np.nan)
        ok = (col >= 0) & (col < n_times)
        out[ok] = panel.rates[student[ok], col[ok]]
        return out

    base = at(reference)
    rows = []
    for r in range(window[0], window[1] + 1):
        if r == reference:
            continue
        diff = at(r) - base
        ok = ~np.isnan(diff)
        est = 100.0 * diff[ok].mean() if ok.any() else np.nan
        rows.append({"rel_time": r, "estimate": est, "n_treated": int(ok.sum())})
    return pd.DataFrame(rows)
