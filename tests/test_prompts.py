"""PromptSet construction and the tokenisation checks, on the tiny models' tokenizer."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import AnswerTokenError, PromptSet, tokenize

IOI = "When John and Mary went to the shops, John gave the bag to"


def test_from_template_fills_prompts_answers_and_corruption():
    s = PromptSet.from_template(
        "When {IO} and {S} went to the {place}, {S} gave it to",
        [{"IO": "Mary", "S": "John", "place": "park"}, {"IO": "Tom", "S": "Anne", "place": "shops"}],
        answers=(" {IO}", " {S}"), corrupted_template="When {IO} and {S} went to the {place}, {IO} gave it to",
        name="ioi")
    assert s.prompts[1] == "When Tom and Anne went to the shops, Anne gave it to"
    assert s.answers == ((" Mary", " John"), (" Tom", " Anne"))
    assert s.corrupted.prompts[0] == "When Mary and John went to the park, Mary gave it to"
    assert s.corrupted.answers == s.answers and s.corrupted.name == "ioi (corrupted)"


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=[], answers=[]), "no prompts"),
    (dict(prompts=["a", "b"], answers=[(" x", " y")]), "2 prompts but 1 answer pairs"),
    (dict(prompts=["a"], answers=[(" x",)]), "must be a .correct, incorrect. pair"),
    (dict(prompts=["a"], answers=[(" x", " y")], corrupted_prompts=["b", "c"]), "1 prompts but 2 corrupted"),
])
def test_prompt_set_rejects_inconsistent_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptSet(**kwargs)


def test_template_names_the_missing_filler():
    with pytest.raises(ValueError, match=r"needs \['S'\]"):
        PromptSet.from_template("{IO} and {S}", [{"IO": "Mary"}], answers=(" {IO}", " x"))


def test_corrupted_needs_corrupted_prompts():
    with pytest.raises(ValueError, match="has no corrupted prompts"):
        PromptSet([IOI], [(" Mary", " John")]).corrupted


def test_tokenize_pads_right_and_keeps_each_prompts_answer_position(tiny_llama):
    s = PromptSet([IOI, "Then Tom gave the ball to"], [(" Mary", " John"), (" Anne", " Tom")])
    t = tokenize(tiny_llama, s)
    assert t.bos == "<|endoftext|>" and t.str_tokens[0][0] == "<|endoftext|>"
    assert t.lengths[0] > t.lengths[1] and t.tokens.shape == (2, t.lengths[0])
    assert t.str_tokens[1][-1] == " to" and t.final_positions.tolist() == [t.lengths[0] - 1, t.lengths[1] - 1]
    assert t.answer_ids.tolist() == [[tiny_llama.tokenizer.encode(a, add_special_tokens=False)[0] for a in pair] for pair in s.answers]
    assert tokenize(tiny_llama, s, prepend_bos=False).lengths == tuple(n - 1 for n in t.lengths)


def problems(model, prompt, *answers):
    with pytest.raises(AnswerTokenError) as error:
        tokenize(model, PromptSet([prompt], [answers]))
    return str(error.value)


def test_multi_token_answer_names_prompt_tokens_and_fix(tiny_llama):
    message = problems(tiny_llama, IOI, " Zebedee", " John")
    assert "prompt 0" in message and "' Zebedee'" in message
    assert "is 6 tokens [' ', 'Z', 'e', 'bed', 'e', 'e'] for tiny-llama" in message
    assert "one token" in message


def test_missing_leading_space_suggests_the_spaced_answer(tiny_llama):
    message = problems(tiny_llama, IOI, "Mary", " John")
    assert "no leading space" in message and "use ' Mary'" in message


def test_trailing_space_the_tokenizer_would_merge(tiny_llama):
    # The tiny tokenizer, like GPT-2's, writes " 5" as one token: a prompt ending in
    # a space followed by "5" is text the model never sees.
    message = problems(tiny_llama, "0 1 2 3 4 ", "5", "6")
    assert "would read the end of prompt + answer as [' 5']" in message
    assert "drop the prompt's trailing space and use ' 5'" in message


def test_answers_sharing_a_token_and_all_problems_listed_at_once(tiny_llama):
    same = problems(tiny_llama, IOI, " Mary", " Mary")
    assert "are the same token" in same
    message = str(pytest.raises(AnswerTokenError, tokenize, tiny_llama,
                                PromptSet([IOI, IOI], [("Mary", " John"), (" Mary", "John")])).value)
    assert "2 answer problem(s)" in message and "prompt 0" in message and "prompt 1" in message


def test_tokenized_tokens_are_long_tensors(tiny_gpt2):
    t = tokenize(tiny_gpt2, PromptSet([IOI], [(" Mary", " John")]))
    assert t.tokens.dtype == torch.long and t.answer_ids.shape == (1, 2)


def test_multi_token_answers_are_scored_by_summed_log_probabilities(tiny_llama):
    import numpy as np

    from circuitcheck.probes import logit_diff, top_k
    from circuitcheck.probes.forward import answer_logprobs

    s = PromptSet([IOI, IOI], [(" Zebedee", " John"), (" Mary", " John")], multi_token=True)
    result = logit_diff(tiny_llama, s)
    assert result.scoring == "summed log-prob" and "teacher forcing" in " ".join(result.notes())
    # teacher forcing by hand: log P(' ', 'Z', ...) token by token, one prompt alone
    ids = tiny_llama.tokenizer.encode(" Zebedee", add_special_tokens=False)
    prompt = tiny_llama.to_tokens(IOI)[0].tolist()
    with torch.inference_mode():
        logprobs = tiny_llama(torch.tensor([prompt + ids])).log_softmax(-1)[0]
    expected = sum(logprobs[len(prompt) - 1 + k, t].item() for k, t in enumerate(ids))
    assert result.correct_logprob[0] == pytest.approx(expected, abs=1e-4)
    assert result.correct_logit is None and "correct_logit" not in result.df
    assert "correct_logprob" in result.df and "not a logit difference" in " ".join(result.notes())
    # for one-token answers the summed log-prob difference is the logit difference
    single = logit_diff(tiny_llama, PromptSet([IOI], [(" Mary", " John")]))
    scores = answer_logprobs(tiny_llama, tokenize(tiny_llama, s))
    assert (scores[1, 0] - scores[1, 1]).item() == pytest.approx(single.per_prompt[0], abs=1e-4)
    with pytest.raises(ValueError, match="top_k reads one answer token per prompt, but prompt 0"):
        top_k(tiny_llama, s)
    assert np.isfinite(result.per_prompt).all()


def test_multi_token_answers_sharing_a_first_token_are_noted(tiny_llama):
    from circuitcheck.probes import logit_diff

    result = logit_diff(tiny_llama, PromptSet([IOI, IOI], [(" Mary", " Maryland"), (" Mary", " John")],
                                              multi_token=True))
    assert result.shared_first_token == (0,)
    assert any("prompts [0]: both answers start with the same token" in n for n in result.notes())


def test_clean_and_corrupted_prompts_of_different_lengths_show_both_token_lists(tiny_llama):
    from circuitcheck.probes import PromptLengthError, tokenize_pair

    s = PromptSet([IOI, "Then Tom gave the ball to"], [(" Mary", " John"), (" Anne", " Tom")],
                  corrupted_prompts=["When John and Mary went to the shops, Mary gave the bag to",
                                     "Then Zebedee gave the ball to"])
    with pytest.raises(PromptLengthError) as error:
        tokenize_pair(tiny_llama, s)
    message = str(error.value)
    assert "1 clean/corrupted pair(s) differ in token length" in message
    assert "prompt 1: clean 'Then Tom gave the ball to' is 8 tokens" in message
    assert "' Tom'" in message and "'Z'" in message and "prompt 0" not in message
    clean, corrupted = tokenize_pair(tiny_llama, PromptSet([IOI], [(" Mary", " John")],
                                                           corrupted_prompts=[s.corrupted_prompts[0]]))
    assert clean.lengths == corrupted.lengths


# --- what goes before the prompt (BOS) -------------------------------------------------

def tiny_tokenizer(**kwargs):
    from transformers import AutoTokenizer

    from circuitcheck.fixtures.tiny import TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), **kwargs)


def test_bos_to_prepend_follows_what_the_tokenizer_itself_does():
    from circuitcheck.probes.tokens import bos_to_prepend

    # the bundled tiny tokenizer: bos == eos == '<|endoftext|>', GPT-2's document separator
    assert bos_to_prepend(tiny_tokenizer()) == "<|endoftext|>"
    # a Llama-2-style tokenizer that adds its BOS by itself
    assert bos_to_prepend(tiny_tokenizer(bos_token="<s>", eos_token="</s>", add_bos_token=True)) == "<s>"
    # a chat-template BOS the tokenizer never adds (SmolLM2's <|im_start|>): nothing
    assert bos_to_prepend(tiny_tokenizer(bos_token="<|im_start|>", eos_token="<|im_end|>")) is None


def test_tiny_models_prepend_the_document_separator_and_the_option_overrides_it(tiny_llama, tiny_gpt2):
    from circuitcheck.fixtures import load_model
    from circuitcheck.probes.model_state import model_info

    s = PromptSet([IOI], [(" Mary", " John")])
    for model in (tiny_llama, tiny_gpt2):
        assert model_info(model).prepended == "<|endoftext|>"
        assert tokenize(model, s).str_tokens[0][0] == "<|endoftext|>"
    bare = load_model("tiny-llama", "cpu", prepend_bos="no")
    assert model_info(bare).prepended is None
    t = tokenize(bare, s)
    assert t.bos is None and t.str_tokens[0][0] == "When"
    assert tokenize(bare, s, prepend_bos=True).str_tokens[0][0] == "<|endoftext|>"
    with pytest.raises(ValueError, match="prepend_bos 'maybe': choose one of auto, yes, no"):
        load_model("tiny-llama", "cpu", prepend_bos="maybe")


# --- prompts the model cannot take -------------------------------------------------------

def test_an_empty_prompt_with_nothing_prepended_is_a_named_error(tiny_llama):
    from circuitcheck.probes import logit_diff
    from circuitcheck.probes.tokens import EmptyPromptError

    s = PromptSet([IOI, ""], [(" Mary", " John"), (" Mary", " John")], name="with an empty one")
    with pytest.raises(EmptyPromptError) as error:
        logit_diff(tiny_llama, s, prepend_bos=False)
    message = str(error.value)
    assert "prompt 1 '' is 0 tokens and nothing is prepended for tiny-llama" in message
    assert "prepend_bos=True, or --prepend-bos yes" in message and "prompt 0" not in message
    assert tokenize(tiny_llama, s).lengths[1] == 1  # with BOS the model predicts the first token


def test_a_prompt_longer_than_the_context_is_a_named_error_before_any_forward_pass(tiny_gpt2, monkeypatch):
    from circuitcheck.probes import logit_diff, tokenize_pair
    from circuitcheck.probes.tokens import PromptTooLongError

    monkeypatch.setattr(tiny_gpt2, "forward", lambda *a, **k: pytest.fail("ran the model"))
    long = "John and Mary went to the shops. " * 40 + "John gave the bag to"
    assert tiny_gpt2.cfg.n_ctx == 256
    with pytest.raises(PromptTooLongError) as error:
        logit_diff(tiny_gpt2, PromptSet([IOI, long], [(" Mary", " John")] * 2))
    n = len(tiny_gpt2.tokenizer.encode(long, add_special_tokens=False)) + 1
    message = str(error.value)
    assert "prompt 1 'John and Mary went to the sh'…'" in message
    assert f"is {n} tokens with '<|endoftext|>' prepended, but tiny-gpt2 reads at most 256 " \
           "(model.cfg.n_ctx)" in message
    assert f"shorten it by at least {n - 256} tokens" in message and "prompt 0" not in message
    # a corrupted prompt is checked too, and named as such
    with pytest.raises(PromptTooLongError, match=r"(?s)'prompts \(corrupted\)'.*prompt 0"):
        tokenize_pair(tiny_gpt2, PromptSet([IOI], [(" Mary", " John")], corrupted_prompts=[long]))
    # multi-token answers are fed after the prompt, so they count
    edge = "Mary " * 253 + "and"
    assert len(tokenize(tiny_gpt2, PromptSet([edge], [(" John", " Tom")])).str_tokens[0]) == 256
    with pytest.raises(PromptTooLongError, match="257 tokens with '<|endoftext|>' prepended and its 2-token"):
        tokenize(tiny_gpt2, PromptSet([edge], [(" Zed", " Tom")], multi_token=True))


# --- prompt sets without answers -------------------------------------------------------

def test_a_prompt_set_without_answers_serves_top_k_and_the_token_lens(tiny_llama):
    from circuitcheck.probes import token_lens, top_k
    from circuitcheck.probes.forward import final_logits

    s = PromptSet([IOI, "Then Tom gave the ball to"])
    assert s.answers is None and s.subset([1]).answers is None
    top = top_k(tiny_llama, s, k=3)
    assert top.correct_rank is None and len(top.top_token) == 2
    assert list(top.df.columns) == ["prompt", "rank", "token", "logit", "prob"] and len(top.df) == 6
    lens = token_lens(tiny_llama, s, " Mary")
    mary = tiny_llama.tokenizer.encode(" Mary", add_special_tokens=False)[0]
    logits = final_logits(tiny_llama, s.tokenize(tiny_llama))
    assert lens.labels[-1] == "final" and lens.logit.shape == (len(lens.labels), 2)
    np.testing.assert_allclose(lens.logit[-1], logits[:, mary].numpy(), atol=1e-4)
    np.testing.assert_allclose(lens.prob[-1], logits.softmax(-1)[:, mary].numpy(), atol=1e-5)
    assert (lens.rank[-1] == 1 + (logits > logits[:, mary:mary + 1]).sum(-1).numpy()).all()
    with pytest.raises(AnswerTokenError, match="no leading space"):
        token_lens(tiny_llama, s, "Mary")


@pytest.mark.parametrize("probe", ["logit_diff", "head_attribution", "logit_lens", "patch"])
def test_probes_that_compare_answers_name_the_fix_when_there_are_none(tiny_llama, probe):
    import circuitcheck.probes as probes
    from circuitcheck.probes.tokens import MissingAnswersError

    s = PromptSet([IOI], corrupted_prompts=["When John and Mary went to the shops, Mary gave the bag to"])
    with pytest.raises(MissingAnswersError) as error:
        getattr(probes, probe)(tiny_llama, s)
    assert "has none; give them: PromptSet(prompts, answers=[(' Mary', ' John'), ...])" in str(error.value)
