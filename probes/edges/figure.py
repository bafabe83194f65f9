"""The report's picture of an edge ranking: a compact layer-ordered graph (a ``graph`` figure
spec, drawn offline by plotly): senders and receivers at their layer (x) and head (y), MLPs on
a row below the heads, ``embed`` before layer 0 and ``logits`` after the last layer; each of
the top edges a line, green where patching it helps the metric and red where it hurts,
thicker for a larger |score|."""

import math

from ..sites import Site, head_label, mlp_label
from .graph import parse_edge

MLP_ROW = -1.5  # MLPs sit below head 0
KV_SHIFT = 0.3  # a key/value head sits just left of its layer's query heads


def _position(node: tuple, last_layer: int, middle: float) -> tuple[str, float, float]:
    kind = node[0]
    if kind == "embed":
        return "embed", -1.0, middle
    if kind == "logits":
        return "logits", last_layer + 1.0, middle
    if kind == "mlp":
        return mlp_label(node[1]), node[1] + 0.5, MLP_ROW
    if kind in ("head", "q"):
        return head_label(node[1], node[2]), float(node[1]), float(node[2])
    return Site(node[1], "kv", node[2]).label, node[1] - KV_SHIFT, float(node[2])  # a key or value end


def edge_graph_figure(labels, scores, title: str) -> dict:
    """A ``graph`` spec of the edges ``labels`` with their ``scores``."""
    kept = [(label, score) for label, score in zip(labels, scores) if math.isfinite(score)]
    labels, scores = [label for label, _ in kept], [score for _, score in kept]
    pairs = [parse_edge(label) for label in labels]
    layers = [n[1] for pair in pairs for n in pair if len(n) > 1]
    heads = [n[2] for pair in pairs for n in pair if n[0] in ("head", "q", "k", "v")]
    last, middle = max(layers, default=0), (max(heads, default=0)) / 2
    nodes: dict[str, tuple[float, float]] = {}
    edges = []
    for label, score, (sender, end) in zip(labels, scores, pairs):
        ends = []
        for node in (sender, end):
            name, x, y = _position(node, last, middle)
            nodes.setdefault(name, (x, y))
            ends.append(list(nodes).index(name))
        edges.append({"from": ends[0], "to": ends[1], "value": float(score), "label": label})
    return {"type": "graph", "nodes": {"labels": list(nodes), "x": [x for x, _ in nodes.values()],
                                       "y": [y for _, y in nodes.values()]},
            "edges": edges, "xlabel": "layer", "ylabel": "head (MLPs below)", "title": title}
