"""The allocator settings of the command line (``threads.keep_freed_memory``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from leapresearch.threads import KEPT_MEMORY_SETTINGS

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's allocator settings"
)

# allocates a 200 MB array and reports, from glibc's mallinfo2, the bytes held in blocks of
# their own mmap and in the heap while it lives, and the environment the children inherit
PROBE = """
import ctypes, json, os, sys
import numpy as np
from leapresearch.threads import KEPT_MEMORY_SETTINGS, keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
big = np.ones(25_000_000)
info = libc.mallinfo2()
print(json.dumps({"applied": applied, "mmapped": info.hblkhd, "heap": info.arena,
                  "env": {k: os.environ.get(k) for k in KEPT_MEMORY_SETTINGS}}))
"""


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in KEPT_MEMORY_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_large_arrays_come_from_the_reused_heap():
    default = _probe("default")
    kept = _probe("keep")
    # by default the 200 MB array has its own mmap (freed pages go back to the system)
    assert default["mmapped"] >= 200_000_000
    assert kept["applied"] is True
    assert kept["mmapped"] < 1_000_000
    assert kept["heap"] >= 200_000_000
    # the workers and kernels the command line starts inherit the settings
    assert kept["env"] == {k: str(v) for k, (_, v) in KEPT_MEMORY_SETTINGS.items()}


def test_a_users_own_setting_is_left_alone():
    kept = _probe("keep", MALLOC_MMAP_MAX_="65536")
    assert kept["env"]["MALLOC_MMAP_MAX_"] == "65536"
    assert kept["mmapped"] >= 200_000_000  # glibc applied the user's value at start
    assert kept["env"]["MALLOC_TRIM_THRESHOLD_"] == str(
        KEPT_MEMORY_SETTINGS["MALLOC_TRIM_THRESHOLD_"][1]
    )


def test_the_command_line_applies_the_settings(monkeypatch, tmp_path):
    from leapresearch import cli

    calls = []
    monkeypatch.setattr("leapresearch.threads.keep_freed_memory", lambda: calls.append(1))
    assert cli.main(["validate", str(tmp_path / "missing")]) == 1
    assert calls == [1]
