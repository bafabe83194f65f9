"""Results own their facts: the usual number a claim is about is a class attribute (so edge
criteria have it), and the ranking Results rank themselves (``ranking()``,
``component_scores()``, ``scores_over()``), in the same orders the criteria made from their
arrays before, so the curve, the stability of a selection and recovery read only that protocol."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from circuitcheck.probes import PromptSet, faithfulness, faithfulness_curve, head_attribution, patch
from circuitcheck.probes.attribution_patching import attribution_patch
from circuitcheck.probes.circuits.curve import _component, _ranked_labels
from circuitcheck.probes.edges import EdgeCircuit, edge_attribution
from circuitcheck.probes.edges.attribution import EdgeScores
from circuitcheck.probes.patching import Patching
from circuitcheck.probes.recovery import _scores, ground_truth, recovery
from circuitcheck.probes.results import Result
from circuitcheck.probes.robustness import robustness
from circuitcheck.probes.sites import head_label
from circuitcheck.probes.stability import resamples, selection_stability

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = PromptSet(  # IOI pairs of one length (attribution patching needs one)
    ["When Mary and John went to the shops, John gave the bag to",
     "When Tom and James went to the park, James gave the ball to",
     "When James and Mary went to the park, Mary gave the ball to"],
    [(" Mary", " John"), (" Tom", " James"), (" James", " Mary")],
    corrupted_prompts=["When Mary and John went to the shops, Mary gave the bag to",
                       "When Tom and James went to the park, Tom gave the ball to",
                       "When James and Mary went to the park, James gave the ball to"],
    name="IOI three")
TRUTH = {"name": "toy", "nodes": ["L0H1", "L1H2", "MLP0"], "edges": ["L0H1 → L1H2.q", "L1H2 → logits"]}


# --- today's rules, as curve.py, stability.py and recovery.py wrote them before the protocol ---

def _heads(result) -> list[str]:
    n_layers, n_heads = result.per_head.shape
    return [head_label(l, h) for l in range(n_layers) for h in range(n_heads)]


def _signed_order(scores) -> np.ndarray:
    return np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")


def old_curve_order(result) -> list[str]:
    if isinstance(result, EdgeScores):  # the edge curve took EdgeScores.ranking(): |score|, NaN refused
        return [result.labels[i] for i in np.argsort(-np.nan_to_num(np.abs(result.scores), nan=-1.0), kind="stable")]
    if isinstance(result, Patching):
        return [result.labels[i] for i in _signed_order(result.recovery)]
    return [_heads(result)[i] for i in _signed_order(result.per_head.flatten())]


def old_prompt_scores(result, score):
    if isinstance(result, Patching):
        values, target, source = result.values, result.target_baseline, result.source_baseline

        def scores(rows):
            effect = values[:, rows].mean(axis=1) - target[rows].mean()
            if score == "recovery":
                gap = source[rows].mean() - target[rows].mean()
                return effect / gap if gap != 0 else np.full(len(effect), np.nan)
            return effect if score == "effect" else np.abs(effect)
        return list(result.labels), scores
    flat = result.values.reshape(-1, result.values.shape[-1])
    if score == "abs_mean":
        return _heads(result), lambda rows: np.abs(flat[:, rows].mean(axis=1))
    return _heads(result), lambda rows: flat[:, rows].mean(axis=1)


def old_top_k(scores, labels, k):
    order = _signed_order(scores)
    return tuple(labels[i] for i in order[:k] if not np.isnan(scores[i]))


def old_recovery_scores(result):
    if isinstance(result, EdgeScores):
        return "edges", f"EdgeScores ({result.method})", list(result.labels), np.asarray(result.scores, float)
    if isinstance(result, Patching):
        how = "activation patching" if result.method == "exact" else "attribution patching"
        return "nodes", f"{how} ({result.sweep}, recovery)", list(result.labels), np.asarray(result.recovery, float)
    return "nodes", "head attribution (mean direct effect)", _heads(result), result.per_head.flatten().astype(float)


# --- the ranking Results, with ties and NaN planted ---

@pytest.fixture(scope="module")
def rankings(tiny_llama):
    heads = patch(tiny_llama, PROMPTS, "head_out")
    tied = dataclasses.replace(heads, values=np.round(heads.values, 1))  # ties broken in table order
    undefined = dataclasses.replace(heads, source_baseline=heads.target_baseline)  # every recovery NaN
    direct = head_attribution(tiny_llama, PROMPTS)
    flat = direct.values.copy()
    flat[0, :2] = flat[1, 0]  # three heads tied
    return {"patch head_out": heads, "patch mlp_out_all_pos": patch(tiny_llama, PROMPTS, "mlp_out_all_pos"),
            "attribution patching": attribution_patch(tiny_llama, PROMPTS, "head_out"),
            "patch ties": tied, "patch NaN": undefined, "head attribution": direct,
            "head attribution ties": dataclasses.replace(direct, values=flat),
            "edge scores": edge_attribution(tiny_llama, PROMPTS)}


NODE_KINDS = ["patch head_out", "patch mlp_out_all_pos", "attribution patching", "patch ties", "patch NaN",
              "head attribution", "head attribution ties"]


@pytest.mark.parametrize("name", [*NODE_KINDS, "edge scores"])
def test_a_ranking_result_ranks_itself_as_the_criteria_did(rankings, name):
    result = rankings[name]
    assert result.ranking() == old_curve_order(result)
    scores = result.component_scores()
    _, method, labels, values = old_recovery_scores(result)
    assert (str(scores.name), list(scores.index)) == (method, labels)
    np.testing.assert_array_equal(scores.to_numpy(float), values)
    if result.ranked_by == "score":  # the stated rule gives the same order from the scores
        assert result.ranking() == [labels[i] for i in _signed_order(values)]
    else:
        assert result.ranked_by == "|score|"
        assert result.ranking() == [labels[i] for i in np.argsort(-np.abs(values), kind="stable")]


@pytest.mark.parametrize("name", NODE_KINDS)
def test_the_curve_adds_components_in_the_same_order(tiny_llama, rankings, name):
    result = rankings[name]
    assert _ranked_labels(result) == old_curve_order(result)
    if name in ("patch head_out", "head attribution ties", "patch mlp_out_all_pos"):
        curve = faithfulness_curve(tiny_llama, PROMPTS, result, sizes=[1, 2], ablation="zero", n_random=1)
        assert list(curve.ranking[:curve.n_ranked]) == [_component(c) for c in old_curve_order(result)]


def test_the_edge_curve_adds_edges_in_the_same_order(tiny_llama, rankings):
    scores = rankings["edge scores"]
    curve = faithfulness_curve(tiny_llama, PROMPTS, scores, sizes=[1, 2], n_random=1)
    assert list(curve.ranking[:curve.n_ranked]) == old_curve_order(scores)


@pytest.mark.parametrize("name", NODE_KINDS[:-3] + NODE_KINDS[-2:])  # "patch NaN" is refused, as before
def test_selection_stability_selects_the_same_components(rankings, name):
    result = rankings[name]
    for score in result.score_names:
        labels, scores = old_prompt_scores(result, score)
        n_prompts = result.values.shape[-1]
        k = min(3, len(labels))
        chosen = selection_stability(result, k=k, n=8, seed=1, score=score)
        indices = resamples(n_prompts, 8, 1)
        assert chosen.selected == old_top_k(scores(np.arange(n_prompts)), labels, k)
        assert chosen.selections == tuple(old_top_k(scores(rows), labels, k) for rows in indices)


def test_selection_stability_refuses_what_it_refused(rankings):
    with pytest.raises(ValueError, match="normalised recovery is undefined on all the prompts"):
        selection_stability(rankings["patch NaN"])
    with pytest.raises(ValueError, match="needs a Result with per-prompt values.*not EdgeScores"):
        selection_stability(rankings["edge scores"])


@pytest.mark.parametrize("name", [*NODE_KINDS, "edge scores"])
def test_recovery_reads_the_same_scores(tiny_llama, rankings, name):
    result = rankings[name]
    truth = ground_truth(TRUTH)
    level, method, labels, values = old_recovery_scores(result)
    new = _scores(result, truth.heads_per_kv)
    assert new[:2] == (level, method)
    old = _scores(dict(zip(labels, values)), truth.heads_per_kv)  # the same scores, given as a dict
    assert new[2] == old[2]
    np.testing.assert_array_equal(new[3], old[3])
    for by in ("abs", "score"):
        a, b = recovery(result, truth, by=by), recovery(dict(zip(labels, values)), truth, by=by)
        assert a.components == b.components and np.array_equal(a.ranks, b.ranks)
        assert (a.auroc, a.precision, a.last_true_rank) == pytest.approx((b.auroc, b.precision, b.last_true_rank),
                                                                         nan_ok=True)


def test_a_patching_of_positions_ranks_no_components(tiny_llama):
    sites = patch(tiny_llama, PROMPTS, "resid_pre")
    with pytest.raises(ValueError, match="a resid_pre patching sweep ranks sites, not whole components"):
        sites.ranking()
    assert selection_stability(sites, k=2, n=4).selected  # its sites still have per-prompt scores


def test_robustness_over_an_edge_faithfulness_claim_needs_no_value(tiny_llama):
    circuit = EdgeCircuit(["L0H1 → L1H2.q", "L1H2 → logits", "embed → L0H1.v"])

    def claim(model, prompts, **options):
        return faithfulness(model, prompts, circuit, **options)

    result = robustness(tiny_llama, PROMPTS, claim, over={"ablation": ["patching", "mean", "zero"]},
                        holds=lambda ratio: ratio > -1e9)
    assert result.value_name == "ratio" and result.holds_everywhere
    for ablation, value in zip(("patching", "mean", "zero"), result.values):
        assert value == pytest.approx(faithfulness(tiny_llama, PROMPTS, circuit, ablation=ablation).ratio, nan_ok=True)


def test_the_usual_number_is_the_class_s_own():
    from circuitcheck.probes.recovery import Recovery
    from circuitcheck.probes.stability import Stability

    assert (Result.usual, Stability.usual, Recovery.usual) == (None, "jaccard", "auroc")
    for cls in (Stability, Recovery):  # what it names is an attribute of the Result
        assert cls.usual in cls.__dataclass_fields__ or isinstance(getattr(cls, cls.usual), property)


# --- layout: the criteria read the protocol, not the probes that make rankings ---

def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or in a function, relative imports resolved
    (``from .. import x`` counts ``probes.x`` too, which may be a module)."""
    package = _module(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("circuitcheck.") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (package.rsplit(".", node.level - 1)[0] if node.level > 1 else package) if node.level \
                else node.module.removeprefix("circuitcheck.")
            module = f"{base}.{node.module}" if node.level and node.module else base
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def ranking_modules() -> set[str]:
    """The probes modules that define a Result with a ``ranking()`` method or per-prompt scores."""
    found = set()
    for path in (ROOT / "probes").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(f, ast.FunctionDef) and f.name in ("ranking", "component_scores", "scores_over")
                    for f in node.body):
                found.add(_module(path))
    return found


def test_the_criteria_import_no_probe_that_makes_rankings():
    makers = ranking_modules()
    assert {"probes.patching", "probes.attribution", "probes.head_scores", "probes.edges.attribution"} <= makers
    for name in ("probes/circuits/curve.py", "probes/stability.py", "probes/recovery.py"):
        reached = _imports(ROOT / name) & (makers | {"probes.attribution_patching", "probes.circuits.curve"})
        assert not reached - {_module(ROOT / name)}, f"{name} imports {sorted(reached)}: use the ranking protocol"
