"""Estimators and their inference, applied to the matched design.

Holds ``fixed_effects`` (the fast within estimator and clustered errors), ``event_study``,
``robust`` (Callaway-Sant'Anna) with ``drdid`` (its doubly-robust cells), ``long_term``,
``subgroups`` and ``naive`` (before/after).
May import: ``data``, ``design`` and ``leapresearch.config``; never ``publish``.
"""
