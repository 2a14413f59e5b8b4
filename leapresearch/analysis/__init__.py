"""The analytic steps of the evaluation, one module per exhibit family.

Each step is a plain function of the matched sample (:class:`~leapresearch.analysis.sample.
Prepared`) that returns one tidy table of the output contract; a notebook section's code is
in the module of its family:

- :mod:`~leapresearch.analysis.sample`: the matched sample, the pool and matching summaries,
  balance (notebook 02);
- :mod:`~leapresearch.analysis.fitting`: one group's event study on the matched sample (what
  every exhibit below fits);
- :mod:`~leapresearch.analysis.event_studies`: the event studies and their inference, grade
  bands, cohorts and subgroups (notebooks 03 to 05);
- :mod:`~leapresearch.analysis.identification`: pre-trend evidence, sensitivity bounds and the
  falsification (notebooks 03 and 07);
- :mod:`~leapresearch.analysis.specifications`: the design's switches one at a time
  (notebook 07);
- :mod:`~leapresearch.analysis.robustness`: the naive change, the placebo and the robust
  estimator (notebooks 06 and 07);
- :mod:`~leapresearch.analysis.long_term`: effects in later school years (notebooks 06 and 07);
- :mod:`~leapresearch.analysis.truth`: on simulated data only, each headline estimate beside
  the simulator's truth (notebook 08);
- :mod:`~leapresearch.analysis.runner`: the list of a run's steps and the function that runs
  them (``leapresearch run`` and a notebook's ``session.result(step)`` both go through it);
- :mod:`~leapresearch.analysis.refits`: the steps that fit a new propensity model, as items
  the run's workers (joblib, or a Dask cluster) compute while it estimates the others.

May import ``data``, ``design``, ``estimation``, ``config``, ``threads`` and ``parallel``;
only the ways in (``pipeline``, ``session``, ``cli``) import it.
"""
