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

What goes before the prompt is decided once per model (`bos_to_prepend`, kept in
``ModelInfo.prepended``) so that, by default, the model reads what its own
tokenizer would give it; ``prepend_bos=True``/``False`` overrides it per call.
A prompt the model cannot take (empty with nothing before it, longer than the
context) is refused here, before any forward pass.
"""

from dataclasses import dataclass

from jaxtyping import Int
from torch import Tensor

from .model_state import model_info, model_name as name_of

MAX_LISTED_PROBLEMS = 8
PREPEND_BOS_MODES = ("auto", "yes", "no")
DOCUMENT_SEPARATOR = "<|endoftext|>"


def bos_to_prepend(tokenizer) -> str | None:
    """The token a model was trained to see at the start of a document, or None.

    Call it on the model's own Hugging Face tokenizer (TransformerLens replaces a
    bridge's tokenizer with one that always adds BOS). It returns:

    - the BOS token when the tokenizer adds it by itself: ``encode(text)`` with
      special tokens starts with ``bos_token_id`` (Llama-2's ``<s>``, Llama-3's
      ``<|begin_of_text|>``);
    - the BOS token when it is the document separator, ``bos_token == eos_token ==
      "<|endoftext|>"`` (GPT-2, Pythia): TransformerLens's convention, under which
      the published GPT-2 IOI numbers were measured;
    - None otherwise: SmolLM2's BOS ``<|im_start|>`` opens a chat turn and its
      tokenizer never adds it, so prepending it would change what the model sees.
    """
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if bos is None or bos_id is None:
        return None
    if tokenizer.encode("a", add_special_tokens=True)[:1] == [bos_id] != \
            tokenizer.encode("a", add_special_tokens=False)[:1]:
        return bos
    if bos == tokenizer.eos_token == DOCUMENT_SEPARATOR:
        return bos
    return None


def decide_prepended(tokenizer, mode: str | bool = "auto") -> str | None:
    """What to put before every prompt for ``mode``: ``auto`` (`bos_to_prepend`),
    ``yes``/True (the tokenizer's BOS) or ``no``/False (nothing)."""
    mode = {True: "yes", False: "no"}.get(mode, mode)
    if mode not in PREPEND_BOS_MODES:
        raise ValueError(f"prepend_bos {mode!r}: choose one of {', '.join(PREPEND_BOS_MODES)}")
    if mode == "no":
        return None
    if mode == "yes":
        if tokenizer.bos_token is None:
            raise ValueError("prepend_bos 'yes': this tokenizer has no BOS token; use 'auto' or 'no'")
        return tokenizer.bos_token
    return bos_to_prepend(tokenizer)


class PromptInputError(ValueError):
    """A prompt the model cannot take; the message names the prompt, its tokens, the limit and the fix."""


class EmptyPromptError(PromptInputError):
    """An empty prompt with nothing prepended: there is no position to read a prediction from."""


class PromptTooLongError(PromptInputError):
    """A prompt (with its prepended token and, for multi-token answers, its longest answer)
    longer than the model's context, ``model.cfg.n_ctx``."""


class MissingAnswersError(ValueError):
    """A probe that reads (correct, incorrect) answers met a PromptSet without them."""


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
    answer_id_table: Int[Tensor, "batch 2"] | None  # None: the prompt set has no answers
    bos: str | None
    answer_tokens: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def has_answers(self) -> bool:
        return self.answer_id_table is not None

    @property
    def answer_ids(self) -> Int[Tensor, "batch 2"]:
        """Each prompt's (correct, incorrect) first answer token; an error without answers."""
        self.require_answers("this probe")
        return self.answer_id_table

    def require_answers(self, probe: str) -> None:
        """Raise `MissingAnswersError`, naming ``probe`` and the fix, when there are no answers."""
        if self.has_answers:
            return
        raise MissingAnswersError(
            f"{probe} reads each prompt's (correct, incorrect) answer pair, but PromptSet "
            f"{self.prompt_set.name!r} has none; give them: PromptSet(prompts, answers=[(' Mary', "
            "' John'), ...]). Without answers, use top_k (the top tokens) or "
            "token_lens(model, prompts, ' Paris') (one token across layers)")

    @property
    def single_token(self) -> bool:
        """Every answer is one token (``answer_ids`` then holds them all)."""
        return all(len(a) == 1 for pair in self.answer_tokens for a in pair)

    @property
    def shared_first_token(self) -> tuple[int, ...]:
        """Prompts whose two (multi-token) answers start with the same token."""
        return tuple(i for i, (a, b) in enumerate(self.answer_tokens) if a[0] == b[0])

    def require_single_token(self, probe: str) -> None:
        """Raise a clear error when a first-token probe meets multi-token answers, or none."""
        self.require_answers(probe)
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


def prepended(model, prepend_bos: bool | None = None) -> str | None:
    """The token put before every prompt: the model's decision (``ModelInfo.prepended``,
    made by `bos_to_prepend` at load) unless ``prepend_bos`` is True (the tokenizer's
    BOS) or False (nothing)."""
    if prepend_bos is None:
        return model_info(model).prepended
    return model.tokenizer.bos_token if prepend_bos else None


def input_problems(model, prompt_set, rows: list[list[int]], bos: str | None,
                   answer_tokens) -> tuple[type, list[str]] | None:
    """The prompts the model cannot take, as ``(error class, problems)``, or None.
    Multi-token answers are scored by feeding prompt + answer, so they count too."""
    name = name_of(model)
    if empty := [i for i, r in enumerate(rows) if not r]:
        return EmptyPromptError, [
            f"prompt {i} {prompt_set.prompts[i]!r} is 0 tokens and nothing is prepended for "
            f"{name}, so there is no position to read a prediction from; give it text, or "
            "prepend the BOS token (prepend_bos=True, or --prepend-bos yes)" for i in empty]
    limit = int(model.cfg.n_ctx)
    scored_whole = any(len(a) > 1 for pair in answer_tokens for a in pair)
    problems = []
    for i, row in enumerate(rows):
        extra = max(map(len, answer_tokens[i])) if scored_whole else 0
        if len(row) + extra > limit:
            how = (f" with {bos!r} prepended" if bos else "") + (f" and its {extra}-token answer"
                                                                 if extra else "")
            problems.append(
                f"prompt {i} {_short(prompt_set.prompts[i])} is {len(row) + extra} tokens{how}, but "
                f"{name} reads at most {limit} (model.cfg.n_ctx); shorten it by at least "
                f"{len(row) + extra - limit} tokens, keeping its end (the answer is read there)")
    return (PromptTooLongError, problems) if problems else None


def _short(prompt: str) -> str:
    return repr(prompt) if len(prompt) <= 60 else f"{prompt[:28]!r}…{prompt[-28:]!r}"


def tokenize(model, prompt_set, prepend_bos: bool | None = None) -> Tokenized:
    """Tokenize every prompt (with the model's prepended token unless ``prepend_bos``
    says otherwise), check every answer and that the model can take every prompt;
    raise `AnswerTokenError` or a `PromptInputError` listing all problems at once."""
    import torch

    tokenizer, model_name = model.tokenizer, name_of(model)
    bos = prepended(model, prepend_bos)
    multi = bool(getattr(prompt_set, "multi_token", False))
    answers = getattr(prompt_set, "answers", None)
    problems, answer_tokens = [], []
    for i, (prompt, pair) in enumerate(zip(prompt_set.prompts, answers or ())):
        found = [p for a in pair if (p := answer_problem(tokenizer, model_name, i, prompt, a, multi))]
        problems += found
        ids = tuple(tuple(_encode(tokenizer, a)) for a in pair)
        if not found and ids[0] == ids[1]:
            problems.append(f"prompt {i} {prompt[-40:]!r}: answers {pair} are the same tokens "
                            f"{_pieces(tokenizer, ids[0])}; pick answers that differ")
        answer_tokens.append(ids)
    if problems:
        raise AnswerTokenError(prompt_set.name, model_name, problems)

    start = [] if bos is None else [tokenizer.convert_tokens_to_ids(bos)]
    rows = [start + _encode(tokenizer, p) for p in prompt_set.prompts]
    if found := input_problems(model, prompt_set, rows, bos, answer_tokens):
        error, listed = found
        shown = listed[:MAX_LISTED_PROBLEMS]
        more = len(listed) - len(shown)
        raise error(f"PromptSet {prompt_set.name!r} on {model_name}: {len(listed)} prompt(s) the "
                    "model cannot take\n" + "\n".join(f"  - {p}" for p in shown)
                    + (f"\n  … and {more} more" if more > 0 else ""))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(r) for r in rows)
    tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    return Tokenized(
        prompt_set=prompt_set,
        model_name=model_name,
        tokens=tokens,
        lengths=tuple(len(r) for r in rows),
        str_tokens=tuple(tuple(_pieces(tokenizer, r)) for r in rows),
        answer_id_table=None if answers is None else
        torch.tensor([[a[0] for a in pair] for pair in answer_tokens], dtype=torch.long),
        bos=bos,
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
