"""The long-term repeat run pools its draws with a summarised run exactly (issue 23)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "validation" / "long_term_repeat.py"
    spec = importlib.util.spec_from_file_location("long_term_repeat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pooling_a_summarised_run_equals_concatenating_its_draws():
    repeat = _script()
    rng = np.random.default_rng(3)
    new = pd.Series(rng.normal(0.3, 2.0, size=57))
    old_draws = rng.normal(-0.4, 1.5, size=150)
    old = pd.DataFrame(
        {
            "draws": [len(old_draws)],
            "bias": [old_draws.mean()],
            "bias_mcse": [old_draws.std(ddof=1) / np.sqrt(len(old_draws))],
        }
    )
    both = np.concatenate([new.to_numpy(), old_draws])
    n, mean, se = repeat._pooled(new, old)
    assert n == len(both)
    assert np.isclose(mean, both.mean(), rtol=0, atol=1e-12)
    assert np.isclose(se, both.std(ddof=1) / np.sqrt(len(both)), rtol=1e-12)
    # without a summarised cell: this run alone
    n, mean, se = repeat._pooled(new, old.iloc[0:0])
    assert (n, mean) == (len(new), new.mean())
    assert np.isclose(se, new.std(ddof=1) / np.sqrt(len(new)))


def test_the_eighth_freeze_summary_reads_its_own_draws_and_the_paired_fit():
    """``long_term_reference_year.summarise``: this run alone (nothing pooled), the bound
    judged on its bias, and the paired fit's bias and the draw-by-draw error gap beside it."""
    path = ROOT / "validation" / "long_term_reference_year.py"
    spec = importlib.util.spec_from_file_location("long_term_reference_year", path)
    eighth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eighth)
    rng = np.random.default_rng(5)
    n = 50
    truth = rng.normal(10, 1, n)
    draws = pd.DataFrame(
        {
            "family": "lists",
            "group": "all",
            "cohort": "2021-22",
            "rel_time": 1,
            "truth": truth,
            "estimate": truth + 0.8 + rng.normal(0, 0.3, n),
            "ci_lower": truth - 5.0,
            "ci_upper": truth + 5.0,
            "estimate_twin": rng.normal(0.6, 0.3, n),
            "without_reference_year": 0.15,
            "truth_every": truth - 0.2,
            "estimate_every": truth + 0.1 + rng.normal(0, 0.3, n),
        }
    )
    (cell,) = eighth.summarise(draws).itertuples()
    err = draws["estimate"] - draws["truth"]
    every = draws["estimate_every"] - draws["truth_every"]
    assert cell.draws == n and cell.pooled_draws == n  # nothing pooled
    assert np.isclose(cell.bias, err.mean()) and np.isclose(cell.pooled_bias, err.mean())
    assert not cell.within_bound and cell.clearly_beyond  # about +0.8 pp
    assert np.isclose(cell.every_bias, every.mean())
    assert np.isclose(cell.error_gap, err.mean() - every.mean())
    gap = err - every
    assert np.isclose(cell.error_gap_mc_se, gap.std(ddof=1) / np.sqrt(n))
    assert not any(c.startswith("fifth_freeze") for c in eighth.summarise(draws).columns)
