"""Regenerate environment.yml from pyproject.toml and requirements.lock (run by `make lock`)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines() -> list[tuple[str, str, str]]:
    """``(name, version, marker)`` of each pin of requirements.lock (marker "" if none)."""
    pins = []
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement, _, marker = line.partition(";")
            name, version = requirement.strip().split("==")
            pins.append((norm(name), version, marker.strip()))
    return pins


def main() -> None:
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]
    requires_python = py["project"]["requires-python"].replace(" ", "")
    pins = lock_lines()
    lines = [
        "# Conda description of the same environment as requirements.lock (what `make setup`",
        "# installs with pip). The direct dependencies are pinned to the lock's versions; the",
        "# lock pins every transitive one. tests/test_environment.py keeps the three in agreement.",
        "# Regenerate with `make lock` (scripts/sync_environment.py).",
        "name: leapresearch",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python{requires_python}",
        "  - pip",
        "  - pip:",
    ]
    for dep in deps:
        for name, version, marker in pins:
            if name == norm(dep):
                pin = f"{dep}=={version}"
                lines.append(f'      - "{pin} ; {marker}"' if marker else f"      - {pin}")
    lines += ["      - -r requirements.lock", "      - -e ."]
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
