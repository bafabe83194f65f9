"""What the model predicts at the answer position: logit difference and top-k tokens."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .forward import answer_logprobs, final_logits
from .results import Result


@dataclass(frozen=True, eq=False, repr=False)
class LogitDiff(Result):
    """``logit(correct) - logit(incorrect)`` at the final position of each prompt.

    Positive means the model prefers the correct answer. ``per_prompt`` is a numpy
    array, so claims read ``(result.per_prompt > 0).all()``.
    """

    prompts: tuple[str, ...]
    answers: tuple[tuple[str, str], ...]
    per_prompt: np.ndarray
    correct_logit: np.ndarray
    incorrect_logit: np.ndarray
    bos: str | None
    scoring: str = "logit"
    shared_first_token: tuple[int, ...] = ()

    kind = "logit_diff"
    title = "Logit difference, logit(correct) − logit(incorrect)"

    @property
    def mean(self) -> float:
        return float(self.per_prompt.mean())

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({
            "prompt": self.prompts,
            "correct": [a for a, _ in self.answers],
            "incorrect": [b for _, b in self.answers],
            "logit_diff": self.per_prompt,
            "correct_logit": self.correct_logit,
            "incorrect_logit": self.incorrect_logit,
        })

    def summary(self) -> dict:
        return {"mean": self.mean, "min": float(self.per_prompt.min()),
                "max": float(self.per_prompt.max()),
                "n_positive": int((self.per_prompt > 0).sum()), "n_prompts": len(self.prompts)}

    def notes(self) -> list[str]:
        notes = [f"BOS token {self.bos!r} prepended" if self.bos else "no BOS token prepended"]
        if self.scoring != "logit":
            notes.append("answers scored by the summed log-probabilities of all their tokens "
                         "(teacher forcing): log P(correct) − log P(incorrect)")
        if self.shared_first_token:
            notes.append(f"prompts {list(self.shared_first_token)}: both answers start with the "
                         "same token, so their difference comes from later tokens only")
        return notes

    def figure(self) -> dict:
        return {"type": "bar", "x": [f"{i}: {p[-32:]}" for i, p in enumerate(self.prompts)],
                "y": self.per_prompt.tolist(), "xlabel": "prompt", "ylabel": "logit difference"}


@probe
def logit_diff(model, prompts, prepend_bos: bool | None = None) -> LogitDiff:
    """Per-prompt logit difference between each prompt's correct and incorrect answer."""
    tokenized = prompts.tokenize(model, prepend_bos)
    if tokenized.single_token:
        picked, scoring = final_logits(model, tokenized).gather(1, tokenized.answer_ids), "logit"
    else:
        picked, scoring = answer_logprobs(model, tokenized), "summed log-prob"
    picked = picked.numpy()
    return LogitDiff(
        model=tokenized.model_name, prompt_set=prompts.name, prompts=prompts.prompts,
        answers=prompts.answers, per_prompt=picked[:, 0] - picked[:, 1],
        correct_logit=picked[:, 0], incorrect_logit=picked[:, 1], bos=tokenized.bos,
        scoring=scoring, shared_first_token=tokenized.shared_first_token,
    )


@dataclass(frozen=True, eq=False, repr=False)
class TopK(Result):
    """The k most likely next tokens per prompt, and the rank (1 = top) of each answer."""

    prompts: tuple[str, ...]
    answers: tuple[tuple[str, str], ...]
    k: int
    tokens: tuple[tuple[str, ...], ...]
    logits: np.ndarray
    probs: np.ndarray
    correct_rank: np.ndarray
    incorrect_rank: np.ndarray
    correct_prob: np.ndarray

    kind = "top_k"
    title = "Top tokens at the answer position"

    def correct_in_top(self, k: int) -> np.ndarray:
        """Per prompt: is the correct answer among the k most likely tokens?"""
        return self.correct_rank <= k

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({
            "prompt": self.prompts,
            "correct": [a for a, _ in self.answers],
            "correct_rank": self.correct_rank,
            "correct_prob": self.correct_prob,
            "incorrect_rank": self.incorrect_rank,
            "top_tokens": [" | ".join(f"{t!r} {p:.2f}" for t, p in zip(ts, ps))
                           for ts, ps in zip(self.tokens, self.probs)],
        })

    def summary(self) -> dict:
        return {"k": self.k, "top1_accuracy": float((self.correct_rank == 1).mean()),
                f"correct_in_top_{self.k}": float(self.correct_in_top(self.k).mean()),
                "worst_correct_rank": int(self.correct_rank.max()), "n_prompts": len(self.prompts)}


@probe
def top_k(model, prompts, k: int = 5, prepend_bos: bool | None = None) -> TopK:
    """Top-k next tokens (with logits and probabilities) and the rank of each answer."""
    tokenized = prompts.tokenize(model, prepend_bos)
    tokenized.require_single_token("top_k")
    logits = final_logits(model, tokenized)
    probs = logits.softmax(dim=-1)
    top = logits.topk(k, dim=-1)
    answer_logits = logits.gather(1, tokenized.answer_ids)
    # rank = 1 + number of tokens with a strictly higher logit
    ranks = 1 + (logits.unsqueeze(1) > answer_logits.unsqueeze(2)).sum(dim=-1)
    decode = model.tokenizer.decode
    return TopK(
        model=tokenized.model_name, prompt_set=prompts.name, prompts=prompts.prompts,
        answers=prompts.answers, k=k,
        tokens=tuple(tuple(decode([i]) for i in row) for row in top.indices.tolist()),
        logits=top.values.numpy(), probs=probs.gather(1, top.indices).numpy(),
        correct_rank=ranks[:, 0].numpy(), incorrect_rank=ranks[:, 1].numpy(),
        correct_prob=probs.gather(1, tokenized.answer_ids[:, :1]).squeeze(1).numpy(),
    )


__all__ = ["LogitDiff", "TopK", "logit_diff", "top_k"]
