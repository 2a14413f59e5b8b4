"""Command line: ``leapresearch simulate | validate | run | new-year | compare | cache``.

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
    _warn_unreviewed(config, args.params)
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


def _warn_unreviewed(config, params: str) -> None:
    """Warn when the vintage's front-page fields are still as ``new-year`` wrote them."""
    if not config.report.reviewed:
        print(
            f"warning: {params}: report.reviewed is false: the front page's title, date, school "
            "years and authors are as `leapresearch new-year` wrote them (the report says "
            "draft); review them and set report.reviewed: true",
            file=sys.stderr,
        )


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
    _warn_unreviewed(config, args.params)
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
            scheduler=args.scheduler,
            notebook_steps=not args.tables_only,
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
    from leapresearch.publish.compare_runs import compare, write_comparison

    try:
        comparison = compare(Path(args.a), Path(args.b))
        if args.out:
            for path in write_comparison(comparison, Path(args.out)):
                print(f"wrote {path}")
        else:
            print(comparison.markdown(), end="")
    except (FileNotFoundError, ValueError) as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(f"cannot write {args.out}: {exc}")
    return 0


def _cmd_new_year(args: argparse.Namespace) -> int:
    from leapresearch.config import ParameterError, new_vintage

    try:
        date = dt.date.fromisoformat(args.date) if args.date else None
    except ValueError as exc:
        return _err(f"--date {args.date!r} is not a date YYYY-MM-DD ({exc})")
    try:
        path, review = new_vintage(
            args.vintage,
            args.data,
            like=args.like,
            authors=args.author or (),
            organisation=args.organisation,
            title=args.title,
            date=date,
            params_dir=Path(args.params_dir) if args.params_dir else None,
        )
    except ParameterError as exc:
        return _err(str(exc))
    print(f"wrote {path}; review every line marked REVIEW, then set report.reviewed: true")
    for line in review:
        print(f"  {line}")
    params = args.vintage if not args.params_dir else str(path)
    print(f"next: leapresearch validate --params {params}")
    if not args.params_dir:
        print(f"      make report PARAMS={args.vintage}   (outputs/{args.vintage}/)")
    return 0


TABLES_ONLY_HELP = (
    "the published tables alone: no figures, report or notebooks, and not the results only "
    "the notebooks show (a notebook computes them when it shows them)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``leapresearch`` argument parser."""
    p = argparse.ArgumentParser(prog="leapresearch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = _command(sub, "simulate", "write synthetic contract data with known effects")
    s.add_argument("--out", required=True, help="data folder to write")
    s.add_argument(
        "--scale",
        choices=["demo", "districts", "state"],
        default="demo",
        help="size: demo (about 10,000 students), districts (the 15 LEAP districts) or "
        "state (default: demo)",
    )
    s.add_argument("--seed", type=int, default=20210401, help="random seed (default: 20210401)")
    s.add_argument("--truth", help="write the true effects as JSON here (never inside --out)")
    s.add_argument(
        "--format",
        choices=["csv", "parquet"],
        help="file format (default: csv for demo, parquet otherwise)",
    )
    s.add_argument(
        "--layout",
        choices=["contract", "extract"],
        default="contract",
        help="contract: the raw-data contract; extract: a state-extract layout that "
        "params/example-extract.yaml maps onto the contract",
    )
    s.set_defaults(func=_cmd_simulate)

    v = _command(
        sub,
        "validate",
        "check a data folder exactly as `run` will (contract, input mapping, manifest, "
        "evaluability)",
    )
    v.add_argument("data", nargs="?", help="data folder (default: data_dir of the parameters)")
    v.add_argument("--params", default="demo", help="vintage name or YAML file (default: demo)")
    v.add_argument(
        "-p", "--param", action="append", metavar="KEY=VALUE", help="override a parameter"
    )
    v.add_argument("--program-start", help="same as -p program_start=YYYY-MM-DD")
    v.set_defaults(func=_cmd_validate)

    r = _command(sub, "run", "run the evaluation and write tables, figures, report")
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
    r.add_argument("--tables-only", action="store_true", help=TABLES_ONLY_HELP)
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
    r.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="a Dask scheduler (e.g. tcp://host:8786) whose cluster computes the re-matching "
        "checks (default: $LEAPRESEARCH_SCHEDULER if set); the outputs are the same",
    )
    r.set_defaults(func=_cmd_run)

    k = _command(sub, "cache", "where the prepared-sample cache is and how big; --clear")
    k.add_argument("--clear", action="store_true", help="delete every cached entry")
    k.set_defaults(func=_cmd_cache)

    _new_year_parser(sub)
    c = _command(
        sub,
        "compare",
        "two runs on one page: headline estimates, their change with its interval and a test, "
        "students, pre-trends, warnings, changed parameters",
    )
    c.add_argument("a", metavar="RUN_A", help="the earlier run folder (e.g. outputs/2023-24)")
    c.add_argument("b", metavar="RUN_B", help="the new run folder (e.g. outputs/2024-25)")
    c.add_argument(
        "--out",
        metavar="FILE",
        help="write the page to FILE (.md or .html) and its headline rows to FILE's name "
        "with .csv; without it the page is printed as Markdown",
    )
    c.set_defaults(func=_cmd_compare)
    return p


def _command(sub, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with the sentence the command list shows."""
    return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")


def _new_year_parser(sub) -> None:
    n = _command(
        sub,
        "new-year",
        "write params/VINTAGE.yaml for a new year's data folder, every per-year field marked "
        "for review (never replaces a vintage file)",
    )
    n.add_argument("vintage", metavar="VINTAGE", help="the new vintage's name, e.g. 2024-25")
    n.add_argument("--data", required=True, metavar="FOLDER", help="the year's data folder")
    n.add_argument(
        "--like",
        metavar="VINTAGE",
        help="an earlier vintage whose input mapping and program start to copy (its report "
        "fields are never copied); needed when the extracts keep the state's layout",
    )
    n.add_argument(
        "--author", action="append", metavar="NAME", help="an author (repeat for several)"
    )
    n.add_argument("--organisation", help="the organisation shown on the front page")
    n.add_argument("--title", help="the report's title (default: built from the vintage)")
    n.add_argument("--date", metavar="YYYY-MM-DD", help="the report's date (default: today)")
    n.add_argument(
        "--params-dir",
        metavar="DIR",
        help="write the file into DIR instead of params/ (run it with --params DIR/VINTAGE.yaml)",
    )
    n.set_defaults(func=_cmd_new_year)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leapresearch`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from leapresearch.parallel import stop_workers_on_terminate
    from leapresearch.threads import keep_freed_memory

    stop_workers_on_terminate()  # a killed run stops its bootstrap's workers too
    keep_freed_memory()  # large arrays reuse freed memory instead of new zeroed pages
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
