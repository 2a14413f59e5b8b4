"""What a notebook opens: parameters, validated data and the prepared (matched) sample.

``open_session`` is the one call at the top of every notebook. Preparing the matched
sample is the slow step, so its result is cached under ``data_raw/.cache/`` (beside the
confidential inputs, never under ``outputs/``), keyed by the sha256 of the input files,
the resolved parameters and the package source, so a change to any of them recomputes.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from leapresearch.config import Config, load_config
from leapresearch.data.contract import RawTables, find_table_files, read_raw_tables, summarise
from leapresearch.paths import DATA_RAW
from leapresearch.publish.outputs import file_records

CACHE_DIR = DATA_RAW / ".cache"
KEEP_CACHED = 4
"""Prepared samples kept in the cache (older ones are deleted when a new one is stored)."""


def source_digest() -> str:
    """sha256 over the package's source files (a code change invalidates caches)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def cache_path(inputs: dict, config: Config) -> Path:
    """Cache file of the prepared sample for these inputs, parameters and code.

    The data folder's path is left out of the key (the inputs' checksums identify the data).
    """
    blob = repr((sorted(inputs.items()), config.digest(exclude=("data_dir",)), source_digest()))
    return CACHE_DIR / f"prepared-{hashlib.sha256(blob.encode()).hexdigest()[:24]}.pkl"


def result_path(inputs: dict, config: Config, name: str) -> Path:
    """Cache file of one result table (e.g. ``placebo``) of the same inputs, parameters, code."""
    stem = cache_path(inputs, config).stem.replace("prepared-", "")
    return CACHE_DIR / f"result-{stem}-{name}.pkl"


def store_result(table, inputs: dict, config: Config, name: str) -> Path:
    """Write one result table to the cache (atomically)."""
    path = result_path(inputs, config, name)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(table, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


def store_prepared(prepared, inputs: dict, *, keep: int = KEEP_CACHED) -> Path:
    """Write a prepared sample to the cache (atomically); keep only the newest ``keep``."""
    path = cache_path(inputs, prepared.config)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(prepared, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    old = sorted(CACHE_DIR.glob("prepared-*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[keep:]:
        stale.unlink(missing_ok=True)
        for result in CACHE_DIR.glob(stale.stem.replace("prepared-", "result-") + "-*.pkl"):
            result.unlink(missing_ok=True)
    return path


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
        """The three contract tables, read and validated (raises ContractError)."""
        return read_raw_tables(self.config.data_path, program_start=self.config.program_start)

    @cached_property
    def inputs(self) -> dict:
        """Input files with size and sha256."""
        return file_records(self.files)

    @cached_property
    def summary(self) -> dict:
        """The validation summary of the data."""
        return summarise(self.tables)

    @cached_property
    def prepared(self):
        """The matched, stacked sample (:func:`leapresearch.evaluate.prepare`), cached."""
        from leapresearch.evaluate import prepare

        path = cache_path(self.inputs, self.config)
        if self.use_cache:
            try:
                with open(path, "rb") as f:
                    return pickle.load(f)
            except (FileNotFoundError, EOFError, pickle.UnpicklingError):
                pass  # not cached (or pruned meanwhile): compute it
        prepared = prepare(self.tables, self.config)
        if self.use_cache:
            store_prepared(prepared, self.inputs)
        return prepared

    def result(self, step: Callable[..., pd.DataFrame]) -> pd.DataFrame:
        """``try_estimate(step, self.prepared)``, reused from the run that made the cache.

        ``leapresearch run`` stores the slow result tables (the placebo re-matches every
        visited student); a notebook asking for the same step with the same inputs,
        parameters and code gets the stored table instead of recomputing it.
        """
        path = result_path(self.inputs, self.config, step.__name__)
        if self.use_cache:
            try:
                with open(path, "rb") as f:
                    return pickle.load(f)
            except (FileNotFoundError, EOFError, pickle.UnpicklingError):
                pass
        from leapresearch.evaluate import try_estimate

        if "tables" in inspect.signature(step).parameters:  # e.g. the intent-to-treat rows
            inner = step

            def step(prepared, **kwargs):
                return inner(prepared, tables=self.tables, **kwargs)

            step.__name__ = inner.__name__
        table = try_estimate(step, self.prepared)
        if self.use_cache:
            store_result(table, self.inputs, self.config, step.__name__)
        return table


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
        Contract folder; defaults to the vintage's ``data_dir``.
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
        vintage, overrides=list(overrides), data_dir=Path(data_dir).resolve() if data_dir else None
    )
    files = find_table_files(config.data_path)
    return Session(config=config, files=files, use_cache=use_cache)
