"""IOI on the default model: the first steps of the exploratory-analysis workflow.

Indirect object identification (Wang et al. 2022). GPT-2 small reference: mean
logit difference 3.55 over these eight prompts.
"""

import pytest

from fixtures.families import ioi_prompts
from probes import logit_diff, top_k

IOI = ioi_prompts()


def test_prefers_the_indirect_object(model):
    """The model prefers the indirect object to the repeated subject on every prompt (logit diff > 0)."""
    result = logit_diff(model, IOI)
    assert (result.per_prompt > 0).all(), result


def test_corruption_flips_the_answer(model):
    """Repeating the other name flips the sign of the logit difference on every prompt."""
    clean, corrupt = logit_diff(model, IOI), logit_diff(model, IOI.corrupted)
    assert (clean.per_prompt > 0).all(), clean
    assert (corrupt.per_prompt < 0).all(), corrupt


def test_answer_in_top_3(model):
    """The indirect object is among the three most likely next tokens on every prompt."""
    result = top_k(model, IOI, k=5)
    assert result.correct_in_top(3).all(), result


@pytest.mark.models("gpt2")
def test_gpt2_small_reference_logit_diff(model):
    """GPT-2 small's mean IOI logit difference is about 3.55 (Wang et al.; TransformerLens demo)."""
    result = logit_diff(model, IOI)
    assert result.mean == pytest.approx(3.55, abs=0.1), result
