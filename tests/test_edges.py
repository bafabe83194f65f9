"""Edge-level circuits on tiny models: the graph, exact edge patching against plain hook
references on every architecture family, EAP / EAP-IG against exact patching, finite
differences and TransformerLens's EAP, a planted edge circuit, the edge curve, MIB's format."""

import json

import numpy as np
import pytest
import torch

from circuitcheck.fixtures.tiny import ARCHITECTURES, planted_copy_head_model
from circuitcheck.probes import PromptSet, faithfulness, faithfulness_curve, random_circuit_test
from circuitcheck.probes.circuits.curve import area
from circuitcheck.probes.edges.attribution import SHOWN_EDGES
from circuitcheck.probes.figures import plotly_figure
from circuitcheck.probes.edges import (EdgeCircuit, EdgeGraph, edge_attribution, edge_graph, edge_patch,
                                       edge_patch_scores, from_mib, parse_edge, to_mib)
from circuitcheck.probes.edges.graph import n_edges_formula
from circuitcheck.probes.edges.mib import mib_names
from circuitcheck.probes.linearise import post_norm_gain, post_norm_name
from circuitcheck.probes.tokens import tokenize_pair

from .test_patching import PROMPTS  # 15 and 16 tokens: different lengths, so padding is exercised
from .tolerances import through_model

COPY = PromptSet(  # the planted head copies the token at position 2 (BOS counted)
    ["When Mary and John went to the shops, John gave the bag to",
     "When Tom and James went to the park, James gave the ball to",
     "When John and Mary went to the shops, Mary gave the bag to",
     "When James and Tom went to the park, Tom gave the ball to"],
    [(" Mary", " John"), (" Tom", " James"), (" John", " Mary"), (" James", " Tom")],
    corrupted_prompts=["When Tom and John went to the shops, John gave the bag to",
                       "When Mary and James went to the park, James gave the ball to",
                       "When James and Mary went to the shops, Mary gave the bag to",
                       "When John and Tom went to the park, Tom gave the ball to"],
    name="copy the second word")
PLANTED = ["embed → L1KV1.v", "L1H1 → logits"]


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch_model(request):
    from circuitcheck.fixtures import load_model

    return request.param, load_model(f"tiny-{request.param}", device="cpu")


@pytest.fixture(scope="module")
def planted():
    return planted_copy_head_model()


# --- the graph -------------------------------------------------------------------------------

def test_edge_counts_follow_the_formula(tiny_llama, tiny_gpt2, arch_model):
    arch, model = arch_model
    # 2 layers, 4 heads: into layer 0's ends 1 sender, layer 1's 6; MLP l also its layer's heads
    assert edge_graph(tiny_llama).n_edges == 12 * 1 + (1 + 4) + 12 * 6 + (6 + 4) + 11 == 110
    assert edge_graph(tiny_gpt2).n_edges == 110
    graph = edge_graph(model)
    parallel = arch == "neox"
    assert graph.parallel == parallel
    assert graph.n_edges == n_edges_formula(2, 4, graph.n_kv, parallel) == len(set(graph.labels))
    assert graph.n_kv == {"gemma3": 1, "gemma2": 2, "qwen2": 2}.get(arch, 4)
    # MIB's graph has per-query-head k and v ends: (H + 2H) ends per layer instead of (H + 2K)
    assert sum(len(names) for names in mib_names(model)) == n_edges_formula(2, 4, 4, parallel)


def test_gqa_edges_enter_the_shared_key_value_head():
    from circuitcheck.fixtures import load_model

    graph = edge_graph(load_model("tiny-gemma3", device="cpu"))  # four query heads, one key/value head
    assert "L0H1 → L1KV0.k" in graph.labels and "L0H1 → L1KV0.v" in graph.labels
    assert graph.index("L0H1 -> L1KV0.k") == graph.labels.index("L0H1 → L1KV0.k")
    with pytest.raises(ValueError, match=r"shares each key/value head among 4 query heads.*write L1KV0\.k"):
        graph.index("L0H1 → L1H2.k")
    with pytest.raises(ValueError, match="key/value heads KV0–KV0"):
        graph.index("embed → L1KV1.v")


def test_labels_round_trip_through_the_parser(tiny_llama):
    graph = edge_graph(tiny_llama)
    for i, label in enumerate(graph.labels):
        assert graph.index(label) == i
        assert graph.index(label.replace(" → ", "->")) == i
        sender, end = label.split(" → ")
        assert graph.index((sender, end)) == i
    assert "MLP0 → L1KV3.v" in graph.labels and "L1H3 → MLP1" in graph.labels and "L0H0 → L1H0.q" in graph.labels
    assert graph.index("L0H2 → L1H3.k") == graph.index("L0H2 → L1KV3.k")  # a head's own k/v without GQA
    circuit = EdgeCircuit(["L0H1->L1H2.q", "embed → logits", "L0H1 → L1H2.q"])
    assert circuit.edges == ("L0H1 → L1H2.q", "embed → logits") and len(circuit) == 2
    assert circuit.nodes == ("L0H1", "embed", "L1H2.q", "logits")


@pytest.mark.parametrize("label, match", [
    ("L0H0 => L1H0.q", "write edges as 'sender → receiving end'"),
    ("L1H0 → L0H0.q", "is not an edge: L0H0.q receives only from senders before it"),
    ("L1H0 → MLP0", "is not an edge"),
    ("L5H5 → L9H6.q", "has layers 0–1"),
    ("L0H7 → logits", "has heads H0–H3"),
    ("L0H0.q → logits", "sender 'L0H0.q'"),
    ("L0H0 → L1H0.z", "receiving end 'L1H0.z'"),
    ("embed → MLP", "receiving end 'MLP'"),
])
def test_bad_edge_labels_are_clear_errors(tiny_llama, label, match):
    with pytest.raises(ValueError, match=match):
        edge_graph(tiny_llama).index(label)


def test_an_edge_circuit_is_checked_against_the_model(tiny_llama):
    with pytest.raises(ValueError, match="has layers 0–1"):
        faithfulness(tiny_llama, PROMPTS, ["L3H0 → logits"])
    with pytest.raises(ValueError, match="edge circuit is empty"):
        faithfulness(tiny_llama, PROMPTS, EdgeCircuit([]))
    with pytest.raises(ValueError, match="ablation 'nope'"):
        edge_attribution(tiny_llama, PROMPTS, ablation="nope")


# --- exact edge patching against plain hook references -------------------------------------

def _sender_outputs(model, tokens, sender):
    """A sender's output into the residual stream, from TransformerLens's own per-head results."""
    model.set_use_attn_result(True)
    try:
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens)
    finally:
        model.set_use_attn_result(False)
    if sender.activation == "embed":
        return cache["blocks.0.hook_resid_pre"]
    if sender.unit is None:  # an MLP's output
        return cache[f"blocks.{sender.layer}.hook_mlp_out"]
    layer, head = sender.layer, sender.index
    out = cache[f"blocks.{layer}.attn.hook_result"][:, :, head]
    norm = post_norm_name(model, layer, "attn")
    if norm:  # sandwich norm: g ⊙ x_h / rms(x), the scale of the same pass
        out = out * post_norm_gain(model, layer, "attn") / cache[f"{norm}.hook_scale"]
    return out


def _by_hand_qkv(model, layer, kind, index, resid):
    """A head's query (or a key/value head's key or value) computed from a residual stream with
    the model's own Hugging Face norm and projection, as the bridge's ``hook_q``/``hook_k``/``hook_v``."""
    block = model.blocks[layer]
    normed = block.ln1.original_component(resid)
    attn = block.attn.original_component
    d_head = model.cfg.d_head
    raw = lambda module: getattr(module, "original_component", module)  # noqa: E731 - not the bridge's hooks
    if hasattr(attn, "c_attn"):  # GPT-2: one fused projection
        projected = raw(attn.c_attn)(normed).split(model.cfg.d_model, dim=-1)["qkv".index(kind)]
    else:
        projected = raw(getattr(attn, f"{kind}_proj"))(normed)
    return projected.view(*projected.shape[:2], -1, d_head)[:, :, index]


def reference_edge_patch(model, prompts, label):
    """The metric per prompt with one edge patched clean into the corrupted run, written plainly:
    δ = clean − corrupted output of the sender; the corrupted run with the receiving end's
    input + δ: a query/key/value recomputed by hand from the residual + δ (where the model's
    projections are plain), else the bridge's per-head input fork + δ; an MLP's input + δ;
    the final residual + δ."""
    clean, corrupted = tokenize_pair(model, prompts)
    sender, end = parse_edge(label)
    delta = _sender_outputs(model, clean.tokens, sender) - _sender_outputs(model, corrupted.tokens, sender)
    hooks, flags = [], []
    if end.activation == "logits":
        hooks.append(("ln_final.hook_in", lambda x, hook: x + delta))
    elif end.unit is None:  # an MLP's input
        flags.append(model.set_use_hook_mlp_in)
        hooks.append((f"blocks.{end.layer}.hook_mlp_in", lambda x, hook: x + delta))
    else:
        kind, layer, index = end.activation, end.layer, end.index
        attn = model.blocks[layer].attn.original_component
        if hasattr(attn, "c_attn") or hasattr(attn, "q_proj"):
            kept = {}

            def keep(x, hook):
                kept["resid"] = x.clone()
                return x

            def recompute(x, hook):
                x = x.clone()
                x[:, :, index] = _by_hand_qkv(model, layer, kind, index, kept["resid"] + delta).to(x.dtype)
                return x

            hooks += [(f"blocks.{layer}.hook_resid_pre", keep), (f"blocks.{layer}.attn.hook_{kind}", recompute)]
        else:  # GPT-NeoX's fused, interleaved projection: the bridge's fork of the residual per head
            flags.append(model.set_use_split_qkv_input)

            def add(x, hook):
                x = x.clone()
                x[:, :, index] += delta
                return x

            hooks.append((f"blocks.{layer}.hook_{kind}_input", add))
    for flag in flags:
        flag(True)
    try:
        with torch.inference_mode():
            logits = model.run_with_hooks(corrupted.tokens, fwd_hooks=hooks)
    finally:
        for flag in flags:
            flag(False)
    rows = torch.arange(len(logits))
    final = logits[rows, clean.final_positions].float()
    good, bad = clean.answer_ids.T
    return (final[rows, good] - final[rows, bad]).numpy()


EDGES = ["embed → L1H2.q", "L0H1 → L1H2.q", "L0H3 → L1KV0.k", "MLP0 → L1KV0.v", "L0H0 → L1KV0.v",
         "embed → MLP0", "L0H2 → MLP0", "L1H1 → MLP1", "MLP0 → MLP1", "L1H0 → logits", "MLP1 → logits",
         "embed → logits"]


def test_exact_edge_patching_equals_a_plain_hook_reference(arch_model):
    arch, model = arch_model
    if arch == "neox":  # parallel attention and MLP: MLP l does not read its own layer's heads
        edges = [e for e in EDGES if e != "L1H1 → MLP1" and e != "L0H2 → MLP0"]
        with pytest.raises(ValueError, match="is not an edge"):
            edge_graph(model).index("L1H1 → MLP1")
    else:
        edges = EDGES
    scores = edge_patch_scores(model, PROMPTS, edges)
    for label in edges:
        ours = edge_patch(model, PROMPTS, [label])
        expected = reference_edge_patch(model, PROMPTS, label)
        np.testing.assert_allclose(ours.patched, expected, atol=2e-5, err_msg=f"{arch}: {label}")
        assert scores.score_of(label) == pytest.approx(ours.effect, abs=1e-5)
    assert np.abs(scores.scores).max() > 1e-4  # the edges do something: the check has teeth


def test_all_edges_into_one_end_patch_its_whole_input(arch_model):
    arch, model = arch_model
    graph = edge_graph(model)
    clean, corrupted = tokenize_pair(model, PROMPTS)
    for end, hook, index in [("L1H2.q", "blocks.1.hook_q_input", 2), ("L1KV0.v", "blocks.1.hook_v_input", 0),
                             ("MLP1", "blocks.1.hook_mlp_in", None), ("logits", "ln_final.hook_in", None)]:
        into = [label for label in graph.labels if label.endswith(f"→ {end}")]
        ours = edge_patch(model, PROMPTS, into)
        model.set_use_split_qkv_input(True)
        model.set_use_hook_mlp_in(True)
        try:
            with torch.inference_mode():
                _, cache = model.run_with_cache(clean.tokens, names_filter=[hook])

                def whole(x, hook, source=cache[hook]):
                    x = x.clone()
                    if index is None:
                        return source
                    x[:, :, index] = source[:, :, index]
                    return x

                logits = model.run_with_hooks(corrupted.tokens, fwd_hooks=[(hook, whole)])
        finally:
            model.set_use_split_qkv_input(False)
            model.set_use_hook_mlp_in(False)
        rows = torch.arange(len(logits))
        final = logits[rows, clean.final_positions].float()
        good, bad = clean.answer_ids.T
        np.testing.assert_allclose(ours.patched, (final[rows, good] - final[rows, bad]).numpy(), atol=2e-5,
                                   err_msg=f"{arch}: every edge into {end}")


def test_every_edge_gives_the_clean_run_and_none_the_corrupted(arch_model):
    arch, model = arch_model
    graph = edge_graph(model)
    everything = edge_patch(model, PROMPTS, list(graph.labels))
    np.testing.assert_allclose(everything.patched, everything.clean, atol=2e-5)
    assert everything.recovery == pytest.approx(1.0, abs=1e-3)
    nothing = edge_patch(model, PROMPTS, [])
    np.testing.assert_allclose(nothing.patched, nothing.corrupted, atol=2e-5)
    # and the circuit view: keeping every edge is the model, keeping none is the corrupted run
    whole = faithfulness(model, PROMPTS, EdgeCircuit(graph.labels), ablation="patching")
    np.testing.assert_allclose(whole.circuit_metric, whole.model_metric, atol=2e-5)
    np.testing.assert_allclose(whole.empty_metric, nothing.corrupted, atol=2e-5)


def test_subtracting_and_rebuilding_an_input_agree(arch_model, monkeypatch):
    """A block's ends read input − Σ_replaced (out − R), or (constant + Σ R) + Σ_kept (out − R)
    when most edges are replaced: the same numbers either way, up to float32 rounding. The
    rebuilt input re-adds every sender's output, so its rounding is that of a sum of sender
    outputs as large as max |out| (4.7 on tiny Gemma 3, whose embedding is scaled by √d_model,
    against an input of 0.5), carried through the model: `tolerances.through_model`."""
    from circuitcheck.probes.edges import runs
    from circuitcheck.probes.edges.setup import edge_setup

    arch, model = arch_model
    s = edge_setup(model, PROMPTS, "mean")
    masks = np.random.default_rng(0).random((4, s.graph.n_edges)) < np.array([[0.05], [0.4], [0.6], [0.95]])
    both = []
    for threshold in (2.0, -1.0):  # never rebuild, always rebuild
        monkeypatch.setattr(runs, "REBUILD_ABOVE", threshold)
        both.append(s.metric_with(masks))
    scale = float(s.clean_outs.abs().amax(dim=(0, 1, 3)).sum())  # Σ over senders of max |out|
    np.testing.assert_allclose(both[0], both[1], rtol=0, atol=through_model(model, scale), err_msg=arch)
    assert np.abs(both[0] - s.clean_metric).max() > 1e-2  # the masks change the metric: the test can fail


# --- attribution -------------------------------------------------------------------------------

def test_eap_is_the_first_order_change_of_exact_edge_patching(arch_model):
    """An edge's EAP score on the corrupted run is d/dε of the metric when V's input moves by ε·δ
    from the corrupted run: checked against a central finite difference of the exact patched
    run, and ranked like exact patching."""
    arch, model = arch_model
    eap = edge_attribution(model, PROMPTS, method="eap-corrupted")
    graph = edge_graph(model)
    exact = edge_patch_scores(model, PROMPTS)
    rho = np.corrcoef(np.argsort(np.argsort(eap.scores)), np.argsort(np.argsort(exact.scores)))[0, 1]
    assert rho > 0.6, f"{arch}: Spearman {rho:.2f}"
    from circuitcheck.probes.edges.setup import edge_setup

    s = edge_setup(model, PROMPTS, "patching")
    for label in ["L0H1 → L1H2.q", "MLP0 → L1KV0.v", "L1H0 → logits", "embed → MLP0"]:
        i = graph.index(label)
        sender = graph.sender_of[i]
        base = s.clean_outs.clone()
        values = []
        for eps in (1e-2, -1e-2):  # the clean output moved only ε of the way from the corrupted one
            moved = s.target_outs.clone()
            moved[:, :, sender] += eps * (base[:, :, sender] - s.target_outs[:, :, sender])
            shifted = type(s)(**{**s.__dict__, "clean_outs": moved})
            mask = np.zeros((1, graph.n_edges), dtype=bool)
            mask[0, i] = True
            values.append(shifted.metric_with(mask, on="corrupted").mean())
        derivative = (values[0] - values[1]) / 2e-2
        assert eap.score_of(label) == pytest.approx(derivative, rel=2e-2, abs=2e-5), f"{arch}: {label}"


def test_eap_on_the_clean_run_is_the_first_order_change_of_corrupting_an_edge(arch_model):
    """``method="eap"`` (Syed et al.; EAP-IG's and MIB's EAP) takes the gradient on the clean run:
    its score is −d/dε of the metric when V's input moves by −ε·δ from the clean run, the edge
    corrupted ε of the way (checked against a central finite difference), and it is not the
    corrupted-run score."""
    from circuitcheck.probes.edges.setup import edge_setup

    arch, model = arch_model
    eap = edge_attribution(model, PROMPTS)
    assert eap.method == "eap" and "on the clean run" in eap.notes()[0]
    graph, s = edge_graph(model), edge_setup(model, PROMPTS, "patching")
    for label in ["L0H1 → L1H2.q", "MLP0 → L1KV0.v", "L1H0 → logits", "embed → MLP0"]:
        i = graph.index(label)
        sender = graph.sender_of[i]
        values = []
        for eps in (1e-2, -1e-2):  # the edge carries its clean output moved ε of the way to the corrupted one
            moved = s.clean_outs.clone()
            moved[:, :, sender] -= eps * (s.clean_outs[:, :, sender] - s.target_outs[:, :, sender])
            shifted = type(s)(**{**s.__dict__, "target_outs": moved})
            mask = np.zeros((1, graph.n_edges), dtype=bool)
            mask[0, i] = True
            values.append(shifted.metric_with(~mask).mean())  # every edge but this one kept
        derivative = -(values[0] - values[1]) / 2e-2
        assert eap.score_of(label) == pytest.approx(derivative, rel=2e-2, abs=2e-5), f"{arch}: {label}"
    corrupted = edge_attribution(model, PROMPTS, method="eap-corrupted")
    assert np.abs(eap.scores - corrupted.scores).max() > 0.1 * np.abs(eap.scores).max(), arch


def test_eap_ig_starts_at_eap_and_converges(tiny_gpt2):
    eap = edge_attribution(tiny_gpt2, PROMPTS, method="eap-corrupted")
    one = edge_attribution(tiny_gpt2, PROMPTS, method="eap-ig", ig_steps=1)
    np.testing.assert_allclose(one.scores, eap.scores, rtol=1e-6, atol=1e-9)
    coarse, fine, finer = (edge_attribution(tiny_gpt2, PROMPTS, method="eap-ig", ig_steps=k) for k in (2, 8, 16))
    assert np.abs(finer.scores - fine.scores).max() < np.abs(finer.scores - coarse.scores).max() / 2
    assert "EAP-IG (16 steps)" in finer.title


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_eap_agrees_with_transformer_lens(fixture, request):
    """TransformerLens's own edge attribution (one pair at a time, per position) summed over
    positions and averaged over prompts is our EAP, on the models it accepts (no GQA, no
    post-norms)."""
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    model = request.getfixturevalue(fixture)
    clean, corrupted = tokenize_pair(model, PROMPTS)
    theirs = {}
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in frozen:  # its backward starts from the parameters; circuitcheck loads them frozen
        parameter.requires_grad_(True)
    try:
        _tl_scores(model, clean, corrupted, theirs, attribution_patch, EdgeAttributionConfig)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    ours = edge_attribution(model, PROMPTS, method="eap-corrupted")  # its gradient is on the corrupted run
    graph = edge_graph(model)
    assert len(theirs) == graph.n_edges
    for (sender, end), score in theirs.items():
        assert ours.score_of(f"{sender} → {end}") == pytest.approx(score, rel=1e-3, abs=1e-6)


def _tl_scores(model, clean, corrupted, theirs, attribution_patch, EdgeAttributionConfig):
    for i, length in enumerate(clean.lengths):
        good, bad = clean.answer_ids[i].tolist()
        result = attribution_patch(model, clean.tokens[i:i + 1, :length], corrupted.tokens[i:i + 1, :length],
                                   lambda logits: logits[0, -1, good] - logits[0, -1, bad],
                                   EdgeAttributionConfig(granularity="edge"))
        for (writer, reader), score in result.edge_scores.items():
            key = (_tl_writer(writer), _tl_reader(reader))
            theirs[key] = theirs.get(key, 0.0) + score / len(clean.lengths)


def _tl_writer(node):
    return {"embed": "embed", "attn_head_out": f"L{node.layer}H{node.head}", "mlp_out": f"MLP{node.layer}"}[node.kind]


def _tl_reader(node):
    return {"q_input": f"L{node.layer}H{node.head}.q", "k_input": f"L{node.layer}KV{node.head}.k",
            "v_input": f"L{node.layer}KV{node.head}.v", "mlp_in": f"MLP{node.layer}", "logits": "logits"}[node.kind]


def test_edge_scores_result(tiny_llama):
    eap = edge_attribution(tiny_llama, PROMPTS)
    top = eap.top(5)
    labels, scores = list(top["edge"]), top["score"].to_numpy()
    assert len(labels) == 5 and np.all(np.diff(np.abs(scores)) <= 0)
    assert eap.circuit(5) == EdgeCircuit(labels)
    assert list(eap.df.columns) == ["edge", "sender", "receiver", "score", "normalised"] and len(eap.df) == 110
    graph, figure = eap.figure()
    assert figure["type"] == "heatmap" and len(figure["z"]) == len(figure["y"])
    assert graph["type"] == "graph" and len(graph["edges"]) == min(110, SHOWN_EDGES)
    for edge in graph["edges"]:  # each line joins its sender's node to its receiving end's
        sender, end = edge["label"].split(" → ")
        assert graph["nodes"]["labels"][edge["from"]] == sender
        assert end.split(".")[0] == graph["nodes"]["labels"][edge["to"]] or end == graph["nodes"]["labels"][edge["to"]]
    drawn = plotly_figure(graph)
    assert drawn["data"][-1]["text"] == graph["nodes"]["labels"] and json.dumps(drawn)
    assert json.dumps(eap.evidence())  # the report can hold it
    assert "EAP" in eap.notes()[0] and eap.summary()["edges scored"] == 110
    with pytest.raises(AttributeError):
        eap.method = "x"  # a frozen Result


def test_mean_ablation_scores_and_faithfulness(tiny_llama):
    eap = edge_attribution(tiny_llama, PROMPTS, ablation="mean")
    assert np.isfinite(eap.scores).all() and np.isfinite(eap.f_target)
    kept = faithfulness(tiny_llama, PROMPTS, EdgeCircuit(edge_graph(tiny_llama).labels), ablation="mean")
    np.testing.assert_allclose(kept.circuit_metric, kept.model_metric, atol=2e-5)
    assert kept.f_empty == pytest.approx(eap.f_target, abs=1e-6)
    # the node probes hand an EdgeCircuit over
    via_node_api = faithfulness(tiny_llama, PROMPTS, eap.circuit(10))
    assert via_node_api.kind == "edge_circuit_faithfulness" and via_node_api.ablation == "mean"


# --- a planted edge circuit, faithfulness, the curve ---------------------------------------------

def test_a_planted_edge_circuit_is_ranked_first_and_is_faithful(planted):
    """The planted head L1H1 reads the token at position 2 through its value (embed → L1KV1.v)
    and writes it to the logits (L1H1 → logits): those two edges carry the answer."""
    eap_ig = edge_attribution(planted, COPY, method="eap-ig", ig_steps=5)
    assert set(eap_ig.top(2)["edge"]) == set(PLANTED)
    exact = edge_patch_scores(planted, COPY, list(eap_ig.top(10)["edge"]))
    assert set(exact.top(2)["edge"]) == set(PLANTED)
    test = random_circuit_test(planted, COPY, PLANTED, n=40, ablation="patching")
    [faithful] = test.parts
    assert faithful.normalised == pytest.approx(1.0, abs=0.1), faithful
    assert test.beats_random(0.95) and test.p_value < 0.05
    via_node_api = random_circuit_test(planted, COPY, EdgeCircuit(PLANTED), n=40, ablation="patching")
    np.testing.assert_allclose(via_node_api.random_metric, test.random_metric)  # dispatched


def test_edge_curve_areas_are_the_trapezoids(planted):
    eap = edge_attribution(planted, COPY)
    total = edge_graph(planted).n_edges
    curve = faithfulness_curve(planted, COPY, eap, sizes=[1, 2, 5, total // 2], n_random=2)
    assert list(curve.sizes) == [1, 2, 5, total // 2, total]
    # by hand: each top-k circuit's normalised faithfulness, then the trapezoids
    f_model, f_empty = curve.f_model, curve.f_empty
    ranking = eap.ranking()
    by_hand = []
    for k in curve.sizes:
        f_c = faithfulness(planted, COPY, EdgeCircuit(ranking[:k]), ablation="patching").f_circuit
        by_hand.append((f_c - f_empty) / (f_model - f_empty))
    np.testing.assert_allclose(curve.faithfulness, by_hand, atol=1e-5)
    x = np.array(curve.sizes) / total
    trapezoid = sum((x[i + 1] - x[i]) * (by_hand[i] + by_hand[i + 1]) / 2 for i in range(len(x) - 1))
    assert curve.cpr == pytest.approx(trapezoid, abs=1e-5) == area(x, by_hand)
    cmd = sum((x[i + 1] - x[i]) * (abs(1 - by_hand[i]) + abs(1 - by_hand[i + 1])) / 2 for i in range(len(x) - 1))
    assert curve.cmd == pytest.approx(cmd, abs=1e-5)
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    assert curve.cpr > curve.random_cpr and curve.cmd < curve.random_cmd
    assert curve.random_runs.shape == (2, len(curve.sizes))
    same = faithfulness_curve(planted, COPY, eap, sizes=[1, 2, 5, total // 2], n_random=2, ablation="patching")  # dispatched
    np.testing.assert_allclose(same.faithfulness, curve.faithfulness)
    assert any("fraction of edges" in note for note in curve.notes())


def test_edge_completeness_and_minimality_of_the_planted_circuit(planted):
    from circuitcheck.probes import completeness, minimality

    full = completeness(planted, COPY, EdgeCircuit(edge_graph(planted).labels), ablation="patching",
                        n_random=3, greedy_steps=1)
    np.testing.assert_allclose(full.gaps, 0, atol=1e-4)  # C = M: every K gives the same model
    complete = completeness(planted, COPY, PLANTED, ablation="patching", n_random=4, greedy_steps=1)
    assert complete.ks[0] == () and complete.gaps[0] < 0.05 and complete.kind == "circuit_completeness"
    needed = minimality(planted, COPY, PLANTED + ["embed → L0H0.q"], ablation="patching", n_random=3)
    assert set(needed.needed(0.3)) == set(PLANTED) and needed.not_needed(0.3) == ["embed → L0H0.q"]


# --- MIB ---------------------------------------------------------------------------------------

def test_mib_export_import_round_trip(tmp_path, arch_model):
    arch, model = arch_model
    eap = edge_attribution(model, PROMPTS)
    path = tmp_path / "circuit.json"
    form = to_mib(model, eap, path, circuit=12)
    written = json.loads(path.read_text())
    assert set(written) == {"cfg", "nodes", "edges"} and written["cfg"]["n_heads"] == 4
    assert "input->a0.h1<q>" in written["edges"] and "m1->logits" in written["edges"]
    assert ("a0.h1->m0" in written["edges"]) == (arch != "neox")  # parallel: MLP 0 reads the layer's input
    assert set(written["nodes"]["input"]) == {"in_graph"}
    assert sum(e["in_graph"] for e in written["edges"].values()) >= 12
    best = eap.top(1)
    copies = mib_names(model)[edge_graph(model).index(best["edge"][0])]  # several for a shared key/value head
    # EAP-IG's sign (loss=True, as MIB calls it): ours; the copies of a shared key/value edge sum to its score
    assert sum(written["edges"][name]["score"] for name in copies) == pytest.approx(best["score"][0], rel=1e-12)
    if eap.kv_copies is not None and len(copies) > 1:  # each query head's own part of the shared edge
        row = eap.kv_copies[list(eap.kv_positions).index(eap.labels.index(best["edge"][0]))]
        np.testing.assert_allclose([written["edges"][n]["score"] for n in copies], row, rtol=0,
                                   atol=2 * float32_edge_scores(model, np.abs(eap.kv_copies).max()))
    else:
        assert {written["edges"][name]["score"] for name in copies} == {best["score"][0] / len(copies)}
    circuit, scores = from_mib(model, path)
    assert circuit == eap.circuit(12)
    np.testing.assert_allclose(scores.scores, eap.scores, rtol=1e-6)
    assert from_mib(model, form)[0] == circuit


def test_mib_gqa_copies_map_to_the_shared_key_value_head(tmp_path):
    from circuitcheck.fixtures import load_model

    model = load_model("tiny-gemma3", device="cpu")
    form = to_mib(model, EdgeCircuit(["L0H1 → L1KV0.k"]))
    copies = [name for name, e in form["edges"].items() if e["in_graph"]]
    assert copies == [f"a0.h1->a1.h{h}<k>" for h in range(4)]  # one per query head sharing it
    assert from_mib(model, form)[0] == EdgeCircuit(["L0H1 → L1KV0.k"])
    form["edges"]["a0.h1->a1.h2<k>"]["in_graph"] = False  # as MIB's top-n leaves most shared edges
    assert from_mib(model, form)[0] == EdgeCircuit(["L0H1 → L1KV0.k"])  # default kv="any"
    with pytest.raises(ValueError, match="some query heads sharing the key/value head"):
        from_mib(model, form, kv="exact")
    assert len(from_mib(model, form, kv="all")[0]) == 0
    form["edges"]["a0.h9->logits"] = {"score": 1.0, "in_graph": True}
    with pytest.raises(ValueError, match="names 1 edge"):
        from_mib(model, form)
    with pytest.raises(ValueError, match="n_layers=5"):
        from_mib(model, {**form, "cfg": {**form["cfg"], "n_layers": 5}})


def test_the_graph_object(tiny_llama):
    graph = EdgeGraph(tiny_llama)
    assert "110 edges" in repr(graph) and len(graph) == 110
    assert graph.labels[0] == "embed → L0H0.q" and graph.labels[-1] == "MLP1 → logits"
    assert graph.mask(["embed → logits"]).sum() == 1


def test_a_query_heads_key_edge_is_resolved_against_the_model_not_renamed():
    """``L1H2.k`` names head 2's key: on a model whose heads share key/value heads it is refused
    with the key/value head's label, never silently read as ``L1KV2.k``."""
    from circuitcheck.fixtures import load_model

    circuit = EdgeCircuit(["L0H1 → L1H2.k"])
    assert circuit.edges == ("L0H1 → L1H2.k",)
    with pytest.raises(ValueError, match=r"write L1KV0\.k \(head 2's\)"):
        circuit.indices(load_model("tiny-gemma3", device="cpu"))  # four query heads share KV0
    gpt2 = load_model("tiny-gpt2", device="cpu")  # a key/value head per query head
    assert list(circuit.indices(gpt2)) == list(EdgeCircuit(["L0H1 → L1KV2.k"]).indices(gpt2))


def test_two_names_of_one_key_edge_are_one_edge_on_the_model(tiny_gpt2):
    """Where each query head has its own key/value head, ``L1H3.k`` is ``L1KV3.k``: bound to the
    model the circuit is one edge, its random edge sets are one edge each, and ``score_of``
    reads the edge by either name; where heads share a key/value head it names the shared one."""
    from circuitcheck.fixtures import load_model

    circuit = EdgeCircuit(["L0H0 → L1H3.k", "L0H0 → L1KV3.k"])
    assert len(circuit) == 2 and circuit.on(tiny_gpt2) == EdgeCircuit(["L0H0 → L1KV3.k"])
    test = random_circuit_test(tiny_gpt2, PROMPTS, circuit, n=3)
    assert test.parts[0].components == ("L0H0 → L1KV3.k",)
    assert [label.count("→") for label in test.random_circuits] == [1, 1, 1]
    scores = edge_attribution(tiny_gpt2, PROMPTS)
    assert scores.score_of("L0H0 -> L1H3.k") == scores.score_of("L0H0 → L1KV3.k")
    assert list(edge_patch_scores(tiny_gpt2, PROMPTS, list(circuit.edges)).labels) == ["L0H0 → L1KV3.k"]
    gemma = load_model("tiny-gemma3", device="cpu")  # four query heads share KV0
    exact = edge_patch_scores(gemma, PROMPTS, ["L0H1 → L1KV0.k"])
    with pytest.raises(ValueError, match=r"write L1KV0\.k \(head 2's\)"):
        exact.score_of("L0H1 → L1H2.k")


def test_nan_scores_are_not_ranked(tiny_llama):
    """A NaN score has no rank: top(k), circuit(k) and ranking() refuse it rather than put it
    last (all NaN gave the first k edges of the graph); the summary and figures still show it."""
    import dataclasses
    import re

    eap = edge_attribution(tiny_llama, PROMPTS)
    scores = eap.scores.copy()
    scores[[3, 7]] = np.nan
    broken = dataclasses.replace(eap, scores=scores)
    refusal = f"^2 of 110 edge scores are NaN \\(e.g. {re.escape(repr(eap.labels[3]))}\\)"
    for call in (lambda: broken.circuit(3), lambda: broken.top(5), broken.ranking):
        with pytest.raises(ValueError, match=refusal):
            call()
    with pytest.raises(ValueError, match="edge scores are NaN"):
        faithfulness_curve(tiny_llama, PROMPTS, broken, sizes=[1, 2])
    assert broken.summary()["edges scored"] == 110 and json.dumps(broken.evidence())


# --- grouped-query attention: each query head's part of a shared key/value edge --------------

GQA_ARCHS = [arch for arch in ARCHITECTURES if arch in ("gemma3", "gemma2", "qwen2")]  # 4, 2, 2 query heads per kv head


def float32_edge_scores(model, scale: float) -> float:
    """How far two float32 computations of one edge score may differ: a score is a float32 sum
    of N = prompts × positions × d_model products whose gradient factor comes through
    4 × n_layers chained inner products (attention and MLP, forward and backward), the longest
    of length max(d_mlp, d_model); `tolerances.summed` of that many terms at ``scale`` (the
    largest |score| standing in for the sum of the terms' sizes, as in test_mib_reference)."""
    from .tolerances import summed

    cfg = model.cfg
    n_terms = len(PROMPTS.prompts) * max(PROMPTS.tokenize(model).lengths) * cfg.d_model
    return summed(scale, 4 * cfg.n_layers * max(cfg.d_mlp, cfg.d_model) + n_terms)


def ungrouped_model(arch: str):
    """The tiny model of ``arch`` with every query head given its own key/value head (the key
    and value weights repeated, as TransformerLens's ``ungroup_grouped_query_attention`` and MIB
    do): the same function, with a k and a v end per query head."""
    import copy

    from transformers import AutoModelForCausalLM

    from circuitcheck.fixtures import boot_bridge
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf, tokenizer = tiny_hf_model(arch)
    config = copy.deepcopy(hf.config)
    group = config.num_attention_heads // config.num_key_value_heads
    config.num_key_value_heads = config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    state = {}
    for name, value in hf.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
            value = value.view(-1, d_head, *value.shape[1:]).repeat_interleave(group, dim=0).reshape(-1, *value.shape[1:])
        state[name] = value
    ungrouped = AutoModelForCausalLM.from_config(config).eval()
    ungrouped.load_state_dict(state)
    ungrouped.config.architectures = hf.config.architectures
    return boot_bridge(ungrouped, tokenizer, f"tiny-{arch}-ungrouped"), group


@pytest.mark.parametrize("arch", GQA_ARCHS)
def test_per_query_head_copies_are_the_ungrouped_models_edges(arch):
    """`EdgeScores.kv_copies`, each query head's part of a shared key/value edge's score, is
    that query head's own k or v edge on the same model with the key/value heads ungrouped
    (an independent computation: another graph, no split needed); the parts sum to the shared
    edge's score, and every other edge scores as on the ungrouped model. Float32 on both sides:
    `float32_edge_scores`."""
    import re

    from circuitcheck.fixtures import load_model

    model = load_model(f"tiny-{arch}", device="cpu")
    ungrouped, group = ungrouped_model(arch)
    ours = edge_attribution(model, PROMPTS, method="eap-ig")
    theirs = edge_attribution(ungrouped, PROMPTS, method="eap-ig")
    rows = ours.kv_positions
    assert ours.kv_group == group > 1 and theirs.kv_copies is None
    assert ours.kv_copies.shape == (len(rows), group) and len(rows) == 2 * (1 + 6) * graph_kv(model)
    expected = []
    for r in rows:
        sender, end = ours.labels[r].split(" → ")
        layer, kv, kind = re.fullmatch(r"L(\d+)KV(\d+)\.([kv])", end).groups()
        expected.append([theirs.score_of(f"{sender} → L{layer}KV{int(kv) * group + j}.{kind}") for j in range(group)])
    expected = np.array(expected)
    atol = float32_edge_scores(model, np.abs(expected).max())
    np.testing.assert_allclose(ours.kv_copies, expected, rtol=0, atol=atol)
    assert np.abs(expected - expected.mean(axis=1, keepdims=True)).max() > 100 * atol  # the parts differ
    # the parts sum to the shared score: one more float32 sum of `group` parts of that size
    np.testing.assert_allclose(ours.kv_copies.sum(axis=1), ours.scores[rows], rtol=0, atol=group * atol)
    others = [i for i in range(len(ours.labels)) if i not in set(rows)]
    np.testing.assert_allclose(ours.scores[others], [theirs.score_of(ours.labels[i]) for i in others], rtol=0,
                               atol=float32_edge_scores(model, np.abs(ours.scores).max()))


def graph_kv(model) -> int:
    return edge_graph(model).n_kv


def test_kv_copies_only_where_a_shared_key_value_input_is_split(tiny_llama):
    """Every gradient method splits a shared key/value edge by query head; exact patching does
    not (patching the shared input patches it for every query head at once), nor a model whose
    query heads each have their own key/value head."""
    import re

    from circuitcheck.fixtures import load_model

    assert edge_attribution(tiny_llama, PROMPTS).kv_copies is None
    model = load_model("tiny-qwen2", device="cpu")
    for method in ("eap", "eap-corrupted", "eap-ig"):
        scores = edge_attribution(model, PROMPTS, method=method)
        assert scores.kv_copies.shape == (len(scores.kv_positions), 2), method
        np.testing.assert_allclose(scores.kv_copies.sum(axis=1), scores.scores[scores.kv_positions], rtol=0,
                                   atol=2 * float32_edge_scores(model, np.abs(scores.kv_copies).max()))
    assert edge_patch_scores(model, PROMPTS, ["embed → L1KV0.k", "L0H1 → L1KV1.v"]).kv_copies is None
    assert all(re.search(r"KV\d+\.[kv]$", scores.labels[i]) for i in scores.kv_positions)


def test_to_mib_writes_each_query_heads_copy(tmp_path):
    """`to_mib` writes a shared key/value edge's copies with their own scores (`kv_copies`, the
    float32 remainder against the edge's score spread evenly, so the copies sum to it); `from_mib`
    reads them back as they are and sums them; scores without a split (exact patching) are
    divided by the group size."""
    from circuitcheck.fixtures import load_model

    model = load_model("tiny-qwen2", device="cpu")
    eap = edge_attribution(model, PROMPTS, method="eap-ig")
    form = to_mib(model, eap, tmp_path / "copies.json")
    names = mib_names(model)
    graph = edge_graph(model)
    atol = 2 * float32_edge_scores(model, np.abs(eap.kv_copies).max())
    for row, position in zip(eap.kv_copies, eap.kv_positions):
        written = [form["edges"][name]["score"] for name in names[graph.index(eap.labels[position])]]
        np.testing.assert_allclose(written, row, rtol=0, atol=atol)
        assert sum(written) == pytest.approx(eap.scores[position], rel=1e-12, abs=1e-15)
    _, read = from_mib(model, tmp_path / "copies.json")
    np.testing.assert_allclose(read.scores, eap.scores, rtol=1e-9, atol=1e-15)
    assert read.kv_group == 2 and read.kv_copies.shape == eap.kv_copies.shape
    again = to_mib(model, read)["edges"]
    assert {name: again[name]["score"] for name in again} == pytest.approx(
        {name: entry["score"] for name, entry in form["edges"].items()}, rel=1e-12, abs=1e-15)
    exact = edge_patch_scores(model, PROMPTS, ["L0H1 → L1KV1.v"])
    copies = [to_mib(model, exact)["edges"][f"a0.h1->a1.h{h}<v>"]["score"] for h in (2, 3)]
    assert copies == [exact.score_of("L0H1 → L1KV1.v") / 2] * 2
