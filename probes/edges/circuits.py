"""Edge circuits judged like node circuits: faithfulness, random edge sets, the curve.

An `EdgeCircuit` keeps its edges; every other edge carries its replacement (`probes.edges.setup`:
the corrupted prompts' sender output with ``ablation="patching"``, as EAP-IG and MIB do, or a
mean, a resample, 0), on the clean run. So F(C) is the metric when only the circuit's edges
carry the clean signal, F(∅) when none does (with ``"patching"``: the corrupted run), and the
criteria are those of node circuits (`probes.circuits`): F(C)/F(M), the normalised
``(F(C) − F(∅)) / (F(M) − F(∅))``, random edge sets of the same size, and MIB's curve over
the fraction of edges kept, its area CPR and its distance from 1 CMD (`probes.circuits.curve`:
the same grid, sizes and trapezoids). Every edge set of a probe is evaluated in the same
batched passes (`probes.edges.runs.masked_logits`), many masks per pass. The default ablation is
that of every circuit criterion (`probes.circuits.spec.judged_with`): the one a circuit taken
from a ranking (``scores.circuit(k)``, or an `EdgeScores` ranking) was found with, otherwise
`probes.circuits.spec.DEFAULT_ABLATION`; the notes say which.
"""

from dataclasses import dataclass

import numpy as np

from ..circuits.curve import FaithfulnessCurve, _ranked_labels
from ..circuits.faithful import Faithfulness, RandomCircuitTest
from ..results import Result
from .graph import EdgeCircuit, edge_graph, edge_label, parse_edge


def _ablation_note(s) -> str:
    return ("outside the circuit each edge carries its sender's output on the corrupted prompt (edge patching)"
            if s == "patching" else f"outside the circuit each edge carries its sender's {s}-ablated output")


@dataclass(frozen=True, eq=False, repr=False)
class EdgeFaithfulness(Faithfulness):
    """`Faithfulness` of an `EdgeCircuit`: ``components`` are its edges."""

    kind = "edge_circuit_faithfulness"

    def _ablation_notes(self) -> list[str]:
        return [_ablation_note(self.ablation) + ("" if self.ablation in ("patching", "zero")
                                                 else f" over {self.reference!r}"),
                "each receiving end reads the circuit's senders as they are in this run, the others replaced"]


@dataclass(frozen=True, eq=False, repr=False)
class EdgeRandomCircuitTest(RandomCircuitTest):
    kind = "edge_random_circuit_test"

    def notes(self) -> list[str]:
        return [f"random edge sets: as many edges, drawn uniformly without replacement from the whole graph, "
                f"seed {self.seed}", *self.notes_text]


@dataclass(frozen=True, eq=False, repr=False)
class EdgeFaithfulnessCurve(FaithfulnessCurve):
    kind = "edge_faithfulness_curve"

    def notes(self) -> list[str]:
        return [note.replace("components", "edges") for note in super().notes()]


def as_edge_circuit(circuit) -> EdgeCircuit:
    if isinstance(circuit, EdgeCircuit):
        return circuit
    if isinstance(circuit, Result):
        name = type(circuit).__name__
        raise ValueError(f"{'an' if name[0] in 'AEIOU' else 'a'} {name} is a ranking, not a circuit: take its top "
                         "k with scores.circuit(k)")
    return EdgeCircuit(circuit)


def edge_order(model, ranking) -> tuple[tuple[str, ...], np.ndarray, int]:
    """The edge engine's `CircuitRun.order`: every edge label in graph order, the ranking over
    them as indices (an `EdgeScores` by |score|, or labels best first; then the rest in graph
    order), and how many were ranked."""
    if isinstance(ranking, EdgeCircuit):
        raise ValueError("ranking: an EdgeCircuit is a set of edges, not an order; give an EdgeScores, or its "
                         "edges best first as a list")
    labels = _ranked_labels(ranking)
    if not labels:
        raise ValueError("ranking is empty: give edges best first, e.g. ['L0H1 → logits', ...], or an EdgeScores")
    graph = edge_graph(model)
    ranked = graph.indices(labels)
    if len(set(ranked.tolist())) < len(ranked):
        twice = sorted({edge_label(*parse_edge(l)) for l, i in zip(labels, ranked) if (ranked == i).sum() > 1})
        raise ValueError(f"ranking names {', '.join(twice[:5])} more than once; list each edge once")
    return graph.labels, np.concatenate([ranked, np.setdiff1d(np.arange(graph.n_edges), ranked)]), len(ranked)
