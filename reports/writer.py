"""The writer: the controller side of the report, which files each test and writes the run.

On the controller (or the single process without xdist): ``pytest_configure`` checks the
report options before any test runs (`circuitcheck.reports.preflight`: a folder that
cannot be written, or a run to compare with that cannot be read, stops the run at once)
and registers a `ReportWriter`. The writer reads the payload each test report carries
(`circuitcheck.reports.capture`) in ``pytest_runtest_logreport``, files the test's phases
in a `RunRecord` and the wider fixtures' evidence by module, and in
``pytest_sessionfinish`` writes ``index.html`` and ``evidence.json`` into a folder of this
run's own inside the report folder (`store`), also after an interrupt or a fixture error
(the run is then marked incomplete). A report that still cannot be written at the end
makes the run fail.
"""

import copy
import json
import sys
import time
from pathlib import Path

import pytest

from . import store
from .capture import PROPERTY
from .preflight import ReportOptionError, check_report_options, os_reason
from .run import RunRecord


def pytest_addoption(parser):
    group = parser.getgroup("circuitcheck-report", "circuitcheck evidence report")
    group.addoption("--report-dir", metavar="DIR", default=None,
                    help="folder of the reports: each run writes DIR/<UTC time>-<run id>/ "
                         "(index.html, evidence.json) and points DIR/latest at it (default: "
                         "reports/out in the repository)")
    group.addoption("--report-keep", metavar="N", type=int, default=store.KEEP,
                    help=f"keep the newest N run folders in the report folder, delete older "
                         f"ones (0: keep all; default {store.KEEP})")
    group.addoption("--no-report", action="store_true", help="write no evidence report")
    group.addoption("--report-compare", metavar="OLD", default=None,
                    help="compare with an earlier run: its evidence.json, its run folder, or a "
                         "report folder (its latest run): changed verdicts and moved numbers")


def pytest_configure(config):
    """On the controller: check, before any test runs, that the report can be written
    and that the run to compare with can be read."""
    if config.getoption("no_report") or hasattr(config, "workerinput") or getattr(config.option, "help", False):
        return
    folder = config.getoption("report_dir")
    folder = Path(folder).absolute() if folder else Path(config.rootpath) / "reports" / "out"
    keep = config.getoption("report_keep")
    try:
        compare, old = check_report_options(folder, keep, config.getoption("report_compare"),
                                            skip_option="--no-report")
    except ReportOptionError as error:
        raise pytest.UsageError(str(error)) from None
    writer = ReportWriter(config, folder, compare, old=old, keep=keep)
    config.pluginmanager.register(writer, "circuitcheck-report-writer")


class FixtureEvidence:
    """The evidence of fixtures wider than a function, one entry per fixture, scope node (a
    module-scoped fixture: its module) and model (parameters) it was made for. Set up on two
    xdist workers with the same evidence, a fixture is one entry with both setups; with
    different evidence, two."""

    def __init__(self):
        self.entries: dict = {}  # (node, fixture, model, params, evidence) -> [entry, order, arrival]

    def add(self, entry: dict, order: int | None) -> None:
        key = (entry["node"], entry["fixture"], entry.get("model"),
               *(json.dumps(entry.get(k), sort_keys=True, default=str) for k in ("params", "evidence")))
        order = float("inf") if order is None else order
        if key in self.entries:
            kept = self.entries[key]
            kept[0]["setups"] += entry.get("setups", [])
            kept[1] = min(kept[1], order)
        else:
            self.entries[key] = [copy.deepcopy(entry), order, len(self.entries)]

    def to_json(self) -> list[dict]:
        """The entries by scope node, then in the order of the first tests that set them up."""
        def place(value):
            entry, order, arrival = value
            return (entry.get("file") or "", entry["node"], order, arrival)

        return [entry for entry, _, _ in sorted(self.entries.values(), key=place)]


class ReportWriter:
    """Collects test reports on the controller and writes the report at the end."""

    def __init__(self, config, folder: Path, compare: Path | None = None, old: dict | None = None,
                 keep: int = store.KEEP):
        self.config = config
        self.folder = folder
        self.compare, self.old, self.keep = compare, old, keep
        self.run = RunRecord(command=" ".join(["pytest", *config.invocation_params.args]),
                             started=time.time(), run_id=store.new_run_id())
        self.fixtures = FixtureEvidence()
        self.written: Path | None = None
        self.failure: str | None = None
        self.compare_line: str | None = None
        self.plain_ids: dict[str, str] = {}  # xdist loadgroup's test_x[m]@m -> test_x[m]

    def pytest_collectreport(self, report):
        if report.failed:
            self.run.add_collection_error(report.nodeid, str(report.longrepr))

    def pytest_runtest_logreport(self, report):
        payloads = [json.loads(v) for k, v in report.user_properties if k == PROPERTY]
        plain = next((p["nodeid"] for p in payloads if "nodeid" in p), None)
        if plain:
            self.plain_ids[report.nodeid] = plain
        plain = self.plain_ids.get(report.nodeid)  # also for a report without payload (a crash)
        if plain:
            report = copy.copy(report)  # other plugins see xdist's id; the report files the plain one
            report.nodeid = plain
        self.run.add_phase(report, payloads)
        order = self.run.tests[report.nodeid].get("order")
        for payload in payloads:
            for entry in payload.get("fixtures", []):
                self.fixtures.add(entry, order)

    def to_json(self) -> dict:
        """The evidence.json document of the run so far, with the wider fixtures' evidence."""
        run = self.run.to_json()
        fixtures = self.fixtures.to_json()
        if fixtures:
            run["fixtures"] = fixtures
        return run

    def pytest_sessionfinish(self, session, exitstatus):
        """Write the report; if that fails, say so and make the run fail (exit status 3,
        unless it already failed): a lost report must not pass unnoticed."""
        interrupted = int(exitstatus) in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        self.run.finish(int(exitstatus), incomplete=interrupted or bool(session.shouldfail),
                        stopped_early=bool(session.shouldstop))
        try:
            run = self.to_json()
            if self.compare:
                from .compare import compare_runs, summary_line

                compare_runs(run, self.compare, old=self.old)
                self.compare_line = summary_line(run)
            self.written = store.publish(run, self.folder, self.keep)
        except Exception as error:  # noqa: BLE001 - a broken report must not hide test results
            reason = os_reason(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
            self.failure = f"circuitcheck report NOT written to {self.folder}: {reason}"
            if int(session.exitstatus) == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_unconfigure(self, config):
        """Last line of the run (after pytest's own summary): where the report is, or why
        there is none; with --report-compare, the comparison's counts on the line before."""
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        if self.failure:
            if terminal is not None:
                terminal.write_line(self.failure, red=True, bold=True)
            else:
                sys.stderr.write(self.failure + "\n")
        elif self.written and terminal is not None:
            if self.compare_line:
                terminal.write_line(self.compare_line)
            counts = ", ".join(f"{n} {o}" for o, n in self.run.counts().items())
            note = " (incomplete)" if self.run.incomplete else ""
            terminal.write_line(f"circuitcheck report: {self.written}{note} ({counts})")
