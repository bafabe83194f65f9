"""Attribution patching: the gradient estimate, checked against finite differences and exact patching."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import attribution_patch, patch

from .test_patching import PROMPTS
from .tolerances import through_model


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
    """The estimate for head L1H3 at all positions is ∇_z metric · (z_clean − z_corrupted) at the
    corrupted run: checked against that derivative taken by autograd on a float64 copy of the
    model (a float32 difference quotient would carry rounding of ε₃₂ × |logit| × depth / ε, as
    large as the tolerance). The estimate is a float32 backward pass: its rounding is
    `tolerances.through_model` at the logits' scale."""
    from circuitcheck.fixtures import load_model

    estimate = attribution_patch(tiny_llama, PROMPTS, "head_out", layers=[1], heads=[3])
    wide = load_model("tiny-llama", device="cpu").to(torch.float64)
    clean, corrupted = PROMPTS.tokenize(wide), PROMPTS.corrupted.tokenize(wide)
    with torch.inference_mode():
        _, cache = wide.run_with_cache(clean.tokens)
    kept = {}

    def keep(z, hook):
        kept["z"] = z.detach().requires_grad_(True)
        return kept["z"]

    logits = wide.run_with_hooks(corrupted.tokens, fwd_hooks=[("blocks.1.attn.hook_z", keep)])
    rows = torch.arange(len(clean.answer_ids))
    final = logits[rows, corrupted.final_positions]
    metric = final[rows, clean.answer_ids[:, 0]] - final[rows, clean.answer_ids[:, 1]]
    gradient, = torch.autograd.grad(metric.sum(), kept["z"])  # rows are independent: one backward
    delta = cache["blocks.1.attn.hook_z"][:, :, 3] - kept["z"].detach()[:, :, 3]
    derivative = (gradient[:, :, 3] * delta).sum(dim=(1, 2)).numpy()
    scale = float(final.detach().abs().max())
    np.testing.assert_allclose(estimate.values[0] - estimate.target_baseline, derivative, rtol=0,
                               atol=through_model(tiny_llama, scale))
    assert np.abs(derivative).max() > 100 * through_model(tiny_llama, scale)  # the test can fail


def test_query_key_value_sweeps_point_to_exact_patching(tiny_llama):
    with pytest.raises(ValueError, match="no gradient for head_k.*use exact patch"):
        attribution_patch(tiny_llama, PROMPTS, "head_k")
