"""Benchmark ``leapresearch.estimation.event_study`` against ``pyfixest.feols`` at full scale.

Generates a stacked matched panel of about 1.75 million rows (8,700 treated students,
three matched comparison units each, 53 school months per unit with 5% missing, 30 stacks,
24 event-time terms), times both estimators (median of ``--repeats`` runs), checks that
coefficients agree to 1e-6 and standard errors to a relative 1e-6, measures the peak
memory that ``event_study`` allocates (tracemalloc), and prints a table. Times are
medians of wall-clock and of this process's CPU time (pyfixest's Rust demeaner is
multi-threaded, so its CPU time can exceed its wall time).

pyfixest is an optional benchmark dependency (``.venv/bin/pip install pyfixest``); the
package never imports it. Both estimators drop singletons, use the matching weights as
analytic weights and cluster by student with pyfixest's default small-sample correction
``ssc(k_adj=True, k_fixef="nonnested", G_adj=True)``.

Usage::

    .venv/bin/python benchmarks/bench_estimator.py [--treated 8700] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd

from leapresearch.estimation.event_study import event_study

WINDOW = (-12, 12)
REFERENCE = -1


def school_month(i: np.ndarray) -> np.ndarray:
    """School-month index of the i-th school month counted from September 2016."""
    return 10 * (2016 + i // 10) + i % 10


def make_panel(
    n_treated: int = 8700,
    *,
    k: int = 3,
    n_stacks: int = 30,
    months: int = 53,
    missing: float = 0.05,
    seed: int = 20210401,
) -> pd.DataFrame:
    """Stacked matched panel with the column contract of the lead's panel builder."""
    rng = np.random.default_rng(seed)
    event_i = np.sort(rng.choice(np.arange(25, 70), n_stacks, replace=False))
    stack_of_treated = rng.integers(0, n_stacks, n_treated)
    n_units = n_treated * (1 + k)
    unit_event = np.repeat(event_i[stack_of_treated], 1 + k)
    treated_u = np.tile(np.r_[1, np.zeros(k, dtype=np.int64)], n_treated)
    # comparison students come from a pool and may serve in several stacks
    pool = 2 * n_treated
    student_u = np.where(
        treated_u == 1, np.arange(n_units), n_units + rng.integers(0, pool, n_units)
    )
    weight_u = np.where(treated_u == 1, 1.0, rng.integers(1, 4, n_units) / 3)
    school_of_student = rng.integers(0, 600, n_units + pool)
    # each unit is followed from 25 months before to 27 months after its event month
    unit = np.repeat(np.arange(n_units), months)
    pos = np.tile(np.arange(months), n_units)
    t_i = unit_event[unit] - months // 2 + 1 + pos
    keep = rng.random(unit.size) > missing
    unit, t_i = unit[keep], t_i[keep]
    rel = t_i - unit_event[unit]
    tr = treated_u[unit]
    effect = np.where((tr == 1) & (rel >= 0), 2.0 + 0.1 * np.minimum(rel, 12), 0.0)
    y = (
        88.0
        + rng.normal(0, 6, n_units)[unit]
        + rng.normal(0, 1.5, 200)[t_i % 200]
        + effect
        + rng.normal(0, 8, unit.size)
    )
    student = student_u[unit]
    return pd.DataFrame(
        {
            "unit": unit.astype(np.int64),
            "stack": school_month(unit_event[unit]).astype(np.int64),
            "time": school_month(t_i).astype(np.int64),
            "rel_time": rel.astype(np.int64),
            "treated": tr.astype(np.int8),
            "weight": weight_u[unit],
            "student": student.astype(np.int64),
            "school": school_of_student[student].astype(np.int64),
            "attendance_pp": y,
        }
    )


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU time (this process) of ``repeats`` calls, and the last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def pyfixest_fit(panel: pd.DataFrame, fixef_tol: float | None):
    """A closure fitting the same regression with ``pyfixest.feols`` and the term names.

    ``fixef_tol=None`` keeps pyfixest's default demeaner (alternating projections,
    tolerance 1e-6); a number sets ``MapDemeaner(fixef_tol=...)``.
    """
    import pyfixest as pf
    from pyfixest.demeaners import MapDemeaner

    df = panel.copy()
    rel = df["rel_time"].clip(*WINDOW)
    names = []
    for r in range(WINDOW[0], WINDOW[1] + 1):
        if r == REFERENCE:
            continue
        name = f"ev_{'m' if r < 0 else 'p'}{abs(r)}"
        df[name] = ((rel == r) & (df["treated"] == 1)).astype(np.float64)
        names.append((r, name))
    df["stack_time"] = df["stack"] * 1000 + df["time"]
    fml = "attendance_pp ~ " + " + ".join(n for _, n in names) + " | unit + stack_time"

    demeaner = None if fixef_tol is None else MapDemeaner(fixef_tol=fixef_tol)

    def fit():
        return pf.feols(fml, data=df, weights="weight", vcov={"CRV1": "student"}, demeaner=demeaner)

    return fit, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--treated", type=int, default=8700)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20210401)
    parser.add_argument(
        "--fixef-tol",
        type=float,
        default=1e-10,
        help="pyfixest fixef_tol of the extra fit used for the equality checks",
    )
    parser.add_argument("--skip-pyfixest", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    panel = make_panel(args.treated, seed=args.seed)
    print(
        f"panel: {len(panel):,} rows, {panel['unit'].nunique():,} units, "
        f"{panel['stack'].nunique()} stacks, {panel['student'].nunique():,} students "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )

    sec_ours, cpu_ours, res = timed(lambda: event_study(panel, window=WINDOW), args.repeats)
    tracemalloc.start()
    event_study(panel, window=WINDOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows = [("leapresearch.estimation.event_study", sec_ours, cpu_ours, peak / 2**20)]

    checks = []
    if not args.skip_pyfixest:
        try:
            fit_default, names = pyfixest_fit(panel, None)
        except ImportError:
            print("pyfixest is not installed: skipping the comparison")
        else:
            sec_pf, cpu_pf, pf_default = timed(fit_default, args.repeats)
            rows.append(("pyfixest.feols, default demeaner", sec_pf, cpu_pf, float("nan")))
            fit_tight, _ = pyfixest_fit(panel, args.fixef_tol)
            sec_tight, cpu_tight, pf_tight = timed(fit_tight, 1)
            label = f"pyfixest.feols, fixef_tol={args.fixef_tol:g}"
            rows.append((label, sec_tight, cpu_tight, float("nan")))
            index = [r for r, _ in names]
            ours_c = res.coefficients.reindex(index).to_numpy()
            ours_se = res.std_errors.reindex(index).to_numpy()
            for label, pf_fit in (("default", pf_default), (f"tol {args.fixef_tol:g}", pf_tight)):
                coef = pf_fit.coef()[[n for _, n in names]].to_numpy()
                se = pf_fit.se()[[n for _, n in names]].to_numpy()
                d_coef = float(np.max(np.abs(ours_c - coef)))
                d_se = float(np.max(np.abs(ours_se / se - 1)))
                checks += [
                    (f"max |coef diff| ({label})", f"{d_coef:.2e}", d_coef < 1e-6),
                    (f"max |se ratio - 1| ({label})", f"{d_se:.2e}", d_se < 1e-6),
                ]
            checks += [
                ("nobs (ours, pyfixest)", (res.nobs, int(pf_tight._N)), res.nobs == pf_tight._N),
                ("K in (N-1)/(N-K)", (res.df_k, int(pf_tight._df_k)), res.df_k == pf_tight._df_k),
                (
                    "clusters G",
                    (res.n_clusters, int(pf_tight._G[0])),
                    res.n_clusters == pf_tight._G[0],
                ),
            ]

    print()
    print(f"{'estimator':34s} {'wall s':>8s} {'cpu s':>8s} {'peak MiB':>9s}")
    for name, sec, cpu, mib in rows:
        print(f"{name:34s} {sec:8.2f} {cpu:8.2f} {mib:9.0f}")
    if len(rows) > 1:
        print(f"speed-up vs pyfixest default: {rows[1][1] / rows[0][1]:.1f}x")
    if checks:
        print()
        for name, value, ok in checks:
            print(f"{name:30s} {value!s:>22s}  {'OK' if ok else 'MISMATCH'}")
    print()
    print(res.table().round(4).to_string(index=False))
    test = res.pretrend_test()
    print(f"\npre-trend F({test.df}, {test.df_denom}) = {test.stat:.3f}, p = {test.p_value:.3f}")
    tight_ok = all(ok for name, _, ok in checks if "default" not in name)
    if checks and not tight_ok:
        raise SystemExit("benchmark: results differ from pyfixest")


if __name__ == "__main__":
    main()
