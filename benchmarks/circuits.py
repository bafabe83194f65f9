"""How long 100 random circuits take on the default model and eight IOI prompts: batched
(many circuits per forward pass, `probes.circuits.evaluate`) against one run_with_hooks per
circuit, and whether both give the same numbers (within 1e-4). With ``--edges``, the edge
circuits instead: the graph's size, EAP, EAP-IG (5 steps) and exact patching of EAP-IG's top
200 edges, their agreement (Spearman, top-k overlap), and a 10-point edge faithfulness curve
with its random order against one `faithfulness` call per point.

    .venv/bin/python benchmarks/circuits.py [--model smollm2-135m] [--circuits 100] [--sample 100]
    .venv/bin/python benchmarks/circuits.py --edges [--top 200]

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


def _ranks(values) -> np.ndarray:
    return np.argsort(np.argsort(values))


def timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def edges(model, name: str, top: int) -> None:
    """EAP, EAP-IG and exact edge patching on eight IOI prompts, and the batched edge curve."""
    from circuitcheck.probes.circuits import faithfulness, faithfulness_curve
    from circuitcheck.probes.circuits.curve import curve_sizes
    from circuitcheck.probes.edges import EdgeCircuit, edge_attribution, edge_graph, edge_patch_scores

    prompts, abc = ioi_prompts(8), ioi_abc_prompts(8)
    graph = edge_graph(model)
    eap, t_eap = timed(lambda: edge_attribution(model, prompts))
    eap_ig, t_ig = timed(lambda: edge_attribution(model, prompts, method="eap-ig", ig_steps=5))
    best = eap_ig.top(top)
    labels, estimated = list(best["edge"]), best["score"].to_numpy()
    exact, t_exact = timed(lambda: edge_patch_scores(model, prompts, labels))
    spearman = float(np.corrcoef(_ranks(estimated), _ranks(exact.scores))[0, 1])
    overlap = {k: len(set(labels[:k]) & set(exact.top(k)["edge"])) / k for k in (10, 20, 50) if k <= top}
    print(f"model {name}: {graph.n_edges} edges ({graph.n_layers} layers, {graph.n_heads} heads, "
          f"{graph.n_kv} key/value heads), 8 IOI prompts, torch threads {torch.get_num_threads()}")
    print(f"EAP:                           {t_eap:8.2f} s")
    print(f"EAP-IG (5 steps):              {t_ig:8.2f} s")
    print(f"exact patching of the top {top}: {t_exact:8.2f} s")
    print(f"EAP-IG's top {top} against exact patching: Spearman {spearman:.3f}; top-k overlap "
          + ", ".join(f"k={k} {v:.2f}" for k, v in overlap.items()))
    curve, t_curve = timed(lambda: faithfulness_curve(model, prompts, eap_ig, reference=abc))
    counts = curve_sizes(None, graph.n_edges)
    ranked = eap_ig.ranking()
    _, t_each = timed(lambda: [faithfulness(model, prompts, EdgeCircuit(ranked[:k]), reference=abc)
                               for k in counts[:3]])
    print(f"edge faithfulness curve ({len(counts)} sizes and a random order, mean ablation over ABC): "
          f"{t_curve:.2f} s batched; one faithfulness call per size ~{t_each / 3 * 2 * len(counts):.2f} s "
          f"(timed on 3 sizes, scaled to {2 * len(counts)} circuits); CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f} "
          f"(random order {curve.random_cpr:.3f}, {curve.random_cmd:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--circuits", type=int, default=100)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--edges", action="store_true", help="time edge attribution, exact edge patching, the curve")
    parser.add_argument("--top", type=int, default=200, help="with --edges: the top edges patched exactly")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    if args.edges:
        return edges(model, args.model, args.top)
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
