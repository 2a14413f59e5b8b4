"""What every narrative module shares: snapped inputs and months and points in words.

:func:`_snapped` snaps every table argument to 12 significant digits
(:func:`leapresearch.publish.outputs.snap_frame`) before a sentence reads it, so a
last-bit difference cannot flip a printed digit; :func:`_pp` prints a signed number of
percentage points and :func:`_months` a month after the first visit in words.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import pandas as pd

from leapresearch.publish.labels import (
    fmt,
    group_label,
)
from leapresearch.publish.outputs import snap_frame

_F = TypeVar("_F", bound=Callable[..., object])


def _snapped(func: _F) -> _F:
    """Call ``func`` with every table argument snapped (:func:`snap_frame`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        args = tuple(snap_frame(a) if isinstance(a, pd.DataFrame) else a for a in args)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


MONTH_WORDS = {
    1: "one month",
    3: "three months",
    6: "six months",
    9: "nine months",
    12: "twelve months or more",
}


def _pp(x: float) -> str:
    return f"{fmt(x, 1, signed=True)} pp"


def _months(r: int) -> str:
    return MONTH_WORDS.get(r, f"{r} months")


def _who(group: str) -> str:
    """A group's label inside a sentence ("all visited students", "Grades PK-5")."""
    return group_label(group).lower() if group == "all" else group_label(group)
