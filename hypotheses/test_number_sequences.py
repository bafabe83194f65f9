"""Number sequences mapped onto the IOI workflow: where does the analogy hold, and where does it break?

"1 2 3 4" → 5 (and counting down, "9 8 7 6" → 5). The corruption moves the last
number one step on ("1 2 3 5"), so a model that continues the sequence flips from
5 to 6: the counterpart of IOI's repeated name. The steps are IOI's: the model
gets the task, the corruption flips it, patching localises, a few heads carry it.
"""

import pytest
from hypothesis import given

from circuitcheck import (PromptSet, corruption_check, counting_prompts, head_attribution,
                          ioi_prompts, patch, strategies, top_k)
from circuitcheck.errors import AnswerTokenError


@pytest.fixture(scope="module")
def counting(model):
    """Counting prompts spaced for this model's tokenizer."""
    return counting_prompts(model)


def test_the_model_counts(model, counting):
    """The next number is the model's top prediction on every prompt, up and down."""
    result = top_k(model, counting)
    assert (result.correct_rank == 1).all(), result


@pytest.mark.models("smollm2-135m")
@pytest.mark.xfail(strict=True, raises=AnswerTokenError, reason=(
    "SmolLM2's tokenizer writes ' 5' as two tokens [' ', '5'], so 'the next number' is not one "
    "token after '1 2 3 4'; the suite ends its prompts with ' ' and uses the bare digit '5'"))
def test_the_spaced_answer_is_one_token(model):
    """' 5' after '1 2 3 4' is a single-token answer, as in GPT-2."""
    top_k(model, PromptSet(["1 2 3 4"], [(" 5", " 6")]))


def test_moving_the_last_number_flips_the_answer(model, counting):
    """Corrupting '1 2 3 4' into '1 2 3 5' makes the model prefer 6 to 5 on every prompt."""
    check = corruption_check(model, counting)
    assert check.flips_all, check


def test_patching_moves_from_the_changed_number_to_the_final_position(model, counting):
    """As in IOI: at the first layer the effect sits at the changed number (recovery > 0.9),
    at the last layer at the final position (recovery > 0.9)."""
    sweep = patch(model, counting, "resid_pre")
    grid, changed = sweep.grid(), len(counting.tokenize(model).str_tokens[0]) - 2
    if counting.prompts[0].endswith(" "):  # digit, then the trailing space token
        assert grid[0, changed] > 0.9, sweep
    assert grid[-1, -1] > 0.9, sweep


@pytest.mark.models("smollm2-135m")
def test_the_ioi_head_l23h3_also_carries_counting_on_smollm2(model, counting):
    """On SmolLM2-135M the head that patching singles out for IOI, L23H3, is also the
    strongest head for counting (recovery above 0.4 for both)."""
    for prompts in (ioi_prompts(), counting):
        heads = patch(model, prompts, "head_out")
        assert heads.top(1)["head"][0] == "L23H3" and heads.top(1)["recovery"][0] > 0.4, heads


@pytest.mark.fails_on("smollm2-135m", reason=(
    "the analogy breaks here: for counting the direct effect is spread over many heads (top-5 "
    "share ≈0.35, against ≈0.72 for IOI), even though patching still singles out L23H3"))
def test_a_handful_of_heads_carry_the_direct_effect_as_in_ioi(model, counting):
    """Head attribution: the top 5 heads carry more than half of the total absolute direct
    effect, as they do for IOI."""
    heads = head_attribution(model, counting)
    assert heads.share_of_top(5) > 0.5, heads


@given(prompts=strategies.counting_prompt_sets(apart=True))
@pytest.mark.models("smollm2-135m")
def test_counts_from_any_start_on_smollm2(model, prompts):
    """For any run of four single digits counting up or down by one, the next number is
    SmolLM2's top prediction (prompts spaced for its tokenizer)."""
    result = top_k(model, prompts)
    assert result.correct_rank[0] == 1, result
