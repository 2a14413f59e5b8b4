r"""Pilot (issue 23, kept as run): a reference for visited students new in their visit year.

Nothing was chosen on these draws; the design was not changed. Seeds 9,000,000-9,000,039
(``lists``, two processes of 20, each seed also with ``effect_multiplier = 0``, the
*twin*). Visited students with no row in the school year before their cohort's (new to
the data in the visit year) get their own school-year terms, with their months before the
first visit as their reference; a school year's effect averages the two kinds of students
by their number (a visit year's term of the new students scaled by their months after the
visit). The design's fit (``did``) is recorded beside it on the same draws. Results:
``validation/results/long-term-alternatives-pilot/draws.json`` (its CSV, as JSON),
``validation/README.md`` (the fifth freeze's section).

    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_split_reference.py \
        lists 9000000 20 split-reference-9000000.csv
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
from leapresearch.analysis.fitting import _group_rows, cluster_level
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.long_term import long_term_panel

warnings.simplefilter("ignore")
family, base, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
NOREF = 100
fam.FAMILIES["_y0"] = {
    "simulation": {**fam.FAMILIES[family]["simulation"], "effect_multiplier": 0.0}
}


def cells(prep, true, seed, how):
    """The design's and the split-reference estimates of one draw's all-students cells."""
    config = with_setting(prep.config, "long_term", outcomes=("attendance_rate",))
    prep = dataclasses.replace(prep, config=config)
    did = ltm.estimate_long_term(prep)
    did = did[(did.group == "all")].set_index(["cohort", "years_after"])
    annual = long_term_panel(prep.panel, prep.units).rename(columns={"y": "outcome"})
    annual = annual.assign(censoring_weight=ltm.long_term_censoring_weights(prep, annual))
    attrs = prep.attributes
    rows = []
    for cohort in sorted(attrs["cohort"].dropna().unique()):
        ic = attrs.loc[attrs["cohort"] == cohort]
        wts = subgroup_weights(prep.units, prep.matching.pairs, ic[["stack", "student"]])
        sub, _ = _group_rows(
            prep, annual, wts, outcome="outcome", window=None, reference=-1, adjust=True
        )
        t = sub["treated"].to_numpy() == 1
        r = sub["rel_time"].to_numpy()
        unit = sub["unit"].to_numpy()
        has_ref = np.zeros(unit.max() + 1, bool)
        has_ref[unit[t & (r == -1)]] = True
        noref = t & ~has_ref[unit]
        post = sub["time"].to_numpy() >= sub["stack"].to_numpy()
        code = r.copy()
        code[noref & ~post & (r == 0)] = -1
        sel = noref & (post | (r > 0))
        code[sel] = NOREF + r[sel]
        res = event_study(
            sub.assign(rel_time=code),
            outcome="outcome",
            window=None,
            reference=-1,
            cluster=cluster_level(prep),
        )
        b, V = res.coefficients, res.cov
        w = sub["weight"].to_numpy(float)
        for yr in (0, 1):
            in_r = t & (r == yr)
            n_ref = w[in_r & has_ref[unit]].sum()
            n_no = w[in_r & ~has_ref[unit]].sum()
            post_no = w[in_r & ~has_ref[unit] & post].sum()
            lam = pd.Series(0.0, index=b.index)
            if yr in b.index:
                lam[yr] = n_ref / (n_ref + n_no)
            if NOREF + yr in b.index:
                lam[NOREF + yr] = post_no / (n_ref + n_no)
            rows.append(
                dict(
                    how=how,
                    seed=seed,
                    cohort=cohort,
                    year=yr,
                    truth=true[(cohort, yr)],
                    did=did.loc[(cohort, yr), "estimate"],
                    did_se=did.loc[(cohort, yr), "std_error"],
                    hyb=float(lam @ b),
                    hyb_se=float(np.sqrt(lam @ V @ lam)),
                    noref_share=n_no / (n_ref + n_no),
                )
            )
    return rows


rows = []
for i in range(n):
    seed = base + i
    for how, fname in (("y", family), ("y0", "_y0")):
        with tempfile.TemporaryDirectory() as tmp:
            truth, prep = fam.simulate_family(fname, seed, 1.0, Path(tmp))
        if how == "y":
            true = {
                (t["cohort"], int(t["years_after"])): t["att"]
                for t in truth["long_term"]
                if t["outcome"] == "attendance_rate" and t["group"] == "all"
            }
        rows += cells(prep, true, seed, how)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(i, flush=True)
