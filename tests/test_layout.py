"""The package's folder tree is its design: lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "leapresearch"

# What each subpackage may import from leapresearch (besides itself).
ALLOWED = {
    "data": set(),
    "design": {"data", "config"},
    "estimation": {"data", "design", "config"},
    "analysis": {"data", "design", "estimation", "config", "threads", "parallel"},
    "publish": {"data", "design", "estimation", "config", "paths"},
}
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> list[str]:
    """Every module imported by ``path`` (absolute names, relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str | None:
    """The first component below ``leapresearch`` of a dotted module name."""
    parts = module.split(".")
    if parts[0] != "leapresearch" or len(parts) < 2:
        return None
    return parts[1]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_imports_only_what_it_may(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        return  # the top level is the way in and may import every layer
    layer = rel.parts[0]
    allowed = ALLOWED[layer] | {layer}
    offending = sorted(
        {
            name
            for name in _imports(path)
            if _layer(name) is not None and _layer(name) not in allowed
        }
    )
    assert not offending, f"{rel} ({layer}) imports {offending}; {layer} may import {allowed}"
    reads_parameters = sorted(
        name
        for name in _imports(path)
        if name == "yaml" or name.endswith("load_config") or name.endswith(".pipeline")
    )
    assert not reads_parameters, f"{rel} reads parameter files or runs the pipeline"


def test_rules_are_not_vacuous() -> None:
    """The walker sees the imports it is meant to police (a broken walker passes everything)."""
    pool = _imports(PACKAGE / "design" / "pool.py")
    assert "leapresearch.data.panel" in pool
    assert "leapresearch.config" in pool
    assert _layer("leapresearch.publish.outputs") == "publish"


def test_top_level_is_small_and_every_subpackage_says_what_it_holds() -> None:
    top = [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(p.name for p in top)
    for layer in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{layer}/__init__.py must say what it may import"


MAX_FUNCTION_LINES = 100


def _long_functions() -> dict[str, int]:
    """``"relative/path.py:name" -> lines`` for every function longer than the limit."""
    long: dict[str, int] = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n_lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n_lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = n_lines
    return long


def test_no_function_is_longer_than_a_screen() -> None:
    offenders = _long_functions()
    assert not offenders, (
        f"functions longer than {MAX_FUNCTION_LINES} lines (docstring included); split them "
        f"into named steps: {sorted(offenders.items())}"
    )


MAX_MODULE_LINES = 1000
MAX_RUNNER_LINES = 300


def test_no_module_is_longer_than_one_concern() -> None:
    """One concern per module; as a measure, none over a thousand lines (issue 22)."""
    long = {
        path.relative_to(PACKAGE).as_posix(): n
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules longer than {MAX_MODULE_LINES} lines: split by concern: {long}"


def test_the_runner_is_short_and_every_step_lives_in_the_room_of_its_exhibit() -> None:
    from leapresearch.analysis import runner

    n_lines = len(Path(runner.__file__).read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_RUNNER_LINES, f"analysis/runner.py has {n_lines} lines"
    names = [step.name for step in runner.STEPS]
    assert len(names) == len(set(names)), names
    rooms = {step.function.__module__ for step in runner.STEPS}
    assert "leapresearch.analysis.runner" not in rooms  # the runner lists steps, computes none
    assert rooms <= {
        *(f"leapresearch.analysis.{p.stem}" for p in (PACKAGE / "analysis").glob("*.py")),
        "leapresearch.data.descriptives",
    }, rooms
    assert {"sample", "event_studies", "identification", "robustness", "long_term"} <= {
        room.rsplit(".", 1)[-1] for room in rooms
    }
