"""The run-level "Ground truth" section: every discovery method × every known-circuit model, with
the AUROC, precision and recall its ranking reached against the circuit known by construction.

Built only from the run's evidence: each `recovery` Result a test (or a wider fixture) recorded,
kind ``"recovery"`` (`circuitcheck.probes.recovery.Recovery`), parts included. Its title names
the truth, the level (nodes or edges) and the method (``"Recovery of tracr-induction's true
edges by EAP-IG (5 steps)"``); its summary holds ``AUROC``, ``precision@k``, ``recall@k`` (k the
truth's size) and ``last true rank``. A cell also shows the outcome of the test that recorded it
(a strict expected failure is a method that does not recover the truth there, its numbers in
the reason). Reading the report needs no torch: this module imports nothing heavy.
"""

import re

KIND = "recovery"
TITLE = re.compile(r"^Recovery of (?P<truth>.+?)'s true (?P<level>nodes|edges) by (?P<method>.+)$", re.S)
LEVELS = ("nodes", "edges")  # node methods first, as the hypotheses list them


def _items(evidence, depth: int = 0):
    for item in evidence or []:
        if isinstance(item, dict):
            yield item
            yield from _items(item.get("parts"), depth + 1)


def _sources(run: dict):
    """(test id, outcome, model, evidence) of every test and every wider fixture of the run."""
    for test in run.get("tests") or []:
        yield test.get("nodeid"), test.get("outcome"), test.get("model"), test.get("evidence")
    for fixture in run.get("fixtures") or []:
        yield f"fixture {fixture.get('fixture')}", "fixture", fixture.get("model"), fixture.get("evidence")


def _number(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _at_k(summary: dict, name: str):
    """``precision@k`` (or ``recall@k``) and its k, whatever the truth's size."""
    for key, value in summary.items():
        if key.startswith(f"{name}@"):
            try:
                k = int(key.split("@", 1)[1])
            except ValueError:
                k = None
            return _number(value), k
    return None, None


def recovery_rows(run: dict) -> list[dict]:
    """One row per recovery evidence item of the run: the method, level, truth (model) and numbers,
    with the test that recorded it and its outcome."""
    rows = []
    for nodeid, outcome, model, evidence in _sources(run):
        for item in _items(evidence):
            if item.get("kind") != KIND:
                continue
            summary = item.get("summary") or {}
            match = TITLE.match(item.get("title") or "")
            method = summary.get("method") or (match["method"] if match else item.get("title") or "?")
            level = summary.get("level") or (match["level"] if match else "")
            truth = item.get("model") or (match["truth"] if match else None) or model or "—"
            precision, k = _at_k(summary, "precision")
            recall, _ = _at_k(summary, "recall")
            rows.append({"method": method, "level": level, "model": truth, "auroc": _number(summary.get("AUROC")),
                         "precision": precision, "recall": recall, "k": k,
                         "last_true_rank": summary.get("last true rank"), "ranked": summary.get("ranked"),
                         "nodeid": nodeid, "outcome": outcome})
    return rows


def ground_truth_section(run: dict) -> dict | list:
    """The section's table: ``models`` (columns, sorted) and ``rows`` (one per method, node methods
    first, in the order the run first recorded them), each with a cell per model (None where the
    method was not scored on it); [] when the run scored no ranking against a ground truth. A
    method scored twice on one model keeps its first recovery and counts the others."""
    rows = recovery_rows(run)
    if not rows:
        return []
    models = sorted({r["model"] for r in rows})
    methods = list(dict.fromkeys((r["level"], r["method"]) for r in rows))
    methods.sort(key=lambda lm: LEVELS.index(lm[0]) if lm[0] in LEVELS else len(LEVELS))
    cells: dict = {}
    for row in rows:
        key = (row["level"], row["method"], row["model"])
        if key in cells:
            cells[key]["also"] += 1
        else:
            cells[key] = {**row, "also": 0, "recovers": row["outcome"] == "passed",
                          "verdict": {"passed": "recovers", "xfailed": "does not (expected)",
                                      "failed": "claim failed", "fixture": "", None: ""}.get(row["outcome"],
                                                                                           row["outcome"])}
    table = [{"level": level, "method": method, "cells": [cells.get((level, method, m)) for m in models]}
             for level, method in methods]
    return {"models": models, "rows": table, "n": len(rows)}


__all__ = ["ground_truth_section", "recovery_rows"]
