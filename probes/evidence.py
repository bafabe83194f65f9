"""The evidence sink: what the outermost probe call returns becomes the test's evidence.

A probe function is decorated with `probe`. When it is called from a test (not
from inside another probe), its Result is recorded in the sink that the report
plugin opens for each test; results made by probes inside other probes are not
recorded on their own, and a composite probe attaches them to its own Result as
``parts``. Recording keeps the Result object itself (an immutable value): its
JSON form is built only when a report is written, and with no sink open
(``--no-report``, a notebook, a script) recording costs nothing.

Kept free of torch and pytest imports so the plugin and xdist workers can use it.

The ``evidence`` fixture gives a hypothesis an `Evidence` for what only it knows::

    def test_claim(model, evidence):
        evidence.note("Checked on the corrected prompt set from 2026-11.")
        evidence.number("top-3 share", share, threshold=0.5, passes=share > 0.5)
"""

import functools
import inspect
import math
import traceback
from contextvars import ContextVar

_sink: ContextVar[list | None] = ContextVar("circuitcheck_evidence_sink", default=None)
_probe_depth: ContextVar[int] = ContextVar("circuitcheck_probe_depth", default=0)


def start() -> None:
    """Open a fresh sink for a new test, discarding anything left over."""
    _sink.set([])


def drain() -> list:
    """Return what was recorded since the last `start` or `drain`, and keep collecting."""
    items = _sink.get()
    if items is None:
        return []
    _sink.set([])
    return items


def stop() -> list:
    """Return what remains and close the sink."""
    items = _sink.get() or []
    _sink.set(None)
    return items


def collecting() -> bool:
    return _sink.get() is not None


def record(item) -> None:
    """Record ``item`` (a Result, an object with ``.evidence()``, or a dict) for the running test."""
    items = _sink.get()
    if items is not None:
        items.append(item)


def probe(function):
    """Record the Result of ``function`` when it is the outermost probe call (and accept its
    older call forms for one release: `probes.renamed`)."""
    from .renamed import accept_older_calls

    function = accept_older_calls(function)
    signature = inspect.signature(function)
    checked = [name for name in ("prompts", "reference") if name in signature.parameters]

    @functools.wraps(function)
    def recorded(*args, **kwargs):
        if checked:
            _check_prompt_sets(function.__name__, signature, checked, args, kwargs)
        token = _probe_depth.set(_probe_depth.get() + 1)
        try:
            result = function(*args, **kwargs)
        finally:
            _probe_depth.reset(token)
        if _probe_depth.get() == 0:
            record(result)
        return result

    recorded.is_probe = True  # the public probes are the names in __all__ that carry this
    return recorded


def _check_prompt_sets(name: str, signature, checked: list[str], args, kwargs) -> None:
    """A probe's ``prompts`` (and a ``reference`` given) must be PromptSets: a plain list of
    strings gets one line saying how to wrap it, before any pass (`require_prompt_set`)."""
    from .prompts import require_prompt_set

    try:
        bound = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        return  # the probe itself reports a wrong call
    for argument in checked:
        if bound.get(argument) is not None:  # None: an optional reference, or robustness's prompts from `over`
            require_prompt_set(bound[argument], name, argument)


def json_safe(value):
    """``value`` with NaN and infinities replaced by None, so strict JSON parsers accept it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_evidence(item) -> dict:
    """The JSON form of an evidence item; a broken one becomes an error entry."""
    try:
        form = item.evidence() if hasattr(item, "evidence") else dict(item)
        if not isinstance(form, dict):
            raise TypeError(f"evidence() returned {type(form).__name__}, not dict")
        return json_safe(form)
    except Exception as error:  # noqa: BLE001 - evidence must never fail the test
        return {
            "kind": "render-error",
            "title": f"evidence from {type(item).__name__} could not be recorded",
            "error": "".join(traceback.format_exception_only(type(error), error)).strip(),
        }


def table_form(data) -> dict:
    """A ``{"columns", "rows"}`` table from a pandas DataFrame or a list of dicts."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        frame = data.reset_index() if getattr(data.index, "name", None) else data
        return {"columns": [str(c) for c in frame.columns],
                "rows": frame.astype(object).where(frame.notna(), None).values.tolist()}
    rows = list(data)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return {"columns": columns, "rows": [[row.get(c) for c in columns] for row in rows]}


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class Evidence:
    """Attach notes, numbers, tables and figures to the running test's evidence."""

    def note(self, text: str, title: str = "Note") -> None:
        if collecting():
            record({"kind": "note", "title": title, "text": str(text)})

    def number(self, name: str, value: float, threshold: float | None = None,
               passes: bool | None = None) -> None:
        """A named number, with the threshold the claim compares it to (NaN is kept as null
        with a note: JSON has no NaN)."""
        if not collecting():
            return
        item = {"kind": "number", "title": name, "value": _number(value),
                "threshold": None if threshold is None else _number(threshold), "passes": passes}
        if item["value"] is None:
            item["note"] = f"the value was {float(value)!r}, which JSON cannot hold"
        record(item)

    def table(self, data, title: str = "Table") -> None:
        if collecting():
            record({"kind": "table", "title": title, "table": table_form(data)})

    def figure(self, spec: dict, title: str = "Figure") -> None:
        """A figure spec as probes make them (see `circuitcheck.probes.results`)."""
        if collecting():
            record({"kind": "figure", "title": title, "figures": [dict(spec)]})
