"""The environment is described three times; they must agree. And the README's commands."""

import re
import tomllib
from pathlib import Path

import yaml

from leapresearch.paths import PROJECT_ROOT


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements.lock: unpinned line {line!r}"
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


def direct_dependencies() -> list[str]:
    py = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]


def test_every_direct_dependency_is_pinned_in_the_lock():
    pins = lock_pins()
    missing = [d for d in direct_dependencies() if norm(d) not in pins]
    assert not missing, f"pyproject dependencies missing from requirements.lock: {missing}"


def test_environment_yml_pins_the_lock_versions():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    pinned = dict(
        line.split("==") for line in pip_section if "==" in line and not line.startswith("-")
    )
    pins = lock_pins()
    assert {norm(k) for k in pinned} == {norm(d) for d in direct_dependencies()}
    for name, version in pinned.items():
        assert pins[norm(name)] == version, f"{name}: environment.yml {version} != lock"
    assert "-r requirements.lock" in pip_section


def test_installed_versions_match_the_lock():
    from importlib import metadata

    pins = lock_pins()
    for dep in ("numpy", "pandas", "linearmodels", "pandera", "papermill"):
        assert metadata.version(dep) == pins[dep]


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
