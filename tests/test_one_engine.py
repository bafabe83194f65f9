"""One set of circuit criteria over one run protocol (issue 31, step 1): node and edge circuits are
judged by the same functions, through two engines that implement `CircuitRun` with one
constructor signature and one mask polarity (a circuit is what is *kept*)."""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import circuitcheck
from circuitcheck.probes import Circuit, criteria, faithfulness, random_circuit_test
from circuitcheck.probes.circuits.engine import Setup
from circuitcheck.probes.circuits.protocol import CircuitRun
from circuitcheck.probes.edges import EdgeCircuit, edge_graph
from circuitcheck.probes.edges.setup import EdgeSetup

from .test_patching import PROMPTS
from .tolerances import through_model

PROBES = Path(circuitcheck.probes.__file__).parent


def test_each_criterion_is_written_once_for_node_and_edge_circuits():
    defined = {}
    for path in PROBES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.removeprefix("edge_") in criteria.__all__:
                defined.setdefault(node.name, []).append(path.relative_to(PROBES).as_posix())
    assert defined == {name: ["criteria.py"] for name in criteria.__all__}


@pytest.mark.parametrize("engine", [Setup, EdgeSetup], ids=["node", "edge"])
def test_both_engines_start_with_the_protocols_signature(engine):
    assert inspect.signature(engine.start).parameters.keys() == \
        inspect.signature(CircuitRun.start).parameters.keys()


def test_both_runs_keep_what_a_circuit_names(tiny_llama):
    """One polarity: evaluating the empty circuit is F(∅) and the whole model is F(M), on both engines."""
    node = Setup.start(tiny_llama, PROMPTS, "mean", None, "logit_diff", 0, None, "test")
    edge = EdgeSetup.start(tiny_llama, PROMPTS, "mean", None, "logit_diff", 0, None, "test")
    assert isinstance(node, CircuitRun) and isinstance(edge, CircuitRun)
    everything = edge_graph(tiny_llama).labels
    full_node, full_edge = Circuit.full(tiny_llama, with_mlps=True), node.circuit(Circuit.full(tiny_llama, True))
    [f_node, f_empty_node] = node.evaluate([full_node, node.empty(full_node)])
    [f_edge, f_empty_edge] = edge.evaluate([np.arange(len(everything)), edge.empty(None)])
    # the same arithmetic as the plain pass in another batch (and, for edges, resumed at the last
    # block from the cached run): float32 rounding through the model, at the senders' size
    tolerance = through_model(tiny_llama, float(edge.clean_outs.abs().amax(dim=(0, 1, 3)).sum()))
    np.testing.assert_allclose(f_node, node.model_metric, rtol=0, atol=tolerance)
    np.testing.assert_allclose(f_edge, edge.model_metric, rtol=0, atol=tolerance)
    assert np.abs(f_empty_node - f_node).max() > 1e-2 and np.abs(f_empty_edge - f_edge).max() > 1e-2
    assert node.parts(full_edge) == full_node.components


def test_the_same_draws_for_node_and_edge_random_circuits(tiny_llama):
    """The random-circuit test's steps are one body: the seed draws the random circuits through the
    run, and both Results say how they were drawn."""
    node = random_circuit_test(tiny_llama, PROMPTS, ["L0H1", "L1H2"], n=3, ablation="zero")
    edge = random_circuit_test(tiny_llama, PROMPTS, EdgeCircuit(["L0H1 → logits", "L1H2 → logits"]), n=3,
                               ablation="zero")
    assert type(node).__name__ == "RandomCircuitTest" and type(edge).__name__ == "EdgeRandomCircuitTest"
    assert len(node.random_circuits) == len(edge.random_circuits) == 3
    assert all(" → " in label for label in edge.random_circuits)
    assert node.parts[0].notes_text == (faithfulness(tiny_llama, PROMPTS, ["L0H1", "L1H2"], ablation="zero")
                                        .notes_text)


def test_one_seed_draws_the_same_random_orders_for_every_ranking(tiny_llama):
    """The curve's random orders are permutations of the model's own order of components, not of
    the ranking: two rankings with one seed are compared against one baseline (the same circuits,
    in the same rows of the same batched passes, so the same numbers)."""
    from circuitcheck.probes import faithfulness_curve

    first = faithfulness_curve(tiny_llama, PROMPTS, ["L0H1", "L1H2"], sizes=[1, 3], n_random=2, ablation="zero")
    other = faithfulness_curve(tiny_llama, PROMPTS, ["L1H3", "L0H0", "L1H0"], sizes=[1, 3], n_random=2,
                               ablation="zero")
    np.testing.assert_array_equal(first.random_runs, other.random_runs)
    assert not np.array_equal(first.faithfulness, other.faithfulness)
