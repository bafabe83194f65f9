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


def test_an_out_folder_that_is_contains_or_is_inside_an_input_is_refused(tmp_path, capsys):
    """--out shard-a once published into shard-a and repointed its latest to the merged run."""
    a = write_report(tmp_path / "shard-a", document("m1", ["test_a"]))
    write_report(tmp_path / "shard-b", document("m2", ["test_a"]))
    before = {p.name for p in (tmp_path / "shard-a").iterdir()}
    for out, how in ((tmp_path / "shard-a", "is"), (tmp_path / "shard-a" / "merged", "is inside"),
                     (tmp_path, "contains"), (a, "is inside")):
        assert main(["--out", str(out), str(tmp_path / "shard-a"), str(tmp_path / "shard-b")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"circuitcheck-merge: --out {out} {how} the input {tmp_path / 'shard-a'}: ")
        assert error.count("\n") == 1, error
        assert store.latest_run(tmp_path / "shard-a") == a
        assert {p.name for p in (tmp_path / "shard-a").iterdir()} == before
    evidence = a / "evidence.json"  # an input given as a file: its folder is the input's too
    assert main(["--out", str(a), str(evidence)]) == 2
    assert f"--out {a} contains the input {evidence}" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "merged"), str(tmp_path / "shard-a"), str(tmp_path / "shard-b")]) == 0


def write_json(path: Path, run: dict) -> Path:
    path.write_text(json.dumps(run))
    return path


def test_an_input_that_breaks_the_schema_names_the_file_the_test_and_the_field(tmp_path, capsys):
    """A test without "outcome" was KeyError: 'outcome'; a mistyped field went through."""
    broken = document("m1", ["test_a", "test_b"])
    del broken["tests"][1]["outcome"]
    source = write_json(tmp_path / "a.json", broken)
    write_json(tmp_path / "b.json", document("m2", ["test_a"]))
    assert main(["--out", str(tmp_path / "merged"), str(source), str(tmp_path / "b.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"circuitcheck-merge: {source}: test 'hypotheses/test_x.py::test_b[m1]' has no "
                            '"outcome", against evidence.schema.json.') and error.count("\n") == 1, error
    assert not (tmp_path / "merged").exists()
    mistyped = document("m1", ["test_a"])
    mistyped["tests"][0]["duration"] = "1.0"
    mistyped["tests"][0]["evidence"][0].pop("title")
    with pytest.raises(MergeError, match=r"^x.json: test 'hypotheses/test_x.py::test_a\[m1\]': \"duration\" is "
                                         r"\"1.0\" \(a string\); the schema wants a number \(and 1 more problem"):
        merge_runs([Shard("x", mistyped, source="x.json")], "merge")
    with pytest.raises(MergeError, match=r'^x.json: the run has no "started"'):
        merge_runs([Shard("x", {k: v for k, v in document("m1", []).items() if k != "started"}, source="x.json")],
                   "merge")
    jsonschema = pytest.importorskip("jsonschema")  # the same verdicts as the full validator
    schema = json.loads(SCHEMA.read_text())
    for bad in (broken, mistyped):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    jsonschema.validate(document("m1", ["test_a"]), schema)
    merge_runs([Shard("x", document("m1", ["test_a"]))], "merge")


def test_a_string_schema_version_is_named_with_its_type():
    """"2" and 2 were listed as "version 2 ... version 2"."""
    text = document("m1", ["test_a"], schema_version=str(SCHEMA_VERSION))
    with pytest.raises(MergeError) as caught:
        merge_runs([Shard("a", text, source="a.json"), Shard("b", document("m2", ["test_a"]), source="b.json")],
                   "merge")
    assert (f'(version "{SCHEMA_VERSION}" (a string): a.json; version {SCHEMA_VERSION} (an integer): b.json)'
            in str(caught.value))
    with pytest.raises(MergeError, match=rf'^a.json: schema_version is "{SCHEMA_VERSION}" \(a string\), but '
                                         r"evidence.json files have an integer schema_version"):
        merge_runs([Shard("a", text, source="a.json")], "merge")


def modelless(run: dict, outcome: str = "passed", host: str = "h") -> dict:
    """``run`` with a test that takes no model (it runs in every shard split by --model)."""
    run["tests"].append({"nodeid": "hypotheses/test_x.py::test_without_a_model", "model": None, "outcome": outcome,
                         "hypothesis": "hypotheses/test_x.py::test_without_a_model", "claim": "", "message": "",
                         "details": "", "duration": 0.1, "order": 9, "evidence": [],
                         "where": {"host": host, "worker": None, "device": None}})
    return run


def test_a_test_without_a_model_from_several_shards_is_one_result_when_they_agree():
    """The README's recipe (--model tiny-llama into shard-a, --model tiny-gpt2 into shard-b)
    runs a test without a model in both: the merge once refused it as a duplicate."""
    a, b = modelless(document("tiny-llama", ["test_a"]), host="h1"), modelless(document("tiny-gpt2", ["test_a"]))
    run = merge_runs([Shard("shard-a", a), Shard("shard-b", b)], "merge")
    [alone] = [t for t in run["tests"] if t["model"] is None]
    assert alone["where"]["shard"] == "shard-a, shard-b" and alone["where"]["host"] == "h1"
    assert run["counts"] == {"passed": 3} and len(run["tests"]) == 3
    b["tests"][-1]["outcome"] = "failed"
    with pytest.raises(MergeError, match=r"^hypotheses/test_x.py::test_without_a_model \(no model\) is passed in "
                                         r"shard-a but failed in shard-b: a test without a model"):
        merge_runs([Shard("shard-a", a), Shard("shard-b", b)], "merge")
    # a shard that lost it does not outvote one that reported it
    lost = Shard("shard-c", None, failed=True, reason="killed", lost_tests=[
        {"nodeid": "hypotheses/test_x.py::test_without_a_model", "model": None}])
    run = merge_runs([Shard("shard-a", a), lost], "merge")
    assert [t["outcome"] for t in run["tests"] if t["model"] is None] == ["passed"]
    assert "_lost" not in json.dumps(run)


def _results(run: dict) -> list:
    def summaries(items):
        return [(item["kind"], item.get("summary"), summaries(item.get("parts") or [])) for item in items]

    return [(t["nodeid"], t["outcome"], summaries(t["evidence"])) for t in run["tests"]]


@pytest.mark.slow  # three pytest processes (about a minute on two cores); make test-all and CI run it
def test_two_shard_folders_merge_into_one_report_equal_to_a_serial_run(tmp_path):
    """Shards split by --model, as a CI matrix (and the README's recipe) runs them, merged by the
    console script; the test without a model runs in both shards and is one result."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_claims.py").write_text(HYPOTHESES)
    runs = {"serial": ["--model", "tiny-llama", "--model", "tiny-gpt2"], "shard-llama": ["--model", "tiny-llama"],
            "shard-gpt2": ["--model", "tiny-gpt2"]}
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
    assert [t["where"]["shard"] for t in merged["tests"] if t["model"] is None] == ["shard-llama, shard-gpt2"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(merged, json.loads(SCHEMA.read_text()))


def test_the_wider_fixtures_evidence_survives_the_merge_once_per_fixture():
    """Each shard set up the model fixture (its self-checks) and one module fixture of its own:
    the merged run keeps one entry per fixture and model, with every place it was set up."""
    checks = {"kind": "self_checks", "title": "Self-checks on tiny-llama: 4 of 4 run, all pass"}

    def fixture(name, file, host):
        return {"fixture": name, "scope": "session" if file is None else "module", "node": file or "", "file": file,
                "model": "tiny-llama", "params": {}, "evidence": [checks], "setups": [{"host": host}]}

    a = document("tiny-llama", ["test_a"], fixtures=[fixture("model", None, "a"), fixture("table", "t.py", "a")])
    b = document("tiny-llama", ["test_b"], fixtures=[fixture("model", None, "b")])
    run = merge_runs([Shard("one", a), Shard("two", b)], command="merge")
    assert [(f["fixture"], f["file"]) for f in run["fixtures"]] == [("model", None), ("table", "t.py")]
    assert run["fixtures"][0]["setups"] == [{"host": "a"}, {"host": "b"}]
    assert a["fixtures"][0]["setups"] == [{"host": "a"}]  # the shards' documents are left as they were
