"""Shared, expensive test artefacts: a small simulated data folder and a few CLI runs of it.

Everything here is session-scoped and, under ``pytest -n 2`` (pytest-xdist), built once
for the whole session: the first worker that needs an artefact builds it in a folder
shared by the workers (guarded by a file lock) and the others reuse it. Tests never
modify these artefacts; a test that needs to change data copies them first.

Runs go through the real command line in a fresh Python process (``run_cli``), with the
prepared-sample cache redirected to a temporary folder so that tests never write into
``data_raw/.cache``.
"""

from __future__ import annotations

import fcntl
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SIM_SEED = 424242
SIM_FRACTION = 0.05
"""Demo scale at 5%: about 1,650 students, 50 visited; a run takes ~5 s (2 cores)."""

MANIFEST = "checksums.sha256"

TEST_PROCEDURE_DRAWS = 10
"""Whole-procedure bootstrap draws of the test runs (``params/base.yaml``: 199, about 0.5 s
a draw on the 5% sample): every ``leapresearch run`` of the tests gets
:data:`PROCEDURE_OVERRIDE`, and a session that reads such a run passes it too."""
PROCEDURE_OVERRIDE = f"inference.procedure_draws={TEST_PROCEDURE_DRAWS}"

TEST_WORKERS = "1"
"""Processes of a test's ``leapresearch run`` unless it names ``--workers`` or
``--scheduler``: the tables are the same with two (``test_reproducible``'s reference run
uses the default two, and ``test_one_process_gives_the_tables_of_two`` compares them), and
on the small test data two loky workers only add their start (about 4.5 s of CPU a run)."""


def _cli_process(
    args: Sequence[str | os.PathLike],
    *,
    cache_dir: Path | None = None,
    hash_seed: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    argv = [str(a) for a in args]
    if argv[:1] == ["run"] and not any("procedure_draws" in a for a in argv):
        argv += ["-p", PROCEDURE_OVERRIDE]
    if argv[:1] == ["run"] and not {"--workers", "--scheduler"} & set(argv):
        argv += ["--workers", TEST_WORKERS]
    cmd = [sys.executable, "-m", "leapresearch.cli", *argv]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PYTHONHASHSEED"))}
    environ["MPLBACKEND"] = "Agg"
    if cache_dir is not None:  # the run and its notebooks' kernels use this cache
        from leapresearch.session import CACHE_ENV

        environ[CACHE_ENV] = str(cache_dir)
    if hash_seed is not None:
        environ["PYTHONHASHSEED"] = str(hash_seed)
    environ.update(env or {})
    return subprocess.Popen(
        cmd,
        cwd=cwd or tempfile.gettempdir(),
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(
    *args: str | os.PathLike,
    cache_dir: Path | None = None,
    hash_seed: int | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``leapresearch ARGS`` in a fresh Python process and capture its output.

    Parameters
    ----------
    *args
        Command-line arguments after ``leapresearch``.
    cache_dir : Path, optional
        Where the prepared-sample cache goes (instead of ``data_raw/.cache``); give it for
        every ``run`` that may succeed. Without it the process is exactly
        ``python -m leapresearch.cli ARGS``.
    hash_seed : int, optional
        ``PYTHONHASHSEED`` of the process (string hashing, hence set order, differs
        between processes unless fixed).
    cwd : Path, optional
        Working directory (default: the temporary directory, not the project root).
    env : dict, optional
        Extra environment variables (e.g. ``OPENBLAS_CORETYPE``).
    """
    proc = _cli_process(args, cache_dir=cache_dir, hash_seed=hash_seed, cwd=cwd, env=env)
    return _finish(proc, timeout)


def run_cli_concurrently(
    *arg_lists: Sequence[str | os.PathLike], timeout: float = 300
) -> list[subprocess.CompletedProcess]:
    """Several ``python -m leapresearch.cli`` processes at once (they only read)."""
    procs = [_cli_process(args) for args in arg_lists]
    return [_finish(p, timeout) for p in procs]


LONGEST_FILES = (
    "test_trust.py",
    "test_reproducible.py",
    "test_report.py",
    "test_quirks.py",
    "test_long_term.py",
    "test_monte_carlo.py",
)
"""The test files that take longest (``pytest --durations=0``, summed by file), longest first."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, the others after in their order.

    ``make test`` hands whole files to two workers in collection order (``--dist loadfile
    --no-loadscope-reorder``; xdist's default order, most tests first, put files of a few
    long tests last, and one worker finished a minute before the other). A file's own tests
    keep their order.
    """
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what the collection imported from the garbage collector's full passes.

    The package collects garbage after reading a data folder and before writing a run's
    outputs (``gc.collect()``: Arrow's buffers at the state's scale). In a test process,
    which holds every test module, pandas, scipy and matplotlib, a full pass walks about
    400,000 objects (0.1-0.2 s), and the in-process validations and runs of the suite make
    several hundred of them; the imported modules live until the end anyway.
    """
    gc.collect()
    gc.freeze()


def assert_ok(res: subprocess.CompletedProcess) -> None:
    """A CLI call succeeded (the assertion message shows its stderr)."""
    assert res.returncode == 0, (
        f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )


def write_manifest(folder: Path) -> Path:
    """``folder/checksums.sha256`` in ``sha256sum`` format, over the folder's data files."""
    from leapresearch.publish.outputs import sha256_file

    lines = [
        f"{sha256_file(p)}  {p.name}"
        for p in sorted(Path(folder).iterdir())
        if p.suffix in (".csv", ".parquet")
    ]
    path = Path(folder) / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def listing(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones included), relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# --------------------------------------------------------------------------------------
# Building an artefact once per session, across xdist workers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every worker of this pytest session (one session, not reused)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "shared-artefacts"
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def _locked(path: Path):
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``root/name``, built by ``build(folder)`` unless another worker already built it.

    A failed build leaves no ``.done`` marker, so the next caller builds again (and fails
    with its own message).
    """
    folder = root / name
    done = root / f"{name}.done"
    with _locked(root / f"{name}.lock"):
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            build(folder)
            done.touch()
    return folder


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimIds:
    """Identifiers of the simulated input: every SASID and every visit id."""

    student_ids: frozenset[str]
    visit_ids: frozenset[str]


def _simulated():
    from leapresearch.data.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(scale="demo", sample_fraction=SIM_FRACTION, seed=SIM_SEED))


DIGIT_RUN = re.compile(r"\d{7,}")


def find_identifiers(text: str, ids: SimIds) -> set[str]:
    """Student and visit ids of ``ids`` that occur in ``text``.

    A SASID is found inside any longer run of digits, and a SASID with leading zeros also
    in its integer form (zeros dropped) when that still has 8 or more digits. Visit ids
    are found after their letter prefix.
    """
    found: set[str] = set()
    stripped = {i.lstrip("0"): i for i in ids.student_ids if i.startswith("0")}
    stripped = {k: v for k, v in stripped.items() if len(k) >= 8}
    for run in DIGIT_RUN.findall(text):
        found |= {run[k : k + 10] for k in range(len(run) - 9)} & ids.student_ids
        if run in stripped:
            found.add(stripped[run])
    prefixes = sorted({re.match(r"\D*", v).group() for v in ids.visit_ids}, key=len)[::-1]
    if prefixes:
        visit = re.compile("(?:" + "|".join(map(re.escape, prefixes)) + r")\d+")
        found |= set(visit.findall(text)) & ids.visit_ids
    return found


def pdf_text(path: Path) -> str:
    """The text of every page of a PDF and its metadata (pypdf).

    Its bytes are no use: the page text sits in compressed streams, and the
    cross-reference table lists 10-digit byte offsets, numbers that look like SASIDs.
    """
    import pypdf

    reader = pypdf.PdfReader(path)
    parts = [page.extract_text() or "" for page in reader.pages]
    parts += [str(value) for value in (reader.metadata or {}).values()]
    return "\n".join(parts)


def scan_folder(folder: Path, ids: SimIds) -> dict[str, list[str]]:
    """``file -> identifiers found`` over every file (and file name) under ``folder``.

    PNG files are compressed, so their bytes are not scanned (their names are). A PDF is
    scanned as a reader sees it (:func:`pdf_text`), not as bytes.
    """
    hits = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        text = rel
        if path.is_file() and path.suffix.lower() == ".pdf":
            text += "\n" + pdf_text(path)
        elif path.is_file() and path.suffix.lower() != ".png":
            text += "\n" + path.read_bytes().decode("utf-8", errors="replace")
        found = find_identifiers(text, ids)
        if found:
            hits[rel] = sorted(found)[:5]
    return hits


@pytest.fixture(scope="session")
def sim_data(shared_root: Path) -> Path:
    """A valid simulated CSV data folder with a matching ``checksums.sha256`` manifest."""
    from leapresearch.data.simulate import write_simulation

    def build(folder: Path) -> None:
        write_simulation(_simulated(), folder, file_format="csv")
        write_manifest(folder)

    return build_once(shared_root, "data", build)


@pytest.fixture(scope="session")
def sim_ids(sim_data: Path) -> SimIds:
    """Identifiers read back from the data folder (exactly what a run could leak)."""
    import pandas as pd

    students = pd.read_csv(sim_data / "students.csv", dtype=str, usecols=["student_id"])
    visits = pd.read_csv(sim_data / "leap_visits.csv", dtype=str, usecols=["visit_id"])
    return SimIds(frozenset(students["student_id"]), frozenset(visits["visit_id"]))


@pytest.fixture(scope="session")
def valid_fixture(shared_root: Path) -> Path:
    """The tiny hand-checkable valid CSV folder of :mod:`tests.fixtures` (30 students)."""
    from tests.fixtures import make_valid_folder

    return build_once(shared_root, "valid-fixture", make_valid_folder)


# --------------------------------------------------------------------------------------
# Runs (each a fresh `leapresearch run` process)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cli_cache(shared_root: Path) -> Path:
    """The prepared-sample cache of the CLI runs of the tests (never data_raw/.cache)."""
    folder = shared_root / "cache"
    folder.mkdir(exist_ok=True)
    return folder


def _run_into(
    folder: Path, data: Path, cache: Path, *extra: str, hash_seed: int | None = None
) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    res = run_cli(
        "run", "--data", data, "--out", folder, *extra, cache_dir=cache, hash_seed=hash_seed
    )
    assert_ok(res)


@pytest.fixture(scope="session")
def run_a(shared_root: Path, sim_data: Path, cli_cache: Path) -> Path:
    """``leapresearch run --no-notebooks`` of the simulated data (tables, figures, report)."""
    return build_once(
        shared_root,
        "run-a",
        lambda out: _run_into(out, sim_data, cli_cache, "--no-notebooks", hash_seed=1),
    )


@pytest.fixture(scope="session")
def run_small_full(shared_root: Path, sim_data: Path, cli_cache: Path) -> Path:
    """``leapresearch run`` of the simulated 5% sample with its notebooks and the PDF."""
    return build_once(
        shared_root,
        "run-small-full",
        lambda out: _run_into(out, sim_data, cli_cache, hash_seed=3),
    )


@pytest.fixture(scope="session")
def run_b(shared_root: Path, sim_data: Path, cli_cache: Path) -> Path:
    """The same run again, in another process with another ``PYTHONHASHSEED``."""
    return build_once(
        shared_root,
        "run-b",
        lambda out: _run_into(out, sim_data, cli_cache, "--no-notebooks", hash_seed=2),
    )


STRICT_OVERRIDES: Sequence[str] = ("privacy.min_treated=100000", "matching.ratio=2")
"""Run C: every estimate suppressed, and a changed design parameter for ``compare``."""


@pytest.fixture(scope="session")
def run_strict(shared_root: Path, sim_data: Path, cli_cache: Path) -> Path:
    """``run --tables-only -p privacy.min_treated=100000 -p matching.ratio=2``."""
    extra = ["--tables-only"]
    for o in STRICT_OVERRIDES:
        extra += ["-p", o]
    return build_once(
        shared_root, "run-strict", lambda out: _run_into(out, sim_data, cli_cache, *extra)
    )


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect the prepared-sample cache of in-process runs to a temporary folder."""
    import leapresearch.session

    folder = tmp_path / "cache"
    monkeypatch.setattr(leapresearch.session, "CACHE_DIR", folder)
    return folder


def pdf_drawn_extent(page) -> tuple[float, float, float, float]:
    """The smallest box ``(x0, y0, x1, y1)`` holding every point a PDF page draws (pypdf).

    Follows the transformation matrix (``q``, ``Q``, ``cm``) through the points of paths and
    rectangles, the origin of each text run (``Tm``), images (the unit square) and forms
    (their bounding box): a figure or table cut off by the page edge reaches outside.
    """
    from pypdf.generic import ContentStream

    def mul(m, n):
        a, b, c, d, e, f = m
        p, q, r, s, t, u = n
        return (a * p + b * r, a * q + b * s, c * p + d * r, c * q + d * s,
                e * p + f * r + t, e * q + f * s + u)  # fmt: skip

    xs: list[float] = []
    ys: list[float] = []

    def add(points, m):
        a, b, c, d, e, f = m
        for x, y in points:
            xs.append(a * x + c * y + e)
            ys.append(b * x + d * y + f)

    resources = page["/Resources"].get_object()
    xobjects = resources["/XObject"].get_object() if "/XObject" in resources else {}
    ctm, stack = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), []
    for operands, op in ContentStream(page.get_contents(), page.pdf).operations:
        nums = [float(v) for v in operands if isinstance(v, int | float)]
        if op == b"q":
            stack.append(ctm)
        elif op == b"Q":
            ctm = stack.pop()
        elif op == b"cm":
            ctm = mul(tuple(nums), ctm)
        elif op in (b"m", b"l", b"c", b"v", b"y"):
            add(zip(nums[::2], nums[1::2], strict=True), ctm)
        elif op == b"re":
            x, y, w, h = nums
            add([(x, y), (x + w, y + h)], ctm)
        elif op == b"Tm":
            add([(0.0, 0.0)], mul(tuple(nums), ctm))
        elif op == b"Do":
            xo = xobjects[operands[0]].get_object()
            if xo["/Subtype"] == "/Image":
                add([(0, 0), (1, 1), (0, 1), (1, 0)], ctm)
            else:
                x0, y0, x1, y1 = (float(v) for v in xo["/BBox"])
                m = tuple(float(v) for v in xo.get("/Matrix", (1, 0, 0, 1, 0, 0)))
                add([(x0, y0), (x1, y1), (x0, y1), (x1, y0)], mul(m, ctm))
    if not xs:
        return (0.0, 0.0, 0.0, 0.0)
    return (min(xs), min(ys), max(xs), max(ys))
