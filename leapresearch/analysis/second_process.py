"""The second process of a run (``--workers 2``): slow steps computed beside the others.

:func:`start_beside` forks a process that computes named results (the run's
:func:`~leapresearch.analysis.runner.refits_beside` names them) while the run computes the
others; :func:`take` collects one with the lines its step logged. The child shares the
matched sample copy-on-write, so nothing large is copied or pickled; the tables are the
same with one process or two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from leapresearch.analysis.base import Log, quiet
from leapresearch.analysis.sample import Prepared
from leapresearch.analysis.specifications import (
    REFIT_SPECS,
    estimate_specifications,
    merge_specification_rows,
)
from leapresearch.threads import Beside, release_memory


def start_beside(work: dict[str, Callable[[Log], pd.DataFrame]], *, enabled: bool) -> Beside | None:
    """Compute every ``work[name](log)`` in a forked process (None unless ``enabled``)."""
    if not enabled:
        return None
    return Beside(lambda: _compute_all(work), enabled=True)


def _compute_all(
    work: dict[str, Callable[[Log], pd.DataFrame]],
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each result of ``work`` with the lines its step logged."""
    out = {}
    for name, run in work.items():
        lines: list[str] = []
        out[name] = (run(lines.append), lines)
        release_memory()  # the re-matched samples of one step are not kept for the next
    return out


def take(refits: Beside, name: str, log: Log) -> pd.DataFrame:
    """Result ``name`` computed by ``refits``, its log lines replayed."""
    table, lines = refits.result()[name]
    for line in lines:
        log(line)
    return table


def specifications_with(
    prepared: Prepared, refits: Beside | None, *, tables=None, log: Log = quiet
) -> pd.DataFrame:
    """:func:`estimate_specifications`, with the rows of ``refits`` computed beside."""
    if refits is None:
        return estimate_specifications(prepared, tables=tables, log=log)
    specs: Sequence[str] = ["main", *prepared.config.identification.specifications]
    here = estimate_specifications(
        prepared, tables=tables, log=log, names=[n for n in specs if n not in REFIT_SPECS]
    )
    return merge_specification_rows(here, take(refits, "specifications", log), specs)
