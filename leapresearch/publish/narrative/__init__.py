"""Sentences generated from the numbers, for the notebooks and the report.

Every interpretation a reader sees under a result is produced here from the published
(suppressed) table, never typed by hand, so re-running on new data rewrites the story.
Numbers are rounded once for print, from the stored value, by
:func:`leapresearch.publish.labels.fmt` (one decimal for percentage points), after being
snapped to 12 significant digits (:func:`leapresearch.publish.outputs.snap`): every table
a sentence reads is snapped first, so a last-bit difference cannot flip a printed digit.
Groups and covariates are named by :mod:`leapresearch.publish.labels`.

One module per exhibit family, named after the notebook section it writes under:

==================  ===========================================================
``data``            01: attendance by school year
``sample``          02: matching, the comparison pool, balance
``event_study``     03, 04, 08: effects by month, a family's groups, the bootstrap
                    band, the linearmodels check
``identification``  03: pre-trends, composition, sensitivity bounds;
                    07: placebo, falsification, specifications, intent to treat;
                    each check with its size measured in the validation, and the
                    front page's calibrated checks
``subgroups``       04, 05: joint tests of equal effects, empirical-Bayes shrinkage
``long_term``       06: later school years
``robustness``      07: the naive change and the Callaway-Sant'Anna estimators
``summary``         08 and the front page: headline table, crosswalk, summary
``methods``         the front page: methods box, limitations
``common``          what they share (snapped inputs, months and points in words)
==================  ===========================================================

Every name is importable from here (``narrative.describe_effect``), as the notebooks,
the front page and the tests do.
"""

from leapresearch.publish.narrative.common import MONTH_WORDS
from leapresearch.publish.narrative.data import describe_attendance_by_year
from leapresearch.publish.narrative.event_study import (
    describe_adjustment,
    describe_effect,
    describe_event_study,
    describe_family,
    describe_inference,
    describe_linearmodels_check,
)
from leapresearch.publish.narrative.identification import (
    describe_calibrated_diagnostics,
    describe_composition,
    describe_falsification,
    describe_intent_to_treat,
    describe_placebo,
    describe_pre_period,
    describe_pretrends,
    describe_sensitivity,
    describe_specifications,
    specification_table,
)
from leapresearch.publish.narrative.long_term import describe_long_term, describe_long_term_coverage
from leapresearch.publish.narrative.methods import limitations, methods_text
from leapresearch.publish.narrative.robustness import (
    ROBUST_COMPARISON_WORDS,
    ROBUST_NAMES,
    describe_naive,
    describe_robust,
)
from leapresearch.publish.narrative.sample import (
    describe_balance,
    describe_matching,
    describe_pool,
    pool_text,
)
from leapresearch.publish.narrative.subgroups import describe_heterogeneity, describe_shrinkage
from leapresearch.publish.narrative.summary import (
    HTMLTable,
    crosswalk,
    describe_headline_breakdowns,
    describe_lead_intervals,
    describe_truth_comparison,
    describe_within_caliper,
    headline_table,
    summary_paragraph,
    truth_headline,
)

__all__ = [
    "HTMLTable",
    "MONTH_WORDS",
    "ROBUST_COMPARISON_WORDS",
    "ROBUST_NAMES",
    "crosswalk",
    "describe_attendance_by_year",
    "describe_balance",
    "describe_calibrated_diagnostics",
    "describe_composition",
    "describe_adjustment",
    "describe_effect",
    "describe_event_study",
    "describe_falsification",
    "describe_family",
    "describe_heterogeneity",
    "describe_inference",
    "describe_lead_intervals",
    "describe_intent_to_treat",
    "describe_linearmodels_check",
    "describe_long_term",
    "describe_long_term_coverage",
    "describe_matching",
    "describe_naive",
    "describe_placebo",
    "describe_pool",
    "describe_pre_period",
    "describe_pretrends",
    "describe_robust",
    "describe_sensitivity",
    "describe_shrinkage",
    "describe_specifications",
    "describe_truth_comparison",
    "describe_headline_breakdowns",
    "describe_within_caliper",
    "headline_table",
    "limitations",
    "methods_text",
    "pool_text",
    "specification_table",
    "summary_paragraph",
    "truth_headline",
]
