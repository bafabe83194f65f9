"""Prompt sets: prompts with a (correct, incorrect) answer each, and their corrupted twins.

The logit difference ``logit(correct) - logit(incorrect)`` at the final position
is the workhorse metric of circuit analysis (Wang et al. 2022): it cancels
everything the two answers share and isolates the decision. It needs each answer
to be exactly one token for the model at hand, which tokenizers make easy to get
wrong, so `tokenize` checks every answer and explains each problem it finds.
"""

import hashlib
from dataclasses import dataclass, field
from string import Formatter

from .positions import check_marks, resolve, template_marks
from .tokens import AnswerTokenError, Tokenized, tokenize


def index_label(indices, longest: int = 48) -> str:
    """Indices as a short label that tells any two lists apart: runs of three or more
    consecutive indices become ranges, ``[0-3, 7]`` (order and repeats are kept); a label
    longer than ``longest`` characters keeps its ends and adds the count and a hash of the
    whole list, ``[0, 2, 4, …, 96, 98: 50 prompts #1c9f0e]``."""
    indices = [int(i) for i in indices]
    parts, start = [], 0
    for end in range(1, len(indices) + 1):
        if end == len(indices) or indices[end] != indices[end - 1] + 1:
            run = indices[start:end]
            parts += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(i) for i in run]
            start = end
    label = ", ".join(parts)
    if len(label) + 2 <= longest:
        return f"[{label}]"
    digest = hashlib.sha1(",".join(map(str, indices)).encode()).hexdigest()[:6]
    return f"[{', '.join(parts[:3])}, …, {', '.join(parts[-2:])}: {len(indices)} prompts #{digest}]"


@dataclass(frozen=True)
class PromptSet:
    """Prompts, one ``(correct, incorrect)`` answer pair per prompt, optional corrupted prompts.

    ``answers`` may be left out (None) for probes that need none: `top_k` then gives
    the top tokens without ranks, and ``token_lens(..., " Paris")`` follows one
    token; probes that compare answers (logit_diff, attribution, patching) refuse it.
    Answers must be one token each unless ``multi_token=True``; then `logit_diff`
    scores each answer by the summed log-probabilities of its tokens (teacher
    forcing), and first-token probes (top_k, lens, attribution) refuse the set.
    ``marks`` names positions by role, one dict per prompt of name → character offset
    (``{"S2": 37}``: the token holding character 37); `from_template` marks every field, and
    circuits read them (``Circuit(..., positions={"L9H6": "S2"})``, see `probes.positions`).

    >>> ioi = PromptSet(["When John and Mary went to the shops, John gave the bag to"],
    ...                 [(" Mary", " John")],
    ...                 corrupted_prompts=["When John and Mary went to the shops, Mary gave the bag to"])
    >>> ioi.corrupted.prompts[0][-20:]
    'Mary gave the bag to'
    """

    prompts: tuple[str, ...]
    answers: tuple[tuple[str, str], ...] | None = None
    corrupted_prompts: tuple[str, ...] | None = None
    name: str = "prompts"
    multi_token: bool = False
    fillers: tuple[dict, ...] = field(default=(), compare=False, repr=False)
    marks: tuple[dict, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        prompts = (self.prompts,) if isinstance(self.prompts, str) else tuple(self.prompts)
        answers = None if self.answers is None else tuple(tuple(pair) for pair in self.answers)
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "answers", answers)
        if not prompts:
            raise ValueError(f"PromptSet {self.name!r} has no prompts")
        if answers is not None and len(answers) != len(prompts):
            raise ValueError(f"PromptSet {self.name!r}: {len(prompts)} prompts but "
                             f"{len(answers)} answer pairs; give one (correct, incorrect) per prompt")
        for i, pair in enumerate(answers or ()):
            if len(pair) != 2 or not all(isinstance(a, str) and a for a in pair):
                raise ValueError(f"PromptSet {self.name!r}, prompt {i} {prompts[i]!r}: answers "
                                 f"must be a (correct, incorrect) pair of strings, got {pair!r}")
        if self.corrupted_prompts is not None:
            corrupted = tuple(self.corrupted_prompts)
            object.__setattr__(self, "corrupted_prompts", corrupted)
            if len(corrupted) != len(prompts):
                raise ValueError(f"PromptSet {self.name!r}: {len(prompts)} prompts but "
                                 f"{len(corrupted)} corrupted prompts; give one per prompt")
        if self.marks:
            object.__setattr__(self, "marks", check_marks(self.name, prompts, self.marks))

    @classmethod
    def from_template(cls, template: str, fillers, answers: tuple[str, str] | None = None,
                      corrupted_template: str | None = None, name: str = "prompts",
                      multi_token: bool = False) -> "PromptSet":
        """One prompt per filler dict: ``template.format(**filler)``; answers and the
        corrupted template are formatted with the same filler. Each field is marked where its
        value starts (``marks``; a field used twice also as ``S1``, ``S2``).

        >>> s = PromptSet.from_template("When {IO} and {S} went out, {S} gave it to",
        ...     [{"IO": "Mary", "S": "John"}], answers=(" {IO}", " {S}"),
        ...     corrupted_template="When {IO} and {S} went out, {IO} gave it to")
        >>> s.prompts[0], s.answers[0]
        ('When Mary and John went out, John gave it to', (' Mary', ' John'))
        >>> s.marks[0]["S2"], s.prompts[0][29:]
        (29, 'John gave it to')
        """
        fillers = tuple(dict(f) for f in fillers)
        wanted = {f for _, f, _, _ in Formatter().parse(template) if f}
        for filler in fillers:
            if missing := wanted - filler.keys():
                raise ValueError(f"template {template!r} needs {sorted(missing)}; "
                                 f"filler {filler} does not give them")
        return cls(
            prompts=[template.format(**f) for f in fillers],
            answers=None if answers is None
            else [(answers[0].format(**f), answers[1].format(**f)) for f in fillers],
            corrupted_prompts=None if corrupted_template is None
            else [corrupted_template.format(**f) for f in fillers],
            name=name,
            multi_token=multi_token,
            fillers=fillers,
            marks=[template_marks(template, f) for f in fillers],
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices, name: str | None = None) -> "PromptSet":
        """The prompts at ``indices`` (with their answers and corrupted twins), named by them:
        ``ioi.subset([0, 1, 2, 3, 7]).name == "IOI [0-3, 7]"``."""
        indices = [int(i) for i in indices]
        pick = lambda items: None if items is None else [items[i] for i in indices]  # noqa: E731
        return PromptSet(pick(self.prompts), pick(self.answers), pick(self.corrupted_prompts),
                         name or f"{self.name} {index_label(indices)}", self.multi_token,
                         tuple(pick(list(self.fillers))) if self.fillers else (),
                         tuple(pick(list(self.marks))) if self.marks else ())

    @property
    def corrupted(self) -> "PromptSet":
        """The corrupted prompts with the same answers: a good corruption flips the answer."""
        if self.corrupted_prompts is None:
            raise ValueError(f"PromptSet {self.name!r} has no corrupted prompts; pass "
                             "corrupted_prompts=[...] or corrupted_template=...")
        return PromptSet(self.corrupted_prompts, self.answers, None, f"{self.name} (corrupted)",
                         self.multi_token, self.fillers)

    def tokenize(self, model, prepend_bos: bool | None = None) -> Tokenized:
        """Tokens, lengths and answer ids for ``model``; see `probes.tokens.tokenize`."""
        return tokenize(model, self, prepend_bos)

    def token_positions(self, model, name: str, prepend_bos: bool | None = None) -> list[int]:
        """Each prompt's token index (BOS counted) of the named position ``name``: ``"end"``,
        a mark (``"S2"``) or either shifted (``"S1+1"``); see `probes.positions`."""
        return resolve(model.tokenizer, self.tokenize(model, prepend_bos), name)


def require_prompt_set(prompts, probe: str = "this probe", argument: str = "prompts") -> PromptSet:
    """``prompts`` when it is a PromptSet; otherwise a ValueError saying how to make one: the one
    check of a probe's prompts argument (a plain list of strings has no answers to score)."""
    if isinstance(prompts, PromptSet):
        return prompts
    strings = isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts)
    name = type(prompts).__name__
    given = ("None" if prompts is None else f"{'an' if name[0] in 'AEIOUaeiou' else 'a'} {name}"
             + (f" of {len(prompts)} strings" if strings else ""))
    raise ValueError(f"{probe} takes {argument} as a PromptSet, not {given}; wrap them with their answers (and, "
                     "to patch, their corrupted twins): PromptSet([...], answers=[(' Mary', ' John'), ...], "
                     "corrupted_prompts=[...])")


__all__ = ["AnswerTokenError", "PromptSet"]
