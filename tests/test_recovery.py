"""Recovery of a known circuit: AUROC, precision and recall at the truth's size and the last
true rank, against values worked out by hand (ties included), and the errors."""

import importlib
import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest

from circuitcheck import ground_truth, recovery
from circuitcheck.errors import NoGroundTruthError, RankingMismatchError

recovery_module = importlib.import_module("circuitcheck.probes.recovery")  # the package's `recovery` is the probe

TRUTH = {"name": "toy", "description": "two heads and their edges", "source": "by hand",
         "nodes": ["L0H0", "L1H1"], "edges": ["embed → L0H0.q", "L0H0 → L1H0.k", "L1H0 → logits"],
         "distractors": ["L0H1", "MLP0"], "causal": True,
         "prompts": {"clean": ["a b c a"], "corrupted": ["a b d a"], "answers": [[" b", " d"]]}}


def test_auroc_precision_recall_and_last_rank_by_absolute_and_signed_score():
    """|score| order: L0H0 .9, L0H1 −.8, L1H0 .3, L1H1 .1, MLP0 .05; true L0H0 and L1H1.
    L0H0 is above all 3 others, L1H1 above MLP0 only: AUROC (3 + 1) / (2 × 3) = 2/3; the top
    2 hold L0H0 and L0H1: precision = recall = 1/2; L1H1 is 4th. Signed, L0H1 drops to last:
    (3 + 2) / 6 = 5/6, the top 2 are L0H0 and L1H0, L1H1 is 3rd."""
    scores = {"L0H0": 0.9, "L0H1": -0.8, "L1H0": 0.3, "L1H1": 0.1, "MLP0": 0.05}
    result = recovery(scores, TRUTH)
    assert result.auroc == pytest.approx(2 / 3) and result.order_by == "|score|"
    assert (result.precision, result.recall, result.last_true_rank, result.k) == (0.5, 0.5, 4, 2)
    assert list(result.df["component"]) == ["L0H0", "L0H1", "L1H0", "L1H1", "MLP0"]
    assert list(result.df["is_true"]) == [True, False, False, True, False]
    signed = recovery(scores, TRUTH, by="score")
    assert signed.auroc == pytest.approx(5 / 6) and signed.order_by == "score"
    assert (signed.precision, signed.last_true_rank) == (0.5, 3)


def test_ties_take_the_midrank_and_their_expected_share_of_the_cut():
    """L0H0 1.0; L0H1, L1H0, L1H1 tied at 0.5; MLP0 0. True: L0H0, L1H0. L0H0 beats all three
    others (3); L1H0 ties L0H1 and L1H1 (½ + ½) and beats MLP0 (1): AUROC 5/6, as scipy's
    Mann–Whitney U says. The top 2: L0H0, then one of the three tied (a true one with chance
    1/3): precision = recall = (1 + 1/3) / 2 = 2/3. The tied share midrank 3; taking the tie
    whole, the last true component is 4th."""
    from scipy.stats import mannwhitneyu

    scores = {"L0H0": 1.0, "L0H1": 0.5, "L1H0": 0.5, "L1H1": 0.5, "MLP0": 0.0}
    truth = dict(TRUTH, nodes=["L0H0", "L1H0"])
    result = recovery(scores, truth)
    assert result.auroc == pytest.approx(5 / 6)
    u = mannwhitneyu([1.0, 0.5], [0.5, 0.5, 0.0]).statistic
    assert result.auroc == pytest.approx(u / 6)
    assert result.precision == pytest.approx(2 / 3) and result.recall == pytest.approx(2 / 3)
    assert result.last_true_rank == 4
    assert dict(zip(result.df["component"], result.df["rank"])) == {"L0H0": 1, "L0H1": 3, "L1H0": 3, "L1H1": 3,
                                                                     "MLP0": 5}
    everything_tied = recovery({c: 0.0 for c in scores}, truth)
    assert everything_tied.auroc == 0.5 and everything_tied.precision == pytest.approx(2 / 5)
    assert everything_tied.last_true_rank == 5


def test_an_edge_order_is_compared_with_the_truths_edges_a_heads_key_end_as_its_kv_head():
    """Best first: L1H0 → logits (true), L0H0 → L1KV0.k (true: the truth's L0H0 → L1H0.k),
    embed → L1H0.q, embed → L0H0.q (true), MLP0 → logits. Pairs won: 2 + 2 + 1 of 6; the top
    3 hold 2 true; the last true one is 4th."""
    order = ["L1H0 → logits", "L0H0 -> L1KV0.k", "embed → L1H0.q", "embed → L0H0.q", "MLP0 → logits"]
    result = recovery(order, TRUTH)
    assert result.level == "edges" and result.order_by == "order given"
    assert result.auroc == pytest.approx(5 / 6)
    assert result.precision == pytest.approx(2 / 3) and result.last_true_rank == 4
    assert "L0H0 → L1KV0.k" in result.components and np.isnan(result.scores).all()


def test_a_true_component_the_ranking_does_not_score_counts_last():
    result = recovery(["L0H0", "L0H1"], dict(TRUTH, nodes=["L0H0", "MLP1"]))
    assert result.components == ("L0H0", "L0H1", "MLP1") and result.unscored_truth == ("MLP1",)
    assert result.auroc == pytest.approx(0.5)  # L0H0 above L0H1; MLP1 above nothing
    assert (result.precision, result.last_true_rank) == (0.5, 3)
    assert any("MLP1" in note for note in result.notes())


def test_the_result_owns_its_facts_and_its_evidence_is_json():
    result = recovery({"L0H0": 0.9, "L0H1": 0.2, "L1H1": 0.5}, TRUTH)
    form = result.evidence()
    json.dumps(form)
    assert form["kind"] == "recovery" and form["model"] == "toy"
    assert form["summary"]["AUROC"] == pytest.approx(1.0) and form["summary"]["precision@2"] == 1.0
    assert form["table"]["columns"] == ["component", "score", "rank", "is_true"]
    assert "ranked by |score|" in form["notes"][0]
    assert "AUROC=1" in repr(result) and result.title == "Recovery of toy's true nodes by scores given"


def test_ground_truth_from_a_dict_a_file_or_a_folder(tmp_path):
    truth = ground_truth(TRUTH)
    assert truth.nodes == ("L0H0", "L1H1") and truth.heads == ("L0H0", "L1H1") and truth.mlps == ()
    assert truth.edges == ("embed → L0H0.q", "L0H0 → L1KV0.k", "L1H0 → logits")
    assert truth.circuit.components == ("L0H0", "L1H1") and truth.circuit.mlps == ()
    assert len(truth.edge_circuit) == 3
    prompts = truth.prompt_set
    assert prompts.prompts == ("a b c a",) and prompts.corrupted_prompts == ("a b d a",)
    assert prompts.answers == ((" b", " d"),)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "truth.json").write_text(json.dumps(TRUTH))
    assert ground_truth(tmp_path / "toy") == truth == ground_truth(str(tmp_path / "toy" / "truth.json"))
    assert ground_truth(str(tmp_path / "toy")) == truth
    assert ground_truth(truth) is truth
    assert recovery(["L1H1", "L0H0", "L0H1"], tmp_path / "toy").auroc == 1.0  # what ground_truth takes


def fake_registry(monkeypatch, truths):
    """A registry of known-circuit models in place of circuitcheck.fixtures.groundtruth."""
    name = "circuitcheck_test_fake_registry"
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.known_models = lambda: sorted(truths)

    def truth_of(model):
        key = model if isinstance(model, str) else model.cfg.model_name
        if key not in truths:
            raise KeyError(key)
        return truths[key]

    module.truth_of = truth_of
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(recovery_module, "REGISTRY", name)


def test_ground_truth_of_a_model_reads_the_registry_and_refuses_a_model_without_one(tiny_llama, monkeypatch):
    fake_registry(monkeypatch, {"toy": TRUTH})
    assert ground_truth("toy").nodes == ("L0H0", "L1H1")
    with pytest.raises(NoGroundTruthError, match=r"has no ground truth: its circuit is not known by construction. "
                                                  r"The known-circuit models are toy"):
        ground_truth(tiny_llama)
    monkeypatch.setattr(recovery_module, "REGISTRY", "circuitcheck_test_no_such_registry")
    with pytest.raises(NoGroundTruthError, match="no known-circuit models"):
        ground_truth(tiny_llama)
    with pytest.raises(NoGroundTruthError, match="no such truth file"):
        ground_truth("missing/truth.json")


def test_a_ranking_of_what_the_truth_does_not_name_is_refused():
    with pytest.raises(RankingMismatchError, match="'L0N3' is not a component the ground truth names"):
        recovery(["L0N3", "L1N5"], TRUTH)
    with pytest.raises(RankingMismatchError, match="not a component"):
        recovery({"resid_pre L1": 1.0}, TRUTH)
    with pytest.raises(RankingMismatchError, match="names no edges"):
        recovery(["L0H0 → logits"], dict(TRUTH, edges=[]))
    with pytest.raises(RankingMismatchError, match="names no nodes"):
        recovery(["L0H0"], dict(TRUTH, nodes=[]))
    with pytest.raises(ValueError, match="more than once"):
        recovery(["L0H0", "L0H0"], TRUTH)
    with pytest.raises(ValueError, match="by='abs!'"):
        recovery(["L0H0"], TRUTH, by="abs!")
    with pytest.raises(ValueError, match="lacks edges"):
        ground_truth({"name": "x", "nodes": []})
    with pytest.raises(ValueError, match="is one label"):
        recovery("L0H0", TRUTH)


def test_every_probe_ranking_is_scored(tiny_llama):
    """Patching (exact and attribution), head attribution, an edge attribution and a faithfulness
    curve's order, each scored against a truth on the tiny model; a neuron sweep is refused."""
    from circuitcheck.probes import attribution_patch, faithfulness_curve, head_attribution, patch
    from circuitcheck.probes.edges import edge_attribution

    from .test_patching import PROMPTS

    truth = dict(TRUTH, nodes=["L1H2", "MLP1"], edges=["L1H2 → logits", "embed → L1H2.q"])
    heads = patch(tiny_llama, PROMPTS, "head_out")
    exact = recovery(heads, truth)
    assert exact.method == "activation patching (head_out, recovery)" and len(exact.components) == 9
    assert exact.unscored_truth == ("MLP1",) and exact.k == 2
    order = np.argsort(-np.abs(heads.recovery), kind="stable")
    assert exact.df["component"].iloc[0] == heads.labels[order[0]]
    assert recovery(attribution_patch(tiny_llama, PROMPTS, "head_out"), truth).method.startswith("attribution")
    assert recovery(patch(tiny_llama, PROMPTS, "mlp_out_all_pos"), truth).components[:2] in (("MLP0", "MLP1"),
                                                                                              ("MLP1", "MLP0"))
    direct = recovery(head_attribution(tiny_llama, PROMPTS), truth)
    assert direct.method == "head attribution (mean direct effect)" and direct.order_by == "|score|"
    edges = recovery(edge_attribution(tiny_llama, PROMPTS), truth)
    assert edges.level == "edges" and edges.k == 2 and 0 <= edges.auroc <= 1
    curve = recovery(faithfulness_curve(tiny_llama, PROMPTS, ["L1H2", "L0H1"], ablation="zero"), truth)
    assert curve.order_by == "order given" and curve.components[0] == "L1H2"
    with pytest.raises(RankingMismatchError, match="a neuron patching sweep ranks sites"):
        recovery(patch(tiny_llama, PROMPTS, "neuron", layers=[0], neurons=[0, 1]), truth)
    with pytest.raises(RankingMismatchError, match="LogitDiff holds no ranking"):
        from circuitcheck.probes import logit_diff

        recovery(logit_diff(tiny_llama, PROMPTS), truth)
