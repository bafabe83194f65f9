"""Figure specs from probes (plain dicts) to plotly figures (data + layout dicts): what the
report and a notebook hand to plotly.js.

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
    elif kind == "line":  # series named in "right_axis" use a second y axis
        right = set(spec.get("right_axis", ()))
        data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": list(spec["x"]),
                 "y": list(values), **({"yaxis": "y2"} if name in right else {})}
                for name, values in spec["series"].items()]
    elif kind == "scatter":
        data = [{"type": "scatter", "mode": "markers", "x": list(spec["x"]), "y": list(spec["y"]),
                 "text": spec.get("labels"), "hovertemplate": "%{text}<br>%{x:.3f}, %{y:.3f}<extra></extra>"}]
    elif kind == "heatmap":
        colors = ({"colorscale": "RdBu", "zmid": 0, "reversescale": True}
                  if spec.get("diverging", True) else {"colorscale": "Viridis"})
        data = [{"type": "heatmap", "z": spec["z"], "x": spec.get("x"), "y": spec.get("y"), **colors,
                 "hovertemplate": "%{y} → %{x}: %{z:.3f}<extra></extra>"}]
    else:
        raise ValueError(f"unknown figure type {kind!r}")
    layout = {**LAYOUT, **_axes(spec), "showlegend": kind == "line"}
    if spec.get("title"):
        layout["title"] = {"text": spec["title"]}
        layout["margin"] = {**LAYOUT["margin"], "t": 50}
    if kind == "line" and spec.get("right_axis"):
        layout["yaxis2"] = {"title": {"text": spec.get("right_label", "")}, "overlaying": "y",
                            "side": "right", "rangemode": "tozero"}
        layout["legend"] = {"x": 0.02, "y": 0.98}
    if kind == "heatmap" and spec.get("y"):
        layout["yaxis"]["autorange"] = "reversed"  # first row at the top, as in a table
        layout["height"] = max(360, min(900, 24 * len(spec["y"]) + 120))
    return {"data": data, "layout": layout}
