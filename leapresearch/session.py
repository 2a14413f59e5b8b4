"""What a notebook opens: parameters, validated data and the prepared (matched) sample.

``open_session`` is the one call at the top of every notebook. Preparing the matched
sample is the slow step, so its result is cached under ``data_raw/.cache/`` of the
project (beside the confidential inputs, never under ``outputs/``; ``$LEAPRESEARCH_CACHE``
names another folder), also when ``--data`` points elsewhere: entries are keyed by the
sha256 of the input files, the resolved parameters (without ``data_dir``) and the package
source, so a change to any of them recomputes, and the same data found in another folder
reuse the entry. The newest :data:`KEEP_CACHED` prepared samples are kept.

The cache holds no pickle: an entry is a folder of JSON (structure), Parquet (tables)
and a numpy ``.npz`` read with ``allow_pickle=False`` (arrays), and only dataclasses of
this package are rebuilt from it, so a planted cache file cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.config import Config, load_config
from leapresearch.data.contract import RawTables, find_table_files, read_raw_tables, summarise
from leapresearch.paths import DATA_RAW
from leapresearch.publish.outputs import file_records

CACHE_ENV = "LEAPRESEARCH_CACHE"
"""Environment variable naming another cache folder (a run exports its own to the kernels
of its notebooks, so they read what the run stored)."""
CACHE_DIR = Path(os.environ.get(CACHE_ENV) or DATA_RAW / ".cache")
KEEP_CACHED = 4
"""Prepared samples kept in the cache (older ones are deleted when a new one is stored)."""

_CACHE_FORMAT = "leapresearch-cache/2"
_ALLOWED_MODULES = ("leapresearch.",)


def source_digest() -> str:
    """sha256 over the package's source files (a code change invalidates caches)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def exported_cache():
    """Kernels and processes started inside use this process's :data:`CACHE_DIR`.

    A run stores what the notebooks show in its cache; its notebooks' kernels inherit the
    environment, so ``$LEAPRESEARCH_CACHE`` (:data:`CACHE_ENV`) points them at the same
    folder when it is not the default (set by the variable, or by a caller).
    """
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(Path(CACHE_DIR).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before


def cache_path(inputs: dict, config: Config) -> Path:
    """Cache folder of the prepared sample for these inputs, parameters and code.

    The data folder's path is left out of the key (the inputs' checksums identify the data);
    its simulation marker and truth are in it (:func:`~leapresearch.data.simulate.
    simulation_digest`: identical tables without the marker are real data).
    """
    from leapresearch.data.simulate import simulation_digest

    marker = simulation_digest(config.data_path)
    blob = repr(
        (sorted(inputs.items()), config.digest(exclude=("data_dir",)), source_digest(), marker)
    )
    return CACHE_DIR / f"prepared-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def result_path(inputs: dict, config: Config, name: str) -> Path:
    """Cache folder of one result table (e.g. ``placebo``) of the same inputs, parameters, code."""
    stem = cache_path(inputs, config).name.replace("prepared-", "")
    return CACHE_DIR / f"result-{stem}-{name}"


# --------------------------------------------------------------------------------------
# A cache format that cannot execute code: JSON for the structure, Parquet for tables,
# numpy .npz (allow_pickle=False) for arrays. Objects are rebuilt only for dataclasses of
# this package; anything else is refused when writing.
# --------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.n_frames = 0

    def encode(self, obj: Any) -> Any:  # noqa: PLR0911 - one branch per supported type
        if obj is None or isinstance(obj, bool | int | float | str):
            return {"v": obj}
        if isinstance(obj, np.generic):
            return {"np": obj.dtype.str, "v": obj.item()}
        if isinstance(obj, Path):
            return {"path": str(obj)}
        if isinstance(obj, tuple | list):
            return {type(obj).__name__: [self.encode(x) for x in obj]}
        if isinstance(obj, dict):
            return {"dict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, pd.Series):
            return {
                "series": self._frame(obj.to_frame(name="values")),
                "name": self.encode(obj.name),
            }
        if isinstance(obj, pd.DataFrame):
            return {"frame": self._frame(obj)}
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            key = f"a{len(self.arrays)}"
            self.arrays[key] = obj
            return {"array": key}
        if isinstance(obj, SimpleNamespace):
            return {"namespace": {k: self.encode(v) for k, v in vars(obj).items()}}
        if dataclasses.is_dataclass(obj) and type(obj).__module__.startswith(_ALLOWED_MODULES):
            cls = type(obj)
            fields = {f.name: self.encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            return {"dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
        raise TypeError(f"cannot cache an object of type {type(obj).__name__}")

    def _frame(self, frame: pd.DataFrame) -> str:
        name = f"t{self.n_frames}.parquet"
        self.n_frames += 1
        frame = frame.copy(deep=False)
        frame.attrs = {}  # attributes (diagnostics) are not part of the cached data
        frame.to_parquet(self.folder / name, engine="pyarrow")
        return name


class _Reader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            self.arrays = {k: npz[k] for k in npz.files}

    def decode(self, node: dict) -> Any:  # noqa: PLR0911
        if "v" in node:
            return np.dtype(node["np"]).type(node["v"]) if "np" in node else node["v"]
        if "path" in node:
            return Path(node["path"])
        if "tuple" in node:
            return tuple(self.decode(x) for x in node["tuple"])
        if "list" in node:
            return [self.decode(x) for x in node["list"]]
        if "dict" in node:
            return {self.decode(k): self.decode(v) for k, v in node["dict"]}
        if "series" in node:
            frame = pd.read_parquet(self.folder / node["series"], engine="pyarrow")
            return frame["values"].rename(self.decode(node["name"]))
        if "frame" in node:
            return pd.read_parquet(self.folder / node["frame"], engine="pyarrow")
        if "array" in node:
            return self.arrays[node["array"]]
        if "namespace" in node:
            return SimpleNamespace(**{k: self.decode(v) for k, v in node["namespace"].items()})
        if "dataclass" in node:
            module, _, qualname = node["dataclass"].partition(":")
            if not module.startswith(_ALLOWED_MODULES):
                raise ValueError(f"refusing to rebuild {node['dataclass']} from the cache")
            cls = getattr(importlib.import_module(module), qualname)
            if not dataclasses.is_dataclass(cls):
                raise ValueError(f"{node['dataclass']} is not a dataclass")
            obj = object.__new__(cls)
            for name, value in node["fields"].items():
                object.__setattr__(obj, name, self.decode(value))
            return obj
        raise ValueError(f"unknown cache node {sorted(node)}")


def _write_entry(obj: Any, path: Path) -> Path:
    """Write ``obj`` as the cache folder ``path`` (atomically: a temporary folder renamed)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writer = _Writer(tmp)
    tree = {"format": _CACHE_FORMAT, "root": writer.encode(obj)}
    np.savez(tmp / "arrays.npz", **writer.arrays)
    (tmp / "tree.json").write_text(json.dumps(tree))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _read_entry(path: Path) -> Any:
    """The object stored in the cache folder ``path`` (FileNotFoundError if absent)."""
    tree = json.loads((path / "tree.json").read_text())
    if tree.get("format") != _CACHE_FORMAT:
        raise FileNotFoundError(path)
    return _Reader(path).decode(tree["root"])


def _with_config(prepared: Any, config: Config | None) -> Any:
    """A copy of ``prepared`` (a dataclass or a namespace) with ``config`` replaced."""
    if dataclasses.is_dataclass(prepared):
        return dataclasses.replace(prepared, config=config)
    return SimpleNamespace(**{**vars(prepared), "config": config})


DATA_REPORT = "data_report"
"""Cache name of :func:`data_report` (see :attr:`Session.data_report`)."""


def store_result(table, inputs: dict, config: Config, name: str) -> Path:
    """Write one result table to the cache (atomically)."""
    return _write_entry(table, result_path(inputs, config, name))


def store_prepared(prepared, inputs: dict, *, keep: int = KEEP_CACHED) -> Path:
    """Write a prepared sample to the cache (atomically); keep only the newest ``keep``.

    The configuration is not stored: the entry's key covers it, and the session that
    loads the entry supplies its own (identical but for ``data_dir``).
    """
    path = _write_entry(_with_config(prepared, None), cache_path(inputs, prepared.config))
    entries = [p for p in CACHE_DIR.glob("prepared-*") if ".tmp" not in p.name]
    old = sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
        for result in CACHE_DIR.glob(stale.name.replace("prepared-", "result-") + "-*"):
            shutil.rmtree(result, ignore_errors=True)
    return path


def cache_usage(folder: Path | None = None) -> tuple[int, int]:
    """Number of cache entries and their total size in bytes."""
    folder = CACHE_DIR if folder is None else folder
    if not folder.exists():
        return 0, 0
    entries = [p for p in folder.iterdir() if p.is_dir()]
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return len(entries), size


def clear_cache(folder: Path | None = None) -> int:
    """Delete the cache folder's contents; return the bytes freed."""
    folder = CACHE_DIR if folder is None else folder
    _, size = cache_usage(folder)
    if folder.exists():
        shutil.rmtree(folder)
    return size


@dataclass
class Session:
    """Parameters and data of one notebook run.

    The data are read and validated on first use (:attr:`tables`); a notebook that only
    needs the prepared sample loads it from the cache without re-reading the inputs.
    """

    config: Config
    files: dict[str, Path]
    use_cache: bool = True

    @cached_property
    def tables(self) -> RawTables:
        """The three contract tables, read through the input mapping and validated.

        Raises ContractError. Warnings are not emitted as Python warnings: see
        :attr:`check`.
        """
        return read_raw_tables(
            self.config.data_path,
            program_start=self.config.program_start,
            mapping=self.config.input.mapping(),
            emit_warnings=False,
        )

    @cached_property
    def check(self):
        """The check ``validate`` and ``run`` apply: violations, warnings, mapping applied.

        See :func:`leapresearch.design.readiness.check_data`.
        """
        from leapresearch.design.readiness import check_data

        return check_data(self.config.data_path, self.config)

    @cached_property
    def inputs(self) -> dict:
        """Input files with size and sha256."""
        return file_records(self.files)

    @cached_property
    def summary(self) -> dict:
        """The validation summary of the data."""
        return summarise(self.tables)

    @cached_property
    def data_report(self) -> dict:
        """What the data check found: ``summary``, ``warnings`` and ``input_mapping``.

        ``leapresearch run`` stores it for its inputs, parameters and code (it has just
        checked the data), so a notebook of that run does not read and validate the raw
        files again; otherwise it is computed from :attr:`check` and :attr:`summary`.
        """
        from leapresearch.design.readiness import data_report

        return self._stored(
            DATA_REPORT,
            lambda: data_report(self.summary, self.check.warnings, self.check.mapping),
        )

    @cached_property
    def prepared(self):
        """The matched, stacked sample (:func:`leapresearch.analysis.sample.prepare`), cached."""
        from leapresearch.analysis.sample import prepare

        path = cache_path(self.inputs, self.config)
        if self.use_cache:
            try:
                return _with_config(_read_entry(path), self.config)
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, OSError):
                pass  # not cached (or pruned meanwhile): compute it
        prepared = prepare(self.tables, self.config)
        if self.use_cache:
            store_prepared(prepared, self.inputs)
        return prepared

    def result(self, step: Callable[..., pd.DataFrame]) -> pd.DataFrame:
        """The result of ``step`` (a step function of :data:`~leapresearch.analysis.runner.STEPS`).

        ``leapresearch run`` stores every result the notebooks show
        (:func:`leapresearch.analysis.runner.stored_results`); a notebook asking for the
        same step with the same inputs, parameters and code gets the stored table instead
        of recomputing it, and does not load the matched sample. Otherwise the step is
        computed as the run computes it (:func:`leapresearch.analysis.runner.compute`), a
        step the data cannot support giving a one-row note.
        """
        from leapresearch.analysis.runner import compute, step_of

        found = step_of(step)
        table = self._stored(found.name, lambda: compute(found, self.step_inputs, guarded=True))
        self.known[found.name] = table  # a later step built on it takes it (as in a run)
        return table

    @cached_property
    def known(self) -> dict[str, pd.DataFrame]:
        """The results this session has obtained so far, by step name (stored or computed)."""
        return {}

    @cached_property
    def step_inputs(self):
        """What the steps share (:class:`~leapresearch.analysis.runner.StepInputs`), once."""
        from leapresearch.analysis.runner import StepInputs

        # the whole-procedure bootstrap's draws on up to two processes (the numbers do not
        # depend on it; LEAPRESEARCH_SCHEDULER sends them to a Dask cluster instead)
        workers = min(2, os.cpu_count() or 1)
        return StepInputs(
            self.prepared, tables=lambda: self.tables, results=self.known, workers=workers
        )

    def _stored(self, name: str, compute: Callable[[], Any]) -> Any:
        """The entry ``name`` a run stored for these inputs, parameters and code.

        Computed (and stored) when it is absent, or when the session does not use the cache.
        """
        if self.use_cache:
            try:
                return _read_entry(result_path(self.inputs, self.config, name))
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, OSError):
                pass
        value = compute()
        if self.use_cache:
            store_result(value, self.inputs, self.config, name)
        return value


def _resolve_data_dir(data_dir: str | Path) -> Path:
    """An absolute data folder; a relative one is taken from the project root."""
    path = Path(data_dir)
    return path.resolve() if path.is_absolute() else (DATA_RAW.parent / path).resolve()


def open_session(
    vintage: str = "demo",
    *,
    data_dir: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    use_cache: bool = True,
) -> Session:
    """Load the parameters of ``vintage`` and read and validate its data.

    Parameters
    ----------
    vintage : str
        Parameter file ``params/<vintage>.yaml`` (or a YAML path).
    data_dir : str, optional
        Contract folder; defaults to the vintage's ``data_dir``. A relative path is taken
        from the project root (as recorded in provenance), not from the working folder.
    overrides : sequence of str
        ``key=value`` parameter overrides.
    use_cache : bool
        Reuse a cached prepared sample when inputs, parameters and code are unchanged.

    Raises
    ------
    ContractError
        A table file is missing (the rest of the contract is checked when the data are
        first read: :attr:`Session.tables`).
    """
    config = load_config(
        vintage,
        overrides=list(overrides),
        data_dir=_resolve_data_dir(data_dir) if data_dir else None,
    )
    files = find_table_files(config.data_path, mapping=config.input.mapping())
    return Session(config=config, files=files, use_cache=use_cache)
