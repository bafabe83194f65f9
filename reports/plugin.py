"""The report plugin: record each test's evidence and write the report when the session ends.

It is three plugins, each a module a reader can hold, loaded once each through
``pytest_plugins`` below (`circuitcheck.plugin`, the ``pytest11`` entry point, loads
this one):

- `circuitcheck.reports.facts`: test identity, on the process that runs the test (the
  report's id without xdist's ``@group``, hypothesis, model, parameters, claim, place
  in the collection, where it ran);
- `circuitcheck.reports.capture`: the worker side (xdist workers included): the
  ``evidence`` fixture, each phase's evidence attached to its test report (the last
  example of a Hypothesis test; a wider fixture's evidence set aside as the fixture's);
- `circuitcheck.reports.writer`: the controller side: the report options, checked before
  any test runs (`circuitcheck.reports.preflight`), and `ReportWriter`, which files the
  reports and writes ``index.html`` and ``evidence.json`` at the end.

The names in `__all__` are still importable from here, for code that imported them
before the split; they are looked up on first use (importing the three modules here,
before pytest loads them as plugins, would keep it from rewriting their asserts). This
module defines no hook of its own, so every hook is registered exactly once.
"""

import importlib

pytest_plugins = ["circuitcheck.reports.facts", "circuitcheck.reports.capture", "circuitcheck.reports.writer"]

_MOVED = {"ORDER": "facts", "item_facts": "facts", "plain_nodeid": "facts", "where": "facts",
          "PROPERTY": "capture", "examples_record": "capture", "reporting": "capture", "results_text": "capture",
          "ReportWriter": "writer"}
__all__ = sorted(_MOVED)


def __getattr__(name):
    if name == "_test_facts":  # the name circuitcheck.shard_plugin imports
        name = "item_facts"
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"circuitcheck.reports.{_MOVED[name]}"), name)
