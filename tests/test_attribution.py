"""Logit lens, layer/head attribution and attention on tiny models: completeness,
consistency with the model's own output, and a planted copying head."""

import numpy as np
import pytest

from circuitcheck.fixtures.tiny import planted_copy_head_model
from circuitcheck.probes import (PromptSet, attention, attention_to, head_attribution, layer_attribution,
                    logit_diff, logit_lens, top_k)

PROMPTS = PromptSet(
    ["When Mary and John went to the shops, John gave the bag to",
     "When Tom and James went to the park, James gave the ball to",
     "Then Anne gave the ring to"],  # a shorter prompt: padding must not matter
    [(" Mary", " John"), (" Tom", " James"), (" Paul", " Kate")],
)


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def tiny(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def planted():
    return planted_copy_head_model(layer=1, head=1, source_position=2)


def test_layer_attribution_adds_up_to_the_logit_difference(tiny):
    result = layer_attribution(tiny, PROMPTS)
    np.testing.assert_allclose(result.total, logit_diff(tiny, PROMPTS).per_prompt, atol=1e-4)
    learned_positions = tiny.cfg.positional_embedding_type == "standard"  # GPT-2, not rotary
    assert result.labels[0] == "embed" and ("pos_embed" in result.labels) == learned_positions
    assert result.labels[-2:] == ("L1 attn", "L1 mlp")


def test_heads_add_up_to_their_attention_layers(tiny_llama):
    """Llama attention has no output bias, so its layer's output is exactly the sum of its heads'."""
    heads, layers = head_attribution(tiny_llama, PROMPTS), layer_attribution(tiny_llama, PROMPTS)
    for layer in range(tiny_llama.cfg.n_layers):
        attn = layers.values[layers.labels.index(f"L{layer} attn")]
        np.testing.assert_allclose(heads.values[layer].sum(axis=0), attn, atol=1e-5)


def test_logit_lens_ends_at_the_models_own_prediction(tiny):
    lens, diff, top = logit_lens(tiny, PROMPTS), logit_diff(tiny, PROMPTS), top_k(tiny, PROMPTS)
    assert lens.labels[0] == "L0 pre" and lens.labels[-1] == "final" and len(lens.labels) == 5
    np.testing.assert_allclose(lens.logit_diff[-1], diff.per_prompt, atol=1e-4)
    np.testing.assert_allclose(lens.correct_prob[-1], top.correct_prob, atol=1e-5)
    assert lens.forms_at(0.0) in lens.labels


def test_planted_copying_head_is_found_and_its_pattern_shows_the_copy(planted):
    prompts = PromptSet(PROMPTS.prompts[:2], PROMPTS.answers[:2])
    heads = head_attribution(planted, prompts)
    assert heads.top(1)["head"][0] == "L1H1"
    assert heads.value("L1H1") > 100 * np.abs(np.delete(heads.per_head.flatten(), 3)).max()
    first = attention(planted, prompts, ["L1H1"]).pattern("L1H1", 0)
    assert first.iloc[-1].idxmax() == "2 ' Mary'" and first.iloc[-1].max() > 0.99
    assert attention_to(planted, prompts, ["L1H1"], target="correct").values.min() > 0.99
    assert top_k(planted, prompts).correct_rank.tolist() == [1, 1]


def test_attention_patterns_are_per_prompt_and_rows_sum_to_one(tiny):
    result = attention(tiny, PROMPTS, ["L0H1", (1, 3)])
    assert result.heads == ("L0H1", "L1H3")
    short = result.patterns[0][2]
    assert short.shape == (len(result.str_tokens[2]),) * 2
    np.testing.assert_allclose(short.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(np.triu(short, 1), 0)  # causal


@pytest.mark.parametrize("head, message", [
    ("L2H0", "has layers 0–1 .2 layers.; choose L0–L1"),
    ("L0H4", "has heads 0–3 per layer; choose H0–H3"),
    ("9.6", "write heads as 'L<layer>H<head>'"),
])
def test_heads_that_do_not_exist_are_named(tiny_llama, head, message):
    with pytest.raises(ValueError, match=message):
        attention(tiny_llama, PROMPTS, [head])


def test_attention_to_a_token_missing_from_the_prompt_lists_its_tokens(tiny_llama):
    with pytest.raises(ValueError, match=r"prompt 2 'Then Anne gave the ring to' has no token ' Paul'; its tokens are"):
        attention_to(tiny_llama, PROMPTS, ["L0H0"], target="correct")


def test_results_have_evidence_with_figures(tiny_llama):
    for result in (logit_lens(tiny_llama, PROMPTS), layer_attribution(tiny_llama, PROMPTS),
                   head_attribution(tiny_llama, PROMPTS), attention(tiny_llama, PROMPTS, ["L1H0"])):
        form = result.evidence()
        assert form["figures"] and form["table"]["rows"] and form["model"] == "tiny-llama"
