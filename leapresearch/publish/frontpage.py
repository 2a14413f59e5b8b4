"""The report's front page (``report/index.html``) and the style shared by every page.

Everything on the page is generated: the title block from the vintage file's ``report``
section, the synthetic-data banner from the run's simulated-inputs flag (the simulator's
marker, never guessed), the summary, methods and limitations from the numbers and
parameters (:mod:`leapresearch.publish.narrative`), tables from the published tables
(:mod:`leapresearch.publish.tables`; the crosswalk to the published figures is notebook
08's, :func:`leapresearch.publish.narrative.crosswalk`). The page loads nothing from the
network.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from leapresearch.config import Config
from leapresearch.publish import labels, narrative
from leapresearch.publish.tables import (
    CONDITIONAL_WORDS,
    INTERVAL_MARK,
    headline_html,
    headline_table,
)

CSS = """
:root{--ink:#1b1b1b;--muted:#555;--rule:#d0d0d0;--accent:#0072B2;--warn:#fff4d6;}
body.lr-page{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--ink);
 max-width:62em;margin:1.5em auto;padding:0 1.2em;line-height:1.45;font-size:15px}
.lr-page h1{font-size:1.7em;margin:.2em 0}.lr-page h2{font-size:1.25em;margin-top:1.6em;
 border-bottom:1px solid var(--rule);padding-bottom:.15em}
.lr-subtitle{color:var(--muted);margin:.2em 0 1em}
.lr-banner{background:var(--warn);border:2px solid #E69F00;padding:.6em .9em;margin:1em 0;
 font-weight:600}
.lr-box{border:1px solid var(--rule);background:#f7f9fb;padding:.4em 1em;margin:1em 0}
.lr-table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
.lr-table th,.lr-table td{padding:3px 8px;border-bottom:1px solid #e6e6e6;text-align:right;
 vertical-align:top}
.lr-table th:first-child,.lr-table td:first-child,.lr-table .lr-text,
.lr-exhibits td,.lr-exhibits th{text-align:left!important}
.lr-nav,.lr-nav a{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif}
.lr-table thead th{border-bottom:2px solid #999;background:#f3f3f3}
.lr-ci{color:var(--muted);font-size:.85em;white-space:nowrap}
.lr-note{font-size:.82em;color:var(--muted);margin:.2em 0 1em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:var(--muted)}
.lr-nav{display:flex;gap:1.2em;flex-wrap:wrap;font-size:.9em;border-bottom:1px solid var(--rule);
 padding:.5em 0;margin-bottom:1em}.lr-nav a{color:var(--accent)}
details.lr-details>summary{cursor:pointer;color:var(--accent)}
@media print{.lr-nav{display:none}details.lr-details>*{display:block}
 h2{break-after:avoid}figure,tr{break-inside:avoid}}
"""
"""Style of the front page and of the navigation bar of every notebook page."""

SIMULATED_BANNER = (
    "Synthetic data. The inputs of this run were produced by the package's simulator (its "
    "marker file is in the data folder and the run's provenance.json records "
    '"simulated_inputs": true). No number in this report describes real students.'
)


def _esc(text: str) -> str:
    return html.escape(str(text))


def conditional_name(config: Config) -> str:
    """The interval ``ci_lower``, ``ci_upper`` hold (``inference.intervals``), in words."""
    return {"bootstrap": "multiplier-bootstrap"}.get(
        config.inference.intervals, config.inference.intervals
    )


def school_years(config: Config, event_study: pd.DataFrame) -> str:
    """The school years covered: the vintage file's label, else the cohorts found."""
    if config.report.school_years:
        return config.report.school_years
    cohorts = labels.sort_groups(g for g in event_study["group"] if g.startswith("cohort:"))
    years = [c.partition(":")[2] for c in cohorts if not c.startswith("cohort:summer")]
    return f"{years[0]} to {years[-1]}" if years else ""


def title_block(config: Config, event_study: pd.DataFrame, *, simulated: bool) -> str:
    """Title, subtitle (program, school years, authors, date) and the synthetic-data banner."""
    r = config.report
    sub = [r.program]
    years = school_years(config, event_study)
    if years:
        sub.append(f"school years {years}")
    if r.authors:
        sub.append(", ".join(r.authors))
    if r.organisation:
        sub.append(r.organisation)
    if r.date:
        sub.append(r.date.strftime("%-d %B %Y"))
    sub.append(f"vintage {config.vintage}")
    banner = f'<div class="lr-banner" role="alert">{_esc(SIMULATED_BANNER)}</div>'
    draft = (
        f'<div class="lr-banner" role="note">Draft: the title, date, school years and authors '
        f"of vintage {_esc(config.vintage)} have not been reviewed (report.reviewed is false "
        "in its parameter file).</div>"
    )
    return (
        f"<header><h1>{_esc(r.title)}</h1>"
        f'<p class="lr-subtitle">{_esc(" · ".join(sub))}</p></header>'
        + (banner if simulated else "")
        + ("" if r.reviewed else draft)
    )


def crosswalk_html(config: Config, event_study: pd.DataFrame) -> str:
    """The published figures of the vintage file beside this run's estimates.

    The rows are notebook 08's crosswalk (:func:`narrative.crosswalk`), one per published
    figure, in the parameters' order: the published figure (``about`` when it was
    published as approximate), this run's estimate with its 95% interval (``not
    estimated`` when the table has no row for the group and month, the symbol of
    :mod:`labels` when the estimate is suppressed) and what differs in definition.
    """
    published = config.report.published
    if not published:
        return ""
    table = narrative.crosswalk(event_study, published)
    shown = table["estimate"].notna()
    fallback = (table["interval"] == "conditional") & shown
    marked = bool(((table["interval"] == "procedure") & shown).any())
    conditional = _esc(conditional_name(config))
    if not fallback.any():
        note = ""
    elif marked:
        note = (
            f'<p class="lr-note">The intervals are the whole-procedure ones where published; '
            f"{INTERVAL_MARK}: none for this cell, the {conditional} interval, "
            f"{CONDITIONAL_WORDS}.</p>"
        )
    else:
        note = (
            f'<p class="lr-note">The intervals are the {conditional} ones, '
            f"{CONDITIONAL_WORDS}: event_study.csv has no whole-procedure interval for them.</p>"
        )
    estimated = set(zip(event_study["group"], event_study["rel_time"], strict=True))
    rows = []
    for f, r in zip(published, table.itertuples(index=False), strict=True):
        if (r.group, r.rel_time) not in estimated:
            ours = "not estimated"
        else:
            mark = INTERVAL_MARK if marked and r.interval == "conditional" else ""
            ours = (
                f"{labels.fmt(r.estimate, 1, signed=True)} "
                f"({labels.fmt_interval(r.ci_lower, r.ci_upper)}){mark}"
            )
        pub = f"{'about ' if f.approximate else ''}{r.published:+g} pp"
        rows.append(
            f"<tr><td>{_esc(labels.group_label(r.group))}</td><td>{r.rel_time}</td>"
            f"<td>{_esc(pub)}</td><td>{_esc(ours)}</td>"
            f'<td class="lr-text">{_esc(f.difference)}</td></tr>'
        )
    src = _esc(config.report.published_source)
    return (
        f"<h2>Crosswalk to the published figures</h2><p>{src}</p>"
        '<table class="lr-table"><thead><tr><th>Group</th><th>Months after first visit</th>'
        "<th>Published</th><th>This run (95% CI)</th>"
        '<th class="lr-text">What differs in definition</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"
    )


FIGURES: tuple[tuple[str, str], ...] = (
    ("event_study_all", "Effect on the monthly attendance rate by months since the first "
     "visit, all visited students, with 95% confidence band."),
    ("event_study_grade_bands", "The same by grade band (6-12 pools grades 6-8 and 9-12)."),
    ("event_study_cohorts", "The same by cohort, in time order."),
    ("forest_subgroups", "Subgroup estimates at the last headline month with 95% intervals; "
     "the dashed line is the estimate for all visited students."),
    ("long_term", "Effects on annual outcomes of the school year of the first visit and the "
     "years after, by cohort (whose effect, and how many students: notebook 06)."),
    ("designs_compared", "Naive before/after change, the matched comparison and the "
     "Callaway-Sant'Anna estimators (doubly robust, and unconditional) in one panel."),
    ("love_plot", "Covariate balance: signed standardised differences before and after "
     "matching; dotted lines at ±0.1, dashed at ±0.25."),
)  # fmt: skip
"""Figures of the front page (file stem, caption)."""


def figures_html(stamp: str, present: set[str]) -> str:
    """The figures with their captions; the provenance stamp is printed in each caption."""
    out = []
    for stem, caption in FIGURES:
        if stem not in present:
            continue
        out.append(
            f'<figure id="fig-{stem}"><img src="../figures/{stem}.png" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)} <span class='lr-stamp'>[{_esc(stamp)}]</span>"
            "</figcaption></figure>"
        )
    return "<h2>Figures</h2>" + "".join(out)


def exhibit_map_html(exhibits, pages: dict[str, str]) -> str:
    """The exhibit map (also the table of contents of the PDF): exhibit, notebook, file."""
    rows = []
    for i, (exhibit, nb, file) in enumerate(exhibits, start=1):
        title = pages.get(nb, nb)
        link = f'<a href="{nb}.html">{_esc(title)}</a>' if nb in pages else _esc(nb)
        rows.append(
            f"<tr><td>{i}</td><td>{_esc(exhibit)}</td><td>{link}</td>"
            f'<td><a href="../{file}">{_esc(file)}</a></td></tr>'
        )
    return (
        '<h2 id="exhibits">Exhibit map</h2><table class="lr-table lr-exhibits"><thead><tr>'
        "<th>#</th><th>Exhibit</th><th>Notebook (section of this report)</th><th>File</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def front_page(
    tables: dict[str, pd.DataFrame],
    config: Config,
    *,
    simulated: bool,
    exhibits: Sequence[tuple[str, str, str]],
    pages: dict[str, str],
    stamp: str,
    figures: set[str],
    cluster: str | None = None,
) -> str:
    """The whole ``index.html`` (published tables in, HTML out).

    ``cluster``: the level the errors were clustered by (see :func:`narrative.methods_text`).
    """
    es, pre = tables["event_study"], tables.get("pretrend_tests")
    checks = {"falsification": tables.get("falsification"), "placebo": tables.get("placebo")}
    months = config.analysis.report_rel_times
    alpha = config.analysis.alpha
    conditional = conditional_name(config)
    sens = tables.get("sensitivity")
    head = headline_table(
        es, rel_times=months, pretrends=pre, alpha=alpha, sensitivity=sens, **checks
    )
    summary = narrative.summary_paragraph(
        es,
        pre,
        rel_times=months,
        alpha=alpha,
        matching=tables.get("matching_summary"),
        sensitivity=sens,
        conditional=conditional,
        **checks,
    )
    methods_text = narrative.methods_text(config, cluster=cluster)
    methods = "".join(f"<li>{_esc(t)}</li>" for t in methods_text)
    limits = narrative.limitations(
        es, pre, tables.get("matching_summary"), alpha=alpha, simulated=simulated
    )
    nav = "".join(f'<a href="{stem}.html">{_esc(title)}</a>' for stem, title in pages.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(config.report.title)} · {_esc(config.report.program)}</title>
<style>{CSS}</style></head>
<body class="lr-page"><main>
<nav class="lr-nav"><strong>Report</strong>{nav}</nav>
{title_block(config, es, simulated=simulated)}
<h2>Summary</h2><p class="lr-summary">{_esc(summary)}</p>
<h2>The program</h2><p>{_esc(config.report.program_description)}</p>
<div class="lr-box"><h2>Methods in brief</h2><ul>{methods}</ul></div>
<h2>Headline estimates</h2>
{headline_html(head, rel_times=months, alpha=alpha, conditional=conditional)}
{crosswalk_html(config, es)}
{figures_html(stamp, figures)}
<h2>Limitations</h2><ul>{"".join(f"<li>{_esc(t)}</li>" for t in limits)}</ul>
{exhibit_map_html(exhibits, pages)}
<h2>Provenance</h2>
<p><a href="../provenance.json">provenance.json</a> records the command line, commit,
parameters, input checksums, whether the inputs are simulated and the sha256 of every
output file. {_esc(stamp)}.</p>
</main></body></html>
"""


def write_front_page(doc: str, out_dir: Path) -> Path:
    """Write ``report/index.html``."""
    path = Path(out_dir) / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
