"""Neuron probes: congruence, exclusive pairs, activations, correlation, neuron patching."""

import numpy as np
import pytest
import torch

from circuitcheck.fixtures.tiny import planted_neuron_model
from circuitcheck.probes import (PromptSet, exclusive_neuron_tokens, neuron_activations, neuron_congruence,
                    neuron_prediction_correlation, patch)
from circuitcheck.probes.neurons import bootstrap_ci, pearson

PAIR = PromptSet(["When Mary and John went to the shops, John gave the bag to"], [(" Mary", " John")],
                 corrupted_prompts=["When Mary and John went to the shops, Mary gave the bag to"])


@pytest.fixture(scope="module")
def planted():
    return planted_neuron_model(layer=1, neuron=7, token=" an")


def test_planted_token_writing_neuron_is_found_first(planted):
    congruence = neuron_congruence(planted, " an")
    assert congruence.labels[0] == "L1N7" and congruence.token_rank[0] == 1
    assert congruence.congruence[0] > 100 * abs(congruence.congruence[1])
    pairs = exclusive_neuron_tokens(planted)
    assert (pairs.neurons[0], pairs.tokens[0]) == ("L1N7", " an")


def test_exclusive_pairs_are_mutual_best_matches(tiny_gpt2):
    pairs = exclusive_neuron_tokens(tiny_gpt2, k=5)
    w_out = tiny_gpt2.W_out.reshape(-1, tiny_gpt2.cfg.d_model)
    scores = w_out @ tiny_gpt2.W_U
    assert len(pairs.neurons) == 5
    for neuron, token_id in zip(pairs.neurons, pairs.token_ids):
        layer, index = (int(x) for x in neuron[1:].split("N"))
        row = layer * tiny_gpt2.cfg.d_mlp + index
        assert scores[row].argmax() == token_id and scores[:, token_id].argmax() == row


def test_activations_read_mlp_hook_post_at_the_answer_position(tiny_llama):
    result = neuron_activations(tiny_llama, PAIR, ["L1N5", (0, 3)], all_positions=True)
    with torch.inference_mode():
        _, cache = tiny_llama.run_with_cache(PAIR.tokenize(tiny_llama).tokens)
    assert result.values[0, 0] == pytest.approx(cache["blocks.1.mlp.hook_post"][0, -1, 5].item(), abs=1e-6)
    np.testing.assert_allclose(result.per_position[1][0], cache["blocks.0.mlp.hook_post"][0, :, 3], atol=1e-6)
    with pytest.raises(ValueError, match="neuron L2N0 does not exist: the model has layers 0–1"):
        neuron_activations(tiny_llama, PAIR, ["L2N0"])


def test_neuron_patching_equals_a_direct_hook_patch(tiny_llama):
    result = patch(tiny_llama, PAIR, "neuron", layers=[0, 1], neurons=[3, 5])
    clean, corrupted = PAIR.tokenize(tiny_llama), PAIR.corrupted.tokenize(tiny_llama)
    with torch.inference_mode():
        _, cache = tiny_llama.run_with_cache(clean.tokens)
    mary, john = clean.answer_ids[0].tolist()
    for (layer, index), value in zip(result.sites, result.mean):
        def put(activation, hook, layer=layer, index=index):
            activation[:, :, index] = cache[f"blocks.{layer}.mlp.hook_post"][:, :, index]
            return activation

        with torch.inference_mode():
            logits = tiny_llama.run_with_hooks(corrupted.tokens, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", put)])
        assert value == pytest.approx((logits[0, -1, mary] - logits[0, -1, john]).item(), abs=1e-5)


def test_correlation_with_bootstrap_interval(tiny_llama):
    prompts = PromptSet([f"When {a} and {b} went to the shops, {a} gave the bag to"
                         for a, b in [("Mary", "John"), ("Tom", "Anne"), ("Paul", "Kate"), ("Luke", "Sarah"),
                                      ("John", "Mary"), ("Anne", "Tom")]],
                        [(f" {b}", f" {a}") for a, b in [("Mary", "John"), ("Tom", "Anne"), ("Paul", "Kate"),
                                                           ("Luke", "Sarah"), ("John", "Mary"), ("Anne", "Tom")]])
    result = neuron_prediction_correlation(tiny_llama, prompts, "L1N5", " Mary")
    assert result.r == pytest.approx(np.corrcoef(result.activation, result.prediction)[0, 1])
    assert result.ci[0] <= result.r <= result.ci[1]
    assert result.evidence()["figures"][0]["type"] == "scatter"
    x = np.arange(20.0)
    assert bootstrap_ci(x, 2 * x + 1, pearson) == pytest.approx((1.0, 1.0))


@pytest.mark.integration
def test_congruence_is_w_out_dot_w_u_on_smollm2(smollm2):
    result = neuron_congruence(smollm2, " an", k=5)
    an = smollm2.to_single_token(" an")
    for label, value in zip(result.labels, result.congruence):
        layer, index = (int(x) for x in label[1:].split("N"))
        assert value == pytest.approx((smollm2.W_out[layer][index] @ smollm2.W_U[:, an]).item(), abs=1e-4)
