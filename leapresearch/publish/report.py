"""Figures, executed notebooks and the HTML report of a run."""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from leapresearch.config import Config
from leapresearch.paths import NOTEBOOKS
from leapresearch.publish import plots
from leapresearch.publish.frontpage import front_page, write_front_page
from leapresearch.publish.outputs import git_state, project_relative, publishable, write_figure
from leapresearch.publish.pdf import PDFError, write_pdf

Log = Callable[[str], None]


class ReportError(ValueError):
    """The report could not be finished (e.g. Typst could not typeset the PDF)."""


EXHIBITS: tuple[tuple[str, str, str], ...] = (
    ("Data and attendance by school year", "01_data_and_validation", "provenance.json"),
    ("Matching summary", "02_comparison_group_and_balance", "tables/matching_summary.csv"),
    ("Balance table", "02_comparison_group_and_balance", "tables/balance.csv"),
    ("Love plot (signed)", "02_comparison_group_and_balance", "figures/love_plot.png"),
    ("Event study, all visited students", "03_event_study", "tables/event_study.csv"),
    ("Event-study figure, all", "03_event_study", "figures/event_study_all.png"),
    ("Pre-trend tests", "03_event_study", "tables/pretrend_tests.csv"),
    (
        "Event-study figure, grade bands",
        "04_grade_bands_and_cohorts",
        "figures/event_study_grade_bands.png",
    ),
    (
        "Event-study figure, cohorts",
        "04_grade_bands_and_cohorts",
        "figures/event_study_cohorts.png",
    ),  # noqa: E501
    ("Grade bands and cohorts", "04_grade_bands_and_cohorts", "tables/event_study.csv"),
    ("Other subgroups", "05_subgroups", "tables/event_study.csv"),
    ("Subgroup forest plot", "05_subgroups", "figures/forest_subgroups.png"),
    ("Subgroup tests (equality, PK-5 vs 6-12)", "05_subgroups", "tables/subgroup_tests.csv"),
    ("Forest plots by family, districts shrunken", "05_subgroups", "figures/forest_families.png"),
    ("Long-term effects", "06_long_term_effects", "tables/long_term.csv"),
    ("Long-term figure", "06_long_term_effects", "figures/long_term.png"),
    ("Naive before/after", "07_robustness", "tables/naive_pre_post.csv"),
    ("Callaway-Sant'Anna estimator", "07_robustness", "tables/robust_estimator.csv"),
    ("Naive, matched and robust compared", "07_robustness", "figures/designs_compared.png"),
    ("Placebo", "07_robustness", "tables/placebo.csv"),
    ("Pre-trends the design did not fit", "03_event_study", "tables/pretrend_event_study.csv"),
    ("The headline refitted by linearmodels", "03_event_study", "tables/linearmodels_check.csv"),
    ("Sensitivity bounds (Rambachan-Roth)", "03_event_study", "tables/sensitivity.csv"),
    ("Sensitivity figure", "03_event_study", "figures/sensitivity_all.png"),
    ("Falsification (never-visited dips)", "07_robustness", "tables/falsification.csv"),
    ("Specifications", "07_robustness", "tables/specifications.csv"),
    ("Specification figure", "07_robustness", "figures/specifications_all.png"),
    ("Headline estimates", "08_summary", "report/report.pdf"),
)
"""(exhibit, notebook that makes and explains it, file in the run folder)."""


def notebook_paths(folder: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def _stamp(config: Config) -> str:
    commit = git_state().get("commit") or "no-git"
    return f"leapresearch | vintage {config.vintage} | commit {commit[:10]}"


def _save(fig, name: str, out_dir: Path, stamp: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = write_figure(fig, name, out_dir, stamp=stamp)
    plt.close(fig)
    return paths


def _event_study_figures(es, out_dir: Path, config: Config, stamp: str) -> list[Path]:
    import matplotlib.pyplot as plt

    ref = config.analysis.reference
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    plots.plot_event_study(plots.tidy_event_study(es, groups=("all",), reference=ref), ax=ax)
    paths = _save(fig, "event_study_all", out_dir, stamp)
    panels = (("event_study_grade_bands", "grade_band"), ("event_study_cohorts", "cohort"))
    for name, family in panels:
        tidy = plots.tidy_event_study_family(es, family, reference=ref)
        if len(tidy):
            paths += _save(plots.plot_event_study_panels(tidy), name, out_dir, stamp)
    return paths


def write_figures(evaluation, out_dir: Path, config: Config) -> list[Path]:
    """Every figure of the report, from the published tables (tidy step, then draw).

    Event study (all; grade bands and cohorts as small multiples), subgroup forest plots
    (all families; one panel per family with empirical-Bayes shrunken districts),
    long-term effects, the three designs in one panel and the signed Love plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamp = _stamp(config)
    t = {k: publishable(v, k, privacy=config.privacy) for k, v in evaluation.tables.items()}
    es = t["event_study"]
    paths = _event_study_figures(es, out_dir, config, stamp)
    forest = plots.tidy_forest(
        es, rel_time=config.analysis.report_rel_times[-1], families=config.subgroups
    )
    fig, ax = plt.subplots(figsize=(7.5, 0.2 * len(forest) + 1.4), layout="constrained")
    plots.plot_forest(forest, ax=ax)
    paths += _save(fig, "forest_subgroups", out_dir, stamp)
    lt = plots.tidy_long_term(t["long_term"]) if "long_term" in t else None
    outcomes = [] if lt is None else list(dict.fromkeys(lt["outcome"]))
    if outcomes:  # data too few for any long-term fit: no figure
        fig, axes = plt.subplots(1, len(outcomes), figsize=(5 * len(outcomes), 3.8),
                                 layout="constrained", squeeze=False)  # fmt: skip
        for ax, outcome in zip(axes[0], outcomes, strict=True):
            plots.plot_long_term(lt, ax=ax, outcome=outcome)
        paths += _save(fig, "long_term", out_dir, stamp)
    if "naive_pre_post" in t:
        designs = plots.tidy_designs(t["naive_pre_post"], es, t.get("robust_estimator"))
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
        plots.plot_designs(designs, ax=ax)
        paths += _save(fig, "designs_compared", out_dir, stamp)
    fig, ax = plt.subplots(figsize=(7.5, 10), layout="constrained")
    plots.plot_love(plots.tidy_love_plot(t["balance"]), ax=ax)
    paths += _save(fig, "love_plot", out_dir, stamp)
    paths += write_identification_figures(t, out_dir, config, stamp=stamp)
    return paths


def write_identification_figures(
    tables: dict, out_dir: Path, config: Config, *, stamp: str
) -> list[Path]:
    """Sensitivity bounds and specifications of ``all``, and the forest plots by family.

    All at the last headline month. ``tables`` are the run's tables after suppression
    (:func:`publishable`).
    """
    import matplotlib.pyplot as plt

    month = max(config.analysis.report_rel_times)
    paths: list[Path] = []
    if "sensitivity" in tables:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True, layout="constrained")
        tidy = plots.tidy_sensitivity(tables["sensitivity"], rel_time=month)
        plots.plot_sensitivity(tidy, axes=axes, title=f"All visited students, month {month}")
        paths += _save(fig, "sensitivity_all", out_dir, stamp)
    if "specifications" in tables:
        tidy = plots.tidy_specifications(tables["specifications"], rel_time=month)
        fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(tidy), 4) + 1), layout="constrained")
        plots.plot_specifications(tidy, ax=ax, title=f"All visited students, month {month}")
        paths += _save(fig, "specifications_all", out_dir, stamp)
    families = [f for f in config.subgroups if f not in ("grade_band", "cohort")]
    es = tables["event_study"]
    if plots.tidy_forest_families(es, families=families, rel_time=month):
        fig = plots.forest_figure(es, families=families, rel_time=month)
        paths += _save(fig, "forest_families", out_dir, stamp)
    return paths


QUIET_KERNEL = ("--IPKernelApp.log_level=CRITICAL",)
"""Arguments of every notebook kernel: its own log stays quiet on a run that succeeds.

The kernel logs a warning that it talks over TCP on the loopback (papermill's default
transport) and an error for the interrupt it receives when papermill shuts it down; neither
is a problem of the run, and a failing cell still fails the run (papermill raises)."""


def execute_notebooks(
    out_dir: Path,
    config: Config,
    *,
    vintage: str,
    overrides: Sequence[str] = (),
    notebooks: Sequence[Path] | None = None,
    log: Log = print,
    workers: int = 1,
) -> list[Path]:
    """Execute every notebook with papermill into ``out_dir/notebooks``.

    Parameters injected: ``vintage`` (name or parameter-file path), ``data_dir`` (the
    run's data folder, relative to the project root when inside it, so no machine path
    is recorded; :func:`leapresearch.session.open_session` resolves it against the
    project root) and ``overrides``. papermill records them in the executed
    notebook's metadata and in an ``injected-parameters`` cell. With ``workers = 2`` two
    notebooks run at a time (each in its own kernel; the notebooks are independent and
    read the run's cache), and the log lists them in their order when all are done.
    """
    import papermill as pm

    # papermill's ``cwd`` changes the working directory of the whole process while it starts
    # a kernel, and two notebooks at a time interleave those changes (a kernel then started
    # in the caller's folder); each kernel gets its folder from nbclient's resources
    # instead, which start it there without a change of this process's directory. Every
    # path here is absolute and the caller's working directory is put back afterwards
    folder = Path(out_dir).resolve() / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [Path(nb).resolve() for nb in (notebooks or notebook_paths())]
    parameters = {
        "vintage": str(vintage),
        "data_dir": project_relative(config.data_path),
        "overrides": list(overrides),
    }

    def execute(nb: Path) -> float:
        t0 = time.perf_counter()
        pm.execute_notebook(
            str(nb),
            str(folder / nb.name),
            parameters=parameters,
            resources={"metadata": {"path": str(nb.parent)}},  # the kernel's folder
            progress_bar=workers < 2,
            kernel_name="python3",
            extra_arguments=list(QUIET_KERNEL),
        )
        if workers >= 2:  # close the event loop nbclient left in this thread
            with contextlib.suppress(RuntimeError):
                asyncio.get_event_loop_policy().get_event_loop().close()
        return time.perf_counter() - t0

    if workers < 2:
        seconds = []
        for nb in paths:
            log(f"notebook: {nb.stem}")
            seconds.append(execute(nb))
    else:
        log(f"notebooks: {len(paths)}, {min(workers, 2)} at a time")
        here = os.getcwd()
        try:
            with ThreadPoolExecutor(max_workers=min(workers, 2)) as pool:
                seconds = list(pool.map(execute, paths))  # re-raises the first failure
        finally:
            os.chdir(here)
        for nb, sec in zip(paths, seconds, strict=True):
            log(f"notebook: {nb.stem} ({sec:.0f} s)")
    return [folder / nb.name for nb in paths]


NOTEBOOK_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style>{{ resources.leap_css }}</style>{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.leap_nav }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.leap_nav }}{{ super() }}{% endblock body_footer %}
"""
"""nbconvert's lab template without any script (no require.js, MathJax or mermaid from a
CDN), with the report's style and a navigation bar at the top and bottom."""

_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$")


def tex_to_mathml(markdown: str) -> str:
    """Replace ``$$...$$`` and ``$...$`` in Markdown by MathML (rendered by any browser).

    Equations are converted once, at build time (``latex2mathml``), so the pages need no
    script and no network to show them.
    """
    from latex2mathml.converter import convert

    def block(m: re.Match) -> str:
        return "\n\n" + convert(m.group(1).strip(), display="block") + "\n\n"

    out = _DISPLAY.sub(block, markdown)
    return _INLINE.sub(lambda m: convert(m.group(1).strip()), out)


def notebook_title(nb) -> str:
    """The first Markdown heading of a notebook (``01 · Data and validation``)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return "Notebook page"


def _nav(stems: Sequence[str], titles: Sequence[str], i: int) -> str:
    links = ['<a href="index.html">Report: front page</a>']
    if i > 0:
        links.append(f'<a href="{stems[i - 1]}.html">Previous: {html.escape(titles[i - 1])}</a>')
    if i + 1 < len(stems):
        links.append(f'<a href="{stems[i + 1]}.html">Next: {html.escape(titles[i + 1])}</a>')
    return f'<nav class="lr-nav">{"".join(links)}</nav>'


def render_html(notebooks: Sequence[Path], out_dir: Path, *, title: str = "") -> list[Path]:
    """Render executed notebooks to standalone HTML (``report/<name>.html``), code hidden.

    Each page is titled after its first heading, links to the front page and to its
    neighbours, shows equations as MathML and loads no script.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    from leapresearch.publish.frontpage import CSS

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"leap.html.j2": NOTEBOOK_TEMPLATE})],
        template_file="leap.html.j2",
    )
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    folder = Path(out_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    nbs = [nbformat.read(nb, as_version=4) for nb in notebooks]
    stems = [Path(nb).stem for nb in notebooks]
    titles = [notebook_title(nb) for nb in nbs]
    paths = []
    for i, nb in enumerate(nbs):
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = tex_to_mathml(cell.source)
        nb.metadata["title"] = f"{titles[i]} · {title}" if title else titles[i]
        resources = {"leap_css": CSS, "leap_nav": _nav(stems, titles, i)}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        path = folder / f"{stems[i]}.html"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def _read_notebook(path: Path):
    """The notebook at ``path`` (nbformat 4), imported only when a run has notebooks.

    nbformat imports jsonschema, whose format checks take about two seconds to import;
    a run without notebooks (``--no-notebooks``, ``--tables-only``) does not pay them.
    """
    import nbformat

    return nbformat.read(path, as_version=4)


def write_index(
    evaluation, out_dir: Path, config: Config, pages: Sequence[Path], *, simulated: bool = False
) -> Path:
    """``report/index.html``: the front page (see :mod:`leapresearch.publish.frontpage`)."""
    tables = {k: publishable(v, k, privacy=config.privacy) for k, v in evaluation.tables.items()}
    titles = {}
    for p in pages:
        nb = Path(out_dir) / "notebooks" / f"{Path(p).stem}.ipynb"
        titles[Path(p).stem] = notebook_title(_read_notebook(nb)) if nb.exists() else Path(p).stem
    figures = {p.stem for p in (Path(out_dir) / "figures").glob("*.png")}
    doc = front_page(
        tables,
        config,
        simulated=simulated,
        exhibits=EXHIBITS,
        pages=titles,
        stamp=_stamp(config),
        figures=figures,
        cluster=getattr(evaluation, "cluster", None),
    )
    return write_front_page(doc, out_dir)


def report_writer(
    *, vintage: str, overrides: Sequence[str] = (), notebooks: bool = True, workers: int = 1
):
    """The ``write_outputs`` hook of :func:`leapresearch.pipeline.run_report`.

    ``workers = 2`` executes two notebooks at a time (:func:`execute_notebooks`).
    """

    def write(evaluation, out_dir: Path, config: Config, log: Log) -> None:
        write_figures(evaluation, out_dir, config)
        log("figures: written")
        pages: list[Path] = []
        executed: list[Path] = []
        if notebooks:
            executed = execute_notebooks(
                out_dir, config, vintage=vintage, overrides=overrides, log=log, workers=workers
            )
            pages = render_html(executed, out_dir, title=config.report.title)
        simulated = bool(getattr(evaluation, "simulated", False))
        index = write_index(evaluation, out_dir, config, pages, simulated=simulated)
        log("report: written")
        try:
            pdf = Path(out_dir) / "report" / "report.pdf"
            write_pdf(
                index,
                executed,
                pdf,
                footer=_stamp(config),
                title=config.report.title,
                paper=config.report.paper,
            )
        except PDFError as exc:
            raise ReportError(str(exc)) from None
        log("report.pdf: written")

    return write
