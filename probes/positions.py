"""Named positions: "S2", "IO", "end", "S1+1", resolved to each prompt's own token index.

Circuit analysis talks about positions by role, not by number: the IOI paper's duplicate-token
heads act at S2 (the subject's second mention), previous-token heads at S1+1, name movers at
END. A prompt set *marks* such roles as character offsets into each prompt (`PromptSet.marks`,
filled in by `PromptSet.from_template` for every template field); a role becomes a token index
per prompt by asking the tokenizer which token holds the marked character (its offset mapping,
the tool fast tokenizers give for exactly this), plus one if a BOS token is prepended. Because
the lookup is per prompt, prompts whose roles sit at different token indices are handled.

``"end"`` is every set's last real token; ``"name+k"`` / ``"name-k"`` shift a role by k tokens.
"""

import re
from string import Formatter

END = "end"
_SHIFTED = re.compile(r"^(?P<base>.+?)\s*(?P<shift>[+-]\s*\d+)$")


def split_shift(name: str) -> tuple[str, int]:
    """``"S1+1"`` → ``("S1", 1)``; ``"end"`` → ``("end", 0)``."""
    name = str(name).strip()
    match = _SHIFTED.match(name)
    if match:
        return match["base"].strip(), int(match["shift"].replace(" ", ""))
    return name, 0


def template_marks(template: str, filler: dict) -> dict[str, int]:
    """Where each field of ``template`` lands in ``template.format(**filler)``: field name →
    character offset of its value's first character. A field used more than once is also
    marked per occurrence, ``{name}1``, ``{name}2``, … (so a template writing ``{S}`` twice
    marks S1 and S2)."""
    marks, seen, text = {}, {}, ""
    for literal, field_name, spec, conversion in Formatter().parse(template):
        text += literal
        if field_name is None:
            continue
        value = ("{" + field_name + (f"!{conversion}" if conversion else "")
                 + (f":{spec}" if spec else "") + "}").format(**filler)
        seen.setdefault(field_name, []).append(len(text))
        text += value
    for field_name, offsets in seen.items():
        marks[field_name] = offsets[0]
        if len(offsets) > 1:
            marks.update({f"{field_name}{k}": offset for k, offset in enumerate(offsets, 1)})
    return marks


def check_marks(prompt_set_name: str, prompts, marks) -> tuple[dict, ...]:
    """``marks`` as a tuple of dicts, one per prompt, each name → an offset inside its prompt."""
    marks = tuple(dict(m) for m in marks)
    if len(marks) != len(prompts):
        raise ValueError(f"PromptSet {prompt_set_name!r}: {len(prompts)} prompts but {len(marks)} marks; give "
                         "one dict per prompt, e.g. marks=[{'S2': 37}, ...] (character offsets)")
    for i, (prompt, marked) in enumerate(zip(prompts, marks)):
        for name, offset in marked.items():
            if not isinstance(name, str) or split_shift(name) != (name, 0) or name == END:
                raise ValueError(f"PromptSet {prompt_set_name!r}, prompt {i}: mark name {name!r} cannot be "
                                 f"used; name marks with words such as 'S2' (not {END!r}, not ending in +k/-k)")
            if not isinstance(offset, int) or not 0 <= offset < len(prompt):
                raise ValueError(f"PromptSet {prompt_set_name!r}, prompt {i} {prompt!r}: mark {name!r} is "
                                 f"{offset!r}, not a character offset inside the prompt (0–{len(prompt) - 1})")
    return marks


def _token_starts(tokenizer, prompt: str) -> list[tuple[int, int]]:
    """Each token's (start, end) character span in ``prompt`` (no special tokens)."""
    if getattr(tokenizer, "is_fast", False):
        return list(tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])
    # A slow tokenizer has no offset mapping: the length of the decoded prefix after each token.
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    ends = [len(tokenizer.decode(ids[:k + 1])) for k in range(len(ids))]
    return list(zip([0] + ends[:-1], ends))


def token_index(tokenizer, prompt: str, offset: int) -> int:
    """The index (no BOS) of the token of ``prompt`` that holds character ``offset``."""
    spans = _token_starts(tokenizer, prompt)
    for k, (start, end) in enumerate(spans):
        if start <= offset < end:
            return k
    # a character some tokenizers leave out of every span (a leading space): the next token
    return next(k for k, (start, _) in enumerate(spans) if start > offset)


def known_names(prompt_set) -> list[str]:
    """The names every prompt of the set marks, and ``end``."""
    marks = getattr(prompt_set, "marks", ()) or ()
    common = set(marks[0]).intersection(*marks[1:]) if marks else set()
    return sorted(common) + [END]


def resolve(tokenizer, tokenized, name: str) -> list[int]:
    """Each prompt's token index (BOS counted) of the named position ``name`` (see the module
    docstring); a clear error naming the prompt and the fix when a prompt cannot resolve it."""
    prompt_set = tokenized.prompt_set
    base, shift = split_shift(name)
    marks = getattr(prompt_set, "marks", ()) or ()
    out = []
    for i, prompt in enumerate(prompt_set.prompts):
        if base == END:
            index = tokenized.lengths[i] - 1
        elif marks and base in marks[i]:
            index = token_index(tokenizer, prompt, marks[i][base]) + (tokenized.bos is not None)
        else:
            listed = ", ".join(known_names(prompt_set))
            how = (f"prompt {i} {prompt!r} marks no {base!r}" if marks
                   else f"it marks no positions, so prompt {i} {prompt!r} has no {base!r}")
            raise ValueError(
                f"position {name!r} in PromptSet {prompt_set.name!r}: {how}; named positions there: "
                f"{listed} (shift one with +k/-k: 'S1+1'). Use one of them, give token indices "
                "([3, 10], BOS counted), or mark it per prompt: PromptSet(..., marks=[{"
                f"{base!r}: <character offset>}}, ...]) (PromptSet.from_template marks every template field)")
        index += shift
        if not 0 <= index < tokenized.lengths[i]:
            raise ValueError(f"position {name!r} in PromptSet {prompt_set.name!r}: prompt {i} {prompt!r} has "
                             f"tokens 0–{tokenized.lengths[i] - 1} (BOS counted), and {name!r} would be token "
                             f"{index}; use a smaller shift")
        out.append(index)
    return out
