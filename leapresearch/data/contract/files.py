"""Finding the file of each contract table in a data folder (or the one the mapping names).

Holds :func:`find_table_files` and ``_locate``, which reports a missing folder, a missing
table (naming the folder's files that no table reads) and a table present both as CSV and
as Parquet.
"""

from __future__ import annotations

from pathlib import Path

from leapresearch.data.contract.messages import ContractError, Violation
from leapresearch.data.contract.schema import TABLES
from leapresearch.data.intake import NO_MAPPING, InputMapping

_NO_FOLDER_HINT = (
    ": make the synthetic demo data with `make demo-data` (or `leapresearch simulate --out "
    "DIR`), or put the state's extracts in a folder such as data_raw/<vintage>/ and name it "
    "in params/<vintage>.yaml (data_dir) or with --data (see data_raw/README.md)"
)


def _locate(
    folder: Path, mapping: InputMapping = NO_MAPPING
) -> tuple[dict[str, Path], list[Violation]]:
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist" + _NO_FOLDER_HINT
        return {}, [Violation(str(folder), None, f"the data folder {what}")]
    found: dict[str, Path] = {}
    problems: list[Violation] = []
    for name in TABLES:
        named = mapping.table(name).file
        if named is not None:
            path = folder / named
            if path.is_file() and path.suffix.lower() in (".csv", ".parquet"):
                found[name] = path
            else:
                why = "is not a .csv or .parquet file" if path.is_file() else "is missing"
                rule = f"table is missing: {named} (named by the input mapping) {why}"
                problems.append(Violation(name, None, rule))
            continue
        csv_path, pq_path = folder / f"{name}.csv", folder / f"{name}.parquet"
        if csv_path.is_file() and pq_path.is_file():
            rule = f"both {name}.csv and {name}.parquet are present; keep exactly one of them"
            problems.append(Violation(name, None, rule))
        elif csv_path.is_file() or pq_path.is_file():
            found[name] = csv_path if csv_path.is_file() else pq_path
        else:
            others = sorted(p.name for p in folder.glob(f"{name}.*"))
            hint = f"; found {', '.join(others)}, which is not read" if others else ""
            rule = f"table is missing: no {name}.csv or {name}.parquet in the folder{hint}"
            problems.append(Violation(name, None, rule))
    if problems and any(v.rule.startswith("table is missing: no ") for v in problems):
        problems = [_unused_files_hint(v, folder, found) for v in problems]
    return found, problems


def _unused_files_hint(v: Violation, folder: Path, found: dict[str, Path]) -> Violation:
    """Name the data files of the folder that no table reads (a state's own file names)."""
    if not v.rule.startswith("table is missing: no ") or "which is not read" in v.rule:
        return v
    used = {p.name for p in found.values()}
    suffixes = (".csv", ".parquet", ".txt", ".xlsx", ".xls")
    unused = sorted(
        p.name for p in folder.iterdir() if p.suffix.lower() in suffixes and p.name not in used
    )
    if not unused:
        return v
    shown = ", ".join(unused[:5]) + (", …" if len(unused) > 5 else "")
    hint = (
        f"; the folder holds {shown}, which is not read: rename the file, or name it in the "
        f"input: section of the vintage file (input: {v.file}: file:)"
    )
    return Violation(v.file, v.column, v.rule + hint)


def find_table_files(folder: Path, *, mapping: InputMapping = NO_MAPPING) -> dict[str, Path]:
    """Find the file of each contract table in a data folder.

    Parameters
    ----------
    folder : Path
        The data folder.

    Returns
    -------
    dict of str to Path
        ``NAME.csv`` or ``NAME.parquet`` for each name in :data:`TABLES`.

    Raises
    ------
    ContractError
        If the folder does not exist, or a table has no file or has both a CSV and a
        Parquet file (all such problems at once).
    """
    found, problems = _locate(folder, mapping)
    if problems:
        raise ContractError(problems)
    return found
