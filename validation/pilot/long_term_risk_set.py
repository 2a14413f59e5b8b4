r"""Pilot (issue 23, kept as run): the censoring hazard's risk set without months out of the data.

Nothing was chosen on these draws; the design was not changed. Seeds 9,010,000-9,010,049
(``hazard`` without effects, two processes of 25), outside every held-out range. The
long-term cells of all visited students with the design's censoring weights, and with
the weights' hazard fitted only on comparison months in which the student is in the data
(a month with an attendance rate) or is visited. Result (``validation/README.md``, the
fifth freeze again): no cell moves by more than 0.09 pp (paired difference, MC SE 0.02),
so the months out of the data are not why the weights leave the spring cohort's year 1
low under ``hazard``. Results: ``validation/results/long-term-alternatives-pilot/risk_set.json``.

    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_risk_set.py \
        hazard 9010000 25 risk-0.csv
"""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fam
import long_term_repeat as ltr

from leapresearch.analysis import long_term as ltm
from leapresearch.design import censoring

warnings.simplefilter("ignore")
family, base, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
orig_risk, orig_cw = censoring._risk_rows, censoring.censoring_weights
STATE = {"panel": None, "on": False}


def risk_rows(units, first, last):
    """The design's risk rows, with ``STATE["on"]`` only the months in the data or visited."""
    u, t, c = orig_risk(units, first, last)
    if not STATE["on"]:
        return u, t, c
    p = STATE["panel"]
    student = units["student"].to_numpy(np.int64)[u]
    col = t - p.time_min
    ok = (col >= 0) & (col < p.rates.shape[1])
    enrolled = np.zeros(t.size, bool)
    enrolled[ok] = ~np.isnan(p.rates[student[ok], col[ok]])
    keep = enrolled | c
    return u[keep], t[keep], c[keep]


def cw(panel, *a, **k):
    """The design's censoring weights, remembering the panel for :func:`risk_rows`."""
    STATE["panel"] = panel
    return orig_cw(panel, *a, **k)


censoring._risk_rows = risk_rows
censoring.censoring_weights = cw
ltm.censoring_weights = cw
rows = []
for i in range(n):
    seed = base + i
    spec = {**fam.FAMILIES[family]["simulation"], "effect_multiplier": 0.0}
    STATE["on"] = False
    with tempfile.TemporaryDirectory() as tmp:
        truth, prep = fam.simulate_family(family, seed, 1.0, Path(tmp), simulation=spec)
        for on in (False, True):
            STATE["on"] = on
            ltm._WEIGHTS.clear()
            t = ltr._long_term(prep)
            t = t[t.group == "all"]
            for r in t.itertuples():
                rows.append(
                    dict(
                        seed=seed,
                        restricted=on,
                        cohort=r.cohort,
                        year=int(r.years_after),
                        estimate=r.estimate,
                    )
                )
    pd.DataFrame(rows).to_csv(out, index=False)
    print(i, flush=True)
