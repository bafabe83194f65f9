"""Observational probes, ours against the plain way, on 64 IOI prompts on the default model.

Ours: logit_diff, top_k, logit_lens, layer_attribution, head_attribution and
attention share one forward pass that keeps only final-position activations and
attention patterns. The plain way: one ``run_with_cache`` (every activation at
every position) per probe, then the ActivationCache helpers, as in the
TransformerLens demo. Each side runs in its own process after the model is
loaded; peak memory is the rise of the process's peak RSS over that baseline.
Prints wall time, peak memory, their ratios and the largest difference in
head attribution.

    .venv/bin/python benchmarks/probes.py [--prompts 64]
    .venv/bin/python benchmarks/probes.py --quick   # tiny-llama, 2 prompts: seconds

``--quick`` checks that the script still matches the code (tests/test_benchmarks.py runs it):
a tiny random model and 2 IOI prompts; its times and memory mean nothing, the head-attribution
difference still must be small.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.families import ioi_prompts

def rss_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

model = load_model(sys.argv[3], device="cpu")
prompts = ioi_prompts(int(sys.argv[2]))
heads = sys.argv[4].split(",")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
base = rss_kb("VmRSS")
start = time.perf_counter()
if sys.argv[1] == "ours":
    from circuitcheck.probes import attention, head_attribution, layer_attribution, logit_diff, logit_lens, top_k
    logit_diff(model, prompts); top_k(model, prompts); logit_lens(model, prompts)
    layer_attribution(model, prompts); attention(model, prompts, heads)
    values = head_attribution(model, prompts).values.transpose(2, 0, 1).reshape(len(prompts), -1)
else:
    tokens = prompts.tokenize(model).tokens  # as the probes read them (SmolLM2: no BOS); one width, no padding
    good = torch.tensor([model.to_single_token(a) for a, _ in prompts.answers])
    bad = torch.tensor([model.to_single_token(b) for _, b in prompts.answers])
    direction = (model.W_U[:, good] - model.W_U[:, bad]).T
    def cached():
        with torch.inference_mode():
            return model.run_with_cache(tokens)
    logits, cache = cached(); logits[:, -1].gather(1, good[:, None])  # logit diff
    logits, cache = cached(); logits[:, -1].softmax(-1).topk(5)       # top-k
    logits, cache = cached()                                           # logit lens
    stack = cache.accumulated_resid(incl_mid=True, pos_slice=-1)
    (cache.apply_ln_to_stack(stack, pos_slice=-1) * direction).sum(-1)
    (cache.accumulated_resid(incl_mid=True, pos_slice=-1, apply_ln=True) @ model.W_U).softmax(-1)
    logits, cache = cached()                                           # layer attribution
    cache.logit_attrs(cache.decompose_resid(pos_slice=-1), tokens=good, incorrect_tokens=bad, pos_slice=-1)
    logits, cache = cached()                                           # head attribution
    values = cache.logit_attrs(cache.stack_head_results(pos_slice=-1), tokens=good,
                               incorrect_tokens=bad, pos_slice=-1).T.numpy()
    logits, cache = cached()                                           # attention patterns
    from circuitcheck.probes.sites import parse_site
    [cache["pattern", parse_site(h).layer] for h in heads]
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": (rss_kb("VmHWM") - base) / 1024,
                  "heads": values.tolist()}))
"""


MODELS = {"smollm2-135m": ("SmolLM2-135M", "L23H3,L23H0,L29H1"), "tiny-llama": ("tiny-llama", "L1H0,L1H1,L0H2")}


def run(mode: str, n: int, model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(n), model, MODELS[model][1]], capture_output=True,
                         text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode:
        sys.exit(f"{mode} on {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="IOI prompts (default 64; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="tiny-llama, 2 prompts: a check that the script runs")
    args = parser.parse_args()
    model, n = ("tiny-llama" if args.quick else "smollm2-135m"), args.prompts or (2 if args.quick else 64)
    plain, ours = run("plain", n, model), run("ours", n, model)
    import numpy as np

    diff = float(np.abs(np.array(plain["heads"]) - np.array(ours["heads"])).max())
    print(f"{n} IOI prompts, {MODELS[model][0]} on CPU: six observational probes")
    print(f"{'':28}{'wall (s)':>10}{'peak (MB)':>11}")
    print(f"{'plain (run_with_cache x6)':28}{plain['seconds']:10.2f}{plain['peak_mb']:11.0f}")
    print(f"{'circuitcheck (one pass)':28}{ours['seconds']:10.2f}{ours['peak_mb']:11.0f}")
    print(f"ratio plain/ours: time {plain['seconds'] / ours['seconds']:.1f}x, "
          f"memory {plain['peak_mb'] / max(ours['peak_mb'], 1):.1f}x; "
          f"largest head-attribution difference {diff:.2e}")
    return 0 if diff < 1e-4 else 1  # the two ways must agree


if __name__ == "__main__":
    sys.exit(main())
