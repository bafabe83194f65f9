"""circuitcheck's EAP-IG and MIB files against hannamw/EAP-IG's own outputs (the code behind
MIB's circuit track), on two small random models whose weights are in tests/data/eapig/ (see
its README): a GPT-2 and a grouped-query Llama, 3 layers each, with EAP-IG's 5-step scores
and its ``Graph.to_json`` files of them.

Conventions checked: EAP-IG's ``loss=True`` scores have circuitcheck's sign; with
``mean=True`` they are circuitcheck's divided by the batch size; a shared key/value edge's
score is the sum of EAP-IG's per-query-head copies, and `edge_attribution`'s per-query-head
split of it (``kv_copies``) is EAP-IG's copies; MIB's top-n (EAP-IG's ``Graph.apply_topn``: the
n largest scores, signed or absolute) over a `to_mib` file picks the very edges (copies
included) it picks over EAP-IG's own file."""

import json
import runpy
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from circuitcheck.probes import PromptSet
from circuitcheck.probes.edges import EdgeCircuit, edge_attribution, edge_graph, from_mib, to_mib
from circuitcheck.probes.edges.mib import mib_names

from .tolerances import summed

DATA = Path(__file__).parent / "data" / "eapig"
SCORES = {"gpt2-3l": "P_ig5_loss_mean_all", "llama-gqa": "processed_ig5_mean"}  # 5 steps, loss=True, mean=True
REFERENCE = runpy.run_path(str(DATA / "prompts.py"), run_name="eapig_prompts")  # set A, as EAP-IG ran it
PROMPTS = PromptSet(REFERENCE["CLEAN"], REFERENCE["ANSWERS"], corrupted_prompts=REFERENCE["CORRUPTED"],
                    name="EAP-IG reference, set A")
BATCH = len(PROMPTS.prompts)  # EAP-IG ran all prompts in one batch
MIB_PERCENTAGES = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)  # MIB's evaluate_area_under_curve


@pytest.fixture(scope="module", params=list(SCORES))
def case(request):
    """(name, model, our EAP-IG scores, EAP-IG's scores per MIB edge on our scale, EAP-IG's graph file)."""
    from circuitcheck.fixtures import load_model

    name = request.param
    model = load_model(str(DATA / name), device="cpu")
    ours = edge_attribution(model, PROMPTS, method="eap-ig", ig_steps=5)
    reference = json.loads((DATA / f"{name}_eapig_scores.json").read_text())
    assert PROMPTS.tokenize(model).tokens.tolist() == reference["tokens"]  # EAP-IG's tokens, its BOS prepended
    theirs = {edge: score * BATCH for edge, score in reference[SCORES[name]].items()}  # EAP-IG averages twice
    return name, model, ours, theirs, json.loads((DATA / f"{name}_eapig_graph.json").read_text())


def tolerance(model, scale: float) -> float:
    """How far two correct float32 computations of the same EAP-IG score may differ.

    Each score is, on both sides, a float32 sum of N = prompts × positions × d_model products
    (activation difference × gradient, averaged over the IG steps), whose factors reach it
    through the forward and backward pass: per layer an attention and an MLP sublayer each way,
    4 × n_layers chained inner products, the longest of length k = d_mlp. A float32 inner product
    of length k rounds with a relative error of at most about k × eps (Higham's γ_k, worst case,
    whatever the order of summation a CPU's kernels choose), and relative errors of chained
    products add, so the two sides differ by at most (4 × n_layers × k + N) × eps × Σ|terms|.
    Σ|terms| is not returned; the largest |score| stands in for it (``scale``). A worst-case
    bound, far above what any CPU's rounding reaches, and ~1e-3 of the largest score: a
    convention (sign, batch scale, summed or averaged copies) moves scores by far more."""
    cfg = model.cfg
    n_terms = BATCH * len(PROMPTS.tokenize(model).tokens[0]) * cfg.d_model
    return summed(scale, 4 * cfg.n_layers * max(cfg.d_mlp, cfg.d_model) + n_terms)


def summed_copies(model, per_mib_edge: dict) -> np.ndarray:
    """Per circuitcheck edge, the sum over its MIB edges (a shared key/value edge's copies)."""
    return np.array([sum(per_mib_edge[name] for name in names) for names in mib_names(model)])


def test_edge_attribution_matches_eapig_times_the_batch_size(case):
    """EAP-IG (5 steps, ``loss=True``, ``mean=True``) × batch size = `edge_attribution`'s
    EAP-IG; under grouped-query attention the sum of EAP-IG's per-query-head copies."""
    name, model, ours, theirs, _ = case
    expected = summed_copies(model, theirs)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours.scores, expected, rtol=0, atol=tolerance(model, scale))  # sign and scale
    if name == "llama-gqa":  # the mean of the copies, or any one of them, is not the shared edge's score
        mean = np.array([np.mean([theirs[n] for n in names]) for names in mib_names(model)])
        assert np.abs(ours.scores - mean).max() > 100 * tolerance(model, scale)


def test_per_query_head_copies_are_eapigs_copies(case):
    """Under grouped-query attention `edge_attribution` keeps, per key/value edge, each query
    head's part of its score (``kv_copies``): EAP-IG's score of that query head's own k or v
    end (× batch size), within the float32 bound of the first test; the parts sum to the edge's
    score up to the rounding of one more float32 sum of ``group`` terms over the same products
    (the same bound: each part is the same kind of float32 sum). Without key/value groups (GPT-2)
    there is nothing to split."""
    name, model, ours, theirs, _ = case
    if name == "gpt2-3l":
        assert ours.kv_copies is None and ours.kv_group == 1
        return
    names = mib_names(model)
    rows = ours.kv_positions
    expected = np.array([[theirs[n] for n in names[i]] for i in rows])  # per query head, EAP-IG's order
    assert ours.kv_copies.shape == expected.shape == (len(rows), ours.kv_group) and ours.kv_group == 2
    atol = tolerance(model, np.abs(expected).max())
    np.testing.assert_allclose(ours.kv_copies, expected, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.kv_copies.sum(axis=1), ours.scores[rows], rtol=0,
                               atol=tolerance(model, np.abs(ours.kv_copies).max()) * ours.kv_group)
    # not a split by halves: the copies differ from each other by far more than rounding
    assert np.abs(ours.kv_copies[:, 0] - ours.kv_copies[:, 1]).max() > 100 * atol


def test_from_mib_reads_eapigs_own_file_with_its_scores(case):
    name, model, ours, theirs, graph_file = case
    circuit, read = from_mib(model, graph_file)
    assert len(circuit) == 0  # EAP-IG's file marks no edge in_graph
    np.testing.assert_allclose(read.scores, summed_copies(model, theirs) / BATCH, rtol=1e-12, atol=0)
    np.testing.assert_allclose(read.scores * BATCH, ours.scores, rtol=0,
                               atol=tolerance(model, np.abs(ours.scores).max()))
    if name == "llama-gqa":  # the copies kept as read, in EAP-IG's order
        names = mib_names(model)
        expected = [[graph_file["edges"][n]["score"] for n in names[i]] for i in read.kv_positions]
        np.testing.assert_array_equal(read.kv_copies, expected)
        again = to_mib(model, read)["edges"]  # written again with the same copies
        assert {e: again[e]["score"] for e in again} == {e: v["score"] for e, v in graph_file["edges"].items()}
    else:
        assert read.kv_copies is None


def mib_top_n(model, edges: dict, n: int, absolute: bool) -> Counter:
    """MIB's selection of n edges (EAP-IG's ``Graph.apply_topn``: argsort of the scores, or
    their absolute values, descending; the first n), counted per circuitcheck edge (a shared
    key/value edge has one copy per query head)."""
    group = {name: i for i, names in enumerate(mib_names(model)) for name in names}
    names = list(edges)
    keys = np.array([edges[name]["score"] for name in names])
    keys = np.abs(keys) if absolute else keys
    return Counter(group[names[i]] for i in np.argsort(-keys, kind="stable")[:n])


def keys_of(edges: dict, absolute: bool) -> dict:
    return {name: abs(entry["score"]) if absolute else entry["score"] for name, entry in edges.items()}


def mib_selection(edges: dict, n: int, absolute: bool) -> set:
    """The MIB edges (copies named apart) ``Graph.apply_topn`` keeps: the n largest scores
    (exactly tied scores, which MIB takes in its graph's order, here by name: the same in both
    files)."""
    keys = keys_of(edges, absolute)
    return set(sorted(keys, key=lambda name: (-keys[name], name))[:n])


def boundary_margin(ours: dict, theirs: dict, n: int, absolute: bool) -> float:
    """How far EAP-IG's n-th largest score is above its (n+1)-th: scores moved by at most δ each
    cannot change the top n while this is above 2δ. An exact tie there that our file has too
    (the same edges at the very same score, e.g. edges both score exactly 0) is broken the same
    way in both (`mib_selection`): no margin needed."""
    theirs, ours = keys_of(theirs, absolute), keys_of(ours, absolute)
    keys = sorted(theirs.values(), reverse=True)
    if n >= len(keys):
        return np.inf
    if keys[n - 1] == keys[n] and ({e for e, k in theirs.items() if k == keys[n]}
                                   == {e for e, k in ours.items() if k == keys[n]}):
        return np.inf
    return keys[n - 1] - keys[n]


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "signed"])
def test_to_mib_files_give_mibs_top_n_what_eapigs_own_file_gives(case, absolute, tmp_path):
    """At MIB's sizes (n = int(pct × edges)), signed and absolute: the top n of our file is
    the top n of EAP-IG's own, edge for edge (under grouped-query attention each query head's
    copy of a key/value edge with its own score, `EdgeScores.kv_copies`). Scores that differ by
    at most δ (float32 rounding, bounded in the first two tests) cannot reorder two scores more
    than 2δ apart; a size whose boundary is closer than that to a tie would be skipped (none is
    on these files: every size with n > 0 is checked; on llama-gqa, signed, 50% falls among six
    edges both files score exactly 0, a tie broken alike)."""
    name, model, ours, _, graph_file = case
    path = tmp_path / f"{name}.json"
    to_mib(model, ours, path)
    ours_file = json.loads(path.read_text())["edges"]
    theirs_file = {e: {**entry, "score": entry["score"] * BATCH} for e, entry in graph_file["edges"].items()}
    assert set(ours_file) == set(theirs_file)
    delta = max(abs(ours_file[e]["score"] - theirs_file[e]["score"]) for e in ours_file)
    assert delta <= tolerance(model, max(abs(entry["score"]) for entry in theirs_file.values()))
    checked = 0
    for pct in MIB_PERCENTAGES:
        n = int(pct * len(ours_file))
        if n == 0 or boundary_margin(ours_file, theirs_file, n, absolute) <= 2 * delta:
            continue
        assert mib_selection(ours_file, n, absolute) == mib_selection(theirs_file, n, absolute), (pct, n)
        checked += 1
    assert checked == 8  # of MIB's 10 sizes: 0.1% and 0.2% of 262 edges are n = 0


def test_a_gqa_circuit_chosen_by_mibs_top_n_on_eapigs_file_loads(case):
    """MIB's top-n over EAP-IG's own file keeps some query heads' copies of a key/value edge and
    not others; `from_mib` reads such a circuit (an edge is in when any copy is, its score the
    copies' sum), and ``kv="exact"`` still refuses it."""
    name, model, ours, theirs, graph_file = case
    n = int(0.2 * len(graph_file["edges"]))  # MIB's 20%
    chosen = mib_top_n(model, graph_file["edges"], n, absolute=True)
    names = list(graph_file["edges"])
    keys = np.abs([graph_file["edges"][e]["score"] for e in names])
    picked = {names[i] for i in np.argsort(-keys, kind="stable")[:n]}  # as MIB's apply_topn marks them
    form = {**graph_file, "edges": {e: {**entry, "in_graph": e in picked} for e, entry in graph_file["edges"].items()}}
    circuit, read = from_mib(model, form)
    assert circuit == EdgeCircuit.from_indices(edge_graph(model), sorted(chosen))
    np.testing.assert_allclose(read.scores, summed_copies(model, theirs) / BATCH, rtol=1e-12)
    split = [i for i, count in chosen.items() if count < len(mib_names(model)[i])]
    assert bool(split) == (name == "llama-gqa")  # only grouped-query attention has copies to split
    if split:
        with pytest.raises(ValueError, match="some query heads sharing the key/value head"):
            from_mib(model, form, kv="exact")
        assert len(from_mib(model, form, kv="all")[0]) == len(chosen) - len(split)
