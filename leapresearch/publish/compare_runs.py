"""``leapresearch compare``: two runs side by side, on one page for a director.

Year over year (last year's vintage against this year's) or before/after a method change.
The page (Markdown or HTML, and the headline rows as CSV) holds, each computed from the two
run folders and nothing else:

* whether the inputs were simulated (the runs' ``simulated_inputs`` flags);
* the headline estimates of both runs in words and numbers, their difference B - A with
  its interval and a test of no change (:func:`headline_comparison`), Holm-adjusted over
  the headline cells compared, and the sentences that name each change found;
* the students behind each run (the matching summary), the pre-trend tests and the other
  diagnostics, the data warnings;
* the parameters that changed, the input mapping summarised in one line, and whether the
  input files are the same.

The test of a difference treats the two runs' estimates as independent
(:data:`INDEPENDENCE_NOTE`); the page states the assumption and what students shared by
both runs do to it.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from leapresearch.estimation.multiple_testing import holm
from leapresearch.publish import labels

HEADLINE_GROUPS = ("all", "grade_band:PK-5", "grade_band:6-12")
"""Groups compared when a run's parameters do not name its headline groups."""

HEADLINE_MONTHS = (1, 3, 6, 9)
"""Months compared when a run's parameters do not name them."""

INDEPENDENCE_NOTE = (
    "The interval of a difference is B - A plus or minus {z} times the square root of "
    "SE(A)^2 + SE(B)^2 (normal approximation), and the test of no change divides B - A by "
    "that standard error. This treats the two runs' estimates as independent, which holds "
    "when no student is in both runs' samples (two years of new visits). Students who are in "
    "both samples, as visited or as comparison students (a cohort analysed again in the "
    "later vintage), make the two estimates move together: their correlation is positive, "
    "the true standard error of the difference is smaller than this one, and the interval is "
    "too wide. The test is then conservative: it can miss a real change but does not report "
    "more changes than it should. (Only a negative correlation, which students measured "
    "twice do not produce, would make it anti-conservative.)"
)
"""How the difference of two runs' estimates is tested (``{z}``: the normal quantile)."""


@dataclass
class Run:
    """A finished run folder: its provenance and the result tables it holds."""

    path: Path
    provenance: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The vintage, as the run recorded it."""
        return str(self.provenance.get("vintage") or self.path.name)

    def parameter(self, *keys: str, default: Any = None) -> Any:
        """A parameter of the run (``parameter("analysis", "alpha")``)."""
        node: Any = self.provenance.get("parameters") or {}
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node


def load_run(run_dir: Path) -> Run:
    """Provenance and result tables of a finished run.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``provenance.json`` or no ``tables/event_study.csv``.
    """
    run_dir = Path(run_dir)
    prov = run_dir / "provenance.json"
    table = run_dir / "tables" / "event_study.csv"
    if not prov.is_file() or not table.is_file():
        missing = prov.name if not prov.is_file() else "tables/event_study.csv"
        raise FileNotFoundError(f"{run_dir} is not a finished leapresearch run (no {missing})")
    tables = {
        p.stem: pd.read_csv(p, dtype={"group": str, "cohort": str, "months": str})
        for p in sorted((run_dir / "tables").glob("*.csv"))
    }
    return Run(run_dir, json.loads(prov.read_text(encoding="utf-8")), tables)


# --------------------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------------------


def headline_comparison(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    *,
    groups: tuple[str, ...] = HEADLINE_GROUPS,
    rel_times: tuple[int, ...] = HEADLINE_MONTHS,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Both runs' headline estimates, their difference B - A, its interval and a test.

    Parameters
    ----------
    table_a, table_b : DataFrame
        The runs' ``event_study.csv`` (suppressed cells are missing).
    groups, rel_times : tuple
        The headline cells compared.
    alpha : float
        1 - confidence level of the interval; level of the Holm-adjusted test.

    Returns
    -------
    DataFrame
        One row per cell in either run: ``group``, ``rel_time``, ``estimate_a``,
        ``std_error_a``, ``n_treated_a`` (and ``_b``), ``difference``,
        ``std_error_difference`` (``sqrt(se_a^2 + se_b^2)``: independent estimates, see
        :data:`INDEPENDENCE_NOTE`), ``ci_lower``, ``ci_upper`` (normal), ``p_value``,
        ``p_value_holm`` (Holm over the cells with both estimates), ``changed`` (Holm-adjusted
        p below ``alpha``) and ``pointwise`` (the interval excludes zero).
    """
    cols = ["group", "rel_time", "estimate", "std_error", "n_treated"]

    def pick(t: pd.DataFrame) -> pd.DataFrame:
        t = t.reindex(columns=cols)
        return t.loc[t["group"].isin(groups) & t["rel_time"].isin(rel_times)]

    m = pick(table_a).merge(
        pick(table_b), on=["group", "rel_time"], how="outer", suffixes=("_a", "_b")
    )
    m["difference"] = m["estimate_b"] - m["estimate_a"]
    m["std_error_difference"] = np.hypot(m["std_error_a"], m["std_error_b"])
    z = float(stats.norm.ppf(1 - alpha / 2))
    m["ci_lower"] = m["difference"] - z * m["std_error_difference"]
    m["ci_upper"] = m["difference"] + z * m["std_error_difference"]
    with np.errstate(divide="ignore", invalid="ignore"):
        zstat = (m["difference"] / m["std_error_difference"]).to_numpy(dtype=float)
    m["p_value"] = 2 * stats.norm.sf(np.abs(zstat))
    m["p_value_holm"] = holm(m["p_value"].to_numpy(dtype=float))
    m["changed"] = m["p_value_holm"] < alpha
    m["pointwise"] = (m["ci_lower"] > 0) | (m["ci_upper"] < 0)
    order = {g: i for i, g in enumerate(groups)}
    m = m.sort_values(["group", "rel_time"], key=lambda s: s.map(order) if s.name == "group" else s)
    return m.reset_index(drop=True)


def _pp(x: float) -> str:
    return f"{labels.fmt(x)} pp"


def _p(p: float) -> str:
    if labels._missing(p):
        return labels.NOT_AVAILABLE
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = _p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def change_sentences(head: pd.DataFrame, *, alpha: float) -> list[str]:
    """One sentence per change found, or one saying none was (computed from ``head``)."""
    both = head.dropna(subset=["difference", "std_error_difference"])
    level = f"{round(100 * (1 - alpha))}%"
    if both.empty:
        return ["No headline estimate is published in both runs, so none can be compared."]
    out = []
    for r in both.loc[both["changed"]].itertuples():
        way = "higher" if r.difference > 0 else "lower"
        out.append(
            f"{labels.group_label(r.group)}, month {r.rel_time}: {_pp(abs(r.difference))} "
            f"{way} in B ({_pp(r.estimate_a)} in A, {_pp(r.estimate_b)} in B; {level} "
            f"interval of the change {labels.fmt_interval(r.ci_lower, r.ci_upper)} pp; "
            f"Holm-adjusted {_p_is(r.p_value_holm)})."
        )
    n, k = len(both), int(both["changed"].sum())
    if k:
        lead = f"{k} of the {n} headline estimates compared changed (Holm-adjusted p below "
        return [lead + f"{alpha:g}):", *out]
    big = both.loc[both["difference"].abs().idxmax()]
    text = (
        f"None of the {n} headline estimates compared changed by more than sampling error "
        f"explains (Holm-adjusted p below {alpha:g}). The largest difference is "
        f"{labels.group_label(big['group'])}, month {big['rel_time']}: "
        f"{labels.fmt(big['difference'], signed=True)} pp ({level} interval "
        f"{labels.fmt_interval(big['ci_lower'], big['ci_upper'])} pp)."
    )
    pointwise = both.loc[both["pointwise"]]
    if len(pointwise):
        cells = "; ".join(
            f"{labels.group_label(r.group)}, month {r.rel_time} "
            f"({labels.fmt(r.difference, signed=True)} pp, unadjusted {_p_is(r.p_value)})"
            for r in pointwise.itertuples()
        )
        text += (
            f" Before the adjustment for the {n} comparisons, the interval excludes zero for: "
            f"{cells}."
        )
    return [text]


def headline_rows(head: pd.DataFrame, *, alpha: float) -> pd.DataFrame:
    """The headline comparison as printed: words and numbers, one row per cell."""
    level = f"{round(100 * (1 - alpha))}%"

    def verdict(r) -> str:
        if labels._missing(r.p_value_holm):
            return labels.NOT_AVAILABLE
        if r.changed:
            return "Yes"
        return "Not after Holm" if r.pointwise else "No"

    return pd.DataFrame(
        {
            "Group": [labels.group_label(g) for g in head["group"]],
            "Month": head["rel_time"].astype(int).astype(str),
            "A (pp)": [labels.fmt(x) for x in head["estimate_a"]],
            "B (pp)": [labels.fmt(x) for x in head["estimate_b"]],
            "Change B - A (pp)": [labels.fmt(x, signed=True) for x in head["difference"]],
            f"{level} interval of the change": [
                labels.fmt_interval(lo, hi)
                for lo, hi in zip(head["ci_lower"], head["ci_upper"], strict=True)
            ],
            "p-value": [_p(p) for p in head["p_value"]],
            "Holm p": [_p(p) for p in head["p_value_holm"]],
            "Changed?": [verdict(r) for r in head.itertuples()],
        }
    )


def _count(x) -> str:
    return labels.SUPPRESSED if labels._missing(x) else f"{int(x):,}"


def student_rows(a: Run, b: Run) -> pd.DataFrame:
    """Students behind each run: visited, matched, unmatched, comparison students, cohorts."""
    rows = {
        "Visited students": "treated",
        "Matched to comparison students": "matched",
        "Matched outside the caliper": "matched_outside_caliper",
        "Not matched": "unmatched",
        "Comparison students used": "comparisons",
    }

    def column(run: Run) -> list[str]:
        ms = run.tables.get("matching_summary")
        if ms is None:
            return [labels.NOT_AVAILABLE] * (len(rows) + 1)
        values = []
        for c in rows.values():
            if c not in ms:
                values.append(labels.NOT_AVAILABLE)
                continue
            hidden = int(ms[c].isna().sum())
            text = _count(ms[c].sum(min_count=1))
            values.append(text + (f" + {hidden} cohort(s) {labels.SUPPRESSED}" if hidden else ""))
        cohorts = labels.sort_groups(f"cohort:{c}" for c in ms["cohort"].astype(str))
        return [*values, ", ".join(labels.group_label(c) for c in cohorts)]

    return pd.DataFrame(
        {"": [*rows, "Cohorts (first completed visit)"], "A": column(a), "B": column(b)}
    )


def _cohorts(run: Run) -> set[str]:
    ms = run.tables.get("matching_summary")
    return set() if ms is None else set(ms["cohort"].astype(str))


def _test_result(p: float, alpha: float) -> str:
    if labels._missing(p):
        return labels.NOT_AVAILABLE
    return f"{'rejected' if p < alpha else 'not rejected'} ({_p_is(p)})"


def diagnostic_rows(a: Run, b: Run, *, groups: tuple[str, ...], alpha: float) -> pd.DataFrame:
    """Pre-trend tests, placebo and sensitivity breakdowns of both runs, in words."""
    checks: list[tuple[str, Any]] = []
    for g in groups:
        for months, what in (("<=", "matching window"), ("-24", "months before the window")):
            name = f"Parallel pre-trends, {labels.group_label(g)}, {what}"
            checks.append((name, lambda run, g=g, m=months: _pretrend(run, g, m, alpha)))
    checks.append(("No effect of a placebo visit moved earlier, all visited students", _placebo))
    for method in ("relative_magnitudes", "smoothness"):
        name = f"Sensitivity breakdown ({method.replace('_', ' ')}), all visited students"
        checks.append((name, lambda run, m=method: _breakdown(run, m)))
    return pd.DataFrame(
        {
            "Check (rejected: the run's data speak against it)": [c for c, _ in checks],
            "A": [f(a) for _, f in checks],
            "B": [f(b) for _, f in checks],
        }
    )


def _pretrend(run: Run, group: str, months: str, alpha: float) -> str:
    t = run.tables.get("pretrend_tests")
    if t is None:
        return labels.NOT_AVAILABLE
    rows = t.loc[
        (t["group"] == group)
        & (t["basis"] == "adjusted")
        & t["months"].astype(str).str.startswith(months)
    ]
    if rows.empty:
        return labels.NOT_AVAILABLE
    return _test_result(rows["p_value"].iloc[0], alpha)


def _placebo(run: Run) -> str:
    t = run.tables.get("placebo")
    if t is None or "pre_wald_p_value" not in t:
        return labels.NOT_AVAILABLE
    rows = t.loc[t["group"] == "all", "pre_wald_p_value"].dropna()
    alpha = run.parameter("analysis", "alpha", default=0.05)
    return labels.NOT_AVAILABLE if rows.empty else _test_result(rows.iloc[0], alpha)


def _breakdown(run: Run, method: str) -> str:
    t = run.tables.get("sensitivity")
    months = run.parameter("analysis", "report_rel_times", default=HEADLINE_MONTHS)
    if t is None or not months:
        return labels.NOT_AVAILABLE
    rows = t.loc[(t["group"] == "all") & (t["method"] == method) & (t["rel_time"] == max(months))]
    rows = rows["breakdown"].dropna()
    return labels.NOT_AVAILABLE if rows.empty else f"{rows.iloc[0]:.2f} (month {max(months)})"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


FRONT_PAGE_KEYS = ("vintage", "data_dir", "report.")
"""Parameters that name the run or fill its front page; they move no number."""


def parameter_lines(a: Run, b: Run) -> list[str]:
    """Parameters that changed: design ones one per line; names, mapping and files in one."""
    pa, pb = (_flatten(r.provenance.get("parameters") or {}) for r in (a, b))
    changed = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
    design = [k for k in changed if not k.startswith(("input.", *FRONT_PAGE_KEYS))]
    naming = [k for k in changed if k.startswith(FRONT_PAGE_KEYS)]
    lines = [f"{k}: {pa.get(k)!r} → {pb.get(k)!r}" for k in design]
    if not design:
        lines.append("Design parameters: identical.")
    if naming:
        lines.append("Names and front-page fields (move no number): " + ", ".join(naming) + ".")
    ma, mb = (mapping_summary(r) for r in (a, b))
    lines.append(
        f"Input mapping: identical ({ma})." if ma == mb else f"Input mapping: A {ma}; B {mb}."
    )
    ia, ib = (r.provenance.get("inputs") or {} for r in (a, b))
    differ = sorted(k for k in set(ia) | set(ib) if (ia.get(k) or {}).get("sha256") != (
        ib.get(k) or {}).get("sha256"))  # fmt: skip
    lines.append(
        f"Input files that differ (sha256): {', '.join(differ)}."
        if differ
        else "Input files: identical (same sha256): both runs read the same data."
    )
    return lines


def mapping_summary(run: Run) -> str:
    """The input mapping of a run in one phrase (files, renames, recodes, date formats)."""
    spec = (run.provenance.get("input_mapping") or {}).get("spec") or run.parameter("input")
    if not spec:
        return "none recorded"
    tables = [v for v in spec.values() if isinstance(v, dict)]
    files = sum(bool(t.get("file")) for t in tables)
    renames = sum(len(t.get("rename") or {}) for t in tables)
    recodes = sum(len(t.get("recode") or {}) for t in tables)
    dates = sum(len(t.get("date_format") or {}) for t in tables)
    if not (files or renames or recodes or dates or spec.get("trim") or spec.get("null_tokens")):
        return "reads the contract layout as it is"
    parts = [
        f"{files} file name(s)",
        f"{renames} column(s) renamed",
        f"{recodes} column(s) recoded",
        f"{dates} date format(s)",
    ]
    if spec.get("trim"):
        parts.append("values trimmed")
    if spec.get("null_tokens"):
        parts.append("null tokens " + ", ".join(map(str, spec["null_tokens"])))
    return "maps a state layout: " + ", ".join(parts)


def warning_lines(run: Run) -> list[str]:
    """The data warnings a run recorded, as printed in its log."""
    found = run.provenance.get("warnings") or []
    return [str(w.get("message") or w) if isinstance(w, dict) else str(w) for w in found]


def simulated_sentence(a: Run, b: Run) -> str:
    """Whether the inputs were simulated, from both runs' ``simulated_inputs`` flags."""
    sa, sb = (bool(r.provenance.get("simulated_inputs")) for r in (a, b))
    if sa and sb:
        return "Synthetic data: both runs read simulated inputs. No number describes real students."
    if sa or sb:
        which = "A" if sa else "B"
        return (
            f"Run {which} read simulated inputs and the other real data: the differences below "
            "are not a change between years."
        )
    return "Both runs read real (not simulated) inputs."


def overlap_sentence(a: Run, b: Run) -> str:
    """What the cohorts and input files of the two runs say about shared students."""
    ia, ib = (r.provenance.get("inputs") or {} for r in (a, b))
    same = ia and {k: v.get("sha256") for k, v in ia.items()} == {
        k: v.get("sha256") for k, v in ib.items()
    }
    if same:
        return (
            "Both runs read the same input files, so their samples are the same students and "
            "the interval overstates the uncertainty of a difference by far: read a difference "
            "as the effect of the changed parameters, not of sampling."
        )
    shared = labels.sort_groups(f"cohort:{c}" for c in _cohorts(a) & _cohorts(b))
    if shared:
        names = ", ".join(labels.group_label(c) for c in shared)
        return (
            f"Cohorts in both runs: {names}. Their students are likely in both samples, so "
            "the test is conservative here."
        )
    return "No cohort is in both runs: the independence assumption is plausible."


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """The comparison of two runs, as blocks a renderer turns into Markdown or HTML."""

    blocks: list[tuple[str, Any]]
    head: pd.DataFrame

    def markdown(self) -> str:
        """The page as Markdown."""
        return "\n\n".join(_md_block(kind, content) for kind, content in self.blocks) + "\n"

    def html(self) -> str:
        """The page as a standalone HTML document (no script, nothing loaded)."""
        from leapresearch.publish.frontpage import CSS

        title = html.escape(self.blocks[0][1])
        body = "\n".join(_html_block(kind, content) for kind, content in self.blocks)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{CSS}</style></head>\n"
            f'<body class="lr-page"><main>\n{body}\n</main></body></html>\n'
        )

    def csv(self) -> str:
        """The headline comparison, one row per cell, with the groups also in words."""
        out = self.head.copy()
        out.insert(1, "group_label", [labels.group_label(g) for g in out["group"]])
        return out.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def compare(run_a: Path, run_b: Path) -> Comparison:
    """Compare two finished runs (A: the earlier or reference run; B: the new one)."""
    a, b = load_run(run_a), load_run(run_b)
    alpha = float(b.parameter("analysis", "alpha", default=0.05))
    groups = tuple(b.parameter("identification", "groups", default=None) or HEADLINE_GROUPS)
    months = tuple(b.parameter("analysis", "report_rel_times", default=None) or HEADLINE_MONTHS)
    head = headline_comparison(
        a.tables["event_study"], b.tables["event_study"], groups=groups, rel_times=months,
        alpha=alpha,
    )  # fmt: skip
    z = f"{stats.norm.ppf(1 - alpha / 2):.2f}"
    blocks: list[tuple[str, Any]] = [
        ("h1", f"Two runs compared: {a.name} (A) and {b.name} (B)"),
        ("ul", [_run_line("A", a), _run_line("B", b)]),
        ("strong", simulated_sentence(a, b)),
        ("h2", "What changed"),
        *[("p", s) for s in change_sentences(head, alpha=alpha)],
        ("h2", "Headline estimates (percentage points of attendance)"),
        ("table", headline_rows(head, alpha=alpha)),
        (
            "note",
            INDEPENDENCE_NOTE.format(z=z)
            + " "
            + overlap_sentence(a, b)
            + f" Holm's adjustment runs over the {int(head['p_value'].notna().sum())} cells "
            f"published in both runs. {labels.SUPPRESSED}: suppressed in a run (too few "
            f"students); {labels.NOT_AVAILABLE}: not estimable.",
        ),  # fmt: skip
        ("h2", "Students"),
        ("table", student_rows(a, b)),
        ("h2", "Pre-trends and diagnostics"),
        ("table", diagnostic_rows(a, b, groups=groups, alpha=alpha)),
        ("h2", "Warnings"),
        ("ul", _warnings_items(a, b)),
        ("h2", "Parameters and inputs that changed"),
        ("ul", parameter_lines(a, b)),
    ]
    return Comparison(blocks, head)


def _run_line(letter: str, run: Run) -> str:
    p = run.provenance
    commit = ((p.get("git") or {}).get("commit") or "no commit")[:10]
    finished = str(p.get("finished") or "not recorded")[:10]
    sim = "simulated inputs" if p.get("simulated_inputs") else "real inputs"
    return f"{letter}: {run.path} (vintage {run.name}; finished {finished}; commit {commit}; {sim})"


def _warnings_items(a: Run, b: Run) -> list[str]:
    items = []
    for letter, run in (("A", a), ("B", b)):
        found = warning_lines(run)
        items.append(f"{letter}: {len(found)} data warning{'s' if len(found) != 1 else ''}.")
        items += [f"{letter}: {w}" for w in found]
    return items


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_block(kind: str, content: Any) -> str:
    if kind == "h1":
        return f"# {content}"
    if kind == "h2":
        return f"## {content}"
    if kind == "strong":
        return f"**{content}**"
    if kind == "note":
        return f"*{content}*"
    if kind == "ul":
        return "\n".join(f"- {item}" for item in content)
    if kind == "table":
        head = "| " + " | ".join(_md_cell(c) for c in content.columns) + " |"
        rule = "|" + "|".join("---" for _ in content.columns) + "|"
        rows = ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in content.to_numpy()]
        return "\n".join([head, rule, *rows])
    return str(content)


def _html_block(kind: str, content: Any) -> str:
    e = html.escape
    if kind in ("h1", "h2"):
        return f"<{kind}>{e(content)}</{kind}>"
    if kind == "strong":
        return f'<div class="lr-banner" role="alert">{e(content)}</div>'
    if kind == "note":
        return f'<p class="lr-note">{e(content)}</p>'
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in content) + "</ul>"
    if kind == "table":
        head = "".join(f"<th>{e(str(c))}</th>" for c in content.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>"
            for r in content.to_numpy()
        )
        return (
            f'<table class="lr-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    return f"<p>{e(str(content))}</p>"


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """Write the page to ``out`` (``.md`` or ``.html``) and its headline rows beside it (CSV).

    Raises
    ------
    ValueError
        ``out`` ends neither in ``.md`` nor in ``.html``.
    """
    out = Path(out)
    if out.suffix.lower() not in (".md", ".html", ".htm"):
        raise ValueError(f"--out {out}: name a .md or .html file (the CSV is written beside it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    page = comparison.markdown() if out.suffix.lower() == ".md" else comparison.html()
    out.write_text(page, encoding="utf-8")
    csv = out.with_suffix(".csv")
    csv.write_text(comparison.csv(), encoding="utf-8")
    return [out, csv]


def compare_runs(run_a: Path, run_b: Path) -> str:
    """The comparison page as Markdown (what ``leapresearch compare A B`` prints)."""
    return compare(run_a, run_b).markdown()


__all__ = [
    "Comparison",
    "INDEPENDENCE_NOTE",
    "Run",
    "compare",
    "compare_runs",
    "headline_comparison",
    "load_run",
    "write_comparison",
]
