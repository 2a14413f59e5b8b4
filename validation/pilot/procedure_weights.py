"""Pilot (validation/README.md): why does the whole-procedure bootstrap overstate the error.

The weighted variants, on the steps of ``procedure_variants.py``: V3 schools resampled and
V5 exponential(1) school weights, the full sample's matches held fixed; V6 exponential(1)
school weights with the propensity score re-fitted with them, re-matched and the units
weighted by their masses (the ``bayesian`` scheme of ``analysis/procedure.py``).
"""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procedure_variants import (  # noqa: E402
    error_rows,
    fits,
    fixed_draws,
    fixed_weights,
    pilot_sample,
)

from leapresearch.analysis import procedure as pr  # noqa: E402
from leapresearch.analysis.event_studies import estimate_event_studies  # noqa: E402
from leapresearch.analysis.sample import prepare_matched  # noqa: E402
from leapresearch.design.matching.propensity import propensity_scores  # noqa: E402
from leapresearch.design.matching.separation import remember_directions  # noqa: E402


def weighted_draws(prepared, data, B):
    """V5 and V6 in each draw: exponential(1) school weights.

    V5 holds the matches fixed; V6 re-fits the propensity score with the weights, re-matches
    and weights the units by their masses.
    """
    frame = data.candidates.frame
    cluster = pd.Series(
        data.row_cluster, index=pd.MultiIndex.from_arrays([frame["stack"], frame["student"]])
    )
    out5, out6 = [], []
    remember_directions(data.separating)
    for d in range(B):
        rng = np.random.default_rng([data.seed, 99, d])
        expw = rng.exponential(size=data.n_clusters)
        mass = pd.Series(expw[cluster.to_numpy()], index=cluster.index)
        try:
            out5.append(
                fits(prepared, lambda u, pairs, t, mass=mass: fixed_weights(u, pairs, t, mass))
            )
        except (ValueError, np.linalg.LinAlgError):
            out5.append({})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ps = propensity_scores(
                    frame,
                    covariates=data.candidates.covariates,
                    start=data.pscore_start,
                    weights=expw[data.row_cluster],
                )
                p6 = prepare_matched(data.panel, data.candidates, data.config, pscore=ps)
                out6.append(
                    fits(p6, lambda u, pairs, t, mass=mass: fixed_weights(u, pairs, t, mass))
                )
        except (ValueError, np.linalg.LinAlgError) as e:
            print("V6 failed", d, e, file=sys.stderr)
            out6.append({})
    return out5, out6


def replication(family, seed, fraction, B, out):
    """One replication: simulate, estimate, draw, write each variant's errors."""
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-exp-") as tmp:
        truth, prepared = pilot_sample(family, seed, fraction, tmp)
        table, results = estimate_event_studies(prepared, subgroups=("grade_band",))
        data = pr.procedure_data(prepared)
        v3, _ = fixed_draws(prepared, data, B)
        v5, v6 = weighted_draws(prepared, data, B)
        draws = [{"V3": a, "V5": b, "V6": c} for a, b, c in zip(v3, v5, v6, strict=True)]
    error_rows(family, seed, truth, table, results, draws, ("V3", "V5", "V6")).to_csv(
        out, index=False
    )


if __name__ == "__main__":
    family, first, n, fraction, B, outdir = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
        Path(sys.argv[6]),
    )
    outdir.mkdir(parents=True, exist_ok=True)
    for seed in range(first, first + n):
        f = outdir / f"{family}-{seed}.csv"
        if not f.exists():
            replication(family, seed, fraction, B, f)
            print("done", seed, flush=True)
