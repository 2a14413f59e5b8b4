r"""The long-term chronic-absence cells with and without the reference-year requirement (a pilot).

The eighth freeze (``validation/README.md``) validated the long-term attendance-rate cells of
the design that keeps the visited students with a record in the reference school year
(``long_term.require_reference_year``). Chronic absence, the other long-term outcome, was
1.1-2.4 pp off in earlier freezes and was not part of that run. For each draw of ``lists``
and ``hazard`` (with the families' effects) this fits the all-students chronic-absence cells
(school years 0 and 1 of each cohort) twice on the same matched sample: with the
requirement, against the truth over the visited students with a reference year
(``truth["long_term_with_reference"]``), and without it, against the truth over every
visited student (``truth["long_term"]``). Nothing in the design is chosen on these draws
(seeds ``SEED_BASE + 10_000 k + i``, reserved in ``tests/test_simulate_hooks.py``).

    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_chronic_reference.py OUT \
        --draws 60
    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_chronic_reference.py OUT --summary
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.parallel import parallel_map

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fam  # noqa: E402

SEED_BASE = 10_000_000
"""First seed of the pilot's range (``families.family_seed(family, i, SEED_BASE)``)."""

FAMILY_NAMES = ("lists", "hazard")

FITS = {"with_reference": (True, "long_term_with_reference"), "every": (False, "long_term")}
"""Fit name -> (``long_term.require_reference_year``, the truth key of its estimand)."""


def run_draw(family: str, seed: int) -> pd.DataFrame:
    """One draw: the all-students chronic-absence cells (years 0, 1) of both fits."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-ltchr-") as tmp:
        truth, prepared = fam.simulate_family(family, seed, 1.0, Path(tmp))
        frames = []
        for name, (required, key) in FITS.items():
            config = with_setting(
                prepared.config,
                "long_term",
                outcomes=("chronically_absent",),
                require_reference_year=required,
            )
            table = estimate_long_term(dataclasses.replace(prepared, config=config))
            table = table.loc[(table["group"] == "all") & table["years_after"].isin([0, 1])]
            true = {
                (t["cohort"], int(t["years_after"])): t["att"]
                for t in truth[key]
                if t["outcome"] == "chronically_absent" and t["group"] == "all"
            }
            at = zip(table["cohort"], table["years_after"].astype(int), strict=True)
            frames.append(
                table[["cohort", "years_after", "estimate", "ci_lower", "ci_upper"]].assign(
                    fit=name, truth=[true.get(k, np.nan) for k in at]
                )
            )
    return pd.concat(frames, ignore_index=True).assign(family=family, seed=seed)


def summary(out: Path) -> str:
    """Bias (MC SE), RMSE and coverage of each fit's cells, and the paired error gap."""
    cells = pd.concat([pd.read_json(f) for f in sorted(out.glob("chronic-*.json"))])
    cells = cells.assign(error=cells["estimate"] - cells["truth"])
    cells["covered"] = (cells["ci_lower"] <= cells["truth"]) & (cells["truth"] <= cells["ci_upper"])
    keys = ["family", "cohort", "years_after"]
    by_fit = cells.groupby([*keys, "fit"]).agg(
        draws=("error", "count"),
        bias=("error", "mean"),
        mc_se=("error", lambda v: v.std(ddof=1) / np.sqrt(v.count())),
        rmse=("error", lambda v: float(np.sqrt((v**2).mean()))),
        coverage=("covered", "mean"),
    )
    wide = cells.pivot_table(index=["seed", *keys], columns="fit", values="error")
    gap = (wide["with_reference"] - wide["every"]).groupby(level=keys)
    paired = pd.DataFrame(
        {"error_gap": gap.mean(), "gap_mc_se": gap.std(ddof=1) / np.sqrt(gap.count())}
    )
    return (
        "chronic absence, all visited students, pp (estimate - the truth of its estimand):\n"
        + by_fit.round(3).to_string()
        + "\n\nerror gap (with_reference - every), draw by draw:\n"
        + paired.round(3).to_string()
    )


def main() -> None:
    """Run the draws of each family into OUT (or, with ``--summary``, summarise OUT)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="results folder")
    parser.add_argument("--draws", type=int, help="draws per family")
    parser.add_argument("--summary", action="store_true", help="summarise OUT's draws")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.summary:
        args.out.mkdir(parents=True, exist_ok=True)
        for family in FAMILY_NAMES:
            seeds = [fam.family_seed(family, i, SEED_BASE) for i in range(args.draws)]
            done = parallel_map(partial(run_draw, family), seeds, workers=args.workers)
            frame = pd.concat(done, ignore_index=True)
            frame.to_json(args.out / f"chronic-{family}.json", orient="records", indent=0)
    text = summary(args.out)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
