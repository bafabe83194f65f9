"""The report's "Ground truth" section: method × known-circuit model with AUROC, precision and
recall, built from the run's recovery evidence (`circuitcheck.reports.ground_truth`)."""

import json
import re
from pathlib import Path

import jsonschema
import pytest

from circuitcheck import recovery
from circuitcheck.reports.ground_truth import ground_truth_section, recovery_rows
from circuitcheck.reports.render import render_html, run_tables
from circuitcheck.reports.sample import synthetic_run

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "reports" / "evidence.schema.json").read_text())
TOY = {"name": "toy", "nodes": ["L0H0", "L1H0"], "edges": ["L0H0 → L1H0.k", "L1H0 → logits"],
       "distractors": ["L0H1"]}


def record(nodeid, outcome, *evidence):
    """A test's record as the report files it (the sample run's first test, renamed)."""
    return dict(synthetic_run()["tests"][0], nodeid=nodeid, hypothesis=nodeid, outcome=outcome,
                evidence=list(evidence))


def run_of(*tests):
    run = synthetic_run()
    run["tests"] = list(tests)
    run["fixtures"] = []
    return run


@pytest.fixture(scope="module")
def evidence():
    """Recovery evidence as probes record it: a node ranking and an edge ranking on the toy truth
    (hand-checkable), and a node ranking on an embedded known-circuit model's truth."""
    nodes = recovery({"L0H0": 0.1, "L1H0": 0.9, "L0H1": 0.5, "L1H1": 0.0}, TOY)  # L0H0 third: AUROC 0.75, P 0.5
    edges = recovery(["L1H0 → logits", "L0H0 → L1H0.k", "L0H1 → L1H0.q"], TOY)  # both true on top: 1, 1
    known = recovery(["L1H0", "L0H0"], "tracr-induction")  # every ranked node true: AUROC undefined
    return {"nodes": nodes.evidence(), "edges": edges.evidence(), "known": known.evidence(),
            "numbers": (nodes, edges, known)}


def test_rows_come_from_recovery_evidence_with_their_numbers(evidence):
    nodes, edges, known = evidence["numbers"]
    assert (nodes.auroc, nodes.precision, nodes.recall) == (0.75, 0.5, 0.5)
    run = run_of(record("t.py::a[toy-nodes]", "xfailed", {"kind": "note", "title": "n", "text": "x"}, evidence["nodes"]),
                 record("t.py::b", "passed", {"kind": "result", "title": "outer", "parts": [evidence["edges"]]}),
                 record("t.py::c", "passed", evidence["known"]))
    rows = recovery_rows(run)
    got = [(r["model"], r["level"], r["method"], r["auroc"], r["precision"], r["recall"], r["k"], r["outcome"])
           for r in rows]
    assert got == [("toy", "nodes", "scores given", 0.75, 0.5, 0.5, 2, "xfailed"),
                   ("toy", "edges", "order given", 1.0, 1.0, 1.0, 2, "passed"),  # found inside a part
                   ("tracr-induction", "nodes", "order given", None, 1.0, 1.0, 2, "passed")]  # NaN → null
    section = ground_truth_section(run)
    assert section["models"] == ["toy", "tracr-induction"]
    assert [(r["level"], r["method"]) for r in section["rows"]] == [
        ("nodes", "scores given"), ("nodes", "order given"), ("edges", "order given")]
    assert section["rows"][1]["cells"][0] is None and section["rows"][1]["cells"][1]["precision"] == 1.0


def test_the_page_shows_the_method_by_model_table(evidence):
    run = run_of(record("t.py::a", "xfailed", evidence["nodes"]), record("t.py::b", "passed", evidence["edges"]),
                 record("t.py::c", "passed", evidence["known"]))
    jsonschema.validate(run, SCHEMA)
    page = render_html(run)
    assert 'id="ground-truth"' in page and page.index('id="ground-truth"') < page.index("Hypotheses × models")
    section = page[page.index('id="ground-truth"'):page.index("</table>", page.index('id="ground-truth"'))]
    header = re.findall(r"<th>([^<]+)<br>", section)
    assert header == ["toy", "tracr-induction"]
    assert "0.750 · 0.5 · 0.5" in section and "1.000 · 1 · 1" in section and "— · 1 · 1" in section
    assert "does not (expected)" in section and "recovers" in section and "not scored" in section
    assert 'href="#t.py::a"' in section


def test_a_run_without_recovery_evidence_has_no_section_and_a_broken_item_costs_nothing():
    run = run_of(record("t.py::a", "passed", {"kind": "result", "title": "x"}))
    assert ground_truth_section(run) == [] and 'id="ground-truth"' not in render_html(run)
    odd = {"kind": "recovery", "title": "Recovery of m's true nodes by X", "summary": {"AUROC": "n/a"}}
    rows = recovery_rows(run_of(record("t.py::b", "failed", odd)))
    assert rows[0]["method"] == "X" and rows[0]["auroc"] is None and rows[0]["precision"] is None
    tables = run_tables(run_of(record("t.py::b", "failed", odd)))
    assert tables["ground_truth"]["rows"][0]["cells"][0]["verdict"] == "claim failed" and not tables["table_errors"]


def test_a_method_scored_twice_on_a_model_keeps_the_first(evidence):
    run = run_of(record("t.py::a", "passed", evidence["edges"], evidence["edges"]))
    cell = ground_truth_section(run)["rows"][0]["cells"][0]
    assert cell["nodeid"] == "t.py::a" and cell["also"] == 1
