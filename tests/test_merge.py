"""circuitcheck-merge: evidence.json of several runs (shards) into one report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcheck.reports import store
from circuitcheck.reports.merge import MergeError, Shard, error_tests, main, merge_runs
from circuitcheck.reports.run import SCHEMA_VERSION

SCHEMA = Path(__file__).resolve().parents[1] / "reports" / "evidence.schema.json"

HYPOTHESES = '''
import pytest
from circuitcheck.probes import PromptSet, logit_diff, top_k

PROMPTS = PromptSet(["When Mary and John went to the shops, John gave the bag to"], [(" Mary", " John")])

def test_logit_diff_is_finite(model):
    """The logit difference is a number."""
    assert logit_diff(model, PROMPTS).per_prompt.isfinite().all()

def test_answer_is_first(model):
    """Mary comes first (fails on random weights)."""
    assert top_k(model, PROMPTS).correct_rank.max() == 0

def test_without_a_model():
    pass
'''


def document(model: str, names: list[str], started: float = 100.0, duration: float = 10.0, **fields) -> dict:
    """An evidence.json as the plugin writes it, for tests ``names`` on ``model``."""
    tests = [{"nodeid": f"hypotheses/test_x.py::{name}[{model}]", "hypothesis": f"hypotheses/test_x.py::{name}",
              "model": model, "claim": "", "outcome": "passed", "message": "", "details": "", "duration": 1.0,
              "order": order, "where": {"host": f"host-{model}", "worker": None, "device": "cpu"},
              "evidence": [{"kind": "logit_diff", "title": "t", "summary": {"mean": float(order)}}]}
             for order, name in enumerate(names)]
    run = {"schema_version": SCHEMA_VERSION, "run_id": "0123abcd", "command": "pytest", "started": started,
           "duration": duration, "exitstatus": 0, "incomplete": False, "stopped_early": False, "platform": "linux",
           "python": "3.11", "versions": {"torch": "2.13.0"}, "counts": {"passed": len(tests)},
           "models": [{"name": model, "device": "cpu"}], "tests": tests}
    run.update(fields)
    return run


def test_merge_recomputes_the_run_from_its_shards():
    a = document("tiny-llama", ["test_a", "test_b"], started=100.0, duration=10.0,
                 versions={"torch": "2.13.0", "transformers": "5.0"})
    b = document("tiny-gpt2", ["test_a", "test_b"], started=95.0, duration=30.0, exitstatus=1, incomplete=True,
                 versions={"torch": "2.12.0", "transformers": "5.0"})
    b["tests"][1].update(outcome="failed")
    run = merge_runs([Shard("one", a, source="a.json"), Shard("two", b, source="b.json")], command="merge")
    assert run["started"] == 95.0 and run["duration"] == pytest.approx(30.0)  # earliest start to latest end
    assert run["exitstatus"] == 1 and run["incomplete"] is True
    assert run["counts"] == {"passed": 3, "failed": 1}
    assert [m["name"] for m in run["models"]] == ["tiny-llama", "tiny-gpt2"]
    assert run["versions"]["transformers"] == "5.0"
    assert "2.13.0 (one)" in run["versions"]["torch"] and "2.12.0 (two)" in run["versions"]["torch"]
    assert run["run_id"] not in (a["run_id"], "") and len(run["run_id"]) == 8
    # each hypothesis keeps its models together, in definition order
    assert [t["nodeid"].split("::")[1] for t in run["tests"]] == [
        "test_a[tiny-llama]", "test_a[tiny-gpt2]", "test_b[tiny-llama]", "test_b[tiny-gpt2]"]
    assert {t["model"]: t["where"]["shard"] for t in run["tests"]} == {"tiny-llama": "one", "tiny-gpt2": "two"}
    assert all(t["where"]["host"] == f"host-{t['model']}" for t in run["tests"])  # the plugin's where is kept
    assert run["merged_from"] == [
        {"shard": "one", "source": "a.json", "run_id": "0123abcd", "host": "host-tiny-llama", "status": "ok",
         "attempts": 1, "reason": ""},
        {"shard": "two", "source": "b.json", "run_id": "0123abcd", "host": "host-tiny-gpt2", "status": "ok",
         "attempts": 1, "reason": ""}]


def test_exit_status_is_the_worst_and_a_shard_without_tests_does_not_count_as_failure():
    ok, empty = document("m1", ["test_a"]), document("m2", [], exitstatus=5)
    assert merge_runs([Shard("a", ok), Shard("b", empty)], "merge")["exitstatus"] == 0
    interrupted = document("m2", ["test_b"], exitstatus=2)
    failed = document("m3", ["test_c"], exitstatus=1)
    assert merge_runs([Shard("a", ok), Shard("b", interrupted), Shard("c", failed)], "merge")["exitstatus"] == 2


def test_the_same_test_in_two_shards_is_an_error_naming_it_and_both_sources():
    a, b = document("tiny-llama", ["test_a", "test_b"]), document("tiny-llama", ["test_b"])
    with pytest.raises(MergeError) as caught:
        merge_runs([Shard("one", a, source="ci/job-1/evidence.json"), Shard("two", b, source="ci/job-2/evidence.json")],
                   "merge")
    message = str(caught.value)
    assert "hypotheses/test_x.py::test_b[tiny-llama]" in message and "test_a" not in message
    assert "ci/job-1/evidence.json" in message and "ci/job-2/evidence.json" in message


def test_different_schema_versions_are_refused_naming_the_files():
    old = document("m2", ["test_b"], schema_version=SCHEMA_VERSION - 1)
    with pytest.raises(MergeError, match="different schema versions") as caught:
        merge_runs([Shard("new", document("m1", ["test_a"]), source="new.json"), Shard("old", old, source="old.json")],
                   "merge")
    assert f"version {SCHEMA_VERSION - 1}: old.json" in str(caught.value)


def test_a_lost_shard_records_its_tests_as_errors_and_the_run_incomplete():
    tests = [{"nodeid": "hypotheses/test_x.py::test_a[m2]", "hypothesis": "hypotheses/test_x.py::test_a",
              "model": "m2", "order": 0}]
    lost = Shard("m2", None, host="node-7", attempts=2, failed=True, reason="pytest exited with code -9",
                 details="Killed", lost_tests=tests)
    run = merge_runs([Shard("m1", document("m1", ["test_a"])), lost], "merge")
    errors = [t for t in run["tests"] if t["outcome"] == "error"]
    assert [t["nodeid"] for t in errors] == [tests[0]["nodeid"]]
    assert "pytest exited with code -9" in errors[0]["message"] and errors[0]["details"] == "Killed"
    assert errors[0]["where"] == {"shard": "m2", "host": "node-7"}
    assert run["incomplete"] is True and run["exitstatus"] == 3 and run["counts"] == {"passed": 1, "error": 1}
    assert run["merged_from"][1] | {"source": None} == {
        "shard": "m2", "source": None, "run_id": None, "host": "node-7", "status": "failed", "attempts": 2,
        "reason": "pytest exited with code -9"}
    assert [m["name"] for m in run["models"]] == ["m1", "m2"]


def test_error_tests_keep_what_the_collection_knew():
    [record] = error_tests([{"nodeid": "f.py::t[m]", "hypothesis": "f.py::t", "model": "m", "claim": "c",
                             "params": {"k": "1"}, "order": 4}], "lost")
    assert record["outcome"] == "error" and record["params"] == {"k": "1"} and record["order"] == 4
    assert record["claim"] == "c" and record["evidence"] == []


def write_report(folder: Path, run: dict) -> Path:
    return store.publish(run, folder).parent


def test_cli_refuses_duplicates_and_writes_nothing(tmp_path, capsys):
    write_report(tmp_path / "a", document("m1", ["test_a"]))
    write_report(tmp_path / "b", document("m1", ["test_a"]))
    assert main(["--out", str(tmp_path / "merged"), str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err
    assert "hypotheses/test_x.py::test_a[m1]" in error and str(tmp_path / "a") in error and str(tmp_path / "b") in error
    assert not (tmp_path / "merged").exists()


def test_cli_refuses_the_same_report_given_twice(tmp_path, capsys):
    run_folder = write_report(tmp_path / "a", document("m1", ["test_a"]))
    assert main(["--out", str(tmp_path / "merged"), str(tmp_path / "a"), str(run_folder / "evidence.json")]) == 2
    assert "are the same report" in capsys.readouterr().err


def test_cli_names_an_input_that_is_not_a_report(tmp_path, capsys):
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    assert main(["--out", str(tmp_path / "merged"), str(tmp_path / "notes.json")]) == 2
    assert f"{tmp_path / 'notes.json'}: " in capsys.readouterr().err


def test_a_merged_report_merged_again_keeps_its_shards(tmp_path):
    write_report(tmp_path / "a", document("m1", ["test_a"]))
    write_report(tmp_path / "b", document("m2", ["test_a"]))
    write_report(tmp_path / "c", document("m3", ["test_a"]))
    assert main(["--out", str(tmp_path / "ab"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert main(["--out", str(tmp_path / "abc"), str(tmp_path / "ab"), str(tmp_path / "c")]) == 0
    run = json.loads((tmp_path / "abc" / "latest" / "evidence.json").read_text())
    assert [s["shard"] for s in run["merged_from"]] == [str(tmp_path / n) for n in "abc"]
    assert [t["where"]["shard"] for t in run["tests"]] == [str(tmp_path / n) for n in "abc"]


def _results(run: dict) -> list:
    def summaries(items):
        return [(item["kind"], item.get("summary"), summaries(item.get("parts") or [])) for item in items]

    return [(t["nodeid"], t["outcome"], summaries(t["evidence"])) for t in run["tests"]]


@pytest.mark.slow  # three pytest processes (about a minute on two cores); make test-all and CI run it
def test_two_shard_folders_merge_into_one_report_equal_to_a_serial_run(tmp_path):
    """Shards split by --model, as a CI matrix would run them, merged by the console script."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_claims.py").write_text(HYPOTHESES)
    runs = {"serial": ["--model", "tiny-llama", "--model", "tiny-gpt2"], "shard-llama": ["--model", "tiny-llama"],
            "shard-gpt2": ["--model", "tiny-gpt2", "--deselect", "test_claims.py::test_without_a_model"]}
    started = [subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args,
                                 "--report-dir", folder], cwd=tmp_path, stdout=subprocess.DEVNULL)
               for folder, args in runs.items()]  # at once: they share the cores, not the wait
    assert all(p.wait(timeout=300) in (0, 1) for p in started)  # tests fail on random weights
    script = Path(sys.executable).with_name("circuitcheck-merge")
    assert script.exists(), f"{script} missing: pip install -e . registers the console scripts"
    done = subprocess.run([str(script), "--out", "merged", "shard-llama", "shard-gpt2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = [p for p in (tmp_path / "merged").iterdir() if store.RUN_NAME.match(p.name)]
    assert len(runs) == 1 and (tmp_path / "merged" / "latest").resolve() == runs[0].resolve()
    assert {p.name for p in runs[0].iterdir()} == {"index.html", "evidence.json"}
    assert done.stdout.startswith("circuitcheck report: ") and runs[0].name in done.stdout
    merged = json.loads((runs[0] / "evidence.json").read_text())
    serial = json.loads((tmp_path / "serial" / "latest" / "evidence.json").read_text())
    assert len(serial["tests"]) == 5 and sorted(_results(merged)) == sorted(_results(serial))
    assert merged["counts"] == serial["counts"] and [m["name"] for m in merged["models"]] == ["tiny-llama", "tiny-gpt2"]
    assert [s["status"] for s in merged["merged_from"]] == ["ok", "ok"]
    assert {t["where"]["shard"] for t in merged["tests"] if t["model"] == "tiny-gpt2"} == {"shard-gpt2"}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(merged, json.loads(SCHEMA.read_text()))
