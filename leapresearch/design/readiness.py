"""One check of a data folder, shared by ``leapresearch validate`` and ``leapresearch run``.

:func:`check_data` applies, with the parameters of one vintage, everything a run needs
before it starts:

1. the checksum manifest ``checksums.sha256`` when the folder has one
   (:func:`leapresearch.data.intake.manifest_problems`);
2. the raw-data contract, after the vintage's input mapping, with its program start
   (:func:`leapresearch.data.contract.validate_folder`);
3. evaluability: at least one completed visit, at least one visited student in the
   selected cohorts, and at least one visited student with a comparison candidate in
   its matching stratum (event month x ``matching.exact``). Visited students who cannot
   be matched (no roster row in the event year, no pre-period attendance, a stratum with
   no comparison candidate) are warnings, with their count: the run goes on without them.

``validate`` prints the result; ``run`` refuses the folder when it has any violation.
Both call this one function, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from leapresearch.config import Config
from leapresearch.data.contract import ContractError, RawTables, Violation, validate_folder
from leapresearch.data.intake import DataWarning, manifest_problems
from leapresearch.data.panel import AnalyticPanel, build_panel
from leapresearch.design.pool import Candidates, cohort_candidates

__all__ = ["DataCheck", "check_data", "evaluability"]

_EXCLUDED_REASONS = {
    "not_on_roster_in_event_year": "no students row for the school year of the first visit",
    "no_pre_period_attendance": "too few months of attendance before the first visit "
    "(comparison_pool.min_pre_months)",
}


def _students(n: int) -> str:
    return f"{n:,} visited student{'s' if n != 1 else ''} " + ("has" if n == 1 else "have")


@dataclass(frozen=True)
class DataCheck:
    """The outcome of :func:`check_data`.

    Attributes
    ----------
    tables : RawTables or None
        The typed tables when the folder passed the contract (even if it cannot be
        evaluated), else None.
    violations : tuple of Violation
        Everything that stops a run (empty when the folder can be used).
    warnings : tuple of DataWarning
        Everything implausible that a run handles (kept, excluded, recoded, ignored).
    manifest : dict or None
        File -> sha256 from ``checksums.sha256`` (None when the folder has none).
    mapping : dict
        The input mapping applied (``spec``) and what it changed (``changed``).
    built : (AnalyticPanel, Candidates) or None
        The analytic panel and comparison candidates the evaluability check built, when
        the folder can be used (a run reuses them instead of building them again).
    """

    tables: RawTables | None
    violations: tuple[Violation, ...]
    warnings: tuple[DataWarning, ...]
    manifest: dict[str, str] | None = None
    mapping: dict = field(default_factory=dict)
    built: tuple[AnalyticPanel, Candidates] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when a run can use the folder."""
        return not self.violations and self.tables is not None

    def raise_for_violations(self) -> RawTables:
        """The tables, or :class:`ContractError` listing every violation."""
        if not self.ok or self.tables is None:
            raise ContractError(self.violations)
        return self.tables


def _stratum_columns(config: Config) -> list[str]:
    exact = ["stack", *config.matching.exact]
    if config.comparison_pool.allow_other_districts:
        exact = [e for e in exact if e != "district"]
    return exact


def _strata_text(strata: list[str]) -> str:
    return ", ".join("event month" if s == "stack" else s.replace("_", " ") for s in strata)


def _candidate_warnings(frame: pd.DataFrame, excluded: pd.DataFrame, config: Config, file: str):
    """Warnings for visited students who cannot be matched, and whether any can."""
    notes = []
    for reason, n in excluded["reason"].value_counts().sort_index().items():
        what = _EXCLUDED_REASONS.get(str(reason), str(reason).replace("_", " "))
        issue = f"{_students(int(n))} {what} and cannot be matched"
        notes.append(DataWarning(file, None, issue, "excluded"))
    strata = _stratum_columns(config)
    has = frame.groupby(strata, sort=True)["treated"].agg(["sum", "size"])
    empty = has.loc[has["sum"] == has["size"]]
    n_lonely = int(empty["sum"].sum())
    if n_lonely:
        issue = (
            f"{_students(n_lonely)} no comparison candidate in their matching stratum "
            f"({len(empty):,} {'stratum' if len(empty) == 1 else 'strata'} of "
            f"{_strata_text(strata)}) and cannot be matched"
        )
        notes.append(DataWarning(file, None, issue, "excluded"))
    n_matchable = int(frame["treated"].sum()) - n_lonely
    return notes, n_matchable


def evaluability(
    tables: RawTables, config: Config
) -> tuple[list[Violation], list[DataWarning], tuple[AnalyticPanel, Candidates] | None]:
    """Whether valid contract tables can be evaluated with these parameters.

    Parameters
    ----------
    tables : RawTables
        Tables that passed the contract.
    config : Config
        The parameters of the run (cohorts, comparison pool, matching strata).

    Returns
    -------
    violations : list of Violation
        What makes an evaluation impossible, each as a sentence saying what is missing.
    warnings : list of DataWarning
        Visited students the evaluation will leave out, counted by reason.
    built : (AnalyticPanel, Candidates) or None
        The analytic panel and the comparison candidates the check built (None when it
        stopped before them); :func:`leapresearch.analysis.sample.prepare` reuses them.
    """
    file = tables.files["leap_visits"].name
    vis = tables.leap_visits
    n_completed = int((vis["visit_status"] == "completed").sum())
    if n_completed == 0:
        found = "the visit log is empty" if vis.empty else f"all {len(vis):,} rows are attempts"
        rule = (
            f"has no completed visit ({found}): the evaluation needs at least one student "
            "with a completed visit, whose first completed visit sets the event month"
        )
        return [Violation(file, "visit_status", rule)], [], None
    panel = build_panel(tables, chronic_threshold=config.analysis.chronic_threshold)
    events = panel.events
    if config.cohorts is not None:
        events = events.loc[events["cohort"].isin(config.cohorts)]
        if events.empty:
            found = ", ".join(sorted(panel.events["cohort"].astype(str).unique()))
            rule = (
                f"has no visited student in the cohorts of the parameters "
                f"({', '.join(config.cohorts)}); the data hold {found}"
            )
            return [Violation(file, "visit_date", rule)], [], None
    candidates = cohort_candidates(
        panel, pool=config.comparison_pool, matching=config.matching, cohorts=config.cohorts
    )
    built = (panel, candidates)
    notes, n_matchable = _candidate_warnings(
        candidates.frame, candidates.excluded_treated, config, file
    )
    if n_matchable == 0:
        rule = (
            f"no visited student has a comparison candidate: each of the {len(events):,} "
            "visited students needs at least one never-visited student in the same "
            f"matching stratum ({_strata_text(_stratum_columns(config))}) with attendance data "
            "before the event month"
        )
        return [Violation(file, "student_id", rule)], notes, built
    return [], notes, built


def check_data(data_dir: Path, config: Config) -> DataCheck:
    """Check a data folder exactly as ``leapresearch run`` will use it.

    Parameters
    ----------
    data_dir : Path
        The data folder.
    config : Config
        The vintage's parameters: ``program_start``, the ``input`` mapping, the cohorts,
        the comparison pool and the matching strata.

    Returns
    -------
    DataCheck
        Violations (manifest, contract, evaluability) and warnings; never raises on bad
        data.
    """
    data_dir = Path(data_dir)
    manifest, problems = manifest_problems(data_dir) if data_dir.is_dir() else (None, [])
    violations = [Violation(f, None, rule) for f, rule in problems]
    mapping = config.input.mapping()
    tables, contract, notes = validate_folder(
        data_dir, program_start=config.program_start, mapping=mapping
    )
    violations += contract
    warnings = list(notes)
    built = None
    if tables is not None and not violations:
        blocking, more, built = evaluability(tables, config)
        violations += blocking
        warnings += more
    record = {
        "spec": config.as_dict()["input"],
        "changed": {k: dict(v) for k, v in (tables.mapping if tables is not None else {}).items()},
    }
    return DataCheck(
        tables=tables,
        violations=tuple(violations),
        warnings=tuple(warnings),
        manifest=manifest,
        mapping=record,
        built=built if not violations else None,
    )


def data_report(summary: dict, warnings, input_mapping: dict) -> dict:
    """The data check in the form a run stores and notebook 01 shows.

    ``summary`` from :func:`~leapresearch.data.contract.summarise`, ``warnings`` (the
    check's :class:`~leapresearch.data.intake.DataWarning` objects) and the input mapping
    record (``spec`` and ``changed``; :attr:`DataCheck.mapping`).
    """
    return {"summary": summary, "warnings": tuple(warnings), "input_mapping": input_mapping}
