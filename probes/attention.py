"""Attention patterns of chosen heads, with the tokens they connect.

``pattern[q, k]`` is how much the query at position q reads from the key at
position k (each row sums to 1). In IOI, name-mover heads attend from the final
position to the indirect object's name and copy it to the output; `attention_to`
measures exactly that: the weight from each prompt's final position to the
positions holding a given token.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .observe import observe
from .results import Result
from .sites import head_label, parse_head


@dataclass(frozen=True, eq=False, repr=False)
class AttentionPatterns(Result):
    """Patterns of ``heads`` (labels) on every prompt: ``patterns[i][j]`` is head i on
    prompt j, a query × key array over that prompt's own tokens ``str_tokens[j]``."""

    heads: tuple[str, ...]
    str_tokens: tuple[tuple[str, ...], ...]
    patterns: tuple[tuple[np.ndarray, ...], ...]
    shown_prompt: int

    kind = "attention"
    title = "Attention patterns"

    def pattern(self, head: str, prompt: int = 0) -> pd.DataFrame:
        """One head on one prompt as a query × key DataFrame labelled with tokens."""
        labels = [f"{i} {t!r}" for i, t in enumerate(self.str_tokens[prompt])]
        return pd.DataFrame(self.patterns[self.heads.index(head)][prompt], index=labels, columns=labels)

    @property
    def df(self) -> pd.DataFrame:
        """Per head and prompt: the key the final position attends to most."""
        rows = []
        for head, per_prompt in zip(self.heads, self.patterns):
            for j, pattern in enumerate(per_prompt):
                last = pattern[-1]
                k = int(last.argmax())
                rows.append({"head": head, "prompt": j, "final_attends_most_to": f"{k} {self.str_tokens[j][k]!r}",
                             "weight": float(last[k])})
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        return {"heads": ", ".join(self.heads), "n_prompts": len(self.str_tokens)}

    def figure(self) -> list[dict]:
        j = self.shown_prompt
        labels = [f"{i} {t}" for i, t in enumerate(self.str_tokens[j])]
        return [{"type": "heatmap", "title": f"{head}, prompt {j}", "z": per_prompt[j].tolist(),
                 "x": labels, "y": labels, "xlabel": "key", "ylabel": "query", "diverging": False}
                for head, per_prompt in zip(self.heads, self.patterns)]


@probe
def attention(model, prompts, heads, *, shown_prompt: int = 0,
              prepend_bos: bool | None = None) -> AttentionPatterns:
    """Attention patterns of ``heads`` (``["L9H6", ...]`` or ``[(9, 6), ...]``) on every prompt;
    the evidence draws them as token × token heatmaps on ``shown_prompt``."""
    tokenized = prompts.tokenize(model, prepend_bos)
    parsed = [parse_head(model, h, tokenized.model_name) for h in heads]
    observation = observe(model, tokenized)
    patterns = tuple(
        tuple(observation.patterns[layer][j, index, :n, :n].numpy() for j, n in enumerate(tokenized.lengths))
        for layer, index in parsed)
    return AttentionPatterns(model=tokenized.model_name, prompt_set=prompts.name,
                             heads=tuple(head_label(*h) for h in parsed),
                             str_tokens=tokenized.str_tokens, patterns=patterns,
                             shown_prompt=shown_prompt)


@dataclass(frozen=True, eq=False, repr=False)
class AttentionTo(Result):
    """Attention from each prompt's final position to the positions holding a target token.
    ``values``: head × prompt."""

    heads: tuple[str, ...]
    targets: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]
    values: np.ndarray
    target: str = "target"  # as asked: "correct", "incorrect", or the token(s)

    kind = "attention_to"

    @property
    def title(self) -> str:
        """Names the target and the heads, so two charts of one test are told apart."""
        what = {"correct": "the correct answer's token", "incorrect": "the incorrect answer's token"}
        heads = ", ".join(self.heads[:6]) + (f" and {len(self.heads) - 6} more" if len(self.heads) > 6 else "")
        return f"Attention from the final position to {what.get(self.target, self.target)}: {heads}"

    @property
    def mean(self) -> np.ndarray:
        """Mean over prompts, per head."""
        return self.values.mean(axis=1)

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame([{"head": h, "prompt": j, "target": self.targets[j],
                              "positions": ", ".join(map(str, self.positions[j])),
                              "attention": float(self.values[i, j])}
                             for i, h in enumerate(self.heads) for j in range(len(self.targets))])

    def summary(self) -> dict:
        return {f"{h} mean": float(m) for h, m in zip(self.heads, self.mean)}

    def figure(self) -> dict:
        return {"type": "bar", "x": list(self.heads), "y": self.mean.tolist(), "title": self.title,
                "xlabel": "head", "ylabel": f"mean attention to the {self.target} token"
                if self.target in ("correct", "incorrect") else "mean attention to the target"}


def _target_tokens(prompts, target) -> list[str]:
    if target in ("correct", "incorrect"):
        return [pair[0 if target == "correct" else 1] for pair in prompts.answers]
    if isinstance(target, str):
        return [target] * len(prompts)
    targets = list(target)
    if len(targets) != len(prompts):
        raise ValueError(f"attention_to: {len(targets)} targets for {len(prompts)} prompts")
    return targets


@probe
def attention_to(model, prompts, heads, *, target="correct",
                 prepend_bos: bool | None = None) -> AttentionTo:
    """How much each head attends from the final position to ``target``: ``"correct"`` or
    ``"incorrect"`` (that answer's token where it occurs in the prompt, e.g. the indirect
    object's name), one token string, or one token string per prompt."""
    tokenized = prompts.tokenize(model, prepend_bos)
    parsed = [parse_head(model, h, tokenized.model_name) for h in heads]
    observation = observe(model, tokenized)
    targets, positions = _target_tokens(prompts, target), []
    for j, (token, pieces) in enumerate(zip(targets, tokenized.str_tokens)):
        found = tuple(k for k, piece in enumerate(pieces) if piece == token)
        if not found:
            raise ValueError(f"attention_to: prompt {j} {prompts.prompts[j]!r} has no token {token!r}; "
                             f"its tokens are {list(pieces)}")
        positions.append(found)
    values = np.array([[observation.patterns[layer][j, index, n - 1, list(positions[j])].sum().item()
                        for j, n in enumerate(tokenized.lengths)] for layer, index in parsed])
    return AttentionTo(model=tokenized.model_name, prompt_set=prompts.name,
                       heads=tuple(head_label(*h) for h in parsed), targets=tuple(targets),
                       positions=tuple(positions), values=values,
                       target=target if isinstance(target, str) and target in ("correct", "incorrect")
                       else repr(target) if isinstance(target, str) else "each prompt's target token")
