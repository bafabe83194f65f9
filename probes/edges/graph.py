"""The edge graph of a model: who writes into the residual stream, and who reads each write.

The residual stream is a sum. Every *sender* adds its output to it: the input embedding
(``embed``: the stream entering layer 0, positions included), each attention head (``L5H5``:
its share of the attention output) and each MLP (``MLP0``). Every *receiving end* reads the
sum of the senders before it: each head's query input (``L9H6.q``), each key/value head's
key and value inputs, each MLP's input (``MLP3``) and the final residual that the unembedding
reads (``logits``). An edge ``U → V`` is one sender's term in one receiving end's sum, so
edges, not nodes, say *which* route a signal takes (EAP, Syed, Rager & Conmy 2023).

Grouped-query attention: a layer's ``n_key_value_heads`` key/value heads are each shared by
``n_heads / n_key_value_heads`` query heads, and the key and value are computed once per
key/value head, from one input. So a k or v edge enters the shared key/value head, labelled
like the site ``L4KV1`` of `probes.sites`: ``L5H5 → L9KV1.k``. (The labels use ``KV`` on every
model, as sites do; ``L9H6.k`` is accepted where each query head has its own key/value head.)

Which senders reach a receiving end: a head of layer l receives from ``embed`` and the heads
and MLPs of layers < l; MLP l also from the heads of layer l (except on parallel-attention
models such as GPT-NeoX, where the MLP reads the layer's input); ``logits`` from everything.
Labels are written ``sender → end`` (``->`` is accepted) and parse through `probes.sites`.
"""

from dataclasses import dataclass, field

import numpy as np

from ..model_state import memo
from ..sites import (ARROW, EMBED, LOGITS, Site, canonical_edge, edge_label, node_label, parse_edge,  # noqa: F401
                     parse_end, parse_sender, units_per_layer)


def kv_end(end: Site, group: int, model_name: str, text: str) -> Site:
    """A query head's key or value end (a head site with activation ``k``/``v``) as its key/value
    head's, where each query head has its own (``group``, the query heads per key/value head, is
    1); otherwise the error that names the shared key/value head."""
    if group != 1:
        shared = Site(end.layer, "kv", end.index // group, activation=end.activation)
        raise ValueError(f"{text}: {model_name} shares each key/value head among {group} query "
                         f"heads, so keys and values are read once per key/value head; write "
                         f"{node_label(shared)} (head {end.index}'s)")
    return Site(end.layer, "kv", end.index, activation=end.activation)


def is_query_heads_kv(end: Site) -> bool:
    """A query head's ``.k``/``.v`` (``L9H6.k``), which names its key/value head's end."""
    return end.unit == "head" and end.activation in ("k", "v")


class EdgeGraph:
    """Every edge of one model, in a fixed order: receiving ends layer by layer (each layer's
    query ends, key ends, value ends, then its MLP), then ``logits``; each end's senders in the
    order ``embed``, then per layer its heads and its MLP. ``graph.index(label)`` finds an
    edge; ``graph.sender_of``/``graph.end_of`` give each edge's sender and end indices."""

    def __init__(self, model):
        cfg = model.cfg
        self.n_layers, self.n_heads = cfg.n_layers, cfg.n_heads
        self.n_kv = units_per_layer(model, "kv")
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.model_name = getattr(cfg, "model_name", "the model")
        layers, heads = self.n_layers, self.n_heads
        self.senders = [EMBED]  # Sites: `probes.sites.node_label` names them
        for layer in range(layers):
            self.senders += [Site(layer, "head", h) for h in range(heads)] + [Site(layer, activation="mlp_out")]
        self.ends, available = [], []
        for layer in range(layers):
            for kind, unit, count in (("q", "head", heads), ("k", "kv", self.n_kv), ("v", "kv", self.n_kv)):
                self.ends += [Site(layer, unit, i, activation=kind) for i in range(count)]
                available += [self.first_sender(layer)] * count
            self.ends.append(Site(layer, activation="mlp_in"))
            available.append(self.first_sender(layer) + (0 if self.parallel else heads))
        self.ends.append(LOGITS)
        available.append(len(self.senders))
        self.available = np.array(available)  # senders reaching each end: the first `available`
        self.end_of = np.repeat(np.arange(len(self.ends)), self.available)
        read = np.array([layers if end == LOGITS else end.layer for end in self.ends])
        self.read_at = read[self.end_of]  # the block whose input each edge enters (n_layers: the logits)
        self.sender_of = np.concatenate([np.arange(a) for a in self.available])
        self.offsets = np.concatenate([[0], np.cumsum(self.available)])  # first edge of each end
        self._sender_index = {s: i for i, s in enumerate(self.senders)}
        self._end_index = {e: i for i, e in enumerate(self.ends)}
        self._labels = self._index_of = None

    def first_sender(self, layer: int) -> int:
        """The index of layer ``layer``'s first head among the senders: ``embed``, then per
        earlier layer its heads and its MLP, so also the number of senders before the layer."""
        return 1 + layer * (self.n_heads + 1)

    @property
    def n_edges(self) -> int:
        return len(self.sender_of)

    def __len__(self) -> int:
        return self.n_edges

    @property
    def labels(self) -> tuple[str, ...]:
        if self._labels is None:
            s_labels, e_labels = self.sender_labels, self.end_labels
            self._labels = tuple(f"{s_labels[s]} {ARROW} {e_labels[e]}" for s, e in zip(self.sender_of, self.end_of))
        return self._labels

    @property
    def _label_index(self) -> dict[str, int]:
        if self._index_of is None:
            self._index_of = {label: i for i, label in enumerate(self.labels)}
        return self._index_of

    @property
    def sender_labels(self) -> list[str]:
        return [node_label(s) for s in self.senders]

    @property
    def end_labels(self) -> list[str]:
        return [node_label(e) for e in self.ends]

    def _check_layer(self, layer: int, text: str) -> None:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"{text}: {self.model_name} has layers 0–{self.n_layers - 1}")

    def sender_index(self, sender: Site, text: str) -> int:
        if sender != EMBED:
            self._check_layer(sender.layer, text)
        if sender.unit == "head" and not 0 <= sender.index < self.n_heads:
            raise ValueError(f"{text}: {self.model_name} has heads H0–H{self.n_heads - 1} per layer")
        return self._sender_index[sender]

    def end_index(self, end: Site, text: str) -> int:
        if is_query_heads_kv(end):  # only where the query head has its own key/value head
            end = kv_end(end, self.n_heads // self.n_kv, self.model_name, text)
        if end != LOGITS:
            self._check_layer(end.layer, text)
        count = {"q": self.n_heads, "k": self.n_kv, "v": self.n_kv}.get(end.activation)
        if count is not None and not 0 <= end.index < count:
            unit = "heads H" if end.activation == "q" else "key/value heads KV"
            raise ValueError(f"{text}: {self.model_name} has {unit}0–{unit.split()[-1]}{count - 1} per layer")
        return self._end_index[end]

    def index(self, edge) -> int:
        """The index of an edge (a label, or a ``(sender, end)`` pair of labels); a clear error
        for a label that does not parse, a layer or head the model lacks, or a pair that is
        not an edge (a sender that is not before the receiving end)."""
        if isinstance(edge, (int, np.integer)) and not isinstance(edge, bool):
            if not 0 <= edge < self.n_edges:
                raise ValueError(f"edge index {edge}: the graph has edges 0–{self.n_edges - 1}")
            return int(edge)
        if isinstance(edge, str) and (found := self._label_index.get(edge)) is not None:
            return found  # a label as the graph writes it: no parsing (a ranking holds tens of thousands)
        sender, end = parse_edge(edge)
        s, e = self.sender_index(sender, str(edge)), self.end_index(end, str(edge))
        if s >= self.available[e]:
            raise ValueError(f"{edge!r} is not an edge: {node_label(self.ends[e])} receives only from senders "
                             "before it (embed, heads and MLPs of earlier layers; an MLP also from its own "
                             "layer's heads, except on parallel-attention models)")
        return int(self.offsets[e] + s)

    def indices(self, edges) -> np.ndarray:
        return np.array([self.index(e) for e in edges], dtype=int)

    def mask(self, edges) -> np.ndarray:
        """A boolean mask over all edges, True on ``edges``."""
        keep = np.zeros(self.n_edges, dtype=bool)
        keep[self.indices(edges)] = True
        return keep

    def __repr__(self) -> str:
        return (f"EdgeGraph({self.model_name}: {self.n_edges} edges, {len(self.senders)} senders, "
                f"{len(self.ends)} receiving ends)")


def edge_graph(model) -> EdgeGraph:
    """The model's `EdgeGraph` (built once per model)."""
    return memo(model, ("edge graph",), lambda: EdgeGraph(model))


def n_edges_formula(n_layers: int, n_heads: int, n_kv: int, parallel: bool = False) -> int:
    """Σ over layers l of (H + 2K)(1 + l(H + 1)) [q, k, v ends] + (1 + l(H + 1) + H) [MLP l;
    no +H when parallel], plus 1 + L(H + 1) into the logits."""
    total = 1 + n_layers * (n_heads + 1)
    for layer in range(n_layers):
        before = 1 + layer * (n_heads + 1)
        total += (n_heads + 2 * n_kv) * before + before + (0 if parallel else n_heads)
    return total


@dataclass(frozen=True)
class EdgeCircuit:
    """A set of edges (labels, ``"L5H5 → L9H6.q"``), kept in a canonical form and order.
    ``nodes``: the senders and receiving ends the edges need. Judged by `faithfulness` and the
    other circuit criteria. ``found_with`` (`probes.circuits.spec.FoundWith`; not compared): how a
    circuit taken from a ranking (``scores.circuit(k)``) was found, the ablation the criteria
    judge it with unless given ``ablation=``."""

    edges: tuple = ()
    found_with: object = field(default=None, compare=False, kw_only=True)

    def __post_init__(self):
        if not hasattr(self.edges, "__iter__"):  # None, a number, an EdgeScores (a ranking)
            name = type(self.edges).__name__
            given = "None" if self.edges is None else f"{'an' if name[0] in 'AEIOUaeiou' else 'a'} {name}"
            raise ValueError(f"EdgeCircuit takes edge labels, not {given}: EdgeCircuit(['L0H1 → L1H2.q', "
                             "'L1H2 → logits']); for the top k edges of an EdgeScores, scores.circuit(k)")
        items = (self.edges,) if isinstance(self.edges, str) else tuple(self.edges)
        labels = {canonical_edge(e) for e in items}
        object.__setattr__(self, "edges", tuple(sorted(labels)))

    def __len__(self) -> int:
        return len(self.edges)

    def __iter__(self):
        return iter(self.edges)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The senders and receiving ends the edges join, senders first."""
        senders, ends = {}, {}
        for edge in self.edges:
            sender, end = parse_edge(edge)
            senders[node_label(sender)] = None
            ends[node_label(end)] = None
        return tuple(sorted(senders)) + tuple(sorted(ends))

    def label(self) -> str:
        shown = ", ".join(self.edges[:6]) + (f", … ({len(self.edges)} edges)" if len(self.edges) > 6 else "")
        return "{" + shown + "}"

    def indices(self, model) -> np.ndarray:
        """The edges' indices in the model's `EdgeGraph` (a clear error for one it lacks)."""
        return edge_graph(model).indices(self.edges)

    def on(self, model) -> "EdgeCircuit":
        """The circuit in ``model``'s own labels (``L1H3.k`` is ``L1KV3.k`` where each query head
        has its own key/value head), so two names of one edge count once: what the probes
        judge (and the size random edge sets are drawn at). A clear error for an edge the
        model lacks."""
        return EdgeCircuit.from_indices(edge_graph(model), self.indices(model), self.found_with)

    def check(self, model) -> "EdgeCircuit":
        return self.on(model)

    @staticmethod
    def from_indices(graph: EdgeGraph, indices, found_with=None) -> "EdgeCircuit":
        """The circuit of these edges of ``graph``, named by the graph's own labels (not parsed)."""
        circuit, labels = object.__new__(EdgeCircuit), graph.labels
        object.__setattr__(circuit, "edges", tuple(sorted({labels[i] for i in indices})))
        object.__setattr__(circuit, "found_with", found_with)
        return circuit
