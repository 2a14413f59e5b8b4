"""What leaves the package: tables, figures, sentences, reports, and comparisons of runs.

Holds ``outputs`` (the one writer, with suppression), ``privacy``, ``plots``, ``narrative``,
``report`` (HTML) and ``compare_runs``. The only subpackage that writes run outputs.
May import: ``data``, ``design``, ``estimation``, ``config`` and ``paths``.
"""
