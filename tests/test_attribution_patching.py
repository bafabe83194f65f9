"""Attribution patching: the gradient estimate, checked against finite differences and exact patching."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import attribution_patch, patch

from .test_patching import PROMPTS


@pytest.mark.parametrize("sweep", ["attn_out", "head_out", "head_pattern", "neuron_by_pos"])
def test_estimates_track_exact_patching_on_a_tiny_model(tiny_llama, sweep):
    exact = patch(tiny_llama, PROMPTS, sweep)
    estimate = attribution_patch(tiny_llama, PROMPTS, sweep, exact=exact)
    assert estimate.method == "attribution" and estimate.sites == exact.sites
    assert estimate.exact_correlation > 0.9
    np.testing.assert_allclose(estimate.target_baseline, exact.target_baseline, atol=1e-4)
    assert "correlation with exact patching" in estimate.evidence()["summary"]


def test_residual_estimates_are_recorded_with_their_weaker_agreement(tiny_llama):
    """Whole-residual patches are large, so the linear estimate is rough there; the evidence
    must carry the correlation so nobody mistakes it for the exact map."""
    exact = patch(tiny_llama, PROMPTS, "resid_pre")
    estimate = attribution_patch(tiny_llama, PROMPTS, "resid_pre", exact=exact)
    assert -1 <= estimate.exact_correlation <= 1
    assert estimate.top(1)["site"][0] == exact.top(1)["site"][0] == "resid_pre L1 pos 14 ' to'"


def test_head_output_estimate_is_the_directional_derivative(tiny_llama):
    """(metric(target + ε·Δ) − metric(target)) / ε → the estimate, for head L1H3 at all positions."""
    estimate = attribution_patch(tiny_llama, PROMPTS, "head_out", layers=[1], heads=[3])
    clean, corrupted = PROMPTS.tokenize(tiny_llama), PROMPTS.corrupted.tokenize(tiny_llama)
    with torch.inference_mode():
        _, cache = tiny_llama.run_with_cache(clean.tokens)
    eps = 1e-3
    mary, john = clean.answer_ids[:, 0], clean.answer_ids[:, 1]

    def nudge(z, hook):
        z[:, :, 3] += eps * (cache["blocks.1.attn.hook_z"][:, :, 3] - z[:, :, 3])
        return z

    with torch.inference_mode():
        base = tiny_llama(corrupted.tokens)[:, -1]
        moved = tiny_llama.run_with_hooks(corrupted.tokens, fwd_hooks=[("blocks.1.attn.hook_z", nudge)])[:, -1]
    rows = torch.arange(len(mary))
    derivative = ((moved[rows, mary] - moved[rows, john]) - (base[rows, mary] - base[rows, john])) / eps
    np.testing.assert_allclose(estimate.values[0] - estimate.target_baseline, derivative.numpy(), rtol=2e-2, atol=1e-4)


def test_query_key_value_sweeps_point_to_exact_patching(tiny_llama):
    with pytest.raises(ValueError, match="no gradient for head_k.*use exact patch"):
        attribution_patch(tiny_llama, PROMPTS, "head_k")
