"""Turning a `PromptSet` into model inputs, with tokenisation checks that teach.

Prompts of different lengths are right-padded into one batch. No attention mask
is needed: attention is causal, so a real token never sees the padding after
it, and each prompt's answer is read at its own last real position.

An answer is usable when it is one token *and* it is how the model would write
the continuation: ``tokens(prompt + answer) == tokens(prompt) + tokens(answer)``.
The second condition catches the classic traps: a missing leading space
(``"to" + "Mary"``), a prompt ending in a space the tokenizer would have merged
into the answer (GPT-2's ``" 5"``), or a tokenizer that keeps the space apart
(SmolLM2 splits ``" 5"`` into ``" "`` and ``"5"``).
"""

from dataclasses import dataclass

from jaxtyping import Int
from torch import Tensor

from .model_state import model_name as name_of

MAX_LISTED_PROBLEMS = 8


class AnswerTokenError(ValueError):
    """Some answers cannot be scored as one token; each problem names prompt, tokens and fix."""

    def __init__(self, set_name: str, model_name: str, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        lines = [f"PromptSet {set_name!r} on {model_name}: {len(problems)} answer problem(s)"]
        lines += [f"  - {p}" for p in shown] + ([f"  … and {more} more"] if more > 0 else [])
        super().__init__("\n".join(lines))


@dataclass(frozen=True, eq=False)
class Tokenized:
    """A prompt set as one right-padded batch, with per-prompt lengths and answer ids."""

    prompt_set: object
    model_name: str
    tokens: Int[Tensor, "batch pos"]
    lengths: tuple[int, ...]
    str_tokens: tuple[tuple[str, ...], ...]
    answer_ids: Int[Tensor, "batch 2"]
    bos: str | None
    answer_tokens: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def single_token(self) -> bool:
        """Every answer is one token (``answer_ids`` then holds them all)."""
        return all(len(a) == 1 for pair in self.answer_tokens for a in pair)

    @property
    def shared_first_token(self) -> tuple[int, ...]:
        """Prompts whose two (multi-token) answers start with the same token."""
        return tuple(i for i, (a, b) in enumerate(self.answer_tokens) if a[0] == b[0])

    def require_single_token(self, probe: str) -> None:
        """Raise a clear error when a first-token probe meets multi-token answers."""
        if self.single_token:
            return
        i, pair = next((i, p) for i, p in enumerate(self.prompt_set.answers)
                       if any(len(a) > 1 for a in self.answer_tokens[i]))
        raise ValueError(f"{probe} reads one answer token per prompt, but prompt {i} of "
                         f"{self.prompt_set.name!r} has a multi-token answer in {pair}; use "
                         "logit_diff (which sums the answer tokens' log-probabilities) or "
                         "one-token answers")

    @property
    def key(self) -> tuple:
        """Identifies these inputs in the forward-pass cache."""
        return (self.tokens.shape, self.tokens.numpy().tobytes())

    @property
    def final_positions(self) -> Int[Tensor, " batch"]:
        """Index of each prompt's last real token, where its answer is predicted."""
        import torch

        return torch.tensor(self.lengths) - 1


def _pieces(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def answer_problem(tokenizer, model_name: str, index: int, prompt: str, answer: str,
                   multi_token: bool = False) -> str | None:
    """Why ``answer`` cannot be scored after ``prompt`` (as one token, unless
    ``multi_token``), with the fix; or None."""
    ids = _encode(tokenizer, answer)
    pieces = _pieces(tokenizer, ids)
    where = f"prompt {index} {prompt[-40:]!r}: answer {answer!r}"
    if answer[:1].isalnum() and prompt[-1:].isalnum() and len(_encode(tokenizer, " " + answer)) == 1:
        return (f"{where} has no leading space, so it would continue the prompt's last word; "
                f"after a word the next token starts with a space: use {' ' + answer!r}")
    if len(ids) != 1 and not multi_token:
        if len(ids) == 2 and pieces[0].isspace() and answer.startswith(pieces[0]):
            fix = (f"the space is a token of its own for {model_name}, so end the prompt "
                   f"with {pieces[0]!r} and use the answer {answer[len(pieces[0]):]!r}")
        else:
            fix = ("choose an answer that is one token, or score whole answers with "
                   "PromptSet(..., multi_token=True)")
        return f"{where} is {len(ids)} tokens {pieces} for {model_name}; {fix}"
    prompt_ids = _encode(tokenizer, prompt)
    joined = _encode(tokenizer, prompt + answer)
    if joined == prompt_ids + ids:
        return None
    tail = _pieces(tokenizer, joined[len(common_prefix(prompt_ids, joined)):])
    if prompt[-1:].isspace() and not answer[:1].isspace():
        spaced = prompt[-1] + answer
        fix = (f"drop the prompt's trailing space and use {spaced!r}"
               if len(_encode(tokenizer, spaced)) == 1 else "drop the prompt's trailing space")
    else:
        fix = "choose an answer the tokenizer keeps separate from the prompt"
    return (f"{where} is {pieces}, but {model_name} would read the end of prompt + answer "
            f"as {tail}, so the model never predicts {pieces[0]!r} here; {fix}")


def common_prefix(a: list[int], b: list[int]) -> list[int]:
    """The longest common prefix of two token lists."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def tokenize(model, prompt_set, prepend_bos: bool | None = None) -> Tokenized:
    """Tokenize every prompt (BOS as the model's default unless ``prepend_bos`` says)
    and check every answer; raise `AnswerTokenError` listing all problems at once."""
    import torch

    tokenizer, model_name = model.tokenizer, name_of(model)
    if prepend_bos is None:
        prepend_bos = bool(getattr(model.cfg, "default_prepend_bos", True))
    multi = bool(getattr(prompt_set, "multi_token", False))
    problems, answer_tokens = [], []
    for i, (prompt, pair) in enumerate(zip(prompt_set.prompts, prompt_set.answers)):
        found = [p for a in pair if (p := answer_problem(tokenizer, model_name, i, prompt, a, multi))]
        problems += found
        ids = tuple(tuple(_encode(tokenizer, a)) for a in pair)
        if not found and ids[0] == ids[1]:
            problems.append(f"prompt {i} {prompt[-40:]!r}: answers {pair} are the same tokens "
                            f"{_pieces(tokenizer, ids[0])}; pick answers that differ")
        answer_tokens.append(ids)
    if problems:
        raise AnswerTokenError(prompt_set.name, model_name, problems)

    bos = [tokenizer.bos_token_id] if prepend_bos and tokenizer.bos_token_id is not None else []
    rows = [bos + _encode(tokenizer, p) for p in prompt_set.prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(r) for r in rows)
    tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    return Tokenized(
        prompt_set=prompt_set,
        model_name=model_name,
        tokens=tokens,
        lengths=tuple(len(r) for r in rows),
        str_tokens=tuple(tuple(_pieces(tokenizer, r)) for r in rows),
        answer_ids=torch.tensor([[a[0] for a in pair] for pair in answer_tokens], dtype=torch.long),
        bos=tokenizer.bos_token if bos else None,
        answer_tokens=tuple(answer_tokens),
    )


class PromptLengthError(ValueError):
    """Clean and corrupted prompts that patching cannot line up, each shown with both token lists."""


def tokenize_pair(model, prompt_set, prepend_bos: bool | None = None) -> tuple[Tokenized, Tokenized]:
    """Tokenize clean and corrupted prompts and check they line up token for token,
    as patching (which swaps activations position by position) requires."""
    clean = tokenize(model, prompt_set, prepend_bos)
    corrupted = tokenize(model, prompt_set.corrupted, prepend_bos)
    problems = []
    for i, (a, b) in enumerate(zip(clean.str_tokens, corrupted.str_tokens)):
        if len(a) != len(b):
            problems.append(f"prompt {i}: clean {prompt_set.prompts[i]!r} is {len(a)} tokens "
                            f"{list(a)}, corrupted {prompt_set.corrupted_prompts[i]!r} is {len(b)} "
                            f"tokens {list(b)}")
    if problems:
        shown = problems[:MAX_LISTED_PROBLEMS]
        raise PromptLengthError(
            f"PromptSet {prompt_set.name!r} on {clean.model_name}: {len(problems)} clean/corrupted "
            "pair(s) differ in token length, so positions cannot be matched for patching; make "
            "each corrupted prompt the same number of tokens (swap words for words that are one "
            "token too)\n" + "\n".join(f"  - {p}" for p in shown))
    return clean, corrupted
