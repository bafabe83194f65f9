"""The record of one pytest run: tests, outcomes, evidence; the data behind both report files.

Outcomes follow pytest's own words: passed, failed, error (setup or teardown
failed), skipped, xfailed (an expected failure: a claim we know does not hold,
with its reason), xpassed.
"""

import importlib.metadata
import platform
import time
from dataclasses import dataclass, field

SCHEMA_VERSION = 2  # 2: only the outermost probe call is an item; the probes it called are its parts
OUTCOME_ORDER = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")
VERSIONED_PACKAGES = ("torch", "transformers", "transformer-lens", "circuitcheck")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _message(report) -> str:
    """The short reason of a failure or skip, as pytest would print it."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(longrepr or "")


def definition_order(tests: list[dict]) -> list[dict]:
    """``tests`` in the order they are defined: by file, then by their place in pytest's
    collection (``order``), then by first appearance, so a run under xdist (which finishes
    tests in any order) reads like a serial one. A hypothesis run on several models keeps
    its models together, at its first model's place."""
    first: dict = {}
    for index, test in enumerate(tests):
        key = (test.get("order", float("inf")), index)
        first[test["hypothesis"]] = min(first.get(test["hypothesis"], key), key)

    def key(pair):
        index, test = pair
        return (test["nodeid"].split("::")[0], first[test["hypothesis"]], test.get("order", float("inf")), index)

    return [test for _, test in sorted(enumerate(tests), key=key)]


@dataclass
class RunRecord:
    command: str
    started: float
    run_id: str = ""  # names the run's folder; also in index.html (store.new_run_id)
    tests: dict = field(default_factory=dict)
    exitstatus: int | None = None
    finished: float | None = None
    incomplete: bool = False
    stopped_early: bool = False

    def _test(self, nodeid: str) -> dict:
        return self.tests.setdefault(nodeid, {
            "nodeid": nodeid, "hypothesis": nodeid.split("[")[0], "model": None, "claim": "",
            "outcome": None, "message": "", "details": "", "duration": 0.0, "evidence": [],
        })

    def add_collection_error(self, nodeid: str, text: str) -> None:
        test = self._test(nodeid or "<collection>")
        test.update(outcome="error", message="collection failed", details=text[-4000:])

    def add_phase(self, report, payloads: list[dict]) -> None:
        """Merge one setup/call/teardown report into its test."""
        test = self._test(report.nodeid)
        test["duration"] += report.duration
        for payload in payloads:
            test.update(payload.get("facts", {}))
            if "examples" in payload:
                test["examples"] = payload["examples"]
            test["evidence"] += payload.get("evidence", [])
        xfail = getattr(report, "wasxfail", None)
        outcome = None
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if xfail is not None:
                outcome = "xfailed" if report.skipped else "xpassed"
            elif report.failed:
                outcome = "failed" if report.when == "call" else "error"
            else:
                outcome = report.outcome
        elif report.when == "teardown" and report.failed:
            outcome = "error"
        if outcome:
            test["outcome"] = outcome
            test["message"] = (f"expected failure: {xfail}" if xfail else _message(report))[:2000]
            if report.failed or xfail is not None:  # an expected failure shows its evidence too
                test["details"] = str(report.longreprtext)[-6000:]

    def finish(self, exitstatus: int, incomplete: bool, stopped_early: bool) -> None:
        """Close the record; a run with a test that never reached a verdict (an error in a
        fixture, an interrupt) is incomplete."""
        self.exitstatus, self.finished = exitstatus, time.time()
        unfinished = any(t["outcome"] in (None, "error") for t in self.tests.values())
        self.incomplete, self.stopped_early = incomplete or unfinished, stopped_early

    def counts(self) -> dict:
        outcomes = [t["outcome"] or "not finished" for t in self.tests.values()]
        order = [*OUTCOME_ORDER, "not finished"]
        return {o: outcomes.count(o) for o in order if o in outcomes}

    def models(self) -> list[dict]:
        seen = {}
        for test in self.tests.values():
            if test.get("model_info"):
                seen[test["model"]] = test["model_info"]
            elif test["model"] and test["model"] not in seen:
                seen[test["model"]] = {"name": test["model"]}
        return list(seen.values())

    def to_json(self) -> dict:
        """The evidence.json document (schema: reports/evidence.schema.json, reports/SCHEMA.md)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "command": self.command,
            "started": self.started,
            "duration": (self.finished or time.time()) - self.started,
            "exitstatus": self.exitstatus,
            "incomplete": self.incomplete,
            "stopped_early": self.stopped_early,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {p: _version(p) for p in VERSIONED_PACKAGES},
            "counts": self.counts(),
            "models": self.models(),
            "tests": definition_order(list(self.tests.values())),
        }
