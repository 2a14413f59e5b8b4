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

import numpy as np
import pandas as pd

from leapresearch.config import PrivacyConfig
from leapresearch.paths import PROJECT_ROOT
from leapresearch.publish.privacy import suppress

FLOAT_FORMAT = "%.6f"
SNAP_DIGITS = 12
"""Significant digits every shown or written number is snapped to before it is rounded.

Floating-point results differ in their last bits between BLAS kernels, thread counts and
row orders (about 1e-15 relative). Snapping first to 12 significant digits, with
Python's correctly rounded decimal conversion, makes a value that lies on a rounding tie
of the print (0.5375 shown with three decimals) print the same digits everywhere."""
SORT_KEYS = (
    "exhibit",
    "group",
    "estimator",
    "cohort",
    "outcome",
    "school_year",
    "years_after",
    "rel_time",
    "covariate",
)
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


def snap(value: float, digits: int = SNAP_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (exactly reproducible).

    Non-finite values are returned unchanged. The decimal conversion is Python's
    correctly rounded one, identical on every machine.
    """
    x = float(value)
    if not np.isfinite(x) or x == 0.0:
        return x
    return float(f"{x:.{digits - 1}e}")


def snap_frame(table: pd.DataFrame, digits: int = SNAP_DIGITS) -> pd.DataFrame:
    """A copy of ``table`` with every float column snapped by :func:`snap`."""
    out = table.copy()
    for col in out.select_dtypes("float").columns:
        values = out[col].to_numpy(dtype=float, na_value=np.nan)
        out[col] = np.array([snap(v, digits) for v in values], dtype=float)
    return out


def publishable(table: pd.DataFrame, name: str, *, privacy: PrivacyConfig) -> pd.DataFrame:
    """The table exactly as it is written: suppressed, snapped and deterministically sorted.

    Floats are snapped to :data:`SNAP_DIGITS` significant digits (:func:`snap_frame`), so
    the digits written or shown do not move with the last bit of a computation.
    """
    safe = snap_frame(suppress(table, name=name, privacy=privacy))
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

    The stamp (vintage and commit) is drawn in the bottom margin, below everything else the
    figure holds (axis labels, legends), so it never overprints them; no timestamps are
    embedded, so the same figure data give the same files.

    The figure is laid out once, at the resolution of the PNG (:data:`FIGURE_DPI`), and both
    files take that layout and its tight bounding box (with matplotlib's padding): a
    ``savefig`` of a figure with a layout engine or ``bbox_inches="tight"`` draws it
    twice, once for the layout and the box and once for the file, so a figure costs three
    draws instead of five.
    """
    import matplotlib

    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(FIGURE_DPI)
    fig.canvas.draw()  # the layout engine places the axes at the PNG's resolution
    renderer = fig.canvas.get_renderer()
    if stamp:
        box = fig.get_tightbbox(renderer)  # inches, every artist drawn
        w, h = fig.get_size_inches()
        fig.text(box.x0 / w, (box.y0 - 0.06) / h, stamp, fontsize=6, color="0.45",
                 ha="left", va="top")  # fmt: skip
    pad = matplotlib.rcParams["savefig.pad_inches"]
    box = fig.get_tightbbox(renderer).padded(pad)
    # keep the axes where the layout put them: no layout engine at all, else savefig
    # draws the figure once more before the file (None means none under these settings)
    no_layout = {"figure.autolayout": False, "figure.constrained_layout.use": False}
    with matplotlib.rc_context(no_layout):
        fig.set_layout_engine(None)
    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = folder / f"{name}.{ext}"
        # A fixed salt for the SVG element ids (clip paths, markers); matplotlib's default
        # is a random salt per file, so the same figure would give different bytes.
        with matplotlib.rc_context({"svg.hashsalt": "leapresearch"}):
            fig.savefig(path, dpi=FIGURE_DPI, bbox_inches=box, metadata=meta)
        paths.append(path)
    return paths


FIGURE_DPI: int = 120
"""Resolution of the PNG figures (the SVG files are drawn from the same layout)."""


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


def project_relative(path: Path | str, root: Path = PROJECT_ROOT) -> str:
    """``path`` relative to the project root when it lies inside it, else absolute (POSIX)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_record() -> list[dict[str, Any]]:
    """The BLAS/LAPACK libraries actually loaded and their kernel (threadpoolctl)."""
    import numpy  # noqa: F401 - loads numpy's BLAS so threadpoolctl can see it
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "architecture", "version", "threading_layer", "num_threads")
    found = [
        {k: info.get(k) for k in keep}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return sorted(found, key=lambda d: json.dumps(d, sort_keys=True, default=str))


def run_environment(data_dir: Path | str) -> dict[str, Any]:
    """Provenance entries of where and how a run ran, without machine paths.

    ``data_dir`` is recorded relative to the project root when it lies inside it; the
    CPU model and the BLAS kernel in use are recorded beside the package versions (the
    last bits of floating-point results depend on them; see README, reproducibility).
    """
    return {
        "data_dir": project_relative(data_dir),
        "machine": {"cpu": cpu_model(), "blas": blas_record()},
    }


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write JSON with sorted keys and a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path
