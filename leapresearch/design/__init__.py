"""The matched comparison design: who may serve as a comparison, and how they are matched.

Holds ``pool`` (candidate comparisons), ``matching`` (propensity score, nearest neighbours),
``balance`` (standardised differences), ``adjustment`` (regression adjustment on the
pre-period trajectory), ``stacking``.
May import: ``leapresearch.data`` and ``leapresearch.config`` (settings' types); never publish.
"""
