"""Pilot (validation/README.md): why is the spring-2021 cohort biased a year after its visit.

Hypothesis: the comparisons of an early cohort that a later, larger cohort visits leave
the long-term panel at their own first visit, and they were visited because their
attendance fell; the comparisons left in the later months are those whose attendance held
up, so the comparison mean is too high and the effect too low, even with no effect at all.

For each pilot replication (seeds ``6_500_000 + 10_000 k + i``, never used for validation
or for choosing anything else) this fits the long-term attendance-rate cells with one of
three estimators, each uncensored, censored, or censored and weighted (``how``, see
:data:`HOWS`):

* estimators: the design's one fit over every school year (no prefix); ``diff2_``, each
  school year against the reference year alone on the units observed in both (the third
  freeze's ``long_differences``, commit ``8437aaf``, reverted in ``e3d1bc4``);
  ``ipwdid_``, an inverse-probability-weighted DiD without unit effects (:func:`ipw_did`);
* ``uncensored``: comparisons keep every month after their own visit. With no effect
  (family ``no_effect``) those months are untreated outcomes, so this fit has no censoring
  selection: its difference from a censored fit, replication by replication, measures it;
* ``censored`` (or the estimator's name alone): the design's rule, comparisons leave at
  their own first visit;
* ``ipcw`` and its variants (:data:`HAZARDS`): censored, each comparison month weighted by
  the inverse probability of not yet having been visited (``design/censoring.py``, the
  monthly panel's option, fitted over every school month), with the package's hazard
  model or another.

Usage::

    PYTHONPATH=. python validation/pilot/long_term_censoring.py --families no_effect lists \
        --draws 6 --out validation/results/long-term-pilot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fam  # noqa: E402

from leapresearch.analysis import long_term as lt_analysis  # noqa: E402
from leapresearch.analysis.fitting import fit_group  # noqa: E402
from leapresearch.analysis.long_term import estimate_long_term  # noqa: E402
from leapresearch.analysis.sample import unit_censoring_info  # noqa: E402
from leapresearch.design import censoring  # noqa: E402
from leapresearch.design.censoring import censoring_weights  # noqa: E402
from leapresearch.design.stacking import subgroup_weights  # noqa: E402
from leapresearch.estimation.linear_models import linearmodels_event_study  # noqa: E402
from leapresearch.estimation.long_term import long_term_panel, long_term_table  # noqa: E402
from leapresearch.estimation.subgroups import GROUP_ALL, group_definitions  # noqa: E402

PILOT_SEED_BASE = 6_500_000
PILOT_FAMILIES = {
    **fam.FAMILIES,
    "no_effect_hazard": {
        "simulation": {"effect_multiplier": 0.0, "selection": "hazard"},
        "assumption": "holds",
        "about": "the program does nothing; visits by the monthly hazard (pilot only)",
    },
}
"""The validation's families and a pilot-only one (seeds: the family's place in this)."""


def pilot_seed(family: str, draw: int) -> int:
    """Seed of pilot replication ``draw`` of ``family`` (below every held-out range)."""
    return PILOT_SEED_BASE + 10_000 * list(PILOT_FAMILIES).index(family) + draw


YEARS = (0, 1)
HOWS = (
    "censored",
    "uncensored",
    "ipcw",
    "ipcw_x",
    "diff2",
    "diff2_uncensored",
    "diff2_ipcw",
    "diff2_ipcw_x",
    "ipcw_c",
    "diff2_ipcw_c",
    "ipwdid",
    "ipwdid_uncensored",
    "ipwdid_ipcw",
    "ipwdid_ipcw_x",
    "ipwdid_ipcw_c",
    "ipwdid_ipcw_m",
    "ipcw_m",
    "ipwdid_ipcw_d",
    "ipwdid_ipcw_b",
    "ipwdid_ipcw_e",
    "ipwdid_ipcw_me",
    "ipcw_e",
)


def _recent_mean(panel, units, unit_info, row_unit, row_time):
    """Mean rate of the three school months before each risk month (pre-period mean if none)."""
    student = units["student"].to_numpy(np.int64)[row_unit]
    n_times = panel.rates.shape[1]
    total = np.zeros(row_time.size)
    count = np.zeros(row_time.size)
    for k in range(1, censoring.RECENT_MONTHS + 1):
        col = row_time - k - panel.time_min
        ok = (col >= 0) & (col < n_times)
        val = np.full(row_time.size, np.nan)
        val[ok] = panel.rates[student[ok], col[ok]]
        has = ~np.isnan(val)
        total[has] += val[has]
        count[has] += 1
    pre_mean = unit_info["pre_mean"].to_numpy(np.float64)[row_unit]
    return np.where(count > 0, total / np.maximum(count, 1), pre_mean)


def _features_x(panel, units, unit_info, row_unit, row_time):
    """``censoring._features`` and the mean of the three recent months, below 90% and 80%."""
    x = _FEATURES(panel, units, unit_info, row_unit, row_time)
    mean = _recent_mean(panel, units, unit_info, row_unit, row_time)
    extra = np.column_stack([mean, mean < 0.9, mean < 0.8]).astype(np.float64)
    sd = extra.std(axis=0)
    extra = (extra - extra.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return np.column_stack([x, extra])


def _FEATURES(*args):  # noqa: N802 (the package's function, renamed)
    """``censoring._features`` as the dense matrix the pilot's variants extend.

    The package's hazard keeps its indicators as codes (``censoring.IndicatorDesign``);
    the pilot's variants add columns to the matrix itself, as they did when it was dense.
    """
    return censoring._features(*args).toarray()


RIDGE = censoring.RIDGE


def _features_c(prepared):
    """:func:`_features_x` and an intercept per cohort (of the unit's stack) and school year."""
    cohort_of_stack = prepared.attributes.groupby("stack")["cohort"].first()

    def features(panel, units, unit_info, row_unit, row_time):
        x = _features_x(panel, units, unit_info, row_unit, row_time)
        stack = units["stack"].to_numpy(np.int64)[row_unit]
        cohort = cohort_of_stack.reindex(stack).astype(str).to_numpy()
        cell = pd.Series(cohort) + ":" + pd.Series(row_time // 10).astype(str)
        dummies = pd.get_dummies(cell, drop_first=True, dtype=np.float64).to_numpy()
        return np.column_stack([x, dummies])

    return features


def _features_m(panel, units, unit_info, row_unit, row_time):
    """:func:`_features_x` and the recent three-month mean's slope by calendar month."""
    x = _features_x(panel, units, unit_info, row_unit, row_time)
    recent = x[:, -3]  # the standardised recent mean (see _features_x)
    months = pd.get_dummies(pd.Series(row_time), dtype=np.float64).to_numpy()
    return np.column_stack([x, months * recent[:, None]])


def _features_d(panel, units, unit_info, row_unit, row_time):
    """:func:`_features_x` and the student's district in the risk month's school year.

    The matching-time district of ``censoring._features`` stays; a student who moves to
    another district (or leaves the data) is at another risk of a visit from then on.
    """
    x = _features_x(panel, units, unit_info, row_unit, row_time)
    student = units["student"].to_numpy(np.int64)[row_unit]
    roster = panel.roster.drop_duplicates(["student", "year"])
    key = pd.MultiIndex.from_arrays([roster["student"], roster["year"]])
    pos = key.get_indexer(pd.MultiIndex.from_arrays([student, row_time // 10]))
    district = np.where(pos >= 0, roster["district"].astype(str).to_numpy()[pos], "(none)")
    dummies = pd.get_dummies(pd.Series(district), drop_first=True, dtype=np.float64)
    return np.column_stack([x, dummies.to_numpy()])


RATE_BINS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Edges of the recent three-month mean's bins in :func:`_features_b`."""


def _features_b(panel, units, unit_info, row_unit, row_time):
    """``censoring._features`` and a dummy per calendar month and bin of the recent mean.

    A nonparametric hazard by month and recent attendance (fitted with a tiny ridge,
    :func:`_ipcw_panel`): a program month whose selection is steeper than the others'
    (the summer lists) gets its own shape.
    """
    x = _FEATURES(panel, units, unit_info, row_unit, row_time)
    mean = _recent_mean(panel, units, unit_info, row_unit, row_time)
    cell = (
        pd.Series(row_time).astype(str) + ":" + pd.Series(np.digitize(mean, RATE_BINS)).astype(str)
    )
    dummies = pd.get_dummies(cell, drop_first=True, dtype=np.float64).to_numpy()
    return np.column_stack([x, dummies])


_RISK_ROWS = censoring._risk_rows


def _enrolled_risk_rows(panel):
    """``censoring._risk_rows`` without the months a student is not enrolled.

    A student out of the data (left, graduated, dropped out) that month cannot be visited;
    counted at risk, it is a survivor that lowers the hazard of the enrolled students with
    the same history, and it has no outcome row to carry the weight.
    """
    months = panel.monthly
    enrolled = pd.MultiIndex.from_arrays([months["student"], months["time"]])

    def risk_rows(units, first, last_time):
        row_unit, row_time, censored = _RISK_ROWS(units, first, last_time)
        student = units["student"].to_numpy(np.int64)[row_unit]
        here = enrolled.get_indexer(pd.MultiIndex.from_arrays([student, row_time])) >= 0
        keep = here | censored
        return row_unit[keep], row_time[keep], censored[keep]

    return risk_rows


class Hazard(NamedTuple):
    """A censoring-hazard model of the pilot (``design/censoring.py`` with its parts swapped).

    ``features``: given the matched sample, the hazard's design function (None: the
    package's ``censoring._features``); ``enrolled_only``: only enrolled months at risk
    (:func:`_enrolled_risk_rows`); ``ridge``: the penalty on every coefficient but the
    intercept.
    """

    features: Callable | None = None
    enrolled_only: bool = False
    ridge: float = RIDGE


HAZARDS = {
    "ipcw": Hazard(),
    "ipcw_x": Hazard(lambda prepared: _features_x),
    "ipcw_c": Hazard(_features_c),
    "ipcw_m": Hazard(lambda prepared: _features_m),
    "ipcw_d": Hazard(lambda prepared: _features_d),
    "ipcw_b": Hazard(lambda prepared: _features_b, ridge=1e-3),
    "ipcw_e": Hazard(enrolled_only=True),
    "ipcw_me": Hazard(lambda prepared: _features_m, enrolled_only=True),
}
"""The weighted variants: ``_x`` recent mean and its indicators, ``_c`` cohort-by-year
intercepts, ``_m`` the recent mean's slope by calendar month, ``_d`` the district of the
school year, ``_b`` a nonparametric hazard by month and rate bin (tiny ridge), ``_e`` only
enrolled months at risk, ``_me`` both ``_m`` and ``_e``."""


@contextmanager
def _patched(module, **values):
    """Set ``module``'s attributes to ``values`` for the ``with`` block, then restore them."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _ipcw_panel(prepared, hazard: Hazard):
    """``long_term_panel`` whose month rows carry the censoring weights of ``hazard``."""
    features = _FEATURES if hazard.features is None else hazard.features(prepared)

    def panel(source, units, *, outcome="attendance_rate"):
        rows = long_term_panel(source, units, outcome=outcome)
        risk_rows = _enrolled_risk_rows(source) if hazard.enrolled_only else _RISK_ROWS
        with _patched(censoring, _features=features, RIDGE=hazard.ridge, _risk_rows=risk_rows):
            model = censoring_weights(
                source, units, rows, unit_censoring_info(units, prepared.candidates)
            )
        return rows.assign(censoring_weight=model.weights)

    return panel


def long_differences(panel, *, reference=-1):
    """The third freeze's two-year differences (commit ``8437aaf``), as it was."""
    rel = panel["rel_time"].to_numpy()
    unit = panel["unit"].to_numpy()
    at_ref = np.unique(unit[rel == reference])
    for r in np.unique(rel):
        if r == reference:
            continue
        both = np.intersect1d(at_ref, np.unique(unit[rel == r]), assume_unique=True)
        keep = ((rel == reference) | (rel == r)) & np.isin(unit, both)
        yield int(r), panel.loc[keep]


def estimate_diff2(prepared, panel_of=long_term_panel) -> pd.DataFrame:
    """``estimate_long_term`` (attendance rate) with two-year differences (``8437aaf``).

    A copy of the reverted third freeze's loop over cohorts and groups, on purpose: the
    pilot reruns that design as it was, beside the package's.
    """
    config = prepared.config
    attrs = prepared.attributes
    units, pairs = prepared.units, prepared.matching.pairs
    annual = panel_of(prepared.panel, units).rename(columns={"y": "outcome"})
    annual = annual.loc[annual["rel_time"].isin((-1, *YEARS))]
    rows = []
    for cohort in sorted(attrs["cohort"].dropna().unique()):
        in_cohort = attrs.loc[attrs["cohort"] == cohort]
        cohort_year = int(in_cohort["stack"].min()) // 10
        groups = [(GROUP_ALL, in_cohort[["stack", "student"]])]
        groups += [
            (label, treated)
            for label, treated in group_definitions(in_cohort, ["grade_band"])
            if label != GROUP_ALL
        ]
        for label, treated in groups:
            weights = subgroup_weights(units, pairs, treated)
            for years_after, two_years in long_differences(annual):
                try:
                    res = fit_group(
                        prepared,
                        two_years,
                        weights,
                        outcome="outcome",
                        window=None,
                        reference=-1,
                        adjust=config.long_term.regression_adjustment,
                        estimator=linearmodels_event_study,
                    )
                except (ValueError, np.linalg.LinAlgError):
                    res = None
                if res is None:
                    continue
                tab = long_term_table(res, cohort_year=cohort_year, alpha=config.analysis.alpha)
                tab = tab.loc[tab["years_after"] == years_after]
                rows.append(tab.assign(group=label, cohort=cohort, outcome="attendance_rate"))
    return pd.concat(rows, ignore_index=True)


def ipw_did(prepared, panel_of=long_term_panel) -> pd.DataFrame:
    """All-students cells of an inverse-probability-weighted difference-in-differences.

    For a unit observed in the reference year, ``delta`` is each month's rate minus the
    unit's day-weighted reference-year rate; in each stack and month, the visited students'
    mean ``delta`` minus the comparisons' (weighted by unit weight x day share x the
    censoring weight, if any); a school year's estimate is the mean of those differences
    over the visited students' months (day-weighted). No regression adjustment, no errors:
    only its censored-minus-uncensored difference is read.
    """
    attrs = prepared.attributes
    units, pairs = prepared.units, prepared.matching.pairs
    rows = panel_of(prepared.panel, units)
    if "censoring_weight" not in rows:
        rows = rows.assign(censoring_weight=1.0)
    out = []
    for cohort in sorted(attrs["cohort"].dropna().unique()):
        in_cohort = attrs.loc[attrs["cohort"] == cohort]
        cohort_year = int(in_cohort["stack"].min()) // 10
        weights = subgroup_weights(units, pairs, in_cohort[["stack", "student"]])
        w = weights[rows["unit"].to_numpy()]
        sub = rows.loc[w > 0].assign(w=w[w > 0] * rows.loc[w > 0, "day_share"].to_numpy())
        ref = sub.loc[sub["rel_time"] == -1]
        ref_mean = (ref["y"] * ref["day_share"]).groupby(ref["unit"]).sum() / ref.groupby("unit")[
            "day_share"
        ].sum()
        for r in YEARS:
            yr = sub.loc[sub["rel_time"] == r]
            yr = yr.loc[yr["unit"].isin(ref_mean.index)]
            delta = yr["y"].to_numpy() - ref_mean.reindex(yr["unit"]).to_numpy()
            cw = np.where(yr["treated"].to_numpy() == 1, 1.0, yr["censoring_weight"].to_numpy())
            frame = pd.DataFrame(
                {
                    "cell": yr["stack"].to_numpy() * 1000 + yr["time"].to_numpy(),
                    "treated": yr["treated"].to_numpy(),
                    "wd": yr["w"].to_numpy() * delta * cw,
                    "ww": yr["w"].to_numpy() * cw,
                }
            )
            g = frame.groupby(["cell", "treated"])[["wd", "ww"]].sum().unstack("treated")
            g = g.dropna()
            diff = g[("wd", 1)] / g[("ww", 1)] - g[("wd", 0)] / g[("ww", 0)]
            est = float(np.average(diff, weights=g[("ww", 1)]))
            out.append(
                {
                    "group": GROUP_ALL,
                    "cohort": cohort,
                    "school_year": str(cohort_year + r),
                    "years_after": r,
                    "estimate": est,
                    "outcome": "attendance_rate",
                }
            )
    return pd.DataFrame(out)


def _uncensored(prepared):
    """The same matched sample as if no comparison were ever visited (nothing censored)."""
    panel = prepared.panel
    return dataclasses.replace(
        prepared, panel=dataclasses.replace(panel, events=panel.events.iloc[0:0])
    )


def _split(how: str) -> tuple[str, str]:
    """The estimator and the comparisons' treatment of a variant.

    ``ipwdid_ipcw_m`` -> (``ipwdid``, ``ipcw_m``); the design's fit is ``design``, and a
    bare estimator's name is censored.
    """
    for estimator in ("diff2", "ipwdid"):
        if how == estimator:
            return estimator, "censored"
        if how.startswith(estimator + "_"):
            return estimator, how[len(estimator) + 1 :]
    return "design", how


def _fit(prepared, how):
    """The long-term cells of one variant (``how``, see :data:`HOWS`)."""
    estimator, treatment = _split(how)
    if treatment == "uncensored":
        prepared = _uncensored(prepared)
    panel_of = _ipcw_panel(prepared, HAZARDS[treatment]) if treatment in HAZARDS else None
    if estimator == "ipwdid":
        return ipw_did(prepared, panel_of or long_term_panel)
    if estimator == "diff2":
        return estimate_diff2(prepared, panel_of or long_term_panel)
    if panel_of is None:
        return estimate_long_term(prepared)
    with _patched(lt_analysis, long_term_panel=panel_of):
        return estimate_long_term(prepared)


def replication(family: str, seed: int, fraction: float, hows=HOWS) -> pd.DataFrame:
    """Every long-term cell of years 0 and 1 of one replication, fitted each way (``how``)."""
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-ltp-") as tmp:
        added = family not in fam.FAMILIES
        fam.FAMILIES.setdefault(family, PILOT_FAMILIES[family])
        try:
            truth, prepared = fam.simulate_family(family, seed, fraction, Path(tmp))
        finally:
            if added:
                del fam.FAMILIES[family]
        true = {
            (t["group"], t["cohort"], int(t["years_after"])): t["att"]
            for t in truth["long_term"]
            if t["outcome"] == "attendance_rate"
        }
        frames = []
        for how in hows:
            tab = _fit(prepared, how)
            tab = tab.loc[tab["years_after"].isin(YEARS)].copy()
            tab["truth"] = [
                true.get((g, c, int(y)))
                for g, c, y in zip(tab["group"], tab["cohort"], tab["years_after"], strict=True)
            ]
            frames.append(tab.assign(how=how))
    out = pd.concat(frames, ignore_index=True)
    return out.assign(family=family, seed=seed)


ESTIMATORS = {
    "one fit over every school year (the design)": (
        "",
        ("censored", "ipcw", "ipcw_x", "ipcw_c", "ipcw_m", "ipcw_e"),
    ),
    "two-year differences (third freeze)": (
        "diff2_",
        ("diff2", "diff2_ipcw", "diff2_ipcw_x", "diff2_ipcw_c"),
    ),
    "inverse-probability-weighted DiD, no adjustment": (
        "ipwdid_",
        (
            "ipwdid",
            "ipwdid_ipcw",
            "ipwdid_ipcw_c",
            "ipwdid_ipcw_m",
            "ipwdid_ipcw_d",
            "ipwdid_ipcw_b",
            "ipwdid_ipcw_e",
            "ipwdid_ipcw_me",
        ),
    ),
}
"""Each estimator's uncensored fit (prefix + ``uncensored``) and its censored variants."""


def summarise(out: Path) -> str:
    """Markdown: per family and cell, each censored variant minus its uncensored fit.

    All visited students, attendance rate; mean over the replications with its standard
    error (paired: the same replication's two fits) and the number of replications.
    """
    files = sorted((out / "draws").rglob("*.csv"))
    keys = ["family", "seed", "how", "group", "cohort", "years_after", "outcome"]
    d = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    d = d.drop_duplicates(keys)
    d = d.loc[(d["group"] == GROUP_ALL) & (d["outcome"] == "attendance_rate")]
    no_effect = [
        f for f, spec in PILOT_FAMILIES.items() if spec["simulation"].get("effect_multiplier") == 0
    ]
    d = d.loc[d["family"].isin(no_effect)]  # elsewhere the uncensored fit is no benchmark
    wide = d.pivot_table(
        index=["family", "cohort", "years_after", "seed"], columns="how", values="estimate"
    )
    lines = [
        "# Long-term censoring pilot (seeds 6,500,000 up; not held out)",
        "",
        "Censored fit minus the same replication's uncensored fit, all visited students,",
        "annual attendance rate (pp): mean (standard error) [replications]. With no effect the",
        "uncensored fit has no censoring selection, so a good censored fit is near 0.",
        "Made by `validation/pilot/long_term_censoring.py --summary`.",
    ]
    for title, (prefix, variants) in ESTIMATORS.items():
        base = f"{prefix}uncensored"
        present = [v for v in variants if v in wide and base in wide]
        if not present:
            continue
        lines += ["", f"## {title}", ""]
        lines += ["| family | cohort | year | " + " | ".join(present) + " |"]
        lines += ["|---" * (3 + len(present)) + "|"]
        for (family, cohort, year), g in wide.groupby(level=[0, 1, 2]):
            cells = []
            for v in present:
                diff = (g[v] - g[base]).dropna()
                se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
                cells.append(f"{diff.mean():+.2f} ({se:.2f}) [{len(diff)}]")
            lines.append(f"| {family} | {cohort} | {int(year)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the pilot replications not yet on disk (``--summary``: write summary.md)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["no_effect", "lists"])
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--sample-fraction", type=float, default=1.0)
    ap.add_argument("--hows", nargs="+", default=list(HOWS), choices=HOWS)
    ap.add_argument("--out", type=Path, default=Path("validation/results/long-term-pilot"))
    ap.add_argument("--summary", action="store_true", help="only write out/summary.md")
    args = ap.parse_args()
    if args.summary:
        (args.out / "summary.md").write_text(summarise(args.out))
        return
    (args.out / "draws").mkdir(parents=True, exist_ok=True)
    for i in range(args.first, args.first + args.draws):
        for family in args.families:
            seed = pilot_seed(family, i)
            path = args.out / "draws" / f"{family}-{seed}.csv"
            if path.exists():
                continue
            replication(family, seed, args.sample_fraction, args.hows).to_csv(path, index=False)
            print(json.dumps({"family": family, "seed": seed}), flush=True)


if __name__ == "__main__":
    main()
