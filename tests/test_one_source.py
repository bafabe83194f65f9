"""One source of ablation values (issue 31, step 4): node probes (heads, neurons, layers) and edge
senders take their mean and their resample draw from `probes.ablation_values`, so the same seed
draws the same reference prompts for both, and a node circuit and the edge circuit that keeps
every edge out of its components are one circuit under mean and resample ablation."""

import itertools

import numpy as np
import pytest
import torch

from circuitcheck.probes import Circuit, PromptSet, faithfulness
from circuitcheck.probes.ablation_values import ablation_values, reference_pass, resample_rows
from circuitcheck.probes.edges import EdgeCircuit, edge_graph
from circuitcheck.probes.edges.setup import edge_setup
from circuitcheck.probes.sites import hook_of

from .tolerances import through_model


def ioi(pairs, name):
    return PromptSet([f"When {a} and {b} went to the shops, {b} gave the bag to" for a, b in pairs],
                     [(f" {a}", f" {b}") for a, b in pairs], name=name)


# one template, so the reference is as wide as the prompts; every name one token on tiny-llama,
# and no two reference prompts alike, so each drawn row can be told apart
PROMPTS = ioi([("Mary", "John"), ("Tom", "James"), ("Bob", "Paul")], "three IOI prompts")
REFERENCE = ioi([("Kate", "Dan"), ("John", "Tom"), ("Paul", "Mary"), ("James", "Bob"), ("Dan", "Kate")],
                "five other IOI prompts")
HEADS = ["L0H1", "L1H2"]
SEEDS = (0, 1, 7)


def rows_of(values: torch.Tensor, reference: torch.Tensor) -> list[int]:
    """For each prompt's replacement, the one reference row it is, bit for bit."""
    rows = []
    for value in values:
        same = [j for j, row in enumerate(reference) if torch.equal(value, row)]
        assert len(same) == 1, f"a replacement equal to reference rows {same}"
        rows.append(same[0])
    return rows


def test_one_draw_of_reference_rows_is_seeded_and_fixed():
    """The draw itself: a seed gives the same rows every time, other seeds other rows, and the rows
    are today's (a changed draw would change every resample verdict)."""
    assert torch.equal(resample_rows(5, 3, 0), resample_rows(5, 3, 0))
    assert len({tuple(resample_rows(5, 3, seed).tolist()) for seed in SEEDS}) == len(SEEDS)
    expected = torch.randint(5, (3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(resample_rows(5, 3, 7), expected) and resample_rows(5, 3, 7).dtype == torch.int64


@pytest.mark.parametrize("seed", SEEDS)
def test_node_and_edge_resample_ablation_draw_the_same_rows(tiny_llama, seed):
    """Each prompt's replacement is one reference prompt's activation (node: a head's ``hook_z``;
    edge: every sender's output and the stream entering layer 0), the same prompt for both."""
    names = [hook_of("head_out", layer) for layer in range(tiny_llama.cfg.n_layers)]
    reference_acts, _ = reference_pass(tiny_llama, REFERENCE.tokenize(tiny_llama), names)
    node = ablation_values(tiny_llama, PROMPTS, names, "resample", REFERENCE, seed)
    drawn = resample_rows(len(REFERENCE.prompts), len(PROMPTS.prompts), seed).tolist()
    for name in names:
        assert rows_of(node.values[name], reference_acts[name]) == drawn, name

    edge = edge_setup(tiny_llama, PROMPTS, "resample", REFERENCE, seed=seed)
    reference_run = edge_setup(tiny_llama, REFERENCE, "zero")  # its clean run: the reference's outputs
    assert rows_of(edge.target_outs, reference_run.clean_outs) == drawn
    assert len(set(drawn)) > 1  # rows of different prompts: a test that can tell draws apart


def same_circuit_as_edges(model, heads) -> EdgeCircuit:
    """The edge circuit of the node circuit ``Circuit(heads)`` (every MLP kept): every edge out of
    the embedding, the MLPs and ``heads``; the other heads' edges carry the ablation's values."""
    dropped = {f"L{layer}H{head}" for layer in range(model.cfg.n_layers)
               for head in range(model.cfg.n_heads)} - set(heads)
    return EdgeCircuit([label for label in edge_graph(model).labels
                        if label.partition("→")[0].strip() not in dropped])


@pytest.mark.parametrize("ablation, seed", [("mean", 0), *(("resample", seed) for seed in SEEDS)])
def test_node_and_edge_circuits_of_the_same_heads_agree(tiny_llama, ablation, seed):
    """A head ablated as a node (its ``hook_z`` replaced) and as a sender (its output replaced on
    every edge out of it) is the same replacement, since a head's output is linear in ``hook_z``:
    the circuit's metric agrees per prompt up to float32 rounding of the sums through the model,
    each sender's largest output summed (`tolerances.through_model`)."""
    node = faithfulness(tiny_llama, PROMPTS, Circuit(HEADS), ablation=ablation, reference=REFERENCE, seed=seed)
    edges = faithfulness(tiny_llama, PROMPTS, same_circuit_as_edges(tiny_llama, HEADS), ablation=ablation,
                         reference=REFERENCE, seed=seed)
    outs = edge_setup(tiny_llama, PROMPTS, ablation, REFERENCE, seed=seed).clean_outs
    tolerance = through_model(tiny_llama, float(outs.abs().amax(dim=(0, 1, 3)).sum()))
    np.testing.assert_allclose(edges.model_metric, node.model_metric, rtol=0, atol=tolerance)
    np.testing.assert_allclose(edges.circuit_metric, node.circuit_metric, rtol=0, atol=tolerance)
    # the ablation moves the metric by far more than the tolerance: the comparison can fail
    assert np.abs(node.circuit_metric - node.model_metric).max() > 100 * tolerance


def test_a_different_draw_gives_a_different_circuit_metric(tiny_llama):
    """Had the edge draw been another, the resample comparison above would fail: seeds move it."""
    metrics = [faithfulness(tiny_llama, PROMPTS, Circuit(HEADS), ablation="resample", reference=REFERENCE,
                            seed=seed).circuit_metric for seed in SEEDS]
    assert all(np.abs(a - b).max() > 1e-3 for a, b in itertools.pairwise(metrics))
