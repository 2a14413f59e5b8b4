"""Figures, executed notebooks and the HTML report of a run."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

from leapresearch.config import Config
from leapresearch.paths import NOTEBOOKS
from leapresearch.publish.outputs import git_state, publishable, write_figure
from leapresearch.publish.plots import forest_figure, plot_event_study, tidy_event_study

Log = Callable[[str], None]
GRADE_GROUPS = ("grade_band:PK-5", "grade_band:6-8", "grade_band:9-12")

EXHIBITS: tuple[tuple[str, str, str], ...] = (
    ("Matching summary", "02_comparison_group_and_balance", "tables/matching_summary.csv"),
    ("Balance table", "02_comparison_group_and_balance", "tables/balance.csv"),
    ("Love plot", "02_comparison_group_and_balance", "figures/love_plot.png"),
    ("Event study, all visited students", "03_event_study", "tables/event_study.csv"),
    ("Event-study figure, all", "03_event_study", "figures/event_study_all.png"),
    ("Pre-trend tests", "03_event_study", "tables/pretrend_tests.csv"),
    (
        "Event-study figure, grade bands",
        "04_grade_bands_and_cohorts",
        "figures/event_study_grade_bands.png",
    ),
    ("Grade bands and cohorts", "04_grade_bands_and_cohorts", "tables/event_study.csv"),
    ("Other subgroups", "05_subgroups", "tables/event_study.csv"),
    ("Subgroup tests (equality, PK-5 vs 6-12)", "05_subgroups", "tables/subgroup_tests.csv"),
    ("Forest plots of subgroups", "05_subgroups", "figures/forest_subgroups.png"),
    ("Long-term effects", "06_long_term_effects", "tables/long_term.csv"),
    ("Naive before/after", "07_robustness", "tables/naive_pre_post.csv"),
    ("Callaway-Sant'Anna estimator", "07_robustness", "tables/robust_estimator.csv"),
    ("Placebo", "07_robustness", "tables/placebo.csv"),
)
"""(exhibit, notebook that makes and explains it, file in the run folder)."""


def notebook_paths(folder: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def write_figures(evaluation, out_dir: Path, config: Config) -> list[Path]:
    """Event-study plots (all; by grade band), subgroup forest plots and the love plot.

    Every figure is drawn from the published (suppressed) tables.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leapresearch.design.balance import plot_love, tidy_love_plot

    commit = git_state().get("commit") or "no-git"
    stamp = f"leapresearch | vintage {config.vintage} | commit {commit[:10]}"
    es = publishable(evaluation.tables["event_study"], "event_study", privacy=config.privacy)
    paths: list[Path] = []
    for name, groups, title in (
        ("event_study_all", ("all",), "All visited students"),
        ("event_study_grade_bands", GRADE_GROUPS, "By grade band"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4))
        tidy = tidy_event_study(es, groups=groups, reference=config.analysis.reference)
        plot_event_study(tidy, ax=ax, title=title)
        paths += write_figure(fig, name, out_dir, stamp=stamp)
        plt.close(fig)
    families = [f for f in config.subgroups if f not in ("grade_band", "cohort")]
    at = config.analysis.report_rel_times[-1]
    if families and es["group"].str.startswith(tuple(f"{f}:" for f in families)).any():
        fig = forest_figure(es, families=families, rel_time=at)
        paths += write_figure(fig, "forest_subgroups", out_dir, stamp=stamp)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 8))
    plot_love(tidy_love_plot(evaluation.tables["balance"]), ax=ax)
    paths += write_figure(fig, "love_plot", out_dir, stamp=stamp)
    plt.close(fig)
    return paths


def execute_notebooks(
    out_dir: Path,
    config: Config,
    *,
    vintage: str,
    overrides: Sequence[str] = (),
    notebooks: Sequence[Path] | None = None,
    log: Log = print,
) -> list[Path]:
    """Execute every notebook with papermill into ``out_dir/notebooks``.

    Parameters injected: ``vintage`` (name or parameter-file path), ``data_dir`` (the
    run's data folder) and ``overrides``. papermill records them in the executed
    notebook's metadata and in an ``injected-parameters`` cell.
    """
    import papermill as pm

    folder = Path(out_dir) / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for nb in notebooks or notebook_paths():
        target = folder / nb.name
        log(f"notebook: {nb.stem}")
        pm.execute_notebook(
            str(nb),
            str(target),
            parameters={
                "vintage": str(vintage),
                "data_dir": str(config.data_path),
                "overrides": list(overrides),
            },
            cwd=str(nb.parent),
            progress_bar=True,
            kernel_name="python3",
        )
        done.append(target)
    return done


def render_html(notebooks: Sequence[Path], out_dir: Path) -> list[Path]:
    """Render executed notebooks to HTML with the code hidden (``report/<name>.html``)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    folder = Path(out_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for nb in notebooks:
        body, _ = exporter.from_notebook_node(nbformat.read(nb, as_version=4))
        path = folder / f"{Path(nb).stem}.html"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def _table_html(table) -> str:
    return table.to_html(
        index=False, na_rep="", float_format=lambda x: f"{x:.2f}", border=0, classes="tbl"
    )


def write_index(evaluation, out_dir: Path, config: Config, pages: Sequence[Path]) -> Path:
    """``report/index.html``: headline figures and table, the exhibit map, the notebooks."""
    from leapresearch.publish.narrative import describe_event_study, headline_table

    es = publishable(evaluation.tables["event_study"], "event_study", privacy=config.privacy)
    months = config.analysis.report_rel_times
    groups = ("all", *GRADE_GROUPS, "grade_band:6-12")
    head = headline_table(
        es.loc[es["group"].isin(groups) | es["group"].str.startswith("cohort:")], rel_times=months
    )
    page_names = {Path(p).stem for p in pages}
    rows = []
    for exhibit, nb, file in EXHIBITS:
        nb_link = f'<a href="{nb}.html">{nb}</a>' if nb in page_names else html.escape(nb)
        rows.append(
            f"<tr><td>{html.escape(exhibit)}</td><td>{nb_link}</td>"
            f'<td><a href="../{file}">{file}</a></td></tr>'
        )
    nb_list = "".join(f'<li><a href="{Path(p).stem}.html">{Path(p).stem}</a></li>' for p in pages)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>LEAP evaluation: {html.escape(config.vintage)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
.tbl td,.tbl th{{padding:2px 8px;text-align:right}} img{{max-width:100%}}</style>
</head><body>
<h1>LEAP evaluation — vintage {html.escape(config.vintage)}</h1>
<p>{html.escape(describe_event_study(es, rel_times=months))}</p>
<h2>Headline estimates (percentage points of attendance)</h2>
{_table_html(head)}
<h2>Figures</h2>
<figure><img src="../figures/event_study_all.png" alt="Event study, all visited students">
<figcaption>Effect by months since the first visit, with 95% intervals.</figcaption></figure>
<figure><img src="../figures/event_study_grade_bands.png" alt="Event study by grade band">
<figcaption>By grade band.</figcaption></figure>
<figure><img src="../figures/love_plot.png" alt="Love plot">
<figcaption>Covariate balance before and after matching.</figcaption></figure>
<h2>Exhibit map</h2>
<table class="tbl"><tr><th>Exhibit</th><th>Notebook</th><th>File</th></tr>
{"".join(rows)}</table>
<h2>Notebooks</h2><ul>{nb_list}</ul>
<p><a href="../provenance.json">provenance.json</a>: commit, parameters, input checksums.</p>
</body></html>
"""
    path = Path(out_dir) / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


def report_writer(*, vintage: str, overrides: Sequence[str] = (), notebooks: bool = True):
    """The ``write_outputs`` hook of :func:`leapresearch.pipeline.run_report`."""

    def write(evaluation, out_dir: Path, config: Config, log: Log) -> None:
        write_figures(evaluation, out_dir, config)
        log("figures: written")
        pages: list[Path] = []
        if notebooks:
            executed = execute_notebooks(
                out_dir, config, vintage=vintage, overrides=overrides, log=log
            )
            pages = render_html(executed, out_dir)
        write_index(evaluation, out_dir, config, pages)
        log("report: written")

    return write
