"""Where does the design's bias come from? No-effect draws, decomposed by visited student.

On simulated data with no program effect (``effect_multiplier=0``) the truth is zero for
every visited student, so the event study of any subset of the visited students (with
their own matched comparisons) estimates that subset's bias alone. This script fits, on
the default design's matched sample of each draw, the event study of:

* all visited students;
* those matched inside the propensity-score caliper and those matched outside it
  (``matching.outside_caliper: nearest``: their single nearest comparison, corrected by the
  regression adjustment);
* each grade group at the first visit (PK, K, 1-2, 3-5, 6-8, 9-12);

each on the censored panel the design uses (later-visited comparisons leave at their own
visit) and on the uncensored one (they stay: their months after a visit are untreated
outcomes too when there is no effect). It prints the mean estimate by month over the draws
with its Monte Carlo standard error, and writes ``results/bias_decomposition.md``.

Usage (from the project root)::

    .venv/bin/python validation/bias_decomposition.py --regime hazard --draws 24

``--data DIR`` reuses simulated draws kept in ``DIR/<regime>-<seed>/data`` (development).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monte_carlo as mc  # noqa: E402

SEED_BASE = 700_000  # the no-effect draws of censoring_oracle.py
MONTHS = (-11, -8, -6, -4, -2, 1, 3, 6, 9)
GRADES = {
    "PK": ["PK"],
    "K": ["K"],
    "1-2": ["1", "2"],
    "3-5": ["3", "4", "5"],
    "6-8": ["6", "7", "8"],
    "9-12": ["9", "10", "11", "12"],
}


def _subsets(prepared) -> dict[str, pd.DataFrame]:
    """Visited ``(stack, student)`` of each subset."""
    treated = prepared.attributes[["stack", "student"]]
    far = prepared.outside_caliper[["stack", "student"]].assign(outside=True)
    flag = treated.merge(far, on=["stack", "student"], how="left")["outside"]
    outside = flag.astype("boolean").fillna(False).to_numpy(bool)
    roster = prepared.panel.roster.set_index(["student", "year"])["grade"].astype(str)
    key = pd.MultiIndex.from_arrays([treated["student"], treated["stack"] // 10])
    grade = roster.reindex(key).to_numpy()
    out = {
        "all": treated,
        "inside caliper": treated.loc[~outside],
        "outside caliper": treated.loc[outside],
    }
    out.update({f"grade {g}": treated.loc[np.isin(grade, v)] for g, v in GRADES.items()})
    return out


def decompose_draw(args: tuple[str, int, str | None]) -> pd.DataFrame:
    """Estimates of every subset of one no-effect draw (censored and uncensored panels)."""
    from leapresearch.analysis.fitting import fit_group
    from leapresearch.analysis.sample import prepare
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation
    from leapresearch.design.stacking import stacked_panel, subgroup_weights

    regime, seed, kept = args
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-bias-") as tmp:
        folder = Path(kept) / f"{regime}-{seed}" if kept else Path(tmp)
        if not (folder / "data").exists():
            config = SimulationConfig(seed=seed, effect_multiplier=0.0, **mc.SIMULATION[regime])
            write_simulation(simulate(config), folder / "data", file_format="parquet")
        tables = read_raw_tables(folder / "data")
        prepared = prepare(tables, mc._config(folder / "data", {}))
    no_events = dataclasses.replace(prepared.panel, events=prepared.panel.events.iloc[:0])
    panels = {"censored": prepared.stacked, "uncensored": stacked_panel(no_events, prepared.units)}
    rows = []
    for name, keep in _subsets(prepared).items():
        if len(keep) < 5:
            continue
        weights = subgroup_weights(prepared.units, prepared.matching.pairs, keep)
        for panel_name, panel in panels.items():
            res = fit_group(prepared, panel, weights)
            if res is None:
                continue
            tab = res.table()
            tab = tab.loc[tab["rel_time"].isin(MONTHS), ["rel_time", "estimate"]]
            rows.append(tab.assign(subset=name, panel=panel_name, n=len(keep), seed=seed))
    return pd.concat(rows, ignore_index=True)


def summarise(draws: pd.DataFrame) -> str:
    """Markdown: mean estimate (MC standard error) by subset and month, per panel."""
    order = list(dict.fromkeys(draws["subset"]))
    out = []
    for panel, d in draws.groupby("panel", sort=True):
        g = d.groupby(["subset", "rel_time"])["estimate"]
        mean = g.mean().unstack()
        mcse = (g.std(ddof=1) / np.sqrt(g.size())).unstack()
        n = d.groupby("subset")["n"].mean()
        out += [f"**{panel} panel** (mean estimate, pp; Monte Carlo SE in brackets)", ""]
        out.append("| subset | visited per draw | " + " | ".join(f"m{m:+d}" for m in MONTHS) + " |")
        out.append("|---|---|" + "---|" * len(MONTHS))
        for s in order:
            if s not in mean.index:
                continue
            cells = [f"{mean.loc[s, m]:+.2f} ({mcse.loc[s, m]:.2f})" for m in MONTHS]
            out.append(f"| {s} | {n[s]:.0f} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the draws, print the tables and write ``results/bias_decomposition.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", default="hazard", choices=mc.REGIMES)
    parser.add_argument("--draws", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", help="keep or reuse the simulated draws here")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    jobs = [(args.regime, SEED_BASE + i, args.data) for i in range(args.draws)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        draws = pd.concat(pool.map(decompose_draw, jobs), ignore_index=True)
    text = (
        f"# Bias by visited student: {args.regime}, {args.draws} draws with no effect\n\n"
        f"`validation/bias_decomposition.py --regime {args.regime} --draws {args.draws}`; "
        "default design (`params/base.yaml`); the truth is 0 in every cell.\n\n" + summarise(draws)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bias_decomposition.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
