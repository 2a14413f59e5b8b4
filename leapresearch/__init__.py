"""leapresearch: a reproducible evaluation of Connecticut's LEAP home-visit program.

The package reads the raw-data contract (``students``, ``attendance_monthly``,
``leap_visits``), builds a student-by-school-month panel, matches visited students to
similar students who were not visited, and estimates event-study and long-term effects.
Nothing runs on import.
"""

__version__ = "0.1.0"
