r"""A cluster bootstrap of the whole procedure: score, matches, weights, adjustment, fit.

The analytic errors and the multiplier bootstrap of ``event_study.csv`` hold the first
steps fixed: the propensity score, the matches, the censoring weights and the slopes of the
regression adjustment are those of the full sample, so their estimation error is left out
(Abadie and Imbens 2016 for an estimated propensity score). Those intervals are
*conditional* on the first steps. This module re-runs every step in each draw:

1. the clusters of the event study (schools; students when the run clusters by student,
   :func:`~leapresearch.analysis.fitting.cluster_level`) are put in the order of a hash of
   their own data (:func:`cluster_keys`: no id spelling or row order enters);
2. ``inference.procedure_scheme: resample``: draw :math:`d` takes
   :math:`G` clusters with replacement from a generator seeded by
   ``SeedSequence(inference.seed, spawn_key=(d,))``; every candidate row
   (stack, student) of a drawn cluster enters once per time its cluster is drawn, its
   student (and school) relabelled per copy so that the matching treats copies as
   distinct students (:func:`resampled_inputs`; codes stay inside the computation).
   ``bayesian`` (the default): every cluster stays, once, with a weight :math:`\xi_c` drawn
   exponential(1) from the same generator (:func:`draw_weights`; Rubin's Bayesian
   bootstrap, Dirichlet weights up to scale); the propensity fits weight each row's
   log-likelihood by its cluster's :math:`\xi`, and the matched units are weighted by
   :func:`~leapresearch.design.stacking.mass_weights` (visited student :math:`i`:
   :math:`\xi_i`; its counterfactual: the :math:`\xi`-weighted mean of its matches);
3. the matched sample of the draw is built by
   :func:`~leapresearch.analysis.sample.prepare_matched`, the function a run uses
   (propensity score, its Newton fits started from the full sample's coefficients;
   matching with the same tie rule; censoring weights), and each
   headline group (all visited students, each grade band and the pooled 6-12) is fitted
   by :func:`~leapresearch.analysis.fitting.fit_group` (regression adjustment and event
   study), as in ``event_study.csv``.

The draws run through :func:`~leapresearch.parallel.start_parallel_map`, one item per
block of draws (:func:`start_procedure_draws`; with two workers or more a run starts them
before its other steps, behind its refits, :func:`draws_beside_the_run`); a draw's numbers
depend only on its index, so the result is the same whatever the number of workers or the
backend. Bayesian draws fit the same candidate rows with new weights: each process builds
once what their matchings share (:func:`shared_plan`: the fits' row order, standardised
design and dropped columns, the matching's keys and strata), and each draw re-fits only
the weighted Newton iterations and re-matches on the new scores, with the same numbers
bit for bit.

With :math:`\hat\theta^{*}_{d,r}` the estimate of month :math:`r` in draw :math:`d`, the
standard error is the interquartile range of the draws over
:math:`z_{0.75} - z_{0.25}` (robust to a few extreme draws, as the multiplier bootstrap),
the pointwise interval :math:`\hat\theta_r \pm z_{1-\alpha/2}\,\widehat{se}_r` (normal,
with the bootstrap error: with 199 draws a percentile interval rests on about five draws
in each tail, and it would also carry any bias of the resampled matching), and the
simultaneous band :math:`\hat\theta_r \pm c\,\widehat{se}_r` over the post-visit months
with :math:`c` the :math:`1-\alpha` quantile over draws of
:math:`\max_r |\hat\theta^{*}_{d,r} - \bar\theta^{*}_r| / \widehat{se}_r` (sup-t, Montiel
Olea and Plagborg-Møller 2019).

Resampling is not valid for nearest-neighbour matching with a fixed number of matches
(Abadie and Imbens 2008): a comparison drawn twice is tied with its copy, and both are
kept, and a visited student's counterfactual rests on whichever of its few matches were
drawn. In the validation (``validation/README.md``) the resampled errors were 1.3 times
the Monte Carlo spread of the estimate on average (intervals covering 94-100%), also with
the matches held fixed: the excess comes from resampling the few matches, not from the
re-matching. The ``bayesian`` scheme's weights never drop a cluster; on held-out seeds its
errors were 1.06 times that spread on average and its intervals covered 91-99%, so it is
the default. The censoring weights (``censoring_weights: true``) are re-estimated in a
Bayesian draw with each comparison weighted as in the draw's estimate.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from leapresearch.analysis.base import PROCEDURE_COLUMNS, Log, quiet
from leapresearch.analysis.fitting import band_rel_times, cluster_level, fit_group
from leapresearch.analysis.sample import (
    Prepared,
    draws_plan,
    fitted_coefficients,
    prepare_matched,
)
from leapresearch.config import Config
from leapresearch.data.panel import AnalyticPanel
from leapresearch.design.matching.propensity import PropensityPlan, with_start_terms
from leapresearch.design.matching.separation import remember_directions, remembered_directions
from leapresearch.design.matching.sorting import _dense_codes, _int_lexsort
from leapresearch.design.pool import Candidates
from leapresearch.design.stacking import mass_weights, subgroup_weights
from leapresearch.estimation.event_study import event_study
from leapresearch.estimation.falsification import ID_COLUMNS
from leapresearch.estimation.subgroups import GROUP_ALL, group_definitions
from leapresearch.parallel import Started, scheduler_address, start_parallel_map

MIN_USABLE_SHARE = 0.9
"""Fewest draws, as a share of all, in which a group must be estimable for its columns."""
WILD_SE = 20.0
"""A draw whose estimate of some month lies more than this many (interquartile-range)
standard errors from the draws' median is not counted as estimated: in a group with few
comparison students a resample can make the regression adjustment's slopes near-singular
(estimates of 1e7 pp), a number that must not enter an interval or the band."""

_ROSTER_COLUMNS = ["student", "year", "grade_band", "district", "home_language", "meal_status"]


@dataclass(frozen=True)
class ProcedureData:
    """What every draw needs: the inputs of the matching and the clusters, in key order.

    ``panel`` and ``candidates`` are the run's, reduced to what
    :func:`~leapresearch.analysis.sample.prepare_matched` and the headline groups read
    (the monthly and annual tables are left empty). ``row_cluster`` gives the position of
    each candidate row's cluster in the order of :func:`cluster_keys`, ``student_rank`` each
    student's position in the order of :func:`student_keys`; ``school_clusters``: the
    clusters are schools (else students). ``separating``: the separating directions of the
    propensity fits found so far in this process
    (:func:`~leapresearch.design.matching.separation.remembered_directions`); a draw's
    rows are copies of the sample's, so these decide its separated fits without the linear
    program (the same decision, faster). ``pscore_start``: the full sample's propensity
    coefficients by stack, where each draw's fits start (the same maximum, fewer Newton
    steps). ``scheme``: ``inference.procedure_scheme``; with ``"bayesian"`` the panel and
    candidates are already renumbered by content (:func:`content_ordered`) and
    ``code_cluster`` maps a unit's school (or student) code to its cluster's position.
    ``token``: names these candidates in a worker's cache of their :func:`shared_plan`
    (new data, or new candidates, take a new one).
    """

    panel: AnalyticPanel
    candidates: Candidates
    config: Config
    row_cluster: np.ndarray
    n_clusters: int
    seed: int
    student_rank: np.ndarray
    school_clusters: bool
    separating: dict = dataclasses.field(default_factory=dict)
    pscore_start: dict = dataclasses.field(default_factory=dict)
    scheme: str = "resample"
    code_cluster: np.ndarray | None = None
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


def _as_text(column: pd.Series) -> pd.Series:
    """``column`` as text, a missing value as ``"<NA>"`` (never NA, which would void a key)."""
    return column.astype(object).where(column.notna(), "<NA>").astype(str)


def student_keys(panel: AnalyticPanel, students: np.ndarray) -> pd.Series:
    """SHA-256 of each student's attendance rates and roster rows without ids, by code.

    The content of :func:`~leapresearch.estimation.falsification.content_keys` (rates of
    every month, roster rows by school year without ``student``, ``school``,
    ``school_id``), built column by column, and the first completed visit (month, place,
    visitor, number of visits, district).
    """
    attrs = [c for c in panel.roster.columns if c not in ID_COLUMNS]
    ros = panel.roster.loc[panel.roster["student"].isin(students)]
    ros = ros.sort_values(["student", "year"], kind="stable")
    text = _as_text(ros[attrs[0]])
    for col in attrs[1:]:
        text = text + "\x1f" + _as_text(ros[col])
    # each student's rows are a run of the sorted roster: joined by slices of one list
    owners = ros["student"].to_numpy()
    lines = text.tolist()
    owner, first = np.unique(owners, return_index=True)
    ends = np.append(first[1:], owners.size)
    roster_text = {
        s: "\x1e".join(lines[a:b])
        for s, a, b in zip(owner.tolist(), first.tolist(), ends.tolist(), strict=True)
    }
    ev = panel.events.loc[panel.events["student"].isin(students)]
    ev_text = _as_text(ev["event_time"])
    for col in ("first_visit_location", "visitor_type", "n_completed_visits", "visit_district"):
        ev_text = ev_text + "\x1f" + _as_text(ev[col])
    event_text = dict(zip(ev["student"].to_numpy().tolist(), ev_text.tolist(), strict=True))
    rates = np.nan_to_num(panel.rates[students], nan=-1.0).astype("<f8")
    keys = [
        hashlib.sha256(
            rates[i].tobytes()
            + roster_text.get(s, "").encode()
            + b"\x1d"
            + event_text.get(s, "").encode()
        ).hexdigest()
        for i, s in enumerate(np.asarray(students).tolist())
    ]
    return pd.Series(keys, index=students)


def cluster_keys(
    panel: AnalyticPanel,
    frame: pd.DataFrame,
    cluster: str,
    student_key: pd.Series | None = None,
) -> pd.Series:
    """A key of each cluster of the candidate rows from the content of its rows alone.

    SHA-256 over the cluster's rows sorted, each row its stack, treatment and the student's
    :func:`student_keys` (attendance rates and roster rows without ids). Clusters with the
    same content get the same key (their order then cannot matter); ids and row order never
    enter.

    ``student_key``: :func:`student_keys` of the frame's students, when already computed.

    Returns
    -------
    Series
        Hex keys indexed by the cluster's code (``frame[cluster]``).
    """
    if student_key is None:
        student_key = student_keys(panel, np.unique(frame["student"].to_numpy(np.int64)))
    rows = (
        frame["stack"].astype(str)
        + ":"
        + frame["treated"].astype(int).astype(str)
        + ":"
        + student_key.reindex(frame["student"].to_numpy()).to_numpy()
    )
    codes = frame[cluster].to_numpy()
    order = np.argsort(codes, kind="stable")
    code, first = np.unique(codes[order], return_index=True)
    ends = np.append(first[1:], order.size)
    texts = rows.to_numpy(dtype=object)[order].tolist()
    keys = [
        hashlib.sha256("\n".join(sorted(texts[a:b])).encode()).hexdigest()
        for a, b in zip(first.tolist(), ends.tolist(), strict=True)
    ]
    return pd.Series(keys, index=code)


def procedure_data(prepared: Prepared) -> ProcedureData:
    """The draws' shared inputs from the run's matched sample.

    With ``inference.procedure_scheme: bayesian``, renumbered by :func:`content_ordered`.
    """
    config = prepared.config
    cand = prepared.candidates
    keep = ["stack", "student", "treated", "district", "grade_band", "school", *cand.covariates]
    frame = _coded_strata(cand.frame[list(dict.fromkeys(keep))], config.matching.exact)
    level = cluster_level(prepared)
    student_key = student_keys(prepared.panel, np.unique(frame["student"].to_numpy(np.int64)))
    keys = cluster_keys(prepared.panel, frame, level, student_key)
    # students in the order of their content (ties: identical students, order immaterial)
    student_rank = np.full(prepared.panel.n_students, -1, np.int64)
    by_key = np.argsort(student_key.to_numpy().astype(str), kind="stable")
    student_rank[student_key.index.to_numpy()[by_key]] = np.arange(len(by_key))
    order = np.argsort(keys.to_numpy().astype(str), kind="stable")
    position = pd.Series(np.empty(len(keys), np.int64), index=keys.index)
    position.iloc[order] = np.arange(len(keys))
    panel = prepared.panel
    slim = dataclasses.replace(
        panel,
        roster=panel.roster[_ROSTER_COLUMNS],
        monthly=panel.monthly.iloc[:0],
        annual=panel.annual.iloc[:0],
    )
    data = ProcedureData(
        panel=slim,
        candidates=dataclasses.replace(cand, frame=frame, extra=[]),
        config=config,
        row_cluster=position.reindex(frame[level].to_numpy()).to_numpy(np.int64),
        n_clusters=len(keys),
        seed=config.inference.seed,
        student_rank=student_rank,
        school_clusters=level == "school",
        separating=remembered_directions(),
        pscore_start=fitted_coefficients(prepared.matching),
    )
    if config.inference.procedure_scheme == "bayesian":
        return content_ordered(data)
    return data


def _coded_strata(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with its text ``columns`` (the exact strata) as categoricals, levels sorted.

    Every draw codes the strata of the matching (``pd.factorize(..., sort=True)``): from
    a categorical with sorted levels that reads the stored codes, the same codes as from
    the text, instead of hashing millions of strings a draw.
    """
    levels = {
        c: pd.CategoricalDtype(np.sort(frame[c].dropna().unique().astype(str)))
        for c in columns
        if c in frame
        and pd.api.types.is_string_dtype(frame[c])
        and not isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    return frame.astype(levels) if levels else frame


def draw_counts(seed: int, draw: int, n_clusters: int) -> np.ndarray:
    """How often each cluster (in key order) enters draw ``draw``: ``G`` draws with replacement."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(draw,)))
    return np.bincount(rng.integers(0, n_clusters, size=n_clusters), minlength=n_clusters)


def _rows_of(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] .. starts[i] + sizes[i] - 1`` of every ``i``, concatenated."""
    offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts, sizes) + offset


def resampled_inputs(data: ProcedureData, counts: np.ndarray) -> tuple[AnalyticPanel, Candidates]:
    """The panel and candidates of one draw: each cluster's rows ``counts`` times."""
    panel, candidates, _ = _resampled(data, counts)
    return panel, candidates


def _resampled(
    data: ProcedureData, counts: np.ndarray
) -> tuple[AnalyticPanel, Candidates, np.ndarray]:
    """:func:`resampled_inputs`, and the candidate row each row of the draw copies.

    Copy ``c`` of student ``s`` is a student of its own with ``s``'s attendance, roster
    rows and first visit, the same in every stack of the copy; schools are copied the same
    way, so a school drawn twice is two clusters. Students are numbered in the order of
    (:func:`student_keys`, copy) and rows sorted by stack and student, so that the draw's
    inputs, and every number computed from them, do not depend on the ids of the data.
    """
    frame = data.candidates.frame
    rep = counts[data.row_cluster]
    rows = np.repeat(np.arange(len(frame)), rep)
    copy = np.arange(rows.size) - np.repeat(np.cumsum(rep) - rep, rep)
    width = int(copy.max(initial=0)) + 1
    orig = frame["student"].to_numpy(np.int64)[rows]
    uniq, student = _dense_codes(data.student_rank[orig] * width + copy)
    source = np.empty(uniq.size, np.int64)
    source[student] = orig
    school = data.row_cluster[rows] if data.school_clusters else frame["school"].to_numpy()[rows]
    order = _int_lexsort((student, frame["stack"].to_numpy()[rows]))
    school = _dense_codes(school * width + copy)[1]
    out = frame.iloc[rows[order]].reset_index(drop=True)  # one copy of the wide frame
    out["student"] = student[order]
    out["school"] = school[order]
    panel = data.panel
    roster = panel.roster  # sorted by student and year
    sizes = np.bincount(roster["student"].to_numpy(), minlength=panel.n_students)
    starts = np.cumsum(sizes) - sizes
    ros = roster.iloc[_rows_of(starts[source], sizes[source])]
    ros = ros.assign(student=np.repeat(np.arange(source.size), sizes[source]))
    at = np.full(panel.n_students, -1, np.int64)
    at[panel.events["student"].to_numpy()] = np.arange(len(panel.events))
    visited = at[source] >= 0
    events = panel.events.iloc[at[source][visited]].assign(student=np.flatnonzero(visited))
    panel = dataclasses.replace(
        panel,
        n_students=int(source.size),
        roster=ros.reset_index(drop=True),
        events=events.reset_index(drop=True),
        visited_any=panel.visited_any[source],
        rates=panel.rates[source],
    )
    return panel, dataclasses.replace(data.candidates, frame=out), rows[order]


def content_ordered(data: ProcedureData) -> ProcedureData:
    """``data`` for the Bayesian scheme: every cluster once, students numbered by content.

    The inputs of :func:`resampled_inputs` with every count 1 (students in the order of
    :func:`student_keys`, schools numbered by cluster position), so that the draws'
    propensity fits, matches and fits do not depend on the ids of the data, with
    ``row_cluster`` in the new row order and ``code_cluster``: the cluster position of each
    school code (the identity) or, with student clusters, of each student code. The new
    student codes are the content ranks, so ``student_rank`` becomes the identity.
    """
    panel, candidates, source = _resampled(data, np.ones(data.n_clusters, np.int64))
    row_cluster = data.row_cluster[source]
    if data.school_clusters:
        code_cluster = np.arange(data.n_clusters, dtype=np.int64)
    else:
        code_cluster = np.full(panel.n_students, -1, np.int64)
        code_cluster[candidates.frame["student"].to_numpy()] = row_cluster
    return dataclasses.replace(
        data,
        panel=panel,
        candidates=candidates,
        row_cluster=row_cluster,
        student_rank=np.arange(panel.n_students, dtype=np.int64),
        scheme="bayesian",
        code_cluster=code_cluster,
        token=uuid.uuid4().hex,  # other candidates: another shared plan
    )


def draw_weights(seed: int, draw: int, n_clusters: int) -> np.ndarray:
    """Each cluster's (key order) exponential(1) weight in draw ``draw`` (Bayesian scheme)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(draw,)))
    return rng.standard_exponential(n_clusters)


_coefficients_only = functools.partial(event_study, covariance=False)
"""The event study without its covariance: a draw keeps only the coefficients."""


def headline_fits(prepared: Prepared, unit_mass: np.ndarray | None = None) -> dict[str, pd.Series]:
    """Estimates of the procedure's groups: all visited students, each grade band, 6-12.

    Each group's units are weighted as in ``event_study.csv`` and fitted by
    :func:`~leapresearch.analysis.fitting.fit_group`; a group that cannot be fitted is left
    out. ``unit_mass`` (a Bayesian draw: each unit's cluster weight) weights the units by
    :func:`~leapresearch.design.stacking.mass_weights` instead.
    """
    units, pairs = prepared.units, prepared.matching.pairs
    out = {}
    for label, treated in group_definitions(prepared.attributes, ("grade_band",)):
        if unit_mass is not None:
            weights = mass_weights(units, pairs, treated, unit_mass)
        elif label == GROUP_ALL:
            weights = units["weight"].to_numpy(np.float64)
        else:
            weights = subgroup_weights(units, pairs, treated)
        res = fit_group(prepared, prepared.stacked, weights, estimator=_coefficients_only)
        if res is not None:
            out[label] = res.coefficients
    return out


def draw_estimates(
    data: ProcedureData, draw: int, *, plan: PropensityPlan | None = None
) -> dict[str, pd.Series]:
    """The headline groups' estimates in draw ``draw`` (the whole procedure re-run).

    ``resample``: the inputs of :func:`resampled_inputs`; ``bayesian``: the data's own
    inputs, the propensity fits weighted by :func:`draw_weights` and the units by
    :func:`~leapresearch.design.stacking.mass_weights`; ``plan`` (:func:`shared_plan` of
    ``data``, Bayesian scheme only) reuses what every draw shares (the fits' weight-free
    steps, the matching's keys and strata): the same numbers, faster.
    """
    weight = pscore_weights = unit_mass = None
    if data.scheme == "bayesian":
        weight = draw_weights(data.seed, draw, data.n_clusters)
        panel, candidates, pscore_weights = data.panel, data.candidates, weight[data.row_cluster]
        column = "school" if data.school_clusters else "student"

        def unit_mass(units: pd.DataFrame) -> np.ndarray:
            return weight[data.code_cluster[units[column].to_numpy()]]

    else:
        if plan is not None:
            raise ValueError("a propensity plan serves the Bayesian scheme's draws only")
        panel, candidates = resampled_inputs(data, draw_counts(data.seed, draw, data.n_clusters))
    remember_directions(data.separating)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a ridge propensity fit; the run reports its own
        try:
            prepared = prepare_matched(
                panel,
                candidates,
                data.config,
                pscore_start=data.pscore_start,
                pscore_weights=pscore_weights,
                pscore_plan=plan,
                unit_mass=unit_mass,
            )
            if unit_mass is None:
                return headline_fits(prepared)
            return headline_fits(prepared, unit_mass=unit_mass(prepared.units))
        except (ValueError, np.linalg.LinAlgError):  # a draw the data cannot support
            return {}


def shared_plan(data: ProcedureData) -> PropensityPlan | None:
    """What the draws of ``data`` share of their matching (None: resampled draws).

    The propensity fits' weight-free steps and the matching's keys and strata
    (:func:`~leapresearch.analysis.sample.draws_plan`), and each fit's terms at the common
    start by cluster, from which every draw takes its first Newton step
    (:func:`~leapresearch.design.matching.propensity.with_start_terms`).
    """
    if data.scheme != "bayesian":
        return None
    plan = draws_plan(data.candidates, data.config)
    return with_start_terms(plan, data.pscore_start, data.row_cluster)


_PLANS: dict[str, PropensityPlan | None] = {}
"""The :func:`shared_plan` of the last data a block of this process drew from, by token."""


def _block(data: ProcedureData, draws: tuple[int, ...]) -> list[dict[str, pd.Series]]:
    """The draws of one block, sharing one :func:`shared_plan` (built once a process).

    A worker that takes several blocks of the same data (``data.token``) builds the plan
    for the first and keeps it (one data's plan at a time) for the next.
    """
    if not draws:
        return []
    if data.token not in _PLANS:
        _PLANS.clear()
        _PLANS[data.token] = shared_plan(data)
    plan = _PLANS[data.token]
    return [draw_estimates(data, d, plan=plan) for d in draws]


@dataclass
class StartedDraws:
    """The draws of :func:`start_procedure_draws`, computing until :meth:`paths` takes them."""

    started: Started
    draws: int
    token: str

    def paths(self) -> dict[str, pd.DataFrame]:
        """Every draw's estimates by group, as :func:`procedure_draws` returns them."""
        results = self.started.results()
        _PLANS.pop(self.token, None)  # this process's (one worker): its blocks are done
        flat = [r for block in results for r in block]
        labels = sorted({label for r in flat for label in r})
        return {
            label: pd.DataFrame([r.get(label, pd.Series(dtype=float)) for r in flat]).set_axis(
                pd.RangeIndex(self.draws, name="draw")
            )
            for label in labels
        }

    def close(self) -> None:
        """Stop the draws still running (their results are no longer wanted)."""
        self.started.close()


def start_procedure_draws(
    prepared: Prepared,
    draws: int,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    data: ProcedureData | None = None,
) -> StartedDraws:
    """:func:`procedure_draws` started now (on the workers or the cluster), taken later.

    With ``workers >= 2`` or a scheduler the blocks of draws (four a worker: every item
    carries the data to its process, so few, equal ones) go to
    :func:`~leapresearch.parallel.start_parallel_map` at once, so that the caller can go on
    meanwhile; with one worker they are computed when taken. The numbers are the same
    either way.
    """
    data = procedure_data(prepared) if data is None else data
    n_blocks = max(1, min(draws, 4 * max(workers, 1)))
    blocks = [tuple(int(d) for d in b) for b in np.array_split(np.arange(draws), n_blocks)]
    started = start_parallel_map(
        functools.partial(_block, data), blocks, workers=workers, scheduler=scheduler
    )
    return StartedDraws(started, draws, data.token)


def draws_beside_the_run(
    prepared: Prepared, *, workers: int = 1, scheduler: str | None = None
) -> StartedDraws | None:
    """The draws a run starts before its steps, to compute beside them (None: one worker).

    With a Dask scheduler the draws start right after the matched sample and the run's
    process computes its steps meanwhile. With ``workers >= 2`` on one machine they are
    queued on the same loky workers right after the refits
    (:func:`~leapresearch.analysis.refits.start_refits`, every item queued at once), so a
    worker takes its first block of draws as soon as the refits are done, while this
    process still computes its own steps: at the districts scale the workers otherwise
    waited about 70 s for this process, one of the two cores idle (measured from the
    processes' CPU times, 2026-12-07). The numbers are the same: a draw's depend on its
    index only.
    """
    draws = prepared.config.inference.procedure_draws
    if draws == 0 or (workers <= 1 and scheduler_address(scheduler) is None):
        return None
    return start_procedure_draws(prepared, draws, workers=workers, scheduler=scheduler)


def procedure_draws(
    prepared: Prepared,
    draws: int,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    data: ProcedureData | None = None,
) -> dict[str, pd.DataFrame]:
    """Every draw's estimates of the headline groups.

    Parameters
    ----------
    prepared : Prepared
        The run's matched sample.
    draws : int
        Number of draws.
    workers, scheduler
        As :func:`~leapresearch.parallel.parallel_map` (blocks of draws as items).
    data : ProcedureData, optional
        :func:`procedure_data` of ``prepared``, when already built.

    Returns
    -------
    dict
        Group label -> DataFrame, one row per draw (``draw`` index) and one column per
        ``rel_time``; NaN where the draw could not estimate the month.
    """
    return start_procedure_draws(
        prepared, draws, workers=workers, scheduler=scheduler, data=data
    ).paths()


def _robust_se(dev: np.ndarray) -> np.ndarray:
    """Interquartile range of each column over that of the standard normal."""
    q75, q25 = np.quantile(dev, [0.75, 0.25], axis=0)
    return (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))


def procedure_intervals(
    estimate: pd.Series, paths: pd.DataFrame, *, band_rel_times: list[int], alpha: float
) -> pd.DataFrame:
    """Standard errors, normal intervals and the sup-t band of one group from its draws.

    ``estimate`` is the full-sample path (by ``rel_time``), ``paths`` the draws (rows) by
    month (columns). See the module docstring; all NaN when fewer than
    :data:`MIN_USABLE_SHARE` of the draws estimated every month (a draw with an estimate
    :data:`WILD_SE` standard errors away from the others' median counts as not estimated).
    """
    paths = paths.reindex(columns=estimate.index).astype(np.float64)
    out = pd.DataFrame({"rel_time": estimate.index.to_numpy()})
    dev = paths.loc[paths.notna().all(axis=1)].to_numpy()
    if len(dev) >= 2:  # draws far outside the others are near-singular fits, not estimates
        far = np.abs(dev - np.median(dev, axis=0)) > WILD_SE * _robust_se(dev)
        dev = dev[~far.any(axis=1)]
    if len(paths) == 0 or len(dev) < max(2, MIN_USABLE_SHARE * len(paths)):
        return out.assign(**dict.fromkeys(PROCEDURE_COLUMNS, np.nan))
    se = _robust_se(dev)
    z = stats.norm.ppf(1 - alpha / 2)
    est = estimate.to_numpy(np.float64)
    out["procedure_std_error"] = se
    out["procedure_ci_lower"] = est - z * se
    out["procedure_ci_upper"] = est + z * se
    band = np.isin(estimate.index.to_numpy(), band_rel_times) & (se > 0)
    lower = upper = np.full(est.size, np.nan)
    if band.any():
        t = np.abs(dev[:, band] - dev[:, band].mean(axis=0)) / se[band]
        crit = float(np.quantile(t.max(axis=1), 1 - alpha))
        lower = np.where(band, est - crit * se, np.nan)
        upper = np.where(band, est + crit * se, np.nan)
    out["procedure_band_lower"] = lower
    out["procedure_band_upper"] = upper
    return out


def procedure_table(
    prepared: Prepared,
    results: dict,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    log: Log = quiet,
    started: StartedDraws | None = None,
) -> pd.DataFrame:
    """``group, rel_time`` and :data:`PROCEDURE_COLUMNS` of the headline groups.

    ``results`` are the run's fits by group (their coefficients are the estimates the
    intervals are centred on and their window gives the band's months). Empty (no rows)
    with ``inference.procedure_draws: 0``. ``started``: the draws, started earlier by
    :func:`start_procedure_draws` (a run's, beside its other steps).
    """
    config = prepared.config
    draws = config.inference.procedure_draws
    if draws == 0:
        return pd.DataFrame(columns=["group", "rel_time", *PROCEDURE_COLUMNS])
    if started is None:
        started = start_procedure_draws(prepared, draws, workers=workers, scheduler=scheduler)
    paths = started.paths()
    tables = []
    for label, frame in paths.items():
        if label not in results:
            continue
        res = results[label]
        tab = procedure_intervals(
            res.coefficients,
            frame,
            band_rel_times=band_rel_times(res) if config.inference.band else [],
            alpha=config.analysis.alpha,
        )
        tables.append(tab.assign(group=label))
    done = sum(int(t["procedure_std_error"].notna().any()) for t in tables)
    log(f"whole-procedure bootstrap: {draws} draws, {done} groups")
    if not tables:
        return pd.DataFrame(columns=["group", "rel_time", *PROCEDURE_COLUMNS])
    return pd.concat(tables, ignore_index=True)[["group", "rel_time", *PROCEDURE_COLUMNS]]
