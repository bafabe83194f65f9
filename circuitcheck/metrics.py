"""Metrics a probe's ``metric=`` takes: a name in `METRICS` or a function
``(logits, answers, clean_logits) -> one value per prompt`` (final-position logits)."""

from circuitcheck.probes.metrics import METRICS, answer_logprob, kl_to_clean, logit_diff_metric

__all__ = ["METRICS", "answer_logprob", "kl_to_clean", "logit_diff_metric"]
