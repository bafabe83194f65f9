"""Known-circuit models compiled by Tracr (`circuitcheck.fixtures.groundtruth`): no JAX needed.

The converted models equal Tracr's own outputs on every row of their committed io_table.json,
with the edge probes' per-head q/k/v input forks on as well as off; their truth is right by
construction (ablating a true component loses the answer, ablating a distractor changes nothing;
the true edges alone, every other edge patched to its corrupted sender, keep the model's metric);
the edge probes run on them; a bidirectional model is refused by the causal probes by name.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitcheck import PromptSet, faithfulness, ground_truth, load_model, logit_diff, model_info, recovery
from circuitcheck.edges import edge_attribution, edge_patch_scores
from circuitcheck.fixtures.groundtruth import MODELS, folder_of, known_models, truth_of
from circuitcheck.fixtures.sources import resolve_model
from circuitcheck.probes import ablate
from circuitcheck.probes.edges.graph import EdgeGraph
from circuitcheck.probes.edges.runs import split_inputs
from circuitcheck.probes.model_state import NonCausalModelError
from circuitcheck.probes.sites import parse_site

TRACR_MODELS = ["tracr-prev-token", "tracr-induction", "tracr-distractors", "tracr-map"]
NON_CAUSAL = Path(MODELS).parent / "noncausal" / "tracr-reverse"
TRUTH_KEYS = {"name", "description", "source", "nodes", "edges", "distractors", "prompts", "causal"}
_LOADED = {}


def loaded(name):
    if name not in _LOADED:
        _LOADED[name] = load_model(name, device="cpu")
    return _LOADED[name]


def task(truth) -> PromptSet:
    prompts = truth["prompts"]
    return PromptSet(prompts["clean"], [tuple(a) for a in prompts["answers"]],
                     corrupted_prompts=prompts["corrupted"])


def test_the_embedded_known_circuit_models_are_listed_with_their_truth():
    assert set(TRACR_MODELS) <= set(known_models())
    for name in known_models():
        truth = truth_of(name)
        assert set(truth) == TRUTH_KEYS and truth["name"] == name and truth["causal"] is True
        assert truth["nodes"] and truth["edges"] and set(truth["prompts"]) == {"clean", "corrupted", "answers"}
        assert not set(truth["nodes"]) & set(truth["distractors"])
    assert resolve_model("tracr-induction").kind == "tracr"
    if "planted-induction" in known_models():  # a hand-built Hugging Face folder loads as a folder
        assert resolve_model("planted-induction").kind == "folder"
    with pytest.raises(KeyError, match="not a known-circuit model"):
        truth_of("smollm2-135m")


def test_the_distractor_and_mlp_models_have_what_they_are_for():
    assert truth_of("tracr-distractors")["distractors"] == ["L0H1", "MLP0", "L1H1", "MLP1"]
    assert "MLP0" in truth_of("tracr-map")["nodes"] and "MLP0 → logits" in truth_of("tracr-map")["edges"]
    assert truth_of("tracr-induction")["edges"] == [
        "embed → L0H0.q", "embed → L0H0.k", "embed → L0H0.v", "embed → L1H0.q", "embed → L1H0.v",
        "L0H0 → L1H0.k", "L1H0 → logits"]


def _io_mismatches(model, folder: Path) -> tuple[int, int]:
    """(positions where the converted model's argmax differs from Tracr's decisive output, positions)."""
    rows = json.loads((folder / "io_table.json").read_text())["rows"]
    vocab = model.tokenizer.get_vocab()
    bos = vocab[model_info(model).prepended]
    by_length = {}
    for row in rows:
        by_length.setdefault(len(row["input"]), []).append(row)
    wrong = total = 0
    for group in by_length.values():
        tokens = torch.tensor([[bos] + [vocab[t] for t in row["input"]] for row in group])
        with torch.inference_mode():
            best = model(tokens).argmax(-1)[:, 1:]
        for row, ids in zip(group, best.tolist()):
            for want, got in zip(row["tracr"], ids):
                if want is not None:
                    total += 1
                    wrong += model.tokenizer.convert_ids_to_tokens(got) != want
    return wrong, total


@pytest.mark.parametrize("name", TRACR_MODELS)
def test_the_converted_model_equals_tracr_on_every_row_of_its_io_table(name):
    model = loaded(name)
    wrong, total = _io_mismatches(model, folder_of(name))
    assert total > 300 and wrong == 0, f"{name}: {wrong} of {total} positions differ from Tracr"


@pytest.mark.parametrize("name", [*TRACR_MODELS, str(NON_CAUSAL)])
def test_the_converted_model_takes_split_qkv_inputs_and_still_equals_tracr(name):
    """The edge probes fork the residual per head before q, k and v (``use_split_qkv_input``):
    the Tracr bridge's attention takes the forks, and with them on it still equals Tracr on every
    row of the io_table (and gives the logits it gives with them off)."""
    model = loaded(name) if name in TRACR_MODELS else load_model(name, device="cpu")
    tokens = torch.randint(0, model.cfg.d_vocab, (16, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = model.tokenizer.get_vocab()[model_info(model).prepended]
    with torch.inference_mode():
        plain = model(tokens)
    with split_inputs(model):
        assert model.cfg.use_split_qkv_input
        with torch.inference_mode():
            assert torch.allclose(model(tokens), plain, rtol=0, atol=1e-5)
        wrong, total = _io_mismatches(model, folder_of(name) or Path(name))
    assert not model.cfg.use_split_qkv_input
    assert total > 100 and wrong == 0, f"{name}: {wrong} of {total} positions differ from Tracr with split q/k/v inputs"


@pytest.mark.parametrize("name", TRACR_MODELS)
def test_the_task_prompts_tokenize_one_word_a_token_and_score_one(name):
    model, truth = loaded(name), truth_of(name)
    prompts = task(truth)
    assert model_info(model).name == name and model_info(model).prepended == "BOS"
    assert truth_of(model) == truth
    tokens = prompts.tokenize(model)
    assert tokens.str_tokens[0][1:] == tuple(prompts.prompts[0].split())
    assert (logit_diff(model, prompts).per_prompt == pytest.approx(1.0, abs=1e-4))
    assert (logit_diff(model, prompts.corrupted).per_prompt == pytest.approx(-1.0, abs=1e-4))


@pytest.mark.parametrize("name", TRACR_MODELS)
def test_every_truth_label_names_a_component_or_edge_of_the_model(name):
    model, truth = loaded(name), truth_of(name)
    graph = EdgeGraph(model)
    for edge in truth["edges"]:
        graph.index(edge)
    for node in truth["nodes"] + truth["distractors"]:
        parse_site(node).check(model, name)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("name", TRACR_MODELS)
def test_the_truth_is_right_by_construction(name, ablation):
    """Ablating any true component loses the answer on the task prompts; ablating any
    distractor leaves every logit difference as it was."""
    model, truth = loaded(name), truth_of(name)
    prompts = task(truth)
    for node in truth["nodes"]:
        after = np.asarray(ablate(model, prompts, [node], ablation=ablation).after)
        assert (after < 0.5).mean() >= 0.5, f"{name}: {ablation}-ablating true {node} keeps the answer: {after}"
    for node in truth["distractors"]:
        result = ablate(model, prompts, [node], ablation=ablation)
        effect = float(np.abs(result.effect).max())
        assert effect < 1e-4, f"{name}: {ablation}-ablating distractor {node} moves the logit difference by {effect}"


def _float32_tolerance(model, *metrics) -> float:
    """How far float32 rounding alone can move an edge pass's metric from the plain model's.

    The metric (the logit difference) reads two residual coordinates; in a Tracr model each is a
    sum of the senders' one-hot writes, so its scale is that of the metric itself (|F| ≤ 1 here).
    A masked pass rebuilds every receiving end's input as its own input minus the replaced
    senders' differences (`probes.edges.runs`): at most one float32 rounding (eps = 2^-23,
    relative) per sender, on values of the metric's scale, and the error is carried through the
    ``2·n_layers + 1`` terms of the residual sum behind the logits (embedding, each layer's
    attention and MLP: the depth `rounding_floor` counts). Tracr's attention is saturated and its
    MLPs read one-hot inputs away from their thresholds, so neither amplifies an error of that
    size. Hence eps × scale × n_senders × (2·n_layers + 1): 4e-6 on tracr-distractors."""
    eps = torch.finfo(torch.float32).eps
    scale = max(float(np.abs(m).max()) for m in metrics)
    return eps * scale * len(EdgeGraph(model).senders) * (2 * model.cfg.n_layers + 1)


@pytest.mark.parametrize("name", TRACR_MODELS)
def test_the_true_edges_alone_keep_the_model_under_patching(name):
    """Every edge outside the truth reading its sender's output on the corrupted twin, the true
    edges alone give the model's metric, prompt by prompt: the edge faithfulness of the true
    `EdgeCircuit` is 1 (F(C)/F(M) and normalised) up to float32 rounding (`_float32_tolerance`)."""
    model = loaded(name)
    truth = ground_truth(model)
    found = faithfulness(model, truth.prompt_set, truth.edge_circuit, ablation="patching")
    tol = _float32_tolerance(model, found.model_metric, found.circuit_metric, found.empty_metric)
    assert np.abs(found.circuit_metric - found.model_metric).max() <= tol, found
    assert found.ratio == pytest.approx(1.0, abs=tol / abs(found.f_model)), found
    assert found.normalised == pytest.approx(1.0, abs=tol / abs(found.f_model - found.f_empty)), found
    assert found.f_model - found.f_empty == pytest.approx(2.0, abs=tol)  # the corrupted twin flips the answer


@pytest.mark.parametrize("name", TRACR_MODELS)
def test_the_edge_probes_run_and_score_only_true_edges(name):
    """EAP, EAP-IG and exact edge patching run on the Tracr bridge and `recovery` scores them
    against the true edges; exact patching moves the metric through no edge outside the truth
    (Tracr's distractors and unused paths write nothing the answer reads)."""
    model = loaded(name)
    truth = ground_truth(model)
    exact = edge_patch_scores(model, truth.prompt_set)
    rankings = [edge_attribution(model, truth.prompt_set, method=m) for m in ("eap", "eap-ig")] + [exact]
    for scores in rankings:
        assert scores.labels == exact.labels and np.isfinite(scores.scores).all()
        found = recovery(scores, truth)
        assert 0.5 < found.auroc <= 1 and 0 < found.precision <= 1, found
    outside = [exact.score_of(e) for e in exact.labels if e not in truth.edges]
    tol = _float32_tolerance(model, [exact.f_clean, exact.f_target])
    assert np.abs(outside).max() <= tol, exact
    assert exact.score_of(truth.edges[-1]) == pytest.approx(exact.f_clean - exact.f_target, abs=tol)  # → logits


def test_a_bidirectional_model_is_converted_exactly_and_refused_by_the_causal_probes():
    model = load_model(str(NON_CAUSAL), device="cpu")
    assert model.cfg.attention_dir == "bidirectional" and truth_of(model)["causal"] is False
    wrong, total = _io_mismatches(model, NON_CAUSAL)
    assert total > 100 and wrong == 0
    prompts = task(truth_of(model))
    with pytest.raises(NonCausalModelError, match="assumes causal attention"):
        ablate(model, prompts, ["L0H0"], ablation="zero")
    from circuitcheck.probes import patch

    with pytest.raises(NonCausalModelError, match="attends in both directions"):
        patch(model, prompts, "head_out")


def test_the_truth_comes_from_what_each_component_reads_and_writes():
    """`truth_from_components` (the generator's, no Tracr needed): operands become edges, the
    constant `one` and `tokens:BOS` directions do not, nor does a component's own clean-up write."""
    from circuitcheck.groundtruth import truth_from_components

    components = [
        {"component": "L0H0", "on_path": True, "reads": {"q": ["one", "tokens:BOS"], "k": ["tokens:a", "tokens:BOS"],
                                                         "v": ["tokens:BOS"]}, "writes": ["width_attn"]},
        {"component": "MLP0", "on_path": True, "reads": {"MLP": ["width_attn", "one"]},
         "writes": ["width:0", "width:1", "width_attn"]},
        {"component": "L0H1", "on_path": False, "reads": {"q": ["indices:0"], "k": ["indices:0"], "v": ["tokens:a"]},
         "writes": ["other:a"]},
        {"component": "L1H0", "on_path": True, "reads": {"q": ["width:0"], "k": ["indices:1"], "v": ["tokens:a"]},
         "writes": ["out:a"]},
    ]
    truth = truth_from_components(components, "out")
    assert truth == {"nodes": ["L0H0", "MLP0", "L1H0"], "distractors": ["L0H1"],
                     "edges": ["embed → L0H0.k", "embed → L1H0.k", "embed → L1H0.v", "L0H0 → MLP0",
                               "MLP0 → L1H0.q", "L1H0 → logits"]}
