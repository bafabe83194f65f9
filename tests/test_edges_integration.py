"""Edge probes on the real embedded models (integration: each model loads once, ~30-80 s).

SmolLM2-135M (Llama, 9 query heads sharing 3 key/value heads) on 8 IOI prompts: EAP-IG's top
50 edges against exact edge patching of the same edges, with the numbers and timings printed
(`benchmarks/circuits.py --edges` times the top 200);
Gemma 3 270M (post-norms, one key/value head): the graph's size and the two exact end points.
"""

import time

import numpy as np
import pytest

from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.probes.edges import edge_attribution, edge_graph, edge_patch, edge_patch_scores
from circuitcheck.probes.edges.graph import n_edges_formula


TOP = 50  # edges patched exactly (about 0.8 s each on SmolLM2's CPU run)


def _ranks(values):
    return np.argsort(np.argsort(values))


def test_eap_ig_top_edges_against_exact_patching_on_smollm2(smollm2):
    prompts = ioi_prompts(8)
    graph = edge_graph(smollm2)
    assert (graph.n_layers, graph.n_heads, graph.n_kv) == (30, 9, 3)
    assert graph.n_edges == n_edges_formula(30, 9, 3) == 70651
    times = {}
    start = time.perf_counter()
    eap = edge_attribution(smollm2, prompts)
    times["EAP"] = time.perf_counter() - start
    start = time.perf_counter()
    eap_ig = edge_attribution(smollm2, prompts, method="eap-ig", ig_steps=5)
    times["EAP-IG (5 steps)"] = time.perf_counter() - start
    best = eap_ig.top(TOP)
    top, estimated = list(best["edge"]), best["score"].to_numpy()
    start = time.perf_counter()
    exact = edge_patch_scores(smollm2, prompts, top)
    times[f"exact patching of the top {TOP}"] = time.perf_counter() - start
    assert np.isfinite(eap.scores).all() and np.isfinite(eap_ig.scores).all() and np.isfinite(exact.scores).all()
    spearman = float(np.corrcoef(_ranks(estimated), _ranks(exact.scores))[0, 1])
    eap_on_top = np.array([eap.score_of(label) for label in top])
    spearman_eap = float(np.corrcoef(_ranks(eap_on_top), _ranks(exact.scores))[0, 1])
    overlap = {k: len(set(top[:k]) & set(exact.top(k)["edge"])) / k for k in (10, 20)}
    print(f"\nSmolLM2-135M, {graph.n_edges} edges, 8 IOI prompts: F(clean) {eap.f_clean:.3f}, "
          f"F(corrupted) {eap.f_target:.3f}")
    print("  seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in times.items()))
    print(f"  top {TOP} by EAP-IG: Spearman with exact patching {spearman:.3f} (EAP: {spearman_eap:.3f}); "
          "top-k overlap " + ", ".join(f"k={k}: {v:.2f}" for k, v in overlap.items()))
    print("  top 5 by EAP-IG: " + ", ".join(f"{label} {value:.3f}" for label, value in zip(top[:5], estimated[:5])))
    print("  top 5 by exact:  " + ", ".join(f"{row.edge} {row.score:.3f}" for row in exact.top(5).itertuples()))
    assert spearman > 0 and overlap[20] > 0


def test_gemma3_edge_graph_and_its_end_points(gemma3):
    graph = edge_graph(gemma3)
    assert graph.n_edges == n_edges_formula(graph.n_layers, graph.n_heads, graph.n_kv)
    prompts = ioi_prompts(4)
    everything = edge_patch(gemma3, prompts, list(graph.labels))
    np.testing.assert_allclose(everything.patched, everything.clean, atol=1e-3)
    nothing = edge_patch(gemma3, prompts, [])
    np.testing.assert_allclose(nothing.patched, nothing.corrupted, atol=1e-3)
    print(f"\nGemma 3 270M: {graph.n_layers} layers, {graph.n_heads} heads, {graph.n_kv} key/value head(s): "
          f"{graph.n_edges} edges; every edge patched: recovery {everything.recovery:.5f}")
    assert everything.recovery == pytest.approx(1.0, abs=1e-3)
