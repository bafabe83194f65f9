"""Activation patching on tiny models: every sweep, both directions, equals TransformerLens."""

import os

import numpy as np
import pandas as pd
import pytest
import torch

from circuitcheck.probes import (PromptSet, SWEEPS, corruption_check, head_attribution, logit_diff,
                                 neuron_congruence, patch)
from circuitcheck.probes.patch_runs import first_differences
from circuitcheck.probes.patching import POST, Sweep

from .patching_reference import reference_patch

os.environ.setdefault("TQDM_DISABLE", "1")
PROMPTS = PromptSet(
    ["When Mary and John went to the shops, John gave the bag to",
     "When Tom and James went to the park, James gave the ball to"],
    [(" Mary", " John"), (" Tom", " James")],
    corrupted_prompts=["When Mary and John went to the shops, Mary gave the bag to",
                       "When Tom and James went to the park, Tom gave the ball to"],
    name="IOI pair")


# Prompts whose corruption starts at different positions (10, 8, 13) or nowhere: each group
# of prompts with one first difference shares a cached prefix of that length.
STAGGERED = PromptSet(
    [PROMPTS.prompts[0], PROMPTS.prompts[1], "When Mary and John went to the park, John gave the bag to",
     PROMPTS.prompts[1]],
    [(" Mary", " John"), (" Tom", " James"), (" Mary", " John"), (" Tom", " James")],
    corrupted_prompts=[PROMPTS.corrupted_prompts[0], "When Tom and James went to the shops, James gave the ball to",
                       "When Mary and John went to the park, John gave the bag to",
                       "When Tom and James went to the park, James gave the bag to"],
    name="staggered corruptions")


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def tiny(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("direction", ["clean_into_corrupted", "corrupted_into_clean"])
@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_every_sweep_equals_transformer_lens(tiny, sweep, direction):
    neurons = [0, 7, 100] if "neuron" in sweep else None  # every neuron would be 256 × 15 sites
    ours = patch(tiny, PROMPTS, sweep, direction=direction, neurons=neurons)
    expected = reference_patch(tiny, PROMPTS, sweep, direction, ours.sites).numpy()
    np.testing.assert_allclose(ours.mean, expected, atol=1e-4)
    assert len(ours.labels) == len(ours.sites) == int(np.prod(ours.shape))


def test_sites_before_the_first_difference_have_exactly_zero_effect(tiny_llama):
    result = patch(tiny_llama, PROMPTS, "resid_pre")
    first = min(first_differences(PROMPTS.tokenize(tiny_llama), PROMPTS.corrupted.tokenize(tiny_llama)))
    grid = result.grid("effect")
    assert first == 10 and result.rows_skipped == 2 * 2 * 10
    assert (grid[:, :first] == 0).all() and (grid[:, first:] != 0).any()


@pytest.mark.parametrize("sweep", ["resid_pre", "head_out", "head_k_by_pos", "head_pattern", "mlp_out_all_pos"])
def test_prompts_corrupted_at_different_positions_equal_transformer_lens(tiny, sweep):
    firsts = first_differences(STAGGERED.tokenize(tiny), STAGGERED.corrupted.tokenize(tiny))
    assert firsts == [10, 8, 15, 13]  # with BOS; the third prompt is not corrupted at all
    for direction in ("clean_into_corrupted", "corrupted_into_clean"):
        ours = patch(tiny, STAGGERED, sweep, direction=direction)
        expected = reference_patch(tiny, STAGGERED, sweep, direction, ours.sites).numpy()
        np.testing.assert_allclose(ours.mean, expected, atol=1e-4)
        assert (ours.values[:, 2] == ours.target_baseline[2]).all()  # nothing to patch


def test_a_small_memory_budget_splits_the_work_and_changes_nothing(tiny_llama):
    from circuitcheck.probes.patch_runs import rows_per_pass

    whole = patch(tiny_llama, PROMPTS, "head_out")
    budget = 3 * (2**30 // rows_per_pass(tiny_llama, 5, 15, 2**30))  # three rows of 5 positions per pass
    assert rows_per_pass(tiny_llama, 5, 15, budget) == 3
    split = patch(tiny_llama, PROMPTS, "head_out", memory_budget=budget, layers=[0, 1])  # another memo key
    np.testing.assert_allclose(split.values, whole.values, atol=1e-5)


def _cannot_concatenate(prefix, suffix):
    raise RuntimeError("shapes do not match")


@pytest.mark.parametrize("attention, says", [(lambda prefix, suffix: suffix, "did not reproduce the full run"),
                                             (_cannot_concatenate, "failed .shapes do not match.")],
                         ids=["ignores-the-prefix", "cannot-take-it"])
def test_a_model_that_cannot_use_the_cached_prefix_falls_back_to_full_runs(monkeypatch, attention, says):
    """If a model's attention does not read the cached prefix, the first unpatched suffix run
    disagrees with the full run (or fails): the sweep says so, reruns in full, stays exact."""
    from circuitcheck.fixtures import load_model
    from circuitcheck.probes.model_state import state_of
    from circuitcheck.probes.shared_prefix import PrefixKeysValues

    model = load_model("tiny-llama", device="cpu")  # a model of its own: the fallback is remembered
    monkeypatch.setattr(PrefixKeysValues, "_after", staticmethod(attention))
    with pytest.warns(RuntimeWarning, match=says):
        ours = patch(model, PROMPTS, "head_out")
    assert state_of(model).capabilities["prefix_cache"] is False
    expected = reference_patch(model, PROMPTS, "head_out", "clean_into_corrupted", ours.sites).numpy()
    np.testing.assert_allclose(ours.mean, expected, atol=1e-4)


def test_baselines_and_recovery_scale(tiny_llama):
    result = patch(tiny_llama, PROMPTS, "resid_pre")
    np.testing.assert_allclose(result.source_baseline, logit_diff(tiny_llama, PROMPTS).per_prompt, atol=1e-4)
    np.testing.assert_allclose(result.target_baseline, logit_diff(tiny_llama, PROMPTS.corrupted).per_prompt,
                               atol=1e-4)
    # the final residual stream at the final position is all the unembedding reads
    final = patch(tiny_llama, PROMPTS, "resid_post").df.query("layer == 1 and pos == 14")
    assert final["recovery"].item() == pytest.approx(1.0, abs=1e-4)


def test_labels_name_sites_like_researchers_do(tiny_llama):
    assert patch(tiny_llama, PROMPTS, "resid_pre").labels[10] == "resid_pre L0 pos 10 ' John'"
    assert patch(tiny_llama, PROMPTS, "head_out").labels[6] == "L1H2"
    assert patch(tiny_llama, PROMPTS, "head_q_by_pos").labels[3 * 15 + 10] == "L0H3 q pos 10 ' John'"
    figure = patch(tiny_llama, PROMPTS, "attn_out").figure()
    assert figure["type"] == "heatmap" and figure["x"][10] == "10 ' John'"


@pytest.mark.parametrize("metric", ["answer_logprob", "kl_to_clean"])
def test_other_metrics(tiny_llama, metric):
    result = patch(tiny_llama, PROMPTS, "resid_post", metric=metric)
    if metric == "kl_to_clean":  # the clean run is at zero distance from itself
        np.testing.assert_allclose(result.source_baseline, 0, atol=1e-6)
        assert (result.target_baseline > 0).all()
    last = result.df.query("layer == 1 and pos == 14")
    assert last["recovery"].item() == pytest.approx(1.0, abs=1e-3)


def test_custom_metric_function(tiny_llama):
    def correct_logit(logits, answers, clean_logits):
        return logits.gather(1, answers[:, :1]).squeeze(1)

    result = patch(tiny_llama, PROMPTS, "mlp_out", metric=correct_logit)
    assert result.metric == "correct_logit" and np.isfinite(result.values).all()


def test_bad_requests_are_explained(tiny_llama):
    with pytest.raises(ValueError, match="sweep 'resid': choose one of resid_pre"):
        patch(tiny_llama, PROMPTS, "resid")
    with pytest.raises(ValueError, match="direction 'both'"):
        patch(tiny_llama, PROMPTS, direction="both")
    with pytest.raises(ValueError, match="metric 'loss'"):
        patch(tiny_llama, PROMPTS, metric="loss")
    with pytest.raises(ValueError, match="has no corrupted prompts"):
        patch(tiny_llama, PromptSet(PROMPTS.prompts, PROMPTS.answers))
    mixed = PromptSet([PROMPTS.prompts[0], "Then Tom gave the ball to"], PROMPTS.answers,
                      corrupted_prompts=[PROMPTS.corrupted_prompts[0], "Then Sid gave the ball to"])
    with pytest.raises(ValueError, match=r"prompts of \[8, 15\] tokens"):
        patch(tiny_llama, mixed)
    tiny_llama.blocks[0].hook_resid_post.add_hook(lambda x, hook: x)
    try:
        with pytest.raises(RuntimeError, match="hooks are attached"):
            patch(tiny_llama, PROMPTS)
    finally:
        tiny_llama.reset_hooks()


def test_corruption_check_verdicts(tiny_llama):
    check = corruption_check(tiny_llama, PROMPTS, min_drop=0.0)
    clean, corrupted = logit_diff(tiny_llama, PROMPTS), logit_diff(tiny_llama, PROMPTS.corrupted)
    for verdict, c, k in zip(check.verdicts, clean.per_prompt, corrupted.per_prompt):
        assert verdict == ("flips" if c > 0 > k else "lowers" if c >= k else "no effect")
    same = PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=PROMPTS.prompts)
    assert corruption_check(tiny_llama, same).verdicts == ("no effect", "no effect")


@pytest.mark.parametrize("sweep", ["resid_pre", "head_out", "mlp_out"])
def test_patching_a_noise_corruption_equals_transformer_lens_with_the_noise_hooked(tiny_llama, sweep):
    """Causal tracing: restore clean activations into runs with noisy embeddings; the reference is
    TransformerLens's engine on the same model with the same noise hook attached, per sample."""
    import transformer_lens.patching as tl_patching

    from circuitcheck.probes import GaussianNoise

    from .patching_reference import REFERENCE

    noise = GaussianNoise(positions=(2, 4), samples=2, seed=5)
    ours = patch(tiny_llama, PromptSet(PROMPTS.prompts, PROMPTS.answers), sweep, noise=noise)
    tokens = PROMPTS.tokenize(tiny_llama).tokens
    answers = PROMPTS.tokenize(tiny_llama).answer_ids

    def metric(logits):
        final = logits[:, -1]
        return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).mean()

    with torch.inference_mode():
        _, clean_cache = tiny_llama.run_with_cache(tokens)
    name, setter = REFERENCE[sweep]
    expected = []
    for draw in noise.draws(tiny_llama, len(tokens)):
        hook_name, add_noise = noise.hook(draw)
        tiny_llama.add_hook(hook_name, add_noise)
        try:
            axes = ["layer", "pos"] if "pos" in ours.axes else ["layer", "head_index"]
            expected.append(tl_patching.generic_activation_patch(
                tiny_llama, tokens, clean_cache, metric, patch_setter=setter, activation_name=name,
                index_df=pd.DataFrame(list(ours.sites), columns=axes)).numpy())
        finally:
            tiny_llama.reset_hooks()
    np.testing.assert_allclose(ours.mean, np.mean(expected, axis=0), atol=1e-4)
    assert "Gaussian noise on positions [2, 4]" in ours.notes()[0]
    if "pos" in ours.axes:  # before the first noised position nothing differs
        assert (ours.grid("effect")[:, :2] == 0).all()


SPARSE = {"resid_pre": ["resid_pre L1 pos 14 ' to'", (0, 10), (1, 3)],  # (1, 3): before the difference
          "head_out": ["L1H2", (0, 3)],
          "head_k_by_pos": ["L1KV1 k pos 14", (0, 0, 12)],
          "head_pattern_by_pos": ["L0H1 pattern pos 11", (1, 3, 14)],
          "neuron_by_pos": ["L1N7 pos 14", (0, 100, 10)],
          "mlp_out_all_pos": [1]}  # a bare layer index


@pytest.mark.parametrize("direction", ["clean_into_corrupted", "corrupted_into_clean"])
@pytest.mark.parametrize("sweep", list(SPARSE))
def test_a_list_of_sites_gives_those_sites_of_the_full_sweep(tiny, sweep, direction):
    """``sites=`` (labels as the result writes them, or index tuples in the sweep's axes order)
    patches only those sites, each with exactly the value the full sweep gives it."""
    neurons = [7, 100] if "neuron" in sweep else None
    full = patch(tiny, PROMPTS, sweep, direction=direction, neurons=neurons)
    listed = patch(tiny, PROMPTS, sweep, direction=direction, sites=SPARSE[sweep])
    rows = [full.sites.index(site) for site in listed.sites]
    assert listed.labels == tuple(full.labels[r] for r in rows) and len(rows) == len(SPARSE[sweep])
    np.testing.assert_allclose(listed.values, full.values[rows], atol=1e-5)
    np.testing.assert_allclose(listed.target_baseline, full.target_baseline, atol=1e-6)
    assert listed.rows_run < full.rows_run and listed.sparse == (len(rows) > 1)  # not a full grid of its values
    assert listed.figure()["type"] == ("bar" if listed.sparse else "heatmap")
    assert np.isnan(listed.grid()).sum() == np.prod(listed.shape) - len(rows)  # only listed sites are set


def test_sites_that_do_not_fit_the_sweep_are_explained(tiny_llama):
    with pytest.raises(ValueError, match="site 'L1' is not a head_out site: write head_out sites as 'L9H6' "
                                         r"or as \(layer, head\) tuples"):
        patch(tiny_llama, PROMPTS, "head_out", sites=["L1"])
    with pytest.raises(ValueError, match=r"is not a head_k_by_pos site: write .* 'L9KV6 pos 10'"):
        patch(tiny_llama, PROMPTS, "head_k_by_pos", sites=["L1H1 pos 3"])
    with pytest.raises(ValueError, match="head 9 does not exist: head_out has heads 0–3"):
        patch(tiny_llama, PROMPTS, "head_out", sites=["L1H9"])
    with pytest.raises(ValueError, match="not both"):
        patch(tiny_llama, PROMPTS, "head_out", sites=["L1H1"], layers=[1])


def test_a_new_sweep_is_one_entry(tiny, monkeypatch):
    """A sweep knows its slice and labels: one `Sweep` entry patches a hook no code names
    (here the MLP's pre-activations, per neuron), and equals TransformerLens."""
    import transformer_lens.patching as tl_patching

    monkeypatch.setitem(SWEEPS, "neuron_pre", Sweep("neuron_pre", "blocks.{layer}.mlp.hook_pre", POST,
                                                    ("layer", "neuron")))
    ours = patch(tiny, PROMPTS, "neuron_pre", sites=["L1N7 pre", (0, 100)])
    assert ours.labels == ("L1N7 pre", "L0N100 pre")
    clean, corrupted = PROMPTS.tokenize(tiny), PROMPTS.corrupted.tokenize(tiny)
    answers = clean.answer_ids

    def metric(logits):
        final = logits[:, -1]
        return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).mean()

    with torch.inference_mode():
        _, cache = tiny.run_with_cache(clean.tokens)
    expected = tl_patching.generic_activation_patch(
        tiny, corrupted.tokens, cache, metric, patch_setter=tl_patching.layer_head_vector_patch_setter,
        activation_name="pre", index_df=pd.DataFrame(list(ours.sites), columns=["layer", "head_index"]))
    np.testing.assert_allclose(ours.mean, expected.numpy(), atol=1e-4)


# The IOI pair plus a prompt one token longer (15, 15, 16 tokens with BOS).
LONGER = PromptSet(["When Mary and John went to the shops, and John gave the bag to"], [(" Mary", " John")],
                   corrupted_prompts=["When Mary and John went to the shops, and Mary gave the bag to"],
                   name="longer IOI")
MIXED = PromptSet([*PROMPTS.prompts, *LONGER.prompts], [*PROMPTS.answers, *LONGER.answers],
                  corrupted_prompts=[*PROMPTS.corrupted_prompts, *LONGER.corrupted_prompts], name="IOI, mixed lengths")


@pytest.mark.parametrize("sweep", ["head_out", "head_pattern", "neuron", "mlp_out_all_pos"])
def test_prompts_of_different_lengths_equal_patching_each_length_apart(tiny, sweep):
    assert MIXED.tokenize(tiny).lengths == (15, 15, 16)
    neurons = [0, 7] if sweep == "neuron" else None
    for direction in ("clean_into_corrupted", "corrupted_into_clean"):
        whole = patch(tiny, MIXED, sweep, direction=direction, neurons=neurons)
        apart = [patch(tiny, part, sweep, direction=direction, neurons=neurons) for part in (PROMPTS, LONGER)]
        np.testing.assert_allclose(whole.values, np.concatenate([a.values for a in apart], axis=1), atol=1e-5)
        np.testing.assert_allclose(whole.target_baseline, np.concatenate([a.target_baseline for a in apart]),
                                   atol=1e-5)
        assert whole.rows_run == sum(a.rows_run for a in apart)


def test_sweeps_by_position_need_prompts_of_one_length(tiny_llama):
    """A position is each prompt's own token index, so it names one token only in prompts of
    one length; the error says so and names the sweeps that take any lengths."""
    with pytest.raises(ValueError, match=r"patching \(resid_pre\) needs prompts of one token length, but "
                                         r"'IOI, mixed lengths' has prompts of \[15, 16\] tokens: prompt 0 is 15 "
                                         r"tokens \[.*\], prompt 2 is 16 tokens \[.*',', ' and', ' John'.*head_out"):
        patch(tiny_llama, MIXED, "resid_pre")
    unequal_pair = PromptSet(LONGER.prompts, LONGER.answers, corrupted_prompts=PROMPTS.corrupted_prompts[:1])
    with pytest.raises(ValueError, match="differ in token length"):  # a clean/corrupted pair: still an error
        patch(tiny_llama, unequal_pair, "head_out")


def test_tables_name_heads_and_neurons_as_the_other_probes_do(tiny_llama):
    """A head patch's table has ``head`` (``L1H2``), ``layer`` and ``index`` like head_attribution's,
    so the two join; a neuron patch's has ``neuron`` (``L1N7``) like the neuron probes'."""
    heads = patch(tiny_llama, PROMPTS, "head_out")
    joined = heads.df.merge(head_attribution(tiny_llama, PROMPTS).df, on=["head", "layer", "index"])
    assert len(joined) == len(heads.sites) == 2 * 4 and heads.top(1)["head"][0] == heads.top(1)["site"][0]
    neuron = neuron_congruence(tiny_llama, " Mary").labels[0]
    assert list(patch(tiny_llama, PROMPTS, "neuron", sites=[neuron]).df["neuron"]) == [neuron]
    by_pos = patch(tiny_llama, PROMPTS, "head_v_by_pos", sites=[(1, 0, 14)]).df
    assert list(by_pos.columns[:5]) == ["site", "head", "layer", "index", "pos"] and by_pos["head"][0] == "L1KV0"


def test_the_same_prompts_with_other_answers_are_patched_again(tiny_llama):
    """The pass cache keys on the answers too: swapped answers negate the logit difference."""
    swapped = PromptSet(PROMPTS.prompts, [(b, a) for a, b in PROMPTS.answers],
                        corrupted_prompts=PROMPTS.corrupted_prompts)
    first, second = patch(tiny_llama, PROMPTS, "head_out"), patch(tiny_llama, swapped, "head_out")
    np.testing.assert_allclose(second.values, -first.values, atol=1e-5)
