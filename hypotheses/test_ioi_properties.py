"""IOI as properties over generated prompts (Hypothesis): claims for every name pair, not
eight hand-picked ones. A failing property is reported with the most natural prompt that
still fails (pools are ordered canonical → exotic, and Hypothesis shrinks towards the start).
"""

import pytest
from hypothesis import example, given

from circuitcheck import logit_diff, strategies


@given(prompts=strategies.ioi_prompt_sets())
def test_prefers_the_indirect_object_for_any_names(model, prompts):
    """For any two names, place and object, the model prefers the indirect object."""
    result = logit_diff(model, prompts)
    assert result.per_prompt[0] > 0, result


@given(prompts=strategies.ioi_prompt_sets())
@example(prompts=strategies.ioi_prompt("Kate", "Anne"))
def test_corruption_flips_for_any_names(model, prompts):
    """For any two names, repeating the indirect object instead of the subject flips the answer.

    Kate/Anne is kept as an explicit example: with SmolLM2's prompts read after
    `<|im_start|>` (the default before nothing was prepended) the corruption left the model
    preferring Kate (+0.35); read as Hugging Face reads them, it flips."""
    assert logit_diff(model, prompts.corrupted).per_prompt[0] < 0


@pytest.mark.xfail(strict=True, reason=(
    "deliberately false, to show a shrunk counterexample: the margin is not above 6 logits for "
    "every name pair; the details show the most ordinary prompt where it is not"))
@given(prompts=strategies.ioi_prompt_sets())
def test_margin_exceeds_six_logits_for_any_names(model, prompts):
    """The logit difference exceeds 6 for every name pair (false on purpose)."""
    result = logit_diff(model, prompts)
    assert result.per_prompt[0] > 6, f"{prompts.prompts[0]!r}: logit difference {result.per_prompt[0]:.2f}"
