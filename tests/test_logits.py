"""logit_diff and top_k against a direct computation, on tiny random models."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import PromptSet, logit_diff, top_k
from circuitcheck.probes.forward import final_logits

PROMPTS = PromptSet(
    ["When John and Mary went to the shops, John gave the bag to", "Then Tom gave the ball to",
     "When Dan and Sid went to the park, Sid gave an apple to"],
    [(" Mary", " John"), (" Anne", " Tom"), (" Dan", " Sid")],
)


def direct_last_logits(model, prompt: str) -> torch.Tensor:
    """One prompt alone, no padding: the reference for the batched, padded pass."""
    with torch.inference_mode():
        return model(model.to_tokens(prompt))[0, -1]


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def tiny(request):
    return request.getfixturevalue(request.param)


def test_logit_diff_matches_each_prompt_run_alone(tiny):
    result = logit_diff(tiny, PROMPTS)
    for i, (prompt, (good, bad)) in enumerate(zip(PROMPTS.prompts, PROMPTS.answers)):
        logits = direct_last_logits(tiny, prompt)
        expected = logits[tiny.to_single_token(good)] - logits[tiny.to_single_token(bad)]
        assert result.per_prompt[i] == pytest.approx(expected.item(), abs=1e-4)
    assert result.mean == pytest.approx(result.per_prompt.mean())
    assert list(result.df.columns[:4]) == ["prompt", "correct", "incorrect", "logit_diff"]


def test_top_k_tokens_probabilities_and_ranks(tiny):
    result = top_k(tiny, PROMPTS, k=4)
    for i, prompt in enumerate(PROMPTS.prompts):
        logits = direct_last_logits(tiny, prompt)
        order = logits.argsort(descending=True)
        assert list(result.tokens[i]) == [tiny.tokenizer.decode([t]) for t in order[:4].tolist()]
        np.testing.assert_allclose(result.probs[i], logits.softmax(-1)[order[:4]].numpy(), atol=1e-5)
        correct = tiny.to_single_token(PROMPTS.answers[i][0])
        assert result.correct_rank[i] == 1 + (order == correct).nonzero().item()
    assert (result.correct_in_top(4) == (result.correct_rank <= 4)).all()


def test_probes_on_one_prompt_set_share_one_forward_pass(tiny_llama, monkeypatch):
    calls = []
    forward = tiny_llama.forward
    monkeypatch.setattr(tiny_llama, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    fresh = PromptSet(["When Kate and Luke went to the store, Kate gave the ring to"], [(" Luke", " Kate")])
    logit_diff(tiny_llama, fresh)
    top_k(tiny_llama, fresh)
    assert len(calls) == 1
    tokenized = fresh.tokenize(tiny_llama)
    assert final_logits(tiny_llama, tokenized) is final_logits(tiny_llama, tokenized)


def test_hooked_model_is_never_served_cached_clean_logits(tiny_llama):
    clean = logit_diff(tiny_llama, PROMPTS)
    tiny_llama.blocks[1].hook_resid_post.add_hook(lambda x, hook: x * 0.0)
    try:
        ablated = logit_diff(tiny_llama, PROMPTS)
    finally:
        tiny_llama.reset_hooks()
    assert not np.allclose(clean.per_prompt, ablated.per_prompt)
    np.testing.assert_array_equal(logit_diff(tiny_llama, PROMPTS).per_prompt, clean.per_prompt)


def test_result_repr_shows_the_table_not_tensors(tiny_llama):
    text = repr(logit_diff(tiny_llama, PROMPTS))
    assert text.startswith("LogitDiff(tiny-llama, 'prompts': mean=")
    assert "When John and Mary" in text and "tensor(" not in text and "array(" not in text


def test_nan_logits_raise_a_clear_error(tiny_llama):
    prompts = PromptSet(["When Paul and Kate went to the park, Paul gave the book to"], [(" Kate", " Paul")])
    tiny_llama.blocks[0].hook_resid_post.add_hook(lambda x, hook: x * float("nan"))
    try:
        with pytest.raises(FloatingPointError, match=r"NaN/inf logits for 1 prompt.*Paul gave the book.*float32"):
            logit_diff(tiny_llama, prompts)
    finally:
        tiny_llama.reset_hooks()


def test_many_small_batches_give_the_same_numbers(tiny_llama, monkeypatch):
    from circuitcheck.probes import head_attribution
    from circuitcheck.probes import forward

    whole = logit_diff(tiny_llama, PROMPTS).per_prompt, head_attribution(tiny_llama, PROMPTS).values
    monkeypatch.setattr(forward, "TOKENS_PER_BATCH", 1)  # one prompt per pass
    forward.forget_passes(tiny_llama)
    split = logit_diff(tiny_llama, PROMPTS).per_prompt, head_attribution(tiny_llama, PROMPTS).values
    np.testing.assert_allclose(split[0], whole[0], atol=1e-5)
    np.testing.assert_allclose(split[1], whole[1], atol=1e-5)


def raw_hf_last_logits(arch: str, tokens: torch.Tensor) -> torch.Tensor:
    """The same random weights as plain Hugging Face, not centred: the raw logits."""
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, _ = tiny_hf_model(arch)
    with torch.inference_mode():
        return hf_model(tokens).logits[0, -1]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logits_are_centred_and_shown_beside_probabilities(arch, request):
    model = request.getfixturevalue(f"tiny_{arch}")
    one = PROMPTS.subset([0])
    raw = raw_hf_last_logits(arch, one.tokenize(model).tokens)
    top, diff = top_k(model, one, k=3), logit_diff(model, one)
    order = raw.argsort(descending=True)[:3]
    np.testing.assert_allclose(top.logits[0], (raw - raw.mean())[order].numpy(), atol=1e-4)
    np.testing.assert_allclose(top.probs[0], raw.softmax(-1)[order].numpy(), atol=1e-5)
    assert not np.allclose(top.logits[0], raw[order].numpy(), atol=1e-3)  # absolute logits move
    assert {"logit", "prob"} <= set(top.df.columns) and any("centred" in n for n in top.notes())
    good, bad = (model.to_single_token(a) for a in one.answers[0])
    logprobs = raw.log_softmax(-1)
    assert diff.correct_logprob[0] == pytest.approx(logprobs[good].item(), abs=1e-4)
    assert diff.incorrect_logprob[0] == pytest.approx(logprobs[bad].item(), abs=1e-4)
    assert diff.per_prompt[0] == pytest.approx((raw[good] - raw[bad]).item(), abs=1e-4)
    assert any("centred" in n and "mean over the vocabulary" in n for n in diff.notes())
    assert list(diff.df.columns[4:]) == ["correct_logit", "incorrect_logit", "correct_logprob",
                                         "incorrect_logprob"]


def test_top_k_table_marks_the_answers_and_lists_those_below_the_top(tiny_llama):
    result = top_k(tiny_llama, PROMPTS, k=2)
    frame = result.df
    for i, prompt in enumerate(PROMPTS.prompts):
        rows = frame[frame.prompt == prompt]
        for j, role in enumerate(("correct", "incorrect")):
            rank = int((result.correct_rank, result.incorrect_rank)[j][i])
            [marked] = rows[rows.answer == role].itertuples()
            assert marked.rank == rank and (rank <= 2 or marked.token == PROMPTS.answers[i][j])
            assert marked.prob == pytest.approx(result.answer_probs[i, j])
