"""Cold and warm load times of the default model (medians of 3 fresh processes).

Cold: an empty cache, so the GGUF is dequantised and written as safetensors.
Warm: the cache is filled, so only the safetensors are read. Each run is a new
Python process; ``import`` time (torch, transformers, TransformerLens) is shown
separately from ``load_model``, and the cache's content check (hashing the
~540 MB of converted weights, part of every ``load_model``) is timed on its own.
Targets: warm at most 5 s, cold at most 40 s.

    .venv/bin/python benchmarks/load.py [--runs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, time
t0 = time.perf_counter()
import torch, transformers, transformer_lens.model_bridge
from circuitcheck.fixtures import load_model
t1 = time.perf_counter()
load_model("smollm2-135m", device="cpu")
t2 = time.perf_counter()
from circuitcheck.fixtures.cache import cache_root, check_entry
from circuitcheck.fixtures.gguf_models import SMOLLM2
check_entry(cache_root() / "gguf" / SMOLLM2.sha256)  # the content check load_model ran, again
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "check": t3 - t2}))
"""


def one_run(cache: str) -> dict:
    env = {**os.environ, "CIRCUITCHECK_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    rows = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as warm_cache:
        one_run(warm_cache)  # fill the warm cache
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as cold_cache:
                rows["cold"].append(one_run(cold_cache))
            rows["warm"].append(one_run(warm_cache))
    print(f"{'':6}{'load_model (s)':>16}{'imports (s)':>14}{'check (s)':>12}   target   runs")
    for kind, target in (("cold", 40), ("warm", 5)):
        load, imports, check = (statistics.median(r[k] for r in rows[kind])
                                for k in ("load", "imports", "check"))
        each = ", ".join(f"{r['load']:.2f}" for r in rows[kind])
        print(f"{kind:6}{load:16.2f}{imports:14.2f}{check:12.2f}   <= {target:<3} s  {each}")


if __name__ == "__main__":
    main()
