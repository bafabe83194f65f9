"""The Mechanistic Interpretability Benchmark's circuit format: export and import.

MIB's circuit track (Mueller et al. 2025) takes circuits as the JSON of hannamw/EAP-IG's
``Graph.to_json`` (``src/eap/graph.py``), which this module writes and reads:

    {"cfg": {"n_layers": 30, "n_heads": 9, "parallel_attn_mlp": false, "d_model": 576, ...},
     "nodes": {"input": {"in_graph": true}, "a0.h1": {"in_graph": false}, "m0": {...}, "logits": {...}},
     "edges": {"input->a0.h1<q>": {"score": 0.12, "in_graph": true}, "a0.h1->m0": {...},
               "m0->a2.h3<v>": {...}, "m29->logits": {...}}}

Nodes: ``input`` (our ``embed``), ``a{layer}.h{head}``, ``m{layer}``, ``logits``; an edge into a
head names the head's input ``<q>``, ``<k>`` or ``<v>``; ``Graph.from_json`` reads a node's
``in_graph`` and an edge's ``score`` and ``in_graph``. Import checks everything that decides
the graph against the model (``n_layers``, ``n_heads``, ``parallel_attn_mlp``, ``d_model``, and
``n_key_value_heads`` and ``original_architecture`` where the file has them), reads only JSON
booleans as ``in_graph`` and numbers as scores, and refuses neuron masks that keep part of a
component (circuitcheck's edge circuits are whole components).

Scores are circuitcheck's, sign and all: EAP-IG's ``attribute`` with ``loss=True`` (as MIB's
``run_attribution.py`` calls it) gives an edge that supports the metric a positive score, as
`edge_attribution` does. Scale: EAP-IG averages the metric over a batch and divides by the
number of prompts again, so its scores are circuitcheck's divided by the batch size (a file from
EAP-IG read here has scores 1/batch of `edge_attribution`'s; MIB's top-n does not see a scale).

Grouped-query attention: EAP-IG's graph gives every query head its own k and v ends (MIB runs
with ``ungroup_grouped_query_attention``), while the model computes a key and a value once per
key/value head, from one input; circuitcheck's score of the shared edge is the sum of EAP-IG's
per-query-head copies. `edge_attribution` also keeps each copy's own score (``EdgeScores.kv_copies``:
the edge through that query head's use of the shared key or value, EAP-IG's copy), and export
writes those, so MIB's top-n over the file is its top-n over EAP-IG's own. Scores without the
split (exact patching, an `EdgeCircuit`, a file read without copies) are written with the
edge's score divided by the group size on each copy (the copies still sum to the edge's score,
but MIB's top-n then sees each group of copies averaged). Each copy carries the edge's
membership. Import sums the copies' scores (and keeps them as ``kv_copies``, so a file read and
written again keeps its copies); with ``kv="any"`` (the default) the edge is in the circuit
when any copy is (MIB's top-n over an EAP-IG file keeps only some query heads' copies of most
key/value edges it keeps), with ``kv="all"`` when all are, with ``kv="exact"`` copies that
disagree are refused.
"""

import json
import math
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..input_errors import check_count
from ..model_state import model_name
from ..sites import EMBED, LOGITS, Site, units_per_layer
from .attribution import EdgeScores
from .graph import EdgeCircuit, edge_graph

KV_RULES = ("any", "all", "exact")
WRITE_AGAIN = "write it again (to_mib, or EAP-IG's Graph.to_json)"
EDGE_FORM = "each edge is {\"score\": <a number>, \"in_graph\": true or false}"


def _sender_name(sender: Site) -> str:
    """A sender as MIB names it: ``input``, ``a5.h5``, ``m0``."""
    if sender == EMBED:
        return "input"
    return f"a{sender.layer}.h{sender.index}" if sender.unit == "head" else f"m{sender.layer}"


def _end_names(end: Site, group: int) -> list[str]:
    """A receiving end as MIB names it: ``logits``, ``m3``, ``a9.h6<q>``; a shared key or value
    end as each query head's (MIB's graph has one per query head)."""
    if end == LOGITS:
        return ["logits"]
    if end.unit is None:
        return [f"m{end.layer}"]
    heads = [end.index] if end.unit == "head" else range(end.index * group, (end.index + 1) * group)
    return [f"a{end.layer}.h{h}<{end.activation}>" for h in heads]


def mib_names(model) -> list[list[str]]:
    """Per edge of the model's `EdgeGraph`, its MIB edge names (several for a key/value edge
    under grouped-query attention)."""
    graph = edge_graph(model)
    group = graph.n_heads // graph.n_kv
    senders = [_sender_name(s) for s in graph.senders]
    ends = [_end_names(e, group) for e in graph.ends]
    return [[f"{senders[s]}->{name}" for name in ends[e]] for s, e in zip(graph.sender_of, graph.end_of)]


def _mib_cfg(model) -> dict:
    """What decides the edge graph, in EAP-IG's names (its four, then the key/value heads and
    the architecture, which EAP-IG's own files lack)."""
    graph, cfg = edge_graph(model), model.cfg
    return {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": graph.parallel,
            "d_model": cfg.d_model, "n_key_value_heads": units_per_layer(model, "kv"),
            "original_architecture": getattr(cfg, "architecture", None)}


def _copy_scores(graph, ranking: EdgeScores | None, scores: np.ndarray) -> list[np.ndarray]:
    """Per edge of ``graph``, the scores of its MIB copies: a key/value edge's per-query-head
    scores where ``ranking`` has them (``kv_copies``, their float32 remainder against the
    edge's score spread evenly over them), else its score divided among its copies (one copy per
    query head sharing the key/value head; other edges have one)."""
    group = graph.n_heads // graph.n_kv
    sizes = np.array([group if end.unit == "kv" else 1 for end in graph.ends])[graph.end_of]
    copies = [np.full(size, score / size) for size, score in zip(sizes, scores)]
    own = None if ranking is None else ranking.kv_copies
    if own is not None and group > 1:
        own = np.asarray(own, dtype=float)
        rows = ranking.kv_positions
        if own.shape != (len(rows), group):
            raise ValueError(f"ranking: kv_copies has shape {own.shape}, not ({len(rows)} key/value edges, {group} "
                             "query heads per key/value head); score the edges again (edge_attribution)")
        if not np.isfinite(own).all():
            raise ValueError("ranking: some per-query-head scores (kv_copies) are NaN or infinite; MIB's JSON "
                             "holds numbers: check the metric (a NaN metric makes NaN scores)")
        for i, row in zip(graph.indices([ranking.labels[r] for r in rows]), own):
            # the parts sum to the score up to float32 rounding; that remainder spread evenly, so
            # the copies written sum to the edge's score and from_mib reads it back
            copies[i] = row + (scores[i] - row.sum()) / group
    return copies


def _checked_scores(model, graph, ranking: EdgeScores) -> np.ndarray:
    name = model_name(model)
    if ranking.model != name or (ranking.n_edges and ranking.n_edges != graph.n_edges):
        raise ValueError(f"ranking: these EdgeScores are for {ranking.model} ({ranking.n_edges} edges), not "
                         f"{name} ({graph.n_edges} edges); score the edges on {name} (edge_attribution) "
                         "or pass the model they were scored on")
    bad = ~np.isfinite(np.asarray(ranking.scores, dtype=float))
    if bad.any():
        raise ValueError(f"ranking: {bad.sum()} edge score(s) are NaN or infinite, e.g. "
                         f"{ranking.labels[int(np.argmax(bad))]!r}; MIB's JSON holds numbers: check the metric "
                         "(a NaN metric makes NaN scores)")
    scores = np.zeros(graph.n_edges)
    scores[graph.indices(ranking.labels)] = ranking.scores
    return scores


def to_mib(model, ranking, path=None, *, circuit=None) -> dict:
    """MIB's circuit JSON (see the module) from ``ranking``: an `EdgeScores` of this model (its
    scores, in circuitcheck's sign and scale; edges it did not score get 0) or an `EdgeCircuit`
    (score 1 on its edges). ``circuit``: the edges marked ``in_graph`` (an `EdgeCircuit`, or a
    whole number k: the top k by |score|; default the `EdgeCircuit` given, else none). A
    key/value edge under grouped-query attention is written once per query head sharing it,
    each copy with its own score where the `EdgeScores` has the per-query-head split
    (``kv_copies``: `edge_attribution`'s gradient methods, or a file read with `from_mib`),
    otherwise with the edge's score divided by the group size (exact patching, an
    `EdgeCircuit`). Written atomically to ``path`` when given; returned as a dict."""
    graph = edge_graph(model)
    if isinstance(ranking, EdgeScores):
        scores = _checked_scores(model, graph, ranking)
        copies = _copy_scores(graph, ranking, scores)
    elif isinstance(ranking, EdgeCircuit):
        scores = np.zeros(graph.n_edges)
        scores[ranking.indices(model)] = 1.0
        copies = _copy_scores(graph, None, scores)
        circuit = ranking if circuit is None else circuit
    else:
        raise ValueError("ranking: give an EdgeScores (edge_attribution, edge_patch_scores) or an EdgeCircuit")
    if circuit is not None and not isinstance(circuit, EdgeCircuit):
        k = check_count("circuit", circuit, 1, "or an EdgeCircuit: the edges marked in_graph (k: the top k by |score|)")
        if not isinstance(ranking, EdgeScores):
            raise ValueError(f"circuit={k}: the top k edges need scores; give an EdgeScores as ranking or an "
                             "EdgeCircuit as circuit")
        circuit = ranking.circuit(k)
    kept = np.zeros(graph.n_edges, dtype=bool)
    if circuit is not None:
        kept[circuit.indices(model)] = True
    edges = {}
    nodes = {"input": False}
    for layer in range(graph.n_layers):
        nodes.update({f"a{layer}.h{h}": False for h in range(graph.n_heads)} | {f"m{layer}": False})
    nodes["logits"] = False
    for i, names in enumerate(mib_names(model)):
        for name, score in zip(names, copies[i]):
            edges[name] = {"score": float(score), "in_graph": bool(kept[i])}
            if kept[i]:
                parent, child = name.split("->")
                nodes[parent] = nodes[child.split("<")[0]] = True
    form = {"cfg": _mib_cfg(model) | {"model_name": getattr(model.cfg, "model_name", None)},
            "nodes": {name: {"in_graph": value} for name, value in nodes.items()}, "edges": edges}
    if path is not None:
        write_atomic(Path(path), json.dumps(form))
    return form


def _kind(value) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _read(source) -> tuple[dict, str]:
    """The circuit's JSON and the words naming it in an error."""
    if isinstance(source, dict):
        form, where = source, "the MIB circuit"
    elif isinstance(source, (str, Path)):
        where = f"the MIB circuit {str(source)!r}"
        data = Path(source).read_bytes()
        if not data.strip():
            raise ValueError(f"{where} is empty: {WRITE_AGAIN}")
        try:
            form = json.loads(data)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{where} is not JSON ({error}): a truncated or damaged file; {WRITE_AGAIN}") from None
    else:
        raise ValueError(f"source={source!r}: give the path of an MIB circuit JSON file, or the dict it holds")
    if not isinstance(form, dict):
        raise ValueError(f"{where} holds a JSON {_kind(form)}, not an MIB circuit: an object with "
                         "'cfg', 'nodes' and 'edges' (EAP-IG's Graph.to_json)")
    missing = [key for key in ("cfg", "nodes", "edges") if key not in form]
    if missing:
        raise ValueError(f"{where} is not an MIB circuit: the JSON lacks {missing} (it needs 'cfg', 'nodes' and "
                         "'edges')")
    for key in ("cfg", "nodes", "edges"):
        if not isinstance(form[key], dict):
            raise ValueError(f"{where}: {key!r} is a {_kind(form[key])}; MIB's JSON maps names to values "
                             f"there ({EDGE_FORM})")
    return form, where


def _check_cfg(model, cfg: dict, where: str) -> None:
    ours = _mib_cfg(model)
    for key, value in ours.items():
        if value is None:
            continue
        if key not in cfg:
            if key in ("n_layers", "n_heads", "parallel_attn_mlp", "d_model"):  # EAP-IG's Graph.from_json needs them
                raise ValueError(f"{where}: cfg lacks {key!r} (MIB's Graph.from_json needs n_layers, n_heads, "
                                 f"parallel_attn_mlp and d_model); {model_name(model)} has {key}={value!r}")
            continue
        theirs, kind = cfg[key], type(value)
        if type(theirs) is not kind and not (kind is int and isinstance(theirs, int) and not isinstance(theirs, bool)):
            what = {int: "a whole number", bool: "true or false"}.get(kind, "the architecture's name")
            raise ValueError(f"{where}: cfg.{key}={theirs!r}: give {what} ({model_name(model)} has {value!r})")
        if theirs != value:
            raise ValueError(f"{where} is for a model with {key}={theirs!r}; {model_name(model)} has {key}={value!r}: "
                             "read a circuit on the model it was found on")


def _entry(name: str, entry, where: str) -> tuple[float, bool]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: edge {name!r} is {entry!r}; {EDGE_FORM}")
    score, kept = entry.get("score", 0.0), entry.get("in_graph", False)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"{where}: edge {name!r} has score {score!r}; give a finite number ({EDGE_FORM})")
    if not isinstance(kept, bool):
        raise ValueError(f"{where}: edge {name!r} has in_graph {kept!r}; give true or false, a JSON boolean "
                         "(a string such as \"false\" is not read as one)")
    return float(score), kept


def _check_neurons(nodes: dict, parents: set, d_model: int, where: str) -> None:
    """Neuron masks (EAP-IG's ``neurons``): refused where a node that sends a kept edge keeps
    only some of its neurons; circuitcheck's edges carry whole components."""
    for name, node in nodes.items():
        mask = node.get("neurons") if isinstance(node, dict) else None
        if mask is None:
            continue
        if not isinstance(mask, list) or not all(isinstance(m, bool) for m in mask):
            raise ValueError(f"{where}: node {name!r} has neurons {str(mask)[:40]}; give a list of true or false")
        if name in parents and not all(mask):
            raise ValueError(f"{where}: node {name!r} keeps {sum(mask)} of its {len(mask)} neurons (d_model "
                             f"{d_model}); circuitcheck's edge circuits keep whole components: give a circuit "
                             "without neuron masks, or with every neuron of a kept node kept")


def from_mib(model, source, *, kv: str = "any") -> tuple[EdgeCircuit, EdgeScores]:
    """An MIB circuit JSON (a path or the dict) as ``(EdgeCircuit of its in_graph edges,
    EdgeScores of its scores)`` on ``model``. The file's scores as they are (EAP-IG's are
    circuitcheck's divided by the batch size); a key/value edge's per-query-head copies summed,
    and kept as ``kv_copies`` under grouped-query attention (a copy the file lacks reads 0).
    ``kv``: when such an edge is in the circuit: ``any`` copy in_graph (default), ``all``, or
    ``exact`` (copies that disagree are refused); see the module."""
    if kv not in KV_RULES:
        raise ValueError(f"kv={kv!r}: choose one of {', '.join(KV_RULES)} (any: a key/value edge is kept when any "
                         "query head's copy is; exact: the copies must agree)")
    form, where = _read(source)
    graph = edge_graph(model)
    _check_cfg(model, form["cfg"], where)
    names = mib_names(model)
    where_in = {name: i for i, group in enumerate(names) for name in group}
    unknown = [name for name in form["edges"] if name not in where_in]
    if unknown:
        raise ValueError(f"{where} names {len(unknown)} edge(s) {model_name(model)} lacks, e.g. "
                         f"{unknown[0]!r}: edges are 'input->a0.h1<q>', 'a0.h1->m0', 'm0->logits'")
    read = {name: _entry(name, entry, where) for name, entry in form["edges"].items()}
    _check_neurons(form["nodes"], {name.split("->")[0] for name, (_, kept) in read.items() if kept},
                   model.cfg.d_model, where)
    scores = np.zeros(graph.n_edges)
    kept = np.zeros(graph.n_edges, dtype=bool)
    size = graph.n_heads // graph.n_kv
    kv_rows = np.array([i for i, end in enumerate(graph.end_of) if graph.ends[end].unit == "kv"], dtype=int)
    copies = np.zeros((graph.n_edges, size))  # a key/value edge's per-query-head copies as the file has them
    for i, group in enumerate(names):
        entries = [read[name] for name in group if name in read]
        if len(group) == size:
            copies[i] = [read[name][0] if name in read else 0.0 for name in group]
        if not entries:
            continue
        flags = [flag for _, flag in entries]
        if kv == "exact" and len(set(flags)) > 1:
            raise ValueError(f"{graph.labels[i]!r}: {where} keeps the edge for some query heads sharing the "
                             f"key/value head and not others ({', '.join(group)}); one key/value input cannot be "
                             "both; pass kv='any' or kv='all' to choose")
        kept[i] = all(flags) if kv == "all" else any(flags)
        scores[i] = sum(score for score, _ in entries)  # copies sum to the shared edge's score
    circuit = EdgeCircuit.from_indices(graph, np.nonzero(kept)[0])
    result = EdgeScores(model=model_name(model), prompt_set="MIB circuit", method="mib",
                        ablation="unknown", reference="MIB circuit", metric="score", labels=graph.labels,
                        scores=scores, f_clean=float("nan"), f_target=float("nan"), n_edges=graph.n_edges,
                        kv_group=size, kv_copies=copies[kv_rows] if size > 1 else None)
    return circuit, result
