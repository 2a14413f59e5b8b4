r"""Diagnosis of the long-term cells without an effect: who stays in the data (a pilot).

Is the 2022-23 cohort's year-1 cell high without an effect because of who stays? The
held-out runs put the all-students long-term attendance cell of the 2022-23 cohort a school
year after its visits at +0.65 pp under ``hazard`` (+0.42 under ``lists``), most of
it the *no-effect part*: the cell fitted on the draw's twin without effects
(``validation/long_term_repeat.py``). Why was not found. This pilot tests one explanation,
attrition: students who leave the data between the visit year and the next are not the
same among the visited students and their comparisons, and the unit effects of the fit do
not undo a difference in who is left.

For every draw of ``family`` (``effect_multiplier = 0``: the truth is 0 in every cell) it
fits the design's long-term attendance cells (years 0 and 1) twice on the same matched
sample: as the package does (``design``); on the units whose student is enrolled in the
school year before their stack's (``with_reference``); and on those enrolled in each of the
school years before, of and after it (``stayers``). The same fit on fewer units each time; a
comparison censored by its own later visit stays. ``design - with_reference`` is what the
students new in the visit year contribute, ``with_reference - stayers`` what those who leave
(or graduate) contribute. If the
stayers' cell sits near 0 where the design's is high, attrition makes the no-effect part.
It also writes, per cohort, the share of visited students and of comparisons (design
weights) not enrolled in the year after, and their reference-year attendance. Nothing in
the design is chosen on these draws (seeds ``SEED_BASE + 10_000 k + i``, reserved in
``tests/test_simulate_hooks.py``).

    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_attrition.py OUT \
        --family hazard --draws 60
    PYTHONPATH=$PWD .venv/bin/python validation/pilot/long_term_attrition.py OUT --summary
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

from leapresearch.data.types import GRADES
from leapresearch.parallel import parallel_map

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fam  # noqa: E402

SEED_BASE = 9_800_000
"""First seed of the pilot's range (``families.family_seed(family, i, SEED_BASE)``)."""

FITS = {"design": None, "with_reference": (-1,), "stayers": (-1, 0, 1)}
"""The fits: name -> the school years, relative to the stack's, a unit's student must be
enrolled in (None: every unit, as the package fits)."""


def _enrolled_in(rows: pd.DataFrame, enrolled: pd.DataFrame, years) -> pd.DataFrame:
    """The rows of the units whose student is enrolled in each school year of ``years``.

    ``enrolled``: the (student, school year) pairs with membership in the panel. A
    comparison censored by its own later visit stays (its rows after the visit are gone
    from ``rows``, not from the panel): only leaving the data, or graduating, drops a unit.
    """
    units = rows[["unit", "student", "stack"]].drop_duplicates("unit")
    keep = np.ones(len(units), dtype=bool)
    for offset in years:
        at = pd.MultiIndex.from_arrays([units["student"], units["stack"] // 10 + offset])
        keep &= at.isin(enrolled.index)
    return rows.loc[rows["unit"].isin(units["unit"].to_numpy()[keep])].reset_index(drop=True)


def _enrolled(panel) -> pd.DataFrame:
    """The (student, school year) pairs with membership, as an index."""
    monthly = panel.monthly
    pairs = pd.DataFrame(
        {"student": monthly["student"].to_numpy(), "year": monthly["time"].to_numpy() // 10}
    ).loc[monthly["membership"].to_numpy() > 0]
    return pairs.drop_duplicates().set_index(["student", "year"])


def _cells(prepared, years) -> pd.DataFrame:
    """The long-term attendance cells of all visited students, years 0 and 1."""
    from leapresearch.analysis import long_term as analysis_long_term
    from leapresearch.analysis.base import with_setting

    config = with_setting(
        prepared.config,
        "long_term",
        outcomes=("attendance_rate",),
        require_reference_year=False,  # the design these pilots ran on, kept as run
    )
    original = analysis_long_term.long_term_panel
    if years is not None:
        enrolled = _enrolled(prepared.panel)
        analysis_long_term.long_term_panel = lambda *a, **k: _enrolled_in(
            original(*a, **k), enrolled, years
        )
    try:
        table = analysis_long_term.estimate_long_term(dataclasses.replace(prepared, config=config))
    finally:
        analysis_long_term.long_term_panel = original
    table = table.loc[(table["group"] == "all") & table["years_after"].isin([0, 1])]
    return table[["cohort", "years_after", "estimate", "n_treated"]]


def _leavers(prepared) -> pd.DataFrame:
    """Per cohort and arm: weighted share not enrolled the year after, reference-year rate."""
    from leapresearch.estimation.long_term import long_term_panel

    rows = long_term_panel(prepared.panel, prepared.units)
    unit = prepared.units.set_index("unit")
    ref = rows.loc[rows["rel_time"] == -1].groupby("unit")["y"].mean()
    frame = pd.DataFrame(
        {
            "stack": unit["stack"],
            "treated": unit["treated"].astype(bool),
            "weight": unit["weight"],
            "left": ~pd.MultiIndex.from_arrays([unit["student"], unit["stack"] // 10 + 1]).isin(
                _enrolled(prepared.panel).index
            ),
            "reference_rate": ref.reindex(unit.index),
        }
    )
    frame["cohort"] = frame["stack"].map(_cohort_of(prepared))
    roster = prepared.panel.roster[["student", "year", "grade"]]
    grade = roster.assign(grade=roster["grade"].map(_GRADE_NUMBER)).set_index(["student", "year"])
    at = pd.MultiIndex.from_arrays([unit["student"], unit["stack"] // 10])
    frame["grade"] = grade["grade"].reindex(at).to_numpy()
    out = []
    for (cohort, treated), g in frame.groupby(["cohort", "treated"]):
        w = g["weight"].to_numpy(float)
        left = g["left"].to_numpy(bool)
        rate = g["reference_rate"].to_numpy(float)
        ok = np.isfinite(rate)
        graded = np.isfinite(g["grade"].to_numpy(float))
        out.append(
            {
                "cohort": cohort,
                "arm": "visited" if treated else "comparison",
                "share_left": float(w @ left / w.sum()),
                "reference_rate_left": float(np.average(rate[left & ok], weights=w[left & ok]))
                if (left & ok).any()
                else np.nan,
                "reference_rate_stayed": float(np.average(rate[~left & ok], weights=w[~left & ok])),
                "grade": float(np.average(g["grade"].to_numpy(float)[graded], weights=w[graded])),
                "share_grade_12": float(w @ (g["grade"].to_numpy(float) == 12) / w.sum()),
            }
        )
    return pd.DataFrame(out)


_GRADE_NUMBER = {grade: number - 1 for number, grade in enumerate(GRADES)}
"""The contract's grades as numbers: PK -1, K 0, then 1 to 12."""


def _cohort_of(prepared) -> dict:
    """Stack -> cohort label, as the long-term table names them."""
    pairs = prepared.attributes[["stack", "cohort"]].dropna().drop_duplicates()
    return dict(zip(pairs["stack"], pairs["cohort"], strict=True))


def run_draw(family: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One no-effect draw: the cells of every fit of :data:`FITS` and the leavers' table."""
    warnings.simplefilter("ignore")
    settings = {**fam.FAMILIES[family]["simulation"], "effect_multiplier": 0.0}
    with tempfile.TemporaryDirectory(prefix="lr-attr-") as tmp:
        _, prepared = fam.simulate_family(family, seed, 1.0, Path(tmp), simulation=settings)
    cells = pd.concat(
        [_cells(prepared, years).assign(fit=name) for name, years in FITS.items()],
        ignore_index=True,
    ).assign(family=family, seed=seed)
    leavers = _leavers(prepared).assign(family=family, seed=seed)
    return cells, leavers


def run_draw_with_effects(family: str, seed: int) -> pd.DataFrame:
    """One draw with the family's effects: the design's and the with-reference cells.

    Each beside the simulator's truth over every visited student (``truth_all``) and over
    those enrolled in the school year before their visit's (``truth_with_reference``).
    """
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-attr-") as tmp:
        truth, prepared = fam.simulate_family(family, seed, 1.0, Path(tmp))
    cells = pd.concat(
        [_cells(prepared, FITS[name]).assign(fit=name) for name in ("design", "with_reference")],
        ignore_index=True,
    )

    def truth_of(key: str) -> dict:
        return {
            (t["cohort"], int(t["years_after"])): t["att"]
            for t in truth[key]
            if t["outcome"] == "attendance_rate" and t["group"] == "all"
        }

    at = list(zip(cells["cohort"], cells["years_after"].astype(int), strict=True))
    every, with_reference = truth_of("long_term"), truth_of("long_term_with_reference")
    return cells.assign(
        family=family,
        seed=seed,
        truth_all=[every.get(k, np.nan) for k in at],
        truth_with_reference=[with_reference.get(k, np.nan) for k in at],
    )


def effects_summary(out: Path) -> str:
    """Bias of each fit against each truth, draws with effects, as text."""
    files = sorted(out.glob("effects-*.json"))
    if not files:
        return ""
    cells = pd.concat([pd.read_json(f) for f in files])
    cells = cells.assign(
        bias_vs_all=cells["estimate"] - cells["truth_all"],
        bias_vs_with_reference=cells["estimate"] - cells["truth_with_reference"],
    )
    mean_se = {"mean": "mean", "mc_se": lambda v: v.std(ddof=1) / np.sqrt(v.count())}
    keys = ["family", "cohort", "years_after", "fit"]
    table = pd.concat(
        {
            b: cells.groupby(keys)[b].agg(**mean_se)
            for b in ("bias_vs_all", "bias_vs_with_reference")
        },
        axis=1,
    ).round(3)
    truths = cells.groupby(keys[:3])[["truth_all", "truth_with_reference"]].mean().round(2)
    draws = int(cells.groupby(keys).size().min())
    return (
        f"\n\ndraws with effects ({draws} a family): bias against each truth, pp\n"
        + table.to_string()
        + "\n\nthe truths' means, pp\n"
        + truths.to_string()
    )


def main() -> None:
    """Run the draws of a family into OUT (or, with ``--summary``, summarise OUT's draws)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="results folder")
    parser.add_argument("--family", help="the family to run")
    parser.add_argument("--draws", type=int, help="draws to run")
    parser.add_argument("--summary", action="store_true", help="summarise OUT's draws")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--with-effects",
        action="store_true",
        help="draws with the family's effects, each fit beside both truths",
    )
    args = parser.parse_args()
    if not args.summary:
        seeds = [fam.family_seed(args.family, i, SEED_BASE) for i in range(args.draws)]
        one_draw = run_draw_with_effects if args.with_effects else run_draw
        done = parallel_map(partial(one_draw, args.family), seeds, workers=args.workers)
        args.out.mkdir(parents=True, exist_ok=True)
        parts = (
            {"effects": done}
            if args.with_effects
            else {
                "cells": [d[0] for d in done],
                "leavers": [d[1] for d in done],
            }
        )
        for name, frames in parts.items():
            frame = pd.concat(frames, ignore_index=True)
            frame.to_json(args.out / f"{name}-{args.family}.json", orient="records", indent=0)
    print(summary(args.out) + effects_summary(args.out))


def summary(out: Path) -> str:
    """The draws' mean cells by fit, the paired differences, and the leavers, as text."""
    cells = pd.concat([pd.read_json(f) for f in sorted(out.glob("cells-*.json"))])
    keys = ["family", "cohort", "years_after"]
    mean_se = {
        "draws": "count",
        "mean": "mean",
        "mc_se": lambda v: v.std(ddof=1) / np.sqrt(v.count()),
    }
    by_fit = cells.groupby(["fit", *keys])["estimate"].agg(**mean_se).round(3)
    wide = cells.pivot_table(index=["seed", *keys], columns="fit", values="estimate")
    parts = {
        "new_students (design - with_reference)": wide["design"] - wide["with_reference"],
        "leavers (with_reference - stayers)": wide["with_reference"] - wide["stayers"],
    }
    paired = pd.concat(
        {name: d.groupby(level=keys).agg(**mean_se).round(3) for name, d in parts.items()}
    )
    leavers = pd.concat([pd.read_json(f) for f in sorted(out.glob("leavers-*.json"))])
    arms = leavers.drop(columns="seed").groupby(["family", "cohort", "arm"]).mean().round(3)
    return (
        "cells without an effect (truth 0), pp:\n"
        + by_fit.to_string()
        + "\n\npaired differences:\n"
        + paired.to_string()
        + "\n\nby arm (design weights), mean over draws:\n"
        + arms.to_string()
    )


if __name__ == "__main__":
    main()
