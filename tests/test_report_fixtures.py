"""Evidence made in a fixture wider than a function is filed with its module, not with a test."""

import json
from pathlib import Path

import pytest

from circuitcheck.reports.render import fixture_places, render_html
from circuitcheck.reports.sample import synthetic_run
from circuitcheck.reports.writer import FixtureEvidence

from .test_plugin import load_report, run

SCHEMA = Path(__file__).resolve().parents[1] / "reports" / "evidence.schema.json"

PROJECT = '''
import pytest
from circuitcheck.probes.evidence import Evidence


@pytest.fixture(scope="session")
def base():
    Evidence().note("made once for the session", title="base note")
    return 1


@pytest.fixture(scope="module")
def table(base):
    Evidence().number("module number", 7.0)
    return {"rows": 3}


@pytest.fixture
def per_test():
    Evidence().note("made for each test", title="per-test note")


def test_first(evidence, table):
    """Needs the module's table first."""
    evidence.note("the first test's own note", title="own note")
    assert table["rows"] == 3


def test_second(table, per_test):
    assert table["rows"] == 3
'''


def titles(items) -> list[str]:
    return [item["title"] for item in items]


def check_fixture_evidence(report: dict) -> None:
    fixtures = {f["fixture"]: f for f in report["fixtures"]}
    assert len(report["fixtures"]) == 2 and set(fixtures) == {"base", "table"}  # once each, however many workers
    table, base = fixtures["table"], fixtures["base"]
    assert (table["scope"], table["node"], table["file"]) == ("module", "test_mod.py", "test_mod.py")
    assert [(e["title"], e["value"]) for e in table["evidence"]] == [("module number", 7.0)]
    assert (base["scope"], base["node"], base["file"]) == ("session", "", None)
    assert titles(base["evidence"]) == ["base note"]
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert titles(tests["test_first"]["evidence"]) == ["own note"]  # not the fixtures' evidence
    assert titles(tests["test_second"]["evidence"]) == ["per-test note"]  # a function fixture's stays the test's
    assert all(w["host"] for f in report["fixtures"] for w in f["setups"])
    assert all(f["model"] is None and f["params"] == {} for f in report["fixtures"])


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_mod=PROJECT)
    return pytester


def test_a_module_fixtures_evidence_is_the_modules_not_the_first_tests(project):
    result = run(project, "--report-dir", "out")
    result.assert_outcomes(passed=2)
    report = load_report(project)
    check_fixture_evidence(report)
    assert [w["worker"] for f in report["fixtures"] for w in f["setups"]] == [None, None]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    page = next((project.path / "out" / "latest").glob("index.html")).read_text()
    evidence = page[page.index("<h2>Evidence</h2>"):]
    assert evidence.index('id="fixture:::base"') < evidence.index('id="fixture:test_mod.py::table"') \
        < evidence.index('id="test_mod.py::test_first"')
    assert evidence.count("module number") == 1 and "module-scoped fixture <code>table</code>" in evidence

    again = run(project, "--report-dir", "new", "--report-compare", "out")  # the comparison takes it in its stride
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["circuitcheck compare with *: 0 verdicts changed, 0 numbers moved*"])
    compared = load_report(project, "new")
    check_fixture_evidence(compared)
    assert {t["compare"]["status"] for t in compared["tests"]} == {"same"}


@pytest.mark.slow
def test_under_xdist_a_module_fixtures_evidence_comes_to_the_controller_once(project):
    pytest.importorskip("xdist")
    result = run(project, "-p", "xdist", "-n", "2", "--report-dir", "out")
    result.assert_outcomes(passed=2)
    report = load_report(project)
    check_fixture_evidence(report)
    workers = {w["worker"] for f in report["fixtures"] for w in f["setups"]}
    assert workers and workers <= {"gw0", "gw1"}  # each worker that set it up, in one entry


ON_THE_MODEL = '''
import pytest
from circuitcheck.probes.evidence import Evidence


@pytest.fixture(scope="module")
def layers(model):
    Evidence().number("layers", model.cfg.n_layers)
    return model.cfg.n_layers


@pytest.fixture(scope="module")
def depth(layers):
    Evidence().note(f"{layers} layers deep", title="depth")


@pytest.fixture(scope="module", params=["a", "b"])
def letter(request):
    Evidence().note(request.param, title="letter")
    return request.param


def test_layers(model, depth, layers):
    assert layers == 2


def test_letters(letter):
    assert letter in "ab"
'''


def test_a_fixture_on_the_model_is_filed_once_per_model_and_parameter(pytester):
    pytester.makepyfile(test_on=ON_THE_MODEL)
    result = run(pytester, "--model", "tiny-llama", "--model", "tiny-gpt2", "--report-dir", "out")
    result.assert_outcomes(passed=4)
    report = load_report(pytester)
    made = sorted((f["fixture"], f["model"], json.dumps(f["params"]), [e["title"] for e in f["evidence"]])
                  for f in report["fixtures"])
    assert made == [("depth", "tiny-gpt2", "{}", ["depth"]), ("depth", "tiny-llama", "{}", ["depth"]),
                    ("layers", "tiny-gpt2", "{}", ["layers"]), ("layers", "tiny-llama", "{}", ["layers"]),
                    ("letter", None, '{"letter": "a"}', ["letter"]), ("letter", None, '{"letter": "b"}', ["letter"]),
                    # the model fixture's own: its self-checks, once per model (the page's header shows them)
                    ("model", "tiny-gpt2", "{}", ["Self-checks on tiny-gpt2: 4 of 4 run, all pass"]),
                    ("model", "tiny-llama", "{}", ["Self-checks on tiny-llama: 4 of 4 run, all pass"])]
    assert all(t["evidence"] == [] for t in report["tests"])
    page = (pytester.path / "out" / "latest" / "index.html").read_text()
    assert 'id="fixture:test_on.py::layers[tiny-llama]"' in page and 'id="fixture:test_on.py::letter[b]"' in page
    assert 'id="self-checks"' in page


def entry(node="test_a.py", fixture="table", worker="gw0", value=1.0):
    return {"fixture": fixture, "scope": "module", "node": node, "file": node.split("::")[0], "model": None, "params": {},
            "evidence": [{"kind": "number", "title": "n", "value": value}],
            "setups": [{"host": "h", "worker": worker, "device": None, "shard": None}]}


def test_the_same_evidence_from_two_workers_is_one_entry_and_different_evidence_two():
    fixtures = FixtureEvidence()
    fixtures.add(entry(node="test_b.py"), order=5)
    fixtures.add(entry(worker="gw1"), order=3)
    fixtures.add(entry(worker="gw0"), order=1)
    fixtures.add(entry(worker="gw1", value=2.0), order=2)
    listed = fixtures.to_json()
    assert [(f["node"], f["evidence"][0]["value"], [w["worker"] for w in f["setups"]]) for f in listed] == [
        ("test_a.py", 1.0, ["gw1", "gw0"]), ("test_a.py", 2.0, ["gw1"]), ("test_b.py", 1.0, ["gw0"])]


def test_the_page_shows_a_modules_fixture_evidence_above_its_first_test():
    run_ = synthetic_run(n_tests=2, figures=1)
    run_["fixtures"] = [entry(node="hypotheses/test_x.py"), entry(node="elsewhere.py", fixture="gone"),
                        {**entry(node="", fixture="whole"), "scope": "session", "file": None}]
    before, at, after = fixture_places(run_)
    assert [f["fixture"] for f in before] == ["whole"] and [f["fixture"] for f in after] == ["gone"]
    assert [f["fixture"] for f in at[0]] == ["table"]
    page = render_html(run_)
    places = [page.index(f'id="{anchor}"') for anchor in
              ("fixture:::whole", "fixture:hypotheses/test_x.py::table", "hypotheses/test_x.py::test_0[smollm2-135m]",
               "fixture:elsewhere.py::gone")]
    assert places == sorted(places)
