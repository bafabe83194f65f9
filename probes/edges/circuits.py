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

from ..circuits.curve import MIB_FRACTIONS, FaithfulnessCurve, _normalised, check_ordered, curve_sizes
from ..circuits.faithfulness import (P_BELOW_005, Faithfulness, RandomCircuitTest, rounding_floor,
                                     undefined_reason)
from ..circuits.spec import FoundWith, Judged, judged_with
from ..evidence import probe
from ..input_errors import check_count
from .attribution import EdgeScores
from .graph import EdgeCircuit, edge_label, is_edge_circuit, parse_edge
from .setup import edge_setup

__all__ = ["edge_faithfulness", "edge_random_circuit_test", "edge_faithfulness_curve", "is_edge_circuit",
           "MIB_FRACTIONS"]


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
    if isinstance(circuit, EdgeScores):
        raise ValueError("an EdgeScores is a ranking, not a circuit: take its top k with scores.circuit(k)")
    return EdgeCircuit(circuit)


def _kept(s, circuits) -> np.ndarray:
    masks = np.zeros((len(circuits), s.graph.n_edges), dtype=bool)
    for row, picks in enumerate(circuits):
        masks[row, picks] = True
    return masks


def ranking_found_with(ranking) -> FoundWith | None:
    """How an `EdgeScores` ranking was found (its ablation and reference), as its circuits carry."""
    if not isinstance(ranking, EdgeScores):
        return None
    return FoundWith.of_ranking(ranking.ablation, ranking.reference, ranking.prompt_set,
                                f"{ranking.method} edge scores on {ranking.prompt_set!r}")


def _faithfulness(s, prompts, circuit: EdgeCircuit, judged: Judged, others=()):
    circuit = circuit.on(s.model)
    picks = circuit.indices(s.model)
    if not len(picks):
        raise ValueError("the edge circuit is empty: name at least one edge, e.g. EdgeCircuit(['L0H1 → logits'])")
    values = s.evaluate(~_kept(s, [picks, [], *others]))
    result = EdgeFaithfulness(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(),
                              components=circuit.edges, ablation=s.ablation, reference=s.reference,
                              metric=s.metric_name, prompts=prompts.prompts, model_metric=s.clean_metric,
                              circuit_metric=values[0], empty_metric=values[1],
                              rounding=rounding_floor(s.model, s.clean_metric, values[1]),
                              notes_text=(judged.note(s.reference),))
    return result, values[2:]


@probe
def edge_faithfulness(model, prompts, circuit, *, reference=None, ablation: str | None = None,
                      metric="logit_diff", seed: int = 0, prepend_bos: bool | None = None) -> Faithfulness:
    """F(C) with only the `EdgeCircuit`'s edges carrying the clean run (every other edge its
    replacement: ``ablation`` ``"patching"``, ``"mean"`` over ``reference``, ``"resample"``,
    ``"zero"``; None: the one the circuit was found with, else the default of every circuit
    criterion, mean), against F(M) and F(∅); a `Faithfulness` whose components are edges."""
    circuit = as_edge_circuit(circuit)
    judged = judged_with(circuit.found_with, ablation, reference, prompts)
    s = edge_setup(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos, "edge_faithfulness")
    return _faithfulness(s, prompts, circuit, judged)[0]


@probe
def edge_random_circuit_test(model, prompts, circuit, *, n: int = 100, seed: int = 0, reference=None,
                             ablation: str | None = None, metric="logit_diff",
                             prepend_bos: bool | None = None) -> RandomCircuitTest:
    """The `EdgeCircuit` against ``n`` seeded random edge sets of its size, all in batched
    passes; ``.p_value``, ``.beats_random(0.95)`` (p < 0.05 needs n ≥ 20); ``ablation`` as in
    `edge_faithfulness`."""
    n = check_count("n", n, 1, f"compare against random edge sets: 100 is usual, and p < 0.05 needs n >= {P_BELOW_005}")
    circuit = as_edge_circuit(circuit)
    judged = judged_with(circuit.found_with, ablation, reference, prompts)
    s = edge_setup(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos,
                   "edge_random_circuit_test")
    circuit = circuit.on(model)  # two names of one edge are one edge: random sets of its true size
    generator = np.random.default_rng(seed)
    total = s.graph.n_edges
    randoms = [np.sort(generator.choice(total, size=len(circuit), replace=False)) for _ in range(n)]
    candidate, values = _faithfulness(s, prompts, circuit, judged, randoms)
    labels = tuple(EdgeCircuit.from_indices(s.graph, r).label() for r in randoms)
    return EdgeRandomCircuitTest(model=candidate.model, prompt_set=prompts.name, circuit=circuit.label(),
                                 f_model=candidate.f_model, f_candidate=candidate.f_circuit, random_circuits=labels,
                                 random_metric=values.mean(axis=1), seed=seed, parts=(candidate,),
                                 notes_text=candidate.notes_text)


def edge_order(graph, ranking) -> tuple[list[int], int]:
    """Every edge index, the ranked ones first (an `EdgeScores` by |score|, or labels best
    first), then the rest in graph order; and how many were ranked."""
    if isinstance(ranking, EdgeCircuit):
        raise ValueError("ranking: an EdgeCircuit is a set of edges, not an order; give an EdgeScores, or its "
                         "edges best first as a list")
    if not isinstance(ranking, EdgeScores):
        check_ordered(ranking)
    labels = ranking.ranking() if isinstance(ranking, EdgeScores) else list(ranking)
    if not labels:
        raise ValueError("ranking is empty: give edges best first, e.g. ['L0H1 → logits', ...], or an EdgeScores")
    ranked = graph.indices(labels)
    if len(set(ranked.tolist())) < len(ranked):
        twice = sorted({edge_label(*parse_edge(l)) for l, i in zip(labels, ranked) if (ranked == i).sum() > 1})
        raise ValueError(f"ranking names {', '.join(twice[:5])} more than once; list each edge once")
    rest = np.setdiff1d(np.arange(graph.n_edges), ranked)
    return ranked.tolist() + rest.tolist(), len(ranked)


@probe
def edge_faithfulness_curve(model, prompts, ranking, *, sizes=None, reference=None, ablation: str | None = None,
                            metric="logit_diff", seed: int = 0, n_random: int = 20,
                            prepend_bos: bool | None = None) -> FaithfulnessCurve:
    """Normalised faithfulness of the top-k edges of ``ranking`` (an `EdgeScores`, by |score|, or
    edge labels best first) at each size (fractions of all edges, default MIB's grid, or
    counts), with CPR (area under f) and CMD (area under |1 − f|) over the fraction of edges,
    and the same for ``n_random`` seeded random orders; every circuit in batched passes.
    ``ablation=None``: an `EdgeScores` ranking's own ablation, else the default (mean)."""
    n_random = check_count("n_random", n_random, 1, "the random orders the curve is compared with, e.g. 20")
    judged = judged_with(ranking_found_with(ranking), ablation, reference, prompts)
    s = edge_setup(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos,
                   "edge_faithfulness_curve")
    graph = s.graph
    order, n_ranked = edge_order(graph, ranking)
    counts = curve_sizes(sizes, len(order))
    generator = np.random.default_rng(seed)
    orders = [np.array(order)] + [generator.permutation(graph.n_edges) for _ in range(n_random)]
    circuits = [[]] + [o[:k] for o in orders for k in counts]
    per_prompt = s.evaluate(~_kept(s, circuits)).astype(float)
    values = per_prompt.mean(axis=1)
    f_model, f_empty = float(s.clean_metric.mean()), float(values[0])
    undefined = undefined_reason(model, f_model, f_empty, s.clean_metric, per_prompt[0])
    curves = _normalised(values[1:], f_model, f_empty, undefined).reshape(1 + n_random, len(counts))
    labels = graph.labels
    return EdgeFaithfulnessCurve(
        model=s.tokenized.model_name, prompt_set=prompts.name, ranking=tuple(labels[i] for i in order),
        n_ranked=n_ranked, ablation=s.ablation, reference=s.reference, metric=s.metric_name,
        sizes=np.array(counts), fractions=np.array(counts) / len(order), circuit_metric=values[1:1 + len(counts)],
        faithfulness=curves[0], random_faithfulness=curves[1:].mean(axis=0), random_runs=curves[1:],
        f_model=f_model, f_empty=f_empty, seed=seed, undefined=undefined,
        notes_text=(judged.note(s.reference),))
