"""Writing run outputs: tables (always through suppression), figures and provenance.

Writes are deterministic: rows sorted by their key columns, floats printed with a fixed
format, figures saved without timestamps, JSON with sorted keys.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from leapresearch.config import PrivacyConfig
from leapresearch.paths import PROJECT_ROOT
from leapresearch.publish.privacy import suppress

FLOAT_FORMAT = "%.6f"
SORT_KEYS = ("group", "cohort", "outcome", "school_year", "years_after", "rel_time", "covariate")
PACKAGES = (
    "numpy",
    "pandas",
    "scipy",
    "linearmodels",
    "matplotlib",
    "pandera",
    "pyarrow",
    "papermill",
    "nbconvert",
)


def publishable(table: pd.DataFrame, name: str, *, privacy: PrivacyConfig) -> pd.DataFrame:
    """The table exactly as it is written: suppressed and deterministically sorted."""
    safe = suppress(table, name=name, privacy=privacy)
    keys = [k for k in SORT_KEYS if k in safe.columns]
    if keys and name != "balance":
        safe = safe.sort_values(keys, kind="mergesort", ignore_index=True)
    return safe.reset_index(drop=True)


def write_table(table: pd.DataFrame, name: str, out_dir: Path, *, privacy: PrivacyConfig) -> Path:
    """Write ``out_dir/tables/<name>.csv`` after small-cell suppression.

    This is the only function that writes tables, so no path around suppression exists.
    """
    path = Path(out_dir) / "tables" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    publishable(table, name, privacy=privacy).to_csv(
        path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
    )
    return path


def write_figure(fig, name: str, out_dir: Path, *, stamp: str = "") -> list[Path]:
    """Save a figure as PNG and SVG under ``out_dir/figures`` with a provenance stamp.

    The stamp (run id and commit) is drawn in the lower-left corner; no timestamps are
    embedded, so the same figure data give the same files.
    """
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    if stamp:
        fig.text(0.005, 0.005, stamp, fontsize=6, color="0.5", ha="left", va="bottom")
    import matplotlib

    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = folder / f"{name}.{ext}"
        # A fixed salt for the SVG element ids (clip paths, markers); matplotlib's default
        # is a random salt per file, so the same figure would give different bytes.
        with matplotlib.rc_context({"svg.hashsalt": "leapresearch"}):
            fig.savefig(path, dpi=120, bbox_inches="tight", metadata=meta)
        paths.append(path)
    return paths


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_records(paths: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Name -> {file, bytes, sha256} for input files."""
    return {
        name: {"file": Path(p).name, "bytes": Path(p).stat().st_size, "sha256": sha256_file(p)}
        for name, p in sorted(paths.items())
    }


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the repository (``None`` outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can move numbers."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def environment_record() -> dict[str, Any]:
    """Python, platform and package versions."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write JSON with sorted keys and a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path
