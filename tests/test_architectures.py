"""Every probe exact on every architecture family circuitcheck accepts, on tiny random models.

One two-layer model per family (`circuitcheck.fixtures.tiny.ARCHITECTURES`): Llama, GPT-2,
Gemma 3 (post-sublayer norms, QK-norm, one key/value head, a sliding window shorter than
the prompts), Gemma 2 (soft-capping), GPT-NeoX (parallel attention and MLP) and Qwen2
(q/k/v biases). Norm gains are random, so a probe that forgets a norm disagrees. For each:
the decompositions add up (heads to their layer, layers to the logit difference), the
bridge's logits are Hugging Face's, patching equals TransformerLens's, and the full
circuit is the model.
"""

import warnings

import numpy as np
import pytest
import torch

from circuitcheck.fixtures.tiny import ARCHITECTURES, tiny_hf_model
from circuitcheck.probes import (Circuit, PromptSet, attribution_patch, faithfulness, head_attribution, layer_attribution,
                                 logit_diff, logit_lens, neuron_congruence, patch)
from circuitcheck.probes.linearise import post_norm_gain

from .patching_reference import reference_patch

TOLERANCE = 1e-4
PROMPTS = PromptSet(  # 15 and 16 tokens: longer than the sliding window of 4
    ["When Mary and John went to the shops, John gave the bag to",
     "When Tom and James went to the park, James gave the ball to"],
    [(" Mary", " John"), (" Tom", " James")],
    corrupted_prompts=["When Mary and John went to the shops, Mary gave the bag to",
                       "When Tom and James went to the park, Tom gave the ball to"],
    name="IOI pair")


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch_model(request):
    from circuitcheck.fixtures import load_model

    return request.param, load_model(f"tiny-{request.param}", device="cpu")


def pre_cap_logit_diff(model, prompts) -> np.ndarray:
    """The logit difference before any soft-cap, from the final norm's output (a hook reference)."""
    tokenized = prompts.tokenize(model)
    out = []
    for i in range(len(prompts.prompts)):
        tokens = tokenized.tokens[i:i + 1, :tokenized.lengths[i]]
        _, cache = model.run_with_cache(tokens, names_filter=["ln_final.hook_out"])
        final = cache["ln_final.hook_out"][0, -1]
        good, bad = tokenized.answer_ids[i]
        bias = 0.0 if model.b_U is None else float(model.b_U[good] - model.b_U[bad])
        out.append(float(final @ (model.W_U[:, good] - model.W_U[:, bad])) + bias)
    return np.array(out)


def test_layers_add_up_to_the_logit_difference(arch_model):
    arch, model = arch_model
    layers = layer_attribution(model, PROMPTS)
    np.testing.assert_allclose(layers.total, pre_cap_logit_diff(model, PROMPTS), atol=TOLERANCE)
    if arch == "gemma2":  # soft-capped: the parts add up before the cap, and the result says so
        assert any("soft-caps" in note for note in layers.notes())
        assert not np.allclose(layers.total, logit_diff(model, PROMPTS).per_prompt, atol=1e-6)
    else:
        np.testing.assert_allclose(layers.total, logit_diff(model, PROMPTS).per_prompt, atol=TOLERANCE)
    lens = logit_lens(model, PROMPTS)
    np.testing.assert_allclose(lens.logit_diff[-1], layers.total, atol=TOLERANCE)


def test_heads_add_up_to_their_layers_attention(arch_model):
    arch, model = arch_model
    heads, layers = head_attribution(model, PROMPTS), layer_attribution(model, PROMPTS)
    attention = np.stack([layers.values[layers.labels.index(f"L{l} attn")] for l in range(model.cfg.n_layers)])
    np.testing.assert_allclose(heads.per_layer, attention, atol=TOLERANCE)
    if arch.startswith("gemma"):
        assert any("normalised again" in note for note in heads.notes())
        # without the post-norm's scale the heads would not add up (the check has teeth)
        assert not np.allclose(heads.values.sum(1), attention / 2, atol=1e-3)


def test_the_bridge_gives_hugging_faces_logits(arch_model):
    """Same string, the model's own decision about BOS: log-probabilities equal (the bridge's
    logits are centred, so compare after log-softmax)."""
    arch, model = arch_model
    hf_model, _ = tiny_hf_model(arch)
    tokenized = PROMPTS.tokenize(model)
    for i in range(len(PROMPTS.prompts)):
        tokens = tokenized.tokens[i:i + 1, :tokenized.lengths[i]]
        with torch.inference_mode():
            ours = model(tokens, return_type="logits")[0, -1].log_softmax(-1)
            theirs = hf_model(tokens).logits[0, -1].log_softmax(-1)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=TOLERANCE)


@pytest.mark.parametrize("direction", ["clean_into_corrupted", "corrupted_into_clean"])
@pytest.mark.parametrize("sweep", ["resid_pre", "attn_out", "head_out", "head_v", "mlp_out", "neuron"])
def test_patching_equals_transformer_lens(arch_model, sweep, direction):
    """Through the shared-prefix path (the names differ from position 10, past the window of
    4): equal to TransformerLens's one-run-per-site patching, or a fallback it warns about."""
    arch, model = arch_model
    neurons = [0, 7, 100] if sweep == "neuron" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = patch(model, PROMPTS, sweep, direction=direction, neurons=neurons)
    expected = reference_patch(model, PROMPTS, sweep, direction, ours.sites).numpy()
    np.testing.assert_allclose(ours.mean, expected, atol=TOLERANCE)
    fallbacks = [w for w in caught if "full runs" in str(w.message)]
    assert not fallbacks or arch not in ("llama", "gpt2")


def test_attribution_patching_reads_head_gradients_before_a_post_norm(arch_model):
    """Attribution patching of heads is linear in z: its estimate for a head equals the one
    read off that head's z through the o-projection's input, a gradient taken directly."""
    arch, model = arch_model
    ours = attribution_patch(model, PROMPTS, "head_out")
    clean, corrupted = PROMPTS.tokenize(model), PROMPTS.corrupted.tokenize(model)
    answers = clean.answer_ids
    _, source = model.run_with_cache(clean.tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
    z_in = {}

    def keep(activation, hook):
        z_in[hook.name] = activation
        activation.retain_grad()
        return activation

    def start(activation, hook):
        return activation.detach().requires_grad_(True)

    with torch.enable_grad():
        hooks = [("hook_embed", start)] + [(f"blocks.{l}.attn.hook_z", keep) for l in range(model.cfg.n_layers)]
        final = model.run_with_hooks(corrupted.tokens, fwd_hooks=hooks)[:, -1]
        diff = final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])
        diff.sum().backward()
    baseline = diff.detach()[:, 0].numpy()
    for l in range(model.cfg.n_layers):
        name = f"blocks.{l}.attn.hook_z"
        grad = z_in[name].grad  # batch pos head d_head
        if grad is None:
            pytest.skip("hook_z passes no gradient in this bridge")
        delta = source[name] - z_in[name].detach()
        estimate = (grad * delta).sum(dim=(1, 3)).T.numpy()  # head × batch
        for h in range(model.cfg.n_heads):
            np.testing.assert_allclose(ours.values[ours.sites.index((l, h))], baseline + estimate[h], atol=TOLERANCE)


def test_the_full_circuit_is_the_model(arch_model):
    arch, model = arch_model
    everything = faithfulness(model, PROMPTS, Circuit.full(model))
    np.testing.assert_allclose(everything.circuit_metric, everything.model_metric, atol=TOLERANCE)


def test_congruence_is_what_each_neuron_writes_through_the_post_norm(arch_model):
    """A neuron's congruence is its write direction (times the post-feedforward norm's gain,
    read here from the Hugging Face weights) dotted with the token's unembedding."""
    arch, model = arch_model
    result = neuron_congruence(model, " Mary", k=3)
    hf_model, _ = tiny_hf_model(arch)
    [token] = model.tokenizer.encode(" Mary", add_special_tokens=False)
    for label, value in zip(result.labels, result.congruence):
        layer, neuron = (int(x) for x in label[1:].split("N"))
        writes = model.W_out[layer, neuron].detach().float()
        norm = getattr(hf_model.model.layers[layer], "post_feedforward_layernorm", None) \
            if hasattr(hf_model, "model") else None
        if norm is not None:  # Gemma: y = (1 + w) ⊙ x / rms(x)
            writes = writes * (1 + norm.weight.detach())
            np.testing.assert_allclose(post_norm_gain(model, layer, "mlp"), 1 + norm.weight.detach(), atol=1e-6)
        assert value == pytest.approx(float(writes @ model.W_U[:, token]), abs=1e-4)
