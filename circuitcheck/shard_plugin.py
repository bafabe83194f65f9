"""pytest plugin behind circuitcheck-ray: list the collected tests, or run only a shard's tests.

Loaded only when asked for (``-p circuitcheck.shard_plugin``):

- ``--circuitcheck-collect-to FILE`` writes every collected test as JSON (node id,
  hypothesis, model, claim, params, place in the collection) when collection ends: the
  driver splits these into shards, and a shard that is lost still has its tests named.
- ``--circuitcheck-shard-tests FILE`` (a JSON list of node ids) deselects every other
  test, so a shard runs exactly what the driver gave it: a test without a model runs in
  one shard, not in each.
- ``--circuitcheck-stream-to FILE`` appends each test's report record to FILE as soon as
  the test finishes (`TestStream`), so the driver keeps what finished if the shard dies.
"""

import json
import os
import time
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("circuitcheck-shard", "circuitcheck-ray shards (internal)")
    group.addoption("--circuitcheck-collect-to", metavar="FILE", default=None,
                    help="write the collected tests as JSON to FILE (circuitcheck-ray)")
    group.addoption("--circuitcheck-shard-tests", metavar="FILE", default=None,
                    help="run only the tests whose node ids FILE lists (circuitcheck-ray)")
    group.addoption("--circuitcheck-stream-to", metavar="FILE", default=None,
                    help="append each finished test's report record to FILE, one JSON line each (circuitcheck-ray)")


def pytest_configure(config):
    target = config.getoption("circuitcheck_stream_to", None)
    if target and not hasattr(config, "workerinput"):  # xdist: the controller has the records
        config.pluginmanager.register(TestStream(config, Path(target)), "circuitcheck-test-stream")


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


class TestStream:
    """Appends the run's header when the session starts (``{"run": ...}``: what the report
    plugin's evidence.json has, without tests) and each test's record as soon as its teardown
    is reported (``{"test": ..., "at": time}``), flushed to disk: the record the shard's
    evidence.json would hold, there even when the process dies at the next test."""

    __test__ = False  # not a test class, for pytest's collection of this module

    def __init__(self, config, path: Path):
        self.config, self.path = config, path

    def _append(self, item: dict) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(item, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _writer(self):
        return self.config.pluginmanager.get_plugin("circuitcheck-report-writer")

    @pytest.hookimpl(trylast=True)  # after the report plugin: its record is ready
    def pytest_sessionstart(self, session):
        writer = self._writer()
        if writer is not None:
            header = writer.run.to_json()
            header.pop("tests")
            self._append({"run": header})

    @pytest.hookimpl(trylast=True)  # after the report plugin filed the teardown phase
    def pytest_runtest_logreport(self, report):
        writer = self._writer()
        if report.when != "teardown" or writer is None:
            return
        record = writer.run.tests.get(writer.plain_ids.get(report.nodeid, report.nodeid))
        if record is not None:
            self._append({"test": record, "at": time.time()})
