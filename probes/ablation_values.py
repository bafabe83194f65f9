"""Ablation values: what an ablated activation is replaced with.

* ``zero``: 0. Simple, but no prompt ever puts 0 there: the model is pushed off its
  distribution, and a large effect may say more about that than about the site.
* ``mean``: the activation's mean over a *reference* prompt set, at the same position
  (the IOI paper's mean ablation over its "ABC" set, in which the three names differ).
* ``resample``: the activation on a reference prompt drawn at random for each prompt
  (seeded), as in causal scrubbing.

Mean and resample ablation read the reference at the prompts' own positions, so the
reference must tokenize to the same width: a set made from the same template. Every probe
that ablates (`ablate`, the circuit criteria, `compensation`) takes ``ablation=`` and
``reference=`` and gets its values here, from one pass over the reference.
"""

from dataclasses import dataclass

import torch

from .forward import check_finite, input_device, memo
from .input_errors import check_count
from .patch_runs import final_logits_with

ABLATIONS = ("mean", "resample", "zero")


def check_ablation(ablation: str, seed: int = 0) -> int:
    """The seed, checked, if ``ablation`` is one we know; otherwise a ValueError naming them."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation {ablation!r}: choose one of {', '.join(ABLATIONS)}")
    return check_count("seed", seed, 0, "a seed is a whole number from 0 up, e.g. seed=0")


@dataclass(frozen=True)
class AblationValues:
    """``values``: hook name → replacement, prompt × …, on the reference's device (empty for
    ``zero``: replace with 0). ``reference_logits``: the final-position logits of the reference
    pass when the reference is the prompts themselves (so the caller need not run them again)."""

    ablation: str
    reference: str  # the reference set's name, or "zero"
    seed: int | None
    values: dict
    reference_logits: torch.Tensor | None = None

    def of(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The replacement for hook ``name``, shaped, typed and placed like ``like``."""
        if self.ablation == "zero":
            return torch.zeros_like(like)
        return self.values[name].to(like.device, like.dtype)


def reference_pass(model, tokenized, names) -> tuple[dict, torch.Tensor]:
    """The activations at hook points ``names`` for ``tokenized`` and its final-position logits
    (CPU), from one pass that unembeds only the final positions."""
    kept = {}

    def keep(name):  # a hook point answers to several names: keep the one asked for
        def hook(activation, hook):
            kept[name] = activation.clone()
            return activation
        return hook

    device = input_device(model)
    logits = final_logits_with(model, tokenized.tokens.to(device), tokenized.final_positions.to(device),
                               [(name, keep(name)) for name in names]).cpu()
    check_finite(logits, tokenized)
    return kept, logits


def ablation_values(model, prompts, names, ablation: str = "mean", reference=None, seed: int = 0,
                    prepend_bos: bool | None = None) -> AblationValues:
    """The replacement at each hook point in ``names`` for each of ``prompts``: see the module."""
    seed = check_ablation(ablation, seed)
    if ablation == "zero":
        return AblationValues("zero", "zero", None, {})
    tokenized = prompts.tokenize(model, prepend_bos)
    reference = reference if reference is not None else prompts
    ref = reference.tokenize(model, prepend_bos)
    width = tokenized.tokens.shape[1]
    if ref.tokens.shape[1] != width:
        raise ValueError(
            f"{ablation} ablation reads the reference at the same positions as the prompts, but "
            f"reference {reference.name!r} is {ref.tokens.shape[1]} tokens wide "
            f"({list(ref.str_tokens[0])}) and {prompts.name!r} is {width} "
            f"({list(tokenized.str_tokens[0])}); use a reference set made from the same "
            "template (for IOI: ioi_abc_prompts(n)), so each position holds the same kind of token")
    names = tuple(dict.fromkeys(names))
    cache, ref_logits = memo(model, ("ablation reference", ref.key, names), lambda: reference_pass(model, ref, names))
    n = len(tokenized.lengths)
    draw = torch.randint(len(ref.lengths), (n,), generator=torch.Generator().manual_seed(seed))
    values = {name: cache[name].mean(0, keepdim=True).expand(n, *cache[name].shape[1:]) if ablation == "mean"
              else cache[name][draw.to(cache[name].device)] for name in names}
    return AblationValues(ablation, reference.name, seed, values, ref_logits if ref.key == tokenized.key else None)
