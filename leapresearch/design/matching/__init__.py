"""Propensity-score nearest-neighbour matching of visited students in a stacked design.

Visited students were selected because their recent attendance was low, so part of
their later recovery is regression to the mean. Each visited (treated) student is
compared with never-visited students who looked alike before the visit: in the same
*stack* (the treated student's event month, whose candidates all take that event month),
the same district and the same grade band, and with a similar estimated propensity to be
visited given the pre-period attendance trajectory and demographics.

The module follows the conventions of R's *MatchIt* (``matchit(method = "nearest")``):

* the distance is the linear propensity score (logit) of a logistic regression of
  ``treated`` on the covariates (:func:`propensity_scores`);
* matching is k:1 nearest-neighbour on the logit *within exact strata*, optionally with a
  caliper expressed in standard deviations of the distance measure (MatchIt's
  ``std.caliper = TRUE``: ``caliper * sd(distance)`` over all non-discarded units);
* with replacement each treated student independently takes its ``k`` nearest
  comparisons **and every comparison tied with the k-th nearest** (Abadie and Imbens
  2006; Stata's ``teffects nnmatch``), so that no id or row order decides among equally
  distant comparisons; without replacement matching is greedy in ``m_order`` order, one
  match per treated student per round (all first matches, then all second matches, ...),
  as MatchIt's ``nearest`` does, and seeded ties make it depend on the ids;
* weights target the ATT: treated 1, a comparison gets the sum over the treated students
  it serves of ``1 / k_i`` (MatchIt's "How Matching Weights Are Computed", before its
  ``normalize`` rescaling), ``k_i`` counting the kept ties.

Exact ties are exact on every machine: the propensity fit sees its rows in an order set
by their values, rows with identical covariates share one score bit for bit, separation
is decided by a linear program, and scores are compared as integers on a grid of
``1e-9`` (:data:`PSCORE_DECIMALS`), so a distance, a tie and the caliper do not depend on
the BLAS kernel (the only exception: a score within about ``1e-16`` of a grid point).

Everything is vectorised over students; Python loops run over fit groups (stacks),
columns, Newton iterations, matching slots (``1 .. ratio``) and greedy rounds only.

The subpackage holds one concern per module:

* ``options``: the options' types, allowed values and defaults; checks of the inputs;
* ``logit``: numerical logistic regression (dummies, aliased columns, Newton-Raphson);
* ``separation``: whether a propensity fit is (quasi-)separated (the linear program);
* ``propensity``: the propensity model, :func:`propensity_scores`;
* ``grid``: scores and caliper on the integer grid, the candidate rows as arrays;
* ``nearest``: :func:`nearest_neighbor_match` and :func:`match`, with replacement keeping
  every tie of the k-th nearest;
* ``greedy``: matching without replacement;
* ``result``: :class:`MatchResult` and the tables it is assembled from.
"""

from leapresearch.design.matching.grid import PSCORE_DECIMALS
from leapresearch.design.matching.nearest import match, nearest_neighbor_match
from leapresearch.design.matching.options import (
    CALIPER_SCALES,
    DEFAULT_EXACT,
    DEFAULT_FIXED_EFFECTS,
    M_ORDERS,
    UNMATCHED_REASONS,
    CaliperScale,
    MOrder,
    UnmatchedReason,
)
from leapresearch.design.matching.propensity import (
    RIDGE_FALLBACK,
    PropensityFitWarning,
    propensity_scores,
)
from leapresearch.design.matching.result import MatchResult

__all__ = [
    "CALIPER_SCALES",
    "DEFAULT_EXACT",
    "DEFAULT_FIXED_EFFECTS",
    "M_ORDERS",
    "PSCORE_DECIMALS",
    "RIDGE_FALLBACK",
    "UNMATCHED_REASONS",
    "CaliperScale",
    "MOrder",
    "MatchResult",
    "PropensityFitWarning",
    "UnmatchedReason",
    "match",
    "nearest_neighbor_match",
    "propensity_scores",
]
