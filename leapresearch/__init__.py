"""leapresearch: a reproducible evaluation of Connecticut's LEAP home-visit program.

The package reads the raw-data contract (``students``, ``attendance_monthly``,
``leap_visits``), builds a student-by-school-month panel, matches visited students to
similar students who were not visited, and estimates event-study and long-term effects.
Nothing runs on import.

The folder tree follows the method section of the report::

    data/         raw files in: the contract, the calendar, the analytic panel, the simulator
    design/       the matched comparison design: pool, matching, balance, adjustment, stacking
    estimation/   estimators and inference: event study, long term, robust, subgroups, naive
    analysis/     the steps of the evaluation, one module per exhibit family, and the runner
    publish/      what leaves the package: tables (with suppression), figures, sentences, HTML

The top level holds the ways in and the settings: ``cli`` (the command line), ``pipeline``
(one run of the report), ``session`` and
``notebook`` (what the notebooks call), ``config`` (parameters), ``paths`` and ``threads``.
Lower layers never import higher ones (``tests/test_layout.py`` walks the imports).
"""

__version__ = "0.1.0"
