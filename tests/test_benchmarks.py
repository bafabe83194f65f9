"""Every benchmark script still runs against the code: its ``--quick`` mode (a tiny model, a few
prompts and sites, seconds) exits 0 and prints its figures. Timings are never asserted; a
script exits non-zero where its two sides disagree (batched against one run per circuit,
ours against transformer_lens.patching, ...), so that fails here too."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"

# script and arguments -> what its output must show (regular expressions)
QUICK = {
    "load.py --quick": [rf"cold\s+{NUMBER}\s+{NUMBER}", rf"warm\s+{NUMBER}\s+{NUMBER}"],
    "probes.py --quick": [rf"plain \(run_with_cache x6\)\s+{NUMBER}", rf"circuitcheck \(one pass\)\s+{NUMBER}",
                          rf"ratio plain/ours: time {NUMBER}x, memory {NUMBER}x; largest head-attribution "
                          rf"difference {NUMBER}"],
    "patching.py --quick": [rf"tiny-llama\s+resid_pre\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x\s+{NUMBER}",
                            rf"tiny-llama\s+head_out\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x\s+{NUMBER}",
                            rf"tiny-llama\s+head_out\s+{NUMBER}\s+{NUMBER}x\s+{NUMBER}"],  # attribution patching
    "circuits.py --quick": [rf"batched \(many circuits per pass\):\s+{NUMBER} s",
                            rf"one run_with_hooks per circuit:\s+{NUMBER} s",
                            rf"speed-up: {NUMBER}x; largest difference {NUMBER}"],
    "circuits.py --quick --edges": [r"model tiny-llama: \d+ edges", rf"EAP \(clean-run gradient\):\s+{NUMBER} s",
                                    rf"EAP-IG \(5 steps\):\s+{NUMBER} s",
                                    rf"exact patching of the top \d+:\s+{NUMBER} s",
                                    rf"resumed at its edge's block, {NUMBER} s; through the whole model {NUMBER} s: "
                                    rf"{NUMBER}x faster \(largest difference {NUMBER}\)",
                                    rf"Spearman {NUMBER}; top-k overlap k=10 {NUMBER}",
                                    rf"{NUMBER} s batched; one faithfulness call per circuit ~{NUMBER} s",
                                    rf"CPR {NUMBER}, CMD {NUMBER} \(random orders: mean {NUMBER}, {NUMBER}; "
                                    rf"CMD p = {NUMBER}\)"],
    "scrutiny.py --quick": [rf"one exact head_out patching sweep\s+{NUMBER} s\s+\d+ passes",
                            rf"stability, fast path .*\s{NUMBER} s", rf"stability, generic path .*\s{NUMBER} s",
                            rf"Jaccard {NUMBER}", rf"faithfulness curve, MIB's grid .*\s{NUMBER} s",
                            rf"CPR {NUMBER}, CMD {NUMBER} \(random orders' mean {NUMBER}, {NUMBER}; CMD p = {NUMBER}\)"],
    "report.py --quick": [rf"20 hypotheses × 3 figures: render \+ write {NUMBER} s .*index.html {NUMBER} MB"],
}
# needs a GPU (or many minutes of CPU for real model shapes): tested below on its own
NOT_QUICK = {"gpu_check.py"}


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_benchmark_has_a_quick_run_here():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    covered = {command.split()[0] for command in QUICK} | NOT_QUICK
    assert scripts <= covered, f"give {sorted(scripts - covered)} a --quick mode and add it to QUICK"


@pytest.mark.parametrize("command", list(QUICK))
def test_quick_mode_runs_and_prints_its_figures(command):
    script, *options = command.split()
    done = run(str(BENCHMARKS / script), *options)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for pattern in QUICK[command]:
        assert re.search(pattern, done.stdout), f"{command} printed no line matching {pattern!r}:\n{done.stdout}"


def test_gpu_check_imports_and_states_its_options():
    """The GPU check imports (it takes its reference and our calls from benchmarks/patching.py)
    and its shell wrapper parses; its runs need a GPU (below)."""
    done = run(str(BENCHMARKS / "gpu_check.py"), "--help", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--quick" in done.stdout and "--device" in done.stdout
    assert subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")]).returncode == 0


def test_gpu_check_times_patching_on_a_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: benchmarks/gpu_check.py times patching on a GPU")
    done = run(str(BENCHMARKS / "gpu_check.py"), "--quick", "--skip-tests", "--shapes", "GPT-2 small")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert re.search(rf"GPT-2 small\s+.*resid_pre\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x", done.stdout), done.stdout
