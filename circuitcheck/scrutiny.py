"""Claims that survive scrutiny, one line each: ``from circuitcheck.scrutiny import robustness``.

* `robustness`: one claim under every combination of ablations, templates, seeds and models;
  ``.holds_everywhere``, the failing variants named;
* `stability`, `selection_stability`: bootstrap resamples of the prompts, the Jaccard overlap
  of what a selection picks and how often each component is picked;
* `holm_family`: a claim's own p-values (its Results', and ``(label, p)`` pairs) corrected
  together (the report corrects the whole run's as well, the pairs included); `holm` and
  `clopper_pearson` for numbers at hand;
* `published`: a number a paper reported, the band a replication must meet, the citation;
* `self_checks`: the machinery a claim stands on (Hugging Face parity, live hooks, gradients,
  an inert clean patch); `require_self_check` refuses when one failed (`SelfCheckFailed`).

The faithfulness curve over circuit sizes is `circuitcheck.faithfulness_curve`.
"""

from circuitcheck.probes.p_values import holm_family
from circuitcheck.probes.published import published
from circuitcheck.probes.robustness import robustness
from circuitcheck.probes.self_checks import SelfCheckFailed, require_self_check, self_checks
from circuitcheck.probes.stability import selection_stability, stability
from circuitcheck.probes.statistics import clopper_pearson, holm

__all__ = ["SelfCheckFailed", "clopper_pearson", "holm", "holm_family", "published", "require_self_check",
           "robustness", "selection_stability", "self_checks", "stability"]
