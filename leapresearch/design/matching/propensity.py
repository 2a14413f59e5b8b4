"""The propensity model: the linear propensity score (logit) of every candidate row.

A logistic regression of ``treated`` on the covariates and fixed-effect dummies is fitted
within every fit group (by default every stack), on rows in an order set by their values,
with rows of single-class fixed-effect levels set aside, aliased columns dropped and a
ridge fallback where the maximum-likelihood fit separates or does not converge. Scores are
rounded to the grid of :data:`~leapresearch.design.matching.grid.PSCORE_DECIMALS`
decimals; rows with identical covariates share one score bit for bit.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.design.matching.grid import PSCORE_DECIMALS, MatchKeys, match_keys
from leapresearch.design.matching.logit import (
    ClusterTerms,
    _dummies,
    _DummyRuns,
    _logit_newton,
    _non_aliased,
    _raw_coefficients,
    _standardised_coefficients,
    cluster_terms,
    dummy_runs,
)
from leapresearch.design.matching.options import (
    DEFAULT_FIXED_EFFECTS,
    _as_bool,
    _as_names,
    _numeric_values,
    _require_columns,
)
from leapresearch.design.matching.separation import (
    _one_column_separates,
    _overlap_certified,
    _program_remembering,
    _remembered_separates,
)
from leapresearch.design.matching.sorting import _refined_lexsort

RIDGE_FALLBACK: float = 1.0
"""Ridge penalty of the fallback fit (on the summed log-likelihood, standardised scale)."""


class PropensityFitWarning(UserWarning):
    """The maximum-likelihood logit did not converge or separated; a ridge fit was used."""


def propensity_scores(
    candidates: pd.DataFrame,
    *,
    covariates: Sequence[str],
    by: Sequence[str] = ("stack",),
    fixed_effects: Sequence[str] = DEFAULT_FIXED_EFFECTS,
    start: Mapping[Any, Mapping[str, float]] | None = None,
    weights: np.ndarray | None = None,
    plan: PropensityPlan | None = None,
) -> pd.Series:
    r"""Estimate the linear propensity score (logit) of every candidate row.

    A logistic regression of ``treated`` on ``covariates`` plus dummies of each
    ``fixed_effects`` column (first level dropped) is fitted separately within every
    combination of ``by``; the result is its linear predictor, rounded to
    :data:`PSCORE_DECIMALS` decimals, the same for rows with identical covariates.

    Parameters
    ----------
    candidates : pandas.DataFrame
        One row per (stack, student) candidate with a boolean ``treated`` column, the
        numeric ``covariates`` (no missing values), the ``by`` and ``fixed_effects``.
    covariates : sequence of str
        Numeric covariate columns.
    by : sequence of str, default ("stack",)
        Columns defining separate fits.
    fixed_effects : sequence of str, default ("district", "grade_band")
        Categorical columns entered as additive dummies.
    start : mapping, optional
        By fit group, ``coefficients`` of an earlier fit (a bootstrap draw: the full
        sample's) where the Newton fits start; the maximum is the same (both objectives
        are concave), up to the convergence criterion (the score's last decimal).
    weights : ndarray, optional
        Positive weights of the rows' log-likelihoods (a bootstrap draw's); a row of
        weight 2 counts as two identical rows.
    plan : PropensityPlan, optional
        :func:`propensity_plan` of these candidates: its steps are reused (same scores).

    Returns
    -------
    pandas.Series
        ``pscore`` aligned with ``candidates.index``. ``attrs["fit_diagnostics"]`` holds one
        dict per fit group (rows used, columns dropped, method, convergence and, if
        converged, ``coefficients`` on the covariates' scale by name, :data:`INTERCEPT`).

    Raises
    ------
    ValueError
        If a column is missing, a covariate is non-numeric or has missing values, or
        ``treated`` is not boolean/0-1.

    Warns
    -----
    PropensityFitWarning
        When the maximum-likelihood fit of a group does not converge or separates and the
        ridge fallback is used.

    Notes
    -----
    Within a fit group with rows :math:`i`, the model is

    .. math::

        \operatorname{logit} P(T_i = 1) = \eta_i = \alpha + z_i'\beta
            + \sum_f \gamma_{f, g_f(i)},

    where :math:`z_i` are the covariates standardised within the group and
    :math:`\gamma_{f,g}` the fixed effect of level :math:`g` of column :math:`f`
    (:math:`\gamma_{f,1} = 0`). It is fitted by Newton-Raphson with step halving, using
    the sparse structure of the dummies, until the relative change of the deviance is
    below :math:`10^{-10}` (R's ``glm`` criterion). Before fitting:

    * rows in a fixed-effect level containing only treated or only comparison rows are set
      aside (repeatedly, until stable): their maximum-likelihood fixed effect is
      :math:`\pm\infty`, they carry no information on :math:`\beta`, and their ``pscore``
      is NaN (they cannot be matched within an exact stratum anyway);
    * covariates constant within the group are dropped, and so are columns that are
      (numerically) linear combinations of earlier ones, covariates first in the order
      given, then the dummies (``1 - R^2 < 1e-9``, by a sequential Cholesky factorisation
      of their correlation matrix), as R's ``glm`` aliases them; the linear predictor does
      not depend on which aliased column is dropped.

    (Quasi-)separation, where the maximum-likelihood estimate does not exist, is decided
    by a linear program (:func:`_is_separated`), not from the iterates of a diverging fit.
    Separated groups and fits not converged in 50 steps warn and are refitted maximising
    :math:`\ell(\theta) - \tfrac{\lambda}{2}\lVert\theta_{-\alpha}\rVert^2`,
    :math:`\lambda = 1`, which always has a finite maximiser. A group with no treated or
    no comparison rows gets NaN. Rows are fitted in an order set by their values.
    """
    plans = _plans_of(candidates, covariates, by, fixed_effects, plan)
    weights = _checked_weights(weights, len(candidates))
    eta, diagnostics = _fit_groups(plans, len(candidates), start or {}, weights)
    out = pd.Series(eta, index=candidates.index, name="pscore")
    out.attrs["fit_diagnostics"] = tuple(diagnostics)
    return out


def _plans_of(
    candidates: pd.DataFrame,
    covariates: Sequence[str],
    by: Sequence[str],
    fixed_effects: Sequence[str],
    plan: PropensityPlan | None,
) -> Iterable[_GroupPlan]:
    """The groups' plans: ``plan``'s (checked), else made one at a time (one design held)."""
    if plan is None:
        return _group_plans(*_checked_inputs(candidates, covariates, by, fixed_effects))
    _check_plan(plan, candidates, covariates, by, fixed_effects)
    return plan.groups


def _check_plan(
    plan: PropensityPlan,
    candidates: pd.DataFrame,
    covariates: Sequence[str],
    by: Sequence[str],
    fixed_effects: Sequence[str],
) -> None:
    """ValueError unless ``plan`` was made for such candidates with these options.

    Checked: the number of rows, the options, and every row's ``treated`` (a plan of other
    candidates of the same size would fit other rows).
    """
    names = _option_names(covariates, by, fixed_effects)
    if plan.n_rows != len(candidates) or plan.names != names:
        raise ValueError(
            f"propensity plan of {plan.n_rows:,} rows and (covariates, by, fixed effects) "
            f"{plan.names} does not fit {len(candidates):,} candidate rows and {names}"
        )
    treated = _as_bool(candidates["treated"])
    for group in plan.groups:
        if not np.array_equal(treated[group.rows], group.y.astype(bool)):
            raise ValueError(
                f"propensity plan of other candidates: the rows of {group.label} differ in "
                "'treated' from those the plan was made for"
            )


def _fixed_effect_codes(
    candidates: pd.DataFrame, fixed_effects: Sequence[str]
) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
    """Codes of each fixed-effect column's levels, sorted (not in the order of the rows)."""
    fe_codes, fe_labels = [], []
    for f in fixed_effects:
        codes, uniques = pd.factorize(candidates[f], use_na_sentinel=False, sort=True)
        fe_codes.append(codes.astype(np.int64))
        fe_labels.append((f, np.asarray(uniques, dtype=object)))
    return fe_codes, fe_labels


@dataclass(frozen=True)
class _GroupPlan:
    """The weight-free part of one fit group's propensity fit (see :class:`PropensityPlan`).

    ``rows``: the group's candidate rows in canonical order (unweighted); ``first``: the
    position of each row's pattern's first row; ``tie_block``: a code of each run of rows
    tied on every key (``treated`` too), None when no two rows tie; ``y``: ``treated`` as
    float; ``active``: :func:`_informative_rows`; ``design``: what :func:`_design` returns
    on them (None when the active rows hold a single class or none); ``one_column``:
    :func:`_one_column_separates` of that design; ``runs``: :func:`dummy_runs` of its
    dummies (every Newton fit of the group shares them); ``start_terms``: the fit's terms
    at the draws' common start by cluster (:func:`with_start_terms`), or None.
    """

    key: Any
    label: str
    rows: np.ndarray
    first: np.ndarray
    tie_block: np.ndarray | None
    y: np.ndarray
    active: np.ndarray
    design: tuple | None
    one_column: bool
    runs: _DummyRuns | None = None
    start_terms: ClusterTerms | None = None


@dataclass(frozen=True)
class PropensityPlan:
    """Everything of the propensity fits of some candidates that row weights do not change.

    The groups, each group's canonical row order, its informative rows, its standardised
    design with the aliased columns dropped and whether one column separates it: a
    Bayesian bootstrap draw re-fits the same candidates with new row weights, and only the
    Newton fits depend on those (:func:`propensity_plan`). Holds one dense design a group
    (rows by covariates, float64): at the districts scale about half a gigabyte.
    ``match_keys``: the nearest-neighbour step's keys and strata of the same candidates
    (:func:`with_match_keys`), which the draws' matching shares too, or None.
    """

    groups: tuple[_GroupPlan, ...]
    n_rows: int
    names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    match_keys: MatchKeys | None = None


def propensity_plan(
    candidates: pd.DataFrame,
    *,
    covariates: Sequence[str],
    by: Sequence[str] = ("stack",),
    fixed_effects: Sequence[str] = DEFAULT_FIXED_EFFECTS,
) -> PropensityPlan:
    """The weight-free part of :func:`propensity_scores` on ``candidates``, for its ``plan``.

    Computed once, it lets weighted re-fits of the same candidates (the draws of the
    Bayesian bootstrap) skip the sorting, the design and the checks that do not depend on
    the weights; the scores are the same bit for bit as without it.
    """
    args = _checked_inputs(candidates, covariates, by, fixed_effects)
    names = _option_names(covariates, by, fixed_effects)
    return PropensityPlan(tuple(_group_plans(*args)), len(candidates), names)


def _option_names(
    covariates: Sequence[str], by: Sequence[str], fixed_effects: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``covariates``, ``by`` and ``fixed_effects`` as checked tuples of names."""
    return (
        _as_names(covariates, "covariates"),
        _as_names(by, "by"),
        _as_names(fixed_effects, "fixed_effects"),
    )


def _checked_inputs(
    candidates: pd.DataFrame,
    covariates: Sequence[str],
    by: Sequence[str],
    fixed_effects: Sequence[str],
) -> tuple:
    """The arguments of :func:`_group_plans`, after the checks of :func:`propensity_scores`."""
    covariates, by, fixed_effects = _option_names(covariates, by, fixed_effects)
    _require_columns(candidates, ["treated", *covariates, *by, *fixed_effects])
    treated = _as_bool(candidates["treated"])
    cov_arrays = {c: _numeric_values(candidates, c) for c in covariates}
    for c in covariates:  # every row is in a group (dropna=False)
        if not np.isfinite(np.asarray(cov_arrays[c], dtype=float)).all():
            raise ValueError(f"covariate {c!r} has missing or non-finite values")
    fe_codes, fe_labels = _fixed_effect_codes(candidates, fixed_effects)
    return candidates, treated, cov_arrays, covariates, by, fe_codes, fe_labels


def _group_plans(
    candidates: pd.DataFrame,
    treated: np.ndarray,
    cov_arrays: dict[str, np.ndarray],
    covariates: tuple[str, ...],
    by: tuple[str, ...],
    fe_codes: list[np.ndarray],
    fe_labels: list[tuple[str, np.ndarray]],
) -> Iterator[_GroupPlan]:
    """Every ``by`` group's :class:`_GroupPlan`, one at a time (rows in canonical order)."""
    groups = candidates.groupby(list(by), sort=True, observed=True, dropna=False).indices
    for key, rows in groups.items():
        rows = np.asarray(rows, dtype=np.int64)
        # the rows' covariates, a column each, gathered in the frame's order (contiguous
        # reads and writes), then put in canonical order as whole rows
        by_column = np.empty((len(covariates), rows.size))
        for j, c in enumerate(covariates):
            by_column[j] = cov_arrays[c][rows]
        order, first = _canonical_order(treated[rows], by_column, [f[rows] for f in fe_codes])
        rows = rows[order]
        x = np.ascontiguousarray(by_column.T)[order]
        del by_column
        y = treated[rows].astype(float)
        codes = [c[rows] for c in fe_codes]
        active = _informative_rows(y, codes)
        ya = y[active]
        design = None
        if ya.size and ya.min() != ya.max():
            design = _design(x, active, covariates, codes, fe_labels)
        del x  # the design holds what the fit needs (one group's rows held at a time)
        new_block = np.r_[True, (first[1:] != first[:-1]) | (y[1:] != y[:-1])]
        tie_block = None if new_block.all() else np.cumsum(new_block)
        yield _GroupPlan(
            key=key,
            label=f"{tuple(by)}={key!r}",
            rows=rows,
            first=first,
            tie_block=tie_block,
            y=y,
            active=active,
            design=design,
            one_column=design is not None and _one_column_separates(design[0], design[1], ya),
            runs=None if design is None else dummy_runs(design[1], design[0].shape[0]),
        )


def with_start_terms(
    plan: PropensityPlan, start: Mapping[Any, Mapping[str, float]], clusters: np.ndarray
) -> PropensityPlan:
    """``plan`` with each group's terms at ``start`` summed by cluster (the first step).

    The draws of a Bayesian bootstrap start every fit at the same coefficients (``start``,
    as :func:`propensity_scores` takes it) and weight each cluster's rows alike
    (``clusters``: each candidate row's cluster), so the score, Hessian and deviance of
    their first Newton step are weighted sums of per-cluster terms computed here once
    (:class:`~leapresearch.design.matching.logit.ClusterTerms`). A group gets them when
    they take no more memory than its design (few clusters: schools, not students); the
    fits check the weights and the start before using them.
    """
    groups = []
    for group in plan.groups:
        coefficients = start.get(group.key)
        if group.design is not None and coefficients is not None:
            design, dmat, names, _, mean_k, sd_k = group.design
            theta = _standardised(coefficients, names, mean_k, sd_k)
            codes, local = np.unique(clusters[group.rows[group.active]], return_inverse=True)
            if codes.size * (theta.size + 1) // 2 <= design.shape[0]:
                terms = cluster_terms(
                    design, dmat, group.y[group.active], theta, local.ravel(), group.runs
                )
                group = dataclasses.replace(group, start_terms=terms)
        groups.append(group)
    return dataclasses.replace(plan, groups=tuple(groups))


def with_match_keys(
    plan: PropensityPlan, candidates: pd.DataFrame, exact: Sequence[str]
) -> PropensityPlan:
    """``plan`` with the matching's keys of ``candidates`` and ``exact`` strata.

    :func:`~leapresearch.design.matching.grid.match_keys`, made once for the draws that
    re-match the same candidates with new scores (each draw checks them against its rows).
    """
    if plan.n_rows != len(candidates):
        raise ValueError(
            f"propensity plan of {plan.n_rows:,} rows does not fit {len(candidates):,} "
            "candidate rows"
        )
    return dataclasses.replace(plan, match_keys=match_keys(candidates, exact))


def _fit_groups(
    plans: Iterable[_GroupPlan],
    n_rows: int,
    start: Mapping[Any, Mapping[str, float]],
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Fit every group of ``plans``; scores (NaN where not estimable) and diagnostics.

    With ``weights``, rows tied on every key are fitted in the order of their weights, as
    if the weights were the least significant key of :func:`_canonical_order`: the sums of
    the fit then do not depend on the order of the input rows.
    """
    eta = np.full(n_rows, np.nan)
    diagnostics: list[dict[str, Any]] = []
    for plan in plans:
        w = first = None
        if weights is not None:
            w = _fit_order_weights(plan, weights)
            if plan.start_terms is not None:
                first = plan.start_terms.weighted(weights[plan.rows[plan.active]])
        eta_g, diag = _fit_group(plan, start=start.get(plan.key), weights=w, first=first)
        # identical covariate rows get the very same score (that of the first of them)
        eta[plan.rows] = np.round(eta_g[plan.first], PSCORE_DECIMALS)
        diagnostics.append({"group": plan.key, **diag})
    return eta, diagnostics


def _fit_order_weights(plan: _GroupPlan, weights: np.ndarray) -> np.ndarray:
    """``weights`` of the plan's rows in canonical order, ascending within each tie block.

    Rows tied on every key are identical, so only their weights tell them apart: sorting
    those makes the fit's sums independent of the order of the input rows.
    """
    w = weights[plan.rows]
    if plan.tie_block is None:
        return w
    # only rows in blocks of two or more can move (the blocks are runs of rows)
    tied = np.flatnonzero(np.bincount(plan.tie_block)[plan.tie_block] > 1)
    held = w[tied]
    w[tied] = held[np.lexsort((held, plan.tie_block[tied]))]
    return w


def _canonical_rows(
    rows: np.ndarray,
    treated: np.ndarray,
    cov_arrays: dict[str, np.ndarray],
    covariates: Sequence[str],
    fe_codes: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` in the order of :func:`_canonical_order`, and their patterns' first rows."""
    by_column = np.array([np.asarray(cov_arrays[c][rows], dtype=float) for c in covariates])
    by_column = by_column.reshape(len(covariates), rows.size)
    order, first = _canonical_order(treated[rows], by_column, [f[rows] for f in fe_codes])
    return rows[order], first


def _canonical_order(
    treated: np.ndarray,
    by_column: np.ndarray,
    fe_codes: list[np.ndarray],
    *,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The order of a fit group's rows fixed by their values alone, and their patterns.

    ``treated``, ``by_column`` (the covariates, a row of it each) and ``fe_codes`` are
    the group's, one entry a row; ``order`` permutes the rows. Rows are sorted by fixed
    effects, covariates and ``treated`` (lexicographically), so
    the fit sees the same arrays whatever the order of the input rows or the student ids;
    rows tied on every key are identical, so their order cannot matter. ``first[i]`` is
    the position (in the sorted rows) of the first row with the same covariates and fixed
    effects as row ``i``: they share one linear predictor, bit for bit. ``weights`` (rows
    of a weighted fit): the least significant key, so that rows tied on every other key
    are summed in an order set by their weights too.
    """
    keys = [by_column[j] for j in reversed(range(by_column.shape[0]))]
    keys += list(reversed(fe_codes))
    keys = [treated, *_packed_keys(keys)]
    # np.lexsort's order; the patterns: rows tied on every key but treated (and weights)
    order, tied = _refined_lexsort(
        keys if weights is None else [weights, *keys], tail=1 if weights is None else 2
    )
    new_pattern = ~tied
    new_pattern[:1] = True
    starts = np.flatnonzero(new_pattern)
    first = starts[np.cumsum(new_pattern) - 1]
    return order, first


def _packed_keys(keys: list[np.ndarray]) -> list[np.ndarray]:
    """Sort keys (``np.lexsort`` order, last most significant) with small integers packed.

    Adjacent keys whose values are all small non-negative integers (indicators, dummies,
    fixed-effect codes) are combined into one int64 key, the more significant in the
    higher bits, up to 62 bits a key: the lexicographic order, and which rows tie on every
    key, are unchanged, with fewer passes of the sort.
    """
    out: list[np.ndarray] = []
    run: list[tuple[np.ndarray, int]] = []  # (values as int64, bits), least significant first

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0][0])
        elif run:
            packed, shift = np.zeros(run[0][0].size, dtype=np.int64), 0
            for values, bits in run:
                packed |= values << shift
                shift += bits
            out.append(packed)
        run.clear()

    for key in keys:
        bits = _small_int_bits(key)
        if bits is None:
            flush()
            out.append(key)
            continue
        if sum(b for _, b in run) + bits > 62:
            flush()
        run.append((key.astype(np.int64), bits))
    flush()
    return out


def _small_int_bits(key: np.ndarray) -> int | None:
    """Bits holding ``key`` if its values are all integers in [0, 2**62) (None otherwise)."""
    if key.size == 0 or key.dtype.kind not in "biuf":
        return None
    if key.dtype.kind == "f":
        lo, hi = float(key.min()), float(key.max())
        if not (lo >= 0.0 and hi < 2.0**62 and np.array_equal(key, np.floor(key))):
            return None
    else:
        lo, hi = int(key.min()), int(key.max())
        if lo < 0 or hi >= 2**62:
            return None
    return max(int(hi).bit_length(), 1)


def _fit_group(
    plan: _GroupPlan,
    *,
    start: Mapping[str, float] | None = None,
    weights: np.ndarray | None = None,
    first: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit one propensity model; return the linear predictor (NaN where not estimable).

    ``plan``: the group's rows, design and checks (:func:`_group_plans`). ``start``:
    coefficients by column name on the covariates' own scale (see
    :func:`propensity_scores`), where the fits start. ``weights``: the rows' likelihood
    weights in the plan's row order (None: 1). ``first``: the weighted terms at the start
    from ``plan.start_terms`` (used only if that is where the fits start).
    """
    y, active = plan.y, plan.active
    n = y.size
    eta = np.full(n, np.nan)
    diag: dict[str, Any] = {
        "n_rows": int(n),
        "n_fit_rows": int(active.sum()),
        "n_treated": int(y[active].sum()),
        "dropped_columns": (),
        "method": "none",
        "converged": False,
        "n_iter": 0,
    }
    if plan.design is None:
        return eta, diag
    ya = y[active]
    wa = weights if weights is None or active.all() else weights[active]
    design, dmat, names, dropped, mean_k, sd_k = plan.design
    group_label = plan.label
    theta0 = None if start is None else _standardised(start, names, mean_k, sd_k)
    if first is not None and (theta0 is None or not np.array_equal(theta0, plan.start_terms.theta)):
        first = None
    method, converged, n_iter = "mle", True, 0
    columns = (tuple(names[0]), tuple(names[1]))
    # a single separating column, or a direction found before on rows of the same columns
    # (the main matching's, in a refit or a bootstrap draw), decides without the
    # maximum-likelihood attempt that would end in the ridge fit anyway
    separated = plan.one_column or _remembered_separates(
        design, dmat, ya, columns=columns, mean=mean_k, sd=sd_k
    )
    if not separated:
        fit = _logit_newton(
            design, dmat, ya, ridge=0.0, start=theta0, weights=wa, runs=plan.runs, first=first
        )
        theta, converged, n_iter, eta_a = fit
        # a converged fit usually proves there is no separation; the linear program
        # decides the others (the same decision either way: _overlap_certified)
        if not (converged and _certified(design, dmat, ya, theta, eta_a, wa)):
            separated = _program_remembering(
                design, dmat, ya, columns=columns, mean=mean_k, sd=sd_k
            )
    if not converged or separated:
        problem = "did not converge" if not converged else "is (quasi-)separated"
        warnings.warn(
            f"propensity model for {group_label} {problem}; refitted with a ridge penalty "
            f"lambda={RIDGE_FALLBACK} on standardised coefficients",
            PropensityFitWarning,
            stacklevel=3,
        )
        theta, converged, n_iter, eta_a = _logit_newton(
            design,
            dmat,
            ya,
            ridge=RIDGE_FALLBACK,
            start=theta0,
            weights=wa,
            runs=plan.runs,
            first=first,
        )
        method = "ridge"
        if not converged:
            warnings.warn(
                f"ridge propensity model for {group_label} did not converge either",
                PropensityFitWarning,
                stacklevel=3,
            )
    eta[active] = eta_a
    diag.update(dropped_columns=tuple(dropped), method=method, converged=converged, n_iter=n_iter)
    if converged:
        diag["coefficients"] = _raw_scale(theta, names, mean_k, sd_k)
    return eta, diag


def _design(
    x_rows: np.ndarray,
    active: np.ndarray,
    cov_names: Sequence[str],
    fe_codes: list[np.ndarray],
    fe_labels: list[tuple[str, np.ndarray]],
) -> tuple[np.ndarray, Any, tuple[list[str], list[str]], list[str], np.ndarray, np.ndarray]:
    """The fit's ``[1, z]`` and sparse dummies on the ``active`` rows, aliased columns out.

    Returns the dense design, the dummies (CSR or None), the kept column names (covariates,
    dummies), the dropped ones, and the kept covariates' means and standard deviations.
    """
    # standardised covariates; constant ones dropped (no copy of a selection of every row
    # or every column)
    x = x_rows if active.all() else x_rows[active]
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    nonconst = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    dropped = [name for name, keep in zip(cov_names, nonconst, strict=True) if not keep]
    if nonconst.all():
        z = (x - mean) / sd
    else:
        z = (x[:, nonconst] - mean[nonconst]) / sd[nonconst]
    z_names = [name for name, keep in zip(cov_names, nonconst, strict=True) if keep]
    # fixed-effect dummies (first level of each column dropped), sparse
    dummies, d_names = _dummies([codes[active] for codes in fe_codes], fe_labels)
    keep_z, keep_d = _non_aliased(z, dummies)
    dropped += [z_names[j] for j in np.flatnonzero(~keep_z)]
    dropped += [d_names[j] for j in np.flatnonzero(~keep_d)]
    design = np.empty((x.shape[0], 1 + int(keep_z.sum())))  # [1, z], rows contiguous
    design[:, 0] = 1.0
    design[:, 1:] = z if keep_z.all() else z[:, keep_z]
    dmat = dummies[:, np.flatnonzero(keep_d)].tocsr() if dummies is not None else None
    if dmat is not None and dmat.shape[1] == 0:
        dmat = None

    kept = np.flatnonzero(nonconst)[keep_z]
    names = (
        [z_names[j] for j in np.flatnonzero(keep_z)],
        [d_names[j] for j in np.flatnonzero(keep_d)],
    )
    return design, dmat, names, dropped, mean[kept], sd[kept]


INTERCEPT = "(intercept)"
"""Name of the intercept in a fit's ``coefficients``."""


def _checked_weights(weights: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """``weights`` as float64 if one positive finite number per row, else ValueError."""
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise ValueError(f"propensity weights: shape {weights.shape}, expected ({n_rows},)")
    bad = np.flatnonzero(~(np.isfinite(weights) & (weights > 0)))
    if bad.size:
        raise ValueError(
            f"propensity weights must be positive and finite; {bad.size} row(s) are not "
            f"(first at position {int(bad[0])})"
        )
    return weights


def _raw_scale(
    theta: np.ndarray, names: tuple[list[str], list[str]], mean: np.ndarray, sd: np.ndarray
) -> dict[str, float]:
    """Coefficients of ``[1, (x - mean) / sd, dummies]`` on the scale of ``x``, by name."""
    b0, b, c = _raw_coefficients(theta, 1 + len(names[0]), mean, sd)
    out = {INTERCEPT: b0}
    out.update(zip(names[0], b.tolist(), strict=True))
    out.update(zip(names[1], c.tolist(), strict=True))
    return out


def _standardised(
    coefficients: Mapping[str, float],
    names: tuple[list[str], list[str]],
    mean: np.ndarray,
    sd: np.ndarray,
) -> np.ndarray:
    """:func:`_raw_scale`'s inverse on these columns (a column not given: 0)."""
    b = np.array([coefficients.get(n, 0.0) for n in names[0]], dtype=np.float64)
    c = np.array([coefficients.get(n, 0.0) for n in names[1]], dtype=np.float64)
    return _standardised_coefficients(coefficients.get(INTERCEPT, 0.0), b, c, mean, sd)


POLISH_STEPS = 2
"""Newton steps taken beyond a converged fit when its score is too large to certify overlap."""


def _certified(
    design: np.ndarray,
    dmat: Any,
    y: np.ndarray,
    theta: np.ndarray,
    eta: np.ndarray,
    weights: np.ndarray | None = None,
) -> bool:
    """Whether the fit ``theta`` (linear predictor ``eta``) proves there is no separation.

    The deviance criterion stops the fit while its score can still be too large for
    :func:`_overlap_certified`; then :data:`POLISH_STEPS` more Newton steps from ``theta``
    bring the score to rounding level and are tried instead (the certificate holds for
    any linear predictor). The polished fit serves only the certificate: the scores are
    those of the fit, and the decision is the linear program's either way. ``weights``:
    the fit's row weights.
    """
    if _overlap_certified(design, dmat, y, eta, weights):
        return True
    _, _, _, polished = _logit_newton(
        design, dmat, y, ridge=0.0, start=theta, max_iter=POLISH_STEPS, tol=0.0, weights=weights
    )
    return _overlap_certified(design, dmat, y, polished, weights)


def _informative_rows(y: np.ndarray, fe_codes: list[np.ndarray]) -> np.ndarray:
    """Rows outside fixed-effect levels that hold a single treatment class (iterated)."""
    active = np.ones(y.size, dtype=bool)
    changed = True
    while changed:
        changed = False
        for codes in fe_codes:
            size = codes.max() + 1 if codes.size else 0
            n_all = np.bincount(codes[active], minlength=size)
            n_t = np.bincount(codes[active], weights=y[active], minlength=size)
            bad = (n_t == 0) | (n_t == n_all)
            drop = active & bad[codes]
            if drop.any():
                active &= ~drop
                changed = True
    return active
