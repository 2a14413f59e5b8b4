"""Data in: the raw-data contract, the school calendar, the analytic panel, synthetic data.

Holds ``contract`` (reading and checking the three raw tables), ``calendar``, ``types``,
``panel`` (student x school-month panel), ``descriptives`` and ``simulate`` (the generator).
May import: the standard library, third-party packages and ``leapresearch.data`` only.
"""
