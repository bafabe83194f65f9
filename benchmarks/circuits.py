"""How long 100 random circuits take on the default model and eight IOI prompts: batched
(many circuits per forward pass, `probes.circuits.evaluate`) against one run_with_hooks per
circuit, and whether both give the same numbers (within 1e-4).

    .venv/bin/python benchmarks/circuits.py [--model smollm2-135m] [--circuits 100] [--sample 100]

``--sample k`` times the one-run-per-circuit baseline on the first k circuits only and scales
it to all of them (say so when you quote it).
"""

import argparse
import time

import numpy as np
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.families import ioi_abc_prompts, ioi_prompts
from circuitcheck.probes.circuits import Circuit, evaluate, head_hook, masks, setup


def one_run_each(s, circuits) -> np.ndarray:
    """The plain way: per circuit, one model.run_with_hooks overwriting the ablated heads."""
    model, tok = s.model, s.tokenized
    rows, answers = torch.arange(s.n_prompts), tok.answer_ids
    out = []
    for circuit in circuits:
        keep, _ = masks(s, circuit)

        def hook(z, hook, layer=None):
            layer = int(hook.name.split(".")[1])
            return torch.where(keep[:, layer, :, :, None], z, s.values[hook.name])

        with torch.inference_mode():
            logits = model.run_with_hooks(tok.tokens, fwd_hooks=[(head_hook(l), hook) for l in range(model.cfg.n_layers)])
        final = logits[rows, tok.final_positions].float()
        out.append((final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).squeeze(1).numpy())
    return np.array(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--circuits", type=int, default=100)
    parser.add_argument("--sample", type=int, default=None)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    prompts = ioi_prompts(8)
    s = setup(model, prompts, ioi_abc_prompts(8), "mean")
    generator = np.random.default_rng(0)
    candidate = Circuit(["L0H0", "L1H1", "L2H2", "L3H3", "L4H4", "L5H5"])
    circuits = [candidate.random_like(model, generator) for _ in range(args.circuits)]
    evaluate(s, circuits[:1])  # warm up

    start = time.perf_counter()
    batched = evaluate(s, circuits)
    t_batched = time.perf_counter() - start

    sample = args.sample or args.circuits
    start = time.perf_counter()
    plain = one_run_each(s, circuits[:sample])
    t_plain = (time.perf_counter() - start) * args.circuits / sample

    diff = float(np.abs(batched[:sample] - plain).max())
    print(f"model {args.model}, {len(prompts)} IOI prompts ({s.width} tokens), {args.circuits} random "
          f"circuits of {len(candidate)} heads, mean ablation over IOI ABC, torch threads {torch.get_num_threads()}")
    print(f"batched (many circuits per pass):  {t_batched:8.2f} s")
    print(f"one run_with_hooks per circuit:    {t_plain:8.2f} s"
          + ("" if sample == args.circuits else f"  (timed on {sample}, scaled to {args.circuits})"))
    print(f"speed-up: {t_plain / t_batched:.1f}x; largest difference {diff:.2e} (must be < 1e-4)")


if __name__ == "__main__":
    main()
