"""A small Monte Carlo of the default design, under both selection regimes.

The committed full run (``validation/monte_carlo.py``, 200 demo-size draws per regime,
results in ``validation/results/``) is too long for the test suite; this is its small
version: 20 draws per regime of a fifth of the demo population (about 200 visited
students each), the comparison pool and intervals of ``params/base.yaml``. The bounds can
fail: a design that conditions on the future or intervals that ignore part of the
variance miss them (the full run's ``never_visited`` rows show by how much).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 20
FRACTION = 0.2


def _monte_carlo_module():
    spec = importlib.util.spec_from_file_location(
        "monte_carlo", ROOT / "validation" / "monte_carlo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def draws() -> pd.DataFrame:
    mc = _monte_carlo_module()
    frames = [
        mc.run_draw(regime, 500_000 + i, ("default",), sample_fraction=FRACTION)
        for regime in ("lists", "hazard")
        for i in range(DRAWS)
    ]
    d = pd.concat(frames, ignore_index=True)
    return d.loc[d["group"] == "all"]


def test_every_draw_estimated_all_headline_months(draws):
    counts = draws.groupby(["regime", "rel_time"]).size()
    assert (counts == DRAWS).all() and len(counts) == 8


def test_default_intervals_cover_the_truth_in_at_least_90_percent(draws):
    covered = (draws["ci_lower"] <= draws["truth"]) & (draws["truth"] <= draws["ci_upper"])
    by_regime = covered.groupby(draws["regime"]).mean()
    assert (by_regime >= 0.90).all(), by_regime.to_dict()


@pytest.mark.parametrize("regime", ["lists", "hazard"])
def test_default_design_is_unbiased_for_all_visited_students(draws, regime):
    """Mean error over the draws within 3 Monte Carlo standard errors."""
    d = draws.loc[draws["regime"] == regime]
    error = (d["estimate"] - d["truth"]).groupby(d["rel_time"])
    bias, mcse = error.mean(), error.std(ddof=1) / np.sqrt(error.size())
    assert (bias.abs() < 3 * mcse).all(), (bias, mcse)
