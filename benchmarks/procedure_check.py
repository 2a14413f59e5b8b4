"""Whole-procedure bootstrap against the truth, on simulated populations (issue 27, item 4).

For each of ``--populations`` simulated populations (demo design at ``--fraction`` of its
size, seeds 1, 2, ...) the run's estimate of ``all`` at the headline months, its
conditional errors (analytic, clustered; multiplier bootstrap) and its whole-procedure
bootstrap error (``--draws`` draws, :mod:`leapresearch.analysis.procedure`) are computed.
Printed: the Monte Carlo standard deviation of the estimate minus the population's true
effect, the mean of each error, and the coverage of the conditional and the
whole-procedure 95% intervals.

    python benchmarks/procedure_check.py --populations 8 --fraction 0.1 --draws 30 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from leapresearch.analysis.event_studies import estimate_event_studies
from leapresearch.analysis.sample import prepare
from leapresearch.config import load_config
from leapresearch.data.contract import read_raw_tables
from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

MONTHS = [1, 3, 6, 9]


def one_population(seed: int, fraction: float, draws: int, workers: int) -> pd.DataFrame:
    sim = simulate(SimulationConfig(scale="demo", sample_fraction=fraction, seed=seed))
    with tempfile.TemporaryDirectory() as folder:
        write_simulation(sim, Path(folder), file_format="csv")
        tables = read_raw_tables(Path(folder))
    config = load_config("demo", overrides=[f"inference.procedure_draws={draws}"])
    prepared = prepare(tables, config)
    table, _ = estimate_event_studies(prepared, subgroups=(), procedure=True, workers=workers)
    rows = table.loc[table["group"].eq("all") & table["rel_time"].isin(MONTHS)].copy()
    truth = sim.truth["event_study"]["all"]
    rows["truth"] = [float(truth[str(r)]) for r in rows["rel_time"]]
    rows["seed"] = seed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = pd.concat(
        [
            one_population(seed, args.fraction, args.draws, args.workers)
            for seed in range(1, args.populations + 1)
        ],
        ignore_index=True,
    )
    rows["error"] = rows["estimate"] - rows["truth"]
    z = 1.959964
    rows["covered_conditional"] = rows["error"].abs() <= z * rows["std_error"]
    rows["covered_procedure"] = rows["error"].abs() <= z * rows["procedure_std_error"]
    out = rows.groupby("rel_time").agg(
        mc_sd=("error", "std"),
        mean_error=("error", "mean"),
        analytic_se=("std_error", "mean"),
        multiplier_se=("boot_std_error", "mean"),
        procedure_se=("procedure_std_error", "mean"),
        coverage_conditional=("covered_conditional", "mean"),
        coverage_procedure=("covered_procedure", "mean"),
    )
    out["procedure_over_analytic"] = out["procedure_se"] / out["analytic_se"]
    print(out.round(3).to_string())
    print(
        f"{args.populations} populations, {args.draws} draws: {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
