"""Capture: the worker side of the report, where each test's evidence is collected.

Runs on every process that runs tests (xdist workers included). The evidence sink
(`circuitcheck.probes.evidence`) is opened when a test's setup starts; what was
recorded in each phase is drained when pytest makes that phase's report and attached
to it as one JSON payload in ``user_properties`` (key `PROPERTY`), so it travels to the
controller with the report (`circuitcheck.reports.writer` files it). The setup
payload also carries the test's facts (`circuitcheck.reports.facts`).

- A Hypothesis ``@given`` test keeps only the evidence of its last example run (the
  falsifying one when it fails), with the number of examples run.
- Evidence recorded while a fixture wider than a function (module, class, package,
  session) is set up belongs to that fixture, not to the test that happened to set it
  up first: it is set aside under the fixture's name, scope and scope node, and sent as
  the payload's ``fixtures`` (the report files it with the module). Evidence recorded while
  a test module is imported (a `published` call at its top level) is filed the same way, as
  the module's, under the name `AT_IMPORT`.
- A failed test shows its recorded Results in full in a section of its own.
"""

import functools
import json

import pytest

from .facts import item_facts, plain_nodeid, where

PROPERTY = "circuitcheck"
EXAMPLES = pytest.StashKey[int]()  # examples a Hypothesis test ran (shrink steps and replay included)
FIXTURES = pytest.StashKey[list]()  # on the config: evidence of wider fixtures, until a report takes it
AT_IMPORT = "(module import)"  # the "fixture" whose evidence a test module recorded when imported


def reporting(config) -> bool:
    return not config.getoption("no_report")


@pytest.fixture
def evidence():
    """Attach notes, numbers, tables and figures to this test's evidence
    (`circuitcheck.probes.evidence.Evidence`)."""
    from circuitcheck.probes.evidence import Evidence

    return Evidence()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Open the test's evidence sink (also with --no-report: a failure shows its results)."""
    from circuitcheck.probes import evidence

    evidence.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A Hypothesis ``@given`` test runs its body once per example and shrink step: keep
    only the evidence of the last example run (the falsifying one, when the test fails,
    since Hypothesis replays it last), and count the examples for the report."""
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    inner = getattr(handle, "inner_test", None)
    if inner is None:
        yield
        return
    from circuitcheck.probes import evidence

    item.stash[EXAMPLES] = 0

    @functools.wraps(inner)
    def one_example(*args, **kwargs):
        evidence.drain()  # the previous example's evidence
        item.stash[EXAMPLES] += 1
        return inner(*args, **kwargs)

    handle.inner_test = one_example
    try:
        yield
    finally:
        handle.inner_test = inner


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Set aside what a fixture wider than a function records while it is set up: it is
    made once for its module (class, package, session), so it is filed with that, not
    with the test being set up. What the test recorded before stays the test's; a wider
    fixture set up inside this one (its dependencies are set up first) keeps its own."""
    if fixturedef.scope == "function":
        yield
        return
    from circuitcheck.probes import evidence

    if not evidence.collecting():
        yield
        return
    earlier = evidence.drain()
    yield  # an old-style wrapper: the fixture's error, if any, does not come in here
    made = evidence.drain()
    for item in earlier:
        evidence.record(item)
    if made:
        node = request.node.nodeid
        entry = {"fixture": fixturedef.argname, "scope": fixturedef.scope, "node": node,
                 "file": node.split("::")[0] if fixturedef.scope in ("module", "class") else None}
        request.config.stash.setdefault(FIXTURES, []).append((entry, made, _needs(fixturedef, request)))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Keep what a test module records when it is imported (no test's sink is open then): it
    is the module's, filed with it as a module-scoped fixture's evidence is."""
    if not isinstance(collector, pytest.Module):
        yield
        return
    from circuitcheck.probes import evidence

    was_open = evidence.collecting()  # not during a normal collection; within a test running pytest
    earlier = evidence.drain() if was_open else []
    if not was_open:
        evidence.start()
    yield
    made = evidence.drain() if was_open else evidence.stop()
    for item in earlier:
        evidence.record(item)
    if made:
        entry = {"fixture": AT_IMPORT, "scope": "module", "node": collector.nodeid, "file": collector.nodeid}
        collector.config.stash.setdefault(FIXTURES, []).append((entry, made, set()))


def _needs(fixturedef, request) -> set[str]:
    """The fixtures ``fixturedef`` needs, itself included, directly or through others: a wider
    fixture on ``model`` (or on a parametrized fixture) is made once per model (parameter)."""
    known = getattr(request, "_arg2fixturedefs", None) or {}  # the test's fixtures by name (pytest's own)
    needs, todo = set(), [fixturedef.argname]
    while todo:
        name = todo.pop()
        if name in needs:
            continue
        needs.add(name)
        found = fixturedef if name == fixturedef.argname else (known.get(name) or [None])[-1]
        todo += list(getattr(found, "argnames", ()))
    return needs


def _fixture_entries(item) -> list[dict]:
    """The wider fixtures' evidence set aside since the last report, as the payload sends it,
    each with the model and parameters of this test that it was made for."""
    from circuitcheck.probes import evidence

    pending, item.config.stash[FIXTURES] = item.config.stash.get(FIXTURES, []), []
    callspec = getattr(getattr(item, "callspec", None), "params", {})
    entries = []
    for entry, made, needs in pending:
        params = {k: str(v) for k, v in callspec.items() if k in needs}
        model = params.pop("model", None)
        entries.append({**entry, "model": model, "params": params,
                        "evidence": [evidence.to_evidence(i) for i in made], "setups": [where(item, None)]})
    return entries


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    from circuitcheck.probes import evidence

    report = outcome.get_result()
    items = evidence.drain() if call.when != "teardown" else evidence.stop()
    if call.when == "call" and report.failed:
        shown = results_text(items)
        if shown:
            report.sections.append(("circuitcheck: the results this test's claim is about", shown))
    if not reporting(item.config):
        item.config.stash[FIXTURES] = []
        return
    fixtures = _fixture_entries(item)
    payload = {"evidence": [evidence.to_evidence(i) for i in items]}
    if fixtures:
        payload["fixtures"] = fixtures
    if plain_nodeid(item) != item.nodeid:  # under loadgroup: the id the report files it under
        payload["nodeid"] = plain_nodeid(item)
    if call.when == "setup":  # fixtures (the model among them) are set up by now
        payload["facts"] = item_facts(item)
    if call.when == "call" and EXAMPLES in item.stash:  # a property test: which example is shown
        falsified = call.excinfo is not None and not isinstance(call.excinfo.value, pytest.skip.Exception)
        payload["examples"] = examples_record(item.stash[EXAMPLES], falsified)
    report.user_properties.append((PROPERTY, json.dumps(payload, default=str, allow_nan=False)))


def results_text(items) -> str:
    """The recorded Results, each as its headline and whole table: pytest cuts the repr in an
    assertion message to 240 characters, so a failure shows them here in full."""
    return "\n\n".join(repr(item) for item in items if hasattr(item, "headline"))


def examples_record(count: int, falsified: bool) -> dict:
    """The test record's ``examples``: how many ran, and which one's evidence is shown."""
    shown = "falsifying" if falsified else "last"
    plural = "example" if count == 1 else "examples"
    return {"count": count, "shown": shown,
            "note": f"{count} {plural} run; evidence of the {shown} one shown"
                    + ("" if falsified else " (the property held for all)")}
