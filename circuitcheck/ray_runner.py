"""``circuitcheck-ray``: run the hypotheses over a Ray cluster, one pytest process per model.

There is no pytest plugin for Ray, so the driver does what a person with many machines
would do by hand, with Ray as the scheduler. The planning and the running of one shard
have no Ray in them (`circuitcheck.shards`); this module puts them on Ray:

1. collect the tests once and split them into shards by model, in the order of the
   ``--model`` options (`circuitcheck.shards.collect`, `plan_shards`), while Ray starts;
2. run each shard as a Ray task asking for ``num_gpus`` (Ray picks a machine with a free
   GPU and sets ``CUDA_VISIBLE_DEVICES`` for it): `circuitcheck.shards.run_shard`, one
   pytest process started in the project folder so the hypotheses import, sending its
   evidence.json back with the host and device it ran on;
3. stream each test's record out of the shard as soon as the test finishes (a Ray
   streaming generator), so what finished is kept whatever happens to the shard later
   (`circuitcheck.shards.Progress`);
4. retry a shard once when it is lost (its pytest died without a report, its worker or
   machine went away), with only the tests it had not finished; a shard lost twice has
   those unfinished tests recorded as errors with the reason (the finished ones keep
   their verdicts), and the run is incomplete; Ctrl-C keeps what finished the same way;
5. merge the shards on the driver (`circuitcheck.reports.merge`) into one report, in a
   report folder checked before anything runs, as pytest's own plugin checks it
   (`circuitcheck.reports.preflight`).

The exit status is pytest's: 0 all passed, 1 some test failed, 3 a shard was lost
(its tests are errors), 2 interrupted, 4 bad arguments, 5 no tests collected.

    circuitcheck-ray --report-dir reports/out -- hypotheses --model gpt2 --model EleutherAI/pythia-70m
    circuitcheck-ray --address ray://head:10001 --gpus-per-shard 1 -- hypotheses --model gpt2

Ray is an optional dependency (``pip install "circuitcheck[ray]"``), imported only here,
only when the command runs.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from circuitcheck import shards
from circuitcheck.shards import OUTPUT_KEPT, Progress, ShardPlan, UsageError, collect, plan_shards, split_models

RAY_MISSING = ('circuitcheck-ray needs Ray, which is not installed here: pip install "circuitcheck[ray]" '
               "(on the driver and on every machine of the cluster)")
REPORT_OPTIONS = ("--report-dir", "--no-report", "--report-keep", "--report-compare")
UPLOAD_EXCLUDES = [".git", ".venv", "venv", "reports/out", "**/__pycache__", ".pytest_cache", ".hypothesis",
                   "*.egg-info", "notebooks/.ipynb_checkpoints"]
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_NO_TESTS = 4, 2, 5


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


def run_shard(plan: ShardPlan, pytest_args: list[str], project: str | None, timeout: float | None):
    """The Ray task (a streaming generator): `circuitcheck.shards.run_shard` on the machine Ray
    picked, with the GPUs Ray gave it as its device (``project`` None: the task's working
    folder, where Ray unpacked an uploaded project)."""
    yield from shards.run_shard(plan, pytest_args, project, timeout, device=_device())


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

    progress = [Progress(plan) for plan in plans]
    pending = {submit(plan): index for index, plan in enumerate(plans)}  # streaming generator -> shard
    finished: dict = {}
    interrupted = False
    try:
        while pending:
            [generator], _ = ray.wait(list(pending), num_returns=1)
            index = pending[generator]
            state = progress[index]
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
            finished[index] = state.shard(item)
            print(f"circuitcheck-ray: shard {state.plan.name}: {finished[index].reason or 'done'} "
                  f"(host {finished[index].host}, {finished[index].device}, attempt {state.attempt})", flush=True)
    except KeyboardInterrupt:
        for generator, index in pending.items():
            ray.cancel(generator, force=True)
            finished[index] = progress[index].shard({"evidence": None, "output": "",
                                                      "reason": "interrupted (Ctrl-C) before it finished"})
        print("circuitcheck-ray: interrupted; merging the shards' finished tests", flush=True)
        interrupted = True
    return [finished[i] for i in sorted(finished)], interrupted


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
    """The merged report's folder, checked as pytest's report plugin checks its own before
    anything runs (`circuitcheck.reports.preflight`); UsageError naming the option otherwise."""
    from circuitcheck.reports.preflight import ReportOptionError, check_report_options

    report_dir = Path(options.report_dir).absolute() if options.report_dir else project / "reports" / "out"
    try:
        check_report_options(report_dir, options.report_keep, options.report_compare)
    except ReportOptionError as error:
        raise UsageError(str(error)) from None
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
        results, interrupted = run_shards(plans, other_args, None if options.upload_project else str(project), options)
    finally:
        if owns_ray:
            ray.shutdown()
    run = merge.merge_runs(results, command=" ".join(["circuitcheck-ray", *argv]),
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
