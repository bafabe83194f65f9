"""The shape every probe returns: a frozen Result, recorded as evidence by the probe that made it.

A Result holds the numbers a hypothesis asserts on (numpy arrays, floats), a
pandas ``.df`` for exploring, a readable ``repr`` (what pytest shows when an
assert fails) and ``.evidence()``: a JSON-able dict with a title, a summary, a
table and a figure spec that the report draws. A Result is an immutable value
(its arrays are read-only); the outermost probe call records it as the test's
evidence (`circuitcheck.probes.evidence`), and a composite probe keeps the
Results it was built from as ``parts``. Probes never print or plot.

Figure specs are plain dicts, drawn by the report with plotly:
``{"type": "bar", "x": [...], "y": [...], "xlabel": ..., "ylabel": ...}``,
``{"type": "line", "x": [...], "series": {name: [...]}, "right_axis": [names]}`` and
``{"type": "heatmap", "z": [[...]], "x": [...], "y": [...], "diverging": True}`` and
``{"type": "graph", "nodes": {"labels", "x", "y"}, "edges": [{"from", "to", "value", "label"}]}``;
any spec may carry a ``"title"``.

Facts about a Result live on its class: ``usual`` names the number a claim on it is usually
about (`robustness` judges it when no ``value=`` is given), ``extremes_column`` the column a
long ``repr`` is ordered by. A *ranking* Result (`Patching` of whole components,
`HeadAttribution`, `HeadScores`, `EdgeScores`) also implements the ranking protocol the
criteria read, so they import no probe to use one:

* ``ranking()``: every component it scores, best first, by its rule ``ranked_by``
  (``"score"``: the signed score, larger first; ``"|score|"``); a ValueError when it ranks
  no whole components (a patching sweep of positions);
* ``component_scores()``: a ``pandas.Series`` of each component's score in the table's
  order (index: labels; name: how they were scored), what `recovery` ranks;
* with per-prompt values (`Patching`, `HeadAttribution`): ``n_prompts``, ``score_names``
  (the scores it can rank by) and ``scores_over(prompts, by)``, the scores recomputed over
  some prompts (a bootstrap resample: `selection_stability`).
"""

import math
from dataclasses import dataclass, field, fields

import numpy as np

from .evidence import json_safe, table_form


def json_number(value) -> float | int | None:
    """A Python number for JSON; NaN and infinities become None (and show as blank)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, int):
        return value
    return float(value) if math.isfinite(value) else None


MAX_ROWS_SHOWN = 60


def _table_text(frame) -> str:
    """A DataFrame as text, prompts whole; beyond 60 rows its first and last 30."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", None, "display.width", 1000):
        return frame.to_string(max_rows=MAX_ROWS_SHOWN, min_rows=MAX_ROWS_SHOWN,
                               float_format=lambda x: f"{x:.3f}")


def read_only(value):
    """``value`` with every numpy array in it (also inside tuples and dicts) a read-only view."""
    if isinstance(value, np.ndarray):
        if value.flags.writeable:
            value = value.view()
            value.flags.writeable = False
        return value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(read_only(v) for v in value)
    if isinstance(value, dict):
        return {k: read_only(v) for k, v in value.items()}
    return value


def best_first(scores) -> np.ndarray:
    """Positions of ``scores`` by the signed score, largest first, ties in table order, NaN
    last: the order of a ranking Result whose ``ranked_by`` is ``"score"``."""
    scores = np.asarray(scores)
    return np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")


def figure_list(figure) -> list[dict]:
    return [] if figure is None else [figure] if isinstance(figure, dict) else list(figure)


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """Base class of probe results; subclasses are frozen dataclasses too."""

    model: str
    prompt_set: str
    parts: tuple = field(default=(), kw_only=True)  # the Results a composite probe was built from
    notes_text: tuple = field(default=(), kw_only=True)  # what the probe says about this model's numbers

    kind = "result"
    title = "Result"
    # The number a claim on this Result is usually about: the name of an attribute or summary
    # entry (`robustness` judges it when no value= is given); None when there is no one number.
    usual = None
    # The ``.df`` column a long repr is ordered by, to show its extremes. Not ``usual``: that is
    # one number of the whole Result (a Recovery's AUROC), this a column of its rows (each rank).
    extremes_column = None

    def __post_init__(self):
        for f in fields(self):  # an immutable value: nobody can write into its arrays
            object.__setattr__(self, f.name, read_only(getattr(self, f.name)))

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
        return list(self.notes_text)

    def p_values(self) -> dict[str, float]:
        """The p-values of the tests this Result performed itself (not its parts'), by name:
        the report corrects every p-value of a run together (Holm)."""
        return {}

    def evidence_table(self):
        """The table the report shows: ``.df`` (a Result with a very long one shows a part)."""
        return self.df

    def evidence(self) -> dict:
        """The JSON form the report shows (built only when a report is written)."""
        form = json_safe({
            "kind": self.kind,
            "title": self.title,
            "model": self.model,
            "prompt_set": self.prompt_set,
            "summary": {k: json_number(v) if not isinstance(v, str) else v
                        for k, v in self.summary().items()},
            "notes": self.notes(),
            "table": table_form(self.evidence_table()),
            "figures": figure_list(self.figure()),
        })
        if p_values := self.p_values():
            form["p_values"] = {name: json_number(p) for name, p in p_values.items()}
        if self.parts:
            form["parts"] = [part.evidence() for part in self.parts]
        return form

    def headline(self) -> str:
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in self.summary().items())
        return f"{type(self).__name__}({self.model}, {self.prompt_set!r}: {summary})"

    def __repr__(self) -> str:
        """The headline and the table: whole up to 60 rows; beyond, its first and last rows
        ordered by ``extremes_column`` (the extremes), when the Result names one."""
        frame = self.df
        if len(frame) > MAX_ROWS_SHOWN and self.extremes_column in frame.columns:
            frame = frame.sort_values(self.extremes_column)
        return f"{self.headline()}\n{_table_text(frame)}"

    def _repr_html_(self) -> str:
        """How Jupyter shows the Result: title, numbers, figures and table (`probes.notebook`)."""
        from .notebook import result_html

        return result_html(self)

    def assert_all(self, condition: str, message: str = "") -> None:
        """Assert that ``condition`` holds on every row of ``.df``, a pandas expression over
        its columns (``"logit_diff > 0"``, ``"correct_rank <= 3"``). On failure the error
        lists the rows that break it first, then the others, whole at any verbosity."""
        __tracebackhide__ = True
        frame = self.df
        try:
            holds = frame.eval(condition)
        except Exception as error:  # noqa: BLE001 - name the columns the condition may use
            raise ValueError(f"condition {condition!r} cannot be evaluated on {type(self).__name__}.df "
                             f"({type(error).__name__}: {error}); its columns are "
                             f"{', '.join(map(str, frame.columns))}") from None
        failing = frame[~holds.astype(bool)]
        if failing.empty:
            return
        lines = [f"{message}: " if message else "",
                 f"{condition!r} fails on {len(failing)} of {len(frame)} rows of {self.headline()}",
                 "rows that break it:", _table_text(failing)]
        if len(failing) < len(frame):
            lines += ["the other rows:", _table_text(frame[holds.astype(bool)])]
        raise AssertionError("\n".join(lines).lstrip("\n"))
