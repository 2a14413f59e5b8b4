"""What every analytic step shares: the stage log, the tables' columns, the note of a failure.

A step is a plain function of the matched sample (:class:`~leapresearch.analysis.sample.
Prepared`) that returns one tidy table; the columns below are those of the output contract
(README, "Output tables"). A step the data cannot support is published as a one-row
:func:`not_estimable` note instead of a table, never as a number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from leapresearch.config import Config
from leapresearch.estimation.long_term import ESTIMATE_COLUMNS
from leapresearch.estimation.subgroups import GROUP_ALL

Log = Callable[[str], None]
"""Receives one line per finished stage (``print`` on the command line)."""

LONG_TERM_COLUMNS = [
    "group",
    "cohort",
    "school_year",
    "years_after",
    "outcome",
    *ESTIMATE_COLUMNS,
    "adjustment",
]
"""``long_term.csv``; ``adjustment`` as in ``event_study.csv`` (a school year's cell)."""
EVENT_STUDY_COLUMNS = ["group", "rel_time", *ESTIMATE_COLUMNS]
BOOTSTRAP_COLUMNS = ["boot_std_error", "band_lower", "band_upper"]
"""Multiplier-bootstrap standard error and simultaneous band of ``event_study.csv``."""
PROCEDURE_COLUMNS = [
    "procedure_std_error",
    "procedure_ci_lower",
    "procedure_ci_upper",
    "procedure_band_lower",
    "procedure_band_upper",
]
"""Whole-procedure bootstrap of ``event_study.csv`` (headline groups; others empty)."""
EVENT_STUDY_TABLE_COLUMNS = [
    *EVENT_STUDY_COLUMNS,
    "p_value",
    "p_value_adjusted",
    *BOOTSTRAP_COLUMNS,
    "adjustment",
    *PROCEDURE_COLUMNS,
]
"""``event_study.csv``; ``adjustment`` says which slopes adjusted the month's outcome
(:func:`~leapresearch.analysis.fitting.adjustment_kinds`: group, pooled or none)."""


def quiet(_: str) -> None:
    """A stage log that prints nothing (the default of every step)."""
    return None


def with_setting(config: Config, section: str, **update) -> Config:
    """``config`` with the fields ``update`` of one section changed (a specification's switch)."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=update)})


def not_estimable(exc: BaseException) -> pd.DataFrame:
    """The one-row table a step publishes when the data cannot support it (``note``: why)."""
    return pd.DataFrame({"group": [GROUP_ALL], "note": [f"not estimable: {exc}"]})


def try_estimate(
    step: Callable[..., pd.DataFrame], *args, log: Log = quiet, name: str | None = None
) -> pd.DataFrame:
    """``step(*args)``; when the data cannot support it, a note instead of failing.

    A step that cannot be computed (no event-month group with a not-yet-visited comparison)
    yields the one-row :func:`not_estimable` table whose ``note`` gives the reason, and the
    log says so under ``name`` (default: the function's name).
    """
    try:
        return step(*args)
    except (ValueError, np.linalg.LinAlgError) as exc:
        log(f"{name or step.__name__}: not estimable on these data: {exc}")
        return not_estimable(exc)
