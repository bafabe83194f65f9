"""The core: prompts, sites, probes and their Results, and the evidence sink.

A probe is a function ``(model, PromptSet, subject, *, options) -> Result`` decorated with
`evidence.probe`: the Result it returns from a test is that test's evidence. Its options
are keyword-only and named alike everywhere (``metric``, ``reference``, ``ablation``,
``seed``, ``prepend_bos``).

* inputs: `prompts` (PromptSet), `tokens` (tokenizing, input errors), `sites` (site labels
  and the sweep table), `positions` (named positions), `circuits.spec` (Circuit);
* forward passes: `forward`, `observe` (the shared observation pass), `patch_runs` (the
  patching engine), `shared_prefix`, `linearise` (post-sublayer norms), `model_state`;
* probes: `logits`, `attribution`, `attention`, `head_scores`, `neurons`, `corruption`,
  `ablation` (with `ablation_values`), `patching`, `attribution_patching`,
  `path_patching`, `compensation`, `feasibility`, `recovery` (against a known circuit);
* circuits judged: `criteria` (faithfulness, random circuits, completeness, minimality, the
  curve), written once over `circuits.protocol` and run by the node engine (`circuits`) or
  the edge engine (`edges`);
* edge circuits (exported as `circuitcheck.edges`): `edges` (the edge graph, EAP and EAP-IG
  attribution, exact edge patching, MIB's circuit JSON);
* scrutiny of a claim (exported as `circuitcheck.scrutiny`): `robustness`, `stability`,
  `p_values` and `statistics` (Holm, Clopper–Pearson), `published`, `self_checks`;
* results and evidence: `results` (Result), `evidence` (the sink), `figures`, `notebook`.

Nothing here imports `circuitcheck.fixtures` or `circuitcheck.reports`.
"""

from .ablation import Ablation, GaussianNoise, NoiseCorruption, ablate, noise_corruption
from .attention import AttentionPatterns, AttentionTo, attention, attention_to
from .attribution_patching import attribution_patch
from .attribution import (
    HeadAttribution,
    LayerAttribution,
    LogitLens,
    head_attribution,
    layer_attribution,
    logit_lens,
)
from .circuits import Circuit, Completeness, Faithfulness, FaithfulnessCurve, Minimality, RandomCircuitTest
from .criteria import completeness, faithfulness, faithfulness_curve, minimality, random_circuit_test
from .compensation import Compensation, compensation
from .corruption import CorruptionCheck, corruption_check
from .head_scores import HeadScores, head_scores
from .feasibility import STEPS, Feasibility, FeasibilityStep, feasibility, feasibility_step
from .evidence import Evidence
from .logits import LogitDiff, TokenLens, TopK, logit_diff, token_lens, top_k
from .metrics import METRICS, answer_logprob, kl_to_clean, logit_diff_metric
from .neurons import (
    ExclusivePairs,
    NeuronActivations,
    NeuronCongruence,
    NeuronPredictionCorrelation,
    exclusive_neuron_tokens,
    neuron_activations,
    neuron_congruence,
    neuron_prediction_correlation,
)
from .path_patching import PathPatching, path_patch
from .model_state import ModelInfo, model_info
from .patching import SWEEPS, Patching, patch
from .prompts import PromptSet
from .recovery import GroundTruth, NoGroundTruthError, RankingMismatchError, Recovery, ground_truth, recovery
from .results import Result
from .sites import Site, head_label, neuron_label, parse_head, parse_neuron, parse_site
from .tokens import (AnswerTokenError, EmptyPromptError, MissingAnswersError, PromptInputError, PromptLengthError,
                     PromptTooLongError, Tokenized, tokenize, tokenize_pair)
from .input_errors import hide_frames_for_input_errors

hide_frames_for_input_errors(__name__)

# The researcher names `circuitcheck`'s top level takes from this package (read from this
# literal without importing it): every probe, and what probes take. Results, errors, metrics
# and registries are importable here too, and publicly from circuitcheck.results, .errors,
# .metrics and .registries.
__all__ = [
    # probes
    "ablate", "attention", "attention_to", "attribution_patch", "compensation", "completeness",
    "corruption_check", "exclusive_neuron_tokens", "faithfulness", "faithfulness_curve", "feasibility", "feasibility_step",
    "head_attribution", "head_scores", "layer_attribution", "logit_diff", "logit_lens", "minimality",
    "neuron_activations", "neuron_congruence", "neuron_prediction_correlation", "noise_corruption", "patch",
    "path_patch", "random_circuit_test", "recovery", "token_lens", "top_k",
    # what they take, and the evidence a hypothesis adds
    "Circuit", "Evidence", "GaussianNoise", "PromptSet", "ground_truth", "model_info",
]
