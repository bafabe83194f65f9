"""Probes: functions ``(model, PromptSet, ...) -> Result`` that gather evidence.

Every Result created inside a test is recorded as that test's evidence. Probes
on the same model and prompt set share one forward pass (see `probes.observe`).
"""

from .attention import AttentionPatterns, AttentionTo, attention, attention_to
from .attribution import (
    HeadAttribution,
    LayerAttribution,
    LogitLens,
    head_attribution,
    layer_attribution,
    logit_lens,
)
from .logits import LogitDiff, TopK, logit_diff, top_k
from .prompts import PromptSet
from .results import Result
from .sites import head_label, parse_head
from .tokens import AnswerTokenError, PromptLengthError, Tokenized, tokenize, tokenize_pair

__all__ = [
    "AnswerTokenError",
    "AttentionPatterns",
    "AttentionTo",
    "HeadAttribution",
    "LayerAttribution",
    "LogitDiff",
    "LogitLens",
    "PromptLengthError",
    "PromptSet",
    "Result",
    "TopK",
    "Tokenized",
    "attention",
    "attention_to",
    "head_attribution",
    "head_label",
    "layer_attribution",
    "logit_diff",
    "logit_lens",
    "parse_head",
    "tokenize",
    "tokenize_pair",
    "top_k",
]
