"""End-to-end benchmark of ``leapresearch``: stage times, peak memory, scaling, pyfixest.

What it measures, for one scale of the synthetic data (``demo``, ``districts`` about
151,000 students, ``state`` about 510,000 students):

1. **Data**: simulates the contract tables with the package's simulator into a cache
   folder keyed by scale, seed and sample fraction (skipped when present); Parquet for
   ``districts``/``state``, CSV for ``demo``, as ``make report`` does.
2. **Command line**: ``leapresearch run --data DIR --out OUT --overwrite`` in a subprocess,
   as an evaluator runs it, with and without ``--no-notebooks``: wall time, the peak
   resident memory of the largest single process (``wait4`` rusage) and of the whole
   process tree (sum of PSS polled with psutil, the notebooks' kernels included), the
   run's own stage timings (``provenance.json``; the whole-procedure bootstrap, which it
   does not time separately, from the run's log) as a per-stage table, and the time of
   each notebook (from the run's log). The notebooks stage is their span in the log (and
   the difference of the two runs). ``--set KEY=VALUE`` passes ``-p KEY=VALUE`` to every
   run and is recorded (the result file is then named after it);
   ``--only-with-notebooks`` skips the run without notebooks. A run during which the
   package source changed is flagged (the notebooks' cache is keyed by the source);
   ``--snapshot`` measures a frozen copy instead.
3. **Stages in-process** (a fresh worker process per repetition): load and validate,
   input checksums, panel, candidates, matching, stacking, each estimation step, the
   cache round trip of the prepared sample (what a notebook run on its own loads), and the report
   (tables, figures, index page). Each stage gets wall time, CPU time and peak RSS:
   ``VmHWM`` of ``/proc/self/status`` is reset before every stage by writing ``5`` to
   ``/proc/self/clear_refs`` (when the kernel refuses, peaks are cumulative and flagged).
   Cumulative time inside hot helpers (``event_study``, ``adjusted_outcome``, ...) is
   recorded too.
4. **Estimator vs pyfixest** on the run's stacked matched panel (``prepared.stacked``):
   ``leapresearch.estimation.event_study.event_study`` against ``pyfixest.feols`` in the formulation
   of ``benchmarks/bench_estimator.py`` (same event-time dummies, unit and stack x month
   effects, matching weights, CRV1 by student); time ratio and the largest coefficient
   and standard-error differences (pyfixest default tolerance and ``fixef_tol=1e-10``).
5. **Scaling**: the in-process stages over ``--sizes`` sample fractions of the scale.

It prints Markdown tables with the machine (CPU, cores, RAM, load average, versions,
date) and writes ``benchmarks/results/<date>-<scale>.json`` (``<date>b-...`` for a later
measurement of the same day, never replacing one). Load averages are recorded
beside every measurement: the timings are only comparable on an idle machine.

The prepared sample that ``leapresearch run`` caches for the notebooks lands under the
project's ``data_raw/.cache`` (the snapshot's with ``--snapshot``) whatever the data
folder; the cache files made from the benchmark's data are deleted at the end unless
``--keep-cache``. Data, run folders and logs go to ``--work`` (``/tmp/leapbench``).

Usage::

    .venv/bin/python benchmarks/run_benchmark.py --scale demo
    .venv/bin/python benchmarks/run_benchmark.py --scale districts --snapshot
    .venv/bin/python benchmarks/run_benchmark.py --scale state --sizes 0.25 0.5 1 --no-notebooks
    .venv/bin/python benchmarks/run_benchmark.py --scale districts --skip-stages --skip-pyfixest \
        --no-notebooks --set inference.procedure_draws=0
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import wraps
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_WORK = Path("/tmp/leapbench")
DEFAULT_SEED = 20210401
TARGETS = {"districts": (300.0, 8.0), "state": (600.0, 16.0)}
"""Scale -> (seconds, GB) of the whole ``leapresearch run`` (notebooks included).

Districts: issue 12 (5 minutes and 8 GB with the bootstrap, the identification checks and
the risk-set pool; it was 3 minutes and 6 GB before them)."""
GB = 2**30
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
THREAD_ENV: dict[str, str] = {}
"""Variables set for every measured subprocess (``--blas-threads``, ``--snapshot``)."""
SNAPSHOT_DIRS = ("leapresearch", "notebooks", "params")

# --------------------------------------------------------------------------------------
# Machine and memory helpers
# --------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def source_digest(root: Path = ROOT) -> str:
    """sha256 of the package source, as ``leapresearch.session.source_digest`` computes it.

    It keys the notebooks' cache: an edit of the package during a run makes the notebooks
    miss the cache and prepare the sample again.
    """
    h = hashlib.sha256()
    package = root / "leapresearch"
    for p in sorted(package.rglob("*.py")):
        h.update(p.relative_to(package).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def make_snapshot(work: Path) -> Path:
    """Copy the package, notebooks and parameters to ``work/snapshot/<source digest>``.

    Subprocesses then import the copy (``PYTHONPATH`` comes before the editable install),
    so edits of the working tree during a long benchmark neither change the code under
    measurement nor invalidate the notebooks' cache, which lives in the copy's
    ``data_raw/.cache``.
    """
    snap = work / "snapshot" / source_digest()
    if not (snap / "leapresearch").is_dir():
        tmp = snap.with_name(snap.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in SNAPSHOT_DIRS:
            shutil.copytree(
                ROOT / sub, tmp / sub, ignore=shutil.ignore_patterns("__pycache__", ".*")
            )
        (tmp / "data_raw").mkdir()
        shutil.rmtree(snap, ignore_errors=True)
        tmp.rename(snap)
    return snap


def machine_info() -> dict:
    import numpy as np
    import pandas as pd

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    versions = {"numpy": np.__version__, "pandas": pd.__version__}
    for name in ("scipy", "pyarrow", "pyfixest", "papermill", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    git = {}
    for key, args in (("commit", ["rev-parse", "HEAD"]), ("status", ["status", "--porcelain"])):
        try:
            res = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            )
            git[key] = res.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            git[key] = None
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "ram_gb": None if ram is None else round(ram, 1),
        "loadavg_start": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": git.get("commit"),
        "source_sha256": source_digest(),
        "git_dirty": bool(git.get("status")) if git.get("status") is not None else None,
    }


# --------------------------------------------------------------------------------------
# Stage meter (in the worker process)
# --------------------------------------------------------------------------------------


class Meter:
    """Wall, CPU and peak RSS per stage; stages may nest (peaks propagate to parents)."""

    def __init__(self) -> None:
        self.can_reset = _reset_hwm()
        self.stages: list[dict] = []
        self._stack: list[list] = []  # [name, running peak KiB]
        self.calls: dict[str, dict] = {}

    def _hwm(self) -> int:
        return _status_kib("VmHWM")

    @contextmanager
    def stage(self, name: str):
        gc.collect()
        if self._stack:
            self._stack[-1][1] = max(self._stack[-1][1], self._hwm())
        full = "/".join([*(s[0] for s in self._stack), name])
        _reset_hwm()
        rec = {"stage": full, "depth": full.count("/")}
        self.stages.append(rec)  # parents before their nested stages
        rss0 = _status_kib("VmRSS")
        self._stack.append([name, 0])
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            peak = max(self._stack.pop()[1], self._hwm())
            rss1 = _status_kib("VmRSS")
            if self._stack:
                self._stack[-1][1] = max(self._stack[-1][1], peak)
            _reset_hwm()
            rec.update(
                wall_s=round(wall, 3),
                cpu_s=round(cpu, 3),
                peak_gb=round(peak * 1024 / GB, 3),
                rss_before_gb=round(rss0 * 1024 / GB, 3),
                rss_after_gb=round(rss1 * 1024 / GB, 3),
                loadavg=loadavg(),
            )

    def wrap_stage(self, module, name: str, label: str | None = None) -> None:
        """Replace ``module.name`` by a wrapper that measures each call as a stage."""
        fn = getattr(module, name, None)
        if fn is None:  # renamed in the package: measured as part of its caller
            return

        @wraps(fn)
        def wrapper(*args, **kwargs):
            with self.stage(label or name):
                return fn(*args, **kwargs)

        setattr(module, name, wrapper)

    def wrap_timer(self, module, name: str, key: str | None = None) -> None:
        """Replace ``module.name`` by a wrapper adding its wall time to a running total.

        ``key`` names the total (default ``module.name``); wrappers in several modules with
        one key add to one total (each call goes through the wrapper of its caller's module).
        """
        fn = getattr(module, name, None)
        if fn is None:
            return
        key = key or f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        rec = self.calls.setdefault(key, {"calls": 0, "wall_s": 0.0})

        @wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                rec["calls"] += 1
                rec["wall_s"] += time.perf_counter() - t0

        setattr(module, name, wrapper)


# --------------------------------------------------------------------------------------
# Worker: simulate
# --------------------------------------------------------------------------------------


def worker_simulate(args: argparse.Namespace) -> None:
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

    data = simulate(
        SimulationConfig(scale=args.scale, seed=args.seed, sample_fraction=args.fraction)
    )
    fmt = "csv" if args.scale == "demo" else "parquet"
    tmp = Path(str(args.data) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_simulation(data, tmp, file_format=fmt, truth_path=Path(args.truth))
    tmp.rename(args.data)


# --------------------------------------------------------------------------------------
# Worker: in-process stages
# --------------------------------------------------------------------------------------


def _pyfixest_compare(prepared, meter: Meter, repeat: int) -> dict:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from bench_estimator import REFERENCE, WINDOW, pyfixest_fit, timed

    from leapresearch.estimation.event_study import event_study

    a = prepared.config.analysis
    if tuple(a.window) != tuple(WINDOW) or a.reference != REFERENCE:
        return {"skipped": f"window {a.window}/reference {a.reference} differ from bench"}
    panel = prepared.stacked
    out: dict = {
        "rows": len(panel),
        "units": int(panel["unit"].nunique()),
        "students": int(panel["student"].nunique()),
        "stacks": int(panel["stack"].nunique()),
        "formula": "attendance_pp ~ ev_m12 + ... + ev_p12 | unit + stack_time, "
        "weights='weight', vcov={'CRV1': 'student'} (bench_estimator.pyfixest_fit)",
        "repeat": repeat,
    }

    def ours():
        return event_study(panel, window=WINDOW, reference=REFERENCE, cluster=a.cluster)

    with meter.stage("event_study (ours)"):
        wall, cpu, res = timed(ours, repeat)
    out["ours"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    try:
        fit_default, names = pyfixest_fit(panel, None)
    except ImportError:
        out["skipped"] = "pyfixest is not installed"
        return out
    with meter.stage("pyfixest.feols default"):
        wall, cpu, pf_default = timed(fit_default, repeat)
    out["pyfixest_default"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    fit_tight, _ = pyfixest_fit(panel, 1e-10)
    with meter.stage("pyfixest.feols fixef_tol=1e-10"):
        wall, cpu, pf_tight = timed(fit_tight, 1)
    out["pyfixest_tol1e-10"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    out["ratio_pyfixest_default_over_ours"] = round(
        out["pyfixest_default"]["wall_s"] / out["ours"]["wall_s"], 2
    )
    index = [r for r, _ in names]
    ours_c = res.coefficients.reindex(index).to_numpy()
    ours_se = res.std_errors.reindex(index).to_numpy()
    for label, fit in (("default", pf_default), ("tol1e-10", pf_tight)):
        coef = fit.coef()[[n for _, n in names]].to_numpy()
        se = fit.se()[[n for _, n in names]].to_numpy()
        out[f"max_abs_coef_diff_{label}"] = float(np.nanmax(np.abs(ours_c - coef)))
        out[f"max_abs_se_diff_{label}"] = float(np.nanmax(np.abs(ours_se - se)))
        out[f"max_rel_se_diff_{label}"] = float(np.nanmax(np.abs(ours_se / se - 1)))
    out["nobs"] = [int(res.nobs), int(pf_tight._N)]
    out["clusters"] = [int(res.n_clusters), int(pf_tight._G[0])]
    return out


def worker_stages(args: argparse.Namespace) -> None:
    import warnings

    from leapresearch import pipeline
    from leapresearch.analysis import (
        event_studies,
        fitting,
        identification,
        long_term,
        robustness,
        runner,
        sample,
        specifications,
    )
    from leapresearch.config import load_config
    from leapresearch.data.contract import read_raw_tables
    from leapresearch.publish.outputs import file_records, write_table
    from leapresearch.publish.report import write_figures, write_index
    from leapresearch.session import _read_entry as read_entry
    from leapresearch.session import _write_entry as write_entry

    meter = Meter()
    # stages inside prepare()/prepare_matched()/estimate_placebo(), measured where called
    meter.wrap_stage(sample, "build_panel", "panel")
    meter.wrap_stage(robustness, "build_candidates", "candidates")
    meter.wrap_stage(sample, "run_matching", "matching")
    meter.wrap_stage(sample, "stacked_panel", "stacking")
    # running totals of the hot helpers of the estimation steps, wherever they are called
    steps = (sample, fitting, event_studies, identification, specifications, robustness, long_term)
    for name in (
        "fit_group",
        "event_study",
        "adjusted_outcome",
        "subgroup_weights",
        "group_definitions",
        "annual_stacked_panel",
        "callaway_santanna",
        "unit_table",
        "treated_attributes",
        "unit_covariates",
    ):
        for module in steps:
            meter.wrap_timer(module, name, key=f"analysis.{name}")
    warnings.simplefilter("ignore")
    config = load_config(args.params, data_dir=Path(args.data).resolve())
    result: dict = {
        "hwm_reset": meter.can_reset,
        "loadavg_start": loadavg(),
        "package": str(Path(runner.__file__).parents[1]),
    }
    t_all = time.perf_counter()

    with meter.stage("load+validate"):
        pipeline.check_manifest(config.data_path)
        tables = read_raw_tables(config.data_path, program_start=config.program_start)
    with meter.stage("checksums"):
        inputs = file_records(tables.files)
    with meter.stage("prepare"):
        prepared = sample.prepare(tables, config)
    with meter.stage("event_studies"):
        es_table, fits = event_studies.estimate_event_studies(prepared)
    with meter.stage("long_term"):
        long_term = long_term.estimate_long_term(prepared)
    with meter.stage("other_tables"):
        other = {
            "balance": sample.estimate_balance(prepared),
            "matching_summary": sample.matching_summary(prepared),
            "naive_pre_post": robustness.estimate_naive(prepared),
            "pretrend_tests": event_studies.pretrend_tests(fits),
        }
    with meter.stage("robust"):
        robust = robustness.estimate_robust(prepared)
    with meter.stage("placebo"):
        placebo = robustness.estimate_placebo(prepared)
    evaluation = runner.Evaluation(
        prepared=prepared,
        tables={
            "event_study": es_table,
            "long_term": long_term,
            **other,
            "robust_estimator": robust,
            "placebo": placebo,
        },
        event_studies=fits,
    )
    scratch = Path(tempfile.mkdtemp(prefix="stages-", dir=args.scratch))
    try:
        with meter.stage("cache_store"):  # the cache's own format (no pickle)
            entry = write_entry(dataclasses.replace(prepared, config=None), scratch / "prepared")
        result["prepared_cache_gb"] = round(entry_bytes(entry) / GB, 3)
        with meter.stage("report (tables, figures, index)"):
            for name, table in sorted(evaluation.tables.items()):
                write_table(table, name, scratch, privacy=config.privacy)
            write_figures(evaluation, scratch, config)
            write_index(evaluation, scratch, config, [])
        result["total_wall_s"] = round(time.perf_counter() - t_all, 3)
        counts = dict(prepared.panel.counts)
        result["sizes"] = {
            "students": int(prepared.panel.n_students),
            "roster_rows": len(tables.students),
            "attendance_rows": len(tables.attendance_monthly),
            "visits": len(tables.leap_visits),
            "visited_students": int(counts.get("visited_students", len(prepared.panel.events))),
            "candidate_rows": len(prepared.candidates.frame),
            "matched_units": len(prepared.units),
            "stacked_rows": len(prepared.stacked),
            "event_study_groups": len(fits),
            "input_bytes": int(sum(v["bytes"] for v in inputs.values())),
        }
        del evaluation, es_table, long_term, other, robust, placebo, fits, tables
        gc.collect()
        # what a notebook run on its own does after validating: load the cached sample
        del prepared
        gc.collect()
        with meter.stage("cache_load"):
            prepared = dataclasses.replace(read_entry(entry), config=config)
        if args.pyfixest_repeat > 0:
            result["pyfixest"] = _pyfixest_compare(prepared, meter, args.pyfixest_repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["stages"] = meter.stages
    result["calls"] = {
        k: {"calls": v["calls"], "wall_s": round(v["wall_s"], 3)} for k, v in meter.calls.items()
    }
    result["loadavg_end"] = loadavg()
    Path(args.result).write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------


def data_key(scale: str, seed: int, fraction: float) -> str:
    return f"{scale}-seed{seed}-f{fraction:g}"


def _unique_memory(p) -> int:
    """Proportional set size (PSS) of a process, else its RSS.

    A forked worker (``--workers 2``) shares the run's pages copy-on-write; the sum of
    RSS would count them twice, the sum of PSS counts each page once (Linux smaps).
    """
    try:
        return int(p.memory_full_info().pss)
    except Exception:  # no smaps (not Linux) or not permitted: RSS, an upper bound
        return int(p.memory_info().rss)


class _TreePoll:
    """A process and its descendants, polled for memory at a small cost to the machine.

    Listing the descendants scans every process of the machine and a PSS reads the page
    tables (about 8 ms of CPU a poll for three 3 GB processes, some 4% of a core at five
    polls a second, taken from the run being measured). The list is refreshed every
    ``refresh`` seconds, and the PSS is read only when the resident sizes (``statm``, a
    few microseconds) add up to more than the peak so far: a process's PSS never exceeds
    its RSS, so no new peak of the PSS sum is missed that way.
    """

    def __init__(self, root, psutil, refresh: float = 1.0) -> None:
        self.root, self.psutil, self.refresh = root, psutil, refresh
        self.procs: list = []
        self.listed = -float("inf")

    def _processes(self) -> list:
        now = time.perf_counter()
        if now - self.listed >= self.refresh:
            try:
                self.procs = [self.root, *self.root.children(recursive=True)]
            except self.psutil.Error:
                self.procs = []
            self.listed = now
        return self.procs

    def resident(self) -> int:
        """Sum of the processes' RSS (an upper bound of their PSS sum)."""
        total = 0
        for p in self._processes():
            try:
                total += int(p.memory_info().rss)
            except self.psutil.Error:
                pass
        return total

    def sizes_above(self, peak: int) -> list[tuple[int, int, str]] | None:
        """:meth:`unique_sizes` when the RSS sum exceeds ``peak``, else None (not read)."""
        return self.unique_sizes() if self.resident() > peak else None

    def unique_sizes(self) -> list[tuple[int, int, str]]:
        """``(PSS, pid, name)`` of each process (:func:`_unique_memory`)."""
        sizes = []
        for p in self._processes():
            try:
                sizes.append((_unique_memory(p), p.pid, p.name()))
            except self.psutil.Error:
                pass
        return sizes


def core_seconds() -> dict[str, float] | None:
    """Seconds the machine's cores have spent by state since boot, from ``/proc/stat``.

    ``busy`` (user, nice, system, interrupts), ``idle`` (idle or waiting for I/O) and
    ``steal`` (taken by the hypervisor for other machines); None where it cannot be read.
    Over a run, on a machine that runs nothing else, ``idle`` is the core time the run
    left unused (a serial stage, workers waiting for one another) and ``steal`` the time
    a shared host gave to others, which lengthens the wall time without the run's doing.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "idle": (idle + iowait) / tick,
        "steal": steal / tick,
    }


def run_measured(cmd: list[str], *, log_path: Path, poll: float = 0.2) -> dict:
    """Run ``cmd``; wall time, peak RSS of the largest process and of the process tree.

    stdout lines are kept with their time since the start (the run's stage log), and
    written as they come to ``<log_path>.live`` (to follow a long run, or to read how far
    a stopped one got). ``core_s``: the machine's core time during the run by state
    (:func:`core_seconds`): ``busy`` beyond the run's own CPU time is other processes'.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the locked environment
        psutil = None
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", **THREAD_ENV}
    load0 = loadavg()
    cores0 = core_seconds()
    started = time.time()
    t0 = time.perf_counter()
    with open(log_path, "w") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=str(ROOT)
        )
        lines: list[tuple[float, str]] = []

        def read() -> None:
            with open(str(log_path) + ".live", "w") as live:
                for line in proc.stdout:
                    lines.append((time.perf_counter() - t0, line.rstrip("\n")))
                    live.write(f"{lines[-1][0]:8.1f}s {lines[-1][1]}\n")
                    live.flush()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        tree_peak, tree_detail = 0, []
        root = psutil.Process(proc.pid) if psutil else None
        tree = _TreePoll(root, psutil) if root is not None else None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            sizes = tree.sizes_above(tree_peak) if tree is not None else None
            if sizes is not None:
                total = sum(r for r, _, _ in sizes)
                if total > tree_peak:
                    tree_peak = total
                    tree_detail = [
                        {
                            "pid": pid,
                            "main": pid == proc.pid,
                            "name": name,
                            "rss_gb": round(r / GB, 3),
                        }
                        for r, pid, name in sorted(sizes, reverse=True)
                        if r > 0.05 * GB
                    ]
            time.sleep(poll)
        wall = time.perf_counter() - t0
        cores1 = core_seconds()
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(timeout=10)
    with open(log_path, "a") as f:
        f.write("\n--- stdout ---\n" + "\n".join(f"{t:8.1f}s {s}" for t, s in lines) + "\n")
    return {
        "returncode": proc.returncode,
        "started_epoch": round(started, 2),
        "wall_s": round(wall, 2),
        "peak_gb_largest_process": round(usage.ru_maxrss * 1024 / GB, 3),
        "peak_gb_tree": round(tree_peak / GB, 3) if root is not None else None,
        "peak_tree_processes": tree_detail,
        "user_cpu_s": round(usage.ru_utime, 1),
        "sys_cpu_s": round(usage.ru_stime, 1),
        "core_s": None
        if cores0 is None or cores1 is None
        else {k: round(cores1[k] - cores0[k], 1) for k in cores0},
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
        "log": lines,
    }


def ensure_data(scale: str, seed: int, fraction: float, work: Path) -> dict:
    """Simulate into ``work/data/<key>`` unless present; returns where and what it cost."""
    key = data_key(scale, seed, fraction)
    folder = work / "data" / key
    info: dict = {"key": key, "dir": str(folder)}
    if folder.is_dir() and any(folder.glob("students.*")):
        info["generated"] = False
        return info
    (work / "truth").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    truth = work / "truth" / f"{key}.json"
    if fraction == 1.0:
        fmt = "csv" if scale == "demo" else "parquet"
        cmd = [str(Path(sys.executable).parent / "leapresearch"), "simulate"]
        cmd += ["--out", str(folder), "--scale", scale, "--seed", str(seed)]
        cmd += ["--format", fmt, "--truth", str(truth)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "simulate"]
        cmd += ["--scale", scale, "--seed", str(seed), "--fraction", repr(fraction)]
        cmd += ["--data", str(folder), "--truth", str(truth)]
    print(f"simulating {key} ...", flush=True)
    res = run_measured(cmd, log_path=work / "logs" / f"simulate-{key}.log")
    if res["returncode"] != 0:
        raise SystemExit(f"simulation failed, see {work / 'logs' / f'simulate-{key}.log'}")
    info.update(generated=True, **{k: v for k, v in res.items() if k != "log"})
    return info


def notebook_times(log: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per notebook, from the time stamps of the run's ``notebook: NAME`` lines.

    The last notebook's time runs to the next log line (``report: written``), so it
    includes rendering the HTML pages of all notebooks.
    """
    out: dict[str, float] = {}
    timed = re.compile(r"notebook: (\S+) \((\d+) s\)$")  # run with two at a time
    for (t, line), (t_next, _) in zip(log, [*log[1:], (None, "")], strict=True):
        if m := timed.match(line):
            out[m.group(1)] = float(m.group(2))
        elif line.startswith("notebook: ") and t_next is not None:
            out[line.split(": ", 1)[1]] = round(t_next - t, 2)
    return out


def notebooks_span(log: list[tuple[float, str]]) -> float | None:
    """Seconds from the first ``notebook:`` line to ``report: written`` (HTML included)."""
    start = next((t for t, line in log if line.startswith(("notebook: ", "notebooks: "))), None)
    end = next((t for t, line in log if line.startswith("report: written")), None)
    return None if start is None or end is None else round(end - start, 2)


PROGRESS_LINE = "benchmark-progress: draw "
PROGRESS_HOOK = f'''"""Written by benchmarks/run_benchmark.py --progress: one stderr line a draw.

Wraps ``draw_estimates`` of ``leapresearch.analysis.procedure`` when that module is
imported, in the run and in its worker processes; the numbers are not touched.
"""

import importlib.abc
import importlib.util
import sys
import time

_TARGET = "leapresearch.analysis.procedure"


class _Progress(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            draw_estimates = module.draw_estimates

            def timed(data, draw, **options):
                out = draw_estimates(data, draw, **options)
                line = f"{PROGRESS_LINE}{{draw}} done {{time.time():.2f}}"
                print(line, file=sys.stderr, flush=True)
                return out

            module.draw_estimates = timed

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Progress())
'''
"""``sitecustomize.py`` of ``--progress`` (on ``PYTHONPATH`` of the measured processes)."""


def write_progress_hook(folder: Path) -> Path:
    """``folder/sitecustomize.py`` with :data:`PROGRESS_HOOK`; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(PROGRESS_HOOK)
    return folder


def draw_progress(stderr_text: str, started: float) -> dict | None:
    """Draws done and their times (s since ``started``, an epoch) from ``--progress`` lines.

    ``draws_per_min`` is the count over the span from the first to the last draw done,
    less one (the first draw's own time is not inside that span). None without lines.
    """
    times = sorted(
        float(m.group(1)) - started
        for m in re.finditer(rf"^{PROGRESS_LINE}\d+ done ([\d.]+)$", stderr_text, re.M)
    )
    if not times:
        return None
    span = times[-1] - times[0]
    return {
        "draws_done": len(times),
        "first_done_s": round(times[0], 1),
        "last_done_s": round(times[-1], 1),
        "draws_per_min": round(60 * (len(times) - 1) / span, 2) if span > 0 else None,
    }


def parse_setting(text: str) -> str:
    """A ``--set KEY=VALUE`` argument, checked for its form (the run checks the key)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or " " in key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return f"{key.strip()}={value}"


def settings_suffix(settings: list[str]) -> str:
    """Suffix of the result file and run folders of a run with ``--set`` (empty without).

    A result with parameters other than the defaults must not be taken for the default
    run's: its file is ``<date>-<scale>-set-<settings>.json``, which the README's check of
    ``<date>-<scale>.json`` does not read.
    """
    if not settings:
        return ""
    return "-set-" + re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(settings))


def run_command(
    exe: str, data_dir: Path, target: Path, settings: list[str], extra: list[str]
) -> list[str]:
    """``leapresearch run`` with each of ``settings`` as ``-p KEY=VALUE``, then ``extra``."""
    cmd = [exe, "run", "--data", str(data_dir), "--out", str(target), "--overwrite"]
    for setting in settings:
        cmd += ["-p", setting]
    return cmd + list(extra)


BOOTSTRAP_LINE = "whole-procedure bootstrap: "
"""Start of the line the run logs when the whole-procedure bootstrap is done."""


def log_stages(log: list[tuple[float, str]]) -> dict[str, float]:
    """Stages that ``provenance.json`` does not time, from the time stamps of the run's log.

    ``procedure_bootstrap``: from the last ``event studies: ...`` line before
    ``whole-procedure bootstrap: ...`` (the fits are logged just before the draws start;
    the line before, if there is none) to that line; inside ``evaluation``. ``notebooks``:
    :func:`notebooks_span`. Absent when the run logged no such line
    (``inference.procedure_draws=0``, ``--no-notebooks``).
    """
    out: dict[str, float] = {}
    for i, (t, line) in enumerate(log):
        if i and line.startswith(BOOTSTRAP_LINE):
            before = [s for s, text in log[:i] if text.startswith("event studies:")]
            out["procedure_bootstrap"] = round(t - (before[-1] if before else log[i - 1][0]), 2)
    span = notebooks_span(log)
    if span is not None:
        out["notebooks"] = span
    return out


def draws_per_minute(draws: int | None, stages: dict[str, float]) -> float | None:
    """Bootstrap draws per minute of wall (None without draws or without the stage)."""
    seconds = stages.get("procedure_bootstrap")
    if not draws or not seconds:
        return None
    return round(60 * draws / seconds, 2)


def median_stages(runs: list[dict]) -> dict[str, float]:
    """Stage -> median wall over the runs that timed it: provenance, then log stages."""
    stages = [{**r["run_timings_s"], **r.get("log_stages_s", {})} for r in runs]
    names = list(dict.fromkeys(name for st in stages for name in st))
    return {
        name: round(statistics.median(st[name] for st in stages if name in st), 2) for name in names
    }


def cli_runs(
    data_dir: Path,
    work: Path,
    key: str,
    *,
    notebooks: bool,
    repeat: int,
    code_root: Path,
    settings: list[str] = (),
    without_notebooks: bool = True,
) -> dict:
    """Time ``leapresearch run`` without and (``notebooks``) with the notebooks.

    ``settings`` are passed as ``-p KEY=VALUE``; ``without_notebooks=False`` skips the run
    without notebooks (only meaningful with ``notebooks``).
    """
    exe = str(Path(sys.executable).parent / "leapresearch")
    variants = [("no_notebooks", ["--no-notebooks"])] if without_notebooks or not notebooks else []
    if notebooks:
        variants.append(("with_notebooks", []))
    suffix = settings_suffix(list(settings))
    out: dict = {}
    for name, extra in variants:
        runs = []
        for i in range(repeat):
            target = work / "runs" / f"{key}{suffix}-{name}"
            cmd = run_command(exe, data_dir, target, list(settings), extra)
            print(f"leapresearch run {name} ({i + 1}/{repeat}) ...", flush=True)
            before = source_digest(code_root)
            log_path = work / "logs" / f"run-{key}{suffix}-{name}-{i}.log"
            print(f"  {' '.join(cmd)}\n  log: {log_path}", flush=True)
            res = run_measured(cmd, log_path=log_path)
            # an edit of the package during the run makes the notebooks miss the cache
            res["source_changed_during_run"] = source_digest(code_root) != before
            if res["returncode"] != 0:
                raise SystemExit(f"leapresearch run failed: {log_path}")
            prov = json.loads((target / "provenance.json").read_text())
            res["command"] = prov.get("command")
            res["parameters_sha256"] = prov.get("parameters_sha256")
            res["procedure_draws"] = (
                prov.get("parameters", {}).get("inference", {}).get("procedure_draws")
            )
            res["run_timings_s"] = prov.get("timings_seconds", {})
            res["log_stages_s"] = log_stages(res["log"])
            res["procedure_draws_per_min"] = draws_per_minute(
                res["procedure_draws"], res["log_stages_s"]
            )
            res["notebooks_s"] = notebook_times(res["log"])
            res["notebooks_span_s"] = notebooks_span(res["log"])
            res["draw_progress"] = draw_progress(
                log_path.read_text(errors="replace"), res["started_epoch"]
            )
            res["log"] = [f"{t:.1f}s {s}" for t, s in res["log"]]
            runs.append(res)
        out[name] = {
            "median_stage_s": median_stages(runs),
            "runs": runs,
            "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
            "median_peak_gb_tree": round(
                statistics.median(r["peak_gb_tree"] or 0.0 for r in runs), 3
            ),
            "median_peak_gb_largest_process": round(
                statistics.median(r["peak_gb_largest_process"] for r in runs), 3
            ),
        }
    if notebooks:
        # two measures of the notebooks stage: the difference of the medians of the two
        # variants (noisy on a shared machine) and the span of the notebooks in the log
        if "no_notebooks" in out:
            out["notebooks_stage_s"] = round(
                out["with_notebooks"]["median_wall_s"] - out["no_notebooks"]["median_wall_s"], 2
            )
        out["notebooks_span_s"] = round(
            statistics.median(r["notebooks_span_s"] or 0.0 for r in out["with_notebooks"]["runs"]),
            2,
        )
    return out


def stage_runs(data_dir: Path, work: Path, *, repeat: int, pyfixest_repeat: int) -> dict:
    runs = []
    for i in range(repeat):
        res_path = work / "logs" / f"stages-{data_dir.name}-{i}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "stages"]
        cmd += ["--data", str(data_dir), "--result", str(res_path), "--scratch", str(work)]
        cmd += ["--pyfixest-repeat", str(pyfixest_repeat if i == 0 else 0)]
        print(f"in-process stages ({i + 1}/{repeat}) ...", flush=True)
        meas = run_measured(cmd, log_path=work / "logs" / f"stages-{data_dir.name}-{i}.log")
        if meas["returncode"] != 0:
            raise SystemExit(f"stage worker failed: {work / 'logs'}")
        res = json.loads(res_path.read_text())
        res["process"] = {k: v for k, v in meas.items() if k != "log"}
        runs.append(res)
    # medians over repetitions, stage by stage
    names = [s["stage"] for s in runs[0]["stages"]]
    table = []
    for n, name in enumerate(names):
        rows = [
            r["stages"][n] for r in runs if n < len(r["stages"]) and r["stages"][n]["stage"] == name
        ]
        table.append(
            {
                "stage": name,
                "depth": rows[0]["depth"],
                "wall_s": round(statistics.median(r["wall_s"] for r in rows), 3),
                "cpu_s": round(statistics.median(r["cpu_s"] for r in rows), 3),
                "peak_gb": round(statistics.median(r["peak_gb"] for r in rows), 3),
                "rss_after_gb": round(statistics.median(r["rss_after_gb"] for r in rows), 3),
                "loadavg": rows[0]["loadavg"],
                "n": len(rows),
            }
        )
    return {
        "repeat": repeat,
        "hwm_reset": runs[0]["hwm_reset"],
        "sizes": runs[0]["sizes"],
        "package": runs[0].get("package"),
        "prepared_cache_gb": runs[0]["prepared_cache_gb"],
        "total_wall_s": round(statistics.median(r["total_wall_s"] for r in runs), 2),
        "peak_gb_process": round(
            statistics.median(r["process"]["peak_gb_largest_process"] for r in runs), 3
        ),
        "stages": table,
        "calls": runs[0]["calls"],
        "pyfixest": runs[0].get("pyfixest"),
        "runs": runs,
    }


def cache_entries(cache_dir: Path) -> set[Path]:
    """The entries (folders) of a ``data_raw/.cache`` (empty if it does not exist)."""
    cache_dir = Path(cache_dir)
    return set(cache_dir.iterdir()) if cache_dir.is_dir() else set()


def entry_bytes(path: Path) -> int:
    """Bytes of the files of a cache entry (a folder of JSON, Parquet and ``.npz``)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


CLI_VARIANTS = ("no_notebooks", "with_notebooks")
STAGE_ORDER = (
    "load",
    "panel",
    "candidates",
    "evaluation",
    "matching",
    "stacking",
    "censoring_weights",
    "procedure_bootstrap",
    "outputs",
    "notebooks",
)
"""Order of a run's stages in the printed table (a stage not listed comes last)."""


def stage_table(cli: dict) -> list[str]:
    """The runs' own stages (``provenance.json``, then the log's), median wall per variant."""
    variants = [v for v in CLI_VARIANTS if v in cli]
    # results written before the per-stage medians: computed from their runs
    medians = {v: cli[v].get("median_stage_s") or median_stages(cli[v]["runs"]) for v in variants}
    names = sorted(
        dict.fromkeys(n for v in variants for n in medians[v]),
        key=lambda n: STAGE_ORDER.index(n) if n in STAGE_ORDER else len(STAGE_ORDER),
    )
    rows = [[n, *(medians[v].get(n) for v in variants)] for n in names]
    rows.append(["whole run", *(cli[v]["median_wall_s"] for v in variants)])
    lines = [
        "Stages of the run, median wall s (provenance.json's `timings_seconds`: `evaluation` "
        "includes the matching, stacking and censoring weights it times separately and the "
        "whole-procedure bootstrap; `procedure_bootstrap` and `notebooks` are spans of the "
        "run's log):",
        "",
        md_table(["stage", *(f"wall s, {v.replace('_', ' ')}" for v in variants)], rows),
    ]
    for v in variants:
        rates = [r.get("procedure_draws_per_min") for r in cli[v]["runs"]]
        if any(rates):
            draws = cli[v]["runs"][0]["procedure_draws"]
            lines += [
                "",
                f"Whole-procedure bootstrap ({v.replace('_', ' ')}): {draws} draws, "
                + ", ".join(f"{x:.2f}" for x in rates if x)
                + " draws per minute of wall (each run).",
            ]
        progress = [r["draw_progress"] for r in cli[v]["runs"] if r.get("draw_progress")]
        if progress:
            lines += [
                "",
                f"Draws timed one by one (`--progress`, {v.replace('_', ' ')}): "
                + "; ".join(
                    f"{p['draws_done']} done from {p['first_done_s']:.0f} s to "
                    f"{p['last_done_s']:.0f} s of the run, {p['draws_per_min']} per minute "
                    "between the first and the last (without the workers' start)"
                    for p in progress
                )
                + ".",
            ]
    return lines


def render(result: dict) -> str:
    m = result["machine"]
    scale = result["scale"]
    out = [f"## leapresearch benchmark: scale `{scale}`, seed {result['seed']}", ""]
    settings = result.get("set") or []
    out += [
        "Parameters: "
        + (
            "changed with " + ", ".join(f"`-p {x}`" for x in settings)
            if settings
            else "the defaults (no `--set`)"
        ),
        "",
    ]
    out.append(
        f"{m['date']} | {m['cpu']} | {m['cores_available']} cores | {m['ram_gb']} GB RAM | "
        f"Python {m['python']} | numpy {m['versions']['numpy']} | pandas "
        f"{m['versions']['pandas']} | pyfixest {m['versions'].get('pyfixest')} | "
        f"commit {(m['git_commit'] or '')[:10]}{' (dirty)' if m['git_dirty'] else ''}, "
        f"source {m.get('source_sha256')} | "
        f"load average at start {m['loadavg_start']} | threads: "
        + (", ".join(f"{k}={v}" for k, v in result["thread_env"].items() if v) or "default")
    )
    full = result.get("stages")
    if full:
        s = full["sizes"]
        out += [
            "",
            f"Data: {s['students']:,} students, {s['attendance_rows']:,} attendance rows, "
            f"{s['visited_students']:,} visited students, {s['candidate_rows']:,} candidate "
            f"rows, {s['matched_units']:,} matched units, {s['stacked_rows']:,} stacked "
            f"rows, {s['event_study_groups']} event-study groups; prepared sample "
            f"{full.get('prepared_cache_gb', full.get('prepared_pickle_gb', 0.0)):.2f} GB "
            "in the cache.",
        ]
    cli = result.get("cli")
    if cli:
        rows = []
        for name in ("no_notebooks", "with_notebooks"):
            if name not in cli:
                continue
            c = cli[name]
            r0 = c["runs"][0]
            rows.append(
                [
                    f"`leapresearch run` {name.replace('_', ' ')}",
                    c["median_wall_s"],
                    c["median_peak_gb_largest_process"],
                    c["median_peak_gb_tree"],
                    len(c["runs"]),
                    f"{r0['loadavg_before'][0]} → {r0['loadavg_after'][0]}",
                ]
            )
        out += ["", "### Command line (subprocess)", ""]
        if result.get("snapshot"):
            out += [f"Measured on a snapshot of the working tree: `{result['snapshot']}`.", ""]
        edited = [
            f"{name} #{i + 1}"
            for name in ("no_notebooks", "with_notebooks")
            for i, r in enumerate(cli.get(name, {}).get("runs", []))
            if r.get("source_changed_during_run")
        ]
        if edited:
            out += [
                "**Warning**: the package source changed during "
                + ", ".join(edited)
                + " (the notebooks missed the cache and prepared the sample again); "
                "use `--snapshot`.",
                "",
            ]
        out.append(
            md_table(
                ["run", "wall s", "peak GB (largest process)", "peak GB (tree)", "n", "load 1m"],
                rows,
            )
        )
        if "notebooks_span_s" in cli:
            nb = cli["with_notebooks"]["runs"][0]["notebooks_s"]
            diff = (
                f" (difference of the two variants' medians: {cli['notebooks_stage_s']:.1f} s)"
                if "notebooks_stage_s" in cli
                else ""
            )
            out += [
                "",
                f"Notebooks stage: {cli['notebooks_span_s']:.1f} s from the run's log{diff}; "
                "per notebook (first run; the last includes the HTML rendering): "
                + ", ".join(f"{k} {v:.1f} s" for k, v in nb.items()),
            ]
        detail = (cli.get("with_notebooks") or cli["no_notebooks"])["runs"][0].get(
            "peak_tree_processes"
        )
        if detail:
            out += [
                "",
                f"At the tree's peak ({'with' if 'with_notebooks' in cli else 'no'} notebooks, "
                "first run): "
                + " + ".join(
                    f"{'run' if d['main'] else d['name']} {d['rss_gb']:.2f} GB" for d in detail
                ),
            ]
        out += ["", *stage_table(cli)]
        target = TARGETS.get(scale)
        if target and "with_notebooks" in cli:
            c = cli["with_notebooks"]
            ok_t = c["median_wall_s"] < target[0]
            ok_m = max(c["median_peak_gb_tree"], c["median_peak_gb_largest_process"]) < target[1]
            out += [
                "",
                f"Target < {target[0] / 60:.0f} min and < {target[1]:.0f} GB: time "
                f"{'met' if ok_t else 'MISSED'} ({c['median_wall_s'] / 60:.1f} min), memory "
                f"{'met' if ok_m else 'MISSED'} ({c['median_peak_gb_tree']:.1f} GB tree).",
            ]
    if full:
        out += ["", f"### Stages in-process (median of {full['repeat']})", ""]
        if not full["hwm_reset"]:
            out.append("(VmHWM could not be reset: peaks are cumulative)\n")
        rows = []
        for st in full["stages"]:
            name = ("&nbsp;&nbsp;" * st["depth"]) + st["stage"].rsplit("/", 1)[-1]
            rows.append([name, st["wall_s"], st["peak_gb"], st["rss_after_gb"], st["loadavg"][0]])
        out.append(md_table(["stage", "wall s", "peak GB", "RSS after GB", "load 1m"], rows))
        out += [
            "",
            f"Total in-process (without notebooks): {full['total_wall_s']:.1f} s; peak of the "
            f"worker process {full['peak_gb_process']:.2f} GB.",
            "",
            "Time inside helpers (cumulative over every call of the first repetition): "
            + ", ".join(
                f"{k} {v['wall_s']:.1f} s/{v['calls']}"
                for k, v in sorted(full["calls"].items(), key=lambda kv: -kv[1]["wall_s"])
                if v["calls"]
            ),
        ]
        top = [st for st in full["stages"] if st["depth"] == 0]
        dom = max(top, key=lambda st: st["wall_s"])
        out += ["", f"Dominant top-level stage: **{dom['stage']}** ({dom['wall_s']:.1f} s)."]
        pf = full.get("pyfixest")
        if pf:
            out += ["", "### Estimator vs pyfixest on the stacked matched panel", ""]
            if "ours" in pf:
                out.append(
                    f"{pf['rows']:,} rows, {pf['units']:,} units, {pf['students']:,} students, "
                    f"{pf['stacks']} stacks; median of {pf['repeat']}."
                )
                out.append("")
                rows = [
                    [
                        "leapresearch.estimation.event_study",
                        pf["ours"]["wall_s"],
                        pf["ours"]["cpu_s"],
                    ]
                ]
                for key, label in (
                    ("pyfixest_default", "pyfixest.feols (default demeaner)"),
                    ("pyfixest_tol1e-10", "pyfixest.feols (fixef_tol=1e-10, 1 run)"),
                ):
                    if key in pf:
                        rows.append([label, pf[key]["wall_s"], pf[key]["cpu_s"]])
                out.append(md_table(["estimator", "wall s", "cpu s"], rows))
            if "ratio_pyfixest_default_over_ours" in pf:
                out += [
                    "",
                    f"pyfixest / ours: {pf['ratio_pyfixest_default_over_ours']:.1f}x; max |coef "
                    f"diff| {pf['max_abs_coef_diff_default']:.1e} (default), "
                    f"{pf['max_abs_coef_diff_tol1e-10']:.1e} (tol 1e-10); max |SE diff| "
                    f"{pf['max_abs_se_diff_default']:.1e} / {pf['max_abs_se_diff_tol1e-10']:.1e}"
                    f" (relative {pf['max_rel_se_diff_tol1e-10']:.1e}); nobs {pf['nobs']}, "
                    f"clusters {pf['clusters']}.",
                ]
            if "skipped" in pf:
                out += ["", f"pyfixest comparison skipped: {pf['skipped']}"]
    sc = result.get("scaling")
    if sc:
        names = ["load+validate", "prepare", "event_studies", "long_term", "robust", "placebo"]
        rows = []
        for item in sc:
            st = {s["stage"]: s for s in item["stages"]}
            rows.append(
                [
                    item["fraction"],
                    item["sizes"]["students"],
                    item["sizes"]["stacked_rows"],
                    *[st[n]["wall_s"] if n in st else None for n in names],
                    item["total_wall_s"],
                    item["peak_gb_process"],
                    item["loadavg"][0],
                ]
            )
        out += ["", "### Scaling (in-process stages, wall s)", ""]
        out.append(
            md_table(
                ["fraction", "students", "stacked rows", *names, "total s", "peak GB", "load 1m"],
                rows,
            )
        )
    caches = result.get("cache", [])
    if caches:
        kept = [c for c in caches if not c["deleted"]]
        out += [
            "",
            f"Cache entries left by the runs in {Path(caches[0]['file']).parent}: "
            f"{len(caches)}, {sum(c['bytes'] for c in caches) / GB:.2f} GB "
            f"({len(caches) - len(kept)} deleted, {len(kept)} kept).",
        ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=["demo", "districts", "state"], default="demo")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 1.0],
        help="sample fractions of the scale for the scaling table (1 = full size only)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder of the JSON result")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data, runs and logs")
    p.add_argument(
        "--notebooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time `leapresearch run` with the notebooks (default: yes)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions of each measurement (default: 3 for demo, 1 otherwise)",
    )
    p.add_argument(
        "--only-with-notebooks",
        action="store_true",
        help="time `leapresearch run` only with the notebooks (not also with --no-notebooks)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        metavar="KEY=VALUE",
        type=parse_setting,
        action="append",
        default=[],
        help="passed to every `leapresearch run` as `-p KEY=VALUE` (repeatable); recorded in "
        "the result, whose file is then <date>-<scale>-set-<settings>.json",
    )
    p.add_argument(
        "--progress",
        action="store_true",
        help="log a line per whole-procedure bootstrap draw to the run's stderr log (a "
        "sitecustomize.py in WORK/progress wraps the draw function), to read the draws' "
        "rate of a run stopped before its end; recorded in the result",
    )
    p.add_argument("--skip-cli", action="store_true", help="no `leapresearch run` subprocess")
    p.add_argument("--skip-stages", action="store_true", help="no in-process stages")
    p.add_argument("--skip-pyfixest", action="store_true")
    p.add_argument("--keep-cache", action="store_true", help="keep the data_raw/.cache file")
    p.add_argument(
        "--snapshot",
        action="store_true",
        help="measure a copy of the package, notebooks and parameters in WORK/snapshot "
        "(immune to edits of the working tree during the benchmark; its own cache)",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        help="set OPENBLAS_NUM_THREADS and OMP_NUM_THREADS for the measured processes "
        "(default: inherit the environment)",
    )
    # worker modes (internal)
    p.add_argument("--worker", choices=["simulate", "stages"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--truth", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--scratch", type=Path, default=DEFAULT_WORK, help=argparse.SUPPRESS)
    p.add_argument("--params", default="demo", help=argparse.SUPPRESS)
    p.add_argument("--pyfixest-repeat", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker == "simulate":
        return worker_simulate(args)
    if args.worker == "stages":
        return worker_stages(args)

    repeat = args.repeat or (3 if args.scale == "demo" else 1)
    if args.blas_threads is not None:
        THREAD_ENV.update(
            OPENBLAS_NUM_THREADS=str(args.blas_threads), OMP_NUM_THREADS=str(args.blas_threads)
        )
    work = args.work.resolve()
    for sub in ("data", "runs", "logs", "truth"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    code_root = ROOT
    if args.snapshot:
        code_root = make_snapshot(work)
        THREAD_ENV["PYTHONPATH"] = os.pathsep.join(
            [str(code_root), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        print(f"measuring the snapshot {code_root}")
    if args.progress:
        hook = write_progress_hook(work / "progress")
        THREAD_ENV["PYTHONPATH"] = os.pathsep.join(
            [str(hook), *filter(None, [THREAD_ENV.get("PYTHONPATH", os.environ.get("PYTHONPATH"))])]
        )
    result: dict = {
        "schema": "leapresearch-benchmark/1",
        "scale": args.scale,
        "seed": args.seed,
        "repeat": repeat,
        "machine": machine_info(),
        "thread_env": {v: {**os.environ, **THREAD_ENV}.get(v) for v in THREAD_VARS},
        "snapshot": str(code_root) if args.snapshot else None,
        "set": list(args.settings),
        "progress": args.progress,
    }
    print(f"machine: {result['machine']['cpu']}, load {result['machine']['loadavg_start']}")
    # the other fractions serve only the in-process scaling table
    sizes = [1.0] if args.skip_stages else sorted(set(args.sizes) | {1.0})
    data = {f: ensure_data(args.scale, args.seed, f, work) for f in sizes}
    result["data"] = {f"{f:g}": d for f, d in data.items()}
    full_dir = Path(data[1.0]["dir"])
    key = data[1.0]["key"]

    cache_dir = code_root / "data_raw" / ".cache"
    cache_before = cache_entries(cache_dir)  # entries that appear are the benchmark's
    try:
        if not args.skip_cli:
            result["cli"] = cli_runs(
                full_dir,
                work,
                key,
                notebooks=args.notebooks,
                repeat=repeat,
                code_root=code_root,
                settings=args.settings,
                without_notebooks=not args.only_with_notebooks,
            )
        if not args.skip_stages:
            result["stages"] = stage_runs(
                full_dir, work, repeat=repeat, pyfixest_repeat=0 if args.skip_pyfixest else 3
            )
            scaling = []
            for f in sizes:
                if f == 1.0:
                    st = result["stages"]
                else:
                    st = stage_runs(Path(data[f]["dir"]), work, repeat=1, pyfixest_repeat=0)
                scaling.append(
                    {
                        "fraction": f,
                        "sizes": st["sizes"],
                        "stages": st["stages"],
                        "total_wall_s": st["total_wall_s"],
                        "peak_gb_process": st["peak_gb_process"],
                        "loadavg": st["runs"][0]["loadavg_start"],
                    }
                )
            if len(scaling) > 1:
                result["scaling"] = scaling
    finally:
        result["cache"] = []
        for path in sorted(cache_entries(cache_dir) - cache_before):
            info = {"file": str(path), "bytes": entry_bytes(path), "deleted": False}
            if not args.keep_cache:
                shutil.rmtree(path, ignore_errors=True)
                info["deleted"] = True
            result["cache"].append(info)
    result["machine"]["loadavg_end"] = loadavg()

    text = render(result)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = result_path(args.out, dt.date.today().isoformat(), args.scale, args.settings)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {path}")


def result_path(out: Path, day: str, scale: str, settings: list[str]) -> Path:
    """``OUT/<day>-<scale><settings>.json``; a later measurement of the same day never
    replaces an earlier one: ``<day>b-...``, ``<day>c-...`` (they sort after it, so the
    README's check reads the latest)."""
    name = f"{scale}{settings_suffix(settings)}.json"
    letters = ["", *"bcdefghijklmnopqrstuvwxyz"]
    taken = [i for i, letter in enumerate(letters) if (out / f"{day}{letter}-{name}").exists()]
    following = max(taken) + 1 if taken else 0  # after the last, not in a gap a rename left
    if following == len(letters):
        raise FileExistsError(f"{out}: 26 results of {day} for {name} already")
    return out / f"{day}{letters[following]}-{name}"


if __name__ == "__main__":
    main()
