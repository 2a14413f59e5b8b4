"""What leaves the package: tables, figures, sentences, reports, and comparisons of runs.

Holds ``outputs`` (the one writer, with suppression), ``privacy``, ``labels`` (codes in
words, numbers rounded once), ``tables`` (headline table, full HTML tables), ``plots``,
``narrative``, ``calibration`` (the diagnostics' measured size, which the front page
reads), ``frontpage`` (``report/index.html``), ``report`` (figures, notebook pages),
``pdf`` (``report/report.pdf``, typeset by Typst from the markup of ``typst_markup`` and
``typst_html``) and ``compare_runs``. The only subpackage that writes run outputs.
May import: ``data``, ``design``, ``estimation``, ``config`` and ``paths``.
"""
