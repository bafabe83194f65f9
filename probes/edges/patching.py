"""Exact edge patching: the metric with some edges patched clean into the corrupted run.

Patching the edges ``S`` runs the corrupted prompts, and at every receiving end ``V`` replaces
each sender ``U`` with ``U → V`` in ``S`` by its clean output:

    input_V = input_V (this run) + Σ_{U → V ∈ S} (out_U(clean) − out_U(this run)),

everything downstream recomputed. For one edge nothing upstream of V changes, so this is V's
corrupted input plus ``out_U(clean) − out_U(corrupted)``: the intervention EAP estimates to
first order (`edge_attribution`). For a set, a sender reaches a patched end with its clean
output whatever happened upstream of it, so patching every edge gives the clean run exactly,
and patching every edge into one end is patching that end's whole input. The metric is
reported raw and normalised like `patch`: ``(patched − corrupted) / (clean − corrupted)``.

`edge_patch_scores` does this for each edge of a list on its own, many edges per pass (the
prompts repeated along the batch, one block of rows per edge: `probes.edges.runs`).
"""

from dataclasses import dataclass

import numpy as np

from ..evidence import probe
from ..path_patching import PatchedRuns
from ..results import Result
from .attribution import EdgeScores
from .graph import EdgeCircuit, edge_graph
from .setup import edge_setup


@dataclass(frozen=True, eq=False, repr=False)
class EdgePatching(PatchedRuns, Result):
    """The metric per prompt with ``edges`` patched clean into the corrupted run."""

    edges: tuple[str, ...]
    metric: str
    prompts: tuple[str, ...]
    clean: np.ndarray
    corrupted: np.ndarray
    patched: np.ndarray

    kind = "edge_patching"

    @property
    def title(self) -> str:
        return f"Edge patching of {EdgeCircuit(self.edges).label()}, clean into corrupted"

    def summary(self) -> dict:
        return {**super().summary(), "edges": len(self.edges)}

    def notes(self) -> list[str]:
        return ["each patched edge's receiving end reads its sender's clean output instead of its output in this "
                "run; every other edge, and everything downstream, is recomputed", *self.notes_text]

    def figure(self) -> dict:
        return {"type": "bar", "x": ["corrupted", "edges patched", "clean"],
                "y": [float(self.corrupted.mean()), float(self.patched.mean()), float(self.clean.mean())],
                "xlabel": "run", "ylabel": f"mean {self.metric}"}


ALL_EDGES_AT_MOST = 2000  # edges=None patches every edge only on a graph this small


def _edge_list(edges) -> list:
    if isinstance(edges, EdgeScores):
        raise ValueError("edges: an EdgeScores is a ranking, not a set of edges; give its top k, "
                         "scores.circuit(k), or labels such as ['L0H1 → L1H2.q']")
    if isinstance(edges, EdgeCircuit):
        return list(edges.edges)
    if isinstance(edges, str):
        return [edges]
    if not hasattr(edges, "__iter__"):
        raise ValueError(f"edges={edges!r}: give edge labels such as ['L0H1 → L1H2.q'], an EdgeCircuit, or [] "
                         "for none")
    return list(edges)


@probe
def edge_patch(model, prompts, edges, *, metric="logit_diff", prepend_bos: bool | None = None) -> EdgePatching:
    """The corrupted run with ``edges`` (labels ``"L5H5 → L9H6.q"``, an `EdgeCircuit`, or
    ``[]`` for none) patched clean into it, everything downstream recomputed; ``.recovery``
    is ``(patched − corrupted) / (clean − corrupted)``."""
    edges = _edge_list(edges)
    s = edge_setup(model, prompts, "patching", None, metric, 0, prepend_bos, "edge_patch")
    picks = s.graph.indices(edges)
    kept = np.zeros((1, s.graph.n_edges), dtype=bool)  # the edges carrying the clean run's signal
    kept[0, picks] = True
    patched = s.metric_with(kept, on="corrupted")[0]
    labels = tuple(s.graph.labels[i] for i in sorted(set(picks.tolist())))
    return EdgePatching(model=s.tokenized.model_name, prompt_set=prompts.name, edges=labels, metric=s.metric_name,
                        prompts=prompts.prompts, clean=s.clean_metric, corrupted=s.target_metric, patched=patched)


@probe
def edge_patch_scores(model, prompts, edges=None, *, metric="logit_diff",
                      prepend_bos: bool | None = None) -> EdgeScores:
    """Each edge of ``edges`` (default: every edge of the graph, on a graph of at most
    `ALL_EDGES_AT_MOST`) patched clean into the corrupted run on its own: ``EdgeScores`` with
    ``method="exact"``, score = mean patched − mean corrupted metric, the quantity
    `edge_attribution` estimates. Many edges per pass, each a whole forward pass's rows."""
    graph = edge_graph(model)
    if edges is None and graph.n_edges > ALL_EDGES_AT_MOST:
        raise ValueError(f"edges=None patches all {graph.n_edges} edges of {graph.model_name} one by one (each a "
                         "forward pass of the prompts: hours on a CPU); give the edges to check, e.g. "
                         "list(edge_attribution(model, prompts).top(200)['edge'])")
    edges = None if edges is None else _edge_list(edges)
    s = edge_setup(model, prompts, "patching", None, metric, 0, prepend_bos, "edge_patch_scores")
    picks = np.arange(graph.n_edges) if edges is None else graph.indices(edges)
    picks = np.array(list(dict.fromkeys(picks.tolist())), dtype=int)  # two names of one edge: scored once
    if not len(picks):
        raise ValueError("edges=[] names no edge; give labels such as ['L0H1 → L1H0.q'], or None for every edge")
    kept = np.zeros((len(picks), graph.n_edges), dtype=bool)
    kept[np.arange(len(picks)), picks] = True
    patched = s.metric_with(kept, on="corrupted").mean(axis=1)
    f_clean, f_corrupted = float(s.clean_metric.mean()), float(s.target_metric.mean())
    return EdgeScores(model=s.tokenized.model_name, prompt_set=prompts.name, method="exact", ablation="patching",
                      reference="corrupted prompts", metric=s.metric_name,
                      labels=tuple(graph.labels[i] for i in picks), scores=(patched - f_corrupted).astype(float),
                      f_clean=f_clean, f_target=f_corrupted, n_edges=graph.n_edges,
                      kv_group=graph.n_heads // graph.n_kv)
