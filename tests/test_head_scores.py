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
