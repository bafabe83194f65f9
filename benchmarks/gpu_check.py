"""The GPU check: circuitcheck on a GPU machine, in one command; its output goes in the README.

1. Prints the machine: GPUs, driver, CUDA, and the versions of Python, torch, transformers,
   accelerate, TransformerLens and circuitcheck.
2. Runs the GPU tests: ``tests/test_device.py`` (every probe and every patching sweep gives the
   same numbers on the GPU as on the CPU, within 1e-4) and the split tests of
   ``tests/test_device_map.py`` (a tiny model over two GPUs, or over one GPU and the CPU).
3. Runs the hypotheses that compute on the tiny models (number sequences, the "an" neuron,
   feasibility) on the CPU and on the GPU and compares their verdicts test by test (many fail
   on random weights: what matters is that the GPU reaches the same ones); with two GPUs or
   more also split (``--device-map balanced``); without a GPU, split over the CPU
   (``--device-map auto``).
4. Times `transformer_lens.patching` (one forward pass per site) against circuitcheck's
   ``patch`` for ``resid_pre`` and ``head_out``, clean into corrupted, metric the mean logit
   difference (the calls of ``benchmarks/patching.py``), on random-weight models with GPT-2
   small's shape (12 layers, 12 heads, d_model 768, vocabulary 50257) and SmolLM2-135M's (30
   layers, 9 heads with 3 key/value heads, d_model 576, vocabulary 49152), on 8 IOI prompts
   of 15 tokens and of 128 tokens (IOI sentences after filler text; the names are swapped at
   S2, near the end, so positions before it share every activation: ours skips them, the
   reference does not; the table gives that position). Prints each side's time, the ratio,
   the largest difference between them and (on a GPU) each side's peak GPU memory.

The default model's weights are too large to travel to the GPU machine, so the models are
built from a config with random weights and the bundled tiny tokenizer (whose token ids all
lie inside both vocabularies): shapes, and so times, are real; the logits mean nothing.

On the offline GPU machine ``benchmarks/gpu_check.sh`` installs what it lacks (from
``benchmarks/wheels``, built here by ``make gpu-wheels``) and runs this. Here, to check the
script itself on the CPU::

    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick

(``--quick``: 2 prompts of 15 tokens and only the number-sequence hypotheses; on a loaded
CPU, ``OMP_NUM_THREADS=1`` is much faster.)

Exit status: 0 when every test passed and every difference is below 1e-4.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from patching import our_call, reference_call  # noqa: E402  (benchmarks/patching.py)

TOLERANCE = 1e-4
SHAPES = ("GPT-2 small", "SmolLM2-135M")  # the keys of shapes()
SWEEPS = ("resid_pre", "head_out")
NAMES = ("Mary", "John", "Tom", "James", "Anne", "Kate", "Paul", "Sarah", "Bob", "Alice", "Dan", "Luke")
PLACES = ("shops", "park", "school", "station", "garden", "office", "house", "store")
THINGS = ("bag", "ball", "book", "drink", "apple", "ring", "egg", "pear")
FILLER = "the dog went to the park and the cat climbed the tree and".split()


def shapes():
    """The real shapes, as Hugging Face configs (vocabularies included: the unembedding is a
    large part of a forward pass)."""
    from transformers import GPT2Config, LlamaConfig

    return {
        "GPT-2 small": GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0),
        "SmolLM2-135M": LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                    max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                    rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
                                    bos_token_id=0, eos_token_id=0, pad_token_id=0),
    }


def random_model(config, name: str, device: str, seed: int = 0):
    """A bridge over a random-weight model of ``config``'s shape, with the bundled tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitcheck.fixtures.loading import boot_bridge, quiet_loading
    from circuitcheck.fixtures.tiny import TOKENIZER_DIR

    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]), quiet_loading():
        torch.manual_seed(seed)
        hf_model = AutoModelForCausalLM.from_config(config)
        return boot_bridge(hf_model.eval(), AutoTokenizer.from_pretrained(str(TOKENIZER_DIR)), name, device)


def ioi_prompts(model, n: int, n_tokens: int):
    """``n`` IOI prompts of exactly ``n_tokens`` tokens (the prepended token counted): filler
    words, then "When A and B went to the P, B gave the T to" (answers A, B); corrupted: the
    second B becomes A. Every word is one token of the bundled tokenizer."""
    from circuitcheck.probes import PromptSet

    clean, corrupted, answers = [], [], []
    for i in range(n):
        a, b = NAMES[(2 * i) % len(NAMES)], NAMES[(2 * i + 1) % len(NAMES)]
        place, thing = PLACES[i % len(PLACES)], THINGS[(i * 3) % len(THINGS)]
        sentence = f"When {a} and {b} went to the {place}, {{}} gave the {thing} to"
        words = []
        while True:
            text = " ".join(["The", *words, sentence]) if words else sentence
            width = PromptSet([text.format(b)], [(f" {a}", f" {b}")]).tokenize(model).tokens.shape[1]
            if width >= n_tokens:
                break
            words.append(FILLER[len(words) % len(FILLER)])
        if width != n_tokens:
            raise ValueError(f"cannot build a {n_tokens}-token prompt from single-token words ({width})")
        clean.append(text.format(b))
        corrupted.append(text.format(a))
        answers.append((f" {a}", f" {b}"))
    return PromptSet(clean, answers, corrupted_prompts=corrupted, name=f"{n} IOI prompts of {n_tokens} tokens")


# -- 1. the machine ------------------------------------------------------------------------------


def machine(device: str) -> str:
    import accelerate
    import torch
    import transformers

    lines = [f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
             f"cuDNN {torch.backends.cudnn.version()}), transformers {transformers.__version__}, "
             f"accelerate {accelerate.__version__}, transformer-lens {_version('transformer-lens')}, "
             f"circuitcheck {_version('circuitcheck')} ({_git_revision()})"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"GPU {i}: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                         f"compute capability {props.major}.{props.minor}")
        driver = _run_quietly(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        lines.append(f"driver {driver.splitlines()[0] if driver else 'unknown'}; "
                     f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
    else:
        lines.append(f"no CUDA GPU: running on {device} ({platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} torch threads)")
    return "\n".join(lines)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    return _run_quietly(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "no git"


def _run_quietly(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# -- 2. and 3. the tests -------------------------------------------------------------------------


def pytest_run(label: str, args: list[str], scratch: Path, show_failures: bool = True) -> dict[str, str]:
    """Run pytest in a subprocess; print its summary line (and the end of its output if a test
    failed and ``show_failures``, or pytest itself failed); return each test's outcome.

    It runs in ``scratch``, not in the repository: ``python -m`` puts the working folder first
    on ``sys.path``, where the repository's bare ``circuitcheck/`` folder would hide the
    installed package (its ``probes``, ``fixtures`` and ``reports`` live elsewhere in the tree)."""
    junit = scratch / f"{len(list(scratch.iterdir()))}.xml"
    paths = [str(ROOT / a) if a.startswith(("tests", "hypotheses")) else a for a in args]
    command = [sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider", "--no-report", "-q", "-rfEs",
               f"--basetemp={scratch / junit.stem}", f"--junitxml={junit}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-500:]
    print(f"{label}: {summary.strip('= ')} ({time.perf_counter() - start:.0f} s)", flush=True)
    if done.returncode not in (0, 1, 5) or (done.returncode == 1 and show_failures):  # 1: failures, 5: no tests
        print("\n".join("    " + line for line in (lines or done.stderr.splitlines())[-40:] if line.strip()),
              flush=True)
    return outcomes(junit) if junit.exists() else {}


def outcomes(junit: Path) -> dict[str, str]:
    """``{test id: passed|failed|error|skipped}`` from a JUnit XML file."""
    found = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        found[f"{case.get('classname')}::{case.get('name')}"] = {"failure": "failed"}.get(outcome, outcome)
    return found


def run_tests(device: str, quick: bool, scratch: Path) -> bool:
    import torch

    ok = True
    gpu_tests = ["tests/test_device.py", "tests/test_device_map.py::test_split_over_devices_agrees"]
    results = pytest_run("GPU tests (tests/test_device.py, the split tests of tests/test_device_map.py)",
                         gpu_tests, scratch)
    ok &= bool(results) and all(outcome in ("passed", "skipped") for outcome in results.values())
    if not torch.cuda.is_available():
        print("    (no CUDA GPU here: the GPU tests skip themselves)")

    # The hypotheses that compute on the tiny models (the IOI ones stop at their answers, which
    # are several tokens in the tiny tokenizer); many claims fail there, which is not the point.
    hypotheses = ["hypotheses/test_number_sequences.py"]
    hypotheses += [] if quick else ["hypotheses/test_an_neuron.py", "hypotheses/test_feasibility.py"]
    models = ["--model", "tiny-llama", "--model", "tiny-gpt2"]
    on_cpu = pytest_run(f"hypotheses on the tiny models, --device cpu ({' '.join(hypotheses)})",
                        [*hypotheses, *models, "--device", "cpu"], scratch, show_failures=False)
    placements = {f"--device {device}": ["--device", device]} if device != "cpu" else {}
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        placements["--device-map balanced"] = ["--device-map", "balanced"]
    elif not torch.cuda.is_available():  # at least the split path, all on the CPU
        placements["--device-map auto (no GPU: all on the CPU)"] = ["--device-map", "auto"]
    for label, placement in placements.items():
        there = pytest_run(f"hypotheses on the tiny models, {label}", [*hypotheses, *models, *placement], scratch,
                           show_failures=False)
        changed = {test: (on_cpu.get(test), outcome) for test, outcome in there.items()
                   if on_cpu.get(test) != outcome}
        print(f"    verdicts that differ from the CPU's: {len(changed)} of {len(there)}")
        for test, (before, after) in sorted(changed.items()):
            print(f"      {test}: {before} on the CPU, {after} with {label}")
        ok &= bool(on_cpu) and bool(there) and not changed
    return ok


# -- 4. patching, timed --------------------------------------------------------------------------


def timed(call, device: str) -> tuple[float, np.ndarray, float]:
    """``(seconds, values, peak GPU MiB)`` of one call (the values come back to the CPU, which
    waits for the GPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    values = np.asarray(call(), dtype=np.float64)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return seconds, values, peak


def time_patching(device: str, n_prompts: int, lengths: list[int], shape_names: list[str]) -> float:
    """Print the timing table; return the largest difference between the two sides."""
    from circuitcheck.probes.forward import forget_passes

    from circuitcheck.probes.patch_runs import first_differences

    print(f"{'model shape':14}{'prompts (first difference)':>28}{'sweep':>11}{'sites':>7}{'reference (s)':>15}{'ours (s)':>10}"
          f"{'ratio':>8}{'max |diff|':>12}{'ref peak (MiB)':>16}{'our peak (MiB)':>16}", flush=True)
    largest = 0.0
    for shape_name in shape_names:
        model = random_model(shapes()[shape_name], shape_name, device)
        warm = ioi_prompts(model, 2, 15)
        for sweep in SWEEPS:  # warm up kernels and allocators on both sides
            timed(reference_call(model, warm, sweep, few_sites=True), device)
            timed(our_call(model, warm, sweep), device)
        for n_tokens in lengths:
            prompts = ioi_prompts(model, n_prompts, n_tokens)
            first = min(first_differences(prompts.tokenize(model), prompts.corrupted.tokenize(model)))
            for sweep in SWEEPS:
                forget_passes(model)
                reference = timed(reference_call(model, prompts, sweep), device)
                forget_passes(model)
                ours = timed(our_call(model, prompts, sweep), device)
                diff = float(np.abs(reference[1] - ours[1]).max())
                largest = max(largest, diff)
                peaks = "".join(f"{'-' if peak != peak else f'{peak:.0f}':>16}" for peak in (reference[2], ours[2]))
                print(f"{shape_name:14}{f'{n_prompts} × {n_tokens} tokens ({first})':>28}{sweep:>11}{len(ours[1]):7d}"
                      f"{reference[0]:15.2f}{ours[0]:10.2f}{reference[0] / ours[0]:7.1f}x{diff:12.1e}{peaks}",
                      flush=True)
        del model
    return largest


def main() -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's progress bars (read when tqdm is imported)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu to check the script")
    parser.add_argument("--quick", action="store_true",
                        help="2 prompts of 15 tokens, only hypotheses/test_number_sequences.py (a check of the script)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per timing (default 8; --quick 2)")
    parser.add_argument("--lengths", default=None, help="prompt lengths in tokens (default 15,128; --quick 15)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"model shapes to time: {', '.join(SHAPES)}")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    from circuitcheck.fixtures.loading import resolve_device

    device = resolve_device(args.device)  # a clear error where CUDA was asked for and is absent
    n_prompts = args.prompts or (2 if args.quick else 8)
    lengths = [int(n) for n in (args.lengths or ("15" if args.quick else "15,128")).split(",")]
    unknown = set(args.shapes.split(",")) - set(SHAPES)
    if unknown:
        parser.error(f"--shapes {args.shapes}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SHAPES)}")

    print("== the machine", machine(device), sep="\n", flush=True)
    ok = True
    if not args.skip_tests:
        print("\n== tests", flush=True)
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
            ok &= run_tests(device, args.quick, Path(scratch))
    if not args.skip_timing:
        print(f"\n== patching: transformer_lens.patching against circuitcheck's patch, on {device}", flush=True)
        largest = time_patching(device, n_prompts, lengths, args.shapes.split(","))
        print(f"(random weights, clean into corrupted, metric: mean logit difference; largest difference "
              f"{largest:.1e}, tolerance {TOLERANCE:.0e})")
        ok &= largest < TOLERANCE
    print(f"\nGPU check: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
