"""Compare a run with an earlier evidence.json: which verdicts changed, which numbers moved.

Tests are matched by node id; numbers by their place in the evidence (the n-th item
of a kind, then its summary key), so a re-run of the same hypotheses lines up.
"""

import json
from pathlib import Path

MOVE_THRESHOLD = 1e-6


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


def compare_runs(run: dict, old_path: Path) -> None:
    """Annotate ``run`` in place: ``run["compared_with"]`` and per test ``test["compare"]``."""
    old = json.loads(Path(old_path).read_text())
    previous = {t["nodeid"]: t for t in old.get("tests", [])}
    run["compared_with"] = {"path": str(old_path), "started": old.get("started")}
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
