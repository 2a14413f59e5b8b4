"""Command line: ``leapresearch simulate | validate | run | compare``.

Bad data and bad parameters end with a message and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from leapresearch.data.simulate import SimulationConfig, simulate, write_simulation

    fmt = args.format or ("csv" if args.scale == "demo" else "parquet")
    if args.layout == "extract" and args.format == "parquet":
        return _err("--layout extract writes CSV files (as state systems export them)")
    try:
        data = simulate(SimulationConfig(scale=args.scale, seed=args.seed))
        truth = Path(args.truth) if args.truth else None
        if args.layout == "extract":
            from leapresearch.data.state_extract import write_state_extract

            paths = write_state_extract(data, Path(args.out), truth_path=truth)
        else:
            paths = write_simulation(data, Path(args.out), file_format=fmt, truth_path=truth)
    except (ValueError, OSError) as exc:
        return _err(str(exc))
    for p in paths:
        print(f"wrote {p}")
    return 0


def _print_summary(summary: dict) -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v:,}" if isinstance(v, int) else f"  {k}: {v}")
        elif isinstance(value, (list, tuple)):
            print(f"{key}: {', '.join(map(str, value))}")
        else:
            print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")


def _print_violations(header: str, violations) -> None:
    """The violations of a folder, one per line (``validate`` and ``run`` print the same)."""
    print(header, file=sys.stderr)
    for v in violations:
        print(f"  - {v}", file=sys.stderr)


def _cmd_validate(args: argparse.Namespace) -> int:
    from leapresearch.config import ParameterError, load_config
    from leapresearch.data.contract import summarise
    from leapresearch.design.readiness import check_data

    overrides = list(args.param or [])
    if args.program_start:
        try:
            dt.date.fromisoformat(args.program_start)
        except ValueError as exc:
            return _err(f"--program-start {args.program_start!r} is not a date YYYY-MM-DD ({exc})")
        overrides.append(f"program_start={args.program_start}")
    try:
        config = load_config(
            args.params,
            overrides=overrides,
            data_dir=Path(args.data).resolve() if args.data else None,
        )
    except ParameterError as exc:
        return _err(str(exc))
    data = args.data or str(config.data_path)
    checked = check_data(config.data_path, config)
    for warning in checked.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not checked.ok:
        n = len(checked.violations)
        _print_violations(f"{data}: {n} contract violation(s):", checked.violations)
        return 1
    print(f"{data}: valid (raw-data contract v1)")
    _print_summary(summarise(checked.tables))
    return 0


def _absolute_params(name_or_path: str) -> str:
    """A vintage name stays a name; a YAML path becomes absolute (notebooks run elsewhere)."""
    p = Path(name_or_path)
    return str(p.resolve()) if p.suffix in (".yaml", ".yml") else name_or_path


def _cmd_cache(args: argparse.Namespace) -> int:
    """Print the cache's location and size; with ``--clear`` delete its entries."""
    from leapresearch import session

    n, size = session.cache_usage()
    print(f"cache: {session.CACHE_DIR} ({n} entries, {size / 1e6:.1f} MB)")
    if args.clear:
        freed = session.clear_cache()
        print(f"cleared: {freed / 1e6:.1f} MB freed")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from leapresearch.config import ParameterError, load_config
    from leapresearch.data.contract import ContractError
    from leapresearch.pipeline import RunError, run_report
    from leapresearch.publish.report import ReportError, report_writer

    try:
        config = load_config(
            args.params,
            overrides=list(args.param or []),
            data_dir=Path(args.data).resolve() if args.data else None,
        )
    except ParameterError as exc:
        return _err(str(exc))
    out = Path(args.out) if args.out else None
    if out is None:
        from leapresearch.paths import OUTPUTS

        out = OUTPUTS / config.vintage
    try:
        run_report(
            config.data_path,
            out,
            config=config,
            overwrite=args.overwrite,
            command=["leapresearch", *getattr(args, "argv", [])],
            workers=args.workers,
            write_outputs=None
            if args.tables_only
            else report_writer(
                vintage=_absolute_params(args.params),
                overrides=list(args.param or []),
                notebooks=not args.no_notebooks,
                workers=args.workers,
            ),
        )
    except ContractError as exc:
        _print_violations(
            f"{config.data_path}: the data break the raw-data contract:", exc.violations
        )
        return 1
    except (RunError, ParameterError, ReportError) as exc:
        return _err(str(exc))
    except OSError as exc:  # e.g. OUT under a file, or a disk that is full
        return _err(f"cannot write the run folder {out}: {exc}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from leapresearch.publish.compare_runs import compare_runs

    try:
        print(compare_runs(Path(args.a), Path(args.b)))
    except (FileNotFoundError, ValueError) as exc:
        return _err(str(exc))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``leapresearch`` argument parser."""
    p = argparse.ArgumentParser(prog="leapresearch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write synthetic contract data with known effects")
    s.add_argument("--out", required=True, help="data folder to write")
    s.add_argument("--scale", choices=["demo", "districts", "state"], default="demo")
    s.add_argument("--seed", type=int, default=20210401)
    s.add_argument("--truth", help="write the true effects as JSON here (never inside --out)")
    s.add_argument("--format", choices=["csv", "parquet"], help="default: csv for demo")
    s.add_argument(
        "--layout",
        choices=["contract", "extract"],
        default="contract",
        help="contract: the raw-data contract; extract: a state-extract layout that "
        "params/example-extract.yaml maps onto the contract",
    )
    s.set_defaults(func=_cmd_simulate)

    v = sub.add_parser(
        "validate",
        help="check a data folder exactly as `run` will (contract, input mapping, manifest, "
        "evaluability)",
    )
    v.add_argument("data", nargs="?", help="data folder (default: data_dir of the parameters)")
    v.add_argument("--params", default="demo", help="vintage name or YAML file (default: demo)")
    v.add_argument(
        "-p", "--param", action="append", metavar="KEY=VALUE", help="override a parameter"
    )
    v.add_argument("--program-start", help="same as -p program_start=YYYY-MM-DD")
    v.set_defaults(func=_cmd_validate)

    r = sub.add_parser("run", help="run the evaluation and write tables, figures, report")
    r.add_argument("--data", help="data folder (default: data_dir of the parameters)")
    r.add_argument("--out", help="run folder (default: outputs/<vintage>)")
    r.add_argument("--params", default="demo", help="vintage name or YAML file (default: demo)")
    r.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="override a parameter, e.g. -p matching.ratio=5",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    r.add_argument("--tables-only", action="store_true", help="skip figures and notebooks")
    r.add_argument(
        "--no-notebooks",
        action="store_true",
        help="tables, figures and the summary page, without executing notebooks",
    )
    r.add_argument(
        "--workers",
        type=int,
        choices=[1, 2],
        default=2,
        help="processes (default 2: the re-matching checks run beside the other steps, "
        "and two notebooks at a time; the outputs are the same with 1)",
    )
    r.set_defaults(func=_cmd_run)

    k = sub.add_parser("cache", help="where the prepared-sample cache is and how big; --clear")
    k.add_argument("--clear", action="store_true", help="delete every cached entry")
    k.set_defaults(func=_cmd_cache)

    c = sub.add_parser("compare", help="headline estimates of two runs side by side")
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(func=_cmd_compare)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leapresearch`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
