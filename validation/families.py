"""Data-generating families the design was not tuned on (issue 23, items 2-3).

Each family is a configuration of the package's simulator
(:class:`leapresearch.data.simulate.SimulationConfig`), using where needed one of its
validation hooks (``latent_shock``/``latent_recovery``, ``reachability``/
``reachability_shift``, ``list_waves``, ``district_effect_spread``: off by default, so the
demo's data are unchanged). :func:`run_family_draw` simulates one draw of a family, runs the
frozen design of ``params/base.yaml`` (the ``default`` variant of ``monte_carlo.py``) and
records

- the event-study cells (all visited students and each grade band at the headline months:
  estimate, analytic and bootstrap intervals, whether the simultaneous band covers the
  whole true post-visit path) and the long-term cells (annual attendance rate, the
  censored panel of the design), each with the simulator's truth;
- the p-value of every diagnostic of the all-students group: the pre-trend tests of
  ``pretrend_tests.csv`` (the main one on the adjusted outcome, the further ones on the
  adjusted and unadjusted outcomes and the months before the matching window), the
  falsification's joint test of the post months and the placebo's joint post test,
  through the package's own step functions.

The seeds are held out: ``FAMILY_SEED_BASE + 10_000 * k + i`` for the ``k``-th family of
:data:`FAMILIES` and draw ``i`` (7,000,000 and up; no other script uses them).
``validation/results/families/design.json`` records the design these seeds were run on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from leapresearch.analysis.truth import long_term_truth_key
from leapresearch.publish.calibration import BIAS_SIGNIFICANT_MCSE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monte_carlo as mc  # noqa: E402

FAMILY_SEED_BASE = 7_000_000
"""First seed of the held-out range (family ``k``: ``+ 10_000 * k``, then the draw)."""

FAMILIES: dict[str, dict] = {
    "lists": {
        "simulation": {"selection": "lists"},
        "assumption": "holds",
        "about": "districts pick each month from lists of low recent attendance (the demo)",
    },
    "hazard": {
        "simulation": {"selection": "hazard"},
        "assumption": "holds",
        "about": "a monthly visit hazard on the last three months' attendance (slope 10)",
    },
    "hazard_strong": {
        "simulation": {"selection": "hazard", "hazard_strength": 25.0},
        "assumption": "holds",
        "about": "sharp dynamic selection: the hazard's slope is 25 (poor overlap)",
    },
    "waves": {
        "simulation": {"selection": "lists", "list_waves": ("2021-10", "2022-01", "2022-04")},
        "assumption": "holds",
        "about": "the 2021-22 visits come in three list waves (October, January, April), "
        "each drawn from the not yet visited on their own dips, so a risk-set comparison of "
        "one wave is listed in the next",
    },
    "latent_shock": {
        "simulation": {"latent_shock": 1.0, "latent_recovery": 0.08},
        "assumption": "fails",
        "about": "a latent shock u ~ Exp(1) raises the listing weight (x e^u) and makes "
        "Y(0) recover after the visit month (theta = 0.08 u): parallel trends given observed "
        "attendance fail",
    },
    "reachability": {
        "simulation": {
            "reachability": 1.5,
            "reachability_shift": 0.1,
            "attempt_only_share": 0.5,
        },
        "assumption": "fails",
        "about": "a third of the picked students are attempts only; completion favours a "
        "latent reachability r ~ N(0, 1) (weight e^(1.5 r)) that also moves Y(0) after "
        "the selection month by about 10 r pp: the completed-visit effect (the design's "
        "estimand) and the intent-to-treat effect differ",
    },
    "no_effect": {
        "simulation": {"effect_multiplier": 0.0},
        "assumption": "holds",
        "about": "the program does nothing (every true effect is 0)",
    },
    "district_effects": {
        "simulation": {"district_effect_spread": 0.8},
        "assumption": "holds",
        "about": "effects scaled by a district factor from 0.2 to 1.8 across the 15 LEAP districts",
    },
}
"""Family name -> simulator settings, whether the design's identifying assumption (parallel
trends given the matched observed attendance) holds, and a description."""

DIAGNOSTICS = (
    "pretrend_adjusted_main",
    "pretrend_adjusted_far",
    "pretrend_unadjusted_main",
    "pretrend_unadjusted_far",
    "falsification_post",
    "placebo_post",
)
"""Diagnostics of the all-students group whose p-values each draw records."""


def family_seed(family: str, draw: int, base: int = FAMILY_SEED_BASE) -> int:
    """The held-out seed of draw ``draw`` of ``family`` (``base``: the range of one freeze)."""
    return base + 10_000 * list(FAMILIES).index(family) + draw


def _pretrend_name(basis: str, months: str, lo: int) -> str:
    main = months.startswith("<=") or months.startswith(f"{lo}..")
    return f"pretrend_{basis}_{'main' if main else 'far'}"


def _diagnostics(prepared, *, pretrends_only: bool = False) -> list[dict]:
    """p-values of every diagnostic of the all-students group (NaN where not estimable).

    ``pretrends_only``: the pre-trend tests only (the falsification and placebo rows NaN).
    """
    from leapresearch.analysis.event_studies import pretrend_tests
    from leapresearch.analysis.identification import (
        estimate_falsification,
        pretrend_evidence,
        pretrend_fits,
    )
    from leapresearch.analysis.robustness import estimate_placebo

    config = prepared.config
    ident = config.identification.model_copy(update={"groups": ("all",)})
    prepared = dataclasses.replace(
        prepared, config=config.model_copy(update={"identification": ident})
    )
    lo = config.analysis.window[0]
    rows = {
        name: {"diagnostic": name, "p_value": np.nan, "statistic": np.nan, "df": np.nan}
        for name in DIAGNOSTICS
    }
    errors = (ValueError, np.linalg.LinAlgError, KeyError)
    try:
        fit_all = pretrend_fits(prepared, subgroups=()).get("all")
        if fit_all is not None:
            _, tests = pretrend_evidence(prepared, pretrend_tests({"all": fit_all}))
            for t in tests.loc[tests["group"] == "all"].itertuples(index=False):
                name = _pretrend_name(t.basis, str(t.months), lo)
                rows[name].update(p_value=t.p_value, statistic=t.statistic, df=t.df)
    except errors:
        pass
    if pretrends_only:
        return list(rows.values())
    try:
        f = estimate_falsification(prepared)
        f = f.loc[(f["group"] == "all") & (f["term"] == "post_months")].iloc[0]
        rows["falsification_post"].update(
            p_value=f["p_value"], statistic=f["statistic"], df=f["df"]
        )
    except (*errors, IndexError):
        pass
    try:
        p = estimate_placebo(prepared)
        if "post_wald_p_value" in p:
            p = p.iloc[0]
            rows["placebo_post"].update(
                p_value=p["post_wald_p_value"],
                statistic=p["post_wald_statistic"],
                df=p["post_wald_df"],
            )
    except (*errors, IndexError):
        pass
    return list(rows.values())


def _event_rows(prepared, table, fits, truth: dict, validation: dict) -> list[dict]:
    """Event-study cells of every group at the headline months (as ``monte_carlo.py``)."""
    from leapresearch.estimation.bootstrap import multiplier_bootstrap

    hi = prepared.config.analysis.window[1]
    itt = validation.get("intent_to_treat", {})
    shift = validation.get("y0_shift", {})
    rows = []
    for group in mc.GROUPS:
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
        for r in mc.HEADLINE:
            rows.append(
                {
                    "estimand": "event_study",
                    "group": group,
                    "cohort": "",
                    "rel_time": r,
                    "truth": path[str(r)],
                    "truth_itt": itt.get(str(r), np.nan) if group == "all" else np.nan,
                    "y0_shift": shift.get(str(r), np.nan) if group == "all" else np.nan,
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


def simulate_family(
    family: str, seed: int, sample_fraction: float, folder: Path, *, simulation: dict | None = None
):
    """Simulate draw ``seed`` of ``family`` into ``folder`` and match it (the frozen design).

    ``simulation`` replaces the family's simulator settings (``FAMILIES[family]
    ["simulation"]``), e.g. the same family without effects.

    Returns
    -------
    truth : dict
        The simulator's ``truth.json``.
    prepared : Prepared
        The matched sample of the ``default`` variant of ``monte_carlo.py``.
    """
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

    settings = FAMILIES[family]["simulation"] if simulation is None else simulation
    config = SimulationConfig(seed=seed, sample_fraction=sample_fraction, **settings)
    write_simulation(
        simulate(config), folder / "data", file_format="parquet", truth_path=folder / "truth.json"
    )
    truth = json.loads((folder / "truth.json").read_text())
    tables = read_raw_tables(folder / "data")
    return truth, mc._prepared(tables, folder / "data", mc.VARIANTS["default"], {})


def run_family_draw(
    family: str,
    seed: int,
    *,
    sample_fraction: float = 1.0,
    long_term_outcomes: tuple[str, ...] = ("attendance_rate",),
) -> pd.DataFrame:
    """Simulate one draw of ``family`` and run the frozen design on it.

    Returns the estimate cells (``estimand`` ``event_study``, ``long_term`` or, with
    chronic absence among ``long_term_outcomes``, ``long_term_chronic``) and one row per
    diagnostic (``estimand == "diagnostic"``, ``diagnostic``, ``p_value``, ``statistic``,
    ``df``), with ``family`` and ``seed``.
    """
    from leapresearch.analysis.event_studies import estimate_event_studies

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-fam-") as tmp:
        truth, prepared = simulate_family(family, seed, sample_fraction, Path(tmp))
        table, fits = estimate_event_studies(prepared, subgroups=("grade_band",))
        validation = truth.get("validation", {})
        events = _event_rows(prepared, table, fits, truth["event_study"], validation)
        long_term = mc._long_term_rows(
            prepared,
            truth[long_term_truth_key(prepared.config)],
            censored_only=True,
            outcomes=long_term_outcomes,
            unweighted=prepared.config.long_term.censoring_weights,
        )
        diagnostics = _diagnostics(prepared) if "all" in fits else []
    frames = [
        pd.DataFrame(events),
        pd.DataFrame(long_term),
        pd.DataFrame(diagnostics).assign(estimand="diagnostic", group="all"),
    ]
    out = pd.concat([f for f in frames if len(f)], ignore_index=True)
    return out.assign(
        family=family, seed=seed, completion_share=validation.get("completion_share", np.nan)
    )


def draw_file(out: Path, family: str, seed: int, sample_fraction: float) -> Path:
    """Where a family draw's rows are kept (the run resumes from them)."""
    return out / "draws" / f"f{sample_fraction}" / f"{family}-{seed}.csv"


def run_family_job(job: tuple) -> str:
    """Compute one draw unless its file exists (a ``parallel_map`` item).

    ``job``: family, seed, out, fraction and, optionally, the long-term outcomes.
    """
    family, seed, out, fraction, *rest = job
    outcomes = tuple(rest[0]) if rest else ("attendance_rate",)
    return keep_draw(
        draw_file(Path(out), family, seed, fraction),
        lambda: run_family_draw(
            family, seed, sample_fraction=fraction, long_term_outcomes=outcomes
        ),
    )


def run_pretrend_draw(family: str, seed: int, *, sample_fraction: float = 1.0) -> pd.DataFrame:
    """Simulate one draw of ``family`` and record only its pre-trend tests' p-values.

    The rows of :func:`run_family_draw` with ``estimand == "diagnostic"`` for the pre-trend
    tests (the falsification and placebo rows NaN): the validation of a change to the
    pre-trend tests alone, at a fraction of a full draw's cost.
    """
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-fam-") as tmp:
        _, prepared = simulate_family(family, seed, sample_fraction, Path(tmp))
        diagnostics = _diagnostics(prepared, pretrends_only=True)
    out = pd.DataFrame(diagnostics).assign(estimand="diagnostic", group="all")
    return out.assign(family=family, seed=seed)


def run_pretrend_job(job: tuple) -> str:
    """:func:`run_pretrend_draw` unless its file exists (a ``parallel_map`` item)."""
    family, seed, out, fraction = job
    return keep_draw(
        draw_file(Path(out), family, seed, fraction),
        lambda: run_pretrend_draw(family, seed, sample_fraction=fraction),
    )


PRETREND_DIAGNOSTICS = tuple(d for d in DIAGNOSTICS if d.startswith("pretrend_"))
"""The diagnostics a ``--pretrends-only`` run records."""


def write_pretrend_summary(draws: pd.DataFrame, out: Path, command: str) -> None:
    """``summary.json`` and ``summary.md`` of a ``--pretrends-only`` run: rejection rates.

    No calibration record is written from it (a run without the estimates' cells and the
    other diagnostics does not make one).
    """
    diags = summarise_diagnostics(draws)
    diags = diags.loc[diags["diagnostic"].isin(PRETREND_DIAGNOSTICS)]
    payload = {
        "command": command,
        "diagnostics": json.loads(diags.to_json(orient="records", double_precision=6)),
    }
    (out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    rows = []
    for family in [f for f in FAMILIES if f in set(diags["family"])]:
        row = {"family": family, "assumption": FAMILIES[family]["assumption"]}
        d = diags.loc[diags["family"] == family].set_index("diagnostic")
        for name in PRETREND_DIAGNOSTICS:
            r, m = d.loc[name, "rejection_rate"], d.loc[name, "rejection_mcse"]
            row[name] = "" if pd.isna(r) else f"{100 * r:.0f} ({100 * m:.0f})"
        row["draws"] = int(d["draws"].max())
        rows.append(row)
    text = (
        "# Pre-trend tests on the untreated rows (issue 23)\n\n"
        f"Command: `{command}`\n\n"
        "The frozen design (`design.json`), held-out seeds; only the pre-trend tests of all "
        "visited students were computed.\n\n"
        "## Diagnostics: rejection rate at 5% (MC SE), %\n\n"
        "A size where the assumption holds, a power where it fails.\n\n"
        f"{mc._md_table(pd.DataFrame(rows))}\n"
    )
    (out / "summary.md").write_text(text)


DIGEST_PATHS = ("leapresearch/**/*.py", "params/base.yaml", "validation/*.py")
"""The files whose bytes make a draw's :func:`code_digest`."""

DIGEST_COLUMN = "code_digest"


@functools.cache
def code_digest(root: Path | None = None) -> str:
    """SHA-256 (16 hex digits) of the code a process runs draws with (:data:`DIGEST_PATHS`).

    Computed once per process, when its first draw starts: a worker that a process pool
    starts later, after the files changed, gets another digest. Every draw records it
    (:data:`DIGEST_COLUMN`), ``design.json`` records the freeze's, and a summary refuses
    draws of another code (:func:`check_code_digests`).
    """
    import hashlib

    base = mc.ROOT if root is None else Path(root)
    h = hashlib.sha256()
    files = sorted({p for pattern in DIGEST_PATHS for p in base.glob(pattern)})
    for path in files:
        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def check_code_digests(draws: pd.DataFrame, files: list[Path], frozen: str | None) -> None:
    """Raise unless every draw that recorded a code digest ran on the frozen code.

    ``files``: the draw file of each row of ``draws`` in order (rows of one file share
    it). ``frozen``: ``design.json``'s digest (None for a freeze made before digests were
    recorded: then the draws' digests must agree with one another). Draws without the
    column (written before it existed) are not checked.
    """
    if DIGEST_COLUMN not in draws:
        return
    digest = draws[DIGEST_COLUMN].astype("string")
    seen = digest.dropna().unique().tolist()
    expected = frozen if frozen is not None else (seen[0] if seen else None)
    odd = digest.notna() & (digest != expected)
    if odd.any():
        names = sorted({files[i].name for i in np.flatnonzero(odd.to_numpy())})
        raise ValueError(
            f"{len(names)} draw file(s) ran on other code than the freeze (code digest "
            f"{sorted(set(digest[odd]))} against {expected}): {names[:5]}"
            f"{' ...' if len(names) > 5 else ''}. The code changed while the validation ran; "
            "delete those files and compute them again from a worktree of the frozen commit "
            "(validation/README.md)."
        )


def keep_draw(path: Path, compute) -> str:
    """Write ``compute()`` (a DataFrame) to ``path`` unless it exists; the path as text.

    The frame gets the process's :func:`code_digest` in :data:`DIGEST_COLUMN`.
    """
    if not path.exists():
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        digest = code_digest()
        frame = compute().assign(**{DIGEST_COLUMN: digest})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return str(path)


def summarise_cells(draws: pd.DataFrame) -> pd.DataFrame:
    """Per family x estimand x group x cohort x month: bias, MC SE, RMSE and coverage.

    ``coverage``: the analytic 95% interval covers the draw's truth (the completed-visit
    effect on that draw's visited students); ``boot_coverage``: the bootstrap interval;
    ``band_coverage``: the simultaneous band covers the whole true post-visit path (event
    study only); ``coverage_mcse``: sqrt(c (1 - c) / draws). For all students,
    ``bias_vs_itt``: mean estimate minus the intent-to-treat truth (every picked student),
    and ``y0_shift``: the mean Y(0) shift of the visited students a comparison without
    it leaves in the estimate (both from ``truth["validation"]``, NaN when no hook).
    """
    d = draws.loc[draws["estimand"] != "diagnostic"].copy()
    boot = d["boot_ci_lower"].notna()
    d["error"] = d["estimate"] - d["truth"]
    d["error_itt"] = d["estimate"] - d["truth_itt"]
    d["covered"] = ((d["ci_lower"] <= d["truth"]) & (d["truth"] <= d["ci_upper"])).astype(float)
    d["boot_covered"] = (
        ((d["boot_ci_lower"] <= d["truth"]) & (d["truth"] <= d["boot_ci_upper"]))
        .astype(float)
        .where(boot)
    )
    d["band"] = d["band_covers_path"].map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0})
    d["cohort"] = d["cohort"].fillna("")
    keys = ["family", "estimand", "group", "cohort", "rel_time"]
    g = d.groupby(keys, sort=False)
    n = g.size()
    out = pd.DataFrame(
        {
            "draws": n,
            "truth": g["truth"].mean(),
            "bias": g["error"].mean(),
            "bias_mcse": g["error"].std(ddof=1) / np.sqrt(n),
            "rmse": np.sqrt(g["error"].apply(lambda e: float(np.mean(e**2)))),
            "sd_estimate": g["estimate"].std(ddof=1),
            "mean_std_error": g["std_error"].mean(),
            "coverage": g["covered"].mean(),
            "boot_coverage": g["boot_covered"].mean(),
            "band_coverage": g["band"].mean(),
            "truth_itt": g["truth_itt"].mean(),
            "bias_vs_itt": g["error_itt"].mean(),
            "y0_shift": g["y0_shift"].mean(),
            "mean_n_treated": g["n_treated"].mean() if "n_treated" in d else np.nan,
        }
    ).reset_index()
    out["coverage_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["draws"])
    order = {f: i for i, f in enumerate(FAMILIES)}
    return out.sort_values(
        ["family", "estimand", "group", "cohort", "rel_time"],
        key=lambda c: c.map(order) if c.name == "family" else c,
        kind="stable",
    ).reset_index(drop=True)


def summarise_diagnostics(draws: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per family x diagnostic: rejection rate at ``alpha`` with its MC SE.

    Over the draws where the test was estimable (``estimable``); ``assumption`` says
    whether the design's identifying assumption holds in the family (the rate is a size
    where it holds, a power where it fails). Every diagnostic's own null (no pre-trend,
    no pseudo-effect, no placebo effect) holds in every family: the mechanisms act after
    the visit.
    """
    d = draws.loc[draws["estimand"] == "diagnostic"].copy()
    d["p_value"] = pd.to_numeric(d["p_value"], errors="coerce")
    rows = []
    for family in [f for f in FAMILIES if f in set(d["family"])]:
        for name in DIAGNOSTICS:
            p = d.loc[(d["family"] == family) & (d["diagnostic"] == name), "p_value"]
            ok = p.dropna()
            rate = float((ok < alpha).mean()) if len(ok) else np.nan
            rows.append(
                {
                    "family": family,
                    "assumption": FAMILIES[family]["assumption"],
                    "diagnostic": name,
                    "draws": len(p),
                    "estimable": len(ok),
                    "rejection_rate": rate,
                    "rejection_mcse": np.sqrt(rate * (1 - rate) / len(ok)) if len(ok) else np.nan,
                    "median_p_value": float(ok.median()) if len(ok) else np.nan,
                }
            )
    return pd.DataFrame(rows)


def verdict(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per family: the all-students event study against the criteria of issue 12.

    ``worst_bias`` (largest |bias| over the headline months, pp) with its MC SE;
    ``bias_significant``: that bias is more than 3 MC SEs from 0; coverage range of the
    analytic intervals over all students and the grade bands; band coverage of all
    students; long-term cells of all students (cohort x years after): the worst |bias| with
    its MC SE and how many of the cells are more than 3 MC SEs from 0, and the same over the
    cells a run publishes (``lt_published_*``: mean visited students at least
    ``privacy.min_treated``; smaller cohorts are suppressed). ``passes``: |bias| within
    ``BIAS_BOUND`` and coverage inside ``COVERAGE_RANGE`` (as ``monte_carlo.criteria``).
    """
    rows = []
    for family in [f for f in FAMILIES if f in set(cells["family"])]:
        c = cells.loc[(cells["family"] == family) & (cells["estimand"] == "event_study")]
        a = c.loc[c["group"] == "all"]
        worst = a["bias"].abs().idxmax()
        lt = cells.loc[
            (cells["family"] == family)
            & (cells["estimand"] == "long_term")
            & (cells["group"] == "all")
        ]
        published = lt.loc[lt["mean_n_treated"] >= _min_treated()]
        lo, hi = c["coverage"].min(), c["coverage"].max()
        bias = abs(a.loc[worst, "bias"])
        passes = bias <= mc.BIAS_BOUND and mc.COVERAGE_RANGE[0] <= lo and hi <= mc.COVERAGE_RANGE[1]
        rows.append(
            {
                "family": family,
                "assumption": FAMILIES[family]["assumption"],
                "draws": int(a["draws"].min()),
                "worst_bias_all": round(float(a.loc[worst, "bias"]), 2),
                "its_mcse": round(float(a.loc[worst, "bias_mcse"]), 2),
                "at_month": int(a.loc[worst, "rel_time"]),
                "bias_significant": bool(bias > BIAS_SIGNIFICANT_MCSE * a.loc[worst, "bias_mcse"]),
                "coverage_all": " / ".join(f"{100 * v:.0f}" for v in a["coverage"]),
                "coverage_range_groups": f"{100 * lo:.0f}-{100 * hi:.0f}",
                "band_all": f"{100 * a['band_coverage'].iloc[0]:.0f}",
                "lt_worst_bias_all": _worst(lt, "bias"),
                "lt_its_mcse": _worst(lt, "bias_mcse"),
                "lt_cells_beyond_3_mcse": int((lt["bias"].abs() > 3 * lt["bias_mcse"]).sum()),
                "lt_cells": len(lt),
                "lt_coverage_all": _range(lt["coverage"]),
                "lt_published_cells": len(published),
                "lt_published_worst_bias": _worst(published, "bias"),
                "lt_published_its_mcse": _worst(published, "bias_mcse"),
                "lt_published_coverage": _range(published["coverage"]),
                "passes": bool(passes),
            }
        )
    return pd.DataFrame(rows)


def long_term_verdict(cells: pd.DataFrame, estimand: str) -> pd.DataFrame:
    """One row per family and school year after: the long-term cells of all students.

    Over the cohorts a run publishes (mean visited students at least
    ``privacy.min_treated``) and over every cohort: the worst |bias| with its MC SE, the
    cells more than 3 MC SEs from 0, and the coverage range of the 95% intervals.
    ``estimand``: ``long_term`` (attendance rate, pp) or ``long_term_chronic`` (share
    chronically absent, pp).
    """
    rows = []
    lt = cells.loc[(cells["estimand"] == estimand) & (cells["group"] == "all")]
    for family in [f for f in FAMILIES if f in set(lt["family"])]:
        for year, c in lt.loc[lt["family"] == family].groupby("rel_time", sort=True):
            published = c.loc[c["mean_n_treated"] >= _min_treated()]
            rows.append(
                {
                    "family": family,
                    "years_after": int(year),
                    "draws": int(c["draws"].min()),
                    "cells": len(c),
                    "beyond_3_mcse": int((c["bias"].abs() > 3 * c["bias_mcse"]).sum()),
                    "worst_bias": _worst(c, "bias"),
                    "its_mcse": _worst(c, "bias_mcse"),
                    "coverage": _range(c["coverage"]),
                    "published_cells": len(published),
                    "published_beyond_3_mcse": int(
                        (published["bias"].abs() > 3 * published["bias_mcse"]).sum()
                    ),
                    "published_worst_bias": _worst(published, "bias"),
                    "published_its_mcse": _worst(published, "bias_mcse"),
                    "published_coverage": _range(published["coverage"]),
                }
            )
    return pd.DataFrame(rows)


def _min_treated() -> int:
    """``privacy.min_treated`` of ``params/base.yaml``: smaller groups' cells are suppressed."""
    import yaml

    return int(
        yaml.safe_load((mc.ROOT / "params" / "base.yaml").read_text())["privacy"]["min_treated"]
    )


def _worst(cells: pd.DataFrame, column: str) -> float:
    """``column`` of the cell with the largest |bias| (rounded; NaN for no cell)."""
    if not len(cells):
        return np.nan
    return round(float(abs(cells.loc[cells["bias"].abs().idxmax(), column])), 2)


def _range(coverage: pd.Series) -> str:
    """``min-max`` of coverages in % (empty for none)."""
    return f"{100 * coverage.min():.0f}-{100 * coverage.max():.0f}" if len(coverage) else ""


def rounded(cells: pd.DataFrame, values, percents) -> pd.DataFrame:
    """``cells`` with ``values`` as text to 2 decimals and ``percents`` in % to 1 (NaN: empty)."""
    s = cells.copy()
    for c in values:
        s[c] = s[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    for c in percents:
        s[c] = s[c].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
    return s


def write_summary(draws: pd.DataFrame, out: Path, command: str) -> None:
    """``summary.json`` (cells, diagnostics, verdict) and ``summary.md`` in ``out``.

    Then the diagnostics' calibration record (:func:`write_calibration_record`).
    """
    cells = summarise_cells(draws)
    diags = summarise_diagnostics(draws)
    table = verdict(cells)
    payload = {
        "command": command,
        "verdict": json.loads(table.to_json(orient="records")),
        "diagnostics": json.loads(diags.to_json(orient="records", double_precision=6)),
        "cells": json.loads(cells.to_json(orient="records", double_precision=6)),
    }
    (out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    rates = diags.pivot(index="family", columns="diagnostic", values="rejection_rate")
    mcses = diags.pivot(index="family", columns="diagnostic", values="rejection_mcse")
    rate_rows = []
    for family in [f for f in FAMILIES if f in rates.index]:
        row = {"family": family, "assumption": FAMILIES[family]["assumption"]}
        for name in DIAGNOSTICS:
            r, m = rates.loc[family, name], mcses.loc[family, name]
            row[name] = "" if pd.isna(r) else f"{100 * r:.0f} ({100 * m:.0f})"
        rate_rows.append(row)
    s = rounded(
        cells,
        ("truth", "bias", "bias_mcse", "rmse", "sd_estimate", "mean_std_error", "truth_itt",
         "bias_vs_itt", "y0_shift"),
        ("coverage", "boot_coverage", "band_coverage", "coverage_mcse"),
    )  # fmt: skip
    families = "\n".join(
        f"- `{name}` ({f['assumption']}): {f['about']}." for name, f in FAMILIES.items()
    )
    text = (
        "# Data-generating families (issue 23, items 2-3)\n\n"
        f"Command: `{command}`\n\n"
        "The frozen design (`design.json`) on families it was not tuned on, held-out seeds. "
        "Bias, RMSE in percentage points of the monthly attendance rate; coverage in %; "
        "`assumption`: whether parallel trends given the matched observed attendance hold.\n\n"
        f"{families}\n\n"
        "## Verdict (all visited students; criteria of issue 12: |bias| <= "
        f"{mc.BIAS_BOUND} pp, coverage in {mc.COVERAGE_RANGE})\n\n"
        f"{mc._md_table(table)}\n"
        "## Diagnostics: rejection rate at 5% (MC SE), %\n\n"
        "Every diagnostic's own null holds in every family (the mechanisms act after the "
        "visit): a rate far above 5% where the assumption holds is a test that rejects a "
        "design that works; near 5% where it fails, a test with no power against it.\n\n"
        f"{mc._md_table(pd.DataFrame(rate_rows))}\n"
        + _long_term_sections(cells)
        + "## Every cell\n\n"
        + mc._md_table(
            s[
                ["family", "estimand", "group", "cohort", "rel_time", "draws", "truth", "bias",
                 "bias_mcse", "rmse", "sd_estimate", "mean_std_error", "coverage", "coverage_mcse",
                 "boot_coverage", "band_coverage", "truth_itt", "bias_vs_itt", "y0_shift"]
            ]
        )
    )  # fmt: skip
    (out / "summary.md").write_text(text)
    write_calibration_record(out)


def _long_term_sections(cells: pd.DataFrame) -> str:
    """The long-term verdicts by school year after (:func:`long_term_verdict`), as markdown."""
    text = ""
    titles = {
        "long_term": "attendance rate, pp",
        "long_term_chronic": "share chronically absent, pp",
        "long_term_unweighted": "attendance rate, pp, without the long-term censoring "
        "weights: the second freeze's long-term design on the same draws",
    }
    for estimand, about in titles.items():
        table = long_term_verdict(cells, estimand)
        if len(table):
            text += (
                f"## Long-term cells, all visited students ({about}; `{estimand}`)\n\n"
                f"{mc._md_table(table)}\n"
            )
    return text


CALIBRATION_RUNS = ("families-4-demo-size",)
"""Held-out runs (folders of ``validation/results``) of the current event-study design,
each of every family: the package's calibration pools their draws.

The fifth freeze (every family at the demo's size: ``lists``, ``hazard`` and ``no_effect``
150 draws each, the other five 100, run later on the seeds its ``design.json`` reserved).
The first two freezes (``families``, ``families-2``, a fifth of the demo) ran an older
event-study design (:func:`same_event_design` refuses to pool them with it). A new freeze
of the event-study design starts this list over."""

SIZE_CHECK_RUNS: tuple[str, ...] = ("families-4-four-times",)
"""Held-out runs of the same event-study design at another sample size (some families
only): the package's record keeps each one's rates under ``size_checks``, and a diagnostic
oversized there is not calibrated (:mod:`leapresearch.publish.calibration`). Their
designs may differ from :data:`CALIBRATION_RUNS` only in ``sample_fraction``.

The fifth freeze at four times the demo's size (``lists``, ``no_effect``, ``waves``, 50
draws each; its code the frozen commit with only the simulator's bound raised;
``validation/README.md``)."""

SENSITIVITY_RUN = "sensitivity-7-demo-size"
"""The ``--sensitivity-only`` run whose bounds the package's record describes (the seventh
freeze: :func:`leapresearch.publish.calibration.sensitivity_rates`)."""

PRETREND_RUNS: dict[str, str] = {
    "families-4-demo-size": "pretrends-6-demo-size",
    "families-4-four-times": "pretrends-6-four-times",
}
"""Run of :data:`CALIBRATION_RUNS` or :data:`SIZE_CHECK_RUNS` -> the pre-trend-only run
(``monte_carlo.py --families ... --pretrends-only``) of the current pre-trend tests at the
same size, whose rates replace the run's own pre-trend rates in the package's record
(:func:`leapresearch.publish.calibration.with_pretrend_run`).

The sixth freeze (commit ``14d7053``) changed only the pre-trend tests: they are fitted on
the untreated rows (``leapresearch.analysis.identification.untreated_rows``); the estimates,
the falsification and the placebo are the fifth freeze's."""

EVENT_DESIGN_KEYS = (
    "variant_settings",
    "subgroups",
    "headline_months",
    "diagnostics",
    "alpha",
    "sample_fraction",
    "families",
)
"""Keys of ``design.json`` two runs pooled for the calibration must share."""

NOT_IN_EVENT_DESIGN = {
    "long_term": None,
    "inference": ("few_clusters", "wild_draws", "procedure_draws"),
}
"""Parameters of ``params/base.yaml`` a families run's diagnostics do not read: the
long-term design, and inference settings of subgroups with few clusters (the families'
all-students tests have about 190 schools) and of the whole-procedure bootstrap (not run)."""


def same_event_design(first: dict, second: dict) -> list[str]:
    """The event-study settings two ``design.json`` records differ in (empty: poolable)."""
    import yaml

    def params(record: dict) -> dict:
        p = yaml.safe_load(record["params_base_yaml"])
        for section, keys in NOT_IN_EVENT_DESIGN.items():
            if keys is None:
                p.pop(section, None)
            else:
                p[section] = {k: v for k, v in p.get(section, {}).items() if k not in keys}
        return p

    differ = [k for k in EVENT_DESIGN_KEYS if json.dumps(first[k]) != json.dumps(second[k])]
    a, b = params(first), params(second)
    differ += [f"params.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return differ


def write_calibration_record(out: Path) -> Path | None:
    """The package's ``diagnostic_calibration.json`` from ``out``'s summary and design.

    Written into the package (``leapresearch/publish``, what the report reads) when ``out``
    lies under ``validation/results`` of this repository and its summary covers every
    family, so that a re-run of the families rewrites it; a summary elsewhere, or of some
    families only, gets its record beside it instead. When ``out`` is one of
    :data:`CALIBRATION_RUNS`, the package's record pools every one of them whose summary
    covers every family (their event-study designs must agree: else an error). Nothing
    without a ``design.json`` (see
    :func:`leapresearch.publish.calibration.calibration_record`).
    """
    from leapresearch.publish.calibration import CALIBRATION_FILE, write_calibration

    summary = Path(out).resolve() / "summary.json"
    if not summary.with_name(DESIGN_FILE).exists():
        return None
    # only a run of every family measures both size and power: a partial run (e.g. a new
    # freeze's first families) gets its record beside its summary
    results = mc.RESULTS.resolve()
    size_check = summary.parent.parent == results and summary.parent.name in SIZE_CHECK_RUNS
    inside = summary.is_relative_to(results) and _covers_every_family(summary)
    package = mc.ROOT / "leapresearch" / "publish" / CALIBRATION_FILE.name
    if not inside and not size_check:
        return write_calibration(summary, summary.parent, summary.with_name(CALIBRATION_FILE.name))
    runs = [summary]
    checks: list[Path] = []
    if summary.parent.name in CALIBRATION_RUNS or size_check:
        runs = [
            path
            for name in CALIBRATION_RUNS
            if (path := results / name / "summary.json").exists() and _covers_every_family(path)
        ]
        checks = [
            path for name in SIZE_CHECK_RUNS if (path := results / name / "summary.json").exists()
        ]
        designs = [json.loads(p.with_name(DESIGN_FILE).read_text()) for p in runs]
        for path, design in zip(runs[1:], designs[1:], strict=True):
            if differ := same_event_design(designs[0], design):
                raise ValueError(
                    f"{path.parent} and {runs[0].parent} froze different event-study designs "
                    f"({', '.join(differ)}): they cannot be pooled for the calibration; start "
                    "CALIBRATION_RUNS over with the new freeze"
                )
        for path in checks:
            design = json.loads(path.with_name(DESIGN_FILE).read_text())
            differ = [k for k in same_event_design(designs[0], design) if k != "sample_fraction"]
            if differ:
                raise ValueError(
                    f"{path.parent} froze another event-study design than {runs[0].parent} "
                    f"({', '.join(differ)}): it cannot check the calibration's size; remove it "
                    "from SIZE_CHECK_RUNS or re-run it on the calibration's design"
                )
    pretrends = {
        path: run
        for path in [*runs[-1:], *checks]
        if path.parent.name in PRETREND_RUNS
        and (run := results / PRETREND_RUNS[path.parent.name] / "summary.json").exists()
    }
    designs_of = {p: json.loads(p.with_name(DESIGN_FILE).read_text()) for p in pretrends.values()}
    for path, design in designs_of.items():
        first = next(iter(designs_of.values()))
        if not design.get("pretrends_only"):
            raise ValueError(f"{path.parent} is not a pre-trend-only run (--pretrends-only)")
        differ = [k for k in same_event_design(first, design) if k != "sample_fraction"]
        if differ or design["code_digest"] != first["code_digest"]:
            raise ValueError(
                f"the pre-trend runs froze different designs ({', '.join(differ) or 'code'}): "
                "PRETREND_RUNS must name runs of one pre-trend design"
            )
    sensitivity = results / SENSITIVITY_RUN / "summary.json"
    return write_calibration(
        runs,
        mc.ROOT,
        package,
        size_checks=checks,
        pretrends=pretrends,
        sensitivity=sensitivity if sensitivity.exists() else None,
    )


def _covers_every_family(summary: Path) -> bool:
    return {row["family"] for row in json.loads(summary.read_text())["verdict"]} == set(FAMILIES)


DESIGN_FILE = "design.json"


def design_record(sample_fraction: float, draws: int, seed=family_seed) -> dict:
    """The frozen design: code commit, ``params/base.yaml`` hash, families, seeds, size.

    ``commit`` is the git commit of the code that runs the draws (``dirty``: the work tree
    differs from it); the package's design is that of ``params/base.yaml`` (its SHA-256
    and its text) and of ``monte_carlo.VARIANTS["default"]``. ``seed(family, draw)``: the
    held-out seeds (:func:`family_seed`).
    """
    import hashlib
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=mc.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    base = (mc.ROOT / "params" / "base.yaml").read_bytes()
    paths = ["leapresearch", "params", "validation/*.py"]
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", *paths)),
        "code_digest": code_digest(),
        "params_base_yaml_sha256": hashlib.sha256(base).hexdigest(),
        "params_base_yaml": base.decode(),
        "variant": "default",
        "variant_settings": mc.VARIANTS["default"],
        "subgroups": ["grade_band"],
        "headline_months": list(mc.HEADLINE),
        "long_term_years": list(mc.LONG_TERM_YEARS),
        "diagnostics": list(DIAGNOSTICS),
        "alpha": 0.05,
        "sample_fraction": sample_fraction,
        "draws_planned": draws,
        "seeds": {name: [seed(name, 0), seed(name, draws - 1)] for name in FAMILIES},
        "families": {
            name: {
                **f,
                "simulation": {
                    k: (list(v) if isinstance(v, tuple) else v) for k, v in f["simulation"].items()
                },
            }
            for name, f in FAMILIES.items()
        },
    }


FROZEN_KEYS = (
    "params_base_yaml_sha256",
    "variant_settings",
    "subgroups",
    "headline_months",
    "long_term_years",
    "diagnostics",
    "alpha",
    "sample_fraction",
    "seeds",
    "families",
)
"""Keys of ``design.json`` a resumed run must match (else it refuses: start over)."""


def _complete_draws(out: Path, family: str, draws: int, fraction: float, seed) -> int:
    """Draws 0..k-1 of ``family`` on disk (the largest such k, at most ``draws``)."""
    k = 0
    while k < draws and draw_file(out, family, seed(family, k), fraction).exists():
        k += 1
    return k


def _single_check_run(flag: str) -> tuple:
    """The job and summary of a ``--sensitivity-only`` or ``--pretrends-only`` run."""
    if flag == "sensitivity_only":
        from sensitivity_draws import run_sensitivity_job, write_sensitivity_summary

        return run_sensitivity_job, write_sensitivity_summary
    return run_pretrend_job, write_pretrend_summary


def main_families(args, argv: list[str]) -> int:
    """``monte_carlo.py --families ...``: freeze the design, run the draws, summarise."""
    base = FAMILY_SEED_BASE if args.seed_base is None else args.seed_base
    seed = functools.partial(family_seed, base=base)
    for flag in ("sensitivity_only", "pretrends_only"):  # runs that record one check only
        if getattr(args, flag, False):
            job, write = _single_check_run(flag)
            return run_frozen(args, argv, job=job, seed=seed, write=write, extra={flag: True})
    if not getattr(args, "chronic_absence", False):
        return run_frozen(args, argv, job=run_family_job, seed=seed, write=write_summary)
    outcomes = ("attendance_rate", "chronically_absent")
    return run_frozen(
        args,
        argv,
        job=run_family_job,
        seed=seed,
        write=write_summary,
        extra={"long_term_outcomes": list(outcomes)},
        job_args=(outcomes,),
    )


def run_frozen(
    args,
    argv: list[str],
    *,
    job,
    seed,
    write,
    extra: dict | None = None,
    job_args: tuple = (),
    out_name: str = "families",
) -> int:
    """Freeze the design in ``--out``, run the missing draws, summarise those complete.

    ``job((family, seed, out, fraction, *job_args))`` computes one draw into
    :func:`draw_file` (a ``parallel_map`` item); ``seed(family, draw)`` gives the held-out
    seeds; ``write(draws, out, command)`` writes the summary; ``extra`` settings enter
    ``design.json`` (and are frozen); ``out_name``: the folder under
    ``validation/results/`` when ``--out`` is not given.
    """
    extra = extra or {}
    names = list(FAMILIES) if args.families == ["all"] else list(args.families)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        print(f"error: unknown families {unknown}; choose from {list(FAMILIES)}", file=sys.stderr)
        return 2
    out = args.out if args.out != mc.RESULTS else mc.RESULTS / out_name
    out.mkdir(parents=True, exist_ok=True)
    fraction = args.sample_fraction
    record = {**design_record(fraction, args.draws, seed), **extra}
    design = out / DESIGN_FILE
    frozen: dict = {}
    if design.exists():
        frozen = json.loads(design.read_text())
        digest = frozen.get("code_digest")
        if digest is not None and digest != record["code_digest"] and not args.summary_only:
            print(
                f"error: the code differs from the one {design} froze (code digest "
                f"{record['code_digest']} against {digest}, commit {frozen['commit'][:7]}); "
                "new draws would mix designs. Resume from a worktree of the frozen commit "
                "(validation/README.md).",
                file=sys.stderr,
            )
            return 2
        keys = (*FROZEN_KEYS, *extra)
        changed = [k for k in keys if json.dumps(frozen.get(k)) != json.dumps(record[k])]
        seeds_ok = all(
            frozen["seeds"][f][0] == seed(f, 0) and frozen["seeds"][f][1] >= seed(f, args.draws - 1)
            for f in names
        )
        changed = [k for k in changed if k != "seeds" or not seeds_ok]
        if args.summary_only:
            # the summary reads only the draws on disk, whose code digests (params/base.yaml
            # included) are checked against the frozen one below: the current file's text
            # (a comment edited since) does not enter it
            changed = [k for k in changed if k != "params_base_yaml_sha256"]
        if changed:
            print(
                f"error: {design} froze a different design ({', '.join(changed)}); the "
                "draws on disk belong to it. Start over in a new --out with new seeds.",
                file=sys.stderr,
            )
            return 2
    elif not args.summary_only:
        design.write_text(json.dumps(record, indent=1) + "\n")
        frozen = record
    if not args.summary_only:
        jobs = [
            (f, seed(f, i), str(out), fraction, *job_args) for i in range(args.draws) for f in names
        ]
        mc.run_jobs(job, jobs, args.workers)
    # each family's first k draws on disk: a family whose draws were run on in a later
    # session of the same freeze (its seeds reserved in design.json) may have fewer
    counts = {f: _complete_draws(out, f, args.draws, fraction, seed) for f in names}
    if not all(counts.values()):
        missing = [f for f, k in counts.items() if k == 0]
        print(f"no complete draw on disk yet for {', '.join(missing)}", file=sys.stderr)
        return 1
    files = [draw_file(out, f, seed(f, i), fraction) for f in names for i in range(counts[f])]
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in files]
    draws = pd.concat(frames, ignore_index=True)
    rows_of = [p for p, f in zip(files, frames, strict=True) for _ in range(len(f))]
    try:
        check_code_digests(draws, rows_of, frozen.get("code_digest"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    draws = draws.drop(columns=DIGEST_COLUMN, errors="ignore")
    command = "validation/monte_carlo.py " + " ".join(argv)
    write(draws, out, command)
    summarised = ", ".join(f"{f} {k}" for f, k in counts.items())
    print(f"draws summarised in {out / 'summary.md'}: {summarised}")
    return 0
