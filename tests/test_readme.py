"""The replication README: template order, references, LICENSE, and numbers that cannot go stale.

Every number of the README's performance table and of the paragraph after it is checked
against the latest benchmark results (``benchmarks/results/<date>-<scale>.json``).
"""

from __future__ import annotations

import json
import re
import statistics
import tomllib

import pytest

from leapresearch.config import load_config
from leapresearch.paths import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
TEMPLATE = (
    "Overview",
    "Data availability",
    "Computational requirements",
    "Description of programs",
    "Instructions to replicators",
    "List of exhibits",
    "References",
)
"""Sections of the AEA / Social Science Data Editors template, in its order."""


def _section(title: str) -> str:
    m = re.search(rf"^## \d+\. {re.escape(title)}.*?(?=^## )", README, re.S | re.M)
    assert m, f"README lacks the section {title!r}"
    return m.group(0)


def test_sections_follow_the_template_order():
    heads = [h for h in re.findall(r"^## \d+\. (.+)$", README, re.M)]
    positions = [next(i for i, h in enumerate(heads) if h.startswith(t)) for t in TEMPLATE]
    assert positions == sorted(positions), heads
    data = _section("Data availability")
    for part in ("Statement about rights", "License for data", "How to obtain the data",
                 "Dataset list", "Privacy"):  # fmt: skip
        assert f"### {part}" in data, part
    for word in ("State Department of Education", "agreement", "Time and cost", "extracts"):
        assert word in data, word
    for extract in ("students.csv", "attendance_monthly.csv", "leap_visits.csv"):
        assert extract in data, extract


def test_references_cover_the_published_evaluation_the_methods_and_the_calibration():
    refs = _section("References")
    assert "CCERC" in refs and "January 2023" in refs
    assert "ct-public-figures.md" in refs and "EdSight" in refs
    # every author-year citation of a docstring is in the references
    cited = set()
    for path in (PROJECT_ROOT / "leapresearch").rglob("*.py"):
        for m in re.finditer(
            r"([A-Z][a-z]+)(?: and| &) ([A-Z][A-Za-z']+)\s+\(?(\d{4})", path.read_text()
        ):
            cited.add((m.group(1), m.group(2), m.group(3)))
    assert ("Callaway", "Sant'Anna", "2021") in cited and ("Abadie", "Imbens", "2011") in cited
    for first, second, year in cited:
        assert first in refs and second in refs and year in refs, (first, second, year)


def test_license_code_mit_and_data_terms_apart():
    text = (PROJECT_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    py = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert py["project"]["license"]["text"] == "MIT"
    data = text.split("\nData\n", 1)
    assert len(data) == 2 and "data-sharing agreement" in data[1]


def _latest(scale: str, part: str) -> dict:
    """The newest ``benchmarks/results/<date>-<scale>.json`` that measured ``part``.

    A benchmark may measure only the command line (``--skip-stages``) or only the stages;
    each README number is checked against the newest file that measured it.
    """
    files = sorted((PROJECT_ROOT / "benchmarks" / "results").glob(f"*-{scale}.json"))
    for file in reversed(files):
        result = json.loads(file.read_text())
        if part == "pyfixest" and (result.get("stages") or {}).get("pyfixest"):
            return result
        if part == "cli" and "with_notebooks" in (result.get("cli") or {}):
            return result
    raise AssertionError(f"no benchmark result for {scale} measured {part}")


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def _row(label: str) -> list[str]:
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].split(" (")[0] == label:
            return cells
    raise AssertionError(f"no performance row for {label}")


@pytest.mark.parametrize("scale", ["demo", "districts", "state"])
def test_performance_table_matches_the_latest_benchmark(scale):
    result = _latest(scale, "cli")
    # a row is a run with the default parameters (a run with `--set` writes another file)
    assert not result.get("set"), f"the {scale} row's benchmark changed {result['set']}"
    runs = result["cli"]["with_notebooks"]["runs"]
    # each row says when it was measured and with how many whole-procedure draws
    label = _row(scale)[0]
    assert result["machine"]["date"][:10] in label
    draws = {r.get("procedure_draws") for r in runs}
    if draws == {None}:  # recorded by the benchmark since the bootstrap exists
        assert "before the whole-procedure bootstrap" in label
    else:
        assert draws == {load_config("demo").inference.procedure_draws}, draws
        assert f"{draws.pop()} bootstrap draws" in label
    log = " ".join(runs[0]["log"])
    students, months = re.search(r"panel: ([\d,]+) students, ([\d,]+) student-months", log).groups()
    visited = re.search(r"of ([\d,]+) visited", log).group(1)
    wall = statistics.median(r["wall_s"] for r in runs)
    peak = max(r["peak_gb_largest_process"] for r in runs)
    cells = _row(scale)
    assert cells[1] == students
    assert cells[2] == f"{int(months.replace(',', '')) / 1e6:.1f} million"
    assert cells[3] == visited
    assert cells[4] == _duration(wall)
    assert cells[5].startswith(f"{peak:.1f} GB")
    if " GB with " in cells[5]:  # the whole process tree, where it is larger
        tree = max(r["peak_gb_tree"] for r in runs)
        assert f"({tree:.1f} GB with " in cells[5]


def test_the_estimator_paragraph_matches_the_benchmark():
    bench = _latest("districts", "pyfixest")["stages"]
    fx = bench["pyfixest"]
    para = README[README.index("The event-study regression on the districts") :]
    para = para[: para.index("\n\n")].replace("\n", " ")
    assert f"{fx['rows'] / 1e6:.2f} million rows" in para
    assert f"{fx['stacks']} stacks" in para
    assert (
        f"takes {fx['ours']['wall_s']:.2f} s against {fx['pyfixest_default']['wall_s']:.1f} s"
        in para
    )
    assert f"agree to {fx['max_abs_coef_diff_tol1e-10']:.0e}" in para
    assert f"errors to {fx['max_rel_se_diff_tol1e-10']:.0e}" in para
    stage = {s["stage"]: s["wall_s"] for s in bench["stages"]}
    assert f"matching (about {round(stage['prepare/matching'], -1):.0f} s" in para
    assert f"candidate pool (about {round(stage['prepare/candidates'], -1):.0f} s)" in para


def test_monte_carlo_table_is_the_one_the_validation_script_wrote():
    written = (PROJECT_ROOT / "validation" / "results" / "readme_table.md").read_text()
    block = re.search(r"<!-- monte-carlo:start -->\n(.*?)<!-- monte-carlo:end -->", README, re.S)
    assert block, "README lacks the Monte Carlo table markers"
    assert block.group(1).strip() == written.strip()
    summary = (PROJECT_ROOT / "validation" / "results" / "monte_carlo.md").read_text()
    assert "validation/monte_carlo.py --draws" in summary  # the command that made it
    draws = [int(n) for n in re.findall(r"^\| \w+ \| \w+ \| (\d+) \|", written, re.M)]
    assert draws and min(draws) >= 200


def test_the_default_designs_monte_carlo_table_is_the_one_the_script_wrote():
    folder = PROJECT_ROOT / "validation" / "results" / "default-400draws"
    written = (folder / "readme_table.md").read_text()
    block = re.search(
        r"<!-- monte-carlo-default:start -->\n(.*?)<!-- monte-carlo-default:end -->", README, re.S
    )
    assert block, "README lacks the default design's Monte Carlo table"
    assert block.group(1).strip() == written.strip()
    summary = (folder / "monte_carlo.md").read_text()
    assert "--draws 400" in summary and "--out validation/results/default-400draws" in summary
    draws = [int(n) for n in re.findall(r"^\| \w+ \| \w+ \| (\d+) \|", written, re.M)]
    assert draws and min(draws) == 400
    # the coverage and bias figures the README states
    cells = json.loads((folder / "monte_carlo.json").read_text())
    coverage = [c["coverage"] for c in cells]
    assert f"{100 * min(coverage):.1f}-{100 * max(coverage):.1f}%" in README
    worst = max(c["bias"] for c in cells if c["group"] == "all")
    assert f"+{worst:.2f} pp" in README
