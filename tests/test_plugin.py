"""The pytest plugins end to end, in fresh pytest processes (pytester), on tiny models."""

import json
import subprocess
import sys
import time

import pytest


HYPOTHESES = '''
import pytest
from circuitcheck.probes import PromptSet, logit_diff, top_k

HOSTILE = PromptSet(['When <script>alert("x")</script> and Mary went to the shops, "John" gave the bag to'],
                    [(" Mary", " John")], name="<b>hostile</b> ünïcode")

def test_passes(model):
    """The tiny model runs: <i>not markup</i>."""
    result = logit_diff(model, HOSTILE)
    assert result.per_prompt.shape == (1,)

def test_fails(model, evidence):
    """A claim that does not hold."""
    evidence.number("forty-two", 42.0, threshold=50, passes=False)
    result = top_k(model, HOSTILE)
    assert result.correct_rank.max() < 0, result

@pytest.mark.xfail(reason="known not to hold on random weights")
def test_expected_failure(model):
    assert logit_diff(model, HOSTILE).per_prompt[0] > 1e9

@pytest.mark.models("gpt2")
def test_only_gpt2(model):
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_fixture_error(broken):
    pass
'''


def run(pytester, *args, timeout=180):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)


@pytest.fixture
def hypotheses(pytester):
    pytester.makepyfile(test_claims=HYPOTHESES)
    return pytester


def load_report(pytester, folder="out"):
    """The newest run's evidence.json in report folder ``folder``."""
    return json.loads((pytester.path / folder / "latest" / "evidence.json").read_text())


def outcomes(report):
    return {t["nodeid"]: t["outcome"] for t in report["tests"]}


def test_report_holds_every_verdict_with_its_evidence(hypotheses):
    result = run(hypotheses, "--model", "tiny-llama", "--report-dir", "out")
    result.assert_outcomes(passed=1, failed=1, xfailed=1, skipped=1, errors=1)
    report = load_report(hypotheses)
    # the fixture error leaves one test without a verdict, so the run is marked incomplete
    assert report["schema_version"] == 2 and report["incomplete"] is True
    assert outcomes(report) == {
        "test_claims.py::test_passes[tiny-llama]": "passed",
        "test_claims.py::test_fails[tiny-llama]": "failed",
        "test_claims.py::test_expected_failure[tiny-llama]": "xfailed",
        "test_claims.py::test_only_gpt2[tiny-llama]": "skipped",
        "test_claims.py::test_fixture_error": "error",
    }
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    passed = tests["test_passes[tiny-llama]"]
    assert passed["claim"] == "The tiny model runs: <i>not markup</i>."
    assert passed["hypothesis"] == "test_claims.py::test_passes" and passed["model"] == "tiny-llama"
    [diff] = passed["evidence"]
    assert passed["params"] == {}
    assert diff["kind"] == "logit_diff" and diff["table"]["columns"][3] == "logit_diff"
    [figure] = diff["figures"]
    assert figure["type"] == "bar" and len(figure["y"]) == 1
    failed = tests["test_fails[tiny-llama]"]
    assert [e["kind"] for e in failed["evidence"]] == ["number", "top_k"]
    assert "assert" in failed["message"] and "TopK(tiny-llama" in failed["details"]
    assert "gpt2" in tests["test_only_gpt2[tiny-llama]"]["message"]
    assert "known not to hold" in tests["test_expected_failure[tiny-llama]"]["message"]
    assert "fixture exploded" in tests["test_fixture_error"]["details"]
    assert report["models"][0]["device"] == "cpu" and report["models"][0]["n_layers"] == 2

    html = (hypotheses.path / "out" / "latest" / "index.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "<i>not markup</i>" not in html and "<b>hostile</b>" not in html
    assert " onerror=" not in html and " onclick=" not in html
    assert html.count("Plotly.newPlot") == 1 and "cdn.plot.ly" not in html.split("<script>")[0]
    last = result.outlines[-1]
    assert last.startswith("circuitcheck report: ") and "(1 passed, 1 failed, 1 error" in last
    # the exact run folder's page, not the moving `latest`
    run_folder = (hypotheses.path / "out" / "latest").resolve()
    assert run_folder.name.endswith("-" + report["run_id"])
    assert last.split()[2] == str(run_folder / "index.html")


@pytest.mark.slow
def test_xdist_report_matches_a_single_process_run(hypotheses):
    pytest.importorskip("xdist")
    run(hypotheses, "--model", "tiny-llama", "--report-dir", "serial")
    run(hypotheses, "--model", "tiny-llama", "--report-dir", "parallel", "-n", "2", "--dist", "loadgroup")
    serial, parallel = load_report(hypotheses, "serial"), load_report(hypotheses, "parallel")
    assert outcomes(parallel) == outcomes(serial) and len(serial["tests"]) == 5

    def evidence_kinds(report):
        return {t["nodeid"]: [e["kind"] for e in t["evidence"]] for t in report["tests"]}

    assert evidence_kinds(parallel) == evidence_kinds(serial)


@pytest.mark.slow
def test_every_model_runs_every_hypothesis(pytester):
    pytester.makepyfile(test_m='def test_runs(model):\n    assert model.cfg.n_layers == 2\n')
    result = run(pytester, "--model", "tiny-llama", "--model", "tiny-gpt2", "-v", "--no-report")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_runs?tiny-llama? PASSED*", "*test_runs?tiny-gpt2? PASSED*"])
    assert not (pytester.path / "reports").exists()


def test_fails_on_is_a_strict_expected_failure_on_that_model_only(pytester):
    """A claim known to fail on one model: xfailed there with the reason, plain elsewhere, and an
    unexpected pass on that model fails the run."""
    pytester.makepyfile(test_m='''
import pytest

@pytest.mark.fails_on("tiny-gpt2", reason="its model name says gpt2")
def test_two_layers(model):
    assert model.cfg.n_layers == 2 and "gpt2" not in model.cfg.model_name.lower()

@pytest.mark.fails_on("tiny-gpt2", reason="wrongly recorded")
def test_holds_everywhere(model):
    assert model.cfg.n_layers == 2
''')
    result = run(pytester, "--model", "tiny-llama", "--model", "tiny-gpt2", "-v", "-rxX", "--no-report")
    result.assert_outcomes(passed=2, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_holds_everywhere?tiny-gpt2? FAILED*", "*XPASS(strict)*wrongly recorded*",
                                 "XFAIL *test_two_layers?tiny-gpt2? - tiny-gpt2: its model name says gpt2"])


@pytest.mark.slow
def test_interrupted_run_still_writes_an_incomplete_report(pytester):
    pytester.makepyfile(test_stop='''
def test_first():
    pass

def test_interrupt():
    raise KeyboardInterrupt

def test_never_runs():
    pass
''')
    run(pytester, "--report-dir", "out")
    report = load_report(pytester)
    assert report["incomplete"] is True
    assert "test_stop.py::test_first" in outcomes(report)
    assert "test_stop.py::test_never_runs" not in outcomes(report)
    assert "incomplete" in (pytester.path / "out" / "latest" / "index.html").read_text()


def test_unknown_model_fails_fast_with_one_line(pytester, monkeypatch):
    pytester.makepyfile(test_m="def test_x(model):\n    pass\n")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    result = run(pytester, "--model", "no-such/model")
    assert time.monotonic() - start < 10
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "model 'no-such/model' is not available offline" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_cuda_without_a_gpu_is_a_clear_usage_error(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pytester.makepyfile(test_m="def test_x(model):\n    pass\n")
    result = run(pytester, "--device", "cuda", "--model", "tiny-llama")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --device cuda was asked for, but torch * sees no CUDA GPU*"])


def test_pytest_help_imports_no_torch(tmp_path):
    """Outside this repository, the entry point alone brings the options in, without torch."""
    code = ("import sys, pytest; pytest.main(['--help']);"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path).stdout
    assert "--model=NAME" in out and "--report-dir=DIR" in out
    assert out.strip().endswith("NO-TORCH")


MARKER_TEST = '''
import pathlib
def test_runs():
    pathlib.Path("ran.txt").write_text("yes")
'''


def assert_usage_error_before_any_test(pytester, result, *words):
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [error] = [line for line in result.errlines if line.startswith("ERROR:")]
    for word in words:
        assert word in error, error
    assert not (pytester.path / "ran.txt").exists()


def test_a_report_dir_that_cannot_be_written_stops_the_run_before_it_starts(pytester):
    pytester.makepyfile(test_m=MARKER_TEST)
    (pytester.path / "afile").write_text("not a folder")
    for folder in ("afile", "afile/sub"):  # root cannot write under a regular file either
        result = run(pytester, "--report-dir", folder)
        assert_usage_error_before_any_test(pytester, result, f"--report-dir {pytester.path / folder}",
                                           "--no-report")


def test_a_read_only_report_dir_stops_the_run_before_it_starts(pytester):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes read-only folders; the file-as-folder test covers this path")
    pytester.makepyfile(test_m=MARKER_TEST)
    locked = pytester.mkdir("locked")
    locked.chmod(0o555)
    try:
        result = run(pytester, "--report-dir", "locked")
    finally:
        locked.chmod(0o755)
    assert_usage_error_before_any_test(pytester, result, "Permission denied", "--no-report")


@pytest.mark.slow
def test_an_unreadable_report_to_compare_with_stops_the_run_before_it_starts(pytester):
    pytester.makepyfile(test_m=MARKER_TEST)
    (pytester.path / "broken.json").write_text('{"tests": [')
    (pytester.path / "list.json").write_text("[1, 2]")
    pytester.mkdir("empty")
    for name, reason in (("broken.json", "is not valid JSON"), ("list.json", "not an evidence.json"),
                         ("empty", "does not exist"), ("nowhere.json", "does not exist")):
        result = run(pytester, "--report-dir", "out", "--report-compare", name)
        assert_usage_error_before_any_test(pytester, result, f"--report-compare {name}: ", reason,
                                           "leave out --report-compare")


@pytest.mark.slow
def test_a_report_that_cannot_be_written_at_the_end_fails_the_run(pytester):
    pytester.makepyfile(test_m='''
import pathlib, shutil
def test_removes_the_report_folder():
    shutil.rmtree("out", ignore_errors=True)
    pathlib.Path("out").write_text("a file where the report folder was")
''')
    result = run(pytester, "--report-dir", "out")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert result.outlines[-1].startswith(f"circuitcheck report NOT written to {pytester.path / 'out'}: ")


@pytest.mark.slow
def test_runs_writing_one_report_dir_at_once_keep_their_own_folders(pytester):
    """Two runs started together, a few rounds: every folder holds one run's two files."""
    pytester.makepyfile(test_m='''
def test_x(evidence):
    evidence.table([{"row": i, "value": i / 3} for i in range(2000)])
''')
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--report-dir", "out"]
    lasts = []
    for _ in range(3):
        runs = [subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
        for process in runs:
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0, out[-3000:]
            lasts.append(out.strip().splitlines()[-1])
    folders = sorted(p for p in (pytester.path / "out").iterdir() if p.name != "latest")
    assert len(folders) == 6  # no temporaries left, no run lost
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["evidence.json", "index.html"]
        run_id = json.loads((folder / "evidence.json").read_text())["run_id"]
        html = (folder / "index.html").read_text()
        assert folder.name.endswith(run_id) and f'name="circuitcheck-run-id" content="{run_id}"' in html
    assert sorted(line.split()[2] for line in lasts) == [str(f / "index.html") for f in folders]
    latest = (pytester.path / "out" / "latest").resolve()
    assert latest in folders[-2:]  # the newer round's runs: whichever finished last


PROPERTIES = '''
from hypothesis import given, settings, strategies as st
from circuitcheck.probes.evidence import Evidence

evidence = Evidence()

@settings(max_examples=15, database=None, derandomize=True)
@given(st.integers(0, 100))
def test_holds(n):
    """Every number is small."""
    evidence.number("n", float(n))

@settings(max_examples=50, database=None, derandomize=True)
@given(st.integers(0, 100))
def test_breaks(n):
    """No number is above ten."""
    evidence.number("n", float(n))
    assert n <= 10

def test_plain(evidence):
    """Defined last, not a property."""
    evidence.number("one", 1.0)
'''


@pytest.mark.slow
def test_a_property_test_marks_the_example_it_shows(pytester):
    pytester.makepyfile(test_props=PROPERTIES)
    run(pytester, "--report-dir", "out").assert_outcomes(passed=2, failed=1)
    tests = {t["nodeid"].split("::")[1]: t for t in load_report(pytester)["tests"]}
    holds, breaks = tests["test_holds"], tests["test_breaks"]
    assert holds["examples"]["shown"] == "last" and holds["examples"]["count"] >= 2
    assert breaks["examples"]["shown"] == "falsifying" and breaks["examples"]["count"] > 2
    [shown] = breaks["evidence"]  # only the falsifying (shrunk) example's evidence
    assert shown["value"] == 11.0
    assert breaks["examples"]["note"] == f"{breaks['examples']['count']} examples run; evidence of the falsifying one shown"
    assert "examples" not in tests["test_plain"]
    assert [t["nodeid"].split("::")[1] for t in load_report(pytester)["tests"]] == ["test_holds", "test_breaks",
                                                                                    "test_plain"]
    assert [t["order"] for t in load_report(pytester)["tests"]] == [0, 1, 2]
    html = (pytester.path / "out" / "latest" / "index.html").read_text()
    assert "Falsifying example" in html and "Last example" in html


@pytest.mark.slow
def test_a_comparison_is_summarised_at_the_top_and_in_the_terminal(pytester, monkeypatch):
    pytester.makepyfile(test_cmp='''
import os
from circuitcheck.probes import PromptSet, logit_diff

def test_diff(model):
    """The model prefers the indirect object."""
    name = os.environ.get("SET", "old-set")
    texts = ["When Mary and John went to the shops, John gave the bag to"]
    if name != "old-set":
        texts = ["When John and Mary went to the shops, Mary gave the bag to"]
    logit_diff(model, PromptSet(texts, [(" Mary", " John")] if name == "old-set" else [(" John", " Mary")], name=name))

def test_flips():
    assert "SET" not in os.environ
''')
    run(pytester, "--model", "tiny-llama", "--report-dir", "old").assert_outcomes(passed=2)
    monkeypatch.setenv("SET", "new-set")
    result = run(pytester, "--model", "tiny-llama", "--report-dir", "new", "--report-compare", "old")
    report = load_report(pytester, "new")
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    change = tests["test_diff[tiny-llama]"]["compare"]["prompts"]
    assert change["old_prompt_sets"] == ["old-set"] and change["new_prompt_sets"] == ["new-set"]
    assert change["prompts_added"] == ["When John and Mary went to the shops, Mary gave the bag to"]
    assert "prompts" not in tests["test_flips"]["compare"]
    assert report["compare_summary"]["verdicts_changed"] == 1
    assert report["compare_summary"]["prompt_sets_changed"] == 1
    old = (pytester.path / "old" / "latest").resolve() / "evidence.json"
    moved = report["compare_summary"]["numbers_moved"]
    assert result.outlines[-2] == (f"circuitcheck compare with {old}: 1 verdict changed, "
                                   f"{moved} number{'' if moved == 1 else 's'} moved, 1 prompt set changed")
    assert result.outlines[-1].startswith("circuitcheck report: ")
    html = (pytester.path / "new" / "latest" / "index.html").read_text()
    top = html.split("<h2>Hypotheses × models</h2>")[0]
    assert "Since the compared run" in top and "old-set → new-set" in top and "None → failed" not in top
