"""Every probe's Result class: ``from circuitcheck.results import Faithfulness``.

A Result is an immutable record of what a probe measured: ``.df``, ``.summary()``,
``.figure()``, ``.notes()``, ``.evidence()`` and ``.parts`` (see `Result`).
"""

from circuitcheck.probes.ablation import Ablation, NoiseCorruption
from circuitcheck.probes.attention import AttentionPatterns, AttentionTo
from circuitcheck.probes.attribution import HeadAttribution, LayerAttribution, LogitLens
from circuitcheck.probes.circuits import Completeness, Faithfulness, FaithfulnessCurve, Minimality, RandomCircuitTest
from circuitcheck.probes.compensation import Compensation
from circuitcheck.probes.corruption import CorruptionCheck
from circuitcheck.probes.edges import (EdgeFaithfulness, EdgeFaithfulnessCurve, EdgePatching, EdgeRandomCircuitTest,
                                       EdgeScores)
from circuitcheck.probes.feasibility import Feasibility, FeasibilityStep
from circuitcheck.probes.head_scores import HeadScores
from circuitcheck.probes.logits import LogitDiff, TokenLens, TopK
from circuitcheck.probes.model_state import ModelInfo
from circuitcheck.probes.neurons import (ExclusivePairs, NeuronActivations, NeuronCongruence,
                                         NeuronPredictionCorrelation)
from circuitcheck.probes.p_values import PValueFamily
from circuitcheck.probes.path_patching import PathPatching
from circuitcheck.probes.patching import Patching
from circuitcheck.probes.published import Published
from circuitcheck.probes.recovery import Recovery
from circuitcheck.probes.results import Result
from circuitcheck.probes.robustness import Robustness
from circuitcheck.probes.self_checks import SelfChecks
from circuitcheck.probes.stability import Stability

__all__ = ["Ablation", "AttentionPatterns", "AttentionTo", "Compensation", "Completeness", "CorruptionCheck",
           "EdgeFaithfulness", "EdgeFaithfulnessCurve", "EdgePatching", "EdgeRandomCircuitTest",
           "EdgeScores", "ExclusivePairs", "Faithfulness", "FaithfulnessCurve", "Feasibility",
           "FeasibilityStep", "HeadAttribution", "HeadScores", "LayerAttribution", "LogitDiff", "LogitLens",
           "Minimality", "ModelInfo", "NeuronActivations", "NeuronCongruence",
           "NeuronPredictionCorrelation", "NoiseCorruption", "PValueFamily", "Patching", "PathPatching",
           "Published", "RandomCircuitTest", "Recovery", "Result", "Robustness", "SelfChecks", "Stability", "TokenLens",
           "TopK"]
