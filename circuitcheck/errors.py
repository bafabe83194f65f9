"""The errors circuitcheck raises for a researcher's input: each names the prompt, the tokens
or the model, and the fix. Catch them as ``from circuitcheck.errors import AnswerTokenError``."""

from circuitcheck.fixtures.device_maps import DeviceMapRefused
from circuitcheck.fixtures.errors import DeviceUnavailable, ModelUnavailable
from circuitcheck.probes.ablation_values import MissingCorruptedPromptsError
from circuitcheck.probes.recovery import NoGroundTruthError, RankingMismatchError
from circuitcheck.probes.metrics import MetricValueError
from circuitcheck.probes.self_checks import SelfCheckFailed
from circuitcheck.probes.tokens import (AnswerTokenError, EmptyPromptError, MissingAnswersError, PromptInputError,
                                        PromptLengthError, PromptTooLongError)

__all__ = ["AnswerTokenError", "DeviceMapRefused", "DeviceUnavailable", "EmptyPromptError", "MetricValueError",
           "MissingAnswersError", "MissingCorruptedPromptsError", "ModelUnavailable", "NoGroundTruthError",
           "PromptInputError", "PromptLengthError", "PromptTooLongError", "RankingMismatchError", "SelfCheckFailed"]
