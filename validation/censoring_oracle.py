"""Do the censoring weights recover the comparisons that were censored? A check with no effect.

On simulated data with no program effect (``effect_multiplier=0``), a comparison student's
months after its own visit are still untreated outcomes, so the event study can also be
run *without* censoring later-visited comparisons: the oracle the censoring weights try to
reproduce. For each draw of a regime this script fits, on the same risk-set matched sample,
the event study with censoring and censoring weights (``ipcw``), with censoring and no
weights (``noipcw``) and without censoring (``uncensored``), and prints the mean estimate
by month over the draws (the truth is 0 everywhere).

Usage (from the project root)::

    .venv/bin/python validation/censoring_oracle.py --regime hazard --draws 30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monte_carlo as mc  # noqa: E402

SEED_BASE = 700_000


def oracle_draw(args: tuple[str, int]) -> pd.DataFrame:
    """The three event studies of one no-effect draw (``all`` visited students)."""
    from leapresearch.analysis.event_studies import estimate_event_studies
    from leapresearch.analysis.sample import prepare
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation
    from leapresearch.design.stacking import stacked_panel

    regime, seed = args
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-oracle-") as tmp:
        folder = Path(tmp)
        config = SimulationConfig(seed=seed, effect_multiplier=0.0, **mc.SIMULATION[regime])
        write_simulation(simulate(config), folder / "data", file_format="parquet",
                         truth_path=folder / "truth.json")  # fmt: skip
        assert json.loads((folder / "truth.json").read_text())["event_study"]["all"]["6"] == 0
        tables = read_raw_tables(folder / "data")
        pool = {"not_yet_visited": True, "censoring_weights": True}
        prepared = prepare(tables, mc._config(folder / "data", pool))
    no_events = dataclasses.replace(prepared.panel, events=prepared.panel.events.iloc[:0])
    fits = {
        "ipcw": prepared.stacked,
        "noipcw": prepared.stacked.drop(columns="censoring_weight"),
        "uncensored": stacked_panel(no_events, prepared.units),
    }
    out = []
    for name, stacked in fits.items():
        table, _ = estimate_event_studies(dataclasses.replace(prepared, stacked=stacked),
                                          subgroups=())  # fmt: skip
        all_ = table.loc[table["group"] == "all", ["rel_time", "estimate"]]
        out.append(all_.assign(variant=name, seed=seed))
    return pd.concat(out, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    """Run the draws and print the mean estimate by variant and month."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", default="hazard", choices=mc.REGIMES)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [(args.regime, SEED_BASE + i) for i in range(args.draws)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        draws = pd.concat(pool.map(oracle_draw, jobs), ignore_index=True)
    mean = draws.groupby(["variant", "rel_time"])["estimate"].mean().unstack()
    print(f"{args.regime}, {args.draws} draws, no effect: mean estimate (pp) by month")
    print(mean.round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
