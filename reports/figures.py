"""Figure specs from probes (plain dicts) to plotly figures (data + layout dicts).

Only the plotly.js library is needed in the page; this module builds the JSON
that ``Plotly.newPlot`` takes, without importing plotly's Python side.
"""

LAYOUT = {"margin": {"l": 60, "r": 20, "t": 30, "b": 60}, "height": 360,
          "template": None, "font": {"size": 12}}


def _axes(spec: dict) -> dict:
    return {"xaxis": {"title": {"text": spec.get("xlabel", "")}, "automargin": True},
            "yaxis": {"title": {"text": spec.get("ylabel", "")}, "automargin": True}}


def plotly_figure(spec: dict) -> dict:
    """``{"data": [...], "layout": {...}}`` for a bar, line or heatmap spec."""
    kind = spec.get("type")
    if kind == "bar":
        data = [{"type": "bar", "x": list(spec["x"]), "y": list(spec["y"]),
                 "marker": {"color": ["#2a7" if (v or 0) > 0 else "#c44" for v in spec["y"]]}}]
    elif kind == "line":
        data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": list(spec["x"]),
                 "y": list(values)} for name, values in spec["series"].items()]
    elif kind == "heatmap":
        data = [{"type": "heatmap", "z": spec["z"], "x": spec.get("x"), "y": spec.get("y"),
                 "colorscale": "RdBu", "zmid": 0, "reversescale": True,
                 "hovertemplate": "%{y} %{x}: %{z:.3f}<extra></extra>"}]
    else:
        raise ValueError(f"unknown figure type {kind!r}")
    return {"data": data, "layout": {**LAYOUT, **_axes(spec), "showlegend": kind == "line"}}
