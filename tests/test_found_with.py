"""A circuit is judged the way it was found unless told otherwise (issue 31, step 2), on tiny models.

A circuit taken from a ranking (``EdgeScores.circuit(k)``, ``Patching.circuit(k)``) carries
``found_with``, the ablation (and reference) its ranking ran with; every circuit criterion,
node and edge alike, takes ``ablation=None`` and resolves it to that, or else to the one
default, ``DEFAULT_ABLATION``; an explicit ``ablation=`` always wins; each Result's notes say
which ablation judged the circuit and why.
"""

import inspect

import numpy as np
import pytest

from circuitcheck.edges import EdgeCircuit, edge_attribution
from circuitcheck.probes import PromptSet, patch
from circuitcheck.probes.ablation_values import MissingCorruptedPromptsError
from circuitcheck.probes import (Circuit, completeness, faithfulness, faithfulness_curve, minimality,
                                 random_circuit_test)
from circuitcheck.probes.circuits.spec import DEFAULT_ABLATION, FoundWith, ReferenceNeededError

from .test_circuits import OTHER
from .test_patching import PROMPTS

CRITERIA = [faithfulness, random_circuit_test, completeness, minimality, faithfulness_curve]


def judged_note(result) -> str:
    [note] = [n for n in result.notes() if n.startswith("judged with ")]
    return note


@pytest.fixture(scope="module")
def eap(tiny_llama):
    return edge_attribution(tiny_llama, PROMPTS)  # counterfactual: ablation="patching", the corrupted twins


def test_the_three_line_chain_gives_the_counterfactual_verdict_and_says_so(tiny_llama, eap):
    circuit = eap.circuit(12)
    assert circuit.found_with.ablation == "patching" and circuit == EdgeCircuit(list(eap.top(12)["edge"]))
    chained = faithfulness(tiny_llama, PROMPTS, circuit)
    counterfactual = faithfulness(tiny_llama, PROMPTS, EdgeCircuit(circuit.edges), ablation="patching")
    mean = faithfulness(tiny_llama, PROMPTS, EdgeCircuit(circuit.edges), ablation="mean")
    assert chained.ablation == "patching"
    np.testing.assert_allclose(chained.circuit_metric, counterfactual.circuit_metric)
    np.testing.assert_allclose(chained.empty_metric, counterfactual.empty_metric)
    assert not np.allclose(chained.empty_metric, mean.empty_metric)  # the ablation decides the verdict
    note = judged_note(chained)
    assert note.startswith("judged with counterfactual ablation (ablation='patching'")
    assert "the ablation the circuit was found with, by the top 12 of eap edge scores on 'IOI pair'" in note
    assert note in chained.evidence()["notes"]  # the report shows it


def test_an_explicit_ablation_always_wins(tiny_llama, eap):
    circuit = eap.circuit(12)
    asked = faithfulness(tiny_llama, PROMPTS, circuit, ablation="mean")
    plain = faithfulness(tiny_llama, PROMPTS, EdgeCircuit(circuit.edges), ablation="mean")
    assert asked.ablation == "mean"
    np.testing.assert_allclose(asked.circuit_metric, plain.circuit_metric)
    note = judged_note(asked)
    assert note.startswith("judged with mean ablation over 'IOI pair', as asked (ablation='mean')")
    assert "found with counterfactual ablation (ablation='patching')" in note
    zero = faithfulness(tiny_llama, PROMPTS, circuit, ablation="zero")
    assert zero.ablation == "zero" and "as asked (ablation='zero')" in judged_note(zero)


def test_every_edge_criterion_judges_a_found_circuit_as_found(tiny_llama, eap):
    circuit = eap.circuit(6)
    test = random_circuit_test(tiny_llama, PROMPTS, circuit, n=3)
    same = random_circuit_test(tiny_llama, PROMPTS, circuit, n=3, ablation="patching")
    np.testing.assert_allclose(test.random_metric, same.random_metric)
    complete = completeness(tiny_llama, PROMPTS, circuit, n_random=2, greedy_steps=1)
    np.testing.assert_allclose(complete.gaps, completeness(tiny_llama, PROMPTS, circuit, n_random=2, greedy_steps=1,
                                                           ablation="patching").gaps)
    minimal = minimality(tiny_llama, PROMPTS, circuit, n_random=1)
    np.testing.assert_allclose(minimal.change, minimality(tiny_llama, PROMPTS, circuit, n_random=1,
                                                          ablation="patching").change)
    for result in (test, test.parts[0], complete, minimal):
        assert "judged with counterfactual ablation" in judged_note(result), result.kind
    curve = faithfulness_curve(tiny_llama, PROMPTS, eap, sizes=[2, 10], n_random=2)  # the ranking's own ablation
    assert curve.ablation == "patching" and "the ablation the circuit was found with" in judged_note(curve)


def test_a_node_circuit_from_a_patching_sweep_is_judged_with_counterfactual_ablation(tiny_llama):
    sweep = patch(tiny_llama, PROMPTS, "head_out")
    circuit = sweep.circuit(3)
    assert set(circuit.heads) == set(sweep.top(3)["head"]) and circuit.mlps is None
    assert circuit.found_with.ablation == "patching" and circuit == Circuit(circuit.heads)  # not compared
    found = faithfulness(tiny_llama, PROMPTS, circuit)
    counterfactual = faithfulness(tiny_llama, PROMPTS, Circuit(circuit.heads), ablation="patching")
    assert found.ablation == "patching"
    np.testing.assert_allclose(found.circuit_metric, counterfactual.circuit_metric)
    assert "found with, by activation patching of head_out on 'IOI pair'" in judged_note(found)
    asked = faithfulness(tiny_llama, PROMPTS, circuit, ablation="mean")
    assert asked.ablation == "mean" and "as asked (ablation='mean')" in judged_note(asked)
    np.testing.assert_allclose(asked.circuit_metric,
                               faithfulness(tiny_llama, PROMPTS, Circuit(circuit.heads)).circuit_metric)
    # a subset of a found circuit is judged the same way, and so is the sweep as a curve's ranking
    assert faithfulness(tiny_llama, PROMPTS, circuit.without([circuit.heads[0]])).ablation == "patching"
    curve = faithfulness_curve(tiny_llama, PROMPTS, sweep, sizes=[1, 2], n_random=2)
    assert curve.ablation == "patching"
    # a reference given for a circuit found with counterfactual ablation asks for the default over it
    over = faithfulness(tiny_llama, PROMPTS, circuit, reference=OTHER)
    assert over.ablation == DEFAULT_ABLATION and over.reference == OTHER.name
    assert "as reference= was given" in judged_note(over)
    mlps = patch(tiny_llama, PROMPTS, "mlp_out_all_pos").circuit(1)
    assert mlps.heads == () and len(mlps.mlps) == 1 and mlps.found_with.ablation == "patching"


def test_patching_circuit_refuses_what_has_no_top_k(tiny_llama):
    sweep = patch(tiny_llama, PROMPTS, "head_out")
    with pytest.raises(ValueError, match="ranks sites, not whole components"):
        patch(tiny_llama, PROMPTS, "resid_pre").circuit(2)
    with pytest.raises(ValueError, match="k=9: this head_out sweep patched 8 components"):
        sweep.circuit(9)
    with pytest.raises(ValueError, match="k=0: give a whole number of at least 1"):
        sweep.circuit(0)
    same = PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=PROMPTS.prompts, name="unchanged")
    with pytest.raises(ValueError, match="recovery is NaN"):
        patch(tiny_llama, same, "head_out").circuit(2)


def test_the_one_default_judges_a_plain_circuit_node_or_edge(tiny_llama):
    assert DEFAULT_ABLATION == "mean"
    for criterion in CRITERIA:  # no criterion states a default of its own
        assert inspect.signature(criterion).parameters["ablation"].default is None, criterion.__name__
    node = faithfulness(tiny_llama, PROMPTS, ["L0H1", "L1H2"])
    edge = faithfulness(tiny_llama, PROMPTS, ["L0H1 → logits", "L1H2 → logits"])
    direct = faithfulness(tiny_llama, PROMPTS, EdgeCircuit(["L0H1 → logits", "L1H2 → logits"]))
    for result in (node, edge, direct):
        assert result.ablation == "mean"
        assert judged_note(result).startswith("judged with mean ablation over 'IOI pair': the default ablation of "
                                              "the circuit criteria ('mean'")
    np.testing.assert_allclose(edge.circuit_metric, direct.circuit_metric)
    curve = faithfulness_curve(tiny_llama, PROMPTS, ["L0H1", "L1H2"], sizes=[1, 2], n_random=2)
    assert curve.ablation == "mean" and "the default ablation" in judged_note(curve)


def test_a_circuit_found_over_a_named_reference_asks_for_it(tiny_llama):
    scores = edge_attribution(tiny_llama, PROMPTS, ablation="mean", reference=OTHER)
    circuit = scores.circuit(5)
    assert circuit.found_with == FoundWith("mean", OTHER.name, by=circuit.found_with.by)
    with pytest.raises(ReferenceNeededError, match=f"pass reference=<the PromptSet {OTHER.name!r}>"):
        faithfulness(tiny_llama, PROMPTS, circuit)
    judged = faithfulness(tiny_llama, PROMPTS, circuit, reference=OTHER)
    assert judged.ablation == "mean" and judged.reference == OTHER.name
    assert "the ablation the circuit was found with" in judged_note(judged)
    # over the ranked prompts themselves: judged over the prompts it is judged on, no reference needed
    own = edge_attribution(tiny_llama, PROMPTS, ablation="mean").circuit(5)
    assert own.found_with.reference is None and faithfulness(tiny_llama, PROMPTS, own).ablation == "mean"
    carried = EdgeCircuit(circuit.edges, found_with=FoundWith("mean", OTHER.name, OTHER, "a ranking over OTHER"))
    assert faithfulness(tiny_llama, PROMPTS, carried).reference == OTHER.name  # a carried set is used


def test_a_counterfactual_circuit_on_prompts_without_twins_says_how_to_judge_it(tiny_llama, eap):
    bare = PromptSet(PROMPTS.prompts, PROMPTS.answers, name="no twins")
    with pytest.raises(MissingCorruptedPromptsError, match="found with counterfactual ablation, by the top 4"):
        faithfulness(tiny_llama, bare, eap.circuit(4))
    assert faithfulness(tiny_llama, bare, eap.circuit(4), ablation="mean").ablation == "mean"


def test_found_with_survives_binding_to_the_model(tiny_llama, eap):
    circuit = eap.circuit(4)
    assert circuit.on(tiny_llama).found_with == circuit.found_with
    assert hash(circuit) == hash(EdgeCircuit(circuit.edges))
