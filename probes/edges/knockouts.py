"""Completeness and minimality of an edge circuit (Wang et al. 2022), knocking out edges.

The node criteria of `probes.circuits.knockouts`, with edges for components: K is a set of
the circuit's edges, ``M \\ K`` the model with K's edges replaced, ``C \\ K`` the circuit without
them (everything outside C replaced too). Same Ks (∅, seeded random halves, a greedy search for
the worst K), same result types, every K of a probe in the same batched masked passes, and the
same default ablation (`probes.circuits.spec.judged_with`: the one the circuit was found with,
else mean).
"""

import numpy as np

from ..circuits.knockouts import Completeness, Minimality, completeness_of, minimality_of
from ..circuits.spec import judged_with
from ..evidence import probe
from ..input_errors import check_count
from .circuits import as_edge_circuit
from .graph import is_edge_circuit
from .setup import edge_setup


def _masks(s, circuit, ks, with_model: bool) -> np.ndarray:
    """Replaced-edge masks: per K, C \\ K (and M \\ K when ``with_model``)."""
    graph = s.graph
    inside = np.zeros(graph.n_edges, dtype=bool)
    inside[circuit.indices(s.model)] = True
    rows = []
    for k in ks:
        knocked = np.zeros(graph.n_edges, dtype=bool)
        if k:
            knocked[graph.indices(k)] = True
        rows.append(~inside | knocked)
        if with_model:
            rows.append(knocked)
    return np.array(rows)


def _checked(circuit):
    circuit = as_edge_circuit(circuit)
    if not len(circuit):
        raise ValueError("the edge circuit is empty: name at least one edge, e.g. EdgeCircuit(['L0H1 → logits'])")
    return circuit


@probe
def edge_completeness(model, prompts, circuit, *, reference=None, ablation: str | None = None, metric="logit_diff",
                      n_random: int = 10, greedy_steps: int | None = None, seed: int = 0,
                      prepend_bos: bool | None = None) -> Completeness:
    """|F(C \\ K) − F(M \\ K)| over K = ∅, ``n_random`` random halves of the circuit's edges and a
    greedy search (``greedy_steps`` additions, default half the circuit): `completeness` on edges."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (10 is the default)")
    if greedy_steps is not None:
        greedy_steps = check_count("greedy_steps", greedy_steps, 0, "the greedy search's additions (0: none)")
    circuit = _checked(circuit)
    judged = judged_with(circuit.found_with, ablation, reference, prompts)
    s = edge_setup(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos, "edge_completeness")
    circuit = circuit.on(model)
    found = completeness_of(circuit.edges, n_random, greedy_steps, np.random.default_rng(seed),
                            lambda ks: s.evaluate(_masks(s, circuit, ks, True)))
    return Completeness(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(), **found,
                        notes_text=(judged.note(s.reference),))


@probe
def edge_minimality(model, prompts, circuit, *, reference=None, ablation: str | None = None, metric="logit_diff",
                    n_random: int = 5, seed: int = 0, prepend_bos: bool | None = None) -> Minimality:
    """For each edge v of the circuit, the largest |F(C \\ K) − F(C \\ (K ∪ {v}))| over K = ∅ and
    ``n_random`` random subsets of the other edges: `minimality` on edges."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (5 is the default)")
    circuit = _checked(circuit)
    judged = judged_with(circuit.found_with, ablation, reference, prompts)
    s = edge_setup(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos, "edge_minimality")
    circuit = circuit.on(model)
    found = minimality_of(circuit.edges, n_random, np.random.default_rng(seed),
                          lambda ks: s.evaluate(_masks(s, circuit, ks, False)).mean(axis=1))
    return Minimality(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(), **found,
                      notes_text=(judged.note(s.reference),))


__all__ = ["edge_completeness", "edge_minimality", "is_edge_circuit"]
