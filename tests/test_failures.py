"""What a researcher reads in the terminal when a claim fails or an input is wrong."""

import pytest

from circuitcheck.probes import PromptSet, logit_diff

from .test_plugin import run

PAIRS = PromptSet(["When John and Mary went to the shops, John gave the bag to",
                   "When John and Mary went to the shops, Mary gave the bag to"],
                  [(" Mary", " John"), (" John", " Mary")], name="pairs")


def test_assert_all_names_the_rows_that_break_the_condition_first(tiny_llama):
    diff = logit_diff(tiny_llama, PAIRS)
    failing = int(diff.per_prompt.argmin())
    with pytest.raises(AssertionError) as raised:
        diff.assert_all(f"logit_diff > {diff.per_prompt.min() + 1e-6}")
    text = str(raised.value)
    assert text.startswith("'logit_diff > ") and "fails on 1 of 2 rows of LogitDiff(tiny-llama, 'pairs'" in text
    broken, others = text.split("rows that break it:")[1].split("the other rows:")
    assert PAIRS.prompts[failing] in broken and PAIRS.prompts[1 - failing] in others
    diff.assert_all("logit_diff > -1e9")  # holds: no error


def test_a_condition_over_unknown_columns_lists_the_columns(tiny_llama):
    with pytest.raises(ValueError, match="its columns are prompt, correct, incorrect, logit_diff"):
        logit_diff(tiny_llama, PAIRS).assert_all("logit > 0")


FAILING = '''
from circuitcheck import PromptSet, logit_diff

PAIRS = PromptSet(["When John and Mary went to the shops, John gave the bag to",
                   "When Tom and James went to the park, Tom gave the ball to"],
                  [(" Mary", " John"), (" James", " Tom")], name="pairs")

def test_claim(model):
    logit_diff(model, PAIRS).assert_all("logit_diff > 1000")

def test_wrong_answer(model):
    logit_diff(model, PromptSet(["When John and Mary went to the shops, John gave the bag to"],
                                [(" Marigold", " John")]))

def test_a_bug(model):
    logit_diff(model, PAIRS, metric=lambda logits, answers, clean_logits: logits.no_such_attribute)
'''


@pytest.mark.slow
def test_the_terminal_shows_the_rows_and_the_users_line_not_our_source(pytester):
    pytester.makepyfile(test_failing=FAILING)
    result = run(pytester, "--model", "tiny-llama", "--no-report")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    claim = out.split("_ test_claim")[1].split("_ test_wrong_answer")[0]
    assert "When John and Mary went to the shops, John gave the bag to" in claim
    assert "When Tom and James went to the park, Tom gave the ball to" in claim
    assert "truncated" not in claim and "probes/results.py" not in claim
    wrong = out.split("_ test_wrong_answer")[1].split("_ test_a_bug")[0]
    assert "AnswerTokenError" in wrong and "Marigold" in wrong and "logit_diff(model, PromptSet(" in wrong
    assert "probes/tokens.py" not in wrong and "probes/logits.py" not in wrong
    bug = out.split("_ test_a_bug")[1]
    assert "probes/" in bug  # a genuine bug keeps the library frames


PLAIN_ASSERT = '''
from circuitcheck import ioi_prompts, logit_diff

def test_claim(model):
    clean = logit_diff(model, ioi_prompts(4))
    assert model.cfg.n_layers == 2 and (clean.per_prompt > 100).all(), clean
'''


@pytest.mark.slow
def test_a_plain_assert_shows_its_results_whole_and_the_model_in_one_line(pytester):
    pytester.makepyfile(test_plain=PLAIN_ASSERT)
    result = run(pytester, "--model", "tiny-llama", "--no-report")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    section = out.split("circuitcheck: the results this test's claim is about")[1]
    for prompt in ("When John and Mary went to the shops, John gave the bag to",
                   "When Tom and James went to the park, James gave the ball to"):
        assert prompt in section
    assert "model = TransformerBridge(tiny-llama on cpu, float32)" in out and "HookPoint" not in out


def test_loaded_models_print_in_one_line_inside_the_block_only(tiny_llama):
    from circuitcheck.fixtures.loading import one_line_reprs

    with one_line_reprs(tiny_llama):
        assert repr(tiny_llama) == "TransformerBridge(tiny-llama on cpu, float32)"
        assert repr(tiny_llama.cfg).startswith("TransformerBridgeConfig(model_name='tiny-llama', n_layers=2,")
    assert "HookPoint" in repr(tiny_llama)
