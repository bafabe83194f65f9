"""The Mechanistic Interpretability Benchmark's circuit format: export and import.

MIB's circuit track (Mueller et al. 2025) takes circuits as the JSON of hannamw/EAP-IG's
``Graph.to_json`` (``src/eap/graph.py``), which this module writes and reads:

    {"cfg": {"n_layers": 30, "n_heads": 9, "parallel_attn_mlp": false, "d_model": 576, ...},
     "nodes": {"input": {"in_graph": true}, "a0.h1": {"in_graph": false}, "m0": {...}, "logits": {...}},
     "edges": {"input->a0.h1<q>": {"score": 0.12, "in_graph": true}, "a0.h1->m0": {...},
               "m0->a2.h3<v>": {...}, "m29->logits": {...}}}

Nodes: ``input`` (our ``embed``), ``a{layer}.h{head}``, ``m{layer}``, ``logits``; an edge into a
head names the head's input ``<q>``, ``<k>`` or ``<v>``; ``Graph.from_json`` reads a node's
``in_graph`` and an edge's ``score`` and ``in_graph``.

Grouped-query attention: EAP-IG's graph gives every query head its own k and v ends, but the
model computes a key and a value once per key/value head, from one input. Export writes a key or
value edge once per query head sharing that key/value head, each copy with the edge's score
and membership, so a circuit read back is the one written (and MIB's top-n, which picks edges by
score, keeps the copies together; the scores of the copies sum to group-size times the edge's).
Import maps the copies back to the shared end; copies that disagree on ``in_graph`` are a
circuit the model cannot run (one key/value input both kept and replaced), refused unless
``kv="any"`` (kept if any copy is) or ``kv="all"`` (kept if all are); the score read is the
copies' mean.

Scores keep hannamw/EAP-IG's sign: its EAP scores the clean run with the edge corrupted,
``(corrupted − clean) · ∂metric/∂input``, where `edge_attribution` scores the corrupted run
with the edge restored, ``(clean − corrupted) · ∂metric/∂input``: the same quantity to first
order, with the opposite sign. Export negates our scores and import negates them back, so an
edge that helps the metric has a negative score in the file, as in EAP-IG's own output.
"""

import json
from pathlib import Path

import numpy as np

from ..sites import units_per_layer
from .attribution import EdgeScores
from .graph import EdgeCircuit, edge_graph

KV_RULES = ("exact", "any", "all")


def _sender_name(sender: tuple) -> str:
    return {"embed": "input", "head": "a{1}.h{2}", "mlp": "m{1}"}[sender[0]].format(*sender)


def _end_names(end: tuple, group: int) -> list[str]:
    if end[0] == "logits":
        return ["logits"]
    if end[0] == "mlp":
        return [f"m{end[1]}"]
    heads = [end[2]] if end[0] == "q" else range(end[2] * group, (end[2] + 1) * group)
    return [f"a{end[1]}.h{h}<{end[0]}>" for h in heads]


def mib_names(model) -> list[list[str]]:
    """Per edge of the model's `EdgeGraph`, its MIB edge names (several for a key/value edge
    under grouped-query attention)."""
    graph = edge_graph(model)
    group = graph.n_heads // graph.n_kv
    senders = [_sender_name(s) for s in graph.senders]
    ends = [_end_names(e, group) for e in graph.ends]
    return [[f"{senders[s]}->{name}" for name in ends[e]] for s, e in zip(graph.sender_of, graph.end_of)]


def to_mib(model, ranking, path=None, *, circuit=None) -> dict:
    """MIB's circuit JSON (see the module) from ``ranking``: an `EdgeScores` (its scores; edges it
    did not score get 0) or an `EdgeCircuit` (score 1 on its edges). ``circuit``: the edges marked
    ``in_graph`` (an `EdgeCircuit`, or k: the top k by |score|; default the `EdgeCircuit` given,
    else none). Written to ``path`` when given; returned as a dict."""
    graph = edge_graph(model)
    scores = np.zeros(graph.n_edges)
    if isinstance(ranking, EdgeScores):
        scores[graph.indices(ranking.labels)] = -np.nan_to_num(ranking.scores)  # EAP-IG's sign (see the module)
        if isinstance(circuit, (int, np.integer)):
            circuit = ranking.circuit(int(circuit))
    elif isinstance(ranking, EdgeCircuit):
        scores[ranking.indices(model)] = 1.0
        circuit = ranking if circuit is None else circuit
    else:
        raise ValueError("ranking: give an EdgeScores (edge_attribution, edge_patch_scores) or an EdgeCircuit")
    if circuit is not None and not isinstance(circuit, EdgeCircuit):
        raise ValueError("circuit: give an EdgeCircuit, or a number of top edges k")
    kept = np.zeros(graph.n_edges, dtype=bool)
    if circuit is not None:
        kept[circuit.indices(model)] = True
    edges = {}
    nodes = {"input": False}
    for layer in range(graph.n_layers):
        nodes.update({f"a{layer}.h{h}": False for h in range(graph.n_heads)} | {f"m{layer}": False})
    nodes["logits"] = False
    for i, names in enumerate(mib_names(model)):
        for name in names:
            edges[name] = {"score": float(scores[i]), "in_graph": bool(kept[i])}
            if kept[i]:
                parent, child = name.split("->")
                nodes[parent] = nodes[child.split("<")[0]] = True
    cfg = model.cfg
    form = {"cfg": {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "parallel_attn_mlp": graph.parallel,
                    "d_model": cfg.d_model, "n_key_value_heads": units_per_layer(model, "kv"),
                    "model_name": getattr(cfg, "model_name", None)},
            "nodes": {name: {"in_graph": value} for name, value in nodes.items()}, "edges": edges}
    if path is not None:
        Path(path).write_text(json.dumps(form))
    return form


def from_mib(model, source, *, kv: str = "exact") -> tuple[EdgeCircuit, EdgeScores]:
    """An MIB circuit JSON (a path or the dict) as ``(EdgeCircuit of its in_graph edges,
    EdgeScores of its scores)`` on ``model``; ``kv``: how per-query-head key/value copies that
    disagree are read (see the module)."""
    if kv not in KV_RULES:
        raise ValueError(f"kv {kv!r}: choose one of {', '.join(KV_RULES)} (exact: the copies must agree)")
    form = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    missing = [key for key in ("cfg", "nodes", "edges") if key not in form]
    if missing:
        raise ValueError(f"not an MIB circuit: the JSON lacks {missing} (it needs 'cfg', 'nodes' and 'edges')")
    cfg, graph = form["cfg"], edge_graph(model)
    for key, ours in (("n_layers", graph.n_layers), ("n_heads", graph.n_heads)):
        if key in cfg and int(cfg[key]) != ours:
            raise ValueError(f"the MIB circuit is for a model with {key}={cfg[key]}, {graph.model_name} has {ours}")
    names = mib_names(model)
    where = {name: i for i, group in enumerate(names) for name in group}
    unknown = [name for name in form["edges"] if name not in where]
    if unknown:
        raise ValueError(f"the MIB circuit names {len(unknown)} edge(s) {graph.model_name} lacks, e.g. "
                         f"{unknown[0]!r}: edges are 'input->a0.h1<q>', 'a0.h1->m0', 'm0->logits'")
    scores = np.zeros(graph.n_edges)
    kept = np.zeros(graph.n_edges, dtype=bool)
    for i, group in enumerate(names):
        entries = [form["edges"][name] for name in group if name in form["edges"]]
        if not entries:
            continue
        flags = [bool(e.get("in_graph", False)) for e in entries]
        if kv == "exact" and len(set(flags)) > 1:
            raise ValueError(f"{graph.labels[i]!r}: the MIB circuit keeps the edge for some query heads sharing the "
                             f"key/value head and not others ({', '.join(group)}); one key/value input cannot be "
                             "both; pass kv='any' or kv='all' to choose")
        kept[i] = any(flags) if kv != "all" else all(flags)
        scores[i] = -float(np.mean([e.get("score", 0.0) for e in entries]))  # back to ours (see the module)
    circuit = EdgeCircuit.from_indices(graph, np.nonzero(kept)[0])
    result = EdgeScores(model=getattr(model.cfg, "model_name", "model"), prompt_set="MIB circuit", method="mib",
                        ablation="unknown", reference="MIB circuit", metric="score", labels=graph.labels,
                        scores=scores, f_clean=float("nan"), f_target=float("nan"), n_edges=graph.n_edges)
    return circuit, result
