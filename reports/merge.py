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
repoint its ``latest`` to the merged run (and could prune its runs).
"""

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .run import SCHEMA_VERSION, RunRecord, definition_order

EXIT_SEVERITY = (5, 0, 1, 2, 4, 3)  # pytest exit codes, mildest first: no tests, ok, failed, interrupted, usage, internal
LOST_SHARD_EXIT = 3  # a shard that never reported: the run is broken, not its claims
RUN_FIELDS_NOT_MERGED = ("compared_with", "removed_since_compared", "compare_summary")
SCHEMA_FILE = Path(__file__).with_name("evidence.schema.json")
LOST = "_lost"  # marks, while merging, a record made for a test its shard never reported


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


def _json_type(value) -> str:
    """The JSON type of a loaded value: ``integer`` for 2, ``string`` for "2"."""
    if value is None:
        return "null"
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                       ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _a(json_type: str) -> str:
    return json_type if json_type == "null" else ("an " if json_type[0] in "aeiou" else "a ") + json_type


def _shown(value) -> str:
    """A value and its JSON type, as an error shows it: ``'2' (a string)``, ``2 (an integer)``."""
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({_a(_json_type(value))})"


def _check_schema_versions(shards: list[Shard]) -> int:
    versions: dict = {}
    for shard in shards:
        if shard.document is not None:
            version = shard.document.get("schema_version")
            versions.setdefault((_json_type(version), version), []).append(shard.source or shard.name)
    if len(versions) > 1:
        typed = any(kind != "integer" for kind, _ in versions)  # "2" beside 2: say which is which
        listed = "; ".join(f"version {_shown(v) if typed else v}: {', '.join(sources)}"
                           for (_, v), sources in versions.items())
        raise MergeError(f"the evidence.json files have different schema versions ({listed}): their "
                         "evidence items do not mean the same thing. Re-run the older shards with this "
                         "circuitcheck, or merge only files of one schema version")
    if not versions:
        return SCHEMA_VERSION
    [((kind, version), sources)] = versions.items()
    if kind != "integer":
        raise MergeError(f"{sources[0]}: schema_version is {_shown(version)}, but evidence.json files have an "
                         f"integer schema_version (this circuitcheck writes {SCHEMA_VERSION}); pass evidence.json "
                         "files written by circuitcheck")
    return version


def _schema_problems(value, schema: dict, root: dict, path: tuple = ()):
    """(path, problem) for each place ``value`` breaks ``schema``: the parts of JSON Schema
    evidence.schema.json uses to say what a field must be ($ref, type, const, enum,
    required, properties, items), without the jsonschema package (a dev dependency only)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "const" in schema and (value != schema["const"] or _json_type(value) != _json_type(schema["const"])):
        yield path, f"is {_shown(value)}; the schema wants {_shown(schema['const'])}"
        return
    if "enum" in schema and not any(value == v and _json_type(value) == _json_type(v) for v in schema["enum"]):
        yield path, f"is {_shown(value)}; the schema wants one of {', '.join(json.dumps(v) for v in schema['enum'])}"
        return
    wanted = schema.get("type")
    if wanted is not None:
        wanted = [wanted] if isinstance(wanted, str) else wanted
        kind = _json_type(value)
        if kind not in wanted and not (kind == "integer" and "number" in wanted):
            yield path, f"is {_shown(value)}; the schema wants {' or '.join(map(_a, wanted))}"
            return
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                yield path, f'has no "{name}"'
        for name, part in schema.get("properties", {}).items():
            if name in value:
                yield from _schema_problems(value[name], part, root, path + (name,))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _schema_problems(item, schema["items"], root, path + (index,))


def _place(document: dict, path: tuple) -> str:
    """``test 'f.py::t[m]' evidence[0]``, ``"started"``, ``the run``: where in ``document`` ``path`` is."""
    head, rest = "the run", path
    if len(path) >= 2 and path[0] == "tests" and isinstance(path[1], int):
        test = document["tests"][path[1]]
        nodeid = test.get("nodeid") if isinstance(test, dict) else None
        head, rest = (f"test {nodeid!r}" if isinstance(nodeid, str) else f"tests[{path[1]}]"), path[2:]
    if not rest:
        return head
    field_path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest).lstrip(".")
    return f'"{field_path}"' if head == "the run" else f'{head}: "{field_path}"'


def check_documents(shards: list[Shard]) -> None:
    """MergeError naming the file, the test and the field when a shard's evidence.json (of
    this schema version) breaks evidence.schema.json; checked before anything is merged."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    for shard in shards:
        document = shard.document
        if document is None or document.get("schema_version") != SCHEMA_VERSION:
            continue  # another schema version: refused when mixed (_check_schema_versions)
        problems = list(_schema_problems(document, schema, schema))
        if problems:
            path, problem = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise MergeError(f"{shard.source or shard.name}: {_place(document, path)} {problem}{more}, against "
                             f"{SCHEMA_FILE.name}. Pass evidence.json files written by this circuitcheck, or "
                             "re-run that shard")


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
    schema_version = _check_schema_versions(shards)
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


def check_out(out, sources: list[str]) -> None:
    """MergeError when the ``--out`` folder is, contains, or is inside one of the inputs
    ``sources``: publishing there would repoint that input's ``latest`` to the merged run,
    or prune its runs. Paths are compared resolved (symlinks such as ``latest`` followed)."""
    target = Path(out).resolve()
    for given in sources:
        source = Path(given).resolve()
        if target == source:
            how = "is"
        elif source.is_relative_to(target):
            how = "contains"
        elif target.is_relative_to(source):
            how = "is inside"
        else:
            continue
        raise MergeError(f"--out {out} {how} the input {given}: writing the merged run there would repoint "
                         "that input's latest to it (and could prune its runs); pass an --out folder outside "
                         "every input, e.g. --out reports/merged")


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
