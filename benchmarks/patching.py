"""Activation patching, ours against `transformer_lens.patching`, on both embedded models.

On eight IOI prompts (SmolLM2: 14 tokens, it takes no BOS; Gemma 3 270M: 15, with
``<bos>``), for the residual-stream sweep (``resid_pre``: layers × positions) and the
per-head sweep over all positions (``head_out``: layers × heads), it runs the reference
(one forward pass of the batch per site) and ours, and prints wall time, the ratio, the largest absolute difference of the
per-site mean logit difference and each side's peak memory. Target: ≥ 10× faster,
< 1e-4. Then attribution patching of the same sweeps: time and correlation with
exact patching. Then memory: a 512-token prompt pair corrupted at its first name
(so patched runs share almost no prefix), a head sweep over ten layers of SmolLM2, with
the default memory budget and with none. Gemma's 262,144-token unembedding is where
unembedding only the final position's two answer columns pays most: the reference
unembeds every position of every patched run.

Every measurement runs in a process of its own after the model is loaded and warmed
up. Time and memory are measured in separate runs: peak memory is the rise of the
process's peak RSS during the call, with glibc told to return every block over 64 KiB
to the system when freed (``MALLOC_MMAP_THRESHOLD_``), so RSS follows live tensors
rather than what the allocator keeps; that slows the run, so times come from runs
without it. The reference's memory run patches its first ten sites only: it runs one
forward pass per site, so its peak does not grow with the number of sites.

    .venv/bin/python benchmarks/patching.py [--prompts 8] [--sweeps resid_pre,head_out] [--skip-long]
        [--models smollm2-135m,gemma3-270m]
    .venv/bin/python benchmarks/patching.py --quick   # tiny-llama, 2 prompts, in one process: seconds

``--quick`` checks that the script still matches the code (tests/test_benchmarks.py runs it):
a tiny random model, 2 IOI prompts, every measurement in this process, no peak-memory runs and
no 512-token case; its times mean nothing, the differences still must be below 1e-4.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LONG_LAYERS = range(20, 30)
TOLERANCE = 1e-4  # the largest difference from transformer_lens.patching allowed


def rss_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def long_prompt(model, n_tokens: int = 512):
    """One IOI sentence after filler text, exactly ``n_tokens`` long with BOS, corrupted at
    its first name, so nearly every position differs downstream."""
    from circuitcheck.probes import PromptSet

    head, tail = "When Mary and John went to the shops,", " Then, John gave the bag to"
    filler = "the weather was mild and the streets were quiet that afternoon".split()
    words = []
    while len(model.to_tokens(" ".join([head, *words]) + tail)[0]) < n_tokens:
        words.append(filler[len(words) % len(filler)])
    clean = " ".join([head, *words[:-1]]) + tail
    while len(model.to_tokens(clean)[0]) < n_tokens:  # the last word may have been several tokens
        clean = clean.replace(tail, " so" + tail)
    return PromptSet([clean], [(" Mary", " John")], corrupted_prompts=[clean.replace("Mary", "Anne", 1)],
                     name=f"{n_tokens}-token IOI")


def reference_call(model, prompts, sweep: str, few_sites: bool = False):
    """``sweep`` (``resid_pre`` or ``head_out``) over every site, clean into corrupted, by
    `transformer_lens.patching` (one forward pass of the batch per site; with ``few_sites``, its
    first ten sites): the clean cache is computed now, the returned function runs the sweep and
    gives the per-site mean logit difference (float64, on the CPU)."""
    import pandas as pd
    import torch
    import transformer_lens.patching as tl_patching

    clean, corrupted = prompts.tokenize(model), prompts.corrupted.tokenize(model)
    answers = clean.answer_ids

    def mean_logit_diff(logits):
        final, picked = logits[:, -1], answers.to(logits.device)
        return (final.gather(1, picked[:, :1]) - final.gather(1, picked[:, 1:])).mean()

    reference = {"resid_pre": ("resid_pre", tl_patching.layer_pos_patch_setter, ["layer", "pos"]),
                 "head_out": ("z", tl_patching.layer_head_vector_patch_setter, ["layer", "head_index"])}
    name, setter, columns = reference[sweep]
    units = clean.tokens.shape[1] if sweep == "resid_pre" else model.cfg.n_heads
    sites = list(itertools.product(range(model.cfg.n_layers), range(units)))
    with torch.inference_mode():
        _, clean_cache = model.run_with_cache(clean.tokens)

    def call():
        return tl_patching.generic_activation_patch(
            model, corrupted.tokens, clean_cache, mean_logit_diff, patch_setter=setter, activation_name=name,
            index_df=pd.DataFrame(sites[:10] if few_sites else sites, columns=columns)).double().flatten().cpu()

    return call


def our_call(model, prompts, sweep: str):
    """The same sweep by `circuitcheck.probes.patch`, as `reference_call` returns it."""
    import torch

    from circuitcheck.probes import patch

    return lambda: torch.tensor(patch(model, prompts, sweep).mean)


def child(model_name: str, task: str, sweep: str, n: int, budget: int, few_sites: bool) -> dict:
    """One measurement, in this (fresh) process."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    from circuitcheck.fixtures import load_model
    from circuitcheck.fixtures.families import ioi_prompts
    from circuitcheck.probes import attribution_patch, patch
    from circuitcheck.probes.patch_runs import rows_per_pass

    model = load_model(model_name, device="cpu")
    prompts = ioi_prompts(n)
    clean = prompts.tokenize(model)
    if task == "reference":
        call = reference_call(model, prompts, sweep, few_sites)
    elif task == "ours":
        call = our_call(model, prompts, sweep)
    elif task == "attribution":
        def call():
            return torch.tensor(attribution_patch(model, prompts, sweep).mean)
    else:  # long
        long = long_prompt(model)
        width = long.tokenize(model).tokens.shape[1]

        def call():
            return torch.tensor(patch(model, long, "head_out", layers=LONG_LAYERS, memory_budget=budget).mean)
    model(clean.tokens[:1])  # warm up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    base, start = rss_mb("VmRSS"), time.perf_counter()
    values = call()
    seconds, peak = time.perf_counter() - start, rss_mb("VmHWM") - base
    out = {"seconds": seconds, "peak_mb": peak, "values": values.tolist(), "threads": torch.get_num_threads(),
           "tokens": clean.tokens.shape[1]}
    if task == "long":
        out.update(width=width, rows_per_pass=rows_per_pass(model, width - 2, width, budget))
    return out


QUICK = False  # --quick: measure in this process (see the module)


def measure(model: str, task: str, sweep: str = "", n: int = 8, budget: int = 0, memory: bool = False) -> dict:
    """Run one measurement in a fresh process; ``memory``: the peak-memory run (see above)."""
    if QUICK:
        return {"peak_mb": float("nan")} if memory else child(model, task, sweep, n, budget, False)
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": "65536"} if memory else {})}
    out = subprocess.run([sys.executable, __file__, "--child", model, task, sweep, str(n), str(budget),
                          str(int(memory))], capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode:
        sys.exit(f"{model} {task} {sweep} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's progress bars (read when tqdm is imported)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--sweeps", default="resid_pre,head_out")
    parser.add_argument("--skip-long", action="store_true", help="skip the 512-token memory case")
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="tiny-llama, 2 prompts, in one process, no memory runs: a check that the script runs")
    args = parser.parse_args()
    if args.quick:
        global QUICK
        QUICK, args.models, args.prompts, args.skip_long = True, "tiny-llama", 2, True
    if args.child:
        model, task, sweep, n, budget, memory = args.child
        print(json.dumps(child(model, task, sweep, int(n), int(budget), memory == "1")))
        return 0

    from circuitcheck.probes.patching import DEFAULT_MEMORY_BUDGET

    sweeps, models = args.sweeps.split(","), args.models.split(",")
    exact, largest = {}, 0.0
    print(f"{'model':14}{'sweep':10}{'sites':>7}{'reference (s)':>15}{'ours (s)':>10}{'ratio':>8}{'max |diff|':>12}"
          f"{'ref peak (MB)':>15}{'our peak (MB)':>15}")
    for model, sweep in itertools.product(models, sweeps):
        reference, ours = measure(model, "reference", sweep, args.prompts), measure(model, "ours", sweep, args.prompts)
        reference_mb = measure(model, "reference", sweep, args.prompts, memory=True)["peak_mb"]
        our_mb = measure(model, "ours", sweep, args.prompts, memory=True)["peak_mb"]
        exact[model, sweep] = ours
        diff = np.abs(np.array(ours["values"]) - np.array(reference["values"])).max()
        largest = max(largest, float(diff))
        print(f"{model:14}{sweep:10}{len(ours['values']):7d}{reference['seconds']:15.1f}{ours['seconds']:10.1f}"
              f"{reference['seconds'] / ours['seconds']:7.1f}x{diff:12.1e}"
              f"{reference_mb:15.0f}{our_mb:15.0f}", flush=True)
    print(f"(on CPU, {ours['threads']} threads, {args.prompts} IOI prompts, clean into corrupted, "
          "metric: mean logit difference" + ("; --quick: one process, no memory runs)" if QUICK else ")"))

    print("\nattribution patching (two forward passes, one backward) against exact patching")
    print(f"{'model':14}{'sweep':10}{'time (s)':>10}{'faster than exact':>19}{'correlation':>13}")
    for model, sweep in itertools.product(models, sweeps):
        estimate = measure(model, "attribution", sweep, args.prompts)
        correlation = np.corrcoef(estimate["values"], exact[model, sweep]["values"])[0, 1]
        print(f"{model:14}{sweep:10}{estimate['seconds']:10.1f}"
              f"{exact[model, sweep]['seconds'] / estimate['seconds']:18.1f}x{correlation:13.3f}", flush=True)

    if not args.skip_long:
        runs = {label: measure("smollm2-135m", "long", budget=budget, memory=True)
                for label, budget in (("2 GiB (default)", DEFAULT_MEMORY_BUDGET), ("none", 2**50))}
        width = runs["none"]["width"]
        print(f"\nmemory: one {width}-token prompt pair corrupted at its first name, head_out sweep, "
              f"layers {LONG_LAYERS.start}-{LONG_LAYERS.stop - 1} ({len(LONG_LAYERS) * 9} sites)")
        print(f"{'memory budget':16}{'rows/pass':>10}{'time (s)*':>10}{'peak (MB)':>11}")
        for label, run in runs.items():
            rows = min(run["rows_per_pass"], len(LONG_LAYERS) * 9 + 1)
            print(f"{label:16}{rows:>10}{run['seconds']:10.1f}{run['peak_mb']:11.0f}")
        same = np.abs(np.array(runs["none"]["values"]) - np.array(runs["2 GiB (default)"]["values"])).max()
        print(f"largest difference between the two: {same:.1e}  (* time of the memory run, slowed by the mmap setting)")
    if not largest < TOLERANCE:
        print(f"FAILED: ours differs from transformer_lens.patching by {largest:.1e} (tolerance {TOLERANCE:.0e})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
