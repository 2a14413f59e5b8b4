"""Time and profile whole-procedure bootstrap draws in one process (issue 27 item 2).

Prepares the matched sample of a data folder as a run does, then runs draws ``0 ..
DRAWS-1`` of :func:`leapresearch.analysis.procedure.draw_estimates` under cProfile and
prints the wall time, CPU time and minor page faults per draw and the functions that take
the time. ``--estimates FILE`` pickles the draws' estimates, so that two commits can be
checked for the same numbers (``--compare FILE``). Wall times of runs sharing the machine
are comparable only with each other; the whole run is measured by ``run_benchmark.py``.

    python benchmarks/profile_draws.py DATA [--draws 3] [--estimates OUT.pkl] [--compare OLD.pkl]

``--no-profile`` times the draws without cProfile (its overhead is not counted): draw 0
first, untimed (the first draw pays for imports and caches), then draws ``1 .. DRAWS``
one by one, with each draw's wall time and the mean CPU time a draw.
``--paired-start-terms`` times each draw with the shared plan's first-step terms and
without them, alternated in one process, and checks that both give the same estimates;
``--paired-match-keys`` the same with the plan's matching keys and strata and without.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pickle
import pstats
import resource
import time
from pathlib import Path

import numpy as np

from leapresearch.analysis import procedure
from leapresearch.analysis.sample import prepare
from leapresearch.config import load_config
from leapresearch.data.contract.validate import read_raw_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a data folder (leapresearch simulate --out)")
    parser.add_argument("--draws", type=int, default=3, help="draws to time (from draw 0)")
    parser.add_argument("--vintage", default="demo", help="parameter file of the run")
    parser.add_argument(
        "-p",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter override, as leapresearch run -p (e.g. "
        "inference.procedure_scheme=bayesian)",
    )
    parser.add_argument("--estimates", type=Path, help="pickle the draws' estimates here")
    parser.add_argument("--compare", type=Path, help="estimates pickled by an earlier call")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument(
        "--no-profile", action="store_true", help="time draws 1..DRAWS without cProfile"
    )
    parser.add_argument(
        "--paired-start-terms",
        action="store_true",
        help="CPU time of draws 1..DRAWS with the plan's first-step terms and without them, "
        "alternated in one process (the paired difference a draw), and the same estimates",
    )
    parser.add_argument(
        "--paired-match-keys",
        action="store_true",
        help="as --paired-start-terms, with the plan's matching keys and strata and without",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    config = load_config(args.vintage, overrides=args.set)
    prepared = prepare(read_raw_tables(args.data), config)
    data = procedure.procedure_data(prepared)
    print(f"matched sample: {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    plan = procedure.shared_plan(data)  # as a block of draws of a run builds it
    print(f"shared propensity plan: {time.perf_counter() - start:.1f} s")
    if args.paired_start_terms:
        groups = tuple(dataclasses.replace(g, start_terms=None) for g in plan.groups)
        _paired(data, plan, dataclasses.replace(plan, groups=groups), args.draws, "the terms")
        return
    if args.paired_match_keys:
        without = dataclasses.replace(plan, match_keys=None)
        _paired(data, plan, without, args.draws, "the matching keys")
        return
    if args.no_profile:
        procedure.draw_estimates(data, 0, plan=plan)  # untimed: imports and caches
        before = resource.getrusage(resource.RUSAGE_SELF)
        walls = []
        estimates = {}
        for d in range(1, args.draws + 1):
            start = time.perf_counter()
            estimates[d] = procedure.draw_estimates(data, d, plan=plan)
            walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / args.draws
        print(
            f"draws 1-{args.draws}, not profiled: "
            + ", ".join(f"{w:.1f}" for w in walls)
            + f" s wall (mean {sum(walls) / len(walls):.1f} s), {cpu:.1f} s of CPU a draw"
        )
        _save_or_compare(args, estimates)
        return
    before = resource.getrusage(resource.RUSAGE_SELF)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    estimates = {d: procedure.draw_estimates(data, d, plan=plan) for d in range(args.draws)}
    profile.disable()
    wall = (time.perf_counter() - start) / args.draws
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / args.draws
    system = (after.ru_stime - before.ru_stime) / args.draws
    faults = (after.ru_minflt - before.ru_minflt) / args.draws
    print(
        f"per draw ({args.draws} draws, profiled): {wall:.1f} s wall, {user:.1f} s user and "
        f"{system:.1f} s system CPU, {faults:,.0f} minor page faults"
    )
    _save_or_compare(args, estimates)
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)


def _same_estimates(a: dict, b: dict) -> bool:
    """Whether two draws' estimates hold the same groups with the same numbers, bit for bit."""
    return a.keys() == b.keys() and all(a[g].equals(b[g]) for g in a)


def _paired(data, plan, without, draws: int, what: str) -> None:
    """Each draw with ``plan`` and with ``without`` (it less ``what``), in alternating order.

    Pairs of the same draw in one process, the order switched every draw, so that a
    shared machine's drift falls on both; prints each pair's CPU seconds, the mean
    difference with its standard error, and whether every pair gave the same estimates.
    """
    procedure.draw_estimates(data, 0, plan=plan)  # untimed: imports and caches
    pairs, same = [], True
    for d in range(1, draws + 1):
        cpu, est = {}, {}
        for name in ("with", "without") if d % 2 else ("without", "with"):
            before = time.process_time()
            est[name] = procedure.draw_estimates(data, d, plan=plan if name == "with" else without)
            cpu[name] = time.process_time() - before
        same &= _same_estimates(est["with"], est["without"])
        pairs.append((cpu["with"], cpu["without"]))
        print(f"draw {d}: {cpu['with']:.2f} s with {what}, {cpu['without']:.2f} s without")
    diff = np.array([b - a for a, b in pairs])
    se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
    print(
        f"mean CPU a draw: {np.mean([a for a, _ in pairs]):.2f} s with, "
        f"{np.mean([b for _, b in pairs]):.2f} s without; saved {diff.mean():.2f} s "
        f"(SE {se:.2f}); the same estimates: {same}"
    )


def _save_or_compare(args: argparse.Namespace, estimates: dict) -> None:
    """Pickle the draws' estimates (``--estimates``), compare with earlier ones (``--compare``)."""
    if args.estimates:
        args.estimates.write_bytes(pickle.dumps(estimates))
    if args.compare:
        earlier = pickle.loads(args.compare.read_bytes())
        same = all(d in earlier and _same_estimates(earlier[d], estimates[d]) for d in estimates)
        print(f"estimates identical with {args.compare}: {same}")


if __name__ == "__main__":
    main()
