"""The true effect of the visits on attendance: Y(1) from Y(0) for the treated.

The effect's time profile (ramp, plateau, slow fade) and the common-random-numbers draw
``Y(1) = Y(0) + Binomial(membership - Y(0), theta)``, applied to the panel in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leapresearch.data.simulate.attendance import _Panel
from leapresearch.data.simulate.config import SimulationConfig
from leapresearch.data.simulate.params import (
    _EFFECT_FADE_SCALE,
    _EFFECT_FADE_START,
    _EFFECT_RAMP,
    _EFFECT_THETA_CAP,
)
from leapresearch.data.simulate.population import _Roster
from leapresearch.data.simulate.program import _Program
from leapresearch.data.simulate.world import _Calendar


def _ramp_fade(rel: np.ndarray) -> np.ndarray:
    """Time profile of the effect: 0 before the event month, ramp, plateau, slow fade."""
    rel = np.asarray(rel, dtype=float)
    ramp = np.minimum(1.0, (rel + 1.0) / _EFFECT_RAMP)
    fade = np.exp(-np.maximum(rel - _EFFECT_FADE_START, 0.0) / _EFFECT_FADE_SCALE)
    return np.where(rel >= 0, ramp * fade, 0.0)


@dataclass
class _TreatedRows:
    rows: np.ndarray  # panel rows of treated students (school months)
    owner: np.ndarray  # index into _Program arrays
    att0: np.ndarray  # Y(0) days attended (in-person + remote)
    att1: np.ndarray  # Y(1) days attended


def _apply_effects(
    cfg: SimulationConfig,
    cal: _Calendar,
    roster: _Roster,
    panel: _Panel,
    program: _Program,
    rng: np.random.Generator,
) -> _TreatedRows:
    """Turn Y(0) into the realised outcome Y(1) for treated students at rel_time >= 0."""
    owner_of = np.full(len(roster.u), -1, dtype=np.int64)
    owner_of[program.student] = np.arange(len(program.student))
    owner = owner_of[panel.student]
    rows = np.flatnonzero(owner >= 0)
    owner = owner[rows]
    att0 = panel.att_in[rows] + panel.att_rem[rows]
    rel = panel.t[rows] - program.event_t[owner]
    theta = np.minimum(program.theta[owner] * _ramp_fade(rel), _EFFECT_THETA_CAP)
    extra_in = rng.binomial(panel.mem_in[rows] - panel.att_in[rows], theta)
    extra_rem = rng.binomial(panel.mem_rem[rows] - panel.att_rem[rows], theta)
    panel.att_in[rows] += extra_in
    panel.att_rem[rows] += extra_rem
    return _TreatedRows(rows=rows, owner=owner, att0=att0, att1=att0 + extra_in + extra_rem)
