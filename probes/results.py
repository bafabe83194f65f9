"""The shape every probe returns: a frozen Result that records itself as evidence.

A Result holds the numbers a hypothesis asserts on (numpy arrays, floats), a
pandas ``.df`` for exploring, a readable ``repr`` (what pytest shows when an
assert fails) and ``.evidence()``: a JSON-able dict with a title, a summary, a
table and a figure spec that the report draws. Creating a Result inside a test
records it as that test's evidence; probes never print or plot.

Figure specs are plain dicts, drawn by the report with plotly:
``{"type": "bar", "x": [...], "y": [...], "xlabel": ..., "ylabel": ...}``,
``{"type": "line", "x": [...], "series": {name: [...]}, "right_axis": [names]}`` and
``{"type": "heatmap", "z": [[...]], "x": [...], "y": [...], "diverging": True}``;
any spec may carry a ``"title"``.
"""

import math
from dataclasses import dataclass

import numpy as np

from reports.attach import table_form
from reports.capture import record


def json_number(value) -> float | int | None:
    """A Python number for JSON; NaN and infinities become None (and show as blank)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, int):
        return value
    return float(value) if math.isfinite(value) else None


def figure_list(figure) -> list[dict]:
    return [] if figure is None else [figure] if isinstance(figure, dict) else list(figure)


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """Base class of probe results; subclasses are frozen dataclasses too."""

    model: str
    prompt_set: str

    kind = "result"
    title = "Result"

    def __post_init__(self):
        record(self)

    @property
    def df(self):
        """The result as a pandas DataFrame (one row per prompt, site or token)."""
        raise NotImplementedError

    def summary(self) -> dict:
        """The few numbers a claim is usually about."""
        return {}

    def figure(self) -> dict | list[dict] | None:
        """One figure spec, a list of them, or None."""
        return None

    def notes(self) -> list[str]:
        return []

    def evidence(self) -> dict:
        return {
            "kind": self.kind,
            "title": self.title,
            "model": self.model,
            "prompt_set": self.prompt_set,
            "summary": {k: json_number(v) if not isinstance(v, str) else v
                        for k, v in self.summary().items()},
            "notes": self.notes(),
            "table": table_form(self.df),
            "figures": figure_list(self.figure()),
        }

    def __repr__(self) -> str:
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in self.summary().items())
        return (f"{type(self).__name__}({self.model}, {self.prompt_set!r}: {summary})\n"
                f"{self.df.to_string(max_rows=20, float_format=lambda x: f'{x:.3f}')}")
