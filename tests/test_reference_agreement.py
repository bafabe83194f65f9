"""Integration: our observational probes equal TransformerLens's ActivationCache helpers
on the real default model, within 1e-4.

The reference runs ``run_with_cache`` on one prompt at a time (no padding) and uses
``accumulated_resid``, ``apply_ln_to_stack``, ``decompose_resid``,
``stack_head_results`` and ``logit_attrs`` exactly as the IOI exploratory-analysis
demo does; ours come from one shared, padded, final-position-only pass.
"""

import numpy as np
import pytest
import torch

from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.probes import PromptSet, head_attribution, layer_attribution, logit_diff, logit_lens

pytestmark = pytest.mark.integration
TOLERANCE = 1e-4

# IOI plus a shorter prompt, so the shared pass pads and the reference does not.
IOI = ioi_prompts()
PROMPTS = PromptSet([*IOI.prompts, "Then Mary gave the book to"], [*IOI.answers, (" John", " Mary")],
                    name="IOI + short")


@pytest.fixture(scope="module")
def reference(smollm2):
    """Per prompt: the TransformerLens cache and the answer token ids."""
    out = []
    for prompt, (good, bad) in zip(PROMPTS.prompts, PROMPTS.answers):
        with torch.inference_mode():
            # SmolLM2's tokenizer adds no BOS, so the probes prepend none either
            _, cache = smollm2.run_with_cache(smollm2.to_tokens(prompt, prepend_bos=False))
        out.append((cache, smollm2.to_single_token(good), smollm2.to_single_token(bad)))
    return out


def direction(model, good, bad):
    return model.W_U[:, good] - model.W_U[:, bad]


def test_logit_lens_matches_accumulated_resid_and_apply_ln_to_stack(smollm2, reference):
    lens = logit_lens(smollm2, PROMPTS)
    for j, (cache, good, bad) in enumerate(reference):
        stack, labels = cache.accumulated_resid(incl_mid=True, pos_slice=-1, return_labels=True)
        scaled = cache.apply_ln_to_stack(stack, pos_slice=-1)
        expected = (scaled[:, 0] @ direction(smollm2, good, bad)).numpy()
        np.testing.assert_allclose(lens.logit_diff[:, j], expected, atol=TOLERANCE)
        assert len(labels) == len(lens.labels)
        # answer probabilities: each stream re-normalised by the final norm (recompute_ln)
        normalised = cache.accumulated_resid(incl_mid=True, pos_slice=-1, apply_ln=True)[:, 0]
        probs = (normalised @ smollm2.W_U + smollm2.b_U).softmax(-1)[:, good].numpy()
        np.testing.assert_allclose(lens.correct_prob[:, j], probs, atol=TOLERANCE)


def test_layer_attribution_matches_decompose_resid_and_logit_attrs(smollm2, reference):
    layers = layer_attribution(smollm2, PROMPTS)
    for j, (cache, good, bad) in enumerate(reference):
        stack = cache.decompose_resid(pos_slice=-1)
        expected = cache.logit_attrs(stack, tokens=good, incorrect_tokens=bad, pos_slice=-1)[:, 0]
        np.testing.assert_allclose(layers.values[:, j], expected.numpy(), atol=TOLERANCE)


def test_head_attribution_matches_stack_head_results_and_logit_attrs(smollm2, reference):
    heads = head_attribution(smollm2, PROMPTS)
    n_layers, n_heads = smollm2.cfg.n_layers, smollm2.cfg.n_heads
    for j, (cache, good, bad) in enumerate(reference):
        stack, labels = cache.stack_head_results(pos_slice=-1, return_labels=True)
        expected = cache.logit_attrs(stack, tokens=good, incorrect_tokens=bad, pos_slice=-1)[:, 0]
        np.testing.assert_allclose(heads.values[..., j].flatten(), expected.numpy(), atol=TOLERANCE)
        assert labels[n_heads + 2] == "L1H2" and heads.df["head"][n_heads + 2] == "L1H2"
    assert heads.values.shape == (n_layers, n_heads, len(PROMPTS))


def test_layer_attribution_is_complete(smollm2):
    """Embeddings + every attention and MLP layer add up to the model's logit difference."""
    layers = layer_attribution(smollm2, PROMPTS)
    np.testing.assert_allclose(layers.total, logit_diff(smollm2, PROMPTS).per_prompt, atol=1e-3)
