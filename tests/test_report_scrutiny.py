"""The report's scrutiny tables: every p-value of a run corrected together (and per claim),
the claims that pass raw but not corrected marked, published values, self-checks per model."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from circuitcheck.probes.p_values import holm_family, p_values_of
from circuitcheck.reports.render import render_html, run_tables
from circuitcheck.reports.sample import synthetic_run
from circuitcheck.reports.scrutiny import p_value_rows, published_rows, self_check_rows
from circuitcheck import random_circuit_test
from circuitcheck.scrutiny import published

from .test_patching import PROMPTS
from .test_plugin import load_report, run

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "reports" / "evidence.schema.json").read_text())


def item(title, p_values=None, parts=(), kind="result", **extra):
    form = {"kind": kind, "title": title, **extra}
    if p_values:
        form["p_values"] = p_values
    if parts:
        form["parts"] = list(parts)
    return form


def test_holm_over_the_run_and_over_each_claim_by_hand():
    """Raw 0.01 and 0.04 in one test, 0.03 (inside a part) in another. Over the run (m = 3):
    0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06; per claim: 0.02, 0.04 and 0.03."""
    run = synthetic_run()
    run["tests"] = [dict(test, nodeid=nodeid, evidence=evidence) for test, nodeid, evidence in zip(run["tests"], (
        "t.py::a", "t.py::b", "t.py::c"), ([item("A", {"p": 0.01, "q": 0.04})],
                                          [item("B", parts=[item("inner", {"p": 0.03})])], [item("none")]))]
    rows = p_value_rows(run)
    got = [(r["nodeid"], r["title"], r["name"], r["p"], r["holm_claim"], r["holm_run"], r["family_size"], r["lost"])
           for r in rows]
    assert got == [("t.py::a", "A", "p", 0.01, pytest.approx(0.02), pytest.approx(0.03), 2, False),
                   ("t.py::a", "A", "q", 0.04, pytest.approx(0.04), pytest.approx(0.06), 2, True),
                   ("t.py::b", "B / inner", "p", 0.03, pytest.approx(0.03), pytest.approx(0.06), 1, True)]
    jsonschema.validate(run, SCHEMA)
    page = render_html(run)
    assert 'id="p-values"' in page and "3 of 3 below 0.05 raw, 1 after Holm's correction over the run" in page
    assert page.count("significant raw only</strong>") == 1 + 2  # the count above the table, then each row


def test_a_broken_table_is_named_on_the_page_and_costs_nothing_else():
    run = {"tests": [{"nodeid": "t.py::a", "outcome": "passed", "evidence": [item("A", {"p": "not a number"})]}]}
    tables = run_tables(run)
    assert tables["p_values"] == [] and "p values table could not be built: ValueError" in tables["table_errors"][0]


def test_published_and_self_check_rows_come_from_tests_and_fixtures(tiny_llama):
    replicated = published(2.0, reported=2.1, band=0.2, source="Paper 2024, §1", what="F(C)/F(M)").evidence()
    missed = published(1.0, reported=2.1, band="10%", source="Paper 2024, §2").evidence()
    from circuitcheck.scrutiny import self_checks

    checks = self_checks(tiny_llama).evidence()
    run = {"tests": [{"nodeid": "t.py::a", "outcome": "passed", "model": "tiny-llama", "evidence": [replicated]},
                     {"nodeid": "t.py::b", "outcome": "failed", "model": "tiny-llama", "evidence": [missed, checks]}],
           "fixtures": [{"fixture": "model", "model": "tiny-llama", "evidence": [checks]}]}
    rows = published_rows(run)
    assert [(r["verdict"], r["what"], r["measured"], r["reported"], r["band"], r["source"]) for r in rows] == [
        ("replicates", "F(C)/F(M)", 2.0, 2.1, "0.2", "Paper 2024, §1"),
        ("does not replicate", "", 1.0, 2.1, "10%", "Paper 2024, §2")]
    [model] = self_check_rows(run)  # once per model, though recorded twice
    assert model["model"] == "tiny-llama" and [c["check"] for c in model["checks"]] == [
        "hugging_face", "hooks", "gradients", "clean_patch"] and all(c["passed"] for c in model["checks"])


def test_holm_family_corrects_a_claims_own_tests(tiny_llama):
    first = random_circuit_test(tiny_llama, PROMPTS, ["L1H2"], n=19, seed=0)
    second = random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=19, seed=1)
    family = holm_family(first, second, ("by hand", 0.001))
    raw = np.array([first.p_value, second.p_value, 0.001])
    np.testing.assert_allclose(family.raw, raw)
    order = np.argsort(raw)  # Holm by hand: (m − i) · p_(i), running maximum, capped at 1
    expected = np.minimum(1, np.maximum.accumulate(raw[order] * (3 - np.arange(3))))
    np.testing.assert_allclose(family.corrected[order], expected)
    assert family.labels[2] == "by hand" and family.labels[0].endswith("p_value (vs random circuits)")
    assert family.all_significant == bool((expected < 0.05).all())
    assert set(family.lost) == {family.labels[i] for i in range(3) if raw[i] < 0.05 <= family.corrected[i]}
    assert p_values_of(first) == [(f"{first.title}: p_value (vs random circuits)", first.p_value)]
    with pytest.raises(ValueError, match="report no p-value"):
        holm_family(published(1.0, reported=1.0, band=0.1, source="x"))
    with pytest.raises(TypeError, match=r"give Results .* or \(label, p_value\) pairs"):
        holm_family(0.04)


PROJECT = '''
from circuitcheck import random_circuit_test, logit_diff
from circuitcheck.scrutiny import published
from circuitcheck.probes import PromptSet

PROMPTS = PromptSet(["When Mary and John went to the shops, John gave the bag to"] * 2, [(" Mary", " John")] * 2,
                    corrupted_prompts=["When Mary and John went to the shops, Mary gave the bag to"] * 2)


def test_against_random_circuits(model):
    random_circuit_test(model, PROMPTS, ["L1H2"], n=5)


def test_a_published_value(model):
    published(logit_diff(model, PROMPTS).mean, reported=100.0, band="5%", source="Somebody 2023, Table 1",
              what="logit difference")
'''


def test_the_page_shows_the_tables_and_the_json_keeps_each_p_value(pytester):
    pytester.makepyfile(test_scrutiny=PROJECT)
    result = run(pytester, "--model", "tiny-llama", "--report-dir", "out")
    result.assert_outcomes(passed=2)
    report = load_report(pytester)
    jsonschema.validate(report, SCHEMA)
    [random] = report["tests"][0]["evidence"]
    assert list(random["p_values"]) == ["p_value (vs random circuits)"]
    page = (pytester.path / "out" / "latest" / "index.html").read_text()
    for anchor in ('id="p-values"', 'id="published"', 'id="self-checks"', "Somebody 2023, Table 1",
                   "does not replicate"):
        assert anchor in page, anchor
