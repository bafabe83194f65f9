"""``circuitcheck-ray``: run the hypotheses over a Ray cluster, one pytest process per model.

There is no pytest plugin for Ray, so the driver does what a person with many machines
would do by hand, with Ray as the scheduler:

1. collect the tests once (``pytest --collect-only`` in a subprocess, with
   `circuitcheck.shard_plugin` writing them out) and split them into shards by model,
   in the order of the ``--model`` options (tests without a model go with the first);
2. run each shard as a Ray task asking for ``num_gpus`` (Ray picks a machine with a free
   GPU and sets ``CUDA_VISIBLE_DEVICES`` for it): one pytest process, started in the
   project folder so the hypotheses import, writing its report into a temporary folder
   of its own, and sending its evidence.json back with the host and device it ran on;
3. stream each test's record out of the shard as soon as the test finishes (the shard's
   pytest appends it to a file, `circuitcheck.shard_plugin.TestStream`; the task yields it to the driver, a Ray
   streaming generator), so what finished is kept whatever happens to the shard later;
4. retry a shard once when it is lost (its pytest died without a report, its worker or
   machine went away), with only the tests it had not finished; a shard lost twice has
   those unfinished tests recorded as errors with the reason (the finished ones keep
   their verdicts), and the run is incomplete; Ctrl-C keeps what finished the same way;
5. merge the shards on the driver (`circuitcheck.reports.merge`) into one report.

The exit status is pytest's: 0 all passed, 1 some test failed, 3 a shard was lost
(its tests are errors), 2 interrupted, 4 bad arguments, 5 no tests collected.

    circuitcheck-ray --report-dir reports/out -- hypotheses --model gpt2 --model EleutherAI/pythia-70m
    circuitcheck-ray --address ray://head:10001 --gpus-per-shard 1 -- hypotheses --model gpt2

Ray is an optional dependency (``pip install "circuitcheck[ray]"``), imported only here,
only when the command runs.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY_MISSING = ('circuitcheck-ray needs Ray, which is not installed here: pip install "circuitcheck[ray]" '
               "(on the driver and on every machine of the cluster)")
REPORT_OPTIONS = ("--report-dir", "--no-report", "--report-keep", "--report-compare")
OUTPUT_KEPT = 6000  # characters of a lost shard's pytest output shown with its tests
POLL_SECONDS = 0.2  # how often a shard task looks for newly finished tests
UPLOAD_EXCLUDES = [".git", ".venv", "venv", "reports/out", "**/__pycache__", ".pytest_cache", ".hypothesis",
                   "*.egg-info", "notebooks/.ipynb_checkpoints"]
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_NO_TESTS = 4, 2, 5


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


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The runner's own options, and the pytest arguments after ``--``."""
    own, pytest_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="circuitcheck-ray", usage="circuitcheck-ray [options] -- PYTEST_ARGS...",
        description="Run pytest over a Ray cluster, one shard (pytest process) per --model, and merge "
                    "the shards' evidence into one report: REPORT_DIR/<UTC time>-<run id>/, REPORT_DIR/latest.")
    parser.add_argument("--address", help="the Ray cluster to use (ray://head:10001, or auto for the one "
                                           "`ray start` runs here); default: start a local one")
    parser.add_argument("--gpus-per-shard", type=float, default=None, metavar="K",
                        help="GPUs each shard asks Ray for (more than 1 for a model split with "
                             "--device-map); default 1 when the cluster has GPUs, otherwise 0")
    parser.add_argument("--cpus-per-shard", type=float, default=1.0, metavar="N",
                        help="CPUs each shard asks Ray for (its torch threads); default 1")
    parser.add_argument("--num-cpus", type=int, default=None, metavar="N",
                        help="CPUs of the local cluster started when --address is not given (default: all)")
    parser.add_argument("--report-dir", default=None, metavar="DIR",
                        help="report folder of the merged run (default: reports/out in this folder)")
    parser.add_argument("--report-keep", type=int, default=None, metavar="N",
                        help="keep the newest N run folders in the report folder (0: all)")
    parser.add_argument("--report-compare", metavar="OLD", help="compare the merged run with an earlier one")
    parser.add_argument("--retries", type=int, default=1, metavar="N",
                        help="times a lost shard is run again (default 1)")
    parser.add_argument("--shard-timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a shard's pytest after this long (it then counts as lost)")
    parser.add_argument("--upload-project", action="store_true",
                        help="send this folder to every machine with Ray (runtime_env working_dir) "
                             "instead of expecting it at the same path on each")
    args = parser.parse_args(own)
    if not pytest_args:
        parser.error("no pytest arguments: put them after --, e.g. circuitcheck-ray -- hypotheses --model tiny-llama")
    for arg in pytest_args:
        if arg.split("=")[0] in REPORT_OPTIONS:
            raise UsageError(f"{arg} among the pytest arguments: each shard writes its own report, which "
                             f"circuitcheck-ray merges; give {arg.split('=')[0]} before -- instead")
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries}: pass 0 or more")
    return args, pytest_args


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


def _device() -> str:
    """The device a Ray task was given: its GPUs (as ``CUDA_VISIBLE_DEVICES`` names them), or cpu
    (also outside a Ray task)."""
    try:
        import ray

        gpus = ray.get_gpu_ids() if ray.is_initialized() else []  # get_gpu_ids would start Ray
    except Exception:  # noqa: BLE001 - not in a Ray worker (or no Ray): no GPUs were given
        gpus = []
    if not gpus:
        return "cpu"
    return f"cuda (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', ','.join(map(str, gpus)))})"


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


# -- the Ray task ---------------------------------------------------------------------------


def run_shard(plan: ShardPlan, pytest_args: list[str], project: str | None, timeout: float | None):
    """The Ray task (a streaming generator): run one pytest process over ``plan``'s tests in
    ``project`` (None: the task's working folder, where Ray unpacked an uploaded project), its
    report written into a temporary folder of its own. Yields ``{"run": header}`` when its
    session starts and ``{"test": record}`` as each test finishes, then the result:
    ``evidence`` (the evidence.json text, or None when pytest wrote none), ``returncode``,
    ``output`` (its last lines), ``host``, ``device``, ``reason``."""
    host, device = socket.gethostname(), _device()
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
                    for item in items:  # one by one: Ray drives the generator itself
                        yield item
                    time.sleep(POLL_SECONDS)
            finally:
                if process.poll() is None:  # the task is cancelled (Ctrl-C): its pytest goes too
                    process.kill()
                    process.wait()
        items, offset = read_stream(stream, offset)
        for item in items:  # one by one: Ray drives the generator itself
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
        """File a streamed item; False for the task's final result."""
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".strip()


def run_shards(plans: list[ShardPlan], pytest_args: list[str], project: str | None, options) -> tuple[list, bool]:
    """Run every shard on Ray, keeping each test's record as it streams in; run a lost shard's
    unfinished tests again, up to ``options.retries`` times; return the merge's Shards, in the
    order of ``plans``. Ctrl-C stops the shards still running: their finished tests are kept,
    the others recorded as lost, and ``interrupted`` is True."""
    import ray

    task = ray.remote(run_shard).options(num_gpus=options.gpus_per_shard, num_cpus=options.cpus_per_shard,
                                         max_retries=0, num_returns="streaming")

    def submit(plan):
        return task.remote(plan, pytest_args, project, options.shard_timeout)

    shards = [Progress(plan) for plan in plans]
    pending = {submit(plan): index for index, plan in enumerate(plans)}  # streaming generator -> shard
    finished: dict = {}
    interrupted = False
    try:
        while pending:
            [generator], _ = ray.wait(list(pending), num_returns=1)
            index = pending[generator]
            state = shards[index]
            try:
                item = ray.get(next(generator))
            except StopIteration:
                item = {"evidence": None, "reason": "its task ended without a result", "output": ""}
            except ray.exceptions.RayError as error:  # the task, its worker or its machine was lost
                item = {"evidence": None, "reason": f"Ray lost the task: {_first_line(error)}", "output": str(error)}
            if state.take(item):
                continue
            del pending[generator]
            left = state.remaining().tests
            if item["evidence"] is None and state.attempt <= options.retries and left:
                print(f"circuitcheck-ray: shard {state.plan.name} lost ({item['reason']}) after {len(state.done)} "
                      f"finished test(s); running its {len(left)} unfinished test(s) again", flush=True)
                state.attempt += 1
                pending[submit(state.remaining())] = index
                continue
            finished[index] = _shard(state, item)
            print(f"circuitcheck-ray: shard {state.plan.name}: {finished[index].reason or 'done'} "
                  f"(host {finished[index].host}, {finished[index].device}, attempt {state.attempt})", flush=True)
    except KeyboardInterrupt:
        for generator, index in pending.items():
            ray.cancel(generator, force=True)
            finished[index] = _shard(shards[index], {"evidence": None, "output": "",
                                                     "reason": "interrupted (Ctrl-C) before it finished"})
        print("circuitcheck-ray: interrupted; merging the shards' finished tests", flush=True)
        interrupted = True
    return [finished[i] for i in sorted(finished)], interrupted


def _in_collection_order(plan: ShardPlan, records: list[dict]) -> list[dict]:
    """``records`` with their places in the driver's collection: each attempt's pytest numbers
    only the tests it ran, so records from several attempts are ordered by the plan's."""
    from circuitcheck.reports.run import definition_order

    places = {t["nodeid"]: t["order"] for t in plan.tests if "order" in t}
    return definition_order([{**r, "order": places[r["nodeid"]]} if r["nodeid"] in places else r for r in records])


def _shard(state: Progress, result: dict):
    """The merge's Shard for a shard's last result, with the tests earlier attempts finished.
    A shard lost for good keeps its finished tests (a partial evidence.json from the stream);
    only the tests it did not finish are recorded as lost."""
    from circuitcheck.reports.merge import Shard

    plan = state.plan
    common = dict(name=plan.name, source=None, host=result.get("host"),  # its evidence.json came back as text
                  device=result.get("device"), attempts=state.attempt, details=result.get("output", ""))
    if result["evidence"] is not None:
        document = json.loads(result["evidence"])
        reported = {t["nodeid"] for t in document.get("tests", [])}
        earlier = [t for nodeid, t in state.done.items() if nodeid not in reported]  # before a retry
        document["tests"] = _in_collection_order(plan, earlier + document.get("tests", []))
        missing = [t for t in plan.tests if t["nodeid"] not in reported and t["nodeid"] not in state.done]
        reason = f"{len(missing)} of its tests not reported (not collected there)" if missing else ""
        return Shard(document=document, reason=reason, lost_tests=missing, **common)
    document = (partial_document(state.header or {}, _in_collection_order(plan, list(state.done.values())),
                                 state.last) if state.done else None)
    left = state.remaining().tests
    if not left:  # every test finished and streamed: only its report was lost
        return Shard(document=document, reason=f"{result['reason']}, after every test had finished", **common)
    return Shard(document=document, failed=True, reason=result["reason"], lost_tests=left, **common)


def _connect(options) -> bool:
    """Connect to the cluster (or start a local one); True when this call started Ray."""
    import ray

    if ray.is_initialized():  # a caller (a notebook, a test) already connected
        return False
    runtime_env = {"working_dir": os.getcwd(), "excludes": UPLOAD_EXCLUDES} if options.upload_project else None
    kwargs = dict(logging_level="WARNING", runtime_env=runtime_env)
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, **kwargs)
    return True


def _report_dir(options, project: Path) -> Path:
    """The merged report's folder, checked writable (and the run to compare with, readable)
    before anything runs; UsageError naming the option otherwise."""
    from circuitcheck.reports import store

    report_dir = Path(options.report_dir).absolute() if options.report_dir else project / "reports" / "out"
    try:
        store.check_writable(report_dir)
    except OSError as error:
        raise UsageError(f"--report-dir {report_dir}: the report cannot be written there ({error}). "
                         "Pass --report-dir with a folder you can write.") from None
    if options.report_compare:
        from circuitcheck.reports.compare import load_evidence

        try:
            load_evidence(options.report_compare)
        except ValueError as error:
            raise UsageError(f"--report-compare {options.report_compare}: {error}") from None
    return report_dir


def main(argv: list[str] | None = None) -> int:
    """``circuitcheck-ray [options] -- PYTEST_ARGS...``; returns pytest's exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    project = Path.cwd()
    try:
        options, pytest_args = parse_args(argv)
        models, other_args = split_models(pytest_args)
        try:
            import ray
        except ImportError:
            raise UsageError(RAY_MISSING) from None
        report_dir = _report_dir(options, project)
    except UsageError as error:
        print(f"circuitcheck-ray: {error}", file=sys.stderr)
        return EXIT_USAGE
    from concurrent.futures import ThreadPoolExecutor

    from circuitcheck.reports import merge, store

    started = time.time()
    with ThreadPoolExecutor(1) as pool:  # collect while Ray starts
        collecting = pool.submit(collect, pytest_args, project)
        owns_ray = _connect(options)
        code, tests, output = collecting.result()
    try:
        if code not in (0, EXIT_NO_TESTS) or not tests:
            print(output[-OUTPUT_KEPT:], file=sys.stderr)
            print(f"circuitcheck-ray: collecting the tests failed (pytest exit {code}): nothing was run"
                  if code not in (0, EXIT_NO_TESTS) else "circuitcheck-ray: no tests collected", file=sys.stderr)
            return code if code != 0 else EXIT_NO_TESTS
        plans = plan_shards(tests, models)
        if options.gpus_per_shard is None:
            options.gpus_per_shard = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        print(f"circuitcheck-ray: {len(tests)} tests in {len(plans)} shards ("
              + ", ".join(f"{p.name}: {len(p.tests)}" for p in plans)
              + f"), {options.gpus_per_shard:g} GPU and {options.cpus_per_shard:g} CPU each", flush=True)
        shards, interrupted = run_shards(plans, other_args, None if options.upload_project else str(project), options)
    finally:
        if owns_ray:
            ray.shutdown()
    run = merge.merge_runs(shards, command=" ".join(["circuitcheck-ray", *argv]),
                           order={t["nodeid"]: i for i, t in enumerate(tests)})
    run["started"], run["duration"] = started, time.time() - started
    if interrupted or run["exitstatus"] is None:
        run["exitstatus"] = EXIT_INTERRUPTED if interrupted else merge.LOST_SHARD_EXIT
    keep = store.KEEP if options.report_keep is None else options.report_keep
    try:
        written = merge.publish_merged(run, report_dir, keep, options.report_compare)
    except merge.MergeError as error:
        print(f"circuitcheck-ray: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(merge.report_line(run, written))
    return run["exitstatus"]


if __name__ == "__main__":
    sys.exit(main())
