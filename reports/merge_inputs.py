"""The inputs of a merge (`circuitcheck.reports.merge`): each run to merge as a `Shard`, read
from the paths given (`load_shards`), every evidence.json checked against
``evidence.schema.json`` and all of one schema version before anything is merged (a problem is
a `MergeError` naming the file, the test and the field), and ``--out`` checked to lie outside
every input (`check_out`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .run import SCHEMA_VERSION

SCHEMA_FILE = Path(__file__).with_name("evidence.schema.json")


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


def check_schema_versions(shards: list[Shard]) -> int:
    """The shards' one schema version (this circuitcheck's when none has a document); MergeError
    when they have several, or one that is not an integer."""
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
            continue  # another schema version: refused when mixed (check_schema_versions)
        problems = list(_schema_problems(document, schema, schema))
        if problems:
            path, problem = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise MergeError(f"{shard.source or shard.name}: {_place(document, path)} {problem}{more}, against "
                             f"{SCHEMA_FILE.name}. Pass evidence.json files written by this circuitcheck, or "
                             "re-run that shard")


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
