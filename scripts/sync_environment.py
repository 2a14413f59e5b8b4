"""Regenerate environment.yml from pyproject.toml and requirements.lock (run by `make lock`)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            lock[norm(name)] = version
    lines = [
        "# Conda description of the same environment as requirements.lock (what `make setup`",
        "# installs with pip). The direct dependencies are pinned to the lock's versions; the",
        "# lock pins every transitive one. tests/test_environment.py keeps the three in agreement.",
        "# Regenerate with `make lock` (scripts/sync_environment.py).",
        "name: leapresearch",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {d}=={lock[norm(d)]}" for d in deps]
    lines += ["      - -r requirements.lock", "      - -e ."]
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
