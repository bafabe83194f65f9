"""The report's picture of an edge ranking: a compact layer-ordered graph (a ``graph`` figure
spec, drawn offline by plotly): senders and receivers at their layer (x) and head (y), MLPs on
a row below the heads, ``embed`` before layer 0 and ``logits`` after the last layer; each of
the top edges a line, green where patching it helps the metric and red where it hurts,
thicker for a larger |score|."""

import math

from ..sites import EMBED, LOGITS, Site, mlp_label, parse_edge

MLP_ROW = -1.5  # MLPs sit below head 0
KV_SHIFT = 0.3  # a key/value head sits just left of its layer's query heads


def _position(node: Site, last_layer: int, middle: float) -> tuple[str, float, float]:
    """A node's name in the figure (a head and its query end are one node, as are a key/value
    head's key and value ends) and its place."""
    if node == EMBED:
        return "embed", -1.0, middle
    if node == LOGITS:
        return "logits", last_layer + 1.0, middle
    if node.unit is None:
        return mlp_label(node.layer), node.layer + 0.5, MLP_ROW
    shift = KV_SHIFT if node.unit == "kv" else 0.0  # a key/value head sits just left of its layer
    return Site(node.layer, node.unit, node.index).label, node.layer - shift, float(node.index)


def edge_graph_figure(labels, scores, title: str) -> dict:
    """A ``graph`` spec of the edges ``labels`` with their ``scores``."""
    kept = [(label, score) for label, score in zip(labels, scores) if math.isfinite(score)]
    labels, scores = [label for label, _ in kept], [score for _, score in kept]
    pairs = [parse_edge(label) for label in labels]
    layers = [n.layer for pair in pairs for n in pair if n not in (EMBED, LOGITS)]
    heads = [n.index for pair in pairs for n in pair if n.unit is not None]
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
