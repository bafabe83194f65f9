"""The planted known-circuit model (fixtures/groundtruth/models/planted-induction): a Llama
model with RMSNorm, RoPE and grouped-query attention whose previous-token head (L0H1) and
induction head (L1H2) were set by hand. Its truth is right by construction: the circuit does
the task, knocking out either of its heads breaks it, knocking out any distractor does not,
and the committed files are what the seeded build script writes."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from circuitcheck.edges import EdgeCircuit
from circuitcheck.probes import PromptSet, ablate, faithfulness, logit_diff
from circuitcheck.probes.edges.graph import parse_end, parse_sender

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "fixtures" / "groundtruth" / "models" / "planted-induction"
BUILD = ROOT / "fixtures" / "groundtruth" / "build_planted.py"
TRUTH = json.loads((FOLDER / "truth.json").read_text())
KEYS = ["name", "description", "source", "nodes", "edges", "distractors", "prompts", "causal"]


def build_script():
    spec = importlib.util.spec_from_file_location("build_planted", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def planted():
    from circuitcheck.fixtures import load_model

    return load_model(str(FOLDER), device="cpu")


def prompts(name="planted"):
    given = TRUTH["prompts"]
    return PromptSet(given["clean"], [tuple(pair) for pair in given["answers"]],
                     corrupted_prompts=given["corrupted"], name=name)


def accuracy(model, prompt_set) -> float:
    """Top-1 over the whole vocabulary: the share of prompts whose next token is the answer."""
    tokenized = prompt_set.tokenize(model)
    with torch.inference_mode():
        logits = model(tokenized.tokens, return_type="logits")
    last = logits[torch.arange(len(prompt_set)), torch.tensor(tokenized.lengths) - 1]
    return float((last.argmax(-1) == tokenized.answer_ids[:, 0]).float().mean())


def test_the_truth_file_has_the_agreed_form():
    assert list(TRUTH) == KEYS and TRUTH["name"] == FOLDER.name and TRUTH["causal"] is True
    assert TRUTH["nodes"] == ["L0H1", "L1H2"]
    assert sorted(TRUTH["distractors"]) == sorted(["L0H0", "L0H2", "L0H3", "L1H0", "L1H1", "L1H3", "MLP0", "MLP1"])
    for edge in TRUTH["edges"]:  # every edge in the edge graph's labels
        sender, end = edge.split(" → ")
        parse_sender(sender), parse_end(end)
    assert TRUTH["edges"] == ["embed → L0KV0.v", "L0H1 → L1KV1.k", "embed → L1H2.q", "embed → L1KV1.v",
                              "L1H2 → logits"]
    given = TRUTH["prompts"]
    assert len(given["clean"]) == len(given["corrupted"]) == len(given["answers"]) == 16
    for clean, corrupted, (right, wrong) in zip(given["clean"], given["corrupted"], given["answers"]):
        words = clean.split()
        assert right.startswith(" ") and wrong.startswith(" ") and "<bos>" not in clean
        assert words[words.index(words[-1]) + 1] == right.strip()  # ... A B ... A → B
        renamed = corrupted.split()
        assert renamed[renamed.index(renamed[-1]) + 1] == wrong.strip()  # the corrupted run predicts the wrong one
        assert all(c != r for c, r in zip(words, renamed)) and len(renamed) == len(words)  # every token differs


def test_the_committed_files_are_what_the_seeded_build_writes(tmp_path):
    from safetensors.torch import load_file

    built = build_script().main(tmp_path / "planted-induction")
    assert json.loads((built / "truth.json").read_text()) == TRUTH
    def config(folder):  # the transformers version that wrote it aside
        written = json.loads((folder / "config.json").read_text())
        return {k: v for k, v in written.items() if k != "transformers_version"}

    assert config(built) == config(FOLDER)
    ours, committed = load_file(built / "model.safetensors"), load_file(FOLDER / "model.safetensors")
    assert ours.keys() == committed.keys() and all(torch.equal(ours[k], committed[k]) for k in ours)


def test_the_model_is_a_llama_with_grouped_query_attention(planted):
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (planted.cfg.n_layers, planted.cfg.n_heads, planted.cfg.n_key_value_heads) == (2, 4, 2)
    assert (planted.cfg.d_model, planted.cfg.n_ctx, planted.cfg.d_vocab) == (64, 8, 11)


def test_every_true_edge_is_an_edge_of_the_models_graph(planted):
    from circuitcheck.probes.edges.graph import edge_graph

    labels = set(edge_graph(planted).labels)
    assert set(TRUTH["edges"]) <= labels, set(TRUTH["edges"]) - labels


def test_the_planted_circuit_does_the_task(planted):
    clean, corrupted = logit_diff(planted, prompts()), logit_diff(planted, prompts().corrupted)
    assert accuracy(planted, prompts()) == 1.0 and accuracy(planted, prompts().corrupted) == 0.0
    assert (clean.per_prompt > 1.5).all() and clean.mean > 3.0, clean
    assert (corrupted.per_prompt < -2.0).all(), corrupted  # the corrupted prompt predicts the wrong answer


def test_the_heads_attend_as_built(planted):
    """L0H1 attends to the previous position; L1H2, at the last position, to the token after
    the repeated word's first copy (the answer)."""
    tokenized = prompts().tokenize(planted)
    _, cache = planted.run_with_cache(tokenized.tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    previous = cache["blocks.0.attn.hook_pattern"][:, 1]  # batch × query × key
    assert (previous[:, 1:, :-1].diagonal(dim1=1, dim2=2) > 0.9).all()  # query i on key i - 1
    induction = cache["blocks.1.attn.hook_pattern"][:, 2, -1]  # the last position (all prompts are 8 tokens)
    for row, clean in zip(induction, TRUTH["prompts"]["clean"]):
        words = clean.split()
        answer_position = words.index(words[-1]) + 2  # after <bos>
        assert row.argmax() == answer_position and row[answer_position] > 0.8


@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("component", TRUTH["nodes"])
def test_knocking_out_a_true_component_breaks_the_task(planted, component, ablation):
    knocked = ablate(planted, prompts(), component, ablation=ablation)
    assert abs(knocked.after.mean()) < 0.25 * knocked.before.mean(), knocked
    assert (knocked.after > 0).mean() < 0.9  # no longer right on every prompt


@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("component", TRUTH["distractors"])
def test_knocking_out_a_distractor_leaves_the_task(planted, component, ablation):
    knocked = ablate(planted, prompts(), component, ablation=ablation)
    assert (knocked.after > 1.0).all() and knocked.after.mean() > 0.8 * knocked.before.mean(), knocked


def test_under_counterfactual_ablation_the_true_edges_are_the_circuit_and_each_is_needed(planted):
    """Everything outside the circuit takes its value from the corrupted twin: the true edges
    keep the task (faithfulness ≈ 1), and without any one of them it is lost."""
    edges = TRUTH["edges"]
    assert faithfulness(planted, prompts(), EdgeCircuit(edges), ablation="patching").ratio > 0.95
    for edge in edges:
        without = faithfulness(planted, prompts(), EdgeCircuit([e for e in edges if e != edge]), ablation="patching")
        assert without.ratio < 0.2, (edge, without)


def test_under_counterfactual_ablation_the_true_heads_are_the_circuit_and_each_is_needed(planted):
    nodes = TRUTH["nodes"]
    assert faithfulness(planted, prompts(), nodes, ablation="patching").ratio > 0.95
    for node in nodes:
        without = faithfulness(planted, prompts(), [n for n in nodes if n != node], ablation="patching")
        assert without.ratio < 0.2, (node, without)
