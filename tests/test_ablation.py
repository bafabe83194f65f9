"""Ablation (zero, mean, resample) and Gaussian-noise corruption on a tiny model."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import ablate, logit_diff, noise_corruption

from .test_patching import PROMPTS


def manual_logit_diff(model, hooks):
    tokens = PROMPTS.tokenize(model).tokens
    answers = PROMPTS.tokenize(model).answer_ids
    with torch.inference_mode():
        final = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
    return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).squeeze(1).numpy()


def test_zero_ablation_of_a_head_equals_zeroing_its_output(tiny_llama):
    result = ablate(tiny_llama, PROMPTS, "L1H2", ablation="zero")

    def zero(z, hook):
        z[:, :, 2] = 0
        return z

    np.testing.assert_allclose(result.after, manual_logit_diff(tiny_llama, [("blocks.1.attn.hook_z", zero)]), atol=1e-5)
    np.testing.assert_allclose(result.before, logit_diff(tiny_llama, PROMPTS).per_prompt, atol=1e-5)


def test_mean_ablation_uses_the_reference_mean_at_each_position(tiny_llama):
    result = ablate(tiny_llama, PROMPTS, ["mlp_out L0", "L1N5"], ablation="mean")
    with torch.inference_mode():
        _, cache = tiny_llama.run_with_cache(PROMPTS.tokenize(tiny_llama).tokens)
    mean_mlp = cache["blocks.0.hook_mlp_out"].mean(0)
    mean_post = cache["blocks.1.mlp.hook_post"].mean(0)

    def mlp(a, hook):
        a[:] = mean_mlp
        return a

    def neuron(a, hook):
        a[:, :, 5] = mean_post[:, 5]
        return a

    expected = manual_logit_diff(tiny_llama, [("blocks.0.hook_mlp_out", mlp), ("blocks.1.mlp.hook_post", neuron)])
    np.testing.assert_allclose(result.after, expected, atol=1e-5)


def test_resample_ablation_and_noise_are_seeded(tiny_llama):
    a, b = (ablate(tiny_llama, PROMPTS, "L0H1", ablation="resample", seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.after, b.after)
    n1, n2 = (noise_corruption(tiny_llama, PROMPTS, positions=[2, 4], samples=3, seed=1) for _ in range(2))
    np.testing.assert_array_equal(n1.noisy, n2.noisy)
    assert n1.noise_std == pytest.approx(3 * tiny_llama.W_E.std().item())
    silent = noise_corruption(tiny_llama, PROMPTS, positions=[2], scale=0.0, samples=2)
    np.testing.assert_allclose(silent.noisy, silent.clean, atol=1e-5)


def test_bad_sites_and_kinds_are_named(tiny_llama):
    with pytest.raises(ValueError, match="site 'head 3'"):
        ablate(tiny_llama, PROMPTS, "head 3")
    with pytest.raises(ValueError, match="ablation 'random'"):
        ablate(tiny_llama, PROMPTS, "L0H1", ablation="random")
    with pytest.raises(ValueError, match="has layers 0–1"):
        ablate(tiny_llama, PROMPTS, "mlp_out L7")
    with pytest.raises(ValueError, match="shortest prompt has 15 tokens"):
        noise_corruption(tiny_llama, PROMPTS, positions=[40])
