r"""The eighth freeze: the long-term cells on the visited students with a reference-year record.

The held-out runs of the fifth freeze's long-term design (``long_term_repeat.py``) left
issue 23's bound (every all-students long-term attendance cell within 0.5 pp under
``lists`` and ``hazard``) missed in two ``hazard`` cells, and a pilot
(``pilot/long_term_attrition.py``) traced much of the error without an effect to the
visited students new to the data in their visit year, who have no row in the reference
school year. The design now fits the long-term cells on the units whose student is
enrolled in the school year before its stack's (``long_term.require_reference_year``), and
its estimand is the effect on those visited students (the simulator's
``truth["long_term_with_reference"]``).

This script freezes that design (``design.json``: commit's code digest, parameters, seeds,
rule) and runs it on seeds never used (``SEED_BASE``), with each draw's no-effect twin as
``long_term_repeat.py`` does (the same seed with ``effect_multiplier = 0``: the error
splits into a weighting part and a no-effect part). Each draw also records, on the same
matched sample, the fifth freeze's fit of every visited student against the truth over
every visited student (``estimate_every``, ``truth_every``), a paired comparison; nothing
is chosen on it.

    PYTHONPATH=$PWD .venv/bin/python validation/long_term_reference_year.py --draws 200
    PYTHONPATH=$PWD .venv/bin/python validation/long_term_reference_year.py --summary-only
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.analysis.base import with_setting

sys.path.insert(0, str(Path(__file__).resolve().parent))
import families as fam  # noqa: E402
import long_term_repeat as repeat  # noqa: E402
import monte_carlo as mc  # noqa: E402

SEED_BASE = 9_900_000
"""First seed of this run (family ``k`` of ``families.FAMILIES``: ``+ 10_000 * k``)."""

FAMILY_NAMES = repeat.FAMILY_NAMES
"""The regimes of issue 23's bound (``lists``, ``hazard``)."""

OUT = mc.RESULTS / "long-term-reference-year"

TITLE = "The eighth freeze: long-term cells on the visited students with a reference-year record"

RULE = (
    "Fixed before the first draw. The design fits the long-term cells on the units whose "
    "student is enrolled in the school year before its stack's (long_term."
    "require_reference_year: true); its truth is the simulator's long_term_with_reference. "
    "Issue 23's bound holds in an all-students long-term attendance cell (school years 0 "
    "and 1 of each cohort) under lists and hazard if its bias over this run's held-out "
    "draws (200 per family, seeds 9,900,000 + 10,000 k + i) is at most 0.5 pp in absolute "
    "value; the summary also says whether the 95% Monte Carlo interval lies wholly beyond "
    "0.5 pp (a clear failure) or straddles it. The paired fit of every visited student (the "
    "fifth freeze's design) is recorded beside it and chooses nothing. Nothing in the design "
    "changes whatever the result."
)


def _every_visited(prepared, truth: dict) -> pd.DataFrame:
    """The fifth freeze's fit (every visited student) and the truth over every one."""
    config = with_setting(prepared.config, "long_term", require_reference_year=False)
    table = repeat._long_term(dataclasses.replace(prepared, config=config))
    true = {
        (t["group"], t["cohort"], int(t["years_after"])): t["att"]
        for t in truth["long_term"]
        if t["outcome"] == "attendance_rate"
    }
    key = ["group", "cohort", "years_after"]
    at = list(zip(*(table[c] for c in key), strict=True))
    return pd.DataFrame(
        {
            "group": table["group"].to_numpy(),
            "cohort": table["cohort"].to_numpy(),
            "rel_time": table["years_after"].to_numpy(np.int64),
            "estimate_every": table["estimate"].to_numpy(),
            "truth_every": [true.get(k, np.nan) for k in at],
        }
    )


def run_draw(family: str, seed: int) -> pd.DataFrame:
    """One draw and its twin (``long_term_repeat.run_draw``) with the paired fit."""
    assert_design()
    return repeat.run_draw(family, seed, paired=_every_visited)


def assert_design() -> None:
    """Refuse to run a design other than the frozen one (the reference-year fit)."""
    from leapresearch.config import load_config

    if not load_config("demo").long_term.require_reference_year:
        raise RuntimeError("the frozen design requires the reference year (params/base.yaml)")


def run_job(job: tuple) -> str:
    """Compute one draw unless its file exists (a ``parallel_map`` item)."""
    family, seed, out = job
    path = Path(out) / "draws" / f"{family}-{seed}.csv"
    return fam.keep_draw(path, lambda: run_draw(family, seed))


def _seed(family: str, draw: int) -> int:
    return fam.family_seed(family, draw, SEED_BASE)


def summarise(draws: pd.DataFrame) -> pd.DataFrame:
    """``long_term_repeat.summarise`` of this run alone, with the paired fit's bias."""
    nothing_pooled = pd.DataFrame(
        columns=["family", "group", "cohort", "rel_time", "draws", "bias", "bias_mcse"]
    )
    cells = repeat.summarise(draws, nothing_pooled)
    paired = []
    for (family, group, cohort, year), d in draws.groupby(
        ["family", "group", "cohort", "rel_time"], sort=True
    ):
        err = (d["estimate_every"] - d["truth_every"]).dropna()
        # this design's error minus the paired fit's, draw by draw (its MC SE is small)
        gap = ((d["estimate"] - d["truth"]) - (d["estimate_every"] - d["truth_every"])).dropna()
        paired.append(
            {
                "family": family,
                "group": group,
                "cohort": cohort,
                "years_after": int(year),
                "every_bias": float(err.mean()),
                "every_mc_se": float(err.std(ddof=1) / np.sqrt(len(err))),
                "every_rmse": float(np.sqrt((err**2).mean())),
                "error_gap": float(gap.mean()),
                "error_gap_mc_se": float(gap.std(ddof=1) / np.sqrt(len(gap))),
            }
        )
    keep = [c for c in cells.columns if not c.startswith("fifth_freeze")]
    return cells[keep].merge(
        pd.DataFrame(paired), on=["family", "group", "cohort", "years_after"], how="left"
    )


def write_summary(cells: pd.DataFrame, out: Path, command: str) -> None:
    """``summary.json`` and ``summary.md`` (all students first, then the grade bands)."""
    records = json.loads(cells.to_json(orient="records", double_precision=10))
    (out / "summary.json").write_text(
        json.dumps({"command": command, "rule": RULE, "cells": records}, indent=1) + "\n"
    )

    def pm(value: float, se: float) -> str:
        return f"{value:+.2f} ({se:.2f})"

    lines = [
        f"# {TITLE}",
        "",
        f"Command: `{command}`",
        "",
        RULE,
        "",
        "Attendance rate, pp; bias (MC SE) against the truth over the visited students "
        "enrolled in the reference year. `weighting`: estimate - twin's estimate - truth; "
        "`no effect`: the twin's estimate; `no ref. year`: share of the cohort's visited "
        "students left out (no record in the school year before their visit's); `every "
        "visited`: the fifth freeze's fit of every visited student on the same draws "
        "against the truth over every visited student (bias, RMSE); `error gap`: this "
        "design's error minus that fit's, draw by draw (the difference of the two biases, "
        "with the smaller MC SE of a paired difference).",
        "",
    ]
    for title, mask in (
        ("All visited students", cells["group"] == "all"),
        ("Grade bands", cells["group"] != "all"),
    ):
        lines += [f"## {title}", ""]
        lines += [
            "| family | group | cohort | year | draws | bias | RMSE | weighting | no effect | "
            "coverage | no ref. year | every visited | its RMSE | error gap | within 0.5 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cells.loc[mask].itertuples():
            verdict = "yes" if r.within_bound else ("no, clearly" if r.clearly_beyond else "no")
            lines.append(
                f"| {r.family} | {r.group} | {r.cohort} | {r.years_after} | {r.draws} | "
                f"{pm(r.bias, r.mc_se)} | {r.rmse:.2f} | "
                f"{pm(r.weighting_part, r.weighting_part_mc_se)} | "
                f"{pm(r.no_effect_part, r.no_effect_part_mc_se)} | {r.coverage:.1%} | "
                f"{r.without_reference_year:.0%} | {pm(r.every_bias, r.every_mc_se)} | "
                f"{r.every_rmse:.2f} | {pm(r.error_gap, r.error_gap_mc_se)} | {verdict} |"
            )
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Freeze (``design.json``), run the missing draws, summarise (see the docstring)."""
    args = repeat.arguments(__doc__, OUT, 200, argv)
    code, draws = repeat.frozen_draws(
        args, seed=_seed, rule=RULE, job=run_job, before_freeze=assert_design
    )
    if code:
        return code
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    write_summary(summarise(draws), args.out, f"validation/long_term_reference_year.py {argv_text}")
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
