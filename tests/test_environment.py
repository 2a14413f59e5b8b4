"""The environment is described three times; they must agree. And the README's commands."""

import platform
import re
import tomllib
from pathlib import Path

import yaml
from packaging.markers import Marker, default_environment
from packaging.specifiers import SpecifierSet

from leapresearch.paths import PROJECT_ROOT


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines() -> list[tuple[str, str, str]]:
    """``(name, version, marker)`` of each pin of requirements.lock (marker "" if none)."""
    pins = []
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement, _, marker = line.partition(";")
            assert "==" in requirement, f"requirements.lock: unpinned line {line!r}"
            name, version = requirement.strip().split("==")
            pins.append((norm(name), version, marker.strip()))
    return pins


def pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def direct_dependencies() -> list[str]:
    py = pyproject()
    return py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]


def supported_minors() -> list[str]:
    """The Python minor versions pyproject's requires-python allows, e.g. ["3.11", "3.12"]."""
    allowed = SpecifierSet(pyproject()["project"]["requires-python"])
    return [f"3.{m}" for m in range(40) if f"3.{m}.0" in allowed]


# Interpreters the lock must install on: the first and a late patch release of each supported
# minor version (a pin that needs a patch release forks there, e.g. soupsieve at 3.11.5) and
# the Pythons common systems ship (Debian 12: 3.11.2; Ubuntu 24.04: 3.12.3; Debian 13: 3.13.5).
SHIPPED = {"3.11": ["3.11.2"], "3.12": ["3.12.3"], "3.13": ["3.13.5"]}


def python_versions() -> list[str]:
    return [
        full
        for minor in supported_minors()
        for full in [f"{minor}.0", *SHIPPED.get(minor, []), f"{minor}.30"]
    ]


def pins_for(python_full_version: str) -> dict[str, str]:
    """What pip installs from the lock on that Python (on this platform): name -> version."""
    env = default_environment() | {
        "python_full_version": python_full_version,
        "python_version": ".".join(python_full_version.split(".")[:2]),
    }
    pins: dict[str, str] = {}
    for name, version, marker in lock_lines():
        if not marker or Marker(marker).evaluate(env):
            assert name not in pins, (
                f"requirements.lock: two pins of {name} on {python_full_version}"
            )
            pins[name] = version
    return pins


def test_supported_pythons_agree():
    """requires-python, the Makefile's interpreter search and ruff's target say the same."""
    minors = supported_minors()
    assert minors[0] == "3.11" and len(minors) >= 3, minors
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    supported = re.search(r"^SUPPORTED_PYTHONS := (.*)$", makefile, flags=re.M).group(1).split()
    assert supported == minors
    candidates = re.search(r"^PYTHON_CANDIDATES := (.*)$", makefile, flags=re.M).group(1).split()
    assert candidates == [f"python{m}" for m in minors] + ["python3"]
    assert pyproject()["tool"]["ruff"]["target-version"] == "py" + minors[0].replace(".", "")


def test_every_direct_dependency_is_pinned_in_the_lock():
    pinned = {name for name, _, _ in lock_lines()}
    missing = [d for d in direct_dependencies() if norm(d) not in pinned]
    assert not missing, f"pyproject dependencies missing from requirements.lock: {missing}"


def test_the_lock_pins_every_direct_dependency_on_every_supported_python():
    for python in python_versions():
        pins = pins_for(python)
        missing = [d for d in direct_dependencies() if norm(d) not in pins]
        assert not missing, f"requirements.lock pins nothing for {missing} on Python {python}"


NUMERIC_STACK = ["numpy", "scipy", "pandas", "linearmodels", "statsmodels", "matplotlib", "pyarrow"]


def test_the_numeric_stack_is_the_same_release_on_every_supported_python():
    """The tables are the same on every supported Python only if these are the same releases."""
    for dep in NUMERIC_STACK:
        lines = [(version, marker) for name, version, marker in lock_lines() if name == dep]
        assert len(lines) == 1 and not lines[0][1], f"{dep} differs between Pythons: {lines}"


def test_environment_yml_pins_the_lock_versions():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python" + pyproject()["project"]["requires-python"].replace(" ", "") in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    pinned = []
    for line in pip_section:
        if "==" in line and not line.startswith("-"):
            requirement, _, marker = line.partition(";")
            name, version = requirement.strip().split("==")
            pinned.append((norm(name), version, marker.strip()))
    direct = {norm(d) for d in direct_dependencies()}
    assert {name for name, _, _ in pinned} == direct
    assert sorted(pinned) == sorted(pin for pin in lock_lines() if pin[0] in direct)
    assert "-r requirements.lock" in pip_section


# What a venv holds besides the lock: pip itself, setuptools (Python 3.11's venv brings it)
# and the project (`pip install --no-deps -e .`).
NOT_LOCKED = {"pip", "setuptools", "leapresearch"}


def test_installed_versions_match_the_lock():
    """This interpreter's environment is exactly what the lock pins for its Python."""
    from importlib import metadata

    pins = pins_for(platform.python_version())
    installed = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (installed.get(name), v) for name, v in pins.items() if installed.get(name) != v}
    assert not wrong, f"installed != lock (installed, lock): {wrong}"
    unlocked = sorted(set(installed) - set(pins) - NOT_LOCKED)
    assert not unlocked, f"installed but not pinned by requirements.lock: {unlocked}"


def test_readme_commands_are_makefile_targets():
    readme = (PROJECT_ROOT / "README.md").read_text()
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    commands = set(re.findall(r"`make ([a-z][a-z-]*)", readme))
    assert {"report", "test"} <= commands, "README must give `make report` and `make test`"
    assert commands <= targets, f"README names make targets that do not exist: {commands - targets}"


def test_ci_calls_make_test():
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, flags=re.M)


def test_make_test_runs_lint_the_whole_suite_and_nbval_side_by_side():
    """``make test`` (dry run): ruff, then the suite and nbval as two jobs of one make."""
    import subprocess

    out = subprocess.run(
        ["make", "-n", "test"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    ruff = next(i for i, line in enumerate(lines) if "ruff check" in line)
    jobs = next(i for i, line in enumerate(lines) if "-j2" in line and "suite nbval" in line)
    assert ruff < jobs
    assert any(
        line.endswith("pytest -n 2 --dist loadfile --no-loadscope-reorder tests")
        for line in lines[jobs:]
    )
    assert any("--nbval-lax" in line and "notebooks" in out for line in lines[jobs:])


def test_ci_checks_the_notebooks_under_a_second_python():
    """nbval again in a second venv built by another supported Python (.ci/run)."""
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make nbval VENV=\S+ PYTHON=\S+", ci, flags=re.M)


def test_paths_do_not_depend_on_working_directory(tmp_path, monkeypatch):
    import importlib

    import leapresearch.paths as paths

    monkeypatch.chdir(tmp_path)
    importlib.reload(paths)
    assert paths.PROJECT_ROOT == Path(__file__).resolve().parents[1]
    assert (paths.PROJECT_ROOT / "pyproject.toml").exists()


NOT_IMPORTED = {"ipykernel"}  # the kernel papermill starts; never imported by the package
IMPORT_NAMES = {"pyyaml": "yaml"}


def test_every_runtime_dependency_is_imported_by_the_package():
    import ast

    py = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    imported = set()
    for path in (PROJECT_ROOT / "leapresearch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    unused = [
        d
        for d in py["project"]["dependencies"]
        if d not in NOT_IMPORTED and IMPORT_NAMES.get(d, d).replace("-", "_") not in imported
    ]
    assert not unused, f"declared runtime dependencies the package never imports: {unused}"
