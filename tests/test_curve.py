"""Faithfulness over circuit size on tiny models: CPR and CMD are MIB's trapezoids over the
curve, the curve agrees with `faithfulness` at every size, the whole model's point is 1,
every point costs the same few batched passes, a planted circuit's curve hugs 1, bad input."""

import json

import numpy as np
import pytest

from circuitcheck.probes import PromptSet, head_attribution, logit_diff, patch
from circuitcheck.probes import Circuit, faithfulness, faithfulness_curve
from circuitcheck.probes.circuits.curve import MIB_FRACTIONS, curve_sizes

from .test_circuits import OTHER, planted_model
from .test_patching import PROMPTS


def trapezoid(x, y):
    """The area under y over x, by hand: one trapezoid per pair of neighbouring points."""
    total = 0.0
    for i in range(len(x) - 1):
        total += (x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2
    return total


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_cpr_and_cmd_are_trapezoids_over_the_curve_and_over_faithfulness_at_each_size(request, name):
    model = request.getfixturevalue(name)
    ranking = patch(model, PROMPTS, "head_out")
    curve = faithfulness_curve(model, PROMPTS, ranking, reference=OTHER)
    # 8 heads: MIB's fractions give max(1, round(f × 8)) = 1, 1, 1, 1, 1, 1, 1, 2, 4, 8 heads
    assert list(curve.sizes) == [1, 2, 4, 8] and list(curve.fractions) == [0.125, 0.25, 0.5, 1.0]
    assert curve.ranking[:8] == tuple(ranking.top(8)["site"])  # by recovery, best first
    f = list(curve.faithfulness)
    assert curve.cpr == pytest.approx(trapezoid(curve.fractions, f), abs=1e-12)
    assert curve.cmd == pytest.approx(trapezoid(curve.fractions, [abs(1 - v) for v in f]), abs=1e-12)
    # the random orders' CPR and CMD: each order's trapezoids, then their mean
    by_order = [trapezoid(curve.fractions, [abs(1 - v) for v in run]) for run in curve.random_runs]
    assert len(by_order) == 20 and curve.random_cmds == pytest.approx(by_order, abs=1e-12)
    assert curve.random_cmd == pytest.approx(np.mean(by_order), abs=1e-12)
    assert curve.random_cpr == pytest.approx(np.mean([trapezoid(curve.fractions, run) for run in curve.random_runs]),
                                             abs=1e-12)
    assert curve.p_value == (1 + sum(c <= curve.cmd for c in by_order)) / 21
    # the same numbers from one faithfulness probe per size
    independent = [faithfulness(model, PROMPTS, list(curve.ranking[:k]), reference=OTHER).normalised
                   for k in curve.sizes]
    np.testing.assert_allclose(f, independent, atol=1e-5)
    assert curve.cpr == pytest.approx(trapezoid(curve.fractions, independent), abs=1e-5)
    assert curve.cmd == pytest.approx(trapezoid(curve.fractions, [abs(1 - v) for v in independent]), abs=1e-5)
    # the full ranking is the model: f = 1 at fraction 1.0, for the random order too
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)  # float32 batches differ by ~3e-8
    assert curve.random_faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    whole = faithfulness(model, PROMPTS, Circuit.full(model), reference=OTHER)
    assert curve.f_model == pytest.approx(whole.f_model) and curve.f_empty == pytest.approx(whole.f_empty, abs=1e-6)


def test_every_point_and_the_random_order_share_a_few_batched_passes(tiny_llama):
    passes = []  # a PyTorch hook on the embedding module counts model passes (it is no TransformerLens hook)
    handle = tiny_llama.embed.register_forward_pre_hook(lambda module, args: passes.append(args[0].shape[0]))
    try:
        curve = faithfulness_curve(tiny_llama, PROMPTS, ["L0H1", "L1H2"], sizes=list(range(1, 9)), n_random=3,
                                   reference=OTHER)
    finally:
        handle.remove()
    assert len(curve.sizes) == 8 and curve.random_runs.shape == (3, 8)
    # one reference pass, then 1 + 4 × 8 circuits (empty, ranked, three random orders) in one batched pass
    assert 1 <= len(passes) <= 4, passes
    assert max(passes) == (1 + 4 * 8) * len(PROMPTS)
    np.testing.assert_allclose(curve.random_faithfulness, curve.random_runs.mean(axis=0))


def test_a_planted_circuit_ranked_first_keeps_the_curve_near_one():
    model = planted_model()
    curve = faithfulness_curve(model, PROMPTS, ["L0H3", "L1H5"], reference=OTHER)
    assert curve.n_ranked == 2 and len(curve.ranking) == 16 and curve.ranking[:2] == ("L0H3", "L1H5")
    assert curve.faithfulness[1] == pytest.approx(1.0, abs=0.1)  # C_2 is the planted circuit
    assert curve.cmd <= 0.2 and curve.random_cmd > 3 * curve.cmd, curve
    assert curve.cpr > curve.random_cpr
    assert any("follow it in the model's order" in note for note in curve.notes())


def test_rankings_from_attribution_and_with_mlps(tiny_llama):
    attribution = head_attribution(tiny_llama, PROMPTS)
    curve = faithfulness_curve(tiny_llama, PROMPTS, attribution, sizes=[1, 3])
    assert curve.ranking == tuple(attribution.top(8)["head"])
    assert list(curve.sizes) == [1, 3, 8]  # the full model is always the last point
    mixed = faithfulness_curve(tiny_llama, PROMPTS, ["MLP1", (0, 2), "L1H0"], sizes=[0.2, 0.3], reference=OTHER)
    assert len(mixed.ranking) == 10 and mixed.ranking[:3] == ("MLP1", "L0H2", "L1H0")
    assert list(mixed.sizes) == [2, 3, 10]
    alone = faithfulness(tiny_llama, PROMPTS, Circuit(["L0H2"], mlps=[1]), reference=OTHER)
    assert mixed.faithfulness[0] == pytest.approx(alone.normalised, abs=1e-5)
    spec = mixed.figure()
    assert spec["type"] == "line" and set(spec["series"]) >= {"ranking", "random order"}
    assert list(mixed.df.columns) == ["size", "fraction", "last added", "F(C)", "faithfulness", "random order"]
    assert mixed.summary()["CMD"] == mixed.cmd
    form = json.loads(json.dumps(mixed.evidence()))  # what the report shows
    assert form["kind"] == "faithfulness_curve" and form["summary"]["CPR"] == pytest.approx(mixed.cpr)


def test_sizes_follow_mibs_grid_and_collapse():
    assert curve_sizes(None, 270) == [1, 3, 5, 14, 27, 54, 135, 270]  # 30 × 9 heads, SmolLM2's
    assert len(MIB_FRACTIONS) == 10 and curve_sizes(None, 100_000)[0] == 100
    assert curve_sizes([0.25, 0.5], 8) == [2, 4, 8] and curve_sizes([2, 2, 4], 8) == [2, 4, 8]
    # all in (0, 1]: fractions, 1 the full model (not one component); a whole number above 1: counts
    assert curve_sizes([0.5, 1], 8) == [4, 8] and curve_sizes([1, 2], 8) == [1, 2, 8]


def test_bad_input_gets_clear_errors(tiny_llama):
    def refused(match, ranking=("L0H1",), **kwargs):
        with pytest.raises(ValueError, match=match):
            faithfulness_curve(tiny_llama, PROMPTS, list(ranking) if isinstance(ranking, tuple) else ranking, **kwargs)

    refused("ranking is empty", ranking=())
    refused("L7H0 does not exist", ranking=("L0H1", "L7H0"))
    refused("not a component", ranking=("head three",))
    refused("names L0H1 more than once", ranking=("L0H1", "L1H0", "L0H1"))
    refused("is one label", ranking="L0H1")
    refused("holds no ranking", ranking=logit_diff(tiny_llama, PROMPTS))
    refused("ranks sites, not whole components", ranking=patch(tiny_llama, PROMPTS, "resid_pre"))
    refused(r"sizes=\[0.1, 1.5\] mixes fractions and counts", sizes=[0.1, 1.5])
    refused(r"sizes=\[0.5, 3\] mixes fractions and counts", sizes=[0.5, 3])
    refused("sizes: 0.0 is not a size", sizes=[0.0])
    refused("sizes: 0 is not a size", sizes=[0, 2])
    refused("sizes: True is not a size", sizes=[True, 2])
    refused("sizes: nan is not a size", sizes=[float("nan")])
    refused("sizes: 9 components, but the model has 8", sizes=[9])
    refused(r"sizes=\[\] lists no size", sizes=[])
    refused("a curve needs a smaller circuit too", sizes=[8])
    refused("n_random=0: give a whole number of at least 1", n_random=0)
    refused("ablation 'median'", ablation="median")


def test_orderless_rankings_are_refused_not_read_in_an_arbitrary_order(tiny_llama):
    """A dict's scores were ignored (insertion order) and a set's order was arbitrary."""
    for ranking, match in [({"L0H1": 0.1, "L1H2": 0.9}, "a dict of scores is not an order; rank it yourself"),
                           ({"L0H1", "L1H2"}, "a set has no order"),
                           (Circuit(["L0H1"]), "a Circuit is a set of components, not an order"),
                           (None, "ranking=None: give components best first")]:
        with pytest.raises(ValueError, match=match):
            faithfulness_curve(tiny_llama, PROMPTS, ranking)


def test_f_is_undefined_when_the_ablation_removes_nothing_but_float_noise(tiny_llama):
    """One prompt mean-ablated over itself: F(M) − F(empty) is float rounding (about 1e-8), not
    a denominator; every f is NaN with the reason, and the curve makes no claim against random."""
    one = PromptSet(PROMPTS.prompts[:1], PROMPTS.answers[:1], name="one prompt")
    curve = faithfulness_curve(tiny_llama, one, ["L0H1", "L1H2"], reference=one)
    assert abs(curve.f_model - curve.f_empty) < 1e-5  # nothing removed, up to rounding
    assert np.isnan(curve.faithfulness).all() and np.isnan(curve.cmd) and np.isnan(curve.p_value)
    assert "within float rounding of the metric" in curve.undefined
    assert any(note.startswith("f is undefined: F(M) − F(empty) = ") for note in curve.notes())
    assert curve.p_values() == {}
    with pytest.raises(ValueError, match="f is undefined on this curve"):
        curve.beats_random()


def test_a_comparison_with_random_orders_rests_on_enough_of_them(tiny_llama):
    few = faithfulness_curve(tiny_llama, PROMPTS, ["L0H1", "L1H2"], reference=OTHER, n_random=3)
    assert few.random_cmds.shape == (3,) and few.summary()["n_random"] == 3
    with pytest.raises(ValueError, match=r"beats_random\(0.95\) on n_random=3 random orders: .* n_random >= 20"):
        few.beats_random()
    enough = faithfulness_curve(tiny_llama, PROMPTS, ["L0H1", "L1H2"], reference=OTHER)
    assert len(enough.random_runs) == 20
    assert enough.beats_random() == ((enough.random_cmds > enough.cmd).mean() >= 0.95)
    assert enough.p_values() == {"p_value (CMD vs random orders)": enough.p_value}


def test_an_edge_curve_whose_corruption_changes_nothing_is_undefined(tiny_llama):
    """Corrupted prompts equal to the clean ones: F(M) − F(empty) was float noise and f came out
    as [0, 1.18, 1.73] with a CMD; now it is undefined, with the reason."""
    same = PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=PROMPTS.prompts, name="unchanged")
    curve = faithfulness_curve(tiny_llama, same, ["L0H1 → logits", "L1H2 → logits"], sizes=[2, 10], n_random=2,
                               ablation="patching")
    assert np.isnan(curve.faithfulness).all() and np.isnan(curve.cmd)
    assert "within float rounding of the metric" in curve.undefined


def test_faithfulness_whose_ablation_removes_nothing_is_undefined_not_a_number(tiny_llama):
    """The same float-noise denominator in one faithfulness probe, node and edge alike."""
    one = PromptSet(PROMPTS.prompts[:1], PROMPTS.answers[:1], corrupted_prompts=PROMPTS.prompts[:1], name="one")
    for result in (faithfulness(tiny_llama, one, ["L0H1"], reference=one),
                   faithfulness(tiny_llama, one, ["L0H1 → logits"], ablation="patching")):
        assert abs(result.f_model - result.f_empty) < 1e-5 and np.isnan(result.normalised)
        assert "within float rounding of the metric" in result.undefined
        assert any(note.startswith("normalised faithfulness is undefined") for note in result.notes())
        assert 0 < result.rounding < 1e-5 and np.isfinite(result.ratio)  # F(M) itself is far from 0
