r"""Covariate balance before and after matching, and What Works Clearinghouse equivalence.

Balance statistics follow R's *cobalt* (``bal.tab``) conventions for the ATT:

* the standardised mean difference (SMD) divides the difference in means by a
  standardisation factor :math:`s^*` that is the **same before and after matching** and,
  for the ATT (``s.d.denom = "treated"``), is the standard deviation of the treated group
  in the unmatched sample; for binary variables :math:`s^* = \sqrt{p_1 (1 - p_1)}`;
* cobalt reports *raw* differences in proportion for binary variables by default
  (``binary = "raw"``); the table reports both the raw difference (``diff_*``) and the
  standardised one (``smd_*``, cobalt's ``binary = "std"``) for every variable;
* variance ratios (treated / comparison) are computed for continuous variables only;
  weighted variances use cobalt's formula
  :math:`\frac{\sum w}{(\sum w)^2 - \sum w^2} \sum w (x - \bar x_w)^2`.

Baseline equivalence on the matched sample follows the What Works Clearinghouse (WWC)
Procedures Handbook: Hedges' *g* for continuous variables, the Cox index for binary
ones, and the categories :math:`|ES| \le 0.05` "satisfies", :math:`0.05 < |ES| \le 0.25`
"satisfies with adjustment" (statistical adjustment for the variable is required) and
:math:`|ES| > 0.25` "does not satisfy".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from leapresearch.design.matching import MatchResult

WWCCategory = Literal[
    "satisfies", "satisfies with adjustment", "does not satisfy", "not computable"
]
"""WWC baseline-equivalence category ("not computable": the effect size is undefined)."""

VariableType = Literal["binary", "continuous"]
BalanceSample = Literal["before", "after"]

WWC_CATEGORIES: tuple[str, ...] = get_args(WWCCategory)
VARIABLE_TYPES: tuple[str, ...] = get_args(VariableType)
BALANCE_SAMPLES: tuple[str, ...] = get_args(BalanceSample)

WWC_SATISFIES: float = 0.05
"""Largest |effect size| that satisfies baseline equivalence without adjustment."""

WWC_ADJUSTMENT: float = 0.25
"""Largest |effect size| that satisfies baseline equivalence with statistical adjustment."""

COX_SCALE: float = 1.65
"""Divisor of the log odds ratio in the Cox index."""

BALANCE_COLUMNS: tuple[str, ...] = (
    "covariate",
    "used_in_matching",
    "type",
    "n_treated_after",
    "n_treated_before",
    "n_comparison_before",
    "n_comparison_after",
    "mean_treated",
    "mean_treated_before",
    "mean_comparison_before",
    "mean_comparison_after",
    "diff_before",
    "diff_after",
    "sd_treated",
    "smd_before",
    "smd_after",
    "var_ratio_before",
    "var_ratio_after",
    "wwc_effect_size",
    "wwc_category",
)
"""The columns of :func:`balance_table`, in order:

``type``
    ``binary`` (every value 0 or 1: its means are shares of students) or ``continuous``;
``n_treated_after``, ``n_treated_before``, ``n_comparison_before``, ``n_comparison_after``
    the sizes of the groups the means are taken over: matched treated students, treated
    candidates, comparison candidate rows of stacks with a treated student, matched
    comparison rows (a comparison student in two stacks counts twice). With them a
    reader (and :mod:`leapresearch.publish.privacy`) can tell how many students a share
    of a binary covariate stands for; the weights of ``mean_comparison_after`` sum to
    ``n_treated_after``;
``mean_treated``
    mean of the matched treated students (the analytic sample);
``mean_treated_before``
    mean of all treated candidates;
``mean_comparison_before``
    unweighted mean of all comparison candidates in stacks with treated students;
``mean_comparison_after``
    mean of the matched comparisons weighted by the matching weights;
``diff_before``, ``diff_after``
    raw differences treated minus comparison (proportions for binary variables);
``sd_treated``
    the standardisation factor :math:`s^*`;
``smd_before``, ``smd_after``
    ``diff_* / sd_treated``;
``var_ratio_before``, ``var_ratio_after``
    treated / comparison variance (continuous only, NaN for binary);
``wwc_effect_size``, ``wwc_category``
    Hedges' g or Cox index on the matched sample and its WWC category.
"""


def wwc_category(effect_size: np.ndarray | pd.Series | float) -> np.ndarray:
    r"""Classify effect sizes into WWC baseline-equivalence categories.

    Parameters
    ----------
    effect_size : array-like or float
        Hedges' g or Cox index values (sign is ignored).

    Returns
    -------
    numpy.ndarray
        Object array of :data:`WWC_CATEGORIES`: ``"satisfies"`` if :math:`|ES| \le 0.05`,
        ``"satisfies with adjustment"`` if :math:`0.05 < |ES| \le 0.25`, ``"does not
        satisfy"`` if :math:`|ES| > 0.25` and ``"not computable"`` for NaN.

    Notes
    -----
    WWC Procedures/Standards Handbooks: baseline differences up to 0.05 standard
    deviations satisfy the equivalence requirement; between 0.05 and 0.25 they satisfy it
    only if the impact model adjusts for the characteristic; above 0.25 they do not.
    """
    es = np.abs(np.atleast_1d(np.asarray(effect_size, dtype=float)))
    out = np.full(es.shape, "not computable", dtype=object)
    out[es <= WWC_SATISFIES] = "satisfies"
    out[(es > WWC_SATISFIES) & (es <= WWC_ADJUSTMENT)] = "satisfies with adjustment"
    out[es > WWC_ADJUSTMENT] = "does not satisfy"
    return out


def balance_table(
    candidates: pd.DataFrame,
    result: MatchResult,
    *,
    covariates: Sequence[str],
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    r"""Balance of covariates before and after matching, with WWC baseline equivalence.

    Parameters
    ----------
    candidates : pandas.DataFrame
        The candidate rows that were matched (``stack``, ``student``, ``treated`` and the
        variables).
    result : MatchResult
        Output of :func:`leapresearch.design.matching.match` (or ``nearest_neighbor_match``) on
        ``candidates``.
    covariates : sequence of str
        Variables used in matching (``used_in_matching`` is True).
    extra : sequence of str, default ()
        Further numeric columns of ``candidates`` to check (e.g. pre-period months not used
        in matching); ``used_in_matching`` is False.

    Returns
    -------
    pandas.DataFrame
        One row per variable with the columns of :data:`BALANCE_COLUMNS` (described
        there).

    Raises
    ------
    ValueError
        If a column is missing or non-numeric, a variable is listed twice, or ``result``
        holds a (stack, student) that is not in ``candidates``.

    Notes
    -----
    Samples: *before* = all treated candidates versus all comparison candidates of the
    stacks that contain a treated student (unweighted); *after* = matched treated students
    (weight 1) versus matched comparison rows weighted by :math:`w_j` from
    ``result.matched``.

    A variable is *binary* if all its values in those stacks are 0 or 1 (or it is
    boolean), otherwise *continuous*.

    cobalt ATT conventions: :math:`s^*` is the standard deviation of all treated candidates
    before matching, :math:`\sqrt{p_1(1-p_1)}` for binary variables and the sample SD
    (``ddof = 1``) otherwise, and it is used both before and after matching:

    .. math:: \text{SMD} = (\bar x_1 - \bar x_0) / s^*,
        \qquad \text{SMD}^w = (\bar x_{1w} - \bar x_{0w}) / s^*.

    If :math:`s^* = 0` the SMD is 0 when the difference is 0 and NaN otherwise (the raw
    difference is still reported). Weighted variances use
    :math:`\frac{\sum w}{(\sum w)^2 - \sum w^2} \sum w (x - \bar x_w)^2`. Every sum
    is exactly rounded (``math.fsum``), not a BLAS dot product, so the table does not
    depend on the order of the rows, the BLAS kernel or the number of threads.

    WWC (matched sample, :math:`n_1` matched treated, :math:`n_0` matched comparison rows,
    :math:`N = n_1 + n_0`): Hedges' g for continuous variables

    .. math:: g = \omega \frac{\bar x_1 - \bar x_{0w}}
        {\sqrt{\frac{(n_1 - 1) s_1^2 + (n_0 - 1) s_{0w}^2}{N - 2}}},
        \qquad \omega = 1 - \frac{3}{4N - 9},

    and the Cox index for binary variables,
    :math:`d = [\operatorname{logit}(p_1) - \operatorname{logit}(p_{0w})] / 1.65`, without
    small-sample correction (Procedures Handbook v4.1, VI.1.2). When a proportion is 0 or 1
    the Cox index is undefined: it is 0 if both proportions are equal and NaN ("not
    computable") otherwise.
    """
    covariates = _names(covariates, "covariates")
    extra = _names(extra, "extra")
    overlap = sorted(set(covariates) & set(extra))
    if overlap:
        raise ValueError(f"variables listed in both covariates and extra: {overlap}")
    variables = covariates + extra
    missing = [c for c in ("stack", "student", "treated", *variables) if c not in candidates]
    if missing:
        raise ValueError(f"candidates lacks column(s) {missing}")

    s = _samples(candidates, result)
    records = [
        _balance_row(
            name,
            _values(candidates, name),
            s,
            used=name in covariates,
            is_bool=candidates[name].dtype == bool,
        )
        for name in variables
    ]
    table = _with_sizes(pd.DataFrame.from_records(records, columns=list(BALANCE_COLUMNS[:-1])), s)
    table["wwc_category"] = pd.Categorical(
        wwc_category(table["wwc_effect_size"].to_numpy(dtype=float)), categories=WWC_CATEGORIES
    )
    table["type"] = pd.Categorical(table["type"], categories=VARIABLE_TYPES)
    return table


@dataclass(frozen=True)
class _Samples:
    """Row masks of the balance samples and the matched comparisons' weights."""

    in_stacks: np.ndarray  # rows of stacks with a treated student
    t0: np.ndarray  # treated, before matching
    c0: np.ndarray  # comparison candidates, before matching
    t1: np.ndarray  # matched treated
    c1: np.ndarray  # matched comparison rows
    w_c1: np.ndarray  # their matching weights


def _with_sizes(table: pd.DataFrame, s: _Samples) -> pd.DataFrame:
    """``table`` with the sizes of the four samples (the ``n_*`` columns) filled in."""
    sizes = {
        "n_treated_after": s.t1,
        "n_treated_before": s.t0,
        "n_comparison_before": s.c0,
        "n_comparison_after": s.c1,
    }
    for col, mask in sizes.items():
        table[col] = np.int64(np.count_nonzero(mask))
    return table


def _samples(candidates: pd.DataFrame, result: MatchResult) -> _Samples:
    """The before/after samples of :func:`balance_table`."""
    stack = candidates["stack"].to_numpy(dtype=np.int64)
    student = candidates["student"].to_numpy(dtype=np.int64)
    treated = _bool(candidates["treated"])
    weight = _matched_weights(stack, student, result.matched)
    in_stacks = np.isin(stack, np.unique(stack[treated]))
    c1 = ~treated & (weight > 0)
    return _Samples(
        in_stacks=in_stacks,
        t0=treated & in_stacks,
        c0=~treated & in_stacks,
        t1=treated & (weight > 0),
        c1=c1,
        w_c1=weight[c1],
    )


def _balance_row(
    name: str, x: np.ndarray, s: _Samples, *, used: bool, is_bool: bool
) -> dict[str, object]:
    """One row of the balance table (see :func:`balance_table` for the definitions)."""
    binary = is_bool or bool(np.isin(x[s.in_stacks], (0.0, 1.0)).all())
    x_t0, x_c0, x_t1, x_c1 = x[s.t0], x[s.c0], x[s.t1], x[s.c1]
    m_t0, m_c0, m_t1 = _mean(x_t0), _mean(x_c0), _mean(x_t1)
    m_c1 = _wmean(x_c1, s.w_c1)
    s_star = float(np.sqrt(m_t0 * (1.0 - m_t0))) if binary else _var(x_t0) ** 0.5
    d0, d1 = m_t0 - m_c0, m_t1 - m_c1
    if binary:
        vr0 = vr1 = np.nan
        es = _cox_index(m_t1, m_c1)
    else:
        vr0 = _ratio(_var(x_t0), _var(x_c0))
        v_c1 = _wvar(x_c1, s.w_c1)
        vr1 = _ratio(_var(x_t1), v_c1)
        es = _hedges_g(m_t1, m_c1, _var(x_t1), v_c1, x_t1.size, x_c1.size)
    return {
        "covariate": name,
        "used_in_matching": used,
        "type": "binary" if binary else "continuous",
        "mean_treated": m_t1,
        "mean_treated_before": m_t0,
        "mean_comparison_before": m_c0,
        "mean_comparison_after": m_c1,
        "diff_before": d0,
        "diff_after": d1,
        "sd_treated": s_star,
        "smd_before": _standardise(d0, s_star),
        "smd_after": _standardise(d1, s_star),
        "var_ratio_before": vr0,
        "var_ratio_after": vr1,
        "wwc_effect_size": es,
    }


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _names(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    """Validate a sequence of column names."""
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of column names, got the string {names!r}")
    out = tuple(names)
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicate names: {out!r}")
    return out


def _bool(col: pd.Series) -> np.ndarray:
    """Return ``treated`` as a bool array (bool or 0/1)."""
    values = col.to_numpy()
    if pd.api.types.is_bool_dtype(col.dtype) or np.isin(values, (0, 1)).all():
        return values.astype(bool)
    raise ValueError(f"treated must be boolean or 0/1, got dtype {col.dtype}")


def _values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Return a numeric column as float values; reject non-numeric columns and NaN."""
    col = frame[name]
    if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
        raise ValueError(f"variable {name!r} must be numeric, got dtype {col.dtype}")
    x = col.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(x).any():
        raise ValueError(f"variable {name!r} has missing values")
    return x


def _matched_weights(stack: np.ndarray, student: np.ndarray, matched: pd.DataFrame) -> np.ndarray:
    """Return the matching weight of every candidate row (0 outside the matched sample)."""
    m_stack = matched["stack"].to_numpy(dtype=np.int64)
    m_student = matched["student"].to_numpy(dtype=np.int64)
    keys = pd.MultiIndex.from_arrays([stack, student])
    where = keys.get_indexer(pd.MultiIndex.from_arrays([m_stack, m_student]))
    if (where < 0).any():
        i = np.flatnonzero(where < 0)[0]
        raise ValueError(
            f"result.matched holds (stack={m_stack[i]}, student={m_student[i]}) "
            "which is not a candidate row"
        )
    weight = np.zeros(stack.size)
    weight[where] = matched["weight"].to_numpy(dtype=float)
    return weight


def _sum(x: np.ndarray) -> float:
    """Exactly rounded sum (``math.fsum``): the same whatever the row order or CPU kernel."""
    return math.fsum(x.tolist())


def _mean(x: np.ndarray) -> float:
    return _sum(x) / x.size if x.size else float("nan")


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    total = _sum(w)
    return _sum(w * x) / total if total > 0 else float("nan")


def _var(x: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    m = _sum(x) / x.size
    return _sum((x - m) ** 2) / (x.size - 1)


def _wvar(x: np.ndarray, w: np.ndarray) -> float:
    """Return cobalt's weighted variance (equals ``var(ddof=1)`` for unit weights)."""
    sw, sw2 = _sum(w), _sum(w * w)
    if x.size < 2 or sw * sw - sw2 <= 0:
        return float("nan")
    m = _sum(w * x) / sw
    return sw / (sw * sw - sw2) * _sum(w * (x - m) ** 2)


def _ratio(a: float, b: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def _standardise(diff: float, s_star: float) -> float:
    if s_star > 0:
        return diff / s_star
    return 0.0 if diff == 0 else float("nan")


def _hedges_g(m1: float, m0: float, v1: float, v0: float, n1: int, n0: int) -> float:
    """WWC Hedges' g with the small-sample correction."""
    n = n1 + n0
    if n1 < 2 or n0 < 2:
        return float("nan")
    pooled = math.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / (n - 2))
    omega = 1.0 - 3.0 / (4.0 * n - 9.0)
    if pooled > 0:
        return float(omega * (m1 - m0) / pooled)
    return 0.0 if m1 == m0 else float("nan")


def _cox_index(p1: float, p0: float) -> float:
    """WWC Cox index (no small-sample correction); undefined at 0 or 1 unless equal."""
    if not (np.isfinite(p1) and np.isfinite(p0)):
        return float("nan")
    if p1 == p0:
        return 0.0
    if min(p1, p0) <= 0.0 or max(p1, p0) >= 1.0:
        return float("nan")
    return (math.log(p1 / (1 - p1)) - math.log(p0 / (1 - p0))) / COX_SCALE
