"""Integration: the second embedded model, Gemma 3 270M, loaded offline from its four PyPI parts.

Gemma 3 differs from SmolLM2 (Llama) wherever a decomposition can quietly go wrong: each
attention and MLP output is normalised again before it joins the residual stream, one
key/value head serves all four query heads, keys and queries are normalised, five of every
six layers attend within a sliding window, its tokenizer adds ``<bos>``, and its unembedding
is the embedding (262,144 tokens). These tests hold the probes to the model's own numbers:
Hugging Face's logits, the layer outputs the post-norms produce, and the post-norm gains.
"""

import numpy as np
import pytest
import torch

from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.fixtures.gguf_models import GEMMA3, load_embedded
from circuitcheck.probes import head_attribution, layer_attribution, logit_diff, neuron_congruence
from circuitcheck.probes.model_state import model_info

pytestmark = pytest.mark.integration
IOI = ioi_prompts(8)


@pytest.fixture(scope="module")
def hugging_face():
    """Gemma as transformers runs it, from the same cache entry (the bridge folds its own copy)."""
    hf_model, tokenizer, _ = load_embedded(GEMMA3)
    return hf_model.eval(), tokenizer


def test_shape_provenance_and_what_is_prepended(gemma3):
    info = model_info(gemma3)
    assert (info.n_layers, info.n_heads, info.d_model) == (18, 4, 640)
    assert gemma3.cfg.n_key_value_heads == 1
    assert info.sha256 == GEMMA3.sha256 and info.source == "embedded"
    assert info.prepended == "<bos>"  # its tokenizer adds it, and Gemma is trained with it


def test_logit_differences_are_hugging_faces(gemma3, hugging_face):
    """The same strings through transformers (its tokenizer adds ``<bos>``), within 1e-3."""
    hf_model, tokenizer = hugging_face
    ours = logit_diff(gemma3, IOI).per_prompt
    for prompt, (good, bad), value in zip(IOI.prompts, IOI.answers, ours):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        assert ids[0, 0] == tokenizer.bos_token_id
        [good_id], [bad_id] = (tokenizer.encode(t, add_special_tokens=False) for t in (good, bad))
        with torch.inference_mode():
            final = hf_model(ids).logits[0, -1]
        assert value == pytest.approx((final[good_id] - final[bad_id]).item(), abs=1e-3), prompt
    assert ours.mean() > 2  # Gemma prefers the indirect object, as SmolLM2 does


def test_heads_add_up_to_their_layer_and_layers_to_the_logit_difference(gemma3):
    """The gap the issue found: layer 11's attention carried 4.62 of 4.90 while its heads
    summed to 0.006. With the post-attention norm's cached scale, heads add up."""
    heads, layers = head_attribution(gemma3, IOI), layer_attribution(gemma3, IOI)
    attention = np.stack([layers.values[layers.labels.index(f"L{l} attn")] for l in range(gemma3.cfg.n_layers)])
    np.testing.assert_allclose(heads.per_layer, attention, atol=1e-4)
    np.testing.assert_allclose(layers.total, logit_diff(gemma3, IOI).per_prompt, atol=1e-3)
    biggest = int(np.abs(attention.mean(1)).argmax())
    assert abs(heads.values[biggest].sum(0).mean()) > 0.5 * abs(attention[biggest].mean())


def test_head_contributions_are_what_the_layer_output_is_made_of(gemma3):
    """Each head's part as the probes compute it (`head_results`: its output through the
    post-attention norm's cached scale) sums, in every layer, to the layer's own output after
    that norm, ``blocks.L.hook_attn_out``, read from a separate TransformerLens cache."""
    from circuitcheck.probes.attribution import head_results
    from circuitcheck.probes.observe import observe

    prompts = IOI.subset([0])
    parts = head_results(gemma3, observe(gemma3, prompts.tokenize(gemma3)))  # layer head batch d_model
    names = [f"blocks.{layer}.hook_attn_out" for layer in range(gemma3.cfg.n_layers)]
    with torch.inference_mode():
        _, cache = gemma3.run_with_cache(gemma3.to_tokens(prompts.prompts[0]), names_filter=names)
    for layer, name in enumerate(names):
        np.testing.assert_allclose(parts[layer, :, 0].sum(0).numpy(), cache[name][0, -1].numpy(), atol=1e-3,
                                   err_msg=name)


def test_congruence_includes_the_post_feedforward_norm(gemma3, hugging_face):
    """A neuron writes ``g ⊙ W_out[n]`` (g the post-feedforward norm's gain, ``1 + w`` in
    transformers' Gemma), so congruence is that · ``W_U[:, token]``, from transformers' weights."""
    hf_model, _ = hugging_face
    result = neuron_congruence(gemma3, " an", k=5)
    an = gemma3.to_single_token(" an")
    unembed = gemma3.W_U[:, an]
    for label, value in zip(result.labels, result.congruence):
        layer, index = (int(x) for x in label[1:].split("N"))
        block = hf_model.model.layers[layer]
        gain = 1 + block.post_feedforward_layernorm.weight.detach()
        written = block.mlp.down_proj.weight.detach()[:, index] * gain
        assert value == pytest.approx((written @ unembed).item(), rel=1e-3, abs=1e-4)

