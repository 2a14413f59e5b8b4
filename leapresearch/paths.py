"""Project paths, resolved from the package root and never from the working directory."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]
"""The repository root (the folder that holds ``leapresearch/``)."""

DATA_RAW: Path = PROJECT_ROOT / "data_raw"
OUTPUTS: Path = PROJECT_ROOT / "outputs"
NOTEBOOKS: Path = PROJECT_ROOT / "notebooks"
PARAMS: Path = PROJECT_ROOT / "params"
DEMO_DATA: Path = DATA_RAW / "demo"
"""Where ``make report`` writes and reads the synthetic demo data."""
