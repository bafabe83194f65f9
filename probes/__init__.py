"""Probes: functions ``(model, PromptSet, ...) -> Result`` that gather evidence.

Every Result created inside a test is recorded as that test's evidence. Probes
on the same model and prompt set share one forward pass (see `probes.observe`).
"""

from .ablation import AblationResult, GaussianNoise, NoiseCorruption, ablate, noise_corruption
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
from .circuits import (
    Circuit,
    Completeness,
    Faithfulness,
    Minimality,
    RandomCircuitTest,
    completeness,
    faithfulness,
    minimality,
    random_circuit_test,
)
from .compensation import Compensation, compensation
from .corruption import CorruptionCheck, corruption_check
from .head_scores import HeadScores, head_scores
from .feasibility import STEPS, Feasibility, FeasibilityStep, feasibility, feasibility_step
from .logits import LogitDiff, TopK, logit_diff, top_k
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
from .patching import SWEEPS, PatchingResult, patch
from .prompts import PromptSet
from .results import Result
from .sites import head_label, neuron_label, parse_head, parse_neuron
from .tokens import (AnswerTokenError, EmptyPromptError, MissingAnswersError, PromptInputError, PromptLengthError,
                     PromptTooLongError, Tokenized, tokenize, tokenize_pair)
from .input_errors import hide_frames_for_input_errors

hide_frames_for_input_errors(__name__)

__all__ = [
    "AblationResult",
    "AnswerTokenError",
    "AttentionPatterns",
    "AttentionTo",
    "EmptyPromptError",
    "Circuit",
    "Compensation",
    "Completeness",
    "CorruptionCheck",
    "ExclusivePairs",
    "Feasibility",
    "FeasibilityStep",
    "Faithfulness",
    "GaussianNoise",
    "HeadAttribution",
    "HeadScores",
    "LayerAttribution",
    "LogitDiff",
    "LogitLens",
    "MissingAnswersError",
    "METRICS",
    "Minimality",
    "NoiseCorruption",
    "NeuronActivations",
    "NeuronCongruence",
    "NeuronPredictionCorrelation",
    "PatchingResult",
    "PathPatching",
    "PromptInputError",
    "PromptLengthError",
    "PromptTooLongError",
    "PromptSet",
    "RandomCircuitTest",
    "Result",
    "STEPS",
    "SWEEPS",
    "TopK",
    "Tokenized",
    "attention",
    "ablate",
    "answer_logprob",
    "attention_to",
    "attribution_patch",
    "compensation",
    "completeness",
    "corruption_check",
    "exclusive_neuron_tokens",
    "faithfulness",
    "feasibility",
    "feasibility_step",
    "head_attribution",
    "head_label",
    "head_scores",
    "kl_to_clean",
    "layer_attribution",
    "logit_diff",
    "logit_diff_metric",
    "logit_lens",
    "minimality",
    "neuron_activations",
    "neuron_congruence",
    "neuron_label",
    "neuron_prediction_correlation",
    "noise_corruption",
    "parse_head",
    "parse_neuron",
    "patch",
    "path_patch",
    "random_circuit_test",
    "tokenize",
    "tokenize_pair",
    "top_k",
]
