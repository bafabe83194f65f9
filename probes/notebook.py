"""Results in Jupyter: ``_repr_html_`` shows a Result's title, numbers, figures and table.

A notebook is where a claim starts: explore a prompt family, look at the table
and the heatmap, then freeze what holds into a hypothesis. Every Result draws
itself as the report would, offline: plotly.js (about 3.5 MB) is inlined into
the first Result shown in a kernel session and reused by the later ones (run
that first cell again after clearing all outputs). Text is escaped; figures
travel as JSON with ``<`` escaped, so no prompt can close a script element.
"""

import html
import json
import uuid

from .figures import plotly_figure

MAX_ROWS = 60
_plotly_js_sent = False


def _plotly_js_once() -> str:
    global _plotly_js_sent
    if _plotly_js_sent:
        return ""
    from plotly.offline import get_plotlyjs

    _plotly_js_sent = True
    return f"<script>{get_plotlyjs()}</script>"


def _script_json(data) -> str:
    text = json.dumps(data, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_html(spec: dict) -> str:
    try:
        figure = plotly_figure(spec)
        data = _script_json(figure)
    except Exception as error:  # noqa: BLE001 - a figure that cannot be drawn is named, not fatal
        return f"<pre>figure could not be drawn: {html.escape(f'{type(error).__name__}: {error}')}</pre>"
    div = f"circuitcheck-{uuid.uuid4().hex[:12]}"
    return (f'<div id="{div}" class="circuitcheck-figure"></div><script>(function () {{'
            f'var f = {data}; Plotly.newPlot("{div}", f.data, f.layout, '
            '{responsive: true, displaylogo: false}); })();</script>')


def result_html(result) -> str:
    """The HTML a notebook shows for ``result``."""
    from .evidence import json_safe
    from .results import figure_list

    summary = " · ".join(f"{html.escape(str(k))} = <b>{html.escape(_number(v))}</b>"
                         for k, v in result.summary().items())
    notes = "".join(f"<p style='color:#666'>{html.escape(n)}</p>" for n in result.notes())
    figures = [_figure_html(json_safe(spec)) for spec in figure_list(result.figure())]
    plotly_js = _plotly_js_once() if figures else ""  # before the parts: their figures come later
    table = result.df.to_html(max_rows=MAX_ROWS, escape=True, float_format=lambda x: f"{x:.3f}",
                              border=0)
    parts = "".join(f"<details><summary>part: {html.escape(p.title)}</summary>{result_html(p)}</details>"
                    for p in result.parts)
    return (f"<div class='circuitcheck-result'><h4>{html.escape(result.title)} "
            f"<span style='color:#666'>— {html.escape(result.model)}, {html.escape(result.prompt_set)}"
            f"</span></h4><p>{summary}</p>{notes}"
            f"{plotly_js}{''.join(figures)}"
            f"<details{' open' if len(result.df) <= 16 else ''}><summary>table ({len(result.df)} rows)"
            f"</summary>{table}</details>{parts}</div>")


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
