"""Summarise the pilot of ``procedure_variants.py`` and ``procedure_weights.py`` (not held out).

Reads ``results/procedure-pilot/cells.json`` (one row per replication, variant, group and
headline month: the estimate's analytic error and each variant's bootstrap error) and
prints the mean ratio of each variant's error to the analytic one. A replication and
variant computed by both scripts (V3) counts once, from the first.

Variants: V0 the package's resampled draws; V1 a comparison's copies beyond the first left
out of the matching; V2 V1 with each comparison weighted by its copies within a match set;
V3 schools resampled, the full sample's matches held fixed; V5 exponential(1) school
weights, matches held fixed; V6 exponential(1) school weights, every step re-run (the
``bayesian`` scheme of ``analysis/procedure.py``).
"""

import json
from pathlib import Path

import pandas as pd

cells = pd.DataFrame(
    json.loads((Path(__file__).parents[1] / "results/procedure-pilot/cells.json").read_text())
)
cells = cells.drop_duplicates(["family", "seed", "group", "rel_time", "variant"])
cells["ratio"] = cells["procedure_se"] / cells["std_error"]
print(
    cells.groupby("variant")
    .agg(replications=("seed", "nunique"), cells=("ratio", "size"), mean_ratio=("ratio", "mean"))
    .round(2)
    .to_string()
)
print()
print(cells.groupby(["group", "variant"])["ratio"].mean().unstack("variant").round(2).to_string())
