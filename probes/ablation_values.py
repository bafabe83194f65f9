"""Ablation values: what an ablated activation is replaced with.

* ``zero``: 0. Simple, but no prompt ever puts 0 there: the model is pushed off its
  distribution, and a large effect may say more about that than about the site.
* ``mean``: the activation's mean over a *reference* prompt set, at the same position
  (the IOI paper's mean ablation over its "ABC" set, in which the three names differ).
* ``resample``: the activation on a reference prompt drawn at random for each prompt
  (seeded), as in causal scrubbing.
* ``patching`` (counterfactual ablation; node circuits and edge circuits only): the
  activation on the prompt's own corrupted twin (the PromptSet's ``corrupted_prompts``) at
  the same position, as in EAP, ACDC and MIB. No reference: the corrupted prompts are it,
  and each must tokenize to its clean prompt's length (`MissingCorruptedPromptsError` when
  the set has none).

Mean and resample ablation read the reference at the prompts' own positions, so the
reference must tokenize to the same width: a set made from the same template. Every probe
that ablates (`ablate`, the circuit criteria, `compensation`) takes ``ablation=`` and
``reference=`` and gets its values here, from one pass over the reference
(``ablation="patching"``: the circuit criteria, `CIRCUIT_ABLATIONS`).

Edge circuits (`probes.edges.setup`) replace a sender's output, not a hook point's
activation, but take the same choices, the same reference check (`reference_tokens`) and
the same mean and draw (`replacement`, `resample_rows`) from here: with the same seed, node
and edge resample ablation give each prompt the same reference prompt.
"""

from dataclasses import dataclass

import torch

from .forward import check_finite, final_logits_with, input_device
from .input_errors import check_count
from .model_state import memo
from .tokens import tokenize_pair

ABLATIONS = ("mean", "resample", "zero")
COUNTERFACTUAL = "patching"  # the corrupted twin's activation: the name edge circuits use too
CIRCUIT_ABLATIONS = (COUNTERFACTUAL, *ABLATIONS)  # what the circuit criteria take


class MissingCorruptedPromptsError(ValueError):
    """Counterfactual ablation (``ablation="patching"``) met a PromptSet without corrupted prompts."""


def check_ablation(ablation: str, seed: int = 0, allowed: tuple = ABLATIONS) -> int:
    """The seed, checked, if ``ablation`` is one of ``allowed``; otherwise a ValueError naming them."""
    if ablation not in allowed:
        raise ValueError(f"ablation {ablation!r}: choose one of {', '.join(allowed)}"
                         + (" ('patching': the corrupted prompts' activations)" if COUNTERFACTUAL in allowed else ""))
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


def resample_rows(n_reference: int, n: int, seed: int) -> torch.Tensor:
    """Resample ablation's draw: for each of ``n`` prompts, the reference prompt (row) whose
    activations replace its own, uniform with replacement from ``seed``. Node probes and edge
    senders both draw here, so one seed gives both the same rows."""
    return torch.randint(n_reference, (n,), generator=torch.Generator().manual_seed(seed))


def replacement(ablation: str, reference_acts: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """What ``n`` prompts' activations become, from the reference's (reference × pos × …):
    ``mean``, their mean over the reference at each position, the same for every prompt;
    ``resample``, each prompt's drawn reference row (`resample_rows`)."""
    if ablation == "mean":
        return reference_acts.mean(0, keepdim=True).expand(n, *reference_acts.shape[1:])
    return reference_acts[resample_rows(len(reference_acts), n, seed).to(reference_acts.device)]


def reference_tokens(model, prompts, tokenized, ablation: str, reference=None, prepend_bos: bool | None = None):
    """``(reference set, its Tokenized)`` for mean or resample ablation of ``prompts`` (tokenized
    as ``tokenized``): the reference defaults to the prompts, and must be as wide, since it is
    read at the prompts' own positions."""
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
    return reference, ref


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
    seed = check_ablation(ablation, seed, CIRCUIT_ABLATIONS)
    if ablation == "zero":
        return AblationValues("zero", "zero", None, {})
    if ablation == COUNTERFACTUAL:
        return counterfactual_values(model, prompts, names, reference, prepend_bos)
    tokenized = prompts.tokenize(model, prepend_bos)
    reference, ref = reference_tokens(model, prompts, tokenized, ablation, reference, prepend_bos)
    names = tuple(dict.fromkeys(names))
    cache, ref_logits = memo(model, ("ablation reference", ref.key, names), lambda: reference_pass(model, ref, names))
    n = len(tokenized.lengths)
    values = {name: replacement(ablation, cache[name], n, seed) for name in names}
    return AblationValues(ablation, reference.name, seed, values, ref_logits if ref.key == tokenized.key else None)


def counterfactual_values(model, prompts, names, reference=None, prepend_bos: bool | None = None) -> AblationValues:
    """Each hook point's activation on each prompt's corrupted twin (``prompts.corrupted_prompts``),
    position by position: counterfactual ablation (``ablation="patching"``)."""
    check_counterfactual(prompts, reference)
    _, corrupted = tokenize_pair(model, prompts, prepend_bos)  # one length per clean/corrupted pair
    names = tuple(dict.fromkeys(names))
    cache, _ = memo(model, ("ablation reference", corrupted.key, names),
                    lambda: reference_pass(model, corrupted, names))
    return AblationValues(COUNTERFACTUAL, prompts.corrupted.name, None, dict(cache))


def check_counterfactual(prompts, reference=None) -> None:
    """A clear error, before any pass, when counterfactual ablation cannot run on ``prompts``."""
    if reference is not None:
        raise ValueError("reference= is read by mean and resample ablation; with ablation='patching' the "
                         "replacement is the prompt set's own corrupted prompts, each at its clean prompt's "
                         "positions")
    if prompts.corrupted_prompts is None:
        raise MissingCorruptedPromptsError(
            f"ablation='patching' replaces each component outside the circuit with its activation on the "
            f"corrupted prompt, but PromptSet {prompts.name!r} has no corrupted prompts; give it "
            "corrupted_prompts=[...] (one per prompt, the same number of tokens) or corrupted_template=..., "
            "or choose mean, resample or zero ablation")
