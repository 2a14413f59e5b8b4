"""What a notebook opens: parameters, validated data and the prepared (matched) sample.

``open_session`` is the one call at the top of every notebook. Preparing the matched
sample is the slow step, so its result is cached under ``data_raw/.cache/`` (beside the
confidential inputs, never under ``outputs/``), keyed by the sha256 of the input files,
the resolved parameters and the package source, so a change to any of them recomputes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from leapresearch.config import Config, load_config
from leapresearch.contract import RawTables, read_raw_tables, summarise
from leapresearch.outputs import file_records
from leapresearch.paths import DATA_RAW

CACHE_DIR = DATA_RAW / ".cache"


def source_digest() -> str:
    """sha256 over the package's source files (a code change invalidates caches)."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def cache_path(inputs: dict, config: Config) -> Path:
    """Cache file of the prepared sample for these inputs, parameters and code.

    The data folder's path is left out of the key (the inputs' checksums identify the data).
    """
    blob = repr((sorted(inputs.items()), config.digest(exclude=("data_dir",)), source_digest()))
    return CACHE_DIR / f"prepared-{hashlib.sha256(blob.encode()).hexdigest()[:24]}.pkl"


def store_prepared(prepared, inputs: dict) -> Path:
    """Write a prepared sample to the cache (atomically)."""
    path = cache_path(inputs, prepared.config)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(prepared, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


@dataclass
class Session:
    """Parameters and data of one notebook run."""

    config: Config
    tables: RawTables
    use_cache: bool = True

    @cached_property
    def inputs(self) -> dict:
        """Input files with size and sha256."""
        return file_records(self.tables.files)

    @cached_property
    def summary(self) -> dict:
        """The validation summary of the data."""
        return summarise(self.tables)

    @cached_property
    def prepared(self):
        """The matched, stacked sample (:func:`leapresearch.evaluate.prepare`), cached."""
        from leapresearch.evaluate import prepare

        path = cache_path(self.inputs, self.config)
        if self.use_cache and path.exists():
            with open(path, "rb") as f:
                return pickle.load(f)
        prepared = prepare(self.tables, self.config)
        if self.use_cache:
            store_prepared(prepared, self.inputs)
        return prepared


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
        The data break the raw-data contract.
    """
    config = load_config(
        vintage, overrides=list(overrides), data_dir=Path(data_dir).resolve() if data_dir else None
    )
    tables = read_raw_tables(config.data_path, program_start=config.program_start)
    return Session(config=config, tables=tables, use_cache=use_cache)
