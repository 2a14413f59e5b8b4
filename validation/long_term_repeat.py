r"""A second held-out run of the frozen long-term design, with each draw's no-effect twin.

The fifth freeze (``validation/README.md``) left issue 23's bound (every all-students
long-term attendance cell within 0.5 pp under ``lists`` and ``hazard``) missed in one cell,
the 2022-23 cohort a school year after its visits (+0.55 and +0.72 pp, MC SE 0.16-0.17),
where earlier runs had put the same cell at +0.16 / +0.05. This script changes nothing in
the design; it runs it again on seeds never used (``SEED_BASE``), and for every draw also
fits the same seed simulated with ``effect_multiplier = 0`` (the *twin*: the same world,
roster, Y(0) attendance and visits, since the effects have their own random stream). The
long-term fit is linear in the outcome, and every design step (matching, censoring weights,
adjustment slopes) uses data the program does not move, so

* ``estimate - estimate_twin - truth`` is the part of a cell's error that comes from how
  the fit weights the visited students' individual effects (it is exactly 0 for a fit
  that averages them as the truth does), measured with little noise;
* ``estimate_twin`` is the part that comes from the comparisons (no effect at all).

The verdict on the bound is taken, as fixed in ``design.json`` before the first draw, on
the pooled held-out draws of the frozen design: the fifth freeze's 150 per family and these.

    PYTHONPATH=$PWD .venv/bin/python validation/long_term_repeat.py --draws 250 --workers 2
    PYTHONPATH=$PWD .venv/bin/python validation/long_term_repeat.py --draws 250 --summary-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.analysis.truth import long_term_truth_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
import families as fam  # noqa: E402
import monte_carlo as mc  # noqa: E402

SEED_BASE = 8_800_000
"""First seed of this run (family ``k`` of ``families.FAMILIES``: ``+ 10_000 * k``)."""

FAMILY_NAMES = ("lists", "hazard")
"""The regimes of issue 23's bound."""

FIFTH_FREEZE = mc.RESULTS / "families-4-demo-size"
"""The fifth freeze's run, pooled with this one for the verdict."""

OUT = mc.RESULTS / "long-term-repeat"

BOUND = 0.5
"""Issue 23's bound on the bias of an all-students long-term attendance cell (pp)."""

RULE = (
    "Fixed before the first draw. Issue 23's bound holds in an all-students long-term "
    "attendance cell (school years 0 and 1 of each cohort) under lists and hazard if the "
    "bias pooled over every held-out draw of the frozen design (the fifth freeze's 150 per "
    "family, results/families-4-demo-size, and this run's) is at most 0.5 pp in absolute "
    "value; the summary also says whether the pooled 95% Monte Carlo interval lies wholly "
    "beyond 0.5 pp (a clear failure) or straddles it. Nothing in the design changes "
    "whatever the result."
)


def _long_term(prepared) -> pd.DataFrame:
    """The design's long-term attendance cells, years 0 and 1, every group."""
    from leapresearch.analysis.base import with_setting
    from leapresearch.analysis.long_term import estimate_long_term

    config = with_setting(prepared.config, "long_term", outcomes=("attendance_rate",))
    table = estimate_long_term(dataclasses.replace(prepared, config=config))
    return table.loc[table["years_after"].isin(mc.LONG_TERM_YEARS)]


def _without_reference_year(prepared) -> dict[str, float]:
    """Share of each cohort's visited students with no row in the school year before it."""
    from leapresearch.estimation.long_term import long_term_panel

    rows = long_term_panel(prepared.panel, prepared.units)
    treated = rows.loc[rows["treated"] == 1, ["unit", "stack", "rel_time"]]
    has_reference = treated.groupby("unit")["rel_time"].agg(lambda r: bool((r == -1).any()))
    stack_of = treated.groupby("unit")["stack"].first()
    attrs = prepared.attributes
    cohort_of_stack = attrs.groupby("stack")["cohort"].first()
    cohort = cohort_of_stack.reindex(stack_of.to_numpy()).to_numpy()
    frame = pd.DataFrame({"cohort": cohort, "missing": ~has_reference.to_numpy()})
    return frame.groupby("cohort")["missing"].mean().to_dict()


def run_draw(family: str, seed: int, *, paired=None) -> pd.DataFrame:
    """One draw of ``family`` and its no-effect twin: the long-term cells of both.

    ``paired(prepared, truth)``: more columns of the same draw, keyed by ``group``,
    ``cohort`` and ``rel_time`` (merged in; None: none).
    """
    warnings.simplefilter("ignore")
    spec = dict(fam.FAMILIES[family]["simulation"])
    with tempfile.TemporaryDirectory(prefix="lr-ltr-") as tmp:
        truth, prepared = fam.simulate_family(family, seed, 1.0, Path(tmp))
        table = _long_term(prepared)
        missing = _without_reference_year(prepared)
        extra = None if paired is None else paired(prepared, truth)
    with tempfile.TemporaryDirectory(prefix="lr-ltr-") as tmp:
        twin_settings = {**spec, "effect_multiplier": 0.0}
        _, twin = fam.simulate_family(family, seed, 1.0, Path(tmp), simulation=twin_settings)
        twin_table = _long_term(twin)
    true = {
        (t["group"], t["cohort"], int(t["years_after"])): t["att"]
        for t in truth[long_term_truth_key(prepared.config)]
        if t["outcome"] == "attendance_rate"
    }
    key = ["group", "cohort", "years_after"]
    both = table.merge(
        twin_table[[*key, "estimate", "n_treated"]], on=key, how="left", suffixes=("", "_twin")
    )
    both = both.loc[[k in true for k in zip(*(both[c] for c in key), strict=True)]]
    out = pd.DataFrame(
        {
            "family": family,
            "seed": seed,
            "group": both["group"].to_numpy(),
            "cohort": both["cohort"].to_numpy(),
            "rel_time": both["years_after"].to_numpy(np.int64),
            "truth": [true[k] for k in zip(*(both[c] for c in key), strict=True)],
            "estimate": both["estimate"].to_numpy(),
            "std_error": both["std_error"].to_numpy(),
            "ci_lower": both["ci_lower"].to_numpy(),
            "ci_upper": both["ci_upper"].to_numpy(),
            "n_treated": both["n_treated"].to_numpy(),
            "estimate_twin": both["estimate_twin"].to_numpy(),
            "same_students": (both["n_treated"] == both["n_treated_twin"]).to_numpy(),
            "without_reference_year": [missing.get(c, np.nan) for c in both["cohort"]],
        }
    )
    if extra is None:
        return out
    return out.merge(extra, on=["group", "cohort", "rel_time"], how="left", validate="one_to_one")


def run_job(job: tuple) -> str:
    """Compute one draw unless its file exists (a ``parallel_map`` item)."""
    family, seed, out = job
    path = Path(out) / "draws" / f"{family}-{seed}.csv"
    return fam.keep_draw(path, lambda: run_draw(family, seed))


def _seed(family: str, draw: int) -> int:
    return fam.family_seed(family, draw, SEED_BASE)


def _read(folder: Path) -> pd.DataFrame:
    files = sorted((folder / "draws").glob("*.csv"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def _fifth_freeze() -> pd.DataFrame:
    """The fifth freeze's long-term cells (``summary.json``: draws, bias, its MC SE)."""
    cells = pd.DataFrame(json.loads((FIFTH_FREEZE / "summary.json").read_text())["cells"])
    keep = (cells["estimand"] == "long_term") & cells["family"].isin(FAMILY_NAMES)
    return cells.loc[keep]


def _mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def _pooled(err: pd.Series, old: pd.DataFrame) -> tuple[int, float, float]:
    """Draws, mean and MC SE of ``err`` and a summarised run's cell taken together.

    The same numbers as concatenating the two runs' draws: the pooled variance adds the
    between-runs part to the two within-run variances (from the runs' MC SEs).
    """
    err = err.dropna()
    n1, m1, v1 = len(err), float(err.mean()), float(err.var(ddof=1))
    if old.empty:
        return n1, m1, float(np.sqrt(v1 / n1))
    (row,) = old.itertuples()
    n2, m2 = int(row.draws), float(row.bias)
    v2 = float(row.bias_mcse) ** 2 * n2
    n = n1 + n2
    mean = (n1 * m1 + n2 * m2) / n
    var = ((n1 - 1) * v1 + (n2 - 1) * v2 + n1 * n2 / n * (m1 - m2) ** 2) / (n - 1)
    return n, mean, float(np.sqrt(var / n))


def summarise(draws: pd.DataFrame, fifth: pd.DataFrame) -> pd.DataFrame:
    """One row per family, group, cohort and school year: this run, its parts, pooled."""
    rows = []
    for (family, group, cohort, year), d in draws.groupby(
        ["family", "group", "cohort", "rel_time"], sort=True
    ):
        err = d["estimate"] - d["truth"]
        bias, se = _mean_se(err)
        weighting, weighting_se = _mean_se(d["estimate"] - d["estimate_twin"] - d["truth"])
        comparisons, comparisons_se = _mean_se(d["estimate_twin"])
        covered = (d["ci_lower"] <= d["truth"]) & (d["truth"] <= d["ci_upper"])
        old = fifth.loc[
            (fifth["family"] == family)
            & (fifth["group"] == group)
            & (fifth["cohort"] == cohort)
            & (fifth["rel_time"] == year)
        ]
        pooled_draws, pooled_bias, pooled_se = _pooled(err, old)
        old_bias = float(old["bias"].iloc[0]) if len(old) else np.nan
        old_se = float(old["bias_mcse"].iloc[0]) if len(old) else np.nan
        rows.append(
            {
                "family": family,
                "group": group,
                "cohort": cohort,
                "years_after": int(year),
                "draws": int(err.notna().sum()),
                "bias": bias,
                "mc_se": se,
                "rmse": float(np.sqrt((err**2).mean())),
                "coverage": float(covered.mean()),
                "weighting_part": weighting,
                "weighting_part_mc_se": weighting_se,
                "no_effect_part": comparisons,
                "no_effect_part_mc_se": comparisons_se,
                "without_reference_year": float(d["without_reference_year"].mean()),
                "fifth_freeze_draws": int(old["draws"].iloc[0]) if len(old) else 0,
                "fifth_freeze_bias": old_bias,
                "fifth_freeze_mc_se": old_se,
                "pooled_draws": pooled_draws,
                "pooled_bias": pooled_bias,
                "pooled_mc_se": pooled_se,
            }
        )
    out = pd.DataFrame(rows)
    lo = out["pooled_bias"] - 1.96 * out["pooled_mc_se"]
    hi = out["pooled_bias"] + 1.96 * out["pooled_mc_se"]
    out["within_bound"] = out["pooled_bias"].abs() <= BOUND
    out["clearly_beyond"] = (lo > BOUND) | (hi < -BOUND)
    return out


def write_summary(cells: pd.DataFrame, out: Path, command: str) -> None:
    """``summary.json`` and ``summary.md`` (all students first, then the grade bands)."""
    records = json.loads(cells.to_json(orient="records", double_precision=10))
    (out / "summary.json").write_text(
        json.dumps({"command": command, "rule": RULE, "cells": records}, indent=1) + "\n"
    )

    def pm(value: float, se: float) -> str:
        return f"{value:+.2f} ({se:.2f})"

    lines = [
        "# The frozen long-term design, second held-out run, with no-effect twins",
        "",
        f"Command: `{command}`",
        "",
        RULE,
        "",
        "Attendance rate, pp; bias (MC SE). `weighting`: estimate - twin's estimate - truth "
        "(how the fit weights the individual effects); `no effect`: the twin's estimate; "
        "`no ref. year`: share of the cohort's visited students with no row in the school "
        "year before the cohort's.",
        "",
    ]
    for title, mask in (
        ("All visited students", cells["group"] == "all"),
        ("Grade bands", cells["group"] != "all"),
    ):
        sub = cells.loc[mask]
        lines += [f"## {title}", ""]
        lines += [
            "| family | group | cohort | year | draws | bias | weighting | no effect | "
            "coverage | no ref. year | fifth freeze | pooled | within 0.5 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub.itertuples():
            verdict = "yes" if r.within_bound else ("no, clearly" if r.clearly_beyond else "no")
            lines.append(
                f"| {r.family} | {r.group} | {r.cohort} | {r.years_after} | {r.draws} | "
                f"{pm(r.bias, r.mc_se)} | {pm(r.weighting_part, r.weighting_part_mc_se)} | "
                f"{pm(r.no_effect_part, r.no_effect_part_mc_se)} | {r.coverage:.1%} | "
                f"{r.without_reference_year:.0%} | "
                f"{pm(r.fifth_freeze_bias, r.fifth_freeze_mc_se)} | "
                f"{pm(r.pooled_bias, r.pooled_mc_se)} | {verdict} |"
            )
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


def frozen_draws(
    args: argparse.Namespace,
    *,
    seed,
    rule: str,
    job,
    families: tuple[str, ...] = FAMILY_NAMES,
    before_freeze=None,
) -> tuple[int, pd.DataFrame]:
    """Freeze ``args.out`` (``design.json``), run its missing draws, check their code.

    ``seed(family, draw)``: the held-out seeds; ``job``: the ``parallel_map`` item of one
    draw; ``before_freeze()``: a check run before ``design.json`` is first written. A
    folder frozen on other code refuses to run more draws (``--summary-only`` reads them).
    Returns an exit code (0, 1: no draws yet, 2: other code) and the draws.
    """
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    design = out / fam.DESIGN_FILE
    record = {
        **fam.design_record(1.0, args.draws, seed),
        "families_run": list(families),
        "twin": "the same seed with effect_multiplier = 0",
        "rule": rule,
    }
    record["seeds"] = {f: [seed(f, 0), seed(f, args.draws - 1)] for f in families}
    if design.exists():
        frozen = json.loads(design.read_text())
        if frozen["code_digest"] != record["code_digest"] and not args.summary_only:
            print(f"error: the code differs from the one {design} froze", file=sys.stderr)
            return 2, pd.DataFrame()
    else:
        if before_freeze is not None:
            before_freeze()
        design.write_text(json.dumps(record, indent=1) + "\n")
    if not args.summary_only:
        jobs = [(f, seed(f, i), str(out)) for i in range(args.draws) for f in families]
        mc.run_jobs(job, jobs, args.workers)
    draws = _read(out)
    if draws.empty:
        print("no draws yet", file=sys.stderr)
        return 1, draws
    frozen = json.loads(design.read_text())
    files = sorted((out / "draws").glob("*.csv"))
    sizes = [len(pd.read_csv(f)) for f in files]
    fam.check_code_digests(
        draws,
        [f for f, n in zip(files, sizes, strict=True) for _ in range(n)],
        frozen["code_digest"],
    )
    return 0, draws


def arguments(doc: str, out: Path, draws: int, argv: list[str] | None) -> argparse.Namespace:
    """The command line of a frozen long-term run (``--draws``, ``--workers``, ``--out``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--draws", type=int, default=draws, help="draws per family")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--summary-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Freeze (``design.json``), run the missing draws, summarise (see the docstring)."""
    args = arguments(__doc__, OUT, 250, argv)
    code, draws = frozen_draws(args, seed=_seed, rule=RULE, job=run_job)
    if code:
        return code
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"validation/long_term_repeat.py {argv_text}"
    write_summary(summarise(draws, _fifth_freeze()), args.out, command)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
