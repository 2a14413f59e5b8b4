r"""Diagnosis of the 2022-23 cohort's year-1 long-term cell (fifth freeze, validation/README.md).

Fits the design's long-term attendance cells of all visited students (years 0 and 1) on
draws of a family, with the code of the checkout at ``ROOT`` (the current one, or an old
commit checked out as a worktree), and writes each cell's error against the simulator's
truth. Run twice on the same seeds, once per checkout, the two files give paired
differences: what a code change moved. ``--variants`` also refits each draw with the
adjustment's fallback off and without the adjustment (current code only). Nothing is
chosen on these draws.

    ROOT=$PWD PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_last_cohort.py \
        hazard 8200000 30 new.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd


def main() -> None:
    """Fit the draws and write the cells' errors (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("seed_base", type=int, help="first seed of the held-out range")
    parser.add_argument("draws", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--variants", action="store_true")
    args = parser.parse_args()
    root = os.environ.get("ROOT", str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, f"{root}/validation")
    import families as fam

    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term

    warnings.simplefilter("ignore")
    k = list(fam.FAMILIES).index(args.family)
    rows = []
    for i in range(args.draws):
        seed = args.seed_base + 10_000 * k + i
        with tempfile.TemporaryDirectory() as tmp:
            truth, prepared = fam.simulate_family(args.family, seed, 1.0, Path(tmp))
        true = {
            (t["group"], t["cohort"], int(t["years_after"])): t["att"]
            for t in truth["long_term"]
            if t["outcome"] == "attendance_rate"
        }
        config = with_setting(
            prepared.config,
            "long_term",
            outcomes=("attendance_rate",),
            require_reference_year=False,  # the design these pilots ran on, kept as run
        )
        variants = {"design": config}
        if args.variants:
            variants["fallback_none"] = with_setting(config, "analysis", adjustment_fallback="none")
            variants["unadjusted"] = with_setting(config, "long_term", regression_adjustment=False)
        for how, cfg in variants.items():
            table = estimate_long_term(dataclasses.replace(prepared, config=cfg))
            table = table[(table["group"] == "all") & table["years_after"].isin([0, 1])]
            for r in table.itertuples():
                key = (r.group, r.cohort, int(r.years_after))
                rows.append(
                    {
                        "seed": seed,
                        "how": how,
                        "cohort": r.cohort,
                        "year": int(r.years_after),
                        "adjustment": r.adjustment,
                        "err": r.estimate - true[key],
                    }
                )
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(args.family, i, flush=True)


if __name__ == "__main__":
    main()
