"""pytest plugin: record each test's evidence and write the report when the session ends.

On every process (xdist workers included) evidence recorded during a test is
attached to its test report as a JSON string in ``user_properties``, so it
travels to the controller with the report. The controller (or the single
process without xdist) gathers reports in `pytest_runtest_logreport` and, in
`pytest_sessionfinish`, writes ``index.html`` and ``evidence.json`` into a folder of
this run's own inside the report folder (`store`), also after an interrupt or a
fixture error (the run is then marked incomplete). A report folder that cannot be
written, or an earlier run to compare with that cannot be read, stops the run before
it starts; a report that still cannot be written at the end makes the run fail.
"""

import copy
import functools
import inspect
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from . import store
from .run import RunRecord

PROPERTY = "circuitcheck"
ORDER = pytest.StashKey[int]()  # the test's place in the collection (definition order)
EXAMPLES = pytest.StashKey[int]()  # examples a Hypothesis test ran (shrink steps and replay included)


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


def _reason(error: OSError) -> str:
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)


def pytest_configure(config):
    """On the controller: check, before any test runs, that the report can be written
    and that the run to compare with can be read."""
    if config.getoption("no_report") or hasattr(config, "workerinput") or getattr(config.option, "help", False):
        return
    folder = config.getoption("report_dir")
    folder = Path(folder).absolute() if folder else Path(config.rootpath) / "reports" / "out"
    keep = config.getoption("report_keep")
    if keep < 0:
        raise pytest.UsageError(f"--report-keep {keep}: pass the number of run folders to keep "
                                "(0 keeps all)")
    try:
        store.check_writable(folder)
    except OSError as error:
        raise pytest.UsageError(
            f"--report-dir {folder}: the report cannot be written there ({_reason(error)}). Pass "
            "--report-dir with a folder you can write (each run adds a folder of its own to it), "
            "or --no-report.") from None
    compare = config.getoption("report_compare")
    old = None
    if compare:
        from .compare import load_evidence

        try:
            compare, old = load_evidence(compare)
        except ValueError as error:
            raise pytest.UsageError(
                f"--report-compare {config.getoption('report_compare')}: {error}. Pass an "
                "evidence.json written by an earlier run (or its run folder, or a report folder "
                "for its latest run), or leave out --report-compare.") from None
    writer = ReportWriter(config, folder, compare, old=old, keep=keep)
    config.pluginmanager.register(writer, "circuitcheck-report-writer")


def reporting(config) -> bool:
    return not config.getoption("no_report")


@pytest.fixture
def evidence():
    """Attach notes, numbers, tables and figures to this test's evidence
    (`circuitcheck.probes.evidence.Evidence`)."""
    from circuitcheck.probes.evidence import Evidence

    return Evidence()


def _model_param(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("model") if callspec else None
    return value if isinstance(value, str) else None


def plain_nodeid(item) -> str:
    """The test's id without the ``@group`` that pytest-xdist's ``--dist loadgroup`` appends to
    it in a worker (``test_x[gpt2]@gpt2``): the report's ids are the same with or without xdist."""
    nodeid = item.nodeid
    if getattr(item.config.option, "loadgroup", False):
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and nodeid.endswith(suffix):
            return nodeid[:-len(suffix)]
    return nodeid


def where(item, model_info: dict | None) -> dict:
    """Where the test ran: host, xdist worker, the model's device (with the
    ``CUDA_VISIBLE_DEVICES`` its process saw, for a CUDA device); the shard is set by a merge."""
    device = (model_info or {}).get("device")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device and visible is not None and "cuda" in device:
        device = f"{device} (CUDA_VISIBLE_DEVICES={visible})"
    worker = getattr(item.config, "workerinput", {}).get("workerid")
    return {"host": socket.gethostname(), "worker": worker, "device": device, "shard": None}


def _test_facts(item) -> dict:
    """What the report needs to know about a test, computed where the test runs."""
    model = _model_param(item)
    hypothesis = plain_nodeid(item)
    if model:  # the hypothesis is the test id without the model part
        for old, new in ((f"[{model}]", ""), (f"[{model}-", "["), (f"-{model}]", "]"),
                         (f"-{model}-", "-")):
            hypothesis = hypothesis.replace(old, new)
    callspec = getattr(item, "callspec", None)
    params = {k: str(v) for k, v in (callspec.params.items() if callspec else ()) if k != "model"}
    facts = {"hypothesis": hypothesis, "model": model, "params": params,
             "claim": inspect.getdoc(getattr(item, "obj", None)) or ""}
    if ORDER in item.stash:
        facts["order"] = item.stash[ORDER]
    loaded = getattr(item, "funcargs", {}).get("model")
    if model and loaded is not None:
        from circuitcheck.probes.model_state import model_info

        facts["model_info"] = vars(model_info(loaded)).copy()
    facts["where"] = where(item, facts.get("model_info"))
    return facts


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Remember each test's place in the collection, so the report lists tests in the
    order they are defined, not the order they finished in (under xdist each worker
    collects the same items in the same order)."""
    for index, item in enumerate(items):
        item.stash[ORDER] = index


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
        return
    payload = {"evidence": [evidence.to_evidence(i) for i in items]}
    if plain_nodeid(item) != item.nodeid:  # under loadgroup: the id the report files it under
        payload["nodeid"] = plain_nodeid(item)
    if call.when == "setup":  # fixtures (the model among them) are set up by now
        payload["facts"] = _test_facts(item)
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


class ReportWriter:
    """Collects test reports on the controller and writes the report at the end."""

    def __init__(self, config, folder: Path, compare: Path | None = None, old: dict | None = None,
                 keep: int = store.KEEP):
        self.config = config
        self.folder = folder
        self.compare, self.old, self.keep = compare, old, keep
        self.run = RunRecord(command=" ".join(["pytest", *config.invocation_params.args]),
                             started=time.time(), run_id=store.new_run_id())
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

    def pytest_sessionfinish(self, session, exitstatus):
        """Write the report; if that fails, say so and make the run fail (exit status 3,
        unless it already failed): a lost report must not pass unnoticed."""
        interrupted = int(exitstatus) in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        self.run.finish(int(exitstatus), incomplete=interrupted or bool(session.shouldfail),
                        stopped_early=bool(session.shouldstop))
        try:
            run = self.run.to_json()
            if self.compare:
                from .compare import compare_runs, summary_line

                compare_runs(run, self.compare, old=self.old)
                self.compare_line = summary_line(run)
            self.written = store.publish(run, self.folder, self.keep)
        except Exception as error:  # noqa: BLE001 - a broken report must not hide test results
            reason = _reason(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
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
