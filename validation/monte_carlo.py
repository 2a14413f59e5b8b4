"""Monte Carlo validation of the event-study estimates against the simulator's truth.

Each draw simulates a demo-size population (``SimulationConfig(seed=..., selection=...)``),
writes and reads it through the data contract, runs the matched design under each
comparison-pool variant, and records, for all visited students and each grade band at
the headline months, the estimate, its analytic and bootstrap 95% intervals, whether the
simultaneous (sup-t) band covers the whole true post-visit path, and the truth. With
``--long-term`` (the default) it also records the long-term effects on the annual
attendance rate (``estimand = long_term``: every cohort, all visited students and each
grade band, ``LONG_TERM_YEARS`` school years after the cohort's), and the same fits on the
annual panel without the censoring of comparisons visited later
(``long_term_uncensored``, the design before issue 23). The summary gives bias, RMSE and
coverage with their Monte Carlo standard errors.

Usage (from the project root, after ``make setup``)::

    .venv/bin/python validation/monte_carlo.py --draws 200 --workers 2

Per-draw results are kept in ``validation/results/draws/`` so an interrupted run resumes;
the summary is written to ``validation/results/monte_carlo.json`` and
``validation/results/monte_carlo.md``. The draws go through
``leapresearch.parallel.parallel_map`` (the same numbers whatever the workers).

``--families`` runs instead the data-generating families of ``validation/families.py``
(the frozen default design on held-out seeds, with the diagnostics' p-values), into
``validation/results/families/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leapresearch.analysis.truth import long_term_truth_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "validation" / "results"
HEADLINE = (1, 3, 6, 9)
LONG_TERM_YEARS = (0, 1)
"""School years after the cohort's (``years_after``) of the long-term cells."""
ESTIMANDS = ("event_study", "long_term", "long_term_uncensored")
GROUPS = ("all", "grade_band:PK-5", "grade_band:6-8", "grade_band:9-12", "grade_band:6-12")
REGIMES = ("lists", "hazard", "hazard_strong")
SIMULATION = {
    "lists": {"selection": "lists"},
    "hazard": {"selection": "hazard"},
    "hazard_strong": {"selection": "hazard", "hazard_strength": 25.0},  # stress test
}
SEED_BASE = {"lists": 100_000, "hazard": 200_000, "hazard_strong": 300_000}
VARIANTS: dict[str, dict[str, bool | str]] = {
    "default": {},  # the comparison pool and clustering of params/base.yaml
    "never_visited": {"not_yet_visited": False},
    "not_yet_visited": {"not_yet_visited": True, "censoring_weights": False, "cluster": "student"},
    "not_yet_visited_school": {
        "not_yet_visited": True,
        "censoring_weights": False,
        "cluster": "school",
    },
    "risk_set_ipcw": {"not_yet_visited": True, "censoring_weights": True, "cluster": "student"},
}
"""Comparison-pool settings (``comparison_pool``) and, under ``cluster``, the level of
``analysis.cluster`` of each variant."""


def _config(data_dir: Path, variant: dict[str, bool | str]):
    from leapresearch.config import load_config

    config = load_config("demo", data_dir=data_dir)
    pool = {k: v for k, v in variant.items() if k != "cluster"}
    new_pool = config.comparison_pool.model_copy(update=pool)
    analysis = config.analysis
    if "cluster" in variant:
        analysis = analysis.model_copy(update={"cluster": variant["cluster"]})
    return config.model_copy(
        update={"comparison_pool": new_pool, "analysis": analysis, "subgroups": ("grade_band",)}
    )


def _prepared(tables, data_dir: Path, pool: dict[str, bool], cache: dict):
    """The matched sample of a pool variant.

    Variants that differ only in the censoring weights share one matching (the weights
    are a column of the stacked panel).
    """
    import dataclasses

    from leapresearch.analysis.sample import prepare

    config = _config(data_dir, pool)
    key = config.comparison_pool.not_yet_visited
    if key not in cache:
        cache[key] = prepare(tables, _config(data_dir, {**pool, "censoring_weights": True}))
    prepared = cache[key]
    stacked = prepared.stacked
    if not config.comparison_pool.censoring_weights and "censoring_weight" in stacked:
        stacked = stacked.drop(columns="censoring_weight")
    return dataclasses.replace(prepared, config=config, stacked=stacked)


def _variant_rows(tables, data_dir: Path, pool: dict[str, bool], truth: dict, cache) -> list[dict]:
    from leapresearch.analysis.event_studies import estimate_event_studies
    from leapresearch.estimation.bootstrap import multiplier_bootstrap

    prepared = _prepared(tables, data_dir, pool, cache)
    config = prepared.config
    table, fits = estimate_event_studies(prepared, subgroups=("grade_band",))
    hi = config.analysis.window[1]
    rows = []
    for group in GROUPS:
        fit = fits.get(group)
        if fit is None or fit.influence is None:
            continue
        band = [r for r in range(0, hi) if r in fit.coefficients.index]
        boot = multiplier_bootstrap(fit.influence, band_rel_times=band, seed=0)
        bt = boot.table(fit.coefficients).set_index("rel_time")
        path = truth[group]
        covered = all(
            bt.loc[r, "band_lower"] <= path[str(r)] <= bt.loc[r, "band_upper"] for r in band
        )
        g = table.loc[table["group"] == group].set_index("rel_time")
        for r in HEADLINE:
            rows.append(
                {
                    "group": group,
                    "rel_time": r,
                    "truth": path[str(r)],
                    "estimate": g.loc[r, "estimate"],
                    "std_error": g.loc[r, "std_error"],
                    "ci_lower": g.loc[r, "ci_lower"],
                    "ci_upper": g.loc[r, "ci_upper"],
                    "boot_std_error": bt.loc[r, "boot_std_error"],
                    "boot_ci_lower": bt.loc[r, "boot_ci_lower"],
                    "boot_ci_upper": bt.loc[r, "boot_ci_upper"],
                    "band_covers_path": covered,
                    "n_treated": g.loc[r, "n_treated"],
                }
            )
    return rows


def _long_term_rows(
    prepared,
    truth: list[dict],
    *,
    censored_only: bool = False,
    outcomes: tuple[str, ...] = ("attendance_rate",),
    unweighted: bool = False,
) -> list[dict]:
    """Long-term cells (annual attendance rate) with and without censoring comparisons.

    ``long_term_uncensored`` fits the same units on the annual panel built as if no
    comparison were ever visited (every school year kept: the design before issue 23);
    ``censored_only`` leaves it out (the design alone). ``outcomes`` other than the
    attendance rate (chronic absence) get the estimand's name with ``_chronic`` appended.
    ``unweighted`` adds ``long_term_unweighted``: the design's fit with
    ``long_term.censoring_weights`` off (the second freeze's long-term design), on the same
    draw, attendance rate only.
    """
    import dataclasses

    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term

    config = with_setting(prepared.config, "long_term", outcomes=tuple(outcomes))
    prepared = dataclasses.replace(prepared, config=config)
    panel = prepared.panel
    uncensored = dataclasses.replace(
        prepared, panel=dataclasses.replace(panel, events=panel.events.iloc[0:0])
    )
    true = {
        (t["outcome"], t["group"], t["cohort"], int(t["years_after"])): t["att"]
        for t in truth
        if t["outcome"] in outcomes
    }
    rows = []
    fits = [("long_term", prepared), ("long_term_uncensored", uncensored)]
    fits = fits[:1] if censored_only else fits
    if unweighted:
        off = with_setting(
            config, "long_term", censoring_weights=False, outcomes=("attendance_rate",)
        )
        fits.append(("long_term_unweighted", dataclasses.replace(prepared, config=off)))
    for estimand, prep in fits:
        table = estimate_long_term(prep)
        table = table.loc[table["years_after"].isin(LONG_TERM_YEARS)]
        for r in table.itertuples(index=False):
            key = (r.outcome, r.group, r.cohort, int(r.years_after))
            if key not in true:
                continue
            rows.append(
                {
                    "estimand": estimand + ("" if r.outcome == "attendance_rate" else "_chronic"),
                    "group": r.group,
                    "cohort": r.cohort,
                    "rel_time": int(r.years_after),
                    "truth": true[key],
                    "estimate": r.estimate,
                    "std_error": r.std_error,
                    "ci_lower": r.ci_lower,
                    "ci_upper": r.ci_upper,
                    "n_treated": r.n_treated,
                }
            )
    return rows


def run_draw(
    regime: str,
    seed: int,
    variants: tuple[str, ...],
    *,
    sample_fraction: float = 1.0,
    long_term: bool = False,
) -> pd.DataFrame:
    """Simulate one population and estimate it under every variant.

    ``sample_fraction`` shrinks the demo population (the test suite's small version);
    ``long_term`` adds the long-term cells (:func:`_long_term_rows`; column ``estimand``
    tells them from the event-study cells, ``cohort`` is empty for those).
    """
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

    warnings.simplefilter("ignore")
    keep = os.environ.get("LEAP_MC_DATA")  # reuse simulated draws across runs (development)
    with tempfile.TemporaryDirectory(prefix="lr-mc-") as tmp:
        folder = Path(keep) / f"{regime}-{seed}-f{sample_fraction}" if keep else Path(tmp)
        if not (folder / "truth.json").exists():
            config = SimulationConfig(
                seed=seed, sample_fraction=sample_fraction, **SIMULATION[regime]
            )
            write_simulation(
                simulate(config),
                folder / "data",
                file_format="parquet",
                truth_path=folder / "truth.json",
            )
        truth = json.loads((folder / "truth.json").read_text())
        tables = read_raw_tables(folder / "data")
        frames, cache = [], {}
        for name in variants:
            pool = VARIANTS[name]
            rows = _variant_rows(tables, folder / "data", pool, truth["event_study"], cache)
            frame = pd.DataFrame(rows).assign(estimand="event_study", cohort="")
            if long_term:
                prepared = _prepared(tables, folder / "data", pool, cache)
                truth_cells = truth[long_term_truth_key(prepared.config)]
                lt = pd.DataFrame(_long_term_rows(prepared, truth_cells))
                frame = pd.concat([frame, lt], ignore_index=True)
            frames.append(frame.assign(variant=name))
    out = pd.concat(frames, ignore_index=True).assign(regime=regime, seed=seed)
    return out


def _draw_file(
    out: Path, regime: str, seed: int, variants: tuple[str, ...], options: str = ""
) -> Path:
    tag = "+".join(variants) + options
    return out / "draws" / tag / f"{regime}-{seed}.csv"


def _options_tag(sample_fraction: float, long_term: bool) -> str:
    """Suffix of the draws folder for non-default options (old folders stay valid)."""
    return ("" if sample_fraction == 1.0 else f"-f{sample_fraction}") + ("-lt" if long_term else "")


def _run_one(args: tuple[str, int, tuple[str, ...], str, float, bool]) -> str:
    regime, seed, variants, out, fraction, long_term = args
    path = _draw_file(Path(out), regime, seed, variants, _options_tag(fraction, long_term))
    if not path.exists():
        frame = run_draw(regime, seed, variants, sample_fraction=fraction, long_term=long_term)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return str(path)


def summarise(draws: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE and coverage (with Monte Carlo standard errors) by cell.

    ``coverage`` is of each draw's own effect (the average effect on that draw's visited
    students, the simulator's truth); ``population_coverage`` of the mean of those effects
    over the draws (the population effect, which clustered errors also describe: they
    include the variation of individual effects, so they are conservative for the
    sample effect).
    """
    draws = _with_estimand(draws)
    boot = draws["boot_ci_lower"].notna()  # the long-term cells have no bootstrap or band
    d = draws.assign(
        error=draws["estimate"] - draws["truth"],
        covered=(draws["ci_lower"] <= draws["truth"]) & (draws["truth"] <= draws["ci_upper"]),
        boot_covered=(
            (draws["boot_ci_lower"] <= draws["truth"]) & (draws["truth"] <= draws["boot_ci_upper"])
        )
        .astype(float)
        .where(boot),
        band_covers_path=draws["band_covers_path"].astype(float).where(boot),
    )
    keys = ["regime", "variant", "estimand", "group", "cohort", "rel_time"]
    # the population effect: the mean over draws of each draw's sample effect
    population = d.groupby(keys)["truth"].transform("mean")
    d["pop_covered"] = (d["ci_lower"] <= population) & (population <= d["ci_upper"])
    g = d.groupby(keys, sort=True)
    out = pd.DataFrame(
        {
            "draws": g.size(),
            "truth": g["truth"].mean(),
            "bias": g["error"].mean(),
            "bias_mcse": g["error"].std(ddof=1) / np.sqrt(g.size()),
            "rmse": np.sqrt(g["error"].apply(lambda e: float(np.mean(e**2)))),
            "sd_estimate": g["estimate"].std(ddof=1),
            "mean_std_error": g["std_error"].mean(),
            "mean_boot_std_error": g["boot_std_error"].mean(),
            "coverage": g["covered"].mean(),
            "boot_coverage": g["boot_covered"].mean(),
            "band_coverage": g["band_covers_path"].mean(),
            "population_coverage": g["pop_covered"].mean(),
        }
    ).reset_index()
    return out


def _with_estimand(draws: pd.DataFrame) -> pd.DataFrame:
    """``estimand`` and ``cohort`` filled in (draws written before the long-term cells)."""
    estimand = draws["estimand"] if "estimand" in draws else pd.Series("event_study", draws.index)
    cohort = draws["cohort"] if "cohort" in draws else pd.Series("", draws.index)
    return draws.assign(estimand=estimand.fillna("event_study"), cohort=cohort.fillna(""))


BIAS_BOUND = 0.5
COVERAGE_RANGE = (0.90, 0.98)


def criteria(summary: pd.DataFrame) -> pd.DataFrame:
    """Each variant against the acceptance criteria of issue 12, over the regimes run.

    ``worst_bias_all``: largest absolute bias for all visited students at the headline
    months; ``coverage_min``/``coverage_max``: range of the analytic intervals' coverage
    over all students and the grade bands (``boot_``: of the bootstrap intervals);
    ``coverage_gap``: mean distance of the coverage from 95% over those cells (the
    intervals of the smaller gap are the default); ``passes``: bias within ``BIAS_BOUND`` pp and
    coverage inside ``COVERAGE_RANGE``. Sorted best first (passing, then smallest bias).
    Event-study cells only (:func:`long_term_criteria` for the long-term ones).
    """
    rows = []
    summary = summary.loc[summary["estimand"] == "event_study"]
    for variant, s in summary.groupby("variant", sort=True):
        bias = s.loc[s["group"] == "all", "bias"].abs().max()
        lo, hi = s["coverage"].min(), s["coverage"].max()
        ok = bias <= BIAS_BOUND and COVERAGE_RANGE[0] <= lo and hi <= COVERAGE_RANGE[1]
        rows.append(
            {
                "variant": variant,
                "regimes": ", ".join(sorted(s["regime"].unique())),
                "worst_bias_all": bias,
                "coverage_min": lo,
                "coverage_max": hi,
                "boot_coverage_min": s["boot_coverage"].min(),
                "boot_coverage_max": s["boot_coverage"].max(),
                "coverage_gap": (s["coverage"] - 0.95).abs().mean(),
                "boot_coverage_gap": (s["boot_coverage"] - 0.95).abs().mean(),
                "passes": bool(ok),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["passes", "worst_bias_all"], ascending=[False, True])


def long_term_criteria(summary: pd.DataFrame) -> pd.DataFrame:
    """The long-term cells of all visited students against the bias bound (issue 23).

    Per variant and estimand (``long_term``: the design; ``long_term_uncensored``: without
    censoring comparisons visited later): ``worst_bias_all``, the largest absolute bias
    over regimes, cohorts and ``LONG_TERM_YEARS``, with the Monte Carlo standard error of
    that cell (``its_mcse``); the range of the analytic intervals' coverage over those
    cells; ``passes``: every cell's bias within ``BIAS_BOUND`` pp.
    """
    rows = []
    cells = summary.loc[summary["estimand"].str.startswith("long_term")]
    cells = cells.loc[cells["group"] == "all"]
    for (variant, estimand), s in cells.groupby(["variant", "estimand"], sort=True):
        worst = s["bias"].abs().idxmax()
        rows.append(
            {
                "variant": variant,
                "estimand": estimand,
                "regimes": ", ".join(sorted(s["regime"].unique())),
                "cells": len(s),
                "worst_bias_all": abs(s.loc[worst, "bias"]),
                "its_mcse": s.loc[worst, "bias_mcse"],
                "worst_cell": f"{s.loc[worst, 'regime']} {s.loc[worst, 'cohort']} "
                f"year {s.loc[worst, 'rel_time']}",
                "coverage_min": s["coverage"].min(),
                "coverage_max": s["coverage"].max(),
                "passes": bool(s["bias"].abs().max() <= BIAS_BOUND),
            }
        )
    return pd.DataFrame(rows)


def _md_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join(lines) + "\n"


def readme_table(summary: pd.DataFrame) -> str:
    """The README's compact table: per regime and pool, all visited students by month.

    Bias and RMSE in percentage points; coverage (%) of the analytic 95% interval, of the
    bootstrap interval, and of the simultaneous band over the whole post-visit path; the
    range of the analytic intervals' coverage over the grade bands.
    """
    rows = []
    summary = summary.loc[summary["estimand"] == "event_study"]
    for (regime, variant), s in summary.groupby(["regime", "variant"], sort=True):
        a = s.loc[s["group"] == "all"].set_index("rel_time")
        bands = s.loc[s["group"] != "all"]
        rows.append(
            {
                "regime": regime,
                "pool": variant,
                "draws": int(a["draws"].min()),
                "bias m1/m3/m6/m9": " / ".join(f"{a.loc[r, 'bias']:+.2f}" for r in HEADLINE),
                "RMSE m6": f"{a.loc[6, 'rmse']:.2f}",
                "coverage": " / ".join(f"{100 * a.loc[r, 'coverage']:.0f}" for r in HEADLINE),
                "bootstrap": " / ".join(f"{100 * a.loc[r, 'boot_coverage']:.0f}" for r in HEADLINE),
                "band": f"{100 * a['band_coverage'].iloc[0]:.0f}",
                "grade bands": f"{100 * bands['coverage'].min():.0f}-"
                f"{100 * bands['coverage'].max():.0f}",
            }
        )
    return _md_table(pd.DataFrame(rows))


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (rounded for reading)."""
    s = summary.copy()
    for c in ("truth", "bias", "bias_mcse", "rmse", "sd_estimate", "mean_std_error"):
        s[c] = s[c].map(lambda v: f"{v:.2f}")
    for c in ("coverage", "boot_coverage", "band_coverage"):
        s[c] = s[c].map(lambda v: f"{100 * v:.1f}")
    cols = [
        "regime", "variant", "estimand", "group", "cohort", "rel_time", "draws", "truth",
        "bias", "bias_mcse", "rmse", "sd_estimate", "mean_std_error", "coverage",
        "boot_coverage", "band_coverage",
    ]  # fmt: skip
    return _md_table(s[cols])


def run_jobs(function, jobs: list, workers: int, batch: int | None = None) -> list[str]:
    """``function`` over ``jobs`` through ``leapresearch.parallel.parallel_map``, in batches.

    Each job writes its own file (so an interrupted run resumes); a line of progress is
    printed after every batch (``10 * workers`` jobs by default).
    """
    from leapresearch.parallel import parallel_map

    batch = batch or 10 * max(workers, 1)
    t0, done = time.perf_counter(), []
    for start in range(0, len(jobs), batch):
        done += parallel_map(function, jobs[start : start + batch], workers=workers)
        print(f"{len(done)}/{len(jobs)} draws ({time.perf_counter() - t0:.0f} s): {done[-1]}")
        sys.stdout.flush()
    return done


def main(argv: list[str] | None = None) -> int:
    """Run the draws (resuming from those already on disk) and write the summary."""
    from leapresearch.parallel import stop_workers_on_terminate

    stop_workers_on_terminate()  # a killed run leaves no worker writing draws
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--regimes", nargs="+", default=["lists", "hazard"], choices=REGIMES)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sample-fraction", type=float, default=1.0)
    parser.add_argument("--long-term", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--families",
        nargs="+",
        help="run the data-generating families of validation/families.py (the frozen "
        "default design, held-out seeds) instead of --regimes/--variants; 'all' for every one",
    )
    parser.add_argument(
        "--seed-base",
        type=int,
        default=None,
        help="with --families: first held-out seed (family k, draw i: base + 10,000 k + i; "
        "default 7,000,000, and with --procedure-draws the scheme's own range); a new freeze "
        "of the design takes a range never used before (validation/README.md)",
    )
    parser.add_argument(
        "--chronic-absence",
        action="store_true",
        help="with --families: add the long-term cells of chronic absence (estimand "
        "long_term_chronic) to every draw; frozen in design.json",
    )
    parser.add_argument(
        "--pretrends-only",
        action="store_true",
        help="with --families: record only the pre-trend tests of all visited students "
        "(validation/families.py run_pretrend_draw); frozen in design.json",
    )
    parser.add_argument(
        "--sensitivity-only",
        action="store_true",
        help="with --families: record only the Rambachan-Roth bounds of all visited students, "
        "with the pre-period trend of the untreated rows and of the full fit "
        "(validation/sensitivity_draws.py); frozen in design.json",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="with --families: summarise the draws on disk (the same number per family)",
    )
    parser.add_argument(
        "--procedure-draws",
        type=int,
        default=0,
        help="with --families: also run the whole-procedure bootstrap with this many draws in "
        "every replication and record the coverage of its intervals and bands "
        "(validation/procedure_mc.py; results in validation/results/procedure/ unless --out)",
    )
    parser.add_argument(
        "--procedure-scheme",
        choices=("resample", "bayesian"),
        default="resample",
        help="with --procedure-draws: inference.procedure_scheme of the bootstrap (results in "
        "validation/results/procedure-bayesian/ for bayesian unless --out; its own seeds)",
    )
    args = parser.parse_args(argv)
    if args.procedure_draws and not args.families:
        parser.error("--procedure-draws needs --families")
    if args.families and args.procedure_draws:
        from procedure_mc import main_procedure

        return main_procedure(args, sys.argv[1:] if argv is None else argv)
    if args.families:
        from families import main_families

        return main_families(args, sys.argv[1:] if argv is None else argv)
    variants = tuple(args.variants)
    options = (args.sample_fraction, args.long_term)
    jobs = [
        (regime, SEED_BASE[regime] + i, variants, str(args.out), *options)
        for i in range(args.draws)
        for regime in args.regimes
    ]
    run_jobs(_run_one, jobs, args.workers)
    tag = _options_tag(*options)
    files = [_draw_file(args.out, r, s, variants, tag) for r, s, *_ in jobs]
    draws = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    summary = summarise(draws)
    summary.to_json(args.out / "monte_carlo.json", orient="records", indent=1, double_precision=6)
    command = "validation/monte_carlo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = f"# Monte Carlo validation\n\nCommand: `{command}`\n\n"
    verdict = criteria(summary)
    verdict_md = _md_table(verdict.round(3))
    body = f"## Criteria\n\n{verdict_md}\n\n"
    if args.long_term:
        lt_md = _md_table(long_term_criteria(summary).round(3))
        body += f"## Long-term cells (all visited students, issue 23)\n\n{lt_md}\n\n"
        print(lt_md)
    body += f"## Every cell\n\n{markdown(summary)}"
    (args.out / "monte_carlo.md").write_text(header + body)
    (args.out / "readme_table.md").write_text(readme_table(summary))
    print(verdict_md)
    print(markdown(summary.loc[summary["group"] == "all"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
