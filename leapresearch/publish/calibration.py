"""How each diagnostic behaved in the validation, and which ones the report may read.

``validation/families.py`` ran the frozen design on simulated data-generating families
(``validation/results/families``) and recorded, for every diagnostic of the all-students
group, how often it rejected at the 5% level. Its ``write_summary`` turns that into the
packaged record ``diagnostic_calibration.json`` (:func:`calibration_record`; a re-run
of the validation rewrites it, and ``tests/test_calibration.py`` checks that it equals
what the summary it names gives). Each family plays one role (:func:`family_role`):

- ``design_works``: the design's identifying assumption holds *and* its all-students
  estimate is not significantly biased (``bias_significant`` false in the summary's
  verdict). A diagnostic's rejection rate there is its **size**: every diagnostic's own
  null holds in every family, so a rate far above the nominal level is a test that
  rejects a design that works.
- ``assumption_fails``: parallel trends given the matched attendance fail; the rate is
  the **power** against that failure.
- ``design_biased``: the assumption holds but the design's estimate is biased (poor
  overlap); the rate is the power against that.

**Rule** (:data:`SIZE_BOUND`): a diagnostic is *calibrated* when its rejection rate at
the 5% level is at most 10% (twice the nominal level) in every family where the design
works, at every sample size the validation measured. Only calibrated diagnostics are read
on the front page (headline table, summary); the others are reported in the notebooks
with their measured size.

**Sample sizes.** The record's families ran at one size (a fraction of the demo's). A test
of a design with a small bias rejects more often in a larger sample, so the size measured
on small samples can understate the size at a run's. The record's ``size_checks`` hold
the same rates from held-out runs of the same event-study design at other sizes (some
families only); a diagnostic whose size there exceeds the bound in a family where the
design works (by that run's own verdict) is not calibrated either.

:func:`diagnostic_results` finds the row of each diagnostic in the run's published tables
(``pretrend_tests.csv``, ``falsification.csv``, ``placebo.csv``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CALIBRATION_FILE = Path(__file__).with_name("diagnostic_calibration.json")
"""The packaged record (package data of ``leapresearch.publish``)."""

SIZE_BOUND = 0.10
"""Largest rejection rate at the 5% level, in every family where the design works, of a
diagnostic the front page reads (twice the nominal level)."""

ROLES = ("design_works", "assumption_fails", "design_biased")
"""Roles of a family (see the module docstring)."""

DIAGNOSTIC_SHORT = {
    "pretrend_adjusted_main": "Pre-trend test, adjusted",
    "pretrend_adjusted_far": "Pre-trend test, adjusted",
    "pretrend_unadjusted_main": "Pre-trend test, unadjusted",
    "pretrend_unadjusted_far": "Pre-trend test, unadjusted",
    "falsification_post": "Falsification",
    "placebo_post": "Placebo",
}
"""A short name of each diagnostic (the months it tests follow it)."""

REPORTED_IN = {
    "pretrend": "notebook 03",
    "falsification": "notebook 07",
    "placebo": "notebook 07",
}
"""Where each kind of diagnostic (the first part of its name) is reported in full."""


def reported_in(name: str) -> str:
    """The notebook that reports ``name`` in full (empty if none)."""
    return REPORTED_IN.get(name.partition("_")[0], "")


DIAGNOSTIC_WORDS = {
    "pretrend_adjusted_main": "pre-trend test on adjusted outcomes, months of the matching window",
    "pretrend_adjusted_far": "pre-trend test on adjusted outcomes, months before the "
    "matching window",
    "pretrend_unadjusted_main": "pre-trend test on unadjusted outcomes, months of the "
    "matching window",
    "pretrend_unadjusted_far": "pre-trend test on unadjusted outcomes, months before the "
    "matching window",
    "falsification_post": "falsification (pseudo-events of never-visited students with the "
    "same dip), joint test of the post months",
    "placebo_post": "placebo first visit, joint test of the fake post months",
}
"""Each diagnostic of the validation in words."""

ROLE_WORDS = {
    "design_works": "where the design is right",
    "assumption_fails": "where parallel trends fail",
    "design_biased": "where the design is biased although parallel trends hold",
}


def family_role(assumption: str, bias_significant: bool) -> str:
    """The role of a family from its ``assumption`` and its verdict's ``bias_significant``."""
    if assumption != "holds":
        return "assumption_fails"
    return "design_biased" if bias_significant else "design_works"


def _rates(rows: list[dict], families: list[str]) -> dict:
    """Range of the rejection rates over ``families`` with the largest MC SE (or empty)."""
    got = [r for r in rows if r["family"] in families and r["rejection_rate"] is not None]
    if not got:
        return {"families": [], "min": None, "max": None, "max_mcse": None}
    rates = [float(r["rejection_rate"]) for r in got]
    return {
        "families": [r["family"] for r in got],
        "min": min(rates),
        "max": max(rates),
        "max_mcse": max(float(r["rejection_mcse"]) for r in got),
    }


BIAS_SIGNIFICANT_MCSE = 3
"""A family's all-students bias is significant beyond this many Monte Carlo SEs (at its
worst headline month), as in ``validation/families.py``'s verdict."""


def pooled_summary(summaries: list[dict]) -> dict:
    """One summary of several held-out runs of the same event-study design, draws pooled.

    A single run of 100 draws per family decides a family's role on a noisy verdict: the
    two runs of this design classified ``lists`` and ``hazard_strong`` in opposite ways
    (each a worst month within about 3 Monte Carlo SEs of the rule's edge). Pooling
    measures the same rule on every held-out draw.

    Parameters
    ----------
    summaries : list of dict
        ``summary.json`` of each run (``command``, ``cells``, ``diagnostics``), every one
        of the same families.

    Returns
    -------
    dict
        ``command`` (the runs' commands joined by ``;``), ``verdict`` (per family:
        ``assumption``, ``draws``, the worst all-students headline month of the pooled
        bias and ``bias_significant``, its |bias| beyond :data:`BIAS_SIGNIFICANT_MCSE`
        Monte Carlo SEs) and ``diagnostics`` (per family and diagnostic: draws and
        estimable draws summed, the rejection rate over every estimable draw, its MC SE).

    Notes
    -----
    Run ``k`` has ``n_k`` draws, bias ``b_k`` and MC SE ``s_k`` in a cell; the pooled bias
    is ``sum(n_k b_k) / N`` and its MC SE ``sqrt(sum(n_k^2 s_k^2)) / N`` with
    ``N = sum(n_k)`` (the runs' draws are independent).
    """
    if len(summaries) == 1:
        return summaries[0]
    cells = pd.concat([pd.DataFrame(s["cells"]) for s in summaries], ignore_index=True)
    cells = cells.loc[(cells["estimand"] == "event_study") & (cells["group"] == "all")]
    cells = cells.assign(
        nb=cells["draws"] * cells["bias"], nv=(cells["draws"] * cells["bias_mcse"]) ** 2
    )
    pooled = cells.groupby(["family", "rel_time"], sort=False)[["draws", "nb", "nv"]].sum()
    pooled["bias"] = pooled["nb"] / pooled["draws"]
    pooled["bias_mcse"] = np.sqrt(pooled["nv"]) / pooled["draws"]
    assumption = {v["family"]: v["assumption"] for s in summaries for v in s["verdict"]}
    verdict = []
    for family in dict.fromkeys(v["family"] for v in summaries[0]["verdict"]):
        f = pooled.loc[family]
        worst = f["bias"].abs().idxmax()
        bias, mcse = float(f.loc[worst, "bias"]), float(f.loc[worst, "bias_mcse"])
        verdict.append(
            {
                "family": family,
                "assumption": assumption[family],
                "draws": int(f["draws"].min()),
                "worst_bias_all": bias,
                "its_mcse": mcse,
                "at_month": int(worst),
                "bias_significant": bool(abs(bias) > BIAS_SIGNIFICANT_MCSE * mcse),
            }
        )
    rows = pd.DataFrame([r for s in summaries for r in s["diagnostics"]])
    rows["rejected"] = rows["rejection_rate"].astype(float) * rows["estimable"]
    sums = rows.groupby(["family", "diagnostic"], sort=False)[
        ["draws", "estimable", "rejected"]
    ].sum()
    diagnostics = []
    for (family, name), r in sums.iterrows():
        rate = r["rejected"] / r["estimable"] if r["estimable"] else None
        diagnostics.append(
            {
                "family": family,
                "diagnostic": name,
                "draws": int(r["draws"]),
                "estimable": int(r["estimable"]),
                "rejection_rate": None if rate is None else round(float(rate), 6),
                "rejection_mcse": None
                if rate is None
                else round(float(np.sqrt(rate * (1 - rate) / r["estimable"])), 6),
            }
        )
    return {
        "command": "; ".join(s["command"] for s in summaries),
        "verdict": verdict,
        "diagnostics": diagnostics,
    }


PRETREND_PREFIX = "pretrend_"
"""The first part of the name of every pre-trend test."""


def with_pretrend_run(summary: dict, pretrends: dict) -> dict:
    """``summary`` with its pre-trend tests' rates taken from a later pre-trend-only run.

    ``pretrends`` is the ``summary.json`` of a ``--pretrends-only`` run of
    ``validation/families.py``: a later design that changed the pre-trend tests alone (the
    estimates, hence the families' roles from ``summary``'s verdict, are the same). Its rows
    replace ``summary``'s pre-trend rows for the families of the verdict (a family the verdict
    lacks is left out; a verdict family it did not run keeps no pre-trend rate); the other
    diagnostics keep ``summary``'s rates.
    """
    families = {v["family"] for v in summary["verdict"]}
    new = [
        r
        for r in pretrends["diagnostics"]
        if r["diagnostic"].startswith(PRETREND_PREFIX) and r["family"] in families
    ]
    if not new:
        raise ValueError("the pre-trend run has no pre-trend test of the summary's families")
    kept = [r for r in summary["diagnostics"] if not r["diagnostic"].startswith(PRETREND_PREFIX)]
    command = f"{summary['command']}; pre-trend tests: {pretrends['command']}"
    return {**summary, "command": command, "diagnostics": new + kept}


def calibration_record(
    summary: dict,
    design: dict,
    *,
    source: str,
    design_source: str,
    size_checks: list[dict] | None = None,
    pretrends: tuple[dict, dict, str] | None = None,
    sensitivity: tuple[dict, dict, str] | None = None,
) -> dict:
    """The calibration record of the validation's summary (the packaged JSON's content).

    Parameters
    ----------
    summary : dict
        ``summary.json`` of ``validation/families.py`` (``command``, ``verdict``,
        ``diagnostics``).
    design : dict
        ``design.json`` beside it (the frozen design: commit, families, alpha, sample).
    source, design_source : str
        Paths of the two files, relative to the repository, as recorded.
    size_checks : list of dict, optional
        Records (of this function) of runs of the same event-study design at other sample
        sizes; kept under ``size_checks`` (see the module docstring).
    pretrends : tuple, optional
        ``(summary, design, source)`` of a pre-trend-only run whose rates replace the
        pre-trend tests' (:func:`with_pretrend_run`); recorded as ``pretrend_source`` and
        ``pretrend_design_commit``.
    sensitivity : tuple, optional
        ``(summary, design, source)`` of a ``--sensitivity-only`` run (the Rambachan-Roth
        bounds on the families): recorded under ``sensitivity`` by the families' roles
        (:func:`sensitivity_rates`).

    Returns
    -------
    dict
        ``families`` (assumption, bias_significant, role), for each diagnostic ``size``
        (over the ``design_works`` families), ``power`` (over all the others) and the
        power per role, each ``{families, min, max, max_mcse}`` (rates as shares), and
        ``by_family`` (rate, MC SE, estimable draws); plus the draws per family, sample
        fraction, alpha, the design's commit and the two sources.
    """
    if pretrends is not None:
        summary = with_pretrend_run(summary, pretrends[0])
    roles = {
        v["family"]: family_role(v["assumption"], bool(v["bias_significant"]))
        for v in summary["verdict"]
    }
    families = {
        v["family"]: {
            "assumption": v["assumption"],
            "bias_significant": bool(v["bias_significant"]),
            "role": roles[v["family"]],
        }
        for v in summary["verdict"]
    }
    diagnostics = _diagnostics_by_role(summary["diagnostics"], roles)
    draws = sorted({int(r["draws"]) for r in summary["diagnostics"]})
    return {
        "about": "Rejection rates at the 5% level of each diagnostic in the validation's "
        "data-generating families (leapresearch.publish.calibration); size: families where "
        "the assumption holds and the all-students bias is not significant",
        "source": source,
        "design_source": design_source,
        "command": summary["command"],
        "design_commit": design["commit"],
        "design_dirty": bool(design.get("dirty", False)),
        "alpha": design["alpha"],
        "sample_fraction": design["sample_fraction"],
        "draws_per_family": draws[0] if len(draws) == 1 else draws,
        "families": families,
        "diagnostics": diagnostics,
        **(
            {"pretrend_source": pretrends[2], "pretrend_design_commit": pretrends[1]["commit"]}
            if pretrends is not None
            else {}
        ),
        **({"size_checks": list(size_checks)} if size_checks else {}),
        **(
            {"sensitivity": sensitivity_rates(*sensitivity, roles=roles)}
            if sensitivity is not None
            else {}
        ),
    }


def _diagnostics_by_role(rows_of_summary: list[dict], roles: dict[str, str]) -> dict:
    """Each diagnostic's rates over the families of each role (:func:`calibration_record`)."""
    in_role = {role: [f for f, r in roles.items() if r == role] for role in ROLES}
    diagnostics = {}
    for name in dict.fromkeys(r["diagnostic"] for r in rows_of_summary):
        rows = [r for r in rows_of_summary if r["diagnostic"] == name]
        diagnostics[name] = {
            "words": DIAGNOSTIC_WORDS.get(name, name),
            "size": _rates(rows, in_role["design_works"]),
            "power": _rates(rows, in_role["assumption_fails"] + in_role["design_biased"]),
            **{f"power_{role}": _rates(rows, in_role[role]) for role in ROLES[1:]},
            "by_family": {
                r["family"]: {
                    "rate": r["rejection_rate"],
                    "mcse": r["rejection_mcse"],
                    "estimable": r["estimable"],
                }
                for r in rows
            },
        }
    return diagnostics


SENSITIVITY_SOURCE = "untreated"
"""The bounds' pre-period trend the package uses (``source`` of the sensitivity run)."""


def _span(values: list[float]) -> list[float]:
    return [float(min(values)), float(max(values))]


def sensitivity_rates(summary: dict, design: dict, source: str, *, roles: dict) -> dict:
    """The relative-magnitudes bounds' behaviour in a ``--sensitivity-only`` run, by role.

    For the families of each role (``roles``: family -> role, from the calibration's
    verdict) and each headline month: the range over families of the median breakdown
    value, and for each ``Mbar`` the range of the coverage of the truth; the bounds with
    the package's pre-period (:data:`SENSITIVITY_SOURCE`). Plus the run's draws per
    family, sample fraction, design commit and source.
    """
    cells = [
        c
        for c in summary["cells"]
        if c["source"] == SENSITIVITY_SOURCE
        and c["method"] == "relative_magnitudes"
        and c["family"] in roles
    ]
    if not cells:
        raise ValueError("the sensitivity run has no relative-magnitudes bound of these families")
    by_role = {}
    for role in ROLES:
        mine = [c for c in cells if roles[c["family"]] == role]
        if not mine:
            continue
        months = sorted({int(c["rel_time"]) for c in mine})
        bounds = sorted({float(c["bound"]) for c in mine})
        by_role[role] = {
            "families": sorted({c["family"] for c in mine}),
            "median_breakdown": {
                str(m): _span([c["median_breakdown"] for c in mine if c["rel_time"] == m])
                for m in months
            },
            "coverage": {
                f"{b:g}": _span([c["coverage"] for c in mine if c["bound"] == b]) for b in bounds
            },
        }
    draws = sorted({int(c["draws"]) for c in cells})
    return {
        "source": source,
        "design_commit": design["commit"],
        "sample_fraction": design["sample_fraction"],
        "draws_per_family": draws[0] if len(draws) == 1 else draws,
        "by_role": by_role,
    }


SOURCE_SEPARATOR = " + "
"""Between the paths of a pooled record's ``source`` and ``design_source``."""


def write_calibration(
    summary_path: Path | list[Path],
    root: Path,
    out: Path,
    *,
    size_checks: list[Path] = (),
    pretrends: dict[Path, Path] | None = None,
    sensitivity: Path | None = None,
) -> Path:
    """Write the record of ``summary_path`` (and the ``design.json`` beside it) to ``out``.

    ``root`` is the repository the recorded paths are relative to. Several summaries (runs
    of the same event-study design) are pooled (:func:`pooled_summary`); the record then
    names them all, joined by :data:`SOURCE_SEPARATOR`, and the design of the last.
    ``size_checks``: summaries of runs of that design at other sample sizes, each recorded
    under ``size_checks`` with its own design. ``pretrends``: summary path (one of
    ``summary_path`` or ``size_checks``) -> the summary of the pre-trend-only run that
    replaces its pre-trend tests' rates (:func:`with_pretrend_run`; a pooled record takes
    the one of its last summary). ``sensitivity``: the summary of a ``--sensitivity-only``
    run (:func:`sensitivity_rates`).
    """
    paths = [summary_path] if isinstance(summary_path, (str, Path)) else list(summary_path)
    paths = [Path(p).resolve() for p in paths]
    designs = [p.with_name("design.json") for p in paths]

    def relative(path: Path) -> str:
        return path.relative_to(Path(root).resolve()).as_posix()

    replace = {Path(k).resolve(): Path(v).resolve() for k, v in (pretrends or {}).items()}

    def pretrend_run(path: Path) -> tuple[dict, dict, str] | None:
        run = replace.get(path)
        return None if run is None else _run_with_design(run, relative)

    checks = []
    for path in (Path(p).resolve() for p in size_checks):
        checks.append(
            calibration_record(
                json.loads(path.read_text()),
                json.loads(path.with_name("design.json").read_text()),
                source=relative(path),
                design_source=relative(path.with_name("design.json")),
                pretrends=pretrend_run(path),
            )
        )
    record = calibration_record(
        pooled_summary([json.loads(p.read_text()) for p in paths]),
        json.loads(designs[-1].read_text()),
        source=SOURCE_SEPARATOR.join(relative(p) for p in paths),
        design_source=SOURCE_SEPARATOR.join(relative(p) for p in designs),
        size_checks=checks,
        pretrends=pretrend_run(paths[-1]),
        sensitivity=None if sensitivity is None else _run_with_design(Path(sensitivity), relative),
    )
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    return Path(out)


def _run_with_design(path: Path, relative) -> tuple[dict, dict, str]:
    """``(summary, design, source)`` of a run's ``summary.json`` (``design.json`` beside it)."""
    path = path.resolve()
    design = json.loads(path.with_name("design.json").read_text())
    return json.loads(path.read_text()), design, relative(path)


@dataclass(frozen=True)
class Rates:
    """Rejection rates of one diagnostic over the families of one role."""

    families: tuple[str, ...]
    low: float
    high: float
    mcse: float

    @classmethod
    def of(cls, entry: dict) -> Rates | None:
        """The rates of a record's entry (None when it covers no family)."""
        if not entry["families"]:
            return None
        return cls(tuple(entry["families"]), entry["min"], entry["max"], entry["max_mcse"])

    def percent(self) -> str:
        """``0-7%`` (``53%`` when the range is one value)."""
        lo, hi = f"{100 * self.low:.0f}", f"{100 * self.high:.0f}"
        return f"{lo}%" if lo == hi else f"{lo}-{hi}%"


def size_words(sample_fraction: float) -> str:
    """``the demo's size`` / ``20% of the demo's size`` / ``4 times the demo's size``."""
    if sample_fraction == 1:
        return "the demo's size"
    if sample_fraction > 1:
        return f"{sample_fraction:g} times the demo's size"
    return f"{100 * sample_fraction:.0f}% of the demo's size"


@dataclass(frozen=True)
class SizeCheck:
    """A diagnostic's size in a held-out run of the same design at another sample size."""

    sample_fraction: float
    draws: int | list[int]
    size: Rates | None

    def words(self) -> str:
        """``at the demo's size, 2-16% where the design is right (3 families, 100 draws each)``."""
        if self.size is None:
            return f"not measured at {size_words(self.sample_fraction)}"
        n = len(self.size.families)
        draws = draws_words(self.draws)
        return (
            f"at {size_words(self.sample_fraction)}, {self.size.percent()} where the design is "
            f"right ({n} famil{'y' if n == 1 else 'ies'}, {draws} draws each)"
        )


def _range_words(span: list[float], digits: int = 2) -> str:
    """``0.51-0.59`` (``0.51`` when the two ends print alike)."""
    lo, hi = f"{span[0]:.{digits}f}", f"{span[1]:.{digits}f}"
    return lo if lo == hi else f"{lo}-{hi}"


def draws_words(draws: int | list[int]) -> str:
    """``100`` or, when the families ran different numbers of draws, ``100-150``."""
    return f"{draws}" if isinstance(draws, int) else f"{min(draws)}-{max(draws)}"


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic's measured behaviour (see :func:`load_calibration`)."""

    name: str
    words: str
    size: Rates | None
    power: dict[str, Rates]
    other_sizes: tuple[SizeCheck, ...] = ()
    sample_fraction: float = 1.0
    draws: int | list[int] | None = None
    """Draws its rates rest on per family (its estimable draws; None: the record's)."""

    @property
    def calibrated(self) -> bool:
        """Its size is at most :data:`SIZE_BOUND` wherever the design works.

        In every such family of the record, and of every size check that measured it.
        """
        if self.size is None or self.size.high > SIZE_BOUND:
            return False
        return all(c.size is None or c.size.high <= SIZE_BOUND for c in self.other_sizes)

    def oversized_elsewhere(self) -> list[SizeCheck]:
        """The size checks where its size exceeds :data:`SIZE_BOUND`."""
        return [c for c in self.other_sizes if c.size is not None and c.size.high > SIZE_BOUND]

    def size_summary(self) -> str:
        """Its size at each sample size: ``1-4% at 20% of the demo's size, 2-16% at ...``.

        ``not measured`` when the record's families measured none.
        """
        if self.size is None:
            return "not measured"
        parts = [f"{self.size.percent()} at {size_words(self.sample_fraction)}"]
        parts += [
            f"{c.size.percent()} at {size_words(c.sample_fraction)}"
            for c in self.other_sizes
            if c.size is not None
        ]
        return ", ".join(parts)

    def other_sizes_words(self) -> str:
        """``; at the demo's size 2-16% where the design is right (...)`` or empty."""
        measured = [c for c in self.other_sizes if c.size is not None]
        if not measured:
            return ""
        return "; " + "; ".join(c.words() for c in measured)

    def no_power_against(self, role: str = "assumption_fails") -> bool:
        """It rejected in at most :data:`SIZE_BOUND` of the draws of every ``role`` family."""
        rates = self.power.get(role)
        return rates is not None and rates.high <= SIZE_BOUND

    def measured(self, of: str = "of validation draws", *, roles: tuple[str, ...] = ROLES) -> str:
        """Its measured size and power in words (over the families of ``roles``).

        ``rejected in 0-7% of validation draws where the design is right (5 families),
        1-3% where parallel trends fail (2) and ...``.
        """
        parts = []
        for role, rates in (("design_works", self.size), *self.power.items()):
            if rates is None or role not in roles:
                continue
            n = len(rates.families)
            draws = "" if parts else f" {of}"
            count = f"{n}" if parts else f"{n} famil{'y' if n == 1 else 'ies'}"
            parts.append(f"{rates.percent()}{draws} {ROLE_WORDS[role]} ({count})")
        if not parts:
            return "was not measured in the validation"
        return (
            "rejected in "
            + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
            + self.other_sizes_words()
        )


@dataclass(frozen=True)
class Calibration:
    """The packaged record: every diagnostic's measured behaviour and where it comes from."""

    diagnostics: dict[str, Diagnostic]
    alpha: float
    draws: int | list[int]
    sample_fraction: float
    commit: str
    source: str
    n_families: int
    size_check_sources: tuple[str, ...] = ()
    pretrend_sources: tuple[str, ...] = ()
    pretrend_commit: str = ""
    sensitivity: dict | None = None
    """The bounds' behaviour by role (:func:`sensitivity_rates`), when the record has it."""

    def calibrated(self) -> list[str]:
        """Names of the calibrated diagnostics, in the record's order."""
        return [n for n, d in self.diagnostics.items() if d.calibrated]

    def uncalibrated(self) -> list[str]:
        """Names of the others."""
        return [n for n, d in self.diagnostics.items() if not d.calibrated]

    def _draws(self, diagnostic: Diagnostic | None) -> str:
        """The draws per family of ``diagnostic``'s rates (the record's when not known)."""
        if diagnostic is not None and diagnostic.draws is not None:
            return draws_words(diagnostic.draws)
        return draws_words(self.draws)

    def brief(self, diagnostic: Diagnostic | None = None) -> str:
        """``8 simulated families, 100 draws each at 20% of the demo's size``.

        The draws are ``diagnostic``'s when given (a later run may have measured it alone).
        """
        draws = self._draws(diagnostic)
        return (
            f"{self.n_families} simulated families, {draws} draws each at "
            f"{size_words(self.sample_fraction)}"
        )

    def provenance(self, diagnostic: Diagnostic | None = None) -> str:
        """``8 simulated families, 100 draws each at 20% of the demo's size (...)``.

        The draws are ``diagnostic``'s when given, as in :meth:`brief`.
        """
        draws = self._draws(diagnostic)
        checks = "".join(f" and {source}" for source in self.size_check_sources)
        pretrends = ""
        if self.pretrend_sources:
            pretrends = (
                f"; the pre-trend tests' rates from the design of commit "
                f"{self.pretrend_commit[:7]}: {' and '.join(self.pretrend_sources)}"
            )
        return (
            f"{self.n_families} simulated families, {draws} draws each at "
            f"{size_words(self.sample_fraction)}, the design of commit "
            f"{self.commit[:7]}; {self.source}{checks}{pretrends}"
        )

    def breakdown_words(self, month: int) -> str:
        """What the validation measured of the relative-magnitudes breakdown at ``month``.

        ``In the validation (8 simulated families, 50 draws each at the demo's size) the
        median breakdown at month 9 was 0-0.42 where the design is right and 0.51-0.59 where
        parallel trends fail: ...``; empty when the record has no such run or month. The
        conclusion follows the numbers: a larger breakdown value is called no evidence that
        the design is right when the failing families' medians are not below the others'.
        """
        roles = (self.sensitivity or {}).get("by_role", {})
        works, fails = roles.get("design_works"), roles.get("assumption_fails")
        key = str(int(month))
        if not works or not fails or key not in works["median_breakdown"]:
            return ""
        w, f = works["median_breakdown"][key], fails["median_breakdown"].get(key)
        if f is None:
            return ""
        sens = self.sensitivity
        n_families = sum(len(r["families"]) for r in roles.values())
        text = (
            f"In the validation ({n_families} simulated families, "
            f"{draws_words(sens['draws_per_family'])} draws each at "
            f"{size_words(sens['sample_fraction'])}) the median breakdown at month {key} was "
            f"{_range_words(w)} {ROLE_WORDS['design_works']} ({len(works['families'])} "
            f"families) and {_range_words(f)} {ROLE_WORDS['assumption_fails']} after the visit "
            f"({len(fails['families'])})"
        )
        if f[0] >= w[1]:
            text += (
                ", higher: a large breakdown value is no evidence that the design is right, "
                "only that the estimate is large against the month-to-month changes before "
                "the visit"
            )
        wide = [v for b, v in works["coverage"].items() if float(b) >= 0.5]
        if wide:
            lo, hi = min(v[0] for v in wide), max(v[1] for v in wide)
            cover = _range_words([100 * lo, 100 * hi], digits=0)
            text += (
                f". Where the design is right the intervals with Mbar of 0.5 or more covered "
                f"the true effect in {cover}% of draws"
            )
        return text + "."

    @staticmethod
    def rule() -> str:
        """The calibration rule in words."""
        return (
            f"a diagnostic is read only when its rejection rate at the 5% level was at most "
            f"{100 * SIZE_BOUND:.0f}% in every validation family where the design is right, "
            "at every sample size measured"
        )


def from_record(record: dict) -> Calibration:
    """A :class:`Calibration` of a record (:func:`calibration_record`)."""
    checks = record.get("size_checks", [])
    diagnostics = {}
    for name, d in record["diagnostics"].items():
        power = {role: r for role in ROLES[1:] if (r := Rates.of(d[f"power_{role}"])) is not None}
        other = tuple(
            SizeCheck(
                c["sample_fraction"],
                c["draws_per_family"],
                Rates.of(c["diagnostics"][name]["size"]) if name in c["diagnostics"] else None,
            )
            for c in checks
        )
        counts = sorted({v["estimable"] for v in d.get("by_family", {}).values()})
        draws = counts[0] if len(counts) == 1 else [counts[0], counts[-1]] if counts else None
        diagnostics[name] = Diagnostic(
            name, d["words"], Rates.of(d["size"]), power, other, record["sample_fraction"], draws
        )
    return Calibration(
        diagnostics=diagnostics,
        alpha=record["alpha"],
        draws=record["draws_per_family"],
        sample_fraction=record["sample_fraction"],
        commit=record["design_commit"],
        source=record["source"],
        n_families=len(record["families"]),
        size_check_sources=tuple(c["source"] for c in checks),
        pretrend_sources=tuple(
            r["pretrend_source"] for r in (record, *checks) if "pretrend_source" in r
        ),
        pretrend_commit=record.get("pretrend_design_commit", ""),
        sensitivity=record.get("sensitivity"),
    )


@functools.lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_FILE) -> Calibration:
    """The packaged calibration record (or the one at ``path``)."""
    return from_record(json.loads(Path(path).read_text(encoding="utf-8")))


def pretrend_diagnostic(basis: str, months: str, window_start: int) -> str:
    """The validation's name of a row of ``pretrend_tests.csv``.

    The main window starts at the event-study window's first month (``<=-12..-2`` on the
    adjusted outcome, whose first month bins the earlier ones; ``-12..-2`` unadjusted); any
    other span is the far one (months before the matching window). As
    ``validation/families.py`` names them.
    """
    main = months.startswith("<=") or months.startswith(f"{window_start}..")
    return f"pretrend_{basis}_{'main' if main else 'far'}"


def _window_start(pretrends: pd.DataFrame) -> int | None:
    """The event-study window's first month, read from a main test's ``<=lo..hi`` span."""
    binned = pretrends["months"].astype(str)
    binned = binned[binned.str.startswith("<=")]
    if binned.empty:
        return None
    return int(binned.iloc[0][2:].split("..")[0])


def pretrend_names(pretrends: pd.DataFrame, window_start: int | None = None) -> pd.Series:
    """The validation's name of each row of ``pretrend_tests.csv`` (same index).

    ``window_start`` default: read from the adjusted main test's ``<=lo..hi`` span.
    """
    lo = _window_start(pretrends) if window_start is None else window_start
    names = [
        pretrend_diagnostic(str(b), str(m), lo if lo is not None else 0)
        for b, m in zip(pretrends["basis"], pretrends["months"], strict=True)
    ]
    return pd.Series(names, index=pretrends.index, dtype=object)


RESULT_COLUMNS = ["group", "diagnostic", "months", "statistic", "df", "p_value"]


def diagnostic_results(
    pretrends: pd.DataFrame | None,
    falsification: pd.DataFrame | None = None,
    placebo: pd.DataFrame | None = None,
    *,
    window_start: int | None = None,
) -> pd.DataFrame:
    """Each diagnostic of the run by group: :data:`RESULT_COLUMNS`, named as the validation.

    Pre-trend tests by :func:`pretrend_diagnostic` (``window_start``: the event-study
    window's first month; default read from the adjusted main test's ``<=`` span), the
    falsification's ``post_months`` rows and the placebo's joint test of the fake post
    months. Tables with a ``note`` (not estimated) give no rows.
    """
    rows = []
    if pretrends is not None and len(pretrends) and "basis" in pretrends:
        names = pretrend_names(pretrends, window_start)
        cols = ["group", "months", "statistic", "df", "p_value"]
        for name, r in zip(names, pretrends.reindex(columns=cols).itertuples(), strict=True):
            rows.append((r.group, name, str(r.months), r.statistic, r.df, r.p_value))
    if falsification is not None and "term" in falsification and "note" not in falsification:
        post = falsification.loc[falsification["term"] == "post_months"]
        for r in post.itertuples(index=False):
            rows.append(
                (r.group, "falsification_post", str(r.months), r.statistic, r.df, r.p_value)
            )
    if placebo is not None and "post_wald_p_value" in placebo and "note" not in placebo:
        for group, d in placebo.groupby("group", sort=False):
            post = d.loc[pd.to_numeric(d["rel_time"], errors="coerce") >= 0, "rel_time"]
            months = f"{int(post.min())}..{int(post.max())}" if len(post) else ""
            first = d.iloc[0]
            rows.append(
                (
                    group,
                    "placebo_post",
                    months,
                    first["post_wald_statistic"],
                    first["post_wald_df"],
                    first["post_wald_p_value"],
                )
            )
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    out["p_value"] = pd.to_numeric(out["p_value"], errors="coerce").astype(np.float64)
    return out
