r"""Multiplier (weighted) bootstrap of the event-study path, and simultaneous bands.

The matched event-study estimate is asymptotically linear in student-level (cluster)
influence terms :math:`\psi_c`
(:func:`~leapresearch.estimation.multiple_testing.cluster_influence`): a visited
student contributes its own residual change, a comparison student its residuals
times the number of times it was used (:math:`K_M(c)/M`). Perturbing each cluster's
influence by an independent mean-zero, unit-variance multiplier :math:`\xi_c` is the
weighted bootstrap that Otsu and Rai (2017) show to be valid for nearest-neighbour
matching estimators, where the naive bootstrap is not (Abadie and Imbens 2008): the
matches are kept and only the weights move. It is also the multiplier bootstrap that
``did`` uses for its uniform bands (Callaway and Sant'Anna 2021, section 4.1).

.. math::

    \hat\theta^{*b} - \hat\theta = \textstyle\sum_c \xi^{b}_c\, \psi_c, \qquad
    \xi^{b}_c \in \{-1, +1\} \text{ (Rademacher)}.

Pointwise standard errors are the bootstrap interquartile range over
:math:`z_{0.75} - z_{0.25}` (robust to a few extreme draws, as in ``did``); the
simultaneous (sup-t) critical value is the :math:`1-\alpha` quantile of
:math:`\max_e |\hat\theta^{*b}_e - \hat\theta_e| / \widehat{se}_e` over the months of the band
(Montiel Olea and Plagborg-Møller 2019), so the band covers the whole post-visit path
with probability :math:`1-\alpha`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_DRAWS = 999
DRAW_CHUNK = 128
"""Draws generated at a time (bounds the memory of the multipliers: chunk x clusters)."""


def _canonical_order(psi: np.ndarray) -> np.ndarray:
    """The rows of ``psi`` in the order of their values, not of their labels.

    Rows are sorted by their values rounded to 9 significant digits of the largest
    influence (so that rounding noise does not reorder otherwise equal rows), ties broken
    by the exact values: relabelled or shuffled inputs give every cluster the same
    multipliers. Rows that remain tied are identical, so their order does not matter.
    """
    if not psi.size:
        return psi
    scale = float(np.nanmax(np.abs(psi))) or 1.0
    rounded = np.round(psi / scale, 9)
    # np.lexsort: the last key is the primary one
    keys = np.vstack([psi.T[::-1], rounded.T[::-1]])
    return psi[np.lexsort(keys)]


def _draw_deviations(psi: np.ndarray, *, draws: int, seed: int) -> np.ndarray:
    """``draws`` x months matrix of ``xi_b' psi`` with Rademacher ``xi_b``.

    The multipliers are generated ``DRAW_CHUNK`` draws at a time from one seeded
    generator (the same seed gives the same draws whatever the number of clusters).
    """
    rng = np.random.default_rng(seed)
    dev = np.empty((draws, psi.shape[1]), dtype=np.float64)
    for start in range(0, draws, DRAW_CHUNK):
        m = min(DRAW_CHUNK, draws - start)
        xi = rng.integers(0, 2, size=(m, psi.shape[0]), dtype=np.int8) * 2 - 1
        dev[start : start + m] = xi.astype(np.float64) @ psi
    return dev


@dataclass(frozen=True)
class BootstrapPath:
    """Bootstrap standard errors and the sup-t critical value of one event-study path.

    Attributes
    ----------
    std_errors : pandas.Series
        Pointwise bootstrap standard errors, indexed by ``rel_time``.
    critical_value : float
        Sup-t critical value of the band over ``band_rel_times``.
    band_rel_times : tuple of int
        Months the simultaneous band covers.
    draws : int
        Bootstrap draws.
    """

    std_errors: pd.Series
    critical_value: float
    band_rel_times: tuple[int, ...]
    draws: int

    def table(self, estimates: pd.Series, *, alpha: float = 0.05) -> pd.DataFrame:
        """Pointwise bootstrap intervals and the simultaneous band, by ``rel_time``."""
        se = self.std_errors.reindex(estimates.index)
        z = stats.norm.ppf(1 - alpha / 2)
        out = pd.DataFrame(
            {
                "rel_time": estimates.index.to_numpy(),
                "boot_std_error": se.to_numpy(),
                "boot_ci_lower": (estimates - z * se).to_numpy(),
                "boot_ci_upper": (estimates + z * se).to_numpy(),
            }
        )
        in_band = out["rel_time"].isin(self.band_rel_times).to_numpy()
        c = self.critical_value
        out["band_lower"] = np.where(in_band, estimates.to_numpy() - c * se.to_numpy(), np.nan)
        out["band_upper"] = np.where(in_band, estimates.to_numpy() + c * se.to_numpy(), np.nan)
        return out


def multiplier_bootstrap(
    influence: pd.DataFrame,
    *,
    band_rel_times: tuple[int, ...] | list[int],
    draws: int = DEFAULT_DRAWS,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapPath:
    """Multiplier bootstrap of an event-study path from its cluster influence.

    Parameters
    ----------
    influence : pandas.DataFrame
        ``psi_c``: one row per cluster, one column per ``rel_time`` (as from
        :func:`~leapresearch.estimation.multiple_testing.cluster_influence`, whose
        ``psi' psi`` is the analytic covariance).
    band_rel_times : sequence of int
        Months covered by the simultaneous band (those present in ``influence``).
    draws : int
        Number of bootstrap draws.
    alpha : float
        One minus the coverage of the band.
    seed : int
        Seed of the multipliers (the same seed gives the same draws).

    Returns
    -------
    BootstrapPath

    Notes
    -----
    Draw ``b`` is ``xi_b' Psi`` with ``xi_b`` Rademacher multipliers, one per cluster, so
    that ``E*[(xi' Psi)' (xi' Psi)] = Psi' Psi``: the analytic clustered covariance. The
    clusters are put in the order of their influence values, so relabelled or
    shuffled inputs give the same draws. See the module docstring for the standard
    errors and the band.
    """
    if draws < 100:
        raise ValueError(f"draws must be at least 100, got {draws}")
    psi = _canonical_order(influence.to_numpy(np.float64))
    dev = _draw_deviations(psi, draws=draws, seed=seed)
    q75, q25 = np.quantile(dev, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    cols = influence.columns.to_numpy()
    band = tuple(int(r) for r in band_rel_times if r in set(cols.tolist()))
    idx = np.isin(cols, band) & (se > 0)
    if idx.any():
        t_max = np.max(np.abs(dev[:, idx]) / se[idx], axis=1)
        crit = float(np.quantile(t_max, 1 - alpha))
    else:
        crit = float("nan")
    return BootstrapPath(
        std_errors=pd.Series(se, index=influence.columns, name="boot_std_error"),
        critical_value=crit,
        band_rel_times=band,
        draws=draws,
    )
