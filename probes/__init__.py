"""Probes: functions ``(model, PromptSet, ...) -> Result`` that gather evidence.

Every Result created inside a test is recorded as that test's evidence.
"""

from .logits import LogitDiff, TopK, logit_diff, top_k
from .prompts import PromptSet
from .results import Result
from .tokens import AnswerTokenError, Tokenized, tokenize

__all__ = [
    "AnswerTokenError",
    "LogitDiff",
    "PromptSet",
    "Result",
    "TopK",
    "Tokenized",
    "logit_diff",
    "tokenize",
    "top_k",
]
