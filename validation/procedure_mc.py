"""Coverage of the whole-procedure intervals and bands under the families (issue 27, item 7).

``monte_carlo.py --families NAME ... --procedure-draws B`` runs, in every replication of a
data-generating family of ``families.py``, the design's event study and its whole-procedure
cluster bootstrap (:func:`leapresearch.analysis.event_studies.published_event_study` with
``inference.procedure_draws = B``: the propensity score, matching, censoring weights,
adjustment and fit re-run in each of ``B`` school resamples), and records for all visited
students, each grade band and the pooled 6-12 at the headline months: the estimate, the
draw's truth, the analytic (conditional) standard error and interval, the conditional
multiplier-bootstrap interval, the whole-procedure standard error and interval, and
whether each covers the truth; per group, whether the conditional sup-t band and the
whole-procedure band cover the whole true post-visit path.

The seeds are held out and new: ``PROCEDURE_SEED_BASE + 10_000 * k + i`` for the ``k``-th
family of ``FAMILIES`` and replication ``i`` (7,500,000 and up; the families run used
7,000,000 to 7,079,999). The design (``design.json`` in ``--out``, with ``B``) is frozen
as in ``families.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import families as fm  # noqa: E402
import monte_carlo as mc  # noqa: E402

PROCEDURE_SEED_BASE = 7_500_000
"""First seed of this run's held-out range (family ``k``: ``+ 10_000 * k``, then the draw)."""
BAYESIAN_SEED_BASE = 8_500_000
"""The held-out range of the run with ``--procedure-scheme bayesian`` (a new range: the
scheme was chosen after the resampling run, on pilot seeds 8,400,000-8,419,999)."""
OUT_NAME = "procedure"
"""Folder under ``validation/results/`` when ``--out`` is not given (``procedure-bayesian``
for the Bayesian scheme)."""
SCHEME_WORDS = {
    "resample": "school resamples",
    "bayesian": "Bayesian draws (every school weighted by an exponential(1) weight)",
}
"""How a summary names the draws of each ``inference.procedure_scheme``."""
INTERVALS = {"analytic": "", "bootstrap": "boot_", "procedure": "procedure_"}
"""Interval kinds -> prefix of their ``ci_lower``/``ci_upper`` columns in a draw's rows."""


def procedure_seed(
    family: str, draw: int, scheme: str = "resample", base: int | None = None
) -> int:
    """The held-out seed of replication ``draw`` of ``family`` (this run only).

    ``base``: the first seed of a new freeze's range (``--seed-base``); None: the scheme's
    own range (``PROCEDURE_SEED_BASE``, ``BAYESIAN_SEED_BASE``).
    """
    if base is None:
        base = BAYESIAN_SEED_BASE if scheme == "bayesian" else PROCEDURE_SEED_BASE
    return base + 10_000 * list(fm.FAMILIES).index(family) + draw


def _covers(lower: pd.Series, upper: pd.Series, truth: pd.Series) -> pd.Series:
    """1.0 where ``lower <= truth <= upper``, 0.0 where not, NaN where no interval."""
    inside = ((lower <= truth) & (truth <= upper)).astype(float)
    return inside.where(lower.notna() & upper.notna())


def _band_covers(g: pd.DataFrame, path: dict, prefix: str) -> float:
    """Whether the band ``{prefix}band_lower/upper`` covers the true path at every band month."""
    band = g.loc[g[f"{prefix}band_lower"].notna()]
    if band.empty:
        return np.nan
    truth = band.index.map(lambda r: path[str(r)]).to_numpy(np.float64)
    return float(
        ((band[f"{prefix}band_lower"] <= truth) & (truth <= band[f"{prefix}band_upper"])).all()
    )


def procedure_rows(table: pd.DataFrame, truth: dict, alpha: float) -> pd.DataFrame:
    """The headline cells of ``event_study.csv`` (with ``procedure_*``) against the truth.

    ``truth`` is the simulator's ``truth["event_study"]`` (group -> month -> effect).
    Columns: ``group, rel_time, truth, estimate, std_error, ci_lower, ci_upper`` (analytic),
    ``boot_std_error, boot_ci_lower, boot_ci_upper`` (the conditional multiplier
    bootstrap's normal interval), ``procedure_std_error, procedure_ci_lower,
    procedure_ci_upper``, the indicators ``covered, boot_covered, procedure_covered`` and,
    per group, ``band_covers_path`` and ``procedure_band_covers_path`` (NaN where the
    table has no such interval or band).
    """
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for group in mc.GROUPS:
        g = table.loc[table["group"] == group].set_index("rel_time")
        if group not in truth or g.empty:
            continue
        path = truth[group]
        band = {p: _band_covers(g, path, p) for p in ("", "procedure_")}
        for r in mc.HEADLINE:
            if r not in g.index:
                continue
            c = g.loc[r]
            rows.append(
                {
                    "group": group,
                    "rel_time": r,
                    "truth": path[str(r)],
                    "estimate": c["estimate"],
                    "std_error": c["std_error"],
                    "ci_lower": c["ci_lower"],
                    "ci_upper": c["ci_upper"],
                    "boot_std_error": c["boot_std_error"],
                    "boot_ci_lower": c["estimate"] - z * c["boot_std_error"],
                    "boot_ci_upper": c["estimate"] + z * c["boot_std_error"],
                    "procedure_std_error": c["procedure_std_error"],
                    "procedure_ci_lower": c["procedure_ci_lower"],
                    "procedure_ci_upper": c["procedure_ci_upper"],
                    "band_covers_path": band[""],
                    "procedure_band_covers_path": band["procedure_"],
                    "n_treated": c["n_treated"],
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for kind, p in INTERVALS.items():
        name = "covered" if kind == "analytic" else f"{p}covered"
        out[name] = _covers(out[f"{p}ci_lower"], out[f"{p}ci_upper"], out["truth"])
    return out


def run_procedure_draw(
    family: str,
    seed: int,
    *,
    sample_fraction: float,
    procedure_draws: int,
    scheme: str = "resample",
) -> pd.DataFrame:
    """Simulate replication ``seed`` of ``family`` and run the design with its bootstrap.

    The event study of :func:`~leapresearch.analysis.event_studies.estimate_event_studies`
    (all visited students and the grade bands) and its whole-procedure columns from
    :func:`~leapresearch.analysis.event_studies.published_event_study` with
    ``procedure_draws`` draws of ``scheme`` (``inference.procedure_scheme``) on one
    process; rows of :func:`procedure_rows` with ``family``, ``seed`` and
    ``procedure_draws``.
    """
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.event_studies import estimate_event_studies, published_event_study

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-proc-") as tmp:
        truth, prepared = fm.simulate_family(family, seed, sample_fraction, Path(tmp))
        config = with_setting(
            prepared.config,
            "inference",
            procedure_draws=procedure_draws,
            procedure_scheme=scheme,
        )
        prepared = dataclasses.replace(prepared, config=config)
        fitted = estimate_event_studies(prepared, subgroups=("grade_band",))
        table = published_event_study(prepared, fitted, workers=1)
    rows = procedure_rows(table, truth["event_study"], config.analysis.alpha)
    return rows.assign(family=family, seed=seed, procedure_draws=procedure_draws)


def run_procedure_job(job: tuple) -> str:
    """Compute one replication unless its file exists (a ``parallel_map`` item).

    ``job``: family, seed, folder, fraction, draws and (optionally) the scheme.
    """
    family, seed, out, fraction, draws, *rest = job
    scheme = rest[0] if rest else "resample"
    return fm.keep_draw(
        fm.draw_file(Path(out), family, seed, fraction),
        lambda: run_procedure_draw(
            family, seed, sample_fraction=fraction, procedure_draws=draws, scheme=scheme
        ),
    )


def summarise_coverage(draws: pd.DataFrame) -> pd.DataFrame:
    """Per family x group x month: the conditional cells and the whole-procedure ones.

    The columns of :func:`families.summarise_cells` (bias, RMSE, ``sd_estimate``: the Monte
    Carlo standard deviation of the estimate, ``mean_std_error``: of the analytic errors,
    ``coverage``: analytic interval, ``boot_coverage``: conditional bootstrap interval,
    ``band_coverage``: conditional band over the true post-visit path) and
    ``procedure_replications`` (replications with a whole-procedure interval),
    ``mean_procedure_std_error``, ``procedure_coverage`` with ``procedure_coverage_mcse``,
    ``procedure_band_coverage`` with ``procedure_band_mcse``, ``band_mcse``, and the ratios
    ``sd_over_analytic`` (``sd_estimate / mean_std_error``) and ``procedure_over_analytic``
    (``mean_procedure_std_error / mean_std_error``): how much the conditional error
    understates the spread of the estimate, and how much of that the procedure's error
    recovers. Coverages are means of the indicators over the replications where they are
    defined; an MC SE is ``sqrt(c (1 - c) / n)``.
    """
    d = draws.assign(estimand="event_study", cohort="", truth_itt=np.nan, y0_shift=np.nan)
    cells = fm.summarise_cells(d)
    keys = ["family", "group", "rel_time"]
    g = d.groupby(keys, sort=False)

    def rate(column: str) -> tuple[pd.Series, pd.Series]:
        x = g[column].apply(lambda v: pd.to_numeric(v, errors="coerce").astype(float).mean())
        n = g[column].apply(lambda v: int(pd.to_numeric(v, errors="coerce").notna().sum()))
        return x, np.sqrt(x * (1 - x) / n.where(n > 0))

    proc, proc_se = rate("procedure_covered")
    pband, pband_se = rate("procedure_band_covers_path")
    _, band_se = rate("band_covers_path")
    extra = pd.DataFrame(
        {
            "procedure_replications": g["procedure_covered"].apply(lambda v: int(v.notna().sum())),
            "mean_procedure_std_error": g["procedure_std_error"].mean(),
            "procedure_coverage": proc,
            "procedure_coverage_mcse": proc_se,
            "band_mcse": band_se,
            "procedure_band_coverage": pband,
            "procedure_band_mcse": pband_se,
        }
    ).reset_index()
    out = cells.drop(columns=["estimand", "cohort", "truth_itt", "bias_vs_itt", "y0_shift"])
    out = out.merge(extra, on=keys, how="left", validate="one_to_one")
    out["sd_over_analytic"] = out["sd_estimate"] / out["mean_std_error"]
    out["procedure_over_analytic"] = out["mean_procedure_std_error"] / out["mean_std_error"]
    return out


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.0f}"


def coverage_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per family x group: coverage by headline month, procedure vs conditional."""
    rows = []
    for (family, group), c in cells.groupby(["family", "group"], sort=False):
        c = c.set_index("rel_time")
        rows.append(
            {
                "family": family,
                "group": group,
                "replications": int(c["draws"].min()),
                "with procedure": int(c["procedure_replications"].min()),
                "procedure m1/m3/m6/m9": " / ".join(_pct(v) for v in c["procedure_coverage"]),
                "analytic": " / ".join(_pct(v) for v in c["coverage"]),
                "MC SE (procedure)": " / ".join(_pct(v) for v in c["procedure_coverage_mcse"]),
                "procedure band": _pct(c["procedure_band_coverage"].iloc[0]),
                "conditional band": _pct(c["band_coverage"].iloc[0]),
                "band MC SE": _pct(c["procedure_band_mcse"].iloc[0]),
                "procedure se / analytic": " / ".join(
                    f"{v:.2f}" for v in c["procedure_over_analytic"]
                ),
                "MC sd / analytic": " / ".join(f"{v:.2f}" for v in c["sd_over_analytic"]),
            }
        )
    return pd.DataFrame(rows)


def target_check(cells: pd.DataFrame, low: float = 0.92, high: float = 0.98) -> str:
    """A sentence on the issue's target, computed from ``cells``.

    Procedure coverage of all students and each grade band (PK-5, 6-8, 9-12) in
    ``[low, high]`` at every headline month under the families where the assumption holds;
    says how many cells fall outside and whether each such miss is more than 2 MC SEs away.
    """
    holds = [f for f, v in fm.FAMILIES.items() if v["assumption"] == "holds"]
    groups = [g for g in mc.GROUPS if g != "grade_band:6-12"]
    c = cells.loc[cells["family"].isin(holds) & cells["group"].isin(groups)]
    c = c.loc[c["procedure_coverage"].notna()]
    if c.empty:
        return "No replication with a whole-procedure interval yet."
    cov, se = c["procedure_coverage"], c["procedure_coverage_mcse"]
    outside = c.loc[(cov < low) | (cov > high)]
    far = c.loc[(cov + 2 * se < low) | (cov - 2 * se > high)]
    n = int(c["procedure_replications"].min())
    return (
        f"Procedure-interval coverage for all students and each grade band at months "
        f"{'/'.join(str(r) for r in mc.HEADLINE)} in the families where the assumption holds "
        f"({', '.join(sorted(set(c['family']), key=list(fm.FAMILIES).index))}; at least {n} "
        f"replications per cell, MC SE up to {100 * se.max():.1f} points): "
        f"{100 * cov.min():.0f}% to {100 * cov.max():.0f}%; {len(outside)} of {len(c)} cells "
        f"outside {100 * low:.0f}-{100 * high:.0f}%, {len(far)} of them by more than 2 MC SEs. "
        + (
            "The target is met in every cell."
            if outside.empty
            else "The target is not met in every cell."
        )
        + (
            f" With {n} replications the MC SE of a 95% coverage is "
            f"{100 * np.sqrt(0.95 * 0.05 / n):.1f} points, so the 92-98% range is "
            + ("resolved." if 2 * np.sqrt(0.95 * 0.05 / n) <= 0.03 else "not yet resolved.")
        )
    )


def finite_draws_coverage(draws: int, alpha: float = 0.05, reps: int = 20_000) -> float:
    """Coverage of ``estimate +/- z se`` when ``se`` is the IQR-based error of ``draws`` draws.

    The bootstrap distribution exactly normal with the right spread, so the only loss is
    the noise of the error estimated from ``draws`` draws (simulated, seed 0): what the
    number of bootstrap draws alone costs a 95% interval.
    """
    rng = np.random.default_rng(0)
    q75, q25 = np.quantile(rng.standard_normal((reps, draws)), [0.75, 0.25], axis=1)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    z = stats.norm.ppf(1 - alpha / 2)
    return float(np.mean(2 * stats.norm.cdf(z * se) - 1))


def write_procedure_summary(
    draws: pd.DataFrame,
    out: Path,
    command: str,
    scheme: str = "resample",
    base: int | None = None,
) -> None:
    """``summary.json`` (every cell, the table, the target sentence) and ``summary.md``."""
    cells = summarise_coverage(draws)
    table = coverage_table(cells)
    check = target_check(cells)
    b = int(draws["procedure_draws"].iloc[0])
    payload = {
        "command": command,
        "procedure_draws": b,
        "target": check,
        "table": json.loads(table.to_json(orient="records")),
        "cells": json.loads(cells.to_json(orient="records", double_precision=6)),
    }
    (out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    s = fm.rounded(
        cells,
        ("truth", "bias", "bias_mcse", "rmse", "sd_estimate", "mean_std_error",
         "mean_procedure_std_error", "sd_over_analytic", "procedure_over_analytic"),
        ("coverage", "coverage_mcse", "boot_coverage", "procedure_coverage",
         "procedure_coverage_mcse", "band_coverage", "band_mcse", "procedure_band_coverage",
         "procedure_band_mcse"),
    )  # fmt: skip
    text = (
        "# Coverage of the whole-procedure intervals (issue 27, item 7)\n\n"
        f"Command: `{command}`\n\n"
        f"Each replication simulates a family of `families.py` (held-out seeds "
        f"{procedure_seed(next(iter(fm.FAMILIES)), 0, scheme, base):,} + 10,000 x family index + "
        "replication), runs the frozen design (`design.json`) and its whole-procedure "
        f"cluster bootstrap with B = {b} {SCHEME_WORDS[scheme]} (propensity score, "
        "matching, adjustment and fit re-run in each), "
        "and checks each interval against the replication's truth (the completed-visit "
        "effect on its visited students). `analytic`: the published conditional interval "
        "(t(G-1)); `procedure`: estimate +/- z x the bootstrap's IQR-based error; bands: "
        "the sup-t bands over every post-visit month, covering when the whole true path is "
        "inside. `procedure se / analytic`: mean whole-procedure error over mean analytic "
        "error; `MC sd / analytic`: the Monte Carlo standard deviation of the estimate over "
        "the mean analytic error (above 1: conditioning on the first steps understates the "
        "uncertainty by that factor). Coverage in %.\n\n"
        f"{check} With B = {b} bootstrap draws the noise of the error alone brings an "
        f"exact normal 95% interval to {100 * finite_draws_coverage(b):.1f}% "
        f"({100 * finite_draws_coverage(199):.1f}% with 199 draws; `finite_draws_coverage`)."
        "\n\n"
        "## Coverage by family and group (months 1 / 3 / 6 / 9)\n\n"
        f"{mc._md_table(table)}\n"
        "## Every cell\n\n"
        + mc._md_table(
            s[["family", "group", "rel_time", "draws", "procedure_replications", "truth",
               "bias", "bias_mcse", "rmse", "sd_estimate", "mean_std_error",
               "mean_procedure_std_error", "sd_over_analytic", "procedure_over_analytic",
               "coverage", "coverage_mcse", "boot_coverage", "procedure_coverage",
               "procedure_coverage_mcse", "band_coverage", "band_mcse",
               "procedure_band_coverage", "procedure_band_mcse"]]
        )
    )  # fmt: skip
    (out / "summary.md").write_text(text)


def main_procedure(args, argv: list[str]) -> int:
    """``monte_carlo.py --families ... --procedure-draws B``: freeze, run, summarise."""
    scheme = getattr(args, "procedure_scheme", "resample")
    base = getattr(args, "seed_base", None)
    extra = {
        "procedure_draws": args.procedure_draws,
        "procedure_seed_base": procedure_seed(next(iter(fm.FAMILIES)), 0, scheme, base),
        "procedure_workers": 1,
        "diagnostics": [],
        "long_term_years": [],
    }
    job_args: tuple = (args.procedure_draws,)
    if scheme != "resample":  # the resampling run's frozen design has no such key
        extra["procedure_scheme"] = scheme
        job_args = (args.procedure_draws, scheme)
    return fm.run_frozen(
        args,
        argv,
        job=run_procedure_job,
        seed=functools.partial(procedure_seed, scheme=scheme, base=base),
        write=functools.partial(write_procedure_summary, scheme=scheme, base=base),
        extra=extra,
        job_args=job_args,
        out_name=OUT_NAME if scheme == "resample" else f"{OUT_NAME}-{scheme}",
    )
