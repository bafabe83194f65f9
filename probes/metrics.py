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

`metric_values` checks what a metric returned: one finite number per row, else a
`MetricValueError` saying what it gave (a mean over the prompts, NaN on which prompts).
"""

import functools

import torch
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


class MetricValueError(ValueError):
    """A metric that did not return one finite number per row of logits (one per prompt)."""


def metric_values(values, rows: int, name: str, prompts=None, finite: bool = True) -> Tensor:
    """``values`` when the metric ``name`` returned one finite number for each of ``rows`` rows
    of logits; otherwise a `MetricValueError` saying what it returned, or naming the prompts
    (row r is prompt r mod the size of the PromptSet ``prompts``) where it is NaN or infinite
    (``finite=False``: the shape only, where the probe checks the values with their prompts)."""
    if not isinstance(values, Tensor) or tuple(values.shape) != (rows,):
        kind = type(values).__name__
        given = (f"shape {tuple(values.shape)}" if isinstance(values, Tensor)
                 else f"{'an' if kind[0] in 'AEIOUaeiou' else 'a'} {kind}")
        raise MetricValueError(
            f"metric {name!r} returned {given} for {rows} rows of logits; a metric returns a tensor of one number "
            "per row (per prompt), e.g. logits.gather(1, answers)[:, 0] - logits.gather(1, answers)[:, 1]: "
            "not their mean, the probe averages over the prompts")
    bad = ~torch.isfinite(values.detach())
    if finite and bad.any():
        from .prompts import index_label

        n = len(prompts) if prompts is not None else rows
        which = sorted({int(r) % n for r in bad.nonzero().flatten()})
        what = "NaN" if values.detach().isnan().any() else "infinite"
        where = "" if prompts is None else f" of {prompts.name!r} (e.g. {prompts.prompts[which[0]]!r})"
        raise MetricValueError(
            f"metric {name!r} is {what} on prompt(s) {index_label(which)}{where}; every score built on it "
            "would be undefined: fix the metric (a log or a division of 0?) or leave those prompts out "
            "(prompts.subset(...))")
    return values


METRICS = {"logit_diff": logit_diff_metric, "answer_logprob": answer_logprob, "kl_to_clean": kl_to_clean}


def resolve_metric(metric) -> tuple[str, object]:
    """A metric name or function → ``(name, function)``."""
    if callable(metric):
        name = getattr(metric, "__name__", "custom metric")

        @functools.wraps(metric)
        def checked(logits, answers, clean_logits):  # every probe's call of a researcher's metric is checked
            return metric_values(metric(logits, answers, clean_logits), len(logits), name, finite=False)
        return name, checked
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: choose one of {', '.join(METRICS)} or pass a function "
                         "(logits, answers, clean_logits) -> one value per row")
    return metric, METRICS[metric]
