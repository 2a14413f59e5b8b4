"""The small vocabulary the notebooks use to show results.

Notebooks call analytic functions of the package and show their results through
:func:`show` (the published, suppressed table, rounded for print) and :func:`say`
(a generated sentence as Markdown). Nothing here computes an estimate.
"""

from __future__ import annotations

import pandas as pd

from leapresearch.config import Config
from leapresearch.publish import labels, narrative
from leapresearch.publish.labels import family_of
from leapresearch.publish.outputs import publishable
from leapresearch.publish.tables import csv_link, readable, table_html
from leapresearch.session import Session
from leapresearch.session import open_session as _open_session

__all__ = [
    "Session",
    "groups",
    "headline_checks",
    "input_mapping_table",
    "inputs_table",
    "narrative",
    "PublishedTable",
    "open_session",
    "say",
    "show",
    "summary_table",
    "table",
    "warnings_table",
]


def use_svg_figures() -> None:
    """Show figures as SVG in notebooks (text, stable across runs, no base64 blobs)."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "leapresearch"
    matplotlib.rcParams["svg.fonttype"] = "none"
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover - outside Jupyter
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        # a kernel started with MPLBACKEND=Agg (as under the test suite) would show no figure
        shell.run_line_magic("matplotlib", "inline")
    set_matplotlib_formats("svg", metadata={"Date": None})


class PublishedTable(pd.DataFrame):
    """A published table that shows itself in full, in words, rounded once.

    It is an ordinary DataFrame holding the unrounded published values (so sentences and
    plots computed from it agree with the CSV); only its display is formatted, by
    :func:`leapresearch.publish.tables.table_html`: codes in words, no index column,
    suppressed cells as a symbol with a footnote, long tables folded with a link to the CSV.
    """

    _metadata = ["lr_name", "lr_digits"]

    @property
    def _constructor(self):
        return PublishedTable

    def __repr__(self) -> str:
        """The same table as plain text (a terminal, a text diff, nbval): whole, in words."""
        digits = getattr(self, "lr_digits", None)
        frame, suppressed, missing = readable(
            pd.DataFrame(self), digits=1 if digits is None else digits
        )
        notes = [labels.SUPPRESSED_NOTE] if suppressed else []
        if missing:
            notes.append(f"{labels.NOT_AVAILABLE}: not available")
        return "\n".join([frame.to_string(index=False), *notes])

    def _repr_html_(self) -> str:
        name = getattr(self, "lr_name", None)
        digits = getattr(self, "lr_digits", None)
        return table_html(
            pd.DataFrame(self),
            digits=1 if digits is None else digits,
            csv=csv_link(name) if name else None,
        )


def show(table: pd.DataFrame, name: str, config: Config, *, digits: int = 1) -> PublishedTable:
    """The table as published (small cells suppressed), shown in full with words for codes.

    The published table's floats are snapped to 12 significant digits before rounding
    (:func:`leapresearch.publish.outputs.publishable`), so a value on a rounding tie
    prints the same digits on every machine.

    Parameters
    ----------
    table : DataFrame
        A result table.
    name : str
        Its name in the output contract (selects complementary-suppression rules).
    config : Config
        Provides the privacy thresholds.
    digits : int
        Decimals shown (numbers are rounded once, for display; the values are kept).
    """
    out = PublishedTable(publishable(table, name, privacy=config.privacy))
    out.lr_name, out.lr_digits = name, digits
    return out


def groups(table: pd.DataFrame, *families: str) -> pd.DataFrame:
    """The rows of ``table`` whose ``group`` is in one of ``families`` (``"all"``: pooled).

    E.g. ``groups(event_study, "grade_band", "cohort")``: the grade-band and cohort rows
    of the run's event study, in the table's order.
    """
    keep = table["group"].map(family_of).isin(families)
    return table.loc[keep].reset_index(drop=True)


def table(derived: pd.DataFrame, *, digits: int = 1) -> PublishedTable:
    """Show a table derived from published tables (a pivot, a crosswalk) like :func:`show`.

    No suppression is applied here: ``derived`` must be computed from tables that went
    through :func:`show` (so their small cells are already suppressed).
    """
    out = PublishedTable(derived.reset_index(drop=True))
    out.lr_name, out.lr_digits = None, digits
    return out


def open_session(
    vintage: str = "demo",
    *,
    data_dir: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Session:
    """Open the session of a notebook (see :func:`leapresearch.session.open_session`).

    Also switches inline figures to SVG.
    """
    use_svg_figures()
    return _open_session(vintage, data_dir=data_dir, overrides=overrides)


def headline_checks(session: Session) -> dict[str, PublishedTable]:
    """The published tables the headline table reads beside the estimates, by keyword.

    ``pretrends``, ``sensitivity``, ``falsification`` and ``placebo`` for
    :func:`leapresearch.publish.narrative.headline_table`, as the front page passes them
    (:mod:`leapresearch.publish.frontpage`); a diagnostic enters the table only if the
    validation calibrated it (:mod:`leapresearch.publish.calibration`).
    """
    from leapresearch.analysis.identification import (
        estimate_falsification,
        estimate_pretrend_tests,
        estimate_sensitivity,
    )
    from leapresearch.analysis.robustness import estimate_placebo

    steps = {
        "pretrends": ("pretrend_tests", estimate_pretrend_tests),
        "sensitivity": ("sensitivity", estimate_sensitivity),
        "falsification": ("falsification", estimate_falsification),
        "placebo": ("placebo", estimate_placebo),
    }
    return {
        keyword: show(session.result(step), name, session.config)
        for keyword, (name, step) in steps.items()
    }


def say(text: str):
    """Render a generated sentence as Markdown in the notebook."""
    from IPython.display import Markdown

    return Markdown(text)


def inputs_table(session: Session) -> PublishedTable:
    """Each input file with its size and sha256 (the provenance of the numbers below)."""
    rows = [{"table": k, **v} for k, v in session.inputs.items()]
    return PublishedTable(pd.DataFrame(rows)[["table", "file", "bytes", "sha256"]])


def summary_table(session: Session) -> PublishedTable:
    """The validation summary as a two-column table (aggregates only).

    Counts by cohort are left out here: they are shown through suppression elsewhere.
    """
    rows = []
    for key, value in session.data_report["summary"].items():
        if key == "cohorts":
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                rows.append({"item": f"{key}: {k}", "value": v})
        elif isinstance(value, (list, tuple)):
            rows.append({"item": key, "value": ", ".join(map(str, value))})
        else:
            rows.append({"item": key, "value": value})
    return PublishedTable(pd.DataFrame(rows).astype({"value": str}))


def warnings_table(session: Session) -> PublishedTable:
    """Every warning of the data check, as plain text (the same as ``validate`` prints).

    One row per warning: ``file``, ``column``, ``warning`` (what was found), ``handling``
    (kept, excluded, recoded, ignored) and ``rows`` (how many rows it concerns; line
    numbers are left to ``leapresearch validate``). One row saying ``none`` when there is
    no warning.
    """
    rows = [
        {
            "file": w.file,
            "column": w.column or "",
            "warning": w.issue,
            "handling": w.handling,
            "rows": f"{w.n_rows:,}" if w.n_rows else "",
        }
        for w in session.data_report["warnings"]
    ]
    if not rows:
        rows = [{"file": "", "column": "", "warning": "none", "handling": "", "rows": ""}]
    return PublishedTable(pd.DataFrame(rows))


def input_mapping_table(session: Session) -> PublishedTable:
    """The input mapping of the vintage (``input:``) and how many values it changed.

    One row per table and step: the file read, each column rename, each column's value
    recodes (with the codes), date formats, and the counts of values trimmed, read as
    missing (null tokens), recoded and re-written as dates. One row saying ``none`` when
    the vintage has no mapping and nothing was changed.
    """
    mapping = session.data_report["input_mapping"]
    spec, changed = mapping["spec"], mapping["changed"]
    rows = []
    for table, t in spec.items():
        if not isinstance(t, dict):
            continue
        if t.get("file"):
            rows.append({"table": table, "column": "", "step": "file", "detail": t["file"]})
        for old, new in t.get("rename", {}).items():
            rows.append({"table": table, "column": new, "step": "rename", "detail": old})
        for col, codes in t.get("recode", {}).items():
            detail = ", ".join(f"{k} -> {v}" for k, v in codes.items())
            rows.append({"table": table, "column": col, "step": "recode", "detail": detail})
        for col, fmt in t.get("date_format", {}).items():
            rows.append({"table": table, "column": col, "step": "date format", "detail": fmt})
        for col, counts in changed.get(table, {}).items():
            detail = ", ".join(f"{k}: {v:,} values" for k, v in counts.items())
            rows.append({"table": table, "column": col, "step": "changed", "detail": detail})
    if spec.get("trim"):
        rows.insert(0, {"table": "all", "column": "", "step": "trim", "detail": "whitespace"})
    tokens = ", ".join(spec.get("null_tokens") or [])
    if tokens:
        rows.insert(0, {"table": "all", "column": "", "step": "null tokens", "detail": tokens})
    if not rows:
        rows = [{"table": "", "column": "", "step": "none", "detail": "no input mapping"}]
    return PublishedTable(pd.DataFrame(rows))
