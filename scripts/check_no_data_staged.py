#!/usr/bin/env python3
"""Refuse to commit data: student records, extracts, caches and run folders never enter git.

Usage::

    python scripts/check_no_data_staged.py            # the files staged for commit
    python scripts/check_no_data_staged.py PATH ...   # the given paths
    python scripts/check_no_data_staged.py --tracked  # every file git already tracks
    python scripts/check_no_data_staged.py --install  # install as the git pre-commit hook

Exit 0 when no path is a data file, 1 when one is (each is listed on stderr with the
reason), 2 when git cannot be asked. A data file is

* any file with a data extension (``.csv``, ``.parquet``, ``.xlsx``, ``.sav``, ``.dta``,
  ``.feather``, ``.pkl`` ... anywhere in the name, so ``x.csv.gz`` counts);
* anything under ``data_raw/`` except ``data_raw/README.md`` (extracts, ``.cache/``);
* anything under ``outputs/`` except ``outputs/README.md`` (run folders are products).

The one exception: a public reference data set a test compares with published numbers,
listed in :data:`PUBLIC_REFERENCE_DATA` under its path with the SHA-256 of its bytes (its
source in ``tests/data/SOURCES.md``); a file at that path with any other content is refused.

Deleting such a file from the index is allowed (only added, copied, modified and renamed
files are checked). Standard library only, so the hook runs without the project's venv.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

DATA_EXTENSIONS = frozenset(
    {
        ".csv",
        ".tsv",
        ".parquet",
        ".pq",
        ".feather",
        ".arrow",
        ".xlsx",
        ".xls",
        ".sav",
        ".dta",
        ".sas7bdat",
        ".rds",
        ".rdata",
        ".pkl",
        ".pickle",
        ".h5",
        ".hdf5",
        ".sqlite",
        ".db",
    }
)
PUBLIC_REFERENCE_DATA = {
    # R `did`'s mpdta (500 US counties; tests/data/SOURCES.md), for tests/test_robust_published.py
    "tests/data/mpdta.csv": "2283bea1221a152420f98dfa20f633c5d054ea51d881115c8cd702a97bcd3167",
}
"""Path -> SHA-256 of the public data sets that may be committed (no student record)."""

PROTECTED_FOLDERS = {"data_raw": "data_raw/README.md", "outputs": "outputs/README.md"}
"""Top-level folder -> the one file in it that may be committed."""

HOOK_MARKER = "# installed by scripts/check_no_data_staged.py"
HOOK = f"""#!/bin/sh
{HOOK_MARKER}
# Refuses a commit that stages data files (see that script).
exec python3 "$(git rev-parse --show-toplevel)/scripts/check_no_data_staged.py"
"""


def data_reason(path: str) -> str | None:
    """Why ``path`` (relative to the repository root, ``/``-separated) is data, or None."""
    p = PurePosixPath(path.replace(os.sep, "/"))
    parts = p.parts
    if parts and parts[0] in PROTECTED_FOLDERS and str(p) != PROTECTED_FOLDERS[parts[0]]:
        return f"under {parts[0]}/ (only {PROTECTED_FOLDERS[parts[0]]} may be committed)"
    found = sorted(s.lower() for s in p.suffixes if s.lower() in DATA_EXTENSIONS)
    if found and str(p) in PUBLIC_REFERENCE_DATA:
        if _sha256(str(p)) == PUBLIC_REFERENCE_DATA[str(p)]:
            return None
        return f"data file type {found[0]} (not the public data set pinned at this path)"
    if found:
        return f"data file type {found[0]}"
    return None


def _sha256(path: str) -> str | None:
    """SHA-256 of the file at ``path`` (relative to the working directory), None if absent."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def data_files(paths: Iterable[str]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every data file among ``paths``."""
    out = []
    for path in paths:
        reason = data_reason(path)
        if reason is not None:
            out.append((path, reason))
    return out


def _git(*args: str) -> list[str]:
    res = subprocess.run(["git", *args], capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return [p for p in res.stdout.decode("utf-8", errors="surrogateescape").split("\0") if p]


def staged_paths() -> list[str]:
    """Files added, copied, modified or renamed in the index (deletions are fine)."""
    return _git("diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR")


def tracked_paths() -> list[str]:
    """Every file git tracks."""
    return _git("ls-files", "-z")


def install_hook() -> int:
    """Write ``.git/hooks/pre-commit`` (refuses to replace someone else's hook)."""
    hooks = _git("rev-parse", "--git-path", "hooks")[0].strip()
    os.makedirs(hooks, exist_ok=True)
    path = os.path.join(hooks, "pre-commit")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            if HOOK_MARKER not in f.read():
                print(
                    f"error: {path} exists and is not ours; add this check to it", file=sys.stderr
                )
                return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(HOOK)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"installed {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="paths to check (default: the staged files)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tracked", action="store_true", help="check every tracked file")
    mode.add_argument("--install", action="store_true", help="install the pre-commit hook")
    args = parser.parse_args(argv)
    try:
        if args.install:
            return install_hook()
        if args.paths:
            paths, what = list(args.paths), "given"
        elif args.tracked:
            paths, what = tracked_paths(), "tracked"
        else:
            paths, what = staged_paths(), "staged"
    except (OSError, RuntimeError) as exc:
        print(f"error: cannot ask git: {exc}", file=sys.stderr)
        return 2
    bad = data_files(paths)
    if bad:
        print(f"error: {len(bad)} data file(s) {what}; data never enter git:", file=sys.stderr)
        for path, reason in bad:
            print(f"  {path}: {reason}", file=sys.stderr)
        if what == "staged":
            print("unstage them with: git restore --staged <file>", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
