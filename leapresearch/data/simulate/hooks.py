"""Validation hooks: mechanisms the design was not tuned on (``validation/families.py``).

Each hook is a field of :class:`~leapresearch.data.simulate.config.SimulationConfig` that is
off by default; when every hook is off nothing here draws a random number or changes a
table. The hooks use their own random stream (``SeedSequence(seed, spawn_key=(6,))``, the
seventh child of the generator's seed), so turning one on leaves the other stages' draws
as they were.

- ``latent_shock`` / ``latent_recovery``: a latent student shock ``u`` raises the chance of
  being picked and makes Y(0) recover after the visit month (:func:`_apply_y0_hooks`).
- ``reachability`` / ``reachability_shift``: a latent reachability ``r`` decides which
  picked students complete a visit (:func:`_completion_order`) and moves Y(0) of every
  picked student after the selection month.
- ``list_waves``: the program's visits in a few list waves (:func:`_wave_counts`).
- ``district_effect_spread``: true effects scaled by a district factor
  (:func:`_district_factor`).

The truth of these worlds is in ``truth["validation"]`` (:func:`_validation_truth`): the
Y(0) shift of the visited students by event month (what a perfectly matched comparison
would leave in the estimates) and the intent-to-treat effect over every picked student.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leapresearch.data.simulate.attendance import _Panel
from leapresearch.data.simulate.config import VALIDATION_HOOKS, SimulationConfig

_HOOK_STREAM = 6
"""``spawn_key`` of the hooks' random stream (the generator's stages use 0..5)."""
_RAMP_MONTHS = 3.0
_THETA_CAP = 0.9


@dataclass
class _Latent:
    """Latent student traits of the hooks (one entry per student) and their stream."""

    u: np.ndarray  # latent shock, Exponential(1)
    r: np.ndarray  # latent reachability, N(0, 1)
    rng: np.random.Generator


def _latent(cfg: SimulationConfig, n_students: int) -> _Latent | None:
    """The latent traits when a hook is on (``None`` otherwise: nothing drawn)."""
    if not cfg.hooks_active():
        return None
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(_HOOK_STREAM,)))
    u = rng.exponential(1.0, size=n_students)
    r = rng.standard_normal(n_students)
    return _Latent(u=u, r=r, rng=rng)


def _selection_shift(
    cfg: SimulationConfig, latent: _Latent | None, cand: np.ndarray
) -> float | np.ndarray:
    """Added log-weight (lists) or logit (hazard) of the candidates: ``latent_shock * u``."""
    if latent is None or cfg.latent_shock == 0:
        return 0.0
    return cfg.latent_shock * latent.u[cand]


def _completion_order(
    cfg: SimulationConfig, latent: _Latent | None, students: np.ndarray
) -> np.ndarray:
    """Order of a month's drawn students: the first ones complete a visit.

    Identity unless ``reachability`` is on; then by ``reachability * r + Gumbel``, largest
    first (sampling without replacement with weights ``exp(reachability * r)``).
    """
    if latent is None or cfg.reachability == 0:
        return np.arange(len(students))
    key = cfg.reachability * latent.r[students] + latent.rng.gumbel(size=len(students))
    return np.argsort(-key, kind="stable")


def _wave_counts(
    cfg: SimulationConfig, months: list[tuple[int, int, int, int]], counts: np.ndarray
) -> np.ndarray:
    """Each program month's visits moved to the next wave month of its kind.

    Kinds without a wave month keep their months; after the last wave month of a kind,
    visits go to that last one.
    """
    if not cfg.list_waves:
        return counts
    label = [f"{y:04d}-{m:02d}" for _, y, m, _ in months]
    known = set(label)
    unknown = [w for w in cfg.list_waves if w not in known]
    if unknown:
        raise ValueError(f"list_waves must be program months ({sorted(known)}), got {unknown}")
    out = np.zeros_like(counts)
    for i, (kind, _, _, t) in enumerate(months):
        waves = [
            j
            for j, (k, _, _, tj) in enumerate(months)
            if k == kind and label[j] in cfg.list_waves and tj >= 0
        ]
        if not waves or t < 0:
            out[i] += counts[i]
            continue
        later = [j for j in waves if j >= i]
        out[later[0] if later else waves[-1]] += counts[i]
    return out


def _district_factor(cfg: SimulationConfig, district: np.ndarray, n_leap: int) -> np.ndarray:
    """Effect scale of students in LEAP district ``district`` (index): 1 when off."""
    if cfg.district_effect_spread == 0 or n_leap < 2:
        return np.ones(len(district))
    return 1.0 + cfg.district_effect_spread * (2.0 * district / (n_leap - 1) - 1.0)


def _recover_days(
    rng: np.random.Generator, panel: _Panel, rows: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Y(0) of panel ``rows`` towards 1 as an effect would move it (``theta >= 0``), in place.

    ``p0 -> p0 + theta (1 - p0)``: ``Binomial(absent days, theta)`` days added. Returns
    the days added.
    """
    theta = np.clip(theta, 0.0, _THETA_CAP)
    add_in = rng.binomial(panel.mem_in[rows] - panel.att_in[rows], theta)
    add_rem = rng.binomial(panel.mem_rem[rows] - panel.att_rem[rows], theta)
    panel.att_in[rows] += add_in
    panel.att_rem[rows] += add_rem
    return (add_in + add_rem).astype(np.int64)


def _move_days(
    rng: np.random.Generator, panel: _Panel, rows: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Y(0) of panel ``rows`` moved by about ``100 theta`` pp, either way, in place.

    ``Binomial(membership, |theta|)`` days are added (``theta > 0``, at most the absent
    days) or removed (``theta < 0``, at most the attended days), so the shift is
    symmetric in ``theta`` up to those bounds. Returns the days added (negative: removed).
    """
    theta = np.clip(theta, -_THETA_CAP, _THETA_CAP)
    sign = np.sign(theta).astype(np.int64)
    total = np.zeros(len(rows), dtype=np.int64)
    for att, mem in ((panel.att_in, panel.mem_in), (panel.att_rem, panel.mem_rem)):
        days = rng.binomial(mem[rows], np.abs(theta)).astype(np.int64)
        room = np.where(sign > 0, mem[rows] - att[rows], att[rows]).astype(np.int64)
        moved = sign * np.minimum(days, room)
        att[rows] += moved.astype(att.dtype)
        total += moved
    return total


def _apply_y0_hooks(
    cfg: SimulationConfig,
    panel: _Panel,
    latent: _Latent | None,
    selected: np.ndarray,
    selected_t: np.ndarray,
) -> pd.DataFrame | None:
    """Shift Y(0) of picked students after their selection month (recovery, reachability).

    ``selected`` / ``selected_t``: every picked student (completed or attempts only) and
    the event month they were picked for. Returns the shifted school rows (``student``,
    ``t``, ``mem``, ``added`` days) or ``None`` when neither Y(0) hook is on.
    """
    if latent is None or (cfg.latent_recovery == 0 and cfg.reachability_shift == 0):
        return None
    sel_t = np.full(len(latent.u), -1, dtype=np.int64)
    sel_t[selected] = selected_t
    rows = np.flatnonzero(sel_t[panel.student] >= 0)
    student = panel.student[rows]
    rel = panel.t[rows].astype(np.int64) - sel_t[student]
    after = rel >= 0
    rows, student, rel = rows[after], student[after], rel[after]
    ramp = np.minimum(1.0, (rel + 1.0) / _RAMP_MONTHS)
    added = np.zeros(len(rows), dtype=np.int64)
    if cfg.latent_recovery != 0:
        theta = cfg.latent_recovery * latent.u[student] * ramp
        added += _recover_days(latent.rng, panel, rows, theta)
    if cfg.reachability_shift != 0:
        theta = cfg.reachability_shift * latent.r[student] * ramp
        added += _move_days(latent.rng, panel, rows, theta)
    mem = panel.mem_in[rows] + panel.mem_rem[rows]
    return pd.DataFrame({"student": student, "t": panel.t[rows], "mem": mem, "added": added})


def _validation_truth(
    cfg: SimulationConfig,
    sm: pd.DataFrame,
    treated_student: np.ndarray,
    event_t: np.ndarray,
    shifted: pd.DataFrame | None,
    selected: np.ndarray,
    selected_t: np.ndarray,
    panel: _Panel,
) -> dict[str, Any]:
    """``truth["validation"]``: the hooks that are on and what they do to the estimands.

    ``y0_shift[k]``: mean Y(0) shift (pp of the monthly rate) of the visited students'
    months at ``rel_time = k`` (0 before the visit; what a comparison without the shift
    leaves in the event study of all visited students). ``intent_to_treat[k]``: the
    effect of being picked, averaged over every picked student's months at ``k``
    (attempts only count with effect 0). ``completion_share``: completed / picked.
    ``sm`` holds the treated students' months (``owner``, ``t``, ``mem``, ``rel``,
    ``diff``) from the truth module.
    """
    lo, hi = cfg.truth_window
    hooks = {
        k: (list(getattr(cfg, k)) if isinstance(getattr(cfg, k), tuple) else getattr(cfg, k))
        for k, default in VALIDATION_HOOKS.items()
        if getattr(cfg, k) != default
    }
    out: dict[str, Any] = {"hooks": hooks}
    window = sm[(sm["rel"] >= lo) & (sm["rel"] <= hi)]
    n_rel = window.groupby("rel")["mem"].size()
    shift = pd.Series(0.0, index=n_rel.index)
    if shifted is not None and len(shifted):
        owner_of = pd.Series(np.arange(len(treated_student)), index=treated_student)
        s = shifted.loc[shifted["student"].isin(treated_student)]
        s = s.groupby(["student", "t"], as_index=False)[["mem", "added"]].sum()
        s = s.loc[s["mem"] > 0]
        owner = owner_of.loc[s["student"]].to_numpy()
        s = s.assign(rel=s["t"].to_numpy() - event_t[owner], pp=100.0 * s["added"] / s["mem"])
        s = s.loc[(s["rel"] >= lo) & (s["rel"] <= hi)]
        shift = shift.add(s.groupby("rel")["pp"].sum(), fill_value=0.0) / n_rel
    out["y0_shift"] = {str(int(k)): round(float(v), 4) for k, v in shift.items()}
    # intent to treat: every picked student's membership months at each rel
    n = max(int(panel.student.max(initial=-1)), int(selected.max(initial=-1))) + 1
    sel_t = np.full(n, -1, np.int64)
    sel_t[selected] = selected_t
    rows = np.flatnonzero(sel_t[panel.student] >= 0)
    months = pd.DataFrame(
        {
            "student": panel.student[rows],
            "t": panel.t[rows],
            "mem": panel.mem_in[rows] + panel.mem_rem[rows],
        }
    )
    months = months.groupby(["student", "t"], as_index=False)["mem"].sum()
    months = months.loc[months["mem"] > 0]
    rel = months["t"].to_numpy() - sel_t[months["student"].to_numpy()]
    n_picked = pd.Series(rel[(rel >= lo) & (rel <= hi)]).value_counts().sort_index()
    effect = window.groupby("rel")["diff"].sum().reindex(n_picked.index, fill_value=0.0)
    out["intent_to_treat"] = {
        str(int(k)): round(float(v), 4) for k, v in (effect / n_picked).items()
    }
    out["completion_share"] = round(len(treated_student) / max(len(selected), 1), 4)
    return out
