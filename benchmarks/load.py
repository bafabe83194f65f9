"""Cold and warm load times of the default model (medians of 3 fresh processes).

Cold: an empty cache, so the GGUF is dequantised and written as safetensors.
Warm: the cache is filled, so only the safetensors are read. Each run is a new
Python process; ``import`` time (torch, transformers, TransformerLens) is shown
separately from ``load_model``, and the cache's content check (hashing the
~540 MB of converted weights, part of every ``load_model``) is timed on its own.
Targets: warm at most 5 s, cold at most 40 s.

    .venv/bin/python benchmarks/load.py [--runs 3]
    .venv/bin/python benchmarks/load.py --quick   # tiny-llama, one run: seconds

``--quick`` checks that the script still matches the code (tests/test_benchmarks.py runs it):
a tiny random model, built in memory and never cached, so cold and warm are the same and
there is no content check to time; the targets are not judged.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch, transformers, transformer_lens.model_bridge
from circuitcheck.fixtures import load_model
t1 = time.perf_counter()
load_model(sys.argv[1], device="cpu")
t2 = time.perf_counter()
if sys.argv[1] == "smollm2-135m":
    from circuitcheck.fixtures.cache import cache_root, check_entry
    from circuitcheck.fixtures.gguf_models import SMOLLM2
    check_entry(cache_root() / "gguf" / SMOLLM2.sha256)  # the content check load_model ran, again
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "check": t3 - t2 if sys.argv[1] == "smollm2-135m" else None}))
"""
MODEL, QUICK_MODEL = "smollm2-135m", "tiny-llama"


def one_run(cache: str, model: str = MODEL) -> dict:
    env = {**os.environ, "CIRCUITCHECK_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", CHILD, model], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"loading {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="fresh processes each (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MODEL}, one run: a check that the script runs")
    args = parser.parse_args()
    model, runs = (QUICK_MODEL if args.quick else MODEL), args.runs or (1 if args.quick else 3)
    rows = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as warm_cache:
        if not args.quick:  # a tiny model is never cached: nothing to fill
            one_run(warm_cache, model)  # fill the warm cache
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as cold_cache:
                rows["cold"].append(one_run(cold_cache, model))
            rows["warm"].append(one_run(warm_cache, model))
    print(f"model {model}, medians of {runs} fresh process(es)"
          + (" (built in memory, never cached: targets not judged)" if args.quick else ""))
    print(f"{'':6}{'load_model (s)':>16}{'imports (s)':>14}{'check (s)':>12}   target   runs")
    for kind, target in (("cold", 40), ("warm", 5)):
        load, imports = (statistics.median(r[k] for r in rows[kind]) for k in ("load", "imports"))
        checks = [r["check"] for r in rows[kind] if r["check"] is not None]
        check = f"{statistics.median(checks):12.2f}" if checks else f"{'-':>12}"
        each = ", ".join(f"{r['load']:.2f}" for r in rows[kind])
        print(f"{kind:6}{load:16.2f}{imports:14.2f}{check}   <= {target:<3} s  {each}")


if __name__ == "__main__":
    main()
