"""Merge the evidence.json of several pytest runs (shards) into one run, and one report.

Shards can come from anywhere: circuitcheck-ray's tasks, a CI matrix's jobs,
pytest-split's groups. Each input is checked against ``evidence.schema.json`` first (a
missing or mistyped field is an error naming the file, the test and the field). Tests
are keyed by (node id, model): the same test on a model in two shards is an error
naming it and both sources, because keeping either verdict would silently drop the
other. A test without a model runs in every shard split by ``--model``: the same
outcome from several shards is one result (``where.shard`` lists them all); different
outcomes are an error naming both. The merged run has a run id of its own; its counts and
models are recomputed, its exit status is the worst of the shards', ``started`` the
earliest, ``duration`` from the earliest start to the latest finish, and it is
``incomplete`` when any shard was incomplete or lost. Versions the shards disagree on
are all kept, each with its shards. Every test names its shard in ``where.shard`` and
``merged_from`` lists the shards (a merged report merged again keeps its shards)::

    circuitcheck-merge --out reports/merged ci/job-1/ ci/job-2/ shard-3/evidence.json

An input is an ``evidence.json``, a run folder, or a report folder (its latest run).
``--out`` must lie outside every input: publishing into an input's report folder would
repoint its ``latest`` to the merged run (and could prune its runs). Reading and checking the
inputs (the schema, ``--out``) is `circuitcheck.reports.merge_inputs`; this module merges them.
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from . import store
from .merge_inputs import MergeError, Shard, check_documents, check_out, check_schema_versions, load_shards
from .run import RunRecord, definition_order

EXIT_SEVERITY = (5, 0, 1, 2, 4, 3)  # pytest exit codes, mildest first: no tests, ok, failed, interrupted, usage, internal
LOST_SHARD_EXIT = 3  # a shard that never reported: the run is broken, not its claims
RUN_FIELDS_NOT_MERGED = ("compared_with", "removed_since_compared", "compare_summary")
LOST = "_lost"  # marks, while merging, a record made for a test its shard never reported


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


def _check_duplicates(owners: dict) -> None:
    """``owners``: (node id, model) -> [(shard label, record)]. A test on a model from more than
    one shard is an error; so is a test without a model whose shards disagree on its outcome."""
    duplicates = [(key, places) for key, places in owners.items() if len(places) > 1 and key[1] is not None]
    if duplicates:
        lines = [f"{nodeid} (model {model}) in " + " and ".join(label for label, _ in places)
                 for (nodeid, model), places in duplicates[:10]]
        more = f"\n  ... and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise MergeError(f"{len(duplicates)} test(s) appear in more than one shard:\n  " + "\n  ".join(lines) + more
                         + "\nEach test (node id and model) must come from one shard only: pass each shard's "
                           "report once, and split the runs so they do not overlap (--model, -k, pytest-split)")
    for (nodeid, _), places in owners.items():
        outcomes = dict.fromkeys(record.get("outcome") for _, record in places)
        if len(outcomes) > 1:
            said = " but ".join(f"{outcome or 'not finished'} in " + " and ".join(label for label, r in places
                                                                if r.get("outcome") == outcome)
                                for outcome in outcomes)
            raise MergeError(f"{nodeid} (no model) is {said}: a test without a model runs in every shard "
                             "and is one result only when its shards agree; re-run it, or run it in one "
                             "shard only (--deselect it in the others)")


def _one_per_test(owners: dict) -> list[dict]:
    """One record per test: a test without a model that several shards ran (with the same
    outcome, `_check_duplicates`) is the first shard's record, its ``where.shard`` naming them all."""
    records = []
    for places in owners.values():
        record = places[0][1]
        if len(places) > 1:
            record["where"]["shard"] = ", ".join(dict.fromkeys(r["where"]["shard"] for _, r in places))
        records.append(record)
    return records


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
    records += [dict(r, **{LOST: True}) for r in
                error_tests([t for t in shard.lost_tests if t["nodeid"] not in recorded], message, shard.details)]
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
    schema_version = check_schema_versions(shards)
    check_documents(shards)
    owners, merged_from = {}, []
    for shard in shards:
        records = _shard_tests(shard)
        label = f"{shard.name} ({shard.source})" if shard.source and shard.source != shard.name else shard.name
        for test in records:
            owners.setdefault((test["nodeid"], test.get("model")), []).append((label, test))
        nested = (shard.document or {}).get("merged_from")
        merged_from += list(nested) if nested else [_shard_entry(shard, records)]
    for key, places in owners.items():  # a test its shard lost, but another shard reported, is not lost
        reported = [(label, r) for label, r in places if not r.get(LOST)]
        if key[1] is None and reported:
            owners[key] = reported
    _check_duplicates(owners)
    tests = _one_per_test(owners)
    for test in tests:
        test.pop(LOST, None)
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
    if fixtures := _fixtures(documents):
        run["fixtures"] = fixtures
    return run


def _fixtures(documents) -> list[dict]:
    """The shards' wider fixtures' evidence, one entry per fixture, file, model and parameters
    (a session fixture every shard set up, such as the model's self-checks, once, with every
    place it was set up)."""
    merged: dict = {}
    for _, document in documents:
        for fixture in document.get("fixtures") or []:
            key = (fixture.get("node"), fixture.get("fixture"), fixture.get("model"),
                   json.dumps(fixture.get("params"), sort_keys=True, default=str))
            if key in merged:
                merged[key]["setups"] = (merged[key].get("setups") or []) + (fixture.get("setups") or [])
            else:
                merged[key] = copy.deepcopy(fixture)
    return list(merged.values())


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
        check_out(args.out, args.sources)
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
