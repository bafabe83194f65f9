"""The suite over one machine's GPUs and cores with pytest-xdist (circuitcheck.fixtures.workers)."""

from types import SimpleNamespace

import pytest

from circuitcheck.fixtures import workers
from circuitcheck.fixtures.workers import (ModelGroupScheduling, assign_gpus, count_cores, gpu_groups,
                                           model_in_nodeid, settle_worker, threads_per_worker, worker_index)

from .test_plugin import load_report, run


def assigned(workers: int, gpus: int, per_worker: int = 1, preset: str | None = None) -> list:
    return [assign_gpus(k, workers, gpus, per_worker, preset) for k in range(workers)]


def test_no_gpu_leaves_cuda_visible_devices_alone():
    assert assigned(4, 0) == [None] * 4
    assert assigned(2, 0, per_worker=2) == [None, None]
    assert assigned(2, 8, preset="") == [None, None]  # the caller hid every GPU
    assert assigned(2, 8, preset="-1") == [None, None]


def test_worker_k_gets_gpu_k():
    assert assigned(1, 1) == ["0"]
    assert assigned(2, 2) == ["0", "1"]
    assert assigned(8, 8) == [str(k) for k in range(8)]
    assert assigned(3, 8) == ["0", "1", "2"]  # fewer workers than GPUs: the first ones


def test_more_workers_than_gpus_wrap_around():
    assert assigned(2, 1) == ["0", "0"]
    assert assigned(3, 2) == ["0", "1", "0"]
    assert assigned(5, 8, per_worker=2)[4] == "0,1"


def test_k_gpus_per_worker():
    assert assigned(4, 8, per_worker=2) == ["0,1", "2,3", "4,5", "6,7"]
    assert assigned(1, 2, per_worker=2) == ["0,1"]
    assert gpu_groups(5, 2) == [["0", "1"], ["2", "3"]]  # GPU 4 left over, not half a group


def test_a_preset_cuda_visible_devices_is_indexed_into():
    assert assigned(2, 8, preset="3,5") == ["3", "5"]  # gpu_count is what nvidia-smi sees: ignored
    assert assigned(3, 0, preset="3,5") == ["3", "5", "3"]
    assert assigned(1, 0, per_worker=2, preset="3,5") == ["3,5"]
    uuids = "GPU-aaaa,GPU-bbbb"
    assert assigned(2, 0, preset=uuids) == ["GPU-aaaa", "GPU-bbbb"]


def test_impossible_requests_are_explained():
    with pytest.raises(ValueError, match=r"--gpus-per-worker 3: only 2 GPU\(s\) are visible \(3,5\); "
                                         r"pass --gpus-per-worker 2 or fewer"):
        assign_gpus(0, 1, 0, 3, preset="3,5")
    with pytest.raises(ValueError, match="--gpus-per-worker 0: pass 1 or more"):
        assign_gpus(0, 1, 2, 0)
    with pytest.raises(ValueError, match="worker 2 of 2"):
        assign_gpus(2, 2, 2)


def test_worker_ids_and_threads():
    assert worker_index("gw0") == 0 and worker_index("gw13") == 13
    with pytest.raises(ValueError, match="'master'"):
        worker_index("master")
    assert threads_per_worker(2, 2) == 1 and threads_per_worker(2, 4) == 1
    assert threads_per_worker(16, 4) == 4 and threads_per_worker(16, 3) == 5


def test_settling_a_worker_sets_its_variables_and_keeps_the_callers_threads():
    environ = {"CUDA_VISIBLE_DEVICES": "3,5", "OMP_NUM_THREADS": "7"}
    placed = settle_worker(1, 2, 1, environ)
    assert environ == {"CUDA_VISIBLE_DEVICES": "5", "OMP_NUM_THREADS": "7"}
    assert placed["CUDA_VISIBLE_DEVICES"] == "5" and placed["threads"] == "7" and placed["too_late"] is None


def test_the_model_is_read_from_the_test_id():
    models = ["tiny-llama", "gpt2", "tiny-gpt2"]
    assert model_in_nodeid("a.py::test_x[tiny-gpt2]", models) == "tiny-gpt2"
    assert model_in_nodeid("a.py::Claims::test_x[gpt2-ioi-3]", models) == "gpt2"
    assert model_in_nodeid("a.py::test_x[family-tiny-llama]", models) == "tiny-llama"
    assert model_in_nodeid("a.py::test_x[not-a-model]", models) is None
    assert model_in_nodeid("a.py::test_x", models) is None


class Recording:
    """A stand-in for xdist's LoadGroupScheduling: records what it is handed."""

    nodes, collection_is_completed, tests_finished, has_pending = ["gw0"], True, False, True

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))

    def remove_node(self, node):
        return "a.py::test_x[gpt2]@gpt2"


def test_the_loadgroup_scheduler_is_handed_each_tests_model_group():
    """pytest-xdist issue #1386: on pytest 9.2 the worker's '@group' never reaches the controller,
    so the controller's scheduler gets it from the model in the id; nothing else changes."""
    inner = Recording()
    scheduler = ModelGroupScheduling(inner, ["gpt2", "tiny-gpt2"])
    scheduler.add_node_collection("gw0", ["a.py::test_x[gpt2]", "a.py::test_x[tiny-gpt2-3]", "a.py::test_plain",
                                          "a.py::test_y[not-a-model]", "a.py::test_z[gpt2]@mine"])
    assert inner.calls == [("add_node_collection", "gw0", [
        "a.py::test_x[gpt2]@gpt2", "a.py::test_x[tiny-gpt2-3]@tiny-gpt2", "a.py::test_plain",
        "a.py::test_y[not-a-model]", "a.py::test_z[gpt2]@mine"])]  # a group already there is kept
    scheduler.mark_test_complete("gw0", 3, 0.5)
    scheduler.schedule()
    assert inner.calls[1:] == [("mark_test_complete", "gw0", 3, 0.5), ("schedule",)]
    assert scheduler.remove_node("gw0") == "a.py::test_x[gpt2]"  # a crash is reported under the test's own id
    assert (scheduler.nodes, scheduler.collection_is_completed, scheduler.has_pending) == (["gw0"], True, True)
    assert not any(cls.__module__.startswith("xdist") for cls in type(scheduler).__mro__)  # not a subclass


def fake_config(dist):
    values = {"dist": dist, "tx": ["2*popen"], "maxschedchunk": None}
    return SimpleNamespace(getvalue=values.get, option=SimpleNamespace(loadscopereorder=True),
                           getoption={"circuitcheck_models": ["tiny-llama", "tiny-gpt2"]}.get)


def test_circuitcheck_makes_a_scheduler_only_for_loadgroup_where_groups_are_lost(monkeypatch):
    xdist = pytest.importorskip("xdist.scheduler")
    for dist in ("load", "loadscope", "loadfile", "worksteal", "each"):
        assert workers.pytest_xdist_make_scheduler(fake_config(dist), None) is None  # xdist's own choice
    monkeypatch.setattr(workers, "GROUPS_LOST_FROM_IDS", True)
    made = workers.pytest_xdist_make_scheduler(fake_config("loadgroup"), None)
    assert isinstance(made, ModelGroupScheduling) and isinstance(made._scheduler, xdist.LoadGroupScheduling)
    monkeypatch.setattr(workers, "GROUPS_LOST_FROM_IDS", False)  # a pytest before 9.2: the marks suffice
    assert workers.pytest_xdist_make_scheduler(fake_config("loadgroup"), None) is None


def test_groups_are_lost_from_ids_from_pytest_9_2():
    assert workers._release("9.2.0.dev340+g6a0de9be5") == (9, 2) and workers._release("8.4.1") == (8, 4)
    assert workers.GROUPS_LOST_FROM_IDS == (workers._release(pytest.__version__) >= (9, 2))


# a stand-in for the model fixture: no model is loaded, the parameter is the model's name
STUB_MODEL = '''
import pytest

@pytest.fixture(scope="session")
def model(request):
    return request.param
'''

WHERE = '''
import pathlib
import pytest

@pytest.mark.parametrize("i", range(3))
def test_x(model, i, request, worker_id):
    mark = request.node.get_closest_marker("xdist_group")
    pathlib.Path(f"ran-{model}-{i}.txt").write_text(f"{worker_id} {mark.args[0] if mark else None}")

@pytest.mark.xdist_group("mine")
def test_own(model, request, worker_id):
    mark = request.node.get_closest_marker("xdist_group")
    pathlib.Path(f"own-{model}.txt").write_text(f"{worker_id} {mark.args[0]}")
'''


def ran(pytester, pattern="ran-*.txt") -> dict:
    """test file stem -> (worker, its xdist_group or 'None')"""
    return {path.stem: tuple(path.read_text().split()) for path in pytester.path.glob(pattern)}


def test_dist_loadgroup_puts_each_models_tests_on_one_worker(pytester):
    """--dist loadgroup, passed by the caller: each test gets its model's xdist_group (a test's own
    mark is kept) and all tests of one model run on one worker."""
    pytest.importorskip("xdist")
    pytester.makeconftest(STUB_MODEL)
    pytester.makepyfile(test_where=WHERE)
    result = run(pytester, "-n", "2", "--dist", "loadgroup", "-v", "--model", "tiny-llama", "--model", "tiny-gpt2",
                 "--no-report")
    result.assert_outcomes(passed=8)
    scheduler = "ModelGroupScheduling" if workers.GROUPS_LOST_FROM_IDS else "LoadGroupScheduling"
    result.stdout.fnmatch_lines([f"scheduling tests via {scheduler}"])
    where = ran(pytester)
    assert len(where) == 6
    for model in ("tiny-llama", "tiny-gpt2"):
        placed = {where[f"ran-{model}-{i}"] for i in range(3)}
        assert len(placed) == 1 and next(iter(placed))[1] == model  # one worker, the model's group
    assert {mark for _, mark in ran(pytester, "own-*.txt").values()} == {"mine"}


PLACES = '''
import os
import torch
from circuitcheck.fixtures.workers import ASSIGNED

def test_one(model, evidence, request):
    evidence.note(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), title="CUDA_VISIBLE_DEVICES")
    evidence.number("torch threads", torch.get_num_threads())
    assert request.config.stash[ASSIGNED]["torch_was_imported"] is False

def test_two(model):
    assert model.cfg.n_layers == 2

def test_three(model):
    pass

def test_without_a_model():
    pass
'''


@pytest.mark.slow
def test_two_workers_one_model_each_with_their_gpu_and_share_of_the_cores(pytester, monkeypatch):
    """-n 2 --dist loadgroup on two models, with real (tiny) models: each model's tests on one
    worker, each worker indexed into the caller's CUDA_VISIBLE_DEVICES, and the cores shared
    between them."""
    pytest.importorskip("xdist")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # torch on CPU ignores it; the plugin must not
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pytester.makepyfile(test_places=PLACES)
    result = run(pytester, "-n", "2", "--dist", "loadgroup", "--model", "tiny-llama", "--model", "tiny-gpt2",
                 "--report-dir", "out")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["circuitcheck workers: CUDA_VISIBLE_DEVICES gw0: 3 | gw1: 5"])
    report = load_report(pytester)
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert "test_places.py::test_one[tiny-llama]" in tests  # no xdist '@group' in the report's ids
    workers = {}
    for test in report["tests"]:
        where = test["where"]
        assert where["host"] and where["shard"] is None
        assert where["device"] == ("cpu" if test["model"] else None)
        workers.setdefault(test["model"], set()).add(where["worker"])
    assert len(workers["tiny-llama"]) == 1 and len(workers["tiny-gpt2"]) == 1
    assert workers["tiny-llama"] | workers["tiny-gpt2"] == {"gw0", "gw1"}
    for model in ("tiny-llama", "tiny-gpt2"):
        note, threads = tests[f"test_places.py::test_one[{model}]"]["evidence"]
        [worker] = workers[model]
        assert note["text"] == {"gw0": "3", "gw1": "5"}[worker]
        assert threads["value"] == threads_per_worker(count_cores(), 2)


def test_gpus_per_worker_beyond_the_visible_gpus_stops_the_run(pytester, monkeypatch):
    pytest.importorskip("xdist")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(pytester, "-n", "2", "--gpus-per-worker", "3", "--no-report")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gpus-per-worker 3: only 2 GPU(s) are visible (3,5)*"])


def test_without_xdist_nothing_is_placed(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_x='''
import os
def test_x(model):
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
''')
    result = run(pytester, "--model", "tiny-llama", "--report-dir", "out")
    result.assert_outcomes(passed=1)
    [test] = load_report(pytester)["tests"]
    assert test["where"]["worker"] is None and test["where"]["shard"] is None
    assert test["where"]["device"] == "cpu"  # not "cpu (CUDA_VISIBLE_DEVICES=3,5)": that is for CUDA
