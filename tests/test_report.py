"""Report rendering: schema, comparison, atomic writes, rendering errors, size, and a real browser."""

import json
import shutil
import subprocess

import jsonschema
import pytest

from circuitcheck.probes import evidence as capture
from circuitcheck.reports.render import render_html, write_report
from circuitcheck.reports.run import SCHEMA_VERSION
from circuitcheck.reports.sample import synthetic_run

from .test_plugin import run as run_pytest

SCHEMA = json.loads((__import__("pathlib").Path(__file__).parents[1] / "reports" / "evidence.schema.json").read_text())


def test_synthetic_run_matches_the_schema():
    jsonschema.validate(synthetic_run(), SCHEMA)


@pytest.mark.slow
def test_plugin_output_validates_against_the_schema(pytester):
    from .test_plugin import HYPOTHESES

    pytester.makepyfile(test_claims=HYPOTHESES)
    run_pytest(pytester, "--model", "tiny-llama", "--report-dir", "out")
    jsonschema.validate(json.loads((pytester.path / "out" / "evidence.json").read_text()), SCHEMA)


@pytest.mark.slow
def test_compare_shows_changed_verdicts_and_moved_numbers(pytester, monkeypatch):
    pytester.makepyfile(test_flip='''
import os
def test_flips(evidence):
    """Holds unless FLIP is set."""
    evidence.number("score", float(os.environ.get("SCORE", "1")))
    assert "FLIP" not in os.environ

def test_steady():
    pass
''')
    run_pytest(pytester, "--report-dir", "old")
    monkeypatch.setenv("FLIP", "1")
    monkeypatch.setenv("SCORE", "2")
    run_pytest(pytester, "--report-dir", "new", "--report-compare", "old/evidence.json")
    report = json.loads((pytester.path / "new" / "evidence.json").read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    flips = tests["test_flip.py::test_flips"]["compare"]
    assert flips["status"] == "changed" and flips["old_outcome"] == "passed"
    assert flips["moves"] == [{"name": "number #1 score", "old": 1.0, "new": 2.0}]
    assert tests["test_flip.py::test_steady"]["compare"]["status"] == "same"
    html = (pytester.path / "new" / "index.html").read_text()
    assert "passed → failed" in html and "since the compared run" in html
    missing = run_pytest(pytester, "--report-compare", "nowhere.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR


def test_report_files_are_replaced_atomically(tmp_path, monkeypatch):
    write_report(synthetic_run(), tmp_path)
    before = (tmp_path / "index.html").read_text()
    monkeypatch.setattr("circuitcheck.reports.render.render_html", lambda run: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(synthetic_run(5), tmp_path)
    assert (tmp_path / "index.html").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.json", "index.html"]


def test_unrenderable_evidence_becomes_an_error_in_its_place():
    class Broken:
        def evidence(self):
            raise RuntimeError("cannot serialise this")

    run = synthetic_run(1)
    run["tests"][0]["evidence"] += [capture.to_evidence(Broken()),
                                    {"kind": "x", "title": "bad figure", "figures": [{"type": "pie"}]}]
    html = render_html(run)
    assert "evidence could not be recorded: RuntimeError: cannot serialise this" in html
    assert "figure could not be drawn: ValueError: unknown figure type" in html


def test_three_hundred_hypotheses_with_three_figures_stay_under_20_mb():
    """Size only; render time is measured by benchmarks/report.py."""
    html = render_html(synthetic_run(300, figures=3))
    assert len(html.encode()) < 20 * 2**20
    assert html.count("data-figure=") == 900 and html.count("Plotly.newPlot") == 1


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")
    write_report(synthetic_run(4, figures=3), tmp_path)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000"]
    url = (tmp_path / "index.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    subprocess.run([*flags, "--window-size=1200,2000", f"--screenshot={tmp_path / 'report.png'}", url],
                   capture_output=True, timeout=120)
    assert "Uncaught" not in dom.stderr and "is not defined" not in dom.stderr, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 12  # every figure drew its SVG
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_feasibility_table_orders_steps_and_marks_the_first_break():
    from circuitcheck.reports.render import feasibility_table

    run = synthetic_run(0)
    for family, outcomes in (("IOI", ["passed", "passed", "xfailed"]), ("days", ["xfailed", "passed", "xfailed"])):
        for step, outcome in zip(["task", "answers", "neuron"], outcomes):
            run["tests"].append({"nodeid": f"t[{family}-{step}]", "hypothesis": f"t[{family}-{step}]",
                                 "model": "m", "claim": "", "outcome": outcome, "message": "", "details": "",
                                 "duration": 0.0, "evidence": [], "params": {"family": family, "step": step}})
    steps, rows = feasibility_table(run)
    assert steps == ["task", "answers", "neuron"]
    assert [(r["family"], r["first_break"]) for r in rows] == [("IOI", "neuron"), ("days", "task")]
    assert "Workflow feasibility" not in render_html({**run, "tests": []})
    html = render_html(run)
    assert html.count("◀") == 2 + 1  # one mark per family, and the legend
