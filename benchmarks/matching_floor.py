"""The matching against its floor: the package's matching and plain Newton fits of its models.

Issue 24 asks for the matching "within twice its floor", the floor being the propensity
fits alone, each a plain vectorised Newton logit on its stack's rows. This script builds
the panel and the comparison candidates of a data folder as a run does, then times, in one
process and with one BLAS thread (as the run's analytic steps):

1. **the matching** (:func:`leapresearch.analysis.sample.run_matching`: every stack's
   propensity fit, the separation checks, nearest neighbours within the exact strata and
   caliper, the matched sample), ``--repeat`` times, the median;
2. **the floor**: one plain Newton logit for each fit group the matching fitted, on the very
   rows and columns of its fit (the package's design of that group, its dummies made
   dense), from the intercept-only start, a full Newton step an iteration (halved only
   while it would raise the deviance), until the deviance changes by less than 1e-10
   (relative), with the ridge penalty the package's fit used where it used one;
   ``--repeat`` times, the median of the sum. The floor's linear predictors are checked
   against the package's scores (the largest difference is printed): the two fit the
   same models.

The ratio of the two is the issue's measure. Wall times are comparable only on an idle
machine; the result is written as JSON (``--out``) beside the other benchmarks.

    python benchmarks/matching_floor.py DATA [--repeat 3] [--out benchmarks/results/X.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.linalg
from scipy.special import expit
from threadpoolctl import threadpool_limits

from leapresearch.analysis.sample import pscore_plan, run_matching
from leapresearch.config import load_config
from leapresearch.data.contract.validate import read_raw_tables
from leapresearch.data.panel import build_panel
from leapresearch.design.matching.propensity import RIDGE_FALLBACK
from leapresearch.design.pool import cohort_candidates


def plain_newton(
    x: np.ndarray, y: np.ndarray, ridge: float, tol: float = 1e-10
) -> tuple[np.ndarray, int]:
    """Textbook Newton-Raphson logit of ``y`` on ``x`` (column 0 the unpenalised intercept).

    Returns the linear predictor and the number of Newton steps. ``ridge`` penalises the
    other coefficients as the package's ridge fit does (``ridge * ||b||^2`` added to the
    deviance); a step that would raise the deviance is halved.
    """
    beta = np.zeros(x.shape[1])
    beta[0] = np.log(y.mean() / (1.0 - y.mean()))
    pen = np.full(x.shape[1], ridge)
    pen[0] = 0.0

    def deviance(eta: np.ndarray, beta: np.ndarray) -> float:
        return 2.0 * float(np.sum(np.logaddexp(0.0, eta)) - y @ eta) + float(pen @ beta**2)

    eta = x @ beta
    current = deviance(eta, beta)
    steps = 0
    for steps in range(1, 101):  # noqa: B007 - the count is returned
        mu = expit(eta)
        hessian = (x * (mu * (1.0 - mu))[:, None]).T @ x + np.diag(pen)
        score = x.T @ (y - mu) - pen * beta
        step = scipy.linalg.solve(hessian, score, assume_a="pos")
        t = 1.0  # halved while the deviance grows (a far start on nearly separated data)
        while True:
            new_beta = beta + t * step
            new_eta = x @ new_beta
            new = deviance(new_eta, new_beta)
            if new <= current or t < 1e-10:
                break
            t /= 2
        change = abs(current - new) / (abs(new) + 0.1)
        beta, eta, current = new_beta, new_eta, new
        if change < tol:
            break
    return eta, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a data folder (leapresearch simulate --out)")
    parser.add_argument("--vintage", default="demo", help="parameter file of the run")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each (median)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    from run_benchmark import machine_info  # this folder's script: the same machine record

    machine = machine_info()  # before the work: the load average it met

    config = load_config(args.vintage)
    tables = read_raw_tables(args.data)
    panel = build_panel(tables, chronic_threshold=config.analysis.chronic_threshold)
    candidates = cohort_candidates(
        panel, pool=config.comparison_pool, matching=config.matching, cohorts=config.cohorts
    )
    del panel, tables

    matching_s = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        matching = run_matching(candidates, config)
        matching_s.append(time.perf_counter() - start)
    fits = {f["group"]: f for f in matching.settings["fit_diagnostics"]}
    pscore = matching.pscore.to_numpy()  # aligned with the candidate rows

    plan = pscore_plan(candidates)
    groups = [g for g in plan.groups if g.design is not None]
    problems = []
    for g in groups:
        design, dmat = g.design[0], g.design[1]
        x = design if dmat is None else np.hstack([design, dmat.toarray()])
        ridge = RIDGE_FALLBACK if fits[g.key]["method"] == "ridge" else 0.0
        problems.append((g, x, g.y[g.active], ridge))
    floor_s = []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(args.repeat):
            start = time.perf_counter()
            fitted = [plain_newton(x, y, ridge) for _, x, y, ridge in problems]
            floor_s.append(time.perf_counter() - start)
    # the same models: the floor's scores against the package's (rounded to its grid)
    largest = 0.0
    for (g, *_), (eta, _) in zip(problems, fitted, strict=True):
        largest = max(largest, float(np.nanmax(np.abs(pscore[g.rows][g.active] - eta))))

    result = {
        "data": str(args.data),
        "machine": machine,
        "candidate_rows": len(candidates.frame),
        "fit_groups": len(problems),
        "rows_per_fit": int(np.median([len(y) for _, _, y, _ in problems])),
        "columns_per_fit": int(np.median([x.shape[1] for _, x, _, _ in problems])),
        "ridge_fits": sum(ridge > 0 for *_, ridge in problems),
        "floor_newton_steps": sum(steps for _, steps in fitted),
        "package_newton_steps": sum(int(f.get("n_iter", 0)) for f in fits.values()),
        "matching_s": matching_s,
        "floor_s": floor_s,
        "matching_median_s": statistics.median(matching_s),
        "floor_median_s": statistics.median(floor_s),
        "ratio": statistics.median(matching_s) / statistics.median(floor_s),
        "largest_score_difference": largest,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
