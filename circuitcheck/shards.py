"""Shards: split a pytest run into several pytest processes, run one, and keep what it finished.

Backend-free (no Ray here; `circuitcheck.ray_runner` schedules these on a Ray cluster,
and another scheduler could do the same):

- `collect` lists the tests once (``pytest --collect-only`` in a subprocess, with
  `circuitcheck.shard_plugin` writing them out), `split_models` takes the ``--model``
  options out of the pytest arguments, and `plan_shards` makes one `ShardPlan` per model,
  in the order of those options (tests without a model go with the first);
- `run_shard` runs one plan as one pytest process in the project folder, its report
  written into a temporary folder of its own, and yields each test's record as soon as
  the test finishes (the shard's pytest appends it to a file,
  `circuitcheck.shard_plugin.TestStream`), then the shard's evidence.json;
- `Progress` keeps, across a shard's attempts, the records of the tests that finished,
  so a retry runs only the rest (`Progress.remaining`), and `Progress.shard` turns the
  last attempt into the `circuitcheck.reports.merge.Shard` to merge: a shard lost for good
  keeps its finished tests (`partial_document`) and records only the others as lost.

Nothing here imports Ray or torch.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT_KEPT = 6000  # characters of a lost shard's pytest output shown with its tests
POLL_SECONDS = 0.2  # how often a running shard is looked at for newly finished tests


class UsageError(Exception):
    """Bad arguments; the message names the argument and the fix."""


@dataclass
class ShardPlan:
    """The tests one pytest process runs: those of ``model`` (None: pytest's default)."""

    name: str
    model: str | None
    tests: list[dict] = field(default_factory=list)

    @property
    def nodeids(self) -> list[str]:
        return [t["nodeid"] for t in self.tests]

    def without(self, done) -> "ShardPlan":
        """The same shard with only the tests not in ``done`` (node ids): what a retry runs."""
        return ShardPlan(self.name, self.model, [t for t in self.tests if t["nodeid"] not in done])


def split_models(pytest_args: list[str]) -> tuple[list[str], list[str]]:
    """The ``--model`` values (in order, once each), and the other pytest arguments."""
    models, rest, args = [], [], iter(pytest_args)
    for arg in args:
        if arg == "--model":
            value = next(args, None)
            if value is None:
                raise UsageError("--model at the end of the pytest arguments: give it a model name")
            models.append(value)
        elif arg.startswith("--model="):
            models.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return list(dict.fromkeys(models)), rest


def _rootdir(pytest_args: list[str], project) -> list[str]:
    """``--rootdir=PROJECT`` unless given: node ids must mean the same in every process (pytest
    would otherwise take the folders of our own options' paths into account)."""
    return [] if any(a.split("=")[0] == "--rootdir" for a in pytest_args) else [f"--rootdir={project}"]


def collect(pytest_args: list[str], project: Path) -> tuple[int, list[dict], str]:
    """Collect the tests in a pytest subprocess: (its exit code, the tests, its output)."""
    with tempfile.TemporaryDirectory(prefix="circuitcheck-collect-") as work:
        listing = Path(work) / "tests.json"
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "--no-report", "-p", "no:cacheprovider",
                   *_rootdir(pytest_args, project), "-p", "circuitcheck.shard_plugin",
                   f"--circuitcheck-collect-to={listing}", *pytest_args]
        done = subprocess.run(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tests = json.loads(listing.read_text(encoding="utf-8")) if listing.exists() else []
    return done.returncode, tests, done.stdout


def plan_shards(tests: list[dict], models: list[str]) -> list[ShardPlan]:
    """One shard per model, in the order of ``models`` (pytest's default model when empty);
    tests without a model (or with one not asked for) go with the first shard."""
    plans = [ShardPlan(name=m, model=m) for m in models] or [ShardPlan(name="default", model=None)]
    by_model = {p.model: p for p in plans}
    for test in tests:
        by_model.get(test.get("model"), plans[0]).tests.append(test)
    return [p for p in plans if p.tests]


def read_stream(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete lines of a stream file from byte ``offset`` on, and the offset after them
    (a line the dying process left half-written is not complete, and is left out)."""
    if not path.exists():
        return [], offset
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read()
    end = data.rfind(b"\n") + 1
    items = []
    for line in data[:end].splitlines():
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return items, offset + end


def partial_document(header: dict, records: list[dict], finished: float | None = None) -> dict:
    """An evidence.json for a shard that wrote none, from what it streamed: its header and the
    tests that finished; the run is incomplete and its exit status unknown (None)."""
    from circuitcheck.reports.run import SCHEMA_VERSION, RunRecord, definition_order

    started = header.get("started") or min((t.get("at", time.time()) for t in records), default=time.time())
    record = RunRecord(command=header.get("command", "pytest"), started=started,
                       tests={t["nodeid"]: t for t in records})
    return {"schema_version": SCHEMA_VERSION, "command": "pytest", "versions": {}, **header, "started": started,
            "duration": max((finished or time.time()) - started, 0.0), "exitstatus": None, "incomplete": True,
            "counts": record.counts(), "models": header.get("models") or record.models(),
            "tests": definition_order(list(records))}


def run_shard(plan: ShardPlan, pytest_args: list[str], project: str | None, timeout: float | None,
              device: str = "cpu"):
    """Run one pytest process over ``plan``'s tests in ``project`` (None: the working folder),
    its report written into a temporary folder of its own; a generator. Yields ``{"run": header}``
    when its session starts and ``{"test": record}`` as each test finishes, then the result:
    ``evidence`` (the evidence.json text, or None when pytest wrote none), ``returncode``,
    ``output`` (its last lines), ``host``, ``device`` (what the caller says the process was
    given), ``reason`` (why there is no evidence, or the timeout)."""
    host = socket.gethostname()
    project = project or os.getcwd()
    if not Path(project).is_dir():
        yield {"evidence": None, "returncode": None, "host": host, "device": device, "output": "",
               "reason": f"the project folder {project} is not on {host}: check it out at the same path "
                         "on every machine, or pass --upload-project"}
        return
    with tempfile.TemporaryDirectory(prefix="circuitcheck-shard-") as work:
        listing, stream, log = Path(work) / "tests.json", Path(work) / "stream.jsonl", Path(work) / "output.txt"
        listing.write_text(json.dumps(plan.nodeids), encoding="utf-8")
        report_dir = Path(work) / "report"
        command = [sys.executable, "-m", "pytest", *pytest_args, *([f"--model={plan.model}"] if plan.model else []),
                   *_rootdir(pytest_args, project), f"--report-dir={report_dir}", "--report-keep=0",
                   "-p", "no:cacheprovider", "-p", "circuitcheck.shard_plugin",
                   f"--circuitcheck-shard-tests={listing}", f"--circuitcheck-stream-to={stream}"]
        deadline = None if timeout is None else time.monotonic() + timeout
        reason, offset = "", 0
        with log.open("w", encoding="utf-8") as output_file:
            process = subprocess.Popen(command, cwd=project, stdout=output_file, stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                while process.poll() is None:
                    if deadline is not None and time.monotonic() > deadline:
                        process.kill()
                        process.wait()
                        reason = f"stopped after the shard timeout of {timeout:g} s"
                        break
                    items, offset = read_stream(stream, offset)
                    for item in items:  # one by one, not `yield from`: Ray drives the generator with send()
                        yield item
                    time.sleep(POLL_SECONDS)
            finally:
                if process.poll() is None:  # the caller stopped (Ctrl-C, a cancelled task): its pytest goes too
                    process.kill()
                    process.wait()
        items, offset = read_stream(stream, offset)
        for item in items:  # not `yield from` a list: it has no send()
            yield item
        returncode = None if reason else process.returncode
        output = log.read_text(encoding="utf-8", errors="replace")
        from circuitcheck.reports.store import latest_run

        latest = latest_run(report_dir) if report_dir.is_dir() else None
        evidence = (latest / "evidence.json").read_text(encoding="utf-8") if latest else None
    if evidence is None and not reason:
        reason = f"pytest exited with code {returncode} without writing evidence.json (killed, or crashed)"
    yield {"evidence": evidence, "returncode": returncode, "output": output[-OUTPUT_KEPT:], "host": host,
           "device": device, "reason": reason}


def in_collection_order(plan: ShardPlan, records: list[dict]) -> list[dict]:
    """``records`` with their places in the driver's collection: each attempt's pytest numbers
    only the tests it ran, so records from several attempts are ordered by the plan's."""
    from circuitcheck.reports.run import definition_order

    places = {t["nodeid"]: t["order"] for t in plan.tests if "order" in t}
    return definition_order([{**r, "order": places[r["nodeid"]]} if r["nodeid"] in places else r for r in records])


@dataclass
class Progress:
    """What the driver knows of one shard across its attempts: the header and the records of
    the tests that finished (kept whatever happens to the shard after), by node id."""

    plan: ShardPlan
    attempt: int = 1
    header: dict | None = None
    done: dict = field(default_factory=dict)
    last: float | None = None

    def take(self, item: dict) -> bool:
        """File a streamed item; False for the shard's final result."""
        if "run" in item:
            self.header = self.header or item["run"]
            return True
        if "test" in item:
            self.done[item["test"]["nodeid"]] = item["test"]
            self.last = item.get("at", self.last)
            return True
        return False

    def remaining(self) -> ShardPlan:
        return self.plan.without(self.done)

    def shard(self, result: dict):
        """The merge's Shard for the last attempt's ``result``, with the tests earlier attempts
        finished. A shard lost for good keeps its finished tests (a partial evidence.json from
        the stream); only the tests it did not finish are recorded as lost."""
        from circuitcheck.reports.merge import Shard

        plan = self.plan
        common = dict(name=plan.name, source=None, host=result.get("host"),  # its evidence.json came back as text
                      device=result.get("device"), attempts=self.attempt, details=result.get("output", ""))
        if result["evidence"] is not None:
            document = json.loads(result["evidence"])
            reported = {t["nodeid"] for t in document.get("tests", [])}
            earlier = [t for nodeid, t in self.done.items() if nodeid not in reported]  # before a retry
            document["tests"] = in_collection_order(plan, earlier + document.get("tests", []))
            missing = [t for t in plan.tests if t["nodeid"] not in reported and t["nodeid"] not in self.done]
            reason = f"{len(missing)} of its tests not reported (not collected there)" if missing else ""
            return Shard(document=document, reason=reason, lost_tests=missing, **common)
        document = (partial_document(self.header or {}, in_collection_order(plan, list(self.done.values())),
                                     self.last) if self.done else None)
        left = self.remaining().tests
        if not left:  # every test finished and streamed: only its report was lost
            return Shard(document=document, reason=f"{result['reason']}, after every test had finished", **common)
        return Shard(document=document, failed=True, reason=result["reason"], lost_tests=left, **common)
