"""A pass resumed at block k (issue 31, step 4): only the blocks from k run, with the numbers of
the whole pass; exact edge patching resumes each patched run at the first block its edge enters,
from the cached corrupted run."""

import numpy as np
import pytest
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.tiny import ARCHITECTURES
from circuitcheck.probes.edges.runs import masked_logits, resume_layers, split_inputs
from circuitcheck.probes.edges.setup import edge_setup
from circuitcheck.probes.forward import final_logits_with
from circuitcheck.probes.recovery import ground_truth
from circuitcheck.probes.sites import hook_of

from .test_patching import PROMPTS
from .tolerances import through_model

# every tiny architecture family, and two known-circuit models: Tracr's native blocks hand their
# loop a tuple, Hugging Face's current decoders a tensor
MODELS = [f"tiny-{arch}" for arch in ARCHITECTURES] + ["tracr-prev-token", "planted-induction"]


@pytest.fixture(scope="module", params=MODELS)
def named_model(request):
    model = load_model(request.param, device="cpu")
    prompts = PROMPTS if request.param.startswith("tiny-") else ground_truth(model).prompt_set
    return request.param, model, prompts


def test_a_pass_resumed_at_any_block_is_the_whole_pass_bit_for_bit(named_model):
    """The same blocks run on the same residual in the same batch shape: the same numbers."""
    name, model, prompts = named_model
    tokenized = prompts.tokenize(model)
    entering = {}

    def keep(layer):
        def hook(activation, hook):
            entering[layer] = activation.clone()
        return hook

    whole = final_logits_with(model, tokenized.tokens, tokenized.final_positions,
                              [(hook_of("resid_pre", layer), keep(layer)) for layer in range(model.cfg.n_layers)])
    for layer in range(1, model.cfg.n_layers):
        resumed = final_logits_with(model, entering[layer], tokenized.final_positions, [], start=layer)
        assert torch.equal(resumed, whole), f"{name}: resumed at block {layer}"
    calls = []  # the blocks before it do not run (once per model, a one-token pass saw what blocks return)
    handles = [block.original_component.register_forward_hook(lambda module, inputs, out: calls.append(1))
               for block in model.blocks[:-1]]
    try:
        final_logits_with(model, entering[model.cfg.n_layers - 1], tokenized.final_positions, [],
                          start=model.cfg.n_layers - 1)
    finally:
        for handle in handles:
            handle.remove()
    assert not calls, f"{name}: an earlier block ran in a pass resumed at the last"
    assert torch.equal(final_logits_with(model, tokenized.tokens, tokenized.final_positions, []), whole)


def test_a_masked_pass_resumes_at_the_first_block_its_edges_enter(tiny_llama):
    s = edge_setup(tiny_llama, PROMPTS, "patching")
    graph = s.graph
    kept = np.zeros((4, graph.n_edges), dtype=bool)
    for row, label in enumerate(["L0H1 → L1H2.q", "MLP0 → L1KV0.v", "L1H0 → logits", "embed → L0H3.q"]):
        kept[row, graph.index(label)] = True
    replaced = torch.as_tensor(kept)
    rebuild = torch.tensor([False, False, False, False])
    assert resume_layers(graph, replaced, rebuild).tolist() == [1, 1, 1, 0]  # logits: the last block
    assert resume_layers(graph, replaced, torch.tensor([True, False, False, False]))[0] == 0


@pytest.mark.parametrize("on", ["corrupted", "clean"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_a_masked_pass_resumed_is_the_whole_pass(arch, on):
    """Single edges patched clean into the corrupted run (exact edge patching), or a few edges
    replaced in the clean run (the M \\ K of completeness), each pass resumed at the first block
    its edges enter from the cached run, against the same masks through the whole model. The
    early senders' outputs then come from the cached run instead of this pass, a different batch
    of the same computation: float32 rounding through the model (`tolerances.through_model`)."""
    model = load_model(f"tiny-{arch}", device="cpu")
    s = edge_setup(model, PROMPTS, "patching")
    graph = s.graph
    picks = np.random.default_rng(0).choice(graph.n_edges, size=(12, 1 if on == "corrupted" else 3))
    replaced = torch.zeros((len(picks), graph.n_edges), dtype=torch.bool)
    replaced[np.arange(len(picks))[:, None], picks] = True
    run, replacement, own, resid = ((s.corrupted, s.clean_outs, s.target_outs, s.target_resid) if on == "corrupted"
                                    else (s.tokenized, s.target_outs, s.clean_outs, s.clean_resid))
    tokens, finals = run.tokens, run.final_positions
    with split_inputs(model):
        resumed = masked_logits(model, graph, tokens, finals, replaced, replacement, s.consts, None, own, resid)
        whole = masked_logits(model, graph, tokens, finals, replaced, replacement, s.consts)
    assert resume_layers(graph, replaced, torch.zeros(len(picks), dtype=torch.bool)).max() > 0  # some resume late
    scale = float(s.clean_outs.abs().amax(dim=(0, 1, 3)).sum())
    np.testing.assert_allclose(resumed.numpy(), whole.numpy(), rtol=0, atol=through_model(model, scale), err_msg=arch)
    plain = s.target_logits if on == "corrupted" else s.clean_logits  # the masks change the run: the test can fail
    assert (whole.view(len(picks), *plain.shape) - plain).abs().amax() > 1e-3, arch
