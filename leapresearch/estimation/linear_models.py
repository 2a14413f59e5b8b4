"""The stacked event study fitted by ``linearmodels`` (``AbsorbingLS``).

The fast in-house estimator (:func:`leapresearch.estimation.event_study.event_study`)
absorbs the fixed effects with an exact block solver; this module fits the same
regression with the library a reviewer in the field knows, ``linearmodels``:
``AbsorbingLS`` with the unit and stack-by-month effects absorbed (LSMR), the same
weights and standard errors clustered by the same variable. It is the estimator of
record of the long-term annual difference-in-differences and the independent check of
the headline event study (notebook 03).

Small-sample correction. ``AbsorbingLS(...).fit(cov_type="clustered", debiased=True)``
multiplies the cluster sandwich ``A^{-1} (sum_g s_g s_g') A^{-1}`` by ``G/(G-1) *
(N-1)/(N-K_lm)`` with ``G``, ``N`` and ``K_lm`` (``fit.df_model``) counted by
``linearmodels`` itself, ``K_lm`` counting *every* absorbed level, including the unit
effects, which are nested in the student clusters. ``fixest``/``pyfixest`` (and the fast
estimator) count a fixed effect nested in the cluster as one parameter only. On a monthly
panel with 24 months per unit the two differ by about 5% in the standard errors, on the
annual panel by much more. The convention kept is the ``fixest`` one: ``linearmodels``'
debiased covariance times ``(N - K_lm) / (N - K)`` with ``K = K_lm - sum (levels - 1)``
over the absorbed effects nested in the cluster, nestedness and levels counted here from
the data. Nothing of the fast estimator's correction (its ``G``, ``N``, ``K`` or factor)
and none of its sample code is reused: the estimation sample is built here (singletons
dropped by a pandas loop of its own), so a wrong degrees-of-freedom count or a wrong
sample in either implementation shows as a difference of the standard errors.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from leapresearch.estimation.event_study import ClusterVar, EventStudyResult, event_study

LSMR_TOL = 1e-10
"""``atol`` and ``btol`` of LSMR when ``linearmodels`` absorbs the fixed effects."""

FE_METHOD = "linearmodels.AbsorbingLS (LSMR)"


def _drop_singletons(effects: pd.DataFrame) -> np.ndarray:
    """Rows kept after dropping, until none is left, rows alone in a level of an effect.

    Written with pandas group sizes, independently of
    :func:`leapresearch.estimation.fixed_effects.singleton_mask`.
    """
    keep = np.ones(len(effects), dtype=bool)
    while True:
        kept = effects[keep]
        alone = np.zeros(len(kept), dtype=bool)
        for col in kept.columns:
            alone |= kept.groupby(col, observed=True)[col].transform("size").to_numpy() == 1
        if not alone.any():
            return keep
        keep[np.flatnonzero(keep)[alone]] = False


def _design(
    panel: pd.DataFrame, result: EventStudyResult, *, outcome: str, weight: str | None
) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, pd.Series | None, np.ndarray]:
    """Dependent, event-time dummies, absorbed categories, weights and the kept rows."""
    effects = pd.DataFrame(
        {
            "unit": panel["unit"].to_numpy(np.int64),
            "stack_month": panel.groupby(["stack", "time"], sort=True).ngroup().to_numpy(),
        }
    )
    keep = _drop_singletons(effects)
    rel = panel["rel_time"].to_numpy(np.int64)
    if result.window is not None:
        rel = np.clip(rel, *result.window)
    treated = panel["treated"].to_numpy() == 1
    terms = result.coefficients.index.to_numpy()
    x = pd.DataFrame(
        {f"rel_time_{r}": (treated & (rel == r)).astype(np.float64)[keep] for r in terms}
    )
    absorb = pd.DataFrame({c: pd.Categorical(effects[c].to_numpy()[keep]) for c in effects})
    y = pd.Series(panel[outcome].to_numpy(np.float64)[keep], name=outcome)
    w = None if weight is None else pd.Series(panel[weight].to_numpy(np.float64)[keep])
    return y, x, absorb, w, keep


def _nested_levels(absorb: pd.DataFrame, clusters: np.ndarray) -> int:
    """``sum (levels - 1)`` over the absorbed effects whose levels each lie in one cluster."""
    out = 0
    for col in absorb.columns:
        per_level = pd.Series(clusters).groupby(absorb[col].to_numpy()).nunique()
        if per_level.max() == 1:
            out += int(per_level.size) - 1
    return out


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
    time``) absorbed by ``AbsorbingLS`` (LSMR, ``atol = btol = 1e-10``). The sample is
    built here (singletons dropped iteratively, as ``fixest``); the event-time terms are
    those of the fast estimator (terms without a treated observation or collinear with
    the fixed effects dropped), which is fitted first to define them. Covariance:
    ``linearmodels``' own clustered sandwich with its own correction (``debiased=True``,
    ``G/(G-1) * (N-1)/(N-K_lm)``), times ``(N-K_lm)/(N-K)`` where ``K`` counts a fixed
    effect nested in the cluster as one parameter (the ``fixest`` default; see the
    module docstring). ``G``, ``N``, ``K_lm`` are ``linearmodels``'; no count of the fast
    estimator enters the covariance.
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
    clusters = pd.factorize(panel[cluster].to_numpy()[keep])[0]
    model = AbsorbingLS(y, x, absorb=absorb, weights=w)
    with warnings.catch_warnings():
        # a term absorbed by the effects must not pass silently
        warnings.simplefilter("error", AbsorbingEffectWarning)
        fit = model.fit(
            cov_type="clustered",
            clusters=clusters,
            debiased=True,
            method="lsmr",
            absorb_options={"atol": LSMR_TOL, "btol": LSMR_TOL},
        )
    n, k_lm = int(fit.nobs), int(fit.df_model)
    k = k_lm - _nested_levels(absorb, clusters)
    idx = fast.coefficients.index
    cov = fit.cov.to_numpy() * (n - k_lm) / (n - k)
    return dataclasses.replace(
        fast,
        coefficients=pd.Series(fit.params.to_numpy(), index=idx, name="estimate"),
        cov=pd.DataFrame(0.5 * (cov + cov.T), index=idx, columns=idx),
        fe_method=FE_METHOD,
        ssc=fast.ssc + "; coefficients and debiased sandwich from linearmodels AbsorbingLS, "
        "nested effects counted once",
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
