"""Path patching on tiny models: equal to a plain three-run hook reference and to
TransformerLens's direct path patching where that covers the case; bad input."""

import numpy as np
import pytest
import torch

from circuitcheck.probes.path_patching import path_patch

from .test_patching import PROMPTS


def reference(model, senders, receivers, which, freeze_mlps=False, end_only=False):
    """Path patching written out plainly: runs 1, 2 and 3 of the IOI paper."""
    clean = PROMPTS.tokenize(model).tokens
    corrupt = PROMPTS.corrupted.tokenize(model).tokens
    answers = PROMPTS.tokenize(model).answer_ids
    final = torch.tensor(PROMPTS.tokenize(model).lengths) - 1
    rows = torch.arange(len(clean))
    with torch.inference_mode():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupt_cache = model.run_with_cache(corrupt)
    run2_hooks = []
    for layer in range(model.cfg.n_layers):
        def heads(z, hook, layer=layer):
            name = f"blocks.{layer}.attn.hook_z"
            for head in range(model.cfg.n_heads):
                source = clean_cache if (layer, head) in senders else corrupt_cache
                z[:, :, head] = source[name][:, :, head]
            return z
        run2_hooks.append((f"blocks.{layer}.attn.hook_z", heads))
        if freeze_mlps:
            def mlp(out, hook, layer=layer):
                return corrupt_cache[f"blocks.{layer}.hook_mlp_out"]
            run2_hooks.append((f"blocks.{layer}.hook_mlp_out", mlp))
    layers = sorted({layer for layer, _ in receivers})
    name = "blocks.{}.hook_resid_pre" if which == "resid" else "blocks.{}.attn.hook_" + which
    with torch.inference_mode():
        saved = {}
        hooks = run2_hooks + [(name.format(l), lambda a, hook, l=l: saved.__setitem__(l, a.clone())) for l in layers]
        model.run_with_hooks(corrupt, fwd_hooks=hooks)

    def patch(a, hook, layer):
        for row in range(len(a)):
            for pos in range(a.shape[1]):
                if end_only and pos != final[row]:
                    continue
                if which == "resid":
                    a[row, pos] = saved[layer][row, pos]
                else:
                    for l, h in receivers:
                        if l == layer:
                            a[row, pos, h] = saved[layer][row, pos, h]
        return a

    with torch.inference_mode():
        logits = model.run_with_hooks(corrupt, fwd_hooks=[(name.format(l), lambda a, hook, l=l: patch(a, hook, l))
                                                          for l in layers])
    picked = logits[rows, final].gather(1, answers)
    return (picked[:, 0] - picked[:, 1]).numpy()


@pytest.mark.parametrize("which", ["q", "k", "v", "resid"])
def test_path_patching_equals_the_plain_reference(tiny_llama, which):
    result = path_patch(tiny_llama, PROMPTS, ["L0H1", "L0H3"], ["L1H2", "L1H0"], receiver_input=which)
    expected = reference(tiny_llama, {(0, 1), (0, 3)}, [(1, 2), (1, 0)], which)
    np.testing.assert_allclose(result.patched, expected, atol=1e-4)
    assert result.receivers == ("L1H0", "L1H2") and result.senders == ("L0H1", "L0H3")


def test_path_patching_at_the_final_position_with_frozen_mlps(tiny_gpt2):
    result = path_patch(tiny_gpt2, PROMPTS, ["L0H2"], ["L1H1"], receiver_input="q", positions="end", freeze_mlps=True)
    expected = reference(tiny_gpt2, {(0, 2)}, [(1, 1)], "q", freeze_mlps=True, end_only=True)
    np.testing.assert_allclose(result.patched, expected, atol=1e-4)
    gap = result.clean.mean() - result.corrupted.mean()
    assert result.recovery == pytest.approx((result.patched.mean() - result.corrupted.mean()) / gap)


def test_every_head_as_sender_into_the_residual_is_the_clean_run_on_a_one_layer_path(tiny_llama):
    """All layer-0 heads clean, MLPs frozen, patched into the residual entering layer 1: the
    stream there is the corrupted one plus every head's clean-minus-corrupted output."""
    everything = [f"L0H{h}" for h in range(tiny_llama.cfg.n_heads)]
    result = path_patch(tiny_llama, PROMPTS, everything, [1], receiver_input="resid", freeze_mlps=True)
    expected = reference(tiny_llama, {(0, h) for h in range(tiny_llama.cfg.n_heads)}, [(1, None)], "resid",
                         freeze_mlps=True)
    np.testing.assert_allclose(result.patched, expected, atol=1e-4)


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_path_patching_agrees_with_transformer_lens_direct_path(tiny_gpt2, which):
    """TransformerLens 4.3's get_act_patch_direct_path adds the sender's clean − corrupted write
    to one receiver's own Q/K/V input: our path patch with MLPs frozen is the same edge."""
    from transformer_lens.patching import get_act_patch_direct_path

    clean = PROMPTS.tokenize(tiny_gpt2).tokens
    corrupt = PROMPTS.corrupted.tokenize(tiny_gpt2).tokens
    answers = PROMPTS.tokenize(tiny_gpt2).answer_ids
    final = torch.tensor(PROMPTS.tokenize(tiny_gpt2).lengths) - 1

    def metric(logits):
        picked = logits[torch.arange(len(final)), final].gather(1, answers)
        return (picked[:, 0] - picked[:, 1]).mean()

    with torch.inference_mode():
        _, clean_cache = tiny_gpt2.run_with_cache(clean)
        _, corrupt_cache = tiny_gpt2.run_with_cache(corrupt)
    theirs = get_act_patch_direct_path(tiny_gpt2, corrupt, clean_cache, corrupt_cache, metric, 0, 2,
                                       component=which, verbose=False)
    ours = path_patch(tiny_gpt2, PROMPTS, ["L0H2"], ["L1H3"], receiver_input=which, freeze_mlps=True)
    assert ours.patched.mean() == pytest.approx(float(theirs[1, 3]), abs=1e-4)


def test_bad_input_gets_clear_errors(tiny_llama):
    with pytest.raises(ValueError, match="not before the first receiver layer"):
        path_patch(tiny_llama, PROMPTS, ["L1H0"], ["L1H2"], receiver_input="q")
    with pytest.raises(ValueError, match="receiver_input 'o'"):
        path_patch(tiny_llama, PROMPTS, ["L0H0"], ["L1H2"], receiver_input="o")
    with pytest.raises(ValueError, match="L5H0 does not exist"):
        path_patch(tiny_llama, PROMPTS, ["L5H0"], ["L1H2"], receiver_input="q")
    with pytest.raises(ValueError, match="names no sender"):
        path_patch(tiny_llama, PROMPTS, [], ["L1H2"], receiver_input="q")
    with pytest.raises(ValueError, match="positions"):
        path_patch(tiny_llama, PROMPTS, ["L0H0"], ["L1H2"], receiver_input="q", positions="start")
