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
