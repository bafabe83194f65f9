"""Evidence capture: probes call `record`, the pytest plugin collects per test.

Kept free of torch and pytest imports so probes, the plugin and workers can all
use it. An item is turned into its JSON form (``item.evidence()``) the moment it
is recorded, so later changes to the object cannot alter what the report shows,
and a failure to build that form becomes a rendering error in the report, never
a test failure.
"""

import traceback

_collected: list[dict] | None = None


def start() -> None:
    """Begin collecting evidence for a new test, discarding anything left over."""
    global _collected
    _collected = []


def drain() -> list[dict]:
    """Return the evidence recorded since the last `start` or `drain`, and keep collecting."""
    global _collected
    items, _collected = (_collected or []), ([] if _collected is not None else None)
    return items


def stop() -> list[dict]:
    """Return the remaining evidence and stop collecting."""
    global _collected
    items, _collected = (_collected or []), None
    return items


def to_evidence(item) -> dict:
    """The JSON form of an evidence item; a broken one becomes an error entry."""
    try:
        form = item.evidence() if hasattr(item, "evidence") else dict(item)
        if not isinstance(form, dict):
            raise TypeError(f"evidence() returned {type(form).__name__}, not dict")
        return form
    except Exception as error:  # noqa: BLE001 - evidence must never fail the test
        return {
            "kind": "render-error",
            "title": f"evidence from {type(item).__name__} could not be recorded",
            "error": "".join(traceback.format_exception_only(type(error), error)).strip(),
        }


def record(item) -> None:
    """Record ``item`` (an object with ``.evidence()`` or a dict) as evidence of the running test."""
    if _collected is not None:
        _collected.append(to_evidence(item))
