"""Merge the evidence.json of several pytest runs (shards) into one run, and one report.

Shards can come from anywhere: circuitcheck-ray's tasks, a CI matrix's jobs,
pytest-split's groups. Tests are keyed by (node id, model): the same test in two
shards is an error naming it and both sources, because keeping either verdict would
silently drop the other. The merged run has a run id of its own; its counts and
models are recomputed, its exit status is the worst of the shards', ``started`` the
earliest, ``duration`` from the earliest start to the latest finish, and it is
``incomplete`` when any shard was incomplete or lost. Versions the shards disagree on
are all kept, each with its shards. Every test names its shard in ``where.shard`` and
``merged_from`` lists the shards (a merged report merged again keeps its shards)::

    circuitcheck-merge --out reports/merged ci/job-1/ ci/job-2/ shard-3/evidence.json

An input is an ``evidence.json``, a run folder, or a report folder (its latest run).
"""

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .run import RunRecord, definition_order

EXIT_SEVERITY = (5, 0, 1, 2, 4, 3)  # pytest exit codes, mildest first: no tests, ok, failed, interrupted, usage, internal
LOST_SHARD_EXIT = 3  # a shard that never reported: the run is broken, not its claims
RUN_FIELDS_NOT_MERGED = ("compared_with", "removed_since_compared", "compare_summary")


class MergeError(ValueError):
    """The inputs cannot be merged into one run (the message says which and why)."""


@dataclass
class Shard:
    """One run to merge. ``document`` is its evidence.json; a lost shard (its pytest died or
    its machine went away, ``failed=True``) has none. ``lost_tests`` are tests it was given
    but did not report (all of them, for a lost shard): the merged run records them as
    errors, with ``reason`` and ``details`` (its pytest's last output)."""

    name: str
    document: dict | None
    source: str | None = None
    host: str | None = None
    device: str | None = None
    attempts: int = 1
    failed: bool = False
    reason: str = ""
    details: str = ""
    lost_tests: list[dict] = field(default_factory=list)


def error_tests(tests: list[dict], message: str, details: str = "") -> list[dict]:
    """Test records (as the plugin writes them) with outcome ``error``, for tests that were
    collected but never reported. ``tests`` need ``nodeid``; ``hypothesis``, ``model``,
    ``claim``, ``params`` and ``order`` are kept when given."""
    records = []
    for test in tests:
        record = {"nodeid": test["nodeid"], "hypothesis": test.get("hypothesis") or test["nodeid"].split("[")[0],
                  "model": test.get("model"), "claim": test.get("claim", ""), "outcome": "error",
                  "message": message, "details": details, "duration": 0.0, "evidence": []}
        record.update({k: test[k] for k in ("params", "order") if k in test})
        records.append(record)
    return records


def _worst_exit(codes) -> int | None:
    codes = [c for c in codes if c is not None]
    if not codes:
        return None
    return max(codes, key=lambda c: EXIT_SEVERITY.index(c) if c in EXIT_SEVERITY else len(EXIT_SEVERITY))


def _agreed(values: list[tuple[str, str | None]]) -> str | None:
    """One value when every shard agrees; otherwise each value with the shards that had it."""
    distinct: dict = {}
    for shard, value in values:
        distinct.setdefault(value, []).append(shard)
    if len(distinct) <= 1:
        return next(iter(distinct), None)
    return "; ".join(f"{value} ({', '.join(shards)})" for value, shards in distinct.items())


def _check_schema_versions(shards: list[Shard]) -> int:
    versions: dict = {}
    for shard in shards:
        if shard.document is not None:
            versions.setdefault(shard.document.get("schema_version"), []).append(shard.source or shard.name)
    if len(versions) > 1:
        listed = "; ".join(f"version {v}: {', '.join(sources)}" for v, sources in versions.items())
        raise MergeError(f"the evidence.json files have different schema versions ({listed}): their "
                         "evidence items do not mean the same thing. Re-run the older shards with this "
                         "circuitcheck, or merge only files of one schema version")
    if not versions:
        from .run import SCHEMA_VERSION

        return SCHEMA_VERSION
    return next(iter(versions))


def _check_duplicates(owners: dict) -> None:
    duplicates = [(key, places) for key, places in owners.items() if len(places) > 1]
    if not duplicates:
        return
    lines = [f"{nodeid} (model {model}) in " + " and ".join(places) for (nodeid, model), places in duplicates[:10]]
    more = f"\n  ... and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
    raise MergeError(f"{len(duplicates)} test(s) appear in more than one shard:\n  " + "\n  ".join(lines) + more
                     + "\nEach test (node id and model) must come from one shard only: pass each shard's "
                       "report once, and split the runs so they do not overlap (--model, -k, pytest-split)")


def _shard_entry(shard: Shard, tests: list[dict]) -> dict:
    hosts = sorted({(t.get("where") or {}).get("host") for t in tests} - {None})
    return {"shard": shard.name, "source": shard.source,
            "run_id": (shard.document or {}).get("run_id"),
            "host": shard.host or (", ".join(hosts) if hosts else None),
            "status": "failed" if shard.failed else "ok", "attempts": shard.attempts, "reason": shard.reason}


def _shard_tests(shard: Shard) -> list[dict]:
    """The shard's test records (copies), each with its shard and host in ``where``."""
    records = [dict(t) for t in (shard.document or {}).get("tests", [])]
    recorded = {t["nodeid"] for t in records}
    message = (f"shard {shard.name} lost ({shard.attempts} attempts): {shard.reason}" if shard.failed
               else f"given to shard {shard.name}, which did not report it: {shard.reason}")
    records += error_tests([t for t in shard.lost_tests if t["nodeid"] not in recorded], message, shard.details)
    for test in records:
        test.pop("compare", None)  # compared with some other run: not this merged one's comparison
        where = dict(test.get("where") or {})
        where["shard"] = where.get("shard") or shard.name  # a merged report merged again keeps its shards
        if where.get("host") is None and shard.host:
            where["host"] = shard.host
        if where.get("device") is None and shard.device:
            where["device"] = shard.device
        test["where"] = where
    return records


def merge_runs(shards: list[Shard], command: str, order: dict[str, int] | None = None) -> dict:
    """One run document from ``shards`` (see the module docstring). ``order`` maps node ids to
    their place in one collection of all the tests, so the merged report lists them as a
    serial run would; without it each shard's own order is used. MergeError on duplicates
    or different schema versions."""
    schema_version = _check_schema_versions(shards)
    tests, owners, merged_from = [], {}, []
    for shard in shards:
        records = _shard_tests(shard)
        for test in records:
            owners.setdefault((test["nodeid"], test.get("model")), []).append(
                f"{shard.name} ({shard.source})" if shard.source and shard.source != shard.name else shard.name)
        tests += records
        nested = (shard.document or {}).get("merged_from")
        merged_from += list(nested) if nested else [_shard_entry(shard, records)]
    _check_duplicates(owners)
    if order:
        for test in tests:
            if test["nodeid"] in order:
                test["order"] = order[test["nodeid"]]
    documents = [(s.name, s.document) for s in shards if s.document is not None]
    models: dict = {}
    for _, document in documents:
        for model in document.get("models", []):
            models.setdefault(model.get("name"), model)
    record = RunRecord(command=command, started=0.0, tests={i: t for i, t in enumerate(tests)})
    started = min((d["started"] for _, d in documents if d.get("started") is not None), default=time.time())
    finished = max((d["started"] + (d.get("duration") or 0.0) for _, d in documents
                    if d.get("started") is not None), default=started)
    lost = any(s.failed for s in shards)
    packages = dict.fromkeys(p for _, d in documents for p in (d.get("versions") or {}))
    run = {
        "schema_version": schema_version,
        "run_id": store.new_run_id(),
        "command": command,
        "started": started,
        "duration": finished - started,
        "exitstatus": _worst_exit([d.get("exitstatus") for _, d in documents] + ([LOST_SHARD_EXIT] if lost else [])),
        "incomplete": lost or any(d.get("incomplete") for _, d in documents)
                      or any(t.get("outcome") in (None, "error") for t in tests),
        "stopped_early": any(d.get("stopped_early") for _, d in documents),
        "platform": _agreed([(n, d.get("platform")) for n, d in documents]),
        "python": _agreed([(n, d.get("python")) for n, d in documents]),
        "versions": {p: _agreed([(n, (d.get("versions") or {}).get(p)) for n, d in documents]) for p in packages},
        "counts": record.counts(),
        "models": [m for name, m in models.items() if name is not None],
        "tests": definition_order(tests),
        "merged_from": merged_from,
    }
    for name in dict.fromkeys(t.get("model") for t in tests):  # a lost shard's models
        if name and name not in models:
            run["models"].append({"name": name})
    return run


def load_shards(paths: list[str]) -> list[Shard]:
    """Each path's evidence.json as a Shard named by the path as given; MergeError naming the
    path when one cannot be read, or when two name the same file."""
    from .compare import load_evidence

    shards, seen = [], {}
    for given in paths:
        try:
            source, document = load_evidence(given)
        except ValueError as error:
            raise MergeError(f"{given}: {error}. Pass evidence.json files, run folders, or report "
                             "folders (their latest run) written by circuitcheck") from None
        if source in seen:
            raise MergeError(f"{given} and {seen[source]} are the same report ({source}): pass each "
                             "shard once")
        seen[source] = given
        shards.append(Shard(name=given.rstrip("/") or given, document=document, source=str(source)))
    return shards


def publish_merged(run: dict, out: Path, keep: int = store.KEEP, compare: str | None = None) -> Path:
    """Write the merged ``run`` as a run folder in ``out`` (``latest`` points at it), compared
    with an earlier run when ``compare`` is given; return its index.html."""
    if compare:
        from .compare import compare_runs

        try:
            compare_runs(run, Path(compare))
        except ValueError as error:
            raise MergeError(f"--report-compare {compare}: {error}") from None
    return store.publish(run, out, keep)


def report_line(run: dict, written: Path) -> str:
    """``circuitcheck report: PATH (incomplete) (3 passed, 1 failed)``, as pytest's last line."""
    counts = ", ".join(f"{n} {o}" for o, n in run["counts"].items())
    note = " (incomplete)" if run["incomplete"] else ""
    return f"circuitcheck report: {written}{note} ({counts})"


def main(argv: list[str] | None = None) -> int:
    """``circuitcheck-merge --out DIR REPORT...``: 0 when the merged report is written, 2 when
    the inputs cannot be merged (the reason on stderr)."""
    parser = argparse.ArgumentParser(
        prog="circuitcheck-merge",
        description="Merge the evidence.json of several pytest runs (CI jobs, shards) into one "
                    "report: DIR/<UTC time>-<run id>/ (index.html, evidence.json), DIR/latest.")
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder to write the merged run into")
    parser.add_argument("--report-keep", type=int, default=store.KEEP, metavar="N",
                        help=f"keep the newest N run folders in DIR (0: all; default {store.KEEP})")
    parser.add_argument("--report-compare", metavar="OLD", help="compare the merged run with an earlier one")
    parser.add_argument("sources", nargs="+", metavar="REPORT",
                        help="an evidence.json, a run folder, or a report folder (its latest run)")
    args = parser.parse_args(argv)
    try:
        run = merge_runs(load_shards(args.sources), command=" ".join(["circuitcheck-merge", *(sys.argv[1:] if argv is None else argv)]))
        written = publish_merged(run, Path(args.out), args.report_keep, args.report_compare)
    except MergeError as error:
        print(f"circuitcheck-merge: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"circuitcheck-merge: --out {args.out}: the report cannot be written there ({error}). "
              "Pass --out with a folder you can write.", file=sys.stderr)
        return 2
    print(report_line(run, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
