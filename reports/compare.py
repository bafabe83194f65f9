"""Compare a run with an earlier evidence.json: which verdicts changed, which numbers moved,
which tests now run on other prompts.

Tests are matched by node id; numbers by their place in the evidence (the n-th item
of a kind, then its summary key), so a re-run of the same hypotheses lines up. The
earlier run is an ``evidence.json``, the run folder holding it, or a report folder
(its ``latest`` run); the plugin loads it when the run starts, so a bad one is a
usage error at once, not a lost report at the end. A test's prompts are the
``prompt_set`` names of its evidence (parts included) and the ``prompt`` column of
their tables: when they differ, its numbers are not measured on the same prompts.
"""

import json
from pathlib import Path

from .store import latest_run

MOVE_THRESHOLD = 1e-6


def load_evidence(path) -> tuple[Path, dict]:
    """The path and document of the evidence.json at ``path`` (a file, a run folder, or a
    report folder's latest run); ValueError saying what is wrong with it otherwise."""
    path = Path(path).absolute()
    if path.is_dir():
        latest = latest_run(path)
        folder = latest if latest is not None else path  # a report folder's newest run first
        path = folder / "evidence.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except OSError as error:
        raise ValueError(f"{path} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        document = json.loads(text)  # lenient: older reports may hold a bare NaN
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, "
                         f"column {error.colno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("tests"), list):
        raise ValueError(f'{path} is JSON but not an evidence.json from circuitcheck (no "tests" list)')
    return path, document


def _numbers(test: dict) -> dict:
    """``{"logit_diff #1 mean": 4.72, ...}`` from a test's evidence summaries and numbers."""
    seen: dict[str, int] = {}
    out = {}
    for item in test.get("evidence", []):
        kind = item.get("kind", "?")
        seen[kind] = seen.get(kind, 0) + 1
        tag = f"{kind} #{seen[kind]}"
        if isinstance(item.get("value"), (int, float)):
            out[f"{tag} {item.get('title', 'value')}"] = item["value"]
        for key, value in (item.get("summary") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{tag} {key}"] = value
    return out


def _prompts(test: dict) -> dict:
    """``{"prompt_sets": [names], "prompts": [prompts]}`` of a test's evidence, in order."""
    names, prompts = [], []

    def visit(item: dict) -> None:
        if item.get("prompt_set") and item["prompt_set"] not in names:
            names.append(item["prompt_set"])
        table = item.get("table") or {}
        if "prompt" in (table.get("columns") or []):
            column = table["columns"].index("prompt")
            prompts.extend(str(row[column]) for row in table.get("rows", []) if str(row[column]) not in prompts)
        for part in item.get("parts") or []:
            visit(part)

    for item in test.get("evidence", []):
        visit(item)
    return {"prompt_sets": names, "prompts": prompts}


def _prompt_change(before: dict, now: dict) -> dict | None:
    """What changed in a test's prompts since the compared run, or None."""
    old, new = _prompts(before), _prompts(now)
    if old == new or not (old["prompt_sets"] or old["prompts"]) or not (new["prompt_sets"] or new["prompts"]):
        return None  # the same, or one side recorded no prompts (nothing to compare)
    return {"old_prompt_sets": old["prompt_sets"], "new_prompt_sets": new["prompt_sets"],
            "prompts_added": [p for p in new["prompts"] if p not in old["prompts"]],
            "prompts_removed": [p for p in old["prompts"] if p not in new["prompts"]]}


def summarise(run: dict) -> dict:
    """``run["compare_summary"]``: counts of changed verdicts, moved numbers, changed prompt
    sets, new and no-longer-run tests."""
    tests = [t.get("compare") or {} for t in run["tests"]]
    return {"verdicts_changed": sum(c.get("status") == "changed" for c in tests),
            "numbers_moved": sum(len(c.get("moves") or []) for c in tests),
            "prompt_sets_changed": sum(bool(c.get("prompts")) for c in tests),
            "new": sum(c.get("status") == "new" for c in tests),
            "removed": len(run.get("removed_since_compared") or [])}


def summary_line(run: dict) -> str:
    """The terminal's line: ``circuitcheck compare with PATH: 2 verdicts changed, ...``."""
    s = run["compare_summary"]

    def count(n, one, many):
        return f"{n} {one if n == 1 else many}"

    words = [count(s["verdicts_changed"], "verdict changed", "verdicts changed"),
             count(s["numbers_moved"], "number moved", "numbers moved"),
             count(s["prompt_sets_changed"], "prompt set changed", "prompt sets changed")]
    words += [f"{s['new']} new"] if s["new"] else []
    words += [f"{s['removed']} no longer run"] if s["removed"] else []
    return f"circuitcheck compare with {run['compared_with']['path']}: {', '.join(words)}"


def compare_runs(run: dict, old_path: Path, old: dict | None = None) -> None:
    """Annotate ``run`` in place: ``run["compared_with"]`` and per test ``test["compare"]``
    (``old``: the document at ``old_path``, when it is already loaded)."""
    if old is None:
        old_path, old = load_evidence(old_path)
    previous = {t["nodeid"]: t for t in old.get("tests", [])}
    run["compared_with"] = {"path": str(old_path), "started": old.get("started"), "run_id": old.get("run_id")}
    # numbers are matched by the n-th evidence item of a kind, which means another item across versions
    same_items = old.get("schema_version") == run.get("schema_version")
    if not same_items:
        run["compared_with"]["note"] = (f"written by schema version {old.get('schema_version')}, this run is "
                                        f"{run.get('schema_version')}: verdicts compared, numbers not")
    for test in run["tests"]:
        before = previous.get(test["nodeid"])
        if before is None:
            test["compare"] = {"status": "new", "old_outcome": None, "moves": []}
            continue
        old_numbers, new_numbers = (_numbers(before), _numbers(test)) if same_items else ({}, {})
        moves = [{"name": k, "old": old_numbers[k], "new": v} for k, v in new_numbers.items()
                 if k in old_numbers and v is not None and old_numbers[k] is not None
                 and abs(v - old_numbers[k]) > MOVE_THRESHOLD]
        changed = before.get("outcome") != test["outcome"]
        test["compare"] = {"status": "changed" if changed else "same", "old_outcome": before.get("outcome"),
                           "moves": moves}
        prompts = _prompt_change(before, test)
        if prompts:
            test["compare"]["prompts"] = prompts
    current = {t["nodeid"] for t in run["tests"]}
    run["removed_since_compared"] = sorted(set(previous) - current)
    run["compare_summary"] = summarise(run)
