"""How long 100 random circuits take on the default model and eight IOI prompts: batched
(many circuits per forward pass, `probes.circuits.evaluate`) against one run_with_hooks per
circuit, and whether both give the same numbers (within 1e-4). With ``--edges``, the edge
circuits instead: the graph's size, EAP (the clean-run gradient), EAP-IG (5 steps) and exact
patching of EAP-IG's top 200 edges, their agreement (Spearman, top-k overlap), and the edge
faithfulness curve on MIB's grid (10 sizes, with its 20 random orders, mean ablation over the
ABC prompts) against one `faithfulness` call per circuit.

    .venv/bin/python benchmarks/circuits.py [--model smollm2-135m] [--circuits 100] [--sample 100]
    .venv/bin/python benchmarks/circuits.py --edges [--top 200] [--n-random 20]
    .venv/bin/python benchmarks/circuits.py --quick [--edges]   # tiny-llama, 2 prompts: seconds

``--sample k`` times the one-run-per-circuit baseline on the first k circuits only and scales
it to all of them (say so when you quote it). ``--quick`` checks that the script still matches
the code (tests/test_benchmarks.py runs it): a tiny random model, 2 IOI prompts, 10 circuits,
the top 20 edges; its times and figures mean nothing.
"""

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.families import ioi_abc_prompts, ioi_prompts
from circuitcheck.probes.circuits import Circuit
from circuitcheck.probes.circuits.engine import head_hook, masks, setup
from circuitcheck.probes.sites import head_label

TOLERANCE = 1e-4


def one_run_each(s, circuits) -> np.ndarray:
    """The plain way: per circuit, one model.run_with_hooks overwriting the ablated heads with
    their ablation values (``s.replacements``, as the batched engine reads them)."""
    model, tok = s.model, s.tokenized
    rows, answers = torch.arange(s.n_prompts), tok.answer_ids
    out = []
    for circuit in circuits:
        keep, _ = masks(s, circuit)

        def overwrite(layer, keep=keep):
            def hook(z, hook):
                return torch.where(keep[:, layer, :, :, None], z, s.replacements.of(hook.name, z))
            return hook

        with torch.inference_mode():
            logits = model.run_with_hooks(tok.tokens, fwd_hooks=[(head_hook(l), overwrite(l))
                                                                 for l in range(model.cfg.n_layers)])
        final = logits[rows, tok.final_positions].float()
        out.append((final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).squeeze(1).numpy())
    return np.array(out)


def _ranks(values) -> np.ndarray:
    return np.argsort(np.argsort(values))


def timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def edges(model, name: str, n_prompts: int, top: int, n_random: int) -> None:
    """EAP, EAP-IG and exact edge patching on the IOI prompts, and the batched edge curve."""
    from circuitcheck.probes import faithfulness, faithfulness_curve
    from circuitcheck.probes.circuits.curve import curve_sizes
    from circuitcheck.probes.edges import EdgeCircuit, edge_attribution, edge_graph, edge_patch_scores
    from circuitcheck.probes.edges.setup import edge_setup

    prompts, abc = ioi_prompts(n_prompts), ioi_abc_prompts(n_prompts)
    graph = edge_graph(model)
    top = min(top, graph.n_edges)
    _, t_eap = timed(lambda: edge_attribution(model, prompts))
    eap_ig, t_ig = timed(lambda: edge_attribution(model, prompts, method="eap-ig", ig_steps=5))
    best = eap_ig.top(top)
    labels, estimated = list(best["edge"]), best["score"].to_numpy()
    exact, t_exact = timed(lambda: edge_patch_scores(model, prompts, labels))
    exact_scores = np.array([exact.score_of(edge) for edge in labels])
    s = edge_setup(model, prompts, "patching")
    kept = np.zeros((len(labels), graph.n_edges), dtype=bool)
    kept[np.arange(len(labels)), graph.indices(labels)] = True
    resumed, t_resumed = timed(lambda: s.metric_with(kept, on="corrupted").mean(axis=1))
    whole, t_whole = timed(lambda: replace(s, target_resid=None).metric_with(kept, on="corrupted").mean(axis=1))
    whole_diff = float(np.abs(whole - resumed).max())
    spearman = float(np.corrcoef(_ranks(estimated), _ranks(exact_scores))[0, 1])
    overlap = {k: len(set(labels[:k]) & set(exact.top(k)["edge"])) / k for k in (10, 20, 50) if k <= top}
    print(f"model {name}: {graph.n_edges} edges ({graph.n_layers} layers, {graph.n_heads} heads, "
          f"{graph.n_kv} key/value heads), {n_prompts} IOI prompts, torch threads {torch.get_num_threads()}")
    print(f"EAP (clean-run gradient):      {t_eap:8.2f} s")
    print(f"EAP-IG (5 steps):              {t_ig:8.2f} s")
    print(f"exact patching of the top {top}: {t_exact:8.2f} s ({t_exact / top:.3f} s an edge); its passes alone, "
          f"each resumed at its edge's block, {t_resumed:.2f} s; through the whole model {t_whole:.2f} s: "
          f"{t_whole / t_resumed:.1f}x faster (largest difference {whole_diff:.1e})")
    print(f"EAP-IG's top {top} against exact patching: Spearman {spearman:.3f}; top-k overlap "
          + (", ".join(f"k={k} {v:.2f}" for k, v in overlap.items()) or "(fewer than 10 edges)"))
    curve, t_curve = timed(lambda: faithfulness_curve(model, prompts, eap_ig, reference=abc, ablation="mean",
                                                      n_random=n_random))
    counts = curve_sizes(None, graph.n_edges)
    n_circuits = 1 + (1 + n_random) * len(counts)  # the empty circuit, the ranking and each random order
    ranked = eap_ig.ranking()
    timed_sizes = counts[:3]
    _, t_each = timed(lambda: [faithfulness(model, prompts, EdgeCircuit(ranked[:k]), reference=abc, ablation="mean")
                               for k in timed_sizes])
    t_scaled = t_each / len(timed_sizes) * n_circuits
    print(f"edge faithfulness curve ({len(counts)} sizes and {n_random} random orders: {n_circuits} circuits, "
          f"mean ablation over ABC): {t_curve:.2f} s batched; one faithfulness call per circuit "
          f"~{t_scaled:.2f} s (timed on {len(timed_sizes)} sizes, scaled to {n_circuits}); "
          f"ratio {t_scaled / t_curve:.1f}x")
    print(f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f} (random orders: mean {curve.random_cpr:.3f}, "
          f"{curve.random_cmd:.3f}; CMD p = {curve.p_value:.3f})")


def nodes(model, name: str, n_prompts: int, n_circuits: int, sample: int | None) -> bool:
    """Random head circuits, batched against one run_with_hooks each; True when they agree."""
    prompts = ioi_prompts(n_prompts)
    s = setup(model, prompts, "mean", ioi_abc_prompts(n_prompts))
    generator = np.random.default_rng(0)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    candidate = Circuit([head_label(i, i % n_heads) for i in range(min(6, n_layers))])  # L0H0 … L5H5
    circuits = [candidate.random_like(model, generator) for _ in range(n_circuits)]
    s.evaluate(circuits[:1])  # warm up

    batched, t_batched = timed(lambda: s.evaluate(circuits))
    sample = min(sample or n_circuits, n_circuits)
    plain, t_sample = timed(lambda: one_run_each(s, circuits[:sample]))
    t_plain = t_sample * n_circuits / sample

    diff = float(np.abs(batched[:sample] - plain).max())
    print(f"model {name}, {len(prompts)} IOI prompts ({s.width} tokens), {n_circuits} random "
          f"circuits of {len(candidate)} heads, mean ablation over IOI ABC, torch threads {torch.get_num_threads()}")
    print(f"batched (many circuits per pass):  {t_batched:8.2f} s")
    print(f"one run_with_hooks per circuit:    {t_plain:8.2f} s"
          + ("" if sample == n_circuits else f"  (timed on {sample}, scaled to {n_circuits})"))
    print(f"speed-up: {t_plain / t_batched:.1f}x; largest difference {diff:.2e} (must be < {TOLERANCE:.0e})")
    return diff < TOLERANCE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default smollm2-135m (--quick: tiny-llama)")
    parser.add_argument("--prompts", type=int, default=None, help="IOI prompts (default 8; --quick 2)")
    parser.add_argument("--circuits", type=int, default=None, help="random circuits (default 100; --quick 10)")
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--edges", action="store_true", help="time edge attribution, exact edge patching, the curve")
    parser.add_argument("--top", type=int, default=None, help="with --edges: the top edges patched exactly "
                                                              "(default 200; --quick 20)")
    parser.add_argument("--n-random", type=int, default=20, help="with --edges: the curve's random orders")
    parser.add_argument("--quick", action="store_true", help="tiny-llama, 2 prompts: a check that the script runs")
    args = parser.parse_args()
    quick = args.quick
    name = args.model or ("tiny-llama" if quick else "smollm2-135m")
    n_prompts = args.prompts or (2 if quick else 8)
    model = load_model(name, device="cpu")
    if args.edges:
        edges(model, name, n_prompts, args.top or (20 if quick else 200), args.n_random)
        return 0
    return 0 if nodes(model, name, n_prompts, args.circuits or (10 if quick else 100), args.sample) else 1


if __name__ == "__main__":
    raise SystemExit(main())
