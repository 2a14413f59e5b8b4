r"""Synthetic Connecticut-like raw data with known true effects of LEAP home visits.

The generator writes the three tables of the raw-data contract (``students``,
``attendance_monthly``, ``leap_visits``) for a synthetic population calibrated to the
public Connecticut figures (``docs/ct-public-figures.md``), together with a
``truth`` dictionary holding the true average effects on the treated, computed from the
simulated potential outcomes. Nothing here is read by the estimation code: the truth is
returned separately and :func:`write_simulation` refuses to put it beside the data.

Model in one paragraph. Students sit in districts and schools (elementary PK-5, middle
6-8, high 9-12), move up a grade each year, graduate after grade 12, leave (about 9% a
year, some mid-year) and are replaced by PK/K entrants and movers. Each school month a
student in membership attends each day with probability

.. math::

    p_{it} = \operatorname{expit}\big(\alpha_{d(i),y} + \gamma_{g(i,y)} + \mu_{meal(i)}
        + \beta' x_i + u_i + v_{iy} + s_{school(i,t)} + \kappa_t + z_{it}\big),

with district-year intercepts :math:`\alpha` (calibrated to district ADA and chronic
absence and to the statewide chronic-absence series), a U-shaped grade profile
:math:`\gamma`, a meal-status gradient :math:`\mu`, a persistent student effect
:math:`u_i`, a student-year effect :math:`v_{iy}`, school effects, seasonality and
month shocks :math:`\kappa_t` (Omicron in January 2022) and an AR(1) process
:math:`z_{it}` with occasional negative jumps: spells of low attendance that partly
recover on their own. Days attended are ``Binomial(membership, p)``; remote days
(2020-21) use ``p`` with a lower index.

LEAP visits are assigned from April 2021 to students with low *observed* recent
attendance (weighted sampling without replacement on the attendance rate of the last
three collected months), so visited students regress to the mean without any program.
One district canvasses whole neighbourhoods (random students of some schools) and has a
zero effect. For treated students the daily probability from the event month on is

.. math::

    p^{(1)}_{it} = p^{(0)}_{it} + \theta_{it}\,(1 - p^{(0)}_{it}),\qquad
    \theta_{it} = \theta\, c_{cohort}\, b_{band}\, l_{location}\,
        \min\!\big(1, \tfrac{r+1}{R}\big)\, e^{-\max(r - F, 0)/S},

where ``r`` is ``rel_time``. The potential outcomes share common random numbers:
``Y(1) = Y(0) + Binomial(membership - Y(0), theta)``, which has the right
``Binomial(membership, p1)`` margin and never lowers attendance.

Simplifications worth knowing: ``students`` holds a row for every student enrolled at any
time in the school year (mid-year entrants included, since the contract requires a roster
row for every attendance month); meal status, ELL, disability and home language are
fixed per student; students who leave a district leave the simulated world (a mover
between districts is a new SASID); days are independent Bernoulli draws within a month,
so fall-to-winter persistence of chronic absence (relative risk about 6 statewide in
2020-21) is weaker than the 17x reported for Connecticut.

Modules: ``config`` (:class:`SimulationConfig`, :class:`SimulatedData`), ``params`` (the
fixed, calibrated parameters), ``world`` (calendar, districts, schools), ``population``
(students and student-years), ``attendance`` (Y(0) monthly panel, summer school),
``selection`` (who is visited: the ``lists`` and ``hazard`` regimes), ``program`` (visit
log, treated students), ``effects`` (Y(1)), ``truth`` (the true effects), ``frames`` (the
contract tables), ``writing`` (files and the marker) and ``generator`` (:func:`simulate`).
This package re-exports the public names.
"""

from __future__ import annotations

from leapresearch.data.simulate.config import (
    ScaleName,
    SelectionRegime,
    SimulatedData,
    SimulationConfig,
)
from leapresearch.data.simulate.generator import simulate
from leapresearch.data.simulate.truth import TRUTH_SCHEMA
from leapresearch.data.simulate.writing import (
    SIMULATION_MARKER,
    TABLES,
    FileFormat,
    read_marker,
    read_truth,
    simulation_digest,
    write_marker,
    write_simulation,
)

__all__ = [
    "TRUTH_SCHEMA",
    "TABLES",
    "SIMULATION_MARKER",
    "ScaleName",
    "SelectionRegime",
    "FileFormat",
    "SimulationConfig",
    "SimulatedData",
    "simulate",
    "write_simulation",
    "write_marker",
    "read_marker",
    "read_truth",
    "simulation_digest",
]
