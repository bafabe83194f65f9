"""What the model predicts at the answer position: logit difference, top-k tokens, one token's lens.

In compatibility mode the unembedding is centred, so a logit here is the raw
logit minus its mean over the vocabulary. Differences between two tokens and
probabilities do not change; an absolute logit does, which is why each result
also gives log-probabilities or probabilities, the numbers that compare across
tools and models.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .attribution import accumulated_resid, scale_like_final_norm
from .evidence import probe
from .figures import prompt_labels
from .forward import answer_logprobs, final_logits, final_norm_device
from .linearise import capped
from .observe import observe
from .results import Result
from .tokens import AnswerTokenError, answer_problem

CENTRED_NOTE = ("logits are centred: compatibility mode centres the unembedding, so each logit "
                "is the raw logit minus its mean over the vocabulary; logit differences and "
                "probabilities are unchanged")


def centred(model) -> bool:
    """True when the model's unembedding is centred (TransformerLens compatibility mode)."""
    return bool(getattr(model, "compatibility_mode", False))


def prepended_note(bos: str | None) -> str:
    return f"BOS token {bos!r} prepended to every prompt" if bos else "no BOS token prepended"


@dataclass(frozen=True, eq=False, repr=False)
class LogitDiff(Result):
    """``logit(correct) - logit(incorrect)`` at the final position of each prompt.

    Positive means the model prefers the correct answer. ``per_prompt`` is a numpy
    array, so claims read ``(result.per_prompt > 0).all()``. ``correct_logprob`` and
    ``incorrect_logprob`` are ``log P(answer | prompt)``. With multi-token answers
    (``scoring == "summed log-prob"``) ``per_prompt`` is the difference of those
    log-probabilities, each summed over the answer's tokens, and ``correct_logit``
    and ``incorrect_logit`` are None. Logits are centred (see the module docstring).
    """

    prompts: tuple[str, ...]
    answers: tuple[tuple[str, str], ...]
    per_prompt: np.ndarray
    correct_logit: np.ndarray | None
    incorrect_logit: np.ndarray | None
    bos: str | None
    scoring: str = "logit"
    shared_first_token: tuple[int, ...] = ()
    correct_logprob: np.ndarray | None = None
    incorrect_logprob: np.ndarray | None = None
    centred: bool = False

    kind = "logit_diff"
    usual = "mean"
    title = "Logit difference, logit(correct) − logit(incorrect)"

    @property
    def mean(self) -> float:
        return float(self.per_prompt.mean())

    @property
    def df(self) -> pd.DataFrame:
        columns = {"prompt": self.prompts, "correct": [a for a, _ in self.answers],
                   "incorrect": [b for _, b in self.answers], "logit_diff": self.per_prompt}
        if self.scoring == "logit":
            columns |= {"correct_logit": self.correct_logit, "incorrect_logit": self.incorrect_logit}
        return pd.DataFrame(columns | {"correct_logprob": self.correct_logprob,
                                       "incorrect_logprob": self.incorrect_logprob})

    def summary(self) -> dict:
        return {"mean": self.mean, "min": float(self.per_prompt.min()),
                "max": float(self.per_prompt.max()),
                "n_positive": int((self.per_prompt > 0).sum()), "n_prompts": len(self.prompts)}

    def notes(self) -> list[str]:
        notes = [prepended_note(self.bos)]
        if self.scoring != "logit":
            notes.append("logit_diff is log P(correct) − log P(incorrect), each answer scored by "
                         "the summed log-probabilities of all its tokens (teacher forcing), not a "
                         "logit difference; correct_logprob and incorrect_logprob hold the sums")
        elif self.centred:
            notes.append(f"correct_logit and incorrect_logit: {CENTRED_NOTE}; correct_logprob "
                         "and incorrect_logprob are log-probabilities")
        if self.shared_first_token:
            notes.append(f"prompts {list(self.shared_first_token)}: both answers start with the "
                         "same token, so their difference comes from later tokens only")
        return notes

    def figure(self) -> dict:
        labels, hover = prompt_labels(self.prompts)
        return {"type": "bar", "x": labels, "hover": hover,
                "y": self.per_prompt.tolist(), "xlabel": "prompt",
                "ylabel": "logit difference" if self.scoring == "logit" else "log-probability difference"}


@probe
def logit_diff(model, prompts, *, prepend_bos: bool | None = None) -> LogitDiff:
    """Per-prompt logit difference between each prompt's correct and incorrect answer."""
    tokenized = prompts.tokenize(model, prepend_bos)
    tokenized.require_answers("logit_diff")
    logits = None
    if tokenized.single_token:
        all_logits = final_logits(model, tokenized)
        logits = all_logits.gather(1, tokenized.answer_ids).numpy()
        logprobs = all_logits.log_softmax(-1).gather(1, tokenized.answer_ids).numpy()
        picked, scoring = logits, "logit"
    else:
        logprobs = answer_logprobs(model, tokenized).numpy()
        picked, scoring = logprobs, "summed log-prob"
    return LogitDiff(
        model=tokenized.model_name, prompt_set=prompts.name, prompts=prompts.prompts,
        answers=prompts.answers, per_prompt=picked[:, 0] - picked[:, 1],
        correct_logit=None if logits is None else logits[:, 0],
        incorrect_logit=None if logits is None else logits[:, 1], bos=tokenized.bos,
        scoring=scoring, shared_first_token=tokenized.shared_first_token,
        correct_logprob=logprobs[:, 0], incorrect_logprob=logprobs[:, 1], centred=centred(model),
    )


@dataclass(frozen=True, eq=False, repr=False)
class TopK(Result):
    """The k most likely next tokens per prompt (``tokens``, ``logits``, ``probs``: prompt × k)
    and, when the prompt set has answers, the rank (1 = top), logit and probability of
    each answer; without answers those are None. Logits are centred, probabilities are not."""

    prompts: tuple[str, ...]
    answers: tuple[tuple[str, str], ...] | None
    k: int
    tokens: tuple[tuple[str, ...], ...]
    logits: np.ndarray
    probs: np.ndarray
    correct_rank: np.ndarray | None
    incorrect_rank: np.ndarray | None
    correct_prob: np.ndarray | None
    answer_logits: np.ndarray | None = None  # prompt × (correct, incorrect)
    answer_probs: np.ndarray | None = None
    bos: str | None = None
    centred: bool = False

    kind = "top_k"
    title = "Top tokens at the answer position"

    @property
    def top_token(self) -> tuple[str, ...]:
        """Each prompt's most likely next token: ``result.top_token[0] == " Paris"``."""
        return tuple(row[0] for row in self.tokens)

    def correct_in_top(self, k: int) -> np.ndarray:
        """Per prompt: is the correct answer among the k most likely tokens?"""
        if self.correct_rank is None:
            raise ValueError(f"PromptSet {self.prompt_set!r} has no answers, so top_k has no "
                             "answer ranks; give answers, or check result.top_token / result.tokens")
        return self.correct_rank <= k

    @property
    def df(self) -> pd.DataFrame:
        """One row per prompt and top token (``rank``, ``token``, ``logit``, ``prob``); with
        answers, ``answer`` marks them, and an answer outside the top k gets a row of its own."""
        rows = []
        for i, prompt in enumerate(self.prompts):
            roles = {} if self.answers is None else {
                int(rank[i]): (role, j) for j, (role, rank) in
                enumerate((("correct", self.correct_rank), ("incorrect", self.incorrect_rank)))}
            for r, (token, logit, prob) in enumerate(zip(self.tokens[i], self.logits[i], self.probs[i]), 1):
                rows.append({"prompt": prompt, "rank": r, "token": token, "logit": float(logit),
                             "prob": float(prob), "answer": roles.pop(r, ("",))[0]})
            for rank, (role, j) in sorted(roles.items()):  # answers below the top k
                rows.append({"prompt": prompt, "rank": rank, "token": self.answers[i][j],
                             "logit": float(self.answer_logits[i, j]),
                             "prob": float(self.answer_probs[i, j]), "answer": role})
        frame = pd.DataFrame(rows)
        return frame if self.answers is not None else frame.drop(columns="answer")

    def summary(self) -> dict:
        if self.correct_rank is None:
            return {"k": self.k, "mean_top_prob": float(self.probs[:, 0].mean()),
                    "n_prompts": len(self.prompts)}
        return {"k": self.k, "top1_accuracy": float((self.correct_rank == 1).mean()),
                f"correct_in_top_{self.k}": float(self.correct_in_top(self.k).mean()),
                "worst_correct_rank": int(self.correct_rank.max()), "n_prompts": len(self.prompts)}

    def notes(self) -> list[str]:
        return [prepended_note(self.bos)] + ([CENTRED_NOTE] if self.centred else [])


@probe
def top_k(model, prompts, *, k: int = 5, prepend_bos: bool | None = None) -> TopK:
    """Top-k next tokens (with logits and probabilities) and, when the prompts have
    answers, the rank of each answer."""
    tokenized = prompts.tokenize(model, prepend_bos)
    if tokenized.has_answers:
        tokenized.require_single_token("top_k")
    logits = final_logits(model, tokenized)
    probs = logits.softmax(dim=-1)
    top = logits.topk(k, dim=-1)
    answers = {}
    if tokenized.has_answers:
        ids = tokenized.answer_ids
        answer_logits = logits.gather(1, ids)
        # rank = 1 + number of tokens with a strictly higher logit
        ranks = 1 + (logits.unsqueeze(1) > answer_logits.unsqueeze(2)).sum(dim=-1)
        answer_probs = probs.gather(1, ids)
        answers = dict(correct_rank=ranks[:, 0].numpy(), incorrect_rank=ranks[:, 1].numpy(),
                       correct_prob=answer_probs[:, 0].numpy(), answer_logits=answer_logits.numpy(),
                       answer_probs=answer_probs.numpy())
    decode = model.tokenizer.decode
    return TopK(
        model=tokenized.model_name, prompt_set=prompts.name, prompts=prompts.prompts,
        answers=prompts.answers, k=k,
        tokens=tuple(tuple(decode([i]) for i in row) for row in top.indices.tolist()),
        logits=top.values.numpy(), probs=probs.gather(1, top.indices).numpy(),
        **({"correct_rank": None, "incorrect_rank": None, "correct_prob": None} | answers),
        bos=tokenized.bos, centred=centred(model),
    )


@dataclass(frozen=True, eq=False, repr=False)
class TokenLens(Result):
    """One token followed through the residual stream (`token_lens`).

    ``labels`` as in `LogitLens`; ``logit`` (centred, read with the final norm's cached
    scale, so ``final`` is the model's logit), ``prob`` and ``rank`` (1 = top; both from
    the re-normalised stream): label × prompt arrays.
    """

    token: str
    labels: tuple[str, ...]
    logit: np.ndarray
    prob: np.ndarray
    rank: np.ndarray
    bos: str | None = None

    kind = "token_lens"
    title = "Logit lens of one token across layers"

    @property
    def mean_prob(self) -> np.ndarray:
        return self.prob.mean(axis=1)

    def top_from(self) -> str | None:
        """The first label from which the token is the top prediction on every prompt to the end."""
        top = (self.rank == 1).all(axis=1)
        start = len(top)
        while start > 0 and top[start - 1]:
            start -= 1
        return self.labels[start] if start < len(top) else None

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"site": self.labels, "mean_logit": self.logit.mean(axis=1),
                             "mean_prob": self.mean_prob, "worst_rank": self.rank.max(axis=1)})

    def summary(self) -> dict:
        return {"token": self.token, "final_mean_prob": float(self.mean_prob[-1]),
                "final_worst_rank": int(self.rank[-1].max()), "top_from": self.top_from() or "never",
                "n_prompts": self.prob.shape[1]}

    def notes(self) -> list[str]:
        return [prepended_note(self.bos), f"logit: {CENTRED_NOTE}"]

    def figure(self) -> dict:
        return {"type": "line", "x": list(self.labels), "xlabel": "residual stream",
                "ylabel": f"mean P({self.token!r})", "series": {f"P({self.token!r})": self.mean_prob.tolist()}}


@probe
def token_lens(model, prompts, token: str, *, prepend_bos: bool | None = None) -> TokenLens:
    """The logit lens for one token: ``token``'s logit, probability and rank at every point of
    the residual stream (``token_lens(model, prompts, " Paris")``); the prompts need no answers."""
    tokenized = prompts.tokenize(model, prepend_bos)
    tokenizer = model.tokenizer
    problems = [p for i, prompt in enumerate(prompts.prompts)
                if (p := answer_problem(tokenizer, tokenized.model_name, i, prompt, token))]
    if problems:
        raise AnswerTokenError(prompts.name, tokenized.model_name, problems)
    [token_id] = tokenizer.encode(token, add_special_tokens=False)
    observation = observe(model, tokenized)
    stack, labels = accumulated_resid(model, observation)
    direction = model.W_U[:, token_id].detach().float().cpu()
    bias = float(model.b_U[token_id]) if getattr(model, "b_U", None) is not None else 0.0
    logit = (scale_like_final_norm(model, stack, observation) @ direction + bias).numpy()
    probs, ranks = [], []
    device = final_norm_device(model)
    with torch.inference_mode():
        for resid in stack:
            normalized = model.ln_final(resid.to(device=device, dtype=model.cfg.dtype)[:, None])[:, 0]
            logits = capped(model, model.unembed(normalized[:, None])[:, 0].float()).cpu()
            probs.append(logits.softmax(-1)[:, token_id])
            ranks.append(1 + (logits > logits[:, token_id:token_id + 1]).sum(-1))
    return TokenLens(model=tokenized.model_name, prompt_set=prompts.name, token=token,
                     labels=tuple(labels), logit=logit, prob=torch.stack(probs).numpy(),
                     rank=torch.stack(ranks).numpy(), bos=tokenized.bos)


__all__ = ["LogitDiff", "TokenLens", "TopK", "logit_diff", "token_lens", "top_k"]
