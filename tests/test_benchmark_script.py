"""``benchmarks/run_benchmark.py``: ``--set`` reaches the run and its record, log stages.

No timing: the helpers that build the command, name the result file, read the stages off
the run's log and print the per-stage table are checked on small made-up inputs.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util

import pytest

from leapresearch.cli import build_parser
from leapresearch.config import load_config
from leapresearch.paths import PROJECT_ROOT


def _benchmark_script(name: str):
    """The module of ``benchmarks/<name>.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _benchmark_script("run_benchmark")

LOG = [
    (1.0, "load: 10 roster rows"),
    (2.0, "panel: 5 students, 50 student-months"),
    (4.0, "matching: 0 of 2 visited students unmatched"),
    (6.5, "event studies: 3 groups"),
    (46.5, "whole-procedure bootstrap: 20 draws, 3 groups"),
    (50.0, "figures: written"),
    (51.0, "notebooks: 8, 2 at a time"),
    (60.0, "notebook: 01_data_and_validation (4 s)"),
    (63.0, "report: written"),
]


def test_set_is_checked_and_passed_to_the_run_as_a_parameter_override(tmp_path):
    setting = bench.parse_setting("inference.procedure_draws=0")
    for bad in ("inference.procedure_draws", "=0", "a b=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_setting(bad)
    cmd = bench.run_command(
        "leapresearch", tmp_path, tmp_path / "out", [setting], ["--no-notebooks"]
    )
    args = build_parser().parse_args(cmd[1:])
    assert args.param == ["inference.procedure_draws=0"] and args.no_notebooks
    assert load_config(args.params, overrides=args.param).inference.procedure_draws == 0
    assert load_config(args.params).inference.procedure_draws > 0  # the default differs
    without = bench.run_command("leapresearch", tmp_path, tmp_path / "out", [], [])
    assert build_parser().parse_args(without[1:]).param is None


def test_a_run_with_set_gets_a_file_the_readme_check_does_not_read():
    suffix = bench.settings_suffix(["inference.procedure_draws=0"])
    assert fnmatch.fnmatch(f"2026-12-05-districts{suffix}.json", "*-districts-set-*.json")
    assert not fnmatch.fnmatch(f"2026-12-05-districts{suffix}.json", "*-districts.json")
    assert bench.settings_suffix([]) == ""
    assert "/" not in bench.settings_suffix(["report.title=a/b"])


def test_a_second_measurement_of_the_day_gets_its_own_file_read_as_the_latest(tmp_path):
    first = bench.result_path(tmp_path, "2026-12-05", "districts", [])
    assert first.name == "2026-12-05-districts.json"
    first.write_text("{}")
    second = bench.result_path(tmp_path, "2026-12-05", "districts", [])
    assert second.name == "2026-12-05b-districts.json"  # the first is never replaced
    second.write_text("{}")
    third = bench.result_path(tmp_path, "2026-12-05", "districts", [])
    assert third.name == "2026-12-05c-districts.json"
    later = bench.result_path(tmp_path, "2026-12-06", "districts", [])
    # the README's check takes the last of the sorted names (tests/test_readme.py)
    names = sorted(p.name for p in [first, second, third, later])
    assert names == [first.name, second.name, third.name, later.name]
    assert fnmatch.fnmatch(second.name, "*-districts.json")
    other = bench.result_path(tmp_path, "2026-12-05", "districts", ["a=1"])
    assert other.name == "2026-12-05-districts-set-a_1.json"
    # a gap (a file renamed or removed) is not filled: the new file still sorts last
    third.write_text("{}")
    second.unlink()
    fourth = bench.result_path(tmp_path, "2026-12-05", "districts", [])
    assert fourth.name == "2026-12-05d-districts.json"


def test_log_stages_time_the_bootstrap_and_the_notebooks():
    stages = bench.log_stages(LOG)
    assert stages == {"procedure_bootstrap": 40.0, "notebooks": 12.0}
    assert bench.draws_per_minute(20, stages) == 30.0
    no_draws = [line for line in LOG if not line[1].startswith(bench.BOOTSTRAP_LINE)]
    assert "procedure_bootstrap" not in bench.log_stages(no_draws)
    assert bench.draws_per_minute(0, stages) is None


def _run(wall: float, timings: dict, draws: int) -> dict:
    stages = bench.log_stages(LOG)
    return {
        "wall_s": wall,
        "peak_gb_largest_process": 1.0,
        "peak_gb_tree": 1.5,
        "loadavg_before": [0.1, 0.1, 0.1],
        "loadavg_after": [1.9, 1.0, 0.5],
        "run_timings_s": timings,
        "log_stages_s": stages,
        "procedure_draws": draws,
        "procedure_draws_per_min": bench.draws_per_minute(draws, stages),
        "notebooks_s": bench.notebook_times(LOG),
        "notebooks_span_s": bench.notebooks_span(LOG),
    }


def test_the_printed_stage_table_is_the_runs_medians_with_only_the_notebook_variant():
    runs = [
        _run(70.0, {"load": 1.0, "evaluation": 45.0, "outputs": 3.0}, 20),
        _run(90.0, {"load": 3.0, "evaluation": 55.0, "outputs": 5.0}, 20),
        _run(80.0, {"load": 2.0, "evaluation": 50.0, "outputs": 4.0}, 20),
    ]
    medians = bench.median_stages(runs)
    assert medians["load"] == 2.0 and medians["evaluation"] == 50.0
    assert medians["procedure_bootstrap"] == 40.0
    result = {
        "scale": "demo",
        "seed": 1,
        "set": ["inference.procedure_draws=20"],
        "thread_env": {},
        "machine": {
            "date": "2026-12-05T12:00:00+00:00",
            "cpu": "cpu",
            "cores_available": 2,
            "ram_gb": 24.0,
            "python": "3.11",
            "versions": {"numpy": "2", "pandas": "3"},
            "git_commit": "0123456789abc",
            "git_dirty": False,
            "loadavg_start": [0.1, 0.1, 0.1],
        },
        "cli": {
            "with_notebooks": {
                "runs": runs,
                "median_stage_s": medians,
                "median_wall_s": 80.0,
                "median_peak_gb_tree": 1.5,
                "median_peak_gb_largest_process": 1.0,
            },
            "notebooks_span_s": 12.0,
        },
    }
    runs[0]["draw_progress"] = bench.draw_progress(
        f"{bench.PROGRESS_LINE}0 done 10.0\n{bench.PROGRESS_LINE}1 done 16.0", started=0.0
    )
    text = bench.render(result)
    assert "2 done from 10 s to 16 s of the run, 10.0 per minute" in text
    assert "changed with `-p inference.procedure_draws=20`" in text
    assert "| evaluation | 50.00 |" in text and "| procedure_bootstrap | 40.00 |" in text
    assert "| whole run | 80.00 |" in text
    assert "20 draws, 30.00, 30.00, 30.00 draws per minute" in text
    assert "Notebooks stage: 12.0 s from the run's log;" in text
    result["set"] = []
    assert "the defaults (no `--set`)" in bench.render(result)


def test_progress_hook_wraps_the_draw_function_and_its_lines_give_the_rate(tmp_path):
    import subprocess
    import sys

    folder = bench.write_progress_hook(tmp_path / "progress")
    code = (
        "import leapresearch.analysis.procedure as p, sys; "
        "print(p.draw_estimates.__name__, 'sitecustomize' in sys.modules)"
    )
    env = {"PYTHONPATH": f"{folder}:{PROJECT_ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["timed", "True"]
    text = "\n".join(
        [
            "some warning",
            f"{bench.PROGRESS_LINE}0 done 1000.00",
            f"{bench.PROGRESS_LINE}25 done 1010.00",
            f"{bench.PROGRESS_LINE}1 done 1030.00",
        ]
    )
    got = bench.draw_progress(text, started=990.0)
    assert got == {
        "draws_done": 3,
        "first_done_s": 10.0,
        "last_done_s": 40.0,
        "draws_per_min": 4.0,
    }
    assert bench.draw_progress("no draws here", started=0.0) is None


def test_the_matching_floor_fits_the_models_the_matching_fits():
    """The floor's plain Newton logit is the maximum likelihood of statsmodels and, with the
    ridge, the package's penalised fit: the benchmark times the same models."""
    import numpy as np
    import statsmodels.api as sm

    from leapresearch.design.matching.logit import _logit_newton

    floor = _benchmark_script("matching_floor")
    rng = np.random.default_rng(5)
    x = np.column_stack([np.ones(4000), rng.normal(size=(4000, 4))])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ [-1.0, 0.5, -0.3, 0.2, 0.0])))).astype(float)
    eta, steps = floor.plain_newton(x, y, 0.0)
    assert 3 <= steps < 20
    reference = sm.Logit(y, x).fit(disp=0, tol=1e-12)
    assert np.abs(eta - x @ reference.params).max() < 1e-7
    ridged, _ = floor.plain_newton(x, y, 1.0)
    theta, converged, _, eta_package = _logit_newton(x, None, y, ridge=1.0)
    assert converged and np.abs(ridged - eta_package).max() < 1e-7
    assert np.abs(ridged - eta).max() > 1e-4  # the penalty moved the fit: not the same model


def test_the_memory_poll_finds_a_child_s_peak(tmp_path):
    """``run_measured`` finds the peak of a child that holds 300 MB for a second."""
    import sys

    child = "import numpy as np, time; a = np.ones(300 * 2**20 // 8); time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    result = bench.run_measured([sys.executable, "-c", parent], log_path=tmp_path / "log")
    assert result["returncode"] == 0
    assert result["peak_gb_tree"] >= 0.29
    assert [p["main"] for p in result["peak_tree_processes"]] == [False]  # the child's 300 MB


class _Process:
    """A stand-in for a psutil process whose RSS and PSS the test sets."""

    def __init__(self, pid: int, rss: int, pss: int) -> None:
        self.pid, self.rss, self.pss = pid, rss, pss

    def memory_info(self):
        return type("Memory", (), {"rss": self.rss})()

    def memory_full_info(self):
        return type("Memory", (), {"pss": self.pss})()

    def name(self) -> str:
        return "python"

    def children(self, recursive: bool = False) -> list:
        return self.kids


def test_the_memory_poll_reads_the_pss_only_when_the_rss_sum_exceeds_the_peak(monkeypatch):
    """The PSS (the costly read) is read only when the RSS sum, its upper bound, exceeds
    the peak so far; the process list is refreshed once a ``refresh``."""
    import psutil

    root, child = _Process(1, rss=100, pss=80), _Process(2, rss=400, pss=300)
    root.kids = [child]
    reads = []
    unique = bench._unique_memory
    monkeypatch.setattr(bench, "_unique_memory", lambda p: reads.append(p.pid) or unique(p))
    tree = bench._TreePoll(root, psutil, refresh=0.0)
    assert tree.sizes_above(0) == [(80, 1, "python"), (300, 2, "python")]
    assert tree.sizes_above(499) == [(80, 1, "python"), (300, 2, "python")]
    assert tree.sizes_above(500) is None and tree.sizes_above(380) == [
        (80, 1, "python"),
        (300, 2, "python"),
    ]
    assert reads == [1, 2, 1, 2, 1, 2]
    child.rss = 50  # the child let its memory go: the sum 150 cannot beat a peak of 380
    assert tree.sizes_above(380) is None and reads == [1, 2, 1, 2, 1, 2]
    root.kids = []  # listed again at once with refresh 0; once a second by default
    assert tree.sizes_above(0) == [(80, 1, "python")]
    slow = bench._TreePoll(root, psutil)
    assert [pid for _, pid, _ in slow.unique_sizes()] == [1]
    root.kids = [child]
    assert [pid for _, pid, _ in slow.unique_sizes()] == [1]  # the same list within a second
