"""circuitcheck-ray on a real local Ray cluster (two CPUs): shards by model, retries, one merged report."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcheck.ray_runner import main, run_shard
from circuitcheck.shards import Progress, ShardPlan, plan_shards, split_models
from circuitcheck.reports.merge import merge_runs

ROOT = Path(__file__).resolve().parents[1]

CRASHING = '''
import os
from pathlib import Path

def test_without_a_model():
    """Run by the first shard only."""

def test_holds(model):
    assert model.cfg.n_layers == 2

def test_kills_its_pytest(model, request):
    """tiny-llama's pytest dies on its first attempt (a lost machine), tiny-gpt2's on every one."""
    name = request.node.callspec.params["model"]
    marker = Path(__file__).with_name(f"attempts-{name}")
    with marker.open("a") as file:
        file.write("attempt\\n")
    if name == "tiny-gpt2" or len(marker.read_text().splitlines()) == 1:
        os._exit(1)
'''


DIES_ONCE = '''
import os
from pathlib import Path

def test_first():
    """Finishes before the crash."""

def test_second():
    assert 1 == 2

def test_dies_the_first_time():
    marker = Path(__file__).with_name("attempts")
    with marker.open("a") as file:
        file.write("attempt\\n")
    if len(marker.read_text().splitlines()) == 1:
        os._exit(1)

def test_after_the_crash():
    pass
'''


def test_a_shard_whose_pytest_dies_keeps_the_tests_it_finished(tmp_path):
    """The shard task (here called directly, as Ray would) streams each finished test out of
    its pytest: a pytest that dies at its third test once made all four "error: shard lost";
    now the two that finished keep their verdicts, a retry runs only the other two, and a
    shard lost for good records only its unfinished tests as lost."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_dying.py").write_text(DIES_ONCE)
    names = ["test_first", "test_second", "test_dies_the_first_time", "test_after_the_crash"]
    plan = ShardPlan("shard-1", None, [{"nodeid": f"test_dying.py::{n}", "hypothesis": f"test_dying.py::{n}",
                                        "model": None, "order": i} for i, n in enumerate(names)])
    *streamed, result = run_shard(plan, ["-p", "no:cacheprovider"], str(tmp_path), timeout=300)
    assert result["evidence"] is None and "exited with code 1 without writing evidence.json" in result["reason"]
    assert [i["test"]["nodeid"].split("::")[1] for i in streamed if "test" in i] == ["test_first", "test_second"]
    state = Progress(plan)
    assert all(state.take(item) for item in streamed)
    assert state.remaining().nodeids == [f"test_dying.py::{n}" for n in names[2:]]

    lost = merge_runs([state.shard(result)], "merge")  # lost for good after the first attempt
    assert {t["nodeid"].split("::")[1]: t["outcome"] for t in lost["tests"]} == {
        "test_first": "passed", "test_second": "failed", "test_dies_the_first_time": "error",
        "test_after_the_crash": "error"}
    assert all(t["message"].startswith("shard shard-1 lost (1 attempts): pytest exited with code 1")
               for t in lost["tests"] if t["outcome"] == "error")
    assert lost["incomplete"] is True and lost["exitstatus"] == 3 and lost["counts"] == {
        "passed": 1, "failed": 1, "error": 2}
    assert lost["merged_from"][0]["status"] == "failed"

    state.attempt += 1  # the retry runs only the unfinished tests
    *more, result = run_shard(state.remaining(), ["-p", "no:cacheprovider"], str(tmp_path), timeout=300)
    assert result["evidence"] is not None and all(state.take(item) for item in more)
    run = merge_runs([state.shard(result)], "merge")
    assert [(t["nodeid"].split("::")[1], t["outcome"]) for t in run["tests"]] == [
        ("test_first", "passed"), ("test_second", "failed"), ("test_dies_the_first_time", "passed"),
        ("test_after_the_crash", "passed")]
    assert (tmp_path / "attempts").read_text().count("attempt") == 2  # the finished tests did not run again
    assert run["merged_from"][0]["status"] == "ok" and run["merged_from"][0]["attempts"] == 2
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "reports" / "evidence.schema.json").read_text())
    jsonschema.validate(lost, schema)
    jsonschema.validate(run, schema)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def load_latest(folder: Path) -> dict:
    return json.loads((folder / "latest" / "evidence.json").read_text())


def numbers_and_words(items: list[dict]) -> list:
    """The evidence's kinds and summaries (parts included), numbers rounded to 6 significant
    digits: two processes may use different thread counts, which can move the last bits."""
    def rounded(value):
        if isinstance(value, float) and math.isfinite(value) and value != 0:
            return round(value, 5 - int(math.floor(math.log10(abs(value)))))
        return value

    return [(item["kind"], {k: rounded(v) for k, v in (item.get("summary") or {}).items()},
             numbers_and_words(item.get("parts") or [])) for item in items]


def test_split_models_and_plan_shards_by_model():
    models, rest = split_models(["hypotheses", "--model", "a", "-k", "x", "--model=b", "--model", "a"])
    assert models == ["a", "b"] and rest == ["hypotheses", "-k", "x"]
    tests = [{"nodeid": "t1[a]", "model": "a"}, {"nodeid": "t0"}, {"nodeid": "t1[b]", "model": "b"}]
    plans = plan_shards(tests, models)
    assert [(p.name, p.nodeids) for p in plans] == [("a", ["t1[a]", "t0"]), ("b", ["t1[b]"])]
    assert [(p.model, p.nodeids) for p in plan_shards(tests[1:2], [])] == [(None, ["t0"])]


@pytest.mark.parametrize("args, fix", [
    (["--", "hypotheses", "--report-dir", "x"], "give --report-dir before --"),
    (["--", "hypotheses", "--model"], "give it a model name"),
    (["--retries", "-1", "--", "hypotheses"], "pass 0 or more"),
    (["--report-keep", "-1", "--", "hypotheses"], "--report-keep -1: pass the number of run folders to keep"),
    (["--report-compare", "nowhere.json", "--", "hypotheses"], "nowhere.json does not exist"),
])
def test_bad_arguments_are_named_with_the_fix(args, fix, capsys):
    assert main(args) == 4
    assert fix in capsys.readouterr().err


def test_a_report_dir_that_cannot_be_written_is_named_before_anything_runs(tmp_path, capsys):
    pytest.importorskip("ray")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["--report-dir", str(blocker), "--", "hypotheses"]) == 4
    assert f"--report-dir {blocker}: the report cannot be written there" in capsys.readouterr().err


def test_the_runner_and_the_plugin_check_the_report_folder_with_one_function():
    """circuitcheck-ray once re-implemented the plugin's checks of --report-dir and --report-compare."""
    for front_end in (ROOT / "reports" / "writer.py", ROOT / "circuitcheck" / "ray_runner.py"):
        text = front_end.read_text()
        assert "check_report_options(" in text, front_end
        assert "check_writable(" not in text and "load_evidence(" not in text, front_end


def test_without_ray_the_error_names_the_extra_to_install():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from circuitcheck.ray_runner import main\n"
            "sys.exit(main(['--', 'hypotheses']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 4 and 'pip install "circuitcheck[ray]"' in done.stderr


def test_the_console_script_starts_without_ray_or_torch():
    code = ("import sys, runpy; sys.argv = ['circuitcheck-ray', '--help']\n"
            "try:\n    runpy.run_module('circuitcheck.ray_runner', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert 'ray' not in sys.modules and 'torch' not in sys.modules, 'imported at --help'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--gpus-per-shard" in done.stdout and Path(sys.executable).with_name("circuitcheck-ray").exists()


def test_the_ioi_hypotheses_in_two_shards_equal_a_serial_run(ray_cluster, tmp_path, monkeypatch):
    args = ["hypotheses/test_ioi.py", "--model", "tiny-llama", "--model", "tiny-gpt2", "-p", "no:cacheprovider"]
    serial = subprocess.Popen([sys.executable, "-m", "pytest", *args, "-q", "--report-dir", str(tmp_path / "serial")],
                              cwd=ROOT, stdout=subprocess.DEVNULL)
    monkeypatch.chdir(ROOT)
    code = main(["--report-dir", str(tmp_path / "ray"), "--", *args])
    serial_code = serial.wait(timeout=600)
    merged, alone = load_latest(tmp_path / "ray"), load_latest(tmp_path / "serial")
    assert code == serial_code == alone["exitstatus"] == merged["exitstatus"]
    assert len(alone["tests"]) >= 30  # the whole file, on both models (hypotheses/test_ioi.py grows)
    assert [t["nodeid"] for t in merged["tests"]] == [t["nodeid"] for t in alone["tests"]]  # definition order too
    for shard_test, serial_test in zip(merged["tests"], alone["tests"]):
        assert shard_test["outcome"] == serial_test["outcome"], shard_test["nodeid"]
        assert numbers_and_words(shard_test["evidence"]) == numbers_and_words(serial_test["evidence"]), \
            shard_test["nodeid"]
        assert shard_test["where"]["shard"] == shard_test["model"]
    assert merged["counts"] == alone["counts"] and merged["incomplete"] is False
    assert [(s["shard"], s["status"], s["attempts"]) for s in merged["merged_from"]] == [
        ("tiny-llama", "ok", 1), ("tiny-gpt2", "ok", 1)]
    assert {s["run_id"] for s in merged["merged_from"]}.isdisjoint({merged["run_id"], None})
    assert merged["command"].startswith("circuitcheck-ray --report-dir")


@pytest.fixture(scope="module")
def crashed(ray_cluster, tmp_path_factory):
    """One run over a project whose tiny-llama shard dies once and whose tiny-gpt2 shard always dies."""
    project = tmp_path_factory.mktemp("crashing")
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_crash.py").write_text(CRASHING)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        code = main(["--report-dir", "out", "--", "--model", "tiny-llama", "--model", "tiny-gpt2", "-p",
                     "no:cacheprovider"])
    return project, code, load_latest(project / "out")


@pytest.mark.slow  # four dying pytest processes on Ray; make test-all and CI run it
def test_a_shard_killed_mid_run_is_retried_and_recorded(crashed):
    project, _, run = crashed
    assert (project / "attempts-tiny-llama").read_text().count("attempt") == 2  # really ran again
    llama = {t["nodeid"]: t for t in run["tests"] if t["where"]["shard"] == "tiny-llama"}
    assert {n: t["outcome"] for n, t in llama.items()} == {
        "test_crash.py::test_without_a_model": "passed", "test_crash.py::test_holds[tiny-llama]": "passed",
        "test_crash.py::test_kills_its_pytest[tiny-llama]": "passed"}
    [entry] = [s for s in run["merged_from"] if s["shard"] == "tiny-llama"]
    assert entry["status"] == "ok" and entry["attempts"] == 2 and entry["host"] == os.uname().nodename


@pytest.mark.slow  # four dying pytest processes on Ray; make test-all and CI run it
def test_a_shard_lost_twice_keeps_what_finished_and_shows_the_rest_as_errors(crashed):
    """test_holds[tiny-gpt2] passed before its pytest died: it keeps its verdict (it was once
    recorded as "shard lost" with the rest); only the test that never finished is an error."""
    project, code, run = crashed
    assert (project / "attempts-tiny-gpt2").read_text().count("attempt") == 2  # once, then once more
    [entry] = [s for s in run["merged_from"] if s["shard"] == "tiny-gpt2"]
    assert entry["status"] == "failed" and entry["attempts"] == 2
    assert "exited with code 1 without writing evidence.json" in entry["reason"]
    shard = {t["nodeid"]: t for t in run["tests"] if t["where"]["shard"] == "tiny-gpt2"}
    assert {n: t["outcome"] for n, t in shard.items()} == {"test_crash.py::test_holds[tiny-gpt2]": "passed",
                                                           "test_crash.py::test_kills_its_pytest[tiny-gpt2]": "error"}
    lost = shard["test_crash.py::test_kills_its_pytest[tiny-gpt2]"]
    assert entry["reason"] in lost["message"] and "test_crash.py" in lost["details"]  # the dead pytest's output
    assert run["incomplete"] is True and run["counts"] == {"passed": 4, "error": 1}
    assert code == run["exitstatus"] == 3
