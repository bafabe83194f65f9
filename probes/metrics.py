"""Patching metrics: functions of the final-position logits, one value per row.

A metric takes ``logits`` (rows × vocab, at each prompt's final position),
``answers`` (rows × 2: correct, incorrect token ids) and ``clean_logits`` (rows ×
vocab, the clean run's final logits for the same prompts) and returns one number
per row. Pass a name below or your own function with that signature.

Normalised recovery ``(patched − target) / (source − target)`` is computed by the
sweep from any metric: 1 means the patch moved the metric all the way to the
source run's value, 0 means it did nothing.

A metric that reads only the answers' logits may say so, as ``logit_diff`` does, with
``metric.reads_answers_only = True``: sweeps then give it ``logits`` with just those
two columns (and ``answers`` = ``[0, 1]``), which spares unembedding the whole
vocabulary for every patched run.
"""

from torch import Tensor


def logit_diff_metric(logits: Tensor, answers: Tensor, clean_logits: Tensor) -> Tensor:
    """``logit(correct) − logit(incorrect)``."""
    picked = logits.gather(1, answers)
    return picked[:, 0] - picked[:, 1]


logit_diff_metric.reads_answers_only = True


def answer_logprob(logits: Tensor, answers: Tensor, clean_logits: Tensor) -> Tensor:
    """``log P(correct)``."""
    return logits.log_softmax(-1).gather(1, answers[:, :1]).squeeze(1)


def kl_to_clean(logits: Tensor, answers: Tensor, clean_logits: Tensor) -> Tensor:
    """``KL(clean ‖ patched)`` over the whole next-token distribution (0 = identical)."""
    clean = clean_logits.log_softmax(-1)
    return (clean.exp() * (clean - logits.log_softmax(-1))).sum(-1)


METRICS = {"logit_diff": logit_diff_metric, "answer_logprob": answer_logprob, "kl_to_clean": kl_to_clean}


def resolve_metric(metric) -> tuple[str, object]:
    """A metric name or function → ``(name, function)``."""
    if callable(metric):
        return getattr(metric, "__name__", "custom metric"), metric
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: choose one of {', '.join(METRICS)} or pass a function "
                         "(logits, answers, clean_logits) -> one value per row")
    return metric, METRICS[metric]
