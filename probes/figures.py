"""Figure specs from probes (plain dicts) to plotly figures (data + layout dicts): what the
report and a notebook hand to plotly.js.

Only the plotly.js library is needed in the page; this module builds the JSON
that ``Plotly.newPlot`` takes, without importing plotly's Python side. Any spec may
carry ``"hover"``: one full text per x value (the whole prompt behind a short label,
see `prompt_labels`), shown when the pointer rests on that bar or point.
"""

import html
import os

LABEL_WIDTH = 40  # characters of a prompt label's differing part before it is elided

LAYOUT = {"margin": {"l": 60, "r": 20, "t": 30, "b": 60}, "height": 360,
          "template": None, "font": {"size": 12}}


def _common_words(lists: list[list[str]]) -> int:
    """How many leading words all ``lists`` share."""
    return len(os.path.commonprefix(lists))


def _elide(text: str, width: int) -> str:
    """``text`` cut in its middle to about ``width`` characters, on word boundaries where it
    can be: its first and last words kept, ``…`` between."""
    if len(text) <= width:
        return text
    words, head, tail = text.split(" "), [], []
    while words and len(" ".join(head + words[:1])) <= width // 2:
        head.append(words.pop(0))
    while words and len(" ".join(words[-1:] + tail)) <= width - width // 2 - 1:
        tail.insert(0, words.pop())
    if not head and not tail:  # one long word
        return f"{text[:width // 2]}…{text[len(text) - (width - width // 2 - 1):]}"
    return f"{' '.join(head)}…{' '.join(tail)}"


def _differing_words(words: list[list[str]], keep_gap: int = 2) -> list[str]:
    """Per prompt (all of one word count), the words where prompts differ; a shared run of
    up to ``keep_gap`` words between two such places is kept (``Mary and John``), a longer
    one, or one at either end, becomes ``…``."""
    differs = [len(set(column)) > 1 for column in zip(*words)]
    places = [i for i, d in enumerate(differs) if d]
    keep = set(places)
    for a, b in zip(places, places[1:]):
        if b - a - 1 <= keep_gap:
            keep.update(range(a + 1, b))
    texts = []
    for w in words:
        pieces, previous = [], -1
        for i in sorted(keep):
            if i != previous + 1:
                pieces.append("…")
            pieces.append(("" if not pieces or pieces[-1] == "…" else " ") + w[i])
            previous = i
        texts.append("".join(pieces) + ("…" if previous < len(w) - 1 else ""))
    return texts


def prompt_labels(prompts, width: int = LABEL_WIDTH) -> tuple[list[str], list[str]]:
    """Short axis labels for ``prompts`` and the prompts themselves (for hover).

    Words every prompt shares are dropped (``…`` marks where), so prompts made from
    one template are told apart by what differs: ``"When Mary and John went to the
    shops, John gave the bag to"`` and ``"When Tom and Anna went to the shops, Anna
    gave the bag to"`` become ``"0: …Mary and John…John…"`` and ``"1: …Tom and
    Anna…Anna…"``. Prompts of different word counts lose their shared first and
    last words. A label longer than ``width`` keeps its start and end. The index in
    front keeps labels unique (plotly would merge equal categories into one bar).
    """
    prompts = [str(p) for p in prompts]
    words = [p.split(" ") for p in prompts]
    if len(prompts) < 2 or len(set(prompts)) == 1:
        return [f"{i}: {_elide(p, width)}" for i, p in enumerate(prompts)], prompts
    if len({len(w) for w in words}) == 1:
        middles = _differing_words(words)
    else:
        start = _common_words(words)
        end = min(_common_words([w[::-1] for w in words]), min(len(w) for w in words) - start)
        middles = [f"{'…' if start else ''}{' '.join(w[start:len(w) - end]) or '(nothing)'}{'…' if end else ''}"
                   for w in words]
    return [f"{i}: {_elide(m, width)}" for i, m in enumerate(middles)], prompts


def _hover(spec: dict, name: str = "") -> dict:
    """plotly hover text from a spec's ``"hover"`` (escaped: plotly reads a few HTML tags)."""
    if not spec.get("hover"):
        return {}
    texts = [html.escape(str(t), quote=False).replace("\n", "<br>") for t in spec["hover"]]
    name = f"{html.escape(name, quote=False)}: " if name else ""
    return {"hovertext": texts, "hovertemplate": f"%{{hovertext}}<br>{name}<b>%{{y:.3f}}</b><extra></extra>"}


def _axes(spec: dict) -> dict:
    return {"xaxis": {"title": {"text": spec.get("xlabel", "")}, "automargin": True},
            "yaxis": {"title": {"text": spec.get("ylabel", "")}, "automargin": True}}


WIDTHS = (1.0, 2.5, 5.0)  # a graph's edges in three widths, by |value| against the largest


def _graph_traces(spec: dict) -> list[dict]:
    """A ``graph`` spec (``nodes``: labels, x, y; ``edges``: from, to, value, label) as plotly
    traces: lines grouped by sign and width, a hover point at each edge's middle, the nodes."""
    nodes, edges = spec["nodes"], spec["edges"]
    largest = max((abs(e["value"]) for e in edges), default=0) or 1
    groups: dict = {}
    for edge in edges:
        width = WIDTHS[min(len(WIDTHS) - 1, int(abs(edge["value"]) / largest * len(WIDTHS)))]
        line = groups.setdefault((edge["value"] >= 0, width), {"x": [], "y": []})
        for axis in ("x", "y"):
            line[axis] += [nodes[axis][edge["from"]], nodes[axis][edge["to"]], None]
    traces = [{"type": "scatter", "mode": "lines", "x": line["x"], "y": line["y"], "hoverinfo": "skip",
               "line": {"width": width, "color": "#2a7" if positive else "#c44"}, "opacity": 0.7}
              for (positive, width), line in groups.items()]
    middle = {axis: [(nodes[axis][e["from"]] + nodes[axis][e["to"]]) / 2 for e in edges] for axis in ("x", "y")}
    traces.append({"type": "scatter", "mode": "markers", **middle, "marker": {"size": 4, "color": "#888"},
                   "text": [f"{html.escape(e['label'], quote=False)}: {e['value']:.3g}" for e in edges],
                   "hovertemplate": "%{text}<extra></extra>"})
    traces.append({"type": "scatter", "mode": "markers+text", "x": nodes["x"], "y": nodes["y"],
                   "text": nodes["labels"], "textposition": "top center", "hoverinfo": "text",
                   "marker": {"size": 9, "color": "#357"}})
    return traces


def plotly_figure(spec: dict) -> dict:
    """``{"data": [...], "layout": {...}}`` for a bar, line, scatter, heatmap or graph spec."""
    kind = spec.get("type")
    if kind == "bar":
        data = [{"type": "bar", "x": list(spec["x"]), "y": list(spec["y"]), **_hover(spec),
                 "marker": {"color": ["#2a7" if (v or 0) > 0 else "#c44" for v in spec["y"]]}}]
    elif kind == "line":  # series named in "right_axis" use a second y axis
        right = set(spec.get("right_axis", ()))
        data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": list(spec["x"]),
                 "y": list(values), **_hover(spec, name), **({"yaxis": "y2"} if name in right else {})}
                for name, values in spec["series"].items()]
    elif kind == "scatter":
        data = [{"type": "scatter", "mode": "markers", "x": list(spec["x"]), "y": list(spec["y"]),
                 "text": spec.get("labels"), "hovertemplate": "%{text}<br>%{x:.3f}, %{y:.3f}<extra></extra>"}]
    elif kind == "heatmap":
        colors = ({"colorscale": "RdBu", "zmid": 0, "reversescale": True}
                  if spec.get("diverging", True) else {"colorscale": "Viridis"})
        data = [{"type": "heatmap", "z": spec["z"], "x": spec.get("x"), "y": spec.get("y"), **colors,
                 "hovertemplate": "%{y} → %{x}: %{z:.3f}<extra></extra>"}]
    elif kind == "graph":
        data = _graph_traces(spec)
    else:
        raise ValueError(f"unknown figure type {kind!r}")
    layout = {**LAYOUT, **_axes(spec), "showlegend": kind == "line"}
    if spec.get("title"):
        layout["title"] = {"text": spec["title"]}
        layout["margin"] = {**LAYOUT["margin"], "t": 50}
    if kind == "line" and spec.get("right_axis"):  # room for the right axis's ticks and title
        layout["yaxis2"] = {"title": {"text": spec.get("right_label", "")}, "overlaying": "y",
                            "side": "right", "rangemode": "tozero", "automargin": True}
        layout["margin"] = {**layout["margin"], "r": 80}
        layout["legend"] = {"x": 0.02, "y": 0.98}
    if kind == "graph":  # room for the node labels of a layer's heads
        layout["height"] = 520
    if kind == "heatmap" and spec.get("y"):
        layout["yaxis"]["autorange"] = "reversed"  # first row at the top, as in a table
        layout["height"] = max(360, min(900, 24 * len(spec["y"]) + 120))
    return {"data": data, "layout": layout}
