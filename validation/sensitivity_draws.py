"""Coverage of the Rambachan-Roth bounds on the families (issue 23): ``--sensitivity-only``.

``monte_carlo.py --families ... --sensitivity-only`` simulates each draw of a family
(:func:`families.simulate_family`, the frozen design), fits the all-students event study
and its fit on the untreated rows, and records at the headline months the bounds of
``sensitivity.csv`` (:func:`leapresearch.estimation.sensitivity.sensitivity_bounds`):
relative magnitudes (C-LF, ``Mbar`` in :data:`MBAR`) and smoothness (FLCI, ``M`` in
:data:`M`), each with its breakdown value, with the simulator's truth. Every draw computes
them twice, with the pre-period trend of the untreated rows (``source = untreated``, the
design since the seventh freeze) and with the full fit's own (``full``, the design before),
so the two are compared on the same draws.

The summary (:func:`write_sensitivity_summary`) gives, per family, source, method, bound and
month, the share of draws whose interval covers the truth (with its MC SE), the median
width and the share that excludes zero, and the median breakdown value. Where the design
works the bounds should cover at least as often as the nominal 95%; where parallel trends
fail after the visit (``latent_shock``, ``reachability``) no pre-period can show it, and the
coverage at a given bound is what a reader would get by trusting it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import families as fam  # noqa: E402
import monte_carlo as mc  # noqa: E402

MBAR = (0.0, 0.5, 1.0)
"""Relative-magnitudes bounds recorded (``sensitivity_mbar`` of the parameters: 0 to 1)."""
M = (0.0, 0.1)
"""Smoothness bounds recorded (pp per month squared)."""
SOURCES = ("untreated", "full")
"""Where the pre-period trend comes from: the untreated rows' fit, or the full fit's own."""


def run_sensitivity_draw(family: str, seed: int, *, sample_fraction: float = 1.0) -> pd.DataFrame:
    """One draw of ``family``: the all-students bounds at the headline months, both sources.

    Rows of ``sensitivity_bounds`` (``rel_time, method, inference, bound, estimate,
    ci_lower, ci_upper, breakdown, n_treated``) with ``source``, ``truth`` (the simulator's
    effect on the visited students at that month), ``family`` and ``seed``; one row with
    ``estimable = False`` when either fit cannot be had.
    """
    from leapresearch.analysis.event_studies import estimate_event_studies
    from leapresearch.analysis.identification import pretrend_fits
    from leapresearch.estimation.sensitivity import sensitivity_bounds

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-sens-") as tmp:
        truth, prepared = fam.simulate_family(family, seed, sample_fraction, Path(tmp))
        main = estimate_event_studies(prepared, subgroups=())[1].get("all")
        untreated = pretrend_fits(prepared, subgroups=()).get("all")
    if main is None or untreated is None or untreated.influence is None:
        return pd.DataFrame([{"family": family, "seed": seed, "estimable": False}])
    path = truth["event_study"]["all"]
    alpha = prepared.config.analysis.alpha
    frames = [
        sensitivity_bounds(
            main, rel_times=mc.HEADLINE, mbar=MBAR, m=M, alpha=alpha, pretrend=pretrend
        ).assign(source=source)
        for source, pretrend in zip(SOURCES, (untreated, None), strict=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    out["truth"] = [path[str(int(r))] for r in out["rel_time"]]
    return out.assign(family=family, seed=seed, estimable=True)


def run_sensitivity_job(job: tuple) -> str:
    """:func:`run_sensitivity_draw` unless its file exists (a ``parallel_map`` item)."""
    family, seed, out, fraction = job
    return fam.keep_draw(
        fam.draw_file(Path(out), family, seed, fraction),
        lambda: run_sensitivity_draw(family, seed, sample_fraction=fraction),
    )


def summarise_bounds(draws: pd.DataFrame) -> pd.DataFrame:
    """Per family, source, method, bound and month: coverage, width, exclusion of zero.

    ``coverage``: share of the estimable draws whose interval holds the truth (an interval
    not computed counts as not covering), ``coverage_mcse`` its Monte Carlo standard error;
    ``excludes_zero``: share whose interval lies wholly on one side of zero;
    ``median_width`` and ``median_breakdown`` over the draws.
    """
    rows = draws.loc[draws["estimable"].astype(bool)].copy()
    lo, hi, truth = rows["ci_lower"], rows["ci_upper"], rows["truth"]
    rows["covers"] = ((lo <= truth) & (truth <= hi)).astype(float)
    rows["width"] = hi - lo
    rows["excludes_zero"] = ((lo > 0) | (hi < 0)).astype(float)
    keys = ["family", "source", "method", "bound", "rel_time"]
    grouped = rows.groupby(keys, sort=False)
    out = grouped.agg(
        draws=("seed", "nunique"),
        coverage=("covers", "mean"),
        median_width=("width", "median"),
        excludes_zero=("excludes_zero", "mean"),
        median_breakdown=("breakdown", "median"),
        mean_truth=("truth", "mean"),
        mean_estimate=("estimate", "mean"),
    ).reset_index()
    out["coverage_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["draws"])
    return out


def _percent(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.0f}"


def _family_table(cells: pd.DataFrame, rel_time: int) -> pd.DataFrame:
    """One row per family and source at ``rel_time``: coverage at each bound, breakdowns."""
    rows = []
    at = cells.loc[cells["rel_time"] == rel_time]
    for family in [f for f in fam.FAMILIES if f in set(at["family"])]:
        for source in SOURCES:
            part = at.loc[(at["family"] == family) & (at["source"] == source)]
            if part.empty:
                continue
            row = {"family": family, "assumption": fam.FAMILIES[family]["assumption"]}
            row["source"] = source
            for method, bounds, name in (
                ("relative_magnitudes", MBAR, "Mbar"),
                ("smoothness", M, "M"),
            ):
                for b in bounds:
                    hit = part.loc[(part["method"] == method) & (part["bound"] == b)]
                    row[f"{name} {b:g}"] = _percent(hit["coverage"].iloc[0]) if len(hit) else ""
                hit = part.loc[part["method"] == method]
                brk = hit["median_breakdown"].iloc[0] if len(hit) else np.nan
                row[f"{name} breakdown"] = "" if pd.isna(brk) else f"{brk:.2f}"
            row["draws"] = int(part["draws"].max())
            rows.append(row)
    return pd.DataFrame(rows)


def _coverage_se_words(cells: pd.DataFrame, rel_time: int) -> str:
    """``MC SE about 3.1 at 50 draws``: of a 95% coverage rate, at the month's fewest draws."""
    draws = int(cells.loc[cells["rel_time"] == rel_time, "draws"].min())
    return f"MC SE about {100 * np.sqrt(0.95 * 0.05 / draws):.1f} at {draws} draws"


def write_sensitivity_summary(draws: pd.DataFrame, out: Path, command: str) -> None:
    """``summary.json`` (every cell of :func:`summarise_bounds`) and ``summary.md``."""
    cells = summarise_bounds(draws)
    payload = {
        "command": command,
        "cells": json.loads(cells.to_json(orient="records", double_precision=6)),
    }
    (out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    sections = [
        f"## Month {r}: coverage of the truth, % ({_coverage_se_words(cells, r)}), and the "
        f"median breakdown\n\n{mc._md_table(_family_table(cells, r))}\n"
        for r in mc.HEADLINE
    ]
    text = (
        "# Rambachan-Roth bounds on the families (issue 23)\n\n"
        f"Command: `{command}`\n\n"
        "The frozen design (`design.json`), held-out seeds; the all-students bounds of "
        "`sensitivity.csv` with the pre-period trend of the untreated rows (`untreated`, the "
        "design) and of the full fit (`full`, the design before), on the same draws. "
        "`Mbar b`: relative magnitudes (C-LF) at bound b; `M b`: smoothness (FLCI).\n\n"
        + "\n".join(sections)
    )
    (out / "summary.md").write_text(text)
