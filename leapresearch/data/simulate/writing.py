"""Files: the contract tables, the truth JSON (never beside them) and the simulation marker.

:func:`write_simulation` writes ``students``, ``attendance_monthly`` and ``leap_visits``
as CSV or Parquet, byte-identical for identical data; :data:`SIMULATION_MARKER` is the
file that tells every later run its inputs are synthetic (and, when the truth was written,
where it is: :func:`read_truth`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leapresearch.data.simulate.config import SimulatedData
from leapresearch.data.simulate.truth import TRUTH_SCHEMA

TABLES: tuple[str, ...] = ("students", "attendance_monthly", "leap_visits")
"""The three contract tables, in the order they are written."""


FileFormat = Literal["csv", "parquet"]


def write_simulation(
    data: SimulatedData,
    out_dir: Path,
    *,
    file_format: FileFormat = "csv",
    truth_path: Path | None = None,
) -> list[Path]:
    """Write the three contract tables (and, elsewhere, the truth JSON).

    Parameters
    ----------
    data : SimulatedData
        Output of :func:`simulate`.
    out_dir : pathlib.Path
        Data folder; created if missing. Receives exactly ``students``,
        ``attendance_monthly`` and ``leap_visits`` as ``NAME.csv`` or ``NAME.parquet``;
        a same-named table in the other format is removed so the folder stays
        unambiguous.
    file_format : {"csv", "parquet"}
        Table format.
    truth_path : pathlib.Path, optional
        Where to write the truth JSON; must not be inside ``out_dir``.

    Returns
    -------
    list of pathlib.Path
        The files written (tables, the :data:`SIMULATION_MARKER` file, then the truth file
        if any).

    Notes
    -----
    Output is byte-identical for identical ``data``: rows are sorted (students by
    ``student_id, school_year``; attendance by ``student_id, month, school_id``; visits by
    ``visit_id``), CSV is written by pyarrow (UTF-8, header, comma, no quoting, integer
    day counts) and Parquet by pyarrow with fixed options.
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be 'csv' or 'parquet', got {file_format!r}")
    out_dir = Path(out_dir)
    if truth_path is not None:
        truth_path = Path(truth_path)
        out_abs, truth_abs = out_dir.resolve(), truth_path.resolve()
        if truth_abs == out_abs or truth_abs.is_relative_to(out_abs):
            raise ValueError(
                f"truth_path {str(truth_path)!r} is inside the data folder {str(out_dir)!r}; "
                "the true effects must never sit beside the data"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    other = "parquet" if file_format == "csv" else "csv"
    written: list[Path] = []
    for name in TABLES:
        frame = getattr(data, name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = out_dir / f"{name}.{file_format}"
        if file_format == "csv":
            # Plain header and unquoted values (pyarrow raises if a value needs quoting).
            with pa.OSFile(str(path), "wb") as sink:
                sink.write((",".join(table.column_names) + "\n").encode("utf-8"))
                pacsv.write_csv(
                    table,
                    sink,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
                )
        else:
            pq.write_table(table, path, compression="zstd", write_statistics=True)
        stale = out_dir / f"{name}.{other}"
        if stale.exists():
            stale.unlink()
        written.append(path)
    written.append(
        write_marker(data, out_dir, files=[p.name for p in written], truth_path=truth_path)
    )
    if truth_path is not None:
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        truth_path.write_text(json.dumps(data.truth, indent=1) + "\n", encoding="utf-8")
        written.append(truth_path)
    return written


SIMULATION_MARKER = "SIMULATED.json"
"""File the simulator writes into every data folder it fills: the inputs are synthetic."""


def write_marker(
    data: SimulatedData,
    out_dir: Path,
    *,
    layout: str = "contract",
    files: Sequence[str] | None = None,
    truth_path: Path | None = None,
) -> Path:
    """Write :data:`SIMULATION_MARKER` (generator, scale, seed; no effect sizes) into ``out_dir``.

    A run records the marker in ``provenance.json`` and its report shows a synthetic-data
    banner; a folder without it is treated as real data (nothing is guessed). Every layout
    ``leapresearch simulate`` writes gets the marker.

    Parameters
    ----------
    data : SimulatedData
        The simulated data written beside the marker.
    out_dir : pathlib.Path
        The data folder.
    layout : str, default "contract"
        The layout of the tables: ``"contract"`` (``students.csv`` …) or ``"extract"``
        (the state-extract layout of :mod:`leapresearch.data.state_extract`).
    files : sequence of str, optional
        The names of the table files the marker vouches for (recorded sorted).
    truth_path : pathlib.Path, optional
        Where the truth JSON was written: the marker records it (``truth``: the path
        relative to the data folder, so the same layout gives the same marker), and a run
        on the folder sets its estimates beside that truth (:func:`read_truth`).

    Returns
    -------
    pathlib.Path
        The marker file.
    """
    marker = {
        "schema": "leapresearch-simulated/1",
        "simulated": True,
        "generator": "leapresearch.data.simulate",
        "scale": data.truth.get("scale"),
        "seed": data.truth.get("seed"),
        "layout": layout,
    }
    if files is not None:
        marker["files"] = sorted(files)
    if truth_path is not None:
        where = os.path.relpath(Path(truth_path).resolve(), Path(out_dir).resolve())
        marker["truth"] = Path(where).as_posix()
    path = Path(out_dir) / SIMULATION_MARKER
    path.write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    """The simulator's marker of a data folder, or None when the folder has none."""
    path = Path(data_dir) / SIMULATION_MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable simulation marker ({exc})") from None
    if not isinstance(marker, dict) or marker.get("simulated") is not True:
        raise ValueError(f"{path}: not a simulation marker (expected 'simulated': true)")
    return marker


def read_truth(data_dir: Path) -> dict[str, Any] | None:
    """The simulator's truth for a data folder, or None when there is none to read.

    Read only through the folder's marker (:func:`read_marker`): a folder without the
    marker (real data) never has a truth, nor does a marker that records no truth file
    (data simulated without ``--truth``) or one whose file is gone.

    Raises
    ------
    ValueError
        The truth file is unreadable, or not the truth of these data (its schema, scale or
        seed differ from the marker's).
    """
    marker = read_marker(data_dir)
    if marker is None or not marker.get("truth"):
        return None
    path = Path(data_dir) / marker["truth"]
    if not path.is_file():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable truth file ({exc})") from None
    if not isinstance(truth, dict) or truth.get("schema") != TRUTH_SCHEMA:
        raise ValueError(f"{path}: not a truth file (schema {TRUTH_SCHEMA!r} expected)")
    for key in ("scale", "seed"):
        if truth.get(key) != marker.get(key):
            raise ValueError(
                f"{path}: the truth of {key} {truth.get(key)!r}, the data of "
                f"{key} {marker.get(key)!r}: not the truth of these data"
            )
    return truth


def simulation_digest(data_dir: Path) -> str:
    """sha256 of the folder's marker and of the truth file it records ("" without a marker).

    What a run shows beyond the contract tables (the synthetic-data banner, the truth
    comparison) depends on these files; a cache keyed by the tables alone would hand the
    results of simulated data to an identical folder without the marker (or without the
    truth), so the session's cache key includes this digest.
    """
    marker = Path(data_dir) / SIMULATION_MARKER
    if not marker.is_file():
        return ""
    h = hashlib.sha256(marker.read_bytes())
    try:
        where = json.loads(marker.read_text(encoding="utf-8")).get("truth")
    except (OSError, ValueError, AttributeError):
        where = None
    truth = Path(data_dir) / where if isinstance(where, str) else None
    if truth is not None and truth.is_file():
        h.update(truth.read_bytes())
    return h.hexdigest()
