"""pytest plugin behind circuitcheck-ray: list the collected tests, or run only a shard's tests.

Loaded only when asked for (``-p circuitcheck.shard_plugin``):

- ``--circuitcheck-collect-to FILE`` writes every collected test as JSON (node id,
  hypothesis, model, claim, params, place in the collection) when collection ends: the
  driver splits these into shards, and a shard that is lost still has its tests named.
- ``--circuitcheck-shard-tests FILE`` (a JSON list of node ids) deselects every other
  test, so a shard runs exactly what the driver gave it: a test without a model runs in
  one shard, not in each.
"""

import json
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("circuitcheck-shard", "circuitcheck-ray shards (internal)")
    group.addoption("--circuitcheck-collect-to", metavar="FILE", default=None,
                    help="write the collected tests as JSON to FILE (circuitcheck-ray)")
    group.addoption("--circuitcheck-shard-tests", metavar="FILE", default=None,
                    help="run only the tests whose node ids FILE lists (circuitcheck-ray)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    listed = config.getoption("circuitcheck_shard_tests")
    if not listed:
        return
    wanted = set(json.loads(Path(listed).read_text(encoding="utf-8")))
    keep = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def pytest_collection_finish(session):
    target = session.config.getoption("circuitcheck_collect_to")
    if not target:
        return
    from circuitcheck.reports.plugin import _test_facts

    tests = []
    for index, item in enumerate(session.items):
        facts = _test_facts(item)
        tests.append({"nodeid": item.nodeid, **facts, "order": facts.get("order", index)})
    Path(target).write_text(json.dumps(tests, default=str), encoding="utf-8")
