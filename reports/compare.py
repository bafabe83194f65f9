"""Compare a run with an earlier evidence.json: which verdicts changed, which numbers moved.

Tests are matched by node id; numbers by their place in the evidence (the n-th item
of a kind, then its summary key), so a re-run of the same hypotheses lines up. The
earlier run is an ``evidence.json``, the run folder holding it, or a report folder
(its ``latest`` run); the plugin loads it when the run starts, so a bad one is a
usage error at once, not a lost report at the end.
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
        folder = path if (path / "evidence.json").exists() or latest is None else latest
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


def compare_runs(run: dict, old_path: Path, old: dict | None = None) -> None:
    """Annotate ``run`` in place: ``run["compared_with"]`` and per test ``test["compare"]``
    (``old``: the document at ``old_path``, when it is already loaded)."""
    if old is None:
        old_path, old = load_evidence(old_path)
    previous = {t["nodeid"]: t for t in old.get("tests", [])}
    run["compared_with"] = {"path": str(old_path), "started": old.get("started"), "run_id": old.get("run_id")}
    for test in run["tests"]:
        before = previous.get(test["nodeid"])
        if before is None:
            test["compare"] = {"status": "new", "old_outcome": None, "moves": []}
            continue
        old_numbers, new_numbers = _numbers(before), _numbers(test)
        moves = [{"name": k, "old": old_numbers[k], "new": v} for k, v in new_numbers.items()
                 if k in old_numbers and v is not None and old_numbers[k] is not None
                 and abs(v - old_numbers[k]) > MOVE_THRESHOLD]
        changed = before.get("outcome") != test["outcome"]
        test["compare"] = {"status": "changed" if changed else "same", "old_outcome": before.get("outcome"),
                           "moves": moves}
    current = {t["nodeid"] for t in run["tests"]}
    run["removed_since_compared"] = sorted(set(previous) - current)
