"""Head classes: previous-token, duplicate-token and induction heads, scored by their attention.

A head *class* is a pattern of attention. Write the pattern as a 0/1 matrix over
(query, key) positions of a sequence -- previous-token: key = query − 1;
duplicate-token: an earlier key holding the same token as the query;
induction: the key right *after* an earlier copy of the query's token (the head
that completes ``A B … A → B``) -- and a head's score is the share of its
attention that falls on the pattern: ``sum(pattern ⊙ attention) / sum(attention)``,
1 when all of it does. This is TransformerLens's ``head_detector.detect_head``
with ``error_measure="mul"``, computed for every head from one batched pass.

Previous- and duplicate-token scores are averaged over the prompts of a
PromptSet (each over its own tokens; padding never enters). Induction needs
repetition the model cannot predict from meaning, so it is measured on repeated
random tokens: ``samples`` sequences of ``length`` seeded random tokens, each
repeated twice (after the model's prepended token, if it has one).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .input_errors import check_count
from .evidence import probe
from .forward import input_device
from .model_state import model_info, model_name
from .results import Result, best_first
from .sites import head_label, hook_of, layer_label
from .tokens import PromptTooLongError

KINDS = ("previous_token", "duplicate_token", "induction")


def detection_pattern(tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """The 0/1 (query × key) pattern a head of ``kind`` attends to on ``tokens`` (one sequence)."""
    n = len(tokens)
    if kind == "previous_token":
        return torch.diag(torch.ones(n - 1), -1)
    same = (tokens[:, None] == tokens[None, :]).float().tril(-1)  # an earlier copy of the query's token
    if kind == "duplicate_token":
        return same
    if kind == "induction":  # the key after an earlier copy: shift the duplicate pattern right by one
        return torch.cat([torch.zeros(n, 1), same[:, :-1]], dim=1).tril()
    raise ValueError(f"head class {kind!r}: choose one of {', '.join(KINDS)}")


@dataclass(frozen=True, eq=False, repr=False)
class HeadScores(Result):
    """Each head's share of attention on the ``head_class`` pattern: ``values`` is layer × head,
    averaged over ``n_sequences`` sequences. Labels are ``L{layer}H{head}``."""

    head_class: str
    values: np.ndarray
    n_sequences: int
    excluded: tuple[str, ...] = ()

    kind = "head_scores"
    extremes_column = "score"
    ranked_by = "score"  # ranking(): heads by score, largest first (NaN last)

    @property
    def title(self) -> str:
        return f"Head classes: {self.head_class.replace('_', '-')} score of every head"

    def score(self, head: str) -> float:
        """The score of one head, e.g. ``score("L5H1")``."""
        layer, index = (int(x) for x in head[1:].split("H"))
        return float(self.values[layer, index])

    @property
    def df(self) -> pd.DataFrame:
        n_layers, n_heads = self.values.shape
        return pd.DataFrame({"head": [head_label(l, h) for l in range(n_layers) for h in range(n_heads)],
                             "layer": np.repeat(np.arange(n_layers), n_heads),
                             "index": np.tile(np.arange(n_heads), n_layers),
                             "score": self.values.flatten()})

    def component_scores(self) -> pd.Series:
        """Each head's score, layer by layer (index: ``L5H1``)."""
        n_layers, n_heads = self.values.shape
        return pd.Series(self.values.flatten().astype(float),
                         index=[head_label(l, h) for l in range(n_layers) for h in range(n_heads)],
                         name=f"{self.head_class.replace('_', '-')} score")

    def ranking(self) -> list[str]:
        """Every head by score, largest first (ties layer by layer, NaN last)."""
        scores = self.component_scores()
        return [scores.index[i] for i in best_first(self.values.flatten())]

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k heads that score highest."""
        k = check_count("k", k, 0, "the number of heads to list, e.g. top(5)")
        return self.df.nlargest(k, "score").reset_index(drop=True)

    def heads_above(self, threshold: float) -> list[str]:
        """Labels of the heads scoring at least ``threshold``, best first."""
        frame = self.df[self.df["score"] >= threshold].sort_values("score", ascending=False)
        return frame["head"].tolist()

    def summary(self) -> dict:
        top = self.top(1).iloc[0]
        return {"top_head": top["head"], "top_score": float(top["score"]), "n_sequences": self.n_sequences}

    def notes(self) -> list[str]:
        notes = [f"score = share of each head's attention on the {self.head_class.replace('_', '-')} "
                 "pattern (TransformerLens detect_head, error_measure='mul'), mean over sequences"]
        if self.excluded:
            notes.append(f"attention to {' and '.join(self.excluded)} left out of both sums")
        return notes

    def figure(self) -> dict:
        n_layers, n_heads = self.values.shape
        return {"type": "heatmap", "z": self.values.tolist(), "x": [f"H{h}" for h in range(n_heads)],
                "y": [layer_label(l) for l in range(n_layers)], "xlabel": "head", "ylabel": "layer",
                "diverging": False, "title": self.title}


def _checked_counts(length, samples, seed) -> tuple[int, int, int]:
    return (check_count("length", length, 1, "the random tokens of each induction half, e.g. length=20"),
            check_count("samples", samples, 1, "the number of repeated random sequences, e.g. samples=10"),
            check_count("seed", seed, 0, "a seed is a whole number from 0 up, e.g. seed=0"))


def repeated_random_tokens(model, length: int, samples: int, seed: int,
                           prepend_bos: bool | None = None) -> list[torch.Tensor]:
    """``samples`` sequences: the prepended token (the model's, or its tokenizer's BOS when
    ``prepend_bos`` is True; none when False), then ``length`` random tokens twice. Like every
    prompt, a sequence must fit the model's context (`PromptTooLongError` otherwise)."""
    length, samples, seed = _checked_counts(length, samples, seed)
    prepended = (model_info(model).prepended if prepend_bos is None
                 else model.tokenizer.bos_token if prepend_bos else None)
    first = 1 if prepended else 0
    total, limit = first + 2 * length, int(model.cfg.n_ctx)
    if total > limit:
        made = (f"{prepended!r}, then " if prepended else "") + f"{length} random tokens twice"
        raise PromptTooLongError(f"length={length}: each induction sequence is {total} tokens ({made}), but "
                                 f"{model_name(model)} reads at most {limit} (model.cfg.n_ctx); "
                                 f"use length <= {(limit - first) // 2}")
    special = set(model.tokenizer.all_special_ids)
    vocabulary = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    generator = torch.Generator().manual_seed(seed)
    start = model.tokenizer.convert_tokens_to_ids(prepended) if prepended else None
    sequences = []
    for _ in range(samples):
        half = vocabulary[torch.randint(len(vocabulary), (length,), generator=generator)]
        body = torch.cat([half, half])
        sequences.append(body if start is None else torch.cat([torch.tensor([start]), body]))
    return sequences


def _sequences(model, prompts, kind: str, length: int, samples: int, seed: int, prepend_bos):
    if kind == "induction":
        described = f"{samples} × {length} random tokens, twice"
        return repeated_random_tokens(model, length, samples, seed, prepend_bos), described
    if prompts is None:
        raise ValueError(f"head_scores(model, prompts, {kind!r}) needs prompts: the {kind.replace('_', '-')} "
                         "pattern is read on real text (only 'induction' makes its own random tokens)")
    tokenized = prompts.tokenize(model, prepend_bos)
    return [tokenized.tokens[i, :n] for i, n in enumerate(tokenized.lengths)], prompts.name


def _patterns(model, tokens: torch.Tensor) -> torch.Tensor:
    """Attention patterns of every layer for one sequence: layer × head × query × key."""
    names = [hook_of("head_pattern", layer) for layer in range(model.cfg.n_layers)]
    kept = {}

    def keep(activation, hook):
        kept[hook.name] = activation[0].float().cpu()

    device = input_device(model)
    with torch.inference_mode():
        model.run_with_hooks(tokens[None].to(device), fwd_hooks=[(n, keep) for n in names],
                             return_type=None)
    return torch.stack([kept[n] for n in names])


def score_patterns(patterns: torch.Tensor, pattern: torch.Tensor, exclude_bos: bool = False,
                   exclude_current_token: bool = False) -> torch.Tensor:
    """``sum(pattern ⊙ attention) / sum(attention)`` per head, for ``patterns`` (… × query × key)."""
    attention = patterns.clone()
    if exclude_bos:
        attention[..., :, 0] = 0
    if exclude_current_token:
        attention.diagonal(dim1=-2, dim2=-1).zero_()
    return (attention * pattern).sum(dim=(-2, -1)) / attention.sum(dim=(-2, -1))


@probe
def head_scores(model, prompts=None, kind: str = "previous_token", *, length: int = 20, samples: int = 10,
                seed: int = 0, exclude_bos: bool = False, exclude_current_token: bool = False,
                prepend_bos: bool | None = None) -> HeadScores:
    """Score every head as a ``kind`` head: ``previous_token``, ``duplicate_token`` (both on the
    prompts of ``prompts``) or ``induction`` (on ``samples`` seeded sequences of ``length`` random
    tokens repeated twice; ``prompts`` is not needed). ``exclude_bos`` / ``exclude_current_token``
    leave attention to the first position / the query's own position out, as ``detect_head`` does.

    >>> head_scores(model, kind="induction").heads_above(0.5)        # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ValueError(f"head class {kind!r}: choose one of {', '.join(KINDS)}")
    _checked_counts(length, samples, seed)  # also for the text classes, which do not use them
    sequences, described = _sequences(model, prompts, kind, length, samples, seed, prepend_bos)
    short = [i for i, s in enumerate(sequences) if len(s) < 2]
    if short:
        raise ValueError(f"sequence {short[0]} of {described!r} has fewer than 2 tokens; a head pattern needs "
                         "a query with an earlier key: use longer prompts")
    scores = [score_patterns(_patterns(model, s), detection_pattern(s.cpu(), kind), exclude_bos,
                             exclude_current_token) for s in sequences]
    excluded = tuple(what for what, on in (("the first position", exclude_bos),
                                           ("the current token", exclude_current_token)) if on)
    return HeadScores(model=model_name(model), prompt_set=described, head_class=kind,
                      values=torch.stack(scores).mean(0).numpy(), n_sequences=len(sequences), excluded=excluded)
