"""The stacked event study fitted by ``linearmodels`` (``AbsorbingLS``).

The fast in-house estimator (:func:`leapresearch.estimation.event_study.event_study`)
absorbs the fixed effects with an exact block solver; this module fits the same
regression with the library a reviewer in the field knows, ``linearmodels``:
``AbsorbingLS`` with the unit and stack-by-month effects absorbed (LSMR), the same
weights and standard errors clustered by the same variable. It is the estimator of
record of the long-term annual difference-in-differences and the independent check of
the headline event study (notebook 03).

Small-sample correction. ``AbsorbingLS(...).fit(cov_type="clustered", debiased=False)``
returns the uncorrected cluster sandwich ``A^{-1} (sum_g s_g s_g') A^{-1}``. Its
``debiased=True`` multiplies it by ``G/(G-1) * (N-1)/(N-K)`` with ``K`` counting *every*
absorbed level, including the unit effects, which are nested in the student clusters;
``fixest``/``pyfixest`` (and the fast estimator) do not count fixed effects nested in
the cluster (``K`` = event-time terms + stack-by-month cells). On a monthly panel with
24 months per unit the two differ by about 5% in the standard errors, on the annual
panel by much more. The convention kept is the ``fixest`` one: the uncorrected
``linearmodels`` sandwich times ``G/(G-1) * (N-1)/(N-K)`` with nested effects not
counted, so that the standard errors of both estimators are comparable; the equality of
the two is tested.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from leapresearch.estimation.event_study import ClusterVar, EventStudyResult, event_study
from leapresearch.estimation.fixed_effects import combine_codes, factorize, singleton_mask

LSMR_TOL = 1e-10
"""``atol`` and ``btol`` of LSMR when ``linearmodels`` absorbs the fixed effects."""

FE_METHOD = "linearmodels.AbsorbingLS (LSMR)"


def _design(
    panel: pd.DataFrame, result: EventStudyResult, *, outcome: str, weight: str | None
) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, pd.Series | None, np.ndarray]:
    """Dependent, event-time dummies, absorbed categories, weights and the kept rows."""
    stack = panel["stack"].to_numpy(np.int64)
    time = panel["time"].to_numpy(np.int64)
    unit_code = factorize(panel["unit"].to_numpy(np.int64))[0]
    cell_code = combine_codes(factorize(stack)[0], factorize(time)[0])[0]
    keep = singleton_mask([unit_code, cell_code])  # the fast estimator's sample
    rel = panel["rel_time"].to_numpy(np.int64)
    if result.window is not None:
        rel = np.clip(rel, *result.window)
    treated = panel["treated"].to_numpy() == 1
    terms = result.coefficients.index.to_numpy()
    x = pd.DataFrame(
        {f"rel_time_{r}": (treated & (rel == r)).astype(np.float64)[keep] for r in terms}
    )
    absorb = pd.DataFrame(
        {
            "unit": pd.Categorical(unit_code[keep]),
            "stack_month": pd.Categorical(cell_code[keep]),
        }
    )
    y = pd.Series(panel[outcome].to_numpy(np.float64)[keep], name=outcome)
    w = None if weight is None else pd.Series(panel[weight].to_numpy(np.float64)[keep])
    return y, x, absorb, w, keep


def linearmodels_event_study(
    panel: pd.DataFrame,
    *,
    outcome: str = "attendance_pp",
    window: tuple[int, int] | None = (-12, 12),
    reference: int = -1,
    cluster: ClusterVar = "student",
    weight: str | None = "weight",
) -> EventStudyResult:
    """Stacked event study fitted by ``linearmodels.iv.absorbing.AbsorbingLS``.

    Parameters
    ----------
    panel : pandas.DataFrame
        As for :func:`~leapresearch.estimation.event_study.event_study`.
    outcome, window, reference, cluster, weight
        As for :func:`~leapresearch.estimation.event_study.event_study`.

    Returns
    -------
    EventStudyResult
        Coefficients and covariance from ``linearmodels``; the sample description
        (counts, dropped singletons and terms, ``G``, ``N``, ``K``) is that of the same
        specification, so that :meth:`~EventStudyResult.table` and the pre-trend test
        work unchanged. ``fe_method`` names ``linearmodels``.

    Notes
    -----
    Estimating equation, for unit ``i`` in stack ``s`` observed in month (or school
    year) ``t``::

        y_ist = a_is + g_st + sum_{r != ref} b_r * Treated_i * 1[bin(t - s) = r] + e_ist

    by weighted least squares with ``a_is`` (column ``unit``) and ``g_st`` (``stack x
    time``) absorbed by ``AbsorbingLS`` (LSMR, ``atol = btol = 1e-10``). The sample and
    the event-time terms are those of the fast estimator (singletons dropped, terms
    without a treated observation or collinear with the fixed effects dropped), which is
    fitted first to define them. Covariance: ``linearmodels``' clustered sandwich
    without its own correction (``debiased=False``), times ``G/(G-1) * (N-1)/(N-K)``
    with fixed effects nested in the cluster not counted in ``K`` (the ``fixest``
    default; see the module docstring for why ``debiased=True`` is not used).
    """
    from linearmodels.iv.absorbing import AbsorbingLS
    from linearmodels.panel.utility import AbsorbingEffectWarning

    fast = event_study(
        panel,
        outcome=outcome,
        window=window,
        reference=reference,
        cluster=cluster,
        weight=weight,
    )
    y, x, absorb, w, keep = _design(panel, fast, outcome=outcome, weight=weight)
    clusters = factorize(panel[cluster].to_numpy()[keep])[0]
    model = AbsorbingLS(y, x, absorb=absorb, weights=w)
    with warnings.catch_warnings():
        # a term absorbed by the effects must not pass silently
        warnings.simplefilter("error", AbsorbingEffectWarning)
        fit = model.fit(
            cov_type="clustered",
            clusters=clusters,
            debiased=False,
            method="lsmr",
            absorb_options={"atol": LSMR_TOL, "btol": LSMR_TOL},
        )
    idx = fast.coefficients.index
    cov = fit.cov.to_numpy() * fast.ssc_factor
    return dataclasses.replace(
        fast,
        coefficients=pd.Series(fit.params.to_numpy(), index=idx, name="estimate"),
        cov=pd.DataFrame(0.5 * (cov + cov.T), index=idx, columns=idx),
        fe_method=FE_METHOD,
        ssc=fast.ssc + "; coefficients and uncorrected sandwich from linearmodels AbsorbingLS",
    )


def compare_estimators(fast: EventStudyResult, library: EventStudyResult) -> pd.DataFrame:
    """Coefficients and standard errors of two fits of the same event study, side by side.

    Parameters
    ----------
    fast : EventStudyResult
        The in-house estimator's fit.
    library : EventStudyResult
        The ``linearmodels`` fit (:func:`linearmodels_event_study`).

    Returns
    -------
    DataFrame
        ``rel_time, estimate_fast, estimate_linearmodels, std_error_fast,
        std_error_linearmodels, estimate_difference, std_error_difference`` (absolute
        differences, percentage points) and ``n_treated`` (visited students observed at
        that event time, so small cells are suppressed like the event study's).
    """
    if list(fast.coefficients.index) != list(library.coefficients.index):
        raise ValueError("the two fits do not estimate the same event-time terms")
    out = pd.DataFrame(
        {
            "rel_time": fast.coefficients.index.to_numpy(np.int64),
            "estimate_fast": fast.coefficients.to_numpy(),
            "estimate_linearmodels": library.coefficients.to_numpy(),
            "std_error_fast": fast.std_errors.to_numpy(),
            "std_error_linearmodels": library.std_errors.to_numpy(),
        }
    )
    out["estimate_difference"] = (out["estimate_fast"] - out["estimate_linearmodels"]).abs()
    out["std_error_difference"] = (out["std_error_fast"] - out["std_error_linearmodels"]).abs()
    by_time = fast.n_treated_by_rel_time.reindex(out["rel_time"]).fillna(0)
    out["n_treated"] = by_time.to_numpy(np.int64)
    return out
