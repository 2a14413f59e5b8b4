r"""Pilot (issue 23, kept as run): the imputation estimator for the long-term attendance rate.

Nothing was chosen on these draws; the design was not changed. Seeds 9,000,000-9,000,039
(``lists``, two processes of 20), outside every held-out range. For every cohort (all
visited students, the design's matched sample, censoring weights and regression
adjustment as in the design), the comparison-month and visited students' months before
their first visit fit unit and stack-by-month effects (weighted, Gauss-Seidel), a visited
student's month after its visit gets ``y - a_i - g_sm``, and a school year's effect is the
day-weighted sum over the year's months after the visit, averaged over the visited students
of that year (Borusyak, Jaravel and Spiess 2024): the weighting of the simulator's truth.
Results: ``validation/results/long-term-alternatives-pilot/draws.json`` (its CSV, as JSON),
``validation/README.md`` (the fifth freeze's section).

    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_imputation.py \
        lists 9000000 20 imputation-9000000.csv
"""

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fam

from leapresearch.analysis import long_term as ltm
from leapresearch.analysis.base import with_setting
from leapresearch.analysis.fitting import _group_rows
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.long_term import long_term_panel

warnings.simplefilter("ignore")
family, base, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def fe_fit(unit, cell, y, w, iters=2000, tol=1e-11):
    """Unit and cell effects of a weighted two-way fit (Gauss-Seidel)."""
    nu, nc = unit.max() + 1, cell.max() + 1
    wu = np.bincount(unit, w, nu)
    wc = np.bincount(cell, w, nc)
    a = np.zeros(nu)
    g = np.zeros(nc)
    for _ in range(iters):
        g_new = np.bincount(cell, w * (y - a[unit]), nc) / np.where(wc > 0, wc, 1)
        a_new = np.bincount(unit, w * (y - g_new[cell]), nu) / np.where(wu > 0, wu, 1)
        d = max(np.abs(a_new - a).max(), np.abs(g_new - g).max())
        a, g = a_new, g_new
        if d < tol:
            break
    return a, g


rows = []
for i in range(n):
    seed = base + i
    with tempfile.TemporaryDirectory() as tmp:
        truth, prep = fam.simulate_family(family, seed, 1.0, Path(tmp))
    true = {
        (t["cohort"], int(t["years_after"])): t["att"]
        for t in truth["long_term"]
        if t["outcome"] == "attendance_rate" and t["group"] == "all"
    }
    config = with_setting(prep.config, "long_term", outcomes=("attendance_rate",))
    prep = dataclasses.replace(prep, config=config)
    did = ltm.estimate_long_term(prep)
    did = did[(did.group == "all")].set_index(["cohort", "years_after"])["estimate"]
    annual = long_term_panel(prep.panel, prep.units).rename(columns={"y": "outcome"})
    annual = annual.assign(censoring_weight=ltm.long_term_censoring_weights(prep, annual))
    attrs = prep.attributes
    for cohort in sorted(attrs["cohort"].dropna().unique()):
        ic = attrs.loc[attrs["cohort"] == cohort]
        wts = subgroup_weights(prep.units, prep.matching.pairs, ic[["stack", "student"]])
        for adjust in (True, False):
            sub, _ = _group_rows(
                prep, annual, wts, outcome="outcome", window=None, reference=-1, adjust=adjust
            )
            t = sub["treated"].to_numpy() == 1
            post = t & (sub["time"].to_numpy() >= sub["stack"].to_numpy())
            untreated = ~post
            unit = pd.factorize(sub["unit"])[0]
            cell = pd.factorize(sub["stack"].astype(np.int64) * 100000 + sub["time"])[0]
            y = sub["outcome"].to_numpy(float)
            w = sub["weight"].to_numpy(float)
            a, g = fe_fit(unit[untreated], cell[untreated], y[untreated], w[untreated])
            # levels seen in untreated rows only
            seen_c = np.zeros(cell.max() + 1, bool)
            seen_c[cell[untreated]] = True
            seen_u = np.zeros(unit.max() + 1, bool)
            seen_u[unit[untreated]] = True
            a_full = np.zeros(unit.max() + 1)
            a_full[: len(a)] = a
            g_full = np.zeros(cell.max() + 1)
            g_full[: len(g)] = g
            ok = post & seen_c[cell] & seen_u[unit]
            eff = np.where(ok, y - a_full[unit] - g_full[cell], np.nan)
            r = sub["rel_time"].to_numpy()
            d = sub["day_share"].to_numpy(float)
            for yr in (0, 1):
                m = ok & (r == yr)
                # per student: sum of d*eff over post months of the year (pre-event months count 0)
                stud = sub["student"].to_numpy()
                inyr = t & (r == yr)
                N = len(np.unique(stud[inyr]))
                tau = np.sum(d[m] * eff[m]) / N
                rows.append(
                    dict(
                        seed=seed,
                        cohort=cohort,
                        year=yr,
                        adjust=adjust,
                        truth=true[(cohort, yr)],
                        did=did.get((cohort, yr), np.nan) if adjust else np.nan,
                        imp=tau,
                        lost=int((post & (r == yr) & ~ok).sum()),
                    )
                )
    pd.DataFrame(rows).to_csv(out, index=False)
    print(i, flush=True)
