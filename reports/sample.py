"""A synthetic run document, as the plugin writes it: for the report's tests and benchmarks."""

from .run import SCHEMA_VERSION


def synthetic_run(n_tests: int = 3, figures: int = 1) -> dict:
    """A run document as the plugin writes it, with bar, heatmap and line figures."""
    tests = []
    for i in range(n_tests):
        evidence = [{"kind": "logit_diff", "title": f"figure {f}", "summary": {"mean": 1.5 * f},
                     "table": {"columns": ["prompt", "logit_diff"], "rows": [[f"prompt {k}", k * 0.5] for k in range(8)]},
                     "figures": [[{"type": "bar", "x": [f"p{k}" for k in range(8)], "y": [k - 3.0 for k in range(8)]},
                                  {"type": "heatmap", "z": [[(l * h) % 7 - 3.0 for h in range(9)] for l in range(30)],
                                   "x": [f"H{h}" for h in range(9)], "y": [f"L{l}" for l in range(30)]},
                                  {"type": "line", "x": list(range(61)), "series": {"diff": [k * 0.1 for k in range(61)]}}][f % 3]]}
                    for f in range(figures)]
        tests.append({"nodeid": f"hypotheses/test_x.py::test_{i}[smollm2-135m]", "hypothesis": f"hypotheses/test_x.py::test_{i}",
                      "model": "smollm2-135m", "claim": f"claim {i}", "outcome": "passed", "message": "", "details": "",
                      "duration": 0.1, "evidence": evidence,
                      "where": {"host": "test-host", "worker": None, "device": "cpu", "shard": None}})
    return {"schema_version": SCHEMA_VERSION, "run_id": "0123abcd", "command": "pytest", "started": 0.0, "duration": 1.0, "exitstatus": 0,
            "incomplete": False, "platform": "test", "python": "3", "versions": {"torch": "x"},
            "counts": {"passed": n_tests}, "models": [{"name": "smollm2-135m"}], "tests": tests}


def merged_run() -> dict:
    """A run merged from two shards (as circuitcheck-ray or circuitcheck-merge writes it): shard
    ``s0`` ran on ``gpu-a``'s two workers, shard ``s1`` failed twice and its test is an error."""
    run = synthetic_run(3, figures=0)
    places = [("gpu-a", "gw0", "cuda:0 (CUDA_VISIBLE_DEVICES=3)", "s0"),
              ("gpu-a", "gw1", "cuda:0 (CUDA_VISIBLE_DEVICES=5)", "s0"),
              (None, None, None, "s1")]
    for test, (host, worker, device, shard) in zip(run["tests"], places):
        test["where"] = {"worker": worker, "device": device, "shard": shard} | ({"host": host} if host else {})
    lost = run["tests"][2]
    lost.update(outcome="error", message="shard s1 failed: worker lost (exit code -9)")
    run.update(incomplete=True, counts={"passed": 2, "error": 1}, merged_from=[
        {"shard": "s0", "source": "shards/s0/evidence.json", "run_id": "0a0a0a0a", "host": "gpu-a",
         "status": "ok", "attempts": 1},
        {"shard": "s1", "source": None, "run_id": None, "host": "gpu-b", "status": "failed",
         "attempts": 2, "reason": "worker lost (exit code -9)"}])
    return run
