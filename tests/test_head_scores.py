"""Head classes agree with TransformerLens's head_detector, and find what is planted or known."""

import numpy as np
import pytest
import torch
from transformer_lens.head_detector import (compute_head_attention_similarity_score, detect_head,
                                            get_induction_head_detection_pattern)

from circuitcheck.probes import PromptSet, head_scores
from circuitcheck.probes.head_scores import repeated_random_tokens

TEXT = PromptSet(["When John and Mary went to the shops, John gave the bag to Mary",
                  "When Tom and James went to the park, Tom gave the ball to James and Tom"], name="text")


def reference(model, kind):
    return detect_head(model, list(TEXT.prompts), f"{kind}_head").numpy()


@pytest.mark.parametrize("kind", ["previous_token", "duplicate_token"])
def test_text_head_classes_equal_detect_head(tiny_llama, kind):
    ours = head_scores(tiny_llama, TEXT, kind, prepend_bos=bool(tiny_llama.cfg.default_prepend_bos))
    np.testing.assert_allclose(ours.values, reference(tiny_llama, kind), atol=1e-5)
    assert ours.n_sequences == 2 and ours.top(1)["head"][0].startswith("L")


def test_induction_equals_the_reference_score_on_the_same_repeated_tokens(tiny_gpt2):
    scores = head_scores(tiny_gpt2, kind="induction", length=12, samples=3, seed=1, exclude_bos=True)
    expected = []
    for tokens in repeated_random_tokens(tiny_gpt2, 12, 3, seed=1):
        _, cache = tiny_gpt2.run_with_cache(tokens[None], remove_batch_dim=True)
        pattern = get_induction_head_detection_pattern(tokens[None])
        expected.append([[compute_head_attention_similarity_score(
            cache["pattern", layer, "attn"][head], pattern, exclude_bos=True, exclude_current_token=False,
            error_measure="mul") for head in range(tiny_gpt2.cfg.n_heads)] for layer in range(tiny_gpt2.cfg.n_layers)])
    np.testing.assert_allclose(scores.values, np.mean(expected, axis=0), atol=1e-5)
    again = head_scores(tiny_gpt2, kind="induction", length=12, samples=3, seed=1, exclude_bos=True)
    assert np.array_equal(again.values, scores.values)  # seeded: same tokens, same scores


def test_a_planted_previous_token_head_scores_one(tiny_llama):
    """Force L1H0's pattern onto the previous token: its score is 1, the others' are not."""
    def previous(pattern, hook):
        n = pattern.shape[-1]
        pattern[:, 0] = torch.diag(torch.ones(n - 1), -1) + torch.nn.functional.pad(torch.eye(1), (0, n - 1, 0, n - 1))
        return pattern

    with tiny_llama.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", previous)]):
        scores = head_scores(tiny_llama, TEXT, "previous_token")
    assert scores.score("L1H0") > 0.9 and scores.top(1)["head"][0] == "L1H0"
    assert scores.heads_above(0.9) == ["L1H0"]


def test_bad_input_is_named(tiny_llama):
    with pytest.raises(ValueError, match="choose one of previous_token, duplicate_token, induction"):
        head_scores(tiny_llama, TEXT, "copying")
    with pytest.raises(ValueError, match="needs prompts"):
        head_scores(tiny_llama, kind="duplicate_token")


@pytest.mark.integration
def test_smollm2_head_classes_equal_detect_head_and_it_has_induction_heads(smollm2):
    ours = head_scores(smollm2, TEXT, "duplicate_token", prepend_bos=bool(smollm2.cfg.default_prepend_bos))
    np.testing.assert_allclose(ours.values, reference(smollm2, "duplicate_token"), atol=1e-4)
    # SmolLM2 parks spare attention on the first token (an attention sink): leave it out
    induction = head_scores(smollm2, kind="induction", exclude_bos=True)
    assert induction.heads_above(0.9)[:2] == ["L18H7", "L17H3"], induction.top(5)


def test_induction_sequences_must_fit_the_context_and_are_refused_before_any_pass(tiny_llama, tiny_gpt2):
    """length=5000 on a 256-token model once scored 10,001-token sequences (rotary: no error) or
    raised torch's IndexError (learned positions); it is now a PromptTooLongError up front."""
    from circuitcheck.probes import PromptTooLongError

    passes = []  # a hook on every attention pattern: any pass would be counted here
    hooks = [(f"blocks.{l}.attn.hook_pattern", lambda p, hook: passes.append(1)) for l in range(2)]
    for model, name in ((tiny_llama, "tiny-llama"), (tiny_gpt2, "tiny-gpt2")):
        with model.hooks(fwd_hooks=hooks):
            for length, total in ((5000, 10001), (200, 401)):
                with pytest.raises(PromptTooLongError) as refused:
                    head_scores(model, kind="induction", length=length)
                assert str(refused.value) == (
                    f"length={length}: each induction sequence is {total} tokens ('<|endoftext|>', then {length} "
                    f"random tokens twice), but {name} reads at most 256 (model.cfg.n_ctx); use length <= 127")
            with pytest.raises(PromptTooLongError,
                               match=r"is 258 tokens \(129 random tokens twice\).*use length <= 128$"):
                head_scores(model, kind="induction", length=129, prepend_bos=False, samples=1)
        assert passes == []
    longest = head_scores(tiny_gpt2, kind="induction", length=127, samples=1)  # 255 tokens: fits
    assert longest.n_sequences == 1 and np.isfinite(longest.values).all()


@pytest.mark.parametrize("kind", ["induction", "previous_token"])
def test_counts_are_named_errors(tiny_llama, kind):
    """samples=0 was torch's 'stack expects a non-empty TensorList'; negative counts and seeds
    are refused too, one line naming the argument, its value and the fix."""
    for argument, value, minimum in (("samples", 0, 1), ("samples", -2, 1), ("length", 0, 1), ("length", 2.5, 1),
                                     ("seed", -1, 0)):
        with pytest.raises(ValueError) as refused:
            head_scores(tiny_llama, TEXT, kind, **{argument: value})
        message = str(refused.value)
        assert message.startswith(f"{argument}={value!r}: give a whole number of at least {minimum}; ")
        assert f"{argument}=" in message.split("; ")[1] and "\n" not in message, message
    with pytest.raises(ValueError, match="^k=-1: give a whole number of at least 0"):
        head_scores(tiny_llama, TEXT, "previous_token").top(-1)
