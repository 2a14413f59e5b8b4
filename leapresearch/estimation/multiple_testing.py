"""Subgroup heterogeneity: joint tests across groups, Holm adjustment, shrinkage.

Every subgroup estimate is a separate regression (:func:`fit_group` in
:mod:`leapresearch.analysis`) on the group's visited units and their matched comparison
units. Groups of one family can share comparison students (a comparison student matched
to visited students of two groups, or of several stacks), so their estimates are
correlated and a test that effects are equal across groups needs their *joint*
covariance.

The joint covariance used here is that of the "stacked-by-group" regression in which
every group's rows appear once per group, with group-specific unit and stack-by-month
effects and group-specific event-time terms, clustered across groups by the fits' cluster
(school or student; Stata's ``suest``). Its coefficients are the separate fits', and its
cluster-robust covariance is
``V_gh = sum_c psi_gc psi_hc'`` with ``psi_gc = (X~_g'W_g X~_g)^{-1} s_gc`` the influence
of cluster ``c`` on group ``g``'s coefficients (``s_gc`` its score). Each group's
influence is scaled by the square root of its own small-sample factor
``G_g/(G_g-1) (N_g-1)/(N_g-K_g)``, so that every diagonal block equals the published
covariance of that group exactly; off-diagonal blocks carry ``sqrt(f_g f_h)``. F tests use
``G - 1`` denominator degrees of freedom with ``G`` the clusters of all groups tested.
The influence is computed by :func:`cluster_influence` from the group's rows and checked
against the group's published covariance. The regression adjustment of comparison
outcomes is treated as fixed, as in the published standard errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from leapresearch.estimation.event_study import EventStudyResult, clustered_wald
from leapresearch.estimation.fixed_effects import (
    TwoWayProjector,
    combine_codes,
    factorize,
    singleton_mask,
)
from leapresearch.estimation.wild_bootstrap import (
    ClusterMoments,
    WildSettings,
    cluster_hessians,
    wild_wald,
)

TEST_COLUMNS = [
    "family",
    "rel_time",
    "contrast",
    "statistic",
    "df",
    "df_denom",
    "p_value",
    "p_value_holm_family",
    "inference",
    "clusters",
    "not_testable",
    "estimate",
    "std_error",
    "groups_tested",
    "n_treated",
]
"""Columns of ``subgroup_tests.csv``: ``p_value`` is that of ``inference``
(:data:`INFERENCE_F` or :data:`INFERENCE_WILD`), ``clusters`` the fewest clusters of any
group tested, ``not_testable`` the reason a test has no statistic (empty otherwise), and
``p_value_holm_family`` Holm's adjustment over every test of the family at every month
tested (:func:`adjust_across_months`)."""

INFERENCE_F = "F(q, G-1)"
INFERENCE_WILD = "wild cluster bootstrap (WCR, Webb)"


@dataclass(frozen=True, eq=False)
class GroupFit(EventStudyResult):
    """An event-study fit with the cluster influence of its coefficients.

    Attributes
    ----------
    influence : pandas.DataFrame or None
        ``psi_c`` (one row per cluster label, one column per ``rel_time``), scaled so
        that ``influence.T @ influence`` equals ``cov`` (see :func:`cluster_influence`).
    moments : ClusterMoments or None
        Cluster scores and cluster blocks of ``X~'WX~`` for the wild cluster bootstrap of
        few-cluster tests (:mod:`leapresearch.estimation.wild_bootstrap`).
    """

    influence: pd.DataFrame | None = None
    moments: ClusterMoments | None = None


def with_influence(
    result: EventStudyResult,
    influence: pd.DataFrame | None,
    moments: ClusterMoments | None = None,
) -> GroupFit:
    """``result`` as a :class:`GroupFit` carrying ``influence`` (and ``moments``)."""
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(EventStudyResult)}
    return GroupFit(**values, influence=influence, moments=moments)


# --------------------------------------------------------------------------------------
# cluster influence of one fit
# --------------------------------------------------------------------------------------


def _codes(panel: pd.DataFrame, result: EventStudyResult, cluster: str):
    """Unit, cell, cluster and term codes of the rows the fit used (singletons dropped)."""
    unit = factorize(panel["unit"].to_numpy(np.int64))[0]
    cell = combine_codes(
        factorize(panel["stack"].to_numpy(np.int64))[0],
        factorize(panel["time"].to_numpy(np.int64))[0],
    )[0]
    keep = singleton_mask([unit, cell])
    rel = panel["rel_time"].to_numpy(np.int64)
    if result.window is not None:
        rel = np.clip(rel, *result.window)
    terms = result.coefficients.index.to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(terms, rel), terms.size - 1)
    treated = panel["treated"].to_numpy() == 1
    term = np.where(treated & (terms[pos] == rel), pos, -1)
    labels = panel[cluster].to_numpy(np.int64)[keep]
    g_code, _ = factorize(labels)
    g_labels = np.empty(int(g_code.max()) + 1, dtype=np.int64)
    g_labels[g_code] = labels
    return (
        factorize(unit[keep])[0],
        factorize(cell[keep])[0],
        g_code,
        g_labels,
        term[keep],
        keep,
    )


def cluster_influence(
    panel: pd.DataFrame,
    result: EventStudyResult,
    *,
    outcome: str = "attendance_pp",
    weight: str = "weight",
) -> pd.DataFrame:
    """Influence of each cluster on the event-time coefficients of one fit.

    The first result of :func:`cluster_influence_moments` (see there).
    """
    return cluster_influence_moments(panel, result, outcome=outcome, weight=weight)[0]


def cluster_influence_moments(
    panel: pd.DataFrame,
    result: EventStudyResult,
    *,
    outcome: str = "attendance_pp",
    weight: str = "weight",
) -> tuple[pd.DataFrame, ClusterMoments]:
    """Influence of each cluster on the event-time coefficients of one fit, and its moments.

    Parameters
    ----------
    panel : pandas.DataFrame
        The rows the fit was estimated on (as passed to
        :func:`~leapresearch.estimation.event_study.event_study`).
    result : EventStudyResult
        The fit.
    outcome, weight : str
        Outcome and weight columns used by the fit.

    Returns
    -------
    influence : pandas.DataFrame
        ``psi_c = sqrt(f) (X~'WX~)^{-1} s_c`` for every cluster ``c`` (index: cluster
        label), columns the fit's ``rel_time`` terms; ``f`` is the fit's small-sample
        factor, so ``psi' psi`` reproduces ``result.cov``.
    moments : ClusterMoments
        ``s_c``, ``H_c = X~_c' W_c X~_c`` and ``X~'WX~`` (the wild cluster bootstrap's
        inputs), clusters in the order of ``influence``.

    Raises
    ------
    RuntimeError
        If the recomputed coefficients or covariance differ from ``result``'s (the rows
        are not those of the fit).

    Notes
    -----
    With ``e`` the full-model residuals and ``x~`` the event-time dummies after the
    weighted projection on the unit and stack-by-month effects,
    ``s_c = sum_{i in c} w_i e_i x~_i``. As in the fast estimator, everything is
    assembled from group sums: ``x~ = x - D alpha_x - F gamma_x`` with the fixed-effect
    coefficients of the dummies' projection.
    """
    u, st, g, g_labels, term, keep = _codes(panel, result, result.cluster)
    y = panel[outcome].to_numpy(np.float64)[keep]
    w = panel[weight].to_numpy(np.float64)[keep] if weight else np.ones(y.size)
    k = result.coefficients.size
    n_u, n_st, n_g = int(u.max()) + 1, int(st.max()) + 1, int(g.max()) + 1
    proj = TwoWayProjector(u, st, w)
    m = term >= 0
    dxu = np.bincount(u[m] * k + term[m], w[m], minlength=n_u * k).reshape(n_u, k)
    dxs = np.bincount(st[m] * k + term[m], w[m], minlength=n_st * k).reshape(n_st, k)
    sums_u = np.column_stack([dxu, np.bincount(u, w * y, minlength=n_u)])
    sums_s = np.column_stack([dxs, np.bincount(st, w * y, minlength=n_st)])
    alpha, gamma = proj.coefficients(sums_u, sums_s)
    raw = np.bincount(term[m], w[m], minlength=k)
    gram = np.diag(raw) - dxu.T @ alpha[:, :k] - dxs.T @ gamma[:, :k]
    gram = 0.5 * (gram + gram.T)
    xwy = np.bincount(term[m], (w * y)[m], minlength=k) - dxu.T @ alpha[:, k] - dxs.T @ gamma[:, k]
    beta = np.linalg.solve(gram, xwy)
    b_ext = np.append(beta, 0.0)  # term -1 (no dummy) picks the trailing 0
    resid = (
        y
        - b_ext[term]
        - (alpha[:, k] - alpha[:, :k] @ beta)[u]
        - (gamma[:, k] - gamma[:, :k] @ beta)[st]
    )
    we = w * resid
    scores = np.bincount(g[m] * k + term[m], we[m], minlength=n_g * k).reshape(n_g, k)
    scores -= sp.csr_matrix((we, (g, u)), shape=(n_g, n_u)) @ alpha[:, :k]
    scores -= sp.csr_matrix((we, (g, st)), shape=(n_g, n_st)) @ gamma[:, :k]
    psi = np.sqrt(result.ssc_factor) * scores @ np.linalg.inv(gram)
    _check_against(result, beta, psi)
    # X~ row by row, the rows in cluster order (each cluster's rows one slice); the scores
    # are those above, so only the cluster blocks H_c are formed from the rows
    order = np.argsort(g, kind="stable")
    bounds = np.searchsorted(g[order], np.arange(n_g + 1))
    xt = -(alpha[:, :k][u[order]] + gamma[:, :k][st[order]])
    term_sorted = term[order]
    hit = np.flatnonzero(term_sorted >= 0)
    xt[hit, term_sorted[hit]] += 1.0
    hess = cluster_hessians(xt, w[order], bounds).reshape(n_g, k, k)
    if not np.allclose(hess.sum(axis=0), gram, rtol=1e-8, atol=1e-10 * float(np.abs(gram).max())):
        raise RuntimeError("cluster_influence: the cluster blocks do not add up to X~'WX~")
    moments = ClusterMoments(
        labels=g_labels, scores=scores, hessians=hess, gram=gram, factor=result.ssc_factor
    )
    index = pd.Index(g_labels, name="cluster")
    return pd.DataFrame(psi, index=index, columns=result.cov.index), moments


def _check_against(result: EventStudyResult, beta: np.ndarray, psi: np.ndarray) -> None:
    cov = result.cov.to_numpy()
    scale = max(1.0, float(np.abs(result.coefficients).max()))
    if not np.allclose(beta, result.coefficients.to_numpy(), rtol=1e-7, atol=1e-7 * scale):
        raise RuntimeError("cluster_influence: the rows given are not those of the fit")
    if not np.allclose(psi.T @ psi, cov, rtol=1e-6, atol=1e-9 * float(np.abs(cov).max())):
        raise RuntimeError("cluster_influence: influence does not reproduce the covariance")


# --------------------------------------------------------------------------------------
# joint tests
# --------------------------------------------------------------------------------------


def stacked_influence(parts: Sequence[pd.Series | pd.DataFrame]) -> np.ndarray:
    """Influence columns of several fits side by side, over the union of their clusters.

    A cluster absent from a fit influences it by zero; ``psi' psi`` of the result is the
    joint covariance of the columns (the stacked regression with the fits' clusters).
    """
    return pd.concat(parts, axis=1, join="outer").fillna(0.0).to_numpy()


def joint_estimates(
    fits: dict[str, GroupFit], labels: Sequence[str], rel_time: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Estimates of several groups at one event time and their joint covariance.

    Returns
    -------
    b : numpy.ndarray
        ``(m,)`` estimates, in the order of ``labels``.
    cov : numpy.ndarray
        ``(m, m)`` covariance ``sum_c psi_c psi_c'`` over the union of clusters (the
        stacked-by-group regression with the fits' clusters; diagonal = each group's own
        variance).
    n_clusters : int
        Clusters in the union of the groups.
    """
    cols = []
    for label in labels:
        fit = fits[label]
        if fit.influence is None:
            raise ValueError(f"group {label!r} has no cluster influence")
        cols.append(fit.influence[rel_time].rename(label))
    joint = stacked_influence(cols)
    b = np.array([fits[label].coefficients[rel_time] for label in labels])
    return b, joint.T @ joint, joint.shape[0]


def wald_test(b: np.ndarray, cov: np.ndarray, contrasts: np.ndarray, *, df_denom: int) -> dict:
    """F test of ``R b = 0``: ``F = (Rb)'(R V R')^{-1}(Rb) / q`` against ``F(q, df_denom)``.

    Returns
    -------
    dict
        ``statistic`` (F), ``df`` (``q``), ``df_denom``, ``p_value`` and ``wald``
        (``q F``); NaN statistics when the test is not defined (``q`` above
        ``df_denom``, or ``R V R'`` singular:
        :func:`~leapresearch.estimation.event_study.clustered_wald`).
    """
    r = np.atleast_2d(contrasts)
    rb = r @ b
    rvr = r @ cov @ r.T
    q = r.shape[0]
    reason = ""
    try:  # df_denom is G - 1: the clusters allow at most that many restrictions
        wald = clustered_wald(rb, rvr, n_clusters=df_denom + 1)
    except np.linalg.LinAlgError as exc:
        wald, reason = np.nan, str(exc)
    if not np.isfinite(wald) or wald < 0:
        return {
            "statistic": np.nan,
            "df": q,
            "df_denom": df_denom,
            "p_value": np.nan,
            "wald": wald,
            "not_testable": reason or "not testable: the Wald statistic is not finite",
        }
    f = wald / q
    return {
        "statistic": f,
        "df": q,
        "df_denom": df_denom,
        "p_value": float(stats.f.sf(f, q, df_denom)),
        "wald": wald,
        "not_testable": "",
    }


def joint_moments(fits: dict[str, GroupFit], labels: Sequence[str]) -> dict:
    """The stacked-by-group regression of ``labels`` in cluster sums (wild bootstrap inputs).

    Returns
    -------
    dict
        ``b`` (every group's coefficients, concatenated), ``gram_inv`` (block-diagonal
        ``A^{-1}``), ``scores`` (``(G, K)`` over the union of clusters, zero where a cluster
        holds no row of a group), ``hessians`` (sparse ``(G * K, K)``, block-diagonal
        ``H_c``), ``scale`` (``sqrt(f_g)`` per coefficient), ``offsets`` (first column of
        each group) and ``clusters`` (the fewest clusters of any one group).
    """
    mom = [fits[label].moments for label in labels]
    if any(mo is None for mo in mom):
        raise ValueError("a group has no cluster moments")
    union = np.unique(np.concatenate([mo.labels for mo in mom]))
    sizes = [mo.gram.shape[0] for mo in mom]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    k_all, g_n = int(offsets[-1]), union.size
    scores = np.zeros((g_n, k_all))
    gram_inv = np.zeros((k_all, k_all))
    rows, cols, vals = [], [], []
    for mo, o, k in zip(mom, offsets[:-1], sizes, strict=True):
        j = np.searchsorted(union, mo.labels)
        scores[j, o : o + k] = mo.scores
        gram_inv[o : o + k, o : o + k] = np.linalg.inv(mo.gram)
        ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        rows.append((j[:, None, None] * k_all + o + ii[None]).ravel())
        cols.append(np.broadcast_to(o + jj[None], mo.hessians.shape).ravel())
        vals.append(mo.hessians.ravel())
    hessians = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(g_n * k_all, k_all),
    )
    return {
        "b": np.concatenate([fits[label].coefficients.to_numpy() for label in labels]),
        "gram_inv": gram_inv,
        "scores": scores,
        "hessians": hessians,
        "scale": np.repeat([np.sqrt(mo.factor) for mo in mom], sizes),
        "offsets": offsets,
        "clusters": int(min(mo.labels.size for mo in mom)),
    }


def wild_joint_test(
    fits: dict[str, GroupFit],
    labels: Sequence[str],
    rel_time: int,
    contrasts: np.ndarray,
    *,
    wald: float,
    settings: WildSettings,
) -> float:
    """Wild cluster bootstrap p-value of ``R b = 0`` on the groups' estimates at ``rel_time``.

    ``contrasts`` (``(q, m)``) act on the ``m`` groups' month-``rel_time`` estimates, as
    in :func:`wald_test`; ``wald`` is the data's statistic ``q F``. See
    :func:`~leapresearch.estimation.wild_bootstrap.wild_wald`.
    """
    j = joint_moments(fits, labels)
    r2 = np.atleast_2d(contrasts)
    r = np.zeros((r2.shape[0], j["b"].size))
    for col, label in enumerate(labels):
        pos = int(fits[label].coefficients.index.get_loc(rel_time))
        r[:, j["offsets"][col] + pos] = r2[:, col]
    description = f"{'; '.join(labels)} @ {int(rel_time)}: {np.round(r2, 6).tolist()}"
    return wild_p_value(j, r, wald=wald, settings=settings, description=description)


def wild_p_value(
    joint: dict, r: np.ndarray, *, wald: float, settings: WildSettings, description: str = ""
) -> float:
    """:func:`~leapresearch.estimation.wild_bootstrap.wild_wald` on :func:`joint_moments`.

    ``description`` names the test (groups, months) for the seed.
    """
    out = wild_wald(
        joint["b"],
        r,
        joint["gram_inv"],
        joint["scores"],
        joint["hessians"],
        joint["scale"],
        wald=wald,
        draws=settings.draws,
        seed=settings.seed,
        description=description,
    )
    return float(out["p_value"])


def equality_contrasts(m: int) -> np.ndarray:
    """``(m-1, m)`` contrasts ``b_0 - b_j = 0`` for ``j = 1..m-1`` (all groups equal)."""
    return np.column_stack([np.ones(m - 1), -np.eye(m - 1)])


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN stays NaN and is not counted.

    ``p_(j) adj = max_{i <= j} min(1, (m - i + 1) p_(i))`` over the ``m`` finite p-values
    sorted ascending.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    m = order.size
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


# --------------------------------------------------------------------------------------
# families of subgroups
# --------------------------------------------------------------------------------------

POOLED_GROUPS = {"grade_band:6-12": ("grade_band:6-8", "grade_band:9-12")}
"""Pooled groups: left out of their family's equality test (they overlap their parts)."""

CONTRASTS = {"grade_band": [("grade_band:PK-5", "grade_band:6-12")]}
"""Explicit two-group contrasts tested per family (the published evaluation's lead)."""


def family_of(label: str) -> str:
    """``"district:Hartford"`` -> ``"district"``; ``"all"`` -> ``"all"``."""
    return label.split(":", 1)[0]


def adjust_within_families(table: pd.DataFrame, *, min_treated: int = 0) -> pd.Series:
    """Holm-adjusted ``p_value`` within each family of groups, separately per ``rel_time``.

    The family of ``group:level`` is ``group`` (pooled groups such as ``grade_band:6-12``
    count as members of their family); ``all`` is a family of one. Only estimates with at
    least ``min_treated`` visited students (those that are published) enter a family: the
    adjustment covers the tests a reader sees, and an unpublished estimate of a handful of
    students (often ill-conditioned) cannot move a published p-value.
    """
    fam = table["group"].map(family_of)
    out = pd.Series(np.nan, index=table.index, name="p_value_adjusted")
    if "n_treated" in table:
        shown = table["n_treated"].fillna(0).to_numpy() >= min_treated
    else:
        shown = np.ones(len(table), dtype=bool)
    for _, idx in table.groupby([fam, table["rel_time"]], sort=True).groups.items():
        keep = idx[shown[table.index.get_indexer(idx)]]
        out.loc[keep] = holm(table.loc[keep, "p_value"].to_numpy())
    return out


def _test_row(fits, family, rel_time, contrast, labels, r, settings) -> dict:
    row = {
        "family": family,
        "rel_time": int(rel_time),
        "contrast": contrast,
        "statistic": np.nan,
        "df": max(len(labels) - 1, 1),
        "df_denom": np.nan,
        "p_value": np.nan,
        "inference": "",
        "clusters": min((fits[label].n_clusters for label in labels), default=0),
        "not_testable": "not testable: fewer than two groups with a published estimate",
        "estimate": np.nan,
        "std_error": np.nan,
        "groups_tested": "; ".join(label.split(":", 1)[1] for label in labels),
        "n_treated": int(sum(fits[label].n_treated for label in labels)),
    }
    if r is None:  # fewer than two testable groups: the row says the test was not possible
        return row
    b, cov, n_clusters = joint_estimates(fits, labels, rel_time)
    test = wald_test(b, cov, r, df_denom=n_clusters - 1)
    row.update({k: test[k] for k in ("statistic", "df", "df_denom", "p_value", "not_testable")})
    if test["not_testable"]:
        return row
    row["inference"] = INFERENCE_F
    if settings is not None and row["clusters"] < settings.few_clusters:
        row["p_value"] = wild_joint_test(
            fits, labels, rel_time, r, wald=test["wald"], settings=settings
        )
        row["inference"] = INFERENCE_WILD
    r2 = np.atleast_2d(r)
    if r2.shape[0] == 1:
        row["estimate"] = float(r2[0] @ b)
        row["std_error"] = float(np.sqrt(r2[0] @ cov @ r2[0]))
    return row


def _testable(fits: dict, label: str, rel_time: int, min_treated: int) -> bool:
    fit = fits.get(label)
    return (
        fit is not None
        and fit.n_treated >= min_treated
        and getattr(fit, "influence", None) is not None
        and rel_time in fit.coefficients.index
    )


def subgroup_tests(
    fits: dict[str, GroupFit],
    *,
    families: Sequence[str],
    rel_times: Sequence[int],
    min_treated: int = 0,
    settings: WildSettings | None = None,
) -> pd.DataFrame:
    """Joint tests that effects are equal within each family, and explicit contrasts.

    Parameters
    ----------
    fits : dict
        Group label -> :class:`GroupFit` (from
        :func:`leapresearch.analysis.event_studies.estimate_event_studies`).
    families : sequence of str
        Subgroup families to test.
    rel_times : sequence of int
        Months tested (the headline months).
    min_treated : int
        Groups with fewer visited students are left out (their estimates are not
        published), as are groups without a cluster influence.
    settings : WildSettings, optional
        When given, a test with a group of fewer than ``settings.few_clusters`` clusters
        takes its p-value from the restricted wild cluster bootstrap
        (:mod:`leapresearch.estimation.wild_bootstrap`); otherwise from ``F(q, G - 1)``.

    Returns
    -------
    DataFrame
        :data:`TEST_COLUMNS`: per family and month, ``contrast = "all equal"`` (F test of
        the ``m - 1`` equalities, ``df = m - 1``), plus the contrasts of
        :data:`CONTRASTS` (``df = 1``, ``statistic = t^2``, ``estimate`` the difference
        of the first group minus the second and its standard error). A family with
        fewer than two testable groups at a month, or a test the clusters cannot support,
        keeps its row with empty statistics and the reason in ``not_testable``.
        ``p_value_holm_family``: :func:`adjust_across_months`.
    """
    rows = []
    for family in families:
        members = [lab for lab in fits if family_of(lab) == family and lab not in POOLED_GROUPS]
        if not members:
            continue
        for r in rel_times:
            present = [lab for lab in members if _testable(fits, lab, r, min_treated)]
            con = equality_contrasts(len(present)) if len(present) >= 2 else None
            rows.append(_test_row(fits, family, r, "all equal", present, con, settings))
            for first, second in CONTRASTS.get(family, []):
                if first not in fits or second not in fits:
                    continue
                pair = [first, second]
                ok = all(_testable(fits, lab, r, min_treated) for lab in pair)
                contrast = f"{first.split(':', 1)[1]} vs {second.split(':', 1)[1]}"
                con = np.array([1.0, -1.0]) if ok else None
                rows.append(_test_row(fits, family, r, contrast, pair, con, settings))
    table = pd.DataFrame(rows, columns=TEST_COLUMNS)
    table["p_value_holm_family"] = adjust_across_months(table)
    table["clusters"] = table["clusters"].astype(np.int64)
    return table


def adjust_across_months(tests: pd.DataFrame) -> pd.Series:
    """Holm-adjusted p-values over all tests of a family, across every month tested.

    A family's subgroup-difference tests at the headline months (and its explicit
    contrasts) are one family of hypotheses: "the effects differ by home language" is a
    claim about any of the months, so each p-value is adjusted for the ``m`` tests of the
    family that have one (:func:`holm`; a test that is not testable is not counted).
    """
    out = pd.Series(np.nan, index=tests.index, name="p_value_holm_family")
    for _, idx in tests.groupby("family", sort=True).groups.items():
        out.loc[idx] = holm(tests.loc[idx, "p_value"].to_numpy(dtype=np.float64))
    return out


def empirical_bayes(estimates: np.ndarray, std_errors: np.ndarray) -> dict:
    """Normal-normal empirical-Bayes shrinkage of independent estimates.

    Parameters
    ----------
    estimates, std_errors : numpy.ndarray
        ``b_j`` and ``s_j`` of ``m >= 2`` groups with (approximately) independent errors.

    Returns
    -------
    dict
        ``shrunken`` (posterior means ``mu + B_j (b_j - mu)``, ``B_j = tau^2 / (tau^2 +
        s_j^2)``), ``posterior_sd`` (``sqrt(B_j) s_j``), ``mu`` and ``tau2``.

    Notes
    -----
    Model ``b_j ~ N(theta_j, s_j^2)``, ``theta_j ~ N(mu, tau^2)``; ``mu`` is the
    precision-weighted mean and ``tau^2`` the DerSimonian-Laird moment estimate
    ``max(0, (Q - (m - 1)) / (sum w - sum w^2 / sum w))``, ``w = 1 / s^2``,
    ``Q = sum w (b - mu)^2``. The posterior standard deviation ignores the uncertainty
    in ``mu`` and ``tau^2`` (a plug-in, "naive" EB interval).
    """
    b = np.asarray(estimates, dtype=np.float64)
    s2 = np.asarray(std_errors, dtype=np.float64) ** 2
    if b.size < 2 or not (np.all(np.isfinite(b)) and np.all(s2 > 0)):
        raise ValueError("empirical_bayes needs two or more finite estimates with positive SEs")
    w = 1.0 / s2
    mu0 = float(np.sum(w * b) / np.sum(w))
    q = float(np.sum(w * (b - mu0) ** 2))
    tau2 = max(0.0, (q - (b.size - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    wt = 1.0 / (s2 + tau2)
    mu = float(np.sum(wt * b) / np.sum(wt))
    factor = tau2 / (tau2 + s2)
    return {
        "shrunken": mu + factor * (b - mu),
        "posterior_sd": np.sqrt(factor * s2),
        "mu": mu,
        "tau2": tau2,
    }
